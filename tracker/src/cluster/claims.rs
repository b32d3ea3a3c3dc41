//! Where a peer's claims live in a cluster: only on the node that keeps the claimed chunk's
//! file (its shard's node), not on every node. A node's memory then grows with its share of
//! the claims, and a chunk's holders, its verification and its repair are all in one place.
//!
//! - A peer's `have`, `dropped` and `bad_source` are split by the [`super::index::ChunkIndex`]
//!   ([`split`]): each node that keeps some of the chunks gets its part; the rest stays here.
//!   A full inventory (`have` with `full`) reaches every live node, empty where it has no
//!   part, so each node forgets what the peer no longer holds.
//! - Claims no node is known to keep yet (a chunk of a file not indexed yet, such as a
//!   publisher's claims ahead of its `publish`; a shard between owners) stay here, *loose*, and
//!   are moved once a period to the shard's node when there is one ([`upkeep`]). A node that
//!   receives claims for a shard it does not keep (its sender's view was stale) keeps them
//!   loose too, and moves them on the same way: a stale view costs a period, never a claim.
//! - A node that takes a shard over tells every node ([`super::msg::NodeMsg::Took`]); each
//!   asks its own peers, in batches, to re-announce ([`reannouncer`]), so the claims of a node
//!   that died reach the new owner through the peers' new nodes.

use super::index::ChunkIndex;
use super::msg::NodeMsg;
use super::Cluster;
use crate::driver::Shared;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use swarm_core::{ChunkId, ClientMsg, PeerId};

/// Most chunks in one claim message between nodes (about 70 bytes each as JSON: well below
/// [`super::msg::MAX_NODE_MSG`]).
pub const CLAIMS_PER_MSG: usize = 8192;

/// Most loose claims moved to other nodes in one period (the rest wait for the next).
pub const MOVES_PER_PERIOD: usize = 200_000;

/// Where each of a list of claimed chunks goes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// Kept here: chunks of shards this node keeps, and loose ones.
    pub here: Vec<ChunkId>,
    /// For each other live node, the chunks of the shards it keeps.
    pub away: BTreeMap<u16, Vec<ChunkId>>,
}

/// The live node other than `me` that keeps `shard`, if any.
fn other_owner(shard: u16, me: u16, owners: &[Option<u16>], members: &BTreeSet<u16>) -> Option<u16> {
    owners.get(shard as usize).copied().flatten().filter(|o| *o != me && members.contains(o))
}

/// Splits claimed `chunks` between this node (`me`) and the live `members` that keep their
/// shards (`owners[shard]`). A chunk in no indexed file, or in a shard without a live owner,
/// stays here; a chunk in several shards goes to each of their nodes.
pub fn split(
    chunks: impl IntoIterator<Item = ChunkId>,
    me: u16,
    index: &ChunkIndex,
    owners: &[Option<u16>],
    members: &BTreeSet<u16>,
) -> Split {
    let mut out = Split::default();
    for c in chunks {
        let (mut indexed, mut stay) = (false, false);
        let mut sent: Vec<u16> = Vec::new();
        for shard in index.shards_of(&c) {
            indexed = true;
            match other_owner(shard, me, owners, members) {
                Some(o) if !sent.contains(&o) => {
                    sent.push(o);
                    out.away.entry(o).or_default().push(c);
                }
                Some(_) => {}
                // Kept here, or by no node yet: here, in either case.
                None => stay = true,
            }
        }
        if stay || !indexed {
            out.here.push(c);
        }
    }
    out
}

/// The node `peer` is connected to, as this node knows it.
fn home_of(state: &Shared, me: u16, peer: &PeerId) -> Option<u16> {
    state.core().home_of(me, peer)
}

