//! This tab's identity in the swarm, kept across reloads and browser restarts, and never held
//! by two tabs of the same origin at once.
//!
//! An origin has identity *slots* 0, 1, 2, …; slot `n` is a secret in localStorage
//! (`pp-secret-<n>`, made on first use; the tracker derives the peer id from it) and its own
//! chunk store, the IndexedDB database [`Identity::db_name`] (slot 0 keeps the name earlier
//! versions used for the origin's one store). A tab owns a slot while it holds the Web Lock
//! `pp-identity-<n>` (`navigator.locks`), which the browser releases when the tab closes or
//! reloads. A tab takes the lowest free slot, so the first tab of a browser is always the same
//! peer (its chunks keep counting), and a second tab open at the same time is another peer with
//! its own store: two tabs never announce one store under two ids, nor one id twice.
//!
//! A reload asks first for the slot the tab had (sessionStorage `pp-slot`), waiting briefly
//! while the old page lets go of its lock. Without `navigator.locks` (old browsers) every tab
//! uses slot 0.

use std::time::Duration;

use gloo::storage::{LocalStorage, SessionStorage, Storage};
use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub slot: u32,
    /// 32 random bytes in hex.
    pub secret: String,
    /// The secret was made now (a new peer).
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

fn secret_key(slot: u32) -> String {
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
            let stored = LocalStorage::raw().get_item(&secret_key(slot)).ok().flatten().filter(|s| is_secret(s));
            match stored {
                Some(secret) => Identity { slot, secret, fresh: false },
                None => {
                    // Slot 0 adopts the session secret of earlier versions (same store).
                    let earlier = (slot == 0)
                        .then(|| SessionStorage::raw().get_item(OLD_SESSION_SECRET).ok().flatten())
                        .flatten()
                        .filter(|s| is_secret(s));
                    let fresh = earlier.is_none();
                    let secret = earlier.unwrap_or_else(random_secret);
                    let _ = LocalStorage::raw().set_item(&secret_key(slot), &secret);
                    Identity { slot, secret, fresh }
                }
            }
        }
        // Every slot is taken: a peer for this page only (its store is the last slot's name
        // plus one, never shared with a lock holder).
        None => Identity { slot: MAX_SLOTS, secret: random_secret(), fresh: true },
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
