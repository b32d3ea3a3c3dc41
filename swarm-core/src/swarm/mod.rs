//! The tracker's swarm index as a plain state struct, apart from any socket (sans-IO, in the
//! manner of aquatic's swarm maps): which peers are live, which files exist, who holds which
//! chunk, and the replication orders that keep every chunk on `R` peers ([`repair`]).
//! The tracker's websocket tasks call [`Swarm::join`], [`Swarm::handle`] and [`Swarm::leave`],
//! a timer calls [`Swarm::tick`], and the driver carries the returned [`Output`]s to the peers
//! and to the durable index. Time comes in as milliseconds; nothing here reads a clock.
//! What the tracker admits before the swarm sees a message (secret format, publish limits)
//! is [`policy`]'s. How files leave the index (unpublished by their owner, or expired with no
//! holder) is [`lifecycle`]'s. What one peer's claims may cost is bounded by [`claims`]; what
//! the whole state costs, estimated as it changes, is [`budget`]'s. What the REST layer shows
//! of one file ([`Swarm::file_detail`]) is built in `swarm-core/src/swarm/detail.rs`; what
//! [`Swarm::search`] finds, by [`search`]'s name index.

pub mod budget;
pub mod claims;
mod detail;
pub mod lifecycle;
pub mod orphans;
mod placement;
pub mod policy;
pub mod repair;
pub mod search;
#[cfg(test)]
mod testkit;
pub mod trust;

use crate::content::{ChunkId, FileId, Manifest};
use crate::envelope::MAX_SEALED_BYTES;
use crate::wire::{
    validate_name, ChallengeItem, ClientMsg, ErrorCode, FileMeta, FileSummary, LinkPath, PathReport, PeerId, PeerKind,
    ServerMsg, Signal,
};
use repair::{Order, RepairConfig, RepairStats, Scarcity};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Bits of an order or challenge id below its range (see [`Swarm::set_id_base`]).
pub const ID_RANGE_BITS: u32 = 40;

/// Longest search result list.
pub const MAX_SEARCH_RESULTS: u32 = 100;
/// Longest MIME type string kept.
pub const MAX_MIME_BYTES: usize = 127;

/// What the driver must do after a call into the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `msg` to peer `to`.
    Send { to: PeerId, msg: ServerMsg },
    /// A new file entered the index: persist it.
    FileAdded(FileId),
    /// A file left the index (unpublished, or expired unheld): forget it durably too.
    FileRemoved(FileId),
}

/// One live peer.
#[derive(Debug, Clone)]
pub struct PeerState {
    pub kind: PeerKind,
    pub joined_at_ms: u64,
    pub chunks: HashSet<ChunkId>,
    /// Bytes stored, as last reported (plus chunks gained since).
    pub used: u64,
    /// Bytes it offers the swarm (`None`: not reported).
    pub capacity: Option<u64>,
    /// Bytes promised to orders in flight.
    pub reserved: u64,
    /// Replication orders in flight to this peer.
    pub orders: usize,
    /// Asked to leave: its chunks are being handed to others.
    pub leaving: bool,
    leave_answered: bool,
    /// Refused an order for lack of room: it takes no new copies until a storage report
    /// that differs from `refused_report` (the one current when it refused).
    pub refused_room: bool,
    refused_report: Option<(u64, u64)>,
    /// The last storage report (used, capacity).
    last_report: Option<(u64, u64)>,
    /// Peers that reported a bad copy of a chunk from this peer.
    bad_reports: HashMap<ChunkId, BTreeSet<PeerId>>,
    /// The peer's own account of its links by path (boxed: most idle peers never send one).
    pub paths: Option<Box<PathReport>>,
    /// Which of its claims are verified, strikes ([`trust`]).
    pub trust: trust::PeerTrust,
    /// When it last announced a chunk ([`orphans`]: a peer still announcing may be a
    /// publisher whose `publish` is yet to come).
    last_have_ms: u64,
    /// Chunks of no file it was trimmed of and kept (its user wants them): not trimmed again.
    orphans_trimmed: HashSet<ChunkId>,
    /// Its claims of chunks no file uses, and when each was made ([`claims`]).
    pub(crate) loose: HashMap<ChunkId, u64>,
}

impl PeerState {
    fn new(kind: PeerKind, now_ms: u64) -> Self {
        Self {
            kind,
            joined_at_ms: now_ms,
            chunks: HashSet::new(),
            used: 0,
            capacity: None,
            reserved: 0,
            orders: 0,
            leaving: false,
            leave_answered: false,
            refused_room: false,
            refused_report: None,
            last_report: None,
            bad_reports: HashMap::new(),
            paths: None,
            trust: trust::PeerTrust::default(),
            last_have_ms: now_ms,
            orphans_trimmed: HashSet::new(),
            loose: HashMap::new(),
        }
    }

