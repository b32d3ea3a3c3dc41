//! The Peer Pressure tracker: one process that keeps the swarm index, relays WebRTC signalling
//! between peers over its websocket (`/ws`), answers the REST API (`/api/...`) and serves the
//! built web app at `/`.
//!
//! [`serve`] takes an already bound listener and a shutdown future (as mini-redis does), so
//! tests start the real server on port 0. The swarm bookkeeping itself is
//! [`swarm_core::swarm::Swarm`], a plain struct; this crate only drives it.

mod api;
pub mod index;
mod state;
mod ws;

use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::services::{ServeDir, ServeFile};

pub use state::{AppState, Counters};

/// Tracker settings (the binary fills them from flags and environment).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the durable file index lives; `None` keeps the index in memory only.
    pub data_dir: Option<PathBuf>,
    /// Directory holding the built web app (`index.html`, wasm, js); `None` serves no page.
    pub web_dir: Option<PathBuf>,
    /// A peer that sends nothing for this long is dropped.
    pub idle_timeout: Duration,
    /// Time a new connection has to say hello.
    pub hello_timeout: Duration,
    /// Replication factor, grace period and repair limits.
    pub repair: swarm_core::swarm::repair::RepairConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: None,
            web_dir: None,
            idle_timeout: Duration::from_secs(45),
            hello_timeout: Duration::from_secs(10),
            repair: Default::default(),
        }
    }
}

/// Builds the HTTP router over shared state.
pub fn router(state: Arc<AppState>) -> Router {
    let mut app = Router::new().route("/ws", get(ws::upgrade)).merge(api::routes()).with_state(state.clone());
    if let Some(dir) = &state.config.web_dir {
        let index = dir.join("index.html");
        app = app.fallback_service(ServeDir::new(dir).fallback(ServeFile::new(index)));
    }
    app
}

/// Runs the tracker on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new(AppState::new(config).map_err(std::io::Error::other)?);
    let stopping = state.clone();
    let repair = tokio::spawn(repair_loop(state.clone()));
    let result = axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.shutdown.send_replace(true);
        })
        .await;
    repair.abort();
    let _ = repair.await;
    // Let the peer connections see the shutdown and let go of the state (and the index).
    for _ in 0..500 {
        if Arc::strong_count(&state) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    result
}

/// Drives the swarm's timers: grace periods, repair checks, order timeouts, leave answers.
async fn repair_loop(state: Arc<AppState>) {
    loop {
        let next = {
            let mut inner = state.lock();
            let now = state::now_ms();
            let out = inner.swarm.tick(now);
            inner.dispatch(out);
            inner.swarm.next_deadline().map(|d| d.saturating_sub(now))
        };
        let wait = next.unwrap_or(250).clamp(10, 250);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}
