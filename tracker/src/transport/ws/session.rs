//! A welcomed peer's connection: one loop that waits on the peer's outbox and its socket
//! at once, writes queued frames in batches, applies the per-connection rate limits
//! ([`crate::core::limits`]), feeds messages into the swarm and dispatches what it answers.
//!
//! Reading is paced by bytes: past its connection's message byte rate, or its address's
//! ([`crate::Limits::msg_bytes_per_sec`]), the socket is not read again until the bytes are
//! paid for, while what the peer is sent still goes out. Parsing a message and handling it
//! under the swarm's lock cost the tracker time in proportion to its size, so a stranger's
//! unlimited uplink buys no more of it than the rate (measured with `pp-loadtest exhaust`:
//! README, "Benchmarks"). The wait comes after the message that ran over, not before it: a
//! message waiting in the tracker's memory for its turn would cost up to 8 MiB per
//! connection (100 identities paced before parsing grew the tracker by 236 MiB, after parsing
//! by 135–159 MiB), where a socket not read costs only the kernel's buffer.

use super::{blocking, classify, Incoming};
use crate::app::AppState;
use crate::core::limits::{Strikes, TokenBucket, Verdict};
use crate::core::outbox::{Frame, Outbox, PushError};
use crate::core::{Handled, Refusal, Step};
use crate::driver::{now_ms, Counters};
use crate::net::relay::{raw_id, MAX_RELAY_FRAME};
use crate::transport::websocket::{Message, Socket, SocketError};
use std::future::Future;
use std::net::IpAddr;
use std::task::Poll;
use swarm_core::wire::ErrorCode;
use swarm_core::{ClientMsg, PeerId, ServerMsg};
use tokio::time::timeout;

/// Longest a relay frame waits for its sender's byte budget (see `Peer::run`).
const MAX_RELAY_WAIT_MS: u64 = 2_000;
/// Frames written to the socket before one flush.
const WRITE_BATCH: usize = 64;
/// While a connection waits for its message byte rate, its outbox is touched this often (a
/// paced peer is not idle).
const PACE_STEP_MS: u64 = 5_000;

/// A welcomed peer's connection.
pub(super) struct Peer<'a> {
    pub(super) state: &'a AppState,
    pub(super) id: PeerId,
    pub(super) raw: [u8; 16],
    serial: u64,
    pub(super) outbox: Outbox,
    msgs: TokenBucket,
    relay: TokenBucket,
    /// Bytes of messages (JSON text), before they are parsed.
    msg_bytes: TokenBucket,
    ip: IpAddr,
    strikes: Strikes,
    /// Name index entries the last message's search looked at (charged with its bytes).
    searched: usize,
}

/// What woke an idle connection.
enum Event {
    /// Frames to write (moved into the batch), or the outbox was closed.
    Outbox {
        open: bool,
    },
    Socket(Option<Result<Message, SocketError>>),
}

/// Whether the connection goes on.
#[derive(PartialEq, Eq)]
pub(super) enum Flow {
    Go,
    Stop,
}

impl<'a> Peer<'a> {
    pub(super) fn new(state: &'a AppState, id: PeerId, serial: u64, outbox: Outbox, ip: IpAddr) -> Self {
        let l = &state.config.limits;
        let now = state.mono_ms();
        let raw = raw_id(&id).expect("ids are 32 hex digits");
        Self {
            state,
            id,
            raw,
            serial,
            outbox,
            msgs: TokenBucket::new(l.msgs_per_sec as f64, l.msg_burst.max(1) as f64, now),
            relay: TokenBucket::new(
                l.relay_bytes_per_sec as f64,
                l.relay_burst_bytes.max(MAX_RELAY_FRAME as u64) as f64,
                now,
            ),
            msg_bytes: TokenBucket::new(l.msg_bytes_per_sec as f64, l.msg_burst_bytes as f64, now),
            ip,
            strikes: Strikes::default(),
            searched: 0,
        }
    }

