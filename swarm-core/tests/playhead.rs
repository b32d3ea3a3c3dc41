//! The download's playhead rules, driven by hand (no network): which requests a seek makes
//! and withdraws, and how deep each source's queue is while a player plays.

use swarm_core::peer::config::{PIPELINE, PLAYHEAD_WINDOW, PLAYING_QUEUE_MS};
use swarm_core::peer::{Answer, Download, Endgame, Step};
use swarm_core::{ManifestBuilder, PeerId};

const CHUNK: usize = 1024;

/// A download of `n` chunks from peers that all hold every chunk, with these pipelines, every
/// slot ready.
fn download(n: usize, pipelines: &[usize]) -> (Download, Vec<Vec<u8>>, Vec<Step>) {
    let sources = pipelines.len();
    let data: Vec<Vec<u8>> = (0..n).map(|i| vec![(i % 251) as u8; CHUNK]).collect();
    let mut b = ManifestBuilder::new(CHUNK as u32);
    for c in &data {
        b.push(c);
    }
    let m = b.finish();
    let peers: Vec<PeerId> = (0..sources).map(|i| PeerId(format!("{:032x}", i + 1))).collect();
    let holders = vec![(0..sources as u32).collect(); n];
    let mut d = Download::new(m.file_id(), m, peers, holders, None, |_| false).expect("a download");
    // These tests start from full pipelines, as [`Endgame::Eager`] shares chunks out (the
    // default probes unmeasured sources one chunk at a time); the playhead's rules are the
    // same under both.
    d.set_endgame_mode(Endgame::Eager);
    for (slot, &p) in pipelines.iter().enumerate() {
        d.set_pipeline(slot, p);
    }
    let mut steps = d.start();
    for slot in 0..sources {
        steps.extend(d.peer_ready(slot));
    }
    (d, data, steps)
}

/// The requests in `steps`: (slot, req, chunk index by content).
fn requests(steps: &[Step], data: &[Vec<u8>], d: &Download) -> Vec<(usize, u32, usize)> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Request { slot, req, chunk } => {
                let index = (0..data.len()).find(|&i| d.manifest().chunks[i] == *chunk).expect("a chunk of the file");
                Some((*slot, *req, index))
            }
            _ => None,
        })
        .collect()
}

/// Answers request `req` of `slot` whole at time `now` (the answer steps are returned).
fn answer(d: &mut Download, slot: usize, req: u32, bytes: &[u8], now: u64) -> Vec<Step> {
    d.advance(now);
    d.on_answer(slot, Answer::Data { req, offset: 0, total: bytes.len() as u32, part: bytes.to_vec() })
}

#[test]
fn a_seek_to_a_chunk_queued_at_a_busy_source_asks_a_less_busy_one_too() {
    // Slot 1 goes through the relay: a shallow pipeline, so its queue stays short.
    let (mut d, data, steps) = download(64, &[PIPELINE, 2]);
    let asked = requests(&steps, &data, &d);
    assert_eq!(asked.len(), PIPELINE + 2, "{asked:?}");
    // The seek goes to the last chunk asked of slot 0: behind 15 others there, each of
    // which has begun to arrive (so the seek cannot withdraw them).
    let &(_, _, target) = asked.iter().rfind(|(s, _, _)| *s == 0).expect("slot 0 was asked");
    for &(_, req, index) in asked.iter().filter(|(s, _, i)| *s == 0 && *i != target) {
        let first = Answer::Data { req, offset: 0, total: CHUNK as u32, part: data[index][..1].to_vec() };
        assert!(d.on_answer(0, first).is_empty());
    }
    let seek = d.set_playhead(Some(target));
    assert!(!seek.iter().any(|s| matches!(s, Step::Cancel { slot: 0, .. })), "answers under way are not withdrawn");
    let again = requests(&seek, &data, &d);
    assert!(
        again.iter().any(|&(slot, _, index)| slot == 1 && index == target),
        "the seek's chunk waits behind {} others at slot 0 and was not asked of slot 1: {again:?}",
        PIPELINE - 1
    );
    // The first copy to arrive is kept; the other is dropped when it comes.
    let req = again.iter().find(|r| r.2 == target).expect("asked").1;
    let got = answer(&mut d, 1, req, &data[target], 5);
    assert!(got.iter().any(|s| matches!(s, Step::Verify { index, .. } if *index == target)));
}

#[test]
fn a_playing_download_keeps_short_queues_at_slow_sources() {
    let (mut d, data, steps) = download(200, &[PIPELINE]);
    let first = requests(&steps, &data, &d);
    assert_eq!(first.len(), PIPELINE, "no player yet: the whole pipeline is asked");
    // A player starts; the source delivers a chunk every 500 ms.
    let _ = d.set_playhead(Some(0));
    let mut queue: Vec<(u32, usize)> = first.iter().map(|&(_, r, i)| (r, i)).collect();
    let mut now = 0;
    let mut deepest_late = 0;
    for round in 0..60 {
        now += 500;
        let (req, index) = queue.remove(0);
        let steps = answer(&mut d, 0, req, &data[index], now);
        queue.extend(requests(&steps, &data, &d).into_iter().map(|(_, r, i)| (r, i)));
        if round > 30 {
            deepest_late = deepest_late.max(queue.len());
        }
    }
    // 2 KiB/s: PLAYING_QUEUE_MS of it is under one chunk, so one request at a time (the old
    // requests from before the player started have drained by then).
    let expected = (2 * PLAYING_QUEUE_MS) as usize / CHUNK;
    assert_eq!(deepest_late, expected.max(1), "a slow source's queue while playing");
    assert_eq!(d.rate_of(0), 2048, "the measured rate (bytes per second)");
}

#[test]
fn a_seek_withdraws_requests_queued_outside_the_new_window() {
    let (mut d, data, steps) = download(64, &[PIPELINE, 2]);
    let asked = requests(&steps, &data, &d);
    let &(_, _, target) = asked.iter().rfind(|(s, _, _)| *s == 0).expect("slot 0 was asked");
    let window = target..target + PLAYHEAD_WINDOW;
    let seek = d.set_playhead(Some(target));
    let mut cancelled: Vec<(usize, u32)> = seek
        .iter()
        .filter_map(|s| match s {
            Step::Cancel { slot, reqs } => Some(reqs.iter().map(move |r| (*slot, *r))),
            _ => None,
        })
        .flatten()
        .collect();
    cancelled.sort_unstable();
    let mut expected: Vec<(usize, u32)> =
        asked.iter().filter(|(_, _, i)| !window.contains(i)).map(|&(s, r, _)| (s, r)).collect();
    expected.sort_unstable();
    assert_eq!(cancelled, expected, "every request outside the window, nothing else");
    // What the seek asks instead is in the window; the seek's chunk is not asked twice.
    let again = requests(&seek, &data, &d);
    assert!(again.iter().all(|(_, _, i)| window.contains(i)), "{again:?}");
    assert!(!again.iter().any(|(_, _, i)| *i == target), "{again:?}");
    // A late answer to a withdrawn request is ignored.
    let &(slot, req) = cancelled.first().expect("something was withdrawn");
    let index = asked.iter().find(|a| (a.0, a.1) == (slot, req)).unwrap().2;
    assert!(!answer(&mut d, slot, req, &data[index], 5).iter().any(|s| matches!(s, Step::Verify { .. })));
    // Playing on within the window withdraws nothing.
    assert!(!d.set_playhead(Some(target + 1)).iter().any(|s| matches!(s, Step::Cancel { .. })));
}
