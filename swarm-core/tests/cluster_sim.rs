//! Deterministic simulation of a tracker cluster's membership and shard leases
//! ([`swarm_core::cluster::lease::Leases`], the machine the tracker's NATS driver runs) in
//! virtual time: N nodes, a JetStream-like KV bucket (revisions, compare-and-set, entries that
//! expire a lease time after their last write, leader elections during which reads and
//! writes fail or go unanswered, slow answers), a message bus (latency, lost and reordered
//! messages), nodes cut off from NATS that come back, nodes stopped (SIGSTOP) that resume
//! and read what waited for them, nodes that die and come back under a new tag.
//!
//! One seeded RNG and ordered maps: a seed gives the same run. `CLUSTER_SIM_SEED=n` replays
//! one seed (with `CLUSTER_SIM_TRACE=1`, every fault printed; `CLUSTER_SIM_SHARD=s` adds the
//! KV operations on shard `s`); `CLUSTER_SIM_SEEDS=n` runs n seeds (100 by default, about 14 s
//! of CPU in a debug build; 1,000 were run while writing it).
//!
//! Invariants, asserted after every event:
//! 1. **One actor.** At most one node acts for a shard at any instant, and the node that acts
//!    holds the shard's entry in the KV (no split brain past a lease).
//! 2. **A resumed node does not act on what it lost.** A node stopped while its shard moved
//!    acts for it again only after a write of its own after it resumed.
//! 3. **No stale view.** An owner a node reports held the shard in the KV within its view time (three lease times, `Timing::view_ttl_ms`)
//!    (plus a KV time-out): a node stopped or cut off says "unknown", not what it knew.
//! 4. **A failed KV operation is not a lost lease.** A node lets a shard go only when the KV
//!    no longer names it (or it gives the shard up for balance, or shuts down, or could not
//!    load the shard's files within a lease time).
//! 5. **Bounded `Unavailable`.** No node acts for a shard for at most a lease time plus a
//!    few periods after its gap began, the last node fault during it (the node that held or
//!    just took the shard may be the one stopped), or the KV outage during it ended.
//! 6. **Convergence.** Once faults heal, within a bound of periods, every node reports the
//!    owner the KV names for every shard, and that owner acts for it (the time it took is
//!    reported).
//! 7. **No acknowledged publish lost.** Files are published all along to the node acting for
//!    their shard (acknowledged once the KV has them); every node watches the file index
//!    (lost while cut off, replayed when it hears NATS again). A node healed from a cut reads
//!    the KV from a replica still catching up for a while (a view as of when it was cut off:
//!    what JetStream did in `e2e/tests/cluster_nat.rs`). Loads go through
//!    [`swarm_core::cluster::shard_load::ShardLoad`] as in the tracker, and a watched file of a
//!    shard held is kept (adopted). At the end, the node acting for each shard keeps every
//!    file acknowledged for it. `CLUSTER_SIM_UNPROTECT=check` or `=adopt` removes one of the
//!    two protections (the tests below see each one's removal lose files).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use swarm_core::cluster::lease::{KvOp, KvResult, Leases, Output};
use swarm_core::cluster::plan::Seen;
use swarm_core::cluster::shard_load::{LoadStep, ShardLoad};
use swarm_core::cluster::Timing;
use swarm_core::FileId;

const SHARDS: u16 = 16;
const TTL: u64 = 3000;
/// Faults happen in the first part of a run; the rest is calm.
const FAULTS_UNTIL: u64 = 45_000;
const RUN_UNTIL: u64 = 70_000;

/// splitmix64: small, seeded, the same everywhere.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) < (p * 1_000_000.0) as u64
    }
}

#[derive(Debug, Clone)]
enum Msg {
    Beat { from: u16 },
    Took { from: u16, shard: u16, revision: u64 },
}

#[derive(Debug, Clone)]
enum Ev {
    /// The node's machine asked to be woken now (`gen` tells stale wake-ups apart).
    Tick {
        node: usize,
        gen: u64,
    },
    /// A request reaches the KV.
    KvArrive {
        node: usize,
        inc: u32,
        tag: u16,
        id: u64,
        op: KvOp,
    },
    /// The KV's answer reaches the node.
    KvAnswer {
        node: usize,
        inc: u32,
        id: u64,
        result: KvResult,
    },
    /// A bus message reaches node `node`.
    Deliver {
        node: usize,
        inc: u32,
        msg: Msg,
    },
    /// A publish reaches the node acting for the file's shard.
    Publish,
    /// Node `node`'s watch of the file index hears of `file`.
    Watch {
        node: usize,
        inc: u32,
        file: u64,
    },
    /// Node `node`'s watch starts over (it hears NATS again): the index's whole content.
    Replay {
        node: usize,
        inc: u32,
    },
    /// The answer to a whole read of `shard` (load number `load`).
    ShardRead {
        node: usize,
        inc: u32,
        shard: u16,
        load: u64,
    },
    /// The answers to reads of single files.
    FilesRead {
        node: usize,
        inc: u32,
        shard: u16,
        load: u64,
        files: Vec<u64>,
    },
    Fault(Fault),
}

