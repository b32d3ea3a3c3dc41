//! [`IdbStore`]: chunks and manifests in IndexedDB, indexed in memory, written in batches
//! (through the store worker, see `writer.rs`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Array, Promise, Uint8Array};
use swarm_core::{ChunkId, FileId};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::Blob;

use super::writer::{Batch, Put, Writer};
use crate::js_chunk::JsChunk;

use super::{blob_of_parts, BorrowedFuture, ChunkStore, ErrorHandler, LocalFuture, WriteFailure};
use crate::idb::{self, IdbError, CHUNKS, FILES};

struct Inner {
    writer: Rc<Writer>,
    /// Committed or being committed: id → length.
    index: HashMap<ChunkId, u32>,
    bytes: u64,
    /// Accepted, not yet committed (served from here meanwhile).
    /// Accepted, not yet committed: the bytes, and whether the worker must check them (then
    /// they are not in `index` until it has).
    pending: HashMap<ChunkId, (JsChunk, bool)>,
    /// Resolve functions of `put_checked` callers, by chunk: called with the actual hash
    /// (hex), or `null` if the batch failed.
    checks: HashMap<ChunkId, Vec<js_sys::Function>>,
    /// In the batch being committed: id → length. The bytes went to the store worker, so reads
    /// of these wait for the batch.
    writing: HashMap<ChunkId, u32>,
    /// Resolve functions of readers waiting for the batch in flight.
    batch_waiters: Vec<js_sys::Function>,
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
                writer: Rc::new(Writer::new(db, name)),
                index,
                bytes,
                pending: HashMap::new(),
                checks: HashMap::new(),
                writing: HashMap::new(),
                batch_waiters: Vec::new(),
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

    /// Whether write batches go through the store worker (not the main thread).
    pub fn writes_off_thread(&self) -> bool {
        self.inner.borrow().writer.off_thread()
    }

    /// Closes the database connection and stops the store worker (tests reopen the database
    /// to check persistence).
    pub fn close(&self) {
        self.inner.borrow().writer.close();
    }

    /// Indexes a chunk at once and queues its bytes for the next write batch.
    fn put_bytes(&self, id: ChunkId, bytes: JsChunk) -> bool {
        {
            let mut inner = self.inner.borrow_mut();
            if inner.index.contains_key(&id) {
                return false;
            }
            let len = bytes.len() as usize;
            inner.index.insert(id, len as u32);
            inner.bytes += len as u64;
            inner.pending_bytes += len as u64;
            inner.deletes.retain(|d| *d != id);
            inner.pending.insert(id, (bytes, false));
        }
        self.kick();
        true
    }

