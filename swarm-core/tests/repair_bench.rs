//! Cost of replication planning in the tracker's swarm core at scale: 5,000 peers, 500 files
//! of 64 chunks, each published by one peer (one copy); repair brings all 32,000 chunks to
//! R = 3, every order carried out at once. Prints the tracker CPU spent planning (`tick`) and
//! taking the copies' `have`s (the baseline: plain message handling, same run), per order.
//! Run with `cargo test --release -p swarm-core --test repair_bench -- --ignored --nocapture`.
//! `PP_BENCH_PEERS` and `PP_BENCH_FILES` change the size.

use std::time::{Duration, Instant};
use swarm_core::swarm::repair::RepairConfig;
use swarm_core::swarm::{Output, Swarm};
use swarm_core::wire::FileMeta;
use swarm_core::{ClientMsg, ManifestBuilder, PeerId, PeerKind, ServerMsg};

fn env(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Figures {
    orders: usize,
    planning: Duration,
    haves: Duration,
    rounds: usize,
}

fn run(peers: usize, files: usize, chunks_per_file: usize) -> Figures {
    let mut config = RepairConfig { replication: 3, ..Default::default() };
    config.trust.verify = false;
    let mut s = Swarm::with_config(config);
    let ids: Vec<PeerId> = (0..peers).map(|i| PeerId::from_secret(&format!("bench-peer-{i}"))).collect();
    for id in &ids {
        s.join(id.clone(), PeerKind::Native, 0);
    }
    for f in 0..files {
        let mut mb = ManifestBuilder::new(8);
        for c in 0..chunks_per_file {
            mb.push(&((f * chunks_per_file + c) as u64).to_le_bytes());
        }
        let m = mb.finish();
        let publisher = &ids[f % peers];
        s.handle(publisher, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0);
        let meta = FileMeta::public(format!("f{f}"), "x");
        s.handle(publisher, ClientMsg::Publish { req: 1, manifest: m, meta }, 0);
    }
    let (mut planning, mut haves) = (Duration::ZERO, Duration::ZERO);
    let (mut orders, mut rounds, mut now) = (0, 0, 0);
    loop {
        let t = Instant::now();
        let out = s.tick(now);
        planning += t.elapsed();
        let placed: Vec<(PeerId, swarm_core::ChunkId)> = out
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { to, msg: ServerMsg::Replicate { chunk, .. } } => Some((to, chunk)),
                _ => None,
            })
            .collect();
        if placed.is_empty() && s.orders().count() == 0 && s.under_replicated() == 0 {
            break;
        }
        orders += placed.len();
        rounds += 1;
        assert!(rounds < 100_000, "repair never finished: {} under-replicated", s.under_replicated());
        let t = Instant::now();
        for (to, chunk) in placed {
            s.handle(&to, ClientMsg::Have { chunks: vec![chunk], full: false }, now);
        }
        haves += t.elapsed();
        now += 1_000;
    }
    Figures { orders, planning, haves, rounds }
}

#[test]
#[ignore = "benchmark: run on purpose, prints figures"]
fn bench_repair_planning() {
    let (peers, files) = (env("PP_BENCH_PEERS", 5_000), env("PP_BENCH_FILES", 500));
    let f = run(peers, files, 64);
    assert_eq!(f.orders, files * 64 * 2, "two more copies of every chunk");
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f.orders as f64;
    println!(
        "repair of {} chunks over {peers} peers: {} orders in {} rounds; planning {:.1} µs/order ({:.2} s), \
         baseline `have` handling {:.1} µs/order ({:.2} s)",
        files * 64,
        f.orders,
        f.rounds,
        per(f.planning),
        f.planning.as_secs_f64(),
        per(f.haves),
        f.haves.as_secs_f64()
    );
}