/// Which protections of the file index are on (both in the tracker).
#[derive(Debug, Clone, Copy)]
struct Protect {
    /// Loads are checked against the watch ([`ShardLoad`]); off: the first read is believed.
    check_load: bool,
    /// A watched file of a shard held is kept.
    adopt: bool,
}

impl Protect {
    fn from_env() -> Self {
        let off = std::env::var("CLUSTER_SIM_UNPROTECT").unwrap_or_default();
        Protect { check_load: off != "check", adopt: off != "adopt" }
    }
}

fn file_id(n: u64) -> FileId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&n.to_le_bytes());
    FileId(id)
}

fn file_num(f: &FileId) -> u64 {
    u64::from_le_bytes(f.0[..8].try_into().unwrap())
}

fn shard_of_file(n: u64) -> u16 {
    (n % SHARDS as u64) as u16
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Pause(usize),
    /// Stops the node right after it next sends a renewal (its answer waits for the resume).
    PauseMidWrite(usize),
    Resume(usize),
    Cut(usize),
    Heal(usize),
    Kill(usize),
    Restart(usize),
    KvDown,
    KvUp,
}

/// One KV entry written (for the invariants): who, when, until when it counted.
#[derive(Debug, Clone, Copy)]
struct Record {
    owner: u16,
    from: u64,
    until: u64,
}

#[derive(Default)]
struct Kv {
    revision: u64,
    /// shard → (owner, revision, written at)
    entries: BTreeMap<u16, (u16, u64, u64)>,
    history: BTreeMap<u16, Vec<Record>>,
    down: bool,
    /// When the last outage ended.
    up_at: u64,
}

impl Kv {
    fn live(&self, shard: u16, now: u64) -> Option<(u16, u64, u64)> {
        self.entries.get(&shard).copied().filter(|(_, _, at)| now < at + TTL)
    }
    fn close(&mut self, shard: u16, now: u64) {
        if let Some(r) = self.history.get_mut(&shard).and_then(|h| h.last_mut()) {
            r.until = r.until.min(now);
        }
    }
    fn write(&mut self, shard: u16, owner: u16, now: u64) -> u64 {
        self.close(shard, now);
        // What ended long ago matters to no invariant (and would slow every check).
        if let Some(h) = self.history.get_mut(&shard) {
            h.retain(|r| r.until + 15_000 > now);
        }
        self.revision += 1;
        self.entries.insert(shard, (owner, self.revision, now));
        self.history.entry(shard).or_default().push(Record { owner, from: now, until: now + TTL });
        self.revision
    }
    fn apply(&mut self, tag: u16, op: KvOp, now: u64) -> KvResult {
        match op {
            KvOp::ReadAll => KvResult::Leases(
                (0..SHARDS)
                    .map(|s| Some(self.live(s, now).map(|(owner, revision, _)| Seen { owner, revision })))
                    .collect(),
            ),
            KvOp::Create { shard } => match self.live(shard, now) {
                Some(_) => KvResult::Conflict,
                None => KvResult::Done(self.write(shard, tag, now)),
            },
            KvOp::Update { shard, revision } => match self.live(shard, now) {
                Some((_, r, _)) if r == revision => KvResult::Done(self.write(shard, tag, now)),
                _ => KvResult::Conflict,
            },
            KvOp::Delete { shard, revision } => match self.live(shard, now) {
                Some((_, r, _)) if r == revision => {
                    self.close(shard, now);
                    self.entries.remove(&shard);
                    KvResult::Done(0)
                }
                _ => KvResult::Conflict,
            },
        }
    }
    /// Whether `owner` held `shard` at some time in `[since, now]`.
    fn held_since(&self, shard: u16, owner: u16, since: u64) -> bool {
        self.history.get(&shard).is_some_and(|h| h.iter().any(|r| r.owner == owner && r.until > since))
    }
}

struct Node {
    tag: u16,
    inc: u32,
    m: Leases,
    alive: bool,
    paused: bool,
    cut: bool,
    /// What reached the node while it was stopped, in order.
    held: Vec<Ev>,
    gen: u64,
    tick_at: Option<u64>,
    /// Shards that moved to another node while this one was stopped, and when it resumed.
    lost_while_paused: BTreeSet<u16>,
    resumed_at: u64,
    pause_after_write: bool,
    /// The files its watch of the index has heard of.
    index: BTreeSet<u64>,
    /// The files it keeps, per shard held.
    kept: BTreeMap<u16, BTreeSet<u64>>,
    /// Loads in progress: shard → (load number, machine, files read).
    loads: BTreeMap<u16, (u64, ShardLoad, BTreeSet<u64>)>,
    /// Until when its reads see the KV as of an earlier time: (until, as of).
    behind: Option<(u64, u64)>,
    cut_at: u64,
}

