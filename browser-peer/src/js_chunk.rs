//! The page's receive path for chunk bytes, kept in JS memory.
//!
//! A data frame arrives as an `ArrayBuffer`. Only its 13-byte header is copied into wasm
//! ([`split_incoming`]); the payload stays a view on that buffer, and a [`JsChunk`] is the list
//! of those views. The store's worker receives the buffers (transferred, not copied), puts the
//! chunk together, hashes it with WebCrypto and keeps it if it matches, so no byte of a chunk
//! is copied on the page's main thread. Measured on the download benchmark: SHA-256 in wasm
//! alone took a fifth of the tab's main thread, and the copies into and out of wasm most of
//! the rest.

use std::fmt;

use js_sys::{Array, ArrayBuffer, Object, Promise, Reflect, Uint8Array};
use swarm_core::chunk_proto::ProtoError;
use swarm_core::peer::{ChunkBuf, Incoming, HEAD_MAX};
use swarm_core::ChunkId;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// One chunk's bytes in JS memory, as the pieces they arrived in (in order).
#[derive(Clone)]
pub struct JsChunk {
    parts: Array,
    len: u32,
}

impl fmt::Debug for JsChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsChunk({} bytes in {} parts)", self.len, self.parts.length())
    }
}

impl JsChunk {
    /// Bytes in one piece.
    pub fn from_bytes(bytes: Uint8Array) -> Self {
        Self { len: bytes.length(), parts: Array::of1(&bytes) }
    }
    /// Total bytes (as received; after a transfer the pieces themselves are empty).
    pub fn len(&self) -> u32 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The pieces, `Uint8Array`s.
    pub fn parts(&self) -> &Array {
        &self.parts
    }
    /// The bytes in one piece (a copy unless there is only one).
    pub fn concat(&self) -> Uint8Array {
        if self.parts.length() == 1 {
            return self.parts.get(0).unchecked_into();
        }
        let whole = Uint8Array::new_with_length(self.len);
        let mut at = 0;
        for p in self.parts.iter() {
            let p: Uint8Array = p.unchecked_into();
            whole.set(&p, at);
            at += p.length();
        }
        whole
    }
    /// The buffers under the pieces, each once: what to list when transferring them.
    pub fn buffers(&self) -> Array {
        let seen = js_sys::Set::new(&JsValue::UNDEFINED);
        for p in self.parts.iter() {
            seen.add(&p.unchecked_into::<Uint8Array>().buffer());
        }
        Array::from(&seen)
    }
}

impl ChunkBuf for JsChunk {
    type Part = Uint8Array;
    fn with_len(_len: usize) -> Self {
        Self { parts: Array::new(), len: 0 }
    }
    fn part_len(part: &Uint8Array) -> usize {
        part.length() as usize
    }
    fn write(&mut self, _offset: usize, part: &Uint8Array) {
        // The download checked that `part` starts where the previous one ended.
        self.parts.push(part);
        self.len += part.length();
    }
}

/// Reads a chunk-protocol message without copying a data frame's payload into wasm: only its
/// first bytes are (see [`Incoming::from_head`]); the payload stays a view on the buffer.
pub fn split_incoming(msg: &Uint8Array) -> Result<Incoming<Uint8Array>, ProtoError> {
    let len = msg.length();
    let head = msg.subarray(0, len.min(HEAD_MAX as u32)).to_vec();
    Incoming::from_head(&head, len as usize, |start| msg.subarray(start as u32, len))
}

/// SHA-256 of `bytes`: WebCrypto where the page has it (secure contexts: https and
/// localhost), the wasm implementation otherwise (e.g. a tracker served over plain http on a
/// LAN address).
pub async fn sha256(bytes: &Uint8Array) -> ChunkId {
    if let Some(digest) = subtle_digest(bytes) {
        if let Ok(out) = JsFuture::from(digest).await {
            if let Ok(buf) = out.dyn_into::<ArrayBuffer>() {
                let mut id = [0u8; 32];
                let out = Uint8Array::new(&buf);
                if out.length() == 32 {
                    out.copy_to(&mut id);
                    return ChunkId(id);
                }
            }
        }
    }
    ChunkId::of(&bytes.to_vec())
}

/// Whether this context has WebCrypto (`crypto.subtle`: secure contexts only).
pub fn has_webcrypto() -> bool {
    subtle().is_some()
}

fn subtle() -> Option<JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto")).ok()?;
    Reflect::get(&crypto, &JsValue::from_str("subtle")).ok().filter(|s| s.is_object())
}

/// `crypto.subtle.digest("SHA-256", bytes)`, if this context has it.
fn subtle_digest(bytes: &Uint8Array) -> Option<Promise> {
    let subtle = subtle()?;
    let digest: js_sys::Function = Reflect::get(&subtle, &JsValue::from_str("digest")).ok()?.dyn_into().ok()?;
    let bytes: &Object = bytes.unchecked_ref();
    digest.call2(&subtle, &JsValue::from_str("SHA-256"), bytes).ok()?.dyn_into::<Promise>().ok()
}
