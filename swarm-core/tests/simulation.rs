//! Deterministic simulation of the tracker's swarm core (sans-IO) with hundreds of simulated
//! peers in virtual time: uploads, random joins, graceful leaves, kills and returns, with
//! replication orders carried out (or failed) by the simulated peers after a random delay.
//!
//! Invariants checked:
//! 1. The swarm never loses a chunk: a chunk only ever drops to zero live copies when its last
//!    holders were killed (never through a trim or a graceful leave), and the tracker's view of
//!    holders always matches what the live peers really hold.
//! 2. After churn stops, every chunk with a live copy is back at `R` copies within a bounded
//!    virtual time (grace period + 60 s) when capacity allows.
//! 3. Spread: no peer holds more than `2 × mean + 8` chunks.
//! 4. Graceful leavers are told to go only when none of their chunks depends on them.
//! 5. Scarcity: when the swarm shrinks below `R` peers (or the survivors run out of room),
//!    every chunk with a live copy gets `min(R, live peers with room)` copies within bounded
//!    virtual time, and `R` again once enough peers join.
//!
//! Claims are verified ([`swarm_core::swarm::trust`]): honest peers answer every challenge
//! with `SHA-256(nonce ‖ bytes)` after a random delay, publishers send `nonces` for half of
//! the uploads (the others rely on trust on first publish). Copies above are *verified*
//! copies. With adversarial peers (10 % and 30 %) that lie in every way (fake `have` for
//! every chunk, fake `order_done`, `bad_source` slander, bogus proofs, huge `storage`):
//! 6. health never counts a fake: every verified holder is a live honest peer holding the chunk;
//! 7. an honest peer's verified holding stays verified while it lives and keeps the chunk
//!    (no lie removes it), and no honest copy is trimmed unless `R` honest copies stay;
//! 8. repair still reaches `R` verified copies after churn.

use std::collections::{BTreeMap, HashMap, HashSet};
use swarm_core::peer::proof::{nonce_items, proof};
use swarm_core::swarm::repair::RepairConfig;
use swarm_core::swarm::{Output, Swarm};
use swarm_core::wire::{ChallengeItem, FileMeta, ProofItem};
use swarm_core::{ChunkId, ClientMsg, ManifestBuilder, PeerId, PeerKind, ServerMsg};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1e6 < p
    }
}

#[derive(Default)]
struct SimPeer {
    alive: bool,
    leaving: bool,
    /// Chunks on its disk (kept while it is dead, announced when it returns).
    chunks: HashSet<ChunkId>,
    capacity: u64,
    /// Chunks of the files it published itself (its own uploads, not the tracker's placement).
    published: HashSet<ChunkId>,
    /// Lies in every way; holds nothing.
    liar: bool,
}

enum Event {
    /// An order's fetch completes (or fails) at this time.
    OrderDue { peer: PeerId, order: u64, chunk: ChunkId, sources: Vec<PeerId> },
    /// A peer answers challenges.
    Answer { peer: PeerId, items: Vec<ChallengeItem> },
}

struct Sim {
    swarm: Swarm,
    peers: BTreeMap<PeerId, SimPeer>,
    events: BTreeMap<u64, Vec<Event>>,
    rng: Rng,
    now: u64,
    chunk_size: u64,
    /// Chunks that have dropped to zero live copies, with whether a kill did it.
    lost: HashMap<ChunkId, bool>,
    leave_answers: u32,
    r: usize,
    /// Every peer has room for everything: placement can always succeed.
    ample_capacity: bool,
    /// Orders a peer had to refuse for lack of room (the tracker should never send them).
    no_room_refusals: u32,
    /// Every chunk's bytes.
    bytes: HashMap<ChunkId, Vec<u8>>,
    /// Verified holdings of honest peers as last seen, per peer (cleared when it departs).
    seen_verified: HashMap<PeerId, HashSet<ChunkId>>,
    /// Virtual time from a replication order to its copy being verified, per order.
    order_sent: HashMap<u64, u64>,
    verify_delays: Vec<u64>,
}

