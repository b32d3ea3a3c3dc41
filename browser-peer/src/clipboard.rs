//! Handing a share link to the user's other apps: the Clipboard API
//! (`navigator.clipboard.writeText`) and the system share sheet (`navigator.share`), called
//! through `Reflect` so browsers without them only lose the button.

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// `navigator.<name>.<method>` (or `navigator.<method>` when `name` is empty) and its receiver.
fn method(name: &str, method: &str) -> Option<(JsValue, Function)> {
    let nav: JsValue = gloo::utils::window().navigator().into();
    let this = if name.is_empty() { nav } else { Reflect::get(&nav, &name.into()).ok()? };
    if this.is_undefined() || this.is_null() {
        return None;
    }
    let f = Reflect::get(&this, &method.into()).ok()?.dyn_into::<Function>().ok()?;
    Some((this, f))
}

/// Copies `text` to the clipboard; `false` if the browser refused (no permission, no focus,
/// no Clipboard API).
pub async fn copy_text(text: &str) -> bool {
    let Some((clipboard, write)) = method("clipboard", "writeText") else { return false };
    match write.call1(&clipboard, &text.into()).map(|p| p.dyn_into::<Promise>()) {
        Ok(Ok(p)) => JsFuture::from(p).await.is_ok(),
        _ => false,
    }
}

/// Whether the browser has a share sheet.
pub fn can_share() -> bool {
    method("", "share").is_some()
}

/// Opens the share sheet with `url` (the user may dismiss it: nothing to report).
pub fn share_sheet(url: &str) {
    let Some((nav, share)) = method("", "share") else { return };
    let data = Object::new();
    let _ = Reflect::set(&data, &"url".into(), &url.into());
    let _ = Reflect::set(&data, &"title".into(), &"A file on Peer Pressure".into());
    if let Ok(p) = share.call1(&nav, &data).and_then(|p| p.dyn_into::<Promise>()) {
        wasm_bindgen_futures::spawn_local(async move {
            let _ = JsFuture::from(p).await;
        });
    }
}
