//! The chunk store on disk: content-addressed (`chunks/ab/abcd…`), every write atomic
//! (temporary file, fsync, rename), every chunk verified before it is stored and again before
//! it is served. Also keeps the manifests of files this peer knows, for `ls` and the gateway.
//!
//! Per-tracker accounting: each chunk this store takes is recorded with the swarm it was taken
//! for (`placed/<chunk>`: the origin of the first configured tracker URL, see
//! [`ChunkStore::set_swarm`]; the nodes of a cluster share it, as they share the welcome's
//! node list). A `trim` from one swarm never deletes a copy another swarm placed
//! ([`ChunkStore::placed_elsewhere`]); copies of files the user keeps are never trimmed at all.
//! A chunk with no record (stored by a version before this one) counts as the current swarm's.

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use swarm_core::wire::FileMeta;
use swarm_core::{ChunkId, FileId, Manifest};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Content(#[from] swarm_core::content::ContentError),
    #[error("chunk store I/O at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no room: storing {need} more bytes would exceed the {capacity}-byte limit ({used} used)")]
    NoRoom { need: u64, used: u64, capacity: u64 },
    #[error("no room on the disk holding {path}")]
    DiskFull { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

#[derive(Debug, Clone)]
pub struct ChunkStore {
    root: PathBuf,
    /// Most bytes of chunks this store keeps (`--max-storage`).
    pub capacity: u64,
    used: Arc<AtomicU64>,
    /// Told about every chunk found corrupt and dropped, so the tracker can be told too.
    on_corrupt: Arc<Mutex<Option<UnboundedSender<ChunkId>>>>,
    /// The swarm new chunks are taken for (see the module doc).
    swarm: Arc<Mutex<Option<String>>>,
}

/// What a scrub found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ScrubReport {
    /// Chunks read and hashed.
    pub checked: usize,
    /// Chunks whose bytes did not hash to their name: deleted.
    pub dropped: Vec<ChunkId>,
    /// Leftover temporary files removed.
    pub tmp_removed: usize,
}

/// A file record kept beside the chunks.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredFile {
    pub manifest: Manifest,
    pub meta: FileMeta,
}

