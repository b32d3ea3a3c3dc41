//! This tab's identity in the swarm, kept across reloads and browser restarts, and never held
//! by two tabs of the same origin at once.
//!
//! An origin has identity *slots* 0, 1, 2, …; slot `n` is an Ed25519 key (the peer id derives
//! from its public key) and its own chunk store, the IndexedDB database [`Identity::db_name`]
//! (slot 0 keeps the name earlier versions used for the origin's one store).
//!
//! The key is a non-extractable WebCrypto key kept in IndexedDB ([`crate::webkey`]): the page
//! can sign with it but never read it. Earlier versions kept a secret in localStorage
//! (`pp-secret-<n>`, the key derived from it by
//! [`swarm_core::identity::Keypair::from_secret`]); a slot that still has one is migrated
//! ([`load_key`]): the key is imported non-extractable, checked to sign as the secret's key
//! (same peer id), kept and read back, and only then is the secret deleted. A browser without
//! WebCrypto Ed25519 keeps the secret in localStorage as before (the console says why). A tab owns a slot while it holds the Web Lock
//! `pp-identity-<n>` (`navigator.locks`), which the browser releases when the tab closes or
//! reloads. A tab takes the lowest free slot, so the first tab of a browser is always the same
//! peer (its chunks keep counting), and a second tab open at the same time is another peer with
//! its own store: two tabs never announce one store under two ids, nor one id twice.
//!
//! A reload asks first for the slot the tab had (sessionStorage `pp-slot`), waiting briefly
//! while the old page lets go of its lock. Without `navigator.locks` (old browsers) every tab
//! uses slot 0.

use std::time::Duration;

use std::rc::Rc;

use gloo::storage::{LocalStorage, SessionStorage, Storage};
use js_sys::{Function, Object, Promise, Reflect};
use swarm_core::identity::Keypair;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::webkey::{self, KeyError, TabKey};

/// sessionStorage key of the slot this tab held (a reload asks for it first).
pub const SLOT_KEY: &str = "pp-slot";
/// Slots tried before a tab gives up on owning one (it then runs as a peer of its own for this
/// page only).
pub const MAX_SLOTS: u32 = 64;
/// sessionStorage key of the secret in earlier versions (one per tab session).
const OLD_SESSION_SECRET: &str = "pp-secret";
/// How long a reloaded tab waits for its old slot.
const RELOAD_WAIT: Duration = Duration::from_millis(2_000);
const RETRY: Duration = Duration::from_millis(100);

/// The identity this tab runs as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub slot: u32,
    /// Its key (the page signs with it; see [`crate::webkey`]).
    pub key: TabKey,
    /// The key was made now (a new peer).
    pub fresh: bool,
}

impl Identity {
    /// The IndexedDB database of this identity's chunks.
    pub fn db_name(&self) -> String {
        db_name(self.slot)
    }
}

/// The chunk store of slot `slot`.
pub fn db_name(slot: u32) -> String {
    if slot == 0 {
        "peer-pressure".to_string()
    } else {
        format!("peer-pressure-{slot}")
    }
}

/// localStorage key of slot `slot`'s secret (earlier versions, and browsers without WebCrypto
/// Ed25519).
pub fn secret_key(slot: u32) -> String {
    format!("pp-secret-{slot}")
}

fn lock_name(slot: u32) -> String {
    format!("pp-identity-{slot}")
}