impl Sim {
    fn new(seed: u64, config: RepairConfig) -> Self {
        let r = config.replication;
        Self {
            swarm: Swarm::with_config(config),
            peers: BTreeMap::new(),
            events: BTreeMap::new(),
            rng: Rng(seed),
            now: 0,
            chunk_size: 4,
            lost: HashMap::new(),
            leave_answers: 0,
            r,
            ample_capacity: true,
            no_room_refusals: 0,
            bytes: HashMap::new(),
            seen_verified: HashMap::new(),
            order_sent: HashMap::new(),
            verify_delays: Vec::new(),
        }
    }

    /// Live honest copies (liars hold nothing).
    fn live_holders(&self, c: &ChunkId) -> usize {
        self.peers.values().filter(|p| p.alive && !p.liar && p.chunks.contains(c)).count()
    }

    fn apply(&mut self, out: Vec<Output>) {
        for o in out {
            let Output::Send { to, msg } = o else { continue };
            match msg {
                ServerMsg::Challenge { items } => {
                    let delay = 20 + self.rng.below(180);
                    self.events.entry(self.now + delay).or_default().push(Event::Answer { peer: to, items });
                }
                ServerMsg::Replicate { order, chunk, sources, .. } if self.peers[&to].liar => {
                    // Says it fetched it, without fetching anything.
                    let mut out = self.swarm.handle(&to, ClientMsg::OrderDone { order }, self.now);
                    out.extend(self.swarm.handle(&to, ClientMsg::Have { chunks: vec![chunk], full: false }, self.now));
                    let _ = sources;
                    self.apply(out);
                }
                ServerMsg::Trim { .. } if self.peers[&to].liar => {}
                ServerMsg::Replicate { order, chunk, sources, .. } => {
                    self.order_sent.insert(order, self.now);
                    let delay = 100 + self.rng.below(700);
                    self.events.entry(self.now + delay).or_default().push(Event::OrderDue {
                        peer: to,
                        order,
                        chunk,
                        sources,
                    });
                }
                ServerMsg::Trim { chunks } => {
                    for c in &chunks {
                        self.peers.get_mut(&to).unwrap().chunks.remove(c);
                        if let Some(seen) = self.seen_verified.get_mut(&to) {
                            seen.remove(c);
                        }
                        assert!(self.live_holders(c) >= self.r, "a trim left {c:?} below R honest copies");
                    }
                    let out = self.swarm.handle(&to, ClientMsg::Dropped { chunks }, self.now);
                    self.apply(out);
                }
                ServerMsg::LeaveReady { .. } => {
                    let p = &self.peers[&to];
                    assert!(p.leaving, "only leavers are told to go");
                    if self.ample_capacity {
                        for c in &p.chunks {
                            let staying =
                                self.peers.values().filter(|q| q.alive && !q.leaving && q.chunks.contains(c)).count();
                            assert!(staying >= self.r, "leave_ready while {c:?} has {staying} staying copies");
                        }
                    }
                    self.leave_answers += 1;
                    self.depart(&to, false);
                }
                _ => {}
            }
        }
    }

    fn join(&mut self, id: PeerId, capacity: u64) {
        let liar = self.peers.get(&id).is_some_and(|p| p.liar);
        let chunks: Vec<ChunkId> = if liar {
            // Claims every chunk it has heard of.
            self.bytes.keys().copied().collect()
        } else {
            let p = self.peers.entry(id.clone()).or_default();
            p.alive = true;
            p.leaving = false;
            p.capacity = capacity;
            p.chunks.iter().copied().collect()
        };
        if liar {
            self.peers.get_mut(&id).unwrap().alive = true;
        }
        self.swarm.join(id.clone(), PeerKind::Native, self.now);
        let used = chunks.len() as u64 * self.chunk_size;
        let capacity = if liar { u64::MAX / 2 } else { capacity };
        let used = if liar { 0 } else { used };
        let mut out = self.swarm.handle(&id, ClientMsg::Storage { used, capacity }, self.now);
        out.extend(self.swarm.handle(&id, ClientMsg::Have { chunks, full: true }, self.now));
        self.apply(out);
    }

    /// A peer goes away: killed (its chunks stay on its disk) or after a graceful leave.
    fn depart(&mut self, id: &PeerId, killed: bool) {
        let p = self.peers.get_mut(id).unwrap();
        p.alive = false;
        p.leaving = false;
        let chunks: Vec<ChunkId> = p.chunks.iter().copied().collect();
        self.seen_verified.remove(id);
        self.swarm.leave(id, self.now);
        for c in chunks {
            if self.live_holders(&c) == 0 {
                self.lost.entry(c).or_insert(killed);
            }
        }
    }

