//! Data relay frames: when two peers cannot open a data channel, they send the same chunk
//! protocol messages ([`crate::chunk_proto`]) through the tracker's websocket as binary frames.
//! A peer addresses a frame to the remote peer; the tracker rewrites the address to the true
//! sender before forwarding, so no peer can speak for another.
//!
//! ```text
//! frame  peer id [16] | conn u64 | payload (a chunk protocol message)
//! ```

use crate::wire::PeerId;

/// Header bytes of a relay frame.
pub const RELAY_HEADER: usize = 24;
/// Largest relay payload (one chunk-protocol frame of 64 KiB plus headroom).
pub const MAX_RELAY_PAYLOAD: usize = 64 * 1024 + 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayFrame {
    /// To the tracker: the recipient; from the tracker: the sender.
    pub peer: PeerId,
    pub conn: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("relay frame shorter than its header")]
    Truncated,
    #[error("relay payload of {0} bytes is too large")]
    TooLarge(usize),
    #[error("peer id is not 32 hex digits")]
    BadPeerId,
}

impl RelayFrame {
    pub fn encode(&self) -> Result<Vec<u8>, RelayError> {
        if self.payload.len() > MAX_RELAY_PAYLOAD {
            return Err(RelayError::TooLarge(self.payload.len()));
        }
        let mut id = [0u8; 16];
        hex::decode_to_slice(&self.peer.0, &mut id).map_err(|_| RelayError::BadPeerId)?;
        let mut v = Vec::with_capacity(RELAY_HEADER + self.payload.len());
        v.extend_from_slice(&id);
        v.extend_from_slice(&self.conn.to_be_bytes());
        v.extend_from_slice(&self.payload);
        Ok(v)
    }

    pub fn decode(b: &[u8]) -> Result<Self, RelayError> {
        if b.len() < RELAY_HEADER {
            return Err(RelayError::Truncated);
        }
        if b.len() - RELAY_HEADER > MAX_RELAY_PAYLOAD {
            return Err(RelayError::TooLarge(b.len() - RELAY_HEADER));
        }
        let peer = PeerId(hex::encode(&b[..16]));
        let conn = u64::from_be_bytes(b[16..24].try_into().expect("8 bytes"));
        Ok(Self { peer, conn, payload: b[RELAY_HEADER..].to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn relay_frames_round_trip(secret in any::<String>(), conn in any::<u64>(), payload in prop::collection::vec(any::<u8>(), 0..2000)) {
            let f = RelayFrame { peer: PeerId::from_secret(&secret), conn, payload };
            prop_assert_eq!(RelayFrame::decode(&f.encode().unwrap()).unwrap(), f);
        }

        #[test]
        fn garbage_never_panics(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = RelayFrame::decode(&b);
        }
    }

    #[test]
    fn limits_hold() {
        let big = RelayFrame { peer: PeerId::from_secret("x"), conn: 1, payload: vec![0; MAX_RELAY_PAYLOAD + 1] };
        assert_eq!(big.encode(), Err(RelayError::TooLarge(MAX_RELAY_PAYLOAD + 1)));
        assert_eq!(RelayFrame::decode(&[0; 10]), Err(RelayError::Truncated));
        let bad = RelayFrame { peer: PeerId("zz".into()), conn: 1, payload: vec![] };
        assert_eq!(bad.encode(), Err(RelayError::BadPeerId));
    }
}
