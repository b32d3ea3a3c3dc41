//! Where this tab keeps chunk bytes and the manifests of its files.
//!
//! [`ChunkStore`] is the seam. [`IdbStore`] is the real one: chunks live in IndexedDB as
//! `Blob`s keyed by chunk id (the browser keeps blob bytes out of the JS heap, on disk), and an
//! in-memory index (id → length) answers the synchronous `has`/`ids`/`bytes` queries. Writes
//! go through at once into that index and are committed in batches: every `put` made while a
//! transaction is in flight joins the next one. A store worker commits the batches
//! (`writer.rs`), so the page's main thread never waits on the browser process for them. A failed batch (e.g. `QuotaExceededError`) takes
//! its chunks out of the index again and is reported through the store's error callback, so the
//! peer never announces chunks it could not keep.
//!
//! [`MemoryStore`] keeps chunks in the wasm heap; it serves tests and the case where a browser
//! has no IndexedDB (some private modes). Callers only ever put chunks whose SHA-256 they have
//! verified (or computed themselves while uploading).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use js_sys::{Array, Uint8Array};
use swarm_core::{ChunkId, FileId};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, BlobPropertyBag};

use crate::idb::IdbError;
use crate::js_chunk::JsChunk;

mod idb_store;
mod writer;

pub use idb_store::IdbStore;

/// A boxed future on the page's single thread.
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;
/// A boxed future that borrows the store.
pub type BorrowedFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Reported when committed writes failed: those chunks are no longer held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    pub chunks: Vec<ChunkId>,
    pub error: IdbError,
}

/// Called with every failed write batch.
pub type ErrorHandler = Rc<dyn Fn(WriteFailure)>;

/// Content-addressed chunk storage (plus the manifests of this tab's files).
pub trait ChunkStore {
    /// Whether the chunk is stored (or being written).
    fn has(&self, id: &ChunkId) -> bool;
    /// Every stored chunk id, sorted (the inventory announced to the tracker).
    fn ids(&self) -> Vec<ChunkId>;
    /// Number of stored chunks.
    fn len(&self) -> usize;
    /// Total stored bytes.
    fn bytes(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Stores a verified chunk; returns `true` if it was new. The write completes in the
    /// background (see [`ChunkStore::flushed`]).
    fn put(&self, id: ChunkId, bytes: &[u8]) -> bool;
    /// Stores bytes straight from a peer if their SHA-256 is `id`, and resolves to their actual
    /// hash (`Err`: they could not be checked and kept; the bytes may be gone). The IndexedDB
    /// store hashes in its worker, off the page's main thread; the buffer is consumed.
    fn put_checked<'a>(&'a self, id: ChunkId, bytes: JsChunk) -> BorrowedFuture<'a, Result<ChunkId, IdbError>> {
        Box::pin(check_then_put(self, id, bytes))
    }
    /// Forgets a chunk; returns `true` if it was stored.
    fn remove(&self, id: &ChunkId) -> bool;
    /// The chunks as `Blob`s, in order (`None` where absent). No bytes enter the wasm heap.
    fn get_blobs(&self, ids: &[ChunkId]) -> LocalFuture<Result<Vec<Option<Blob>>, IdbError>>;
    /// One chunk's bytes.
    fn get(&self, id: &ChunkId) -> LocalFuture<Result<Option<Vec<u8>>, IdbError>> {
        let blobs = self.get_blobs(&[*id]);
        Box::pin(async move {
            match blobs.await?.pop().flatten() {
                Some(b) => blob_bytes(&b).await.map(Some),
                None => Ok(None),
            }
        })
    }
    /// Bytes accepted by `put` but not yet committed.
    fn pending_bytes(&self) -> u64 {
        0
    }
    /// Resolves when every write issued so far is committed (or failed).
    fn flushed(&self) -> LocalFuture<()> {
        Box::pin(async {})
    }
    /// Keeps a file's manifest and metadata (JSON) under its id.
    fn put_file(&self, id: FileId, json: String);
    /// Every kept file record (JSON).
    fn files(&self) -> LocalFuture<Result<Vec<String>, IdbError>>;
}

