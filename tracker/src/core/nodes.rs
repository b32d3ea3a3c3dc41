//! In a cluster: what the core keeps of the other nodes' peers (which node each is connected
//! to, who left lately) and of the shards kept here (the shard of each chunk of their files,
//! for their verification state), changed by the news the cluster layer brings in
//! ([`crate::cluster::inbound`], [`crate::cluster::leases`]).

use super::Core;
use serde::{Deserialize, Serialize};
use swarm_core::swarm::trust::TrustRecord;
use swarm_core::swarm::FileRecord;
use swarm_core::wire::PeerKind;
use swarm_core::{ChunkId, ClientMsg, FileId, PeerId};

/// One live peer, as a node tells another about the peers connected to it (part of the
/// nodes' messages, `crate::cluster::msg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterPeer {
    pub peer: PeerId,
    pub kind: PeerKind,
    /// Its last storage report (`used`, `capacity`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<(u64, u64)>,
}

impl Core {
    /// A peer connected to `node`: known here from now on (a peer that moved there from this
    /// node loses its connection here). Returns whether it is new here.
    pub fn joined_elsewhere(&mut self, node: u16, p: RosterPeer, now_ms: u64) -> bool {
        if self.homes.get(&p.peer) == Some(&node) && self.swarm.is_live(&p.peer) {
            return false;
        }
        if let Some(c) = self.connected.get(&p.peer) {
            // It connected to another node since: the connection here is stale.
            c.outbox.close();
        }
        self.departed.remove(&p.peer);
        self.homes.insert(p.peer.clone(), node);
        self.swarm.join(p.peer.clone(), p.kind, now_ms);
        if let Some((used, capacity)) = p.storage {
            self.swarm.handle(&p.peer, ClientMsg::Storage { used, capacity }, now_ms);
        }
        true
    }

    /// `peer` left `node` (news from that node).
    pub fn left_elsewhere(&mut self, node: u16, peer: PeerId, now_ms: u64) {
        if self.homes.get(&peer) == Some(&node) {
            self.homes.remove(&peer);
            self.swarm.leave(&peer, now_ms);
            self.departed.insert(peer, now_ms);
        }
    }

    /// Whether a message `node` forwarded from `peer` is to be handled here: the peer is
    /// connected to that node as far as this one knows, or not heard of yet (directed
    /// messages can overtake the broadcast `joined`: it is known from here on).
    pub fn accept_from_node(&mut self, node: u16, peer: &PeerId, now_ms: u64) -> bool {
        match self.homes.get(peer) {
            Some(n) => *n == node,
            None if !self.connected.contains_key(peer) && !self.departed.contains_key(peer) => {
                let p = RosterPeer { peer: peer.clone(), kind: PeerKind::Native, storage: None };
                self.joined_elsewhere(node, p, now_ms);
                true
            }
            None => false,
        }
    }

    /// Peers this node knows to be connected to `node`.
    pub fn peers_at(&self, node: u16) -> u32 {
        self.homes.values().filter(|n| **n == node).count() as u32
    }

    /// Peers connected to other nodes, as this node knows them.
    pub fn remote_peer_count(&self) -> usize {
        self.homes.len()
    }

    /// The node `peer` is connected to (`me` for this one).
    pub fn home_of(&self, me: u16, peer: &PeerId) -> Option<u16> {
        if self.connected.contains_key(peer) {
            Some(me)
        } else {
            self.homes.get(peer).copied()
        }
    }

    /// Forgets the peers connected to `node`, silent for too long: they are gone until they
    /// reconnect (to another node, meanwhile). Returns how many.
    pub fn forget_node(&mut self, node: u16, now_ms: u64) -> usize {
        let lost: Vec<PeerId> = self.homes.iter().filter(|(_, n)| **n == node).map(|(p, _)| p.clone()).collect();
        for p in &lost {
            self.homes.remove(p);
            self.swarm.leave(p, now_ms);
        }
        lost.len()
    }

    /// Forgets departures older than `keep_ms`.
    pub fn forget_departed(&mut self, now_ms: u64, keep_ms: u64) {
        self.departed.retain(|_, t| now_ms.saturating_sub(*t) < keep_ms);
    }

    /// The peers connected here, for another node.
    pub fn roster(&self) -> Vec<RosterPeer> {
        self.connected
            .keys()
            .filter_map(|id| {
                let p = self.swarm.peer(id)?;
                Some(RosterPeer { peer: id.clone(), kind: p.kind, storage: p.capacity.map(|c| (p.used, c)) })
            })
            .collect()
    }

    /// The chunks of `chunks` that `from` claims here (sorted, once each).
    pub fn claims_among(&self, from: &PeerId, chunks: &[ChunkId]) -> Vec<ChunkId> {
        let Some(p) = self.swarm.peer(from) else { return Vec::new() };
        let mut held: Vec<ChunkId> = chunks.iter().filter(|c| p.chunks.contains(c)).copied().collect();
        held.sort_unstable();
        held.dedup();
        held
    }

    /// A shard taken over: its files and their chunks' verification state, loaded from the
    /// cluster's index.
    pub fn load_shard(&mut self, shard: u16, files: Vec<FileRecord>, trust: Vec<(ChunkId, TrustRecord)>) {
        for f in files {
            for c in &f.manifest.chunks {
                self.chunk_shards.insert(*c, shard);
            }
            self.swarm.restore_file(f);
        }
        for (c, r) in trust {
            self.swarm.restore_trust(c, r);
        }
    }

    /// A file of `shard` (kept here) that the cluster's index has and this node's swarm does
    /// not: a shard's load that was behind the index (JetStream still catching up after a
    /// partition healed), or a put that raced a replay. Returns whether it was new here.
    pub fn adopt_file(&mut self, shard: u16, record: FileRecord) -> bool {
        if self.swarm.file(&record.manifest.file_id()).is_some() {
            return false;
        }
        self.load_shard(shard, vec![record], Vec::new());
        true
    }

    /// A file the cluster's index no longer has (unpublished or expired by its shard's owner,
    /// which may be this node): it leaves the swarm here if a replay of the index brought it
    /// back. Returns whether it was here.
    pub fn forget_unindexed_file(&mut self, file: &FileId) -> bool {
        if self.swarm.file(file).is_none() {
            return false;
        }
        self.swarm.evict_files(&[*file]);
        true
    }

    /// This node no longer keeps `shard`: its files leave the swarm here (they stay published:
    /// the new owner keeps them). Returns how many.
    pub fn let_go_shard(&mut self, shard: u16, shard_of: impl Fn(&FileId) -> u16) -> usize {
        let files: Vec<FileId> = self.swarm.files().map(|(id, _)| *id).filter(|f| shard_of(f) == shard).collect();
        self.swarm.evict_files(&files);
        self.chunk_shards.retain(|_, s| *s != shard);
        files.len()
    }

    /// Verification changes since the last call, of chunks of the shards kept here, with
    /// their shard (to write to the cluster's index).
    pub fn take_trust_changes_by_shard(&mut self) -> Vec<(u16, ChunkId, Option<TrustRecord>)> {
        let changes = self.swarm.take_trust_changes();
        changes
            .into_iter()
            .filter_map(|(c, r)| {
                let shard = self.chunk_shards.get(&c).copied()?;
                if r.is_none() {
                    self.chunk_shards.remove(&c);
                }
                Some((shard, c, r))
            })
            .collect()
    }
}
