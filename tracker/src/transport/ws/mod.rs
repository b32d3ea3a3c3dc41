//! One task per websocket peer: waits for `hello`, registers the peer, then feeds every
//! message into the swarm, forwards relay frames, and writes the peer's outbox to its
//! socket. Bad input gets an error message; the connection and the tracker live on.
//!
//! This module is the entry (`GET /ws`, the upgrade) and a connection from upgrade to close;
//! [`admission`] is the hello phase (greeting, signature and origin check, join, `welcome`), [`session`] the welcomed
//! peer's loop (rate limits, messages into the swarm, writes), [`relay`] the forwarding of
//! relay frames. Rules that need no I/O are [`swarm_core::identity`]'s (signatures,
//! origins) and [`swarm_core::swarm::policy`]'s (publish limits).
//!
//! One task (not a reader and a writer), a lean [`Socket`] with no buffers while idle, and
//! no timer per connection keep an idle peer cheap: the tracker is meant to hold tens of
//! thousands of them.

mod admission;
mod migrate;
mod relay;
mod session;

use crate::app::AppState;
use crate::driver::Counters;
use crate::transport::websocket::{handshake, Message, Socket, SocketError};
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use session::Peer;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use swarm_core::wire::{ErrorCode, MAX_MESSAGE_BYTES};
use swarm_core::{ClientMsg, ServerMsg};
use tokio::time::timeout;

/// The socket address a connection arrived on (set by [`crate::http::server`]).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub Option<SocketAddr>);

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
        .and_then(crate::net::ice::host_of)
        .map(Into::into);
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded").into_response();
    };
    // The connection's place in the caps counted at accept goes with the websocket.
    let permit = req.extensions_mut().remove::<crate::net::conns::ConnPermit>();
    // Behind a trusted reverse proxy, the client it forwarded for; else the TCP peer.
    let ip = state.config.trusted_proxies.client_ip(addr.ip(), req.headers());
    let local = req.extensions().get::<LocalAddr>().and_then(|l| l.0);
    if ip != addr.ip() {
        tracing::trace!(proxy = %addr, client = %ip, "websocket through a trusted proxy");
    }
    tokio::spawn(async move {
        if let Some((stream, read)) = handshake::upgraded(on_upgrade).await {
            // A task of its own: this one's state (hyper's upgrade) is not kept around.
            let socket = Socket::new(stream, &read, admission::MAX_HELLO_BYTES);
            tokio::spawn(async move {
                let _permit = permit;
                connection(socket, state, ip, host, local).await
            });
        }
    });
    handshake::switching_protocols::<Body>(&accept)
}

/// Runs short blocking work (a database commit) without stalling other tasks on this worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// What arrived on the socket.
pub(super) enum Incoming {
    Msg(ClientMsg),
    Relay(axum::body::Bytes),
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
/// client address (see [`crate::net::client_addr`]) is used up before the block (only the
/// refusal message and the slot need it),
/// and the phases are boxed (the hello phase's state is gone once the peer is in; the
/// welcomed peer's state lives in one allocation of its own).
#[allow(clippy::manual_async_fn)] // on purpose, see above
fn connection(
    mut socket: Socket,
    state: Arc<AppState>,
    ip: IpAddr,
    host: Option<Box<str>>,
    local: Option<SocketAddr>,
) -> impl Future<Output = ()> {
    Counters::add(&state.counters.ws_connections, 1);
    let max = state.config.limits.max_conns_per_ip;
    let slot = state.shared.ip_slot(ip, max).ok_or_else(|| {
        let addr = swarm_core::swarm::policy::addr_key(ip);
        format!("too many connections from {addr} (at most {max})")
    });
    async move {
        // `slot` is used in place (held until the end): moved into a local, it would be kept
        // twice.
        let ip = match &slot {
            Ok(slot) => slot.ip(),
            Err(msg) => return Box::pin(refuse(&mut socket, &state, ErrorCode::LimitReached, msg.clone())).await,
        };
        let Some((id, serial, outbox)) = Box::pin(admission::welcome(&mut socket, &state, host, ip, local)).await
        else {
            return;
        };
        socket.set_max_message(MAX_MESSAGE_BYTES);
        tracing::debug!(peer = %id, %ip, "peer joined");
        Box::pin(Peer::new(&state, id, serial, outbox, ip).run(&mut socket)).await;
        let _ = Box::pin(timeout(state.config.send_timeout, socket.close(1000, ""))).await;
    }
}
