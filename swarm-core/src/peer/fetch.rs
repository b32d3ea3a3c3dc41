//! Fetching: runs of the one download state machine (user downloads, gateway reads,
//! replication orders), the fetching links they share, and the mapping of request numbers
//! between downloads and links.
//!
//! A download that runs out of sources (every holder gone, or a chunk with no live holder)
//! locates the file again after [`RELOCATE_MS`]: repaired copies elsewhere finish the job.
//! It gives up after [`GIVE_UP_MS`], or after [`NO_HOLDER_MS`] when the tracker itself knows no
//! live holder of some chunk.

use super::config::{LINK_IDLE_MS, ORDER_CONCURRENCY, PIPELINE, RELAY_PIPELINE};
use super::download::{Answer, Download, Step};
use super::links::{Direct, OutLink};
use super::{ChunkBuf, DownloadError, DownloadId, Event, Failure, Inventory, LinkId, Output, Peer, Pending, Purpose};
use crate::chunk_proto::{cancels, PeerMsg};
use crate::{ChunkId, ClientMsg, FileId, LinkPath, Manifest, PeerId, ServerMsg};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// How long after running out of sources a download locates its file again.
pub const RELOCATE_MS: u64 = 1_000;
/// How long a download keeps looking for holders of missing chunks.
pub const GIVE_UP_MS: u64 = 90_000;
/// How long a download waits for a chunk the tracker knows no live holder of.
pub const NO_HOLDER_MS: u64 = 10_000;
/// How often running downloads get the time (stall detection).
const TICK_MS: u64 = 500;
/// Sources of one replication order tried (the tracker's list is not trusted to be short).
const MAX_ORDER_SOURCES: usize = 16;

struct Run<B: ChunkBuf> {
    purpose: Purpose,
    file: FileId,
    /// `None` while locating.
    dl: Option<Download<B>>,
    started: u64,
    relocate_at: Option<u64>,
    /// Since when the tracker has known no live holder of some chunk.
    unheld_since: Option<u64>,
    /// A player's playhead (byte offset), kept across re-locates.
    playhead: Option<u64>,
}

/// A request on the wire: whose it is.
#[derive(Debug, Clone, Copy)]
struct WireReq {
    download: DownloadId,
    slot: usize,
    /// The download's own number for it.
    req: u32,
    /// Sent over the data channel (else through the relay).
    on_direct: bool,
}

struct Verifying {
    download: DownloadId,
    slot: usize,
    index: usize,
    chunk: ChunkId,
}

pub struct Fetching<B: ChunkBuf> {
    runs: HashMap<DownloadId, Run<B>>,
    next_download: DownloadId,
    wire: HashMap<(PeerId, u32), WireReq>,
    next_wire: u32,
    verifying: HashMap<u64, Verifying>,
    next_token: u64,
    /// Orders for chunks a running download fetches anyway: done when it stores them.
    waiting_orders: HashMap<ChunkId, Vec<u64>>,
    /// Orders beyond [`ORDER_CONCURRENCY`], waiting their turn.
    queued_orders: VecDeque<(u64, ChunkId, u32, Vec<PeerId>)>,
    tick_at: Option<u64>,
}

impl<B: ChunkBuf> Default for Fetching<B> {
    fn default() -> Self {
        Self {
            runs: HashMap::new(),
            next_download: 1,
            wire: HashMap::new(),
            next_wire: 1,
            verifying: HashMap::new(),
            next_token: 1,
            waiting_orders: HashMap::new(),
            queued_orders: VecDeque::new(),
            tick_at: None,
        }
    }
}

impl<B: ChunkBuf> Fetching<B> {
    pub fn deadline(&self) -> Option<u64> {
        let relocate = self.runs.values().filter_map(|r| r.relocate_at).min();
        [self.tick_at, relocate].into_iter().flatten().min()
    }
}

impl<B: ChunkBuf + Clone> Peer<B> {
    /// Downloads `file`: locates it, then fetches what the store lacks.
    pub fn download(&mut self, file: FileId, purpose: Purpose, now_ms: u64) -> DownloadId {
        let id = self.new_run(purpose, file, now_ms);
        self.send_request(Pending::Locate(id), |req| ClientMsg::Locate { req, file });
        id
    }

