//! The native peer's transport to the tracker: says hello with this peer's key and answers the
//! tracker's challenge signed for the tracker's origin as dialled (so that a refusal is reported
//! before the peer starts; see [`swarm_core::identity`]), sends heartbeats, and hands every message and
//! relay frame to the driver (the peer core matches answers to requests). When the tracker
//! goes away it reconnects with jittered backoff ([`swarm_core::peer::backoff`]) and says so
//! ([`Incoming::Reconnected`]); the core then re-announces the whole inventory and re-sends
//! unanswered requests. `ws://` or `wss://` (TLS settings: [`crate::tls`]).
//!
//! Failover: the peer may be given several tracker URLs (the nodes of a tracker cluster), and
//! each `welcome` names every node of the cluster. Attempts rotate through the configured
//! URLs, then the learned ones ([`swarm_core::peer::trackers::TrackerList`]): the first that
//! answers is used; after a session drops the node it was on is tried first, then the others.

use crate::identity::Identity;
use anyhow::{anyhow, Context};
use futures_util::{SinkExt, StreamExt};
use rustls::ClientConfig;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_core::identity::Keypair;
use swarm_core::peer::backoff::Backoff;
use swarm_core::peer::trackers::TrackerList;
use swarm_core::relay::RelayFrame;
use swarm_core::wire::ErrorCode;
use swarm_core::{ClientMsg, IceServer, PeerId, PeerKind, ServerMsg};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An error the tracker answered with.
#[derive(Debug, thiserror::Error)]
#[error("tracker: {message} ({code:?})")]
pub struct TrackerError {
    pub code: ErrorCode,
    pub message: String,
}

/// Why [`TrackerClient::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The tracker answered the hello with an error (not retried).
    #[error(transparent)]
    Refused(#[from] TrackerError),
    /// No tracker could be reached, even after retrying with backoff (or TLS with it failed,
    /// which is not retried): every URL tried, with why its last attempt failed.
    #[error("{}", unreachable_text(tried, *attempts))]
    Unreachable { tried: Vec<Tried>, attempts: u32 },
}

/// A tracker URL [`TrackerClient::connect`] tried, and why its last attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    pub url: String,
    pub cause: String,
}

/// `cannot reach the tracker at URL after N attempts: CAUSE`, each URL and each cause said
/// once (URLs that failed alike are named together).
fn unreachable_text(tried: &[Tried], attempts: u32) -> String {
    let mut by_cause: Vec<(&str, Vec<&str>)> = Vec::new();
    for t in tried {
        match by_cause.iter_mut().find(|(cause, _)| *cause == t.cause) {
            Some((_, urls)) => urls.push(&t.url),
            None => by_cause.push((&t.cause, vec![&t.url])),
        }
    }
    let after = format!("after {attempts} attempt{}", if attempts == 1 { "" } else { "s" });
    match &by_cause[..] {
        [(cause, urls)] if urls.len() == 1 => format!("cannot reach the tracker at {} {after}: {cause}", urls[0]),
        [(cause, urls)] => format!("cannot reach the trackers at {} {after}: {cause}", urls.join(", ")),
        groups => {
            let each: Vec<String> =
                groups.iter().map(|(cause, urls)| format!("{}: {cause}", urls.join(", "))).collect();
            format!("cannot reach any tracker {after}: {}", each.join("; "))
        }
    }
}

/// Why a request to the tracker got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The tracker answered with an error.
    #[error(transparent)]
    Tracker(#[from] TrackerError),
    #[error("tracker did not answer in time")]
    Timeout,
    #[error("tracker connection lost")]
    Lost,
}

impl RequestError {
    /// The tracker's error code, if it answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            RequestError::Tracker(t) => Some(t.code),
            _ => None,
        }
    }
}

/// Why one attempt at a session failed.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Refused(#[from] TrackerError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsRefused),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl SessionError {
    /// Each cause once (libraries repeat their source's text in their own message).
    fn text(&self) -> String {
        match self {
            SessionError::Other(e) => crate::cli::causes_text(e.chain()),
            e => e.to_string(),
        }
    }
}

/// What the tracker sends that is not an answer to a request.
#[derive(Debug)]
pub enum Incoming {
    /// Signalling, replication orders, trims, leave answers.
    Msg(ServerMsg),
    /// A relayed chunk-protocol message from another peer.
    Relay(RelayFrame),
    /// A new session with the tracker began (after a reconnect), welcomed as this peer.
    Reconnected,
    /// The session ended; reconnecting.
    Disconnected,
}

