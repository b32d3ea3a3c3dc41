//! The native peer's transport to the tracker: says hello with this peer's secret (so that a
//! refusal is reported before the peer starts), sends heartbeats, and hands every message and
//! relay frame to the driver (the peer core matches answers to requests). When the tracker
//! goes away it reconnects with jittered backoff ([`swarm_core::peer::backoff`]) and says so
//! ([`Incoming::Reconnected`]); the core then re-announces the whole inventory and re-sends
//! unanswered requests. `ws://` or `wss://` (TLS settings: [`crate::tls`]).

use anyhow::{anyhow, Context};
use futures_util::{SinkExt, StreamExt};
use rustls::ClientConfig;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_core::peer::backoff::Backoff;
use swarm_core::relay::RelayFrame;
use swarm_core::wire::{ErrorCode, PROTOCOL_VERSION};
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
    /// The tracker could not be reached, even after retrying with backoff (or TLS with it
    /// failed, which is not retried).
    #[error("cannot reach the tracker at {url} after {attempts} attempt{}: {last}", if *.attempts == 1 { "" } else { "s" })]
    Unreachable { url: String, attempts: u32, last: String },
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
const CLOSED_BY_US: &str = "closed by this peer";

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
}

/// What it takes to open a session again.
struct Session {
    url: String,
    secret: String,
    token: Option<String>,
    tls: Option<Arc<ClientConfig>>,
}

const HEARTBEAT: Duration = Duration::from_secs(10);

/// `host[:port]` of a websocket URL, for messages.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

async fn open_session(
    url: &str,
    secret: &str,
    token: Option<&str>,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(Ws, PeerId, Vec<IceServer>), SessionError> {
    let connector = tls.map(|c| Connector::Rustls(c.clone()));
    let (mut ws, _) = match tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector).await {
        Ok(ok) => ok,
        Err(e) => match crate::tls::explain(&e, host_of(url)) {
            Some(refused) => return Err(refused.into()),
            None => return Err(anyhow::Error::new(e).context(format!("cannot reach the tracker at {url}")).into()),
        },
    };
    let hello = ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        kind: PeerKind::Native,
        secret: secret.into(),
        token: token.map(Into::into),
    };
    ws.send(Message::Text(hello.to_json().into())).await.map_err(anyhow::Error::new)?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("tracker did not answer hello")?
            .ok_or_else(|| anyhow!("tracker closed the connection"))?
            .map_err(anyhow::Error::new)?;
        if let Message::Text(t) = msg {
            match serde_json::from_str::<ServerMsg>(t.as_str()).map_err(anyhow::Error::new)? {
                ServerMsg::Welcome { peer_id, ice_servers, .. } => return Ok((ws, peer_id, ice_servers)),
                ServerMsg::Error { message, code, .. } => return Err(TrackerError { code, message }.into()),
                _ => {}
            }
        }
    }
}

