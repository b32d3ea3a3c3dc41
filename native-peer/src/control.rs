//! The local control endpoint of a running peer: a Unix socket in its data directory. Commands
//! from a second terminal act through the running peer of that data dir when there is one.
//!
//! Protocol: one JSON request line; the peer answers with any number of progress lines
//! (`{"progress":{"label":…,"done":…,"total":…}}`) and then one [`Response`] line.

use crate::node::Node;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use swarm_core::share::Target;
use swarm_core::{ClientMsg, FileId, ServerMsg};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Put {
        paths: Vec<PathBuf>,
        /// Encrypt the files ([`crate::private`]); the answer carries each one's link.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        private: Option<crate::private::PutSecret>,
    },
    /// `dir`: where the output goes when `output` is not given (the client's working
    /// directory, not the running peer's). `output` `-` is stdout: a short-lived peer's only
    /// (a running peer refuses it; its client asks for a temporary file instead).
    /// Changes the running peer's upload limit (`2MB/s`, `off`).
    Limit {
        upload: String,
    },
    Get {
        file: String,
        output: Option<PathBuf>,
        force: bool,
        dir: Option<PathBuf>,
        /// For a `?pass` link: the passphrase (read by the client, never a flag value).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase: Option<String>,
    },
    Search {
        query: String,
        limit: u32,
    },
    Ls,
    Status,
    Scrub,
    Leave,
    /// Unpublish a file this peer published (id or exact name).
    Rm {
        file: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default)]
    pub result: Value,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub exit_code: i32,
}

/// One progress report: `done` of `total` bytes of the transfer named `label`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressLine {
    pub label: String,
    pub done: u64,
    pub total: u64,
}

/// Where progress reports go: bars in this terminal, or lines over the control socket.
pub type ProgressSink = Arc<dyn Fn(ProgressLine) + Send + Sync>;

/// A sink that drops every report.
pub fn no_progress() -> ProgressSink {
    Arc::new(|_| {})
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Serves control requests for `node` until the process ends. The returned `Notify` fires
/// when a `leave` has completed and the peer should stop.
pub async fn listen(node: Arc<Node>, data_dir: &Path) -> anyhow::Result<Arc<tokio::sync::Notify>> {
    let path = socket_path(data_dir);
    if UnixStream::connect(&path).await.is_ok() {
        anyhow::bail!("another peer is already running on {}", data_dir.display());
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("cannot listen on {}", path.display()))?;
    let stop = Arc::new(tokio::sync::Notify::new());
    let stop2 = stop.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(node.clone(), stream, stop2.clone()));
        }
    });
    Ok(stop)
}

async fn handle(node: Arc<Node>, stream: UnixStream, stop: Arc<tokio::sync::Notify>) {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(r).read_line(&mut line).await.is_err() {
        return;
    }
    // Progress lines go out as they come, throttled so a fast transfer does not flood the socket.
    let (ptx, mut prx) = mpsc::unbounded_channel::<ProgressLine>();
    let last = std::sync::Mutex::new(std::time::Instant::now() - std::time::Duration::from_secs(1));
    let sink: ProgressSink = Arc::new(move |p: ProgressLine| {
        let mut last = last.lock().unwrap();
        if p.done >= p.total || last.elapsed() >= std::time::Duration::from_millis(100) {
            *last = std::time::Instant::now();
            let _ = ptx.send(p);
        }
    });
    let work = async {
        match serde_json::from_str::<Request>(&line) {
            Ok(Request::Get { output: Some(out), .. }) if crate::download::is_stdout(&out) => Response {
                ok: false,
                result: Value::Null,
                error: "a running peer cannot write to its client's stdout".into(),
                exit_code: crate::cli::EXIT_USAGE,
            },
            Ok(req) => match execute(&node, req, sink).await {
                Ok(result) => {
                    if result.get("left").is_some() {
                        stop.notify_one();
                    }
                    Response { ok: true, result, error: String::new(), exit_code: 0 }
                }
                Err(e) => Response {
                    ok: false,
                    result: Value::Null,
                    error: format!("{e:#}"),
                    exit_code: crate::cli::exit_code(&e),
                },
            },
            Err(e) => Response {
                ok: false,
                result: Value::Null,
                error: format!("bad control request: {e}"),
                exit_code: crate::cli::EXIT_USAGE,
            },
        }
    };
    tokio::pin!(work);
    let response = loop {
        tokio::select! {
            r = &mut work => break r,
            Some(p) = prx.recv() => {
                let mut out = serde_json::to_vec(&json!({ "progress": p })).expect("serializable");
                out.push(b'\n');
                // A client that went away does not stop the work (e.g. a download in progress).
                let _ = w.write_all(&out).await;
            }
        }
    };
    while let Ok(p) = prx.try_recv() {
        let mut out = serde_json::to_vec(&json!({ "progress": p })).expect("serializable");
        out.push(b'\n');
        let _ = w.write_all(&out).await;
    }
    let mut out = serde_json::to_vec(&response).expect("serializable");
    out.push(b'\n');
    let _ = w.write_all(&out).await;
}