/// Why a session ended when this peer closed it.
/// Why a websocket session ended.
#[derive(Debug, PartialEq, Eq)]
enum SessionEnd {
    /// This peer closed it ([`TrackerClient::close`]) or stopped: no reconnect.
    ClosedByUs,
    /// The node stopped answering (nothing heard, or nothing taken, for [`SILENT_AFTER`]):
    /// it is likely down or cut off, so the reconnect tries the next node first.
    Silent(String),
    /// The connection closed or broke: the reconnect tries the same node first (a restart,
    /// a blip).
    Lost(String),
}

enum Outgoing {
    Json(ClientMsg),
    /// Close the session (a websocket close frame: the tracker sees this peer leave at once)
    /// after what was queued before it, then stop; the sender hears when it is done.
    Close(oneshot::Sender<()>),
}

pub struct TrackerClient {
    out: mpsc::UnboundedSender<Outgoing>,
    relay_out: mpsc::Sender<Vec<u8>>,
    pub peer_id: PeerId,
    /// The ICE servers the tracker named in its latest `welcome`.
    pub ice_servers: Mutex<Vec<IceServer>>,
    /// The tracker node of the current (or latest) session.
    current: Mutex<String>,
    /// The cluster's nodes as the tracker last listed them during a session (`trackers`),
    /// taken into the rotation when the session ends.
    learned: Mutex<Option<Vec<String>>>,
}

/// TLS for `wss://` trackers: the client configuration, made when the first `wss://` URL
/// needs it (a `wss://` URL learned from a `welcome` when every configured one is `ws://`).
pub struct TrackerTls {
    /// The extra CA to trust (`--tracker-ca`).
    pub ca: Option<PathBuf>,
    /// Made already (the caller makes it up front when a configured URL is `wss://`, so a
    /// bad CA file is reported before any connection).
    pub config: Option<Arc<ClientConfig>>,
}

impl TrackerTls {
    fn for_url(&mut self, url: &str) -> Result<Option<Arc<ClientConfig>>, crate::tls::TlsSetupError> {
        if !crate::tls::is_wss(url) {
            return Ok(None);
        }
        if self.config.is_none() {
            self.config = Some(crate::tls::client_config(self.ca.as_deref())?);
        }
        Ok(self.config.clone())
    }
}

/// What it takes to open a session again.
struct Session {
    trackers: TrackerList,
    identity: Identity,
    /// Whether these trackers are the configured ones (not a link's): only they may hear a
    /// legacy identity's old secret, to move its files ([`crate::identity`]).
    migrate: bool,
    token: Option<String>,
    tls: TrackerTls,
}

/// What a tracker's `welcome` says.
struct Welcome {
    peer_id: PeerId,
    migrated: Option<u32>,
    ice_servers: Vec<IceServer>,
    trackers: Vec<String>,
}

impl Session {
    /// Opens a session with `url`.
    async fn open(&mut self, url: &str) -> Result<(Ws, Welcome), SessionError> {
        let tls = self.tls.for_url(url).map_err(anyhow::Error::new)?;
        let legacy = self.identity.legacy.clone().filter(|_| self.migrate);
        let opened = open_session(url, &self.identity.keys, legacy, self.token.as_deref(), tls.as_ref()).await?;
        if opened.1.migrated.is_some() {
            if let Err(e) = self.identity.migrated() {
                tracing::warn!("the tracker moved this identity's files, but: {e:#}");
            }
        }
        if self.trackers.learn(&opened.1.trackers, |_| true) {
            tracing::info!(trackers = ?self.trackers.urls().collect::<Vec<_>>(), "tracker nodes to fail over to");
        }
        Ok(opened)
    }
}

