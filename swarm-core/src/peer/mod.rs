//! A peer, written once: the sans-IO core that the native peer and the web app both drive.
//!
//! In the style of quinn-proto's `Endpoint` and str0m's `Rtc`, [`Peer`] never touches a socket,
//! a disk or a clock. Inputs:
//! - the tracker: connected ([`Peer::tracker_connected`]), a message ([`Peer::handle_server_msg`]),
//!   a relay frame ([`Peer::handle_relay`]);
//! - WebRTC links: opened, closed, a message, a signal to send ([`Peer::link_open`] …);
//! - the store: a chunk read to serve ([`Peer::chunk_read`]), a chunk hashed and kept
//!   ([`Peer::verified`]); what the store holds is asked through the small [`Inventory`] trait;
//! - the user: [`Peer::download`], [`Peer::request`], [`Peer::cancel`];
//! - time: `now_ms` on every call, and [`Peer::handle_timeout`] at [`Peer::poll_timeout`].
//!
//! Outputs come from [`Peer::poll_output`]: messages for the tracker, relay frames, links to
//! dial / accept / close, bytes for a link, store reads and hash checks, and [`Event`]s for the
//! driver's user interface.
//!
//! What it owns, so that no driver writes it again:
//! - **one download state machine** ([`download::Download`]) for user downloads, gateway
//!   reads and replication orders alike, with re-locating when sources run out;
//! - **links** ([`links`]): one fetching link per remote peer shared by every download,
//!   relay-then-upgrade (requests go through the tracker relay when no data channel opened
//!   within [`config::DIRECT_GRACE_MS`], and over the channel once it opens), fallback to the
//!   relay when a channel fails, cooldowns for peers that failed or that the tracker says are
//!   gone, idle links closed;
//! - **request matching**: the chunk protocol's `req` numbers per link, mapped to downloads;
//! - **serving** ([`serve`]): requests from links and the relay become store reads, bounded;
//!   a chunk the store finds corrupt is answered `missing` and reported `dropped`;
//! - **tracker duties**: hello, inventory in batches, `have` batching, storage reports,
//!   replication orders (bounded concurrency, room checked, joined to a running download of
//!   the same chunk), trims (never a chunk of a file this peer's user keeps), path reports,
//!   tracker requests re-sent after a reconnect, and a few times more when the tracker answers
//!   them `unavailable` (a tracker cluster moving part of the swarm between its nodes);
//! - **proofs of holding** ([`proof`]): the tracker's challenges answered from the store
//!   (bounded reads, batched answers); [`Peer::publish_nonces`] for publishers.
//!
//! One set of constants lives in [`config`]; reconnect delays in [`backoff`]; which tracker
//! node to (re)connect to in [`trackers`]; whether the node still answers in [`liveness`].

pub mod backoff;
pub mod config;
pub mod download;
mod fetch;
pub mod links;
pub mod liveness;
pub mod pace;
pub mod proof;
pub mod serve;
mod tracker;
pub mod trackers;

pub use download::{Answer, CellState, ChunkBuf, Download, DownloadError, Endgame, Step};

use crate::chunk_proto::{DataHeader, PeerMsg, ProtoError, DATA_HEADER};
use crate::wire::{FileMeta, IceServer, PeerKind};
use crate::{ChunkId, ClientMsg, FileId, LinkPath, Manifest, PathReport, PeerId, ServerMsg, Signal};
use std::collections::{BTreeMap, VecDeque};

/// A WebRTC link's number: the `conn` of its signals (and, for fetching links, of the relay
/// frames that carry its requests while the channel is not open).
pub type LinkId = u64;
/// A download's number.
pub type DownloadId = u64;

/// What the store holds, asked synchronously (both drivers keep an index in memory).
pub trait Inventory {
    fn has(&self, chunk: &ChunkId) -> bool;
    /// Every stored chunk id (for the full inventory after a (re)connect).
    fn ids(&self) -> Vec<ChunkId>;
    /// Bytes used and offered.
    fn used(&self) -> u64;
    fn capacity(&self) -> u64;
    /// A chunk of a file this peer's user put or fetched: never trimmed away.
    fn pinned(&self, _chunk: &ChunkId) -> bool {
        false
    }
    /// A copy another tracker's swarm placed: this tracker may not trim it.
    fn placed_elsewhere(&self, _chunk: &ChunkId) -> bool {
        false
    }
}

