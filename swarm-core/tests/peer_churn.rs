//! Many real peer cores and the real tracker core under churn, in virtual time: 200 peers,
//! several files, random downloads, kills, restarts, new peers and tracker reconnects over
//! virtual minutes; some peer pairs cannot connect directly (their bytes go through the relay),
//! a few peers lie about the bytes they serve.
//!
//! Invariants checked:
//! 1. Every download finishes unless its peer dies first. It succeeds, unless during it some
//!    chunk of the file had no live honest holder; then it may fail, and only with an error that
//!    says chunks were unavailable (or could not be verified, when only liars held them).
//! 2. No peer ever stores bytes that do not hash to their id (checked every 10 s and at the end).
//! 3. After churn stops, every chunk with a live copy is back at `R` live copies, every
//!    holder the tracker lists really stores the chunk, and every honest live peer that stores
//!    a chunk is listed (a peer keeping a file it fetched stays a source).

mod peer_sim;

use peer_sim::{make_file, Behaviour, Net, NoDirect, Rng};
use std::collections::HashMap;
use std::time::Instant;
use swarm_core::swarm::repair::RepairConfig;
use swarm_core::{ChunkId, FileId, LinkPath, Manifest};

fn honestly_held(net: &Net, c: &ChunkId) -> bool {
    net.nodes.iter().any(|n| n.alive && n.behaviour == Behaviour::Honest && n.store.chunks.contains_key(c))
}

const FILES: usize = 8;
const CHUNKS: usize = 32;
const STEP_MS: u64 = 500;
const CHURN_MS: u64 = 90_000;
const QUIET_MS: u64 = 100_000;

struct Dl {
    node: usize,
    life: u64,
    id: u64,
    file: usize,
    started: u64,
}

struct Params {
    seed: u64,
    peers: usize,
    /// Peers started only during the churn.
    late: usize,
    /// Kills stop while this few peers are alive.
    min_alive: usize,
    replication: usize,
    /// Chance per step of a kill, a restart, a tracker reconnect.
    kill: f64,
    restart: f64,
    blip: f64,
    no_direct: NoDirect,
    kill_detect_ms: u64,
    /// Some download must fail for lack of holders (the test covers that branch).
    must_lose: bool,
}

#[test]
fn two_hundred_peers_under_churn() {
    churn(Params {
        seed: 0x9e37_79b9_7f4a_7c15,
        peers: 200,
        late: 20,
        min_alive: 150,
        replication: 3,
        kill: 0.3,
        restart: 0.3,
        blip: 0.05,
        no_direct: NoDirect::Hang,
        kill_detect_ms: 2_000,
        must_lose: false,
    });
}

#[test]
#[ignore = "longer: run with --ignored"]
fn two_hundred_peers_under_harsh_churn() {
    churn(Params {
        seed: 7,
        peers: 200,
        late: 20,
        min_alive: 150,
        replication: 3,
        kill: 0.5,
        restart: 0.5,
        blip: 0.3,
        no_direct: NoDirect::Fail,
        kill_detect_ms: 0,
        must_lose: false,
    });
}

#[test]
fn a_small_swarm_under_heavy_churn_loses_and_finds_chunks() {
    // 24 peers, R = 2, up to three quarters of them dead, few coming back: chunks do lose
    // every live copy, and downloads then fail naming them (or wait for holders to return).
    churn(Params {
        seed: 4,
        peers: 24,
        late: 2,
        min_alive: 6,
        replication: 2,
        kill: 0.3,
        restart: 0.08,
        blip: 0.1,
        no_direct: NoDirect::Fail,
        kill_detect_ms: 1_000,
        must_lose: true,
    });
}