    /// Fetches one chunk whose sources are known (a gateway read from a cached `locate`).
    pub fn fetch_chunk(
        &mut self,
        chunk: ChunkId,
        size: u32,
        sources: Vec<PeerId>,
        purpose: Purpose,
        inv: &dyn Inventory,
        now_ms: u64,
    ) -> DownloadId {
        let manifest = Manifest { size: size as u64, chunk_size: size.max(1), chunks: vec![chunk] };
        let id = self.new_run(purpose, manifest.file_id(), now_ms);
        let sources: Vec<PeerId> =
            sources.into_iter().filter(|p| Some(p) != self.me.as_ref()).take(MAX_ORDER_SOURCES).collect();
        let holders = vec![(0..sources.len() as u32).collect()];
        match Download::new(manifest.file_id(), manifest, sources, holders, self.me.as_ref(), |c| inv.has(c)) {
            Ok(mut dl) => {
                dl.set_max_peers(1);
                dl.set_endgame(false);
                let mut steps = dl.tick(now_ms);
                steps.extend(dl.start());
                self.fetch.runs.get_mut(&id).expect("just made").dl = Some(dl);
                self.apply(id, steps, now_ms);
            }
            Err(e) => self.finish(id, Err(Failure::Failed(e.to_string())), now_ms),
        }
        id
    }

    /// Stops a download (its links stay for others; its requests' answers are ignored).
    pub fn cancel(&mut self, download: DownloadId, now_ms: u64) {
        if self.fetch.runs.contains_key(&download) {
            self.finish(download, Err(Failure::Cancelled), now_ms);
        }
    }

    /// A player reads download `download` from byte `offset` on (`None`: nobody plays): the
    /// chunks from there are fetched first, in order ([`Download::set_playhead`]); a seek
    /// re-prioritises at once. Kept while the download re-locates its file.
    pub fn set_playhead(&mut self, download: DownloadId, offset: Option<u64>, now_ms: u64) {
        let Some(run) = self.fetch.runs.get_mut(&download) else { return };
        run.playhead = offset;
        let Some(dl) = run.dl.as_mut() else { return };
        dl.advance(now_ms);
        let steps = dl.set_playhead(offset.map(|o| chunk_at(dl.manifest(), o)));
        self.apply(download, steps, now_ms);
    }

    /// The running download of `file` that keeps or reads it (not a replication order), if any.
    pub fn download_of(&self, file: FileId) -> Option<DownloadId> {
        self.fetch
            .runs
            .iter()
            .filter(|(_, r)| r.file == file && !matches!(r.purpose, Purpose::Order { .. }))
            .map(|(id, _)| *id)
            .min()
    }

    /// A running download's state (chunk map, sources, bytes).
    pub fn download_state(&self, download: DownloadId) -> Option<&Download<B>> {
        self.fetch.runs.get(&download).and_then(|r| r.dl.as_ref())
    }

    /// Downloads running now.
    pub fn downloads(&self) -> impl Iterator<Item = (DownloadId, &Purpose)> {
        self.fetch.runs.iter().map(|(id, r)| (*id, &r.purpose))
    }

    fn new_run(&mut self, purpose: Purpose, file: FileId, now_ms: u64) -> DownloadId {
        let id = self.fetch.next_download;
        self.fetch.next_download += 1;
        let run =
            Run { purpose, file, dl: None, started: now_ms, relocate_at: None, unheld_since: None, playhead: None };
        self.fetch.runs.insert(id, run);
        self.fetch.tick_at.get_or_insert(now_ms + TICK_MS);
        id
    }