fn is_secret(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Claims this tab's identity: the slot it had before a reload, else the lowest free one.
pub async fn claim() -> Identity {
    let previous = SessionStorage::raw().get_item(SLOT_KEY).ok().flatten().and_then(|s| s.parse::<u32>().ok());
    let slot = match locks() {
        None => Some(0),
        Some(locks) => {
            let mut got = None;
            if let Some(p) = previous.filter(|p| *p < MAX_SLOTS) {
                let mut waited = Duration::ZERO;
                while waited < RELOAD_WAIT {
                    if try_lock(&locks, p).await {
                        got = Some(p);
                        break;
                    }
                    sleep(RETRY).await;
                    waited += RETRY;
                }
            }
            if got.is_none() {
                for n in 0..MAX_SLOTS {
                    if try_lock(&locks, n).await {
                        got = Some(n);
                        break;
                    }
                }
            }
            got
        }
    };
    match slot {
        Some(slot) => {
            let _ = SessionStorage::raw().set_item(SLOT_KEY, &slot.to_string());
            let (key, fresh) = load_key(slot).await;
            Identity { slot, key, fresh }
        }
        // Every slot is taken: a peer for this page only (its store is the last slot's name
        // plus one, never shared with a lock holder).
        None => Identity { slot: MAX_SLOTS, key: page_key().await, fresh: true },
    }
}

/// The key of slot `slot` (held by this tab), and whether it was made now: the slot's
/// WebCrypto key; or its legacy secret migrated to one; or a new one. Where WebCrypto cannot
/// make or keep the key, the slot's secret in localStorage (made now if there is none). Where
/// the key store cannot be read, a key for this page only (a new secret would hide the kept
/// key, and the next load would replace it).
pub async fn load_key(slot: u32) -> (TabKey, bool) {
    // Slot 0 adopts the session secret of earlier versions (same store).
    let session = (slot == 0).then(|| SessionStorage::raw().get_item(OLD_SESSION_SECRET).ok().flatten()).flatten();
    let legacy = LocalStorage::raw().get_item(&secret_key(slot)).ok().flatten().or(session).filter(|s| is_secret(s));
    match webcrypto_key(slot, legacy.as_deref()).await {
        Ok((key, fresh)) => {
            if legacy.is_some() {
                gloo::console::log!(format!(
                    "identity slot {slot} ({}) migrated to a non-extractable key; its secret is deleted",
                    key.peer_id().short()
                ));
                let _ = LocalStorage::raw().remove_item(&secret_key(slot));
                if slot == 0 {
                    let _ = SessionStorage::raw().remove_item(OLD_SESSION_SECRET);
                }
            }
            (key, fresh)
        }
        Err(Unkept::Unreadable(e)) => {
            gloo::console::error!(format!(
                "identity slot {slot}: its key store is unreadable ({e}); a key for this page only"
            ));
            (page_key().await, true)
        }
        Err(Unkept::NoKey(e)) => {
            gloo::console::warn!(format!(
                "identity slot {slot}: the key stays a secret in localStorage (no non-extractable key: {e})"
            ));
            let fresh = legacy.is_none();
            let secret = legacy.unwrap_or_else(random_secret);
            let _ = LocalStorage::raw().set_item(&secret_key(slot), &secret);
            (TabKey::Seed(Rc::new(Keypair::from_secret(&secret))), fresh)
        }
    }
}

/// Why a slot has no WebCrypto key.
enum Unkept {
    /// None could be made or kept (no WebCrypto Ed25519, no IndexedDB): the secret is kept.
    NoKey(KeyError),
    /// The key store could not be read: there may be a key in it.
    Unreadable(KeyError),
}

/// The slot's WebCrypto key: `legacy` imported (checked, kept and read back), else the one
/// kept, else a new one (kept).
async fn webcrypto_key(slot: u32, legacy: Option<&str>) -> Result<(TabKey, bool), Unkept> {
    let (key, fresh) = match legacy {
        Some(secret) => (webkey::import(&Keypair::from_secret(secret)).await.map_err(Unkept::NoKey)?, false),
        None => match webkey::load(slot).await {
            Ok(Some(key)) => return Ok((key, false)),
            Ok(None) => (webkey::generate().await.map_err(Unkept::NoKey)?, true),
            // (No IndexedDB at all: nothing can be kept there either.)
            Err(KeyError::Store(e)) if e.message.contains("not available") => {
                return Err(Unkept::NoKey(KeyError::Store(e)))
            }
            Err(e) => return Err(Unkept::Unreadable(e)),
        },
    };
    webkey::save(slot, &key).await.map_err(Unkept::NoKey)?;
    // Read back: the secret goes only once its key is known to be kept, as the same peer.
    match webkey::load(slot).await {
        Ok(Some(kept)) if kept.public() == key.public() => Ok((kept, fresh)),
        Ok(_) => Err(Unkept::NoKey(KeyError::Mismatch)),
        Err(e) => Err(Unkept::NoKey(e)),
    }
}

/// A key for this page only (every slot taken, or the key store unreadable).
async fn page_key() -> TabKey {
    match webkey::generate().await {
        Ok(key) => key,
        Err(e) => {
            gloo::console::warn!(format!("the tab's key is kept in the page: {e}"));
            TabKey::Seed(Rc::new(Keypair::from_secret(&random_secret())))
        }
    }
}

/// `navigator.locks`, where the browser has it.
fn locks() -> Option<JsValue> {
    let nav = gloo::utils::window().navigator();
    Reflect::get(&nav, &"locks".into()).ok().filter(|l| !l.is_undefined() && !l.is_null())
}

/// Takes the lock of `slot` if it is free, and holds it until the page goes away.
async fn try_lock(locks: &JsValue, slot: u32) -> bool {
    let Some(request) = Reflect::get(locks, &"request".into()).ok().and_then(|f| f.dyn_into::<Function>().ok()) else {
        return false;
    };
    let options = Object::new();
    let _ = Reflect::set(&options, &"ifAvailable".into(), &true.into());
    let locks = locks.clone();
    let granted = Promise::new(&mut |resolve, _reject| {
        let answer = resolve.clone();
        let callback = Closure::once_into_js(move |lock: JsValue| -> Promise {
            let got = !lock.is_null() && !lock.is_undefined();
            let _ = answer.call1(&JsValue::UNDEFINED, &got.into());
            if got {
                // Never settles: the lock is held for the page's lifetime.
                Promise::new(&mut |_, _| {})
            } else {
                Promise::resolve(&JsValue::UNDEFINED)
            }
        });
        if request.call3(&locks, &lock_name(slot).into(), &options, &callback).is_err() {
            let _ = resolve.call1(&JsValue::UNDEFINED, &false.into());
        }
    });
    JsFuture::from(granted).await.ok().and_then(|v| v.as_bool()).unwrap_or(false)
}

async fn sleep(d: Duration) {
    let p = Promise::new(&mut |resolve, _| {
        let _ =
            gloo::utils::window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, d.as_millis() as i32);
    });
    let _ = JsFuture::from(p).await;
}

/// 32 random bytes in hex.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    let crypto = gloo::utils::window().crypto().expect("crypto.getRandomValues is available");
    crypto.get_random_values_with_u8_array(&mut bytes).expect("getRandomValues works");
    hex::encode(bytes)
}
