//! The peer-to-peer chunk protocol spoken over a WebRTC data channel (binary messages).
//!
//! A downloader asks for chunks by id; the holder answers with the chunk cut into frames small
//! enough for every data channel, or says it does not have it. Frames of one answer arrive in
//! order on the ordered, reliable channel; [`ChunkAssembler`] checks offsets anyway and verifies
//! the SHA-256 of the whole chunk before handing it out: a peer is never trusted.
//!
//! ```text
//! request   0x01 | req u32 | chunk id [32]
//! data      0x02 | req u32 | offset u32 | total u32 | bytes
//! missing   0x03 | req u32
//! busy      0x04 | req u32
//! cancel    0x05 | req u32 × n          (1 ≤ n ≤ MAX_CANCEL)
//! ```
//! (integers big-endian)
//!
//! `busy`: the holder has the chunk, or may have it, but will not read it now (its send
//! queues are full): ask again later or elsewhere; unlike `missing`, it says nothing about
//! holding. `cancel`: the downloader no longer wants the answers to these requests (a
//! cancelled download, a seek); the holder drops them if they are still queued. Frames
//! already sent still arrive and are ignored.

use crate::content::{ChunkId, MAX_CHUNK_SIZE};
use thiserror::Error;

/// Header bytes of a data frame.
pub const DATA_HEADER: usize = 13;
/// Frame payload toward browsers and str0m peers: small frames flowed fastest. Measured on the
/// project's 2-core machines (str0m 0.25, headless Chromium): str0m to Chromium ran at 33-38 MB/s
/// with 8-16 KiB messages, and str0m accepts a message only when all of it fits its send buffer
/// (kept at 32 KiB, see the native peer's `rtc` module).
pub const DEFAULT_FRAME_PAYLOAD: usize = 16 * 1024 - DATA_HEADER;
/// Most requests one `cancel` names: the whole message stays within the 37 bytes of a
/// request, the longest message a receiver reads whole before its payload.
pub const MAX_CANCEL: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMsg {
    Request {
        req: u32,
        chunk: ChunkId,
    },
    Data {
        req: u32,
        offset: u32,
        total: u32,
        bytes: Vec<u8>,
    },
    Missing {
        req: u32,
    },
    Busy {
        req: u32,
    },
    /// 1 to [`MAX_CANCEL`] request numbers.
    Cancel {
        reqs: Vec<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtoError {
    #[error("empty message")]
    Empty,
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    #[error("message too short for its type")]
    Truncated,
    #[error("trailing bytes after message")]
    Trailing,
    #[error("chunk of {0} bytes is larger than allowed")]
    TooLarge(u32),
    #[error("frame at offset {got} but {expected} bytes received so far")]
    OutOfOrder { expected: u32, got: u32 },
    #[error("frame runs past the chunk's declared size")]
    Overrun,
    #[error("peer changed the chunk's declared size")]
    SizeChanged,
    #[error("no request {0} is open")]
    UnknownRequest(u32),
    #[error("a cancel names 1 to {MAX_CANCEL} requests")]
    BadCancel,
    #[error(transparent)]
    BadChunk(#[from] crate::content::ContentError),
}

fn short(ty: u8, req: u32) -> Vec<u8> {
    let mut v = vec![ty];
    v.extend_from_slice(&req.to_be_bytes());
    v
}

/// `cancel` messages for `reqs`, [`MAX_CANCEL`] at most in each.
pub fn cancels(reqs: &[u32]) -> impl Iterator<Item = Vec<u8>> + '_ {
    reqs.chunks(MAX_CANCEL).map(|r| PeerMsg::Cancel { reqs: r.to_vec() }.encode())
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, ProtoError> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes(s.try_into().expect("4 bytes"))).ok_or(ProtoError::Truncated)
}

impl PeerMsg {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            PeerMsg::Request { req, chunk } => {
                let mut v = Vec::with_capacity(37);
                v.push(1);
                v.extend_from_slice(&req.to_be_bytes());
                v.extend_from_slice(&chunk.0);
                v
            }
            PeerMsg::Data { req, offset, total, bytes } => encode_data(*req, *offset, *total, bytes),
            PeerMsg::Missing { req } => short(3, *req),
            PeerMsg::Busy { req } => short(4, *req),
            PeerMsg::Cancel { reqs } => {
                let mut v = Vec::with_capacity(1 + 4 * reqs.len());
                v.push(5);
                for r in reqs {
                    v.extend_from_slice(&r.to_be_bytes());
                }
                v
            }
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        let ty = *b.first().ok_or(ProtoError::Empty)?;
        let req = u32_at(b, 1)?;
        match ty {
            1 => {
                let id: [u8; 32] = b.get(5..37).ok_or(ProtoError::Truncated)?.try_into().unwrap();
                if b.len() > 37 {
                    return Err(ProtoError::Trailing);
                }
                Ok(PeerMsg::Request { req, chunk: ChunkId(id) })
            }
            2 => {
                let DataHeader { req, offset, total } = DataHeader::parse(b)?;
                Ok(PeerMsg::Data { req, offset, total, bytes: b[DATA_HEADER..].to_vec() })
            }
            3 | 4 => {
                if b.len() > 5 {
                    return Err(ProtoError::Trailing);
                }
                Ok(if ty == 3 { PeerMsg::Missing { req } } else { PeerMsg::Busy { req } })
            }
            5 => {
                let n = (b.len() - 1) / 4;
                if !(b.len() - 1).is_multiple_of(4) || n > MAX_CANCEL {
                    return Err(ProtoError::BadCancel);
                }
                Ok(PeerMsg::Cancel { reqs: (0..n).map(|i| u32_at(b, 1 + 4 * i).expect("in bounds")).collect() })
            }
            t => Err(ProtoError::UnknownType(t)),
        }
    }
}