    pub(super) fn on_located(&mut self, download: DownloadId, msg: ServerMsg, inv: &dyn Inventory, now_ms: u64) {
        let ServerMsg::Located { file, meta, manifest, peers, holders, .. } = msg else { return };
        let Some(run) = self.fetch.runs.get_mut(&download) else { return };
        if file != run.file {
            let why = format!("the tracker answered about another file ({})", file.short());
            return self.finish(download, Err(Failure::Failed(why)), now_ms);
        }
        let me = self.me.clone();
        let dl = Download::new(file, manifest.clone(), peers, holders, me.as_ref(), |c| inv.has(c));
        let mut dl = match dl {
            Ok(dl) => dl,
            Err(e) => return self.finish(download, Err(Failure::Failed(e.to_string())), now_ms),
        };
        dl.set_wait_for_holders(true);
        dl.set_endgame_mode(self.config.endgame);
        // Chunks this peer lacks that the tracker knows no live holder of.
        let unheld = (0..dl.total()).filter(|&i| !inv.has(&manifest.chunks[i])).any(|i| dl.holders_of(i) == 0);
        run.unheld_since = if unheld { Some(run.unheld_since.unwrap_or(now_ms)) } else { None };
        let first = run.dl.is_none();
        let mut steps = dl.tick(now_ms);
        if let Some(offset) = run.playhead {
            steps.extend(dl.set_playhead(Some(chunk_at(&manifest, offset))));
        }
        steps.extend(dl.start());
        run.dl = Some(dl);
        if first {
            self.event(Event::Located { download, file, manifest, meta });
        }
        self.apply(download, steps, now_ms);
    }

    /// A replication order from the tracker.
    pub(super) fn on_order(
        &mut self,
        order: u64,
        chunk: ChunkId,
        size: u32,
        sources: Vec<PeerId>,
        inv: &dyn Inventory,
        now_ms: u64,
    ) {
        if inv.has(&chunk) {
            self.send(ClientMsg::Have { chunks: vec![chunk], full: false });
            self.send(ClientMsg::OrderDone { order });
            return;
        }
        if inv.used().saturating_add(size as u64) > inv.capacity() {
            let reason = format!("no room: {} of {} bytes used", inv.used(), inv.capacity());
            self.send(ClientMsg::OrderFailed { order, reason });
            return;
        }
        let fetching =
            self.fetch.runs.values().any(|r| {
                r.purpose == Purpose::Keep && r.dl.as_ref().is_some_and(|d| d.manifest().chunks.contains(&chunk))
            });
        if fetching {
            self.fetch.waiting_orders.entry(chunk).or_default().push(order);
            return;
        }
        // A download still locating its file may be about to fetch this very chunk (the
        // tracker orders copies from a new peer at once): the order waits for it.
        let locating = self.fetch.runs.values().any(|r| r.purpose == Purpose::Keep && r.dl.is_none());
        let running = self.fetch.runs.values().filter(|r| matches!(r.purpose, Purpose::Order { .. })).count();
        if running >= ORDER_CONCURRENCY || locating {
            self.fetch.queued_orders.push_back((order, chunk, size, sources));
            self.fetch.tick_at.get_or_insert(now_ms + TICK_MS);
            return;
        }
        self.fetch_chunk(chunk, size, sources, Purpose::Order { order }, inv, now_ms);
    }

