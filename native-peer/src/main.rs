//! `pp-peer`: the Peer Pressure native peer. `run` joins the swarm and serves; the other
//! commands act through the running peer of the same data dir (its control socket), or as a
//! short-lived peer when none runs.

use native_peer::{cli, control, node};

use anyhow::Context;
use clap::{Parser, Subcommand};
use control::Request;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Peer Pressure native peer: joins a swarm, stores chunks on disk, serves and fetches them
/// over WebRTC data channels (or the tracker relay).
///
/// Commands other than `run` act through the running peer of the same data dir when there is
/// one, and otherwise as a short-lived peer.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about,
    after_help = "Exit codes: 0 ok, 1 failure, 2 bad usage, 3 no such file in the swarm, 4 output exists \
                  (use --force), 5 tracker unreachable, 6 no room to store the chunks, 7 not allowed (rm of a file \
                  another peer published, or a join token the tracker does not accept)."
)]
struct Args {
    /// Tracker websocket URL: ws://HOST:PORT/ws, or wss://HOST/ws through a TLS proxy.
    #[arg(long, global = true, env = "PP_TRACKER", default_value = "ws://127.0.0.1:8080/ws")]
    tracker: String,
    /// An extra CA certificate (PEM file) to trust for a wss:// tracker, besides the system's
    /// (for self-hosted deployments with their own CA).
    #[arg(long, global = true, env = "PP_TRACKER_CA", value_name = "FILE")]
    tracker_ca: Option<PathBuf>,
    /// Where this peer keeps its identity and chunks.
    #[arg(long, global = true, env = "PP_DATA_DIR", default_value = ".pp-data/peer")]
    data_dir: PathBuf,
    /// The one local address for WebRTC (UDP) host candidates [default: every usable interface
    /// address; loopback only when the tracker is on loopback].
    #[arg(long, global = true, env = "PP_RTC_IP")]
    rtc_ip: Option<IpAddr>,
    /// Most bytes of chunks this peer keeps (e.g. 500M, 20G).
    #[arg(long, global = true, env = "PP_MAX_STORAGE", default_value = "10G", value_parser = parse_size)]
    max_storage: u64,
    /// Seconds a WebRTC data channel has to open before the attempt is given up (requests
    /// travel through the tracker relay from 0.3 s on, and move to the channel when it opens).
    #[arg(long, global = true, env = "PP_RTC_TIMEOUT", default_value_t = 8.0)]
    rtc_timeout: f64,
    /// The join token of a private tracker (one started with --join-token).
    #[arg(long, global = true, env = "PP_JOIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Never use WebRTC: exchange chunks through the tracker relay only.
    #[arg(long, global = true, env = "PP_RELAY_ONLY")]
    relay_only: bool,
    /// Print results as JSON on stdout (progress bars, if any, stay on stderr).
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Join the swarm and serve chunks until Ctrl-C (or `leave`).
    Run {
        /// Serve files over HTTP on this address: `GET /files/{id}` (Range, HEAD).
        #[arg(long, value_name = "ADDR")]
        http: Option<SocketAddr>,
        /// Seconds between scrubs of the chunk store (0: never).
        #[arg(long, default_value_t = 3600, value_name = "SECS")]
        scrub_every: u64,
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
        /// Share link (a private file's carries its key), file id or exact file name.
        file: String,
        /// Output path (default: the file's name, made safe, in the current directory).
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
    /// Remove a file this peer published from the swarm (by id or exact name): it leaves the
    /// index and its chunks are dropped by the peers that hold copies. Only the identity that
    /// published a file may remove it.
    Rm {
        /// File id or exact file name.
        file: String,
    },
}

/// Parses sizes like `1048576`, `512K`, `500M`, `20G`, `1T` (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix {c:?} (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("not a size: {s:?}"))?;
    if n.is_nan() || n < 0.0 {
        return Err(format!("not a size: {s:?}"));
    }
    Ok((n * mult as f64) as u64)
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,str0m=warn".into()),
        )
        .init();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let bars = Bars::new(args.quiet);
    if let Err(e) = rt.block_on(run(args, bars.clone())) {
        bars.clear();
        eprintln!("error: {e:#}");
        std::process::exit(cli::exit_code(&e));
    }
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
    let config = node::NodeConfig {
        tracker_url: args.tracker.clone(),
        tracker_ca: args.tracker_ca.clone(),
        rtc_ip: args.rtc_ip,
        max_storage: args.max_storage,
        rtc_timeout: std::time::Duration::from_secs_f64(args.rtc_timeout),
        relay_only: args.relay_only,
        connect_attempts: if matches!(args.cmd, Cmd::Run { .. }) { u32::MAX } else { 5 },
        corrupt_serve: std::env::var_os("PP_TEST_CORRUPT_SERVE").is_some_and(|v| v == "1"),
        no_nonces: std::env::var_os("PP_NO_NONCES").is_some_and(|v| v == "1"),
        join_token: args.join_token.clone(),
    };
    let request = match args.cmd {
        Cmd::Run { http, scrub_every } => {
            if config.corrupt_serve {
                tracing::warn!("PP_TEST_CORRUPT_SERVE=1: this peer serves corrupt chunks (tests only)");
            }
            let node = node::Node::start(config, &args.data_dir).await?;
            let stop = control::listen(node.clone(), &args.data_dir).await?;
            if let Some(addr) = http {
                let local = native_peer::gateway::serve(node.clone(), addr).await?;
                println!("http gateway on http://{local}/files/{{id}}");
            }
            if scrub_every > 0 {
                let n = node.clone();
                tokio::spawn(async move {
                    let every = std::time::Duration::from_secs(scrub_every);
                    loop {
                        tokio::time::sleep(every).await;
                        if let Err(e) = n.scrub().await {
                            tracing::warn!("scrub failed: {e:#}");
                        }
                    }
                });
            }
            println!("peer {} running (data dir {})", node.peer_id(), args.data_dir.display());
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                _ = stop.notified() => tracing::info!("left the swarm"),
            }
            let _ = std::fs::remove_file(control::socket_path(&args.data_dir));
            return Ok(());
        }
        Cmd::Leave => Request::Leave,
        Cmd::Put { files, private, passphrase } => Request::Put {
            private: native_peer::private::put_secret(private, passphrase)?,
            paths: files
                .iter()
                .map(|f| std::path::absolute(f).with_context(|| format!("bad path {}", f.display())))
                .collect::<anyhow::Result<_>>()?,
        },
        Cmd::Get { file, output, force } => Request::Get {
            passphrase: native_peer::private::get_passphrase(&file)?,
            file,
            output: output.map(std::path::absolute).transpose()?,
            force,
            dir: Some(std::env::current_dir().context("no current directory")?),
        },
        Cmd::Status => Request::Status,
        Cmd::Search { query, limit } => Request::Search { query, limit },
        Cmd::Ls => Request::Ls,
        Cmd::Scrub => Request::Scrub,
        Cmd::Rm { file } => Request::Rm { file },
    };
    let result = match control::try_remote(&args.data_dir, &request, bars.sink()).await? {
        Some(resp) if resp.ok => resp.result,
        Some(resp) => {
            bars.clear();
            eprintln!("error: {}", resp.error);
            std::process::exit(resp.exit_code.max(1));
        }
        None => {
            if matches!(request, Request::Leave) {
                anyhow::bail!("no peer is running on {}", args.data_dir.display());
            }
            let node = node::Node::start(config, &args.data_dir).await?;
            let result = control::execute(&node, request, bars.sink()).await?;
            node.flush().await;
            result
        }
    };
    if args.json {
        println!("{result}");
    } else {
        print_human(&result);
    }
    Ok(())
}

