//! Starting and stopping the tracker. [`serve_with_stun`] opens the driver's state
//! ([`crate::driver::Shared`]: the core behind its lock, the durable index, counters), joins
//! the cluster if configured, starts the one timer loop ([`drive_timers`]), the STUN service and
//! the HTTP server, and on shutdown stops them in order (leases given up, verification state
//! saved, connections let go).
//!
//! [`serve`] takes an already bound listener and a shutdown future (as mini-redis does), so
//! tests start the real server on port 0.

use crate::app::AppState;
use crate::config::Config;
use crate::driver::{now_ms, Counters, FIGURES_MIN_MS};
use crate::transport::stun;
use crate::{cluster, http};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

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
    let options = http::server::Options { header_timeout: state.config.header_timeout, conns: state.conns.clone() };
    let result = http::server::run(listener, http::router(state.clone()), options, async move {
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

/// The one timer loop: waits for the core's deadline ([`crate::core::Core::poll_timeout`]) or
/// a reader's request for figures, hands the core the time
/// ([`crate::core::Core::handle_timeout`]) and carries out what comes back: files that left the
/// index are forgotten durably (in a task: the loop never waits on storage), the verification
/// state is written once a second (one write at a time), figures are published for the
/// readers waiting (at most every [`FIGURES_MIN_MS`]).
async fn drive_timers(state: Arc<AppState>) {
    let mut saving: Option<tokio::task::JoinHandle<()>> = None;
    let mut figures_at: Option<u64> = None;
    loop {
        let (step, wait) = {
            let mut core = state.core();
            let (now, mono) = (now_ms(), state.mono_ms());
            let step = match &state.cluster {
                Some(c) => {
                    let index = c.index();
                    core.handle_timeout(now, mono, |chunk| index.shards_of(chunk).next().is_some())
                }
                None => core.handle_timeout(now, mono, |_| false),
            };
            let mono = state.mono_ms();
            let mut wait = core.poll_timeout(mono);
            if state.figures_pending() {
                let next = figures_at.map_or(0, |t| t + FIGURES_MIN_MS);
                if mono >= next {
                    state.publish_figures(&core);
                    figures_at = Some(mono);
                } else {
                    wait = wait.min(next - mono);
                }
            }
            (step, wait)
        };
        Counters::add(&state.counters.closed_slow, step.closed_slow);
        if !step.removed.is_empty() {
            tokio::spawn(forget_expired(state.clone(), step.removed));
        }
        if step.save_trust && saving.as_ref().is_none_or(|h| h.is_finished()) {
            let state = state.clone();
            saving = Some(tokio::task::spawn_blocking(move || state.save_trust()));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wait.max(1))) => {}
            () = state.figures_wanted.notified() => {}
        }
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
