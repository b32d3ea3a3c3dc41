//! `pp-peer`: the Peer Pressure native peer. `run` joins the swarm and serves; the other
//! commands act through the running peer of the same data dir (its control socket), or as a
//! short-lived peer when none runs.

use native_peer::output::{render, Kind};
use native_peer::settings::PeerSettings;
use native_peer::{cli, control, node};
use pp_cli::duration::{parse_secs, Secs};

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use control::Request;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_core::share::Target;

/// Peer Pressure native peer: joins a swarm, stores chunks on disk, serves and fetches them
/// over WebRTC data channels (or the tracker relay).
///
/// Commands other than `run` act through the running peer of the same data dir when there is
/// one, and otherwise as a short-lived peer.
#[derive(Parser, Debug)]
#[command(
    name = "pp-peer",
    version,
    about,
    long_about,
    after_help = "Exit codes: 0 ok, 1 failure, 2 bad usage (or a bad link), 3 no such file in the swarm, 4 output \
                  exists (use --force), 5 tracker unreachable, 6 no room to store the chunks, 7 not allowed (rm of a \
                  file another peer published, or a join token the tracker does not accept)."
)]
struct Args {
    #[command(flatten)]
    settings: PeerSettings,
    /// Print results as JSON on stdout (progress bars, if any, stay on stderr), and errors too:
    /// `{"error": {"kind", "exit_code", "message"}}`.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// More log on stderr: -v info, -vv debug [default: warnings and errors; `run` logs info]
    /// (RUST_LOG, when set, decides instead).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The log's format on stderr: text (colour only on a terminal) or json, one object a line.
    #[arg(long, global = true, env = "PP_LOG_FORMAT", value_name = "FORMAT", default_value = "text")]
    log_format: pp_cli::logging::LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Join the swarm and serve chunks until Ctrl-C or SIGTERM (or `leave`), then stop cleanly.
    Run {
        /// Serve files over HTTP on this address: `GET /files/{id}` (Range, HEAD); a private file
        /// in plaintext with `?key=` from its share link (or `?pass=`).
        #[arg(long, value_name = "ADDR")]
        http: Option<SocketAddr>,
        /// A host name the gateway answers to besides IP addresses and localhost (repeatable): the
        /// name you reach it by; requests naming other hosts get 403 (no DNS rebinding)
        #[arg(long = "http-host", value_name = "NAME", env = "PP_HTTP_HOST", value_delimiter = ',')]
        http_hosts: Vec<String>,
        /// Time for an HTTP request head to arrive whole, and for an idle kept-alive
        /// connection to send its next request, at most 1h (a bare number is seconds)
        #[arg(long, default_value = "10s", value_name = "DURATION", env = "PP_HTTP_HEADER_TIMEOUT",
              value_parser = parse_secs)]
        http_header_timeout: Secs,
        /// Time between scrubs of the chunk store, 0 for never (a bare number is seconds)
        #[arg(long, default_value = "1h", value_name = "DURATION", env = "PP_SCRUB_EVERY", value_parser = parse_secs)]
        scrub_every: Secs,
        /// Carry on with the gets this peer had not finished when it last stopped or died
        /// (their verified chunks are kept; listed in the data dir's pending-gets.json)
        #[arg(long, env = "PP_RESUME")]
        resume: bool,
    },
    /// Chunk, store and publish files.
    Put {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Encrypt each file (AES-256-GCM) before it is chunked: holders and the tracker see
        /// ciphertext only, and the printed link carries the key.
        #[arg(long)]
        private: bool,
        /// Private, with a key derived from a passphrase (read from PP_PASSPHRASE or asked on the
        /// terminal; the link says `?pass` instead of carrying the key).
        #[arg(long)]
        passphrase: bool,
    },
    /// Download a file by share link, id (64 hex digits) or exact name.
    Get {
        /// A share link (http://HOST/#/file/ID, as `put` prints), a file id, or an exact file
        /// name. A private file's link carries its key (or `?pass`: the passphrase comes from
        /// PP_PASSPHRASE or a prompt). A link names its tracker: without --tracker (or
        /// PP_TRACKER, or the config file) the file comes through that tracker.
        file: String,
        /// Output path (default: the file's name, made safe, in the current directory); `-` writes
        /// the file's bytes to stdout, in order, each chunk once it is verified (then anything
        /// else, the summary and errors included, even with --json, goes to stderr; a failure
        /// cuts the bytes short and exits non-zero).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite the output if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Search the swarm's files by name.
    Search {
        query: String,
        /// Most results.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// List the files in the swarm and what this peer holds.
    Ls,
    /// Show this peer's id, storage and counters.
    Status,
    /// Read and hash every stored chunk; drop the corrupt ones and tell the tracker.
    Scrub,
    /// Hand this peer's chunks to others, then stop the running peer.
    Leave,
    /// Change the running peer's upload limit (what `status` shows; `--upload-limit` sets it
    /// at start).
    Limit {
        /// Most bytes per second it sends: 2MB/s, 500KiB/s, or off.
        #[arg(long, value_name = "RATE", value_parser = pp_cli::size::rate_arg)]
        upload: Option<String>,
        /// No upload limit.
        #[arg(long, conflicts_with = "upload")]
        no_upload_limit: bool,
    },
    /// Remove a file this peer published from the swarm (by id or exact name): it leaves the
    /// index and its chunks are dropped by the peers that hold copies. Only the identity that
    /// published a file may remove it.
    Rm {
        /// File id or exact file name.
        file: String,
    },
    /// Print a shell completion script: `pp-peer completions bash > ~/.local/share/bash-completion/completions/pp-peer`.
    Completions {
        #[arg(value_enum)]
        shell: pp_cli::docs::Shell,
    },
    /// Print the man page (roff), or a command's: `pp-peer man | man -l -`, `pp-peer man get`.
    Man {
        /// A command, for its own page (pp-peer-COMMAND).
        command: Option<String>,
    },
}

impl Cmd {
    /// Whether stdout carries a file's bytes (`get -o -`): then it carries nothing else.
    fn data_on_stdout(&self) -> bool {
        matches!(self, Cmd::Get { output: Some(o), .. } if native_peer::download::is_stdout(o))
    }
}

/// Prints a line of output: on stdout, or on stderr when stdout carries a file's bytes.
fn say(data_on_stdout: bool, line: &str) {
    if data_on_stdout {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn main() {
    let args = Args::parse();
    match &args.cmd {
        Cmd::Completions { shell } => {
            pp_cli::docs::completions(Args::command(), *shell, &mut std::io::stdout());
            return;
        }
        Cmd::Man { command } => {
            if let Err(e) = pp_cli::docs::man(Args::command(), command.as_deref(), &mut std::io::stdout()) {
                eprintln!("error: {e}");
                std::process::exit(cli::EXIT_USAGE);
            }
            return;
        }
        _ => {}
    }
    // One-shot commands say only what went wrong; a running peer logs what it does.
    let default_log = if matches!(args.cmd, Cmd::Run { .. }) { "info,str0m=warn" } else { "warn,str0m=error" };
    pp_cli::logging::init(args.verbose, default_log, args.log_format);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let bars = Bars::new(args.quiet);
    let json = args.json;
    let data_out = args.cmd.data_on_stdout();
    let code = match rt.block_on(run(args, bars.clone())) {
        Ok(()) => 0,
        Err(e) => {
            bars.clear();
            if json {
                say(data_out, &cli::error_json(&e).to_string());
            }
            eprintln!("error: {}", cli::error_text(&e));
            cli::exit_code(&e)
        }
    };
    // A file being written by a blocking task must not keep the process alive.
    rt.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(code);
}

/// Progress bars on stderr, one per transfer label (hidden when stderr is not a terminal).
#[derive(Clone)]
struct Bars {
    multi: indicatif::MultiProgress,
    bars: Arc<Mutex<HashMap<String, indicatif::ProgressBar>>>,
    quiet: bool,
}

impl Bars {
    fn new(quiet: bool) -> Self {
        let multi = indicatif::MultiProgress::with_draw_target(if quiet {
            indicatif::ProgressDrawTarget::hidden()
        } else {
            indicatif::ProgressDrawTarget::stderr()
        });
        Self { multi, bars: Arc::default(), quiet }
    }

    fn sink(&self) -> control::ProgressSink {
        let me = self.clone();
        Arc::new(move |p: control::ProgressLine| me.update(p))
    }

    fn update(&self, p: control::ProgressLine) {
        if self.quiet {
            return;
        }
        let mut bars = self.bars.lock().unwrap();
        let bar = bars.entry(p.label.clone()).or_insert_with(|| {
            let b = self.multi.add(indicatif::ProgressBar::new(p.total));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:20!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_message(p.label.clone());
            b
        });
        bar.set_length(p.total);
        bar.set_position(p.done);
        if p.done >= p.total {
            bar.finish();
        }
    }

    fn clear(&self) {
        let _ = self.multi.clear();
    }
}

async fn run(args: Args, bars: Bars) -> anyhow::Result<()> {
    str0m::crypto::from_feature_flags().install_process_default();
    let mut settings = args.settings.clone().layered()?;
    let data_dir = settings.data_dir()?;
    let kind = match &args.cmd {
        Cmd::Put { .. } => Kind::Put,
        Cmd::Get { .. } => Kind::Get,
        Cmd::Search { .. } => Kind::Search,
        Cmd::Ls => Kind::Ls,
        Cmd::Status => Kind::Status,
        Cmd::Scrub => Kind::Scrub,
        Cmd::Leave => Kind::Leave,
        Cmd::Limit { .. } => Kind::Limit,
        Cmd::Rm { .. } => Kind::Rm,
        Cmd::Run { .. } | Cmd::Completions { .. } | Cmd::Man { .. } => Kind::Status,
    };
    let mut link_tracker = false;
    let data_out = args.cmd.data_on_stdout();
    let request = match args.cmd {
        Cmd::Run { http, http_hosts, http_header_timeout, scrub_every, resume } => {
            let header_timeout = http_header_timeout.duration();
            if header_timeout.is_zero() || header_timeout > Duration::from_secs(3600) {
                anyhow::bail!("--http-header-timeout must be more than 0 and at most 1h, not {http_header_timeout}");
            }
            let gateway = native_peer::gateway::Options { hosts: http_hosts, header_timeout };
            return run_peer(&settings, &data_dir, http.map(|a| (a, gateway)), scrub_every.duration(), resume).await;
        }
        Cmd::Completions { .. } | Cmd::Man { .. } => return Ok(()),
        Cmd::Leave => Request::Leave,
        Cmd::Limit { upload, no_upload_limit } => {
            anyhow::ensure!(upload.is_some() || no_upload_limit, "say --upload RATE (e.g. 2MB/s) or --no-upload-limit");
            Request::Limit { upload: upload.unwrap_or_else(|| "off".to_string()) }
        }
        Cmd::Put { files, private, passphrase } => Request::Put {
            private: native_peer::private::put_secret(private, passphrase)?,
            paths: files
                .iter()
                .map(|f| {
                    anyhow::ensure!(f.exists(), "cannot open {}: no such file", f.display());
                    anyhow::ensure!(f.is_file(), "{} is not a regular file", f.display());
                    std::path::absolute(f).with_context(|| format!("bad path {}", f.display()))
                })
                .collect::<anyhow::Result<_>>()?,
        },
        Cmd::Get { file, output, force } => {
            // Checks that can fail come before any connection: the link, the output path.
            if let Target::Link(link) = Target::parse(&file).map_err(cli::PeerError::from)? {
                link_tracker = use_link_tracker(&mut settings, &link);
            }
            let output = output.filter(|o| !native_peer::download::is_stdout(o));
            let output = output.map(std::path::absolute).transpose()?;
            let output = if data_out { Some(PathBuf::from("-")) } else { output };
            if let Some(out) = &output {
                native_peer::download::check_output(out, force)?;
            }
            let passphrase = native_peer::private::get_passphrase(&file)?;
            Request::Get {
                passphrase,
                file,
                output,
                force,
                dir: Some(std::env::current_dir().context("no current directory")?),
            }
        }
        Cmd::Status => Request::Status,
        Cmd::Search { query, limit } => Request::Search { query, limit },
        Cmd::Ls => Request::Ls,
        Cmd::Scrub => Request::Scrub,
        Cmd::Rm { file } => Request::Rm { file },
    };
    // A running peer cannot write to this process's stdout: it assembles the file into a
    // temporary file in the data dir, copied out here.
    let via_file = native_peer::download::stdout_via_file(&data_dir);
    let remote_request = match &request {
        Request::Get { file, dir, passphrase, .. } if data_out => Request::Get {
            file: file.clone(),
            output: Some(via_file.clone()),
            force: true,
            dir: dir.clone(),
            passphrase: passphrase.clone(),
        },
        other => other.clone(),
    };
    let result = match control::try_remote(&data_dir, &remote_request, bars.sink()).await? {
        Some(resp) if resp.ok && data_out => {
            bars.clear();
            tokio::task::spawn_blocking(move || native_peer::download::copy_out(&via_file)).await??;
            let mut result = resp.result;
            result["output"] = "-".into();
            result
        }
        Some(resp) if resp.ok => resp.result,
        Some(resp) => {
            bars.clear();
            let code = resp.exit_code.max(1);
            if args.json {
                say(data_out, &cli::error_json_of(code, &resp.error).to_string());
            }
            eprintln!("error: {}", resp.error);
            std::process::exit(code);
        }
        None => {
            if matches!(request, Request::Leave) {
                anyhow::bail!("no peer is running on {}", data_dir.display());
            }
            if matches!(request, Request::Limit { .. }) {
                anyhow::bail!(
                    "no peer is running on {}: `pp-peer limit` changes a running one (start it with --upload-limit)",
                    data_dir.display()
                );
            }
            let mut config = settings.node_config(5)?;
            // A link's tracker never hears a legacy identity's old secret.
            config.migrate_identity = !link_tracker;
            let node = node::Node::start(config, &data_dir).await?;
            let work = async {
                let result = control::execute(&node, request, bars.sink()).await;
                node.flush().await;
                result
            };
            let result = tokio::select! {
                r = work => r,
                sig = pp_cli::signal::shutdown() => {
                    native_peer::download::stop_writing();
                    Err(anyhow::anyhow!("interrupted ({sig})"))
                }
            };
            node.shutdown().await;
            result?
        }
    };
    bars.clear();
    if args.json {
        say(data_out, &result.to_string());
    } else if data_out {
        eprint!("{}", render(kind, &result));
    } else {
        print!("{}", render(kind, &result));
    }
    Ok(())
}

/// A link names its tracker: use it unless one was configured, and say so when the
/// configured one is another. Whether the link's tracker is used.
fn use_link_tracker(settings: &mut PeerSettings, link: &swarm_core::share::ShareLink) -> bool {
    let Some((ws, token)) = link.web.as_deref().and_then(native_peer::links::tracker_of) else { return false };
    match &settings.tracker {
        None => {
            settings.tracker = Some(vec![ws]);
            if settings.join_token.is_none() {
                settings.join_token = token;
            }
            return true;
        }
        Some(t) if !t.iter().flat_map(|t| t.split(',')).any(|t| t.trim() == ws) => {
            tracing::warn!("the link was made for the tracker at {ws}; looking for the file through {}", t.join(","))
        }
        Some(_) => {}
    }
    false
}

/// `pp-peer run`: join, serve, answer the control socket (and HTTP), until SIGINT, SIGTERM
/// or `leave`; then stop cleanly.
/// Carries on with the gets the last run left unfinished (`--resume`), each on a task of its
/// own; without the flag, says how many there are.
fn resume_gets(node: &std::sync::Arc<node::Node>, resume: bool) {
    let pending = node.pending.list();
    if pending.is_empty() {
        return;
    }
    if !resume {
        tracing::info!(
            gets = pending.len(),
            "unfinished gets from the last run (pp-peer run --resume carries on with them)"
        );
        return;
    }
    for get in pending {
        let node = node.clone();
        tokio::spawn(async move {
            let to = get.output.display().to_string();
            tracing::info!(file = %get.file, output = %to, "carrying on with an unfinished get");
            let req = Request::Get {
                file: get.file.to_hex(),
                output: Some(get.output),
                force: get.force,
                dir: None,
                passphrase: None,
            };
            match control::execute(&node, req, control::no_progress()).await {
                Ok(_) => tracing::info!(file = %get.file, output = %to, "unfinished get done"),
                Err(e) => {
                    tracing::warn!(file = %get.file, output = %to, "unfinished get failed: {}", cli::error_text(&e))
                }
            }
        });
    }
}

async fn run_peer(
    settings: &PeerSettings,
    data_dir: &std::path::Path,
    http: Option<(SocketAddr, native_peer::gateway::Options)>,
    scrub_every: Duration,
    resume: bool,
) -> anyhow::Result<()> {
    let config = settings.node_config(u32::MAX)?;
    if config.corrupt_serve {
        tracing::warn!("PP_TEST_CORRUPT_SERVE=1: this peer serves corrupt chunks (tests only)");
    }
    let node = node::Node::start(config, data_dir).await?;
    let stop = control::listen(node.clone(), data_dir).await?;
    if let Some((addr, options)) = http {
        let local = native_peer::gateway::serve(node.clone(), addr, options).await?;
        println!("http gateway on http://{local}/files/{{id}}");
    }
    if !scrub_every.is_zero() {
        let n = node.clone();
        tokio::spawn(async move {
            let every = scrub_every;
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = n.scrub().await {
                    tracing::warn!("scrub failed: {e:#}");
                }
            }
        });
    }
    println!("peer {} running (data dir {})", node.peer_id(), data_dir.display());
    resume_gets(&node, resume);
    let why = tokio::select! {
        sig = pp_cli::signal::shutdown() => sig,
        _ = stop.notified() => "left the swarm",
    };
    tracing::info!("stopping ({why})");
    native_peer::download::stop_writing();
    node.shutdown().await;
    let _ = std::fs::remove_file(control::socket_path(data_dir));
    Ok(())
}
