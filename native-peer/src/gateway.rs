//! The HTTP gateway of a running peer (`pp-peer run --http 127.0.0.1:PORT`):
//! `GET /files/{id}` streams a file, fetching the chunks this peer lacks from the swarm as the
//! body goes out, with single-range `Range` support (206 / 416) and `HEAD`. `GET /healthz`
//! answers while the process lives, `GET /readyz` while it is joined to the tracker (503 while
//! it reconnects), for service managers and load balancers. Requests from web pages (DNS
//! rebinding, cross-site) are refused, and slow or idle connections closed:
//! [`crate::http_guard`].
//!
//! A file from the swarm is never rendered by a browser as an active page: it is always an
//! attachment with a sanitised name, `nosniff`, a sandboxing CSP, and active types (HTML, SVG,
//! XML, scripts) are served as `application/octet-stream`.
//!
//! A private file is read in plaintext with its key: `GET /files/{id}?key=<key>`, the key
//! exactly as the share link carries it (`…/#/file/{id}?key=<key>`), or `?pass=<passphrase>`
//! for a file shared with a passphrase (`?pass` links; the derived key is kept in memory, so a
//! player's many range requests pay for PBKDF2 once; a URL with a passphrase lands in shell and
//! browser history, so prefer key links where there is a choice). The sealed meta is opened
//! first: the real name and (safe) type in the headers, the plaintext size as the length, and
//! ranges are plaintext offsets ([`swarm_core::range::ChunkLayout`], the web app's stream uses
//! the same mapping), each chunk checked against its SHA-256 id and decrypted before a byte of
//! it goes out. Without a key, a private file is refused (403) with a message that says to add
//! it: its ciphertext is never served as if it were the file. A wrong key is 403, a malformed
//! one 400. [`PrivateError`] says which.
//!
//! Memory stays bounded: at most [`AHEAD`] chunks are fetched or read ahead of the client.
//!
//! Priority: a chunk this peer lacks of a file it is downloading (`pp-peer get` through the
//! running peer) moves that download's playhead to it (`Peer::set_playhead`: the chunks from
//! there are fetched first, in order) and is read from the store once the download has it;
//! a file not being downloaded is fetched chunk by chunk as the body goes out (`fetch_chunk`,
//! [`AHEAD`] in flight), which is the same window by construction: what the reader reads next.

use crate::node::Node;
use crate::store::StoredFile;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use swarm_core::envelope::{EnvelopeError, FileCipher, FileKey, Kdf};
use swarm_core::range::ChunkLayout;
use swarm_core::share::{parse_key, ShareError};
use swarm_core::wire::ErrorCode;
use swarm_core::{ClientMsg, FileId, Manifest, PeerId, ServerMsg};
use tokio::sync::Mutex as AsyncMutex;

/// Chunks fetched ahead of the one being sent.
const AHEAD: usize = 8;
/// How long a read waits for a running download of the file to store a chunk before it
/// fetches the chunk itself.
const DOWNLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Passphrase-derived keys kept (files × passphrases); the map is emptied when it is full.
const DERIVED_KEYS: usize = 64;

/// What the gateway's handlers share.
struct Gateway {
    node: Arc<Node>,
    /// Keys derived from `?pass=`, by file and SHA-256 of the passphrase (only ones that
    /// opened the file's sealed meta).
    derived: Mutex<HashMap<(FileId, [u8; 32]), FileKey>>,
}

