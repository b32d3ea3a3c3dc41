//! Downloads a file from the swarm: locate it, open links to several holders at once, ask
//! each for chunks as the scheduler decides (rarest first, pipelined, endgame), verify every
//! chunk, store it and announce it at once (this peer becomes a source), then assemble the
//! output from the store. Chunks already stored are not fetched again, so an interrupted
//! download resumes where it stopped.

use crate::node::Node;
use crate::rtc::LinkEvent;
use crate::store::StoredFile;
use anyhow::{anyhow, bail, Context};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swarm_core::chunk_proto::{ChunkAssembler, PeerMsg};
use swarm_core::schedule::{PeerIx, Scheduler};
use swarm_core::{ClientMsg, FileId, Manifest, PeerId, ServerMsg};

/// Chunk requests outstanding per peer.
const PIPELINE: usize = 4;
/// Most peers fetched from at once.
const MAX_SOURCES: usize = 8;
/// A peer that sends nothing for this long while owing chunks is given up on.
const STALL: Duration = Duration::from_secs(20);
/// Time for a link to open.
const CONNECT: Duration = Duration::from_secs(15);

/// Progress callback: (chunks done, chunks total, bytes done).
pub type Progress = Arc<dyn Fn(usize, usize, u64) + Send + Sync>;

struct Shared {
    manifest: Manifest,
    sched: Mutex<Scheduler>,
    progress: Progress,
    done_bytes: std::sync::atomic::AtomicU64,
}

/// Fetches every chunk of `file` into the store; returns its record.
pub async fn fetch(node: &Arc<Node>, file: FileId, progress: Progress) -> anyhow::Result<StoredFile> {
    let located = node.tracker.request(|req| ClientMsg::Locate { req, file }).await?;
    let ServerMsg::Located { manifest, meta, peers, holders, .. } = located else {
        bail!("unexpected answer to locate")
    };
    manifest.validate().context("the tracker sent a bad manifest")?;
    anyhow::ensure!(manifest.file_id() == file, "the tracker sent a manifest for another file");
    anyhow::ensure!(holders.len() == manifest.chunks.len(), "the tracker sent holders for another manifest");
    let have: Vec<bool> = manifest.chunks.iter().map(|c| node.store.has(c)).collect();
    let me = node.peer_id().clone();
    let holders: Vec<Vec<PeerIx>> = holders
        .into_iter()
        .map(|hs| hs.into_iter().filter(|&i| peers.get(i as usize).is_some_and(|p| *p != me)).collect())
        .collect();
    let sched = Scheduler::new(holders, &have);
    let total = manifest.chunks.len();
    let already = total - sched.remaining();
    let shared = Arc::new(Shared {
        manifest: manifest.clone(),
        sched: Mutex::new(sched),
        progress,
        done_bytes: Default::default(),
    });
    (shared.progress)(already, total, 0);
    if !shared.sched.lock().unwrap().is_complete() {
        let mut workers = Vec::new();
        for (ix, peer) in peers.iter().enumerate().filter(|(_, p)| **p != me).take(MAX_SOURCES) {
            let (node, shared, peer) = (node.clone(), shared.clone(), peer.clone());
            workers.push(tokio::spawn(async move {
                if let Err(e) = fetch_from(&node, &shared, ix as PeerIx, &peer).await {
                    tracing::warn!(peer = %peer.short(), "source failed: {e:#}");
                }
                shared.sched.lock().unwrap().peer_gone(ix as PeerIx);
            }));
        }
        for w in workers {
            let _ = w.await;
        }
    }
    let sched = shared.sched.lock().unwrap();
    if !sched.is_complete() {
        let missing = sched.unavailable();
        bail!("{} of {total} chunks could not be fetched ({} have no live holder)", sched.remaining(), missing.len());
    }
    let stored = StoredFile { manifest, meta };
    node.store.put_file(&stored)?;
    Ok(stored)
}

struct Wanted {
    index: usize,
    asm: ChunkAssembler,
    started: Instant,
}

