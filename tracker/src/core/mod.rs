//! The tracker's core: everything the tracker knows, as one plain struct ([`Core`]) with no
//! I/O, no clock (times are passed in) and no lock of its own. The driver around it
//! ([`crate::driver::Shared`]) keeps it behind one lock and carries out what it returns: frames
//! into the peers' outboxes (bounded queues the connection tasks drain), records to write to
//! the durable index, messages to the cluster's other nodes ([`NodeLink`]).
//!
//! Its state is private: every change goes through a method named for what it does, so the
//! bookkeeping that must agree (a file in the swarm and its address's count of files and
//! chunks, a peer's connection and its address's identities) changes in one place.
//!
//! Methods, sorted as quinn-proto's `Connection` sorts its own:
//! - **handle** (an input): [`Core::admit`], [`Core::handle_peer_msg`],
//!   [`Core::check_peer_msg`], [`Core::handle_here`], [`Core::handle_owned`],
//!   [`Core::disconnect`], the cluster's news in [`nodes`], the timers in [`timers`];
//! - **poll** (what to carry out): the [`Step`] a handled message returns, [`Core::dispatch`]
//!   of the swarm's outputs into outboxes, [`Core::poll_timeout`];
//! - **getters**: [`Core::swarm`] (read only), [`Core::peer_count`], [`Core::is_connected`],
//!   [`Core::top_consumers`], ...
//!
//! Rooms: [`sessions`] (connections and their outboxes, delivery), [`addrs`] (what each client
//! address uses, the publish limits and the state budget), [`nodes`] (in a cluster: peers of
//! other nodes, shards kept here), [`timers`] (the swarm's timers and the periodic sweeps, one
//! deadline).

pub mod addrs;
pub mod figures;
pub mod limits;
pub mod nodes;
pub mod outbox;
pub mod sessions;
pub mod timers;

#[cfg(test)]
mod tests;

use crate::config::Limits;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use swarm_core::swarm::policy::AddrKey;
use swarm_core::swarm::{FileRecord, Output, Swarm};
use swarm_core::{ChunkId, ClientMsg, FileId, PeerId, ServerMsg};

pub use addrs::AddrUse;
pub use sessions::{Connected, RelayRoute};
pub use timers::Timers;

/// What the core needs of the tracker cluster this node may belong to. The cluster layer
/// implements it (`crate::cluster::Cluster`); the core never names that layer.
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

/// A refusal to send back to a peer, and whether it was for the state budget.
#[derive(Debug)]
pub struct Refusal {
    pub msg: Box<ServerMsg>,
    pub over_budget: bool,
}

impl Refusal {
    fn new(msg: ServerMsg) -> Self {
        Self { msg: Box::new(msg), over_budget: false }
    }
}

/// What handling a peer's message asks the driver to carry out, in this order: store `added`
/// and forget `removed` durably, then [`Core::dispatch`] `out` (a publisher hears "published"
/// only once its file is durable).
#[derive(Debug, Default)]
pub struct Step {
    pub out: Vec<Output>,
    pub added: Vec<FileRecord>,
    pub removed: Vec<FileId>,
    /// Name index entries a search looked at (the connection is charged for them).
    pub examined: u64,
}

/// The outcome of [`Core::handle_peer_msg`].
#[derive(Debug)]
pub enum Handled {
    /// The connection was replaced by a newer one of the same peer: it ends.
    Stale,
    Refused(Refusal),
    Done(Step),
}

/// The tracker's state (see the module doc).
pub struct Core {
    swarm: Swarm,
    limits: Limits,
    /// Connections welcomed here ([`sessions`]).
    connected: HashMap<PeerId, Connected>,
    next_serial: u64,
    /// Files each peer added to the index since the tracker started (for `max_files_per_peer`).
    published_by: HashMap<PeerId, u32>,
    /// Per client address (not exempt ones): identities, files, publish budget ([`addrs`]).
    addrs: HashMap<AddrKey, AddrUse>,
    /// The address each file published since start came from, and its chunks (to count them
    /// down on removal).
    file_addr: HashMap<FileId, (AddrKey, u64)>,
    /// In a cluster: the node each peer connected elsewhere is connected to ([`nodes`]).
    homes: HashMap<PeerId, u16>,
    /// In a cluster: the shard of each chunk of the files kept here (where its verification
    /// state is stored).
    chunk_shards: HashMap<ChunkId, u16>,
    /// In a cluster: peers that left other nodes lately, and when (a message of theirs that
    /// overtook the news must not bring them back).
    departed: HashMap<PeerId, u64>,
    /// In a cluster: the nodes that answered a leaving peer here, and the chunks they stranded.
    leave_answers: HashMap<PeerId, (BTreeSet<u16>, u32)>,
    /// This node's link to the other nodes of its cluster (`None`: a single tracker).
    nodes: Option<Arc<dyn NodeLink>>,
    timers: Timers,
}