/// Sends `peer`'s `have` of `chunks` to `node`, in messages of at most [`CLAIMS_PER_MSG`];
/// `full` goes with the first one only (an empty list is sent when `full`: "nothing here").
fn send_have(cluster: &Cluster, node: u16, home: u16, peer: &PeerId, chunks: &[ChunkId], full: bool) {
    if chunks.is_empty() {
        if full {
            let msg = ClientMsg::Have { chunks: Vec::new(), full: true };
            cluster.send_to(node, &NodeMsg::FromPeer { node: home, peer: peer.clone(), msg });
        }
        return;
    }
    for (i, part) in chunks.chunks(CLAIMS_PER_MSG).enumerate() {
        let msg = ClientMsg::Have { chunks: part.to_vec(), full: full && i == 0 };
        cluster.send_to(node, &NodeMsg::FromPeer { node: home, peer: peer.clone(), msg });
    }
    super::add(&cluster.stats.claims_sent, chunks.len() as u64);
}

/// A claim message (`have`, `dropped`, `bad_source`) from `from`, connected here: each node
/// gets its part, this node handles the rest.
pub fn from_local_peer(state: &Shared, cluster: &Cluster, from: &PeerId, msg: ClientMsg) {
    let me = cluster.tag;
    let members = cluster.members();
    let owners = cluster.owners();
    let split_of = |chunks: Vec<ChunkId>| split(chunks, me, &cluster.index(), &owners, &members);
    match msg {
        ClientMsg::Have { chunks, full } => {
            let s = split_of(chunks);
            for (node, chunks) in &s.away {
                send_have(cluster, *node, me, from, chunks, full);
            }
            if full {
                for node in members.iter().filter(|m| **m != me && !s.away.contains_key(m)) {
                    send_have(cluster, *node, me, from, &[], true);
                }
            }
            super::local::handle_here(state, from, ClientMsg::Have { chunks: s.here, full });
        }
        ClientMsg::Dropped { chunks } => {
            let s = split_of(chunks);
            for (node, chunks) in s.away {
                for part in chunks.chunks(CLAIMS_PER_MSG) {
                    let msg = ClientMsg::Dropped { chunks: part.to_vec() };
                    cluster.send_to(node, &NodeMsg::FromPeer { node: me, peer: from.clone(), msg });
                }
            }
            if !s.here.is_empty() {
                super::local::handle_here(state, from, ClientMsg::Dropped { chunks: s.here });
            }
        }
        ClientMsg::BadSource { peer, chunk } => {
            let s = split_of(vec![chunk]);
            for node in s.away.keys() {
                let msg = ClientMsg::BadSource { peer: peer.clone(), chunk };
                cluster.send_to(*node, &NodeMsg::FromPeer { node: me, peer: from.clone(), msg });
            }
            if !s.here.is_empty() {
                super::local::handle_here(state, from, ClientMsg::BadSource { peer, chunk });
            }
        }
        other => super::local::handle_here(state, from, other),
    }
}

/// `from`'s loose claims among `chunks` (a publisher's claims, sent to the file's node ahead
/// of its `publish`, so the file has its first holder the moment it is published).
pub fn loose_claims_of(state: &Shared, from: &PeerId, chunks: &[ChunkId]) -> Vec<ChunkId> {
    state.core().claims_among(from, chunks)
}

