//! A thin async layer over IndexedDB (web-sys, no extra crate): open a database, await a
//! request, await a transaction. Requests and transactions resolve a JS promise straight from
//! their `onsuccess` / `oncomplete` handlers, so no Rust closure is created or leaked per call.

use js_sys::{Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbOpenDbRequest, IdbRequest, IdbTransaction};

use crate::rtc::js_error;

/// Object store of chunk bytes: key = chunk id (hex), value = a `Blob` of the chunk.
pub const CHUNKS: &str = "chunks";
/// Object store of files this tab uploaded or downloaded: key = file id (hex), value = JSON
/// `{manifest, meta}`.
pub const FILES: &str = "files";
/// Schema version.
pub const VERSION: u32 = 1;

/// An IndexedDB failure, with the DOM exception name kept apart (e.g. `QuotaExceededError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct IdbError {
    pub name: String,
    pub message: String,
}

impl IdbError {
    pub fn other(message: impl Into<String>) -> Self {
        Self { name: "Error".into(), message: message.into() }
    }
    /// The error a thrown JS value (a `DOMException` or an `Error`) stands for.
    pub fn from_js(v: &JsValue) -> Self {
        let name = Reflect::get(v, &"name".into()).ok().and_then(|n| n.as_string()).unwrap_or_else(|| "Error".into());
        Self { name, message: js_error(v) }
    }
    /// The browser refused the write because the origin's quota is used up.
    pub fn is_quota(&self) -> bool {
        self.name == "QuotaExceededError" || self.message.contains("quota")
    }
}

fn err(v: JsValue) -> IdbError {
    IdbError::from_js(&v)
}

/// Awaits an `IDBRequest` and returns its result.
pub async fn request(req: &IdbRequest) -> Result<JsValue, IdbError> {
    let promise = Promise::new(&mut |resolve, reject| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    });
    let outcome = JsFuture::from(promise).await;
    req.set_onsuccess(None);
    req.set_onerror(None);
    match outcome {
        Ok(_) => req.result().map_err(err),
        Err(_) => Err(req
            .error()
            .ok()
            .flatten()
            .map(|e| IdbError::from_js(&e))
            .unwrap_or_else(|| IdbError::other("request failed"))),
    }
}

/// Awaits the end of a transaction (`complete`, or `error` / `abort`).
pub async fn done(tx: &IdbTransaction) -> Result<(), IdbError> {
    let promise = Promise::new(&mut |resolve, reject| {
        tx.set_oncomplete(Some(&resolve));
        tx.set_onerror(Some(&reject));
        tx.set_onabort(Some(&reject));
    });
    let outcome = JsFuture::from(promise).await;
    tx.set_oncomplete(None);
    tx.set_onerror(None);
    tx.set_onabort(None);
    match outcome {
        Ok(_) => Ok(()),
        Err(_) => {
            Err(tx.error().map(|e| IdbError::from_js(&e)).unwrap_or_else(|| IdbError::other("transaction aborted")))
        }
    }
}

/// Opens (creating or upgrading) the database `name`.
pub async fn open(name: &str) -> Result<IdbDatabase, IdbError> {
    let factory = gloo::utils::window()
        .indexed_db()
        .map_err(err)?
        .ok_or_else(|| IdbError::other("IndexedDB is not available in this browser"))?;
    let open: IdbOpenDbRequest = factory.open_with_u32(name, VERSION).map_err(err)?;
    let upgrade = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new({
        let open = open.clone();
        move |_| {
            let Ok(db) = open.result() else { return };
            let db: IdbDatabase = db.unchecked_into();
            let names = db.object_store_names();
            for store in [CHUNKS, FILES] {
                if !names.contains(store) {
                    let _ = db.create_object_store(store);
                }
            }
        }
    });
    open.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
    let result = request(&open).await;
    open.set_onupgradeneeded(None);
    drop(upgrade);
    Ok(result?.unchecked_into())
}

/// Deletes the database `name` (tests start from a clean slate with it).
pub async fn delete(name: &str) -> Result<(), IdbError> {
    let factory = gloo::utils::window().indexed_db().map_err(err)?.ok_or_else(|| IdbError::other("no IndexedDB"))?;
    let req = factory.delete_database(name).map_err(err)?;
    request(&req).await.map(|_| ())
}

/// Creates a transaction over one store.
pub fn tx(db: &IdbDatabase, store: &str, write: bool) -> Result<IdbTransaction, IdbError> {
    let mode = if write { web_sys::IdbTransactionMode::Readwrite } else { web_sys::IdbTransactionMode::Readonly };
    db.transaction_with_str_and_mode(store, mode).map_err(err)
}

/// Maps a JS exception from a synchronous IDB call.
pub fn js(v: JsValue) -> IdbError {
    err(v)
}
