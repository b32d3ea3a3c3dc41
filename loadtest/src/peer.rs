//! One simulated peer for the whole test: connects and says hello with a random secret, then
//! lives in [`drive`] until the test ends: it answers heartbeats, follows the [`Plan`] the
//! main task broadcasts (in a signalling round it sends `signal` messages to other peers at
//! its share of the rate and counts the signals that reach it; the `conn` field carries the
//! send time, so the receiver measures the relay latency), in the claims phase it publishes
//! its synthetic files and announces its holdings ([`crate::claims`]), and when its tracker
//! node goes away during a failover measurement it reconnects to another node of the cluster
//! ([`crate::failover`]).

use crate::claims::{self, Files};
use crate::failover::Failover;
use crate::stats::Stats;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use swarm_core::wire::ErrorCode;
use swarm_core::{ClientMsg, PeerId, PeerKind, ServerMsg, Signal};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How often an idle peer says it is alive (the tracker's idle timeout is 45 s by default).
const HEARTBEAT: Duration = Duration::from_secs(20);

/// A welcomed connection.
pub struct Joined {
    pub ws: Ws,
    pub id: PeerId,
    /// The tracker nodes `welcome` listed (empty for a single tracker).
    pub trackers: Vec<String>,
}

/// A fresh random secret (the peer's identity).
pub fn new_secret() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

/// Opens a connection to `url` and completes the hello with `secret`.
pub async fn join(url: &str, secret: &str) -> anyhow::Result<Joined> {
    // Small buffers: the load test holds thousands of these.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    let keys = swarm_core::identity::Keypair::from_secret(secret);
    ws.send(Message::Text(keys.hello(PeerKind::Browser, None).to_json().into())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMsg>(t.as_str())? {
                ServerMsg::AuthChallenge { nonce } => {
                    ws.send(Message::Text(keys.proof(&nonce, url, None).to_json().into())).await?;
                }
                ServerMsg::Welcome { peer_id, trackers, .. } => return Ok(Joined { ws, id: peer_id, trackers }),
                other => anyhow::bail!("expected welcome, got {other:?}"),
            },
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("closed before welcome"),
        }
    }
}

/// What every peer knows of the others, fixed once all are connected.
pub struct Swarm {
    pub ids: Vec<PeerId>,
    /// Index in `urls` of the node each peer first connected to.
    pub node_of: Vec<usize>,
    /// The peers first connected to each node.
    pub by_node: Vec<Vec<usize>>,
    pub urls: Vec<String>,
    /// Peers that reconnected to another node during the failover.
    pub moved: Vec<AtomicBool>,
    /// Peers whose connection closed outside a failover (the tracker dropped them).
    pub lost: AtomicU64,
    /// Start of the test's clock: a signal's `conn` is its send time in microseconds since.
    pub epoch: Instant,
    pub failover: Failover,
    /// The synthetic files of the claims phase (`--files`), once it starts.
    pub files: OnceLock<Arc<Files>>,
}

impl Swarm {
    /// Everything peer `me` claims to hold (nothing before the claims phase).
    pub fn inventory(&self, me: usize) -> Vec<swarm_core::ChunkId> {
        self.files.get().map(|f| f.inventory(me)).unwrap_or_default()
    }

    /// `have` with peer `me`'s whole inventory.
    pub fn full_have(&self, me: usize) -> Message {
        Message::Text(ClientMsg::Have { chunks: self.inventory(me), full: true }.to_json().into())
    }

    /// A receiver for a signal from peer `me`: a random other peer, or with `cross_node` a
    /// random peer first connected to another node than `me`'s.
    fn receiver(&self, me: usize, cross_node: bool) -> usize {
        let mut rng = rand::rng();
        if cross_node && self.by_node.len() > 1 {
            let mine = self.node_of[me];
            let nodes = self.by_node.len();
            let other = (mine + rng.random_range(1..nodes)) % nodes;
            let peers = &self.by_node[other];
            if !peers.is_empty() {
                return peers[rng.random_range(0..peers.len())];
            }
        }
        let mut to = rng.random_range(0..self.ids.len());
        if to == me {
            to = (to + 1) % self.ids.len();
        }
        to
    }
}

/// One signalling round.
pub struct Round {
    pub stats: Arc<Stats>,
    pub until: Instant,
    /// Time between two signals of one sender.
    pub interval: Duration,
    /// Peers `0..senders` send; the others only receive.
    pub senders: usize,
    pub cross_node: bool,
}