const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often the connection is pinged (a websocket ping: the tracker's websocket layer answers
/// with a pong, whatever its peer logic is doing).
const PING: Duration = Duration::from_secs(5);
/// A tracker connection that brought nothing at all (no message, no pong) for this long is
/// given up and another node is tried: a tracker host that went off the network, or a stopped
/// process, keeps the TCP connection open while nothing comes back.
pub const SILENT_AFTER: Duration = Duration::from_millis(swarm_core::peer::config::TRACKER_SILENT_MS);
/// How long opening a websocket to one tracker may take (an unreachable node that drops
/// packets must not hold up the failover to the next for the TCP connect timeout).
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// `host[:port]` of a websocket URL, for messages.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

async fn open_session(
    url: &str,
    keys: &Keypair,
    migrate: Option<String>,
    token: Option<&str>,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(Ws, Welcome), SessionError> {
    let connector = tls.map(|c| Connector::Rustls(c.clone()));
    let connecting = tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector);
    let (mut ws, _) = match tokio::time::timeout(OPEN_TIMEOUT, connecting).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => match crate::tls::explain(&e, host_of(url)) {
            Some(refused) => return Err(refused.into()),
            None => return Err(anyhow::Error::new(e).context(format!("cannot reach the tracker at {url}")).into()),
        },
        Err(_) => {
            let e = anyhow!("no connection in {OPEN_TIMEOUT:?}").context(format!("cannot reach the tracker at {url}"));
            return Err(e.into());
        }
    };
    let hello = keys.hello(PeerKind::Native, token.map(Into::into));
    ws.send(Message::Text(hello.to_json().into())).await.map_err(anyhow::Error::new)?;
    let mut proved = false;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("tracker did not answer hello")?
            .ok_or_else(|| anyhow!("tracker closed the connection"))?
            .map_err(anyhow::Error::new)?;
        if let Message::Text(t) = msg {
            match serde_json::from_str::<ServerMsg>(t.as_str()).map_err(anyhow::Error::new)? {
                ServerMsg::AuthChallenge { nonce } if !proved => {
                    let proof = keys.proof(&nonce, url, migrate.clone());
                    ws.send(Message::Text(proof.to_json().into())).await.map_err(anyhow::Error::new)?;
                    proved = true;
                }
                ServerMsg::Welcome { peer_id, migrated, ice_servers, trackers, .. } => {
                    return Ok((ws, Welcome { peer_id, migrated, ice_servers, trackers }))
                }
                ServerMsg::Error { message, code, .. } => return Err(TrackerError { code, message }.into()),
                _ => {}
            }
        }
    }
}

