//! The hello phase of a connection: until the peer says a valid `hello` it may send only a
//! few messages (each answered with an error) of at most [`MAX_HELLO_BYTES`] each (a larger
//! one closes the connection with 1009), within the hello timeout: a stranger cannot make the
//! tracker buffer more than that before it has an identity. The full message limit
//! ([`swarm_core::wire::MAX_MESSAGE_BYTES`]) applies once the peer is welcomed. A valid hello is
//! checked ([`swarm_core::swarm::policy::check_secret`], protocol version), the peer joins the
//! swarm unless the tracker is full, and `welcome` is queued on its fresh outbox.

use super::{classify, send_now, Incoming};
use crate::outbox::{Frame, Outbox};
use crate::state::{now_ms, AppState, Counters};
use crate::websocket::Socket;
use swarm_core::swarm::policy::check_secret;
use swarm_core::wire::{ErrorCode, PROTOCOL_VERSION};
use swarm_core::{ClientMsg, PeerId, PeerKind, ServerMsg};
use tokio::time::{timeout, Instant};

/// Largest message before `welcome` (a `hello` is a few hundred bytes).
pub(super) const MAX_HELLO_BYTES: usize = 4096;
/// Messages other than a valid `hello` answered before the connection is closed.
const MAX_STRIKES: u32 = 16;

/// Waits for a valid hello; registers the peer and answers `welcome`.
pub(super) async fn welcome(
    socket: &mut Socket,
    state: &AppState,
    host: Option<Box<str>>,
) -> Option<(PeerId, u64, Outbox)> {
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
                if let Err(e) = check_secret(&secret) {
                    ServerMsg::error(None, e.code(), e.to_string())
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
        if strikes > MAX_STRIKES || !send_now(socket, state, err).await {
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