/// Fetches chunks from one peer over one link until the scheduler has nothing for it.
async fn fetch_from(node: &Arc<Node>, shared: &Shared, ix: PeerIx, peer: &PeerId) -> anyhow::Result<()> {
    let (mut link, conn) = node.open_link(peer).await?;
    let result = async {
        let opened = tokio::time::timeout(CONNECT, async {
            while let Some(ev) = link.events.recv().await {
                match ev {
                    LinkEvent::Signal(s) => node.forward_signal(peer, conn, s),
                    LinkEvent::Open => return Ok(()),
                    LinkEvent::Closed(r) => return Err(anyhow!("link closed before opening: {r}")),
                    LinkEvent::Message(_) => {}
                }
            }
            Err(anyhow!("link ended"))
        })
        .await;
        opened.map_err(|_| anyhow!("no data channel within {CONNECT:?}"))??;
        tracing::debug!(peer = %peer.short(), "data channel open");
        let mut wanted: HashMap<u32, Wanted> = HashMap::new();
        let mut next_req = 1u32;
        loop {
            while wanted.len() < PIPELINE {
                let Some(index) = shared.sched.lock().unwrap().next_for(ix) else {
                    break;
                };
                let chunk = shared.manifest.chunks[index];
                let req = next_req;
                next_req += 1;
                link.sender.send(PeerMsg::Request { req, chunk }.encode()).await?;
                let asm = ChunkAssembler::new(chunk, shared.manifest.chunk_len(index));
                wanted.insert(req, Wanted { index, asm, started: Instant::now() });
            }
            if wanted.is_empty() {
                if shared.sched.lock().unwrap().is_complete() {
                    return Ok(());
                }
                // Others still work on chunks this peer might have to take over.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if !shared.sched.lock().unwrap().has_work_for(ix) {
                    return Ok(());
                }
                continue;
            }
            let ev = tokio::time::timeout(STALL, link.events.recv())
                .await
                .map_err(|_| anyhow!("peer stalled for {STALL:?}"))?
                .ok_or_else(|| anyhow!("link ended"))?;
            match ev {
                LinkEvent::Signal(s) => node.forward_signal(peer, conn, s),
                LinkEvent::Open => {}
                LinkEvent::Closed(r) => bail!("link closed: {r}"),
                LinkEvent::Message(bytes) => {
                    node.stats.received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    on_message(node, shared, ix, peer, &mut wanted, &bytes).await?;
                }
            }
        }
    }
    .await;
    // On failure the caller's `peer_gone` hands this peer's requests back to the scheduler.
    node.close_route(peer, conn);
    result
}

async fn on_message(
    node: &Arc<Node>,
    shared: &Shared,
    ix: PeerIx,
    peer: &PeerId,
    wanted: &mut HashMap<u32, Wanted>,
    bytes: &[u8],
) -> anyhow::Result<()> {
    match PeerMsg::decode(bytes)? {
        PeerMsg::Data { req, offset, total, bytes } => {
            let w = wanted.get_mut(&req).ok_or_else(|| anyhow!("data for request {req} we did not make"))?;
            let chunk = match w.asm.push(offset, total, &bytes) {
                Ok(None) => return Ok(()),
                Ok(Some(chunk)) => chunk,
                Err(e) => {
                    let index = w.index;
                    wanted.remove(&req);
                    shared.sched.lock().unwrap().failed(index, ix);
                    tracing::warn!(peer = %peer.short(), chunk = index, "refused chunk: {e}");
                    bail!("peer sent a bad chunk: {e}");
                }
            };
            let w = wanted.remove(&req).expect("present");
            let id = w.asm.chunk;
            let len = chunk.len();
            let store = node.store.clone();
            tokio::task::spawn_blocking(move || store.put(&id, &chunk)).await??;
            node.tracker.send(ClientMsg::Have { chunks: vec![id], full: false });
            let secs = w.started.elapsed().as_secs_f64().max(1e-6);
            tracing::debug!(
                chunk = w.index,
                id = %id.short(),
                peer = %peer.short(),
                ms = (secs * 1000.0) as u64,
                mb_s = format!("{:.1}", len as f64 / secs / 1e6),
                "chunk received"
            );
            let mut sched = shared.sched.lock().unwrap();
            if sched.done(w.index, ix) {
                let done_bytes = shared.done_bytes.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
                let total = shared.manifest.chunks.len();
                (shared.progress)(total - sched.remaining(), total, done_bytes);
            }
        }
        PeerMsg::Missing { req } => {
            if let Some(w) = wanted.remove(&req) {
                shared.sched.lock().unwrap().failed(w.index, ix);
            }
        }
        PeerMsg::Request { .. } => bail!("a source sent a request on a download link"),
    }
    Ok(())
}

/// Writes the file's bytes from the store to `out` (through a temporary file, then rename).
pub fn assemble(node: &Node, file: &StoredFile, out: &Path, force: bool) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    if out.exists() && !force {
        bail!(crate::cli::OutputExists(out.to_owned()));
    }
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.pp-part", file.manifest.file_id().short()));
    let result = (|| -> anyhow::Result<()> {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?,
        );
        for (i, c) in file.manifest.chunks.iter().enumerate() {
            let bytes = node.store.get(c)?.ok_or_else(|| anyhow!("chunk {i} vanished from the store"))?;
            f.write_all(&bytes)?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, out)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|_| out.to_owned())
}
