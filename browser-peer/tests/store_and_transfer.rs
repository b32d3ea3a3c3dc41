//! Browser tests (wasm-bindgen-test in headless Chromium): the chunk stores (memory and
//! IndexedDB: put, get, list, remove, blobs, manifests, persistence across a reopen) and whole
//! downloads through the scheduler, served with `serve_frames` by simulated holders, including
//! a lying holder, one that lacks a chunk, a silent one, and the endgame.

use std::collections::{HashMap, VecDeque};

use browser_peer::idb;
use browser_peer::js_chunk::JsChunk;
use browser_peer::store::{blob_bytes, ChunkStore, IdbStore, MemoryStore};
use browser_peer::transfer::{serve_frames, serve_request, CellState, Download, Step, TransferError, FRAME_PAYLOAD};
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

/// The store contract, for any implementation.
async fn store_contract(s: &dyn ChunkStore) {
    assert!(s.is_empty());
    let a = data(1000, 1);
    let id = ChunkId::of(&a);
    assert!(s.put(id, &a));
    assert!(!s.put(id, &a), "a second put of the same chunk is not new");
    assert!(s.has(&id));
    assert_eq!(s.get(&id).await.unwrap().unwrap(), a);
    assert_eq!((s.len(), s.bytes()), (1, 1000));
    assert!(s.get(&ChunkId::of(b"other")).await.unwrap().is_none());
    assert_eq!(s.ids(), vec![id]);
    assert!(s.remove(&id) && !s.remove(&id));
    assert_eq!((s.len(), s.bytes()), (0, 0));
    assert!(s.get(&id).await.unwrap().is_none());
    s.put(id, &a);
    // Serving: a stored chunk comes out as 64 KiB frames, an absent one as `Missing`.
    let big = data(200_000, 2);
    let big_id = ChunkId::of(&big);
    s.put(big_id, &big);
    let frames = serve_request(s, 5, &big_id).await;
    assert_eq!(frames.len(), big.len().div_ceil(FRAME_PAYLOAD));
    assert!(frames.iter().all(|f| f.len() <= 64 * 1024));
    assert_eq!(serve_request(s, 6, &ChunkId::of(b"nope")).await, vec![PeerMsg::Missing { req: 6 }.encode()]);
    // Blobs for assembling a file, in order, `None` where absent.
    let blobs = s.get_blobs(&[big_id, ChunkId::of(b"nope"), id]).await.unwrap();
    assert_eq!(blob_bytes(blobs[0].as_ref().unwrap()).await.unwrap(), big);
    assert!(blobs[1].is_none());
    assert_eq!(blob_bytes(blobs[2].as_ref().unwrap()).await.unwrap(), a);
    s.put_file(FileId([3; 32]), "{\"x\":1}".into());
    s.flushed().await;
    assert_eq!(s.files().await.unwrap(), vec!["{\"x\":1}".to_string()]);
}

#[wasm_bindgen_test]
async fn memory_store_keeps_chunks_by_id() {
    store_contract(&MemoryStore::new()).await;
}

#[wasm_bindgen_test]
async fn indexeddb_store_keeps_chunks_across_a_reopen() {
    const DB: &str = "pp-test-store";
    idb::delete(DB).await.unwrap();
    let s = IdbStore::open(DB).await.unwrap();
    store_contract(&s).await;
    // Many writes in quick succession go out in batches; reads see them before they commit.
    let chunks: Vec<Vec<u8>> = (0..40u8).map(|i| data(70_000 + i as usize, i)).collect();
    for c in &chunks {
        s.put(ChunkId::of(c), c);
    }
    assert!(s.pending_bytes() > 0, "writes are batched, not yet committed");
    assert_eq!(s.get(&ChunkId::of(&chunks[7])).await.unwrap().unwrap(), chunks[7]);
    let gone = ChunkId::of(&chunks[3]);
    assert!(s.remove(&gone));
    s.flushed().await;
    assert_eq!(s.pending_bytes(), 0);
    assert!(s.writes_off_thread(), "the batches were committed by the store worker");
    // Bytes from a peer are kept only if they hash to their id (checked in the worker).
    let good = data(100_000, 42);
    let good_id = ChunkId::of(&good);
    let lie_id = ChunkId::of(&data(100_000, 43));
    let (ok, lie) = futures_util::future::join(
        s.put_checked(good_id, JsChunk::from_bytes(js_sys::Uint8Array::from(&good[..]))),
        s.put_checked(lie_id, JsChunk::from_bytes(js_sys::Uint8Array::from(&good[..]))),
    )
    .await;
    assert_eq!(ok.unwrap(), good_id);
    assert_eq!(lie.unwrap(), good_id, "the actual hash of the lie");
    assert!(s.has(&good_id) && !s.has(&lie_id));
    assert_eq!(s.get(&good_id).await.unwrap().unwrap(), good);
    assert!(s.writes_off_thread());
    let (len, bytes, ids) = (s.len(), s.bytes(), s.ids());
    s.close();

    let again = IdbStore::open(DB).await.unwrap();
    assert_eq!((again.len(), again.bytes()), (len, bytes), "the index is rebuilt from IndexedDB");
    assert_eq!(again.ids(), ids);
    assert!(!again.has(&gone), "a removed chunk stays removed");
    for c in chunks.iter().filter(|c| ChunkId::of(c) != gone) {
        assert_eq!(again.get(&ChunkId::of(c)).await.unwrap().unwrap(), *c);
    }
    assert_eq!(again.files().await.unwrap().len(), 1, "manifests persist too");
    again.close();
    idb::delete(DB).await.unwrap();
}

