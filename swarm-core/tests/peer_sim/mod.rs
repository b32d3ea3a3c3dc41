//! A deterministic network of REAL peer cores ([`Peer`]) around the REAL tracker core
//! ([`Swarm`]), in virtual time, in the manner of quinn-proto's `tests/util.rs` `Pair`.
//!
//! Every peer is driven exactly as a real driver drives its core: its [`Output`]s are carried
//! out (tracker messages, relay frames, WebRTC dials and accepts, data channel sends, store
//! reads and hash checks), each after a latency, through one event queue ordered by
//! (virtual time, sequence number), so a run depends on nothing but its seed.
//!
//! What is simulated, and how it mirrors the real parts:
//! - **the tracker** (`tracker/src/transport/ws/admission.rs`, `tracker/src/driver.rs`): a peer's `hello` makes
//!   [`Swarm::join`] and is answered `welcome` with the id derived from the secret; every
//!   other message goes to [`Swarm::handle`]; a connection that ends makes [`Swarm::leave`]
//!   unless a newer connection of the same peer replaced it; the swarm is ticked at its
//!   deadline. A relay frame to a peer that is not connected gets the sender a
//!   `ServerMsg::Error { code: UnknownPeer }` (that is what `on_relay` answers), never a
//!   signal.
//! - **WebRTC**: a dial sends an offer through the tracker (`link_signal`), the remote core
//!   accepts, its answer comes back; if the pair may connect directly, both data channels
//!   open [`Net::ice_ms`] later, else the attempt fails ([`NoDirect::Fail`]: both sides get
//!   `link_closed`) or hangs ([`NoDirect::Hang`]: nothing happens until the core's own timeout).
//!   Channels are ordered (fixed latency per pair).
//! - **the store**: an in-memory map with a capacity and a pinned set; a hash check stores
//!   the bytes only if they hash to the chunk id asked for (and the harness asserts it never
//!   holds anything else).
//! - **misbehaving holders**: a liar serves flipped bytes, a silent holder never answers reads.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use swarm_core::identity::Keypair;
use swarm_core::peer::{Endgame, Event, Incoming, Inventory, LinkId, Output, Peer, PeerConfig, Purpose, ReadResult};
use swarm_core::swarm::repair::RepairConfig;
use swarm_core::swarm::{self, Swarm};
use swarm_core::wire::{ErrorCode, FileMeta, PROTOCOL_VERSION};
use swarm_core::{
    ChunkId, ClientMsg, FileId, LinkPath, Manifest, ManifestBuilder, PeerId, PeerKind, ServerMsg, Signal,
};

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1e6 < p
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A store in memory, as both drivers keep an index of theirs.
#[derive(Debug, Default)]
pub struct Store {
    /// Read it freely; change it only with [`Store::insert`] and [`Store::remove`].
    pub chunks: HashMap<ChunkId, Vec<u8>>,
    pub capacity: u64,
    pub pinned: HashSet<ChunkId>,
    used: u64,
    /// Chunks stored since the last [`Net::assert_stores_sound`].
    fresh: Vec<ChunkId>,
}

impl Store {
    pub fn insert(&mut self, id: ChunkId, bytes: Vec<u8>) {
        self.used += bytes.len() as u64;
        if let Some(old) = self.chunks.insert(id, bytes) {
            self.used -= old.len() as u64;
        }
        self.fresh.push(id);
    }
    pub fn remove(&mut self, id: &ChunkId) {
        if let Some(old) = self.chunks.remove(id) {
            self.used -= old.len() as u64;
        }
    }
}

impl Inventory for Store {
    fn has(&self, chunk: &ChunkId) -> bool {
        self.chunks.contains_key(chunk)
    }
    fn ids(&self) -> Vec<ChunkId> {
        let mut v: Vec<ChunkId> = self.chunks.keys().copied().collect();
        v.sort(); // deterministic order
        v
    }
    fn used(&self) -> u64 {
        self.used
    }
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn pinned(&self, chunk: &ChunkId) -> bool {
        self.pinned.contains(chunk)
    }
}

/// How a holder answers the chunk requests it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Serves bytes that do not hash to the chunk asked for.
    Liar,
    /// Accepts requests and never answers them.
    Silent,
}

/// What happens to a WebRTC attempt between two peers that cannot connect directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoDirect {
    /// ICE fails: both sides are told `link_closed`.
    Fail,
    /// Nothing ever happens (the core's own timeout ends it).
    Hang,
}