    /// Bytes this peer can still take (none while it has refused an order for lack of room).
    pub fn free(&self, default_capacity: u64) -> u64 {
        if self.refused_room {
            return 0;
        }
        self.capacity.unwrap_or(default_capacity).saturating_sub(self.used + self.reserved)
    }
}

/// One file in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub manifest: Manifest,
    pub meta: FileMeta,
    pub published_at_ms: u64,
    /// The identity that first published it: the only one that may unpublish it (`None`:
    /// restored from an index written before owners were kept).
    pub owner: Option<PeerId>,
}

/// Counters the tracker exposes (API, metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwarmStats {
    pub signals_relayed: u64,
    pub errors_sent: u64,
    pub bad_sources_reported: u64,
    /// Name index entries searches looked at (what askers are charged for: [`search`]).
    pub search_examined: u64,
}

#[derive(Debug, Default)]
pub struct Swarm {
    pub config: RepairConfig,
    peers: HashMap<PeerId, PeerState>,
    files: BTreeMap<FileId, FileRecord>,
    /// Live peers claiming each chunk (verified or not).
    holders: HashMap<ChunkId, BTreeSet<PeerId>>,
    /// Live peers whose holding of each chunk is verified: the copies that count.
    verified: HashMap<ChunkId, BTreeSet<PeerId>>,
    /// Size of every chunk of every known file (the chunks worth replicating).
    chunk_sizes: HashMap<ChunkId, u32>,
    orders: HashMap<u64, Order>,
    /// Orders in flight per chunk.
    pending: HashMap<ChunkId, Vec<u64>>,
    next_order: u64,
    /// Chunks to check, by the time they are due.
    due: BTreeMap<u64, BTreeSet<ChunkId>>,
    /// Chunks waiting for a free order slot; retried at `next_retry_ms`, in turns from
    /// after `retry_cursor` (so chunks that stay unplaceable cannot starve the others).
    deferred: BTreeSet<ChunkId>,
    next_retry_ms: u64,
    retry_cursor: Option<ChunkId>,
    /// Chunks short of `R` that no live peer can take another copy of (too few peers, no
    /// room): at `R` in effect. Re-checked when room appears (a join, a storage report).
    scarce: BTreeMap<ChunkId, Scarcity>,
    /// (chunk, peer) pairs that failed an order, and until when that peer is not chosen
    /// again for that chunk.
    failed_targets: BTreeMap<(ChunkId, PeerId), u64>,
    now_ms: u64,
    /// Files not available (some chunk without a copy) and since when ([`lifecycle`]).
    unheld_since: HashMap<FileId, u64>,
    pub stats: SwarmStats,
    pub repair_stats: RepairStats,
    trust: trust::Trust,
    /// Challenges to send at the end of the current call, per peer.
    trust_out: BTreeMap<PeerId, Vec<ChallengeItem>>,
    /// Orders voided by their file's removal: (target, chunk) and until when ([`orphans`]).
    voided: HashMap<(PeerId, ChunkId), u64>,
    /// Chunks claimed that no file uses, and since when ([`orphans`]).
    orphan_since: HashMap<ChunkId, u64>,
    /// Claims kept (the sum of every holder set's size, kept as it changes).
    claims_total: usize,
    /// Loose claims kept (the sum of every peer's `loose` size, kept as it changes).
    loose_total: usize,
    /// Public files' names, for [`Swarm::search`] ([`search`]).
    names: search::NameIndex,
    /// Chunk ids in the manifests of the files kept (with repeats).
    manifest_chunks: usize,
    /// Claims refused or forgotten by the bounds ([`claims`]).
    pub claim_stats: claims::ClaimStats,
    /// When [`Swarm::expire_loose`] next looks.
    next_loose_sweep_ms: u64,
}

pub(crate) fn send(to: &PeerId, msg: ServerMsg) -> Output {
    Output::Send { to: to.clone(), msg }
}

impl Swarm {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_config(config: RepairConfig) -> Self {
        assert!(config.replication >= 2, "replication factor below 2");
        Self { config, ..Self::default() }
    }

    /// Makes every order and challenge id this swarm hands out from now on start at `base`
    /// (a tracker node of a cluster gives each node its own range, so a peer's answer can be
    /// routed back to the node that asked by the id alone: see [`Swarm::id_range_of`]).
    pub fn set_id_base(&mut self, base: u64) {
        self.next_order = self.next_order.max(base);
        self.set_next_id(base);
    }

