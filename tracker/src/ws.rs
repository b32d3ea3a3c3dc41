//! One task per websocket peer: waits for `hello`, registers the peer, then feeds every
//! message into the swarm, forwards relay frames, and writes the peer's [`Outbox`] to its
//! socket. Bad input gets an error message; the connection and the tracker live on.
//!
//! One task (not a reader and a writer), a lean [`Socket`] with no buffers while idle, and
//! no timer per connection keep an idle peer cheap: the tracker is meant to hold tens of
//! thousands of them.

use crate::limits::{Strikes, TokenBucket, Verdict};
use crate::outbox::{Frame, Outbox, PushError};
use crate::relay::{raw_id, readdress, MAX_RELAY_FRAME};
use crate::state::{now_ms, AppState, Counters};
use crate::websocket::{handshake, Message, Socket, SocketError};
use axum::body::{Body, Bytes};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::Poll;
use swarm_core::relay::RelayError;
use swarm_core::swarm::{FileRecord, Output};
use swarm_core::wire::{ErrorCode, MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use swarm_core::{ClientMsg, PeerId, PeerKind, ServerMsg};
use tokio::time::{timeout, Instant};

/// Longest a relay frame waits for its sender's byte budget (see `run`).
const MAX_RELAY_WAIT_MS: u64 = 2_000;
/// Frames written to the socket before one flush.
const WRITE_BATCH: usize = 64;

/// `GET /ws`: upgrades to a websocket served by [`connection`] on its own task.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let accept = match handshake::accept_key(req.headers()) {
        Ok(key) => key,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    // Only the host name is kept (for the tracker's own STUN entry in `welcome`).
    let host: Option<Box<str>> = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(crate::ice::host_of)
        .map(Into::into);
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded").into_response();
    };
    // Behind a trusted reverse proxy, the client it forwarded for; else the TCP peer.
    let ip = state.config.trusted_proxies.client_ip(addr.ip(), req.headers());
    if ip != addr.ip() {
        tracing::trace!(proxy = %addr, client = %ip, "websocket through a trusted proxy");
    }
    tokio::spawn(async move {
        if let Some((stream, read)) = handshake::upgraded(on_upgrade).await {
            // A task of its own: this one's state (hyper's upgrade) is not kept around.
            tokio::spawn(connection(Socket::new(stream, &read, MAX_MESSAGE_BYTES), state, ip, host));
        }
    });
    handshake::switching_protocols::<Body>(&accept)
}

/// What arrived on the socket.
enum Incoming {
    Msg(ClientMsg),
    Relay(Bytes),
    Bad(ErrorCode, String),
    Closed,
}

fn classify(msg: Option<Result<Message, SocketError>>, state: &AppState) -> Incoming {
    match msg {
        None | Some(Err(_)) => Incoming::Closed,
        Some(Ok(Message::Text(text))) => {
            Counters::add(&state.counters.ws_messages_in, 1);
            Counters::add(&state.counters.ws_bytes_in, text.len() as u64);
            match serde_json::from_str::<ClientMsg>(text.as_str()) {
                Ok(m) => Incoming::Msg(m),
                Err(e) => Incoming::Bad(ErrorCode::BadMessage, format!("not a valid message: {e}")),
            }
        }
        Some(Ok(Message::Binary(b))) => {
            Counters::add(&state.counters.ws_messages_in, 1);
            Counters::add(&state.counters.ws_bytes_in, b.len() as u64);
            Incoming::Relay(b)
        }
    }
}

async fn send_now(socket: &mut Socket, state: &AppState, msg: ServerMsg) -> bool {
    let json = msg.to_json();
    Counters::add(&state.counters.ws_messages_out, 1);
    Counters::add(&state.counters.ws_bytes_out, json.len() as u64);
    matches!(timeout(state.config.send_timeout, socket.send(&Message::Text(json))).await, Ok(Ok(())))
}

/// Sends a last error and closes the socket.
async fn refuse(socket: &mut Socket, state: &AppState, code: ErrorCode, message: String) {
    Counters::add(&state.counters.limit_refusals, 1);
    if send_now(socket, state, ServerMsg::error(None, code, message.clone())).await {
        let _ = timeout(state.config.send_timeout, socket.close(1008, &message)).await;
    }
}

