//! Play while downloading: the page's side of `/stream/<file id>`.
//!
//! A media element (or `img` / `object`, see [`crate::player`]) asks `/stream/<id>` with a
//! `Range` header. The service worker `static/sw.js` (served at `/sw.js`, scope `/`) is a
//! thin proxy: it asks this page over a `MessageChannel` and streams the answers back. Here:
//! - `{pp: "stream", file, range}`: the headers (status 200 / 206 / 404 / 416, type, length,
//!   `Content-Range`) and the first piece of the body; `next`/`end` tell the worker to pull the
//!   rest piece by piece with `{pp: "read", file, start, end}` (a piece is what is left of one
//!   chunk, so the element's back-pressure paces the reads);
//! - every piece moves the download's playhead to its offset (the peer core fetches the
//!   [`swarm_core::peer::config::PLAYHEAD_WINDOW`] chunks from there first), then waits until
//!   its chunk is stored, reads it from the tab's store, checks its SHA-256 against the
//!   manifest ([`serve::check`]: the store does not verify on read) and passes it through
//!   [`plaintext`], which decrypts a private file's chunk (AES-GCM: a tampered chunk fails).
//!
//! Offsets are the file's plaintext offsets ([`Source`]): for a private file, chunk `i` holds
//! plaintext bytes `i * PLAIN_CHUNK ..` (each ciphertext chunk carries a 16-byte tag), and
//! the size is the sealed plaintext size. The mapping is [`swarm_core::range::ChunkLayout`],
//! shared with the native peer's HTTP gateway.
//!
//! Only files this tab downloads or downloaded in this page are streamed. The type sent is
//! never active content ([`media_type`]), with `nosniff` and a sandboxing CSP: a file from the
//! swarm shares this page's origin here.

use std::rc::{Rc, Weak};

use gloo::events::EventListener;
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use swarm_core::envelope::FileCipher;
use swarm_core::peer::serve;
use swarm_core::range::{parse_range, ChunkLayout, RangeReq};
use swarm_core::{FileId, Manifest};
use thiserror::Error;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{MessageEvent, MessagePort};

use crate::node::Node;

/// Where the page's files are streamed from (the service worker answers under it).
pub const PREFIX: &str = "/stream/";
/// The service worker's script (the web build copies `static/sw.js` to the root of dist/).
pub const WORKER: &str = "/sw.js";
/// How long a read waits for its chunk to arrive before it fails.
pub const WAIT_MS: f64 = 120_000.0;
/// How often a read waiting for its chunk looks again.
const POLL_MS: i32 = 20;

/// Why a piece of a stream cannot be served.
#[derive(Debug, Error)]
pub enum StreamError {
    #[error("this page does not know file {0}")]
    UnknownFile(String),
    #[error("bad stream request: {0}")]
    BadRequest(String),
    #[error("chunk {index} did not arrive within {secs} s")]
    Timeout { index: usize, secs: u64 },
    #[error("chunk {index} in the store does not match the manifest")]
    Corrupt { index: usize },
    #[error("cannot read chunk {index}: {reason}")]
    Store { index: usize, reason: String },
    #[error("chunk {index} does not decrypt: {reason}")]
    Decrypt { index: usize, reason: String },
}

/// A file as the player reads it: in plaintext terms.
#[derive(Debug, Clone)]
pub struct Source {
    pub manifest: Manifest,
    pub name: String,
    pub mime: String,
    /// Where the plaintext offsets lie over the chunks (the plaintext size among them).
    pub layout: ChunkLayout,
    /// A private file's cipher (`None`: public).
    pub cipher: Option<FileCipher>,
}

impl Source {
    /// A public file.
    pub fn public(manifest: Manifest, name: String, mime: String) -> Self {
        let layout = ChunkLayout::public(&manifest);
        Self { manifest, name, mime, layout, cipher: None }
    }

    /// A private file opened with its key.
    pub fn private(manifest: Manifest, meta: &swarm_core::envelope::PlainMeta, cipher: FileCipher) -> Self {
        let layout = ChunkLayout::private(&manifest, meta.size);
        Self { manifest, name: meta.name.clone(), mime: meta.mime.clone(), layout, cipher: Some(cipher) }
    }
}

/// What a page element shows a file as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
    Image,
    Pdf,
}

