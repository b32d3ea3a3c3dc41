//! A connection to one remote peer for fetching chunks, shared by every download and
//! replication order that needs that peer. Requests are multiplexed by `req`; the answers'
//! frames are reassembled and verified ([`ChunkAssembler`]) before a caller sees a byte.
//!
//! The transport is a WebRTC data channel, or the tracker relay; both deliver the same
//! [`LinkEvent`]s into one queue, so everything above is written once. A connection may start
//! on the relay and move to a data channel when one opens ([`PeerConn::upgrade`]: iroh's
//! relay-then-upgrade), and move back to the relay if that channel fails
//! ([`PeerConn::downgrade`]). Answers are matched by `req` whichever way they come.

use crate::rtc::{LinkEvent, LinkSender};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use swarm_core::chunk_proto::{ChunkAssembler, PeerMsg, ProtoError};
use swarm_core::{ChunkId, LinkPath, PeerId};
use tokio::sync::{mpsc, oneshot};

/// Why a chunk could not be fetched from a peer.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("peer does not have the chunk")]
    Missing,
    #[error("peer sent a bad chunk: {0}")]
    Bad(ProtoError),
    #[error("connection closed: {0}")]
    Closed(String),
    #[error("cannot store the chunk: {0}")]
    Store(String),
}

/// Silence after which a connection with requests outstanding counts as dead (a working
/// path, the relay included, delivers a frame every few milliseconds).
const STALL: Duration = Duration::from_secs(4);

struct Waiter {
    asm: ChunkAssembler,
    done: oneshot::Sender<Result<Vec<u8>, FetchError>>,
}

/// Sends messages over a data channel or through the relay.
#[derive(Clone)]
pub enum Outbound {
    Link(LinkSender),
    Relay(crate::relay::RelaySender),
}

impl Outbound {
    async fn send(&self, msg: Vec<u8>) -> Result<(), FetchError> {
        match self {
            Outbound::Link(l) => l.send(msg).await.map_err(|e| FetchError::Closed(e.to_string())),
            Outbound::Relay(r) => r.send(msg).await.map_err(|e| FetchError::Closed(e.to_string())),
        }
    }
}

pub struct PeerConn {
    pub peer: PeerId,
    /// The transport requests go out on now, and its path.
    out: Mutex<(Outbound, LinkPath)>,
    /// The relay this connection started on (kept to fall back to), if it did.
    relay: Option<crate::relay::RelaySender>,
    waiters: Mutex<HashMap<u32, Waiter>>,
    next_req: AtomicU32,
    closed: AtomicBool,
    /// When the remote peer last sent anything.
    last_heard: Mutex<Instant>,
    pub bytes_received: AtomicU64,
}