/// Why a private file cannot be read through the gateway.
#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    #[error(
        "file {0} is private: add its key from the share link, /files/{0}?key=<the part after key= in the link> \
         (or ?pass=<passphrase> for a ?pass link)"
    )]
    NeedsKey(FileId),
    #[error("bad key: {0}")]
    BadKey(#[from] ShareError),
    #[error("give either ?key= or ?pass=, not both")]
    KeyAndPass,
    #[error("file {0} is public: it takes no key (drop ?key= / ?pass=)")]
    Public(FileId),
    #[error("file {0} was shared with a key, not a passphrase: use ?key= from its link")]
    NotPassphrase(FileId),
    #[error("{0}")]
    Envelope(#[from] EnvelopeError),
    #[error("cannot derive the key: {0}")]
    Internal(String),
}

impl PrivateError {
    fn status(&self) -> StatusCode {
        match self {
            PrivateError::NeedsKey(_) | PrivateError::Envelope(EnvelopeError::WrongKey) => StatusCode::FORBIDDEN,
            PrivateError::BadKey(_)
            | PrivateError::KeyAndPass
            | PrivateError::Public(_)
            | PrivateError::NotPassphrase(_)
            | PrivateError::Envelope(EnvelopeError::BadIterations(_)) => StatusCode::BAD_REQUEST,
            // Tampered or inconsistent sealed meta: the swarm's record is bad, not the request.
            PrivateError::Envelope(_) => StatusCode::BAD_GATEWAY,
            PrivateError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A private file opened: its cipher and real name, type and size.
struct Opened {
    cipher: FileCipher,
    meta: swarm_core::envelope::PlainMeta,
}

impl Gateway {
    /// Opens a private file with the request's `?key=` or `?pass=`; `Ok(None)` for a public file
    /// asked without either.
    async fn open(
        &self,
        id: FileId,
        file: &StoredFile,
        q: &HashMap<String, String>,
    ) -> Result<Option<Opened>, PrivateError> {
        let (key, pass) = (q.get("key"), q.get("pass"));
        let Some(sealed) = &file.meta.sealed else {
            return if key.is_some() || pass.is_some() { Err(PrivateError::Public(id)) } else { Ok(None) };
        };
        let key = match (key, pass) {
            (Some(_), Some(_)) => return Err(PrivateError::KeyAndPass),
            (None, None) => return Err(PrivateError::NeedsKey(id)),
            (Some(k), None) => FileKey(parse_key(k.trim())?),
            (None, Some(p)) => self.derive(id, sealed, p).await?,
        };
        let (cipher, meta) = FileCipher::open(&key, sealed, &file.manifest)?;
        Ok(Some(Opened { cipher, meta }))
    }

    /// The key from a passphrase (PBKDF2, off the async threads), kept once it opens the file.
    async fn derive(
        &self,
        id: FileId,
        sealed: &swarm_core::envelope::SealedMeta,
        pass: &str,
    ) -> Result<FileKey, PrivateError> {
        use sha2::Digest;
        let Kdf::Pbkdf2 { iterations, salt } = sealed.kdf()? else { return Err(PrivateError::NotPassphrase(id)) };
        let slot = (id, <[u8; 32]>::from(sha2::Sha256::digest(pass.as_bytes())));
        if let Some(k) = self.derived.lock().unwrap().get(&slot) {
            return Ok(k.clone());
        }
        let (pass, sealed) = (pass.to_string(), sealed.clone());
        let key = tokio::task::spawn_blocking(move || {
            let key = FileKey::from_passphrase(&pass, &salt, iterations)?;
            sealed.open(&key).map(|_| key)
        })
        .await
        .map_err(|e| PrivateError::Internal(e.to_string()))??;
        let mut derived = self.derived.lock().unwrap();
        if derived.len() >= DERIVED_KEYS {
            derived.clear();
        }
        derived.insert(slot, key.clone());
        Ok(key)
    }
}

/// Who may use the gateway and for how long ([`crate::http_guard`]).
#[derive(Debug, Clone)]
pub struct Options {
    /// Host names it answers to besides IP addresses and `localhost` (`--http-host`).
    pub hosts: Vec<String>,
    /// Time for a request head to arrive, and for an idle kept-alive connection to send more.
    pub header_timeout: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self { hosts: Vec::new(), header_timeout: std::time::Duration::from_secs(10) }
    }
}

/// Starts the gateway on `addr`; returns the address it listens on.
pub async fn serve(node: Arc<Node>, addr: SocketAddr, options: Options) -> anyhow::Result<SocketAddr> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let guard = Arc::new(crate::http_guard::Guard::new(options.hosts));
    let app = router(node)
        .layer(axum::middleware::from_fn(move |req, next| crate::http_guard::enforce(guard.clone(), req, next)));
    tokio::spawn(crate::http_guard::serve(listener, app, options.header_timeout));
    Ok(local)
}

/// 200 while a tracker session is open, 503 while the peer reconnects.
async fn ready(State(gw): State<Arc<Gateway>>) -> (StatusCode, &'static str) {
    if gw.node.connected() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not joined to the tracker\n")
    }
}

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/files/{id}", get(file))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Arc::new(Gateway { node, derived: Mutex::new(HashMap::new()) }))
}

pub use swarm_core::range::{parse_range, RangeReq};

