//! The tab's private key, kept where the page's code cannot read it: a non-extractable
//! WebCrypto Ed25519 `CryptoKey`, stored in IndexedDB (a structured clone keeps it usable, and
//! still non-extractable, after reloads and restarts). Signing goes through `crypto.subtle`;
//! the peer core only ever sees the public key and asks for signatures
//! ([`swarm_core::peer::Output::SignHello`]).
//!
//! Database [`DB`], object store [`STORE`]: key = the identity slot (see [`crate::identity`]),
//! value = `{private: CryptoKey, public: Uint8Array(32)}`.
//!
//! Browsers without WebCrypto Ed25519 (Chromium before 137, Safari before 17) keep a seed in
//! the page instead ([`TabKey::Seed`]).

use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use swarm_core::identity::{pkcs8_of_seed, Keypair};
use swarm_core::PeerId;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::IdbDatabase;

use crate::idb::{self, IdbError};
use crate::rtc::js_error;

/// IndexedDB database of the tab's keys (one per origin, a record per identity slot).
pub const DB: &str = "peer-pressure-keys";
/// Its object store.
pub const STORE: &str = "keys";

/// Why a WebCrypto key could not be made, used or kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("WebCrypto is not available here: {0}")]
    NoSubtle(String),
    #[error("crypto.subtle.{op} failed: {message}")]
    Crypto { op: &'static str, message: String },
    #[error("the key store: {0}")]
    Store(#[from] IdbError),
    #[error("the imported key does not sign as the identity's key (its peer id would change)")]
    Mismatch,
}

/// A key that signs for this tab.
#[derive(Debug, Clone)]
pub enum TabKey {
    /// A non-extractable WebCrypto key.
    WebCrypto { private: JsValue, public: [u8; 32] },
    /// A seed in the page's memory (browsers without WebCrypto Ed25519).
    Seed(Rc<Keypair>),
}

impl TabKey {
    pub fn public(&self) -> [u8; 32] {
        match self {
            TabKey::WebCrypto { public, .. } => *public,
            TabKey::Seed(k) => k.public(),
        }
    }

    pub fn peer_id(&self) -> PeerId {
        PeerId::of_key(&self.public())
    }

    /// Signs `message` as is.
    pub async fn sign(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        match self {
            TabKey::Seed(k) => Ok(k.sign(message)),
            TabKey::WebCrypto { private, .. } => {
                let sig = subtle("sign", &[ed25519(), private.clone(), Uint8Array::from(message).into()]).await?;
                let sig = Uint8Array::new(&sig).to_vec();
                sig.try_into().map_err(|_| KeyError::Crypto { op: "sign", message: "not 64 bytes".into() })
            }
        }
    }
}

fn ed25519() -> JsValue {
    let alg = Object::new();
    let _ = Reflect::set(&alg, &"name".into(), &"Ed25519".into());
    alg.into()
}

fn usages(list: &[&str]) -> JsValue {
    list.iter().map(|u| JsValue::from_str(u)).collect::<Array>().into()
}

/// Calls `crypto.subtle[op](...args)` and awaits its promise.
async fn subtle(op: &'static str, args: &[JsValue]) -> Result<JsValue, KeyError> {
    let crypto = gloo::utils::window().crypto().map_err(|e| KeyError::NoSubtle(js_error(&e)))?;
    let subtle = Reflect::get(&crypto, &"subtle".into()).ok().filter(|s| s.is_object());
    let subtle = subtle.ok_or_else(|| KeyError::NoSubtle("no crypto.subtle (not a secure context?)".into()))?;
    let f: Function = Reflect::get(&subtle, &op.into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| KeyError::NoSubtle(format!("no crypto.subtle.{op}")))?;
    let crypto_err = |e: JsValue| KeyError::Crypto { op, message: js_error(&e) };
    let promise: Promise = f.apply(&subtle, &args.iter().collect::<Array>()).map_err(crypto_err)?.unchecked_into();
    JsFuture::from(promise).await.map_err(crypto_err)
}

/// A new non-extractable key, made by the browser.
pub async fn generate() -> Result<TabKey, KeyError> {
    let pair = subtle("generateKey", &[ed25519(), false.into(), usages(&["sign", "verify"])]).await?;
    let get = |k: &str| {
        Reflect::get(&pair, &k.into()).map_err(|e| KeyError::Crypto { op: "generateKey", message: js_error(&e) })
    };
    let (private, public) = (get("privateKey")?, get("publicKey")?);
    // (A public key is always exportable.)
    let raw = Uint8Array::new(&subtle("exportKey", &["raw".into(), public]).await?).to_vec();
    let public = raw.try_into().map_err(|_| KeyError::Crypto { op: "exportKey", message: "not 32 bytes".into() })?;
    Ok(TabKey::WebCrypto { private, public })
}

/// The key of `keys` imported as a non-extractable WebCrypto key (PKCS#8 of its seed), checked
/// to sign exactly as `keys` does (Ed25519 signatures are deterministic).
pub async fn import(keys: &Keypair) -> Result<TabKey, KeyError> {
    let der = Uint8Array::from(&pkcs8_of_seed(&keys.seed())[..]);
    let private =
        subtle("importKey", &["pkcs8".into(), der.into(), ed25519(), false.into(), usages(&["sign"])]).await?;
    let key = TabKey::WebCrypto { private, public: keys.public() };
    let probe = b"peer-pressure/tab-key/import-check";
    if key.sign(probe).await? != keys.sign(probe) {
        return Err(KeyError::Mismatch);
    }
    Ok(key)
}

/// Tries to export a WebCrypto private key as PKCS#8 (what a non-extractable key refuses).
pub async fn export_private(key: &TabKey) -> Result<Vec<u8>, KeyError> {
    match key {
        TabKey::Seed(k) => Ok(pkcs8_of_seed(&k.seed()).to_vec()),
        TabKey::WebCrypto { private, .. } => {
            Ok(Uint8Array::new(&subtle("exportKey", &["pkcs8".into(), private.clone()]).await?).to_vec())
        }
    }
}

async fn open() -> Result<IdbDatabase, KeyError> {
    let factory = gloo::utils::window()
        .indexed_db()
        .map_err(|e| IdbError::from_js(&e))?
        .ok_or_else(|| IdbError::other("IndexedDB is not available in this browser"))?;
    let open = factory.open_with_u32(DB, 1).map_err(|e| IdbError::from_js(&e))?;
    let upgrade = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new({
        let open = open.clone();
        move |_| {
            let Ok(db) = open.result() else { return };
            let db: IdbDatabase = db.unchecked_into();
            if !db.object_store_names().contains(STORE) {
                let _ = db.create_object_store(STORE);
            }
        }
    });
    open.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
    let result = idb::request(&open).await;
    open.set_onupgradeneeded(None);
    drop(upgrade);
    Ok(result?.unchecked_into())
}

/// The WebCrypto key kept for `slot`, if any.
pub async fn load(slot: u32) -> Result<Option<TabKey>, KeyError> {
    let db = open().await?;
    let tx = idb::tx(&db, STORE, false)?;
    let store = tx.object_store(STORE).map_err(idb::js)?;
    let record = idb::request(&store.get(&slot.into()).map_err(idb::js)?).await?;
    db.close();
    if record.is_undefined() || record.is_null() {
        return Ok(None);
    }
    let private = Reflect::get(&record, &"private".into()).map_err(idb::js)?;
    let public = Reflect::get(&record, &"public".into()).map_err(idb::js)?;
    let public: Option<[u8; 32]> = public.dyn_into::<Uint8Array>().ok().and_then(|p| p.to_vec().try_into().ok());
    match public {
        Some(public) if private.is_object() => Ok(Some(TabKey::WebCrypto { private, public })),
        _ => Err(IdbError::other(format!("the key record of slot {slot} is malformed")).into()),
    }
}

/// Keeps a WebCrypto key for `slot` (replacing any), once the write is durable.
pub async fn save(slot: u32, key: &TabKey) -> Result<(), KeyError> {
    let TabKey::WebCrypto { private, public } = key else {
        return Err(KeyError::NoSubtle("only a WebCrypto key is kept in IndexedDB".into()));
    };
    let record = Object::new();
    let _ = Reflect::set(&record, &"private".into(), private);
    let _ = Reflect::set(&record, &"public".into(), &Uint8Array::from(&public[..]));
    let db = open().await?;
    let tx = idb::tx(&db, STORE, true)?;
    let store = tx.object_store(STORE).map_err(idb::js)?;
    store.put_with_key(&record, &slot.into()).map_err(idb::js)?;
    let r = idb::done(&tx).await;
    db.close();
    Ok(r?)
}

/// Forgets the key of `slot` (tests start from a clean slate with it).
pub async fn forget(slot: u32) -> Result<(), KeyError> {
    let db = open().await?;
    let tx = idb::tx(&db, STORE, true)?;
    tx.object_store(STORE).map_err(idb::js)?.delete(&slot.into()).map_err(idb::js)?;
    let r = idb::done(&tx).await;
    db.close();
    Ok(r?)
}
