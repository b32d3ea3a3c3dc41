//! Where a new copy goes: the target choice of [`super::repair`].
//!
//! Among live peers that may take `chunk` (not leaving, not distrusted, without it, without an
//! order for it, not failed on it, with room and a free order slot), the best is, in order:
//! a clean record (no strikes: a liar's huge storage attracts no orders), the least full
//! storage after the copy, the fewest chunks, the longest-lived, the smallest id.
//!
//! **One ranking per planning round.** Scanning every peer for every chunk made planning
//! cost O(live peers) per order: 928 µs per order with 5,000 peers, 59 s of tracker CPU to
//! place the 64,000 orders of 32,000 new chunks (`swarm-core/tests/repair_bench.rs`, release
//! build). A round ([`super::Swarm::tick`]) now ranks the peers that may take copies at all
//! once, best first; each chunk walks that list to the first peer that may take *it* (past at
//! most its holders, its pending targets and its failed ones: a few entries), and the chosen
//! peer moves to its new place. Nothing else changes peers during a round, so the ranking
//! stays true. A chunk the walk finds no peer for falls back to the full scan, which also
//! says why (busy, blocked, scarce).
//!
//! The ranking orders storage fill after a copy of the round's first chunk size; a chunk of
//! another size (a file's last) is placed by the same order. Between peers of equal capacity
//! (every peer that reports none) that is the same order; between peers of different
//! capacities it can differ by less than one chunk's share of their storage.

use super::{PeerState, Swarm};
use crate::content::ChunkId;
use crate::wire::PeerId;
use std::collections::BTreeSet;

/// Why [`Swarm::choose_target`] found no target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoTarget {
    /// Peers could take it but have all their orders in flight: retry when a slot frees.
    Busy,
    /// The only peers that could take it failed an order for it: try them again then.
    Blocked { until_ms: u64 },
    /// No live peer can take another copy.
    Scarce(super::repair::Scarcity),
}

/// A peer's place in the ranking: lower is better.
type RankKey = (u32, u64, usize, u64, PeerId);

/// The peers that may take copies this round, best first ([`RankKey`]).
#[derive(Debug, Default)]
pub(super) struct Ranking {
    entries: BTreeSet<RankKey>,
    size: u32,
}

impl Swarm {
    /// The storage fill of `p` after a copy of `size` bytes (finite and non-negative, so its
    /// bits order as the number does).
    fn fill_after(&self, p: &PeerState, size: u32) -> f64 {
        let cap = p.capacity.unwrap_or(self.config.default_capacity).max(1) as f64;
        (p.used + p.reserved + size as u64) as f64 / cap
    }

    fn rank_key(&self, id: &PeerId, p: &PeerState, size: u32) -> RankKey {
        (p.trust.strikes.min(1), self.fill_after(p, size).to_bits(), p.chunks.len(), p.joined_at_ms, id.clone())
    }

    /// Whether `p` may take copies at all this round (what no chunk changes).
    fn may_take_copies(&self, p: &PeerState) -> bool {
        !p.leaving && !p.trust.distrusted && p.orders < self.config.max_orders_per_peer
    }

    /// Ranks the peers that may take copies, for a round whose first chunk is `size` bytes.
    pub(super) fn rank_targets(&self, size: u32) -> Ranking {
        let entries = self
            .peers
            .iter()
            .filter(|(_, p)| self.may_take_copies(p))
            .map(|(id, p)| self.rank_key(id, p, size))
            .collect();
        Ranking { entries, size }
    }