    /// The range (`id >> ID_RANGE_BITS`) an order or challenge id came from.
    pub fn id_range_of(id: u64) -> u64 {
        id >> ID_RANGE_BITS
    }

    /// A peer said hello. A peer that was already live (a reconnect) starts over with an empty
    /// inventory: it re-announces what it holds.
    pub fn join(&mut self, id: PeerId, kind: PeerKind, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        self.leave(&id, now_ms);
        self.peers.insert(id.clone(), PeerState::new(kind, now_ms));
        self.trust_join(&id, now_ms);
        self.room_appeared(now_ms);
    }

    /// A peer's connection ended: it no longer holds anything as far as the swarm knows. Its
    /// chunks are checked after the grace period; its orders are planned elsewhere at once.
    pub fn leave(&mut self, id: &PeerId, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        let Some(p) = self.peers.get(id) else { return };
        let grace = if p.leaving { 0 } else { self.config.grace_ms };
        let mine: Vec<u64> = self.orders.iter().filter(|(_, o)| o.target == *id).map(|(k, _)| *k).collect();
        for order in mine {
            if let Some(o) = self.finish_order(order) {
                self.check_at(o.chunk, now_ms);
            }
        }
        let verified = std::mem::take(&mut self.peers.get_mut(id).expect("present").trust.verified);
        self.trust_leave(id, verified, now_ms);
        let p = self.peers.remove(id).expect("present");
        self.loose_total -= p.loose.len();
        for c in p.chunks {
            self.unhold(&c, id);
            if self.chunk_sizes.contains_key(&c) {
                self.check_at(c, now_ms + grace);
            }
        }
        self.failed_targets.retain(|(_, p), _| p != id);
    }

    /// Forgets `id` among the claimants (and verified holders) of `chunk`.
    fn unhold(&mut self, chunk: &ChunkId, id: &PeerId) {
        self.unverify(id, chunk);
        if let Some(p) = self.peers.get_mut(id) {
            if p.loose.remove(chunk).is_some() {
                self.loose_total -= 1;
            }
        }
        if let Some(set) = self.holders.get_mut(chunk) {
            if set.remove(id) {
                self.claims_total -= 1;
            }
            if set.is_empty() {
                self.holders.remove(chunk);
            }
        }
    }

    /// Removes `peer`'s claim to `chunk` (its storage count too); `false` if it had none.
    pub(crate) fn drop_claim(&mut self, peer: &PeerId, chunk: &ChunkId) -> bool {
        let Some(p) = self.peers.get_mut(peer) else { return false };
        if !p.chunks.remove(chunk) {
            return false;
        }
        if let Some(size) = self.chunk_sizes.get(chunk) {
            p.used = p.used.saturating_sub(*size as u64);
        }
        self.unhold(chunk, peer);
        true
    }

    /// Adds a file known from the durable index (at start-up).
    pub fn restore_file(&mut self, record: FileRecord) {
        self.note_chunks(&record.manifest);
        self.insert_file(record.manifest.file_id(), record);
    }

    fn insert_file(&mut self, id: FileId, record: FileRecord) {
        let chunks = record.manifest.chunks.len();
        if record.meta.is_private() {
            self.names.remove(&id);
        } else {
            self.names.insert(id, &record.meta.name, record.published_at_ms);
        }
        if let Some(old) = self.files.insert(id, record) {
            self.manifest_chunks -= old.manifest.chunks.len();
        }
        self.manifest_chunks += chunks;
    }

    fn note_chunks(&mut self, m: &Manifest) {
        for (i, c) in m.chunks.iter().enumerate() {
            if self.chunk_sizes.insert(*c, m.chunk_len(i)).is_none() {
                self.unloose(c);
            }
        }
    }

