//! The browser's "leave this page?" question while leaving would lose work
//! ([`crate::state::AppState::unfinished_work`]): an upload not yet published lives only in
//! this tab (downloads resume after a reload: [`crate::resume`]). The question is asked only
//! while such work runs (a page that always asks teaches people to click through it).
//!
//! Browsers show their own text, not ours, and only once the user has interacted with the page;
//! what the page controls is whether it asks: `preventDefault` (and the older `returnValue`)
//! on `beforeunload`.

use gloo::events::{EventListener, EventListenerOptions};
use wasm_bindgen::JsValue;

/// Asks before the page is left, for as long as it lives.
pub struct LeaveGuard {
    _listener: EventListener,
}

impl LeaveGuard {
    /// `why`: what leaving would stop (kept as the event's `returnValue`, which some browsers
    /// still read).
    pub fn new(why: String) -> Self {
        let window = gloo::utils::window();
        // Not passive: the listener must be able to prevent the default.
        let listener = EventListener::new_with_options(
            &window,
            "beforeunload",
            EventListenerOptions::enable_prevent_default(),
            move |e| {
                e.prevent_default();
                let _ = js_sys::Reflect::set(e, &JsValue::from_str("returnValue"), &JsValue::from_str(&why));
            },
        );
        Self { _listener: listener }
    }
}