    /// The best peer to take a new copy of `chunk`: the first in `ranking` that may take it,
    /// or the full scan's answer when none may.
    pub(super) fn choose_ranked(&self, ranking: &Ranking, chunk: &ChunkId, size: u32) -> Result<PeerId, NoTarget> {
        let pending: Vec<&PeerId> =
            self.pending.get(chunk).into_iter().flatten().map(|o| &self.orders[o].target).collect();
        let now = self.now_ms;
        for (.., id) in &ranking.entries {
            let p = &self.peers[id];
            let failed = self.failed_targets.get(&(*chunk, id.clone())).is_some_and(|until| *until > now);
            if p.chunks.contains(chunk)
                || p.trust.failed.contains(chunk)
                || pending.contains(&id)
                || failed
                || p.free(self.config.default_capacity) < size as u64
            {
                continue;
            }
            return Ok(id.clone());
        }
        self.choose_target(chunk, size)
    }

    /// Puts `id` back in its place after it was given an order (or out, when it may take no
    /// more this round).
    pub(super) fn rerank(&self, ranking: &mut Ranking, id: &PeerId, before: &RankKey) {
        ranking.entries.remove(before);
        let p = &self.peers[id];
        if self.may_take_copies(p) {
            ranking.entries.insert(self.rank_key(id, p, ranking.size));
        }
    }

    /// `id`'s key in `ranking` as it stands (before an order changes it).
    pub(super) fn rank_key_of(&self, ranking: &Ranking, id: &PeerId) -> RankKey {
        self.rank_key(id, &self.peers[id], ranking.size)
    }