/// The header of a data frame, read on its own so a receiver can leave the payload where it
/// arrived (the browser keeps it in JS memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    pub req: u32,
    pub offset: u32,
    pub total: u32,
}

impl DataHeader {
    /// Reads the header from the first [`DATA_HEADER`] bytes of a data frame.
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        match b.first() {
            None => return Err(ProtoError::Empty),
            Some(2) => {}
            Some(&t) => return Err(ProtoError::UnknownType(t)),
        }
        let (req, offset, total) = (u32_at(b, 1)?, u32_at(b, 5)?, u32_at(b, 9)?);
        if total > MAX_CHUNK_SIZE {
            return Err(ProtoError::TooLarge(total));
        }
        Ok(Self { req, offset, total })
    }
}

/// Encodes one data frame without an intermediate `PeerMsg`.
pub fn encode_data(req: u32, offset: u32, total: u32, bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(DATA_HEADER + bytes.len());
    v.push(2);
    v.extend_from_slice(&req.to_be_bytes());
    v.extend_from_slice(&offset.to_be_bytes());
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(bytes);
    v
}

/// Cuts a chunk into data frames of at most `payload` bytes each (an empty chunk is one frame).
pub fn frames(req: u32, chunk: &[u8], payload: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let total = chunk.len() as u32;
    let n = chunk.len().div_ceil(payload).max(1);
    (0..n).map(move |i| {
        let start = i * payload;
        let end = (start + payload).min(chunk.len());
        encode_data(req, start as u32, total, &chunk[start..end])
    })
}

/// Reassembles one requested chunk from its frames and verifies it.
#[derive(Debug)]
pub struct ChunkAssembler {
    pub chunk: ChunkId,
    expected_len: u32,
    buf: Vec<u8>,
    total: Option<u32>,
}

impl ChunkAssembler {
    /// `expected_len` comes from the manifest: a peer cannot make us buffer more.
    pub fn new(chunk: ChunkId, expected_len: u32) -> Self {
        Self { chunk, expected_len, buf: Vec::new(), total: None }
    }

    /// Bytes received so far.
    pub fn received(&self) -> usize {
        self.buf.len()
    }