/// [`ChunkStore::put_checked`] on this thread: hash, then [`ChunkStore::put`] if it matches.
async fn check_then_put<S: ChunkStore + ?Sized>(store: &S, id: ChunkId, bytes: JsChunk) -> Result<ChunkId, IdbError> {
    let whole = bytes.concat();
    let actual = crate::js_chunk::sha256(&whole).await;
    if actual == id {
        store.put(id, &whole.to_vec());
    }
    Ok(actual)
}

/// A `Blob` holding a copy of `bytes`.
pub fn blob_of(bytes: &[u8]) -> Result<Blob, IdbError> {
    blob_of_js(&Uint8Array::from(bytes))
}

/// A `Blob` holding a copy of bytes in JS memory.
pub fn blob_of_js(bytes: &Uint8Array) -> Result<Blob, IdbError> {
    blob_of_parts(&Array::of1(bytes))
}

/// A `Blob` holding a copy of these pieces (`Uint8Array`s), in order.
pub fn blob_of_parts(parts: &Array) -> Result<Blob, IdbError> {
    let bag = BlobPropertyBag::new();
    bag.set_type("application/octet-stream");
    Blob::new_with_u8_array_sequence_and_options(parts, &bag).map_err(|e| IdbError::from_js(&e))
}

/// Reads a whole `Blob` into the wasm heap.
pub async fn blob_bytes(blob: &Blob) -> Result<Vec<u8>, IdbError> {
    let buf = JsFuture::from(blob.array_buffer()).await.map_err(|e| IdbError::from_js(&e))?;
    Ok(Uint8Array::new(&buf).to_vec())
}

// ----- memory -----

/// Chunks in the wasm heap: lost on reload.
#[derive(Default)]
pub struct MemoryStore {
    chunks: RefCell<HashMap<ChunkId, Rc<Vec<u8>>>>,
    files: RefCell<HashMap<FileId, String>>,
    bytes: Cell<u64>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl ChunkStore for MemoryStore {
    fn has(&self, id: &ChunkId) -> bool {
        self.chunks.borrow().contains_key(id)
    }
    fn ids(&self) -> Vec<ChunkId> {
        let mut ids: Vec<ChunkId> = self.chunks.borrow().keys().copied().collect();
        ids.sort();
        ids
    }
    fn len(&self) -> usize {
        self.chunks.borrow().len()
    }
    fn bytes(&self) -> u64 {
        self.bytes.get()
    }
    fn put(&self, id: ChunkId, bytes: &[u8]) -> bool {
        let mut chunks = self.chunks.borrow_mut();
        if chunks.contains_key(&id) {
            return false;
        }
        self.bytes.set(self.bytes.get() + bytes.len() as u64);
        chunks.insert(id, Rc::new(bytes.to_vec()));
        true
    }
    fn remove(&self, id: &ChunkId) -> bool {
        match self.chunks.borrow_mut().remove(id) {
            Some(b) => {
                self.bytes.set(self.bytes.get() - b.len() as u64);
                true
            }
            None => false,
        }
    }
    fn get_blobs(&self, ids: &[ChunkId]) -> LocalFuture<Result<Vec<Option<Blob>>, IdbError>> {
        let chunks = self.chunks.borrow();
        let out: Result<Vec<Option<Blob>>, IdbError> =
            ids.iter().map(|id| chunks.get(id).map(|b| blob_of(b)).transpose()).collect();
        Box::pin(async move { out })
    }
    fn get(&self, id: &ChunkId) -> LocalFuture<Result<Option<Vec<u8>>, IdbError>> {
        let bytes = self.chunks.borrow().get(id).map(|b| b.to_vec());
        Box::pin(async move { Ok(bytes) })
    }
    fn put_file(&self, id: FileId, json: String) {
        self.files.borrow_mut().insert(id, json);
    }
    fn files(&self) -> LocalFuture<Result<Vec<String>, IdbError>> {
        let v = self.files.borrow().values().cloned().collect();
        Box::pin(async move { Ok(v) })
    }
}