impl Node {
    fn fresh(tag: u16, inc: u32, now: u64) -> Self {
        Node {
            tag,
            inc,
            m: Leases::new(tag, SHARDS, Timing::new(TTL), now),
            alive: true,
            paused: false,
            cut: false,
            held: Vec::new(),
            gen: 0,
            tick_at: None,
            lost_while_paused: BTreeSet::new(),
            resumed_at: 0,
            pause_after_write: false,
            index: BTreeSet::new(),
            kept: BTreeMap::new(),
            loads: BTreeMap::new(),
            behind: None,
            cut_at: 0,
        }
    }

    fn indexed(&self, shard: u16) -> HashSet<FileId> {
        self.index.iter().filter(|f| shard_of_file(**f) == shard).map(|f| file_id(*f)).collect()
    }
}

struct Sim {
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    nodes: Vec<Node>,
    kv: Kv,
    next_tag: u16,
    trace: bool,
    /// Per shard: since when no node acts for it (`None`: one does).
    gap: Vec<Option<u64>>,
    /// When faults were last active (the calm starts after).
    calm_from: u64,
    converged_at: Option<u64>,
    /// When a node was last stopped, cut off or killed.
    node_fault_at: u64,
    longest_gap: u64,
    loss: f64,
    breaches: Vec<String>,
    /// Every file acknowledged to its publisher: file → when.
    files: BTreeMap<u64, u64>,
    next_file: u64,
    next_load: u64,
    /// Publishes stop after this (the last ones settle before the end).
    publish_until: u64,
    protect: Protect,
}

impl Sim {
    fn new(seed: u64, n: usize) -> Self {
        let mut sim = Sim {
            rng: Rng(seed),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: Vec::new(),
            kv: Kv::default(),
            next_tag: 1,
            trace: std::env::var("CLUSTER_SIM_TRACE").is_ok(),
            gap: vec![Some(0); SHARDS as usize],
            calm_from: 0,
            converged_at: None,
            node_fault_at: 0,
            longest_gap: 0,
            loss: 0.02,
            breaches: Vec::new(),
            files: BTreeMap::new(),
            next_file: 0,
            next_load: 0,
            publish_until: RUN_UNTIL - 15_000,
            protect: Protect::from_env(),
        };
        for i in 0..n {
            let start = sim.rng.range(0, 500);
            let tag = sim.fresh_tag();
            sim.nodes.push(Node::fresh(tag, 0, start));
            sim.wake(i, start);
        }
        sim.at(1_000, Ev::Publish);
        sim
    }

    fn fresh_tag(&mut self) -> u16 {
        let t = self.next_tag;
        self.next_tag += 1;
        t
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    /// Makes sure node `i` is woken by `t`.
    fn wake(&mut self, i: usize, t: u64) {
        let n = &mut self.nodes[i];
        if n.tick_at.is_some_and(|at| at <= t) {
            return;
        }
        n.gen += 1;
        n.tick_at = Some(t);
        let gen = n.gen;
        self.at(t, Ev::Tick { node: i, gen });
    }

    fn schedule_faults(&mut self) {
        let n = self.nodes.len();
        let mut t = 3_000;
        while t < FAULTS_UNTIL - 10_000 {
            t += self.rng.range(1_500, 6_000);
            let node = self.rng.range(0, n as u64 - 1) as usize;
            let len = self.rng.range(500, 9_000);
            let (a, b) = match self.rng.range(0, 3) {
                0 if self.rng.chance(0.5) => (Fault::PauseMidWrite(node), Fault::Resume(node)),
                0 => (Fault::Pause(node), Fault::Resume(node)),
                1 => (Fault::Cut(node), Fault::Heal(node)),
                2 => (Fault::Kill(node), Fault::Restart(node)),
                _ => (Fault::KvDown, Fault::KvUp),
            };
            let len = if matches!(a, Fault::KvDown) { len.min(5_000) } else { len };
            self.at(t, Ev::Fault(a));
            self.at(t + len, Ev::Fault(b));
            self.calm_from = self.calm_from.max(t + len);
        }
    }

    fn run(&mut self) {
        let mut events = 0u64;
        let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            events += 1;
            if self.trace {
                let k = match &ev {
                    Ev::Tick { .. } => "tick",
                    Ev::KvArrive { .. } => "arrive",
                    Ev::KvAnswer { .. } => "answer",
                    Ev::Deliver { .. } => "deliver",
                    Ev::Publish => "publish",
                    Ev::Watch { .. } | Ev::Replay { .. } => "watch",
                    Ev::ShardRead { .. } | Ev::FilesRead { .. } => "load",
                    Ev::Fault(_) => "fault",
                };
                *kinds.entry(k).or_default() += 1;
            }
            if t > RUN_UNTIL {
                break;
            }
            self.now = t;
            self.step(ev);
            self.check();
            if self.breaches.len() > 5 {
                break;
            }
        }
        if self.trace {
            eprintln!("{events} events: {kinds:?}");
        }
    }

    /// A node "down" for the purpose of fault budgets: stopped, cut off or dead.
    fn faulty(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        !n.alive || n.paused || n.cut
    }