fn summaries(files: &[swarm_core::wire::FileSummary]) -> Vec<Value> {
    files
        .iter()
        .map(|f| {
            json!({
                "id": f.id, "name": f.name, "mime": f.mime, "size": f.size,
                "chunks": f.chunks, "min_holders": f.min_holders,
            })
        })
        .collect()
}

async fn search(node: &Node, query: String, limit: u32) -> anyhow::Result<Vec<swarm_core::wire::FileSummary>> {
    let answer =
        node.request(move |req| ClientMsg::Search { req, query, limit }).await.map_err(crate::cli::PeerError::from)?;
    let ServerMsg::SearchResults { files, .. } = answer else { anyhow::bail!("unexpected answer to search") };
    Ok(files)
}

/// Runs one request on a node (the running peer's or a short-lived one).
pub async fn execute(node: &Arc<Node>, req: Request, progress: ProgressSink) -> anyhow::Result<Value> {
    match req {
        Request::Put { paths, private } => {
            let mut files = Vec::new();
            for p in paths {
                let label = format!("put {}", p.file_name().unwrap_or_default().to_string_lossy());
                let sink = progress.clone();
                let on_progress = move |done, total| sink(ProgressLine { label: label.clone(), done, total });
                if let Some(secret) = &private {
                    let (f, link) = crate::private::put(node, &p, secret, on_progress)
                        .await
                        .with_context(|| format!("put {}", p.display()))?;
                    files.push(json!({
                        "id": f.manifest.file_id(),
                        "name": p.file_name().unwrap_or_default().to_string_lossy(),
                        "size": f.manifest.size,
                        "chunks": f.manifest.chunks.len(),
                        "private": true,
                        "link": link.to_string(),
                    }));
                    continue;
                }
                let f =
                    node.put_with_progress(&p, on_progress).await.with_context(|| format!("put {}", p.display()))?;
                files.push(json!({
                    "id": f.manifest.file_id(),
                    "link": crate::links::share_link(&node.config.tracker_url, f.manifest.file_id()),
                    "name": f.meta.name,
                    "size": f.manifest.size,
                    "chunks": f.manifest.chunks.len(),
                }));
            }
            Ok(json!({ "files": files }))
        }
        Request::Get { file, output, force, dir, passphrase } => {
            let t0 = std::time::Instant::now();
            // Everything that can fail is checked before any chunk moves: the link, the
            // file, and the output path.
            let target = Target::parse(&file).map_err(crate::cli::PeerError::from)?;
            let (id, name) = match target {
                Target::Link(link) if link.secret.is_some() => {
                    return crate::private::get(node, &link, passphrase, output, force, dir, progress).await;
                }
                Target::Link(link) => (link.file, node.describe(link.file).await?.name),
                Target::Name(name) => (node.resolve(&name).await?, name),
            };
            let out =
                output.unwrap_or_else(|| dir.unwrap_or_default().join(crate::cli::safe_file_name(&name, &id.to_hex())));
            crate::download::check_output(&out, force)?;
            // Listed until it ends, so `run --resume` carries on if the process dies first (not
            // the temporary file a get to a client's stdout goes through).
            let pending = crate::pending::PendingGet { file: id, output: out.clone(), force };
            if !crate::download::is_stdout(&out) && !crate::download::is_stdout_via_file(&out) {
                if let Err(e) = node.pending.add(pending.clone()) {
                    tracing::warn!("cannot list the get of {} as unfinished: {e}", id.short());
                }
            }
            let result = get_public(node, id, name, out, force, t0, progress).await;
            // A get cut short by this peer's stop stays listed (`run --resume` goes on with it).
            if !crate::download::stopping() {
                if let Err(e) = node.pending.remove(&pending) {
                    tracing::warn!("cannot unlist the get of {}: {e}", id.short());
                }
            }
            result
        }
        Request::Search { query, limit } => Ok(json!({ "files": summaries(&search(node, query, limit).await?) })),
        Request::Ls => {
            let swarm = search(node, String::new(), 1000).await?;
            let held: std::collections::HashSet<_> = node.store.list().into_iter().collect();
            let local: Vec<Value> = node
                .store
                .files()
                .iter()
                .map(|f| {
                    let have = f.manifest.chunks.iter().filter(|c| held.contains(c)).count();
                    json!({
                        "id": f.manifest.file_id(), "name": f.meta.name, "size": f.manifest.size,
                        "chunks": f.manifest.chunks.len(), "chunks_held": have,
                    })
                })
                .collect();
            Ok(json!({ "swarm": summaries(&swarm), "local": local, "chunks_held": held.len() }))
        }
        Request::Rm { file } => {
            let gone = node.unpublish(&file).await?;
            Ok(json!({ "removed": gone.id, "name": gone.name }))
        }
        Request::Scrub => {
            let r = node.scrub().await?;
            Ok(json!({ "checked": r.checked, "dropped": r.dropped, "tmp_removed": r.tmp_removed }))
        }
        Request::Leave => {
            let stranded = node.leave(std::time::Duration::from_secs(300)).await?;
            Ok(json!({ "left": true, "stranded_chunks": stranded }))
        }
        Request::Limit { upload } => {
            let rate = pp_cli::size::parse_rate(&upload).map_err(crate::cli::PeerError::BadValue)?;
            node.set_upload_limit(rate);
            Ok(json!({ "upload_limit": rate }))
        }
        Request::Status => {
            let (upload_limit, upload_rate) = node.upload();
            let from: serde_json::Map<String, Value> =
                node.stats.chunks_from.lock().unwrap().iter().map(|(p, n)| (p.to_string(), json!(n))).collect();
            Ok(json!({
                "peer_id": node.peer_id(),
                "tracker": node.tracker_url(),
                "tracker_connected": node.connected(),
                "chunks": node.store.list().len(),
                "files": node.store.files().len(),
                "data_channel_bytes_received": node.stats.received.load(Ordering::Relaxed),
                "data_channel_bytes_sent": node.stats.sent.load(Ordering::Relaxed),
                "relay_bytes_received": node.stats.relay_received.load(Ordering::Relaxed),
                "relay_bytes_sent": node.stats.relay_sent.load(Ordering::Relaxed),
                "bad_chunks_refused": node.stats.bad_chunks.load(Ordering::Relaxed),
                "chunks_from": from,
                "upload_limit": upload_limit,
                "upload_rate": upload_rate,
                "storage_used": node.store.used(),
                "storage_capacity": node.store.capacity,
                "links": node.links().iter().map(|(peer, path, role)| json!({
                    "peer": peer, "path": path, "role": role,
                })).collect::<Vec<_>>(),
                "bytes_received_by_path": node.path_report().bytes_received.iter()
                    .map(|(p, n)| (p.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            }))
        }
    }
}

/// Sends a request to the running peer of `data_dir`, if one is there; progress lines go to
/// `progress` as they arrive.
pub async fn try_remote(data_dir: &Path, req: &Request, progress: ProgressSink) -> anyhow::Result<Option<Response>> {
    let Ok(stream) = UnixStream::connect(socket_path(data_dir)).await else {
        return Ok(None);
    };
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    let mut lines = BufReader::new(r).lines();
    while let Some(l) = lines.next_line().await? {
        let v: Value = serde_json::from_str(&l).context("unreadable answer from the running peer")?;
        if let Some(p) = v.get("progress") {
            if let Ok(p) = serde_json::from_value::<ProgressLine>(p.clone()) {
                progress(p);
            }
            continue;
        }
        return Ok(Some(serde_json::from_value(v).context("unreadable answer from the running peer")?));
    }
    anyhow::bail!("the running peer closed the control connection without an answer")
}

/// A public file's get once its output is checked: fetched, written, described.
async fn get_public(
    node: &Arc<Node>,
    id: FileId,
    name: String,
    out: std::path::PathBuf,
    force: bool,
    t0: std::time::Instant,
    progress: ProgressSink,
) -> anyhow::Result<Value> {
    let label = format!("get {name}");
    let sink = progress.clone();
    let before: std::collections::HashMap<_, _> = node.stats.chunks_from.lock().unwrap().clone();
    let fetched = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let fetched2 = fetched.clone();
    // Time to first byte: from the request to the first verified chunk fetched.
    let first_chunk = Arc::new(std::sync::OnceLock::<f64>::new());
    let first2 = first_chunk.clone();
    let on_progress: crate::download::Progress = Arc::new(move |done, total, bytes| {
        if bytes > 0 {
            first2.get_or_init(|| t0.elapsed().as_secs_f64());
        }
        fetched2.store(bytes, Ordering::Relaxed);
        sink(ProgressLine { label: label.clone(), done, total });
    });
    let started = std::time::Instant::now();
    let private = || anyhow::anyhow!("{} is a private file: get it with its share link (…?key=… or ?pass)", id.short());
    let to_stdout = crate::download::is_stdout(&out);
    let stored = if to_stdout {
        // (Checked before a byte is written: stdout never carries ciphertext.)
        let (meta, manifest) = node.locate(id).await?;
        if meta.is_private() {
            return Err(private());
        }
        let open: crate::download::Open = Box::new(|_, _| Ok(()));
        crate::download::fetch_to_stdout(node, id, manifest.chunks, on_progress, open).await?
    } else {
        crate::download::fetch(node, id, on_progress).await?
    };
    if stored.meta.is_private() {
        return Err(private());
    }
    let fetch_secs = started.elapsed().as_secs_f64();
    let sources: serde_json::Map<String, Value> = node
        .stats
        .chunks_from
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(p, n)| {
            let d = n - before.get(p).copied().unwrap_or(0);
            (d > 0).then(|| (p.to_string(), json!(d)))
        })
        .collect();
    let n2 = node.clone();
    let written = match to_stdout {
        true => (out, stored),
        false => {
            tokio::task::spawn_blocking(move || {
                crate::download::assemble(&n2, &stored, &out, force).map(|p| (p, stored))
            })
            .await??
        }
    };
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "id": id,
        "name": written.1.meta.name,
        "size": written.1.manifest.size,
        "output": written.0,
        "seconds": secs,
        "fetch_seconds": fetch_secs,
        "fetched_bytes": fetched.load(Ordering::Relaxed),
        "first_chunk_seconds": first_chunk.get(),
        "chunks_from": sources,
    }))
}
