//! The hello phase of a connection: `hello` (the peer's key) is answered with a fresh nonce
//! ([`ServerMsg::AuthChallenge`]) that the peer signs in `auth_proof`; until then it may send only a
//! few messages (each answered with an error) of at most [`MAX_HELLO_BYTES`] each (a larger
//! one closes the connection with 1009), within the hello timeout: a stranger cannot make the
//! tracker buffer more than that before it has an identity. The full message limit
//! ([`swarm_core::wire::MAX_MESSAGE_BYTES`]) applies once the peer is welcomed. A hello is
//! checked (protocol version, on a private tracker the join token:
//! [`swarm_core::swarm::policy::check_join_token`], then the origin it was signed for and the
//! signature: [`swarm_core::identity`]; a refusal closes the connection), the peer joins
//! the swarm unless the tracker is full or its address has too many identities live
//! ([`swarm_core::swarm::policy::AddressLimits::check_identity`]), and `welcome` is queued on
//! its fresh outbox, after a legacy identity's one-time migration ([`super::migrate`]).

use super::{classify, send_now, Incoming};
use crate::app::AppState;
use crate::core::outbox::{Frame, Outbox};
use crate::driver::{now_ms, Counters};
use crate::transport::websocket::Socket;
use std::net::{IpAddr, SocketAddr};
use swarm_core::identity::{accepted_text, origin_accepted, verify_hello, HelloError};
use swarm_core::swarm::policy::check_join_token;
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
    local: Option<SocketAddr>,
) -> Option<(PeerId, u64, Outbox)> {
    let deadline = Instant::now() + state.config.hello_timeout;
    let mut strikes = 0u32;
    // After a hello: its key and kind, and the nonce its proof must sign.
    let mut challenged: Option<(String, PeerKind, [u8; 32])> = None;
    loop {
        let incoming = classify(timeout(deadline - Instant::now(), socket.recv()).await.ok()?, state);
        let err = match incoming {
            Incoming::Closed => return None,
            Incoming::Bad(code, e) => ServerMsg::error(None, code, e),
            Incoming::Relay(_) => ServerMsg::error(None, ErrorCode::NotWelcomed, "say hello before relaying"),
            Incoming::Msg(ClientMsg::Hello { version, kind, key, token }) => {
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
                if let Err(e) = check_key(&key) {
                    send_now(socket, state, ServerMsg::error(None, ErrorCode::BadSignature, e.to_string())).await;
                    return None;
                }
                let again = challenged.is_some();
                let nonce: [u8; 32] = rand::random();
                challenged = Some((key, kind, nonce));
                if !send_now(socket, state, ServerMsg::AuthChallenge { nonce }).await {
                    return None;
                }
                if !again {
                    continue;
                }
                ServerMsg::error(None, ErrorCode::NotWelcomed, "hello was already said: answer the newest challenge")
            }
            Incoming::Msg(ClientMsg::AuthProof { origin, signature, migrate }) => {
                let Some((key, kind, nonce)) = challenged.take() else {
                    send_now(socket, state, ServerMsg::error(None, ErrorCode::NotWelcomed, "say hello first")).await;
                    return None;
                };
                // Refused for good: the nonce was used.
                let id = match check_proof(state, local, &key, &signature, &nonce, &origin) {
                    Ok(id) => id,
                    Err(e) => {
                        let code = match e {
                            HelloError::WrongOrigin { .. } => ErrorCode::WrongOrigin,
                            _ => ErrorCode::BadSignature,
                        };
                        send_now(socket, state, ServerMsg::error(None, code, e.to_string())).await;
                        return None;
                    }
                };
                return admit(socket, state, host, ip, id, kind, migrate).await;
            }
            Incoming::Msg(_) => ServerMsg::error(None, ErrorCode::NotWelcomed, "say hello first"),
        };
        strikes += 1;
        if strikes > MAX_STRIKES || !send_now(socket, state, err).await {
            return None;
        }
    }
}

