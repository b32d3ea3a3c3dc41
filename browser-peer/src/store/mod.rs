//! Where this tab keeps chunk bytes and the manifests of its files.
//!
//! [`ChunkStore`] is the seam. [`IdbStore`] is the real one: chunks live in IndexedDB as
//! `Blob`s keyed by chunk id (the browser keeps blob bytes out of the JS heap, on disk), and an
//! in-memory index (id → length) answers the synchronous `has`/`ids`/`bytes` queries. Writes
//! go through at once into that index and are committed in batches: every `put` made while a
//! transaction is in flight joins the next one. A failed batch (e.g. `QuotaExceededError`) takes
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

use js_sys::{Array, Promise, Uint8Array};
use swarm_core::{ChunkId, FileId};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{Blob, BlobPropertyBag, IdbDatabase};

use crate::idb::{self, IdbError, CHUNKS, FILES};
use crate::rtc::js_error;

/// A boxed future on the page's single thread.
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

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
    /// Forgets a chunk; returns `true` if it was stored.
    fn remove(&self, id: &ChunkId) -> bool;
    /// The chunks as `Blob`s, in order (`None` where absent). No bytes enter the wasm heap.
    fn get_blobs(&self, ids: &[ChunkId]) -> LocalFuture<Result<Vec<Option<Blob>>, IdbError>>;
    /// One chunk's bytes.
    fn get(&self, id: &ChunkId) -> LocalFuture<Result<Option<Vec<u8>>, IdbError>> {
        let blobs = self.get_blobs(&[*id]);
        Box::pin(async move {
            match blobs.await?.pop().flatten() {
                Some(b) => blob_bytes(&b).await.map(Some).map_err(IdbError::other),
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

/// A `Blob` holding a copy of `bytes`.
pub fn blob_of(bytes: &[u8]) -> Result<Blob, String> {
    let parts = Array::of1(&Uint8Array::from(bytes));
    let bag = BlobPropertyBag::new();
    bag.set_type("application/octet-stream");
    Blob::new_with_u8_array_sequence_and_options(&parts, &bag).map_err(|e| js_error(&e))
}

/// Reads a whole `Blob` into the wasm heap.
pub async fn blob_bytes(blob: &Blob) -> Result<Vec<u8>, String> {
    let buf = JsFuture::from(blob.array_buffer()).await.map_err(|e| js_error(&e))?;
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
            ids.iter().map(|id| chunks.get(id).map(|b| blob_of(b).map_err(IdbError::other)).transpose()).collect();
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

// ----- IndexedDB -----

struct Inner {
    db: IdbDatabase,
    /// Committed or being committed: id → length.
    index: HashMap<ChunkId, u32>,
    bytes: u64,
    /// Accepted, not yet committed (served from here meanwhile).
    pending: HashMap<ChunkId, Blob>,
    pending_bytes: u64,
    deletes: Vec<ChunkId>,
    files: Vec<(FileId, String)>,
    flushing: bool,
    /// Resolve functions of `flushed()` callers.
    waiters: Vec<js_sys::Function>,
    on_error: Option<ErrorHandler>,
}

/// Chunks and manifests in IndexedDB, with batched writes.
#[derive(Clone)]
pub struct IdbStore {
    inner: Rc<RefCell<Inner>>,
}

impl IdbStore {
    /// Opens the database `name` and loads the index of the chunks it holds.
    pub async fn open(name: &str) -> Result<Self, IdbError> {
        let db = idb::open(name).await?;
        let tx = idb::tx(&db, CHUNKS, false)?;
        let os = tx.object_store(CHUNKS).map_err(idb::js)?;
        let keys_req = os.get_all_keys().map_err(idb::js)?;
        let vals_req = os.get_all().map_err(idb::js)?;
        let keys: Array = idb::request(&keys_req).await?.unchecked_into();
        let vals: Array = idb::request(&vals_req).await?.unchecked_into();
        let mut index = HashMap::new();
        let mut bytes = 0u64;
        for (k, v) in keys.iter().zip(vals.iter()) {
            let (Some(k), Ok(blob)) = (k.as_string(), v.dyn_into::<Blob>()) else { continue };
            if let Ok(id) = k.parse::<ChunkId>() {
                let len = blob.size() as u32;
                bytes += len as u64;
                index.insert(id, len);
            }
        }
        Ok(Self {
            inner: Rc::new(RefCell::new(Inner {
                db,
                index,
                bytes,
                pending: HashMap::new(),
                pending_bytes: 0,
                deletes: Vec::new(),
                files: Vec::new(),
                flushing: false,
                waiters: Vec::new(),
                on_error: None,
            })),
        })
    }

    /// Where failed write batches are reported.
    pub fn set_error_handler(&self, h: ErrorHandler) {
        self.inner.borrow_mut().on_error = Some(h);
    }

    /// Closes the database connection (tests reopen it to check persistence).
    pub fn close(&self) {
        self.inner.borrow().db.close();
    }

    fn kick(&self) {
        let mut inner = self.inner.borrow_mut();
        if inner.flushing {
            return;
        }
        inner.flushing = true;
        drop(inner);
        let this = self.clone();
        spawn_local(async move { this.flush_loop().await });
    }

    async fn flush_loop(self) {
        loop {
            let (db, puts, deletes, files) = {
                let mut inner = self.inner.borrow_mut();
                if inner.pending.is_empty() && inner.deletes.is_empty() && inner.files.is_empty() {
                    inner.flushing = false;
                    for w in inner.waiters.drain(..) {
                        let _ = w.call0(&JsValue::NULL);
                    }
                    return;
                }
                let puts: Vec<(ChunkId, Blob)> = inner.pending.iter().map(|(k, v)| (*k, v.clone())).collect();
                let deletes = std::mem::take(&mut inner.deletes);
                let files = std::mem::take(&mut inner.files);
                (inner.db.clone(), puts, deletes, files)
            };
            let result = write_batch(&db, &puts, &deletes, &files).await;
            let mut inner = self.inner.borrow_mut();
            for (id, _) in &puts {
                if let Some(b) = inner.pending.remove(id) {
                    inner.pending_bytes -= b.size() as u64;
                }
            }
            if let Err(error) = result {
                // The batch is lost: those chunks are not held after all.
                let mut lost = Vec::new();
                for (id, _) in &puts {
                    if let Some(len) = inner.index.remove(id) {
                        inner.bytes -= len as u64;
                        lost.push(*id);
                    }
                }
                let handler = inner.on_error.clone();
                drop(inner);
                gloo::console::error!(format!("IndexedDB write of {} chunk(s) failed: {error}", puts.len()));
                if let Some(h) = handler {
                    h(WriteFailure { chunks: lost, error });
                }
            }
        }
    }
}

async fn write_batch(
    db: &IdbDatabase,
    puts: &[(ChunkId, Blob)],
    deletes: &[ChunkId],
    files: &[(FileId, String)],
) -> Result<(), IdbError> {
    let names = Array::of2(&CHUNKS.into(), &FILES.into());
    let tx =
        db.transaction_with_str_sequence_and_mode(&names, web_sys::IdbTransactionMode::Readwrite).map_err(idb::js)?;
    let chunks = tx.object_store(CHUNKS).map_err(idb::js)?;
    for id in deletes {
        chunks.delete(&id.to_hex().into()).map_err(idb::js)?;
    }
    for (id, blob) in puts {
        chunks.put_with_key(blob, &id.to_hex().into()).map_err(idb::js)?;
    }
    if !files.is_empty() {
        let fs = tx.object_store(FILES).map_err(idb::js)?;
        for (id, json) in files {
            fs.put_with_key(&json.into(), &id.to_hex().into()).map_err(idb::js)?;
        }
    }
    idb::done(&tx).await
}

impl ChunkStore for IdbStore {
    fn has(&self, id: &ChunkId) -> bool {
        self.inner.borrow().index.contains_key(id)
    }
    fn ids(&self) -> Vec<ChunkId> {
        let mut ids: Vec<ChunkId> = self.inner.borrow().index.keys().copied().collect();
        ids.sort();
        ids
    }
    fn len(&self) -> usize {
        self.inner.borrow().index.len()
    }
    fn bytes(&self) -> u64 {
        self.inner.borrow().bytes
    }
    fn put(&self, id: ChunkId, bytes: &[u8]) -> bool {
        {
            let mut inner = self.inner.borrow_mut();
            if inner.index.contains_key(&id) {
                return false;
            }
            let blob = match blob_of(bytes) {
                Ok(b) => b,
                Err(e) => {
                    gloo::console::error!(format!("cannot make a blob: {e}"));
                    return false;
                }
            };
            inner.index.insert(id, bytes.len() as u32);
            inner.bytes += bytes.len() as u64;
            inner.pending_bytes += bytes.len() as u64;
            inner.deletes.retain(|d| *d != id);
            inner.pending.insert(id, blob);
        }
        self.kick();
        true
    }
    fn remove(&self, id: &ChunkId) -> bool {
        {
            let mut inner = self.inner.borrow_mut();
            let Some(len) = inner.index.remove(id) else { return false };
            inner.bytes -= len as u64;
            if let Some(b) = inner.pending.remove(id) {
                inner.pending_bytes -= b.size() as u64;
            }
            inner.deletes.push(*id);
        }
        self.kick();
        true
    }
    fn get_blobs(&self, ids: &[ChunkId]) -> LocalFuture<Result<Vec<Option<Blob>>, IdbError>> {
        let inner = self.inner.borrow();
        // From memory where the write is still pending; one read transaction for the rest.
        let mut out: Vec<Option<Blob>> = Vec::with_capacity(ids.len());
        let mut reads: Vec<(usize, web_sys::IdbRequest)> = Vec::new();
        let mut failure = None;
        let tx = if ids.iter().any(|id| inner.index.contains_key(id) && !inner.pending.contains_key(id)) {
            match idb::tx(&inner.db, CHUNKS, false).and_then(|tx| tx.object_store(CHUNKS).map_err(idb::js)) {
                Ok(os) => Some(os),
                Err(e) => {
                    failure = Some(e);
                    None
                }
            }
        } else {
            None
        };
        for (i, id) in ids.iter().enumerate() {
            if let Some(b) = inner.pending.get(id) {
                out.push(Some(b.clone()));
            } else if inner.index.contains_key(id) {
                out.push(None);
                if let Some(os) = &tx {
                    match os.get(&id.to_hex().into()) {
                        Ok(r) => reads.push((i, r)),
                        Err(e) => failure = Some(idb::js(e)),
                    }
                }
            } else {
                out.push(None);
            }
        }
        Box::pin(async move {
            if let Some(e) = failure {
                return Err(e);
            }
            for (i, r) in reads {
                let v = idb::request(&r).await?;
                out[i] = v.dyn_into::<Blob>().ok();
            }
            Ok(out)
        })
    }
    fn pending_bytes(&self) -> u64 {
        self.inner.borrow().pending_bytes
    }
    fn flushed(&self) -> LocalFuture<()> {
        let mut inner = self.inner.borrow_mut();
        if !inner.flushing {
            return Box::pin(async {});
        }
        let promise = Promise::new(&mut |resolve, _| inner.waiters.push(resolve));
        Box::pin(async move {
            let _ = JsFuture::from(promise).await;
        })
    }
    fn put_file(&self, id: FileId, json: String) {
        self.inner.borrow_mut().files.push((id, json));
        self.kick();
    }
    fn files(&self) -> LocalFuture<Result<Vec<String>, IdbError>> {
        let db = self.inner.borrow().db.clone();
        Box::pin(async move {
            let tx = idb::tx(&db, FILES, false)?;
            let req = tx.object_store(FILES).map_err(idb::js)?.get_all().map_err(idb::js)?;
            let vals: Array = idb::request(&req).await?.unchecked_into();
            Ok(vals.iter().filter_map(|v| v.as_string()).collect())
        })
    }
}