/// What the peers do now, broadcast by the main task.
#[derive(Clone)]
pub enum Plan {
    /// Heartbeats only.
    Idle,
    Signal(Arc<Round>),
    /// Publishers publish their synthetic files; everyone says it has no room.
    Publish(Arc<Files>),
    /// Everyone announces its whole inventory, holdings included.
    Hold(Arc<Files>),
    /// The test is over: close.
    Stop,
}

enum End {
    Stop,
    Closed,
}

/// The peer's life after its first welcome, until [`Plan::Stop`] or until its connection
/// closes for good.
pub async fn drive(me: usize, secret: String, first: Joined, swarm: Arc<Swarm>, mut plan: watch::Receiver<Plan>) {
    let mut url = swarm.urls[swarm.node_of[me]].clone();
    let mut joined = first;
    loop {
        let (tx, rx) = joined.ws.split();
        match session(me, tx, rx, &swarm, &mut plan).await {
            End::Stop => return,
            End::Closed => {}
        }
        // Our node was killed for the failover measurement: go elsewhere.
        if !swarm.failover.is_dead(&url) {
            swarm.lost.fetch_add(1, Relaxed);
            return;
        }
        let have = swarm.full_have(me);
        match swarm.failover.reconnect(me, &secret, &url, &joined.trackers, &swarm.urls, have).await {
            Some((next_url, next)) => {
                swarm.moved[me].store(true, Relaxed);
                url = next_url;
                joined = next;
            }
            None => return,
        }
    }
}