fn print_files(files: &[serde_json::Value]) {
    for f in files {
        if let Some(link) = f.get("link").and_then(|l| l.as_str()) {
            println!("{}  {}  (private) {link}", f["id"].as_str().unwrap_or(""), f["name"].as_str().unwrap_or(""));
            continue;
        }
        let holders = f.get("min_holders").map(|h| format!(", {h} copies")).unwrap_or_default();
        let held = f.get("chunks_held").map(|h| format!(", {h} held here")).unwrap_or_default();
        println!(
            "{}  {}  ({} bytes, {} chunks{holders}{held})",
            f["id"].as_str().unwrap_or(""),
            f["name"].as_str().unwrap_or(""),
            f["size"],
            f["chunks"]
        );
    }
}

fn print_human(v: &serde_json::Value) {
    if let (Some(swarm), Some(local)) =
        (v.get("swarm").and_then(|f| f.as_array()), v.get("local").and_then(|f| f.as_array()))
    {
        println!("In the swarm ({}):", swarm.len());
        print_files(swarm);
        println!("Known to this peer ({}), {} chunks held:", local.len(), v["chunks_held"]);
        print_files(local);
    } else if let Some(files) = v.get("files").and_then(|f| f.as_array()) {
        if files.is_empty() {
            println!("no files");
        }
        print_files(files);
    } else if let Some(id) = v.get("removed") {
        match v["name"].as_str() {
            Some(name) => println!("removed {} ({name}) from the swarm", id.as_str().unwrap_or("")),
            None => println!("removed {} from the swarm", id.as_str().unwrap_or("")),
        }
    } else if let Some(out) = v.get("output") {
        println!(
            "{} -> {} ({} bytes in {:.2} s)",
            v["id"].as_str().unwrap_or(""),
            out.as_str().unwrap_or(""),
            v["size"],
            v["seconds"].as_f64().unwrap_or(0.0)
        );
    } else {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
}
