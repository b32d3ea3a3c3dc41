//! The hello phase of a connection: until the peer says a valid `hello` it may send only a
//! few messages (each answered with an error) of at most [`MAX_HELLO_BYTES`] each (a larger
//! one closes the connection with 1009), within the hello timeout: a stranger cannot make the
//! tracker buffer more than that before it has an identity. The full message limit
//! ([`swarm_core::wire::MAX_MESSAGE_BYTES`]) applies once the peer is welcomed. A valid hello is
//! checked ([`swarm_core::swarm::policy::check_secret`], protocol version, and on a private
//! tracker the join token: [`swarm_core::swarm::policy::check_join_token`]), the peer joins
//! the swarm unless the tracker is full or its address has too many identities live
//! ([`swarm_core::swarm::policy::AddressLimits::check_identity`]), and `welcome` is queued on
//! its fresh outbox.

use super::{classify, send_now, Incoming};
use crate::outbox::{Frame, Outbox};
use crate::state::{now_ms, AppState, Counters};
use crate::websocket::Socket;
use std::net::IpAddr;
use swarm_core::swarm::policy::{check_join_token, check_secret};
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
    ip: IpAddr,
) -> Option<(PeerId, u64, Outbox)> {
    let deadline = Instant::now() + state.config.hello_timeout;
    let mut strikes = 0u32;
    loop {
        let incoming = classify(timeout(deadline - Instant::now(), socket.recv()).await.ok()?, state);
        let err = match incoming {
            Incoming::Closed => return None,
            Incoming::Bad(code, e) => ServerMsg::error(None, code, e),
            Incoming::Relay(_) => ServerMsg::error(None, ErrorCode::NotWelcomed, "say hello before relaying"),
            Incoming::Msg(ClientMsg::Hello { version, kind, secret, token }) => {
                if version != PROTOCOL_VERSION {
                    let msg =
                        format!("protocol version {version} is not supported; this tracker speaks {PROTOCOL_VERSION}");
                    send_now(socket, state, ServerMsg::error(None, ErrorCode::UnsupportedVersion, msg)).await;
                    return None;
                }
                if let Err(e) = check_join_token(&state.config.join_tokens, token.as_deref()) {
                    // Refused for good: a retry with the same hello cannot pass.
                    send_now(socket, state, ServerMsg::error(None, e.code(), e.to_string())).await;
                    return None;
                }
                if let Err(e) = check_secret(&secret) {
                    ServerMsg::error(None, e.code(), e.to_string())
                } else {
                    let id = PeerId::from_secret(&secret);
                    let (serial, outbox) = match join(state, &id, kind, ip) {
                        Ok(joined) => joined,
                        Err(refusal) => {
                            Counters::add(&state.counters.limit_refusals, 1);
                            send_now(socket, state, *refusal).await;
                            return None;
                        }
                    };
                    let ice_servers =
                        crate::ice::welcome_servers(host.as_deref(), state.config.stun_port, &state.config.ice_servers);
                    let welcome = ServerMsg::Welcome {
                        version: PROTOCOL_VERSION,
                        peer_id: id.clone(),
                        ice_servers,
                        trackers: state.trackers(),
                    };
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

/// Registers the peer unless the tracker is full or its address has as many identities live
/// as it may (a reconnecting peer always gets in); the refusal says which.
fn join(state: &AppState, id: &PeerId, kind: PeerKind, ip: IpAddr) -> Result<(u64, Outbox), Box<ServerMsg>> {
    let limits = &state.config.limits;
    let addr = state.addr_key(ip);
    let mut inner = state.lock();
    if *state.shutdown.borrow() {
        // Shutting down: every outbox was closed under this lock.
        return Err(Box::new(ServerMsg::error(None, ErrorCode::LimitReached, "the tracker is shutting down")));
    }
    if inner.connected.len() >= limits.max_peers && !inner.connected.contains_key(id) {
        let max = limits.max_peers;
        let msg = format!("the tracker is full ({max} peers); try again later");
        return Err(Box::new(ServerMsg::error(None, ErrorCode::LimitReached, msg)));
    }
    if let Some(a) = addr {
        let (live, already) = inner.identities_at(a, id);
        if let Err(e) = limits.address().check_identity(a, live, already) {
            return Err(Box::new(ServerMsg::error(None, e.code(), e.to_string())));
        }
    }
    if !inner.connected.contains_key(id) {
        // A new identity is new state: refused near the budget ([`crate::budget`]).
        let identity = swarm_core::swarm::budget::Work::Identity;
        let work = (identity, identity.cost(0));
        inner.check_budget(limits.budget(), work, addr).inspect_err(|_| {
            Counters::add(&state.counters.over_budget, 1);
        })?;
    }
    let outbox = Outbox::new(limits.outbox_frames, limits.outbox_bytes);
    inner.swarm.join(id.clone(), kind, now_ms());
    let serial = inner.connect(id.clone(), outbox.clone(), addr, state.mono_ms());
    if let Some(cl) = &state.cluster {
        // Connected here now (it may have been connected to another node before).
        inner.homes.remove(id);
        let peer = crate::cluster::msg::RosterPeer { peer: id.clone(), kind, storage: None };
        cl.broadcast(&crate::cluster::msg::NodeMsg::Joined { node: cl.tag, peer });
    }
    Ok((serial, outbox))
}
