//! What one peer sends another through the tracker: relay frames (checked and readdressed
//! to name their true sender, [`crate::net::relay::readdress`]) and `signal` messages (at most
//! `--max-signal-bytes`). Both are queued on the recipient's outbox as forwarded frames
//! ([`crate::core::outbox::Outbox::push_forwarded`]): they may fill only half of it, and their
//! bytes count against the sender until the recipient takes them. A recipient that is gone
//! or not keeping up, or a sender with too much waiting, costs the sender an error message
//! and the frame, never the recipient its connection nor the tracker memory.

use super::session::{Flow, Peer};
use crate::core::outbox::{signal_cost, Frame, PushError};
use crate::core::RelayRoute;
use crate::driver::Counters;
use crate::net::relay::readdress;
use axum::body::Bytes;
use swarm_core::relay::RelayError;
use swarm_core::wire::ErrorCode;
use swarm_core::{ClientMsg, ServerMsg};

impl Peer<'_> {
    /// The refusal of a `signal` over `--max-signal-bytes` (it goes no further).
    pub(super) fn oversize_signal(&self, msg: &ClientMsg) -> Option<ServerMsg> {
        let ClientMsg::Signal { to, signal, .. } = msg else { return None };
        let (size, max) = (signal_cost(signal), self.state.config.limits.max_signal_bytes);
        (size > max).then(|| {
            Counters::add(&self.state.counters.limit_refusals, 1);
            let msg = format!("signal to {to} refused: {size} bytes, more than the {max} a signal may take");
            ServerMsg::error(None, ErrorCode::TooLarge, msg)
        })
    }
}

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
            let core = self.state.core();
            match (core.relay_route(&self.id, &to), &self.state.cluster) {
                (RelayRoute::Here(outbox), _) => Some(outbox.push_forwarded(Frame::Binary(out), Some(&self.outbox))),
                // Connected to another node of the cluster: through NATS (its rate limits
                // applied here already; the other node queues it like a local frame).
                (RelayRoute::Node(node), Some(cl)) => match crate::net::relay::raw_id(&to) {
                    Some(raw) => {
                        cl.relay_to(node, raw, &out);
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
            Some(Err(PushError::SenderBusy)) => {
                Counters::add(&c.relay_dropped, 1);
                self.reply(ServerMsg::error(
                    None,
                    ErrorCode::RateLimited,
                    format!(
                        "too many of your relay frames wait for peers that have not read them: frame to {to} dropped"
                    ),
                ))
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