    pub fn file(&self, id: &FileId) -> Option<&FileRecord> {
        self.files.get(id)
    }
    pub fn files(&self) -> impl Iterator<Item = (&FileId, &FileRecord)> {
        self.files.iter()
    }
    pub fn peers(&self) -> impl Iterator<Item = (&PeerId, &PeerState)> {
        self.peers.iter()
    }
    pub fn is_live(&self, id: &PeerId) -> bool {
        self.peers.contains_key(id)
    }
    pub fn peer(&self, id: &PeerId) -> Option<&PeerState> {
        self.peers.get(id)
    }
    /// Live claimants of a chunk (verified or not: see [`Swarm::verified_holders`]).
    pub fn holders(&self, chunk: &ChunkId) -> impl Iterator<Item = &PeerId> {
        self.holders.get(chunk).into_iter().flatten()
    }
    /// Files in the index (a map length, not a walk).
    pub fn file_count(&self) -> usize {
        self.files.len()
    }
    /// Distinct chunks of known files (read-only, for stats).
    /// Chunks of every file's manifest, counted per file (read-only, for what a walk costs).
    pub fn manifest_chunk_count(&self) -> usize {
        self.manifest_chunks
    }
    pub fn chunk_count(&self) -> usize {
        self.chunk_sizes.len()
    }
    /// Claims of chunks of no known file, by chunk (a tracker node of a cluster moves them to
    /// the node that keeps the chunk's file once it knows which that is).
    pub fn loose_claims(&self) -> impl Iterator<Item = (&ChunkId, &BTreeSet<PeerId>)> {
        self.holders.iter().filter(|(c, _)| !self.chunk_sizes.contains_key(*c))
    }
    /// Claims kept: (live peer, chunk) pairs, of known files or not.
    pub fn claim_count(&self) -> usize {
        self.holders.values().map(BTreeSet::len).sum()
    }
    pub fn holder_count(&self, chunk: &ChunkId) -> usize {
        self.holders.get(chunk).map_or(0, BTreeSet::len)
    }

    /// Handles one message from live peer `from` (never `Hello`: the driver turns that into
    /// [`Swarm::join`]).
    pub fn handle(&mut self, from: &PeerId, msg: ClientMsg, now_ms: u64) -> Vec<Output> {
        let mut out = self.handle_msg(from, msg, now_ms);
        self.flush_challenges(now_ms, &mut out);
        out
    }