    fn step(&mut self, ev: Ev) {
        let now = self.now;
        // Events for a stopped node wait for it; for a dead incarnation they vanish.
        let (node, inc) = match &ev {
            Ev::Tick { node, .. } => (Some(*node), None),
            Ev::KvAnswer { node, inc, .. }
            | Ev::Deliver { node, inc, .. }
            | Ev::Watch { node, inc, .. }
            | Ev::Replay { node, inc }
            | Ev::ShardRead { node, inc, .. }
            | Ev::FilesRead { node, inc, .. } => (Some(*node), Some(*inc)),
            _ => (None, None),
        };
        if let Some(i) = node {
            let n = &mut self.nodes[i];
            if !n.alive || inc.is_some_and(|inc| inc != n.inc) {
                return;
            }
            if n.paused {
                match ev {
                    Ev::Tick { gen, .. } if gen == n.gen => n.tick_at = None,
                    Ev::Tick { .. } => {}
                    ev => n.held.push(ev),
                }
                return;
            }
        }
        match ev {
            Ev::Tick { node, gen } => {
                if self.nodes[node].gen != gen {
                    return;
                }
                self.nodes[node].tick_at = None;
                self.nodes[node].m.handle_timeout(now);
            }
            Ev::KvArrive { node, inc, tag, id, op } => {
                let answer_lat = if self.rng.chance(0.01) { self.rng.range(100, 2_500) } else { self.rng.range(1, 20) };
                if self.kv.down {
                    // An election: "no stream found" at once, or no answer at all.
                    if self.rng.chance(0.5) {
                        let t = now + answer_lat;
                        self.at(t, Ev::KvAnswer { node, inc, id, result: KvResult::Failed });
                    }
                    return;
                }
                let result = self.kv.apply(tag, op, now);
                if self.trace
                    && std::env::var("CLUSTER_SIM_SHARD").is_ok_and(|x| Some(x) == op.shard().map(|s| s.to_string()))
                {
                    eprintln!("{now}: node {tag} {op:?} -> {result:?}");
                }
                if !self.nodes[node].cut {
                    let t = now + answer_lat;
                    self.at(t, Ev::KvAnswer { node, inc, id, result });
                }
                return;
            }
            Ev::KvAnswer { node, id, result, .. } => self.nodes[node].m.handle_kv(now, id, result),
            Ev::Deliver { node, msg, .. } => {
                if self.nodes[node].cut {
                    return;
                }
                match msg {
                    Msg::Beat { from } => self.nodes[node].m.handle_beat(now, from, String::new(), 0),
                    Msg::Took { from, shard, revision } => self.nodes[node].m.handle_took(now, from, shard, revision),
                }
            }
            Ev::Publish => {
                self.publish();
                return;
            }
            Ev::Watch { node, file, .. } => {
                if self.nodes[node].cut {
                    return; // lost: the replay after the cut brings it
                }
                self.watched(node, &[file]);
            }
            Ev::Replay { node, .. } => {
                if self.nodes[node].cut {
                    return;
                }
                let all: Vec<u64> = self.files.keys().copied().collect();
                self.nodes[node].index.clear();
                self.watched(node, &all);
            }
            Ev::ShardRead { node, shard, load, .. } => {
                if self.nodes[node].loads.get(&shard).is_none_or(|(l, _, _)| *l != load) {
                    return;
                }
                let read: Option<Vec<u64>> = (!self.kv.down && !self.nodes[node].cut).then(|| {
                    let view = self.view_of(node, false);
                    view.into_iter().filter(|f| shard_of_file(*f) == shard).collect()
                });
                let indexed = if self.protect.check_load { self.nodes[node].indexed(shard) } else { HashSet::new() };
                let ids: Option<Vec<FileId>> = read.as_ref().map(|r| r.iter().map(|f| file_id(*f)).collect());
                let n = &mut self.nodes[node];
                let (_, machine, data) = n.loads.get_mut(&shard).expect("checked");
                if let Some(r) = read {
                    *data = r.into_iter().collect();
                }
                let step = machine.shard_read(now, ids.as_deref(), &indexed);
                self.load_step(node, shard, load, step);
            }
            Ev::FilesRead { node, shard, load, files, .. } => {
                if self.nodes[node].loads.get(&shard).is_none_or(|(l, _, _)| *l != load) {
                    return;
                }
                let found: Vec<u64> = if self.kv.down || self.nodes[node].cut {
                    Vec::new()
                } else {
                    // Single reads may be served by the replica catching up too (direct gets).
                    let stale = self.rng.chance(0.5);
                    let view = self.view_of(node, !stale);
                    files.into_iter().filter(|f| view.contains(f)).collect()
                };
                let indexed = if self.protect.check_load { self.nodes[node].indexed(shard) } else { HashSet::new() };
                let ids: Vec<FileId> = found.iter().map(|f| file_id(*f)).collect();
                let n = &mut self.nodes[node];
                let (_, machine, data) = n.loads.get_mut(&shard).expect("checked");
                data.extend(found);
                let step = machine.files_read(now, &ids, &indexed);
                self.load_step(node, shard, load, step);
            }
            Ev::Fault(f) => {
                self.fault(f);
                return;
            }
        }
        if let Some(i) = node {
            self.outputs(i);
        }
    }

