//! Browser tests (wasm-bindgen-test in headless Chromium): the chunk stores (memory and
//! IndexedDB: put, get, list, remove, blobs, manifests, persistence across a reopen) and the
//! receive path that keeps chunk bytes in JS memory (`js_chunk`), and the known answers of the
//! shared crypto (private files, identities) as the page computes them on wasm32. The download
//! state machine is the peer core's, tested in `swarm-core`.

use browser_peer::idb;
use browser_peer::js_chunk::JsChunk;
use browser_peer::store::{blob_bytes, ChunkStore, IdbStore, MemoryStore};
use swarm_core::chunk_proto::{frames, PeerMsg};
use swarm_core::peer::config::FRAME_PAYLOAD;
use swarm_core::peer::serve;
use swarm_core::{ChunkId, FileId};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// The same known answers as `swarm-core/tests/crypto_vectors.rs` checks natively.
#[path = "../../swarm-core/tests/vectors/crypto.rs"]
mod crypto_vectors;

#[wasm_bindgen_test]
fn private_files_and_identities_match_their_known_answers() {
    crypto_vectors::check_known_answers();
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
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
    // Serving: a stored chunk reads back whole and checks out against its id (the page
    // verifies before it serves).
    let big = data(200_000, 2);
    let big_id = ChunkId::of(&big);
    s.put(big_id, &big);
    let read = s.get(&big_id).await.unwrap().unwrap();
    assert!(serve::check(&big_id, &read) && !serve::check(&id, &read));
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

#[wasm_bindgen_test]
async fn js_chunks_reassemble_and_hash_like_the_wasm_path() {
    use browser_peer::js_chunk::{sha256, split_incoming};
    use js_sys::Uint8Array;
    use swarm_core::peer::{Answer, ChunkBuf, Incoming};
    let chunk = data(200_000, 9);
    let id = ChunkId::of(&chunk);
    // Frames read in place: header parsed, payload a view, copied into one JS buffer.
    let mut buf = JsChunk::with_len(chunk.len());
    for f in frames(7, &chunk, FRAME_PAYLOAD) {
        let Ok(Incoming::Answer(Answer::Data { req: 7, offset, total, part })) =
            split_incoming(&Uint8Array::from(&f[..]))
        else {
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
    let split = |b: &[u8]| split_incoming(&Uint8Array::from(b));
    assert!(matches!(split(&missing), Ok(Incoming::Answer(Answer::Missing { req: 3 }))));
    let request = PeerMsg::Request { req: 1, chunk: id }.encode();
    assert!(matches!(split(&request), Ok(Incoming::Request { req: 1, chunk }) if chunk == id));
    assert!(split(&[2u8, 0, 0]).is_err(), "a truncated data frame");
    assert!(split(&[]).is_err(), "an empty message");
    assert!(split(&[9u8, 0, 0, 0, 1]).is_err(), "an unknown type");
    assert!(split(&[1u8, 0, 0, 0, 1]).is_err(), "a truncated request");
}
