//! One simulated peer: connects, says hello with a random secret, then (in the signalling
//! phase) sends `signal` messages to random other peers at its share of the rate while
//! counting the signals that reach it. The `conn` field carries the send time, so the
//! receiver measures the relay latency.

use crate::stats::Stats;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_core::wire::PROTOCOL_VERSION;
use swarm_core::{ClientMsg, PeerId, PeerKind, ServerMsg, Signal};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a connection and completes the hello; returns the socket and the peer's id.
pub async fn join(url: &str) -> anyhow::Result<(Ws, PeerId)> {
    // Small buffers: the load test holds thousands of these.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    let secret = hex::encode(rand::rng().random::<[u8; 32]>());
    let hello = ClientMsg::Hello { version: PROTOCOL_VERSION, kind: PeerKind::Browser, secret, token: None };
    ws.send(Message::Text(hello.to_json().into())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMsg>(t.as_str())? {
                ServerMsg::Welcome { peer_id, .. } => return Ok((ws, peer_id)),
                other => anyhow::bail!("expected welcome, got {other:?}"),
            },
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("closed before welcome"),
        }
    }
}

/// The `conn` of a relayed signal (`{"type":"signal","from":..,"conn":N,..}`), read without
/// parsing the whole message.
fn signal_conn(text: &str) -> Option<u64> {
    let rest = text.strip_prefix(r#"{"type":"signal","#)?;
    let at = rest.find(r#""conn":"#)? + 7;
    let digits: &str = &rest[at..rest[at..].find(|c: char| !c.is_ascii_digit())? + at];
    digits.parse().ok()
}

/// The signalling phase of one peer until `until`; `interval` is `None` for a peer that only
/// listens.
pub async fn run(
    ws: Ws,
    me: usize,
    peers: Arc<Vec<PeerId>>,
    interval: Option<Duration>,
    epoch: Instant,
    until: Instant,
    stats: Arc<Stats>,
) {
    let (mut tx, mut rx) = ws.split();
    let heartbeat = ClientMsg::Heartbeat.to_json();
    let reader_stats = stats.clone();
    let reader = async move {
        while let Some(Ok(m)) = rx.next().await {
            let Message::Text(t) = m else { continue };
            // Fast path for the expected message: only its `conn` (the send time) matters.
            if let Some(sent_us) = signal_conn(t.as_str()) {
                reader_stats.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                reader_stats.record_latency((epoch.elapsed().as_micros() as u64).saturating_sub(sent_us));
                continue;
            }
            match serde_json::from_str::<ServerMsg>(t.as_str()) {
                Ok(ServerMsg::Signal { conn, .. }) => {
                    reader_stats.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let sent_us = conn;
                    reader_stats.record_latency((epoch.elapsed().as_micros() as u64).saturating_sub(sent_us));
                }
                Ok(ServerMsg::Error { code, .. }) => {
                    if code == swarm_core::wire::ErrorCode::RateLimited {
                        reader_stats.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    reader_stats.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                _ => {}
            }
        }
    };
    let writer = async move {
        let Some(interval) = interval else {
            // Idle: heartbeats only, so the tracker keeps us.
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                if tx.send(Message::Text(heartbeat.clone().into())).await.is_err() {
                    return;
                }
            }
        };
        // Random phase so the peers do not all send at once.
        let phase = rand::rng().random_range(0..interval.as_micros().max(1) as u64);
        let mut next = tokio::time::Instant::now() + Duration::from_micros(phase);
        loop {
            tokio::time::sleep_until(next).await;
            next += interval;
            if Instant::now() >= until {
                return;
            }
            let mut to = rand::rng().random_range(0..peers.len());
            if to == me {
                to = (to + 1) % peers.len();
            }
            let conn = epoch.elapsed().as_micros() as u64;
            let signal = Signal::Candidate {
                candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host".into(),
                mid: Some("0".into()),
            };
            let msg = ClientMsg::Signal { to: peers[to].clone(), conn, signal };
            if tx.send(Message::Text(msg.to_json().into())).await.is_err() {
                return;
            }
            stats.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    };
    // The reader stops when the tracker closes or the phase is over.
    let deadline = tokio::time::Instant::from_std(until + Duration::from_secs(2));
    tokio::select! {
        _ = async { tokio::join!(reader, writer) } => {}
        _ = tokio::time::sleep_until(deadline) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_reads_conn() {
        let msg = ServerMsg::Signal {
            from: PeerId::from_secret("x"),
            conn: 12345,
            signal: Signal::Close { reason: "r".into() },
        };
        assert_eq!(signal_conn(&msg.to_json()), Some(12345));
        assert_eq!(signal_conn(r#"{"type":"error"}"#), None);
    }
}
