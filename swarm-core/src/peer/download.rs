//! One download state machine, sans-IO, for every way a peer fetches chunks: a user's
//! download, a gateway read, a replication order.
//!
//! [`Download`] takes the tracker's `Located` answer (never trusted: checked against the file
//! id) and decides which sources to connect to, which chunk to request from which source, and
//! what to do with every answer. Inputs are "source ready", "source gone", answers and the
//! time; outputs are [`Step`]s. Chunks are spread over the sources that hold them (rarest
//! first, at most [`PIPELINE`] requests outstanding per source) and reassembled in a
//! [`ChunkBuf`] (in the page: JS memory, so payloads never cross into wasm). A whole chunk goes
//! out as [`Step::Verify`]; the driver hashes it (off the event loop) and reports back through
//! [`Download::verified`]. A bad or missing chunk is retried, preferring another holder; a
//! source that stops answering is dropped after [`STALL_MS`] (time comes in through `tick`).
//!
//! Sharing out ([`Endgame::Late`], the default; not while a player plays): a source whose
//! rate is not known yet is asked one chunk at a time (a probe, so a slow source never holds a
//! deep queue that the end of the download would wait for). A measured source is asked a
//! chunk only while it would deliver it (after what it has queued) within [`ETA_SLACK`] times
//! as soon as the best holder would (sources being probed reckoned at [`PROBE_RATE`]), or
//! within [`WORK_SHARE`] of the time the sources need for the rest of the file anyway: a slow
//! source works through the bulk of a download and stops in time for its end. A new source is
//! probed only while the others have at least [`PROBE_MS`] of work left, or none answers
//! within that time, or no holder of the chunk is reckoned to send at all (the sources
//! measured may not hold it): a small file is asked of one or two sources, not of every one
//! (a probe of a slow source is what its end would wait for), and a chunk that only sources
//! not asked yet hold is still asked. Rates leave out the round trip: a chunk asked of an idle
//! source is timed from its first frame. A source silent for [`SILENT_MS`] with requests
//! outstanding is reckoned at no rate and asked nothing more (it is dropped after
//! [`STALL_MS`]).
//!
//! Never waiting on nothing: these rules decide by time as well as by answers (a probe grows
//! old, a source goes silent, a `busy` wait ends), so every [`Download::tick`] applies them
//! again; and while nothing at all is outstanding, a needed chunk with a ready holder is asked
//! of it at once, rules or not (no answer is coming to ask it later). Before, a download whose
//! measured source held none of what was left never asked the source that did, and waited for
//! ever (a `pp-peer get` in `e2e/tests/cluster.rs`); `swarm-core/tests/download_liveness.rs`
//! checks after every input, against sources that stop, open late, answer `busy`, lose
//! requests or go, that something is outstanding whenever a ready holder could send a needed
//! chunk.
//!
//! Endgame: once every missing chunk is requested, a ready source with nothing outstanding
//! (it has sent its share) takes over requests still waiting elsewhere, newest first, where it
//! is expected to deliver sooner:
//! - a request queued so deep at its source that the source cannot have begun to read it
//!   ([`committed`] bytes ahead of it: what an honest holder may have read ahead of its
//!   writer, see [`super::serve`]) *moves*: it is cancelled there ([`Step::Cancel`], the
//!   chunk protocol's `cancel`) and asked of the idle source; no byte is sent twice;
//! - a request its source may already be sending is *copied* (at most [`ENDGAME_COPIES`]
//!   askers per chunk) only when it is late: expected more than [`LATE_FACTOR`] times later
//!   than the idle source would deliver it, at the rates measured, and only while the copies
//!   made so far, each counted whole, stay within [`DUP_BUDGET_PERMILLE`] of the file's bytes;
//!   or when its source has sent nothing for [`SILENT_MS`] (a stalled source holds nothing
//!   back).
//!
//! The first copy of a chunk to arrive whole wins and the others are cancelled at once, as
//! are the others of a copy whose first bytes arrive while theirs have not begun. Bytes a
//! source had already handed to its transport still come (the protocol cannot stop them):
//! that is what the budget bounds. [`Endgame::Eager`] is the policy before issue 23 (every
//! source's pipeline filled, idle sources copying the newest requests elsewhere, no cancel),
//! kept as the same-run baseline of `swarm-core/tests/endgame.rs`; a chunk id repeated in a
//! file is fetched once.
//!
//! Playback: a download may be told where a player's playhead is ([`Download::set_playhead`]).
//! The [`PLAYHEAD_WINDOW`] chunks from there on are then asked first, in file order, ahead of
//! rarest-first for the rest. The chunk under the playhead may take a request beyond its
//! source's pipeline (so a seek is asked at once, not after a slot frees). Every other request
//! keeps to a shallower queue while a playhead is set: at most what the source delivers in
//! [`PLAYING_QUEUE_MS`] at the rate measured from its last chunks (the chunk protocol has no
//! cancel and a source answers in order, so a seek waits behind whatever is queued there; with
//! the window going beyond the pipeline a seek through a 1 MiB/s relay waited 1–2 s behind the
//! old window, measured in `e2e/tests/browser_stream.rs`). Until a source's rate is known it
//! gets 2. A chunk under the playhead that was asked before the seek and waits behind others
//! at its source is asked of a holder with a shorter queue too (the first verified copy wins,
//! as in the endgame). Moving the playhead re-schedules at once; a seek also cancels what is
//! queued at sources outside the new window ([`Step::Cancel`], the chunk protocol's `cancel`).
//!
//! Request numbers in [`Step::Request`] are the download's own; the peer core
//! ([`super::Peer`]) maps them onto the numbers of the link they travel on.

use super::config::{
    BUSY_BACKOFF_MS, DUP_BUDGET_PERMILLE, ENDGAME_COPIES, ETA_SLACK, LATE_FACTOR, MAX_ATTEMPTS, MAX_SOURCES, PIPELINE,
    PLAYHEAD_WINDOW, PLAYING_QUEUE_MS, PROBE_MS, PROBE_RATE, READS_PER_ROUTE, SEND_WINDOW, SILENT_MS, STALL_MS,
    WORK_SHARE,
};
use crate::chunk_proto::{PeerMsg, ProtoError};
use crate::content::ContentError;
use crate::{ChunkId, FileId, Manifest, PeerId};
use std::collections::{HashMap, HashSet};
use thiserror::Error;

/// A chunk as the page's chunk map shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellState {
    /// Not requested yet.
    Needed,
    /// Requested from this slot.
    InFlight(usize),
    /// Stored; `Some(slot)` delivered it, `None`: it was stored here already.
    Done(Option<usize>),
}

/// How a download shares chunks out and asks again for chunks a source is slow to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endgame {
    /// Nothing is ever asked of two sources (a single-chunk replication order).
    Off,
    /// Probes, shares by expected delivery time, moves queued requests and copies only late
    /// ones within a budget, cancels the losers (see the module documentation).
    #[default]
    Late,
    /// Before issue 23: pipelines filled regardless of rate, idle sources copy what is in
    /// flight elsewhere, nothing cancelled. The same-run baseline of the benchmarks.
    Eager,
}

