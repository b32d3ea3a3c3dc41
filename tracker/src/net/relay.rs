//! Data relay: binary websocket frames in the layout of [`swarm_core::relay::RelayFrame`]
//! (`recipient id [16] | conn u64 | payload`). The tracker checks the frame, and rewrites the
//! peer field to the true sender's id *in place* (no copy of the up to 64 KiB payload), so the
//! recipient learns who really sent it and no peer can speak for another.

use bytes::{Bytes, BytesMut};
use swarm_core::relay::{RelayError, MAX_RELAY_PAYLOAD, RELAY_HEADER};
use swarm_core::PeerId;

/// Largest binary frame the tracker accepts.
pub const MAX_RELAY_FRAME: usize = RELAY_HEADER + MAX_RELAY_PAYLOAD;

/// A peer id as the 16 raw bytes relay frames carry.
pub fn raw_id(id: &PeerId) -> Option<[u8; 16]> {
    let mut raw = [0u8; 16];
    hex::decode_to_slice(&id.0, &mut raw).ok()?;
    Some(raw)
}

/// Checks a frame from a peer and returns its recipient and the frame to forward, which
/// names `sender` instead.
pub fn readdress(frame: Bytes, sender: &[u8; 16]) -> Result<(PeerId, Bytes), RelayError> {
    if frame.len() < RELAY_HEADER {
        return Err(RelayError::Truncated);
    }
    if frame.len() > MAX_RELAY_FRAME {
        return Err(RelayError::TooLarge(frame.len() - RELAY_HEADER));
    }
    let to = PeerId(hex::encode(&frame[..16]));
    let mut out = BytesMut::from(frame); // no copy when this is the only reference
    out[..16].copy_from_slice(sender);
    Ok((to, out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::relay::RelayFrame;

    #[test]
    fn readdressed_frames_decode_with_the_sender() {
        let (a, b) = (PeerId::from_secret("a"), PeerId::from_secret("b"));
        let f = RelayFrame { peer: b.clone(), conn: 9, payload: vec![1, 2, 3] };
        let (to, out) = readdress(Bytes::from(f.encode().unwrap()), &raw_id(&a).unwrap()).unwrap();
        assert_eq!(to, b);
        assert_eq!(RelayFrame::decode(&out).unwrap(), RelayFrame { peer: a.clone(), conn: 9, payload: vec![1, 2, 3] });
        assert_eq!(readdress(Bytes::from_static(&[0; 5]), &[0; 16]), Err(RelayError::Truncated));
        let big = Bytes::from(vec![0u8; MAX_RELAY_FRAME + 1]);
        assert_eq!(readdress(big, &[0; 16]), Err(RelayError::TooLarge(MAX_RELAY_PAYLOAD + 1)));
    }
}
