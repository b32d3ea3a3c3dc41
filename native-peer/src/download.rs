//! Downloads a file from the swarm. The peer core does the work (locate, fetch from several
//! holders at once, verify, store, announce, re-locate when sources run out: see
//! `swarm_core::peer`); this module is the caller's side: the progress callback, and
//! assembling the output from the store. Chunks already stored are not fetched again, so an
//! interrupted download resumes where it stopped.

use crate::cli::PeerError;
use crate::node::Node;
use crate::store::StoredFile;
use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use swarm_core::FileId;

pub use crate::driver::Progress;

/// Fetches every chunk of `file` into the store; returns its record.
pub async fn fetch(node: &Arc<Node>, file: FileId, progress: Progress) -> anyhow::Result<StoredFile> {
    node.download(file, progress).await
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
