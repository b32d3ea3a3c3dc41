//! A lying tracker client for the attack tests (`native-peer/tests/attacks.rs` against one
//! tracker, `e2e/tests/cluster_liars.rs` against a cluster): a raw websocket connection that
//! says hello with an identity of its own and then sends whatever the test tells it to
//! ([`Attacker::send`]). On its own it
//! - answers the tracker's challenges as its [`Answer`] says (never, with a made-up proof, or
//!   "not held"): it holds no bytes;
//! - takes every replication order and reports it done at once, without fetching anything
//!   (`have` of the chunk and `order_done`);
//! - re-sends every claim it made when a tracker node asks it to re-announce;
//! - keeps its heartbeat, and counts what it received ([`Seen`]);
//! - sends relay frames the test makes ([`Attacker::send_relay`], e.g. a flood of chunk
//!   requests to one peer), reading every answer.

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_core::wire::ProofItem;
use swarm_core::{ChunkId, ClientMsg, PeerId, PeerKind, ServerMsg};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// How long the tracker has to welcome an attacker.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);

/// How an attacker answers the tracker's challenges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Never.
    Silent,
    /// With a made-up proof.
    Wrong,
    /// "Not held" (`None`).
    NotHeld,
}

/// What an attacker's connection received.
#[derive(Default, Debug)]
pub struct Seen {
    /// Challenge items.
    pub challenges: AtomicU64,
    /// Replication orders (each reported done at once, falsely).
    pub orders: AtomicU64,
    pub trims: AtomicU64,
    pub errors: AtomicU64,
    pub reannounces: AtomicU64,
    /// Bytes of relay frames received (answers to its relayed requests).
    pub relay_bytes: AtomicU64,
}

impl Seen {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A connected attacker.
pub struct Attacker {
    pub peer_id: PeerId,
    pub answer: Answer,
    pub seen: Arc<Seen>,
    tx: mpsc::UnboundedSender<ClientMsg>,
    relay_tx: mpsc::UnboundedSender<Vec<u8>>,
}

impl Attacker {
    /// Connects to `url` as the identity of `secret` and says hello; returns once welcomed.
    /// The connection lives in a task of the current tokio runtime until the attacker drops.
    pub async fn connect(url: &str, secret: &str, answer: Answer) -> anyhow::Result<Attacker> {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(url).await.with_context(|| format!("attacker cannot connect to {url}"))?;
        let keys = swarm_core::identity::Keypair::from_secret(secret);
        ws.send(Message::Text(keys.hello(PeerKind::Native, None).to_json().into())).await.context("attacker hello")?;
        loop {
            let frame = tokio::time::timeout(WELCOME_TIMEOUT, ws.next())
                .await
                .with_context(|| format!("no welcome from {url} in {WELCOME_TIMEOUT:?}"))?;
            let Some(Ok(Message::Text(t))) = frame else { bail!("no welcome from {url}: {frame:?}") };
            match serde_json::from_str(t.as_str()).with_context(|| format!("{url} answered hello with {t}"))? {
                ServerMsg::AuthChallenge { nonce } => {
                    let proof = keys.proof(&nonce, url, None);
                    ws.send(Message::Text(proof.to_json().into())).await.context("attacker proof")?;
                }
                ServerMsg::Welcome { .. } => break,
                other => bail!("expected welcome from {url}, got {other:?}"),
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<ClientMsg>();
        let (relay_tx, mut relay_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        // Every chunk this identity claimed, re-sent when a node asks for its inventory.
        let claimed: Arc<Mutex<BTreeSet<ChunkId>>> = Arc::default();
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(Duration::from_secs(10));
            let add = |s: &AtomicU64, n: u64| s.fetch_add(n, Ordering::Relaxed);
            loop {
                let reply: Vec<ClientMsg> = tokio::select! {
                    out = rx.recv() => match out {
                        Some(m) => {
                            if let ClientMsg::Have { chunks, full } = &m {
                                let mut c = claimed.lock().unwrap_or_else(|e| e.into_inner());
                                if *full {
                                    c.clear();
                                }
                                c.extend(chunks.iter().copied());
                            }
                            vec![m]
                        }
                        None => break,
                    },
                    _ = beat.tick() => vec![ClientMsg::Heartbeat],
                    Some(frame) = relay_rx.recv() => {
                        if ws.send(Message::Binary(frame.into())).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    frame = ws.next() => {
                        let t = match frame {
                            Some(Ok(Message::Text(t))) => t,
                            Some(Ok(Message::Binary(b))) => {
                                add(&s.relay_bytes, b.len() as u64);
                                continue;
                            }
                            Some(Ok(_)) => continue,
                            _ => break,
                        };
                        match serde_json::from_str::<ServerMsg>(t.as_str()) {
                            Ok(ServerMsg::Challenge { items }) => {
                                add(&s.challenges, items.len() as u64);
                                let proof = match answer {
                                    Answer::Silent => continue,
                                    Answer::Wrong => Some([0xee; 32]),
                                    Answer::NotHeld => None,
                                };
                                vec![ClientMsg::Proofs { items: items.iter().map(|i| ProofItem { id: i.id, proof }).collect() }]
                            }
                            Ok(ServerMsg::Replicate { order, chunk, .. }) => {
                                add(&s.orders, 1);
                                claimed.lock().unwrap_or_else(|e| e.into_inner()).insert(chunk);
                                vec![ClientMsg::Have { chunks: vec![chunk], full: false }, ClientMsg::OrderDone { order }]
                            }
                            Ok(ServerMsg::Trim { chunks }) => {
                                add(&s.trims, 1);
                                let mut c = claimed.lock().unwrap_or_else(|e| e.into_inner());
                                for ch in &chunks {
                                    c.remove(ch);
                                }
                                continue;
                            }
                            Ok(ServerMsg::Error { .. }) => {
                                add(&s.errors, 1);
                                continue;
                            }
                            Ok(ServerMsg::Reannounce) => {
                                add(&s.reannounces, 1);
                                let chunks = claimed.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
                                vec![ClientMsg::Have { chunks, full: true }]
                            }
                            _ => continue,
                        }
                    }
                };
                for m in reply {
                    if ws.send(Message::Text(m.to_json().into())).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Attacker { peer_id: PeerId::from_secret(secret), answer, seen, tx, relay_tx })
    }

    /// Sends a relay frame (to `frame.peer`) through the tracker.
    pub fn send_relay(&self, frame: &swarm_core::relay::RelayFrame) -> anyhow::Result<()> {
        let bytes = frame.encode()?;
        self.relay_tx.send(bytes).map_err(|_| anyhow::anyhow!("the attacker {}'s connection is closed", self.peer_id))
    }

    /// Sends `msg` to the tracker as this identity.
    pub fn send(&self, msg: ClientMsg) -> anyhow::Result<()> {
        self.tx.send(msg).map_err(|_| anyhow::anyhow!("the attacker {}'s connection is closed", self.peer_id))
    }
}
