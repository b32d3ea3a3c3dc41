//! Shared state of the running tracker: the swarm index behind one lock, the outbound queue
//! of every connected peer, connections per address, what each client address uses
//! (identities, files, publish budget: [`AddrUse`]), and traffic counters.

use crate::index::{FileIndex, IndexError};
use crate::limits::TokenBucket;
use crate::outbox::{Frame, Outbox};
use crate::Config;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use swarm_core::swarm::policy::{AddrKey, PublishBudget};
use swarm_core::swarm::{Output, Swarm};
use swarm_core::FileId;
use swarm_core::PeerId;
use swarm_core::ServerMsg;

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

pub struct Connected {
    /// Distinguishes two connections of one peer (a reconnect replaces the older one).
    pub conn_serial: u64,
    pub outbox: Outbox,
    /// The client address it counts against (`None`: exempt from the per-address limits).
    pub addr: Option<AddrKey>,
}

/// What one client address uses, for the per-address limits.
#[derive(Debug)]
pub struct AddrUse {
    /// Identities live from it now.
    pub identities: HashSet<PeerId>,
    /// Files in the index published from it (since start).
    pub files: u32,
    /// Chunks of those files (manifest entries).
    pub chunks: u64,
    pub budget: PublishBudget,
}

pub struct Inner {
    pub swarm: Swarm,
    pub connected: HashMap<PeerId, Connected>,
    next_serial: u64,
    /// Files each peer added to the index since the tracker started (for `max_files_per_peer`).
    pub published_by: HashMap<PeerId, u32>,
    /// Per client address (not exempt ones): identities, files, publish budget.
    pub addrs: HashMap<AddrKey, AddrUse>,
    /// The address each file published since start came from, and its chunks (to count them
    /// down on removal).
    pub file_addr: HashMap<FileId, (AddrKey, u64)>,
    /// In a cluster: the node each peer connected elsewhere is connected to.
    pub homes: HashMap<PeerId, u16>,
    /// In a cluster: the shard of each chunk of the files kept here (where its verification
    /// state is stored).
    pub chunk_shards: HashMap<swarm_core::ChunkId, u16>,
    /// In a cluster: peers that left other nodes lately, and when (a message of theirs that
    /// overtook the news must not bring them back).
    pub departed: HashMap<PeerId, u64>,
    /// In a cluster: the nodes that answered a leaving peer here, and the chunks they stranded.
    pub leave_answers: HashMap<PeerId, (BTreeSet<u16>, u32)>,
    /// This node's link to the other nodes of its cluster (`None`: a single tracker).
    pub nodes: Option<Arc<dyn NodeLink>>,
}