fn churn(params: Params) {
    let wall = Instant::now();
    let mut rng = Rng(params.seed);
    let config = RepairConfig { replication: params.replication, ..RepairConfig::default() };
    let r = config.replication;
    let mut net = Net::new(config);
    net.no_direct = params.no_direct;
    net.kill_detect_ms = params.kill_detect_ms;
    // Wide-area latencies: downloads last long enough for kills to land in the middle of them.
    // (A data channel opens before the relay grace period ends: pairs that can connect
    // directly do.)
    net.tracker_ms = 30;
    net.link_ms = 25;
    net.ice_ms = 60;
    // Slow links: a download lasts seconds, so kills and reconnects land in the middle of many.
    net.pair_bytes_per_s = Some(8 * 1024);
    for i in 0..params.peers {
        net.add(&format!("p{i}"), 1 << 30);
    }
    for a in 0..params.peers {
        for b in a + 1..params.peers {
            if rng.chance(0.2) {
                net.block_direct(a, b);
            }
        }
    }
    // A few liars (never publishers).
    let liars: Vec<usize> = (FILES..params.peers).filter(|_| rng.chance(0.03)).collect();
    for &l in &liars {
        net.nodes[l].behaviour = Behaviour::Liar;
    }
    let files: Vec<(Manifest, Vec<Vec<u8>>)> = (0..FILES).map(|_| make_file(&mut rng, CHUNKS, 1024)).collect();
    for (f, (_, data)) in files.iter().enumerate() {
        net.put(f, data);
    }
    // Liars hold real copies of a file (and announce them), but serve corrupt bytes.
    for &l in &liars {
        let f = rng.below(FILES as u64) as usize;
        net.put(l, &files[f].1);
    }
    for i in 0..params.peers - params.late {
        net.start(i);
    }
    net.run_until(200);
    for (f, (m, _)) in files.iter().enumerate() {
        net.publish(f, m, &format!("file{f}"));
    }
    net.run_until(10_000);

    let all_chunks: Vec<ChunkId> = files.iter().flat_map(|(m, _)| m.chunks.iter().copied()).collect();
    // Per chunk: since when it has had no live honest holder (only a kill can do that: the
    // tracker trims surplus copies only), and the past such spells.
    let mut unheld_from: HashMap<ChunkId, u64> = HashMap::new();
    let mut unheld: HashMap<ChunkId, Vec<(u64, u64)>> = HashMap::new();
    let mut downloads: Vec<Dl> = Vec::new();
    let mut reconnect_at: Vec<(u64, usize)> = Vec::new();
    let (mut kills, mut restarts, mut blips) = (0, 0, 0);
    let end_churn = net.now + CHURN_MS;
    while net.now < end_churn + QUIET_MS {
        let now = net.now;
        let churn = now < end_churn;
        // Chunks without a live honest holder: back in honest hands?
        let back: Vec<ChunkId> = unheld_from.keys().copied().filter(|c| honestly_held(&net, c)).collect();
        for c in back {
            let from = unheld_from.remove(&c).expect("listed");
            unheld.entry(c).or_default().push((from, now));
        }
        if (now / STEP_MS).is_multiple_of(20) {
            net.assert_stores_sound(false);
        }
        reconnect_at.retain(|&(at, i)| {
            if at <= now && net.nodes[i].alive {
                net.connect(i);
                false
            } else {
                at > now
            }
        });
        if churn {
            let alive: Vec<usize> = (0..params.peers).filter(|&i| net.nodes[i].alive).collect();
            let dead: Vec<usize> = (0..params.peers).filter(|&i| !net.nodes[i].alive).collect();
            for _ in 0..2 {
                let i = alive[rng.below(alive.len() as u64) as usize];
                let f = rng.below(FILES as u64) as usize;
                let (m, _) = &files[f];
                let busy = downloads.iter().any(|d| d.node == i && d.file == f && d.life == net.nodes[i].life);
                let has = m.chunks.iter().all(|c| net.nodes[i].store.chunks.contains_key(c));
                if !busy && !has && net.nodes[i].conn.is_some() {
                    let id = net.download(i, m.file_id());
                    downloads.push(Dl { node: i, life: net.nodes[i].life, id, file: f, started: now });
                }
            }
            if alive.len() > params.min_alive && rng.chance(params.kill) {
                let victim = alive[rng.below(alive.len() as u64) as usize];
                net.kill(victim);
                kills += 1;
                let held: Vec<ChunkId> = net.nodes[victim].store.chunks.keys().copied().collect();
                for c in held.into_iter().filter(|c| !honestly_held(&net, c)) {
                    unheld_from.entry(c).or_insert(now);
                }
            }
            if !dead.is_empty() && rng.chance(params.restart) {
                net.start(dead[rng.below(dead.len() as u64) as usize]);
                restarts += 1;
            }
            if rng.chance(params.blip) {
                let i = alive[rng.below(alive.len() as u64) as usize];
                if net.nodes[i].alive && net.nodes[i].conn.is_some() {
                    net.disconnect(i);
                    reconnect_at.push((now + 1_000 + rng.below(2_000), i));
                    blips += 1;
                }
            }
        }
        net.run_until(now + STEP_MS);
    }

    // 1. Downloads.
    let (mut ok, mut unavailable, mut moot) = (0, 0, 0);
    let mut slowest = 0;
    let mut durations = Vec::new();
    for d in &downloads {
        let n = &net.nodes[d.node];
        let file: FileId = files[d.file].0.file_id();
        let Some((end, result)) = n.finished_runs.get(&(d.life, d.id)).cloned() else {
            assert!(n.life != d.life, "download {} of node {} (file {}) never finished", d.id, d.node, d.file);
            moot += 1; // its peer died first
            continue;
        };
        match result {
            Ok(()) => {
                ok += 1;
                let took = end - d.started;
                if took > 10_000 && n.life == d.life && std::env::var("CHURN_DEBUG").is_ok() {
                    eprintln!(
                        "slow download {} of node {} (file {}) from {}: {took} ms",
                        d.id, d.node, d.file, d.started
                    );
                    for (t, e) in &n.events {
                        if *t >= d.started && *t <= end {
                            match e {
                                swarm_core::peer::Event::Chunk { .. } => {}
                                e => eprintln!("  {t}: {e:?}"),
                            }
                        }
                    }
                }
                slowest = slowest.max(took);
                durations.push(took);
                for (k, c) in files[d.file].0.chunks.iter().enumerate() {
                    assert_eq!(n.store.chunks.get(c), Some(&files[d.file].1[k]));
                }
            }
            Err(e) => {
                let spells = |c: &ChunkId| {
                    let past = unheld.get(c).into_iter().flatten().any(|&(a, b)| a <= end && b >= d.started);
                    past || unheld_from.get(c).is_some_and(|&a| a <= end)
                };
                assert!(
                    files[d.file].0.chunks.iter().any(spells),
                    "download of {file:?} by node {} failed ({e}) although every chunk had a live honest holder",
                    d.node
                );
                assert!(
                    e.contains("no live holder") || e.contains("not held by") || e.contains("failed verification"),
                    "a download failed with an error that names no unavailable chunk: {e}"
                );
                unavailable += 1;
            }
        }
    }
    assert!(unavailable > 0 || !params.must_lose, "no download lacked holders: the test covers less than it says");
    assert!(ok >= 20 && ok * 2 > downloads.len() - moot, "only {ok} downloads succeeded: the test proves little");

    // 2. Stores.
    net.assert_stores_sound(true);

    // 3. Replication.
    for c in &all_chunks {
        let live = net.nodes.iter().filter(|n| n.alive && n.store.chunks.contains_key(c)).count();
        if live > 0 {
            assert!(live >= r, "chunk {c:?} has {live} live copies after churn stopped");
            assert!(net.swarm.holder_count(c) >= r, "the tracker counts {} copies of {c:?}", net.swarm.holder_count(c));
        }
        for n in net.nodes.iter().filter(|n| n.alive && n.behaviour == Behaviour::Honest) {
            if n.store.chunks.contains_key(c) {
                assert!(
                    net.swarm.holders(c).any(|p| *p == n.id),
                    "{:?} stores {c:?} (pinned: {}) but the tracker does not list it",
                    n.id,
                    n.store.pinned.contains(c)
                );
            }
        }
        for p in net.swarm.holders(c) {
            let n = &net.nodes[net.index[p]];
            assert!(
                n.alive && n.store.chunks.contains_key(c),
                "the tracker lists {p:?} for {c:?}; it does not hold it"
            );
        }
    }
    durations.sort();
    let by_path = |path: LinkPath| -> u64 {
        net.nodes
            .iter()
            .map(|n| n.peer.path_report().bytes_received.iter().find(|(p, _)| *p == path).map_or(0, |(_, b)| *b))
            .sum()
    };
    let (relay, direct) = (by_path(LinkPath::Relay), by_path(LinkPath::DirectHost));
    eprintln!("bytes received by live peers: {relay} through the relay, {direct} direct");
    assert!(relay > 0 && direct > 0, "one path carried nothing: the test covers less than it says");
    let pct = |p: usize| durations[(durations.len() - 1) * p / 100];
    eprintln!(
        "download times (ms): 10% {}, 25% {}, median {}, 75% {}, 90% {}, slowest {slowest}",
        pct(10),
        pct(25),
        pct(50),
        pct(75),
        pct(90)
    );
    eprintln!(
        "{} downloads: {ok} ok, {unavailable} failed for lack of holders, {moot} by peers that died; {kills} kills, \
         {restarts} restarts, {blips} tracker reconnects, {} liars, {} bad sources reported, {} events in {:?}",
        downloads.len(),
        liars.len(),
        net.bad_sources().len(),
        net.events_processed,
        wall.elapsed()
    );
}
