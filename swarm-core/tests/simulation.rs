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

use std::collections::{BTreeMap, HashMap, HashSet};
use swarm_core::swarm::repair::RepairConfig;
use swarm_core::swarm::{Output, Swarm};
use swarm_core::wire::FileMeta;
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
}

enum Event {
    /// An order's fetch completes (or fails) at this time.
    OrderDue { peer: PeerId, order: u64, chunk: ChunkId, sources: Vec<PeerId> },
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
        }
    }

    fn live_holders(&self, c: &ChunkId) -> usize {
        self.peers.values().filter(|p| p.alive && p.chunks.contains(c)).count()
    }

    fn apply(&mut self, out: Vec<Output>) {
        for o in out {
            let Output::Send { to, msg } = o else { continue };
            match msg {
                ServerMsg::Replicate { order, chunk, sources, .. } => {
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
                        assert!(self.live_holders(c) >= self.r, "a trim left {c:?} below R copies");
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
        let chunks: Vec<ChunkId> = {
            let p = self.peers.entry(id.clone()).or_default();
            p.alive = true;
            p.leaving = false;
            p.capacity = capacity;
            p.chunks.iter().copied().collect()
        };
        self.swarm.join(id.clone(), PeerKind::Native, self.now);
        let used = chunks.len() as u64 * self.chunk_size;
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
        self.swarm.leave(id, self.now);
        for c in chunks {
            if self.live_holders(&c) == 0 {
                self.lost.entry(c).or_insert(killed);
            }
        }
    }

    fn upload(&mut self, by: &PeerId, n_chunks: usize, seed: u64) {
        let mut b = ManifestBuilder::new(self.chunk_size as u32);
        for i in 0..n_chunks {
            b.push(&[(seed >> 24) as u8, (seed >> 16) as u8, (seed >> 8) as u8, seed as u8 ^ i as u8 ^ 0x5a]);
        }
        let m = b.finish();
        if m.chunks.iter().any(|c| self.peers.values().any(|p| p.chunks.contains(c))) {
            return; // collided with existing content; skip
        }
        self.peers.get_mut(by).unwrap().chunks.extend(m.chunks.iter().copied());
        let mut out = self.swarm.handle(by, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, self.now);
        let meta = FileMeta { name: format!("file-{seed}"), mime: "application/octet-stream".into() };
        out.extend(self.swarm.handle(by, ClientMsg::Publish { req: 1, manifest: m, meta }, self.now));
        self.apply(out);
    }

    fn run_events(&mut self) {
        let due: Vec<u64> = self.events.range(..=self.now).map(|(t, _)| *t).collect();
        for t in due {
            for ev in self.events.remove(&t).unwrap() {
                let Event::OrderDue { peer, order, chunk, sources } = ev;
                let Some(p) = self.peers.get(&peer) else { continue };
                if !p.alive {
                    continue; // the order died with the peer
                }
                let source_ok =
                    sources.iter().any(|s| self.peers.get(s).is_some_and(|s| s.alive && s.chunks.contains(&chunk)));
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
    }

    /// Live copies of every chunk any peer (live or dead) has on disk.
    fn copies(&self) -> HashMap<ChunkId, usize> {
        let mut n: HashMap<ChunkId, usize> = HashMap::new();
        for p in self.peers.values() {
            for c in &p.chunks {
                *n.entry(*c).or_default() += p.alive as usize;
            }
        }
        n
    }

    /// The tracker's view of every chunk's holders matches the live peers' disks.
    fn check_consistent(&self) {
        for (c, n) in self.copies() {
            assert_eq!(self.swarm.holder_count(&c), n, "tracker view of {c:?} is wrong");
        }
    }

    /// Copies `c` should have now: `R`, or as many as live staying peers can hold (those that
    /// hold it, and those with room for one more chunk).
    fn effective_target(&self, c: &ChunkId) -> usize {
        let room = self
            .peers
            .values()
            .filter(|p| {
                p.alive
                    && !p.leaving
                    && (p.chunks.contains(c) || (p.chunks.len() as u64 + 1) * self.chunk_size <= p.capacity)
            })
            .count();
        self.r.min(room)
    }

    /// Chunks with a live copy but fewer than [`Sim::effective_target`] copies.
    fn below_effective_target(&self) -> usize {
        self.copies().iter().filter(|(c, n)| **n >= 1 && **n < self.effective_target(c)).count()
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

    fn short_chunks(&self) -> usize {
        self.copies().values().filter(|n| (1..self.r).contains(*n)).count()
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
}

fn run(seed: u64, churn: Churn) {
    let config = RepairConfig { replication: 3, grace_ms: 3_000, ..Default::default() };
    let grace = config.grace_ms;
    let mut sim = Sim::new(seed, config);
    sim.ample_capacity = churn.small_capacity_chunks >= 400;
    let capacity_of =
        |n: u64| 4 * if n.is_multiple_of(2) { churn.small_capacity_chunks } else { churn.capacity_chunks };
    let mut next_peer = 0;
    for _ in 0..500 {
        sim.join(peer(next_peer), capacity_of(next_peer));
        next_peer += 1;
    }
    // Churn: uploads, joins, graceful leaves, kills and returns, 100 ms steps for 10 minutes.
    let mut uploads = 0u64;
    for step in 0..6_000 {
        let live: Vec<PeerId> =
            sim.peers.iter().filter(|(_, p)| p.alive && !p.leaving).map(|(k, _)| k.clone()).collect();
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
        let dead: Vec<PeerId> = sim.peers.iter().filter(|(_, p)| !p.alive).map(|(k, _)| k.clone()).collect();
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
    let bound = grace + 60_000;
    while sim.short_chunks() > 0 {
        assert!(
            sim.now - quiet_start <= bound,
            "{} chunks still short of R copies {} ms after churn stopped",
            sim.short_chunks(),
            sim.now - quiet_start
        );
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
    let live: Vec<&SimPeer> = sim.peers.values().filter(|p| p.alive).collect();
    let total: usize = live.iter().map(|p| p.chunks.len()).sum();
    let mean = total as f64 / live.len() as f64;
    let max = live.iter().map(|p| p.chunks.len()).max().unwrap();
    if sim.ample_capacity {
        assert!((max as f64) <= 2.0 * mean + 8.0, "a peer holds {max} chunks; mean is {mean:.1}");
    }
    assert!(sim.leave_answers > 0, "some graceful leaves completed");
    assert_eq!(sim.no_room_refusals, 0, "the tracker never orders a peer beyond its room");
    assert!(sim.swarm.repair_stats.orders_issued > 0);
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
        Churn { kill: 0.02, leave: 0.01, back: 0.015, capacity_chunks: 400, small_capacity_chunks: 400 },
    );
}

#[test]
fn swarm_heals_under_heavy_churn() {
    run(
        0x2545f4914f6cdd1d,
        Churn { kill: 0.08, leave: 0.02, back: 0.06, capacity_chunks: 400, small_capacity_chunks: 400 },
    );
}

#[test]
fn swarm_heals_when_peers_run_out_of_room() {
    run(
        0x853c49e6748fea9b,
        Churn { kill: 0.03, leave: 0.01, back: 0.02, capacity_chunks: 400, small_capacity_chunks: 4 },
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