    /// Carries out what a download decided (and what that leads to).
    fn apply(&mut self, download: DownloadId, steps: Vec<Step<B>>, now_ms: u64) {
        let mut queue: VecDeque<(DownloadId, Step<B>)> = steps.into_iter().map(|s| (download, s)).collect();
        while let Some((id, step)) = queue.pop_front() {
            let Some(run) = self.fetch.runs.get_mut(&id) else { continue };
            let Some(dl) = run.dl.as_mut() else { continue };
            let more: Vec<Step<B>> = match step {
                Step::Connect { slot } => {
                    let peer = dl.peer(slot).clone();
                    self.connect(id, slot, &peer, now_ms)
                }
                Step::Disconnect { slot } => {
                    let peer = dl.peer(slot).clone();
                    self.event(Event::Notice(format!("peer {} stalled; dropping its link", peer.short())));
                    self.drop_out_link(&peer, now_ms);
                    Vec::new()
                }
                Step::Request { slot, req, chunk } => {
                    let peer = dl.peer(slot).clone();
                    self.send_chunk_request(id, slot, &peer, req, chunk)
                }
                Step::Verify { slot, index, chunk, bytes } => {
                    let token = self.fetch.next_token;
                    self.fetch.next_token += 1;
                    let keep = run.purpose != Purpose::Read;
                    self.fetch.verifying.insert(token, Verifying { download: id, slot, index, chunk });
                    self.out.push_back(Output::Verify { token, chunk, bytes, keep });
                    Vec::new()
                }
                Step::Stored { index, chunk, bytes } => {
                    let from = dl.source_of(index).map(|s| dl.peer(s).clone());
                    let bytes = (run.purpose == Purpose::Read).then_some(bytes);
                    let (len, stored, size) = (dl.manifest().chunk_len(index), dl.bytes_done(), dl.manifest().size);
                    if let Some(from) = from {
                        self.event(Event::Chunk { download: id, index, len, stored, size, from, bytes });
                    }
                    if let Some(orders) = self.fetch.waiting_orders.remove(&chunk) {
                        self.flush_haves();
                        for order in orders {
                            self.send(ClientMsg::OrderDone { order });
                        }
                    }
                    Vec::new()
                }
                Step::Rejected { slot, index, reason } => {
                    let peer = dl.peer(slot).short().to_string();
                    self.event(Event::Notice(format!("chunk {index} from {peer} refused: {reason}")));
                    Vec::new()
                }
                Step::BadSource { slot, chunk } => {
                    let peer = dl.peer(slot).clone();
                    self.send(ClientMsg::BadSource { peer, chunk });
                    Vec::new()
                }
                Step::Complete => {
                    self.finish(id, Ok(()), now_ms);
                    Vec::new()
                }
                Step::Failed(e) => {
                    self.on_failed(id, e, now_ms);
                    Vec::new()
                }
                Step::Cancel { slot, reqs } => {
                    self.cancel_wire(|w| w.download == id && w.slot == slot && reqs.contains(&w.req));
                    Vec::new()
                }
            };
            queue.extend(more.into_iter().map(|s| (id, s)));
        }
    }

    /// A download cannot go on with what it knows: locate again while that may help.
    fn on_failed(&mut self, id: DownloadId, e: DownloadError, now_ms: u64) {
        let Some(run) = self.fetch.runs.get_mut(&id) else { return };
        let retry = match (&run.purpose, &e) {
            (Purpose::Order { .. }, _)
            | (_, DownloadError::Store { .. })
            | (_, DownloadError::WrongManifest { .. }) => false,
            (_, DownloadError::Unavailable { index })
                if run.unheld_since.is_some_and(|t| now_ms >= t + NO_HOLDER_MS) =>
            {
                let (unheld, total, first) = match run.dl.as_ref() {
                    Some(d) => {
                        let unheld = (0..d.total()).filter(|&i| !d.is_done(i) && d.holders_of(i) == 0).count();
                        (unheld, d.total(), d.manifest().chunks[*index].short())
                    }
                    None => (0, 0, String::new()),
                };
                let why = format!(
                    "{unheld} of {total} chunks have no live holder in the swarm (first: chunk {index}, {first}): the \
                     file cannot be completed until a peer holding them comes back"
                );
                return self.finish(id, Err(Failure::Failed(why)), now_ms);
            }
            _ => now_ms < run.started + GIVE_UP_MS,
        };
        // A single-chunk gateway read has no file to locate: its caller retries.
        let locatable = run.purpose == Purpose::Keep;
        if retry && locatable {
            run.relocate_at = Some(now_ms + RELOCATE_MS);
            self.release(id, now_ms);
            self.event(Event::Notice(format!("{e}; looking for other holders")));
        } else {
            self.finish(id, Err(Failure::Failed(e.to_string())), now_ms);
        }
    }

    /// The download's links and requests are let go (it ended, or waits to locate again).
    fn release(&mut self, id: DownloadId, now_ms: u64) {
        for l in self.links.out.values_mut() {
            let before = l.users.len();
            l.users.retain(|(d, _)| *d != id);
            if l.users.is_empty() && before > 0 {
                l.idle_since = now_ms;
            }
        }
        // Its requests still queued at sources are withdrawn.
        self.cancel_wire(|w| w.download == id);
        self.fetch.verifying.retain(|_, v| v.download != id);
    }