    /// Takes one frame; returns the verified chunk when it is complete.
    pub fn push(&mut self, offset: u32, total: u32, bytes: &[u8]) -> Result<Option<Vec<u8>>, ProtoError> {
        match self.total {
            None => {
                if total != self.expected_len {
                    return Err(ProtoError::SizeChanged);
                }
                self.total = Some(total);
                self.buf.reserve_exact(total as usize);
            }
            Some(t) if t != total => return Err(ProtoError::SizeChanged),
            Some(_) => {}
        }
        if offset as usize != self.buf.len() {
            return Err(ProtoError::OutOfOrder { expected: self.buf.len() as u32, got: offset });
        }
        if self.buf.len() + bytes.len() > total as usize {
            return Err(ProtoError::Overrun);
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() == total as usize {
            let data = std::mem::take(&mut self.buf);
            self.chunk.verify(&data)?;
            return Ok(Some(data));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg() -> impl Strategy<Value = PeerMsg> {
        prop_oneof![
            (any::<u32>(), any::<[u8; 32]>()).prop_map(|(req, c)| PeerMsg::Request { req, chunk: ChunkId(c) }),
            (any::<u32>(), any::<u32>(), 0..=MAX_CHUNK_SIZE, prop::collection::vec(any::<u8>(), 0..300))
                .prop_map(|(req, offset, total, bytes)| PeerMsg::Data { req, offset, total, bytes }),
            any::<u32>().prop_map(|req| PeerMsg::Missing { req }),
            any::<u32>().prop_map(|req| PeerMsg::Busy { req }),
            prop::collection::vec(any::<u32>(), 1..=MAX_CANCEL).prop_map(|reqs| PeerMsg::Cancel { reqs }),
        ]
    }

    proptest! {
        #[test]
        fn peer_messages_round_trip(m in msg()) {
            prop_assert_eq!(PeerMsg::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn data_header_reads_what_decode_reads(m in msg()) {
            let b = m.encode();
            match (PeerMsg::decode(&b).unwrap(), DataHeader::parse(&b[..b.len().min(DATA_HEADER)])) {
                (PeerMsg::Data { req, offset, total, .. }, Ok(h)) => {
                    prop_assert_eq!(h, DataHeader { req, offset, total });
                }
                (PeerMsg::Data { .. }, Err(e)) => prop_assert!(false, "header refused: {e}"),
                (_, h) => prop_assert!(h.is_err(), "not a data frame: {h:?}"),
            }
        }

        #[test]
        fn cancels_carry_every_request(reqs in prop::collection::vec(any::<u32>(), 0..40)) {
            let mut back = Vec::new();
            for m in cancels(&reqs) {
                prop_assert!(m.len() <= 37);
                let PeerMsg::Cancel { reqs } = PeerMsg::decode(&m).unwrap() else { panic!("not a cancel") };
                back.extend(reqs);
            }
            prop_assert_eq!(back, reqs);
        }

        #[test]
        fn garbage_never_panics(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = PeerMsg::decode(&b);
        }

        #[test]
        fn frames_reassemble_to_the_chunk(data in prop::collection::vec(any::<u8>(), 0..5000), payload in 1usize..700) {
            let id = ChunkId::of(&data);
            let mut asm = ChunkAssembler::new(id, data.len() as u32);
            let mut out = None;
            for f in frames(9, &data, payload) {
                let PeerMsg::Data { req, offset, total, bytes } = PeerMsg::decode(&f).unwrap() else { panic!() };
                prop_assert_eq!(req, 9);
                prop_assert!(out.is_none());
                out = asm.push(offset, total, &bytes).unwrap();
            }
            prop_assert_eq!(out.unwrap(), data);
        }
    }

    #[test]
    fn a_lying_peer_is_caught() {
        let good = vec![7u8; 1000];
        let id = ChunkId::of(&good);
        let mut asm = ChunkAssembler::new(id, 1000);
        assert!(matches!(asm.push(0, 1000, &[8u8; 1000]), Err(ProtoError::BadChunk(_))));
        let mut asm = ChunkAssembler::new(id, 1000);
        assert_eq!(asm.push(0, 2000, &[7u8; 10]), Err(ProtoError::SizeChanged));
        let mut asm = ChunkAssembler::new(id, 1000);
        asm.push(0, 1000, &[7u8; 10]).unwrap();
        assert!(matches!(asm.push(20, 1000, &[7u8; 10]), Err(ProtoError::OutOfOrder { .. })));
        assert_eq!(asm.push(10, 1000, &[7u8; 991]), Err(ProtoError::Overrun));
        assert_eq!(PeerMsg::decode(&[9, 0, 0, 0, 0]), Err(ProtoError::UnknownType(9)));
        assert_eq!(PeerMsg::decode(&[]), Err(ProtoError::Empty));
        assert_eq!(PeerMsg::decode(&[4, 0, 0, 0, 1, 0]), Err(ProtoError::Trailing));
        assert_eq!(PeerMsg::decode(&[5, 0, 0, 0, 1, 0]), Err(ProtoError::BadCancel));
        assert_eq!(PeerMsg::decode(&[5; 1 + 4 * (MAX_CANCEL + 1)]), Err(ProtoError::BadCancel));
        let mut big = encode_data(1, 0, MAX_CHUNK_SIZE + 1, &[]);
        assert!(matches!(PeerMsg::decode(&big), Err(ProtoError::TooLarge(_))));
        big.truncate(3);
        assert_eq!(PeerMsg::decode(&big), Err(ProtoError::Truncated));
    }
}
