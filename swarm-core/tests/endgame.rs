//! Bytes received twice, with real peer cores in virtual time (harness: `peer_sim`): one
//! downloader and four sources on links of different rates and latencies, one of them slow,
//! for files of 1 to 4096 chunks.
//!
//! A byte is counted twice when the downloader's core received it for a chunk it had, or
//! would have, from elsewhere: everything its links delivered beyond the file's size (the
//! core counts the data bytes of every frame it is handed, [`swarm_core::peer::Peer::path_report`]).
//!
//! 1. With the default policy ([`Endgame::Late`]), duplicates stay within 2% of the file at
//!    every size and seed, and every download completes.
//! 2. A source that accepts requests and never answers does not hold a download back: it
//!    completes long before the stall timeout, within the same 2%.
//! 3. Driven by hand: a silent source's request is copied after `SILENT_MS`, and the copy
//!    that wins withdraws it (`cancel`); requests queued deep at a source that stopped move to
//!    an idle one (cancelled there), while the ones it may be sending stay.
//! 4. A source that holds part of the file on a fast link does not keep the download from
//!    asking the one that holds the rest, whose link opened later (the shape of the hung
//!    `pp-peer get` in `e2e/tests/cluster.rs`: see `swarm-core/tests/download_liveness.rs`).
//! 5. `endgame_benchmark` (ignored: `cargo test --release -p swarm-core --test endgame --
//!    --ignored --nocapture`) prints duplicates and completion times of both policies side by
//!    side, [`Endgame::Eager`] (the policy before) as the same-run baseline.

mod peer_sim;

use peer_sim::{make_file, Behaviour, Net, NoDirect, Rng};
use swarm_core::peer::config::{SILENT_MS, STALL_MS};
use swarm_core::peer::{Answer, Download, Endgame, Step};
use swarm_core::{ManifestBuilder, PeerId};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 256 * 1024;
const MB: u64 = 1_000_000;

/// Holder → downloader links: (bytes per second, one-way ms): a LAN neighbour, two WAN peers
/// and a slow one.
const LINKS: [(u64, u64); 4] = [(40 * MB, 2), (20 * MB, 15), (8 * MB, 30), (MB, 60)];

/// What one download cost.
#[derive(Debug, Clone, Copy)]
struct Run {
    file: u64,
    /// Data bytes received beyond the file's size.
    dup: u64,
    /// From the download's start to its end (virtual ms).
    ms: u64,
}

impl Run {
    fn dup_pct(&self) -> f64 {
        self.dup as f64 * 100.0 / self.file as f64
    }
}