    fn upload(&mut self, by: &PeerId, n_chunks: usize, seed: u64) {
        let mut b = ManifestBuilder::new(self.chunk_size as u32);
        let mut items = Vec::new();
        let mut chunk_bytes = Vec::new();
        for i in 0..n_chunks {
            let bytes = [(seed >> 24) as u8, (seed >> 16) as u8, (seed >> 8) as u8, seed as u8 ^ i as u8 ^ 0x5a];
            let id = b.push(&bytes);
            let randoms = [self.rng.next().to_le_bytes(), self.rng.next().to_le_bytes()]
                .map(|h| std::array::from_fn(|k| h[k % 8] ^ k as u8));
            items.extend(nonce_items(id, &bytes, &randoms));
            chunk_bytes.push((id, bytes.to_vec()));
        }
        let m = b.finish();
        if m.chunks.iter().any(|c| self.bytes.contains_key(c)) {
            return; // collided with existing content; skip
        }
        self.bytes.extend(chunk_bytes);
        let publisher = self.peers.get_mut(by).unwrap();
        publisher.chunks.extend(m.chunks.iter().copied());
        publisher.published.extend(m.chunks.iter().copied());
        let file = m.file_id();
        let mut out = self.swarm.handle(by, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, self.now);
        let meta = FileMeta::public(format!("file-{seed}"), "application/octet-stream");
        out.extend(self.swarm.handle(by, ClientMsg::Publish { req: 1, manifest: m.clone(), meta }, self.now));
        // Half the publishers send nonces (native peers); the others (browsers) do not.
        if seed.is_multiple_of(2) {
            out.extend(self.swarm.handle(by, ClientMsg::Nonces { file, items }, self.now));
        }
        self.apply(out);
        // Liars claim the new chunks at once.
        let liars: Vec<PeerId> = self.peers.iter().filter(|(_, p)| p.liar && p.alive).map(|(k, _)| k.clone()).collect();
        for l in liars {
            let out = self.swarm.handle(&l, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, self.now);
            self.apply(out);
        }
    }

    /// Every liar slanders a few random (holder, chunk) pairs and resends claims.
    fn lie(&mut self) {
        let liars: Vec<PeerId> = self.peers.iter().filter(|(_, p)| p.liar && p.alive).map(|(k, _)| k.clone()).collect();
        if liars.is_empty() || self.bytes.is_empty() {
            return;
        }
        let chunks: Vec<ChunkId> = self.bytes.keys().copied().collect();
        for l in liars {
            for _ in 0..3 {
                let c = chunks[self.rng.below(chunks.len() as u64) as usize];
                let holders: Vec<PeerId> = self.swarm.holders(&c).cloned().collect();
                for h in holders {
                    let out = self.swarm.handle(&l, ClientMsg::BadSource { peer: h, chunk: c }, self.now);
                    self.apply(out);
                }
            }
            let c = chunks[self.rng.below(chunks.len() as u64) as usize];
            let out = self.swarm.handle(&l, ClientMsg::Have { chunks: vec![c], full: false }, self.now);
            self.apply(out);
        }
    }

    fn answer(&mut self, peer: PeerId, items: Vec<ChallengeItem>) {
        let Some(p) = self.peers.get(&peer) else { return };
        if !p.alive {
            return;
        }
        let items: Vec<ProofItem> = items
            .into_iter()
            .map(|it| {
                let proof = if p.liar {
                    // Bogus: a proof over made-up bytes, or "not held".
                    (it.id % 3 != 0).then(|| proof(&it.nonce, &it.id.to_le_bytes()))
                } else if p.chunks.contains(&it.chunk) {
                    Some(proof(&it.nonce, &self.bytes[&it.chunk]))
                } else {
                    None
                };
                ProofItem { id: it.id, proof }
            })
            .collect();
        let out = self.swarm.handle(&peer, ClientMsg::Proofs { items }, self.now);
        self.apply(out);
    }