/// One connection: reads (counting signals), heartbeats, and sends signals in a round.
async fn session(
    me: usize,
    mut tx: SplitSink<Ws, Message>,
    mut rx: SplitStream<Ws>,
    swarm: &Swarm,
    plan: &mut watch::Receiver<Plan>,
) -> End {
    let heartbeat = Message::Text(ClientMsg::Heartbeat.to_json().into());
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    // The round signals are counted in (kept after it ends: late arrivals still count).
    let mut round: Option<Arc<Round>> = None;
    let mut next_send: Option<tokio::time::Instant> = None;
    // Whether this connection said it has no room (once, in the claims phase).
    let mut said_no_room = false;
    // What a plan asks: `None` to stop, else the messages to send now.
    let mut follow = |p: &Plan, round: &mut Option<Arc<Round>>, next_send: &mut Option<tokio::time::Instant>| {
        let mut out = Vec::new();
        match p {
            Plan::Idle => *next_send = None,
            Plan::Stop => return None,
            Plan::Signal(r) => {
                *round = Some(r.clone());
                *next_send = (me < r.senders).then(|| {
                    // Random phase so the peers do not all send at once.
                    let phase = rand::rng().random_range(0..r.interval.as_micros().max(1) as u64);
                    tokio::time::Instant::now() + Duration::from_micros(phase)
                });
            }
            Plan::Publish(files) => {
                *next_send = None;
                said_no_room = true;
                out = files.publish_msgs(me);
            }
            Plan::Hold(files) => {
                *next_send = None;
                if !std::mem::replace(&mut said_no_room, true) {
                    out.push(claims::no_room());
                }
                out.push(ClientMsg::Have { chunks: files.inventory(me), full: true });
                files.announced.fetch_add(1, Relaxed);
            }
        }
        Some(out)
    };
    // (The plan's guard must be gone before anything is awaited.)
    let first = follow(&plan.borrow_and_update(), &mut round, &mut next_send);
    match first {
        None => return End::Stop,
        Some(out) => {
            if !claims::send_all(&mut tx, out).await {
                return End::Closed;
            }
        }
    }
    loop {
        let wake = next_send.unwrap_or_else(|| tokio::time::Instant::now() + HEARTBEAT);
        // The plan first: a signal of a new round must be counted in that round, and the
        // round is announced before anyone sends.
        tokio::select! {
            biased;
            changed = plan.changed() => {
                let out = if changed.is_err() { None } else { follow(&plan.borrow_and_update(), &mut round, &mut next_send) };
                let Some(out) = out else {
                    let _ = tx.close().await;
                    return End::Stop;
                };
                if !claims::send_all(&mut tx, out).await {
                    return End::Closed;
                }
            }
            m = rx.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    for reply in receive(me, t.as_str(), swarm, round.as_deref()) {
                        if tx.send(reply).await.is_err() {
                            return End::Closed;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::Closed,
                Some(Ok(_)) => {}
            },
            _ = beat.tick() => {
                if tx.send(heartbeat.clone()).await.is_err() {
                    return End::Closed;
                }
            }
            _ = tokio::time::sleep_until(wake), if next_send.is_some() => {
                let r = round.as_ref().expect("a round is set with its first send");
                if Instant::now() >= r.until {
                    next_send = None;
                    continue;
                }
                next_send = next_send.map(|t| t + r.interval);
                let to = swarm.receiver(me, r.cross_node);
                let conn = swarm.epoch.elapsed().as_micros() as u64;
                let signal = Signal::Candidate {
                    candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host".into(),
                    mid: Some("0".into()),
                };
                let msg = ClientMsg::Signal { to: swarm.ids[to].clone(), conn, signal };
                if tx.send(Message::Text(msg.to_json().into())).await.is_err() {
                    return End::Closed;
                }
                r.stats.sent.fetch_add(1, Relaxed);
                if swarm.moved[to].load(Relaxed) {
                    r.stats.sent_to_moved.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// Counts a message from the tracker; returns the answers it needs.
fn receive(me: usize, text: &str, swarm: &Swarm, round: Option<&Round>) -> Vec<Message> {
    let count = |sent_us: u64| {
        if let Some(r) = round {
            r.stats.received.fetch_add(1, Relaxed);
            if swarm.moved[me].load(Relaxed) {
                r.stats.received_by_moved.fetch_add(1, Relaxed);
            }
            r.stats.record_latency((swarm.epoch.elapsed().as_micros() as u64).saturating_sub(sent_us));
        }
    };
    // Fast path for the expected message: only its `conn` (the send time) matters.
    if let Some(sent_us) = signal_conn(text) {
        count(sent_us);
        return Vec::new();
    }
    let text_of = |m: ClientMsg| Message::Text(m.to_json().into());
    let files = swarm.files.get();
    match serde_json::from_str::<ServerMsg>(text) {
        Ok(ServerMsg::Signal { conn, .. }) => count(conn),
        Ok(ServerMsg::Error { req, code, .. }) => {
            if let (Some(req), Some(files)) = (req, files) {
                files.on_error(me, req, code);
            }
            if let Some(r) = round {
                if code == ErrorCode::RateLimited {
                    r.stats.rate_limited.fetch_add(1, Relaxed);
                }
                r.stats.errors.fetch_add(1, Relaxed);
            }
        }
        // A node took over part of the swarm: our whole inventory again.
        Ok(ServerMsg::Reannounce) => return vec![swarm.full_have(me)],
        Ok(ServerMsg::Published { req, file }) => {
            if let Some(files) = files {
                return files.on_published(me, req, file).into_iter().map(text_of).collect();
            }
        }
        Ok(ServerMsg::Challenge { items }) => {
            if let Some(files) = files {
                let items = files.prove(me, &items);
                if !items.is_empty() {
                    return vec![text_of(ClientMsg::Proofs { items })];
                }
            }
        }
        // A load-test peer has no room to copy anything.
        Ok(ServerMsg::Replicate { order, .. }) => {
            return vec![text_of(ClientMsg::OrderFailed { order, reason: "no room".into() })];
        }
        _ => {}
    }
    Vec::new()
}

/// The `conn` of a relayed signal (`{"type":"signal","from":..,"conn":N,..}`), read without
/// parsing the whole message.
fn signal_conn(text: &str) -> Option<u64> {
    let rest = text.strip_prefix(r#"{"type":"signal","#)?;
    let at = rest.find(r#""conn":"#)? + 7;
    let digits: &str = &rest[at..rest[at..].find(|c: char| !c.is_ascii_digit())? + at];
    digits.parse().ok()
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

    fn swarm(nodes: usize, peers: usize) -> Swarm {
        let node_of: Vec<usize> = (0..peers).map(|i| i % nodes).collect();
        let mut by_node = vec![Vec::new(); nodes];
        for (i, n) in node_of.iter().enumerate() {
            by_node[*n].push(i);
        }
        Swarm {
            ids: (0..peers).map(|i| PeerId::from_secret(&i.to_string())).collect(),
            node_of,
            by_node,
            urls: (0..nodes).map(|i| format!("ws://127.0.0.1:{}/ws", 9000 + i)).collect(),
            moved: (0..peers).map(|_| AtomicBool::new(false)).collect(),
            lost: AtomicU64::new(0),
            epoch: Instant::now(),
            failover: Failover::new(None, Duration::from_secs(1)),
            files: OnceLock::new(),
        }
    }

    #[test]
    fn cross_node_receivers_are_on_another_node() {
        let s = swarm(3, 30);
        for me in 0..30 {
            for _ in 0..50 {
                let to = s.receiver(me, true);
                assert_ne!(s.node_of[to], s.node_of[me]);
            }
        }
    }

    #[test]
    fn random_receivers_are_someone_else() {
        let s = swarm(1, 2);
        for _ in 0..50 {
            assert_eq!(s.receiver(0, false), 1);
            assert_eq!(s.receiver(0, true), 1, "one node: cross-node falls back to any other peer");
        }
    }
}
