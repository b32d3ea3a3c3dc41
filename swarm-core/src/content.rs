//! Content addressing: every chunk is named by the SHA-256 of its bytes, every file by the
//! SHA-256 of its size, chunk size and ordered chunk ids. The same bytes give the same id,
//! whatever they are called; names are metadata kept beside the manifest.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Default chunk size: 256 KiB keeps the index small and a chunk a few data-channel frames.
pub const CHUNK_SIZE: u32 = 256 * 1024;
/// Largest chunk size a manifest may declare (bounds what a peer buffers for one chunk).
pub const MAX_CHUNK_SIZE: u32 = 4 * 1024 * 1024;
/// Largest number of chunks in one manifest (64 GiB at the default chunk size).
pub const MAX_CHUNKS: usize = 262_144;

/// Why a piece of content was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("not a 64-digit hex SHA-256: {0:?}")]
    BadHex(String),
    #[error("chunk hash mismatch: expected {expected}, got {actual}")]
    HashMismatch { expected: ChunkId, actual: ChunkId },
    #[error("manifest is inconsistent: {0}")]
    BadManifest(&'static str),
}

macro_rules! sha_id {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Lower-case hex, 64 digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 12 hex digits, for logs and compact display.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..6])
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
        impl FromStr for $name {
            type Err = ContentError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; 32];
                if s.len() != 64 {
                    return Err(ContentError::BadHex(s.chars().take(80).collect()));
                }
                hex::decode_to_slice(s, &mut out).map_err(|_| ContentError::BadHex(s.chars().take(80).collect()))?;
                Ok(Self(out))
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

sha_id!(ChunkId, "SHA-256 of a chunk's bytes: the chunk's name everywhere in the swarm.");
sha_id!(FileId, "SHA-256 over a file's size, chunk size and ordered chunk ids.");

impl ChunkId {
    /// Hashes `bytes` into their chunk id.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Checks that `bytes` really are this chunk. Every receiver calls this before storing or
    /// serving a chunk: peers are never trusted.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), ContentError> {
        let actual = Self::of(bytes);
        if actual == *self {
            Ok(())
        } else {
            Err(ContentError::HashMismatch { expected: *self, actual })
        }
    }
}

/// What a file is made of: enough to fetch and verify every byte. Names are not part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// File size in bytes.
    pub size: u64,
    /// Size of every chunk but the last.
    pub chunk_size: u32,
    /// Chunk ids in file order.
    pub chunks: Vec<ChunkId>,
}

impl Manifest {
    /// The file id: SHA-256 over size, chunk size and the ordered chunk ids.
    pub fn file_id(&self) -> FileId {
        let mut h = Sha256::new();
        h.update(b"peer-pressure/file/v1");
        h.update(self.size.to_be_bytes());
        h.update(self.chunk_size.to_be_bytes());
        for c in &self.chunks {
            h.update(c.0);
        }
        FileId(h.finalize().into())
    }

    /// Number of chunks a file of `size` bytes has at `chunk_size`.
    pub fn chunk_count_for(size: u64, chunk_size: u32) -> usize {
        size.div_ceil(chunk_size as u64) as usize
    }

    /// Byte length of chunk `index`.
    pub fn chunk_len(&self, index: usize) -> u32 {
        let start = index as u64 * self.chunk_size as u64;
        (self.size - start).min(self.chunk_size as u64) as u32
    }

    /// Byte offset of chunk `index` in the file.
    pub fn chunk_offset(&self, index: usize) -> u64 {
        index as u64 * self.chunk_size as u64
    }

    /// Checks the manifest is self-consistent and within bounds (never trust a peer's manifest).
    pub fn validate(&self) -> Result<(), ContentError> {
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(ContentError::BadManifest("chunk size out of range"));
        }
        if self.chunks.len() > MAX_CHUNKS {
            return Err(ContentError::BadManifest("too many chunks"));
        }
        if Self::chunk_count_for(self.size, self.chunk_size) != self.chunks.len() {
            return Err(ContentError::BadManifest("chunk count does not match size"));
        }
        Ok(())
    }
}

/// Builds a manifest from a stream of chunks, so a large file is never held whole in memory:
/// feed it each chunk's bytes in order (every chunk `chunk_size` long but the last).
#[derive(Debug)]
pub struct ManifestBuilder {
    chunk_size: u32,
    size: u64,
    chunks: Vec<ChunkId>,
    ended: bool,
}

impl ManifestBuilder {
    pub fn new(chunk_size: u32) -> Self {
        Self { chunk_size, size: 0, chunks: Vec::new(), ended: false }
    }

    /// Adds the next chunk and returns its id. A chunk shorter than `chunk_size` must be the last.
    pub fn push(&mut self, bytes: &[u8]) -> ChunkId {
        assert!(!self.ended, "a short chunk must be the last one");
        assert!(bytes.len() <= self.chunk_size as usize, "chunk longer than chunk size");
        if bytes.len() < self.chunk_size as usize {
            self.ended = true;
        }
        let id = ChunkId::of(bytes);
        self.size += bytes.len() as u64;
        self.chunks.push(id);
        id
    }

    pub fn finish(self) -> Manifest {
        Manifest { size: self.size, chunk_size: self.chunk_size, chunks: self.chunks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_of(data: &[u8], chunk_size: u32) -> Manifest {
        let mut b = ManifestBuilder::new(chunk_size);
        for c in data.chunks(chunk_size as usize) {
            b.push(c);
        }
        b.finish()
    }

    #[test]
    fn same_bytes_same_id_and_any_change_moves_it() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let a = manifest_of(&data, 1024);
        assert_eq!(a.file_id(), manifest_of(&data, 1024).file_id());
        assert_eq!(a.chunks.len(), 10);
        assert_eq!(a.chunk_len(9), 10_000 - 9 * 1024);
        a.validate().unwrap();
        let mut other = data.clone();
        other[5000] ^= 1;
        assert_ne!(a.file_id(), manifest_of(&other, 1024).file_id());
        assert_ne!(a.file_id(), manifest_of(&data, 2048).file_id());
    }

    #[test]
    fn verify_refuses_wrong_bytes() {
        let id = ChunkId::of(b"hello");
        id.verify(b"hello").unwrap();
        assert!(matches!(id.verify(b"hellO"), Err(ContentError::HashMismatch { .. })));
    }

    #[test]
    fn ids_parse_only_exact_hex() {
        let id = ChunkId::of(b"x");
        assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
        assert!("abc".parse::<ChunkId>().is_err());
        assert!("zz".repeat(32).parse::<ChunkId>().is_err());
    }

    #[test]
    fn validate_catches_lies() {
        let mut m = manifest_of(&[1u8; 3000], 1000);
        m.size = 5000;
        assert!(m.validate().is_err());
        m.size = 3000;
        m.chunk_size = 0;
        assert!(m.validate().is_err());
        let empty = manifest_of(&[], 1000);
        assert_eq!(empty.chunks.len(), 0);
        empty.validate().unwrap();
    }
}
