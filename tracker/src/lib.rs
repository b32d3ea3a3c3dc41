//! The Peer Pressure tracker: one process that keeps the swarm index, relays WebRTC signalling
//! between peers over its websocket (`/ws`), answers the REST API (`/api/...`) and serves the
//! built web app at `/`.
//!
//! [`serve`] takes an already bound listener and a shutdown future (as mini-redis does), so
//! tests start the real server on port 0. The swarm bookkeeping itself is
//! [`swarm_core::swarm::Swarm`], a plain struct; this crate only drives it.

mod api;
mod app;
mod budget;
pub mod client_addr;
pub mod cluster;
pub mod conns;
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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::services::{ServeDir, ServeFile};

pub use app::AppState;
pub use state::{Counters, NodeLink, Shared};

/// Tracker settings (the binary fills them from flags and environment).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the durable file index lives; `None` keeps the index in memory only.
    pub data_dir: Option<PathBuf>,
    /// Directory holding the built web app (`index.html`, wasm, js); `None` serves no page.
    pub web_dir: Option<PathBuf>,
    /// ICE servers configured by the operator, handed to peers after the tracker's own.
    pub ice_servers: Vec<swarm_core::IceServer>,
    /// The TURN servers' shared secret: TURN entries without credentials get short-lived
    /// ones per peer ([`ice`]); `None`: only static credentials, if configured.
    pub turn: Option<ice::TurnSecret>,
    /// UDP port of the tracker's own STUN service ([`serve_with_stun`] sets it).
    pub stun_port: Option<u16>,
    /// A peer that sends nothing for this long is dropped.
    pub idle_timeout: Duration,
    /// Time a new connection has to say hello.
    pub hello_timeout: Duration,
    /// A peer whose socket does not take a batch of frames within this time is dropped.
    pub send_timeout: Duration,
    /// Time for an HTTP request head to arrive whole, and for an idle kept-alive HTTP
    /// connection to send its next request ([`server`]).
    pub header_timeout: Duration,
    /// Replication factor, grace period and repair limits.
    pub repair: swarm_core::swarm::repair::RepairConfig,
    /// What one peer or connection may do.
    pub limits: Limits,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers name the client address
    /// (for per-address limits and logs); empty: those headers are ignored.
    pub trusted_proxies: client_addr::TrustedProxies,
    /// Client addresses the per-address identity, publish and file limits do not apply to
    /// (default: loopback, where tests, `scripts/up.sh` and an untrusted local proxy put
    /// every peer). The connections-per-address limit applies to them all the same.
    pub limit_exempt: client_addr::TrustedProxies,
    /// Join tokens of a private swarm: when any is set, `hello` must carry one of them.
    /// Empty: the tracker is open.
    pub join_tokens: Vec<String>,
    /// A file with a chunk nobody holds leaves the index after this long (it is left out of
    /// search and listings at once); `None`: never.
    pub unavailable_ttl: Option<Duration>,
    /// A copy of a chunk no file uses is trimmed once it has been so this long and its
    /// holder announced nothing for this long ([`swarm_core::swarm::orphans`]); `None`: never.
    pub orphan_grace: Option<Duration>,
    /// Join a tracker cluster through NATS ([`cluster`]); `None`: a single tracker.
    pub cluster: Option<cluster::ClusterConfig>,
    /// This tracker's websocket URLs as peers reach it (`--public-url`): a `hello` is accepted
    /// when signed for one of their origins, or for the socket address the connection arrived
    /// on ([`swarm_core::identity::origin_accepted`]).
    pub public_urls: Vec<String>,
}

