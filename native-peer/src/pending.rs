//! Gets not finished yet, kept in the data dir (`pending-gets.json`), so that
//! `pp-peer run --resume` carries on with them after a crash or a stop: a `get` that writes a
//! file is listed when it starts and unlisted when it ends (written, or failed with an error its
//! client was told). One cut short by the process dying, or by its stop, stays listed. The
//! chunks it verified are in the store already and are not fetched again.
//!
//! Not listed: gets of private files (their key or passphrase is never written to disk) and
//! gets to stdout. The list is small and bounded ([`MAX_PENDING`], the oldest go first); a
//! damaged list is set aside with a warning, never a reason not to start.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use swarm_core::FileId;

/// Gets listed at most.
pub const MAX_PENDING: usize = 256;

/// One get to carry on with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingGet {
    pub file: FileId,
    /// Where the file is written (absolute).
    pub output: PathBuf,
    /// The get may replace an existing file there.
    pub force: bool,
}

/// The list of a data dir.
pub struct PendingGets {
    path: PathBuf,
    lock: Mutex<()>,
}

impl PendingGets {
    pub fn new(data_dir: &Path) -> Self {
        Self { path: data_dir.join("pending-gets.json"), lock: Mutex::new(()) }
    }

    /// The gets listed (none if the list is missing; a damaged one is renamed aside).
    pub fn list(&self) -> Vec<PendingGet> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.read()
    }

    /// Lists `get` (a get to the same output replaces it).
    pub fn add(&self, get: PendingGet) -> std::io::Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut list = self.read();
        list.retain(|g| g.output != get.output);
        list.push(get);
        let extra = list.len().saturating_sub(MAX_PENDING);
        list.drain(..extra);
        self.write(&list)
    }

    /// Unlists `get` (if listed).
    pub fn remove(&self, get: &PendingGet) -> std::io::Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut list = self.read();
        let before = list.len();
        list.retain(|g| g != get);
        if list.len() == before {
            return Ok(());
        }
        self.write(&list)
    }

    fn read(&self) -> Vec<PendingGet> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", self.path.display());
                return Vec::new();
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(list) => list,
            Err(e) => {
                let aside = self.path.with_extension("json.damaged");
                tracing::warn!("{} is damaged ({e}): set aside as {}", self.path.display(), aside.display());
                let _ = std::fs::rename(&self.path, aside);
                Vec::new()
            }
        }
    }

    /// Replaces the list whole (a temporary file renamed over it: a crash leaves the old or
    /// the new list, never half of one).
    fn write(&self, list: &[PendingGet]) -> std::io::Result<()> {
        if list.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(list).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(n: u8, out: &str) -> PendingGet {
        PendingGet { file: FileId([n; 32]), output: PathBuf::from(out), force: false }
    }

    #[test]
    fn gets_are_listed_until_they_end_and_the_list_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = PendingGets::new(dir.path());
        assert!(p.list().is_empty());
        p.add(get(1, "/o/a")).unwrap();
        p.add(get(2, "/o/b")).unwrap();
        p.add(get(3, "/o/a")).unwrap();
        assert_eq!(PendingGets::new(dir.path()).list(), vec![get(2, "/o/b"), get(3, "/o/a")], "one get per output");
        p.remove(&get(2, "/o/b")).unwrap();
        p.remove(&get(9, "/o/z")).unwrap();
        assert_eq!(p.list(), vec![get(3, "/o/a")]);
        p.remove(&get(3, "/o/a")).unwrap();
        assert!(!dir.path().join("pending-gets.json").exists(), "an empty list leaves no file");
    }

    #[test]
    fn a_damaged_list_is_set_aside_and_the_list_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pending-gets.json"), b"{not json").unwrap();
        let p = PendingGets::new(dir.path());
        assert!(p.list().is_empty());
        assert!(dir.path().join("pending-gets.json.damaged").exists(), "kept aside for a look");
        for n in 0..(MAX_PENDING + 3) {
            p.add(PendingGet { file: FileId([1; 32]), output: PathBuf::from(format!("/o/{n}")), force: true }).unwrap();
        }
        let list = p.list();
        assert_eq!(list.len(), MAX_PENDING);
        assert_eq!(list[0].output, PathBuf::from("/o/3"), "the oldest went");
    }
}