type Holder = HashMap<ChunkId, Vec<u8>>;

fn holder_of(chunks: &[Vec<u8>]) -> Holder {
    chunks.iter().map(|c| (ChunkId::of(c), c.clone())).collect()
}

fn serve(h: &Holder, req: u32, chunk: &ChunkId) -> Vec<Vec<u8>> {
    serve_frames(req, h.get(chunk).map(|v| &v[..]))
}

/// Feeds one frame from `slot` and checks every chunk it completes, as the page's driver does.
fn feed(dl: &mut Download, slot: usize, frame: &[u8]) -> Vec<Step> {
    let mut out = Vec::new();
    let mut todo: VecDeque<Step> = dl.on_message(slot, PeerMsg::decode(frame).unwrap()).into();
    while let Some(step) = todo.pop_front() {
        if let Step::Verify { slot, index, bytes, .. } = &step {
            todo.extend(dl.verified(*slot, *index, bytes.clone(), ChunkId::of(bytes)));
        }
        out.push(step);
    }
    out
}

/// Runs a download against simulated holders until it completes or fails.
/// `corrupt[slot]`: that holder flips a byte in every chunk it serves.
fn run(dl: &mut Download, holders: &[Holder], corrupt: &[bool], local: &mut Holder) -> (Vec<Step>, bool) {
    let mut queue: VecDeque<Step> = dl.start().into();
    let mut log = Vec::new();
    let mut complete = false;
    while let Some(step) = queue.pop_front() {
        match &step {
            Step::Connect { slot } => queue.extend(dl.peer_ready(*slot)),
            Step::Send { slot, bytes } => {
                let Ok(PeerMsg::Request { req, chunk }) = PeerMsg::decode(bytes) else { panic!("not a request") };
                let mut frames = serve(&holders[*slot], req, &chunk);
                if corrupt[*slot] {
                    if let Some(f) = frames.first_mut().filter(|f| f.len() > 13) {
                        f[13] ^= 0xff;
                    }
                }
                for f in frames {
                    queue.extend(dl.on_message(*slot, PeerMsg::decode(&f).unwrap()));
                }
            }
            Step::Verify { slot, index, chunk: _, bytes } => {
                queue.extend(dl.verified(*slot, *index, bytes.clone(), ChunkId::of(bytes)));
            }
            Step::Stored { chunk, bytes, .. } => {
                chunk.verify(bytes).expect("only verified chunks come out");
                local.insert(*chunk, bytes.clone());
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
    // "partial" claims every chunk but holds only the first three.
    let stores = vec![holder_of(&chunks), holder_of(&chunks), holder_of(&chunks[..3])];
    let holders: Vec<Vec<u32>> = (0..chunks.len()).map(|_| vec![0, 1, 2, 3]).collect();
    let mut dl = Download::new(id, manifest.clone(), peers.clone(), holders, Some(&peers[3]), |_| false).unwrap();
    let mut local = Holder::new();
    let (log, complete) = run(&mut dl, &stores, &[true, false, false], &mut local);
    assert!(complete, "download completes: {log:?}");
    assert!(!log.iter().any(|s| matches!(s, Step::Connect { slot: 3 })), "never connects to itself");
    assert!(log.iter().any(|s| matches!(s, Step::Rejected { slot: 0, .. })), "the liar is caught");
    assert!(log.iter().any(|s| matches!(s, Step::BadSource { slot: 0, .. })), "and reported");
    assert!(!log.iter().any(|s| matches!(s, Step::BadSource { slot: 1 | 2, .. })), "honest peers are not");
    let rebuilt: Vec<u8> = manifest.chunks.iter().flat_map(|c| local.get(c).unwrap().clone()).collect();
    assert_eq!(rebuilt, file);
    assert_eq!((dl.done(), dl.bytes_done()), (chunks.len(), file.len() as u64));
}

#[wasm_bindgen_test]
fn a_manifest_for_another_file_is_refused() {
    let (manifest, _) = manifest_and_chunks(&data(3000, 1), 1024);
    let other = FileId([9; 32]);
    let err = Download::<Vec<u8>>::new(other, manifest.clone(), vec![], vec![vec![]; 3], None, |_| false).unwrap_err();
    assert!(matches!(err, TransferError::WrongManifest { .. }));
    // A chunk nobody holds fails the download instead of hanging.
    let mut dl: Download =
        Download::new(manifest.file_id(), manifest, vec![], vec![vec![]; 3], None, |_| false).unwrap();
    assert!(dl.start().iter().any(|s| matches!(s, Step::Failed(TransferError::Unavailable { .. }))));
}

#[wasm_bindgen_test]
fn a_silent_peer_is_dropped_and_its_chunks_go_elsewhere() {
    let file = data(3000, 3);
    // 1000-byte chunks: the pattern repeats every 256 bytes, so all three chunks differ.
    let (manifest, chunks) = manifest_and_chunks(&file, 1000);
    let peers: Vec<PeerId> = ["silent", "good"].iter().map(|s| PeerId::from_secret(s)).collect();
    let good = holder_of(&chunks);
    let mut dl = Download::new(manifest.file_id(), manifest, peers, vec![vec![0, 1]; 3], None, |_| false).unwrap();
    dl.set_endgame(false); // this test is about the stall timeout
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
            for f in serve(&good, req, &chunk) {
                let out = feed(&mut dl, 1, &f);
                complete |= out.contains(&Step::Complete);
            }
        }
    }
    assert!(complete);
    // A late answer from the dropped peer is ignored.
    assert!(dl.on_message(0, PeerMsg::Missing { req: 1 }).is_empty());
}

#[wasm_bindgen_test]
fn endgame_asks_a_second_peer_for_the_last_chunks() {
    let file = data(3000, 5);
    let (manifest, chunks) = manifest_and_chunks(&file, 1000);
    let good = holder_of(&chunks);
    let peers: Vec<PeerId> = ["slow", "fast"].iter().map(|s| PeerId::from_secret(s)).collect();
    let mut dl = Download::new(manifest.file_id(), manifest, peers, vec![vec![0, 1]; 3], None, |_| false).unwrap();
    let _ = dl.tick(1_000.0);
    let _ = dl.start();
    // The slow peer gets all three requests and never answers.
    assert_eq!(dl.peer_ready(0).len(), 3);
    assert!(dl.cells().iter().all(|c| matches!(c, CellState::InFlight(0))));
    // Endgame: the fast peer, ready later, duplicates them at once (no stall timeout needed).
    let dup = dl.peer_ready(1);
    assert_eq!(dup.len(), 3, "every chunk in flight is asked again: {dup:?}");
    let mut complete = false;
    for step in dup {
        let Step::Send { slot: 1, bytes } = step else { panic!("{step:?}") };
        let Ok(PeerMsg::Request { req, chunk }) = PeerMsg::decode(&bytes) else { panic!() };
        for f in serve(&good, req, &chunk) {
            complete |= feed(&mut dl, 1, &f).contains(&Step::Complete);
        }
    }
    assert!(complete);
    assert!(dl.cells().iter().all(|c| *c == CellState::Done(Some(1))));
    assert_eq!(dl.delivered(), &[0, 3000]);
    // The slow copies arriving late are ignored.
    assert!(dl.on_message(0, PeerMsg::Missing { req: 1 }).is_empty());
}

#[wasm_bindgen_test]
async fn js_chunks_reassemble_and_hash_like_the_wasm_path() {
    use browser_peer::js_chunk::{sha256, split_answer};
    use browser_peer::transfer::{Answer, ChunkBuf};
    use js_sys::Uint8Array;
    let chunk = data(200_000, 9);
    let id = ChunkId::of(&chunk);
    // Frames read in place: header parsed, payload a view, copied into one JS buffer.
    let mut buf = JsChunk::with_len(chunk.len());
    for f in serve_frames(7, Some(&chunk)) {
        let Ok(Some(Answer::Data { req: 7, offset, total, part })) = split_answer(&Uint8Array::from(&f[..])) else {
            panic!("a data frame")
        };
        assert_eq!(total as usize, chunk.len());
        buf.write(offset as usize, &part);
    }
    assert!(buf.parts().length() > 1, "kept as the pieces it came in");
    assert_eq!(buf.concat().to_vec(), chunk);
    assert_eq!(sha256(&buf.concat()).await, id, "WebCrypto agrees with swarm-core's SHA-256");
    assert_ne!(sha256(&Uint8Array::from(&chunk[1..])).await, id);
    // Other messages, and garbage, are read too.
    let missing = PeerMsg::Missing { req: 3 }.encode();
    assert!(matches!(split_answer(&Uint8Array::from(&missing[..])), Ok(Some(Answer::Missing { req: 3 }))));
    let request = PeerMsg::Request { req: 1, chunk: id }.encode();
    assert!(matches!(split_answer(&Uint8Array::from(&request[..])), Ok(None)));
    assert!(split_answer(&Uint8Array::from(&[2u8, 0, 0][..])).is_err(), "a truncated data frame");
    assert!(split_answer(&Uint8Array::from(&[][..])).is_err(), "an empty message");
    assert!(split_answer(&Uint8Array::from(&[9u8, 0, 0, 0, 1][..])).is_err(), "an unknown type");
}