pub struct Node {
    pub id: PeerId,
    pub secret: String,
    pub peer: Peer<Vec<u8>>,
    pub store: Store,
    /// The process runs.
    pub alive: bool,
    /// Incarnation: bumped when the process dies, so nothing in flight reaches the new one.
    pub life: u64,
    /// The tracker connection (its serial) as this side sees it.
    pub conn: Option<u64>,
    pub behaviour: Behaviour,
    pub events: Vec<(u64, Event<Vec<u8>>)>,
    /// Links this node closed (an open still on its way is ignored).
    closed: HashSet<LinkId>,
    timer_at: Option<u64>,
    /// Chunk reads served (answered with data).
    pub reads_served: u64,
    /// Chunk reads the core asked for.
    pub reads_asked: u64,
    /// Every download that finished, in any run: (life, download) -> (when, result).
    pub finished_runs: HashMap<(u64, u64), (u64, Result<(), String>)>,
    /// Started with [`PeerConfig::relay_only`].
    pub relay_only: bool,
    /// WebRTC attempts this node's core dialled.
    pub dials: u64,
    /// Its core's [`PeerConfig::endgame`] (from its next start).
    pub endgame: Endgame,
}

impl Node {
    /// Finished events: (download, result).
    pub fn finished(&self) -> Vec<(u64, Result<(), String>)> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Finished { download, result, .. } => {
                    Some((*download, result.clone().map_err(|e| e.to_string())))
                }
                _ => None,
            })
            .collect()
    }
    /// When download `download` finished.
    pub fn finished_at(&self, download: u64) -> Option<u64> {
        self.events.iter().find_map(|(t, e)| match e {
            Event::Finished { download: d, .. } if *d == download => Some(*t),
            _ => None,
        })
    }
    pub fn result_of(&self, download: u64) -> Option<Result<(), String>> {
        self.finished().into_iter().find(|(d, _)| *d == download).map(|(_, r)| r)
    }
    /// Peers that delivered chunks to `download`.
    pub fn sources_of(&self, download: u64) -> HashMap<PeerId, usize> {
        let mut m = HashMap::new();
        for (_, e) in &self.events {
            if let Event::Chunk { download: d, from, .. } = e {
                if *d == download {
                    *m.entry(from.clone()).or_default() += 1;
                }
            }
        }
        m
    }
}

enum Ev {
    ToTracker {
        from: usize,
        conn: u64,
        msg: ClientMsg,
    },
    FromTracker {
        to: usize,
        conn: u64,
        msg: ServerMsg,
    },
    RelayAtTracker {
        from: usize,
        conn: u64,
        to: PeerId,
        link: u64,
        payload: Vec<u8>,
    },
    RelayDeliver {
        to: usize,
        conn: u64,
        from: PeerId,
        link: u64,
        payload: Vec<u8>,
    },
    LinkMsg {
        to: usize,
        life: u64,
        link: LinkId,
        bytes: Vec<u8>,
    },
    /// ICE succeeded: both data channels open.
    LinkOpen {
        a: (usize, u64, LinkId),
        b: (usize, u64, LinkId),
    },
    LinkClosed {
        node: usize,
        life: u64,
        link: LinkId,
    },
    /// A message left its sender (the driver's writer reports it flushed).
    Flushed {
        node: usize,
        life: u64,
        link: LinkId,
        /// For a relay frame: its recipient.
        relay_to: Option<PeerId>,
        len: usize,
    },
    ReadDone {
        node: usize,
        life: u64,
        token: u64,
        result: ReadResult,
    },
    /// The tracker notices a connection ended.
    TrackerDrop {
        id: PeerId,
        conn: u64,
    },
    Timer {
        node: usize,
        at: u64,
    },
    SwarmTick {
        at: u64,
    },
}

/// Something the tracker received, for assertions.
#[derive(Debug, Clone)]
pub struct Heard {
    pub at: u64,
    pub from: PeerId,
    pub msg: ClientMsg,
}

