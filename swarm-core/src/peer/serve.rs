//! Serving: requests from other peers (over a link this peer accepted, or through the
//! relay) become store reads, and reads become frames.
//!
//! In order and bounded: each link (or relay route) has at most [`READS_PER_ROUTE`] reads in
//! progress and [`QUEUE_PER_ROUTE`] requests waiting, and the peer at most [`MAX_READS`]
//! reads at once; beyond, the asker gets `missing` at once and goes to another holder. A
//! chunk the store found corrupt is answered `missing` and reported `dropped`, so no peer is
//! ever sent bytes that do not hash to what it asked for.

use super::config::{MAX_READS, QUEUE_PER_ROUTE, READS_PER_ROUTE};
use super::{ChunkBuf, Incoming, LinkId, Output, Peer, ReadResult};
use crate::chunk_proto::{frames, PeerMsg};
use crate::{ChunkId, ClientMsg, LinkPath, PeerId};
use std::collections::{HashMap, VecDeque};

/// Checks bytes read from a store before they are served: `true` if they are `chunk`.
pub fn check(chunk: &ChunkId, bytes: &[u8]) -> bool {
    chunk.verify(bytes).is_ok()
}

/// Where an answer goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Route {
    Link(LinkId),
    Relay { peer: PeerId, conn: u64 },
}

/// One route's requests: reads in progress and requests waiting, in arrival order.
#[derive(Debug, Default)]
struct RouteQueue {
    reading: usize,
    waiting: VecDeque<(u32, ChunkId)>,
}

impl Serving {
    /// A fresh store-read token (serves and proofs share the numbering).
    pub(super) fn new_token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }
}

#[derive(Debug, Default)]
pub struct Serving {
    reads: HashMap<u64, (Route, u32, ChunkId)>,
    queues: HashMap<Route, RouteQueue>,
    next_token: u64,
    /// Chunks served (answered with data).
    pub served: u64,
}

impl<B: ChunkBuf + Clone> Peer<B> {
    /// A chunk-protocol message on a WebRTC link.
    pub fn handle_link_msg(&mut self, link: LinkId, msg: Incoming<B::Part>, now_ms: u64) {
        if let Some(path) = self.links.path_of(link) {
            let n = match &msg {
                Incoming::Answer(super::Answer::Data { part, .. }) => B::part_len(part),
                _ => 0,
            };
            self.links.count_bytes(path, n);
        }
        match msg {
            Incoming::Request { req, chunk } => {
                if self.links.inbound.contains_key(&link) {
                    self.serve_request(Route::Link(link), req, chunk);
                }
            }
            Incoming::Answer(answer) => {
                if let Some(peer) = self.links.out_ids.get(&link).cloned() {
                    self.on_answer(&peer, answer, now_ms);
                }
            }
        }
    }

    /// A chunk-protocol message through the relay, from `peer` under its `conn`.
    pub fn handle_relay(&mut self, peer: PeerId, conn: u64, msg: Incoming<B::Part>, now_ms: u64) {
        match msg {
            Incoming::Answer(answer) => {
                // Answers only count on a fetching link of ours with that number.
                if self.links.out.get(&peer).is_some_and(|l| l.link == conn) {
                    if let super::Answer::Data { part, .. } = &answer {
                        self.links.count_bytes(LinkPath::Relay, B::part_len(part));
                    }
                    self.on_answer(&peer, answer, now_ms);
                }
            }
            Incoming::Request { req, chunk } => self.serve_request(Route::Relay { peer, conn }, req, chunk),
        }
    }

    fn serve_request(&mut self, route: Route, req: u32, chunk: ChunkId) {
        let busy = self.serve.reads.len() >= MAX_READS;
        let q = self.serve.queues.entry(route.clone()).or_default();
        if q.reading < READS_PER_ROUTE && !busy {
            q.reading += 1;
            self.start_read(route, req, chunk);
        } else if q.waiting.len() < QUEUE_PER_ROUTE && !busy {
            q.waiting.push_back((req, chunk));
        } else {
            self.answer(&route, vec![PeerMsg::Missing { req }.encode()]);
        }
    }

    fn start_read(&mut self, route: Route, req: u32, chunk: ChunkId) {
        let token = self.serve.new_token();
        self.serve.reads.insert(token, (route, req, chunk));
        self.out.push_back(Output::Read { token, chunk });
    }

    /// A link closed: its waiting requests are dropped.
    pub(super) fn forget_route_link(&mut self, link: LinkId) {
        self.serve.queues.remove(&Route::Link(link));
    }

    /// The store's answer to [`Output::Read`].
    pub fn chunk_read(&mut self, token: u64, result: ReadResult) {
        if self.proof_read(token, &result) {
            return; // a read for a proof, not a serve
        }
        let Some((route, req, chunk)) = self.serve.reads.remove(&token) else { return };
        let msgs = match result {
            ReadResult::Found(bytes) => {
                self.serve.served += 1;
                frames(req, &bytes, self.config.frame_payload.max(1)).collect()
            }
            ReadResult::Missing => vec![PeerMsg::Missing { req }.encode()],
            ReadResult::Corrupt => {
                self.send(ClientMsg::Dropped { chunks: vec![chunk] });
                vec![PeerMsg::Missing { req }.encode()]
            }
        };
        self.answer(&route, msgs);
        // The route's next request, in order.
        let next = match self.serve.queues.get_mut(&route) {
            Some(q) => {
                q.reading = q.reading.saturating_sub(1);
                let next = q.waiting.pop_front();
                if next.is_some() {
                    q.reading += 1;
                } else if q.reading == 0 {
                    self.serve.queues.remove(&route);
                }
                next
            }
            None => None,
        };
        if let Some((req, chunk)) = next {
            self.start_read(route, req, chunk);
        }
    }

    fn answer(&mut self, route: &Route, msgs: Vec<Vec<u8>>) {
        for bytes in msgs {
            match route {
                Route::Link(link) => {
                    if !self.links.inbound.contains_key(link) {
                        return; // closed meanwhile
                    }
                    self.out.push_back(Output::Send { link: *link, bytes });
                }
                Route::Relay { peer, conn } => {
                    self.out.push_back(Output::Relay { to: peer.clone(), conn: *conn, payload: bytes })
                }
            }
        }
    }

    /// Chunks served so far.
    pub fn chunks_served(&self) -> u64 {
        self.serve.served
    }
}