impl TrackerClient {
    /// Connects (retrying with backoff up to `first_attempts` times), says hello and waits
    /// for the welcome; afterwards the connection is kept up for the life of the process.
    /// `tls` is used for `wss://` URLs; a TLS failure (untrusted certificate, wrong name) is
    /// not retried: the tracker is unreachable at once. `token`: the join token of a private
    /// tracker.
    pub async fn connect(
        url: &str,
        secret: &str,
        token: Option<&str>,
        first_attempts: u32,
        tls: Option<Arc<ClientConfig>>,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Incoming>), ConnectError> {
        let mut backoff = Backoff::default();
        let mut attempt = 0;
        let (ws, peer_id, ice_servers) = loop {
            attempt += 1;
            match open_session(url, secret, token, tls.as_ref()).await {
                Ok(s) => break s,
                Err(SessionError::Refused(t)) => return Err(t.into()),
                Err(SessionError::Other(e)) if attempt < first_attempts => {
                    let of = if first_attempts == u32::MAX {
                        String::new()
                    } else {
                        format!(" (attempt {attempt} of {first_attempts})")
                    };
                    let delay = Duration::from_millis(backoff.next_delay_ms(rand::random()));
                    // A one-shot command says the cause once, in its error, if every attempt
                    // fails; a long-running peer warns as it goes.
                    if first_attempts == u32::MAX {
                        tracing::warn!("{e:#}; retrying in {delay:?}");
                    } else {
                        tracing::info!("{e:#}; retrying in {delay:?}{of}");
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    let last = match e {
                        // Its outermost context says "cannot reach the tracker at {url}": the
                        // error below says so already.
                        SessionError::Other(e) => {
                            let said = e.to_string().starts_with("cannot reach the tracker") && e.source().is_some();
                            crate::cli::causes_text(e.chain().skip(usize::from(said)))
                        }
                        e => e.to_string(),
                    };
                    return Err(ConnectError::Unreachable { url: url.to_string(), attempts: attempt, last });
                }
            }
        };
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (relay_tx, relay_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let client = Arc::new(Self { out: out_tx, relay_out: relay_tx, peer_id, ice_servers: Mutex::new(ice_servers) });
        let session = Session { url: url.to_string(), secret: secret.to_string(), token: token.map(Into::into), tls };
        tokio::spawn(client.clone().supervise(ws, session, out_rx, relay_rx, in_tx));
        Ok((client, in_rx))
    }

    async fn supervise(
        self: Arc<Self>,
        mut ws: Ws,
        session: Session,
        mut out: mpsc::UnboundedReceiver<Outgoing>,
        mut relay: mpsc::Receiver<Vec<u8>>,
        incoming: mpsc::UnboundedSender<Incoming>,
    ) {
        loop {
            let reason = self.session(ws, &mut out, &mut relay, &incoming).await;
            if reason == CLOSED_BY_US || incoming.send(Incoming::Disconnected).is_err() {
                return;
            }
            tracing::warn!("lost the tracker connection ({reason}); reconnecting");
            let mut backoff = Backoff::default();
            ws = loop {
                match open_session(&session.url, &session.secret, session.token.as_deref(), session.tls.as_ref()).await
                {
                    Ok((ws, _, ice)) => {
                        *self.ice_servers.lock().unwrap() = ice;
                        break ws;
                    }
                    Err(e) => {
                        let delay = Duration::from_millis(backoff.next_delay_ms(rand::random()));
                        tracing::warn!("tracker unreachable: {e:#}; retrying in {delay:?}");
                        tokio::time::sleep(delay).await;
                    }
                }
            };
            tracing::info!("reconnected to the tracker");
            let _ = incoming.send(Incoming::Reconnected);
        }
    }

    /// Runs one websocket session until it ends; returns why.
    async fn session(
        &self,
        ws: Ws,
        out: &mut mpsc::UnboundedReceiver<Outgoing>,
        relay: &mut mpsc::Receiver<Vec<u8>>,
        incoming: &mpsc::UnboundedSender<Incoming>,
    ) -> String {
        let (mut sink, mut stream) = ws.split();
        let mut beat = tokio::time::interval(HEARTBEAT);
        loop {
            let to_send = tokio::select! {
                m = out.recv() => match m {
                    Some(Outgoing::Json(m)) => Message::Text(m.to_json().into()),
                    Some(Outgoing::Close(done)) => {
                        let _ = sink.send(Message::Close(None)).await;
                        let _ = sink.close().await;
                        let _ = done.send(());
                        return CLOSED_BY_US.into();
                    }
                    None => return "node stopped".into(),
                },
                b = relay.recv() => match b {
                    Some(b) => Message::Binary(b.into()),
                    None => return "node stopped".into(),
                },
                _ = beat.tick() => Message::Text(ClientMsg::Heartbeat.to_json().into()),
                m = stream.next() => {
                    match m {
                        Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMsg>(t.as_str()) {
                            Ok(m) => self.dispatch(m, incoming),
                            Err(e) => tracing::warn!("unreadable message from the tracker: {e}"),
                        },
                        Some(Ok(Message::Binary(b))) => match RelayFrame::decode(&b) {
                            Ok(f) => { let _ = incoming.send(Incoming::Relay(f)); }
                            Err(e) => tracing::warn!("bad relay frame from the tracker: {e}"),
                        },
                        Some(Ok(Message::Close(_))) | None => return "closed by the tracker".into(),
                        Some(Err(e)) => return e.to_string(),
                        Some(Ok(_)) => {}
                    }
                    continue;
                }
            };
            if let Err(e) = sink.send(to_send).await {
                return e.to_string();
            }
        }
    }

    fn dispatch(&self, msg: ServerMsg, incoming: &mpsc::UnboundedSender<Incoming>) {
        if let ServerMsg::Error { req: None, code, message } = &msg {
            tracing::warn!(?code, "tracker: {message}");
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