/// The `Content-Type` to send for a manifest's mime: well-formed and never active content.
pub fn safe_content_type(mime: &str) -> String {
    let base = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let ok_chars = |s: &str| {
        !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-' | b'_'))
    };
    let well_formed = base.split_once('/').is_some_and(|(t, s)| ok_chars(t) && ok_chars(s));
    let active = ["html", "xml", "script", "svg", "xsl", "pdf"].iter().any(|w| base.contains(w));
    if !well_formed || active || base.starts_with("multipart/") {
        "application/octet-stream".into()
    } else {
        base
    }
}

/// `Content-Disposition` for a file name from the swarm: always an attachment, the name made
/// safe (no paths, no control characters), an ASCII fallback and the exact UTF-8 name.
pub fn content_disposition(name: &str, fallback: &str) -> String {
    let safe = crate::cli::safe_file_name(name, fallback);
    let ascii: String =
        safe.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let mut encoded = String::new();
    for b in safe.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut r = (status, format!("{}\n", msg.into())).into_response();
    r.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// Peers holding a file's chunks, and per chunk the indices of its holders among them.
type Holders = (Vec<PeerId>, Vec<Vec<u32>>);

/// Where the chunks of one file come from: this peer's store, else the holders the tracker
/// names (asked again when they all fail).
struct Source {
    node: Arc<Node>,
    file: FileId,
    manifest: Manifest,
    located: AsyncMutex<Option<Holders>>,
}

impl Source {
    async fn locate(&self) -> anyhow::Result<Holders> {
        let file = self.file;
        match self.node.request(move |req| ClientMsg::Locate { req, file }).await? {
            ServerMsg::Located { peers, holders, manifest, .. } if manifest == self.manifest => Ok((peers, holders)),
            other => anyhow::bail!("unexpected answer to locate: {other:?}"),
        }
    }

    async fn chunk(&self, i: usize) -> anyhow::Result<Vec<u8>> {
        let id = self.manifest.chunks[i];
        let store = self.node.store.clone();
        if let Some(b) = tokio::task::spawn_blocking(move || store.get(&id)).await?? {
            return Ok(b);
        }
        // A file this peer is downloading: the download fetches from here first (its
        // playhead window), and the read waits for it rather than asking a second time.
        if self.node.set_playhead(self.file, self.manifest.chunk_offset(i)).await {
            let deadline = tokio::time::Instant::now() + DOWNLOAD_WAIT;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let store = self.node.store.clone();
                if let Some(b) = tokio::task::spawn_blocking(move || store.get(&id)).await?? {
                    return Ok(b);
                }
                if !self.node.set_playhead(self.file, self.manifest.chunk_offset(i)).await {
                    break; // the download ended (failed or cancelled): fetch it here
                }
            }
        }
        let len = self.manifest.chunk_len(i);
        let mut last = String::from("no holder");
        for attempt in 0..2 {
            let holders: Vec<PeerId> = {
                let mut located = self.located.lock().await;
                if located.is_none() || attempt > 0 {
                    *located = Some(self.locate().await?);
                }
                let (peers, holders) = located.as_ref().expect("located");
                let mut hs: Vec<PeerId> = holders
                    .get(i)
                    .into_iter()
                    .flatten()
                    .filter_map(|&p| peers.get(p as usize))
                    .filter(|p| *p != self.node.peer_id())
                    .cloned()
                    .collect();
                use rand::seq::SliceRandom;
                hs.shuffle(&mut rand::rng());
                hs
            };
            if holders.is_empty() {
                continue;
            }
            match self.node.fetch_chunk_bytes(id, len, holders).await {
                Ok(b) => return Ok(b),
                Err(e) => last = format!("{e:#}"),
            }
        }
        anyhow::bail!("chunk {i} of {} could not be fetched ({last})", self.file.short())
    }
}

async fn find(node: &Arc<Node>, id: FileId) -> Result<StoredFile, Response> {
    if let Some(f) = node.store.file(&id) {
        return Ok(f);
    }
    match node.request(move |req| ClientMsg::Locate { req, file: id }).await {
        Ok(ServerMsg::Located { manifest, meta, .. }) if manifest.file_id() == id && manifest.validate().is_ok() => {
            Ok(StoredFile { manifest, meta })
        }
        Ok(_) => Err(plain(StatusCode::BAD_GATEWAY, "the tracker sent a bad answer")),
        Err(e) => match e.code() {
            Some(ErrorCode::UnknownFile) => Err(plain(StatusCode::NOT_FOUND, "no such file in the swarm")),
            _ => Err(plain(StatusCode::BAD_GATEWAY, format!("tracker: {e:#}"))),
        },
    }
}