/// How the peer behaves; defaults are [`config`]'s.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub kind: PeerKind,
    /// The peer's Ed25519 public key (sent in `hello`). The core never holds the private key:
    /// it asks its driver to sign the tracker's challenge ([`Output::SignHello`]), so a driver
    /// may keep the key where the core cannot read it (the web app: a non-extractable WebCrypto
    /// key).
    pub key: [u8; 32],
    /// The tracker's origin as this peer dialled it (`ws://host:port`,
    /// [`crate::identity::origin_of`]): the hello signature is bound to it. Set by the driver
    /// before [`Peer::tracker_connected`].
    pub origin: String,
    /// The join token of a private tracker (sent in `hello`).
    pub token: Option<String>,
    /// Never try WebRTC: every fetch goes through the relay, offers are refused.
    pub relay_only: bool,
    pub direct_grace_ms: u64,
    pub direct_timeout_ms: u64,
    /// Payload bytes per data frame this peer sends. A transport property: browsers take
    /// 64 KiB messages best ([`config::FRAME_PAYLOAD`]); str0m writes a message only when all
    /// of it fits its SCTP buffer, so the native peer sends 16 KiB frames (see its `rtc`).
    pub frame_payload: usize,
    /// How downloads share chunks out among sources and ask again for slow ones
    /// ([`Endgame::Late`]; [`Endgame::Eager`] is the old policy, for same-run baselines).
    pub endgame: Endgame,
}

impl PeerConfig {
    pub fn new(kind: PeerKind, key: [u8; 32]) -> Self {
        Self {
            kind,
            key,
            origin: String::new(),
            token: None,
            relay_only: false,
            direct_grace_ms: config::DIRECT_GRACE_MS,
            direct_timeout_ms: config::DIRECT_TIMEOUT_MS,
            frame_payload: config::FRAME_PAYLOAD,
            endgame: Endgame::Late,
        }
    }
}

/// What a download is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A user's download: every chunk must be kept.
    Keep,
    /// A read for someone else (the HTTP gateway): the chunks' bytes are handed out in
    /// [`Event::Chunk`]; kept if there is room, but not failing if not.
    Read,
    /// A replication order from the tracker.
    Order { order: u64 },
}

/// A chunk-protocol message from a remote, its payload left wherever it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<P> {
    Request {
        req: u32,
        chunk: ChunkId,
    },
    /// The remote no longer wants the answers to these requests of its.
    Cancel {
        reqs: Vec<u32>,
    },
    Answer(Answer<P>),
}

impl Incoming<Vec<u8>> {
    /// Decodes a whole message (drivers whose bytes are in memory anyway).
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        Ok(match PeerMsg::decode(bytes)? {
            PeerMsg::Request { req, chunk } => Incoming::Request { req, chunk },
            PeerMsg::Cancel { reqs } => Incoming::Cancel { reqs },
            other => Incoming::Answer(Answer::from_msg(other).expect("an answer")),
        })
    }
}

/// The most leading bytes of a message [`Incoming::from_head`] needs: a whole request (the
/// longest message that is not a data frame), or a data frame's header.
pub const HEAD_MAX: usize = 37;

impl<P> Incoming<P> {
    /// Decodes a message of `len` bytes whose data payload stays where it arrived (the web app:
    /// in JS memory). `head` is its first `min(len, HEAD_MAX)` bytes; `payload(start)` gives the
    /// part from byte `start` to the end (called for a data frame only).
    pub fn from_head(head: &[u8], len: usize, payload: impl FnOnce(usize) -> P) -> Result<Self, ProtoError> {
        if head.first() == Some(&2) {
            let DataHeader { req, offset, total } = DataHeader::parse(head)?;
            if len < DATA_HEADER {
                return Err(ProtoError::Truncated);
            }
            return Ok(Incoming::Answer(Answer::Data { req, offset, total, part: payload(DATA_HEADER) }));
        }
        if len > head.len() {
            return Err(ProtoError::Trailing);
        }
        Ok(match PeerMsg::decode(head)? {
            PeerMsg::Request { req, chunk } => Incoming::Request { req, chunk },
            PeerMsg::Missing { req } => Incoming::Answer(Answer::Missing { req }),
            PeerMsg::Busy { req } => Incoming::Answer(Answer::Busy { req }),
            PeerMsg::Cancel { reqs } => Incoming::Cancel { reqs },
            PeerMsg::Data { .. } => unreachable!("data frames are read above"),
        })
    }
}