    fn fault(&mut self, f: Fault) {
        let now = self.now;
        if self.trace {
            eprintln!("{now:>7} ms: {f:?}");
        }
        let budget = self.nodes.len() - 1;
        let faulty = (0..self.nodes.len()).filter(|i| self.faulty(*i)).count();
        match f {
            Fault::Pause(i) if !self.faulty(i) && faulty < budget => {
                self.node_fault_at = now;
                self.nodes[i].paused = true;
                self.nodes[i].lost_while_paused.clear();
                self.nodes[i].resumed_at = now; // marks the start; set again on resume
            }
            // A stop armed for the next renewal that did not come yet is called off.
            Fault::Resume(i) if !self.nodes[i].paused => self.nodes[i].pause_after_write = false,
            Fault::Resume(i) => {
                let n = &mut self.nodes[i];
                n.paused = false;
                let since = n.resumed_at;
                n.resumed_at = now;
                let tag = n.tag;
                // Shards some other node held in the KV while this one was stopped.
                let lost: BTreeSet<u16> = (0..SHARDS)
                    .filter(|s| {
                        self.kv
                            .history
                            .get(s)
                            .is_some_and(|h| h.iter().any(|r| r.owner != tag && r.from < now && r.until > since))
                    })
                    .collect();
                self.nodes[i].lost_while_paused = lost;
                // What waited is read first or the timers fire first: either can happen.
                let held = std::mem::take(&mut self.nodes[i].held);
                let timers_first = self.rng.chance(0.5);
                if timers_first {
                    self.nodes[i].m.handle_timeout(now);
                    self.outputs(i);
                }
                for ev in held {
                    self.step(ev);
                    self.check();
                }
                self.nodes[i].m.handle_timeout(now);
                self.outputs(i);
            }
            Fault::PauseMidWrite(i) if !self.faulty(i) && faulty < budget => self.nodes[i].pause_after_write = true,
            Fault::Cut(i) if !self.faulty(i) && faulty < budget => {
                self.node_fault_at = now;
                self.nodes[i].cut = true;
                self.nodes[i].cut_at = now;
            }
            Fault::Heal(i) if self.nodes[i].cut => {
                self.nodes[i].cut = false;
                // Its NATS server catches up for a while; its watch starts over.
                let until = now + self.rng.range(500, 4_000);
                self.nodes[i].behind = Some((until, self.nodes[i].cut_at));
                let (t, inc) = (now + self.rng.range(0, 3_000), self.nodes[i].inc);
                self.at(t, Ev::Replay { node: i, inc });
            }
            Fault::Kill(i) if !self.faulty(i) && faulty < budget => {
                self.node_fault_at = now;
                let n = &mut self.nodes[i];
                n.alive = false;
                n.held.clear();
            }
            Fault::Restart(i) if !self.nodes[i].alive => {
                let tag = self.fresh_tag();
                let (inc, gen) = (self.nodes[i].inc + 1, self.nodes[i].gen);
                self.nodes[i] = Node::fresh(tag, inc, now);
                self.nodes[i].gen = gen; // a tick of the old incarnation must not pass for a new one
                self.wake(i, now);
                let t = now + self.rng.range(0, 1_000);
                self.at(t, Ev::Replay { node: i, inc });
            }
            Fault::KvDown if !self.kv.down => self.kv.down = true,
            Fault::KvUp if self.kv.down => {
                self.kv.down = false;
                self.kv.up_at = now;
            }
            _ => {}
        }
    }

    fn send(&mut self, from: usize, msg: Msg) {
        if self.nodes[from].cut {
            return;
        }
        for to in 0..self.nodes.len() {
            if matches!(msg, Msg::Took { .. }) && to == from {
                continue;
            }
            if self.rng.chance(self.loss) {
                continue;
            }
            let t = self.now + self.rng.range(1, 40);
            let inc = self.nodes[to].inc;
            self.at(t, Ev::Deliver { node: to, inc, msg: msg.clone() });
        }
    }

