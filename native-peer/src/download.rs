//! Downloads a file from the swarm: locate it, fetch from several holders at once with the
//! scheduler deciding which chunk to ask which peer for (rarest first, pipelined, endgame),
//! verify every chunk, store it and announce it at once (this peer becomes a source), then
//! assemble the output from the store. Chunks already stored are not fetched again, so an
//! interrupted download resumes where it stopped. When every source fails, the file is
//! located again: repaired copies elsewhere finish the job.

use crate::cli::PeerError;
use crate::conn::FetchError;
use crate::node::Node;
use crate::store::{StoreError, StoredFile};
use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swarm_core::schedule::{PeerIx, Scheduler};
use swarm_core::{ClientMsg, FileId, Manifest, PeerId, ServerMsg};

/// Chunk requests outstanding per source.
const PIPELINE: usize = 4;
/// Most sources fetched from at once.
const MAX_SOURCES: usize = 8;
/// How long a download keeps looking for holders of missing chunks.
const GIVE_UP_AFTER: Duration = Duration::from_secs(90);
/// How long a download waits for a chunk that no live peer holds to get a holder.
const NO_HOLDER_WAIT: Duration = Duration::from_secs(10);

/// Progress callback: (bytes of the file stored, file size, bytes fetched by this download).
pub type Progress = Arc<dyn Fn(u64, u64, u64) + Send + Sync>;

struct Round {
    manifest: Manifest,
    sched: Mutex<Scheduler>,
    progress: Progress,
    fetched: Arc<AtomicU64>,
    /// Bytes of the file stored locally.
    stored: AtomicU64,
    /// Set when the download cannot go on at all (e.g. no room to store chunks).
    fatal: Mutex<Option<String>>,
}

