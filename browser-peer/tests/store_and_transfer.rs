//! Browser tests (wasm-bindgen-test in headless Chromium) for the pure parts: the memory chunk
//! store and a whole download through the scheduler, served by `serve_request` from simulated
//! holders, including a lying holder and one that lacks a chunk.

use std::collections::VecDeque;
use std::rc::Rc;

use browser_peer::store::{ChunkStore, MemoryStore};
use browser_peer::transfer::{serve_request, Download, Step, TransferError, FRAME_PAYLOAD};
use swarm_core::chunk_proto::PeerMsg;
use swarm_core::{ChunkId, FileId, Manifest, ManifestBuilder, PeerId};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn manifest_and_chunks(bytes: &[u8], chunk_size: u32) -> (Manifest, Vec<Vec<u8>>) {
    let mut b = ManifestBuilder::new(chunk_size);
    let chunks: Vec<Vec<u8>> = bytes.chunks(chunk_size as usize).map(|c| c.to_vec()).collect();
    for c in &chunks {
        b.push(c);
    }
    (b.finish(), chunks)
}

#[wasm_bindgen_test]
fn memory_store_keeps_chunks_by_id() {
    let mut s = MemoryStore::new();
    assert!(s.is_empty());
    let a = data(1000, 1);
    let id = ChunkId::of(&a);
    assert!(s.put(id, Rc::new(a.clone())));
    assert!(!s.put(id, Rc::new(a.clone())), "a second put of the same chunk is not new");
    assert!(s.has(&id));
    assert_eq!(*s.get(&id).unwrap(), a);
    assert_eq!((s.len(), s.bytes()), (1, 1000));
    assert!(s.get(&ChunkId::of(b"other")).is_none());
    assert_eq!(s.ids(), vec![id]);
    assert!(s.remove(&id) && !s.remove(&id));
    assert_eq!((s.len(), s.bytes()), (0, 0));
    s.put(id, Rc::new(a.clone()));
    // Serving: a stored chunk comes out as 64 KiB frames, an absent one as `Missing`.
    let big = data(200_000, 2);
    let big_id = ChunkId::of(&big);
    s.put(big_id, Rc::new(big.clone()));
    let frames = serve_request(&s, 5, &big_id);
    assert_eq!(frames.len(), big.len().div_ceil(FRAME_PAYLOAD));
    assert!(frames.iter().all(|f| f.len() <= 64 * 1024));
    assert_eq!(serve_request(&s, 6, &ChunkId::of(b"nope")), vec![PeerMsg::Missing { req: 6 }.encode()]);
}

/// Runs a download against simulated holders until it completes or fails.
/// `corrupt[slot]`: that holder flips a byte in every chunk it serves.
fn run(dl: &mut Download, holders: &[MemoryStore], corrupt: &[bool], local: &mut MemoryStore) -> (Vec<Step>, bool) {
    let mut queue: VecDeque<Step> = dl.start().into();
    let mut log = Vec::new();
    let mut complete = false;
    while let Some(step) = queue.pop_front() {
        match &step {
            Step::Connect { slot } => queue.extend(dl.peer_ready(*slot)),
            Step::Send { slot, bytes } => {
                let Ok(PeerMsg::Request { req, chunk }) = PeerMsg::decode(bytes) else { panic!("not a request") };
                let mut frames = serve_request(&holders[*slot], req, &chunk);
                if corrupt[*slot] {
                    if let Some(f) = frames.first_mut().filter(|f| f.len() > 13) {
                        f[13] ^= 0xff;
                    }
                }
                for f in frames {
                    queue.extend(dl.on_message(*slot, PeerMsg::decode(&f).unwrap()));
                }
            }
            Step::Stored { chunk, bytes, .. } => {
                chunk.verify(bytes).expect("only verified chunks come out");
                local.put(*chunk, Rc::new(bytes.clone()));
            }
            Step::Complete => complete = true,
            Step::Rejected { .. } | Step::Failed(_) | Step::Disconnect { .. } | Step::BadSource { .. } => {}
        }
        log.push(step);
    }
    (log, complete)
}

