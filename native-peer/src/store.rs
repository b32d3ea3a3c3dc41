//! The chunk store on disk: content-addressed (`chunks/ab/abcd…`), every write atomic
//! (temporary file, fsync, rename), every chunk verified before it is stored and again before
//! it is served. Also keeps the manifests of files this peer knows, for `ls` and the gateway.

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use swarm_core::wire::FileMeta;
use swarm_core::{ChunkId, FileId, Manifest};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Content(#[from] swarm_core::content::ContentError),
    #[error("chunk store I/O at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no room: storing {need} more bytes would exceed the {capacity}-byte limit ({used} used)")]
    NoRoom { need: u64, used: u64, capacity: u64 },
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
        for sub in ["chunks", "files", "tmp"] {
            std::fs::create_dir_all(root.join(sub))
                .with_context(|| format!("creating {}", root.join(sub).display()))?;
        }
        // Leftovers of writes interrupted by a crash: never renamed into place, so never valid.
        if let Ok(rd) = std::fs::read_dir(root.join("tmp")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let mut store = Self { root, capacity, used: Arc::default() };
        let used: u64 =
            store.list().iter().filter_map(|c| std::fs::metadata(store.chunk_path(c)).ok()).map(|m| m.len()).sum();
        store.used = Arc::new(AtomicU64::new(used));
        Ok(store)
    }

    /// Bytes of chunks stored.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether `bytes` more fit under the capacity.
    pub fn has_room(&self, bytes: u64) -> bool {
        self.used().saturating_add(bytes) <= self.capacity
    }

    /// Deletes a chunk (e.g. trimmed by the tracker). Returns whether it was there.
    pub fn remove(&self, id: &ChunkId) -> bool {
        let path = self.chunk_path(id);
        match std::fs::metadata(&path) {
            Ok(m) if std::fs::remove_file(&path).is_ok() => {
                self.used.fetch_sub(m.len().min(self.used()), Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    fn chunk_path(&self, id: &ChunkId) -> PathBuf {
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
        if !self.has_room(need) {
            return Err(StoreError::NoRoom { need, used: self.used(), capacity: self.capacity });
        }
        self.write_atomic(&path, bytes)?;
        self.used.fetch_add(need, Ordering::Relaxed);
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
            tracing::warn!(chunk = %id.short(), "corrupt chunk on disk: dropping it");
            self.remove(id);
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
    fn corrupt_chunks_are_dropped_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let id = ChunkId::of(b"chunk");
        store.put(&id, b"chunk").unwrap();
        std::fs::write(store.chunk_path(&id), b"chunK").unwrap();
        assert_eq!(store.get(&id).unwrap(), None);
        assert!(!store.has(&id));
    }
}