    fn handle_msg(&mut self, from: &PeerId, msg: ClientMsg, now_ms: u64) -> Vec<Output> {
        self.now_ms = self.now_ms.max(now_ms);
        if !self.peers.contains_key(from) {
            return vec![self.error(from, None, ErrorCode::NotWelcomed, "say hello first")];
        }
        match msg {
            ClientMsg::Hello { .. } | ClientMsg::AuthProof { .. } => {
                vec![self.error(from, None, ErrorCode::NotWelcomed, "hello was already said")]
            }
            ClientMsg::Heartbeat => vec![send(from, ServerMsg::Heartbeat)],
            ClientMsg::Have { chunks, full } => {
                let mut out = Vec::new();
                // A full inventory replaces the claims; those verified before stay verified.
                let mut was_verified = HashSet::new();
                if full {
                    was_verified = self.peers.get(from).map(|p| p.trust.verified.clone()).unwrap_or_default();
                    let old: Vec<ChunkId> =
                        self.peers.get_mut(from).map(|p| p.chunks.drain().collect()).unwrap_or_default();
                    for c in old {
                        self.unhold(&c, from);
                        if self.chunk_sizes.contains_key(&c) {
                            self.check_at(c, now_ms + self.config.grace_ms);
                        }
                    }
                }
                let settle = if full { self.config.grace_ms } else { 0 };
                self.peers.get_mut(from).expect("live").last_have_ms = now_ms;
                let mut voided = Vec::new();
                let mut refused = None;
                let mut dropped = 0;
                for c in chunks {
                    if self.is_voided(from, &c) {
                        voided.push(c);
                        continue;
                    }
                    let pre = was_verified.contains(&c);
                    if let Err(r) = self.add_holding(from, c, now_ms + settle, pre) {
                        self.count_refused(r);
                        refused.get_or_insert(r);
                        dropped += 1;
                    }
                }
                if let Some(r) = refused {
                    // Once per message, however many claims it dropped.
                    out.push(self.error(from, None, ErrorCode::LimitReached, r.message(dropped)));
                }
                if !voided.is_empty() {
                    // Copies an order made after its file was removed: not kept ([`orphans`]).
                    self.repair_stats.orphans_trimmed += voided.len() as u64;
                    out.push(send(from, ServerMsg::Trim { chunks: voided }));
                }
                if full {
                    self.trim_surplus(from, &mut out);
                }
                out
            }
            ClientMsg::Dropped { chunks } => {
                for c in chunks {
                    if self.drop_claim(from, &c) && self.chunk_sizes.contains_key(&c) {
                        self.check_at(c, now_ms);
                        self.room_appeared(now_ms);
                    }
                }
                vec![]
            }
            ClientMsg::Storage { used, capacity } => {
                let default_capacity = self.config.default_capacity;
                let p = self.peers.get_mut(from).expect("live");
                let free_before = p.free(default_capacity);
                p.used = used;
                p.capacity = Some(capacity);
                p.last_report = Some((used, capacity));
                if p.refused_room && p.refused_report != Some((used, capacity)) {
                    p.refused_room = false;
                }
                if p.free(default_capacity) > free_before {
                    self.room_appeared(now_ms);
                }
                vec![]
            }
            ClientMsg::OrderDone { order } => {
                // Usually the peer's `have` already completed the order; if the `have` is
                // still on its way, the order itself says which chunk the peer now holds.
                if let Some(chunk) = self.orders.get(&order).filter(|o| o.target == *from).map(|o| o.chunk) {
                    if let Err(r) = self.add_holding(from, chunk, now_ms, false) {
                        self.count_refused(r);
                    }
                }
                vec![]
            }
            ClientMsg::OrderFailed { order, reason } => {
                self.order_failed(from, order, &reason, now_ms);
                vec![]
            }
            ClientMsg::Leave => {
                self.start_leave(from, now_ms);
                vec![]
            }
            ClientMsg::Paths { report } => {
                // One entry per path at most: a report cannot grow the tracker's memory.
                let mut r = PathReport::default();
                for path in LinkPath::ALL {
                    if let Some((_, n)) = report.links.iter().find(|(p, _)| *p == path) {
                        r.links.push((path, *n));
                    }
                    if let Some((_, n)) = report.bytes_received.iter().find(|(p, _)| *p == path) {
                        r.bytes_received.push((path, *n));
                    }
                }
                self.peers.get_mut(from).expect("live").paths = Some(Box::new(r));
                vec![]
            }
            ClientMsg::BadSource { peer, chunk } => {
                self.stats.bad_sources_reported += 1;
                // A report is a reason to check, not a verdict (see [`trust`]).
                self.on_report(from, &peer, chunk, now_ms);
                vec![]
            }
            ClientMsg::Proofs { items } => {
                self.on_proofs(from, items, now_ms);
                vec![]
            }
            ClientMsg::Nonces { items, .. } => {
                self.on_nonces(from, items);
                vec![]
            }
            ClientMsg::Publish { req, manifest, meta } => self.publish(from, req, manifest, meta, now_ms),
            ClientMsg::Unpublish { req, file } => self.unpublish(from, req, &file),
            ClientMsg::Locate { req, file } => match self.locate(req, &file) {
                Some(msg) => vec![send(from, msg)],
                None => vec![self.error(from, Some(req), ErrorCode::UnknownFile, format!("no file {file}"))],
            },
            ClientMsg::Search { req, query, limit } => {
                let (files, examined) = self.search_counted(&query, limit.min(MAX_SEARCH_RESULTS));
                self.stats.search_examined += examined as u64;
                vec![send(from, ServerMsg::SearchResults { req, files })]
            }
            ClientMsg::Signal { to, conn, signal } => {
                if to == *from || !self.peers.contains_key(&to) {
                    let mut out =
                        vec![self.error(from, None, ErrorCode::UnknownPeer, format!("peer {to} is not connected"))];
                    if to != *from && !matches!(signal, Signal::Close { .. } | Signal::Gone) {
                        // Ends the caller's attempt now instead of at its timeout.
                        out.push(send(from, ServerMsg::Signal { from: to, conn, signal: Signal::Gone }));
                    }
                    return out;
                }
                self.stats.signals_relayed += 1;
                vec![send(&to, ServerMsg::Signal { from: from.clone(), conn, signal })]
            }
        }
    }

    /// `from` claims `chunk`: the claim is recorded and, for a chunk of a known file, counts
    /// once verified ([`trust`]): then its order completes, and the chunk is checked at
    /// `check_ms` if it is still short of R (e.g. it had no live copy while this peer was
    /// away; after a reconnect other holders get the grace period to re-announce first).
    /// A claim over the peer's caps ([`claims`]) is not kept: `Err` says which cap.
    fn add_holding(
        &mut self,
        from: &PeerId,
        chunk: ChunkId,
        check_ms: u64,
        preverified: bool,
    ) -> Result<(), claims::Refused> {
        let known = self.chunk_sizes.contains_key(&chunk);
        let p = self.peers.get(from).expect("live");
        if p.trust.distrusted || p.trust.failed.contains(&chunk) || p.chunks.contains(&chunk) {
            return Ok(());
        }
        self.claim_allowed(p, known)?;
        let p = self.peers.get_mut(from).expect("live");
        p.chunks.insert(chunk);
        if !known && p.loose.insert(chunk, self.now_ms).is_none() {
            self.loose_total += 1;
        }
        if self.holders.entry(chunk).or_default().insert(from.clone()) {
            self.claims_total += 1;
        }
        if let Some(size) = self.chunk_sizes.get(&chunk) {
            self.peers.get_mut(from).expect("live").used += *size as u64;
            self.consider(from, chunk, preverified, check_ms);
        }
        Ok(())
    }