impl ChunkStore {
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        Self::open_with_capacity(data_dir, u64::MAX)
    }

    pub fn open_with_capacity(data_dir: &Path, capacity: u64) -> anyhow::Result<Self> {
        let root = data_dir.to_path_buf();
        for sub in ["chunks", "files", "tmp", "placed"] {
            std::fs::create_dir_all(root.join(sub))
                .with_context(|| format!("creating {}", root.join(sub).display()))?;
        }
        // Leftovers of writes interrupted by a crash: never renamed into place, so never valid.
        if let Ok(rd) = std::fs::read_dir(root.join("tmp")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let mut store =
            Self { root, capacity, used: Arc::default(), on_corrupt: Arc::default(), swarm: Arc::default() };
        let used: u64 =
            store.list().iter().filter_map(|c| std::fs::metadata(store.chunk_path(c)).ok()).map(|m| m.len()).sum();
        store.used = Arc::new(AtomicU64::new(used));
        Ok(store)
    }

    /// Sends every chunk later found corrupt (and deleted) to `tx`.
    pub fn notify_corrupt(&self, tx: UnboundedSender<ChunkId>) {
        *self.on_corrupt.lock().unwrap() = Some(tx);
    }

    fn corrupt(&self, id: &ChunkId) {
        tracing::warn!(chunk = %id.short(), "corrupt chunk on disk: dropping it");
        if self.remove(id) {
            if let Some(tx) = self.on_corrupt.lock().unwrap().as_ref() {
                let _ = tx.send(*id);
            }
        }
    }

    /// Reads and hashes every stored chunk, deleting those that are corrupt, and removes
    /// leftover temporary files of other processes' interrupted writes (not our own: a
    /// write may be in progress).
    pub fn scrub(&self) -> ScrubReport {
        let mut report = ScrubReport::default();
        for id in self.list() {
            match std::fs::read(self.chunk_path(&id)) {
                Ok(bytes) => {
                    report.checked += 1;
                    if id.verify(&bytes).is_err() {
                        self.corrupt(&id);
                        report.dropped.push(id);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(chunk = %id.short(), "cannot read chunk: {e}"),
            }
        }
        let mine = format!("{}.", std::process::id());
        if let Ok(rd) = std::fs::read_dir(self.root.join("tmp")) {
            for e in rd.flatten() {
                if !e.file_name().to_string_lossy().starts_with(&mine) && std::fs::remove_file(e.path()).is_ok() {
                    report.tmp_removed += 1;
                }
            }
        }
        report
    }

    /// Bytes of chunks stored.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether `bytes` more fit under the capacity.
    pub fn has_room(&self, bytes: u64) -> bool {
        self.used().saturating_add(bytes) <= self.capacity
    }

    /// The swarm (a tracker origin) chunks stored from now on are taken for.
    pub fn set_swarm(&self, swarm: String) {
        *self.swarm.lock().unwrap() = Some(swarm);
    }

    fn placed_path(&self, id: &ChunkId) -> PathBuf {
        self.root.join("placed").join(id.to_hex())
    }

    /// The swarm chunk `id` was taken for, if recorded.
    pub fn placed_by(&self, id: &ChunkId) -> Option<String> {
        std::fs::read_to_string(self.placed_path(id)).ok()
    }

    /// Whether chunk `id` was taken for a swarm other than the current one: that swarm's
    /// tracker may trim it, not this one.
    pub fn placed_elsewhere(&self, id: &ChunkId) -> bool {
        let current = self.swarm.lock().unwrap().clone();
        matches!((self.placed_by(id), current), (Some(p), Some(c)) if p != c)
    }

    /// Deletes a chunk (e.g. trimmed by the tracker). Returns whether it was there.
    pub fn remove(&self, id: &ChunkId) -> bool {
        let _ = std::fs::remove_file(self.placed_path(id));
        let path = self.chunk_path(id);
        match std::fs::metadata(&path) {
            Ok(m) if std::fs::remove_file(&path).is_ok() => {
                self.used.fetch_sub(m.len().min(self.used()), Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Where chunk `id` lives on disk (tests corrupt chunks through it).
    pub fn chunk_path(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join("chunks").join(&hex[..2]).join(hex)
    }

    pub fn has(&self, id: &ChunkId) -> bool {
        self.chunk_path(id).is_file()
    }

    /// Verifies and stores a chunk. Bytes that do not hash to `id` are refused and never written.
    pub fn put(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), StoreError> {
        id.verify(bytes)?;
        let path = self.chunk_path(id);
        if path.is_file() {
            return Ok(());
        }
        let need = bytes.len() as u64;
        // Reserve the room first, so concurrent writers cannot together overshoot the capacity.
        let reserved = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_add(need).filter(|n| *n <= self.capacity));
        if reserved.is_err() {
            return Err(StoreError::NoRoom { need, used: self.used(), capacity: self.capacity });
        }
        if let Err(e) = self.write_atomic(&path, bytes) {
            self.used.fetch_sub(need, Ordering::AcqRel);
            return Err(e);
        }
        let swarm = self.swarm.lock().unwrap().clone();
        if let Some(swarm) = swarm {
            // Best effort: without the record the copy counts as the current swarm's.
            let _ = std::fs::write(self.placed_path(id), swarm);
        }
        Ok(())
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = path.parent().expect("store paths have a parent");
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = self.root.join("tmp").join(format!("{}.{}", std::process::id(), rand::random::<u64>()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            if e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded {
                return Err(StoreError::DiskFull { path: path.to_owned() });
            }
            return Err(io(path)(e));
        }
        Ok(())
    }

    /// Reads a chunk and verifies it; a corrupt chunk is deleted and reported as missing.
    pub fn get(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.chunk_path(id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        if id.verify(&bytes).is_err() {
            self.corrupt(id);
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Every chunk id present on disk (names only; contents are verified when read).
    pub fn list(&self) -> Vec<ChunkId> {
        let mut out = Vec::new();
        let Ok(dirs) = std::fs::read_dir(self.root.join("chunks")) else {
            return out;
        };
        for d in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(d.path()) else {
                continue;
            };
            out.extend(files.flatten().filter_map(|f| f.file_name().to_str()?.parse::<ChunkId>().ok()));
        }
        out
    }

    pub fn put_file(&self, file: &StoredFile) -> Result<(), StoreError> {
        let path = self.root.join("files").join(format!("{}.json", file.manifest.file_id()));
        let json = serde_json::to_vec(file).expect("serializable");
        self.write_atomic(&path, &json)
    }

    /// Forgets a file record (its chunks stay until trimmed or dropped). Returns whether it
    /// was there.
    pub fn remove_file(&self, id: &FileId) -> bool {
        std::fs::remove_file(self.root.join("files").join(format!("{id}.json"))).is_ok()
    }

    pub fn file(&self, id: &FileId) -> Option<StoredFile> {
        let bytes = std::fs::read(self.root.join("files").join(format!("{id}.json"))).ok()?;
        let f: StoredFile = serde_json::from_slice(&bytes).ok()?;
        (f.manifest.file_id() == *id).then_some(f)
    }

    pub fn files(&self) -> Vec<StoredFile> {
        let Ok(rd) = std::fs::read_dir(self.root.join("files")) else {
            return vec![];
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse::<FileId>().ok())
            .filter_map(|id| self.file(&id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_verifies_and_refuses_wrong_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let id = ChunkId::of(b"chunk");
        assert!(matches!(store.put(&id, b"other"), Err(StoreError::Content(_))));
        assert!(!store.has(&id), "a chunk with the wrong hash is never written");
        store.put(&id, b"chunk").unwrap();
        assert_eq!(store.get(&id).unwrap().unwrap(), b"chunk");
        assert_eq!(store.list(), vec![id]);
    }

    #[test]
    fn capacity_is_honoured_and_nothing_half_written_remains() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open_with_capacity(dir.path(), 10).unwrap();
        store.put(&ChunkId::of(b"123456"), b"123456").unwrap();
        let id = ChunkId::of(b"abcdef");
        assert!(matches!(store.put(&id, b"abcdef"), Err(StoreError::NoRoom { .. })));
        assert!(!store.has(&id));
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(store.remove(&ChunkId::of(b"123456")));
        store.put(&id, b"abcdef").unwrap();
        assert_eq!(store.used(), 6);
        let reopened = ChunkStore::open_with_capacity(dir.path(), 10).unwrap();
        assert_eq!(reopened.used(), 6, "usage is recounted from disk");
    }

    #[test]
    fn file_records_are_kept_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let mut b = swarm_core::ManifestBuilder::new(4);
        b.push(b"abcd");
        let f = StoredFile { manifest: b.finish(), meta: FileMeta::public("n", "text/plain") };
        let id = f.manifest.file_id();
        store.put_file(&f).unwrap();
        assert!(store.file(&id).is_some());
        assert!(store.remove_file(&id));
        assert!(store.file(&id).is_none());
        assert!(store.files().is_empty());
        assert!(!store.remove_file(&id), "already gone");
    }

    #[test]
    fn corrupt_chunks_are_dropped_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let id = ChunkId::of(b"chunk");
        store.put(&id, b"chunk").unwrap();
        std::fs::write(store.chunk_path(&id), b"chunK").unwrap();
        assert_eq!(store.get(&id).unwrap(), None);
        assert!(!store.has(&id));
    }

    #[test]
    fn scrub_drops_corrupt_chunks_and_reports_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        store.notify_corrupt(tx);
        let good = ChunkId::of(b"good");
        let bad = ChunkId::of(b"bad");
        store.put(&good, b"good").unwrap();
        store.put(&bad, b"bad").unwrap();
        std::fs::write(store.chunk_path(&bad), b"BAD").unwrap();
        std::fs::write(dir.path().join("tmp").join("1.2"), b"half").unwrap();
        let report = store.scrub();
        assert_eq!(report.checked, 2);
        assert_eq!(report.dropped, vec![bad]);
        assert_eq!(report.tmp_removed, 1);
        assert_eq!(store.list(), vec![good]);
        assert_eq!(store.used(), 4);
        assert_eq!(rx.try_recv().unwrap(), bad);
    }
}
