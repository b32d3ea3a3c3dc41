//! Where this tab keeps chunk bytes.
//!
//! [`ChunkStore`] is the seam: today [`MemoryStore`] keeps verified chunks in a `HashMap` in the
//! wasm heap; an IndexedDB store can replace it later (keeping an in-memory index for the
//! synchronous `has`/`ids` queries and writing through). Callers only ever put chunks whose
//! SHA-256 they have verified (or computed themselves while uploading).

use std::collections::HashMap;
use std::rc::Rc;
use swarm_core::ChunkId;

/// A chunk's bytes, shared without copying between the store, the server and the page.
pub type ChunkBytes = Rc<Vec<u8>>;

/// Content-addressed chunk storage.
pub trait ChunkStore {
    /// Whether the chunk is stored.
    fn has(&self, id: &ChunkId) -> bool;
    /// The chunk's bytes, if stored.
    fn get(&self, id: &ChunkId) -> Option<ChunkBytes>;
    /// Stores a verified chunk; returns `true` if it was new.
    fn put(&mut self, id: ChunkId, bytes: ChunkBytes) -> bool;
    /// Forgets a chunk; returns `true` if it was stored.
    fn remove(&mut self, id: &ChunkId) -> bool;
    /// Every stored chunk id (the inventory announced to the tracker).
    fn ids(&self) -> Vec<ChunkId>;
    /// Number of stored chunks.
    fn len(&self) -> usize;
    /// Total stored bytes.
    fn bytes(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Chunks in memory: lost on reload, which is fine for a walking skeleton.
#[derive(Debug, Default)]
pub struct MemoryStore {
    chunks: HashMap<ChunkId, ChunkBytes>,
    bytes: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl ChunkStore for MemoryStore {
    fn has(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    fn get(&self, id: &ChunkId) -> Option<ChunkBytes> {
        self.chunks.get(id).cloned()
    }

    fn put(&mut self, id: ChunkId, bytes: ChunkBytes) -> bool {
        if self.chunks.contains_key(&id) {
            return false;
        }
        self.bytes += bytes.len() as u64;
        self.chunks.insert(id, bytes);
        true
    }

    fn remove(&mut self, id: &ChunkId) -> bool {
        match self.chunks.remove(id) {
            Some(b) => {
                self.bytes -= b.len() as u64;
                true
            }
            None => false,
        }
    }

    fn ids(&self) -> Vec<ChunkId> {
        let mut ids: Vec<ChunkId> = self.chunks.keys().copied().collect();
        ids.sort();
        ids
    }

    fn len(&self) -> usize {
        self.chunks.len()
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }
}
