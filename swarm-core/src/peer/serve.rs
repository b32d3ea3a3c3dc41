//! Serving: requests from other peers (over a link this peer accepted, or through the
//! relay) become store reads, and reads become frames, paced by what the link's writer has
//! actually sent.
//!
//! Every frame handed to the driver ([`super::Output::Send`], [`super::Output::Relay`]) counts
//! as *queued* on its route (a link, or a relay route: remote peer and its link number) at its
//! length plus [`SEND_FRAME_COST`] (what a queued frame costs the driver beyond its bytes),
//! until the driver reports it flushed ([`Peer::link_flushed`], [`Peer::relay_flushed`]: the
//! native writer handed it to str0m or to the tracker connection, the tab's `bufferedAmount`
//! drained past it). A route starts a read only while its queued bytes are under
//! [`SEND_WINDOW`] and it has fewer than [`READS_PER_ROUTE`] reads in progress, and only while
//! the peer's queued data bytes plus [`MAX_CHUNK_SIZE`] for every read in progress (the
//! read's size is not known before it ends) leave room for one more chunk under
//! [`SEND_BUDGET`]; a relay route also only while the same sum over relay routes stays under
//! [`RELAY_SEND_BUDGET`] (the tracker relays in order at a bounded rate, so this bounds how late
//! a relayed answer is). A request waits (its id only) while its route may not read; one beyond
//! [`QUEUE_PER_ROUTE`] on its route is answered `busy` and never read. When [`MAX_WAITING`]
//! requests wait in all, the route waiting the most gives up its newest (answered `busy`) to
//! a route waiting less; while some route waits for the budget, budget that comes free goes
//! to the askers with the least in flight first (over all their routes), not to the route
//! that freed it. So a flood from a few askers over many routes slows
//! an honest downloader (its requests wait their turn, some are answered `busy` and asked
//! again), but does not shut it out. `busy` and `missing` answers have a budget of their own,
//! [`BUSY_SLACK`] (answering a flood must not take the budget honest data needs); past it
//! the request is dropped unanswered (its asker's stall timer moves it elsewhere).
//!
//! **The bound.** What serving holds at once, however many requests arrive: at most
//! [`SEND_BUDGET`] + [`BUSY_SLACK`] = 32 MiB + 64 KiB of queued frames (their bytes and
//! per-frame cost; reads in progress included at their largest size), plus [`MAX_WAITING`]
//! waiting request ids (about 64 KiB), plus what the transports buffer past the writer (per
//! native link 8 frames and str0m's 32 KiB; the relay connection 64 frames; the tab's
//! channels up to their high-water mark before the driver reports them drained).
//!
//! **The user's upload limit** ([`super::pace::Pacer`], off by default): a read starts only
//! while the limit's bucket is not in debt, and takes the chunk's bytes from it; routes left
//! waiting for it are pumped again when [`Peer::poll_timeout`] says the bucket is out of debt.
//! Everything served counts (downloads, replication, the relay), as the user asked.
//!
//! A `cancel` from the asker drops its named requests that still wait, and drops the answer
//! of a read in progress; frames already handed to the driver still go.
//!
//! A chunk the store found corrupt is answered `missing` and reported `dropped`, so no peer is
//! ever sent bytes that do not hash to what it asked for.
//!
//! A flush report for a route this module does not track (a fetching link's requests) is
//! ignored; a relay request of this peer whose route number equals a serving route's of the
//! same peer would lower that route's count by one request (both numbers are random-based:
//! in practice never).

use super::config::{
    BUSY_SLACK, MAX_WAITING, QUEUE_PER_ROUTE, READS_PER_ROUTE, RELAY_SEND_BUDGET, SEND_BUDGET, SEND_FRAME_COST,
    SEND_WINDOW,
};
use super::{ChunkBuf, Incoming, LinkId, Output, Peer, ReadResult};
use crate::chunk_proto::{frames, PeerMsg};
use crate::content::MAX_CHUNK_SIZE;

