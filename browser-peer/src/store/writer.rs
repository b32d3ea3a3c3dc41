//! Checks and commits the store's write batches to IndexedDB.
//!
//! Where the page can start one, a dedicated worker (`worker.js`, started from a blob URL so
//! it needs no file of its own in `dist/`) hashes the chunks that still need checking, makes
//! the Blobs and runs the transactions: on the page's main thread the Blobs and IndexedDB
//! calls alone were a fifth of a download's time, waiting on the browser process. Without
//! workers (or if the worker breaks) batches are checked and written in-thread.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Object, Promise, Reflect};
use swarm_core::{ChunkId, FileId};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, BlobPropertyBag, IdbDatabase, MessageEvent, Url, Worker};

use super::blob_of_parts;
use crate::idb::{self, IdbError, CHUNKS, FILES};
use crate::js_chunk::{sha256, JsChunk};

const WORKER_JS: &str = include_str!("worker.js");

/// A chunk to put; `check`: only if its SHA-256 is `id` (bytes straight from a peer).
pub struct Put {
    pub id: ChunkId,
    pub bytes: JsChunk,
    pub check: bool,
}

/// A checked chunk whose bytes hash to `actual` instead: not stored.
pub type Mismatch = (ChunkId, ChunkId);

/// One batch: chunks to put, chunks to delete, file records to put.
pub struct Batch<'a> {
    pub puts: &'a [Put],
    pub deletes: &'a [ChunkId],
    pub files: &'a [(FileId, String)],
}

pub struct Writer {
    db: IdbDatabase,
    name: String,
    worker: RefCell<Option<StoreWorker>>,
}

impl Writer {
    /// A writer for the open database `db` called `name`.
    pub fn new(db: IdbDatabase, name: &str) -> Self {
        let worker = match StoreWorker::start() {
            Ok(w) => Some(w),
            Err(e) => {
                gloo::console::warn!(format!("no store worker ({e}); writing on the main thread"));
                None
            }
        };
        Self { db, name: name.to_string(), worker: RefCell::new(worker) }
    }

    /// Whether batches go through the worker.
    pub fn off_thread(&self) -> bool {
        self.worker.borrow().is_some()
    }

    pub fn db(&self) -> &IdbDatabase {
        &self.db
    }

    /// Commits one batch (all or nothing) and returns the checked chunks that failed their
    /// check. Through the worker, the chunks' buffers are transferred: afterwards they are
    /// empty on this side.
    pub async fn write(&self, batch: Batch<'_>) -> Result<Vec<Mismatch>, IdbError> {
        let worker = self.worker.borrow().as_ref().map(|w| w.handle());
        if let Some(w) = worker {
            match w.write(&self.name, &batch).await {
                Ok(bad) => return Ok(bad),
                Err(e) => {
                    if !e.is_quota() {
                        gloo::console::warn!(format!(
                            "store worker failed ({e}); writing on the main thread from now on"
                        ));
                        if let Some(w) = self.worker.borrow_mut().take() {
                            w.stop();
                        }
                    }
                    return Err(e); // the bytes went with the worker: this batch is lost
                }
            }
        }
        write_in_thread(&self.db, &batch).await
    }

    /// Closes the database and stops the worker.
    pub fn close(&self) {
        if let Some(w) = self.worker.borrow_mut().take() {
            w.stop();
        }
        self.db.close();
    }
}

/// The worker and the resolve function of the batch in flight (one at a time).
struct StoreWorker {
    worker: Worker,
    reply: Rc<RefCell<Option<js_sys::Function>>>,
    _on_message: Rc<Closure<dyn FnMut(JsValue)>>,
}

#[derive(Clone)]
struct WorkerHandle {
    worker: Worker,
    reply: Rc<RefCell<Option<js_sys::Function>>>,
}

impl StoreWorker {
    fn start() -> Result<Self, IdbError> {
        let js_err = |e: JsValue| IdbError::from_js(&e);
        let bag = BlobPropertyBag::new();
        bag.set_type("text/javascript");
        let js = Blob::new_with_str_sequence_and_options(&Array::of1(&WORKER_JS.into()), &bag).map_err(js_err)?;
        let url = Url::create_object_url_with_blob(&js).map_err(js_err)?;
        let worker = Worker::new(&url).map_err(js_err);
        let _ = Url::revoke_object_url(&url);
        let worker = worker?;
        let reply: Rc<RefCell<Option<js_sys::Function>>> = Rc::default();
        let r = reply.clone();
        let on_message = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
            // A message is a batch's outcome; an error event (the script failed) becomes one.
            let data = match ev.dyn_ref::<MessageEvent>() {
                Some(m) => m.data(),
                None => failure("WorkerError", "the store worker failed"),
            };
            if let Some(resolve) = r.borrow_mut().take() {
                let _ = resolve.call1(&JsValue::NULL, &data);
            }
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_message.as_ref().unchecked_ref()));
        Ok(Self { worker, reply, _on_message: Rc::new(on_message) })
    }

    fn handle(&self) -> WorkerHandle {
        WorkerHandle { worker: self.worker.clone(), reply: self.reply.clone() }
    }

    fn stop(self) {
        self.worker.terminate();
        if let Some(resolve) = self.reply.borrow_mut().take() {
            let _ = resolve.call1(&JsValue::NULL, &failure("WorkerError", "the store worker stopped"));
        }
    }
}

