//! `pp-peer`: the Peer Pressure native peer. `run` joins the swarm and serves; `put`, `get`
//! and `status` act through the running peer of the same data dir, or as a short-lived peer.

use native_peer::{cli, control, node};

use anyhow::Context;
use clap::{Parser, Subcommand};
use control::Request;
use std::net::IpAddr;
use std::path::PathBuf;

/// Peer Pressure native peer: joins a swarm, stores chunks on disk, serves and fetches them
/// over WebRTC data channels.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Tracker websocket URL.
    #[arg(long, global = true, env = "PP_TRACKER", default_value = "ws://127.0.0.1:8080/ws")]
    tracker: String,
    /// Where this peer keeps its identity and chunks.
    #[arg(long, global = true, env = "PP_DATA_DIR", default_value = ".pp-data/peer")]
    data_dir: PathBuf,
    /// Local address for WebRTC (UDP) host candidates.
    #[arg(long, global = true, env = "PP_RTC_IP", default_value = "127.0.0.1")]
    rtc_ip: IpAddr,
    /// Most bytes of chunks this peer keeps (e.g. 500M, 20G).
    #[arg(long, global = true, env = "PP_MAX_STORAGE", default_value = "10G", value_parser = parse_size)]
    max_storage: u64,
    /// Seconds a WebRTC data channel has to open before the tracker relay is used.
    #[arg(long, global = true, env = "PP_RTC_TIMEOUT", default_value_t = 8.0)]
    rtc_timeout: f64,
    /// Never use WebRTC: exchange chunks through the tracker relay only.
    #[arg(long, global = true, env = "PP_RELAY_ONLY")]
    relay_only: bool,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Join the swarm and serve chunks until Ctrl-C.
    Run,
    /// Chunk, store and publish files.
    Put {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Download a file by id (64 hex digits) or exact name.
    Get {
        file: String,
        /// Output path (default: the file's name, made safe, in the current directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite the output if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Show this peer's id and counters.
    Status,
    /// Hand this peer's chunks to others, then stop the running peer.
    Leave,
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
    if !(n >= 0.0) {
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
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("error: {e:#}");
        std::process::exit(cli::exit_code(&e));
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    str0m::crypto::from_feature_flags().install_process_default();
    let config = node::NodeConfig {
        tracker_url: args.tracker.clone(),
        rtc_ip: args.rtc_ip,
        max_storage: args.max_storage,
        rtc_timeout: std::time::Duration::from_secs_f64(args.rtc_timeout),
        relay_only: args.relay_only,
        connect_attempts: if matches!(args.cmd, Cmd::Run) { u32::MAX } else { 5 },
    };
    let request = match args.cmd {
        Cmd::Run => {
            let node = node::Node::start(config, &args.data_dir).await?;
            let stop = control::listen(node.clone(), &args.data_dir).await?;
            println!("peer {} running (data dir {})", node.peer_id(), args.data_dir.display());
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                _ = stop.notified() => tracing::info!("left the swarm"),
            }
            let _ = std::fs::remove_file(control::socket_path(&args.data_dir));
            return Ok(());
        }
        Cmd::Leave => Request::Leave,
        Cmd::Put { files } => Request::Put {
            paths: files
                .iter()
                .map(|f| std::path::absolute(f).with_context(|| format!("bad path {}", f.display())))
                .collect::<anyhow::Result<_>>()?,
        },
        Cmd::Get { file, output, force } => {
            Request::Get { file, output: output.map(std::path::absolute).transpose()?, force }
        }
        Cmd::Status => Request::Status,
    };
    let result = match control::try_remote(&args.data_dir, &request).await? {
        Some(resp) if resp.ok => resp.result,
        Some(resp) => {
            eprintln!("error: {}", resp.error);
            std::process::exit(resp.exit_code.max(1));
        }
        None => {
            let node = node::Node::start(config, &args.data_dir).await?;
            control::execute(&node, request).await?
        }
    };
    if args.json {
        println!("{result}");
    } else {
        print_human(&result);
    }
    Ok(())
}

fn print_human(v: &serde_json::Value) {
    if let Some(files) = v.get("files").and_then(|f| f.as_array()) {
        for f in files {
            println!(
                "{}  {}  ({} bytes, {} chunks)",
                f["id"].as_str().unwrap_or(""),
                f["name"].as_str().unwrap_or(""),
                f["size"],
                f["chunks"]
            );
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