impl PeerConn {
    /// Wraps an open transport; `events` are the transport's incoming events.
    pub fn start(
        peer: PeerId,
        path: LinkPath,
        out: Outbound,
        events: mpsc::UnboundedReceiver<LinkEvent>,
        on_bytes: impl Fn(usize) + Send + 'static,
        on_close: impl FnOnce() + Send + 'static,
    ) -> std::sync::Arc<Self> {
        let relay = match &out {
            Outbound::Relay(r) => Some(r.clone()),
            Outbound::Link(_) => None,
        };
        let conn = std::sync::Arc::new(Self {
            peer,
            out: Mutex::new((out, path)),
            relay,
            waiters: Mutex::new(HashMap::new()),
            next_req: AtomicU32::new(1),
            closed: AtomicBool::new(false),
            last_heard: Mutex::new(Instant::now()),
            bytes_received: AtomicU64::new(0),
        });
        tokio::spawn(conn.clone().read(events, on_bytes, on_close));
        conn
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The path requests take now.
    pub fn path(&self) -> LinkPath {
        self.out.lock().unwrap().1
    }

    /// A data channel opened: new requests go over it (answers to earlier ones still arrive
    /// through the relay).
    pub fn upgrade(&self, link: LinkSender, path: LinkPath) {
        *self.out.lock().unwrap() = (Outbound::Link(link), path);
    }

    /// The data channel failed: back to the relay this connection started on. Returns false
    /// when there is none (the connection is then done).
    pub fn downgrade(&self) -> bool {
        match &self.relay {
            Some(r) => {
                *self.out.lock().unwrap() = (Outbound::Relay(r.clone()), LinkPath::Relay);
                true
            }
            None => false,
        }
    }

    /// Asks the peer for `chunk` (`len` bytes, from the manifest) and waits for it, verified.
    pub async fn fetch(&self, chunk: ChunkId, len: u32) -> Result<Vec<u8>, FetchError> {
        if self.is_closed() {
            return Err(FetchError::Closed("connection closed".into()));
        }
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert(req, Waiter { asm: ChunkAssembler::new(chunk, len), done: tx });
        let out = self.out.lock().unwrap().0.clone();
        if let Err(e) = out.send(PeerMsg::Request { req, chunk }.encode()).await {
            self.waiters.lock().unwrap().remove(&req);
            return Err(e);
        }
        let asked = Instant::now();
        let mut rx = rx;
        loop {
            match tokio::time::timeout(Duration::from_millis(500), &mut rx).await {
                Ok(answer) => {
                    return answer.unwrap_or_else(|_| Err(FetchError::Closed("connection closed".into())));
                }
                // A peer that has sent nothing at all for a while is given up on (killed
                // peers are noticed this way long before ICE says so): the connection is
                // done, callers go elsewhere.
                Err(_) if asked.elapsed() > STALL && self.last_heard.lock().unwrap().elapsed() > STALL => {
                    self.waiters.lock().unwrap().remove(&req);
                    self.closed.store(true, Ordering::Relaxed);
                    return Err(FetchError::Closed(format!("nothing heard for {STALL:?}")));
                }
                Err(_) => {}
            }
        }
    }

    async fn read(
        self: std::sync::Arc<Self>,
        mut events: mpsc::UnboundedReceiver<LinkEvent>,
        on_bytes: impl Fn(usize),
        on_close: impl FnOnce(),
    ) {
        let reason = loop {
            let Some(ev) = events.recv().await else { break "transport ended".to_string() };
            match ev {
                LinkEvent::Message(bytes) => {
                    *self.last_heard.lock().unwrap() = Instant::now();
                    on_bytes(bytes.len());
                    self.bytes_received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    if let Err(e) = self.on_message(&bytes) {
                        break format!("protocol error: {e}");
                    }
                }
                LinkEvent::Closed(r) => break r,
                LinkEvent::Open(_) | LinkEvent::Signal(_) => {}
            }
        };
        self.closed.store(true, Ordering::Relaxed);
        for (_, w) in self.waiters.lock().unwrap().drain() {
            let _ = w.done.send(Err(FetchError::Closed(reason.clone())));
        }
        on_close();
    }

    fn on_message(&self, bytes: &[u8]) -> Result<(), ProtoError> {
        match PeerMsg::decode(bytes)? {
            PeerMsg::Data { req, offset, total, bytes } => {
                let mut waiters = self.waiters.lock().unwrap();
                // An answer to a request already given up on (or never made) is dropped.
                let Some(w) = waiters.get_mut(&req) else { return Ok(()) };
                match w.asm.push(offset, total, &bytes) {
                    Ok(None) => {}
                    Ok(Some(chunk)) => {
                        let w = waiters.remove(&req).expect("present");
                        let _ = w.done.send(Ok(chunk));
                    }
                    Err(e) => {
                        let w = waiters.remove(&req).expect("present");
                        let _ = w.done.send(Err(FetchError::Bad(e)));
                    }
                }
            }
            PeerMsg::Missing { req } => {
                if let Some(w) = self.waiters.lock().unwrap().remove(&req) {
                    let _ = w.done.send(Err(FetchError::Missing));
                }
            }
            PeerMsg::Request { .. } => {} // this side only fetches
        }
        Ok(())
    }
}