/// What the store found for a chunk to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResult {
    /// The chunk's bytes, checked against its id by the store (native: on every read; the
    /// web app: with [`serve::check`]).
    Found(Vec<u8>),
    /// Not stored (or unreadable).
    Missing,
    /// Stored, but the bytes no longer hash to the id: the store has dropped it.
    Corrupt,
}

/// What the driver must do.
#[derive(Debug)]
pub enum Output<B> {
    /// Send to the tracker.
    Tracker(ClientMsg),
    /// Sign the tracker's challenge with this peer's private key: the signature of
    /// [`crate::identity::hello_payload`]`(nonce, origin)` (what
    /// [`crate::identity::Keypair::sign_hello`] makes), answered with [`Peer::hello_signed`]
    /// (a signature for a challenge of an earlier connection is ignored).
    SignHello {
        nonce: [u8; 32],
        origin: String,
    },
    /// Send a chunk-protocol message through the tracker relay.
    Relay {
        to: PeerId,
        conn: u64,
        payload: Vec<u8>,
    },
    /// Start a WebRTC attempt to `peer` (this side offers); its signals go with conn `link`.
    Dial {
        link: LinkId,
        peer: PeerId,
    },
    /// Answer `peer`'s offer: a link this side serves on.
    Accept {
        link: LinkId,
        peer: PeerId,
        sdp: String,
    },
    /// A signal from the remote for the WebRTC attempt of `link`.
    Signal {
        link: LinkId,
        signal: Signal,
    },
    /// Send over `link`'s open data channel.
    Send {
        link: LinkId,
        bytes: Vec<u8>,
    },
    /// Close `link` (its WebRTC attempt or channel).
    Close {
        link: LinkId,
    },
    /// Read `chunk` to serve it; answer with [`Peer::chunk_read`].
    Read {
        token: u64,
        chunk: ChunkId,
    },
    /// Hash these bytes; if they are `chunk`, keep them (unless `keep` is false and there is
    /// no room); answer with [`Peer::verified`].
    Verify {
        token: u64,
        chunk: ChunkId,
        bytes: B,
        keep: bool,
    },
    /// Remove these chunks from the store (the tracker trimmed them; already reported).
    Remove {
        chunks: Vec<ChunkId>,
    },
    Event(Event<B>),
}

/// What happened, for the driver's user interface and callers.
#[derive(Debug)]
pub enum Event<B> {
    /// The tracker welcomed this peer.
    Welcomed {
        peer_id: PeerId,
        ice_servers: Vec<IceServer>,
        /// Every tracker node's public `/ws` URL (empty: a single tracker).
        trackers: Vec<String>,
    },
    /// The tracker cluster's nodes changed (every node's public `/ws` URL): where to fail
    /// over to from now on ([`trackers::TrackerList::learn`]).
    Trackers { trackers: Vec<String> },
    /// The answer to [`Peer::request`] number `req`.
    Reply { req: u32, msg: ServerMsg },
    /// A download knows its file (after `locate`): it is running.
    Located { download: DownloadId, file: FileId, manifest: Manifest, meta: FileMeta },
    /// A download stored chunk `index` (`len` bytes; `stored` of `size` bytes of the file are
    /// stored now). For [`Purpose::Read`]: with its bytes.
    Chunk { download: DownloadId, index: usize, len: u32, stored: u64, size: u64, from: PeerId, bytes: Option<B> },
    /// A download ended.
    Finished { download: DownloadId, purpose: Purpose, result: Result<(), Failure> },
    /// The tracker found homes for this peer's chunks (answer to [`Peer::leave`]).
    LeaveReady { stranded: u32 },
    /// Something a user may want to know (a bad chunk refused, a stalled source).
    Notice(String),
}

/// Why a download ended without its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The tracker refused (e.g. an unknown file).
    #[error("{message}")]
    Tracker { code: crate::wire::ErrorCode, message: String },
    #[error("{0}")]
    Failed(String),
    #[error("cancelled")]
    Cancelled,
}

/// A request to the tracker awaiting its answer.
#[derive(Debug, Clone)]
enum Pending {
    /// For the driver: answered with [`Event::Reply`].
    Driver,
    /// The `locate` of a download.
    Locate(DownloadId),
}