    fn error(&mut self, to: &PeerId, req: Option<u32>, code: ErrorCode, message: impl Into<String>) -> Output {
        self.stats.errors_sent += 1;
        send(to, ServerMsg::error(req, code, message))
    }

    fn publish(&mut self, from: &PeerId, req: u32, manifest: Manifest, meta: FileMeta, now_ms: u64) -> Vec<Output> {
        if let Err(e) = manifest.validate() {
            return vec![self.error(from, Some(req), ErrorCode::BadManifest, e.to_string())];
        }
        if let Some(sealed) = &meta.sealed {
            // A private file: nothing in clear, and a bounded blob the tracker cannot read.
            if !meta.name.is_empty() || !meta.mime.is_empty() || sealed.0.len() > MAX_SEALED_BYTES {
                let msg = "a private file carries its name and type sealed only (at most 1024 bytes)";
                return vec![self.error(from, Some(req), ErrorCode::BadName, msg)];
            }
        } else if let Err(e) = validate_name(&meta.name) {
            return vec![self.error(from, Some(req), ErrorCode::BadName, e)];
        }
        if meta.mime.len() > MAX_MIME_BYTES || meta.mime.chars().any(char::is_control) {
            return vec![self.error(from, Some(req), ErrorCode::BadName, "bad MIME type")];
        }
        let id = manifest.file_id();
        let mut out = vec![send(from, ServerMsg::Published { req, file: id })];
        if !self.files.contains_key(&id) {
            let mut new_chunks: Vec<ChunkId> =
                manifest.chunks.iter().filter(|c| !self.chunk_sizes.contains_key(c)).copied().collect();
            new_chunks.sort();
            new_chunks.dedup();
            self.note_chunks(&manifest);
            self.trust_publish(from, &new_chunks, now_ms);
            // Placement is repair of chunks that have one copy: check them all now.
            for c in &manifest.chunks {
                self.check_at(*c, now_ms);
            }
            let record = FileRecord { manifest, meta, published_at_ms: now_ms, owner: Some(from.clone()) };
            self.insert_file(id, record);
            out.push(Output::FileAdded(id));
        }
        out
    }

    /// The manifest of `file` and the live holders of each of its chunks: verified holders
    /// first, then claimants not verified yet (downloads check every byte anyway).
    pub fn locate(&self, req: u32, file: &FileId) -> Option<ServerMsg> {
        let rec = self.files.get(file)?;
        let mut peers: Vec<PeerId> = Vec::new();
        let mut index: HashMap<&PeerId, u32> = HashMap::new();
        let holders = rec
            .manifest
            .chunks
            .iter()
            .map(|c| {
                let unverified = self.holders(c).filter(|p| !self.verified.get(c).is_some_and(|v| v.contains(*p)));
                self.verified_holders(c)
                    .chain(unverified)
                    .map(|p| {
                        *index.entry(p).or_insert_with(|| {
                            peers.push(p.clone());
                            peers.len() as u32 - 1
                        })
                    })
                    .collect()
            })
            .collect();
        Some(ServerMsg::Located {
            req,
            file: *file,
            meta: rec.meta.clone(),
            manifest: rec.manifest.clone(),
            peers,
            holders,
        })
    }

    /// Fewest verified live holders of any chunk of the file (0 for an empty file's none).
    pub fn min_holders(&self, rec: &FileRecord) -> u32 {
        rec.manifest.chunks.iter().map(|c| self.verified_count(c) as u32).min().unwrap_or(0)
    }

    pub fn summary(&self, id: &FileId, rec: &FileRecord) -> FileSummary {
        FileSummary {
            id: *id,
            name: rec.meta.name.clone(),
            mime: rec.meta.mime.clone(),
            size: rec.manifest.size,
            chunks: rec.manifest.chunks.len() as u32,
            min_holders: self.min_holders(rec),
        }
    }

    /// Public files whose name matches `query` (case-insensitive), best first, as ranked by
    /// [`search`] (whole name, prefix, word prefix, then substring for queries of 3 characters
    /// or more; newer first within a rank). An empty query lists the newest files. Files not
    /// available now ([`Swarm::is_available`]) are left out.
    pub fn search(&self, query: &str, limit: u32) -> Vec<FileSummary> {
        self.search_counted(query, limit).0
    }