    /// Health never counts a fake; honest verified holdings stay verified.
    fn check_trust(&mut self) {
        for c in self.bytes.keys() {
            for h in self.swarm.verified_holders(c) {
                let p = &self.peers[h];
                assert!(p.alive && !p.liar && p.chunks.contains(c), "{h:?} counted for {c:?} without holding it");
            }
        }
        let honest: Vec<PeerId> =
            self.peers.iter().filter(|(_, p)| p.alive && !p.liar).map(|(k, _)| k.clone()).collect();
        for id in honest {
            let now: HashSet<ChunkId> =
                self.peers[&id].chunks.iter().filter(|c| self.swarm.is_verified(&id, c)).copied().collect();
            if let Some(before) = self.seen_verified.get(&id) {
                for c in before {
                    assert!(
                        now.contains(c) || !self.peers[&id].chunks.contains(c),
                        "honest {id:?} lost its verified {c:?} while holding it"
                    );
                }
            }
            self.seen_verified.insert(id, now);
        }
    }

    fn run_events(&mut self) {
        let due: Vec<u64> = self.events.range(..=self.now).map(|(t, _)| *t).collect();
        for t in due {
            for ev in self.events.remove(&t).unwrap() {
                let (peer, order, chunk, sources) = match ev {
                    Event::OrderDue { peer, order, chunk, sources } => (peer, order, chunk, sources),
                    Event::Answer { peer, items } => {
                        self.answer(peer, items);
                        continue;
                    }
                };
                let Some(p) = self.peers.get(&peer) else { continue };
                if !p.alive {
                    continue; // the order died with the peer
                }
                let source_ok = sources
                    .iter()
                    .any(|s| self.peers.get(s).is_some_and(|s| s.alive && !s.liar && s.chunks.contains(&chunk)));
                let room = (p.chunks.len() as u64 + 1) * self.chunk_size <= p.capacity;
                let out = if source_ok && room {
                    self.peers.get_mut(&peer).unwrap().chunks.insert(chunk);
                    self.lost.remove(&chunk);
                    let mut out =
                        self.swarm.handle(&peer, ClientMsg::Have { chunks: vec![chunk], full: false }, self.now);
                    out.extend(self.swarm.handle(&peer, ClientMsg::OrderDone { order }, self.now));
                    out
                } else {
                    let reason = if room { "no source delivered" } else { "no room" };
                    self.no_room_refusals += !room as u32;
                    self.swarm.handle(&peer, ClientMsg::OrderFailed { order, reason: reason.into() }, self.now)
                };
                self.apply(out);
            }
        }
    }

    fn step(&mut self, dt: u64) {
        self.now += dt;
        self.run_events();
        let out = self.swarm.tick(self.now);
        self.apply(out);
        // Time from order to verified copy, for orders that completed.
        let done: Vec<u64> =
            self.order_sent.keys().filter(|o| !self.swarm.orders().any(|(id, _)| id == *o)).copied().collect();
        for o in done {
            let sent = self.order_sent.remove(&o).unwrap();
            self.verify_delays.push(self.now - sent);
        }
    }

    /// Live copies of every chunk any honest peer (live or dead) has on disk.
    fn copies(&self) -> HashMap<ChunkId, usize> {
        let mut n: HashMap<ChunkId, usize> = HashMap::new();
        for p in self.peers.values().filter(|p| !p.liar) {
            for c in &p.chunks {
                *n.entry(*c).or_default() += p.alive as usize;
            }
        }
        n
    }

    /// The tracker's view of every chunk's honest holders matches the live honest peers'
    /// disks, and every verified holder really holds it.
    fn check_consistent(&mut self) {
        for (c, n) in self.copies() {
            let honest = self.swarm.holders(&c).filter(|h| !self.peers[*h].liar).count();
            assert_eq!(honest, n, "tracker view of {c:?} is wrong");
        }
        self.check_trust();
    }

    /// Copies `c` should have now: `R`, or as many as live staying peers can hold (those that
    /// hold it, and those with room for one more chunk).
    fn effective_target(&self, c: &ChunkId) -> usize {
        let room = self
            .peers
            .values()
            .filter(|p| {
                p.alive
                    && !p.liar
                    && !p.leaving
                    && (p.chunks.contains(c) || (p.chunks.len() as u64 + 1) * self.chunk_size <= p.capacity)
            })
            .count();
        self.r.min(room)
    }