    /// Waits until a message of `len` bytes (just handled) is paid for by this connection's
    /// message byte rate and its address's (at once while within both): the socket is not
    /// read meanwhile, but what the peer is sent still goes out ([`Self::hold_reads`]).
    async fn pace(&mut self, len: usize, socket: &mut Socket, batch: &mut Vec<Frame>) -> Flow {
        let now = self.state.mono_ms();
        let wait = self.msg_bytes.reserve(len as f64, now).max(self.state.reserve_msg_bytes(self.ip, len, now));
        if wait == 0 {
            return Flow::Go;
        }
        Counters::add(&self.state.counters.read_pauses, 1);
        self.hold_reads(wait, socket, batch).await
    }

    /// Waits `ms` without reading the socket while still writing the peer's outbox: a peer
    /// paced for what it sends keeps receiving its signals and relayed frames. (Waiting
    /// without writing delayed a flooded seeder's signalling by seconds, and while the
    /// peer blocks on writing to a tracker that does not read, a tracker that does not
    /// write to it either lets both ends stall.) [`Flow::Stop`]: the peer is gone or its
    /// outbox was closed.
    async fn hold_reads(&mut self, ms: u64, socket: &mut Socket, batch: &mut Vec<Frame>) -> Flow {
        let end = self.state.mono_ms() + ms;
        loop {
            let now = self.state.mono_ms();
            self.outbox.touch(now);
            let left = end.saturating_sub(now);
            if left == 0 {
                return Flow::Go;
            }
            let sleep = tokio::time::sleep(std::time::Duration::from_millis(left.min(PACE_STEP_MS)));
            tokio::pin!(sleep);
            let popped = std::future::poll_fn(|cx| {
                if let Poll::Ready(open) = self.outbox.poll_pop(cx, batch, WRITE_BATCH) {
                    return Poll::Ready(Some(open));
                }
                sleep.as_mut().poll(cx).map(|()| None)
            })
            .await;
            if let Some(open) = popped {
                if !open || !Box::pin(self.write(socket, batch)).await {
                    return Flow::Stop;
                }
            }
        }
    }