/// Frames this short are `busy` or `missing` answers (data frames have a 13-byte header).
const CONTROL_LEN: usize = 5;
use crate::{ChunkId, ClientMsg, LinkPath, PeerId};
use std::collections::{HashMap, HashSet, VecDeque};

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

/// One route's requests: reads in progress, requests waiting in arrival order, and bytes
/// handed to the driver not yet flushed.
#[derive(Debug, Default)]
struct RouteQueue {
    reading: usize,
    waiting: VecDeque<(u32, ChunkId)>,
    queued: u64,
    /// The part of `queued` that is `busy` and `missing` answers.
    control: u64,
}

impl RouteQueue {
    fn idle(&self) -> bool {
        self.reading == 0 && self.waiting.is_empty() && self.queued == 0
    }
}

/// A read in progress.
#[derive(Debug)]
struct Read {
    route: Route,
    req: u32,
    chunk: ChunkId,
    /// The asker cancelled it: nothing is sent.
    cancelled: bool,
}

/// Counters of the serving side.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServeStats {
    /// Chunks served (answered with data).
    pub served: u64,
    /// Requests answered `busy`.
    pub busy: u64,
    /// Requests dropped unanswered (over budget even for `busy`).
    pub dropped: u64,
    /// Requests cancelled by their asker before they were answered.
    pub cancelled: u64,
    /// Bytes queued to send now (frames and their per-frame cost), in all.
    pub queued: u64,
    /// The most ever queued at once.
    pub queued_peak: u64,
}

#[derive(Debug, Default)]
pub struct Serving {
    reads: HashMap<u64, Read>,
    queues: HashMap<Route, RouteQueue>,
    next_token: u64,
    /// Requests waiting, on every route.
    waiting: usize,
    /// Some route has requests it could read but for the peer's budget (or the relay's).
    starved: bool,
    /// Data bytes queued on relay routes (frames and their cost, `busy` and `missing` not
    /// counted), and reads in progress for relay routes.
    relay_queued: u64,
    relay_reads: usize,
    /// Bytes of `busy` and `missing` answers queued (within [`BUSY_SLACK`], apart from the
    /// budget for data, so that answering a flood does not take the budget honest data needs).
    control: u64,
    /// The user's upload limit, if any.
    pacer: Option<super::pace::Pacer>,
    /// Some route waits for the upload limit.
    paced: bool,
    /// The latest time an input brought (reads and flushes come without one).
    now_ms: u64,
    pub stats: ServeStats,
}

impl Serving {
    /// When the routes waiting for the upload limit may read again.
    pub(super) fn deadline(&self) -> Option<u64> {
        match (&self.pacer, self.paced) {
            (Some(p), true) => Some(p.ready_at(self.now_ms)),
            _ => None,
        }
    }

    /// A fresh store-read token (serves and proofs share the numbering).
    pub(super) fn new_token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Whether the peer's budget has room for one more read.
    fn budget_allows_read(&self) -> bool {
        let reserved = (self.reads.len() as u64 + 1) * MAX_CHUNK_SIZE as u64;
        self.stats.queued - self.control + reserved <= SEND_BUDGET
    }

    /// Whether the relay's share of the budget has room for one more relay read.
    fn relay_allows_read(&self) -> bool {
        self.relay_queued + (self.relay_reads as u64 + 1) * MAX_CHUNK_SIZE as u64 <= RELAY_SEND_BUDGET
    }

    /// Whether a `busy` or `missing` answer of `len` bytes fits [`BUSY_SLACK`].
    fn control_room(&self, len: usize) -> bool {
        self.control + len as u64 + SEND_FRAME_COST <= BUSY_SLACK
    }

    /// Counts `len` bytes handed to the driver on `route`.
    fn queue(&mut self, route: &Route, len: usize) {
        let cost = len as u64 + SEND_FRAME_COST;
        let q = self.queues.entry(route.clone()).or_default();
        q.queued += cost;
        if len <= CONTROL_LEN {
            q.control += cost;
            self.control += cost;
        } else if matches!(route, Route::Relay { .. }) {
            self.relay_queued += cost;
        }
        self.stats.queued += cost;
        self.stats.queued_peak = self.stats.queued_peak.max(self.stats.queued);
    }