/// Limits that keep one peer (or many) from taking the tracker down. Each refusal comes with
/// an error message that says which limit was hit.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Live peers at once; a hello beyond it is refused with `limit_reached`.
    pub max_peers: usize,
    /// Open connections per client address (0: no limit; an IPv6 /64 counts as one address):
    /// TCP connections at accept ([`conns`]), and behind a trusted proxy websockets by the
    /// address the proxy forwarded (see [`client_addr`]).
    pub max_conns_per_ip: usize,
    /// Open TCP connections in all, counted at accept (0: no limit).
    pub max_connections: usize,
    /// Largest `signal` a peer may send, in bytes of its JSON text (SDP, candidate).
    pub max_signal_bytes: usize,
    /// Files one peer may add to the index (counted since the tracker started).
    pub max_files_per_peer: u32,
    /// Chunks in one manifest (at most [`swarm_core::content::MAX_CHUNKS`]).
    pub max_manifest_chunks: usize,
    /// Messages per second per connection (token bucket; 0: no limit) ...
    pub msgs_per_sec: u32,
    /// ... and how many may come at once.
    pub msg_burst: u32,
    /// Relay bytes per second per connection (token bucket; 0: no limit) ...
    pub relay_bytes_per_sec: u64,
    /// ... and how many may come at once (at least one full relay frame).
    pub relay_burst_bytes: u64,
    /// Bytes of messages (JSON text) per second per connection (0: no limit), and per client
    /// address (not exempt ones) for all its connections together: past either, the
    /// connection is not read until it may go on (backpressure: what a stranger sends costs
    /// the tracker parsing and lock time, so an unlimited uplink must not buy more of it) ...
    pub msg_bytes_per_sec: u64,
    pub msg_bytes_per_sec_per_ip: u64,
    /// ... and how many bytes may come at once (by default one largest message,
    /// [`swarm_core::wire::MAX_MESSAGE_BYTES`]; a larger message waits for what it is over).
    pub msg_burst_bytes: u64,
    /// What a search costs of the message byte rates per name index entry it looked at (a
    /// precise query looks at a few, the broadest at every name: 0.02–7 ms at 100,000 files,
    /// release build); REST reads are charged per entry they walk at the same price, against a
    /// read budget per address (`tracker/src/read_charge.rs`). 0: free.
    pub search_bytes_per_file: u64,
    /// Refused messages in one episode (no quiet second between) before the connection is
    /// closed.
    pub abuse_limit: u32,
    /// Frames queued for one peer before it counts as too slow.
    pub outbox_frames: usize,
    /// Bytes queued for one peer before relay frames to it are dropped.
    pub outbox_bytes: usize,
    /// Distinct identities live at once from one client address (an IPv6 /64 counts as one;
    /// 0: no limit). Not applied to [`Config::limit_exempt`] addresses.
    pub max_identities_per_ip: u32,
    /// New files published per hour from one client address (0: no limit).
    pub max_publishes_per_hour_per_ip: u32,
    /// Files in the index published from one client address (counted since start; 0: no limit).
    pub max_files_per_ip: u32,
    /// Chunks (manifest entries) in the index published from one client address (0: no limit).
    pub max_chunks_per_ip: u64,
    /// The estimated bytes of tracker state ([`swarm_core::swarm::budget`]) near which new work
    /// from the heaviest addresses is refused (0: no budget) ...
    pub state_budget: u64,
    /// ... and one client address's share of it (0: no limit).
    pub state_budget_per_ip: u64,
}

impl Limits {
    /// The per-address limits as [`swarm_core::swarm::policy`] takes them.
    pub fn address(&self) -> swarm_core::swarm::policy::AddressLimits {
        swarm_core::swarm::policy::AddressLimits {
            max_identities: self.max_identities_per_ip,
            max_publishes_per_hour: self.max_publishes_per_hour_per_ip,
            max_files: self.max_files_per_ip,
            max_chunks: self.max_chunks_per_ip,
        }
    }

    /// The state budget as [`swarm_core::swarm::budget`] takes it.
    pub fn budget(&self) -> swarm_core::swarm::budget::StateBudget {
        swarm_core::swarm::budget::StateBudget { total: self.state_budget, per_addr: self.state_budget_per_ip }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_peers: 20_000,
            max_conns_per_ip: 1_000,
            max_connections: 30_000,
            max_signal_bytes: 64 * 1024,
            max_files_per_peer: 10_000,
            max_manifest_chunks: swarm_core::content::MAX_CHUNKS,
            msgs_per_sec: 1000,
            msg_burst: 2000,
            relay_bytes_per_sec: 8 << 20,
            relay_burst_bytes: 1 << 20,
            msg_bytes_per_sec: 1 << 20,
            msg_bytes_per_sec_per_ip: 2 << 20,
            msg_burst_bytes: swarm_core::wire::MAX_MESSAGE_BYTES as u64,
            search_bytes_per_file: 8,
            abuse_limit: 1_000,
            outbox_frames: 1_024,
            outbox_bytes: 2 << 20,
            max_identities_per_ip: 256,
            max_publishes_per_hour_per_ip: 1_000,
            max_files_per_ip: 20_000,
            max_chunks_per_ip: swarm_core::content::MAX_CHUNKS as u64,
            state_budget: 1 << 30,
            state_budget_per_ip: 64 << 20,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: None,
            web_dir: None,
            ice_servers: Vec::new(),
            turn: None,
            stun_port: None,
            idle_timeout: Duration::from_secs(45),
            hello_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            repair: Default::default(),
            limits: Limits::default(),
            trusted_proxies: Default::default(),
            limit_exempt: client_addr::TrustedProxies::loopback(),
            join_tokens: Vec::new(),
            unavailable_ttl: Some(Duration::from_secs(24 * 3600)),
            orphan_grace: Some(Duration::from_secs(120)),
            cluster: None,
            public_urls: Vec::new(),
        }
    }
}

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
    let repair = tokio::spawn(repair_loop(state.clone()));
    let sweep = tokio::spawn(idle_sweep(state.clone()));
    let expire = tokio::spawn(expire_unavailable(state.clone()));
    let orphans = tokio::spawn(trim_orphans(state.clone()));
    let save = tokio::spawn(save_trust(state.clone()));
    let stun = stun.map(|s| tokio::spawn(stun::serve(s, state.shared.clone())));
    let options = server::Options { header_timeout: state.config.header_timeout, conns: state.conns.clone() };
    let result = server::run(listener, router(state.clone()), options, async move {
        shutdown.await;
        stopping.shutdown.send_replace(true);
        stopping.lock().close_all();
    })
    .await;
    repair.abort();
    sweep.abort();
    save.abort();
    for t in &cluster_tasks {
        t.abort();
    }
    if let Some(c) = &cluster {
        // Let the other nodes take this node's shards at once instead of after the lease time.
        cluster::leases::release_all(&state, c).await;
    }
    let _ = save.await;
    {
        let state = state.clone();
        let _ = tokio::task::spawn_blocking(move || state.save_trust()).await;
    }
    expire.abort();
    let _ = expire.await;
    orphans.abort();
    let _ = orphans.await;
    if let Some(s) = stun {
        s.abort();
        let _ = s.await;
    }
    let _ = repair.await;
    let _ = sweep.await;
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
            let slow = inner.dispatch(out);
            Counters::add(&state.counters.closed_slow, slow);
            inner.swarm.next_deadline().map(|d| d.saturating_sub(now))
        };
        let wait = next.unwrap_or(50).clamp(10, 50);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// Writes the swarm's verification state (origins, nonce pools) to the index every second.