impl TrackerClient {
    /// Connects to the first of `trackers` that answers (rotating through them, with backoff
    /// between attempts, up to `first_attempts` attempts, and at least one per URL), says hello
    /// and waits for the welcome; afterwards the connection is kept up for the life of the
    /// process, failing over to the other trackers when the one in use goes away. A TLS
    /// failure (untrusted certificate, wrong name) is not retried: that tracker is left out.
    /// `token`: the join token of a private tracker.
    pub async fn connect(
        trackers: TrackerList,
        identity: Identity,
        migrate: bool,
        token: Option<&str>,
        first_attempts: u32,
        tls: TrackerTls,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Incoming>), ConnectError> {
        let max_attempts = first_attempts.max(trackers.len() as u32);
        let mut session = Session { trackers, identity, migrate, token: token.map(Into::into), tls };
        let mut backoff = Backoff::default();
        let mut attempt = 0;
        let mut tried: Vec<Tried> = Vec::new();
        // URLs whose TLS failed: not tried again.
        let mut dead: HashSet<String> = HashSet::new();
        let (ws, welcome) = loop {
            attempt += 1;
            let url = session.trackers.current().to_string();
            let e = match session.open(&url).await {
                Ok(s) => break s,
                Err(SessionError::Refused(t)) if t.code != ErrorCode::Unavailable => return Err(t.into()),
                Err(e) => e,
            };
            let cause = match &e {
                // Its outermost context says "cannot reach the tracker at {url}": the error
                // made of these causes says so already.
                SessionError::Other(e) => {
                    let said = e.to_string().starts_with("cannot reach the tracker") && e.source().is_some();
                    crate::cli::causes_text(e.chain().skip(usize::from(said)))
                }
                e => e.to_string(),
            };
            if matches!(e, SessionError::Tls(_)) {
                dead.insert(url.clone());
            }
            match tried.iter_mut().find(|t| t.url == url) {
                Some(t) => t.cause = cause,
                None => tried.push(Tried { url: url.clone(), cause }),
            }
            let next =
                (0..session.trackers.len()).map(|_| session.trackers.advance().to_string()).find(|u| !dead.contains(u));
            let Some(next) = next.filter(|_| attempt < max_attempts) else {
                return Err(ConnectError::Unreachable { tried, attempts: attempt });
            };
            let delay = Duration::from_millis(backoff.next_delay_ms(rand::random()));
            let e = e.text();
            let then =
                if next == url { format!("retrying in {delay:?}") } else { format!("trying {next} in {delay:?}") };
            // A one-shot command says the cause once, in its error, if every attempt fails; a
            // long-running peer warns as it goes.
            if first_attempts == u32::MAX {
                tracing::warn!("{e}; {then}");
            } else {
                tracing::info!("{e}; {then} (attempt {attempt} of {max_attempts})");
            }
            tokio::time::sleep(delay).await;
        };
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (relay_tx, relay_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let client = Arc::new(Self {
            out: out_tx,
            relay_out: relay_tx,
            peer_id: welcome.peer_id,
            ice_servers: Mutex::new(welcome.ice_servers),
            current: Mutex::new(session.trackers.current().to_string()),
            learned: Mutex::new(None),
        });
        tokio::spawn(client.clone().supervise(ws, session, out_rx, relay_rx, in_tx));
        Ok((client, in_rx))
    }

    /// The tracker node of the current (or latest) session.
    pub fn current_url(&self) -> String {
        self.current.lock().unwrap().clone()
    }

    async fn supervise(
        self: Arc<Self>,
        mut ws: Ws,
        mut session: Session,
        mut out: mpsc::UnboundedReceiver<Outgoing>,
        mut relay: mpsc::Receiver<Vec<u8>>,
        incoming: mpsc::UnboundedSender<Incoming>,
    ) {
        loop {
            let end = self.session(ws, &mut out, &mut relay, &incoming).await;
            if end == SessionEnd::ClosedByUs || incoming.send(Incoming::Disconnected).is_err() {
                return;
            }
            if let Some(nodes) = self.learned.lock().unwrap().take() {
                session.trackers.learn(&nodes, |_| true);
            }
            let was = session.trackers.current().to_string();
            // After a close, the node it was on first (a restart, a blip), then the others in
            // turn; after silence, the others first (a node down or cut off makes the first
            // attempt wait out its open timeout).
            match end {
                SessionEnd::Silent(reason) if session.trackers.len() > 1 => {
                    let next = session.trackers.advance();
                    tracing::warn!("lost the tracker connection to {was} ({reason}); trying {next}");
                }
                SessionEnd::Silent(reason) | SessionEnd::Lost(reason) => {
                    tracing::warn!("lost the tracker connection to {was} ({reason}); reconnecting");
                }
                SessionEnd::ClosedByUs => unreachable!("returned above"),
            }
            let mut backoff = Backoff::default();
            ws = loop {
                let url = session.trackers.current().to_string();
                match session.open(&url).await {
                    Ok((ws, welcome)) => {
                        *self.ice_servers.lock().unwrap() = welcome.ice_servers;
                        *self.current.lock().unwrap() = url;
                        break ws;
                    }
                    Err(e) => {
                        let delay = Duration::from_millis(backoff.next_delay_ms(rand::random()));
                        let next = session.trackers.advance();
                        let then = if next == url {
                            format!("retrying in {delay:?}")
                        } else {
                            format!("trying {next} in {delay:?}")
                        };
                        tracing::warn!("tracker unreachable: {}; {then}", e.text());
                        tokio::time::sleep(delay).await;
                    }
                }
            };
            tracing::info!("reconnected to the tracker at {}", session.trackers.current());
            let _ = incoming.send(Incoming::Reconnected);
        }
    }

    /// Runs one websocket session until it ends; returns why.
    ///
    /// Reading and writing are two loops that never wait on each other: a peer that stopped
    /// reading while one of its writes waited for the tracker (paced, or busy writing to this
    /// peer) left both ends stalled until [`SILENT_AFTER`] ended the session (seen under a
    /// relay flood: a seeder's signalling answer stuck behind its relayed data, the honest
    /// downloader's link never opened). Messages go before relay frames.
    async fn session(
        &self,
        ws: Ws,
        out: &mut mpsc::UnboundedReceiver<Outgoing>,
        relay: &mut mpsc::Receiver<Vec<u8>>,
        incoming: &mpsc::UnboundedSender<Incoming>,
    ) -> SessionEnd {
        let (mut sink, mut stream) = ws.split();
        let read = async {
            loop {
                let Ok(m) = tokio::time::timeout(SILENT_AFTER, stream.next()).await else {
                    let secs = SILENT_AFTER.as_secs();
                    return SessionEnd::Silent(format!("the tracker went silent (nothing for {secs} s)"));
                };
                match m {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMsg>(t.as_str()) {
                        Ok(m) => self.dispatch(m, incoming),
                        Err(e) => tracing::warn!("unreadable message from the tracker: {e}"),
                    },
                    Some(Ok(Message::Binary(b))) => match RelayFrame::decode(&b) {
                        Ok(f) => {
                            let _ = incoming.send(Incoming::Relay(f));
                        }
                        Err(e) => tracing::warn!("bad relay frame from the tracker: {e}"),
                    },
                    Some(Ok(Message::Close(_))) | None => return SessionEnd::Lost("closed by the tracker".into()),
                    Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
                    Some(Ok(_)) => {}
                }
            }
        };
        let write = async {
            let mut beat = tokio::time::interval(HEARTBEAT);
            let mut ping = tokio::time::interval(PING);
            loop {
                let to_send = tokio::select! {
                    biased;
                    m = out.recv() => match m {
                        Some(Outgoing::Json(m)) => Message::Text(m.to_json().into()),
                        Some(Outgoing::Close(done)) => {
                            let _ = sink.send(Message::Close(None)).await;
                            let _ = sink.close().await;
                            let _ = done.send(());
                            return SessionEnd::ClosedByUs;
                        }
                        None => return SessionEnd::ClosedByUs,
                    },
                    _ = ping.tick() => Message::Ping(Vec::new().into()),
                    _ = beat.tick() => Message::Text(ClientMsg::Heartbeat.to_json().into()),
                    b = relay.recv() => match b {
                        Some(b) => Message::Binary(b.into()),
                        None => return SessionEnd::ClosedByUs,
                    },
                };
                match tokio::time::timeout(SILENT_AFTER, sink.send(to_send)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return SessionEnd::Lost(e.to_string()),
                    Err(_) => {
                        let secs = SILENT_AFTER.as_secs();
                        return SessionEnd::Silent(format!("the tracker took nothing for {secs} s"));
                    }
                }
            }
        };
        tokio::select! {
            end = read => end,
            end = write => end,
        }
    }

    fn dispatch(&self, msg: ServerMsg, incoming: &mpsc::UnboundedSender<Incoming>) {
        if let ServerMsg::Error { req: None, code, message } = &msg {
            tracing::warn!(?code, "tracker: {message}");
        }
        if let ServerMsg::Trackers { trackers } = &msg {
            tracing::info!(?trackers, "the tracker cluster's nodes changed");
            *self.learned.lock().unwrap() = Some(trackers.clone());
        }
        let _ = incoming.send(Incoming::Msg(msg));
    }

    /// Closes the session once what is queued has gone out, so the tracker sees this peer
    /// leave at once rather than after its idle timeout; no reconnect follows. Waits at most
    /// `timeout`.
    pub async fn close(&self, timeout: Duration) {
        let (done, rx) = oneshot::channel();
        if self.out.send(Outgoing::Close(done)).is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }

    /// Sends a message (queued while the tracker is unreachable).
    pub fn send(&self, msg: ClientMsg) {
        let _ = self.out.send(Outgoing::Json(msg));
    }

    /// Sends a relay frame, waiting while the relay queue is full.
    pub async fn send_relay(&self, frame: &RelayFrame) -> anyhow::Result<()> {
        let bytes = frame.encode()?;
        self.relay_out.send(bytes).await.map_err(|_| anyhow!("tracker connection closed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tried(url: &str, cause: &str) -> Tried {
        Tried { url: url.into(), cause: cause.into() }
    }

    #[test]
    fn the_unreachable_error_names_every_url_tried_and_each_cause_once() {
        let refused = "IO error: Connection refused (os error 111)";
        let one = ConnectError::Unreachable { tried: vec![tried("ws://a/ws", refused)], attempts: 5 };
        assert_eq!(one.to_string(), format!("cannot reach the tracker at ws://a/ws after 5 attempts: {refused}"));
        let alike = ConnectError::Unreachable {
            tried: vec![tried("ws://a/ws", refused), tried("ws://b/ws", refused)],
            attempts: 1,
        };
        assert_eq!(
            alike.to_string(),
            format!("cannot reach the trackers at ws://a/ws, ws://b/ws after 1 attempt: {refused}")
        );
        let tls = "TLS with the tracker at c failed: certificate not trusted";
        let mixed = ConnectError::Unreachable {
            tried: vec![tried("ws://a/ws", refused), tried("wss://c/ws", tls), tried("ws://b/ws", refused)],
            attempts: 5,
        }
        .to_string();
        assert_eq!(
            mixed,
            format!("cannot reach any tracker after 5 attempts: ws://a/ws, ws://b/ws: {refused}; wss://c/ws: {tls}")
        );
        assert_eq!(mixed.matches("Connection refused").count(), 1, "{mixed}");
    }
}