    /// Settles the `put_checked` callers of `id` (`actual`: `None` if the batch failed).
    fn settle(inner: &mut Inner, id: &ChunkId, actual: Option<ChunkId>) {
        let v = actual.map(|a| JsValue::from(a.to_hex())).unwrap_or(JsValue::NULL);
        for f in inner.checks.remove(id).unwrap_or_default() {
            let _ = f.call1(&JsValue::NULL, &v);
        }
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
            let (writer, puts, deletes, files) = {
                let mut inner = self.inner.borrow_mut();
                if inner.pending.is_empty() && inner.deletes.is_empty() && inner.files.is_empty() {
                    inner.flushing = false;
                    for w in inner.waiters.drain(..) {
                        let _ = w.call0(&JsValue::NULL);
                    }
                    return;
                }
                let puts: Vec<Put> =
                    inner.pending.drain().map(|(id, (bytes, check))| Put { id, bytes, check }).collect();
                inner.writing = puts.iter().map(|p| (p.id, p.bytes.len())).collect();
                let deletes = std::mem::take(&mut inner.deletes);
                let files = std::mem::take(&mut inner.files);
                (inner.writer.clone(), puts, deletes, files)
            };
            let result = writer.write(Batch { puts: &puts, deletes: &deletes, files: &files }).await;
            let mut inner = self.inner.borrow_mut();
            let written = std::mem::take(&mut inner.writing);
            inner.pending_bytes -= written.values().map(|&l| l as u64).sum::<u64>();
            match &result {
                Ok(bad) => {
                    for p in puts.iter().filter(|p| p.check) {
                        let actual = bad.iter().find(|b| b.0 == p.id).map_or(p.id, |b| b.1);
                        if actual == p.id && !inner.index.contains_key(&p.id) {
                            let len = written.get(&p.id).copied().unwrap_or(0);
                            inner.index.insert(p.id, len);
                            inner.bytes += len as u64;
                        }
                        Self::settle(&mut inner, &p.id, Some(actual));
                    }
                }
                Err(_) => {
                    for p in puts.iter().filter(|p| p.check) {
                        Self::settle(&mut inner, &p.id, None);
                    }
                }
            }
            for w in inner.batch_waiters.drain(..) {
                let _ = w.call0(&JsValue::NULL);
            }
            if let Err(error) = result {
                // The batch is lost: those chunks are not held after all.
                let mut lost = Vec::new();
                for Put { id, .. } in puts.iter().filter(|p| !p.check) {
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
        if self.has(&id) {
            return false;
        }
        self.put_bytes(id, JsChunk::from_bytes(Uint8Array::from(bytes)))
    }
    fn put_checked<'a>(&'a self, id: ChunkId, bytes: JsChunk) -> BorrowedFuture<'a, Result<ChunkId, IdbError>> {
        if !crate::js_chunk::has_webcrypto() {
            // Outside a secure context (plain http on a LAN address) the worker could not hash
            // either: check here, in wasm.
            return Box::pin(super::check_then_put(self, id, bytes));
        }
        let promise = {
            let mut inner = self.inner.borrow_mut();
            if inner.index.contains_key(&id) {
                return Box::pin(async move { Ok(id) });
            }
            inner.pending_bytes += bytes.len() as u64;
            if let Some((old, _)) = inner.pending.insert(id, (bytes, true)) {
                inner.pending_bytes -= old.len() as u64;
            }
            Promise::new(&mut |resolve, _| inner.checks.entry(id).or_default().push(resolve))
        };
        self.kick();
        Box::pin(async move {
            let v = JsFuture::from(promise).await.map_err(idb::js)?;
            v.as_string()
                .and_then(|h| h.parse::<ChunkId>().ok())
                .ok_or_else(|| IdbError::other("the chunk could not be checked and stored (see the storage warning)"))
        })
    }
    fn remove(&self, id: &ChunkId) -> bool {
        {
            let mut inner = self.inner.borrow_mut();
            let Some(len) = inner.index.remove(id) else { return false };
            inner.bytes -= len as u64;
            if let Some((b, _)) = inner.pending.remove(id) {
                inner.pending_bytes -= b.len() as u64;
            }
            inner.deletes.push(*id);
        }
        self.kick();
        true
    }
    fn get_blobs(&self, ids: &[ChunkId]) -> LocalFuture<Result<Vec<Option<Blob>>, IdbError>> {
        let mut inner = self.inner.borrow_mut();
        if ids.iter().any(|id| inner.writing.contains_key(id)) {
            // Being committed: read it back once the batch is done.
            let done = Promise::new(&mut |resolve, _| inner.batch_waiters.push(resolve));
            let (this, ids) = (self.clone(), ids.to_vec());
            return Box::pin(async move {
                let _ = JsFuture::from(done).await;
                this.get_blobs(&ids).await
            });
        }
        // From memory where the write is still pending; one read transaction for the rest.
        let mut out: Vec<Option<Blob>> = Vec::with_capacity(ids.len());
        let mut reads: Vec<(usize, web_sys::IdbRequest)> = Vec::new();
        let mut failure = None;
        let tx = if ids.iter().any(|id| inner.index.contains_key(id) && !inner.pending.contains_key(id)) {
            match idb::tx(inner.writer.db(), CHUNKS, false).and_then(|tx| tx.object_store(CHUNKS).map_err(idb::js)) {
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
            if let Some((b, false)) = inner.pending.get(id) {
                match blob_of_parts(b.parts()) {
                    Ok(b) => out.push(Some(b)),
                    Err(e) => {
                        failure = Some(e);
                        out.push(None);
                    }
                }
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
        let writer = self.inner.borrow().writer.clone();
        Box::pin(async move {
            let tx = idb::tx(writer.db(), FILES, false)?;
            let req = tx.object_store(FILES).map_err(idb::js)?.get_all().map_err(idb::js)?;
            let vals: Array = idb::request(&req).await?.unchecked_into();
            Ok(vals.iter().filter_map(|v| v.as_string()).collect())
        })
    }
}