    /// Chunks with a live copy but fewer than [`Sim::effective_target`] verified copies.
    fn below_effective_target(&self) -> usize {
        self.copies()
            .iter()
            .filter(|(c, n)| **n >= 1 && self.swarm.staying_copies(c).min(**n) < self.effective_target(c))
            .count()
    }

    /// Steps until every chunk with a live copy is at its effective target; panics after
    /// `bound_ms`. Returns how long it took.
    fn settle(&mut self, bound_ms: u64, what: &str) -> u64 {
        let start = self.now;
        while self.below_effective_target() > 0 {
            assert!(
                self.now - start <= bound_ms,
                "{what}: {} chunks below min(R, live peers with room) {} ms on",
                self.below_effective_target(),
                self.now - start
            );
            self.step(100);
            self.check_consistent();
        }
        self.now - start
    }

    /// Chunks with a live honest copy but fewer than `R` verified copies.
    fn short_chunks(&self) -> usize {
        self.copies().iter().filter(|(c, n)| **n >= 1 && self.swarm.staying_copies(c) < self.r).count()
    }
}

fn peer(n: u64) -> PeerId {
    PeerId::from_secret(&format!("sim-peer-{n}"))
}

/// Churn rates per 100 ms step, and the room of odd- and even-numbered peers (in chunks).
struct Churn {
    kill: f64,
    leave: f64,
    back: f64,
    capacity_chunks: u64,
    small_capacity_chunks: u64,
    /// Share of the first peers that lie in every way.
    liars: f64,
}