    /// Serves the peer until it leaves, misbehaves, goes quiet (the idle sweep closes its
    /// outbox), or its outbox is closed (by a newer connection of the same peer, by a full
    /// queue, or by the tracker shutting down); then forgets it.
    ///
    /// An idle peer waits here, in a future kept small on purpose: one `poll_fn` over the
    /// outbox and the socket, no timer (see `crate::idle_sweep`), no batch buffer.
    #[allow(clippy::manual_async_fn)] // on purpose, see below
    pub(super) fn run<'s>(mut self, socket: &'s mut Socket) -> impl Future<Output = ()> + use<'a, 's> {
        // Not an `async fn`: it would keep `self` twice (see `connection`).
        async move {
            let mut batch = Vec::new();
            self.outbox.touch(self.state.mono_ms());
            loop {
                let event = std::future::poll_fn(|cx| {
                    if let Poll::Ready(open) = self.outbox.poll_pop(cx, &mut batch, WRITE_BATCH) {
                        return Poll::Ready(Event::Outbox { open });
                    }
                    socket.poll_recv(cx).map(Event::Socket)
                })
                .await;
                let msg = match event {
                    Event::Socket(msg) => msg,
                    Event::Outbox { open } => {
                        if !open || !Box::pin(self.write(socket, &mut batch)).await {
                            break;
                        }
                        batch = Vec::new(); // an idle peer keeps no batch buffer
                        continue;
                    }
                };
                if Box::pin(self.on_socket(msg, socket, &mut batch)).await == Flow::Stop {
                    break;
                }
            }
            self.state.core().disconnect(&self.id, self.serial, now_ms());
            tracing::debug!(peer = %self.id, "peer left");
        }
    }

    /// Handles what came from the socket.
    async fn on_socket(
        &mut self,
        msg: Option<Result<Message, SocketError>>,
        socket: &mut Socket,
        batch: &mut Vec<Frame>,
    ) -> Flow {
        self.outbox.touch(self.state.mono_ms());
        let text_len = match &msg {
            Some(Ok(Message::Text(text))) => text.len(),
            _ => 0,
        };
        let incoming = classify(msg, self.state);
        if let Incoming::Relay(frame) = &incoming {
            // Backpressure, not loss: a relay frame over the byte rate waits for its budget
            // (the sender's socket is not read meanwhile).
            let now = self.state.mono_ms();
            if let Some(wait) = self.relay.wait_ms(frame.len() as f64, now).filter(|w| *w > 0) {
                if self.hold_reads(wait.min(MAX_RELAY_WAIT_MS), socket, batch).await == Flow::Stop {
                    return Flow::Stop;
                }
            }
        }
        if self.on_incoming(incoming) == Flow::Stop {
            // Deliver what is queued (e.g. the error that says why), then go.
            if self.outbox.try_pop(batch, WRITE_BATCH) == Some(true) {
                self.write(socket, batch).await;
            }
            return Flow::Stop;
        }
        if text_len > 0 {
            // A search is paid for by the index entries it looked at, not only by its few bytes.
            let per_entry = self.state.config.limits.search_bytes_per_file as usize;
            let scanned = std::mem::take(&mut self.searched).saturating_mul(per_entry);
            return self.pace(text_len.saturating_add(scanned), socket, batch).await;
        }
        Flow::Go
    }

    /// Writes a batch of frames with one flush; `false` if the peer is gone or too slow.
    async fn write(&self, socket: &mut Socket, batch: &mut Vec<Frame>) -> bool {
        let c = &self.state.counters;
        for frame in batch.drain(..) {
            let msg = match frame {
                Frame::Json(m) => Message::Text(m.to_json()),
                Frame::Binary(b) => Message::Binary(b),
            };
            let len = match &msg {
                Message::Text(t) => t.len(),
                Message::Binary(b) => b.len(),
            };
            Counters::add(&c.ws_messages_out, 1);
            Counters::add(&c.ws_bytes_out, len as u64);
            socket.feed(&msg);
        }
        match timeout(self.state.config.send_timeout, socket.flush()).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::warn!(peer = %self.id, "peer does not take its messages: dropping it");
                Counters::add(&c.closed_slow, 1);
                false
            }
        }
    }

    /// Queues a message for this peer itself.
    pub(super) fn reply(&self, msg: ServerMsg) -> Flow {
        if matches!(msg, ServerMsg::Error { .. }) {
            self.state.core().note_error_sent();
        }
        match self.outbox.push(Frame::json(msg)) {
            Ok(()) => Flow::Go,
            Err(PushError::Full) => {
                Counters::add(&self.state.counters.closed_slow, 1);
                Flow::Stop
            }
            Err(PushError::Closed | PushError::SenderBusy) => Flow::Stop,
        }
    }

    /// A message the core refused (a limit, the state budget): counted, and the peer told why.
    fn refused(&self, r: Refusal) -> Flow {
        let c = &self.state.counters;
        Counters::add(&c.limit_refusals, 1);
        if r.over_budget {
            Counters::add(&c.over_budget, 1);
        }
        self.reply(*r.msg)
    }

    /// A message or frame was over a rate limit.
    fn rate_limited(&mut self, what: &str) -> Flow {
        Counters::add(&self.state.counters.rate_limited, 1);
        let l = &self.state.config.limits;
        match self.strikes.refuse(l.abuse_limit, self.state.mono_ms()) {
            Verdict::Accept | Verdict::Refuse => Flow::Go,
            Verdict::RefuseAndTell => self.reply(ServerMsg::error(
                None,
                ErrorCode::RateLimited,
                format!(
                    "{what} over the rate limit ({} messages/s, {} relay bytes/s): dropped; slow down or be disconnected",
                    l.msgs_per_sec, l.relay_bytes_per_sec
                ),
            )),
            Verdict::Close => {
                tracing::warn!(peer = %self.id, "persistent rate-limit abuse: closing");
                Counters::add(&self.state.counters.closed_abuse, 1);
                let _ = self.reply(ServerMsg::error(
                    None,
                    ErrorCode::RateLimited,
                    "rate limit exceeded persistently: closing the connection",
                ));
                Flow::Stop
            }
        }
    }

    fn on_incoming(&mut self, incoming: Incoming) -> Flow {
        let now = self.state.mono_ms();
        match incoming {
            Incoming::Closed => Flow::Stop,
            Incoming::Bad(code, e) => {
                if !self.msgs.take(1.0, now) {
                    return self.rate_limited("message");
                }
                self.reply(ServerMsg::error(None, code, e))
            }
            Incoming::Relay(frame) => {
                if !self.relay.take(frame.len() as f64, now) || !self.msgs.take(1.0, now) {
                    return self.rate_limited("relay frame");
                }
                self.on_relay(frame)
            }
            Incoming::Msg(msg) => {
                if !self.msgs.take(1.0, now) {
                    return self.rate_limited("message");
                }
                self.on_message(msg)
            }
        }
    }

    fn on_message(&mut self, msg: ClientMsg) -> Flow {
        if let Some(refusal) = self.oversize_signal(&msg) {
            return self.reply(refusal);
        }
        if let Some(cluster) = &self.state.cluster {
            return self.on_message_in_cluster(cluster, msg);
        }
        let state = self.state;
        let handled = state.core().handle_peer_msg(&self.id, self.serial, msg, now_ms(), state.mono_ms());
        let Step { out, added, removed, examined } = match handled {
            Handled::Done(step) => step,
            Handled::Stale => return Flow::Stop, // replaced by a newer connection of the same peer
            Handled::Refused(r) => return self.refused(r),
        };
        self.searched = examined as usize;
        // A file is durable before its publisher hears it was published (or unpublished).
        if let (Some(index), false) = (&state.index, added.is_empty()) {
            if let Err(e) = blocking(|| index.insert(&added)) {
                tracing::error!("cannot store published file: {e}");
            }
        }
        if !removed.is_empty() {
            blocking(|| state.forget_durably(&removed));
        }
        let slow = state.core().dispatch(out);
        Counters::add(&state.counters.closed_slow, slow);
        if self.outbox.is_closed() {
            Flow::Stop
        } else {
            Flow::Go
        }
    }
}

impl Peer<'_> {
    /// In a cluster: the publish limits here, then wherever the message goes
    /// ([`crate::cluster::route`]).
    fn on_message_in_cluster(&mut self, cluster: &std::sync::Arc<crate::cluster::Cluster>, msg: ClientMsg) -> Flow {
        let state = self.state;
        {
            let mut core = state.core();
            if !core.is_current(&self.id, self.serial) {
                return Flow::Stop;
            }
            match core.check_peer_msg(&self.id, &msg, state.mono_ms()) {
                // The address's budget is spent when the request leaves (the owner may be
                // another node): a refused publish costs it too.
                Ok(Some((a, budget))) => core.spend_publish_budget(a, budget),
                Ok(None) => {}
                Err(r) => {
                    drop(core);
                    return self.refused(r);
                }
            }
        }
        if matches!(msg, ClientMsg::Search { .. }) {
            // Every node searches its own shards: this node cannot see what the others looked
            // at, so a search here is charged as if it looked at every file this node keeps.
            self.searched = state.core().swarm().file_count();
        }
        crate::cluster::route::from_local_peer(state, cluster, &self.id, msg);
        if self.outbox.is_closed() {
            Flow::Stop
        } else {
            Flow::Go
        }
    }
}
