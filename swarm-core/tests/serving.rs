//! Serving under load and `cancel`, with real peer cores in virtual time (harness:
//! `peer_sim`): a holder only reads what its writer can send, and the chunk protocol's
//! `cancel` stops the work a downloader no longer wants.
//! 1. A cancelled download withdraws what it had queued at its source: the source reads
//!    nothing more for it.
//! 2. A seek withdraws the requests queued outside the new playhead window; the file still
//!    completes.
//! 3. A holder behind a slow link never has much more than its window queued to send.
//! 4. `busy` is not `missing`: the holder stays a holder, rests, and is asked again.

mod peer_sim;

use peer_sim::{make_file, Net, Rng};
use swarm_core::peer::config::{BUSY_BACKOFF_MS, PLAYHEAD_WINDOW, READS_PER_ROUTE, SEND_FRAME_COST, SEND_WINDOW};
use swarm_core::peer::{Answer, Download, Step};
use swarm_core::{Manifest, PeerId};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 256 * 1024;

/// A holder (0) of a file of `chunks` chunks of 256 KiB and an empty peer (1), over a pair
/// link of `bytes_per_s`.
fn pair(seed: u64, chunks: usize, bytes_per_s: u64) -> (Net, Manifest, Vec<Vec<u8>>) {
    let mut rng = Rng(seed);
    let mut net = Net::new(Net::no_repair());
    let (m, data) = make_file(&mut rng, chunks, CHUNK);
    let h = net.add("holder", GIB);
    net.put(h, &data);
    net.add("peer", GIB);
    for i in 0..2 {
        net.start(i);
    }
    net.run_until(100);
    net.publish(h, &m, "file.bin");
    net.run_until(200);
    net.pair_bytes_per_s = Some(bytes_per_s);
    (net, m, data)
}

fn received(net: &Net, d: u64) -> usize {
    net.nodes[1].sources_of(d).values().sum()
}

#[test]
fn a_cancelled_download_withdraws_its_queued_requests() {
    let (mut net, m, _) = pair(31, 40, 1024 * 1024);
    let d = net.download(1, m.file_id());
    let limit = net.now + 20_000;
    assert!(net.run_while(limit, |n| received(n, d) >= 3), "the download started");
    let read_before = net.nodes[0].reads_asked;
    assert!(read_before < 16, "the holder read {read_before} chunks ahead of its slow link");
    let now = net.now;
    net.with(1, |p, _| p.cancel(d, now));
    net.run_until(net.now + 20_000);
    let read_after = net.nodes[0].reads_asked - read_before;
    assert!(read_after <= READS_PER_ROUTE as u64, "the holder read {read_after} chunks after the cancel");
    let s = net.nodes[0].peer.serve_stats();
    assert!(s.cancelled > 0, "{s:?}");
    assert_eq!(s.queued, 0, "every frame was flushed: {s:?}");
}

#[test]
fn a_seek_withdraws_what_waits_outside_the_window_and_the_file_completes() {
    let (mut net, m, data) = pair(32, 64, 2 * 1024 * 1024);
    let d = net.download(1, m.file_id());
    let limit = net.now + 20_000;
    assert!(net.run_while(limit, |n| received(n, d) >= 2), "the download started");
    let now = net.now;
    let target = 40;
    net.with(1, |p, _| p.set_playhead(d, Some((target * CHUNK) as u64), now));
    let limit = net.now + 60_000;
    let window: Vec<_> = (target..target + PLAYHEAD_WINDOW).map(|i| m.chunks[i]).collect();
    assert!(net.run_while(limit, |n| window.iter().all(|c| n.nodes[1].store.chunks.contains_key(c))));
    let s = net.nodes[0].peer.serve_stats();
    assert!(s.cancelled > 0, "the seek cancelled nothing queued at the holder: {s:?}");
    let limit = net.now + 120_000;
    assert!(net.run_while(limit, |n| n.nodes[1].result_of(d).is_some()));
    assert_eq!(net.nodes[1].result_of(d), Some(Ok(())));
    for (i, c) in data.iter().enumerate() {
        assert_eq!(net.nodes[1].store.chunks.get(&m.chunks[i]), Some(c), "chunk {i}");
    }
}

#[test]
fn a_holder_behind_a_slow_link_queues_its_window_not_the_pipeline() {
    let (mut net, m, _) = pair(33, 24, 512 * 1024);
    let d = net.download(1, m.file_id());
    let limit = net.now + 120_000;
    assert!(net.run_while(limit, |n| n.nodes[1].result_of(d).is_some()));
    assert_eq!(net.nodes[1].result_of(d), Some(Ok(())));
    // The downloader pipelines 16 chunks (4 MiB); the holder queues its window and the reads
    // in progress, whatever its link's speed.
    let peak = net.nodes[0].peer.serve_stats().queued_peak;
    let bound = SEND_WINDOW + (READS_PER_ROUTE * CHUNK) as u64 + 64 * SEND_FRAME_COST;
    assert!(peak <= bound, "{peak} bytes queued at once (bound {bound})");
}

#[test]
fn a_busy_holder_stays_a_holder_and_is_asked_again_after_resting() {
    let mut rng = Rng(34);
    let (m, _) = make_file(&mut rng, 4, 1024);
    let peers = vec![PeerId(format!("{:032x}", 1)), PeerId(format!("{:032x}", 2))];
    // Chunk 0 has one holder (slot 0); the others are held by both.
    let holders = vec![vec![0], vec![0, 1], vec![0, 1], vec![0, 1]];
    let mut d: Download = Download::new(m.file_id(), m.clone(), peers, holders, None, |_| false).unwrap();
    let mut steps = d.start();
    steps.extend(d.peer_ready(0));
    steps.extend(d.peer_ready(1));
    let asked = |steps: &[Step]| -> Vec<(usize, u32, usize)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Request { slot, req, chunk } => {
                    Some((*slot, *req, m.chunks.iter().position(|c| c == chunk).unwrap()))
                }
                _ => None,
            })
            .collect()
    };
    let first = asked(&steps);
    let &(_, req, _) = first.iter().find(|r| r.2 == 0).expect("chunk 0 asked of its holder");
    // Slot 0 is busy: chunk 0 waits (no other holder), nothing fails, nothing is asked of 0.
    d.advance(10);
    let after = d.on_answer(0, Answer::Busy { req });
    assert!(!after.iter().any(|s| matches!(s, Step::Failed(_))), "{after:?}");
    assert!(!asked(&after).iter().any(|r| r.0 == 0), "a resting holder was asked: {after:?}");
    assert_eq!(d.holders_of(0), 1, "busy is not missing");
    // After the rest, it is asked again.
    let later = d.tick(10 + BUSY_BACKOFF_MS);
    assert!(asked(&later).iter().any(|r| r.0 == 0 && r.2 == 0), "{later:?}");
}