async fn save_trust(state: Arc<AppState>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let state = state.clone();
        let _ = tokio::task::spawn_blocking(move || state.save_trust()).await;
    }
}

/// Drops peers that sent nothing for `idle_timeout`: one timer for all connections (a timer
/// per connection would be memory every idle peer carries). A peer goes between
/// `idle_timeout` and `idle_timeout` plus a quarter of it after its last message.
async fn idle_sweep(state: Arc<AppState>) {
    let timeout = state.config.idle_timeout;
    let period = (timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(5));
    loop {
        tokio::time::sleep(period).await;
        let now = state.mono_ms();
        state.lock().close_idle(now, timeout.as_millis() as u64);
    }
}

/// Tells holders of chunks no file uses to let them go, a few times per `orphan_grace` (see
/// [`swarm_core::swarm::orphans`]). A cluster node spares chunks of files other nodes keep.
async fn trim_orphans(state: Arc<AppState>) {
    let Some(grace) = state.config.orphan_grace else { return std::future::pending().await };
    let period = (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        tokio::time::sleep(period).await;
        let mut inner = state.lock();
        let (now, grace) = (state::now_ms(), grace.as_millis() as u64);
        let out = match &state.cluster {
            Some(c) => {
                let index = c.index();
                inner.swarm.trim_orphans(now, grace, |chunk| index.shards_of(chunk).next().is_some())
            }
            None => inner.swarm.trim_orphans(now, grace, |_| false),
        };
        if !out.is_empty() {
            let slow = inner.dispatch(out);
            Counters::add(&state.counters.closed_slow, slow);
        }
    }
}

/// Drops files that have had a chunk nobody holds for `unavailable_ttl` (see
/// [`swarm_core::swarm::lifecycle`]), a few times per that time, and forgets per-address
/// publish budgets that have refilled.
async fn expire_unavailable(state: Arc<AppState>) {
    let Some(ttl) = state.config.unavailable_ttl else { return std::future::pending().await };
    let period = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::time::sleep(period).await;
        let removed = {
            let mut inner = state.lock();
            let out = inner.swarm.expire_unavailable(state::now_ms(), ttl.as_millis() as u64);
            let removed = inner.files_removed(&out);
            let slow = inner.dispatch(out);
            Counters::add(&state.counters.closed_slow, slow);
            inner.prune_addrs(state.mono_ms(), state.config.limits.max_publishes_per_hour_per_ip);
            removed
        };
        if !removed.is_empty() {
            tracing::info!(files = removed.len(), "files without a copy of every chunk left the index");
            if let Some(c) = &state.cluster {
                for f in &removed {
                    if let Err(e) = c.store.remove_file(c.shard_of(f), f).await {
                        tracing::error!("cannot remove an expired file from the cluster index: {e}");
                    }
                }
            }
            let st = state.clone();
            let _ = tokio::task::spawn_blocking(move || st.forget_durably(&removed)).await;
        }
    }
}
