//! Downloads a file from the swarm. The peer core does the work (locate, fetch from several
//! holders at once, verify, store, announce, re-locate when sources run out: see
//! `swarm_core::peer`); this module is the caller's side: the progress callback, and
//! assembling the output from the store. Chunks already stored are not fetched again, so an
//! interrupted download resumes where it stopped.
//!
//! The output is written to a hidden temporary file beside it and renamed at the end, so the
//! final name never holds half a file; on shutdown ([`stop_writing`]) the temporary files
//! being written are removed.
//!
//! The output `-` is stdout ([`is_stdout`], `get -o -`, [`fetch_to_stdout`]): the chunks go
//! there in order while the download runs, each once it is verified and in the store (read
//! back and checked again, and for a private file authenticated as it is decrypted): never a
//! byte that was not verified, never out of order. A failure (the download's, or a closed
//! pipe) stops the bytes where it happens and the exit code says so; a reader that goes away
//! does not stop the download (its chunks are kept, as for any `get`). A running peer cannot
//! write to its client's stdout: the client has it assemble the file into a temporary file in
//! the data dir and copies that out ([`copy_out`]).

use crate::cli::PeerError;
use crate::node::Node;
use crate::store::{ChunkStore, StoredFile};
use anyhow::{anyhow, bail, Context};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use swarm_core::{ChunkId, FileId};

pub use crate::driver::Progress;

/// Fetches every chunk of `file` into the store; returns its record.
pub async fn fetch(node: &Arc<Node>, file: FileId, progress: Progress) -> anyhow::Result<StoredFile> {
    node.download(file, progress).await
}

/// Set once the process is stopping: no output is finished after it.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Temporary files being written now.
static PARTS: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// Stops every output being written and removes its temporary file (a peer shutting down
/// calls this; the final names were never written).
pub fn stop_writing() {
    STOPPING.store(true, Ordering::SeqCst);
    for p in PARTS.lock().unwrap().take().unwrap_or_default() {
        let _ = std::fs::remove_file(p);
    }
}

/// Whether this process is stopping ([`stop_writing`] was called).
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Where a running peer writes a file its client prints to stdout (in the data dir, copied
/// out by the client): one per client process.
pub fn stdout_via_file(data_dir: &Path) -> PathBuf {
    data_dir.join(format!(".get-{}{STDOUT_VIA_SUFFIX}", std::process::id()))
}

const STDOUT_VIA_SUFFIX: &str = ".pp-out";

/// Whether `out` is such a file ([`stdout_via_file`]).
pub fn is_stdout_via_file(out: &Path) -> bool {
    out.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(".get-") && n.ends_with(STDOUT_VIA_SUFFIX))
}

/// Whether `out` names stdout (`-`).
pub fn is_stdout(out: &Path) -> bool {
    out.as_os_str() == "-"
}

/// Fails with [`PeerError::OutputExists`] if `out` exists and `force` is not set (stdout
/// always may be written).
pub fn check_output(out: &Path, force: bool) -> Result<(), PeerError> {
    if !force && !is_stdout(out) && (out.exists() || out.is_symlink()) {
        return Err(PeerError::OutputExists(out.to_owned()));
    }
    Ok(())
}

/// A stored chunk turned into the file's bytes (a private file's decryption), by index.
pub type Open = Box<dyn FnMut(u64, &mut Vec<u8>) -> anyhow::Result<()> + Send>;

/// Fetches `file` (whose manifest lists `chunks`, checked against its id by the caller) and
/// writes its bytes to stdout in order as the chunks land in the store (see the module doc).
pub async fn fetch_to_stdout(
    node: &Arc<Node>,
    file: FileId,
    chunks: Vec<ChunkId>,
    progress: Progress,
    open: Open,
) -> anyhow::Result<StoredFile> {
    let over = Arc::new(AtomicBool::new(false));
    let (store, over2) = (node.store.clone(), over.clone());
    let writer = tokio::task::spawn_blocking(move || stream_to_stdout(&store, &chunks, &over2, open));
    let fetched = fetch(node, file, progress).await;
    over.store(true, Ordering::SeqCst);
    let written = writer.await?;
    let stored = fetched?;
    let n = written?;
    anyhow::ensure!(n == stored.manifest.chunks.len(), "chunk {n} vanished from the store before it was written");
    Ok(stored)
}

/// Writes `chunks` to stdout in order, each once the store has it (verified as it is read),
/// until all are written, or `over` (the download ended) is set and the next one is missing;
/// returns how many were written.
fn stream_to_stdout(
    store: &ChunkStore,
    chunks: &[ChunkId],
    over: &AtomicBool,
    mut open: Open,
) -> anyhow::Result<usize> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    for (i, c) in chunks.iter().enumerate() {
        let mut bytes = loop {
            if STOPPING.load(Ordering::SeqCst) {
                bail!("stopped before the whole file was written to stdout");
            }
            // (`over` read first: a chunk stored just before the download ended is seen.)
            let ended = over.load(Ordering::SeqCst);
            if let Some(b) = store.get(c)? {
                break b;
            }
            if ended {
                return Ok(i);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        open(i as u64, &mut bytes)?;
        w.write_all(&bytes).and_then(|_| w.flush()).context("cannot write to stdout")?;
    }
    Ok(chunks.len())
}

/// Copies the file at `path` to stdout and removes it (the output a running peer assembled
/// for `get -o -`); the file is unlinked first, so nothing is left behind whatever happens.
pub fn copy_out(path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let _ = std::fs::remove_file(path);
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    std::io::copy(&mut f, &mut w).context("cannot write to stdout")?;
    w.flush().context("cannot write to stdout")
}

/// Writes the file's bytes from the store to `out` (through a temporary file, then rename).
pub fn assemble(node: &Node, file: &StoredFile, out: &Path, force: bool) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    check_output(out, force)?;
    anyhow::ensure!(!is_stdout(out), "stdout is written while the file is fetched (fetch_to_stdout)");
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.pp-part", file.manifest.file_id().short()));
    PARTS.lock().unwrap().get_or_insert_default().insert(tmp.clone());
    let result = (|| -> anyhow::Result<()> {
        let f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut f = std::io::BufWriter::new(f);
        for (i, c) in file.manifest.chunks.iter().enumerate() {
            if STOPPING.load(Ordering::SeqCst) {
                bail!("stopped before {} was written", out.display());
            }
            let bytes = node.store.get(c)?.ok_or_else(|| anyhow!("chunk {i} vanished from the store"))?;
            f.write_all(&bytes)?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        if STOPPING.load(Ordering::SeqCst) {
            bail!("stopped before {} was written", out.display());
        }
        std::fs::rename(&tmp, out)?;
        Ok(())
    })();
    if let Some(parts) = PARTS.lock().unwrap().as_mut() {
        parts.remove(&tmp);
    }
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|_| out.to_owned())
}