/// A connection, from upgrade to close.
///
/// Every byte of this future is memory each idle peer holds, so: not an `async fn` (its
/// arguments would be copied into locals, the socket kept twice: rust-lang/rust#62958), the
/// client address (see [`crate::client_addr`]) is used up before the block (only the
/// refusal message and the slot need it),
/// and the phases are boxed (the hello phase's state is gone once the peer is in; the
/// welcomed peer's state lives in one allocation of its own).
#[allow(clippy::manual_async_fn)] // on purpose, see above
fn connection(
    mut socket: Socket,
    state: Arc<AppState>,
    ip: IpAddr,
    host: Option<Box<str>>,
) -> impl Future<Output = ()> {
    Counters::add(&state.counters.ws_connections, 1);
    let max = state.config.limits.max_conns_per_ip;
    let slot = state.ip_slot(ip, max).ok_or_else(|| format!("too many connections from {ip} (at most {max})"));
    async move {
        // `slot` is used in place (held until the end): moved into a local, it would be kept
        // twice.
        let ip = match &slot {
            Ok(slot) => slot.ip(),
            Err(msg) => return Box::pin(refuse(&mut socket, &state, ErrorCode::LimitReached, msg.clone())).await,
        };
        let Some((id, serial, outbox)) = Box::pin(welcome(&mut socket, &state, host)).await else { return };
        tracing::debug!(peer = %id, %ip, "peer joined");
        Box::pin(Peer::new(&state, id, serial, outbox).run(&mut socket)).await;
        let _ = Box::pin(timeout(state.config.send_timeout, socket.close(1000, ""))).await;
    }
}

/// Waits for a valid hello; registers the peer and answers `welcome`.
async fn welcome(socket: &mut Socket, state: &AppState, host: Option<Box<str>>) -> Option<(PeerId, u64, Outbox)> {
    let deadline = Instant::now() + state.config.hello_timeout;
    let mut strikes = 0u32;
    loop {
        let incoming = classify(timeout(deadline - Instant::now(), socket.recv()).await.ok()?, state);
        let err = match incoming {
            Incoming::Closed => return None,
            Incoming::Bad(code, e) => ServerMsg::error(None, code, e),
            Incoming::Relay(_) => ServerMsg::error(None, ErrorCode::NotWelcomed, "say hello before relaying"),
            Incoming::Msg(ClientMsg::Hello { version, kind, secret }) => {
                if version != PROTOCOL_VERSION {
                    let msg =
                        format!("protocol version {version} is not supported; this tracker speaks {PROTOCOL_VERSION}");
                    send_now(socket, state, ServerMsg::error(None, ErrorCode::UnsupportedVersion, msg)).await;
                    return None;
                }
                if !(32..=128).contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
                    ServerMsg::error(None, ErrorCode::BadSecret, "secret must be 32 to 128 hex digits")
                } else {
                    let id = PeerId::from_secret(&secret);
                    let Some((serial, outbox)) = join(state, &id, kind) else {
                        let max = state.config.limits.max_peers;
                        let msg = format!("the tracker is full ({max} peers); try again later");
                        Counters::add(&state.counters.limit_refusals, 1);
                        send_now(socket, state, ServerMsg::error(None, ErrorCode::LimitReached, msg)).await;
                        return None;
                    };
                    let ice_servers =
                        crate::ice::welcome_servers(host.as_deref(), state.config.stun_port, &state.config.ice_servers);
                    let welcome = ServerMsg::Welcome { version: PROTOCOL_VERSION, peer_id: id.clone(), ice_servers };
                    if outbox.push(Frame::json(welcome)).is_err() {
                        return None;
                    }
                    return Some((id, serial, outbox));
                }
            }
            Incoming::Msg(_) => ServerMsg::error(None, ErrorCode::NotWelcomed, "say hello first"),
        };
        strikes += 1;
        if strikes > 16 || !send_now(socket, state, err).await {
            return None;
        }
    }
}

/// Registers the peer unless the tracker is full (a reconnecting peer always gets in).
fn join(state: &AppState, id: &PeerId, kind: PeerKind) -> Option<(u64, Outbox)> {
    let limits = &state.config.limits;
    let mut inner = state.lock();
    if *state.shutdown.borrow() {
        return None; // shutting down: every outbox was closed under this lock
    }
    if inner.connected.len() >= limits.max_peers && !inner.connected.contains_key(id) {
        return None;
    }
    let outbox = Outbox::new(limits.outbox_frames, limits.outbox_bytes);
    inner.swarm.join(id.clone(), kind, now_ms());
    let serial = inner.connect(id.clone(), outbox.clone());
    Some((serial, outbox))
}

/// A welcomed peer's connection.
struct Peer<'a> {
    state: &'a AppState,
    id: PeerId,
    raw: [u8; 16],
    serial: u64,
    outbox: Outbox,
    msgs: TokenBucket,
    relay: TokenBucket,
    strikes: Strikes,
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
enum Flow {
    Go,
    Stop,
}