pub struct Net {
    pub now: u64,
    pub swarm: Swarm,
    pub nodes: Vec<Node>,
    pub index: HashMap<PeerId, usize>,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    next_conn: u64,
    /// The tracker's side: the live connection of each peer.
    tconns: HashMap<PeerId, u64>,
    /// Per connection: the key and kind its hello named, until its proof comes.
    hellos: HashMap<u64, (String, PeerKind)>,
    swarm_timer: Option<u64>,
    /// Open data channels: (node, link) -> (node, link).
    wires: HashMap<(usize, LinkId), (usize, LinkId)>,
    /// WebRTC attempts dialled: (node, link) -> the remote node.
    dials: HashMap<(usize, LinkId), usize>,
    /// Pairs (low index, high index) that may NOT connect directly.
    blocked: HashSet<(usize, usize)>,
    pub direct_default: bool,
    pub no_direct: NoDirect,
    pub tracker_ms: u64,
    pub link_ms: u64,
    pub ice_ms: u64,
    pub read_ms: u64,
    /// How long the tracker takes to notice a killed peer's connection is gone.
    pub kill_detect_ms: u64,
    /// How long a data channel to a dead peer stays open (ICE consent failure).
    pub consent_ms: u64,
    /// Bytes per second from one peer to another (data channel or relay), if limited: a
    /// message waits for the ones before it (so channels stay in order).
    pub pair_bytes_per_s: Option<u64>,
    /// Bytes per second from one node to another (directed), overriding `pair_bytes_per_s`.
    pub pair_rates: HashMap<(usize, usize), u64>,
    /// One-way latency of a pair's data channel (ms; the pair as (low, high) index),
    /// overriding `link_ms` and its per-pair variation.
    pub pair_latency: HashMap<(usize, usize), u64>,
    busy_until: HashMap<(usize, usize), u64>,
    /// Messages of interest that reached the tracker (bad sources, orders).
    pub heard: Vec<Heard>,
    pub relay_unknown_peer_errors: u64,
    pub events_processed: u64,
    /// A relay frame to a peer that is not connected also gets the sender
    /// `Signal { from: that peer, conn, Gone }`, as a signal to it would. NOT what
    /// tracker/src/transport/ws/relay.rs does today (an error only): for measuring what it would change.
    pub relay_gone: bool,
}

impl Net {
    pub fn new(config: RepairConfig) -> Self {
        Self {
            now: 0,
            swarm: Swarm::with_config(config),
            nodes: Vec::new(),
            index: HashMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            next_conn: 1,
            tconns: HashMap::new(),
            hellos: HashMap::new(),
            swarm_timer: None,
            wires: HashMap::new(),
            dials: HashMap::new(),
            blocked: HashSet::new(),
            direct_default: true,
            no_direct: NoDirect::Fail,
            tracker_ms: 10,
            link_ms: 5,
            ice_ms: 40,
            read_ms: 1,
            kill_detect_ms: 2_000,
            pair_bytes_per_s: None,
            pair_rates: HashMap::new(),
            pair_latency: HashMap::new(),
            consent_ms: 30_000,
            busy_until: HashMap::new(),
            heard: Vec::new(),
            relay_unknown_peer_errors: 0,
            events_processed: 0,
            relay_gone: false,
        }
    }