    /// [`Swarm::search`] with the index entries it looked at (what the asker is charged).
    pub fn search_counted(&self, query: &str, limit: u32) -> (Vec<FileSummary>, usize) {
        let found =
            self.names.search(query, limit as usize, |id| self.files.get(id).is_some_and(|rec| self.is_available(rec)));
        let files = found.ranked.iter().filter_map(|id| Some(self.summary(id, self.files.get(id)?))).collect();
        (files, found.examined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ManifestBuilder;

    fn manifest(seed: u8, chunks: usize) -> Manifest {
        let mut b = ManifestBuilder::new(4);
        for i in 0..chunks {
            b.push(&[seed, i as u8, 0, 0]);
        }
        b.finish()
    }
    fn peer(n: u8) -> PeerId {
        PeerId::from_secret(&format!("secret-{n}"))
    }
    fn publish(s: &mut Swarm, p: &PeerId, m: &Manifest, name: &str) -> Vec<Output> {
        let meta = FileMeta::public(name, "text/plain");
        s.handle(p, ClientMsg::Publish { req: 1, manifest: m.clone(), meta }, 0)
    }

    #[test]
    fn publish_have_locate_and_leave() {
        let mut s = Swarm::new();
        let (a, b) = (peer(1), peer(2));
        s.join(a.clone(), PeerKind::Native, 0);
        s.join(b.clone(), PeerKind::Browser, 0);
        let m = manifest(1, 3);
        s.handle(&a, ClientMsg::Have { chunks: m.chunks.clone(), full: true }, 0);
        s.handle(&b, ClientMsg::Have { chunks: vec![m.chunks[1]], full: false }, 0);
        let out = publish(&mut s, &a, &m, "notes.txt");
        assert_eq!(out[1], Output::FileAdded(m.file_id()));
        let Some(ServerMsg::Located { peers, holders, .. }) = s.locate(5, &m.file_id()) else { panic!() };
        assert_eq!(peers.len(), 2);
        assert_eq!(holders.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 2, 1]);
        s.leave(&a, 0);
        let Some(ServerMsg::Located { peers, holders, .. }) = s.locate(5, &m.file_id()) else { panic!() };
        assert_eq!(peers, vec![b.clone()]);
        assert_eq!(holders, vec![vec![], vec![0], vec![]]);
        assert_eq!(s.min_holders(s.file(&m.file_id()).unwrap()), 0);
    }

    #[test]
    fn private_files_are_located_by_id_but_never_listed_or_searched() {
        use crate::envelope::SealedMeta;
        let mut s = Swarm::new();
        let a = peer(1);
        s.join(a.clone(), PeerKind::Native, 0);
        let (public, private) = (manifest(7, 2), manifest(8, 2));
        for m in [&public, &private] {
            s.handle(&a, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0);
        }
        publish(&mut s, &a, &public, "open.txt");
        let meta = FileMeta::private(SealedMeta(vec![1; 100]));
        let out = s.handle(&a, ClientMsg::Publish { req: 2, manifest: private.clone(), meta: meta.clone() }, 0);
        assert_eq!(out[1], Output::FileAdded(private.file_id()));
        assert_eq!(s.search("", 100).iter().map(|f| f.id).collect::<Vec<_>>(), vec![public.file_id()]);
        assert_eq!(s.listed_files().map(|(id, _)| *id).collect::<Vec<_>>(), vec![public.file_id()]);
        let Some(ServerMsg::Located { meta: got, .. }) = s.locate(3, &private.file_id()) else { panic!() };
        assert_eq!(got, meta);
        // A private file with a name in clear, or an oversized blob, is refused.
        for bad in [
            FileMeta { name: "leak.txt".into(), ..meta.clone() },
            FileMeta::private(SealedMeta(vec![0; MAX_SEALED_BYTES + 1])),
        ] {
            let out = s.handle(&a, ClientMsg::Publish { req: 4, manifest: manifest(9, 1), meta: bad }, 0);
            assert!(
                matches!(&out[..], [Output::Send { msg: ServerMsg::Error { code: ErrorCode::BadName, .. }, .. }]),
                "{out:?}"
            );
        }
    }

    #[test]
    fn full_inventory_replaces_and_dropped_removes() {
        let mut s = Swarm::new();
        let a = peer(1);
        s.join(a.clone(), PeerKind::Native, 0);
        let m = manifest(2, 3);
        s.handle(&a, ClientMsg::Have { chunks: m.chunks.clone(), full: true }, 0);
        s.handle(&a, ClientMsg::Have { chunks: vec![m.chunks[0]], full: true }, 0);
        assert_eq!(s.holder_count(&m.chunks[1]), 0);
        s.handle(&a, ClientMsg::Dropped { chunks: vec![m.chunks[0]] }, 0);
        assert_eq!(s.holder_count(&m.chunks[0]), 0);
    }

    #[test]
    fn bad_input_gets_errors_and_changes_nothing() {
        let mut s = Swarm::new();
        let a = peer(1);
        let stranger = peer(9);
        let out = s.handle(&stranger, ClientMsg::Heartbeat, 0);
        assert!(matches!(&out[0], Output::Send { msg: ServerMsg::Error { code: ErrorCode::NotWelcomed, .. }, .. }));
        s.join(a.clone(), PeerKind::Native, 0);
        let mut m = manifest(3, 2);
        m.size += 100;
        let out = publish(&mut s, &a, &m, "x");
        assert!(matches!(&out[0], Output::Send { msg: ServerMsg::Error { code: ErrorCode::BadManifest, .. }, .. }));
        let out = publish(&mut s, &a, &manifest(3, 2), "bad\u{7}name");
        assert!(matches!(&out[0], Output::Send { msg: ServerMsg::Error { code: ErrorCode::BadName, .. }, .. }));
        assert_eq!(s.files().count(), 0);
        let out = s.handle(&a, ClientMsg::Locate { req: 3, file: FileId([0; 32]) }, 0);
        assert!(matches!(
            &out[0],
            Output::Send { msg: ServerMsg::Error { req: Some(3), code: ErrorCode::UnknownFile, .. }, .. }
        ));
        let sig = ClientMsg::Signal { to: stranger.clone(), conn: 1, signal: Signal::Close { reason: "x".into() } };
        let out = s.handle(&a, sig, 0);
        assert!(matches!(&out[0], Output::Send { msg: ServerMsg::Error { code: ErrorCode::UnknownPeer, .. }, .. }));
        assert_eq!(out.len(), 1, "a close to nobody gets no answer but the error");
        // An offer to a peer that is not connected ends the attempt at once.
        let out = s.handle(
            &a,
            ClientMsg::Signal { to: stranger.clone(), conn: 2, signal: Signal::Offer { sdp: "v=0".into() } },
            0,
        );
        assert!(matches!(&out[0], Output::Send { msg: ServerMsg::Error { code: ErrorCode::UnknownPeer, .. }, .. }));
        assert_eq!(
            out[1],
            Output::Send {
                to: a.clone(),
                msg: ServerMsg::Signal { from: stranger.clone(), conn: 2, signal: Signal::Gone }
            }
        );
        assert_eq!(s.stats.signals_relayed, 0);
    }

    #[test]
    fn without_verification_a_bad_source_needs_two_reporters_to_lose_its_claim() {
        let mut s = testkit::trusting_swarm();
        let (liar, a, b) = (peer(1), peer(2), peer(3));
        for p in [&liar, &a, &b] {
            s.join(p.clone(), PeerKind::Native, 0);
        }
        let m = manifest(7, 1);
        s.handle(&liar, ClientMsg::Have { chunks: m.chunks.clone(), full: true }, 0);
        let report = ClientMsg::BadSource { peer: liar.clone(), chunk: m.chunks[0] };
        s.handle(&a, report.clone(), 0);
        s.handle(&a, report.clone(), 0);
        assert_eq!(s.holder_count(&m.chunks[0]), 1, "one reporter, however often, is not enough");
        s.handle(&b, report, 0);
        assert_eq!(s.holder_count(&m.chunks[0]), 0, "two reporters withdraw the claim");
    }

    #[test]
    fn signals_are_relayed_with_the_true_sender() {
        let mut s = Swarm::new();
        let (a, b) = (peer(1), peer(2));
        s.join(a.clone(), PeerKind::Native, 0);
        s.join(b.clone(), PeerKind::Browser, 0);
        let out =
            s.handle(&a, ClientMsg::Signal { to: b.clone(), conn: 4, signal: Signal::Offer { sdp: "v=0".into() } }, 0);
        assert_eq!(
            out,
            vec![Output::Send {
                to: b,
                msg: ServerMsg::Signal { from: a, conn: 4, signal: Signal::Offer { sdp: "v=0".into() } }
            }]
        );
    }

    #[test]
    fn search_ranks_by_name_match() {
        let mut s = Swarm::new();
        let a = peer(1);
        s.join(a.clone(), PeerKind::Native, 0);
        for (i, name) in ["my cat.png", "cat", "catalog.pdf", "bobcat.jpg", "dog.png"].iter().enumerate() {
            let m = manifest(i as u8, 1);
            s.handle(&a, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0);
            publish(&mut s, &a, &m, name);
        }
        let names: Vec<String> = s.search("CAT", 10).into_iter().map(|f| f.name).collect();
        assert_eq!(names, vec!["cat", "catalog.pdf", "my cat.png", "bobcat.jpg"]);
        assert_eq!(s.search("", 2).len(), 2);
        assert!(s.search("zebra", 10).is_empty());
    }
}