    /// Carries out what node `i`'s machine asked for, then schedules its next wake-up.
    fn outputs(&mut self, i: usize) {
        let now = self.now;
        while let Some(o) = self.nodes[i].m.poll_output() {
            let (tag, inc) = (self.nodes[i].tag, self.nodes[i].inc);
            match o {
                Output::Kv { id, op } => {
                    if !self.nodes[i].cut {
                        let t = now + self.rng.range(1, 20);
                        self.at(t, Ev::KvArrive { node: i, inc, tag, id, op });
                    }
                    if self.nodes[i].pause_after_write && matches!(op, KvOp::Update { .. }) {
                        self.nodes[i].pause_after_write = false;
                        self.fault(Fault::Pause(i));
                    }
                }
                Output::Beat => self.send(i, Msg::Beat { from: tag }),
                Output::Load { shard } => {
                    if self.trace && std::env::var("CLUSTER_SIM_SHARD").is_ok_and(|x| x == shard.to_string()) {
                        eprintln!("{now}: node {tag} loads {shard}");
                    }
                    self.next_load += 1;
                    let load = self.next_load;
                    self.nodes[i].loads.insert(shard, (load, ShardLoad::new(now, TTL), BTreeSet::new()));
                    let t = now + self.rng.range(5, 80);
                    self.at(t, Ev::ShardRead { node: i, inc, shard, load });
                }
                Output::Took { shard, revision, .. } => self.send(i, Msg::Took { from: tag, shard, revision }),
                Output::Drop { shard, why } => {
                    if self.trace && std::env::var("CLUSTER_SIM_SHARD").is_ok_and(|x| x == shard.to_string()) {
                        eprintln!("{now}: node {tag} drops {shard}: {why}");
                    }
                    // Invariant 4: let go only of what the KV no longer names this node for.
                    // A load given up (its reads failed or stayed behind for a lease time) gives
                    // the shard back: it is taken again later, from a fresh read.
                    let justified = matches!(
                        why,
                        "another node holds fewer shards" | "shutting down" | "its files could not be loaded"
                    ) || self.kv.live(shard, now).is_none_or(|(owner, _, _)| owner != tag);
                    if !justified {
                        self.breach(format!("node {tag} let shard {shard} go ({why}) while the KV still names it"));
                    }
                    self.nodes[i].kept.remove(&shard);
                    self.nodes[i].loads.remove(&shard);
                }
                Output::Joined { .. } | Output::Left { .. } | Output::Reconnect | Output::Rejoined => {}
            }
        }
        let t = self.nodes[i].m.poll_timeout().max(now);
        self.wake(i, t);
    }

    /// A publish of a new file, to the node acting for its shard: acknowledged once the KV
    /// has it, then every node's watch hears of it.
    fn publish(&mut self) {
        let now = self.now;
        if now < self.publish_until {
            let t = now + self.rng.range(100, 600);
            self.at(t, Ev::Publish);
        }
        let n = self.next_file;
        self.next_file += 1;
        let shard = shard_of_file(n);
        let Some(i) = (0..self.nodes.len())
            .find(|i| self.running(*i) && !self.nodes[*i].cut && self.nodes[*i].m.acts(now, shard))
        else {
            return; // `unavailable`: the publisher tries again later, nothing was acknowledged
        };
        if self.kv.down {
            return;
        }
        self.files.insert(n, now);
        self.nodes[i].kept.entry(shard).or_default().insert(n);
        for j in 0..self.nodes.len() {
            let t = now + self.rng.range(1, 60);
            let inc = self.nodes[j].inc;
            self.at(t, Ev::Watch { node: j, inc, file: n });
        }
    }

    /// Node `i`'s watch heard of `files`: indexed, and kept if their shard is held here.
    fn watched(&mut self, i: usize, files: &[u64]) {
        let adopt = self.protect.adopt;
        let n = &mut self.nodes[i];
        for &f in files {
            n.index.insert(f);
            let shard = shard_of_file(f);
            if adopt && n.m.holds(shard) {
                n.kept.entry(shard).or_default().insert(f);
            }
        }
    }

    /// The files node `i`'s reads see: all, or as of when it was cut off while its NATS
    /// server catches up (`fresh`: a read served by an up-to-date replica).
    fn view_of(&self, i: usize, fresh: bool) -> BTreeSet<u64> {
        let as_of = match self.nodes[i].behind {
            Some((until, as_of)) if !fresh && self.now < until => as_of,
            _ => u64::MAX,
        };
        self.files.iter().filter(|(_, at)| **at < as_of).map(|(f, _)| *f).collect()
    }

    /// Carries out a load's next step.
    fn load_step(&mut self, i: usize, shard: u16, load: u64, step: LoadStep) {
        let now = self.now;
        let inc = self.nodes[i].inc;
        match step {
            LoadStep::ReadShard => {
                let t = now + self.rng.range(5, 80);
                self.at(t, Ev::ShardRead { node: i, inc, shard, load });
            }
            LoadStep::WaitUntil(until) => {
                let t = until.max(now) + self.rng.range(5, 80);
                self.at(t, Ev::ShardRead { node: i, inc, shard, load });
            }
            LoadStep::ReadFiles(ids) => {
                let files = ids.iter().map(file_num).collect();
                let t = now + self.rng.range(5, 40);
                self.at(t, Ev::FilesRead { node: i, inc, shard, load, files });
            }
            LoadStep::Done => {
                let n = &mut self.nodes[i];
                let (_, _, data) = n.loads.remove(&shard).expect("a load in progress");
                let kept = n.kept.entry(shard).or_default();
                kept.extend(data);
                let count = kept.len();
                n.m.loaded(now, shard, Some(count));
            }
            LoadStep::GiveUp { .. } => {
                let n = &mut self.nodes[i];
                n.loads.remove(&shard);
                n.kept.remove(&shard);
                n.m.loaded(now, shard, None);
            }
        }
    }