/// A proven peer joins (unless a limit says no), a legacy identity's files move
/// ([`super::migrate`]) and `welcome` is queued.
async fn admit(
    socket: &mut Socket,
    state: &AppState,
    host: Option<Box<str>>,
    ip: IpAddr,
    id: PeerId,
    kind: PeerKind,
    migrate: Option<String>,
) -> Option<(PeerId, u64, Outbox)> {
    let (serial, outbox) = match join(state, &id, kind, ip) {
        Ok(joined) => joined,
        Err(refusal) => {
            Counters::add(&state.counters.limit_refusals, 1);
            send_now(socket, state, *refusal).await;
            return None;
        }
    };
    let (migrated, refused) = match migrate {
        None => (None, None),
        Some(secret) => match super::migrate::migrate(state, &secret, &id) {
            Ok(n) => (Some(n), None),
            Err(e) => (None, Some(ServerMsg::error(None, e.code(), e.to_string()))),
        },
    };
    let ice_servers =
        crate::net::ice::welcome_servers(host.as_deref(), state.config.stun_port, &state.config.ice_servers);
    let ice_servers =
        crate::net::ice::with_turn_credentials(ice_servers, state.config.turn.as_ref(), &id, now_ms() / 1000);
    let welcome = ServerMsg::Welcome {
        version: PROTOCOL_VERSION,
        peer_id: id.clone(),
        migrated,
        ice_servers,
        trackers: state.trackers(),
    };
    if outbox.push(Frame::json(welcome)).is_err() {
        return None;
    }
    if let Some(refused) = refused {
        let _ = outbox.push(Frame::json(refused));
    }
    Some((id, serial, outbox))
}

/// A hello's key: an Ed25519 public key in hex.
fn check_key(key: &str) -> Result<(), HelloError> {
    let mut k = [0u8; 32];
    hex::decode_to_slice(key, &mut k).map_err(|_| HelloError::BadKey)?;
    ed25519_ok(&k).then_some(()).ok_or(HelloError::BadKey)
}

fn ed25519_ok(k: &[u8; 32]) -> bool {
    swarm_core::identity::is_public_key(k)
}

/// The peer a proof speaks for: signed for an origin this tracker answers to, by the key the
/// id derives from.
fn check_proof(
    state: &AppState,
    local: Option<SocketAddr>,
    key: &str,
    signature: &str,
    nonce: &[u8; 32],
    origin: &str,
) -> Result<PeerId, HelloError> {
    let mut known = state.config.public_urls.clone();
    known.extend(state.trackers());
    if !origin_accepted(origin, &known, local) {
        return Err(HelloError::WrongOrigin { signed: origin.into(), accepted: accepted_text(&known, local) });
    }
    verify_hello(key, signature, nonce, origin)
}

/// Registers the peer unless the tracker is full or its address has as many identities live
/// as it may (a reconnecting peer always gets in); the refusal says which.
fn join(state: &AppState, id: &PeerId, kind: PeerKind, ip: IpAddr) -> Result<(u64, Outbox), Box<ServerMsg>> {
    let limits = &state.config.limits;
    let addr = state.addr_key(ip);
    let mut core = state.core();
    if *state.shutdown.borrow() {
        // Shutting down: every outbox was closed under this lock.
        return Err(Box::new(ServerMsg::error(None, ErrorCode::LimitReached, "the tracker is shutting down")));
    }
    let outbox = Outbox::new(limits.outbox_frames, limits.outbox_bytes);
    let serial = core.admit(id, kind, outbox.clone(), addr, now_ms(), state.mono_ms()).map_err(|r| {
        if r.over_budget {
            Counters::add(&state.counters.over_budget, 1);
        }
        r.msg
    })?;
    if let Some(cl) = &state.cluster {
        // Under the core's lock: the other nodes hear `joined` before any `left` of this peer.
        let peer = crate::cluster::msg::RosterPeer { peer: id.clone(), kind, storage: None };
        cl.broadcast(&crate::cluster::msg::NodeMsg::Joined { node: cl.tag, peer });
    }
    drop(core);
    Ok((serial, outbox))
}