/// What the shared state needs of the tracker cluster this node may belong to. The cluster
/// layer implements it (`crate::cluster::Cluster`) and works on [`Shared`]; this module never
/// names that layer, so the two are not tied in an import circle.
pub trait NodeLink: Send + Sync {
    /// This node's tag.
    fn tag(&self) -> u16;
    /// The public `/ws` URLs of every live node, this one's first.
    fn urls(&self) -> Vec<String>;
    /// The tags of the live nodes, this one's included.
    fn members(&self) -> BTreeSet<u16>;
    /// Tells the other nodes that `peer` left this one.
    fn peer_left(&self, peer: &PeerId);
    /// Sends `msg` to `peer`, connected to `node`.
    fn to_peer(&self, node: u16, peer: PeerId, msg: ServerMsg);
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
    pub inner: Mutex<Inner>,
    pub counters: Counters,
    pub started_ms: u64,
    started: std::time::Instant,
    /// Open websocket connections per client address (an IPv6 /64 counts as one).
    per_ip: Mutex<HashMap<AddrKey, AddrConns>>,
    /// TCP connections, counted at accept ([`crate::conns`]).
    pub conns: Arc<crate::conns::ConnTable>,
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
            inner: Mutex::new(Inner {
                swarm,
                connected: HashMap::new(),
                next_serial: 1,
                published_by: HashMap::new(),
                addrs: HashMap::new(),
                file_addr: HashMap::new(),
                homes: HashMap::new(),
                chunk_shards: HashMap::new(),
                departed: HashMap::new(),
                leave_answers: HashMap::new(),
                nodes,
            }),
            counters: Counters::default(),
            started_ms: now_ms(),
            started: std::time::Instant::now(),
            per_ip: Mutex::new(HashMap::new()),
            conns: crate::conns::ConnTable::new(
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
    /// ([`crate::read_charge`]); `Err`: milliseconds until it may ask again.
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

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key `ip` counts against for the per-address limits (`None`: exempt).
    pub fn addr_key(&self, ip: IpAddr) -> Option<AddrKey> {
        (!self.config.limit_exempt.contains(ip)).then(|| swarm_core::swarm::policy::addr_key(ip))
    }

    /// Writes the swarm's verification changes to the durable index (taken under the lock,
    /// written outside it).
    pub fn save_trust(&self) {
        let Some(index) = &self.index else { return };
        let changes = self.lock().swarm.take_trust_changes();
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

/// Addresses kept without connections (for the debt of their byte rate) at most, beyond
/// which they are forgotten.
const MAX_QUIET_ADDRS: usize = 65_536;

/// One client address's open websocket connections, and the bytes of messages they may send
/// together ([`crate::Limits::msg_bytes_per_sec_per_ip`]).
struct AddrConns {
    conns: u32,
    msg_bytes: TokenBucket,
    /// What its REST reads may cost ([`crate::read_charge`]): the same rate, a bucket of its
    /// own (a page polling `/api/stats` does not slow the address's websocket messages).
    reads: TokenBucket,
}

impl Inner {
    /// Registers a welcomed connection; returns its serial. An older connection of the same
    /// peer is dropped (its outbox closes, its task ends).
    pub fn connect(&mut self, id: PeerId, outbox: Outbox, addr: Option<AddrKey>, mono_ms: u64) -> u64 {
        let serial = self.next_serial;
        self.next_serial += 1;
        if let Some(a) = addr {
            let used = self.addrs.entry(a).or_insert_with(|| AddrUse {
                identities: HashSet::new(),
                files: 0,
                chunks: 0,
                budget: PublishBudget::new(mono_ms),
            });
            used.identities.insert(id.clone());
        }
        if let Some(old) = self.connected.insert(id.clone(), Connected { conn_serial: serial, outbox, addr }) {
            old.outbox.close();
            if old.addr != addr {
                self.forget_identity(&id, old.addr);
            }
        }
        serial
    }

    fn forget_identity(&mut self, id: &PeerId, addr: Option<AddrKey>) {
        if let Some(used) = addr.and_then(|a| self.addrs.get_mut(&a)) {
            used.identities.remove(id);
        }
    }

    /// Distinct identities live from `addr`, and whether `id` is one of them.
    pub fn identities_at(&self, addr: AddrKey, id: &PeerId) -> (usize, bool) {
        self.addrs.get(&addr).map_or((0, false), |u| (u.identities.len(), u.identities.contains(id)))
    }

    /// Counts new files against the address they were published from; returns the records
    /// to store durably.
    pub fn files_added(&mut self, out: &[Output], addr: Option<AddrKey>) -> Vec<swarm_core::swarm::FileRecord> {
        let mut added = Vec::new();
        for o in out {
            if let Output::FileAdded(f) = o {
                let chunks = self.swarm.file(f).map_or(0, |rec| rec.manifest.chunks.len() as u64);
                if let Some(rec) = self.swarm.file(f) {
                    added.push(rec.clone());
                }
                if let Some(a) = addr {
                    self.file_addr.insert(*f, (a, chunks));
                    if let Some(used) = self.addrs.get_mut(&a) {
                        used.files += 1;
                        used.chunks += chunks;
                    }
                }
            }
        }
        added
    }

    /// Counts removed files down from the addresses that published them; returns their ids
    /// (to remove durably).
    pub fn files_removed(&mut self, out: &[Output]) -> Vec<FileId> {
        let mut removed = Vec::new();
        for o in out {
            if let Output::FileRemoved(f) = o {
                removed.push(*f);
                if let Some((a, chunks)) = self.file_addr.remove(f) {
                    if let Some(used) = self.addrs.get_mut(&a) {
                        used.files = used.files.saturating_sub(1);
                        used.chunks = used.chunks.saturating_sub(chunks);
                    }
                }
            }
        }
        removed
    }

    /// Forgets addresses with no identity, no file and a full publish budget.
    pub fn prune_addrs(&mut self, mono_ms: u64, per_hour: u32) {
        self.addrs.retain(|_, u| !u.identities.is_empty() || u.files > 0 || !u.budget.is_full(per_hour, mono_ms));
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
            let c = self.connected.remove(id).expect("present");
            self.forget_identity(id, c.addr);
            self.leave_answers.remove(id);
            if self.homes.contains_key(id) {
                return; // it connected to another node since: it is live there
            }
            self.swarm.leave(id, now_ms());
            if let Some(n) = &self.nodes {
                n.peer_left(id);
            }
        }
    }

    /// In a cluster, every node hands a leaving peer's chunks of its own shards to others and
    /// answers `leave_ready`: the peer hears one answer, once every live node has answered
    /// (with the chunks stranded anywhere). `node` answered now.
    pub fn leave_answer(&mut self, peer: &PeerId, node: u16, stranded: u32) -> Option<ServerMsg> {
        let members = self.nodes.as_ref()?.members();
        let (answered, total) = self.leave_answers.entry(peer.clone()).or_default();
        answered.insert(node);
        *total += stranded;
        if members.is_subset(answered) {
            let (_, total) = self.leave_answers.remove(peer)?;
            return Some(ServerMsg::LeaveReady { stranded: total });
        }
        None
    }

    /// Queues `msg` for `to` if it is connected here; a peer whose outbox is full is closed
    /// (counted in `closed`).
    pub fn push_local(&self, to: &PeerId, msg: ServerMsg, closed: &mut u64) {
        if let ServerMsg::Signal { from, .. } = &msg {
            if from != to {
                return self.push_signal(to, msg, closed); // sent by another peer: ws/relay.rs
            }
        }
        if let Some(c) = self.connected.get(to) {
            if c.outbox.push(Frame::json(msg)) == Err(crate::outbox::PushError::Full) {
                tracing::warn!(peer = %to, "peer does not read its messages: dropping it");
                c.outbox.close();
                *closed += 1;
            }
        }
    }

    /// Carries the swarm's outputs to the peers' outboxes. A peer whose outbox is full is too
    /// slow to keep up: its outbox is closed, which ends its connection (it may reconnect).
    /// Returns how many peers were closed that way.
    pub fn dispatch(&mut self, outputs: Vec<Output>) -> u64 {
        let mut closed = 0;
        for out in outputs {
            match out {
                Output::Send { to, msg: ServerMsg::LeaveReady { stranded } }
                    if self.nodes.is_some() && self.connected.contains_key(&to) =>
                {
                    let me = self.nodes.as_ref().map_or(0, |n| n.tag());
                    if let Some(msg) = self.leave_answer(&to, me, stranded) {
                        self.push_local(&to, msg, &mut closed);
                    }
                }
                Output::Send { to, msg } => {
                    if self.connected.contains_key(&to) {
                        self.push_local(&to, msg, &mut closed);
                    } else if let (Some(n), Some(node)) = (&self.nodes, self.homes.get(&to)) {
                        n.to_peer(*node, to, msg);
                    }
                }
                Output::FileAdded(_) | Output::FileRemoved(_) => {}
            }
        }
        closed
    }
}