/// The peer core. `B` is where chunks are reassembled (`Vec<u8>` natively, JS memory in the
/// page).
pub struct Peer<B: ChunkBuf> {
    config: PeerConfig,
    me: Option<PeerId>,
    connected: bool,
    out: VecDeque<Output<B>>,
    next_req: u32,
    pending: BTreeMap<u32, (Pending, ClientMsg)>,
    fetch: fetch::Fetching<B>,
    serve: serve::Serving,
    proving: proof::Proving,
    links: links::Links,
    tracker: tracker::Duties,
}

impl<B: ChunkBuf + Clone> Peer<B> {
    pub fn new(config: PeerConfig) -> Self {
        Self {
            config,
            me: None,
            connected: false,
            out: VecDeque::new(),
            next_req: 1,
            pending: BTreeMap::new(),
            fetch: fetch::Fetching::default(),
            serve: serve::Serving::default(),
            proving: proof::Proving::default(),
            links: links::Links::default(),
            tracker: tracker::Duties::default(),
        }
    }

    /// This peer's id, once welcomed.
    pub fn peer_id(&self) -> Option<&PeerId> {
        self.me.as_ref()
    }

    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// Whether the tracker connection is up (and welcomed).
    pub fn is_connected(&self) -> bool {
        self.connected && self.me.is_some()
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output<B>> {
        self.out.pop_front()
    }

    /// When [`Peer::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<u64> {
        [self.tracker.deadline(), self.links.deadline(), self.fetch.deadline(), self.serve.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time passed: stalls, link grace periods, batches, reports.
    pub fn handle_timeout(&mut self, inv: &dyn Inventory, now_ms: u64) {
        self.links_timeout(now_ms);
        self.fetch_timeout(inv, now_ms);
        self.tracker_timeout(inv, now_ms);
        self.serve_timeout(now_ms);
    }

    /// Sends a request to the tracker (`make` gets its number); the answer comes as
    /// [`Event::Reply`], even across a reconnect (the request is sent again).
    pub fn request(&mut self, make: impl FnOnce(u32) -> ClientMsg) -> u32 {
        self.send_request(Pending::Driver, make)
    }

    fn send_request(&mut self, kind: Pending, make: impl FnOnce(u32) -> ClientMsg) -> u32 {
        let req = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(1);
        let msg = make(req);
        if self.connected {
            self.out.push_back(Output::Tracker(msg.clone()));
        }
        self.pending.insert(req, (kind, msg));
        req
    }

    fn send(&mut self, msg: ClientMsg) {
        if self.connected {
            self.out.push_back(Output::Tracker(msg));
        }
    }

    fn event(&mut self, e: Event<B>) {
        self.out.push_back(Output::Event(e));
    }

    /// Numbers this peer's links after `base` (before any link exists). A peer that comes back
    /// under the same identity (a reloaded tab) starts from a random base, so a remote still
    /// holding a link of its previous run does not take a new link's signals for that one's.
    /// Link numbers travel as JSON numbers: keep them below 2^53.
    pub fn number_links_after(&mut self, base: LinkId) {
        self.links.number_after(base);
    }

    /// This peer's links by path, and bytes received by path since start.
    pub fn path_report(&self) -> PathReport {
        self.links.report()
    }

    /// Open links: (peer, path, "fetch" or "serve").
    pub fn links(&self) -> Vec<(PeerId, Option<LinkPath>, &'static str)> {
        self.links.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_proto::encode_data;

    fn split(msg: &[u8]) -> Result<Incoming<Vec<u8>>, ProtoError> {
        Incoming::from_head(&msg[..msg.len().min(HEAD_MAX)], msg.len(), |start| msg[start..].to_vec())
    }

    #[test]
    fn from_head_reads_what_decode_reads() {
        let chunk = ChunkId::of(b"x");
        for msg in [
            PeerMsg::Request { req: 7, chunk }.encode(),
            PeerMsg::Missing { req: 9 }.encode(),
            PeerMsg::Busy { req: 10 }.encode(),
            PeerMsg::Cancel { reqs: vec![1, 2, 3, 4, 5, 6, 7, 8] }.encode(),
            encode_data(3, 65_523, 200_000, &[5; 1000]),
        ] {
            assert_eq!(split(&msg), Incoming::decode(&msg), "{:?}", &msg[..1]);
        }
        for bad in [&[][..], &[2, 0, 0][..], &[9, 0, 0, 0, 1][..], &[3, 0, 0, 0, 1, 0][..]] {
            assert!(split(bad).is_err(), "{bad:?}");
        }
    }
}