/// Four holders on [`LINKS`] (which holder gets which link, and ±20% on each rate, from
/// `seed`), one downloader with `policy`; `silent`: holder 1 never answers.
fn run(seed: u64, chunks: usize, chunk: usize, policy: Endgame, silent: bool) -> Run {
    let mut rng = Rng(seed * 7919 + chunks as u64);
    let mut net = Net::new(Net::no_repair());
    let (m, data) = make_file(&mut rng, chunks, chunk);
    let holders: Vec<usize> = (0..LINKS.len()).map(|h| net.add(&format!("holder{h}"), 4 * GIB)).collect();
    for &h in &holders {
        net.put(h, &data);
    }
    drop(data);
    let b = net.add("downloader", 4 * GIB);
    net.nodes[b].endgame = policy;
    if silent {
        net.nodes[holders[1]].behaviour = Behaviour::Silent;
    }
    let mut links = LINKS.to_vec();
    for i in (1..links.len()).rev() {
        links.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for (&h, &(rate, ms)) in holders.iter().zip(&links) {
        let rate = rate * (80 + rng.below(41)) / 100;
        net.pair_rates.insert((h, b), rate);
        net.pair_rates.insert((b, h), rate);
        net.pair_latency.insert((h.min(b), h.max(b)), ms);
    }
    for i in 0..net.nodes.len() {
        net.start(i);
    }
    net.run_until(100);
    net.publish(holders[0], &m, "file.bin");
    net.run_until(200);
    let start = net.now;
    let d = net.download(b, m.file_id());
    let limit = start + 600_000;
    assert!(net.run_while(limit, |n| n.nodes[b].result_of(d).is_some()), "download did not end");
    assert_eq!(net.nodes[b].result_of(d), Some(Ok(())), "seed {seed}, {chunks} chunks, {policy:?}");
    let ms = net.now - start;
    // Whatever was already on its way still arrives (and counts).
    net.run_until(net.now + 30_000);
    for (i, c) in m.chunks.iter().enumerate() {
        assert!(net.nodes[b].store.chunks.contains_key(c), "chunk {i} missing");
    }
    let received: u64 = net.nodes[b].peer.path_report().bytes_received.iter().map(|(_, n)| n).sum();
    Run { file: m.size, dup: received.saturating_sub(m.size), ms }
}

const SIZES: [usize; 4] = [1, 5, 20, 64];

#[test]
fn duplicates_stay_within_two_percent_at_every_size() {
    for chunks in SIZES {
        for seed in 1..=4 {
            let r = run(seed, chunks, CHUNK, Endgame::Late, false);
            assert!(r.dup_pct() <= 2.0, "{chunks} chunks, seed {seed}: {:.1}% received twice ({r:?})", r.dup_pct());
        }
    }
    // A large file (4096 chunks of 16 KiB, so that four holders fit in memory).
    let r = run(1, 4096, 16 * 1024, Endgame::Late, false);
    assert!(r.dup_pct() <= 2.0, "4096 chunks: {:.1}% received twice ({r:?})", r.dup_pct());
}

#[test]
fn a_silent_source_does_not_hold_the_download_back() {
    for chunks in [5, 20, 64] {
        for seed in 1..=3 {
            let r = run(seed, chunks, CHUNK, Endgame::Late, true);
            assert!(r.ms < STALL_MS, "{chunks} chunks, seed {seed}: took {} ms", r.ms);
            assert!(r.dup_pct() <= 2.0, "{chunks} chunks, seed {seed}: {:.1}% received twice", r.dup_pct());
        }
    }
}

/// Real peer cores: a replica on a fast LAN link holds the first half of a 1 MiB file; the
/// publisher holds all of it, but no data channel opens to it (its requests go through the
/// tracker relay once the channel has had its grace time). The replica is measured first and
/// sends its half; the rest is then asked of the publisher, and the download completes.
#[test]
fn the_rest_of_the_file_is_asked_of_a_holder_whose_link_opened_later() {
    for seed in 1..=4 {
        let mut rng = Rng(seed);
        let mut net = Net::new(Net::no_repair());
        net.no_direct = NoDirect::Hang;
        let (m, data) = make_file(&mut rng, 4, CHUNK);
        let full = net.add("publisher", 4 * GIB);
        let part = net.add("replica", 4 * GIB);
        net.put(full, &data);
        net.put(part, &data[..2]);
        let b = net.add("downloader", 4 * GIB);
        net.block_direct(full, b);
        net.pair_rates.insert((part, b), 40 * MB);
        net.pair_rates.insert((full, b), 8 * MB);
        for i in 0..net.nodes.len() {
            net.start(i);
        }
        net.run_until(100);
        net.publish(full, &m, "file.bin");
        net.run_until(200);
        let start = net.now;
        let d = net.download(b, m.file_id());
        assert!(net.run_while(start + 600_000, |n| n.nodes[b].result_of(d).is_some()), "seed {seed}: did not end");
        assert_eq!(net.nodes[b].result_of(d), Some(Ok(())), "seed {seed}");
        let ms = net.now - start;
        assert!(ms < STALL_MS, "seed {seed}: took {ms} ms");
        let from = net.nodes[b].sources_of(d);
        assert!(from.contains_key(&net.id(full)), "seed {seed}: the publisher sent nothing: {from:?}");
    }
}

#[test]
#[ignore = "benchmark: prints figures"]
fn endgame_benchmark() {
    let seeds = 1..=6u64;
    println!("links: {LINKS:?} (bytes/s, one-way ms; ±20% per seed), {} seeds", seeds.clone().count());
    println!("{:>6} {:>9} | {:>22} | {:>22}", "chunks", "", "eager (before)", "late (now)");
    println!("{:>6} {:>9} | {:>10} {:>11} | {:>10} {:>11}", "", "", "dup max %", "mean ms", "dup max %", "mean ms");
    let cases: Vec<(usize, usize, bool)> = SIZES
        .iter()
        .map(|&c| (c, CHUNK, false))
        .chain([(4096, 64 * 1024, false)])
        .chain([(20, CHUNK, true), (64, CHUNK, true)])
        .collect();
    for (chunks, chunk, silent) in cases {
        let figures = |policy| {
            let runs: Vec<Run> = seeds.clone().map(|s| run(s, chunks, chunk, policy, silent)).collect();
            let max = runs.iter().map(Run::dup_pct).fold(0.0, f64::max);
            let mean = runs.iter().map(|r| r.ms).sum::<u64>() as f64 / runs.len() as f64;
            (max, mean)
        };
        let (e, l) = (figures(Endgame::Eager), figures(Endgame::Late));
        let what = format!("{}K{}", chunk / 1024, if silent { " silent" } else { "" });
        println!("{chunks:>6} {what:>9} | {:>10.1} {:>11.0} | {:>10.1} {:>11.0}", e.0, e.1, l.0, l.1);
    }
}

/// Driven by hand (no network): a source that stays silent has its request copied to an idle
/// holder after [`SILENT_MS`]; the copy arriving whole withdraws the silent one's request.
#[test]
fn a_copy_that_wins_withdraws_the_other_request() {
    let data = vec![7u8; 4096];
    let mut b = ManifestBuilder::new(data.len() as u32);
    b.push(&data);
    let m = b.finish();
    let peers: Vec<PeerId> = (1..=2).map(|i| PeerId(format!("{i:032x}"))).collect();
    let mut d: Download = Download::new(m.file_id(), m.clone(), peers, vec![vec![0, 1]], None, |_| false).unwrap();
    let _ = d.start();
    let mut steps = d.peer_ready(0);
    steps.extend(d.peer_ready(1));
    let asked: Vec<(usize, u32)> = requests(&steps);
    assert_eq!(asked.len(), 1, "one chunk, asked once: {steps:?}");
    let (silent, req) = asked[0];
    assert!(requests(&d.tick(SILENT_MS / 2)).is_empty(), "copied before the source went silent");
    let copy = requests(&d.tick(SILENT_MS + 1));
    assert_eq!(copy.len(), 1, "the silent source's request was not copied");
    let (slot, creq) = copy[0];
    assert_ne!(slot, silent);
    d.advance(SILENT_MS + 5);
    let got = d.on_answer(slot, Answer::Data { req: creq, offset: 0, total: data.len() as u32, part: data.clone() });
    assert!(got.iter().any(|s| matches!(s, Step::Verify { .. })), "the copy was not taken");
    let cancels: Vec<&Step> = got.iter().filter(|s| matches!(s, Step::Cancel { .. })).collect();
    assert!(
        got.iter().any(|s| matches!(s, Step::Cancel { slot: s, reqs } if *s == silent && reqs == &[req])),
        "the losing request was not withdrawn: {cancels:?}"
    );
}

fn requests(steps: &[Step]) -> Vec<(usize, u32)> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Request { slot, req, .. } => Some((*slot, *req)),
            _ => None,
        })
        .collect()
}

