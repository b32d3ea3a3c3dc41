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
//! bounded per peer and in total, so repair never floods the swarm; chunks that cannot be
//! placed now are retried. A returning peer's surplus copies are trimmed.

use super::{send, Output, Swarm};
use crate::content::ChunkId;
use crate::wire::{PeerId, ServerMsg};
use std::collections::BTreeSet;

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

/// Counters of the repair machinery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairStats {
    pub orders_issued: u64,
    pub orders_done: u64,
    pub orders_failed: u64,
    pub orders_expired: u64,
    pub chunks_trimmed: u64,
}

impl Swarm {
    /// Live copies of a chunk that will stay (holders that are not leaving).
    pub fn staying_copies(&self, chunk: &ChunkId) -> usize {
        self.holders(chunk).filter(|p| self.peers.get(*p).is_some_and(|s| !s.leaving)).count()
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

    /// Chunks of known files with no live copy at all.
    pub fn lost_chunks(&self) -> usize {
        self.chunk_sizes.keys().filter(|c| self.holder_count(c) == 0).count()
    }

    /// Runs every check that is due, expires late orders, retries deferred chunks and
    /// answers peers waiting to leave.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        let expired: Vec<u64> =
            self.orders.iter().filter(|(_, o)| o.deadline_ms <= now_ms).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(o) = self.finish_order(id) {
                self.repair_stats.orders_expired += 1;
                self.failed_targets.insert((o.chunk, o.target.clone()));
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
            let retry: Vec<ChunkId> = self.deferred.iter().take(slots.max(1)).copied().collect();
            for c in retry {
                self.deferred.remove(&c);
                self.check_at(c, now_ms);
            }
        }
        while let Some(entry) = self.due.first_entry() {
            if *entry.key() > now_ms {
                break;
            }
            for c in entry.remove() {
                self.plan(c, now_ms, &mut out);
            }
        }
        if !self.deferred.is_empty() && self.next_retry_ms <= now_ms {
            self.next_retry_ms = now_ms + self.config.retry_ms;
        }
        self.answer_leavers(&mut out);
        out
    }

    /// When the driver should call [`Swarm::tick`] next.
    pub fn next_deadline(&self) -> Option<u64> {
        let due = self.due.keys().next().copied();
        let order = self.orders.values().map(|o| o.deadline_ms).min();
        let retry = (!self.deferred.is_empty()).then_some(self.next_retry_ms);
        [due, order, retry].into_iter().flatten().min()
    }

    /// Orders enough fetches of `chunk` to bring it back to `R` staying copies.
    fn plan(&mut self, chunk: ChunkId, now_ms: u64, out: &mut Vec<Output>) {
        let Some(&size) = self.chunk_sizes.get(&chunk) else { return };
        let mut sources: Vec<PeerId> = self.holders(&chunk).cloned().collect();
        if sources.is_empty() {
            return; // lost until a holder comes back; reported by `lost_chunks`
        }
        let staying = self.staying_copies(&chunk);
        let pending = self.pending.get(&chunk).map_or(0, Vec::len);
        let need = self.config.replication.saturating_sub(staying + pending);
        if need == 0 {
            if pending == 0 {
                self.failed_targets.retain(|(c, _)| *c != chunk);
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
            let Some(target) = self.choose_target(&chunk, size) else {
                self.defer(chunk, now_ms);
                return;
            };
            let order = self.next_order;
            self.next_order += 1;
            let t = self.peers.get_mut(&target).expect("chosen among live peers");
            t.orders += 1;
            t.reserved += size as u64;
            self.orders.insert(
                order,
                Order { chunk, target: target.clone(), size, deadline_ms: now_ms + self.config.order_timeout_ms },
            );
            self.pending.entry(chunk).or_default().push(order);
            self.repair_stats.orders_issued += 1;
            out.push(send(&target, ServerMsg::Replicate { order, chunk, size, sources: sources.clone() }));
        }
    }

    fn defer(&mut self, chunk: ChunkId, now_ms: u64) {
        if self.deferred.is_empty() {
            self.next_retry_ms = now_ms + self.config.retry_ms;
        }
        self.deferred.insert(chunk);
    }

    /// The best peer to take a new copy of `chunk`, if any has room.
    fn choose_target(&self, chunk: &ChunkId, size: u32) -> Option<PeerId> {
        let pending: BTreeSet<&PeerId> =
            self.pending.get(chunk).into_iter().flatten().map(|o| &self.orders[o].target).collect();
        self.peers
            .iter()
            .filter(|(id, p)| {
                !p.leaving
                    && p.orders < self.config.max_orders_per_peer
                    && !p.chunks.contains(chunk)
                    && !pending.contains(id)
                    && !self.failed_targets.contains(&(*chunk, (*id).clone()))
                    && p.free(self.config.default_capacity) >= size as u64
            })
            .min_by(|(a_id, a), (b_id, b)| {
                let fill = |p: &super::PeerState| {
                    let cap = p.capacity.unwrap_or(self.config.default_capacity).max(1) as f64;
                    (p.used + p.reserved + size as u64) as f64 / cap
                };
                fill(a)
                    .total_cmp(&fill(b))
                    .then(a.chunks.len().cmp(&b.chunks.len()))
                    .then(a.joined_at_ms.cmp(&b.joined_at_ms))
                    .then(a_id.cmp(b_id))
            })
            .map(|(id, _)| id.clone())
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
            if let Some(p) = self.peers.get_mut(peer) {
                p.capacity = Some(p.used);
            }
        }
        self.failed_targets.insert((o.chunk, peer.clone()));
        self.check_at(o.chunk, now_ms);
    }

    /// After a full inventory from a returning peer: drop its copies of chunks that have more
    /// than `R` staying copies and no order in flight.
    pub(super) fn trim_surplus(&mut self, peer: &PeerId, out: &mut Vec<Output>) {
        let Some(p) = self.peers.get(peer) else { return };
        let r = self.config.replication;
        let surplus: Vec<ChunkId> =
            p.chunks.iter().filter(|c| !self.pending.contains_key(c) && self.staying_copies(c) > r).copied().collect();
        if surplus.is_empty() {
            return;
        }
        for c in &surplus {
            self.peers.get_mut(peer).expect("live").chunks.remove(c);
            self.unhold(c, peer);
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
                        || self.due.values().any(|set| set.contains(c))
                        || self.choose_target(c, size).is_some())
            });
            if busy {
                continue;
            }
            let stranded = chunks.iter().filter(|c| self.staying_copies(c) == 0).count() as u32;
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

    /// Five peers; peer 0 publishes a one-chunk file.
    fn swarm_with_file() -> (Swarm, ChunkId) {
        let mut s = Swarm::with_config(RepairConfig { replication: 3, grace_ms: 3000, ..Default::default() });
        for n in 0..5 {
            s.join(peer(n), PeerKind::Native, 0);
        }
        let mut b = ManifestBuilder::new(4);
        b.push(b"abcd");
        let m = b.finish();
        let c = m.chunks[0];
        s.handle(&peer(0), ClientMsg::Have { chunks: vec![c], full: false }, 0);
        let meta = FileMeta { name: "f".into(), mime: "x".into() };
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
}