async fn file(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Ok(id) = id.parse::<FileId>() else {
        return plain(StatusCode::BAD_REQUEST, "a file id is 64 hex digits");
    };
    let node = gw.node.clone();
    let file = match find(&node, id).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let opened = match gw.open(id, &file, &query).await {
        Ok(o) => o,
        Err(e) => return plain(e.status(), e.to_string()),
    };
    let (layout, name, mime, cipher) = match opened {
        Some(Opened { cipher, meta }) => {
            (ChunkLayout::private(&file.manifest, meta.size), meta.name, meta.mime, Some(cipher))
        }
        None => (ChunkLayout::public(&file.manifest), file.meta.name.clone(), file.meta.mime.clone(), None),
    };
    let size = layout.size;
    let range = parse_range(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), size);
    let mut h = HeaderMap::new();
    let hv =
        |s: String| HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, hv(safe_content_type(&mime)));
    h.insert(header::CONTENT_DISPOSITION, hv(content_disposition(&name, &id.to_hex())));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, hv(format!("\"{id}\"")));
    let cache = if cipher.is_some() { "private, no-store" } else { "public, max-age=31536000, immutable" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    let (status, start, end) = match range {
        RangeReq::Unsatisfiable => {
            h.insert(header::CONTENT_RANGE, hv(format!("bytes */{size}")));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return (StatusCode::RANGE_NOT_SATISFIABLE, h, Body::empty()).into_response();
        }
        RangeReq::Partial(a, b) => {
            h.insert(header::CONTENT_RANGE, hv(format!("bytes {a}-{b}/{size}")));
            (StatusCode::PARTIAL_CONTENT, a, b + 1)
        }
        RangeReq::Full => (StatusCode::OK, 0, size),
    };
    h.insert(header::CONTENT_LENGTH, hv((end - start).to_string()));
    if method == Method::HEAD || start == end {
        return (status, h, Body::empty()).into_response();
    }
    let src = Arc::new(Source { node, file: id, manifest: file.manifest, located: AsyncMutex::new(None) });
    let cipher = Arc::new(cipher);
    let stream = futures_util::stream::iter(layout.chunks_in(start, end))
        .map(move |i| {
            let (src, cipher) = (src.clone(), cipher.clone());
            async move {
                let bytes = readable(&src, cipher.as_ref().as_ref(), i).await.map_err(|e| {
                    tracing::warn!("gateway: {e:#}");
                    std::io::Error::other(format!("{e:#}"))
                })?;
                let part = layout.slice(i, start, end, bytes.len());
                Ok::<_, std::io::Error>(bytes::Bytes::from(bytes).slice(part))
            }
        })
        .buffered(AHEAD);
    (status, h, Body::from_stream(stream)).into_response()
}

/// Chunk `i` as the reader reads it: checked against its id, and decrypted for a private file.
async fn readable(src: &Source, cipher: Option<&FileCipher>, i: usize) -> anyhow::Result<Vec<u8>> {
    let mut bytes = src.chunk(i).await?;
    src.manifest.chunks[i].verify(&bytes).map_err(|e| anyhow::anyhow!("chunk {i}: {e}"))?;
    if let Some(c) = cipher {
        c.open_chunk(i as u64, &mut bytes)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_active_content() {
        assert_eq!(safe_content_type("text/html"), "application/octet-stream");
        assert_eq!(safe_content_type("image/svg+xml"), "application/octet-stream");
        assert_eq!(safe_content_type("application/xhtml+xml"), "application/octet-stream");
        assert_eq!(safe_content_type("text/javascript"), "application/octet-stream");
        assert_eq!(safe_content_type("text/plain\r\nX-Evil: 1"), "application/octet-stream");
        assert_eq!(safe_content_type("image/png"), "image/png");
        assert_eq!(safe_content_type("text/plain; charset=utf-8"), "text/plain");
    }

    #[test]
    fn disposition_is_safe() {
        let d = content_disposition("../../etc/pass\"wd é.txt", "x");
        assert_eq!(
            d,
            "attachment; filename=\"_.._etc_pass_wd _.txt\"; filename*=UTF-8''_.._etc_pass%22wd%20%C3%A9.txt"
        );
        assert!(content_disposition("a\r\nb", "x").bytes().all(|b| b >= 0x20));
    }
}
