//! `pp-tracker` binary: settings from flags, environment and an optional TOML file in, the server
//! from the library out. SIGTERM (a service manager) and Ctrl-C stop it the same way: stop
//! accepting, close the peers' connections, close the index, exit 0.

use anyhow::Context;
use clap::CommandFactory;
use tracker::settings::{Settings, StunListen, Tool};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    match &settings.tool {
        Some(Tool::Completions { shell }) => {
            pp_cli::docs::completions(Settings::command(), *shell, &mut std::io::stdout());
            return Ok(());
        }
        Some(Tool::Man) => return Ok(pp_cli::docs::man(Settings::command(), None, &mut std::io::stdout())?),
        None => {}
    }
    pp_cli::logging::init(0, "info", settings.log_format.unwrap_or_default());
    let mut config = settings.to_config()?;
    // Every peer is an open socket: take all the file descriptors the system allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "file descriptor limit"),
        Err(e) => tracing::warn!("cannot raise the file descriptor limit: {e}"),
    }
    let listen = settings.listen();
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    if let Some(c) = config.cluster.as_mut().filter(|c| c.public_url.is_empty()) {
        c.public_url = format!("ws://{addr}/ws");
        if addr.ip().is_unspecified() {
            tracing::warn!("--public-url is not set and {addr} is no address peers can reach: set it");
        }
    }
    match &config.web_dir {
        Some(dir) => anyhow::ensure!(dir.join("index.html").is_file(), "no index.html in web dir {}", dir.display()),
        None if !tracker::web::embedded() => tracing::warn!(
            "this build has no embedded web app (build it with scripts/build-web.sh, or pass --web-dir); \
             `/` shows how"
        ),
        None => {}
    }
    let stun = match settings.stun_listen()? {
        StunListen::Off => None,
        StunListen::At(at) => {
            Some(tokio::net::UdpSocket::bind(at).await.with_context(|| format!("cannot listen for STUN on udp {at}"))?)
        }
        StunListen::SameAsHttp => match tokio::net::UdpSocket::bind(addr).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("no STUN service: cannot listen on udp {addr}: {e} (choose one with --stun-listen)");
                None
            }
        },
    };
    // Logs go to stderr: stdout has one line, where the tracker listens (tests and scripts
    // read it).
    println!("tracker listening on http://{addr}");
    if let Some(s) = &stun {
        tracing::info!(addr = %s.local_addr()?, "STUN service listening (udp)");
    }
    tracing::info!(%addr, data_dir = ?config.data_dir, max_peers = config.limits.max_peers, "tracker listening");
    if !config.trusted_proxies.is_empty() {
        let nets: Vec<String> = config.trusted_proxies.nets().iter().map(|n| n.to_string()).collect();
        tracing::info!(
            "client addresses of connections from {} come from Forwarded / X-Forwarded-For",
            nets.join(", ")
        );
    }
    tracker::serve_with_stun(listener, stun, config, async {
        let signal = pp_cli::signal::shutdown().await;
        tracing::info!("shutting down ({signal})");
    })
    .await
    .context("server failed")
}
