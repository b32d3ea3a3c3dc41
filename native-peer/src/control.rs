//! The local control endpoint of a running peer: a Unix socket in its data directory. `put`
//! and `get` from a second terminal act through the running peer of that data dir when there
//! is one (one JSON request line, one JSON answer line).

use crate::node::Node;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Put { paths: Vec<PathBuf> },
    Get { file: String, output: Option<PathBuf>, force: bool },
    Status,
    Leave,
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
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(req) => match execute(&node, req).await.inspect(|v| {
            if v.get("left").is_some() {
                stop.notify_one();
            }
        }) {
            Ok(result) => Response { ok: true, result, error: String::new(), exit_code: 0 },
            Err(e) => Response {
                ok: false,
                result: Value::Null,
                error: format!("{e:#}"),
                exit_code: crate::cli::exit_code(&e),
            },
        },
        Err(e) => Response { ok: false, result: Value::Null, error: format!("bad control request: {e}"), exit_code: 2 },
    };
    let mut out = serde_json::to_vec(&response).expect("serializable");
    out.push(b'\n');
    let _ = w.write_all(&out).await;
}

/// Runs one request on a node (the running peer's or a short-lived one).
pub async fn execute(node: &Arc<Node>, req: Request) -> anyhow::Result<Value> {
    match req {
        Request::Put { paths } => {
            let mut files = Vec::new();
            for p in paths {
                let f = node.put(&p).await.with_context(|| format!("put {}", p.display()))?;
                files.push(json!({
                    "id": f.manifest.file_id(),
                    "name": f.meta.name,
                    "size": f.manifest.size,
                    "chunks": f.manifest.chunks.len(),
                }));
            }
            Ok(json!({ "files": files }))
        }
        Request::Get { file, output, force } => {
            let id = node.resolve(&file).await?;
            let progress: crate::download::Progress = Arc::new(|done, total, _| {
                tracing::debug!(done, total, "download progress");
            });
            let started = std::time::Instant::now();
            let stored = crate::download::fetch(node, id, progress).await?;
            let out =
                output.unwrap_or_else(|| PathBuf::from(crate::cli::safe_file_name(&stored.meta.name, &id.to_hex())));
            let n2 = node.clone();
            let written = tokio::task::spawn_blocking(move || {
                crate::download::assemble(&n2, &stored, &out, force).map(|p| (p, stored))
            })
            .await??;
            let secs = started.elapsed().as_secs_f64();
            Ok(json!({
                "id": id,
                "name": written.1.meta.name,
                "size": written.1.manifest.size,
                "output": written.0,
                "seconds": secs,
            }))
        }
        Request::Leave => {
            let stranded = node.leave(std::time::Duration::from_secs(300)).await?;
            Ok(json!({ "left": true, "stranded_chunks": stranded }))
        }
        Request::Status => Ok(json!({
            "peer_id": node.peer_id(),
            "chunks": node.store.list().len(),
            "files": node.store.files().len(),
            "data_channel_bytes_received": node.stats.received.load(Ordering::Relaxed),
            "data_channel_bytes_sent": node.stats.sent.load(Ordering::Relaxed),
            "relay_bytes_received": node.stats.relay_received.load(Ordering::Relaxed),
            "relay_bytes_sent": node.stats.relay_sent.load(Ordering::Relaxed),
            "storage_used": node.store.used(),
            "storage_capacity": node.store.capacity,
        })),
    }
}

/// Sends a request to the running peer of `data_dir`, if one is there.
pub async fn try_remote(data_dir: &Path, req: &Request) -> anyhow::Result<Option<Response>> {
    let Ok(stream) = UnixStream::connect(socket_path(data_dir)).await else {
        return Ok(None);
    };
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    let mut answer = String::new();
    BufReader::new(r).read_line(&mut answer).await?;
    Ok(Some(serde_json::from_str(&answer).context("unreadable answer from the running peer")?))
}