fn run(seed: u64, churn: Churn) {
    let config = RepairConfig { replication: 3, grace_ms: 3_000, ..Default::default() };
    let grace = config.grace_ms;
    let mut sim = Sim::new(seed, config);
    sim.ample_capacity = churn.small_capacity_chunks >= 400;
    let capacity_of =
        |n: u64| 4 * if n.is_multiple_of(2) { churn.small_capacity_chunks } else { churn.capacity_chunks };
    let mut next_peer = 0;
    let mut n_liars = 0;
    for _ in 0..500 {
        if sim.rng.chance(churn.liars) {
            sim.peers.entry(peer(next_peer)).or_default().liar = true;
            n_liars += 1;
        }
        sim.join(peer(next_peer), capacity_of(next_peer));
        next_peer += 1;
    }
    // Churn: uploads, joins, graceful leaves, kills and returns, 100 ms steps for 10 minutes.
    let mut uploads = 0u64;
    for step in 0..6_000 {
        let live: Vec<PeerId> =
            sim.peers.iter().filter(|(_, p)| p.alive && !p.leaving && !p.liar).map(|(k, _)| k.clone()).collect();
        if step % 10 == 0 {
            sim.lie();
        }
        if sim.rng.chance(0.3) && !live.is_empty() {
            let by = live[sim.rng.below(live.len() as u64) as usize].clone();
            let n = 1 + sim.rng.below(8) as usize;
            uploads += 1;
            sim.upload(&by, n, seed.wrapping_mul(1_000_003).wrapping_add(uploads));
        }
        if sim.rng.chance(churn.kill) && live.len() > 50 {
            let victim = live[sim.rng.below(live.len() as u64) as usize].clone();
            sim.depart(&victim, true);
        }
        if sim.rng.chance(churn.leave) && live.len() > 50 {
            let leaver = live[sim.rng.below(live.len() as u64) as usize].clone();
            sim.peers.get_mut(&leaver).unwrap().leaving = true;
            let out = sim.swarm.handle(&leaver, ClientMsg::Leave, sim.now);
            sim.apply(out);
        }
        let dead: Vec<PeerId> = sim.peers.iter().filter(|(_, p)| !p.alive && !p.liar).map(|(k, _)| k.clone()).collect();
        if sim.rng.chance(churn.back) && !dead.is_empty() {
            let back = dead[sim.rng.below(dead.len() as u64) as usize].clone();
            let n = (0..next_peer).find(|n| peer(*n) == back).unwrap();
            sim.join(back, capacity_of(n));
        }
        if sim.rng.chance(0.01) {
            sim.join(peer(next_peer), capacity_of(next_peer));
            next_peer += 1;
        }
        sim.step(100);
        if step % 10 == 0 {
            sim.check_consistent();
        }
    }
    // Quiet: every chunk with a live copy must be back at R copies in bounded time.
    let quiet_start = sim.now;
    // With liars, orders that land on a liar fail only at the challenge timeout (30 s), and
    // the swarm core's hash maps make runs vary a little: liar runs get twice the time.
    let bound = grace + if churn.liars > 0.0 { 400_000 } else { 60_000 };
    while sim.short_chunks() > 0 {
        if sim.now - quiet_start > bound {
            let detail: Vec<String> = sim
                .copies()
                .iter()
                .filter(|(c, n)| **n >= 1 && sim.swarm.staying_copies(c) < sim.r)
                .map(|(c, n)| {
                    format!(
                        "{}: {n} honest live copies, {} verified, {} staying, {} claims, pool {}, orders {}",
                        c.short(),
                        sim.swarm.verified_count(c),
                        sim.swarm.staying_copies(c),
                        sim.swarm.holder_count(c),
                        sim.swarm.pool(c).len(),
                        sim.swarm.orders().filter(|(_, o)| o.chunk == *c).count(),
                    )
                })
                .collect();
            panic!(
                "{} chunks still short of R copies {} ms after churn stopped: {detail:#?}",
                sim.short_chunks(),
                sim.now - quiet_start
            );
        }
        sim.step(100);
        sim.check_consistent();
    }
    let healed_after = sim.now - quiet_start;
    // Let trailing leaves finish.
    for _ in 0..100 {
        sim.step(100);
    }
    for (c, by_kill) in &sim.lost {
        assert!(*by_kill, "chunk {c:?} was lost without its holders being killed");
    }
    let live: Vec<&SimPeer> = sim.peers.values().filter(|p| p.alive && !p.liar).collect();
    // Balance of what the tracker placed: a peer's own uploads are where the random uploader
    // choice put them, not placement.
    let placed = |p: &SimPeer| p.chunks.difference(&p.published).count();
    let total: usize = live.iter().map(|p| placed(p)).sum();
    let mean = total as f64 / live.len() as f64;
    let max = live.iter().map(|p| placed(p)).max().unwrap();
    if sim.ample_capacity {
        // Peers with strikes are placed last, so with liars about the honest peers that
        // answered fastest carry more.
        let spread = if churn.liars > 0.0 { 3.0 } else { 2.0 };
        assert!((max as f64) <= spread * mean + 8.0, "a peer holds {max} placed chunks; mean is {mean:.1}");
    }
    assert!(sim.leave_answers > 0, "some graceful leaves completed");
    assert_eq!(sim.no_room_refusals, 0, "the tracker never orders a peer beyond its room");
    assert!(sim.swarm.repair_stats.orders_issued > 0);
    let t = sim.swarm.trust_stats().clone();
    let mut delays = sim.verify_delays.clone();
    delays.sort();
    let pct = |q: f64| delays.get(((delays.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(0);
    println!(
        "seed {seed}: {n_liars} liars; order→verified copy ms p50 {} p90 {} p99 {} (n={}); {} challenges, \
         {} passed, {} failed, {} expired, {} strikes, {} distrusted, {} reports refuted, {} nonces agreed",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        delays.len(),
        t.challenges_sent,
        t.proofs_passed,
        t.proofs_failed,
        t.challenges_expired,
        t.strikes,
        t.distrusted,
        t.reports_refuted,
        t.nonces_agreed
    );
    if n_liars > 0 {
        assert!(t.distrusted > 0, "liars were found out");
    }
    println!(
        "seed {seed}: {} peers ever, {uploads} uploads, {} orders ({} done, {} failed, {} expired), \
         {} trimmed, {} leaves, {} chunks lost to kills, healed {healed_after} ms after churn, \
         max/mean chunks per peer {max}/{mean:.1}",
        sim.peers.len(),
        sim.swarm.repair_stats.orders_issued,
        sim.swarm.repair_stats.orders_done,
        sim.swarm.repair_stats.orders_failed,
        sim.swarm.repair_stats.orders_expired,
        sim.swarm.repair_stats.chunks_trimmed,
        sim.leave_answers,
        sim.lost.len(),
    );
}

#[test]
fn swarm_heals_under_churn() {
    run(
        0x9e3779b97f4a7c15,
        Churn { kill: 0.02, leave: 0.01, back: 0.015, capacity_chunks: 400, small_capacity_chunks: 400, liars: 0.0 },
    );
}

#[test]
fn swarm_heals_with_ten_percent_liars() {
    run(
        0x6a09e667f3bcc908,
        Churn { kill: 0.02, leave: 0.01, back: 0.015, capacity_chunks: 400, small_capacity_chunks: 400, liars: 0.1 },
    );
}

#[test]
fn swarm_heals_with_thirty_percent_liars() {
    run(
        0xbb67ae8584caa73b,
        Churn { kill: 0.02, leave: 0.01, back: 0.015, capacity_chunks: 400, small_capacity_chunks: 400, liars: 0.3 },
    );
}

#[test]
fn swarm_heals_under_heavy_churn() {
    run(
        0x2545f4914f6cdd1d,
        Churn { kill: 0.08, leave: 0.02, back: 0.06, capacity_chunks: 400, small_capacity_chunks: 400, liars: 0.0 },
    );
}

#[test]
fn swarm_heals_when_peers_run_out_of_room() {
    run(
        0x853c49e6748fea9b,
        Churn { kill: 0.03, leave: 0.01, back: 0.02, capacity_chunks: 400, small_capacity_chunks: 4, liars: 0.0 },
    );
}

/// The swarm shrinks below `R` live peers (and one survivor runs out of room), then grows back:
/// every chunk with a live copy reaches `min(R, live peers with room)` copies within a bounded
/// time after each change, and `R` once enough peers have joined.
fn shrink_and_grow(seed: u64) {
    let config = RepairConfig { replication: 3, grace_ms: 3_000, ..Default::default() };
    let grace = config.grace_ms;
    let mut sim = Sim::new(seed, config);
    let ample = 4 * 10_000;
    for n in 0..8 {
        sim.join(peer(n), ample);
    }
    for f in 0..30 {
        let by = peer(sim.rng.below(8));
        let n = 1 + sim.rng.below(8) as usize;
        sim.upload(&by, n, seed.wrapping_mul(31).wrapping_add(f));
    }
    sim.settle(30_000, "placement");
    assert_eq!(sim.short_chunks(), 0);
    // Kill all but three; the first survivor is full (it reports no room beyond what it has).
    let survivors: Vec<PeerId> = (0..3).map(peer).collect();
    for n in 3..8 {
        sim.depart(&peer(n), true);
    }
    let full = survivors[0].clone();
    let used = sim.peers[&full].chunks.len() as u64 * sim.chunk_size;
    sim.peers.get_mut(&full).unwrap().capacity = used;
    let out = sim.swarm.handle(&full, ClientMsg::Storage { used, capacity: used }, sim.now);
    sim.apply(out);
    let took = sim.settle(grace + 15_000, "three survivors, one full");
    println!("seed {seed}: three survivors (one full) settled in {took} ms");
    // Down to one with room and the full one.
    sim.depart(&survivors[2], true);
    let took = sim.settle(grace + 15_000, "two survivors, one full");
    println!("seed {seed}: two survivors (one full) settled in {took} ms");
    for _ in 0..(grace / 100 + 10) {
        sim.step(100); // past the grace period: the departed peer's chunks are planned
    }
    assert_eq!(sim.below_effective_target(), 0);
    assert!(sim.swarm.scarce_chunks() > 0, "chunks below R are known as scarce");
    // Peers join one at a time (no grace needed: room appeared).
    for n in 100..103 {
        sim.join(peer(n), ample);
        let took = sim.settle(15_000, "after a join");
        println!("seed {seed}: join {n} settled in {took} ms");
    }
    // Four live peers with room or holding: everything with a live copy is at R.
    assert_eq!(sim.short_chunks(), 0, "R once enough peers joined");
    assert_eq!(sim.no_room_refusals, 0, "the tracker never orders a peer beyond its room");
    for (c, n) in sim.copies() {
        if n > 0 {
            assert!(n >= sim.r, "{c:?} has {n} copies");
        }
    }
}

#[test]
fn swarm_below_r_keeps_every_copy_it_can_and_regrows() {
    for seed in [0x1234_5678_9abc_def1, 0x0fed_cba9_8765_4321, 0x5555_aaaa_3333_cccc] {
        shrink_and_grow(seed);
    }
}