impl WorkerHandle {
    async fn write(&self, db: &str, batch: &Batch<'_>) -> Result<Vec<Mismatch>, IdbError> {
        let msg = Object::new();
        let (puts, transfer) = (Array::new(), Array::new());
        for Put { id, bytes, check } in batch.puts {
            // Each chunk's buffers move to the worker (no copy). They hold nothing else: a
            // received frame (header and payload) or a chunk read from a file.
            for b in bytes.buffers().iter() {
                transfer.push(&b);
            }
            puts.push(&Array::of3(&id.to_hex().into(), bytes.parts(), &JsValue::from_bool(*check)));
        }
        let deletes: Array = batch.deletes.iter().map(|id| JsValue::from(id.to_hex())).collect();
        let files: Array = batch.files.iter().map(|(id, json)| Array::of2(&id.to_hex().into(), &json.into())).collect();
        for (k, v) in
            [("db", JsValue::from(db)), ("puts", puts.into()), ("deletes", deletes.into()), ("files", files.into())]
        {
            Reflect::set(&msg, &k.into(), &v).map_err(idb::js)?;
        }
        let reply = Promise::new(&mut |resolve, _| *self.reply.borrow_mut() = Some(resolve));
        self.worker.post_message_with_transfer(&msg, &transfer).map_err(idb::js)?;
        let out = JsFuture::from(reply).await.map_err(idb::js)?;
        if Reflect::get(&out, &"ok".into()).ok().and_then(|v| v.as_bool()) == Some(true) {
            let bad: Array = Reflect::get(&out, &"bad".into()).ok().and_then(|v| v.dyn_into().ok()).unwrap_or_default();
            let hex = |v: JsValue| v.as_string().and_then(|s| s.parse::<ChunkId>().ok());
            return Ok(bad
                .iter()
                .filter_map(|pair| {
                    let pair: Array = pair.dyn_into().ok()?;
                    Some((hex(pair.get(0))?, hex(pair.get(1))?))
                })
                .collect());
        }
        let field = |k: &str| Reflect::get(&out, &k.into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
        Err(IdbError { name: field("name"), message: field("message") })
    }
}

fn failure(name: &str, message: &str) -> JsValue {
    let o = Object::new();
    let _ = Reflect::set(&o, &"ok".into(), &false.into());
    let _ = Reflect::set(&o, &"name".into(), &name.into());
    let _ = Reflect::set(&o, &"message".into(), &message.into());
    o.into()
}

async fn write_in_thread(db: &IdbDatabase, batch: &Batch<'_>) -> Result<Vec<Mismatch>, IdbError> {
    // Hash first: a transaction would commit on its own while a digest is awaited.
    let mut bad = Vec::new();
    for p in batch.puts.iter().filter(|p| p.check) {
        let actual = sha256(&p.bytes.concat()).await;
        if actual != p.id {
            bad.push((p.id, actual));
        }
    }
    let names = Array::of2(&CHUNKS.into(), &FILES.into());
    let tx =
        db.transaction_with_str_sequence_and_mode(&names, web_sys::IdbTransactionMode::Readwrite).map_err(idb::js)?;
    let chunks = tx.object_store(CHUNKS).map_err(idb::js)?;
    for id in batch.deletes {
        chunks.delete(&id.to_hex().into()).map_err(idb::js)?;
    }
    for Put { id, bytes, .. } in batch.puts.iter().filter(|p| !bad.iter().any(|b| b.0 == p.id)) {
        let blob = blob_of_parts(bytes.parts())?;
        chunks.put_with_key(&blob, &id.to_hex().into()).map_err(idb::js)?;
    }
    if !batch.files.is_empty() {
        let fs = tx.object_store(FILES).map_err(idb::js)?;
        for (id, json) in batch.files {
            fs.put_with_key(&json.into(), &id.to_hex().into()).map_err(idb::js)?;
        }
    }
    idb::done(&tx).await.map(|()| bad)
}