/// Bytes ahead of a request at its source past which the source cannot have begun to read
/// it: its send window and the reads it may have in progress, for chunks of `chunk_size`.
pub fn committed(chunk_size: u32) -> u64 {
    SEND_WINDOW + (READS_PER_ROUTE as u64 + 1) * chunk_size as u64
}

/// Why a download cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DownloadError {
    #[error("the tracker sent the manifest of another file ({actual}, expected {expected})")]
    WrongManifest { expected: FileId, actual: FileId },
    #[error(transparent)]
    BadManifest(#[from] ContentError),
    #[error("the holder list has {got} entries for {expected} chunks")]
    BadHolders { expected: usize, got: usize },
    #[error("chunk {index} is not held by any reachable peer")]
    Unavailable { index: usize },
    #[error("chunk {index} failed verification {attempts} times")]
    TooManyFailures { index: usize, attempts: u32 },
    #[error("cannot store chunk {index}: {reason}")]
    Store { index: usize, reason: String },
}

/// Where one chunk's frames are put back together.
pub trait ChunkBuf: Sized {
    /// One frame's payload.
    type Part;
    /// A buffer for a chunk of `len` bytes.
    fn with_len(len: usize) -> Self;
    /// Bytes in one payload.
    fn part_len(part: &Self::Part) -> usize;
    /// Copies `part` in at `offset` (the download has checked that it fits).
    fn write(&mut self, offset: usize, part: &Self::Part);
}

/// Chunks in the wasm heap (tests, and anywhere bytes are at hand anyway).
impl ChunkBuf for Vec<u8> {
    type Part = Vec<u8>;
    fn with_len(len: usize) -> Self {
        vec![0; len]
    }
    fn part_len(part: &Vec<u8>) -> usize {
        part.len()
    }
    fn write(&mut self, offset: usize, part: &Vec<u8>) {
        self[offset..offset + part.len()].copy_from_slice(part);
    }
}

/// A holder's answer to a request, its payload left wherever it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<P> {
    Data {
        req: u32,
        offset: u32,
        total: u32,
        part: P,
    },
    Missing {
        req: u32,
    },
    /// The holder will not read the chunk now (its send queues are full): not a verdict on
    /// holding; asked again after [`BUSY_BACKOFF_MS`], preferring another holder.
    Busy {
        req: u32,
    },
}