impl<'a> Peer<'a> {
    fn new(state: &'a AppState, id: PeerId, serial: u64, outbox: Outbox) -> Self {
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
            strikes: Strikes::default(),
        }
    }

    /// Serves the peer until it leaves, misbehaves, goes quiet (the idle sweep closes its
    /// outbox), or its outbox is closed (by a newer connection of the same peer, by a full
    /// queue, or by the tracker shutting down); then forgets it.
    ///
    /// An idle peer waits here, in a future kept small on purpose: one `poll_fn` over the
    /// outbox and the socket, no timer (see `crate::idle_sweep`), no batch buffer.
    #[allow(clippy::manual_async_fn)] // on purpose, see below
    fn run<'s>(mut self, socket: &'s mut Socket) -> impl Future<Output = ()> + use<'a, 's> {
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
            self.state.lock().disconnect(&self.id, self.serial);
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
        let incoming = classify(msg, self.state);
        if let Incoming::Relay(frame) = &incoming {
            // Backpressure, not loss: a relay frame over the byte rate waits for its budget
            // (the sender's socket is not read meanwhile).
            let now = self.state.mono_ms();
            if let Some(wait) = self.relay.wait_ms(frame.len() as f64, now).filter(|w| *w > 0) {
                tokio::time::sleep(std::time::Duration::from_millis(wait.min(MAX_RELAY_WAIT_MS))).await;
            }
        }
        if self.on_incoming(incoming) == Flow::Stop {
            // Deliver what is queued (e.g. the error that says why), then go.
            if self.outbox.try_pop(batch, WRITE_BATCH) == Some(true) {
                self.write(socket, batch).await;
            }
            return Flow::Stop;
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
    fn reply(&self, msg: ServerMsg) -> Flow {
        if matches!(msg, ServerMsg::Error { .. }) {
            self.state.lock().swarm.stats.errors_sent += 1;
        }
        match self.outbox.push(Frame::json(msg)) {
            Ok(()) => Flow::Go,
            Err(PushError::Full) => {
                Counters::add(&self.state.counters.closed_slow, 1);
                Flow::Stop
            }
            Err(PushError::Closed) => Flow::Stop,
        }
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

    fn on_relay(&mut self, frame: Bytes) -> Flow {
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
            match inner.connected.get(&to) {
                Some(c) if to != self.id => Some(c.outbox.push(Frame::Binary(out))),
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

    /// Limits the swarm does not know about, checked before it sees the message.
    fn check_publish(&self, inner: &crate::state::Inner, msg: &ClientMsg) -> Option<ServerMsg> {
        let ClientMsg::Publish { req, manifest, .. } = msg else { return None };
        let l = &self.state.config.limits;
        if manifest.chunks.len() > l.max_manifest_chunks {
            let m = format!(
                "manifest has {} chunks; this tracker takes at most {}",
                manifest.chunks.len(),
                l.max_manifest_chunks
            );
            return Some(ServerMsg::error(Some(*req), ErrorCode::BadManifest, m));
        }
        let mine = inner.published_by.get(&self.id).copied().unwrap_or(0);
        if mine >= l.max_files_per_peer && inner.swarm.file(&manifest.file_id()).is_none() {
            let m = format!("this peer has published {mine} files, the most this tracker takes from one peer");
            return Some(ServerMsg::error(Some(*req), ErrorCode::LimitReached, m));
        }
        None
    }

    fn on_message(&mut self, msg: ClientMsg) -> Flow {
        let state = self.state;
        let (out, added) = {
            let mut inner = state.lock();
            if !inner.is_current(&self.id, self.serial) {
                return Flow::Stop; // replaced by a newer connection of the same peer
            }
            if let Some(err) = self.check_publish(&inner, &msg) {
                drop(inner);
                Counters::add(&state.counters.limit_refusals, 1);
                return self.reply(err);
            }
            let out = inner.swarm.handle(&self.id, msg, now_ms());
            let added: Vec<FileRecord> = out
                .iter()
                .filter_map(|o| match o {
                    Output::FileAdded(f) => inner.swarm.file(f).cloned(),
                    _ => None,
                })
                .collect();
            if !added.is_empty() {
                *inner.published_by.entry(self.id.clone()).or_insert(0) += added.len() as u32;
            }
            (out, added)
        };
        // A file is durable before its publisher hears it was published.
        if let (Some(index), false) = (&state.index, added.is_empty()) {
            if let Err(e) = blocking(|| index.insert(&added)) {
                tracing::error!("cannot store published file: {e}");
            }
        }
        let slow = state.lock().dispatch(out);
        Counters::add(&state.counters.closed_slow, slow);
        if self.outbox.is_closed() {
            Flow::Stop
        } else {
            Flow::Go
        }
    }
}

/// Runs short blocking work (a database commit) without stalling other tasks on this worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
