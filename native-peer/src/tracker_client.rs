//! The native peer's connection to the tracker: says hello with this peer's secret, sends
//! heartbeats, matches answers to requests by `req`, and hands incoming WebRTC signalling to
//! the node.

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_core::wire::{ErrorCode, PROTOCOL_VERSION};
use swarm_core::{ClientMsg, PeerId, PeerKind, ServerMsg, Signal};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// An error the tracker answered with.
#[derive(Debug, thiserror::Error)]
#[error("tracker: {message} ({code:?})")]
pub struct TrackerError {
    pub code: ErrorCode,
    pub message: String,
}

/// Signalling from another peer: (from, conn, signal).
pub type IncomingSignal = (PeerId, u64, Signal);

pub struct TrackerClient {
    out: mpsc::UnboundedSender<ClientMsg>,
    pending: Mutex<HashMap<u32, oneshot::Sender<ServerMsg>>>,
    next_req: AtomicU32,
    pub peer_id: PeerId,
}

const HEARTBEAT: Duration = Duration::from_secs(10);

impl TrackerClient {
    /// Connects, says hello and waits for the welcome.
    pub async fn connect(
        url: &str,
        secret: &str,
    ) -> anyhow::Result<(Arc<Self>, mpsc::UnboundedReceiver<IncomingSignal>)> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("cannot reach the tracker at {url}"))?;
        let (mut sink, mut stream) = ws.split();
        let hello = ClientMsg::Hello { version: PROTOCOL_VERSION, kind: PeerKind::Native, secret: secret.into() };
        sink.send(Message::Text(hello.to_json().into())).await?;
        let peer_id = loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .context("tracker did not answer hello")?
                .ok_or_else(|| anyhow!("tracker closed the connection"))??;
            if let Message::Text(t) = msg {
                match serde_json::from_str::<ServerMsg>(t.as_str())? {
                    ServerMsg::Welcome { peer_id, .. } => break peer_id,
                    ServerMsg::Error { message, code, .. } => bail!(TrackerError { code, message }),
                    _ => {}
                }
            }
        };
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ClientMsg>();
        let (sig_tx, sig_rx) = mpsc::unbounded_channel();
        let client =
            Arc::new(Self { out: out_tx, pending: Mutex::new(HashMap::new()), next_req: AtomicU32::new(1), peer_id });
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(HEARTBEAT);
            loop {
                let msg = tokio::select! {
                    m = out_rx.recv() => match m { Some(m) => m, None => break },
                    _ = beat.tick() => ClientMsg::Heartbeat,
                };
                if sink.send(Message::Text(msg.to_json().into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader = client.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(t) = msg else { continue };
                match serde_json::from_str::<ServerMsg>(t.as_str()) {
                    Ok(m) => reader.dispatch(m, &sig_tx),
                    Err(e) => tracing::warn!("unreadable message from tracker: {e}"),
                }
            }
            tracing::warn!("tracker connection closed");
            reader.pending.lock().unwrap().clear();
        });
        Ok((client, sig_rx))
    }

    fn dispatch(&self, msg: ServerMsg, signals: &mpsc::UnboundedSender<IncomingSignal>) {
        let req = match &msg {
            ServerMsg::Signal { from, conn, signal } => {
                let _ = signals.send((from.clone(), *conn, signal.clone()));
                return;
            }
            ServerMsg::Published { req, .. }
            | ServerMsg::Located { req, .. }
            | ServerMsg::SearchResults { req, .. } => Some(*req),
            ServerMsg::Error { req, .. } => *req,
            ServerMsg::Welcome { .. } => None,
        };
        match req.and_then(|r| self.pending.lock().unwrap().remove(&r)) {
            Some(waiter) => {
                let _ = waiter.send(msg);
            }
            None => tracing::warn!(?msg, "tracker message nobody waits for"),
        }
    }

    /// Sends a message that expects no answer.
    pub fn send(&self, msg: ClientMsg) {
        let _ = self.out.send(msg);
    }

    /// Sends a request built with a fresh `req` and waits for its answer; a tracker error
    /// becomes `Err(TrackerError)`.
    pub async fn request(&self, make: impl FnOnce(u32) -> ClientMsg) -> anyhow::Result<ServerMsg> {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(req, tx);
        self.send(make(req));
        let answer = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .context("tracker did not answer in time")?
            .map_err(|_| anyhow!("tracker connection lost"))?;
        match answer {
            ServerMsg::Error { code, message, .. } => Err(TrackerError { code, message }.into()),
            m => Ok(m),
        }
    }
}