/// The element for a file of this type (`None`: not shown in the page).
pub fn kind(mime: &str) -> Option<Kind> {
    match media_type(mime).as_str() {
        "application/pdf" => Some(Kind::Pdf),
        t if t.starts_with("video/") => Some(Kind::Video),
        t if t.starts_with("audio/") => Some(Kind::Audio),
        t if t.starts_with("image/") => Some(Kind::Image),
        _ => None,
    }
}

/// The `Content-Type` a stream is served with: audio, video, raster images, PDF and plain
/// text as named; anything else (HTML, SVG, XML, scripts, malformed) as
/// `application/octet-stream`.
pub fn media_type(mime: &str) -> String {
    let base = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-' | b'_'))
    };
    let Some((top, sub)) = base.split_once('/').filter(|(t, s)| token(t) && token(s)) else {
        return "application/octet-stream".into();
    };
    let active = ["html", "xml", "script", "svg", "xsl"].iter().any(|w| sub.contains(w));
    let allowed = matches!(top, "audio" | "video" | "image") || base == "application/pdf" || base == "text/plain";
    if allowed && !active {
        base
    } else {
        "application/octet-stream".into()
    }
}

/// A stored chunk's bytes as the player needs them: as stored for a public file, decrypted for
/// a private one.
pub fn plaintext(cipher: Option<&FileCipher>, index: usize, mut bytes: Vec<u8>) -> Result<Vec<u8>, StreamError> {
    if let Some(c) = cipher {
        c.open_chunk(index as u64, &mut bytes).map_err(|e| StreamError::Decrypt { index, reason: e.to_string() })?;
    }
    Ok(bytes)
}

/// Whether a service worker controls this page (then `/stream/…` URLs work).
pub fn controlled() -> bool {
    container().and_then(|c| c.controller()).is_some()
}

/// The page's service worker container, where the browser has one (secure contexts only).
pub fn container() -> Option<web_sys::ServiceWorkerContainer> {
    let nav = gloo::utils::window().navigator();
    Reflect::has(&nav, &"serviceWorker".into()).ok()?.then(|| nav.service_worker())
}

/// Registers the service worker and answers its questions from now on.
pub fn install(node: Weak<Node>) -> Option<EventListener> {
    let c = container()?;
    let _ = c.register(WORKER);
    Some(EventListener::new(&c, "message", move |ev| {
        let ev: &MessageEvent = ev.unchecked_ref();
        let Some(port) = ev.ports().get(0).dyn_into::<MessagePort>().ok() else { return };
        let (data, node) = (ev.data(), node.clone());
        spawn_local(async move {
            let Some(node) = node.upgrade() else { return };
            let (answer, transfer) = match answer(&node, &data).await {
                Ok(a) => a,
                Err(e) => {
                    gloo::console::warn!(format!("stream: {e}"));
                    let status = if matches!(e, StreamError::UnknownFile(_)) { 404 } else { 504 };
                    (error_answer(status, &e.to_string()), Array::new())
                }
            };
            let _ = port.post_message_with_transferable(&answer, &transfer);
        });
    }))
}