    /// Invariant 7, at the end of a run: the node acting for each shard keeps every file
    /// acknowledged for it.
    fn check_files(&mut self) {
        let now = self.now;
        let mut found = Vec::new();
        for (&f, &at) in &self.files {
            let shard = shard_of_file(f);
            for (i, n) in self.nodes.iter().enumerate() {
                if self.running(i) && n.m.acts(now, shard) && !n.kept.get(&shard).is_some_and(|k| k.contains(&f)) {
                    found.push(format!(
                        "file {f} (shard {shard}) acknowledged at {at} ms is not kept by node {}, which acts for its shard",
                        n.tag
                    ));
                }
            }
        }
        for b in found {
            self.breach(b);
        }
    }

    fn breach(&mut self, what: String) {
        if self.breaches.len() <= 5 {
            self.breaches.push(format!("at {} ms: {what}", self.now));
        }
    }

    fn running(&self, i: usize) -> bool {
        self.nodes[i].alive && !self.nodes[i].paused
    }

    fn check(&mut self) {
        let now = self.now;
        let timing = Timing::new(TTL);
        let mut faults_now = self.kv.down;
        for i in 0..self.nodes.len() {
            faults_now |= self.faulty(i);
        }
        let mut all_agree = !faults_now;
        for s in 0..SHARDS {
            let actors: Vec<usize> =
                (0..self.nodes.len()).filter(|i| self.running(*i) && self.nodes[*i].m.acts(now, s)).collect();
            // 1. one actor, and it holds the KV's entry.
            if actors.len() > 1 {
                let tags: Vec<u16> = actors.iter().map(|i| self.nodes[*i].tag).collect();
                self.breach(format!("split brain: nodes {tags:?} act for shard {s}"));
            }
            let kv_owner = self.kv.live(s, now);
            let mut found = Vec::new();
            for &i in &actors {
                let n = &self.nodes[i];
                let tag = n.tag;
                if kv_owner.is_none_or(|(o, _, _)| o != tag) {
                    found.push(format!("node {tag} acts for shard {s}, the KV names {kv_owner:?}"));
                }
                // 2. a resumed node does not act on a shard it lost, before a write of its own.
                if n.lost_while_paused.contains(&s) && kv_owner.is_none_or(|(_, _, at)| at < n.resumed_at) {
                    found.push(format!("node {tag} resumed and acts for shard {s} it lost while stopped"));
                }
            }
            for f in found {
                self.breach(f);
            }
            // 3. no stale view.
            let horizon = now.saturating_sub(timing.view_ttl_ms() + timing.kv_timeout_ms() + 100);
            for i in 0..self.nodes.len() {
                if !self.running(i) {
                    continue;
                }
                let view = self.nodes[i].m.owner(now, s);
                if let Some(o) = view.filter(|o| kv_owner.is_none_or(|(k, _, _)| k != *o)) {
                    if !self.kv.held_since(s, o, horizon) {
                        let tag = self.nodes[i].tag;
                        self.breach(format!(
                            "node {tag} reports node {o} for shard {s}, which has not held it since {horizon} ms"
                        ));
                    }
                }
                if view != kv_owner.map(|(o, _, _)| o) {
                    if all_agree && self.trace && now > self.calm_from + 20_000 {
                        let (tag, view) = (self.nodes[i].tag, self.nodes[i].m.owner(now, s));
                        eprintln!("{now}: node {tag} sees {view:?} for shard {s}, the KV {kv_owner:?}");
                    }
                    all_agree = false;
                }
            }
            // 5. bounded Unavailable.
            match (actors.is_empty(), self.gap[s as usize]) {
                (true, None) => self.gap[s as usize] = Some(now),
                (false, Some(from)) => {
                    self.gap[s as usize] = None;
                    if from > 0 {
                        // A node stopped, cut off or killed during the gap may have held the
                        // shard (or just taken it): its lease must lapse first.
                        let start = from.max(self.kv.up_at).max(self.node_fault_at);
                        let allowed = start + TTL + 4 * timing.period_ms() + timing.kv_timeout_ms();
                        self.longest_gap = self.longest_gap.max(now - from);
                        if now > allowed {
                            self.breach(format!("shard {s} had no node from {from} ms to {now} ms"));
                        }
                    }
                }
                _ => {}
            }
            if actors.is_empty() {
                if all_agree && self.trace && now > self.calm_from + 20_000 {
                    eprintln!("{now}: no node acts for shard {s}; the KV {kv_owner:?}");
                    for n in &self.nodes {
                        let held: Vec<_> = n.m.held().filter(|(x, _)| *x == s).collect();
                        eprintln!(
                            "  node {} alive {} paused {} cut {} connected {} holds {held:?}",
                            n.tag,
                            n.alive,
                            n.paused,
                            n.cut,
                            n.m.connected(now)
                        );
                    }
                }
                all_agree = false;
            }
        }
        // 6. convergence once faults heal, and it lasts.
        let bound = self.calm_from + 2 * timing.member_timeout_ms() + SHARDS as u64 * timing.period_ms();
        if now > self.calm_from && all_agree && self.converged_at.is_none() {
            self.converged_at = Some(now);
        }
        if now > bound && self.converged_at.is_none() {
            self.breach(format!(
                "no agreement on the shard owners {} ms after the faults healed",
                now - self.calm_from
            ));
        }
    }
}

