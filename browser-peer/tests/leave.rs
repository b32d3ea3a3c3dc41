//! Browser test (wasm-bindgen-test in headless Chromium) of the page's "leave this page?"
//! guard (`browser-peer/src/leave.rs`): while it lives, a `beforeunload` is cancelled (the
//! browser asks); once dropped, leaving is not held up.

use browser_peer::leave::LeaveGuard;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Dispatches a cancelable `beforeunload` on the window; whether a listener cancelled it.
fn leaving_is_held_up() -> bool {
    let init = web_sys::EventInit::new();
    init.set_cancelable(true);
    let e = web_sys::Event::new_with_event_init_dict("beforeunload", &init).expect("an event");
    let window: web_sys::EventTarget = gloo::utils::window().unchecked_into();
    window.dispatch_event(&e).expect("dispatched");
    e.default_prevented()
}

#[wasm_bindgen_test]
fn the_page_asks_before_leaving_only_while_the_guard_lives() {
    assert!(!leaving_is_held_up(), "no guard: the page is left without a question");
    let guard = LeaveGuard::new("Leaving now stops 1 upload(s) not yet published.".into());
    assert!(leaving_is_held_up(), "an upload in progress: the browser asks first");
    drop(guard);
    assert!(!leaving_is_held_up(), "the upload done: no question any more");
}
