//! Shared state of the running tracker: the swarm index behind one lock, the outbound queue
//! of every connected peer, connections per address, and traffic counters.

use crate::index::{FileIndex, IndexError};
use crate::outbox::{Frame, Outbox};
use crate::Config;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use swarm_core::swarm::{Output, Swarm};
use swarm_core::PeerId;

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
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

pub struct Connected {
    /// Distinguishes two connections of one peer (a reconnect replaces the older one).
    pub conn_serial: u64,
    pub outbox: Outbox,
}

pub struct Inner {
    pub swarm: Swarm,
    pub connected: HashMap<PeerId, Connected>,
    next_serial: u64,
    /// Files each peer added to the index since the tracker started (for `max_files_per_peer`).
    pub published_by: HashMap<PeerId, u32>,
}

pub struct AppState {
    pub config: Config,
    pub index: Option<FileIndex>,
    /// Flips to true when the server shuts down; connection tasks watch it.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    pub inner: Mutex<Inner>,
    pub counters: Counters,
    pub started_ms: u64,
    started: std::time::Instant,
    /// Open websocket connections per client address.
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl AppState {
    /// Opens the durable index (if configured) and restores every file from it.
    pub fn new(config: Config) -> Result<Self, IndexError> {
        let mut repair = config.repair.clone();
        // Challenge nonces must be unpredictable to peers: the swarm's generator is seeded
        // from the OS at every start.
        repair.trust.seed = rand::random();
        let mut swarm = Swarm::with_config(repair);
        let index = match &config.data_dir {
            Some(dir) => {
                let index = FileIndex::open(dir)?;
                let files = index.load()?;
                tracing::info!(files = files.len(), dir = %dir.display(), "file index loaded");
                for f in files {
                    swarm.restore_file(f);
                }
                Some(index)
            }
            None => None,
        };
        Ok(Self {
            config,
            index,
            shutdown: tokio::sync::watch::Sender::new(false),
            inner: Mutex::new(Inner { swarm, connected: HashMap::new(), next_serial: 1, published_by: HashMap::new() }),
            counters: Counters::default(),
            started_ms: now_ms(),
            started: std::time::Instant::now(),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Milliseconds since start on a monotonic clock (for rate limits).
    pub fn mono_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Takes one connection slot of `ip`, unless it has `max` already (0: no limit).
    pub fn ip_slot(self: &std::sync::Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if max > 0 && *n as usize >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot { state: self.clone(), ip })
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One open connection of an address; released on drop.
pub struct IpSlot {
    state: std::sync::Arc<AppState>,
    ip: IpAddr,
}

impl IpSlot {
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.state.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Inner {
    /// Registers a welcomed connection; returns its serial. An older connection of the same
    /// peer is dropped (its outbox closes, its task ends).
    pub fn connect(&mut self, id: PeerId, outbox: Outbox) -> u64 {
        let serial = self.next_serial;
        self.next_serial += 1;
        if let Some(old) = self.connected.insert(id, Connected { conn_serial: serial, outbox }) {
            old.outbox.close();
        }
        serial
    }

    /// Closes every peer's outbox: their connection tasks end (server shutdown).
    pub fn close_all(&mut self) {
        for c in self.connected.values() {
            c.outbox.close();
        }
    }

    /// Closes the outbox of every peer not heard from for `timeout_ms` (their connection
    /// tasks end); returns how many.
    pub fn close_idle(&self, now_ms: u64, timeout_ms: u64) -> usize {
        let mut closed = 0;
        for (id, c) in &self.connected {
            if now_ms.saturating_sub(c.outbox.last_seen_ms()) >= timeout_ms && !c.outbox.is_closed() {
                tracing::info!(peer = %id, "no heartbeat: dropping peer");
                c.outbox.close();
                closed += 1;
            }
        }
        closed
    }

    /// Whether `serial` is still the live connection of `id`.
    pub fn is_current(&self, id: &PeerId, serial: u64) -> bool {
        self.connected.get(id).is_some_and(|c| c.conn_serial == serial)
    }

    /// Forgets a connection, unless a newer one of the same peer replaced it.
    pub fn disconnect(&mut self, id: &PeerId, serial: u64) {
        if self.connected.get(id).is_some_and(|c| c.conn_serial == serial) {
            self.connected.remove(id);
            self.swarm.leave(id, now_ms());
        }
    }

    /// Carries the swarm's outputs to the peers' outboxes. A peer whose outbox is full is too
    /// slow to keep up: its outbox is closed, which ends its connection (it may reconnect).
    /// Returns how many peers were closed that way.
    pub fn dispatch(&mut self, outputs: Vec<Output>) -> u64 {
        let mut closed = 0;
        for out in outputs {
            match out {
                Output::Send { to, msg } => {
                    if let Some(c) = self.connected.get(&to) {
                        if c.outbox.push(Frame::json(msg)) == Err(crate::outbox::PushError::Full) {
                            tracing::warn!(peer = %to, "peer does not read its messages: dropping it");
                            c.outbox.close();
                            closed += 1;
                        }
                    }
                }
                Output::FileAdded(_) => {}
            }
        }
        closed
    }
}