fn get(data: &JsValue, key: &str) -> JsValue {
    Reflect::get(data, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

fn set(obj: &Object, key: &str, v: impl Into<JsValue>) {
    let _ = Reflect::set(obj, &key.into(), &v.into());
}

/// A question from the service worker, answered (with the buffers to transfer).
async fn answer(node: &Rc<Node>, data: &JsValue) -> Result<(JsValue, Array), StreamError> {
    let hex = get(data, "file").as_string().unwrap_or_default();
    let file: FileId = hex.parse().map_err(|_| StreamError::UnknownFile(hex.chars().take(64).collect()))?;
    let src = node.stream_file(file).ok_or_else(|| StreamError::UnknownFile(file.short()))?;
    let size = src.layout.size;
    match get(data, "pp").as_string().as_deref() {
        Some("stream") => {
            let range = parse_range(get(data, "range").as_string().as_deref(), size);
            let mut headers = vec![
                ("Content-Type", media_type(&src.mime)),
                ("Accept-Ranges", "bytes".into()),
                ("X-Content-Type-Options", "nosniff".into()),
                ("Cache-Control", "no-store".into()),
            ];
            if kind(&src.mime) != Some(Kind::Pdf) {
                headers.push(("Content-Security-Policy", "sandbox; default-src 'none'".into()));
            }
            let (status, start, end) = match range {
                RangeReq::Unsatisfiable => {
                    headers.push(("Content-Range", format!("bytes */{size}")));
                    return Ok((head(416, &headers, None, None), Array::new()));
                }
                RangeReq::Partial(a, b) => {
                    headers.push(("Content-Range", format!("bytes {a}-{b}/{size}")));
                    (206, a, b + 1)
                }
                RangeReq::Full => (200, 0, size),
            };
            headers.push(("Content-Length", (end - start).to_string()));
            if start == end {
                return Ok((head(status, &headers, None, None), Array::new()));
            }
            let piece = piece(node, file, &src, start, end).await?;
            let next = start + piece.length() as u64;
            let transfer = Array::of1(&piece.buffer());
            Ok((head(status, &headers, Some(piece), Some((next, end))), transfer))
        }
        Some("read") => {
            let (start, end) = (get(data, "start").as_f64(), get(data, "end").as_f64());
            let (Some(start), Some(end)) = (start, end) else {
                return Err(StreamError::BadRequest("a read needs start and end".into()));
            };
            let (start, end) = (start as u64, (end as u64).min(size));
            if start >= end {
                return Err(StreamError::BadRequest(format!("empty read {start}..{end}")));
            }
            let piece = piece(node, file, &src, start, end).await?;
            let obj = Object::new();
            set(&obj, "body", piece.buffer());
            Ok((obj.into(), Array::of1(&piece.buffer())))
        }
        other => Err(StreamError::BadRequest(format!("unknown question {other:?}"))),
    }
}

/// The worker's answer to `stream`: status, headers, the first piece and where the rest is.
fn head(status: u16, headers: &[(&str, String)], body: Option<Uint8Array>, rest: Option<(u64, u64)>) -> JsValue {
    let obj = Object::new();
    set(&obj, "status", status);
    let hs = Array::new();
    for (k, v) in headers {
        hs.push(&Array::of2(&(*k).into(), &v.into()));
    }
    set(&obj, "headers", hs);
    set(&obj, "body", body.map(|b| JsValue::from(b.buffer())).unwrap_or(JsValue::NULL));
    if let Some((next, end)) = rest {
        set(&obj, "next", next as f64);
        set(&obj, "end", end as f64);
    }
    obj.into()
}

fn error_answer(status: u16, message: &str) -> JsValue {
    let obj: JsValue = head(status, &[("Content-Type", "text/plain".into())], None, None);
    let _ = Reflect::set(&obj, &"body".into(), &format!("{message}\n").into());
    let _ = Reflect::set(&obj, &"error".into(), &message.into());
    obj
}

/// Bytes `start..` of the file, up to `end` and the end of the chunk holding `start`: waits for
/// that chunk (moving the download's playhead there first), verified and in plaintext.
async fn piece(node: &Rc<Node>, file: FileId, src: &Source, start: u64, end: u64) -> Result<Uint8Array, StreamError> {
    let index = src.layout.chunk_at(start);
    let chunk = src.manifest.chunks[index];
    // The download's playhead is in the manifest's (ciphertext) offsets.
    let playhead = src.manifest.chunk_offset(index);
    let store = node.chunk_store();
    if !store.has(&chunk) {
        node.set_playhead(file, playhead);
        let since = js_sys::Date::now();
        while !store.has(&chunk) {
            if js_sys::Date::now() - since > WAIT_MS {
                return Err(StreamError::Timeout { index, secs: (WAIT_MS / 1000.0) as u64 });
            }
            sleep(POLL_MS).await;
        }
    } else {
        // Stored already: the window still follows the reader (what it reads next).
        node.set_playhead(file, playhead);
    }
    let bytes = match store.get(&chunk).await {
        Ok(Some(b)) => b,
        Ok(None) => return Err(StreamError::Store { index, reason: "gone from the store".into() }),
        Err(e) => return Err(StreamError::Store { index, reason: e.to_string() }),
    };
    if !serve::check(&chunk, &bytes) {
        store.remove(&chunk);
        return Err(StreamError::Corrupt { index });
    }
    let bytes = plaintext(src.cipher.as_ref(), index, bytes)?;
    let part = src.layout.slice(index, start, end, bytes.len());
    if part.is_empty() {
        return Err(StreamError::BadRequest(format!("offset {start} is past chunk {index}")));
    }
    Ok(Uint8Array::from(&bytes[part]))
}

async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        let _ = gloo::utils::window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(p).await;
}