/// Moves loose claims to the nodes that keep their chunks now (once a period; at most
/// [`MOVES_PER_PERIOD`]). Returns how many claims moved.
pub fn upkeep(state: &Shared, cluster: &Cluster) -> usize {
    let me = cluster.tag;
    let members = cluster.members();
    let owners = cluster.owners();
    // (node, peer) → chunks to send; (peer → chunks) that no longer stay here.
    let mut moves: BTreeMap<(u16, PeerId), Vec<ChunkId>> = BTreeMap::new();
    let mut leaving: BTreeMap<PeerId, Vec<ChunkId>> = BTreeMap::new();
    let mut moved = 0;
    {
        let core = state.core();
        let index = cluster.index();
        for (chunk, peers) in core.swarm().loose_claims() {
            if moved >= MOVES_PER_PERIOD {
                break;
            }
            // Only claims that leave altogether: one that also stays here (a chunk of two
            // shards, one of them kept here) reaches the other node with its peer's next
            // inventory instead of once a period.
            let s = split([*chunk], me, &index, &owners, &members);
            if s.away.is_empty() || !s.here.is_empty() {
                continue;
            }
            for p in peers {
                for node in s.away.keys() {
                    moves.entry((*node, p.clone())).or_default().push(*chunk);
                    moved += 1;
                }
                leaving.entry(p.clone()).or_default().push(*chunk);
            }
        }
    }
    for ((node, peer), chunks) in &moves {
        // A peer whose node is not known here is gone: its claims go with it.
        if let Some(home) = home_of(state, me, peer) {
            send_have(cluster, *node, home, peer, chunks, false);
        }
    }
    for (peer, chunks) in leaving {
        super::local::handle_here(state, &peer, ClientMsg::Dropped { chunks });
    }
    if moved > 0 {
        super::add(&cluster.stats.claims_moved, moved as u64);
        tracing::debug!(claims = moved, "moved loose claims to the nodes that keep their chunks");
    }
    moved
}

/// Runs [`upkeep`] once a period until the process ends.
pub async fn run(state: Arc<Shared>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(cluster.config.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        upkeep(&state, &cluster);
    }
}

/// Asks this node's own peers to re-announce, in batches, each time it is woken
/// ([`Cluster::want_reannounce`]): after a node took shards over (their claims may have died
/// with their last node), or after this node was cut off from the cluster (what its peers
/// announced meanwhile did not reach the other nodes). Wakes that come during a round are
/// served by one more round.
pub async fn reannouncer(state: Arc<Shared>, cluster: Arc<Cluster>) {
    loop {
        cluster.reannounce_wanted.notified().await;
        // Shards taken together (a dead node's, at one lease round) make one round.
        tokio::time::sleep(cluster.config.period()).await;
        let peers: Vec<PeerId> = state.core().connected_peers();
        tracing::info!(peers = peers.len(), "asking this node's peers to re-announce");
        super::local::reannounce_now(&state, peers).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::FileId;

    fn c(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    fn index() -> ChunkIndex {
        let mut i = ChunkIndex::default();
        i.insert(0, FileId([1; 32]), &[c(1), c(2)]);
        i.insert(1, FileId([2; 32]), &[c(3), c(2)]);
        i.insert(2, FileId([3; 32]), &[c(4)]);
        i
    }

    #[test]
    fn claims_go_to_the_nodes_that_keep_their_chunks() {
        // Shard 0 is kept here (node 10), shard 1 by node 20, shard 2 by node 30.
        let owners = [Some(10), Some(20), Some(30)];
        let members = BTreeSet::from([10, 20, 30]);
        let s = split([c(1), c(2), c(3), c(4), c(9)], 10, &index(), &owners, &members);
        // c(2) is in shards 0 and 1: here, and to node 20; c(9) is in no file: loose, here.
        assert_eq!(s.here, vec![c(1), c(2), c(9)]);
        assert_eq!(s.away, BTreeMap::from([(20, vec![c(2), c(3)]), (30, vec![c(4)])]));
    }

    #[test]
    fn claims_of_a_shard_without_a_live_node_stay_here() {
        let members = BTreeSet::from([10, 20]);
        // Shard 1 has no owner; shard 2's owner (30) is not a live member.
        let owners = [Some(20), None, Some(30)];
        let s = split([c(1), c(3), c(4)], 10, &index(), &owners, &members);
        assert_eq!(s.here, vec![c(3), c(4)]);
        assert_eq!(s.away, BTreeMap::from([(20, vec![c(1)])]));
    }

    #[test]
    fn a_chunk_in_two_shards_of_one_node_goes_there_once() {
        let owners = [Some(20), Some(20), None];
        let members = BTreeSet::from([10, 20]);
        let s = split([c(2)], 10, &index(), &owners, &members);
        assert!(s.here.is_empty());
        assert_eq!(s.away, BTreeMap::from([(20, vec![c(2)])]));
    }
}
