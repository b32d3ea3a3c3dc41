//! The Peer Pressure tracker: one process that keeps the swarm index, relays WebRTC signalling
//! between peers over its websocket (`/ws`), answers the REST API (`/api/...`) and serves the
//! built web app at `/`.
//!
//! [`serve`] takes an already bound listener and a shutdown future (as mini-redis does), so
//! tests start the real server on port 0. The swarm bookkeeping itself is
//! [`swarm_core::swarm::Swarm`], a plain struct; this crate only drives it.

mod api;
mod app;
pub mod client_addr;
pub mod cluster;
pub mod config;
pub mod conns;
pub mod core;
pub mod ice;
pub mod index;
pub mod limits;
mod metrics;
pub mod outbox;
mod process_metrics;
mod read_charge;
pub mod relay;
mod server;
pub mod settings;
mod state;
pub mod stun;
pub mod web;
pub mod websocket;
mod ws;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::services::{ServeDir, ServeFile};

pub use app::AppState;
pub use config::{Config, Limits};
pub use core::NodeLink;
pub use state::{Counters, Shared};

/// Builds the HTTP router over shared state.
pub fn router(state: Arc<AppState>) -> Router {
    let app = Router::new()
        .route("/ws", get(ws::upgrade))
        .route(
            "/metrics",
            get(metrics::metrics).route_layer(axum::middleware::from_fn_with_state(state.clone(), read_charge::charge)),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(api::routes(state.clone()))
        .with_state(state.clone());
    match &state.config.web_dir {
        Some(dir) => {
            let index = ServeFile::new(dir.join("index.html")).precompressed_br().precompressed_gzip();
            let files = ServeDir::new(dir).precompressed_br().precompressed_gzip().fallback(index);
            let dir = dir.clone();
            let headers = axum::middleware::from_fn(move |req, next| web::dir_headers(dir.clone(), req, next));
            app.fallback_service(Router::new().fallback_service(files).layer(headers))
        }
        // The embedded app, or the page that says how to build one.
        None => app.fallback(web::serve_embedded),
    }
}

/// `/readyz`: 200 while the tracker accepts peers with its index open; 503 once it is
/// shutting down. (`/healthz` answers while the process serves HTTP at all.)
async fn readyz(axum::extract::State(state): axum::extract::State<Arc<AppState>>) -> (StatusCode, &'static str) {
    let index_open = state.config.data_dir.is_none() || state.index.is_some() || state.cluster.is_some();
    let nats_up =
        state.cluster.as_ref().is_none_or(|c| c.client.connection_state() == async_nats::connection::State::Connected);
    if *state.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if !nats_up {
        (StatusCode::SERVICE_UNAVAILABLE, "not connected to the cluster's NATS servers\n")
    } else if *state.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if !index_open {
        (StatusCode::SERVICE_UNAVAILABLE, "file index not open\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// Runs the tracker on `listener` until `shutdown` completes (no STUN service).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_stun(listener, None, config, shutdown).await
}

/// Runs the tracker on `listener`, and its STUN service on `stun` if given, until `shutdown`
/// completes. Peers are told the STUN service's port in `welcome`.
pub async fn serve_with_stun(
    listener: TcpListener,
    stun: Option<tokio::net::UdpSocket>,
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Some(s) = &stun {
        config.stun_port = Some(s.local_addr()?.port());
    }
    let cluster = match &config.cluster {
        Some(c) => Some(cluster::Cluster::connect(c.clone()).await.map_err(std::io::Error::other)?),
        None => None,
    };
    let state = Arc::new(AppState::with_cluster(config, cluster.clone()).map_err(std::io::Error::other)?);
    let cluster_tasks = cluster.as_ref().map(|c| c.start(&state.shared)).unwrap_or_default();
    let stopping = state.clone();
    let timers = tokio::spawn(drive_timers(state.clone()));
    let stun = stun.map(|s| tokio::spawn(stun::serve(s, state.shared.clone())));
    let options = server::Options { header_timeout: state.config.header_timeout, conns: state.conns.clone() };
    let result = server::run(listener, router(state.clone()), options, async move {
        shutdown.await;
        stopping.shutdown.send_replace(true);
        stopping.core().close_all();
    })
    .await;
    timers.abort();
    let _ = timers.await;
    for t in &cluster_tasks {
        t.abort();
    }
    if let Some(c) = &cluster {
        // Let the other nodes take this node's shards at once instead of after the lease time.
        cluster::leases::release_all(&state, c).await;
    }
    {
        let state = state.clone();
        let _ = tokio::task::spawn_blocking(move || state.save_trust()).await;
    }
    if let Some(s) = stun {
        s.abort();
        let _ = s.await;
    }
    // Let the peer connections see the shutdown and let go of the state (and the index).
    for _ in 0..500 {
        if Arc::strong_count(&state) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    result
}

/// The one timer loop: waits for the core's deadline ([`core::Core::poll_timeout`]), hands it
/// the time ([`core::Core::handle_timeout`]) and carries out what comes back: files that left
/// the index are forgotten durably (in a task: the loop never waits on storage), the
/// verification state is written once a second (one write at a time).
async fn drive_timers(state: Arc<AppState>) {
    let mut saving: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let (step, wait) = {
            let mut core = state.core();
            let (now, mono) = (state::now_ms(), state.mono_ms());
            let step = match &state.cluster {
                Some(c) => {
                    let index = c.index();
                    core.handle_timeout(now, mono, |chunk| index.shards_of(chunk).next().is_some())
                }
                None => core.handle_timeout(now, mono, |_| false),
            };
            (step, core.poll_timeout(state.mono_ms()))
        };
        Counters::add(&state.counters.closed_slow, step.closed_slow);
        if !step.removed.is_empty() {
            tokio::spawn(forget_expired(state.clone(), step.removed));
        }
        if step.save_trust && saving.as_ref().is_none_or(|h| h.is_finished()) {
            let state = state.clone();
            saving = Some(tokio::task::spawn_blocking(move || state.save_trust()));
        }
        tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
    }
}

/// Forgets files that left the index for lack of a copy of every chunk (see
/// [`swarm_core::swarm::lifecycle`]): from the cluster's index or the durable one.
async fn forget_expired(state: Arc<AppState>, removed: Vec<swarm_core::FileId>) {
    tracing::info!(files = removed.len(), "files without a copy of every chunk left the index");
    if let Some(c) = &state.cluster {
        for f in &removed {
            if let Err(e) = c.store.remove_file(c.shard_of(f), f).await {
                tracing::error!("cannot remove an expired file from the cluster index: {e}");
            }
        }
    }
    let _ = tokio::task::spawn_blocking(move || state.forget_durably(&removed)).await;
}
