//! Many real peer cores and the real tracker core under churn, in virtual time: 200 peers,
//! several files, random downloads, kills, restarts, new peers and tracker reconnects over
//! virtual minutes; some peer pairs cannot connect directly (their bytes go through the relay),
//! a few peers lie about the bytes they serve.
//!
//! Invariants checked:
//! 1. Every download by a peer that stays alive finishes. It succeeds, unless during it some
//!    chunk of the file had no live honest holder; then it may fail, and only with an error that
//!    says chunks were unavailable (or could not be verified, when only liars held them).
//! 2. No peer ever stores bytes that do not hash to their id (checked every 10 s and at the end).
//! 3. After churn stops, every chunk with a live copy is back at `R` live copies, and every
//!    holder the tracker lists really stores the chunk.

mod peer_sim;

use peer_sim::{make_file, Behaviour, Net, NoDirect, Rng};
use std::collections::HashMap;
use std::time::Instant;
use swarm_core::swarm::repair::RepairConfig;
use swarm_core::{ChunkId, FileId, Manifest};

const PEERS: usize = 200;
const LATE: usize = 20;
const FILES: usize = 8;
const CHUNKS: usize = 16;
const STEP_MS: u64 = 500;
const CHURN_MS: u64 = 120_000;
const QUIET_MS: u64 = 100_000;

struct Dl {
    node: usize,
    life: u64,
    id: u64,
    file: usize,
    started: u64,
}

#[test]
fn two_hundred_peers_under_churn() {
    let wall = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let config = RepairConfig { replication: 3, ..RepairConfig::default() };
    let r = config.replication;
    let mut net = Net::new(config);
    net.no_direct = NoDirect::Hang;
    for i in 0..PEERS {
        net.add(&format!("p{i}"), 1 << 30);
    }
    for a in 0..PEERS {
        for b in a + 1..PEERS {
            if rng.chance(0.2) {
                net.block_direct(a, b);
            }
        }
    }
    // A few liars (never publishers).
    let liars: Vec<usize> = (FILES..PEERS).filter(|_| rng.chance(0.03)).collect();
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
    for i in 0..PEERS - LATE {
        net.start(i);
    }
    net.run_until(200);
    for (f, (m, _)) in files.iter().enumerate() {
        net.publish(f, m, &format!("file{f}"));
    }
    net.run_until(10_000);

    let all_chunks: Vec<ChunkId> = files.iter().flat_map(|(m, _)| m.chunks.iter().copied()).collect();
    // Per chunk: the last step at which it had no live honest holder.
    let mut last_unheld: HashMap<ChunkId, u64> = HashMap::new();
    let mut downloads: Vec<Dl> = Vec::new();
    let mut reconnect_at: Vec<(u64, usize)> = Vec::new();
    let (mut kills, mut restarts, mut blips) = (0, 0, 0);
    let end_churn = net.now + CHURN_MS;
    while net.now < end_churn + QUIET_MS {
        let now = net.now;
        let churn = now < end_churn;
        for c in &all_chunks {
            let held = net.nodes.iter().any(|n| n.alive && n.behaviour == Behaviour::Honest && n.store.chunks.contains_key(c));
            if !held {
                last_unheld.insert(*c, now);
            }
        }
        if (now / STEP_MS) % 20 == 0 {
            net.assert_stores_sound();
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
            let alive: Vec<usize> = (0..PEERS).filter(|&i| net.nodes[i].alive).collect();
            let dead: Vec<usize> = (0..PEERS).filter(|&i| !net.nodes[i].alive).collect();
            if rng.chance(0.9) {
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
            if alive.len() > 150 && rng.chance(0.15) {
                net.kill(alive[rng.below(alive.len() as u64) as usize]);
                kills += 1;
            }
            if !dead.is_empty() && rng.chance(0.17) {
                net.start(dead[rng.below(dead.len() as u64) as usize]);
                restarts += 1;
            }
            if rng.chance(0.05) {
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
    for d in &downloads {
        let n = &net.nodes[d.node];
        if !n.alive || n.life != d.life {
            moot += 1;
            continue;
        }
        let file: FileId = files[d.file].0.file_id();
        match n.result_of(d.id) {
            Some(Ok(())) => {
                ok += 1;
                for (k, c) in files[d.file].0.chunks.iter().enumerate() {
                    assert_eq!(n.store.chunks.get(c), Some(&files[d.file].1[k]));
                }
            }
            Some(Err(e)) => {
                let unheld = files[d.file].0.chunks.iter().any(|c| last_unheld.get(c).is_some_and(|t| *t >= d.started));
                assert!(
                    unheld,
                    "download of {file:?} by node {} failed ({e}) although every chunk had a live honest holder",
                    d.node
                );
                assert!(
                    e.contains("no live holder") || e.contains("not held by") || e.contains("failed verification"),
                    "a download failed with an error that names no unavailable chunk: {e}"
                );
                unavailable += 1;
            }
            None => panic!("download {} of node {} (file {}) never finished", d.id, d.node, d.file),
        }
    }
    assert!(ok > 100, "only {ok} downloads succeeded: the test proves little");

    // 2. Stores.
    net.assert_stores_sound();

    // 3. Replication.
    for c in &all_chunks {
        let live = net.nodes.iter().filter(|n| n.alive && n.store.chunks.contains_key(c)).count();
        if live > 0 {
            assert!(live >= r, "chunk {c:?} has {live} live copies after churn stopped");
            assert!(net.swarm.holder_count(c) >= r, "the tracker counts {} copies of {c:?}", net.swarm.holder_count(c));
        }
        for p in net.swarm.holders(c) {
            let n = &net.nodes[net.index[p]];
            assert!(n.alive && n.store.chunks.contains_key(c), "the tracker lists {p:?} for {c:?}; it does not hold it");
        }
    }
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
