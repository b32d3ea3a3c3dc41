//! `tracker` binary: flags and environment in, the server from the library out.

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Peer Pressure tracker: swarm index, WebRTC signalling hub, REST API and web app server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "PP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the tracker keeps its durable file index.
    #[arg(long, env = "PP_TRACKER_DATA_DIR", default_value = ".pp-data/tracker")]
    data_dir: PathBuf,
    /// Directory of the built web app to serve at `/` (trunk's dist/).
    #[arg(long, env = "PP_WEB_DIR")]
    web_dir: Option<PathBuf>,
    /// Copies every chunk is kept on (at least 2).
    #[arg(long, env = "PP_REPLICATION", default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..))]
    replication: u32,
    /// Seconds a departed peer's chunks wait before they are re-replicated.
    #[arg(long, env = "PP_GRACE_SECS", default_value_t = 3.0)]
    grace_secs: f64,
    /// Seconds of silence after which a peer counts as gone.
    #[arg(long, env = "PP_IDLE_TIMEOUT", default_value_t = 45)]
    idle_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    if let Some(dir) = &args.web_dir {
        anyhow::ensure!(dir.join("index.html").is_file(), "no index.html in web dir {}", dir.display());
    }
    let config = tracker::Config {
        data_dir: Some(args.data_dir),
        web_dir: args.web_dir,
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout),
        repair: swarm_core::swarm::repair::RepairConfig {
            replication: args.replication as usize,
            grace_ms: (args.grace_secs * 1000.0) as u64,
            ..Default::default()
        },
        ..Default::default()
    };
    println!("tracker listening on http://{addr}");
    tracing::info!(%addr, "tracker listening");
    tracker::serve(listener, config, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
    .await
    .context("server failed")
}
