//! Replication: keeps every chunk of every known file on `R` live peers.
//!
//! A chunk is *checked* when something may have lowered its copy count: a file was published
//! (placement is repair of chunks that have one copy), a holder left (after a grace period, so
//! a peer that merely reconnects causes no work), an order failed or timed out, a peer asked
//! to leave. A check orders peers with room to fetch the chunk from a surviving holder.
//!
//! Placement picks, among live peers without the chunk, the one whose storage would be least
//! full afterwards (weighted by free space, which also spreads chunks evenly over equal
//! peers), then the one holding fewest chunks, then the longest-lived. Orders in flight are
//! bounded per peer and in total, so repair never floods the swarm; chunks waiting for an
//! order slot are retried in turns. A returning peer's surplus copies are trimmed.
//!
//! Scarcity: when fewer than `R` live peers could hold a chunk (too few peers, or the others
//! have no room), the chunk still gets a copy on every peer that can take one, at once: `R`
//! in effect is `min(R, live peers with room)`. Such a chunk is parked as *scarce* (with the
//! reason, for the API's health) and planned again when room appears: a peer joins, a peer
//! reports more free storage or drops chunks. A target that refused an order for lack of room
//! takes no new copies until its storage report changes; a target that failed for another
//! reason (no source delivered, timeout) is not chosen for that chunk for
//! [`RepairConfig::failed_target_ms`], then tried again (it may be the only peer left).
//! How the target is chosen, and why cheaply, is [`super::placement`]'s.

use super::placement::{NoTarget, Ranking};
use super::{send, Output, Swarm};
use crate::api::ReplicationStatus;
use crate::content::ChunkId;
use crate::wire::{PeerId, ServerMsg};

/// Replication settings.
#[derive(Debug, Clone)]
pub struct RepairConfig {
    /// Copies every chunk should have (at least 2).
    pub replication: usize,
    /// How long a departed peer's chunks wait before repair (it may come back).
    pub grace_ms: u64,
    /// An order not carried out within this time is re-planned elsewhere.
    pub order_timeout_ms: u64,
    /// Orders in flight per target peer.
    pub max_orders_per_peer: usize,
    /// Orders in flight in the whole swarm.
    pub max_orders_total: usize,
    /// How often chunks that could not be placed are tried again.
    pub retry_ms: u64,
    /// Capacity assumed for a peer that has not reported its storage.
    pub default_capacity: u64,
    /// How long a peer that failed an order (for a reason other than room) is not chosen
    /// again for that chunk.
    pub failed_target_ms: u64,
    /// Verification of claims ([`super::trust`]).
    pub trust: super::trust::TrustConfig,
    /// What one peer may claim ([`super::claims`]).
    pub claims: super::claims::ClaimLimits,
}

impl Default for RepairConfig {
    fn default() -> Self {
        Self {
            replication: 3,
            grace_ms: 3_000,
            order_timeout_ms: 20_000,
            max_orders_per_peer: 16,
            max_orders_total: 1024,
            retry_ms: 1_000,
            default_capacity: 8 << 30,
            failed_target_ms: 10_000,
            trust: Default::default(),
            claims: Default::default(),
        }
    }
}

/// One replication order in flight.
#[derive(Debug, Clone)]
pub struct Order {
    pub chunk: ChunkId,
    pub target: PeerId,
    pub size: u32,
    pub deadline_ms: u64,
}

/// Why a chunk short of `R` copies cannot get another one now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scarcity {
    /// Every live peer that stays already holds it: fewer than `R` peers.
    NotEnoughPeers,
    /// Some live peers do not hold it, but none of them has room.
    NoRoom,
}

/// Counters of the repair machinery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairStats {
    pub orders_issued: u64,
    pub orders_done: u64,
    pub orders_failed: u64,
    pub orders_expired: u64,
    pub chunks_trimmed: u64,
    /// Copies of chunks no file uses that holders were told to let go ([`super::orphans`]).
    pub orphans_trimmed: u64,
}