    /// `len` bytes of `route` were flushed; whether the route is tracked.
    fn flushed(&mut self, route: &Route, len: usize) -> bool {
        let Some(q) = self.queues.get_mut(route) else { return false };
        let cost = (len as u64 + SEND_FRAME_COST).min(q.queued);
        q.queued -= cost;
        self.stats.queued -= cost;
        if len <= CONTROL_LEN {
            let c = cost.min(q.control);
            q.control -= c;
            self.control -= c;
        } else if matches!(route, Route::Relay { .. }) {
            self.relay_queued -= cost.min(self.relay_queued);
        }
        if q.idle() {
            self.queues.remove(route);
        }
        true
    }
}

impl<B: ChunkBuf + Clone> Peer<B> {
    /// Sets the upload limit (bytes per second; `None`: none). Everything this peer serves
    /// counts against it.
    pub fn set_upload_limit(&mut self, rate: Option<u64>, now_ms: u64) {
        self.serve.now_ms = self.serve.now_ms.max(now_ms);
        self.serve.pacer = rate.map(|r| super::pace::Pacer::new(r, now_ms));
        if self.serve.paced || self.serve.starved {
            self.pump_all();
        }
    }

    /// The upload limit (bytes per second), if one is set.
    pub fn upload_limit(&self) -> Option<u64> {
        self.serve.pacer.as_ref().map(|p| p.rate())
    }

    /// Time passed for serving: routes waiting for the upload limit read again once it allows.
    pub(super) fn serve_timeout(&mut self, now_ms: u64) {
        self.serve.now_ms = self.serve.now_ms.max(now_ms);
        let now = self.serve.now_ms;
        if self.serve.paced && self.serve.pacer.as_mut().is_none_or(|p| p.ready(now)) {
            self.pump_all();
        }
    }