impl Answer<Vec<u8>> {
    /// The answer a decoded message carries (`None` for a request).
    pub fn from_msg(msg: PeerMsg) -> Option<Self> {
        match msg {
            PeerMsg::Data { req, offset, total, bytes } => Some(Answer::Data { req, offset, total, part: bytes }),
            PeerMsg::Missing { req } => Some(Answer::Missing { req }),
            PeerMsg::Busy { req } => Some(Answer::Busy { req }),
            PeerMsg::Request { .. } | PeerMsg::Cancel { .. } => None,
        }
    }
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<B = Vec<u8>> {
    /// Open a connection to peer `slot` (an index into the `Located` peer list).
    Connect { slot: usize },
    /// Close the connection to `slot`: it stalled (its requests went elsewhere).
    Disconnect { slot: usize },
    /// Ask peer `slot` for `chunk` under this download's request number `req`.
    Request { slot: usize, req: u32, chunk: ChunkId },
    /// Chunk `index` arrived whole from `slot`: check that its SHA-256 is `chunk` (and keep
    /// it if so), then call [`Download::verified`] with these bytes back.
    Verify { slot: usize, index: usize, chunk: ChunkId, bytes: B },
    /// A verified chunk, kept: announce it. (For a gateway read: hand its bytes out.)
    Stored { index: usize, chunk: ChunkId, bytes: B },
    /// A peer sent something wrong; the chunk will be retried (for logs).
    Rejected { slot: usize, index: usize, reason: String },
    /// The bytes `slot` sent did not hash to `chunk`: tell the tracker (`bad_source`).
    BadSource { slot: usize, chunk: ChunkId },
    /// Every chunk is stored.
    Complete,
    /// The download cannot finish.
    Failed(DownloadError),
    /// Tell `slot` these requests are no longer wanted (a seek moved them out of the way).
    Cancel { slot: usize, reqs: Vec<u32> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Unused,
    Connecting,
    Ready,
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Needed {
        attempts: u32,
        avoid: Option<usize>,
    },
    InFlight,
    /// Whole, its hash being checked; `slot` delivered it.
    Verifying {
        attempts: u32,
        slot: usize,
    },
    Done,
}

#[derive(Debug)]
struct Pending<B> {
    index: usize,
    attempts: u32,
    /// Allocated with the first frame.
    buf: Option<B>,
    received: usize,
    /// When it was sent (the download's clock).
    asked_at: u64,
    /// When its first frame came, and that frame's length.
    first: Option<(u64, usize)>,
}

/// One file being fetched from the swarm; `B` is where chunks are reassembled.
#[derive(Debug)]
pub struct Download<B: ChunkBuf = Vec<u8>> {
    file: FileId,
    manifest: Manifest,
    peers: Vec<PeerId>,
    slots: Vec<SlotState>,
    outstanding: Vec<usize>,
    /// Per slot: most requests outstanding at once (fewer through the relay).
    pipeline: Vec<usize>,
    /// Per chunk: the slots that (still) claim to hold it.
    holders: Vec<Vec<usize>>,
    state: Vec<ChunkState>,
    /// Chunk indices, rarest first.
    order: Vec<usize>,
    pending: HashMap<(usize, u32), Pending<B>>,
    next_req: u32,
    done: usize,
    bytes_done: u64,
    finished: bool,
    /// The time of the last [`Download::tick`] (ms); stamps below use it.
    clock: u64,
    /// Per slot: when it last sent something or got its first outstanding request.
    last_heard: Vec<u64>,
    /// Per chunk: the slot that delivered it.
    source: Vec<Option<usize>>,
    /// Per slot: bytes of verified chunks it delivered.
    delivered: Vec<u64>,
    /// Per slot: the rate it delivers whole chunks at (bytes per ms, smoothed; 0: not known).
    rate: Vec<f64>,
    /// Per slot: when its last whole chunk arrived.
    last_delivery: Vec<u64>,
    /// Per slot: asked nothing before this time (it answered `busy`; 0: not busy).
    busy_until: Vec<u64>,
    max_peers: usize,
    endgame: Endgame,
    /// Bytes of the copies made of requests their source may already be sending.
    dup_bytes: u64,
    /// A needed chunk with no live holder waits (others go on) instead of failing at once.
    wait_for_holders: bool,
    /// The chunk under a player's playhead: it and the next [`PLAYHEAD_WINDOW`] - 1 go first.
    playhead: Option<usize>,
}

impl<B: ChunkBuf> Download<B> {
    /// Checks the tracker's answer (never trusted) and prepares the download. `have` says which
    /// chunks this peer already stores; `me` is left out of the peers to connect to.
    pub fn new(
        file: FileId,
        manifest: Manifest,
        peers: Vec<PeerId>,
        holders: Vec<Vec<u32>>,
        me: Option<&PeerId>,
        have: impl Fn(&ChunkId) -> bool,
    ) -> Result<Self, DownloadError> {
        let actual = manifest.file_id();
        if actual != file {
            return Err(DownloadError::WrongManifest { expected: file, actual });
        }
        manifest.validate()?;
        let n = manifest.chunks.len();
        if holders.len() != n {
            return Err(DownloadError::BadHolders { expected: n, got: holders.len() });
        }
        let slots: Vec<SlotState> =
            peers.iter().map(|p| if Some(p) == me { SlotState::Gone } else { SlotState::Unused }).collect();
        let holders: Vec<Vec<usize>> = holders
            .into_iter()
            .map(|h| {
                let mut h: Vec<usize> = h
                    .into_iter()
                    .map(|i| i as usize)
                    .filter(|&i| i < peers.len() && slots[i] != SlotState::Gone)
                    .collect();
                h.sort_unstable();
                h.dedup();
                h
            })
            .collect();
        let mut done = 0;
        let mut bytes_done = 0;
        let state = (0..n)
            .map(|i| {
                if have(&manifest.chunks[i]) {
                    done += 1;
                    bytes_done += manifest.chunk_len(i) as u64;
                    ChunkState::Done
                } else {
                    ChunkState::Needed { attempts: 0, avoid: None }
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| holders[i].len());
        Ok(Self {
            file,
            manifest,
            outstanding: vec![0; peers.len()],
            pipeline: vec![PIPELINE; peers.len()],
            last_heard: vec![0; peers.len()],
            clock: 0,
            peers,
            slots,
            holders,
            state,
            order,
            pending: HashMap::new(),
            next_req: 1,
            done,
            bytes_done,
            finished: false,
            source: vec![None; n],
            delivered: Vec::new(),
            rate: Vec::new(),
            last_delivery: Vec::new(),
            busy_until: Vec::new(),
            max_peers: MAX_SOURCES,
            endgame: Endgame::Late,
            dup_bytes: 0,
            wait_for_holders: false,
            playhead: None,
        }
        .with_delivered())
    }

    fn with_delivered(mut self) -> Self {
        self.delivered = vec![0; self.peers.len()];
        self.rate = vec![0.0; self.peers.len()];
        self.last_delivery = vec![0; self.peers.len()];
        self.busy_until = vec![0; self.peers.len()];
        self
    }

    /// Connect to at most `n` peers at first (a replication order needs one source).
    pub fn set_max_peers(&mut self, n: usize) {
        self.max_peers = n.max(1);
    }

    /// Turns the endgame off (a single-chunk order must not fetch its chunk twice), or back on.
    pub fn set_endgame(&mut self, on: bool) {
        self.endgame = if on { Endgame::Late } else { Endgame::Off };
    }

    /// Chooses how chunks are shared out and asked again ([`Endgame`]).
    pub fn set_endgame_mode(&mut self, mode: Endgame) {
        self.endgame = mode;
    }

    /// A chunk no live peer holds does not end the download while other chunks can still be
    /// fetched: it fails (with [`DownloadError::Unavailable`]) only once nothing else is left
    /// to do, so a retry after re-locating has less to fetch.
    pub fn set_wait_for_holders(&mut self, on: bool) {
        self.wait_for_holders = on;
    }

    /// At most `n` requests outstanding to `slot` from now on (the relay is slower and its
    /// requests cannot move to a data channel that opens later, so it gets fewer).
    pub fn set_pipeline(&mut self, slot: usize, n: usize) {
        if let Some(p) = self.pipeline.get_mut(slot) {
            *p = n.max(1);
        }
    }

    /// A player reads from chunk `index` on (`None`: nobody plays; back to rarest first):
    /// the window from there is asked first, in order. Returns the requests this makes at once.
    ///
    /// A seek (a first playhead, or one outside the previous window) cancels the requests
    /// queued at sources for chunks outside the new window whose answer has not begun
    /// ([`Step::Cancel`]): they are asked again later, and the window's chunks no longer wait
    /// behind them. Moving along within the window cancels nothing.
    pub fn set_playhead(&mut self, index: Option<usize>) -> Vec<Step<B>> {
        let index = index.map(|i| i.min(self.total().saturating_sub(1)));
        if index == self.playhead {
            return Vec::new();
        }
        let seek = match (self.playhead, index) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(old), Some(new)) => new < old || new >= old + PLAYHEAD_WINDOW,
        };
        self.playhead = index;
        let mut steps = if seek { self.cancel_outside_window() } else { Vec::new() };
        steps.extend(self.schedule());
        steps
    }

    /// Withdraws the requests for chunks outside the playhead window that no byte of has come.
    fn cancel_outside_window(&mut self) -> Vec<Step<B>> {
        let window = self.window();
        let mut gone: Vec<(usize, u32)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.received == 0 && !window.contains(&p.index))
            .map(|(k, _)| *k)
            .collect();
        gone.sort_unstable();
        let mut by_slot: Vec<(usize, Vec<u32>)> = Vec::new();
        for (slot, req) in gone {
            let p = self.pending.remove(&(slot, req)).expect("listed");
            self.outstanding[slot] -= 1;
            self.requeue(p.index, p.attempts, None);
            match by_slot.last_mut() {
                Some((s, reqs)) if *s == slot => reqs.push(req),
                _ => by_slot.push((slot, vec![req])),
            }
        }
        by_slot.into_iter().map(|(slot, reqs)| Step::Cancel { slot, reqs }).collect()
    }

    /// The chunk under the playhead, if a player set one.
    pub fn playhead(&self) -> Option<usize> {
        self.playhead
    }

    /// The chunks of the playhead window, in file order (empty without a playhead).
    fn window(&self) -> std::ops::Range<usize> {
        match self.playhead {
            Some(p) => p..(p + PLAYHEAD_WINDOW).min(self.total()),
            None => 0..0,
        }
    }

    /// Whether chunk `index` is stored.
    pub fn is_done(&self, index: usize) -> bool {
        self.state.get(index) == Some(&ChunkState::Done)
    }

    /// Live sources known to hold chunk `index`.
    pub fn holders_of(&self, index: usize) -> usize {
        self.holders[index].iter().filter(|&&s| self.slots[s] != SlotState::Gone).count()
    }

    /// The slot that delivered chunk `index`, once stored.
    pub fn source_of(&self, index: usize) -> Option<usize> {
        self.source.get(index).copied().flatten()
    }

    /// Whether request `req` to `slot` is still awaiting its answer.
    pub fn is_pending(&self, slot: usize, req: u32) -> bool {
        self.pending.contains_key(&(slot, req))
    }

    /// Every chunk's state, for the page's chunk map.
    pub fn cells(&self) -> Vec<CellState> {
        let mut cells: Vec<CellState> = (0..self.total())
            .map(|i| match self.state[i] {
                ChunkState::Done => CellState::Done(self.source[i]),
                ChunkState::Verifying { slot, .. } => CellState::InFlight(slot),
                _ => CellState::Needed,
            })
            .collect();
        for ((slot, _), p) in &self.pending {
            if cells[p.index] == CellState::Needed {
                cells[p.index] = CellState::InFlight(*slot);
            }
        }
        cells
    }

    /// Bytes each slot delivered (verified).
    pub fn delivered(&self) -> &[u64] {
        &self.delivered
    }

    /// The peers of this download, by slot.
    pub fn peers(&self) -> &[PeerId] {
        &self.peers
    }

    pub fn file(&self) -> FileId {
        self.file
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn peer(&self, slot: usize) -> &PeerId {
        &self.peers[slot]
    }
    /// Chunks stored so far.
    pub fn done(&self) -> usize {
        self.done
    }
    /// Bytes of the file stored so far.
    pub fn bytes_done(&self) -> u64 {
        self.bytes_done
    }
    pub fn total(&self) -> usize {
        self.manifest.chunks.len()
    }
    pub fn is_complete(&self) -> bool {
        self.done == self.total()
    }
    /// Peers connected or being connected.
    pub fn active_peers(&self) -> usize {
        self.slots.iter().filter(|s| matches!(s, SlotState::Connecting | SlotState::Ready)).count()
    }

    /// First steps: connect to up to [`MAX_SOURCES`] holders, chosen so that together they hold
    /// as many needed chunks as possible, then the ones holding the most.
    pub fn start(&mut self) -> Vec<Step<B>> {
        let needed: Vec<usize> = (0..self.total()).filter(|&i| self.is_needed(i)).collect();
        let mut chosen: Vec<usize> = Vec::new();
        let mut uncovered = needed.clone();
        while chosen.len() < self.max_peers {
            let mut count = vec![0usize; self.peers.len()];
            for &i in &uncovered {
                for &s in &self.holders[i] {
                    count[s] += 1;
                }
            }
            let best = (0..self.peers.len())
                .filter(|s| !chosen.contains(s) && self.slots[*s] == SlotState::Unused)
                .max_by_key(|&s| (count[s], std::cmp::Reverse(s)));
            match best {
                Some(s) if count[s] > 0 => {
                    chosen.push(s);
                    uncovered.retain(|i| !self.holders[*i].contains(&s));
                }
                _ => {
                    if uncovered.is_empty() {
                        // Everything is covered: add more holders for speed.
                        uncovered = needed.clone();
                        uncovered.retain(|i| self.holders[*i].iter().any(|s| !chosen.contains(s)));
                        if uncovered.is_empty() {
                            break;
                        }
                        continue;
                    }
                    break;
                }
            }
        }
        let mut steps: Vec<Step<B>> = chosen
            .into_iter()
            .map(|slot| {
                self.slots[slot] = SlotState::Connecting;
                Step::Connect { slot }
            })
            .collect();
        steps.extend(self.schedule());
        steps
    }

    /// The data channel to `slot` is open.
    pub fn peer_ready(&mut self, slot: usize) -> Vec<Step<B>> {
        if slot < self.slots.len() && self.slots[slot] != SlotState::Gone {
            self.slots[slot] = SlotState::Ready;
        }
        self.schedule()
    }

    /// The connection to `slot` failed or closed: its requests go elsewhere.
    pub fn peer_gone(&mut self, slot: usize) -> Vec<Step<B>> {
        if slot >= self.slots.len() {
            return Vec::new();
        }
        self.slots[slot] = SlotState::Gone;
        let lost: Vec<(usize, u32)> = self.pending.keys().filter(|k| k.0 == slot).copied().collect();
        for key in lost {
            let p = self.pending.remove(&key).expect("key listed");
            self.requeue(p.index, p.attempts, None);
        }
        self.outstanding[slot] = 0;
        self.schedule()
    }

    /// Moves the download's clock to `now` (ms) without the stall check of [`Download::tick`]:
    /// drivers call it before each answer, so delivery rates are measured to the millisecond.
    pub fn advance(&mut self, now: u64) {
        self.clock = self.clock.max(now);
    }

    /// The rate `slot` delivers whole chunks at, in bytes per second (0 until it sent one).
    pub fn rate_of(&self, slot: usize) -> u64 {
        self.rate.get(slot).map_or(0, |r| (r * 1000.0) as u64)
    }

    /// Records a whole chunk of `len` bytes from `slot`, asked at `asked_at`: the time since
    /// the slot's previous chunk (or since the request, if the slot was idle) is what this one
    /// took on the wire. Smoothed with half weight on the new sample: a source's first chunks
    /// often come in a burst (the tracker's relay lets 1 MiB through at once), and the rate
    /// after it should count within a few chunks.
    ///
    /// [`Endgame::Late`] leaves the round trip out of a chunk asked of an idle slot: the bytes
    /// after its first frame over the time since that frame (a rate that counts the round trip
    /// made a source of a 30 ms link look three times slower than it is, and kept it idle).
    fn measure(&mut self, slot: usize, len: usize, asked_at: u64, first: Option<(u64, usize)>) {
        let since = self.last_delivery[slot].max(asked_at);
        let idle_start = asked_at >= self.last_delivery[slot];
        let sample = match first {
            Some((at, n)) if self.endgame == Endgame::Late && idle_start && n < len && self.clock > at => {
                (len - n) as f64 / (self.clock - at) as f64
            }
            _ => len as f64 / self.clock.saturating_sub(since).max(1) as f64,
        };
        let r = &mut self.rate[slot];
        *r = if *r == 0.0 { sample } else { 0.5 * (*r + sample) };
        self.last_delivery[slot] = self.clock;
    }

    /// How long `slot` takes to send what it was asked plus `more` chunks, at its measured
    /// rate (infinite while the rate is not known).
    fn queue_ms(&self, slot: usize, more: usize) -> f64 {
        let r = self.rate[slot];
        if r <= 0.0 {
            return f64::INFINITY;
        }
        (self.outstanding[slot] + more) as f64 * self.manifest.chunk_size as f64 / r
    }

    /// Requests `slot` may have outstanding while a player plays: what it delivers in
    /// [`PLAYING_QUEUE_MS`], at least 1, at most its pipeline; 2 until its rate is known (a
    /// fast source is measured after its first chunk, a slow one is not given a deep queue).
    fn playing_depth(&self, slot: usize) -> usize {
        let r = self.rate[slot];
        if r <= 0.0 {
            return self.pipeline[slot].min(2);
        }
        let chunks = r * PLAYING_QUEUE_MS as f64 / self.manifest.chunk_size.max(1) as f64;
        (chunks as usize).clamp(1, self.pipeline[slot])
    }

    /// The driver's clock (ms), called about once a second: drops peers that stalled, asks
    /// sources whose `busy` wait is over again, and ([`Endgame::Late`]) applies the sharing
    /// rules again, which also go by time.
    pub fn tick(&mut self, now: u64) -> Vec<Step<B>> {
        self.clock = now;
        let mut steps = Vec::new();
        for slot in 0..self.slots.len() {
            let stalled = self.slots[slot] == SlotState::Ready
                && self.outstanding[slot] > 0
                && now.saturating_sub(self.last_heard[slot]) > STALL_MS;
            if stalled && !self.finished {
                steps.push(Step::Disconnect { slot });
                steps.extend(self.peer_gone(slot));
            }
        }
        // [`Endgame::Late`] decides by time as well as by answers (a probe grows old, a source
        // goes silent, a `busy` wait ends): every tick looks again, so a decision to wait is
        // never final. (Waiting only for answers, a download whose sources all had nothing
        // outstanding waited for ever.)
        let rested = self.busy_until.iter().any(|&t| t != 0 && t <= now);
        self.busy_until.iter_mut().filter(|t| **t <= now).for_each(|t| *t = 0);
        if (rested || self.endgame == Endgame::Late) && !self.finished {
            steps.extend(self.schedule());
        }
        steps
    }

    /// Whether `slot` answered `busy` and is left alone for now.
    fn resting(&self, slot: usize) -> bool {
        self.busy_until[slot] > self.clock
    }

    /// Whether `slot` has requests outstanding and sent nothing for [`SILENT_MS`].
    fn silent(&self, slot: usize) -> bool {
        self.outstanding[slot] > 0 && self.clock.saturating_sub(self.last_heard[slot]) >= SILENT_MS
    }

    /// An answer from `slot` to one of its requests.
    pub fn on_answer(&mut self, slot: usize, answer: Answer<B::Part>) -> Vec<Step<B>> {
        let mut steps = Vec::new();
        if self.finished {
            return steps; // late answers (e.g. the slower copy of an endgame request)
        }
        if slot < self.last_heard.len() {
            self.last_heard[slot] = self.clock;
        }
        match answer {
            Answer::Data { req, offset, total, part } => {
                let Some(p) = self.pending.get_mut(&(slot, req)) else {
                    return steps; // the rest of a refused answer, or a stray frame
                };
                let expected = self.manifest.chunk_len(p.index) as usize;
                let len = B::part_len(&part);
                let error = if total as usize != expected {
                    Some(ProtoError::SizeChanged)
                } else if offset as usize != p.received {
                    Some(ProtoError::OutOfOrder { expected: p.received as u32, got: offset })
                } else if p.received + len > expected {
                    Some(ProtoError::Overrun)
                } else {
                    p.buf.get_or_insert_with(|| B::with_len(expected)).write(p.received, &part);
                    if p.received == 0 {
                        p.first = Some((self.clock, len));
                    }
                    p.received += len;
                    None
                };
                let (index, first) = (p.index, p.received == len && len > 0);
                if let Some(e) = error {
                    let p = self.pending.remove(&(slot, req)).expect("present");
                    self.outstanding[slot] -= 1;
                    steps.push(Step::Rejected { slot, index: p.index, reason: e.to_string() });
                    if !self.retry(p.index, p.attempts + 1, slot, &mut steps) {
                        return steps;
                    }
                } else if p.received == expected {
                    let p = self.pending.remove(&(slot, req)).expect("present");
                    self.outstanding[slot] -= 1;
                    self.measure(slot, expected, p.asked_at, p.first);
                    steps.extend(self.cancel_copies(p.index, (slot, req), false));
                    if self.state[p.index] == ChunkState::InFlight {
                        self.state[p.index] = ChunkState::Verifying { attempts: p.attempts, slot };
                        let bytes = p.buf.unwrap_or_else(|| B::with_len(0));
                        steps.push(Step::Verify { slot, index: p.index, chunk: self.manifest.chunks[p.index], bytes });
                    } // else: the slower copy of an endgame duplicate
                } else {
                    if first {
                        // This copy has begun: the others that have not are withdrawn.
                        steps.extend(self.cancel_copies(index, (slot, req), true));
                    }
                    return steps;
                }
            }
            Answer::Missing { req } => {
                if let Some(p) = self.pending.remove(&(slot, req)) {
                    self.outstanding[slot] -= 1;
                    self.holders[p.index].retain(|&s| s != slot);
                    steps.push(Step::Rejected { slot, index: p.index, reason: "missing".into() });
                    self.requeue(p.index, p.attempts, Some(slot));
                }
            }
            Answer::Busy { req } => {
                // Not the chunk's fault nor a verdict on holding: no attempt counted, the
                // holder stays a holder, and rests a while.
                if let Some(p) = self.pending.remove(&(slot, req)) {
                    self.outstanding[slot] -= 1;
                    self.busy_until[slot] = self.clock + BUSY_BACKOFF_MS;
                    self.requeue(p.index, p.attempts, Some(slot));
                }
            }
        }
        steps.extend(self.schedule());
        steps
    }

    /// The driver hashed chunk `index` (see [`Step::Verify`]): `actual` is the SHA-256 of
    /// `bytes`. Stored if it is the manifest's, retried elsewhere if not.
    pub fn verified(&mut self, slot: usize, index: usize, bytes: B, actual: ChunkId) -> Vec<Step<B>> {
        let mut steps = Vec::new();
        let Some(&ChunkState::Verifying { attempts, slot: from }) = self.state.get(index) else {
            return steps;
        };
        if self.finished || from != slot {
            return steps;
        }
        let expected = self.manifest.chunks[index];
        if actual == expected {
            self.delivered[slot] += self.manifest.chunk_len(index) as u64;
            self.source[index] = Some(slot);
            steps.extend(self.store(index, bytes));
            steps.extend(self.schedule());
            return steps;
        }
        steps.push(Step::BadSource { slot, chunk: expected });
        let reason = ContentError::HashMismatch { expected, actual }.to_string();
        steps.push(Step::Rejected { slot, index, reason });
        // It would send the same bytes again: it no longer counts as a holder of this chunk
        // (as after `missing`), or two liars could pass the chunk between them until it fails.
        self.holders[index].retain(|&s| s != slot);
        self.state[index] = ChunkState::InFlight;
        if self.retry(index, attempts + 1, slot, &mut steps) {
            steps.extend(self.schedule());
        }
        steps
    }

    /// Chunk `index` from `slot` could not be checked here (a local failure, e.g. storage): it
    /// is fetched again, without blaming the source.
    pub fn unverified(&mut self, slot: usize, index: usize) -> Vec<Step<B>> {
        let mut steps = Vec::new();
        let Some(&ChunkState::Verifying { attempts, slot: from }) = self.state.get(index) else {
            return steps;
        };
        if self.finished || from != slot {
            return steps;
        }
        steps.push(Step::Rejected { slot, index, reason: "could not be checked and stored here".into() });
        self.state[index] = ChunkState::InFlight;
        if self.retry(index, attempts + 1, slot, &mut steps) {
            steps.extend(self.schedule());
        }
        steps
    }

    /// A request to `slot` went out on a path that failed before it was answered (the peer
    /// itself is still reachable another way): it is asked again, from anyone.
    pub fn request_lost(&mut self, slot: usize, req: u32) -> Vec<Step<B>> {
        if let Some(p) = self.pending.remove(&(slot, req)) {
            self.outstanding[slot] -= 1;
            self.requeue(p.index, p.attempts, None);
        }
        self.schedule()
    }

    /// Chunk `index` hashed right but could not be kept: the download cannot finish here.
    pub fn store_failed(&mut self, index: usize, reason: String) -> Vec<Step<B>> {
        if self.finished {
            return Vec::new();
        }
        vec![self.fail(DownloadError::Store { index, reason })]
    }

    /// Ends the download (the user cancelled it): nothing more is asked.
    pub fn cancel(&mut self) {
        self.finished = true;
    }

    /// Whether the download has ended (complete, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Requests outstanding (for tests and status).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Chunk `index` failed at `slot`: asks again elsewhere, or fails the download after
    /// [`MAX_ATTEMPTS`]. Returns whether the download goes on.
    fn retry(&mut self, index: usize, attempts: u32, slot: usize, steps: &mut Vec<Step<B>>) -> bool {
        if attempts >= MAX_ATTEMPTS {
            steps.push(self.fail(DownloadError::TooManyFailures { index, attempts }));
            return false;
        }
        self.requeue(index, attempts, Some(slot));
        true
    }

    fn is_needed(&self, index: usize) -> bool {
        matches!(self.state[index], ChunkState::Needed { .. })
    }

    /// A request for chunk `index` is over without bytes: unless another copy is on its way,
    /// the chunk is needed again.
    fn requeue(&mut self, index: usize, attempts: u32, avoid: Option<usize>) {
        let still_asked = self.pending.values().any(|p| p.index == index);
        if self.state[index] == ChunkState::InFlight && !still_asked {
            self.state[index] = ChunkState::Needed { attempts, avoid };
        }
    }

    fn fail(&mut self, e: DownloadError) -> Step<B> {
        self.finished = true;
        Step::Failed(e)
    }

    /// Marks every chunk with this id done (a file may repeat a chunk).
    fn store(&mut self, index: usize, bytes: B) -> Vec<Step<B>> {
        let id = self.manifest.chunks[index];
        let mut steps = Vec::new();
        for i in 0..self.total() {
            if self.manifest.chunks[i] == id && self.state[i] != ChunkState::Done {
                self.state[i] = ChunkState::Done;
                self.source[i] = self.source[index];
                self.done += 1;
                self.bytes_done += self.manifest.chunk_len(i) as u64;
            }
        }
        steps.push(Step::Stored { index, chunk: id, bytes });
        if self.is_complete() && !self.finished {
            self.finished = true;
            steps.push(Step::Complete);
        }
        steps
    }

    /// Sends requests wherever a ready holder has room; asks for new connections when a
    /// needed chunk has no live holder left.
    fn schedule(&mut self) -> Vec<Step<B>> {
        let mut steps = Vec::new();
        if self.finished {
            return steps;
        }
        if self.is_complete() {
            self.finished = true;
            steps.push(Step::Complete);
            return steps;
        }
        // Runs after every chunk: no allocation per needed chunk, set lookups for ids.
        let mut in_flight_ids: HashSet<ChunkId> =
            self.pending.values().map(|p| self.manifest.chunks[p.index]).collect();
        in_flight_ids.extend(
            (0..self.total())
                .filter(|&i| matches!(self.state[i], ChunkState::Verifying { .. }))
                .map(|i| self.manifest.chunks[i]),
        );
        let mut unheld: Option<usize> = None;
        // The playhead window first, in order; then everything, rarest first (the window's
        // chunks are requested by then, so they are skipped).
        let window = self.window();
        let playing = !window.is_empty();
        // Sharing by expected delivery time: bytes each slot still has to send (kept up to
        // date as requests are made below).
        let late = self.endgame == Endgame::Late && !playing;
        let mut queued = if late { self.queued_bytes() } else { Vec::new() };
        let mut needed: u64 = if late {
            (0..self.total()).filter(|&i| self.is_needed(i)).map(|i| self.manifest.chunk_len(i) as u64).sum()
        } else {
            0
        };
        for k in 0..window.len() + self.order.len() {
            let (index, in_window) = match k.checked_sub(window.len()) {
                None => (window.start + k, true),
                Some(k) => (self.order[k], false),
            };
            let ChunkState::Needed { attempts, avoid } = self.state[index] else {
                continue;
            };
            let id = self.manifest.chunks[index];
            if in_flight_ids.contains(&id) {
                continue; // the same bytes are already on their way for another index
            }
            let holders = &self.holders[index];
            let live = || holders.iter().copied().filter(|&s| self.slots[s] != SlotState::Gone);
            if live().next().is_none() {
                if self.wait_for_holders {
                    unheld.get_or_insert(index);
                    continue;
                }
                steps.push(self.fail(DownloadError::Unavailable { index }));
                return steps;
            }
            let several = live().nth(1).is_some();
            // The chunk under the playhead may go beyond the pipeline; while a player plays
            // the rest keep the queues short, so the next seek does not wait long.
            let under_playhead = in_window && index == window.start;
            let room = |s: usize| {
                if under_playhead {
                    self.pipeline[s] + PLAYHEAD_WINDOW
                } else if playing {
                    self.playing_depth(s)
                } else {
                    self.pipeline[s]
                }
            };
            let ready = live()
                .filter(|&s| self.slots[s] == SlotState::Ready && !self.resting(s) && self.outstanding[s] < room(s));
            let pick = if late {
                let len = self.manifest.chunk_len(index) as u64;
                let work_ms = self.work_ms(&queued, needed);
                self.pick_by_eta(live().collect(), &queued, len, avoid, work_ms).or_else(|| {
                    // Nothing at all on its way: no answer will come to ask it later, so
                    // it is asked now, of the ready holder expected to send it soonest.
                    if !self.pending.is_empty() {
                        return None;
                    }
                    let eta = |s: usize| {
                        let r = self.reckoned_rate(s);
                        if r > 0.0 {
                            (queued[s] + len) as f64 / r
                        } else {
                            f64::INFINITY
                        }
                    };
                    ready.min_by(|&a, &b| eta(a).total_cmp(&eta(b)))
                })
            } else if under_playhead {
                // The chunk a player waits for: the source expected to send it soonest.
                let avoided = |s: usize| Some(s) == avoid && several;
                ready.min_by(|&a, &b| {
                    avoided(a).cmp(&avoided(b)).then(self.queue_ms(a, 1).total_cmp(&self.queue_ms(b, 1)))
                })
            } else {
                ready.min_by_key(|&s| (Some(s) == avoid && several, self.outstanding[s]))
            };
            match pick {
                Some(slot) => {
                    self.state[index] = ChunkState::InFlight;
                    in_flight_ids.insert(id);
                    if late {
                        queued[slot] += self.manifest.chunk_len(index) as u64;
                        needed -= self.manifest.chunk_len(index) as u64;
                    }
                    self.request(slot, index, attempts, &mut steps);
                }
                None => {
                    // A holder that rests after `busy` does not keep another from being dialled.
                    let waiting = live().any(|s| match self.slots[s] {
                        SlotState::Connecting => true,
                        SlotState::Ready => !self.resting(s),
                        _ => false,
                    });
                    let unused = live().find(|&s| self.slots[s] == SlotState::Unused);
                    if let (false, Some(s)) = (waiting, unused) {
                        self.slots[s] = SlotState::Connecting;
                        steps.push(Step::Connect { slot: s });
                    }
                }
            }
        }
        if playing {
            self.hurry_playhead(window.start, &mut steps);
        }
        if !self.state.iter().any(|s| matches!(s, ChunkState::Needed { .. })) {
            match self.endgame {
                Endgame::Off => {}
                Endgame::Late => self.late_requests(&mut steps),
                Endgame::Eager => self.endgame_requests(&mut steps),
            }
        }
        if let Some(index) = unheld {
            let busy = !self.pending.is_empty()
                || self.state.iter().any(|s| matches!(s, ChunkState::Verifying { .. }))
                || steps.iter().any(|s| matches!(s, Step::Connect { .. }))
                || self.slots.contains(&SlotState::Connecting);
            if !busy {
                steps.push(self.fail(DownloadError::Unavailable { index }));
            }
        }
        steps
    }

    /// Asks `slot` for chunk `index` (a new request number, a fresh assembler).
    fn request(&mut self, slot: usize, index: usize, attempts: u32, steps: &mut Vec<Step<B>>) {
        let id = self.manifest.chunks[index];
        let req = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(1);
        self.pending.insert(
            (slot, req),
            Pending { index, attempts, buf: None, received: 0, asked_at: self.clock, first: None },
        );
        if self.outstanding[slot] == 0 {
            self.last_heard[slot] = self.clock;
        }
        self.outstanding[slot] += 1;
        steps.push(Step::Request { slot, req, chunk: id });
    }

    /// Per slot: bytes it still has to send for the requests outstanding there.
    fn queued_bytes(&self) -> Vec<u64> {
        let mut q = vec![0u64; self.slots.len()];
        for ((slot, _), p) in &self.pending {
            q[*slot] += (self.manifest.chunk_len(p.index) as usize).saturating_sub(p.received) as u64;
        }
        q
    }

    /// [`Endgame::Late`]'s choice among the live holders of a needed chunk of `len` bytes
    /// (`queued`: bytes each slot still has to send): the ready holder with room expected to
    /// deliver it soonest, if within [`ETA_SLACK`] of the best measured holder (room or not)
    /// or within [`WORK_SHARE`] of the time the measured sources need for the rest (`work_ms`);
    /// an unmeasured one (a probe, one request at a time) only while the measured sources have
    /// [`PROBE_MS`] of work left (`work_ms`), or none is measured.
    fn pick_by_eta(
        &self,
        holders: Vec<usize>,
        queued: &[u64],
        len: u64,
        avoid: Option<usize>,
        work_ms: f64,
    ) -> Option<usize> {
        // A silent source is not asked more (it is dropped after [`STALL_MS`]).
        let usable: Vec<usize> = holders
            .into_iter()
            .filter(|&s| self.slots[s] == SlotState::Ready && !self.resting(s) && !self.silent(s))
            .collect();
        let eta = |s: usize| {
            let r = self.rate[s];
            (r > 0.0).then(|| (queued[s] + len) as f64 / r)
        };
        // The best holder, counting the ones being probed at their reckoned rate (a slow
        // source measured first is not the best while faster ones may be on their way).
        let best =
            usable.iter().map(|&s| (queued[s] + len) as f64 / self.reckoned_rate(s)).fold(f64::INFINITY, f64::min);
        let several = usable.len() > 1;
        usable
            .iter()
            .copied()
            .filter(|&s| self.outstanding[s] < self.pipeline[s])
            .filter_map(|s| match eta(s) {
                // Useful if no later than the best measured holder (within a slack), or
                // before the measured sources would finish the rest anyway.
                Some(e) if e <= (best * ETA_SLACK).max(work_ms * WORK_SHARE) => Some((s, e)),
                Some(_) => None,
                // A probe: while the measured sources have work left, or when no holder of
                // this chunk is reckoned to send at all (those measured may not hold it).
                None if self.outstanding[s] == 0 && (work_ms >= PROBE_MS || best.is_infinite()) => Some((s, 0.0)),
                None => None,
            })
            .min_by(|a, b| {
                let avoided = |s: usize| Some(s) == avoid && several;
                avoided(a.0).cmp(&avoided(b.0)).then(a.1.total_cmp(&b.1))
            })
            .map(|(s, _)| s)
    }

    /// How long the ready sources take to send what is left of the file (`needed` bytes not
    /// asked yet and what they have queued): the measured ones at their rates, the ones being
    /// probed (asked less than [`PROBE_MS`] ago) at [`PROBE_RATE`] each (infinite if there are
    /// none: a probe that takes that long lets another source be tried). A slow source that
    /// happens to be measured first does not take the whole file while the others are probed.
    fn work_ms(&self, queued: &[u64], needed: u64) -> f64 {
        let mut rate = 0.0;
        let mut bytes = needed;
        for s in (0..self.slots.len()).filter(|&s| self.slots[s] == SlotState::Ready) {
            let r = self.reckoned_rate(s);
            if r > 0.0 {
                rate += r;
                bytes += queued[s];
            }
        }
        if rate <= 0.0 {
            return f64::INFINITY;
        }
        bytes as f64 / rate
    }

    /// The rate `slot` is reckoned to send at (bytes per ms): its measured rate; [`PROBE_RATE`]
    /// while its probe is younger than [`PROBE_MS`]; else 0.
    fn reckoned_rate(&self, slot: usize) -> f64 {
        if self.silent(slot) {
            return 0.0;
        }
        if self.rate[slot] > 0.0 {
            return self.rate[slot];
        }
        let mine = self.pending.iter().filter(|((s, _), _)| *s == slot);
        let young = mine.map(|(_, p)| p.asked_at).min().is_some_and(|t| self.clock < t + PROBE_MS as u64);
        if young {
            PROBE_RATE
        } else {
            0.0
        }
    }

    /// The rate `slot` sends at (bytes per ms): measured over whole chunks, else what its
    /// requests in progress got so far (0: nothing known).
    fn rate_now(&self, slot: usize) -> f64 {
        if self.rate[slot] > 0.0 {
            return self.rate[slot];
        }
        let mine = self.pending.iter().filter(|((s, _), _)| *s == slot).map(|(_, p)| p);
        let (got, since) = mine.fold((0usize, u64::MAX), |(g, t), p| (g + p.received, t.min(p.asked_at)));
        if got == 0 {
            return 0.0;
        }
        got as f64 / self.clock.saturating_sub(since).max(1) as f64
    }

    /// [`Endgame::Late`]'s endgame: idle ready sources take over requests waiting elsewhere,
    /// newest first: queued ones move (cancelled there), ones their source may be sending are
    /// copied only when late and within the budget, or when their source went silent.
    fn late_requests(&mut self, steps: &mut Vec<Step<B>>) {
        let idle = |d: &Self, s: usize| d.slots[s] == SlotState::Ready && !d.resting(s) && d.outstanding[s] == 0;
        if !(0..self.slots.len()).any(|s| idle(self, s)) {
            return;
        }
        // Per request: bytes its source has to send before it (a source answers in order).
        let mut by_slot: Vec<Vec<(u32, u64)>> = vec![Vec::new(); self.slots.len()];
        for ((slot, req), p) in &self.pending {
            let left = (self.manifest.chunk_len(p.index) as usize).saturating_sub(p.received) as u64;
            by_slot[*slot].push((*req, left));
        }
        let mut ahead: HashMap<(usize, u32), u64> = HashMap::new();
        for (slot, reqs) in by_slot.iter_mut().enumerate() {
            reqs.sort_unstable();
            let mut sum = 0;
            for &(req, left) in reqs.iter() {
                ahead.insert((slot, req), sum);
                sum += left;
            }
        }
        let mut inflight: Vec<(u32, usize)> = self.pending.keys().map(|(slot, req)| (*req, *slot)).collect();
        inflight.sort_unstable_by(|a, b| b.cmp(a));
        let budget = self.manifest.size * DUP_BUDGET_PERMILLE / 1000;
        let commit = committed(self.manifest.chunk_size);
        for (req, slot) in inflight {
            let Some(p) = self.pending.get(&(slot, req)) else { continue };
            let (index, received, attempts) = (p.index, p.received, p.attempts);
            if self.state[index] != ChunkState::InFlight {
                continue;
            }
            let asked = self.askers(index);
            if asked.len() >= ENDGAME_COPIES {
                continue;
            }
            let pick = self.holders[index]
                .iter()
                .copied()
                .filter(|&s| idle(self, s) && !asked.contains(&s))
                .max_by(|&a, &b| self.rate[a].total_cmp(&self.rate[b]));
            let Some(to) = pick else { continue };
            let len = self.manifest.chunk_len(index) as u64;
            let before = ahead.get(&(slot, req)).copied().unwrap_or(0);
            let silent = self.clock.saturating_sub(self.last_heard[slot]) >= SILENT_MS;
            let r = self.rate_now(slot);
            let here = if silent || r <= 0.0 { f64::INFINITY } else { (before + len - received as u64) as f64 / r };
            let there = if self.rate[to] > 0.0 { len as f64 / self.rate[to] } else { f64::INFINITY };
            if received == 0 && before >= commit {
                if there < here {
                    // Not begun there: it moves, nothing is sent twice.
                    self.pending.remove(&(slot, req));
                    self.outstanding[slot] -= 1;
                    steps.push(Step::Cancel { slot, reqs: vec![req] });
                    self.request(to, index, attempts, steps);
                }
            } else if silent || (here > LATE_FACTOR * there && self.dup_bytes + len <= budget) {
                if !silent {
                    self.dup_bytes += len;
                }
                self.request(to, index, attempts, steps);
            }
        }
    }

    /// The other requests for chunk `index` than `keep` are withdrawn: one copy is winning
    /// ([`Endgame::Late`] only). With `unstarted` (`keep` has just begun), only those no byte
    /// of came and that would not arrive sooner.
    fn cancel_copies(&mut self, index: usize, keep: (usize, u32), unstarted: bool) -> Vec<Step<B>> {
        if self.endgame != Endgame::Late {
            return Vec::new();
        }
        let len = self.manifest.chunk_len(index) as f64;
        let eta = |d: &Self, slot: usize, left: f64| {
            let r = d.rate_now(slot);
            if r > 0.0 {
                left / r
            } else {
                f64::INFINITY
            }
        };
        let kept = self.pending.get(&keep).map_or(0.0, |p| len - p.received as f64);
        let kept_eta = eta(self, keep.0, kept);
        let mut losers: Vec<(usize, u32)> = self
            .pending
            .iter()
            .filter(|(k, p)| p.index == index && **k != keep)
            // A copy that has not begun goes only if the one begun is expected sooner.
            .filter(|(k, p)| !unstarted || (p.received == 0 && kept_eta <= eta(self, k.0, len)))
            .map(|(k, _)| *k)
            .collect();
        losers.sort_unstable();
        losers
            .into_iter()
            .map(|(slot, req)| {
                self.pending.remove(&(slot, req));
                self.outstanding[slot] -= 1;
                Step::Cancel { slot, reqs: vec![req] }
            })
            .collect()
    }

    /// The chunk under the playhead is on its way, but queued behind others at its source (it
    /// was asked before the seek, as any chunk, perhaps of a slow source): a ready holder with
    /// a shorter queue is asked too (at most [`ENDGAME_COPIES`] askers); the first verified
    /// copy wins, as in the endgame.
    fn hurry_playhead(&mut self, index: usize, steps: &mut Vec<Step<B>>) {
        if self.state.get(index) != Some(&ChunkState::InFlight) {
            return;
        }
        let asked = self.askers(index);
        // Where it is, it may be last in its source's queue: that long to wait, at worst.
        let waiting = asked.iter().map(|&s| self.queue_ms(s, 0)).fold(f64::INFINITY, f64::min);
        let queued = asked.iter().map(|&s| self.outstanding[s]).min().unwrap_or(0);
        if asked.len() >= ENDGAME_COPIES || queued <= 1 {
            return;
        }
        let pick = self.holders[index]
            .iter()
            .copied()
            .filter(|&s| self.slots[s] == SlotState::Ready && !self.resting(s) && !asked.contains(&s))
            .map(|s| (s, self.queue_ms(s, 1)))
            .filter(|&(s, ms)| ms * 2.0 < waiting || (ms.is_infinite() && self.outstanding[s] + 1 < queued))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s);
        if let Some(slot) = pick {
            let attempts = self.attempts_of(index);
            self.request(slot, index, attempts, steps);
        }
    }

    /// The slots chunk `index` is asked of now.
    fn askers(&self, index: usize) -> Vec<usize> {
        self.pending.iter().filter(|(_, p)| p.index == index).map(|((slot, _), _)| *slot).collect()
    }

    /// The failed attempts of chunk `index`, as its outstanding requests carry them.
    fn attempts_of(&self, index: usize) -> u32 {
        self.pending.values().find(|p| p.index == index).map_or(0, |p| p.attempts)
    }

    /// Nothing is left unrequested: idle ready holders duplicate requests still in flight
    /// elsewhere, so one slow peer cannot hold back the end; newest first: a working source
    /// sends its oldest soonest, so the two meet in the middle of its queue (a silent one
    /// sends none: any order does).
    fn endgame_requests(&mut self, steps: &mut Vec<Step<B>>) {
        let mut inflight: Vec<(u32, usize)> = self.pending.iter().map(|((_, req), p)| (*req, p.index)).collect();
        inflight.sort_unstable_by(|a, b| b.cmp(a));
        for (_, index) in inflight {
            if self.state[index] != ChunkState::InFlight {
                continue;
            }
            let asked = self.askers(index);
            if asked.len() >= ENDGAME_COPIES {
                continue;
            }
            let pick = self.holders[index]
                .iter()
                .copied()
                .filter(|&s| {
                    self.slots[s] == SlotState::Ready
                        && !self.resting(s)
                        && self.outstanding[s] == 0
                        && !asked.contains(&s)
                })
                .min_by_key(|&s| self.outstanding[s]);
            let Some(slot) = pick else { continue };
            let attempts = self.attempts_of(index);
            self.request(slot, index, attempts, steps);
        }
    }
}

impl Download<Vec<u8>> {
    /// A decoded message from `slot` (tests and byte-level drivers).
    pub fn on_message(&mut self, slot: usize, msg: PeerMsg) -> Vec<Step> {
        Answer::from_msg(msg).map(|a| self.on_answer(slot, a)).unwrap_or_default()
    }
}