/// Runs seed `seed` with random faults; returns what broke.
fn run_seed(seed: u64) -> (Vec<String>, u64) {
    let n = 2 + (seed % 3) as usize;
    let mut sim = Sim::new(seed, n);
    sim.schedule_faults();
    sim.run();
    sim.check_files();
    (sim.breaches, sim.longest_gap)
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("CLUSTER_SIM_SEED") {
        return vec![s.parse().expect("CLUSTER_SIM_SEED is a number")];
    }
    let n = std::env::var("CLUSTER_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    (1..=n).collect()
}

#[test]
fn the_cluster_keeps_its_invariants_under_random_faults() {
    let mut failed = Vec::new();
    let mut longest = 0;
    for seed in seeds() {
        let (breaches, gap) = run_seed(seed);
        longest = longest.max(gap);
        if !breaches.is_empty() {
            eprintln!("seed {seed} failed (replay: CLUSTER_SIM_SEED={seed} CLUSTER_SIM_TRACE=1):");
            for b in &breaches {
                eprintln!("  {b}");
            }
            failed.push(seed);
        }
    }
    eprintln!("longest time a shard had no node: {longest} ms (lease {TTL} ms)");
    assert!(failed.is_empty(), "seeds that broke an invariant: {failed:?}");
}

/// The end-to-end case that flaked (`e2e/tests/cluster.rs`,
/// `a_node_cut_off_refuses_to_act_on_what_it_lost_and_catches_up`): three nodes, node 2
/// stopped for a few lease times while the others take its shards, then resumed. It must not
/// act on (or report) what it lost, and every node must agree again on who keeps each shard.
#[test]
fn a_node_stopped_and_resumed_acts_on_nothing_it_lost_and_the_nodes_agree_again() {
    for seed in seeds().into_iter().take(20) {
        let mut sim = Sim::new(seed, 3);
        let pause = if seed % 2 == 0 { Fault::Pause(2) } else { Fault::PauseMidWrite(2) };
        sim.at(8_000, Ev::Fault(pause));
        sim.at(20_000, Ev::Fault(Fault::Resume(2)));
        sim.calm_from = 20_000;
        sim.run();
        sim.check_files();
        assert!(sim.breaches.is_empty(), "seed {seed}: {:?}", sim.breaches);
        let converged = sim.converged_at.expect("converged");
        assert!(converged >= 20_000, "seed {seed}");
    }
}

/// A JetStream leader election (every read and write fails for two seconds, less than a
/// lease's validity): no node lets a shard go, and each acts again right after.
#[test]
fn a_kv_leader_election_loses_no_lease() {
    for seed in seeds().into_iter().take(20) {
        let mut sim = Sim::new(seed, 3);
        sim.at(10_000, Ev::Fault(Fault::KvDown));
        sim.at(11_500, Ev::Fault(Fault::KvUp));
        sim.calm_from = 11_500;
        sim.run();
        sim.check_files();
        assert!(sim.breaches.is_empty(), "seed {seed}: {:?}", sim.breaches);
    }
}

/// The end-to-end case that lost a file once (`e2e/tests/cluster_nat.rs`,
/// `a_node_cut_off_from_the_others_refuses_what_it_lost_and_catches_up_when_healed`): node 2
/// of three cut off from NATS while files are published, then healed; its reads are behind for
/// a while and its watch replays the index at some point. Every file acknowledged is kept by
/// the node acting for its shard; with either protection removed, some seeds lose files (so
/// the invariant is seen to fail, and each protection is needed).
#[test]
fn a_node_healed_from_a_cut_keeps_what_was_published_during_it_and_each_protection_is_needed() {
    let failing = |protect: Protect| -> Vec<u64> {
        let mut failed = Vec::new();
        for seed in seeds().into_iter().take(40) {
            let mut sim = Sim::new(seed, 3);
            sim.protect = protect;
            sim.at(8_000, Ev::Fault(Fault::Cut(2)));
            sim.at(20_000, Ev::Fault(Fault::Heal(2)));
            sim.calm_from = 20_000;
            sim.run();
            sim.check_files();
            if !sim.breaches.is_empty() {
                if protect.check_load && protect.adopt {
                    eprintln!("seed {seed}: {:?}", sim.breaches);
                }
                failed.push(seed);
            }
        }
        failed
    };
    let all = Protect { check_load: true, adopt: true };
    assert_eq!(failing(all), Vec::<u64>::new(), "with both protections");
    if std::env::var("CLUSTER_SIM_SEED").is_ok() {
        return; // one seed replayed: it need not show the losses
    }
    let unchecked = failing(Protect { check_load: false, ..all });
    let unadopted = failing(Protect { adopt: false, ..all });
    eprintln!("seeds losing files: loads believed {unchecked:?}; watched files not adopted {unadopted:?}");
    assert!(!unchecked.is_empty(), "a load believed while behind loses no file in 40 seeds: the sim misses the case");
    assert!(
        !unadopted.is_empty(),
        "a watch replayed after the load loses no file in 40 seeds: the sim misses the case"
    );
}