    /// A chunk-protocol message on a WebRTC link.
    pub fn handle_link_msg(&mut self, link: LinkId, msg: Incoming<B::Part>, now_ms: u64) {
        self.serve.now_ms = self.serve.now_ms.max(now_ms);
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
            Incoming::Cancel { reqs } => {
                if self.links.inbound.contains_key(&link) {
                    self.serve_cancel(Route::Link(link), &reqs);
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
        self.serve.now_ms = self.serve.now_ms.max(now_ms);
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
            Incoming::Cancel { reqs } => self.serve_cancel(Route::Relay { peer, conn }, &reqs),
        }
    }

    /// The driver's writer for `link` passed a message of `len` bytes on to the transport (or
    /// dropped it with the link). Every [`Output::Send`] must be reported once.
    pub fn link_flushed(&mut self, link: LinkId, len: usize) {
        self.route_flushed(Route::Link(link), len);
    }

    /// The driver passed a relay frame to `to` under `conn` with a payload of `len` bytes on
    /// to the tracker connection (or lost it with the connection). Every [`Output::Relay`]
    /// must be reported once.
    pub fn relay_flushed(&mut self, to: &PeerId, conn: u64, len: usize) {
        self.route_flushed(Route::Relay { peer: to.clone(), conn }, len);
    }

    fn route_flushed(&mut self, route: Route, len: usize) {
        if self.serve.flushed(&route, len) {
            self.pump_freed(&route);
        } else if self.serve.starved {
            self.pump_all();
        }
    }

    /// Budget or window came free on `route`: while some route waits for the peer's budget,
    /// every waiting route gets its turn in [`Self::pump_all`]'s order; else `route` goes on.
    /// (Pumping `route` first let a flood's routes, flushing all the time, take every bit of
    /// budget that came free: an honest downloader's link waited until its asker gave up.)
    fn pump_freed(&mut self, route: &Route) {
        if self.serve.starved {
            self.pump_all();
        } else {
            self.pump(route);
        }
    }

    fn serve_request(&mut self, route: Route, req: u32, chunk: ChunkId) {
        let mine = self.serve.queues.get(&route).map_or(0, |q| q.waiting.len());
        if self.serve.waiting >= MAX_WAITING && mine < QUEUE_PER_ROUTE {
            self.make_room(mine);
        }
        let s = &self.serve;
        let full = mine >= QUEUE_PER_ROUTE;
        if full || s.waiting >= MAX_WAITING {
            return self.busy(&route, req);
        }
        self.serve.queues.entry(route.clone()).or_default().waiting.push_back((req, chunk));
        self.serve.waiting += 1;
        self.pump(&route);
    }

    /// Every waiting place is taken: the route waiting the most (if more than `mine`, the
    /// asking route's) gives up its newest request (answered `busy`), so that many routes
    /// from a few askers cannot keep a new one out.
    fn make_room(&mut self, mine: usize) {
        let Some((route, n)) = self.serve.queues.iter().map(|(r, q)| (r, q.waiting.len())).max_by_key(|(_, n)| *n)
        else {
            return;
        };
        if n <= mine + 1 {
            return;
        }
        let route = route.clone();
        let (req, _) = self.serve.queues.get_mut(&route).and_then(|q| q.waiting.pop_back()).expect("waiting");
        self.serve.waiting -= 1;
        self.busy(&route, req);
    }

    /// A `missing` answer, if it fits [`BUSY_SLACK`] (else none: the asker's stall timer).
    fn missing(&mut self, req: u32) -> Vec<Vec<u8>> {
        let msg = PeerMsg::Missing { req }.encode();
        if self.serve.control_room(msg.len()) {
            vec![msg]
        } else {
            self.serve.stats.dropped += 1;
            Vec::new()
        }
    }

    /// Answers `busy`, or drops the request if even that would pass the budget's slack.
    fn busy(&mut self, route: &Route, req: u32) {
        let msg = PeerMsg::Busy { req }.encode();
        if !self.serve.control_room(msg.len()) {
            self.serve.stats.dropped += 1;
        } else {
            self.serve.stats.busy += 1;
            self.answer(route, vec![msg]);
        }
    }

    /// The asker of `route` no longer wants `reqs` answered.
    fn serve_cancel(&mut self, route: Route, reqs: &[u32]) {
        let reqs: HashSet<u32> = reqs.iter().copied().collect();
        let mut n = 0;
        for r in self.serve.reads.values_mut() {
            if r.route == route && reqs.contains(&r.req) && !r.cancelled {
                r.cancelled = true;
                n += 1;
            }
        }
        if let Some(q) = self.serve.queues.get_mut(&route) {
            let before = q.waiting.len();
            q.waiting.retain(|(req, _)| !reqs.contains(req));
            let gone = before - q.waiting.len();
            self.serve.waiting -= gone;
            n += gone as u64;
            if q.idle() {
                self.serve.queues.remove(&route);
            }
        }
        self.serve.stats.cancelled += n;
    }

    /// Starts the reads `route` may start now.
    fn pump(&mut self, route: &Route) {
        loop {
            let Some(q) = self.serve.queues.get(route) else { return };
            if q.waiting.is_empty() || q.reading >= READS_PER_ROUTE || q.queued >= SEND_WINDOW {
                return;
            }
            let relay = matches!(route, Route::Relay { .. });
            if !self.serve.budget_allows_read() || (relay && !self.serve.relay_allows_read()) {
                self.serve.starved = true;
                return;
            }
            let now = self.serve.now_ms;
            if let Some(p) = self.serve.pacer.as_mut() {
                if !p.ready(now) {
                    self.serve.paced = true;
                    return;
                }
                // A chunk's usual size now; set right when the read ends.
                p.spend(crate::CHUNK_SIZE as u64, now);
            }
            let q = self.serve.queues.get_mut(route).expect("present");
            let (req, chunk) = q.waiting.pop_front().expect("not empty");
            q.reading += 1;
            self.serve.relay_reads += usize::from(relay);
            self.serve.waiting -= 1;
            let token = self.serve.new_token();
            self.serve.reads.insert(token, Read { route: route.clone(), req, chunk, cancelled: false });
            self.out.push_back(Output::Read { token, chunk });
        }
    }

    /// Budget came free: every route with waiting requests gets its turn, the routes of the
    /// askers with the least in flight first (bytes queued to them and a chunk's largest size
    /// for each of their reads in progress, over all their routes), then the route with the
    /// least queued: a flood's askers, however many routes each opens, come last.
    fn pump_all(&mut self) {
        self.serve.starved = false;
        self.serve.paced = false;
        let asker = |r: &Route| match r {
            Route::Relay { peer, .. } => Some(peer.clone()),
            Route::Link(link) => self.links.inbound.get(link).map(|l| l.peer.clone()),
        };
        let queues: Vec<(Option<PeerId>, &Route, &RouteQueue)> =
            self.serve.queues.iter().map(|(r, q)| (asker(r), r, q)).collect();
        let mut in_flight: HashMap<&Option<PeerId>, u64> = HashMap::new();
        for (who, _, q) in &queues {
            *in_flight.entry(who).or_default() += q.queued + q.reading as u64 * MAX_CHUNK_SIZE as u64;
        }
        let mut routes: Vec<(u64, u64, Route)> = queues
            .iter()
            .filter(|(_, _, q)| !q.waiting.is_empty())
            .map(|(who, r, q)| (in_flight[who], q.queued, (*r).clone()))
            .collect();
        routes.sort_unstable_by_key(|(flight, queued, _)| (*flight, *queued));
        for (_, _, r) in routes {
            self.pump(&r);
            // Out of the relay's share, a link may still read; out of the whole budget, none.
            if self.serve.starved && !self.serve.budget_allows_read() {
                return;
            }
        }
    }

    /// A link closed: its waiting requests are dropped, its queued bytes no longer count.
    pub(super) fn forget_route_link(&mut self, link: LinkId) {
        if let Some(q) = self.serve.queues.remove(&Route::Link(link)) {
            self.serve.waiting -= q.waiting.len();
            self.serve.stats.queued -= q.queued;
            self.serve.control -= q.control;
            if self.serve.starved {
                self.pump_all();
            }
        }
        for r in self.serve.reads.values_mut().filter(|r| r.route == Route::Link(link)) {
            r.cancelled = true;
        }
    }

    /// The store's answer to [`Output::Read`].
    pub fn chunk_read(&mut self, token: u64, result: ReadResult) {
        if self.proof_read(token, &result) {
            return; // a read for a proof, not a serve
        }
        let Some(Read { route, req, chunk, cancelled }) = self.serve.reads.remove(&token) else { return };
        if matches!(route, Route::Relay { .. }) {
            self.serve.relay_reads -= 1;
        }
        let sent = match &result {
            ReadResult::Found(bytes) if !cancelled => bytes.len() as u64,
            _ => 0,
        };
        let now = self.serve.now_ms;
        if let Some(p) = self.serve.pacer.as_mut() {
            p.refund(crate::CHUNK_SIZE as u64, now);
            p.spend(sent, now);
        }
        let msgs = match result {
            _ if cancelled => Vec::new(),
            ReadResult::Found(bytes) => {
                self.serve.stats.served += 1;
                frames(req, &bytes, self.config.frame_payload.max(1)).collect()
            }
            ReadResult::Missing => self.missing(req),
            ReadResult::Corrupt => {
                self.send(ClientMsg::Dropped { chunks: vec![chunk] });
                self.missing(req)
            }
        };
        if let Some(q) = self.serve.queues.get_mut(&route) {
            q.reading = q.reading.saturating_sub(1);
        }
        self.answer(&route, msgs);
        if self.serve.queues.get(&route).is_some_and(RouteQueue::idle) {
            self.serve.queues.remove(&route);
        }
        // The route's next request, in order; a read's reservation came free.
        self.pump_freed(&route);
    }

    fn answer(&mut self, route: &Route, msgs: Vec<Vec<u8>>) {
        if let Route::Link(link) = route {
            if !self.links.inbound.contains_key(link) {
                return; // closed meanwhile
            }
        }
        for bytes in msgs {
            self.serve.queue(route, bytes.len());
            match route {
                Route::Link(link) => self.out.push_back(Output::Send { link: *link, bytes }),
                Route::Relay { peer, conn } => {
                    self.out.push_back(Output::Relay { to: peer.clone(), conn: *conn, payload: bytes })
                }
            }
        }
    }

    /// Chunks served so far.
    pub fn chunks_served(&self) -> u64 {
        self.serve.stats.served
    }

    /// The serving side's counters (queued bytes, `busy` answers, cancels).
    pub fn serve_stats(&self) -> ServeStats {
        self.serve.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{Inventory, PeerConfig};
    use crate::{PeerKind, ServerMsg};

    struct Nothing;
    impl Inventory for Nothing {
        fn has(&self, _: &ChunkId) -> bool {
            false
        }
        fn ids(&self) -> Vec<ChunkId> {
            Vec::new()
        }
        fn used(&self) -> u64 {
            0
        }
        fn capacity(&self) -> u64 {
            0
        }
    }

    fn seeder() -> Peer<Vec<u8>> {
        let mut p = Peer::new(PeerConfig::new(PeerKind::Native, [0; 32]));
        p.tracker_connected(&Nothing, 0);
        let welcome = ServerMsg::Welcome {
            version: 1,
            peer_id: PeerId::from_secret("s"),
            migrated: None,
            ice_servers: vec![],
            trackers: vec![],
        };
        p.handle_server_msg(welcome, &Nothing, 0);
        while p.poll_output().is_some() {}
        p
    }

    const CHUNK: usize = 256 * 1024;

    /// What came out: reads, and relay frames by (to, conn) with their decoded messages.
    #[derive(Default)]
    struct Out {
        reads: Vec<u64>,
        sent: Vec<(PeerId, u64, PeerMsg, usize)>,
    }

    fn take(p: &mut Peer<Vec<u8>>) -> Out {
        let mut o = Out::default();
        while let Some(x) = p.poll_output() {
            match x {
                Output::Read { token, .. } => o.reads.push(token),
                Output::Relay { to, conn, payload } => {
                    let m = PeerMsg::decode(&payload).unwrap();
                    o.sent.push((to, conn, m, payload.len()));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        o
    }

    /// Takes the peer's outputs, answering every read with `bytes` (and the reads that leads
    /// to): what was sent, and how many reads were answered.
    fn take_answering(p: &mut Peer<Vec<u8>>, bytes: &[u8]) -> (Vec<(PeerId, u64, PeerMsg, usize)>, u64) {
        let mut out = take(p);
        let mut answered = 0;
        while !out.reads.is_empty() {
            for t in std::mem::take(&mut out.reads) {
                answered += 1;
                p.chunk_read(t, ReadResult::Found(bytes.to_vec()));
            }
            let more = take(p);
            out.reads = more.reads;
            out.sent.extend(more.sent);
        }
        (out.sent, answered)
    }

    fn asker(n: u64) -> PeerId {
        PeerId::from_secret(&format!("asker {n}"))
    }

    #[test]
    fn a_request_flood_gets_busy_never_memory() {
        let mut p = seeder();
        let bytes = vec![7u8; CHUNK];
        let chunk = ChunkId::of(&bytes);
        let (mut busy, mut data_bytes, mut reads) = (0u64, 0u64, 0u64);
        // Four identities, each on many relay routes, 20,000 requests; every read is answered
        // at once, but the writer never flushes anything.
        for i in 0..20_000u64 {
            let (peer, conn) = (asker(i % 4), i % 97);
            p.handle_relay(peer, conn, Incoming::Request { req: i as u32, chunk }, 0);
            let (sent, answered) = take_answering(&mut p, &bytes);
            reads += answered;
            for (_, _, m, len) in sent {
                match m {
                    PeerMsg::Busy { .. } => busy += 1,
                    PeerMsg::Data { .. } => data_bytes += len as u64,
                    other => panic!("{other:?}"),
                }
            }
            let s = p.serve_stats();
            assert!(s.queued <= SEND_BUDGET + BUSY_SLACK, "{s:?}");
        }
        let s = p.serve_stats();
        // Every route is a relay route: the relay's share bounds them all.
        assert!(data_bytes <= RELAY_SEND_BUDGET, "{data_bytes} bytes of answers queued");
        assert!(reads * CHUNK as u64 <= RELAY_SEND_BUDGET, "{reads} chunks read");
        assert!(busy > 100 && s.dropped > 10_000, "busy {busy}, {s:?}");
        assert_eq!(s.busy, busy);
    }

    #[test]
    fn budget_that_comes_free_goes_to_an_honest_asker_before_a_flood() {
        let mut p = seeder();
        let bytes = vec![5u8; CHUNK];
        let chunk = ChunkId::of(&bytes);
        // Four identities ask over 16 relay routes each, 8 requests a route: far more than
        // the budget, so the peer is starved. Reads are answered at once; frames wait for
        // the writer, which sends one frame a round, oldest first.
        let mut unflushed: VecDeque<(PeerId, u64, usize)> = VecDeque::new();
        let serve = |p: &mut Peer<Vec<u8>>, unflushed: &mut VecDeque<(PeerId, u64, usize)>| {
            let mut served = Vec::new();
            for (to, conn, m, len) in take_answering(p, &bytes).0 {
                if let PeerMsg::Data { req, offset, bytes: b, .. } = m {
                    if offset as usize + b.len() == CHUNK {
                        served.push((to.clone(), req));
                    }
                }
                unflushed.push_back((to, conn, len));
            }
            served
        };
        for i in 0..(4 * 16 * 8) {
            p.handle_relay(asker(i % 4), (i / 4) % 16, Incoming::Request { req: i as u32, chunk }, 0);
        }
        serve(&mut p, &mut unflushed);
        assert!(p.serve.starved, "the flood fills the budget");
        // The honest asker's request, then the writer goes on.
        let honest = asker(99);
        p.handle_relay(honest.clone(), 1, Incoming::Request { req: 7, chunk }, 0);
        let mut rounds = 0;
        loop {
            let served = serve(&mut p, &mut unflushed);
            if served.contains(&(honest.clone(), 7)) {
                break;
            }
            let (to, conn, len) = unflushed.pop_front().expect("frames to flush");
            p.relay_flushed(&to, conn, len);
            rounds += 1;
            assert!(rounds < 1_000, "the honest request waited past {rounds} frames of the flood");
        }
        // The budget's first chunk's worth of frames that came free was enough.
        let frames_per_chunk = CHUNK / p.config.frame_payload.max(1);
        assert!(rounds <= MAX_CHUNK_SIZE as usize / CHUNK * frames_per_chunk + 1, "{rounds} frames");
    }

    #[test]
    fn serving_keeps_to_the_upload_limit_and_answers_every_request_in_time() {
        let mut p = seeder();
        let bytes = vec![3u8; CHUNK];
        let chunk = ChunkId::of(&bytes);
        let rate = 1024 * 1024; // 1 MiB/s: four chunks a second
        p.set_upload_limit(Some(rate), 0);
        assert_eq!(p.upload_limit(), Some(rate));
        // 40 chunks asked at once over two routes (10 MiB); the writer flushes at once.
        for i in 0..40u32 {
            p.handle_relay(asker(u64::from(i % 2)), 1, Incoming::Request { req: i, chunk }, 0);
        }
        let (mut now, mut data, mut served) = (0u64, 0u64, 0u32);
        loop {
            // Everything that can go now goes (reads answered, frames flushed at once).
            loop {
                let sent = take_answering(&mut p, &bytes).0;
                if sent.is_empty() {
                    break;
                }
                for (to, conn, m, len) in sent {
                    if let PeerMsg::Data { offset, bytes: b, .. } = &m {
                        data += b.len() as u64;
                        if *offset as usize + b.len() == CHUNK {
                            served += 1;
                        }
                    }
                    p.relay_flushed(&to, conn, len);
                }
            }
            // Never ahead of the limit: its burst, the rate over the time, and the chunk
            // whose read started last.
            let allowed = super::super::pace::MIN_BURST + rate * now / 1000 + CHUNK as u64;
            assert!(data <= allowed, "{data} bytes by {now} ms, {allowed} allowed");
            if served == 40 {
                break;
            }
            let Some(next) = p.poll_timeout() else { panic!("requests wait and nothing will wake them") };
            assert!(next > now, "woken for nothing at {now}");
            now = next;
            p.handle_timeout(&Nothing, now);
        }
        // 10 MiB at 1 MiB/s after a 4 MiB burst: about 6 s, not much more.
        assert!((5_000..=7_000).contains(&now), "served in {now} ms");
        p.set_upload_limit(None, now);
        assert_eq!(p.upload_limit(), None);
    }

    #[test]
    fn serving_goes_on_as_the_writer_flushes() {
        let mut p = seeder();
        let bytes = vec![3u8; CHUNK];
        let chunk = ChunkId::of(&bytes);
        let who = asker(1);
        for req in 0..16 {
            p.handle_relay(who.clone(), 5, Incoming::Request { req, chunk }, 0);
        }
        let mut answered = Vec::new();
        let mut unflushed: VecDeque<usize> = VecDeque::new();
        for _round in 0..200 {
            for (_, _, m, len) in take_answering(&mut p, &bytes).0 {
                let PeerMsg::Data { req, offset, bytes: b, .. } = m else { panic!("{m:?}") };
                if offset as usize + b.len() == CHUNK {
                    answered.push(req);
                }
                unflushed.push_back(len);
            }
            // The route never has much more than its window queued.
            let queued = p.serve_stats().queued;
            assert!(queued <= SEND_WINDOW + (READS_PER_ROUTE * CHUNK) as u64 + 64 * SEND_FRAME_COST, "{queued}");
            // The writer sends one frame per round.
            match unflushed.pop_front() {
                Some(len) => p.relay_flushed(&who, 5, len),
                None => break,
            }
        }
        assert_eq!(answered, (0..16).collect::<Vec<u32>>(), "every request answered, in order");
        assert_eq!(p.serve_stats().queued, 0);
        assert!(p.serve.queues.is_empty(), "idle routes are forgotten");
    }

    #[test]
    fn a_cancel_drops_waiting_requests_and_a_read_in_progress() {
        let mut p = seeder();
        let bytes = vec![9u8; CHUNK];
        let chunk = ChunkId::of(&bytes);
        let who = asker(2);
        for req in 0..10 {
            p.handle_relay(who.clone(), 1, Incoming::Request { req, chunk }, 0);
        }
        let reads = take(&mut p).reads;
        assert_eq!(reads.len(), READS_PER_ROUTE);
        // Requests 0 (being read) and 2..10 (waiting) are cancelled; 1 is not.
        p.handle_relay(who.clone(), 1, Incoming::Cancel { reqs: (2..10).chain([0]).collect() }, 0);
        // Another route's requests with the same numbers are not touched.
        p.handle_relay(asker(3), 1, Incoming::Request { req: 3, chunk }, 0);
        let other = take(&mut p).reads;
        assert_eq!(other.len(), 1);
        for t in reads.into_iter().chain(other) {
            p.chunk_read(t, ReadResult::Found(bytes.clone()));
        }
        let out = take(&mut p);
        assert!(out.reads.is_empty(), "cancelled requests are never read");
        let done: Vec<(PeerId, u32)> = out
            .sent
            .iter()
            .filter_map(|(to, _, m, _)| match m {
                PeerMsg::Data { req, offset: 0, .. } => Some((to.clone(), *req)),
                _ => None,
            })
            .collect();
        assert_eq!(done, vec![(who, 1), (asker(3), 3)]);
        assert_eq!(p.serve_stats().cancelled, 9);
    }
}
