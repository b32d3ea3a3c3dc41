//! Real peer cores against the real tracker core, in virtual time (harness: `peer_sim`).
//!
//! Each test states what a user would see and asserts it:
//! 1. A download finishes with every byte identical to what was published, and the
//!    downloader is then listed by the tracker as a holder (a downloader becomes a source).
//! 2. With several holders, chunks come from more than one of them.
//! 3. A holder serving corrupt bytes cannot corrupt a download: the chunk is refused, fetched
//!    elsewhere, and the tracker hears `bad_source` about the liar.
//! 4. A holder that accepts requests and never answers is dropped after the stall timeout,
//!    and the download finishes from the others.
//! 5. Without direct connectivity the bytes flow through the tracker relay; with it, none do.
//! 6. A holder killed mid-download does not stop the download.
//! 7. A tracker reconnect mid-download re-sends what was pending; the download finishes.
//! 8. Replication: a dead holder's chunks are re-replicated by real peer cores carrying out
//!    the tracker's orders, back to R copies.

mod peer_sim;

use peer_sim::{make_file, Behaviour, Net, NoDirect, Rng};
use swarm_core::peer::Event;
use swarm_core::swarm::repair::RepairConfig;
use swarm_core::{ClientMsg, LinkPath, Manifest};

const GIB: u64 = 1 << 30;

/// `holders` peers holding the whole file (published by the first), and `others` empty peers.
fn network(seed: u64, config: RepairConfig, holders: usize, others: usize, chunks: usize) -> (Net, Manifest, Vec<Vec<u8>>) {
    let mut rng = Rng(seed);
    let mut net = Net::new(config);
    let (m, data) = make_file(&mut rng, chunks, 1024);
    for h in 0..holders {
        let i = net.add(&format!("holder{h}"), GIB);
        net.put(i, &data);
    }
    for o in 0..others {
        net.add(&format!("peer{o}"), GIB);
    }
    for i in 0..net.nodes.len() {
        net.start(i);
    }
    net.run_until(100);
    net.publish(0, &m, "file.bin");
    net.run_until(200);
    (net, m, data)
}

/// Runs until download `d` of node `i` finished (or `limit_ms` more passed); returns its result.
fn finish(net: &mut Net, i: usize, d: u64, limit_ms: u64) -> Result<(), String> {
    let limit = net.now + limit_ms;
    net.run_while(limit, |n| n.nodes[i].result_of(d).is_some());
    net.nodes[i].result_of(d).unwrap_or_else(|| panic!("download {d} of node {i} did not finish by {limit} ms"))
}

fn assert_has_file(net: &Net, i: usize, m: &Manifest, data: &[Vec<u8>]) {
    for (k, c) in data.iter().enumerate() {
        assert_eq!(net.nodes[i].store.chunks.get(&m.chunks[k]), Some(c), "chunk {k} of node {i}");
    }
}

#[test]
fn a_downloader_gets_every_byte_and_becomes_a_source() {
    let (mut net, m, data) = network(1, Net::no_repair(), 1, 1, 40);
    let b = 1;
    assert!(net.nodes[b].store.chunks.is_empty());
    let d = net.download(b, m.file_id());
    assert_eq!(finish(&mut net, b, d, 30_000), Ok(()));
    assert_has_file(&net, b, &m, &data);
    assert_eq!(net.nodes[b].sources_of(d).values().sum::<usize>(), 40, "every chunk came from the publisher");
    net.run_until(net.now + 500); // the batched `have`
    let me = net.id(b);
    for c in &m.chunks {
        assert!(net.swarm.holders(c).any(|p| *p == me), "the tracker does not list the downloader for {c:?}");
    }
    net.assert_stores_sound();
}