/// Fetches every chunk of `file` into the store; returns its record.
pub async fn fetch(node: &Arc<Node>, file: FileId, progress: Progress) -> anyhow::Result<StoredFile> {
    let started = Instant::now();
    let fetched = Arc::new(AtomicU64::new(0));
    let mut rounds = 0;
    let mut unheld_since: Option<Instant> = None;
    loop {
        rounds += 1;
        let located = match node.tracker.request(|req| ClientMsg::Locate { req, file }).await {
            Ok(l) => l,
            // The tracker itself is away (e.g. restarting): wait for it while time allows.
            Err(e) if e.code().is_none() && started.elapsed() < GIVE_UP_AFTER => {
                tracing::warn!("cannot locate the file ({e:#}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(PeerError::from(e).into()),
        };
        let ServerMsg::Located { manifest, meta, peers, holders, .. } = located else {
            bail!("unexpected answer to locate")
        };
        manifest.validate().context("the tracker sent a bad manifest")?;
        anyhow::ensure!(manifest.file_id() == file, "the tracker sent a manifest for another file");
        anyhow::ensure!(holders.len() == manifest.chunks.len(), "the tracker sent holders for another manifest");
        let need: u64 = (0..manifest.chunks.len())
            .filter(|&i| !node.store.has(&manifest.chunks[i]))
            .map(|i| manifest.chunk_len(i) as u64)
            .sum();
        if !node.store.has_room(need) {
            bail!(PeerError::from(StoreError::NoRoom { need, used: node.store.used(), capacity: node.store.capacity }));
        }
        // Recorded before the first chunk arrives: the chunks of a file this peer wants are
        // not trimmed away, so a download interrupted by a crash resumes from them.
        if rounds == 1 {
            node.store
                .put_file(&StoredFile { manifest: manifest.clone(), meta: meta.clone() })
                .map_err(PeerError::from)?;
        }
        // Chunks this peer lacks that no live peer holds: say so at once, and give up clearly
        // if no holder appears (a returning peer, a repair) within a short wait.
        let me = node.peer_id();
        let unheld: Vec<usize> = (0..manifest.chunks.len())
            .filter(|&i| {
                !node.store.has(&manifest.chunks[i])
                    && holders[i].iter().all(|&p| peers.get(p as usize).is_none_or(|p| p == me))
            })
            .collect();
        if unheld.is_empty() {
            unheld_since = None;
        } else {
            let since = *unheld_since.get_or_insert_with(Instant::now);
            let first = unheld[0];
            let what = format!(
                "{} of {} chunks have no live holder in the swarm (first: chunk {first}, {})",
                unheld.len(),
                manifest.chunks.len(),
                manifest.chunks[first].short()
            );
            if since.elapsed() >= NO_HOLDER_WAIT {
                bail!("{what}: the file cannot be completed until a peer holding them comes back");
            }
            if rounds == 1 || since.elapsed() < Duration::from_secs(1) {
                tracing::warn!("{what}; waiting up to {NO_HOLDER_WAIT:?} for one to appear");
            }
        }
        let missing = fetch_round(node, &manifest, &peers, holders, &progress, &fetched).await?;
        if missing == 0 {
            let stored = StoredFile { manifest, meta };
            node.store.put_file(&stored).map_err(PeerError::from)?;
            return Ok(stored);
        }
        if started.elapsed() > GIVE_UP_AFTER {
            bail!(
                "{missing} of {} chunks could not be fetched: no live peer delivered them in {:?} ({rounds} attempts)",
                manifest.chunks.len(),
                GIVE_UP_AFTER
            );
        }
        tracing::info!(missing, "some chunks are still missing; looking for other holders");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One pass over the current holders; returns the number of chunks still missing.
async fn fetch_round(
    node: &Arc<Node>,
    manifest: &Manifest,
    peers: &[PeerId],
    holders: Vec<Vec<u32>>,
    progress: &Progress,
    fetched: &Arc<AtomicU64>,
) -> anyhow::Result<usize> {
    let me = node.peer_id().clone();
    let have: Vec<bool> = manifest.chunks.iter().map(|c| node.store.has(c)).collect();
    let holders: Vec<Vec<PeerIx>> = holders
        .into_iter()
        .map(|hs| hs.into_iter().filter(|&i| peers.get(i as usize).is_some_and(|p| *p != me)).collect())
        .collect();
    let sched = Scheduler::new(holders, &have);
    let stored: u64 = (0..have.len()).filter(|&i| have[i]).map(|i| manifest.chunk_len(i) as u64).sum();
    progress(stored, manifest.size, fetched.load(Ordering::Relaxed));
    if sched.is_complete() {
        return Ok(0);
    }
    let round = Arc::new(Round {
        manifest: manifest.clone(),
        sched: Mutex::new(sched),
        progress: progress.clone(),
        fetched: fetched.clone(),
        stored: AtomicU64::new(stored),
        fatal: Mutex::new(None),
    });
    let mut lanes = Vec::new();
    for (ix, peer) in peers.iter().enumerate().filter(|(_, p)| **p != me).take(MAX_SOURCES) {
        for _ in 0..PIPELINE {
            let (node, round, peer) = (node.clone(), round.clone(), peer.clone());
            lanes.push(tokio::spawn(async move { lane(&node, &round, ix as PeerIx, &peer).await }));
        }
    }
    for l in lanes {
        let _ = l.await;
    }
    if let Some(e) = round.fatal.lock().unwrap().take() {
        bail!("cannot store the file's chunks: {e}");
    }
    let remaining = round.sched.lock().unwrap().remaining();
    Ok(remaining)
}

/// One request at a time from one source, until the scheduler has nothing for it.
async fn lane(node: &Arc<Node>, round: &Round, ix: PeerIx, peer: &PeerId) {
    loop {
        if round.fatal.lock().unwrap().is_some() {
            return;
        }
        let next = round.sched.lock().unwrap().next_for(ix);
        let Some(index) = next else {
            let finished = {
                let sched = round.sched.lock().unwrap();
                sched.is_complete() || !sched.has_work_for(ix)
            };
            if finished {
                return;
            }
            // Others still work on chunks this source might have to take over.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let chunk = round.manifest.chunks[index];
        match node.fetch_chunk(peer, chunk, round.manifest.chunk_len(index)).await {
            Ok(()) => {
                let mut sched = round.sched.lock().unwrap();
                if sched.done(index, ix) {
                    let len = round.manifest.chunk_len(index) as u64;
                    let bytes = round.fetched.fetch_add(len, Ordering::Relaxed) + len;
                    let stored = round.stored.fetch_add(len, Ordering::Relaxed) + len;
                    (round.progress)(stored, round.manifest.size, bytes);
                }
            }
            Err(FetchError::Missing) | Err(FetchError::Bad(_)) => round.sched.lock().unwrap().failed(index, ix),
            Err(FetchError::Store(e)) => {
                tracing::error!("cannot store chunk {index}: {e}");
                round.sched.lock().unwrap().failed(index, ix);
                round.fatal.lock().unwrap().get_or_insert(e);
                return;
            }
            Err(FetchError::Closed(e)) => {
                tracing::warn!(peer = %peer.short(), "source lost: {e}");
                round.sched.lock().unwrap().peer_gone(ix);
                return;
            }
        }
    }
}

/// Writes the file's bytes from the store to `out` (through a temporary file, then rename).
pub fn assemble(node: &Node, file: &StoredFile, out: &Path, force: bool) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    if out.exists() && !force {
        bail!(PeerError::OutputExists(out.to_owned()));
    }
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.pp-part", file.manifest.file_id().short()));
    let result = (|| -> anyhow::Result<()> {
        let f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut f = std::io::BufWriter::new(f);
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
