//! HTTP byte ranges (RFC 9110 `Range: bytes=…`), read once for every peer that serves a file
//! by range: the native peer's HTTP gateway and the web app's stream for its media player.
//!
//! [`ChunkLayout`] maps the offsets a reader asks for onto chunks, for both of them: a public
//! file's offsets are its manifest's; a private file's are plaintext offsets, chunk `i` holding
//! plaintext bytes `i * PLAIN_CHUNK ..` (each ciphertext chunk carries a 16-byte tag, see
//! [`crate::envelope`]), and its size is the sealed plaintext size.

use crate::content::Manifest;
use crate::envelope::PLAIN_CHUNK;
use std::ops::{Range, RangeInclusive};

/// A requested byte range, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeReq {
    Full,
    Partial(u64, u64),
    Unsatisfiable,
}

/// Interprets a `Range` header for a body of `size` bytes. Only single byte ranges are
/// honoured; anything else (several ranges, other units, bad syntax) is ignored and the whole
/// body is served, as RFC 9110 allows.
pub fn parse_range(h: Option<&str>, size: u64) -> RangeReq {
    let Some(spec) = h.and_then(|h| h.trim().strip_prefix("bytes=")) else { return RangeReq::Full };
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeReq::Full };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else { return RangeReq::Full };
        if n == 0 || size == 0 {
            return RangeReq::Unsatisfiable;
        }
        return RangeReq::Partial(size - n.min(size), size - 1);
    }
    let Ok(start) = a.parse::<u64>() else { return RangeReq::Full };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return RangeReq::Full,
        }
    };
    if start >= size {
        return RangeReq::Unsatisfiable;
    }
    RangeReq::Partial(start, end.min(size - 1))
}

/// Where a file's bytes lie over its chunks, in the offsets a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    /// Bytes in the file as read (a private file's plaintext size).
    pub size: u64,
    /// Bytes per chunk as read (all but the last).
    pub chunk_len: u64,
    /// Number of chunks.
    pub chunks: usize,
}

impl ChunkLayout {
    /// A public file: the manifest's own offsets.
    pub fn public(manifest: &Manifest) -> Self {
        Self { size: manifest.size, chunk_len: manifest.chunk_size as u64, chunks: manifest.chunks.len() }
    }

    /// A private file of `plain_size` plaintext bytes (from its opened sealed meta).
    pub fn private(manifest: &Manifest, plain_size: u64) -> Self {
        Self { size: plain_size, chunk_len: PLAIN_CHUNK as u64, chunks: manifest.chunks.len() }
    }

    /// The chunk holding byte `offset` (the last chunk for offsets past the end).
    pub fn chunk_at(&self, offset: u64) -> usize {
        ((offset / self.chunk_len.max(1)) as usize).min(self.chunks.saturating_sub(1))
    }

    /// The offset of chunk `index`'s first byte.
    pub fn chunk_start(&self, index: usize) -> u64 {
        index as u64 * self.chunk_len
    }

    /// The chunks holding bytes `start..end` (`start < end`).
    pub fn chunks_in(&self, start: u64, end: u64) -> RangeInclusive<usize> {
        self.chunk_at(start)..=self.chunk_at(end.saturating_sub(1).max(start))
    }

    /// The part of chunk `index` (`chunk_bytes` long as read) that lies in `start..end`; empty
    /// when none does.
    pub fn slice(&self, index: usize, start: u64, end: u64, chunk_bytes: usize) -> Range<usize> {
        let off = self.chunk_start(index);
        let a = start.saturating_sub(off).min(chunk_bytes as u64) as usize;
        let b = end.saturating_sub(off).min(chunk_bytes as u64) as usize;
        a..b.max(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{ChunkId, CHUNK_SIZE};

    fn manifest(size: u64, chunks: usize) -> Manifest {
        Manifest { size, chunk_size: CHUNK_SIZE, chunks: vec![ChunkId::of(b"x"); chunks] }
    }

    #[test]
    fn private_offsets_are_plaintext_offsets() {
        let p = PLAIN_CHUNK as u64;
        let plain = 2 * p + 1000;
        let l = ChunkLayout::private(&manifest(crate::envelope::cipher_size(plain), 3), plain);
        assert_eq!(l.size, plain);
        assert_eq!((l.chunk_at(0), l.chunk_at(p - 1), l.chunk_at(p), l.chunk_at(plain - 1)), (0, 0, 1, 2));
        // A range across the first boundary takes the end of chunk 0 and the start of chunk 1.
        let (a, b) = (p - 10, p + 10);
        assert_eq!(l.chunks_in(a, b), 0..=1);
        assert_eq!(l.slice(0, a, b, PLAIN_CHUNK), PLAIN_CHUNK - 10..PLAIN_CHUNK);
        assert_eq!(l.slice(1, a, b, PLAIN_CHUNK), 0..10);
        // The short last chunk: a range to the end stops at its length.
        assert_eq!(l.chunks_in(plain - 5, plain), 2..=2);
        assert_eq!(l.slice(2, plain - 5, plain, 1000), 995..1000);
        assert!(l.slice(0, p + 1, p + 2, PLAIN_CHUNK).is_empty(), "a chunk before the range gives nothing");
    }

    #[test]
    fn public_offsets_are_the_manifests() {
        let l = ChunkLayout::public(&manifest(CHUNK_SIZE as u64 + 7, 2));
        assert_eq!(l.chunk_len, CHUNK_SIZE as u64);
        assert_eq!(l.chunks_in(0, l.size), 0..=1);
        assert_eq!(l.chunks_in(5, 6), 0..=0);
        assert_eq!(l.slice(1, 0, l.size, 7), 0..7);
    }

    #[test]
    fn ranges() {
        use RangeReq::*;
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Partial(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Partial(90, 99));
        assert_eq!(parse_range(Some("bytes=90-1000"), 100), Partial(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Partial(90, 99));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), Partial(0, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=x-1"), 100), Full);
    }
}