/// Driven by hand: a source measured fast took a full pipeline, then stopped sending; once the
/// other source has sent everything else, the requests queued deep at the first (where it
/// cannot have begun to read them) move: cancelled there, asked of the idle one.
#[test]
fn requests_queued_deep_at_a_stopped_source_move_to_an_idle_one() {
    let n = 64;
    let data: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; CHUNK]).collect();
    let mut b = ManifestBuilder::new(CHUNK as u32);
    for c in &data {
        b.push(c);
    }
    let m = b.finish();
    let index = |id: &swarm_core::ChunkId| m.chunks.iter().position(|c| c == id).expect("a chunk of the file");
    let peers: Vec<PeerId> = (1..=2).map(|i| PeerId(format!("{i:032x}"))).collect();
    let mut d: Download = Download::new(m.file_id(), m.clone(), peers, vec![vec![0, 1]; n], None, |_| false).unwrap();
    let _ = d.start();
    let mut now = 0;
    // Answers a request in two frames, 5 ms apart (so its rate is measured).
    let answer = |d: &mut Download, slot: usize, req: u32, i: usize, now: &mut u64| {
        let half = CHUNK / 4;
        *now += 2;
        d.advance(*now);
        let first = Answer::Data { req, offset: 0, total: CHUNK as u32, part: data[i][..half].to_vec() };
        let mut steps = d.on_answer(slot, first);
        *now += 5;
        d.advance(*now);
        let rest = Answer::Data { req, offset: half as u32, total: CHUNK as u32, part: data[i][half..].to_vec() };
        steps.extend(d.on_answer(slot, rest));
        steps
    };
    let asked = |steps: &[Step]| -> Vec<(usize, u32, usize)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Request { slot, req, chunk } => Some((*slot, *req, index(chunk))),
                _ => None,
            })
            .collect()
    };
    // Slot 0 alone: its probe is answered, then it gets a full pipeline.
    let probe = asked(&d.peer_ready(0));
    assert_eq!(probe.len(), 1);
    let (_, req, i) = probe[0];
    let at_zero = asked(&answer(&mut d, 0, req, i, &mut now));
    assert!(at_zero.len() >= 8, "slot 0 measured fast got {} requests", at_zero.len());
    // Slot 1 joins and sends everything it is asked; slot 0 sends nothing more.
    let mut todo: Vec<(usize, u32, usize)> = asked(&d.peer_ready(1));
    let (mut moved, mut cancelled) = (Vec::new(), Vec::new());
    while let Some((slot, req, i)) = todo.pop() {
        assert_eq!(slot, 1, "slot 0 was asked again");
        let steps = answer(&mut d, 1, req, i, &mut now);
        for s in &steps {
            if let Step::Cancel { slot: 0, reqs } = s {
                cancelled.extend(reqs.iter().copied());
            }
        }
        let more = asked(&steps);
        moved.extend(more.iter().filter(|r| at_zero.iter().any(|z| z.2 == r.2)).map(|r| r.2));
        todo.extend(more);
    }
    assert!(!cancelled.is_empty(), "nothing queued at the stopped source was withdrawn");
    assert_eq!(cancelled.len(), moved.len(), "each withdrawn request is asked of the idle source");
    let withdrawn: Vec<usize> = at_zero.iter().filter(|z| cancelled.contains(&z.1)).map(|z| z.2).collect();
    assert!(withdrawn.iter().all(|i| moved.contains(i)), "{withdrawn:?} vs {moved:?}");
    // What stays at slot 0 is what it may already be sending: its first requests.
    let kept = at_zero.len() - withdrawn.len();
    let commit = swarm_core::peer::download::committed(CHUNK as u32);
    assert!(kept as u64 * CHUNK as u64 <= commit + CHUNK as u64, "{kept} requests kept at slot 0");
}