    /// Replication that never orders anything (tests about downloads alone).
    pub fn no_repair() -> RepairConfig {
        RepairConfig { max_orders_total: 0, ..RepairConfig::default() }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    /// A new peer (not started: see [`Net::start`]).
    pub fn add(&mut self, name: &str, capacity: u64) -> usize {
        let secret = format!("secret-{name}");
        let id = PeerId::from_secret(&secret);
        let i = self.nodes.len();
        self.nodes.push(Node {
            id: id.clone(),
            secret: secret.clone(),
            peer: Peer::new(PeerConfig::new(PeerKind::Native, Keypair::from_secret(&secret).public())),
            store: Store { capacity, ..Store::default() },
            alive: false,
            life: 0,
            conn: None,
            behaviour: Behaviour::Honest,
            events: Vec::new(),
            closed: HashSet::new(),
            timer_at: None,
            reads_served: 0,
            reads_asked: 0,
            relay_only: false,
            dials: 0,
            endgame: Endgame::default(),
            finished_runs: HashMap::new(),
        });
        self.index.insert(id, i);
        i
    }

    pub fn id(&self, i: usize) -> PeerId {
        self.nodes[i].id.clone()
    }

    /// Starts (or restarts) a peer's process with its store: a fresh core connects to the tracker.
    pub fn start(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        assert!(!n.alive);
        n.alive = true;
        n.life += 1;
        let mut config = PeerConfig::new(PeerKind::Native, Keypair::from_secret(&n.secret).public());
        config.relay_only = n.relay_only;
        config.endgame = n.endgame;
        n.peer = Peer::new(config);
        n.closed.clear();
        n.timer_at = None;
        n.events.clear(); // download numbers start again with the new core
        self.connect(i);
    }

    /// The peer's tracker connection opens (first time or again).
    pub fn connect(&mut self, i: usize) {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.nodes[i].conn = Some(conn);
        let now = self.now;
        self.with(i, |p, inv| p.tracker_connected(inv, now));
    }

    /// The peer's tracker connection drops (both sides notice: a closed TCP connection).
    pub fn disconnect(&mut self, i: usize) {
        let Some(conn) = self.nodes[i].conn.take() else { return };
        self.nodes[i].peer.tracker_disconnected();
        let id = self.id(i);
        let at = self.now + self.tracker_ms;
        self.push(at, Ev::TrackerDrop { id, conn });
    }

    /// The peer's process dies: nothing it sent is delivered any more, nothing reaches it;
    /// the tracker notices after [`Net::kill_detect_ms`]; its store stays (for a restart).
    pub fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if !n.alive {
            return;
        }
        n.alive = false;
        n.life += 1;
        let conn = n.conn.take();
        // The other ends of its data channels hear nothing more; WebRTC closes them when ICE
        // consent fails.
        let mut ends: Vec<(usize, LinkId)> = self.wires.iter().filter(|(_, (b, _))| *b == i).map(|(k, _)| *k).collect();
        ends.sort_unstable(); // (the queue's order must not depend on a hash seed)
        for (j, l) in ends {
            let (at, life) = (self.now + self.consent_ms, self.nodes[j].life);
            self.push(at, Ev::LinkClosed { node: j, life, link: l });
        }
        self.wires.retain(|(a, _), (b, _)| *a != i && *b != i);
        self.dials.retain(|(a, _), b| *a != i && *b != i);
        if let Some(conn) = conn {
            let id = self.id(i);
            let at = self.now + self.kill_detect_ms;
            self.push(at, Ev::TrackerDrop { id, conn });
        }
    }

    pub fn block_direct(&mut self, a: usize, b: usize) {
        self.blocked.insert((a.min(b), a.max(b)));
    }

    fn direct_ok(&self, a: usize, b: usize) -> bool {
        self.direct_default && !self.blocked.contains(&(a.min(b), a.max(b)))
    }

    /// Puts `chunks` into a peer's store (pinned: its user put them there).
    pub fn put(&mut self, i: usize, chunks: &[Vec<u8>]) {
        let n = &mut self.nodes[i];
        for c in chunks {
            let id = ChunkId::of(c);
            n.store.insert(id, c.clone());
            n.store.pinned.insert(id);
        }
    }

    /// Publishes a file whose chunks the peer stores: announces them, then `publish`.
    pub fn publish(&mut self, i: usize, manifest: &Manifest, name: &str) {
        let now = self.now;
        let chunks = manifest.chunks.clone();
        let meta = FileMeta::public(name, "application/octet-stream");
        let m = manifest.clone();
        self.with(i, |p, _| {
            for c in chunks {
                p.announce(c, now);
            }
            p.flush_haves();
            p.request(|req| ClientMsg::Publish { req, manifest: m, meta });
        });
    }

    pub fn download(&mut self, i: usize, file: FileId) -> u64 {
        let now = self.now;
        let mut id = 0;
        self.with(i, |p, _| id = p.download(file, Purpose::Keep, now));
        id
    }

    /// Calls into a live peer's core and carries out everything it then wants done.
    pub fn with(&mut self, i: usize, f: impl FnOnce(&mut Peer<Vec<u8>>, &Store)) {
        if !self.nodes[i].alive {
            return;
        }
        {
            let n = &mut self.nodes[i];
            f(&mut n.peer, &n.store);
        }
        self.drain(i);
    }

    fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].peer.poll_output() {
            self.carry_out(i, out);
        }
        let t = self.nodes[i].peer.poll_timeout();
        if let Some(t) = t.filter(|t| Some(*t) != self.nodes[i].timer_at) {
            self.nodes[i].timer_at = Some(t);
            self.push(t.max(self.now), Ev::Timer { node: i, at: t });
        }
    }

    /// When `len` bytes sent now from `a` to `b` have left `a` (bandwidth per pair).
    fn sent_at(&mut self, a: usize, b: usize, len: usize) -> u64 {
        let Some(bw) = self.pair_rates.get(&(a, b)).copied().or(self.pair_bytes_per_s) else { return self.now };
        let busy = self.busy_until.entry((a, b)).or_insert(0);
        let start = (*busy).max(self.now);
        *busy = start + (len as u64 * 1000).div_ceil(bw);
        *busy
    }

    fn pair_ms(&self, base: u64, a: usize, b: usize) -> u64 {
        if let Some(ms) = self.pair_latency.get(&(a.min(b), a.max(b))) {
            return *ms;
        }
        // Fixed per pair (so every channel stays in order), varied between pairs.
        base + ((a * 7 + b * 13) % 5) as u64
    }

    fn carry_out(&mut self, i: usize, out: Output<Vec<u8>>) {
        let now = self.now;
        let life = self.nodes[i].life;
        match out {
            Output::Tracker(msg) => {
                let Some(conn) = self.nodes[i].conn else { return };
                let at = now + self.tracker_ms;
                self.push(at, Ev::ToTracker { from: i, conn, msg });
            }
            Output::SignHello { nonce, origin } => {
                // The driver signs at once (as the native peer's does).
                let n = &mut self.nodes[i];
                let signature = Keypair::from_secret(&n.secret).sign_hello(&nonce, &origin);
                n.peer.hello_signed(nonce, signature, &n.store, now);
            }
            Output::Relay { to, conn: link, payload } => {
                let len = payload.len();
                let Some(conn) = self.nodes[i].conn else {
                    self.nodes[i].peer.relay_flushed(&to, link, len); // lost with the connection
                    return;
                };
                let j = self.index.get(&to).copied().unwrap_or(i);
                let left = self.sent_at(i, j, len);
                self.push(left, Ev::Flushed { node: i, life, link, relay_to: Some(to.clone()), len });
                self.push(left + self.tracker_ms, Ev::RelayAtTracker { from: i, conn, to, link, payload });
            }
            Output::Dial { link, peer } => {
                let j = *self.index.get(&peer).expect("dial to an unknown peer");
                self.dials.insert((i, link), j);
                self.nodes[i].dials += 1;
                let n = &mut self.nodes[i];
                n.peer.link_signal(link, Signal::Offer { sdp: format!("sim {link}") });
            }
            Output::Accept { link, peer, sdp } => {
                let _ = peer;
                assert!(sdp.starts_with("sim "), "an offer the harness did not make: {sdp}");
                self.nodes[i].peer.link_signal(link, Signal::Answer { sdp: format!("sim {link}") });
            }
            Output::Signal { link, signal } => match signal {
                Signal::Answer { sdp } => {
                    // The dialler has the answer: ICE runs.
                    let remote_link: LinkId = sdp.strip_prefix("sim ").and_then(|s| s.parse().ok()).expect("sim sdp");
                    self.ice(i, link, remote_link);
                }
                Signal::Close { .. } => {
                    let at = now + 1;
                    self.push(at, Ev::LinkClosed { node: i, life, link });
                }
                _ => {}
            },
            Output::Send { link, bytes } => {
                let len = bytes.len();
                let Some(&(j, l2)) = self.wires.get(&(i, link)) else {
                    self.nodes[i].peer.link_flushed(link, len); // dropped with the link
                    return;
                };
                let left = self.sent_at(i, j, len);
                self.push(left, Ev::Flushed { node: i, life, link, relay_to: None, len });
                let at = left + self.pair_ms(self.link_ms, i, j);
                let life = self.nodes[j].life;
                self.push(at, Ev::LinkMsg { to: j, life, link: l2, bytes });
            }
            Output::Close { link } => {
                self.nodes[i].closed.insert(link);
                if let Some((j, l2)) = self.wires.remove(&(i, link)) {
                    self.wires.remove(&(j, l2));
                    let at = now + self.pair_ms(self.link_ms, i, j);
                    let life = self.nodes[j].life;
                    self.push(at, Ev::LinkClosed { node: j, life, link: l2 });
                }
            }
            Output::Read { token, chunk } => {
                // Reads for the tracker's challenges are not serving (a liar that corrupts
                // what it serves still proves what it holds).
                let for_proof = self.nodes[i].peer.reading_for_proof(token);
                if !for_proof {
                    self.nodes[i].reads_asked += 1;
                }
                let n = &self.nodes[i];
                let result = match n.store.chunks.get(&chunk) {
                    None => Some(ReadResult::Missing),
                    Some(b) if for_proof => Some(ReadResult::Found(b.clone())),
                    Some(b) => match n.behaviour {
                        Behaviour::Honest => Some(ReadResult::Found(b.clone())),
                        Behaviour::Liar => Some(ReadResult::Found(b.iter().map(|x| x ^ 0x5a).collect())),
                        Behaviour::Silent => None,
                    },
                };
                if let Some(result) = result {
                    if matches!(result, ReadResult::Found(_)) && !for_proof {
                        self.nodes[i].reads_served += 1;
                    }
                    let at = now + self.read_ms;
                    self.push(at, Ev::ReadDone { node: i, life, token, result });
                }
            }
            Output::Verify { token, chunk, bytes, keep } => {
                let actual = ChunkId::of(&bytes);
                let n = &mut self.nodes[i];
                let kept = if actual != chunk {
                    Ok(()) // not stored: the core retries elsewhere
                } else if n.store.used() + bytes.len() as u64 > n.store.capacity {
                    if keep {
                        Err("no room".to_string())
                    } else {
                        Ok(())
                    }
                } else {
                    n.store.insert(chunk, bytes.clone());
                    Ok(())
                };
                let now = self.now;
                n.peer.verified(token, bytes, actual, kept, now);
            }
            Output::Remove { chunks } => {
                let n = &mut self.nodes[i];
                for c in chunks {
                    assert!(!n.store.pinned.contains(&c), "the core removed a pinned chunk");
                    n.store.remove(&c);
                }
            }
            Output::Event(e) => {
                if let Event::Located { download, manifest, .. } = &e {
                    let n = &mut self.nodes[i];
                    if n.peer.downloads().any(|(d, p)| d == *download && *p == Purpose::Keep) {
                        n.store.pinned.extend(manifest.chunks.iter().copied());
                    }
                }
                if let Event::Finished { download, result, .. } = &e {
                    let n = &mut self.nodes[i];
                    n.finished_runs.insert((n.life, *download), (now, result.clone().map_err(|e| e.to_string())));
                }
                self.nodes[i].events.push((now, e));
            }
        }
    }

    /// Node `i`'s attempt `link` got the answer of `remote_link`: find the remote (the peer
    /// whose accepted link answered) and open, fail or hang.
    fn ice(&mut self, i: usize, link: LinkId, remote_link: LinkId) {
        let Some(j) = self.dials.remove(&(i, link)) else { return };
        let (la, lb) = (self.nodes[i].life, self.nodes[j].life);
        let at = self.now + self.ice_ms;
        if self.direct_ok(i, j) {
            self.push(at, Ev::LinkOpen { a: (i, la, link), b: (j, lb, remote_link) });
        } else if self.no_direct == NoDirect::Fail {
            self.push(at, Ev::LinkClosed { node: i, life: la, link });
            self.push(at, Ev::LinkClosed { node: j, life: lb, link: remote_link });
        }
    }

    fn live(&self, i: usize, life: u64) -> bool {
        self.nodes[i].alive && self.nodes[i].life == life
    }

    /// Runs until virtual time `until` (events at `until` included).
    pub fn run_until(&mut self, until: u64) {
        while let Some((&(at, seq), _)) = self.queue.first_key_value() {
            if at > until {
                break;
            }
            let ev = self.queue.remove(&(at, seq)).expect("present");
            self.now = self.now.max(at);
            self.events_processed += 1;
            self.process(ev);
        }
        self.now = self.now.max(until);
    }

    /// Runs until `done` holds (checked after every event) or `limit` passes; returns whether it held.
    pub fn run_while(&mut self, limit: u64, mut done: impl FnMut(&Net) -> bool) -> bool {
        while let Some((&(at, seq), _)) = self.queue.first_key_value() {
            if done(self) {
                return true;
            }
            if at > limit {
                break;
            }
            let ev = self.queue.remove(&(at, seq)).expect("present");
            self.now = self.now.max(at);
            self.events_processed += 1;
            self.process(ev);
        }
        done(self)
    }

    fn process(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::ToTracker { from, conn, msg } => {
                let id = self.id(from);
                let open = match msg {
                    // A hello arrives on a connection the peer still has open.
                    ClientMsg::Hello { .. } | ClientMsg::AuthProof { .. } => {
                        self.nodes[from].conn == Some(conn) && self.nodes[from].alive
                    }
                    // Anything else on the connection the tracker admitted, if it did not
                    // break meanwhile (what was in flight on a broken connection is lost).
                    _ => self.tconns.get(&id) == Some(&conn) && self.nodes[from].conn == Some(conn),
                };
                if !open {
                    return;
                }
                match msg {
                    ClientMsg::Hello { version, kind, key, .. } => {
                        assert_eq!(version, PROTOCOL_VERSION);
                        self.hellos.insert(conn, (key, kind));
                        let challenge = ServerMsg::AuthChallenge { nonce: [conn as u8; 32] };
                        self.push(now + self.tracker_ms, Ev::FromTracker { to: from, conn, msg: challenge });
                    }
                    ClientMsg::AuthProof { origin, signature, .. } => {
                        let (key, kind) = self.hellos.remove(&conn).expect("a proof follows a hello");
                        let nonce = [conn as u8; 32];
                        let peer_id = swarm_core::identity::verify_hello(&key, &signature, &nonce, &origin)
                            .expect("the proof is signed for the challenge");
                        assert_eq!(peer_id, id);
                        self.swarm.join(peer_id.clone(), kind, now);
                        self.tconns.insert(peer_id.clone(), conn);
                        let welcome = ServerMsg::Welcome {
                            version: PROTOCOL_VERSION,
                            peer_id,
                            migrated: None,
                            ice_servers: vec![],
                            trackers: vec![],
                        };
                        self.push(now + self.tracker_ms, Ev::FromTracker { to: from, conn, msg: welcome });
                    }
                    msg => {
                        if matches!(
                            msg,
                            ClientMsg::BadSource { .. }
                                | ClientMsg::OrderDone { .. }
                                | ClientMsg::OrderFailed { .. }
                                | ClientMsg::Locate { .. }
                        ) {
                            self.heard.push(Heard { at: now, from: id.clone(), msg: msg.clone() });
                        }
                        let out = self.swarm.handle(&id, msg, now);
                        self.dispatch(out);
                    }
                }
            }
            Ev::FromTracker { to, conn, msg } => {
                if self.nodes[to].conn != Some(conn) || !self.nodes[to].alive {
                    return;
                }
                self.with(to, |p, inv| p.handle_server_msg(msg, inv, now));
            }
            Ev::RelayAtTracker { from, conn, to, link, payload } => {
                let id = self.id(from);
                if self.tconns.get(&id) != Some(&conn) {
                    return;
                }
                match self.tconns.get(&to).copied() {
                    Some(tconn) if to != id => {
                        let j = self.index[&to];
                        let at = now + self.tracker_ms;
                        self.push(at, Ev::RelayDeliver { to: j, conn: tconn, from: id, link, payload });
                    }
                    _ => {
                        // What tracker/src/transport/ws/relay.rs answers.
                        self.relay_unknown_peer_errors += 1;
                        let msg = ServerMsg::error(None, ErrorCode::UnknownPeer, format!("peer {to} is not connected"));
                        self.push(now + self.tracker_ms, Ev::FromTracker { to: from, conn, msg });
                        if self.relay_gone && to != id {
                            let msg = ServerMsg::Signal { from: to, conn: link, signal: Signal::Gone };
                            self.push(now + self.tracker_ms, Ev::FromTracker { to: from, conn, msg });
                        }
                    }
                }
            }
            Ev::RelayDeliver { to, conn, from, link, payload } => {
                if self.nodes[to].conn != Some(conn) || !self.nodes[to].alive {
                    return;
                }
                let msg = Incoming::decode(&payload).expect("peer cores send valid chunk messages");
                self.with(to, |p, _| p.handle_relay(from, link, msg, now));
            }
            Ev::Flushed { node, life, link, relay_to, len } => {
                if !self.live(node, life) {
                    return;
                }
                match relay_to {
                    Some(to) => self.with(node, |p, _| p.relay_flushed(&to, link, len)),
                    None => self.with(node, |p, _| p.link_flushed(link, len)),
                }
            }
            Ev::LinkMsg { to, life, link, bytes } => {
                if !self.live(to, life) {
                    return;
                }
                let msg = Incoming::decode(&bytes).expect("peer cores send valid chunk messages");
                self.with(to, |p, _| p.handle_link_msg(link, msg, now));
            }
            Ev::LinkOpen { a, b } => {
                let ok = |s: &Self, (n, life, link): (usize, u64, LinkId)| {
                    s.live(n, life) && !s.nodes[n].closed.contains(&link)
                };
                match (ok(self, a), ok(self, b)) {
                    (true, true) => {
                        self.wires.insert((a.0, a.2), (b.0, b.2));
                        self.wires.insert((b.0, b.2), (a.0, a.2));
                        self.with(a.0, |p, _| p.link_open(a.2, LinkPath::DirectHost, now));
                        self.with(b.0, |p, _| p.link_open(b.2, LinkPath::DirectHost, now));
                    }
                    (true, false) => self.with(a.0, |p, _| p.link_closed(a.2, "remote closed", now)),
                    (false, true) => self.with(b.0, |p, _| p.link_closed(b.2, "remote closed", now)),
                    _ => {}
                }
            }
            Ev::LinkClosed { node, life, link } => {
                if !self.live(node, life) {
                    return;
                }
                if let Some((j, l2)) = self.wires.remove(&(node, link)) {
                    self.wires.remove(&(j, l2));
                }
                self.with(node, |p, _| p.link_closed(link, "closed", now));
            }
            Ev::ReadDone { node, life, token, result } => {
                if !self.live(node, life) {
                    return;
                }
                self.with(node, |p, _| p.chunk_read(token, result));
            }
            Ev::TrackerDrop { id, conn } => {
                if self.tconns.get(&id) == Some(&conn) {
                    self.tconns.remove(&id);
                    self.swarm.leave(&id, now);
                    self.schedule_swarm();
                }
            }
            Ev::Timer { node, at } => {
                if self.nodes[node].timer_at != Some(at) || !self.nodes[node].alive {
                    return;
                }
                self.nodes[node].timer_at = None;
                self.with(node, |p, inv| p.handle_timeout(inv, now));
            }
            Ev::SwarmTick { at } => {
                if self.swarm_timer != Some(at) {
                    return;
                }
                self.swarm_timer = None;
                let out = self.swarm.tick(now);
                self.dispatch(out);
            }
        }
    }

    fn dispatch(&mut self, out: Vec<swarm::Output>) {
        for o in out {
            let swarm::Output::Send { to, msg } = o else { continue };
            let Some(&conn) = self.tconns.get(&to) else { continue };
            let j = self.index[&to];
            self.push(self.now + self.tracker_ms, Ev::FromTracker { to: j, conn, msg });
        }
        self.schedule_swarm();
    }

    fn schedule_swarm(&mut self) {
        let t = self.swarm.next_deadline();
        if let Some(t) = t.filter(|t| Some(*t) != self.swarm_timer) {
            // A tick queued for another time is ignored when it comes.
            self.swarm_timer = Some(t);
            self.push(t.max(self.now), Ev::SwarmTick { at: t });
        }
    }

    /// Asserts that no store holds bytes that do not hash to their id: every chunk stored
    /// since the last call (`all`: every chunk).
    pub fn assert_stores_sound(&mut self, all: bool) {
        for n in &mut self.nodes {
            let ids: Vec<ChunkId> =
                if all { n.store.chunks.keys().copied().collect() } else { std::mem::take(&mut n.store.fresh) };
            for id in ids {
                if let Some(b) = n.store.chunks.get(&id) {
                    assert_eq!(ChunkId::of(b), id, "peer {:?} stores bytes that are not chunk {id:?}", n.id);
                }
            }
        }
    }

    pub fn bad_sources(&self) -> Vec<(PeerId, PeerId, ChunkId)> {
        self.heard
            .iter()
            .filter_map(|h| match &h.msg {
                ClientMsg::BadSource { peer, chunk } => Some((h.from.clone(), peer.clone(), *chunk)),
                _ => None,
            })
            .collect()
    }

    pub fn count_heard(&self, f: impl Fn(&ClientMsg) -> bool) -> usize {
        self.heard.iter().filter(|h| f(&h.msg)).count()
    }
}

/// A file of `chunks` chunks of `chunk_size` random bytes (the last one shorter when `short`).
pub fn make_file(rng: &mut Rng, chunks: usize, chunk_size: usize) -> (Manifest, Vec<Vec<u8>>) {
    let data: Vec<Vec<u8>> = (0..chunks).map(|_| rng.bytes(chunk_size)).collect();
    let mut b = ManifestBuilder::new(chunk_size as u32);
    for c in &data {
        b.push(c);
    }
    (b.finish(), data)
}
