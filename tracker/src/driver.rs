//! The driver's shared state: the tracker's core ([`crate::core::Core`]) behind one lock that
//! only [`Shared::core`] takes, connections per address with their byte rates, the durable
//! index, traffic counters. Every layer (websocket, HTTP, cluster) reaches the core through
//! it and changes the core only through the core's own methods.

use crate::config::Config;
use crate::core::figures::Figures;
use crate::core::limits::TokenBucket;
use crate::core::{Core, NodeLink, Timers};
use crate::persistence::index::{FileIndex, IndexError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use swarm_core::swarm::policy::AddrKey;
use swarm_core::swarm::Swarm;
use swarm_core::FileId;

/// Traffic counters, exposed by `/api/stats` (tests use them to prove file bytes did not
/// pass through the tracker).
#[derive(Debug, Default)]
pub struct Counters {
    pub ws_connections: AtomicU64,
    pub ws_messages_in: AtomicU64,
    pub ws_messages_out: AtomicU64,
    pub ws_bytes_in: AtomicU64,
    pub ws_bytes_out: AtomicU64,
    /// Relay frames forwarded, and their bytes.
    pub relay_frames: AtomicU64,
    pub relay_bytes: AtomicU64,
    /// Relay frames dropped because the recipient's queue was full.
    pub relay_dropped: AtomicU64,
    /// Relay frames refused (unknown recipient, malformed, too large).
    pub relay_refused: AtomicU64,
    /// Messages and relay frames refused by the rate limits.
    pub rate_limited: AtomicU64,
    /// Messages whose connection was not read for a while first (message byte rates).
    pub read_pauses: AtomicU64,
    /// Connections closed for persistent abuse or a slow reader.
    pub closed_abuse: AtomicU64,
    pub closed_slow: AtomicU64,
    /// Hellos and connections refused by a limit (peers, per address).
    pub limit_refusals: AtomicU64,
    /// STUN datagrams received, answered, ignored (not a binding request we answer) and
    /// refused by the rate limits.
    pub stun_requests: AtomicU64,
    pub stun_answers: AtomicU64,
    pub stun_ignored: AtomicU64,
    pub stun_rate_limited: AtomicU64,
    /// New work refused for the state budget (`over_budget`).
    pub over_budget: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The tracker's state that every layer shares: the swarm behind one lock, connections and
/// their budgets, counters, the durable index. The HTTP and websocket layers see it through
/// `crate::app::AppState`, beside the cluster membership.
pub struct Shared {
    pub config: Config,
    pub index: Option<FileIndex>,
    /// This node's link to its cluster's other nodes (`None`: a single tracker).
    pub nodes: Option<Arc<dyn NodeLink>>,
    /// Flips to true when the server shuts down; connection tasks watch it.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// The core; [`Shared::core`] is the one place that locks it.
    core: Mutex<Core>,
    pub counters: Counters,
    pub started_ms: u64,
    started: std::time::Instant,
    /// Open websocket connections per client address (an IPv6 /64 counts as one).
    per_ip: Mutex<HashMap<AddrKey, AddrConns>>,
    /// TCP connections, counted at accept ([`crate::net::conns`]).
    pub conns: Arc<crate::net::conns::ConnTable>,
    /// The figures the core last published ([`Shared::figures`]) ...
    figures: tokio::sync::watch::Sender<Arc<Figures>>,
    /// ... readers' requests for figures so far ...
    figures_asked: AtomicU64,
    /// Times figures were taken (each a walk of the swarm under the lock).
    pub figures_taken: AtomicU64,
    /// ... and the wake-up of the timer loop, which takes them (`crate::serve`).
    pub figures_wanted: tokio::sync::Notify,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Shared {
    /// Opens the durable index (if configured) and restores every file from it. In a cluster
    /// (`nodes`) the index is the cluster's, and files come with the shards this node takes.
    pub fn new(config: Config, nodes: Option<Arc<dyn NodeLink>>) -> Result<Self, IndexError> {
        let mut repair = config.repair.clone();
        // Challenge nonces must be unpredictable to peers: the swarm's generator is seeded
        // from the OS at every start.
        repair.trust.seed = rand::random();
        let mut swarm = Swarm::with_config(repair);
        if let Some(n) = &nodes {
            swarm.set_id_base((n.tag() as u64) << swarm_core::swarm::ID_RANGE_BITS);
        }
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        let timers = Timers::new(ms(config.idle_timeout), config.unavailable_ttl.map(ms), config.orphan_grace.map(ms));
        let data_dir = if nodes.is_some() { None } else { config.data_dir.as_ref() };
        let index = match data_dir {
            Some(dir) => {
                let index = FileIndex::open(dir)?;
                let files = index.load()?;
                tracing::info!(files = files.len(), dir = %dir.display(), "file index loaded");
                for f in files {
                    swarm.restore_file(f);
                }
                let trust = index.load_trust()?;
                tracing::info!(chunks = trust.len(), "chunk verification state loaded");
                for (chunk, record) in trust {
                    swarm.restore_trust(chunk, record);
                }
                Some(index)
            }
            None => None,
        };
        Ok(Self {
            index,
            nodes: nodes.clone(),
            shutdown: tokio::sync::watch::Sender::new(false),
            core: Mutex::new(Core::new(swarm, config.limits.clone(), timers, nodes)),
            counters: Counters::default(),
            started_ms: now_ms(),
            started: std::time::Instant::now(),
            figures: tokio::sync::watch::Sender::new(Arc::new(Figures::default())),
            figures_asked: AtomicU64::new(0),
            figures_taken: AtomicU64::new(0),
            figures_wanted: tokio::sync::Notify::new(),
            per_ip: Mutex::new(HashMap::new()),
            conns: crate::net::conns::ConnTable::new(
                config.limits.max_connections,
                config.limits.max_conns_per_ip,
                config.trusted_proxies.clone(),
            ),
            config,
        })
    }

    /// The public `/ws` URLs of every tracker node, told to peers in `welcome` (empty: a
    /// single tracker).
    pub fn trackers(&self) -> Vec<String> {
        self.nodes.as_ref().map(|n| n.urls()).unwrap_or_default()
    }

    /// Milliseconds since start on a monotonic clock (for rate limits).
    pub fn mono_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Takes one connection slot of `ip`, unless it has `max` already (0: no limit).
    pub fn ip_slot(self: &std::sync::Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let key = swarm_core::swarm::policy::addr_key(ip);
        if map.len() >= MAX_QUIET_ADDRS && !map.contains_key(&key) {
            // Addresses without connections are kept only for the debt of their byte rate.
            map.retain(|_, a| a.conns > 0);
        }
        let l = &self.config.limits;
        let (rate, burst, now) = (l.msg_bytes_per_sec_per_ip as f64, l.msg_burst_bytes as f64, self.mono_ms());
        let a = map.entry(key).or_insert_with(|| AddrConns {
            conns: 0,
            msg_bytes: TokenBucket::new(rate, burst, now),
            reads: TokenBucket::new(rate, burst, now),
        });
        if max > 0 && a.conns as usize >= max {
            return None;
        }
        a.conns += 1;
        Some(IpSlot { state: self.clone(), ip })
    }

    /// Admits a REST read from `ip` if its read budget (at its message byte rate) is not in debt, taking `base` bytes
    /// (`crate::http::read_charge`); `Err`: milliseconds until it may ask again.
    pub fn admit_read(&self, ip: IpAddr, base: u64, now_ms: u64) -> Result<(), u64> {
        let Some(key) = self.addr_key(ip) else { return Ok(()) };
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_QUIET_ADDRS && !map.contains_key(&key) {
            map.retain(|_, a| a.conns > 0);
        }
        let l = &self.config.limits;
        let (rate, burst) = (l.msg_bytes_per_sec_per_ip as f64, l.msg_burst_bytes as f64);
        let a = map.entry(key).or_insert_with(|| AddrConns {
            conns: 0,
            msg_bytes: TokenBucket::new(rate, burst, now_ms),
            reads: TokenBucket::new(rate, burst, now_ms),
        });
        if a.reads.take(base as f64, now_ms) {
            Ok(())
        } else {
            Err(a.reads.wait_ms(base as f64, now_ms).unwrap_or(1000).max(1))
        }
    }

    /// Charges `ip` for the work a REST read did (into debt if need be: its next read waits).
    pub fn charge_read(&self, ip: IpAddr, bytes: u64, now_ms: u64) {
        let Some(key) = self.addr_key(ip) else { return };
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = map.get_mut(&key) {
            a.reads.reserve(bytes as f64, now_ms);
        }
    }

    /// Takes `len` bytes of a message from `ip`'s byte rate (per address: not for exempt
    /// addresses): how long its connection is to wait before it goes on (ms).
    pub fn reserve_msg_bytes(&self, ip: IpAddr, len: usize, now_ms: u64) -> u64 {
        let Some(key) = self.addr_key(ip) else { return 0 };
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        map.get_mut(&key).map_or(0, |a| a.msg_bytes.reserve(len as f64, now_ms))
    }

    /// The core, locked: take it for one step (handle an input, carry out nothing that
    /// waits), then let go.
    pub fn core(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The swarm's figures, taken after this call began: HTTP reads of `/api/stats` and
    /// `/metrics` wait for the timer loop to take them (one walk for every reader waiting, at
    /// most [`FIGURES_MIN_MS`] apart), never walking the swarm under the lock themselves.
    /// Without the timer loop (shutting down) they are taken here after a while.
    pub async fn figures(&self) -> Arc<Figures> {
        let want = self.figures_asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.figures.subscribe();
        let wait = async {
            loop {
                {
                    let f = rx.borrow_and_update();
                    if f.serves >= want {
                        return f.clone();
                    }
                }
                self.figures_wanted.notify_one();
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        match tokio::time::timeout(std::time::Duration::from_secs(2), wait).await {
            Ok(f) => f,
            Err(_) => {
                self.figures_taken.fetch_add(1, Ordering::Relaxed);
                Arc::new(self.core().figures(want))
            }
        }
    }

    /// Whether a reader waits for figures newer than the last ones.
    pub fn figures_pending(&self) -> bool {
        self.figures_asked.load(Ordering::SeqCst) > self.figures.borrow().serves
    }

    /// Takes the figures (under the core's lock, `core` held by the caller) and publishes
    /// them to the readers waiting.
    pub fn publish_figures(&self, core: &Core) {
        let serves = self.figures_asked.load(Ordering::SeqCst);
        self.figures.send_replace(Arc::new(core.figures(serves)));
        self.figures_taken.fetch_add(1, Ordering::Relaxed);
    }

    /// The key `ip` counts against for the per-address limits (`None`: exempt).
    pub fn addr_key(&self, ip: IpAddr) -> Option<AddrKey> {
        (!self.config.limit_exempt.contains(ip)).then(|| swarm_core::swarm::policy::addr_key(ip))
    }

    /// Writes the swarm's verification changes to the durable index (taken under the lock,
    /// written outside it).
    pub fn save_trust(&self) {
        let Some(index) = &self.index else { return };
        let changes = self.core().take_trust_changes();
        if changes.is_empty() {
            return;
        }
        if let Err(e) = index.save_trust(&changes) {
            tracing::error!("cannot save chunk verification state: {e}");
        }
    }

    /// Removes files from the durable index (they left the swarm's).
    pub fn forget_durably(&self, files: &[FileId]) {
        if let Some(index) = &self.index {
            if let Err(e) = index.remove(files) {
                tracing::error!("cannot remove files from the index: {e}");
            }
        }
    }
}

/// One open connection of an address; released on drop.
pub struct IpSlot {
    state: std::sync::Arc<Shared>,
    ip: IpAddr,
}

impl IpSlot {
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let now = self.state.mono_ms();
        let mut map = self.state.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let key = swarm_core::swarm::policy::addr_key(self.ip);
        if let Some(a) = map.get_mut(&key) {
            a.conns -= 1;
            // Kept while in debt: reconnecting does not wipe an address's byte rate.
            if a.conns == 0 && !a.msg_bytes.in_debt(now) {
                map.remove(&key);
            }
        }
    }
}

/// Figures are taken at most this often, however many readers ask.
pub const FIGURES_MIN_MS: u64 = 100;

/// Addresses kept without connections (for the debt of their byte rate) at most, beyond
/// which they are forgotten.
const MAX_QUIET_ADDRS: usize = 65_536;

/// One client address's open websocket connections, and the bytes of messages they may send
/// together ([`crate::Limits::msg_bytes_per_sec_per_ip`]).
struct AddrConns {
    conns: u32,
    msg_bytes: TokenBucket,
    /// What its REST reads may cost (`crate::http::read_charge`): the same rate, a bucket of its
    /// own (a page polling `/api/stats` does not slow the address's websocket messages).
    reads: TokenBucket,
}
