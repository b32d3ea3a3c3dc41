//! Browser tests (wasm-bindgen-test in headless Chromium) of the tab's key
//! (`browser-peer/src/webkey.rs`, `browser-peer/src/identity.rs`): a new slot's key is made by
//! WebCrypto, non-extractable, kept across loads and signs hellos the tracker's check accepts;
//! a slot with a secret of an earlier version is migrated to such a key under the same peer id,
//! and the secret is gone from localStorage afterwards. (That a tab joins a real tracker with
//! it: `e2e/tests/browser_page.rs`.)

use browser_peer::identity::{load_key, secret_key};
use browser_peer::webkey::{self, TabKey};
use gloo::storage::{LocalStorage, Storage};
use swarm_core::identity::{hello_payload, verify_hello};
use swarm_core::PeerId;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Slots of their own (the page's app is not running here; slot numbers far from any it uses).
const FRESH: u32 = 40;
const LEGACY: u32 = 41;

async fn signs_hellos(key: &TabKey) {
    let (nonce, origin) = ([9u8; 32], "ws://127.0.0.1:8080");
    let sig = key.sign(&hello_payload(&nonce, origin)).await.expect("signs");
    assert_eq!(verify_hello(&hex::encode(key.public()), &hex::encode(sig), &nonce, origin), Ok(key.peer_id()));
}

async fn non_extractable(key: &TabKey) {
    assert!(matches!(key, TabKey::WebCrypto { .. }), "Chromium has WebCrypto Ed25519: {key:?}");
    let exported = webkey::export_private(key).await;
    assert!(exported.is_err(), "the private key must not be exportable: {exported:?}");
}

#[wasm_bindgen_test]
async fn a_new_slot_gets_a_non_extractable_key_that_lasts() {
    webkey::forget(FRESH).await.unwrap();
    LocalStorage::raw().remove_item(&secret_key(FRESH)).unwrap();
    let (key, fresh) = load_key(FRESH).await;
    assert!(fresh);
    non_extractable(&key).await;
    signs_hellos(&key).await;
    assert_eq!(LocalStorage::raw().get_item(&secret_key(FRESH)).unwrap(), None, "no secret in localStorage");
    // A reload: the kept key, the same peer.
    let (again, fresh) = load_key(FRESH).await;
    assert!(!fresh);
    assert_eq!(again.peer_id(), key.peer_id());
    non_extractable(&again).await;
    signs_hellos(&again).await;
}

#[wasm_bindgen_test]
async fn a_legacy_secret_becomes_a_non_extractable_key_under_the_same_peer_id() {
    webkey::forget(LEGACY).await.unwrap();
    let secret = "ab".repeat(32);
    LocalStorage::raw().set_item(&secret_key(LEGACY), &secret).unwrap();
    let before = PeerId::from_secret(&secret);
    let (key, fresh) = load_key(LEGACY).await;
    assert!(!fresh);
    assert_eq!(key.peer_id(), before);
    non_extractable(&key).await;
    signs_hellos(&key).await;
    assert_eq!(LocalStorage::raw().get_item(&secret_key(LEGACY)).unwrap(), None, "the secret is deleted");
    let (again, fresh) = load_key(LEGACY).await;
    assert!(!fresh);
    assert_eq!(again.peer_id(), before, "a reload is the same peer");
    non_extractable(&again).await;
}