impl Swarm {
    /// Verified live copies of a chunk that will stay (holders that are not leaving): the
    /// copies that count toward `R`.
    pub fn staying_copies(&self, chunk: &ChunkId) -> usize {
        self.verified_holders(chunk).filter(|p| self.peers.get(*p).is_some_and(|s| !s.leaving)).count()
    }

    /// Checks `chunk` at `at_ms` (or at the next tick if that is earlier).
    pub(super) fn check_at(&mut self, chunk: ChunkId, at_ms: u64) {
        self.due.entry(at_ms).or_default().insert(chunk);
    }

    /// Orders in flight.
    pub fn orders(&self) -> impl Iterator<Item = (&u64, &Order)> {
        self.orders.iter()
    }

    /// Chunks of known files below `R` staying copies (including lost ones).
    pub fn under_replicated(&self) -> usize {
        let r = self.config.replication;
        self.chunk_sizes.keys().filter(|c| self.staying_copies(c) < r).count()
    }

    /// Chunks of known files with no verified live copy.
    pub fn lost_chunks(&self) -> usize {
        self.chunk_sizes.keys().filter(|c| self.verified_count(c) == 0).count()
    }

    /// Runs every check that is due, expires late orders, retries deferred chunks and
    /// answers peers waiting to leave.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        self.trust_tick(now_ms);
        self.expire_voided(now_ms);
        self.expire_loose(now_ms);
        let expired: Vec<u64> =
            self.orders.iter().filter(|(_, o)| o.deadline_ms <= now_ms).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(o) = self.finish_order(id) {
                self.repair_stats.orders_expired += 1;
                self.failed_targets.insert((o.chunk, o.target.clone()), now_ms + self.config.failed_target_ms);
                self.check_at(o.chunk, now_ms);
            }
        }
        if self.next_retry_ms <= now_ms && !self.deferred.is_empty() {
            // Retry as many deferred chunks as there are free order slots; the rest wait.
            let slots: usize = self
                .peers
                .values()
                .filter(|p| !p.leaving)
                .map(|p| self.config.max_orders_per_peer.saturating_sub(p.orders))
                .sum::<usize>()
                .min(self.config.max_orders_total.saturating_sub(self.orders.len()));
            let n = slots.max(1);
            let retry: Vec<ChunkId> = match self.retry_cursor {
                Some(at) => {
                    use std::ops::Bound::{Excluded, Unbounded};
                    self.deferred
                        .range((Excluded(at), Unbounded))
                        .chain(self.deferred.range(..=at))
                        .take(n)
                        .copied()
                        .collect()
                }
                None => self.deferred.iter().take(n).copied().collect(),
            };
            self.retry_cursor = retry.last().copied();
            self.failed_targets.retain(|_, until| *until > now_ms);
            for c in retry {
                self.deferred.remove(&c);
                self.check_at(c, now_ms);
            }
        }
        // One ranking of the peers that may take copies serves the whole round ([`placement`]).
        let mut ranking: Option<Ranking> = None;
        while let Some(entry) = self.due.first_entry() {
            if *entry.key() > now_ms {
                break;
            }
            for c in entry.remove() {
                self.plan(c, now_ms, &mut ranking, &mut out);
            }
        }
        if !self.deferred.is_empty() && self.next_retry_ms <= now_ms {
            self.next_retry_ms = now_ms + self.config.retry_ms;
        }
        self.answer_leavers(&mut out);
        self.flush_challenges(now_ms, &mut out);
        out
    }

    /// When the driver should call [`Swarm::tick`] next.
    pub fn next_deadline(&self) -> Option<u64> {
        let due = self.due.keys().next().copied();
        let order = self.orders.values().map(|o| o.deadline_ms).min();
        let retry = (!self.deferred.is_empty()).then_some(self.next_retry_ms);
        [due, order, retry, self.trust_deadline()].into_iter().flatten().min()
    }

    /// Orders enough fetches of `chunk` to bring it back to `R` staying copies.
    fn plan(&mut self, chunk: ChunkId, now_ms: u64, ranking: &mut Option<Ranking>, out: &mut Vec<Output>) {
        let Some(&size) = self.chunk_sizes.get(&chunk) else { return };
        self.scarce.remove(&chunk);
        // Sources are verified holders only (a fake claim must not waste an order).
        let mut sources: Vec<PeerId> = self.verified_holders(&chunk).cloned().collect();
        if sources.is_empty() {
            return; // lost until a holder comes back; reported by `lost_chunks`
        }
        let staying = self.staying_copies(&chunk);
        let pending = self.pending.get(&chunk).map_or(0, Vec::len);
        let need = self.config.replication.saturating_sub(staying + pending);
        if need == 0 {
            if pending == 0 {
                self.forget_failures(&chunk);
            }
            return;
        }
        // Sources that stay first, least busy first.
        sources.sort_by_key(|p| {
            let s = &self.peers[p];
            (s.leaving, s.orders, std::cmp::Reverse(self.now_ms.saturating_sub(s.joined_at_ms)))
        });
        sources.truncate(4);
        for _ in 0..need {
            if self.orders.len() >= self.config.max_orders_total {
                self.defer(chunk, now_ms);
                return;
            }
            let ranking = ranking.get_or_insert_with(|| self.rank_targets(size));
            let target = match self.choose_ranked(ranking, &chunk, size) {
                Ok(target) => target,
                Err(NoTarget::Busy) => return self.defer(chunk, now_ms),
                Err(NoTarget::Blocked { until_ms }) => return self.check_at(chunk, until_ms),
                Err(NoTarget::Scarce(why)) => {
                    // As many copies as live peers allow: at R in effect until room appears.
                    self.scarce.insert(chunk, why);
                    return;
                }
            };
            let order = self.next_order;
            self.next_order += 1;
            let before = self.rank_key_of(ranking, &target);
            let t = self.peers.get_mut(&target).expect("chosen among live peers");
            t.orders += 1;
            t.reserved += size as u64;
            self.rerank(ranking, &target, &before);
            self.orders.insert(
                order,
                Order { chunk, target: target.clone(), size, deadline_ms: now_ms + self.config.order_timeout_ms },
            );
            self.pending.entry(chunk).or_default().push(order);
            self.repair_stats.orders_issued += 1;
            out.push(send(&target, ServerMsg::Replicate { order, chunk, size, sources: sources.clone() }));
        }
    }

    /// Room appeared (a peer joined, reported more free storage, dropped chunks): scarce
    /// chunks are tried again, at the pace of free order slots.
    pub(super) fn room_appeared(&mut self, now_ms: u64) {
        if self.scarce.is_empty() {
            return;
        }
        let scarce = std::mem::take(&mut self.scarce);
        self.deferred.extend(scarce.into_keys());
        self.next_retry_ms = self.next_retry_ms.min(now_ms);
    }

    /// Why `chunk` cannot get another copy now, if it is short of `R` for lack of peers or
    /// room (as of its last planning).
    pub fn scarcity(&self, chunk: &ChunkId) -> Option<Scarcity> {
        self.scarce.get(chunk).copied()
    }

    /// Chunks short of `R` that are at `R` in effect (no live peer can take another copy).
    pub fn scarce_chunks(&self) -> usize {
        self.scarce.len()
    }

    /// How a file's replication stands: the most telling state of any of its chunks.
    pub fn replication_status(&self, rec: &super::FileRecord) -> ReplicationStatus {
        let r = self.config.replication;
        rec.manifest
            .chunks
            .iter()
            .map(|c| {
                if self.verified_count(c) == 0 {
                    ReplicationStatus::Lost
                } else if self.staying_copies(c) >= r {
                    ReplicationStatus::Ok
                } else {
                    match self.scarce.get(c) {
                        Some(Scarcity::NotEnoughPeers) => ReplicationStatus::NotEnoughPeers,
                        Some(Scarcity::NoRoom) => ReplicationStatus::NoRoom,
                        None => ReplicationStatus::Repairing,
                    }
                }
            })
            .max()
            .unwrap_or(ReplicationStatus::Ok)
    }

    fn forget_failures(&mut self, chunk: &ChunkId) {
        let failed: Vec<(ChunkId, PeerId)> = self.failures_of(chunk).map(|(p, _)| (*chunk, p.clone())).collect();
        for key in failed {
            self.failed_targets.remove(&key);
        }
    }

    /// Peers that failed an order for `chunk`, with until when they are passed over.
    pub(super) fn failures_of<'s>(&'s self, chunk: &'s ChunkId) -> impl Iterator<Item = (&'s PeerId, u64)> + 's {
        self.failed_targets
            .range((*chunk, PeerId(String::new()))..)
            .take_while(move |((c, _), _)| c == chunk)
            .map(|((_, p), until)| (p, *until))
    }

    fn defer(&mut self, chunk: ChunkId, now_ms: u64) {
        if self.deferred.is_empty() {
            self.next_retry_ms = now_ms + self.config.retry_ms;
        }
        self.deferred.insert(chunk);
    }

    /// Removes an order and releases its reservation.
    pub(super) fn finish_order(&mut self, order: u64) -> Option<Order> {
        let o = self.orders.remove(&order)?;
        if let Some(list) = self.pending.get_mut(&o.chunk) {
            list.retain(|x| *x != order);
            if list.is_empty() {
                self.pending.remove(&o.chunk);
            }
        }
        if let Some(t) = self.peers.get_mut(&o.target) {
            t.orders -= 1;
            t.reserved -= o.size as u64;
        }
        // A slot is free: chunks waiting for one are tried at the next tick.
        if !self.deferred.is_empty() {
            self.next_retry_ms = self.next_retry_ms.min(self.now_ms);
        }
        Some(o)
    }

    /// `peer` now holds `chunk`: an order for it is complete.
    pub(super) fn order_fulfilled(&mut self, peer: &PeerId, chunk: &ChunkId) {
        let done: Vec<u64> = self
            .pending
            .get(chunk)
            .into_iter()
            .flatten()
            .filter(|o| self.orders[*o].target == *peer)
            .copied()
            .collect();
        for o in done {
            self.finish_order(o);
            self.repair_stats.orders_done += 1;
        }
    }

    /// Handles `order_failed` from `peer`.
    pub(super) fn order_failed(&mut self, peer: &PeerId, order: u64, reason: &str, now_ms: u64) {
        let Some(o) = self.orders.get(&order) else { return };
        if o.target != *peer {
            return; // not this peer's order: ignore (peers cannot speak for others)
        }
        let o = self.finish_order(order).expect("present");
        self.repair_stats.orders_failed += 1;
        if reason.starts_with("no room") {
            // Planned around until its storage report changes.
            if let Some(p) = self.peers.get_mut(peer) {
                p.refused_room = true;
                p.refused_report = p.last_report;
            }
        } else {
            self.failed_targets.insert((o.chunk, peer.clone()), now_ms + self.config.failed_target_ms);
        }
        self.check_at(o.chunk, now_ms);
    }

    /// After a full inventory from a returning peer: drop its copies of chunks that have
    /// enough verified copies elsewhere and no order in flight. Only verified copies are
    /// counted: a verified copy goes only when more than `R` verified copies stay; a copy not
    /// verified (yet) goes when `R` verified copies stay without it. Unverified claims never
    /// make a verified copy surplus.
    pub(super) fn trim_surplus(&mut self, peer: &PeerId, out: &mut Vec<Output>) {
        let Some(p) = self.peers.get(peer) else { return };
        let r = self.config.replication;
        let surplus: Vec<ChunkId> = p
            .chunks
            .iter()
            .filter(|c| self.chunk_sizes.contains_key(c) && !self.pending.contains_key(c))
            .filter(|c| {
                let staying = self.staying_copies(c);
                if p.trust.verified.contains(c) {
                    staying > r
                } else {
                    staying >= r
                }
            })
            .copied()
            .collect();
        if surplus.is_empty() {
            return;
        }
        for c in &surplus {
            self.drop_claim(peer, c);
        }
        self.repair_stats.chunks_trimmed += surplus.len() as u64;
        out.push(send(peer, ServerMsg::Trim { chunks: surplus }));
    }

    /// A peer asked to leave: hand each of its chunks to others.
    pub(super) fn start_leave(&mut self, peer: &PeerId, now_ms: u64) {
        let Some(p) = self.peers.get_mut(peer) else { return };
        p.leaving = true;
        let chunks: Vec<ChunkId> = p.chunks.iter().copied().collect();
        for c in chunks {
            self.check_at(c, now_ms);
            self.wake_claims(&c);
        }
        // Its own orders go elsewhere.
        let mine: Vec<u64> = self.orders.iter().filter(|(_, o)| o.target == *peer).map(|(id, _)| *id).collect();
        for id in mine {
            if let Some(o) = self.finish_order(id) {
                self.check_at(o.chunk, now_ms);
            }
        }
    }

    /// Tells leaving peers whose chunks are all handed off (or cannot be) that they may go.
    fn answer_leavers(&mut self, out: &mut Vec<Output>) {
        let r = self.config.replication;
        let leavers: Vec<PeerId> =
            self.peers.iter().filter(|(_, p)| p.leaving && !p.leave_answered).map(|(id, _)| id.clone()).collect();
        for id in leavers {
            let chunks = &self.peers[&id].chunks;
            // Still working: a chunk short of R copies that has an order in flight, a check
            // due, or a peer that could take it. Otherwise it cannot be placed: stranded.
            let busy = chunks.iter().any(|c| {
                let Some(&size) = self.chunk_sizes.get(c) else { return false };
                self.staying_copies(c) < r
                    && (self.pending.contains_key(c)
                        || self.deferred.contains(c)
                        || self.due.values().any(|set| set.contains(c))
                        || self.choose_target(c, size).is_ok())
            });
            if busy {
                continue;
            }
            // Chunks of no file known here (a file removed, or in a cluster another node's
            // shard) are no one's concern here.
            let stranded =
                chunks.iter().filter(|c| self.chunk_sizes.contains_key(c) && self.staying_copies(c) == 0).count()
                    as u32;
            self.peers.get_mut(&id).expect("live").leave_answered = true;
            out.push(send(&id, ServerMsg::LeaveReady { stranded }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ManifestBuilder;
    use crate::wire::{ClientMsg, FileMeta, PeerKind};

    fn peer(n: u8) -> PeerId {
        PeerId::from_secret(&format!("p{n}"))
    }

    fn orders_in(out: &[Output]) -> Vec<(PeerId, ChunkId, Vec<PeerId>)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { to, msg: ServerMsg::Replicate { chunk, sources, .. } } => {
                    Some((to.clone(), *chunk, sources.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Repair alone: every claim counts at once (verification has its own tests in `trust`).
    fn trusting() -> RepairConfig {
        let mut c = RepairConfig { replication: 3, grace_ms: 3000, ..Default::default() };
        c.trust.verify = false;
        c
    }

    /// Five peers; peer 0 publishes a one-chunk file.
    fn swarm_with_file() -> (Swarm, ChunkId) {
        let mut s = Swarm::with_config(trusting());
        for n in 0..5 {
            s.join(peer(n), PeerKind::Native, 0);
        }
        let mut b = ManifestBuilder::new(4);
        b.push(b"abcd");
        let m = b.finish();
        let c = m.chunks[0];
        s.handle(&peer(0), ClientMsg::Have { chunks: vec![c], full: false }, 0);
        let meta = FileMeta::public("f", "x");
        s.handle(&peer(0), ClientMsg::Publish { req: 1, manifest: m, meta }, 0);
        (s, c)
    }

    fn carry_out(s: &mut Swarm, orders: &[(PeerId, ChunkId, Vec<PeerId>)], now: u64) {
        for (to, c, _) in orders {
            s.handle(to, ClientMsg::Have { chunks: vec![*c], full: false }, now);
        }
    }

    #[test]
    fn publish_places_r_minus_one_copies_from_the_uploader() {
        let (mut s, c) = swarm_with_file();
        let orders = orders_in(&s.tick(0));
        assert_eq!(orders.len(), 2, "two more copies make three");
        assert!(orders.iter().all(|(to, _, src)| *to != peer(0) && src == &vec![peer(0)]));
        assert_ne!(orders[0].0, orders[1].0, "distinct peers");
        carry_out(&mut s, &orders, 10);
        assert_eq!(s.holder_count(&c), 3);
        assert_eq!(s.orders().count(), 0, "a have completes the order");
        assert!(orders_in(&s.tick(20)).is_empty());
    }

    #[test]
    fn order_done_before_have_still_counts_the_copy() {
        let (mut s, c) = swarm_with_file();
        s.tick(0);
        let (target, order) = s.orders().map(|(id, o)| (o.target.clone(), *id)).next().unwrap();
        s.handle(&target, ClientMsg::OrderDone { order }, 5);
        assert_eq!(s.holder_count(&c), 2);
        assert_eq!(s.repair_stats.orders_done, 1);
        assert_eq!(s.repair_stats.orders_failed, 0);
        s.handle(&target, ClientMsg::Have { chunks: vec![c], full: false }, 6);
        assert_eq!(s.holder_count(&c), 2, "the late have changes nothing");
        // Someone else's order cannot be claimed.
        let (other, order2) = s.orders().map(|(id, o)| (o.target.clone(), *id)).next().unwrap();
        let stranger = (0..5).map(peer).find(|p| *p != other && *p != target && *p != peer(0)).unwrap();
        s.handle(&stranger, ClientMsg::OrderDone { order: order2 }, 7);
        assert!(!s.holders(&c).any(|h| *h == stranger));
    }

    #[test]
    fn a_lost_holder_is_replaced_after_the_grace_period_only() {
        let (mut s, c) = swarm_with_file();
        let orders = orders_in(&s.tick(0));
        carry_out(&mut s, &orders, 10);
        s.leave(&peer(0), 1000);
        assert!(orders_in(&s.tick(3999)).is_empty(), "nothing during the grace period");
        let again = orders_in(&s.tick(4000));
        assert_eq!(again.len(), 1);
        assert!(!again[0].2.contains(&peer(0)), "sources are live holders");
        carry_out(&mut s, &again, 4100);
        assert_eq!(s.holder_count(&c), 3);
    }

    #[test]
    fn a_peer_back_within_grace_causes_no_work_and_extra_copies_are_trimmed() {
        let (mut s, c) = swarm_with_file();
        let orders = orders_in(&s.tick(0));
        carry_out(&mut s, &orders, 10);
        s.leave(&peer(0), 1000);
        s.join(peer(0), PeerKind::Native, 2000);
        s.handle(&peer(0), ClientMsg::Have { chunks: vec![c], full: true }, 2000);
        assert!(orders_in(&s.tick(5000)).is_empty());
        // A fourth copy arrives with a returning peer: it is trimmed.
        let extra = (1..5).map(peer).find(|p| !s.holders(&c).any(|h| h == p)).unwrap();
        let out = s.handle(&extra, ClientMsg::Have { chunks: vec![c], full: true }, 6000);
        assert!(matches!(&out[..], [Output::Send { msg: ServerMsg::Trim { .. }, .. }]));
        assert_eq!(s.holder_count(&c), 3);
    }

    #[test]
    fn leaving_hands_chunks_off_before_leave_ready() {
        let (mut s, c) = swarm_with_file();
        s.tick(0); // placement orders, never carried out: only peer 0 holds the chunk
        s.handle(&peer(0), ClientMsg::Leave, 1);
        let out = s.tick(2);
        assert!(!out.iter().any(|o| matches!(o, Output::Send { msg: ServerMsg::LeaveReady { .. }, .. })));
        let pending: Vec<(PeerId, ChunkId, Vec<PeerId>)> =
            s.orders().map(|(_, o)| (o.target.clone(), o.chunk, vec![])).collect();
        assert!(!pending.is_empty());
        carry_out(&mut s, &pending, 3);
        let missing = 3 - s.staying_copies(&c);
        let mut out = s.tick(4);
        let more = orders_in(&out);
        assert_eq!(more.len(), missing);
        carry_out(&mut s, &more, 5);
        out.extend(s.tick(6));
        assert_eq!(s.staying_copies(&c), 3, "three copies stay without the leaver");
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Send { to, msg: ServerMsg::LeaveReady { stranded: 0 } } if *to == peer(0))));
    }

    #[test]
    fn failed_orders_go_elsewhere_and_full_peers_get_none() {
        let (mut s, _c) = swarm_with_file();
        let orders = orders_in(&s.tick(0));
        let (first, order_id) = s.orders().map(|(id, o)| (o.target.clone(), *id)).next().unwrap();
        s.handle(&first, ClientMsg::OrderFailed { order: order_id, reason: "no room: full".into() }, 1);
        let again = orders_in(&s.tick(1));
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].0, first, "not the peer that refused");
        assert!(orders.len() == 2);
        // A peer cannot fail another peer's order.
        let (victim, other_order) = s.orders().map(|(id, o)| (o.target.clone(), *id)).next().unwrap();
        let stranger = (0..5).map(peer).find(|p| *p != victim).unwrap();
        s.handle(&stranger, ClientMsg::OrderFailed { order: other_order, reason: "x".into() }, 2);
        assert!(s.orders().any(|(id, _)| *id == other_order));
    }

    /// `n` peers with room for everything; peer 0 publishes a file of `chunks` chunks.
    fn swarm_of(n: u8, chunks: usize) -> (Swarm, Vec<ChunkId>) {
        let mut s = Swarm::with_config(trusting());
        for p in 0..n {
            s.join(peer(p), PeerKind::Native, 0);
        }
        let mut b = ManifestBuilder::new(4);
        for i in 0..chunks {
            b.push(&(i as u32).to_be_bytes());
        }
        let m = b.finish();
        let cs = m.chunks.clone();
        s.handle(&peer(0), ClientMsg::Have { chunks: cs.clone(), full: false }, 0);
        let meta = FileMeta::public("f", "x");
        s.handle(&peer(0), ClientMsg::Publish { req: 1, manifest: m, meta }, 0);
        (s, cs)
    }

    /// Ticks every 100 ms from `from` to `to`, every order carried out at the next tick.
    fn run_until(s: &mut Swarm, from: u64, to: u64) {
        let mut orders = Vec::new();
        let mut now = from;
        while now <= to {
            carry_out(s, &orders, now);
            orders = orders_in(&s.tick(now));
            now += 100;
        }
    }

    #[test]
    fn survivors_below_r_still_get_every_chunk_twice() {
        // Four peers, R = 3, the file at R; two are killed: the two survivors have room for
        // everything, so every chunk must get a copy on both (R = 2 in effect), soon.
        let (mut s, cs) = swarm_of(4, 400);
        run_until(&mut s, 0, 5_000);
        assert!(cs.iter().all(|c| s.holder_count(c) == 3), "placement reached R");
        s.leave(&peer(2), 5_000);
        s.leave(&peer(3), 5_000);
        run_until(&mut s, 5_100, 5_000 + 3_000 + 1_000);
        let short: Vec<usize> = cs.iter().map(|c| s.holder_count(c)).filter(|n| *n < 2).collect();
        assert!(short.is_empty(), "{} chunks still on one peer: {short:?}", short.len());
        let rec = s.files().next().unwrap().1.clone();
        assert_eq!(s.replication_status(&rec), ReplicationStatus::NotEnoughPeers);
        assert_eq!(s.scarce_chunks(), cs.len());
        // A third peer joins: every chunk is back at R, and the file is healthy.
        s.join(peer(7), PeerKind::Native, 9_100);
        run_until(&mut s, 9_100, 12_000);
        assert!(cs.iter().all(|c| s.holder_count(c) == 3));
        assert_eq!(s.replication_status(&rec), ReplicationStatus::Ok);
        assert_eq!(s.scarce_chunks(), 0);
    }

    #[test]
    fn a_peer_without_room_is_planned_around_until_its_storage_report_changes() {
        let (mut s, c) = swarm_with_file();
        for n in 3..5 {
            s.leave(&peer(n), 0); // three peers: 0 (the uploader), 1 and 2
        }
        for n in 0..3 {
            s.handle(&peer(n), ClientMsg::Storage { used: 0, capacity: 1 << 20 }, 0);
        }
        let orders = orders_in(&s.tick(0));
        assert_eq!(orders.len(), 2);
        let (full, order) = s.orders().map(|(id, o)| (o.target.clone(), *id)).find(|(t, _)| *t == peer(1)).unwrap();
        s.handle(&full, ClientMsg::OrderFailed { order, reason: "no room: 1 of 1 bytes used".into() }, 10);
        // The peer says so again, with the same numbers: still no room.
        s.handle(&full, ClientMsg::Storage { used: 0, capacity: 1 << 20 }, 11);
        let other: Vec<_> = orders.iter().filter(|(t, ..)| *t != full).cloned().collect();
        carry_out(&mut s, &other, 12);
        assert!(orders_in(&s.tick(20)).is_empty(), "not chosen again");
        assert_eq!(s.scarcity(&c), Some(Scarcity::NoRoom));
        let rec = s.files().next().unwrap().1.clone();
        assert_eq!(s.replication_status(&rec), ReplicationStatus::NoRoom);
        assert!(orders_in(&s.tick(5_000)).is_empty(), "nor on a retry");
        // It made room: a changed report brings it back.
        s.handle(&full, ClientMsg::Storage { used: 0, capacity: 2 << 20 }, 5_100);
        let again = orders_in(&s.tick(5_100));
        assert_eq!(again.iter().map(|o| &o.0).collect::<Vec<_>>(), vec![&full]);
        carry_out(&mut s, &again, 5_200);
        assert_eq!(s.holder_count(&c), 3);
        assert_eq!(s.replication_status(&rec), ReplicationStatus::Ok);
    }

    #[test]
    fn the_only_target_that_failed_is_tried_again_after_a_while() {
        let (mut s, c) = swarm_with_file();
        for n in 2..5 {
            s.leave(&peer(n), 0); // two peers: the uploader and peer 1
        }
        let orders = orders_in(&s.tick(0));
        assert_eq!(orders.iter().map(|o| &o.0).collect::<Vec<_>>(), vec![&peer(1)], "one copy where two fit");
        let order = *s.orders().next().unwrap().0;
        s.handle(&peer(1), ClientMsg::OrderFailed { order, reason: "no source delivered".into() }, 100);
        assert!(orders_in(&s.tick(100)).is_empty());
        let rec = s.files().next().unwrap().1.clone();
        assert_eq!(s.replication_status(&rec), ReplicationStatus::Repairing);
        let wait = s.config.failed_target_ms;
        assert!(orders_in(&s.tick(100 + wait - 1)).is_empty());
        assert_eq!(s.next_deadline(), Some(100 + wait), "a check is due when the pause ends");
        let again = orders_in(&s.tick(100 + wait));
        assert_eq!(again.iter().map(|o| &o.0).collect::<Vec<_>>(), vec![&peer(1)]);
        carry_out(&mut s, &again, 100 + wait);
        assert_eq!(s.holder_count(&c), 2);
    }
}
