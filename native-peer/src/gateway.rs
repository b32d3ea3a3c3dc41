//! The HTTP gateway of a running peer (`pp-peer run --http 127.0.0.1:PORT`):
//! `GET /files/{id}` streams a file, fetching the chunks this peer lacks from the swarm as the
//! body goes out, with single-range `Range` support (206 / 416) and `HEAD`. `GET /healthz`
//! answers while the process lives, `GET /readyz` while it is joined to the tracker (503 while
//! it reconnects), for service managers and load balancers.
//!
//! A file from the swarm is never rendered by a browser as an active page: it is always an
//! attachment with a sanitised name, `nosniff`, a sandboxing CSP, and active types (HTML, SVG,
//! XML, scripts) are served as `application/octet-stream`.
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
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use swarm_core::wire::ErrorCode;
use swarm_core::{ClientMsg, FileId, Manifest, PeerId, ServerMsg};
use tokio::sync::Mutex as AsyncMutex;

/// Chunks fetched ahead of the one being sent.
const AHEAD: usize = 8;
/// How long a read waits for a running download of the file to store a chunk before it
/// fetches the chunk itself.
const DOWNLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Starts the gateway on `addr`; returns the address it listens on.
pub async fn serve(node: Arc<Node>, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let app = router(node);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("HTTP gateway stopped: {e}");
        }
    });
    Ok(local)
}

/// 200 while a tracker session is open, 503 while the peer reconnects.
async fn ready(State(node): State<Arc<Node>>) -> (StatusCode, &'static str) {
    if node.connected() {
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
        .with_state(node)
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

async fn file(State(node): State<Arc<Node>>, Path(id): Path<String>, method: Method, headers: HeaderMap) -> Response {
    let Ok(id) = id.parse::<FileId>() else {
        return plain(StatusCode::BAD_REQUEST, "a file id is 64 hex digits");
    };
    let file = match find(&node, id).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let size = file.manifest.size;
    let range = parse_range(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), size);
    let mut h = HeaderMap::new();
    let hv =
        |s: String| HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, hv(safe_content_type(&file.meta.mime)));
    h.insert(header::CONTENT_DISPOSITION, hv(content_disposition(&file.meta.name, &id.to_hex())));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, hv(format!("\"{id}\"")));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
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
    let cs = file.manifest.chunk_size as u64;
    let (first, last) = ((start / cs) as usize, ((end - 1) / cs) as usize);
    let src = Arc::new(Source { node, file: id, manifest: file.manifest, located: AsyncMutex::new(None) });
    let stream = futures_util::stream::iter(first..=last)
        .map(move |i| {
            let src = src.clone();
            async move {
                let bytes = src.chunk(i).await.map_err(|e| {
                    tracing::warn!("gateway: {e:#}");
                    std::io::Error::other(format!("{e:#}"))
                })?;
                let off = src.manifest.chunk_offset(i);
                let a = start.saturating_sub(off) as usize;
                let b = ((end - off) as usize).min(bytes.len());
                let mut bytes = bytes::Bytes::from(bytes);
                Ok::<_, std::io::Error>(bytes.split_to(b).split_off(a))
            }
        })
        .buffered(AHEAD);
    (status, h, Body::from_stream(stream)).into_response()
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