#[wasm_bindgen_test]
fn download_survives_a_liar_and_a_missing_chunk() {
    // 1024-byte chunks of a 256-periodic pattern: every chunk but the last has the same id,
    // which the scheduler fetches once.
    let file = data(10_000, 7);
    let (manifest, chunks) = manifest_and_chunks(&file, 1024);
    let id = manifest.file_id();
    let peers: Vec<PeerId> = ["liar", "honest", "partial", "me"].iter().map(|s| PeerId::from_secret(s)).collect();
    let mut stores: Vec<MemoryStore> = (0..3).map(|_| MemoryStore::new()).collect();
    for c in &chunks {
        stores[0].put(ChunkId::of(c), Rc::new(c.clone()));
        stores[1].put(ChunkId::of(c), Rc::new(c.clone()));
    }
    // "partial" claims every chunk but holds only the first three.
    for c in &chunks[..3] {
        stores[2].put(ChunkId::of(c), Rc::new(c.clone()));
    }
    let holders: Vec<Vec<u32>> = (0..chunks.len()).map(|_| vec![0, 1, 2, 3]).collect();
    let mut dl = Download::new(id, manifest.clone(), peers.clone(), holders, Some(&peers[3]), |_| false).unwrap();
    let mut local = MemoryStore::new();
    let (log, complete) = run(&mut dl, &stores, &[true, false, false], &mut local);
    assert!(complete, "download completes: {log:?}");
    assert!(!log.iter().any(|s| matches!(s, Step::Connect { slot: 3 })), "never connects to itself");
    assert!(log.iter().any(|s| matches!(s, Step::Rejected { slot: 0, .. })), "the liar is caught");
    assert!(log.iter().any(|s| matches!(s, Step::BadSource { slot: 0, .. })), "and reported");
    assert!(!log.iter().any(|s| matches!(s, Step::BadSource { slot: 1 | 2, .. })), "honest peers are not");
    let rebuilt: Vec<u8> = manifest.chunks.iter().flat_map(|c| local.get(c).unwrap().to_vec()).collect();
    assert_eq!(rebuilt, file);
    assert_eq!((dl.done(), dl.bytes_done()), (chunks.len(), file.len() as u64));
}

#[wasm_bindgen_test]
fn a_manifest_for_another_file_is_refused() {
    let (manifest, _) = manifest_and_chunks(&data(3000, 1), 1024);
    let other = FileId([9; 32]);
    let err = Download::new(other, manifest.clone(), vec![], vec![vec![]; 3], None, |_| false).unwrap_err();
    assert!(matches!(err, TransferError::WrongManifest { .. }));
    // A chunk nobody holds fails the download instead of hanging.
    let mut dl = Download::new(manifest.file_id(), manifest, vec![], vec![vec![]; 3], None, |_| false).unwrap();
    assert!(dl.start().iter().any(|s| matches!(s, Step::Failed(TransferError::Unavailable { .. }))));
}

#[wasm_bindgen_test]
fn a_silent_peer_is_dropped_and_its_chunks_go_elsewhere() {
    let file = data(3000, 3);
    // 1000-byte chunks: the pattern repeats every 256 bytes, so all three chunks differ.
    let (manifest, chunks) = manifest_and_chunks(&file, 1000);
    let peers: Vec<PeerId> = ["silent", "good"].iter().map(|s| PeerId::from_secret(s)).collect();
    let mut good = MemoryStore::new();
    for c in &chunks {
        good.put(ChunkId::of(c), Rc::new(c.clone()));
    }
    let mut dl = Download::new(manifest.file_id(), manifest, peers, vec![vec![0, 1]; 3], None, |_| false).unwrap();
    let _ = dl.tick(1_000.0);
    assert_eq!(dl.start(), vec![Step::Connect { slot: 0 }, Step::Connect { slot: 1 }]);
    assert_eq!(dl.peer_ready(0).len(), 3, "all three requests go to the first ready peer");
    assert!(dl.peer_ready(1).is_empty(), "nothing left to ask the second one");
    assert!(dl.tick(10_000.0).is_empty(), "not stalled yet");
    let steps = dl.tick(17_000.0);
    assert_eq!(steps.first(), Some(&Step::Disconnect { slot: 0 }));
    let mut complete = false;
    for step in steps {
        if let Step::Send { slot, bytes } = step {
            assert_eq!(slot, 1, "retried at the other holder");
            let Ok(PeerMsg::Request { req, chunk }) = PeerMsg::decode(&bytes) else { panic!() };
            for f in serve_request(&good, req, &chunk) {
                let out = dl.on_message(1, PeerMsg::decode(&f).unwrap());
                complete |= out.contains(&Step::Complete);
            }
        }
    }
    assert!(complete);
    // A late answer from the dropped peer is ignored.
    assert!(dl.on_message(0, PeerMsg::Missing { req: 1 }).is_empty());
}
