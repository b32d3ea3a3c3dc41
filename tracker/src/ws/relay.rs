//! Relay frames from a welcomed peer: checked and readdressed to name their true sender
//! ([`crate::relay::readdress`]), then queued on the recipient's outbox. A recipient that
//! is gone or not keeping up costs the sender an error message, never the tracker memory.

use super::session::{Flow, Peer};
use crate::outbox::Frame;
use crate::relay::readdress;
use crate::state::Counters;
use axum::body::Bytes;
use swarm_core::relay::RelayError;
use swarm_core::wire::ErrorCode;
use swarm_core::ServerMsg;

impl Peer<'_> {
    /// Forwards one relay frame (already within the rate limits).
    pub(super) fn on_relay(&mut self, frame: Bytes) -> Flow {
        let c = &self.state.counters;
        let len = frame.len() as u64;
        let (to, out) = match readdress(frame, &self.raw) {
            Ok(x) => x,
            Err(e) => {
                Counters::add(&c.relay_refused, 1);
                let code = match e {
                    RelayError::TooLarge(_) => ErrorCode::TooLarge,
                    _ => ErrorCode::BadMessage,
                };
                return self.reply(ServerMsg::error(None, code, format!("relay frame refused: {e}")));
            }
        };
        let pushed = {
            let inner = self.state.lock();
            match (inner.connected.get(&to), inner.homes.get(&to), &inner.cluster) {
                (Some(c), _, _) if to != self.id => Some(c.outbox.push(Frame::Binary(out))),
                // Connected to another node of the cluster: through NATS (its rate limits
                // applied here already; the other node queues it like a local frame).
                (None, Some(node), Some(cl)) => match crate::relay::raw_id(&to) {
                    Some(raw) => {
                        cl.relay_to(*node, raw, &out);
                        Some(Ok(()))
                    }
                    None => None,
                },
                _ => None,
            }
        };
        match pushed {
            Some(Ok(())) => {
                Counters::add(&c.relay_frames, 1);
                Counters::add(&c.relay_bytes, len);
                Flow::Go
            }
            Some(Err(_)) => {
                Counters::add(&c.relay_dropped, 1);
                self.reply(ServerMsg::error(
                    None,
                    ErrorCode::PeerBusy,
                    format!("peer {to} is not keeping up with relayed data: frame dropped"),
                ))
            }
            None => {
                Counters::add(&c.relay_refused, 1);
                self.reply(ServerMsg::error(None, ErrorCode::UnknownPeer, format!("peer {to} is not connected")))
            }
        }
    }
}