    /// The best peer to take a new copy of `chunk`, or why there is none: every live peer
    /// scanned.
    pub(super) fn choose_target(&self, chunk: &ChunkId, size: u32) -> Result<PeerId, NoTarget> {
        let pending: BTreeSet<&PeerId> =
            self.pending.get(chunk).into_iter().flatten().map(|o| &self.orders[o].target).collect();
        let failed: Vec<(&PeerId, u64)> = self.failures_of(chunk).filter(|(_, u)| *u > self.now_ms).collect();
        let (mut busy, mut blocked, mut full) = (false, None::<u64>, false);
        let mut best: Option<RankKey> = None;
        for (id, p) in &self.peers {
            if p.leaving || p.trust.distrusted || p.chunks.contains(chunk) || pending.contains(id) {
                continue;
            }
            if p.trust.failed.contains(chunk) {
                continue; // its claim of this chunk would be ignored
            }
            if p.free(self.config.default_capacity) < size as u64 {
                full = true;
                continue;
            }
            if let Some((_, until)) = failed.iter().find(|(f, _)| *f == id) {
                blocked = Some(blocked.map_or(*until, |b| b.min(*until)));
                continue;
            }
            if p.orders >= self.config.max_orders_per_peer {
                busy = true;
                continue;
            }
            let key = self.rank_key(id, p, size);
            if best.as_ref().is_none_or(|b| key < *b) {
                best = Some(key);
            }
        }
        use super::repair::Scarcity;
        match (best, busy, blocked) {
            (Some((.., id)), _, _) => Ok(id),
            (None, true, _) => Err(NoTarget::Busy),
            (None, false, Some(until_ms)) => Err(NoTarget::Blocked { until_ms }),
            (None, false, None) if full => Err(NoTarget::Scarce(Scarcity::NoRoom)),
            (None, false, None) => Err(NoTarget::Scarce(Scarcity::NotEnoughPeers)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{Manifest, ManifestBuilder};
    use crate::swarm::repair::{Order, RepairConfig};
    use crate::wire::{ClientMsg, FileMeta, PeerKind};
    use proptest::prelude::*;

    /// One peer's state in a generated swarm.
    #[derive(Debug, Clone)]
    struct PeerSpec {
        capacity: Option<u64>,
        used: u64,
        holds: Vec<bool>,
        strikes: u32,
        leaving: bool,
        failed_on: Option<usize>,
    }

    fn peer_spec(chunks: usize) -> impl Strategy<Value = PeerSpec> {
        (
            prop::option::of(8u64..200),
            0u64..120,
            prop::collection::vec(prop::bool::weighted(0.3), chunks),
            prop::sample::select(vec![0u32, 0, 0, 1, 2]),
            prop::bool::weighted(0.1),
            prop::option::weighted(0.2, 0..chunks),
        )
            .prop_map(|(capacity, used, holds, strikes, leaving, failed_on)| PeerSpec {
                capacity,
                used,
                holds,
                strikes,
                leaving,
                failed_on,
            })
    }

    fn file(i: usize) -> Manifest {
        let mut b = ManifestBuilder::new(4);
        b.push(&(i as u32).to_be_bytes());
        b.finish()
    }

    fn build(specs: &[PeerSpec], files: &[Manifest]) -> (Swarm, Vec<PeerId>) {
        let mut config =
            RepairConfig { replication: 3, max_orders_per_peer: 2, default_capacity: 100, ..Default::default() };
        config.trust.verify = false;
        let mut s = Swarm::with_config(config);
        let ids: Vec<PeerId> = (0..specs.len()).map(|i| PeerId::from_secret(&format!("placement-{i}"))).collect();
        let publisher = PeerId::from_secret("placement-publisher");
        s.join(publisher.clone(), PeerKind::Native, 0);
        for (n, m) in files.iter().enumerate() {
            s.handle(&publisher, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0);
            let meta = FileMeta::public(format!("f{n}"), "x");
            s.handle(&publisher, ClientMsg::Publish { req: n as u32, manifest: m.clone(), meta }, 0);
        }
        for (i, (id, spec)) in ids.iter().zip(specs).enumerate() {
            s.join(id.clone(), PeerKind::Native, i as u64);
            if let Some(capacity) = spec.capacity {
                s.handle(id, ClientMsg::Storage { used: spec.used, capacity }, i as u64);
            }
            let held: Vec<ChunkId> =
                files.iter().zip(&spec.holds).filter(|(_, h)| **h).map(|(m, _)| m.chunks[0]).collect();
            s.handle(id, ClientMsg::Have { chunks: held, full: false }, i as u64);
            let p = s.peers.get_mut(id).unwrap();
            p.trust.strikes = spec.strikes;
            p.leaving = spec.leaving;
            if let Some(f) = spec.failed_on {
                s.failed_targets.insert((files[f].chunks[0], id.clone()), 1_000_000);
            }
        }
        s.now_ms = 1_000;
        (s, ids)
    }

    /// What [`Swarm::plan`](super::super::repair) does with a chosen target.
    fn give_order(s: &mut Swarm, ranking: &mut Ranking, chunk: ChunkId, target: &PeerId, size: u32) {
        let before = s.rank_key_of(ranking, target);
        let order = s.next_order;
        s.next_order += 1;
        let t = s.peers.get_mut(target).unwrap();
        t.orders += 1;
        t.reserved += size as u64;
        s.orders.insert(order, Order { chunk, target: target.clone(), size, deadline_ms: u64::MAX });
        s.pending.entry(chunk).or_default().push(order);
        s.rerank(ranking, target, &before);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Through a whole round of orders, the ranked choice is the full scan's, and so is
        /// the reason when there is none.
        #[test]
        fn the_ranked_choice_is_the_full_scans(
            specs in prop::collection::vec(peer_spec(6), 1..24),
            plan in prop::collection::vec(0usize..6, 1..30),
        ) {
            let files: Vec<Manifest> = (0..6).map(file).collect();
            let (mut s, _) = build(&specs, &files);
            let size = s.chunk_sizes[&files[0].chunks[0]];
            let mut ranking = s.rank_targets(size);
            for f in plan {
                let chunk = files[f].chunks[0];
                let ranked = s.choose_ranked(&ranking, &chunk, size);
                let scanned = s.choose_target(&chunk, size);
                prop_assert_eq!(&ranked, &scanned);
                if let Ok(target) = ranked {
                    give_order(&mut s, &mut ranking, chunk, &target, size);
                }
            }
        }
    }
}