    /// Forgets the requests on the wire that `pick` picks and tells their sources (`cancel`,
    /// the way each request went: over the open channel, or through the relay).
    fn cancel_wire(&mut self, pick: impl Fn(&WireReq) -> bool) {
        let mut gone: Vec<(PeerId, bool, u32)> =
            self.fetch.wire.iter().filter(|(_, w)| pick(w)).map(|((p, n), w)| (p.clone(), w.on_direct, *n)).collect();
        if gone.is_empty() {
            return;
        }
        self.fetch.wire.retain(|_, w| !pick(w));
        gone.sort_unstable();
        for group in gone.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
            let (peer, on_direct) = (&group[0].0, group[0].1);
            let Some(l) = self.links.out.get(peer) else { continue };
            let reqs: Vec<u32> = group.iter().map(|g| g.2).collect();
            let link = l.link;
            let open = matches!(l.direct, Direct::Open(_));
            for bytes in cancels(&reqs) {
                if on_direct && open {
                    self.out.push_back(Output::Send { link, bytes });
                } else if !on_direct {
                    self.out.push_back(Output::Relay { to: peer.clone(), conn: link, payload: bytes });
                }
            }
        }
    }

    pub(super) fn finish(&mut self, id: DownloadId, result: Result<(), Failure>, now_ms: u64) {
        let Some(mut run) = self.fetch.runs.remove(&id) else { return };
        if let Some(dl) = run.dl.as_mut() {
            dl.cancel();
        }
        self.release(id, now_ms);
        match (&run.purpose, &result) {
            (Purpose::Order { order }, Ok(())) => {
                self.flush_haves();
                self.send(ClientMsg::OrderDone { order: *order });
            }
            (Purpose::Order { order }, Err(reason)) => {
                self.send(ClientMsg::OrderFailed { order: *order, reason: reason.to_string() });
            }
            (Purpose::Keep, Err(_)) => {
                // Orders that waited on this download's chunks are failed: nobody fetches them now.
                let chunks: BTreeSet<ChunkId> =
                    run.dl.as_ref().map(|d| d.manifest().chunks.iter().copied().collect()).unwrap_or_default();
                for c in chunks {
                    for order in self.fetch.waiting_orders.remove(&c).unwrap_or_default() {
                        let reason = "the download fetching this chunk failed".to_string();
                        self.send(ClientMsg::OrderFailed { order, reason });
                    }
                }
            }
            _ => {}
        }
        if self.fetch.runs.is_empty() && self.fetch.queued_orders.is_empty() {
            self.fetch.tick_at = None;
        }
        self.event(Event::Finished { download: id, purpose: run.purpose.clone(), result });
        // An order slot may have come free: the next timeout starts a queued one.
        if !self.fetch.queued_orders.is_empty() {
            self.fetch.tick_at = Some(now_ms);
        }
    }

    /// The store hashed a reassembled chunk ([`Output::Verify`]): `actual` is its SHA-256;
    /// `kept` says whether it is stored now (when it matched).
    pub fn verified(&mut self, token: u64, bytes: B, actual: ChunkId, kept: Result<(), String>, now_ms: u64) {
        let Some(v) = self.fetch.verifying.remove(&token) else { return };
        let Some(run) = self.fetch.runs.get_mut(&v.download) else { return };
        let Some(dl) = run.dl.as_mut() else { return };
        let steps = match (&kept, actual == v.chunk) {
            (Err(reason), true) if run.purpose != Purpose::Read => dl.store_failed(v.index, reason.clone()),
            _ => dl.verified(v.slot, v.index, bytes, actual),
        };
        if actual == v.chunk && kept.is_ok() {
            self.announce(v.chunk, now_ms);
        }
        self.apply(v.download, steps, now_ms);
    }

    /// A chunk could not be hashed or kept for a reason that says nothing about its source.
    pub fn unverified(&mut self, token: u64, now_ms: u64) {
        let Some(v) = self.fetch.verifying.remove(&token) else { return };
        let Some(dl) = self.fetch.runs.get_mut(&v.download).and_then(|r| r.dl.as_mut()) else { return };
        let steps = dl.unverified(v.slot, v.index);
        self.apply(v.download, steps, now_ms);
    }

    // ----- links -----

    /// Download `id` wants `slot` (`peer`) connected.
    fn connect(&mut self, id: DownloadId, slot: usize, peer: &PeerId, now_ms: u64) -> Vec<Step<B>> {
        fn dl<B: ChunkBuf + Clone>(s: &mut Peer<B>, id: DownloadId) -> Option<&mut Download<B>> {
            s.fetch.runs.get_mut(&id).and_then(|r| r.dl.as_mut())
        }
        if self.links.is_lost(peer, now_ms) && !self.links.out.contains_key(peer) {
            return dl(self, id).map(|d| d.peer_gone(slot)).unwrap_or_default();
        }
        if let Some(l) = self.links.out.get_mut(peer) {
            l.users.insert((id, slot));
            if l.ready() {
                let depth = pipeline_for(l);
                return dl(self, id)
                    .map(|d| {
                        d.set_pipeline(slot, depth);
                        d.peer_ready(slot)
                    })
                    .unwrap_or_default();
            }
            return Vec::new();
        }
        let link = self.links.new_id();
        let relay_only = self.config.relay_only;
        let out = OutLink {
            link,
            direct: if relay_only { Direct::None } else { Direct::Trying { since: now_ms } },
            relay: relay_only,
            users: BTreeSet::from([(id, slot)]),
            started: now_ms,
            idle_since: now_ms,
        };
        self.links.out.insert(peer.clone(), out);
        self.links.out_ids.insert(link, peer.clone());
        if relay_only {
            return dl(self, id)
                .map(|d| {
                    d.set_pipeline(slot, RELAY_PIPELINE);
                    d.peer_ready(slot)
                })
                .unwrap_or_default();
        }
        self.out.push_back(Output::Dial { link, peer: peer.clone() });
        self.update_link_check();
        Vec::new()
    }

    fn update_link_check(&mut self) {
        let (grace, timeout) = (self.config.direct_grace_ms, self.config.direct_timeout_ms);
        self.links.next_check = self
            .links
            .out
            .values()
            .filter_map(|l| match l.direct {
                Direct::Trying { since } if !l.relay => Some(since + grace),
                Direct::Trying { since } => Some(since + timeout),
                _ => None,
            })
            .min();
    }

    fn send_chunk_request(
        &mut self,
        id: DownloadId,
        slot: usize,
        peer: &PeerId,
        req: u32,
        chunk: ChunkId,
    ) -> Vec<Step<B>> {
        let Some(l) = self.links.out.get(peer) else {
            return self
                .fetch
                .runs
                .get_mut(&id)
                .and_then(|r| r.dl.as_mut())
                .map(|d| d.peer_gone(slot))
                .unwrap_or_default();
        };
        let w = self.fetch.next_wire;
        self.fetch.next_wire = self.fetch.next_wire.wrapping_add(1).max(1);
        let bytes = PeerMsg::Request { req: w, chunk }.encode();
        let on_direct = matches!(l.direct, Direct::Open(_));
        if on_direct {
            self.out.push_back(Output::Send { link: l.link, bytes });
        } else {
            self.out.push_back(Output::Relay { to: peer.clone(), conn: l.link, payload: bytes });
        }
        self.fetch.wire.insert((peer.clone(), w), WireReq { download: id, slot, req, on_direct });
        Vec::new()
    }

    /// An answer from `peer` to one of this peer's requests.
    pub(super) fn on_answer(&mut self, peer: &PeerId, answer: Answer<B::Part>, now_ms: u64) {
        let wire_req = match &answer {
            Answer::Data { req, .. } | Answer::Missing { req } | Answer::Busy { req } => *req,
        };
        let Some(w) = self.fetch.wire.get(&(peer.clone(), wire_req)).copied() else { return };
        let Some(dl) = self.fetch.runs.get_mut(&w.download).and_then(|r| r.dl.as_mut()) else {
            self.fetch.wire.remove(&(peer.clone(), wire_req));
            return;
        };
        let answer = match answer {
            Answer::Data { offset, total, part, .. } => Answer::Data { req: w.req, offset, total, part },
            Answer::Missing { .. } => Answer::Missing { req: w.req },
            Answer::Busy { .. } => Answer::Busy { req: w.req },
        };
        dl.advance(now_ms);
        let steps = dl.on_answer(w.slot, answer);
        if !dl.is_pending(w.slot, w.req) {
            self.fetch.wire.remove(&(peer.clone(), wire_req));
        }
        self.apply(w.download, steps, now_ms);
    }

    /// Every user of `peer`'s link is told it is gone; the link is closed and the peer left
    /// alone for a while.
    pub(super) fn drop_out_link(&mut self, peer: &PeerId, now_ms: u64) {
        self.links.lost.insert(peer.clone(), now_ms);
        let Some(l) = self.close_out_link(peer) else { return };
        self.fetch.wire.retain(|(p, _), _| p != peer);
        for (id, slot) in l.users {
            let steps = self.fetch.runs.get_mut(&id).and_then(|r| r.dl.as_mut()).map(|d| d.peer_gone(slot));
            self.apply(id, steps.unwrap_or_default(), now_ms);
        }
        self.update_link_check();
    }

    /// The link to `peer` became ready or changed path: its users send (more) requests.
    /// Forgets the fetching link to `peer` (closing its WebRTC side, if any) and returns it.
    fn close_out_link(&mut self, peer: &PeerId) -> Option<OutLink> {
        let l = self.links.out.remove(peer)?;
        self.links.out_ids.remove(&l.link);
        if l.direct != Direct::None {
            self.out.push_back(Output::Close { link: l.link });
        }
        Some(l)
    }

    fn users_ready(&mut self, peer: &PeerId, now_ms: u64) {
        let Some(l) = self.links.out.get(peer) else { return };
        let depth = pipeline_for(l);
        let users: Vec<(DownloadId, usize)> = l.users.iter().copied().collect();
        for (id, slot) in users {
            let steps = self.fetch.runs.get_mut(&id).and_then(|r| r.dl.as_mut()).map(|d| {
                d.set_pipeline(slot, depth);
                d.peer_ready(slot)
            });
            self.apply(id, steps.unwrap_or_default(), now_ms);
        }
    }

    /// A link's data channel is open (`path`: how its bytes travel).
    pub fn link_open(&mut self, link: LinkId, path: LinkPath, now_ms: u64) {
        if let Some(l) = self.links.inbound.get_mut(&link) {
            l.path = Some(path);
            return;
        }
        let Some(peer) = self.links.out_ids.get(&link).cloned() else { return };
        let Some(l) = self.links.out.get_mut(&peer) else { return };
        l.direct = Direct::Open(path);
        self.update_link_check();
        self.users_ready(&peer, now_ms);
    }

    /// A link's path changed (the driver re-read its selected candidate pair).
    pub fn link_path(&mut self, link: LinkId, path: LinkPath) {
        if let Some(l) = self.links.inbound.get_mut(&link) {
            l.path = Some(path);
        } else if let Some(l) = self.links.out_ids.get(&link).and_then(|p| self.links.out.get_mut(p)) {
            if matches!(l.direct, Direct::Open(_)) {
                l.direct = Direct::Open(path);
            }
        }
    }

    /// A link's WebRTC attempt or channel failed or closed.
    pub fn link_closed(&mut self, link: LinkId, reason: &str, now_ms: u64) {
        if self.links.inbound.contains_key(&link) {
            self.forget_inbound(link);
            return;
        }
        let Some(peer) = self.links.out_ids.get(&link).cloned() else { return };
        if self.links.is_lost(&peer, now_ms) {
            return self.drop_out_link(&peer, now_ms);
        }
        let Some(l) = self.links.out.get_mut(&peer) else { return };
        let was_open = matches!(l.direct, Direct::Open(_));
        l.direct = Direct::None;
        l.relay = true;
        self.update_link_check();
        if was_open {
            self.event(Event::Notice(format!("data channel to {} closed ({reason}): back on the relay", peer.short())));
        }
        // Requests that went over the channel are asked again (through the relay).
        self.requests_lost(|p, w| *p == peer && w.on_direct, now_ms);
        // Ready through the relay now, with the relay's pipeline.
        self.users_ready(&peer, now_ms);
    }

    /// The requests on the wire that `lost` picks were lost with their path: asked again.
    fn requests_lost(&mut self, lost: impl Fn(&PeerId, &WireReq) -> bool, now_ms: u64) {
        let gone: Vec<WireReq> = self.fetch.wire.iter().filter(|((p, _), w)| lost(p, w)).map(|(_, w)| *w).collect();
        self.fetch.wire.retain(|(p, _), w| !lost(p, w));
        for w in gone {
            let steps =
                self.fetch.runs.get_mut(&w.download).and_then(|r| r.dl.as_mut()).map(|d| d.request_lost(w.slot, w.req));
            self.apply(w.download, steps.unwrap_or_default(), now_ms);
        }
    }

    /// The tracker connection is back: requests that went through the relay while it was
    /// down, or were on their way when it went, were lost with it: asked again now rather
    /// than after a stall (which would also set their sources aside for a while).
    pub(super) fn relay_requests_lost(&mut self, now_ms: u64) {
        self.requests_lost(|_, w| !w.on_direct, now_ms);
    }

    pub(super) fn links_timeout(&mut self, now_ms: u64) {
        let (grace, timeout) = (self.config.direct_grace_ms, self.config.direct_timeout_ms);
        let mut to_relay = Vec::new();
        let mut idle = Vec::new();
        for (peer, l) in self.links.out.iter_mut() {
            if let Direct::Trying { since } = l.direct {
                if !l.relay && now_ms >= since + grace {
                    l.relay = true;
                    to_relay.push(peer.clone());
                }
                if now_ms >= since + timeout {
                    l.direct = Direct::None;
                    self.out.push_back(Output::Close { link: l.link });
                }
            }
            if l.users.is_empty() && now_ms >= l.idle_since + LINK_IDLE_MS {
                idle.push(peer.clone());
            }
        }
        for peer in idle {
            self.close_out_link(&peer);
        }
        self.update_link_check();
        for peer in to_relay {
            self.users_ready(&peer, now_ms);
        }
    }

    pub(super) fn fetch_timeout(&mut self, inv: &dyn Inventory, now_ms: u64) {
        // Queued orders get another look (each goes back to the queue if it must still wait).
        for _ in 0..self.fetch.queued_orders.len() {
            let Some((order, chunk, size, sources)) = self.fetch.queued_orders.pop_front() else { break };
            self.on_order(order, chunk, size, sources, inv, now_ms);
        }
        if self.fetch.tick_at.is_some_and(|t| now_ms >= t) {
            let idle = self.fetch.runs.is_empty() && self.fetch.queued_orders.is_empty();
            self.fetch.tick_at = (!idle).then_some(now_ms + TICK_MS);
            let ids: Vec<DownloadId> = self.fetch.runs.keys().copied().collect();
            for id in ids {
                let steps = self.fetch.runs.get_mut(&id).and_then(|r| r.dl.as_mut()).map(|d| d.tick(now_ms));
                self.apply(id, steps.unwrap_or_default(), now_ms);
            }
        }
        let due: Vec<(DownloadId, FileId)> = self
            .fetch
            .runs
            .iter()
            .filter(|(_, r)| r.relocate_at.is_some_and(|t| now_ms >= t))
            .map(|(id, r)| (*id, r.file))
            .collect();
        for (id, file) in due {
            if let Some(r) = self.fetch.runs.get_mut(&id) {
                r.relocate_at = None;
            }
            self.send_request(Pending::Locate(id), |req| ClientMsg::Locate { req, file });
        }
    }
}

/// The index of the chunk holding byte `offset` (the last chunk for offsets past the end).
fn chunk_at(m: &Manifest, offset: u64) -> usize {
    let i = offset / m.chunk_size.max(1) as u64;
    (i as usize).min(m.chunks.len().saturating_sub(1))
}

/// Requests a download may keep outstanding on a link as it is now.
fn pipeline_for(l: &OutLink) -> usize {
    match l.direct {
        Direct::Open(_) => PIPELINE,
        _ => RELAY_PIPELINE,
    }
}
