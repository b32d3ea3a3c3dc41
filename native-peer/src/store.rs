//! The chunk store on disk: content-addressed (`chunks/ab/abcd…`), every write atomic
//! (temporary file, fsync, rename), every chunk verified before it is stored and again before
//! it is served. Also keeps the manifests of files this peer knows, for `ls` and the gateway.

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use swarm_core::wire::FileMeta;
use swarm_core::{ChunkId, FileId, Manifest};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Content(#[from] swarm_core::content::ContentError),
    #[error("chunk store I/O at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

#[derive(Debug, Clone)]
pub struct ChunkStore {
    root: PathBuf,
}

/// A file record kept beside the chunks.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredFile {
    pub manifest: Manifest,
    pub meta: FileMeta,
}

impl ChunkStore {
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
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
        Ok(Self { root })
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
        self.write_atomic(&path, bytes)
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
            let _ = std::fs::remove_file(&path);
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