impl Core {
    /// A core around `swarm` (restored from the durable index by the driver), with `limits`
    /// and the periods of `timers`.
    pub fn new(swarm: Swarm, limits: Limits, timers: Timers, nodes: Option<Arc<dyn NodeLink>>) -> Self {
        Self {
            swarm,
            limits,
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
            timers,
        }
    }

    /// The swarm, to read (search, listings, figures). Changes go through the core's methods.
    pub fn swarm(&self) -> &Swarm {
        &self.swarm
    }

    /// A single tracker: a peer's message, checked against the limits the swarm does not know
    /// ([`addrs`]), then handled by the swarm. `now_ms` is wall time, `mono_ms` the driver's
    /// monotonic clock (rate budgets).
    pub fn handle_peer_msg(&mut self, id: &PeerId, serial: u64, msg: ClientMsg, now_ms: u64, mono_ms: u64) -> Handled {
        if !self.is_current(id, serial) {
            return Handled::Stale;
        }
        let budget = match self.check_peer_msg(id, &msg, mono_ms) {
            Ok(b) => b,
            Err(r) => return Handled::Refused(r),
        };
        let examined = self.swarm.stats.search_examined;
        let out = self.swarm.handle(id, msg, now_ms);
        let examined = self.swarm.stats.search_examined - examined;
        let addr = self.connected.get(id).and_then(|c| c.addr);
        let added = self.files_added(&out, addr);
        if !added.is_empty() {
            *self.published_by.entry(id.clone()).or_insert(0) += added.len() as u32;
            if let Some((a, budget)) = budget {
                self.spend_publish_budget(a, budget);
            }
        }
        let removed = self.files_removed(&out);
        Handled::Done(Step { out, added, removed, examined })
    }

    /// In a cluster: a message from `from` handled by this node's swarm alone (it is known
    /// here); returns the peers closed as too slow.
    pub fn handle_here(&mut self, from: &PeerId, msg: ClientMsg, now_ms: u64) -> u64 {
        if !self.swarm.is_live(from) {
            return 0;
        }
        let out = self.swarm.handle(from, msg, now_ms);
        self.dispatch(out)
    }

    /// In a cluster: a request about a file of `shard`, which this node keeps. The new files'
    /// chunks are marked as of `shard`. `None`: the peer is not known here.
    pub fn handle_owned(&mut self, from: &PeerId, msg: ClientMsg, shard: u16, now_ms: u64) -> Option<Step> {
        if !self.swarm.is_live(from) {
            return None;
        }
        let out = self.swarm.handle(from, msg, now_ms);
        let added = self.files_added(&out, None);
        for r in &added {
            for c in &r.manifest.chunks {
                self.chunk_shards.insert(*c, shard);
            }
        }
        let removed = self.files_removed(&out);
        Some(Step { out, added, removed, examined: 0 })
    }

    /// Files that did not become durable leave the swarm again (a cluster's index refused
    /// them).
    pub fn evict_files(&mut self, files: &[FileId]) {
        self.swarm.evict_files(files);
    }

    /// An error was sent to a peer (counted in the swarm's figures).
    pub fn note_error_sent(&mut self) {
        self.swarm.stats.errors_sent += 1;
    }

    /// The files `old` (a legacy identity) owned now belong to `new`; returns them (to record
    /// durably).
    pub fn migrate_owner(&mut self, old: &PeerId, new: &PeerId) -> Vec<FileRecord> {
        let mut moved: Vec<FileRecord> =
            self.swarm.files().filter(|(_, r)| r.owner.as_ref() == Some(old)).map(|(_, r)| r.clone()).collect();
        for r in &mut moved {
            r.owner = Some(new.clone());
            self.swarm.restore_file(r.clone());
        }
        if let Some(n) = self.published_by.remove(old) {
            *self.published_by.entry(new.clone()).or_insert(0) += n;
        }
        moved
    }

    /// Verification changes since the last call (to write to the durable index).
    pub fn take_trust_changes(&mut self) -> Vec<(ChunkId, Option<swarm_core::swarm::trust::TrustRecord>)> {
        self.swarm.take_trust_changes()
    }
}
