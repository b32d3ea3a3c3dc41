//! The tracker protocol: versioned JSON messages over the tracker's websocket (`/ws`).
//!
//! The handshake (version 2): the peer says [`ClientMsg::Hello`] with its Ed25519 public key;
//! the tracker answers [`ServerMsg::AuthChallenge`] with a fresh random nonce; the peer sends
//! [`ClientMsg::AuthProof`]: the origin of the tracker as it dialled it (`ws://host:port`,
//! [`crate::identity::origin_of`]) and its signature over `HELLO_TAG ‖ nonce ‖ origin`
//! ([`crate::identity::hello_payload`]); the tracker checks the origin is its own
//! ([`crate::identity::origin_accepted`]) and the signature, and answers
//! [`ServerMsg::Welcome`] with the peer's id, which derives from the key ([`PeerId::of_key`]).
//! A peer may send its next messages right after the proof, without waiting for the welcome. No secret crosses the wire, so a connection can never speak for another
//! peer, and a signature made for another host (a hostile tracker named in a link) is worthless
//! here. A peer keeps its id across restarts by keeping its key. A peer whose identity predates
//! keys sends its old secret once, in `migrate`, to its configured tracker (see
//! [`crate::identity`]). Every request a peer may correlate carries its own `req` number, echoed
//! in the answer or error.

use crate::content::{ChunkId, FileId, Manifest};
use crate::envelope::SealedMeta;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Version of this protocol; a peer with another version is refused with a clear error.
pub const PROTOCOL_VERSION: u32 = 2;
/// Largest websocket text frame either side accepts.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Longest file name the tracker stores (in bytes).
pub const MAX_NAME_BYTES: usize = 255;

/// A peer's public identity: 32 hex digits, derived from its public key
/// ([`PeerId::of_key`], in [`crate::identity`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub String);

impl PeerId {
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(8)]
    }
}
impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

/// What kind of program a peer is; shown in the UI, used for placement later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerKind {
    Native,
    Browser,
}

/// Remote ICE candidates one connection takes (in the description and trickled together):
/// a peer that advertises hundreds cannot make another send checks to hundreds of addresses.
pub const MAX_REMOTE_CANDIDATES: usize = 16;

/// ICE candidates (`a=candidate:` lines) in a session description.
pub fn sdp_candidate_count(sdp: &str) -> usize {
    sdp.lines().filter(|l| l.trim_start().starts_with("a=candidate:")).count()
}

/// WebRTC signalling payloads the tracker relays verbatim between two peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: String,
        mid: Option<String>,
    },
    /// The sender gives up on this connection attempt (e.g. cannot parse the offer).
    Close {
        reason: String,
    },
    /// From the tracker, in the name of the peer the attempt was for: that peer is not
    /// connected (it left or died after the caller looked it up). Give up at once; the relay
    /// cannot reach it either.
    Gone,
}

/// One ICE server, as WebRTC's `RTCIceServer` describes it: `urls` like `stun:host:port` or
/// `turn:host:port?transport=udp`; TURN servers need `username` and `credential`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// How a link between two peers carries its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkPath {
    /// A data channel between host candidates (same machine or same LAN).
    DirectHost,
    /// A data channel through NATs (server- or peer-reflexive candidates: hole punching).
    DirectReflexive,
    /// A data channel through a TURN server.
    Turn,
    /// The tracker's websocket relay.
    Relay,
}

impl LinkPath {
    /// Every variant once, in declaration order (checked against the enum by a test).
    pub const ALL: [LinkPath; 4] = [LinkPath::DirectHost, LinkPath::DirectReflexive, LinkPath::Turn, LinkPath::Relay];
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPath::DirectHost => "direct_host",
            LinkPath::DirectReflexive => "direct_reflexive",
            LinkPath::Turn => "turn",
            LinkPath::Relay => "relay",
        }
    }
}

/// A peer's own account of its links by path (counters since it started). Informational: the
/// tracker shows the sums in `/metrics` as reported, and trusts them for nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathReport {
    /// Links open now, per path.
    pub links: Vec<(LinkPath, u32)>,
    /// Chunk bytes received since start, per path.
    pub bytes_received: Vec<(LinkPath, u64)>,
}

/// Name, type and time of a published file: index metadata, never part of the file id.
///
/// A private file ([`crate::envelope`]) has an empty `name` and `mime` and carries them in
/// `sealed` instead; that field's presence is all the tracker knows of it (it keeps such a file
/// out of search and listings). Public files serialize exactly as before the field existed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub name: String,
    pub mime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedMeta>,
}

impl FileMeta {
    /// The metadata of a public file.
    pub fn public(name: impl Into<String>, mime: impl Into<String>) -> Self {
        Self { name: name.into(), mime: mime.into(), sealed: None }
    }

    /// The metadata of a private file: nothing in clear.
    pub fn private(sealed: SealedMeta) -> Self {
        Self { name: String::new(), mime: String::new(), sealed: Some(sealed) }
    }

    pub fn is_private(&self) -> bool {
        self.sealed.is_some()
    }
}

/// One file as listed in search results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    pub id: FileId,
    pub name: String,
    pub mime: String,
    pub size: u64,
    pub chunks: u32,
    /// Fewest live holders of any of its chunks (0: some chunk is unavailable right now).
    pub min_holders: u32,
}

/// Messages from a peer to the tracker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// First message of every connection: `key`, the peer's Ed25519 public key (hex); the
    /// tracker answers [`ServerMsg::AuthChallenge`]. `token`: a join token, for a private
    /// tracker (one started with `--join-token`); an open tracker ignores it. (`key` defaults,
    /// so an older peer's hello is answered `unsupported_version`.)
    Hello {
        version: u32,
        kind: PeerKind,
        #[serde(default)]
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// The answer to [`ServerMsg::AuthChallenge`]: `origin`, the tracker as the peer dialled it
    /// (`ws://host:port`); `signature` (hex) over `HELLO_TAG ‖ nonce ‖ origin`. `migrate`: a
    /// legacy identity's old secret, sent once, to the configured tracker only (see
    /// [`crate::identity`]).
    AuthProof {
        origin: String,
        signature: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        migrate: Option<String>,
    },
    /// Keeps the connection counted as alive.
    Heartbeat,
    /// Chunks this peer holds. `full`: this is the whole inventory (replaces what the tracker
    /// knew); otherwise these are added.
    Have { chunks: Vec<ChunkId>, full: bool },
    /// Chunks this peer no longer holds.
    Dropped { chunks: Vec<ChunkId> },
    /// Adds a file to the index. The publisher should already `Have` its chunks.
    Publish { req: u32, manifest: Manifest, meta: FileMeta },
    /// Asks for a file's manifest and who holds each chunk.
    Locate { req: u32, file: FileId },
    /// Searches file names; an empty query lists the newest files.
    Search { req: u32, query: String, limit: u32 },
    /// WebRTC signalling for peer `to`; `conn` names the connection attempt (chosen by the offerer).
    Signal { to: PeerId, conn: u64, signal: Signal },
    /// Storage this peer offers the swarm, in bytes (sent after hello and when it changes).
    Storage { used: u64, capacity: u64 },
    /// A replication order was carried out (the chunk is also announced with `have`).
    OrderDone { order: u64 },
    /// A replication order could not be carried out (no room, no source answered, ...).
    OrderFailed { order: u64, reason: String },
    /// This peer wants to leave: the tracker hands its chunks to others, then says `leave_ready`.
    Leave,
    /// `peer` sent bytes that did not hash to `chunk`.
    BadSource { peer: PeerId, chunk: ChunkId },
    /// This peer's links by path (sent now and then while it changes; see [`PathReport`]).
    Paths { report: PathReport },
    /// Answers to a [`ServerMsg::Challenge`] (in any order, in as many messages as suits).
    Proofs { items: Vec<ProofItem> },
    /// From the publisher of `file`, right after `publish`: challenges it precomputed for the
    /// file's chunks (at most [`MAX_NONCE_ITEMS`] per message, two per chunk is plenty). The
    /// tracker keeps them only for chunks it had never seen (the first publisher's word).
    Nonces { file: FileId, items: Vec<NonceItem> },
    /// Removes a file this peer published from the index (only its publisher may). Chunks no
    /// other file uses are trimmed from their holders.
    Unpublish { req: u32, file: FileId },
}

/// Items in one [`ServerMsg::Challenge`] at most.
pub const MAX_CHALLENGE_ITEMS: usize = 64;
/// Items in one [`ClientMsg::Nonces`] at most (the tracker ignores the rest).
pub const MAX_NONCE_ITEMS: usize = 4096;

/// One challenge: prove holding `chunk` by answering `SHA-256(nonce ‖ chunk bytes)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeItem {
    pub id: u64,
    pub chunk: ChunkId,
    #[serde(with = "hex_bytes")]
    pub nonce: [u8; 16],
}

/// The answer to challenge `id`: `SHA-256(nonce ‖ chunk bytes)`, or `None`: not held (missing
/// or corrupt in the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofItem {
    pub id: u64,
    #[serde(with = "hex_opt")]
    pub proof: Option<[u8; 32]>,
}

/// A challenge and its answer, computed by a publisher from the bytes it chunked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceItem {
    pub chunk: ChunkId,
    #[serde(with = "hex_bytes")]
    pub nonce: [u8; 16],
    #[serde(with = "hex_bytes")]
    pub proof: [u8; 32],
}

/// Fixed-size byte arrays as lower-case hex strings (like [`ChunkId`]).
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer, const N: usize>(b: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(s.as_bytes(), &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// `Option<[u8; 32]>` as a hex string or `null`.
mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_str(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(s) = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)? else { return Ok(None) };
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.as_bytes(), &mut out).map_err(serde::de::Error::custom)?;
        Ok(Some(out))
    }
}

/// Messages from the tracker to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The answer to `hello`: sign `nonce` (with the origin) in an `auth_proof`.
    AuthChallenge {
        #[serde(with = "hex_bytes")]
        nonce: [u8; 32],
    },
    Welcome {
        version: u32,
        peer_id: PeerId,
        /// Answer to `hello.migrate`: the files the old identity owned now belong to this one
        /// (how many moved; 0 when there were none or it migrated before). Absent: not done.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        migrated: Option<u32>,
        /// ICE servers to use for WebRTC (the shape of `RTCIceServer`): the tracker's own STUN
        /// service first, then any the operator configured (STUN, or TURN with credentials).
        #[serde(default)]
        ice_servers: Vec<IceServer>,
        /// The public addresses (`ws://` or `wss://` URLs of `/ws`) of every tracker node of
        /// this swarm, this one included: where to reconnect when this node goes away. Empty
        /// for a single tracker.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        trackers: Vec<String>,
    },
    Published {
        req: u32,
        file: FileId,
    },
    Located {
        req: u32,
        file: FileId,
        meta: FileMeta,
        manifest: Manifest,
        /// The live peers holding any chunk of this file.
        peers: Vec<PeerId>,
        /// Per chunk (in file order): indices into `peers` of its holders.
        holders: Vec<Vec<u32>>,
    },
    SearchResults {
        req: u32,
        files: Vec<FileSummary>,
    },
    Signal {
        from: PeerId,
        conn: u64,
        signal: Signal,
    },
    Error {
        req: Option<u32>,
        code: ErrorCode,
        message: String,
    },
    /// Fetch `chunk` (`size` bytes) from one of `sources`, verify and store it, announce it
    /// with `have`, then report `order_done` (or `order_failed`).
    Replicate {
        order: u64,
        chunk: ChunkId,
        size: u32,
        sources: Vec<PeerId>,
    },
    /// Drop these chunks: the swarm holds enough copies elsewhere.
    Trim {
        chunks: Vec<ChunkId>,
    },
    /// Answer to `leave`: every chunk this peer held has enough live copies elsewhere
    /// (`stranded` counts chunks that no staying peer holds, e.g. for lack of room).
    LeaveReady {
        stranded: u32,
    },
    /// Prove these holdings: answer each with [`ClientMsg::Proofs`] (soon: an unanswered
    /// challenge counts as failed). At most [`MAX_CHALLENGE_ITEMS`] items.
    Challenge {
        items: Vec<ChallengeItem>,
    },
    /// Answer to `unpublish`: the file is gone from the index.
    Unpublished {
        req: u32,
        file: FileId,
    },
    /// Send your whole inventory again (`have` with `full: true`, then `storage`): a tracker
    /// node took over part of the swarm's bookkeeping and lost what you had announced.
    Reannounce,
    /// Answer to `heartbeat`: the node is alive (a browser cannot see websocket pongs; see
    /// [`crate::peer::liveness`]).
    Heartbeat,
    /// The tracker cluster's nodes changed while this peer is connected (a node joined or went
    /// silent): every node's public `/ws` URL, this one first, as in `welcome`.
    Trackers {
        trackers: Vec<String>,
    },
}

/// Machine-readable error kinds; the message says the rest in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a message this version knows.
    BadMessage,
    /// Frame larger than [`MAX_MESSAGE_BYTES`].
    TooLarge,
    UnsupportedVersion,
    /// A message other than `hello` before `hello`, or a second `hello`.
    NotWelcomed,
    /// `hello.migrate` is not a secret (32 to 128 hex digits), or its identity moved to
    /// another key already.
    BadSecret,
    UnknownFile,
    UnknownPeer,
    BadManifest,
    BadName,
    /// Too many messages or relay bytes per second from this connection.
    RateLimited,
    /// A configured limit (peers, connections per address, files per peer) is reached.
    LimitReached,
    /// The recipient of a relayed frame cannot keep up: the frame was dropped.
    PeerBusy,
    /// This tracker is private: `hello` carried no join token, or one it does not accept.
    BadToken,
    /// Only the peer that published a file may unpublish it.
    NotOwner,
    /// The part of the swarm this request needs is moving between tracker nodes, or this
    /// node lost its link to the cluster: nothing was changed; try again shortly.
    Unavailable,
    /// The tracker's state is near its memory budget and this address is among its heaviest
    /// users (or over its own share): no new identities, files or claims from it for now.
    OverBudget,
    /// `hello`'s key or signature is malformed, or the signature does not verify.
    BadSignature,
    /// `hello` was signed for another origin than this tracker's (a link's host, a proxy the
    /// tracker was not told about with `--public-url`).
    WrongOrigin,
}

impl ErrorCode {
    /// Every variant once, in declaration order (the property tests draw from it). A test checks
    /// it against the enum itself, so a new variant that is not listed here fails the tests.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::BadMessage,
        ErrorCode::TooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::NotWelcomed,
        ErrorCode::BadSecret,
        ErrorCode::UnknownFile,
        ErrorCode::UnknownPeer,
        ErrorCode::BadManifest,
        ErrorCode::BadName,
        ErrorCode::RateLimited,
        ErrorCode::LimitReached,
        ErrorCode::PeerBusy,
        ErrorCode::BadToken,
        ErrorCode::NotOwner,
        ErrorCode::Unavailable,
        ErrorCode::OverBudget,
        ErrorCode::BadSignature,
        ErrorCode::WrongOrigin,
    ];
}

impl ClientMsg {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("messages always serialize")
    }
}
impl ServerMsg {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("messages always serialize")
    }
    pub fn error(req: Option<u32>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMsg::Error { req, code, message: message.into() }
    }
}

/// Checks a file name from a peer: stored as given, but no control characters and no absurd
/// length. (Clients still escape it when showing it, and sanitise it before using it as a path.)
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("name is empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("name is longer than 255 bytes");
    }
    if name.chars().any(char::is_control) {
        return Err("name contains control characters");
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunk_id() -> impl Strategy<Value = ChunkId> {
        any::<[u8; 32]>().prop_map(ChunkId)
    }
    pub(crate) fn file_id() -> impl Strategy<Value = FileId> {
        any::<[u8; 32]>().prop_map(FileId)
    }
    pub(crate) fn peer_id() -> impl Strategy<Value = PeerId> {
        any::<[u8; 16]>().prop_map(|b| PeerId(hex::encode(b)))
    }
    pub(crate) fn manifest() -> impl Strategy<Value = Manifest> {
        (any::<u64>(), any::<u32>(), prop::collection::vec(chunk_id(), 0..8))
            .prop_map(|(size, chunk_size, chunks)| Manifest { size, chunk_size, chunks })
    }
    fn meta() -> impl Strategy<Value = FileMeta> {
        prop_oneof![
            (any::<String>(), any::<String>()).prop_map(|(name, mime)| FileMeta::public(name, mime)),
            prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| FileMeta::private(SealedMeta(b))),
        ]
    }
    fn signal() -> impl Strategy<Value = Signal> {
        prop_oneof![
            any::<String>().prop_map(|sdp| Signal::Offer { sdp }),
            any::<String>().prop_map(|sdp| Signal::Answer { sdp }),
            (any::<String>(), any::<Option<String>>())
                .prop_map(|(candidate, mid)| Signal::Candidate { candidate, mid }),
            any::<String>().prop_map(|reason| Signal::Close { reason }),
            Just(Signal::Gone),
        ]
    }
    fn ice_server() -> impl Strategy<Value = IceServer> {
        (prop::collection::vec(any::<String>(), 1..3), any::<Option<String>>(), any::<Option<String>>())
            .prop_map(|(urls, username, credential)| IceServer { urls, username, credential })
    }
    pub(crate) fn path() -> impl Strategy<Value = LinkPath> {
        prop::sample::select(LinkPath::ALL.to_vec())
    }
    fn path_report() -> impl Strategy<Value = PathReport> {
        (prop::collection::vec((path(), any::<u32>()), 0..4), prop::collection::vec((path(), any::<u64>()), 0..4))
            .prop_map(|(links, bytes_received)| PathReport { links, bytes_received })
    }
    pub(crate) fn kind() -> impl Strategy<Value = PeerKind> {
        prop_oneof![Just(PeerKind::Native), Just(PeerKind::Browser)]
    }
    fn code() -> impl Strategy<Value = ErrorCode> {
        prop::sample::select(ErrorCode::ALL.to_vec())
    }

    fn client_msg() -> impl Strategy<Value = ClientMsg> {
        prop_oneof![
            (any::<u32>(), kind(), any::<String>(), any::<Option<String>>())
                .prop_map(|(version, kind, key, token)| { ClientMsg::Hello { version, kind, key, token } }),
            (any::<String>(), any::<String>(), any::<Option<String>>())
                .prop_map(|(origin, signature, migrate)| ClientMsg::AuthProof { origin, signature, migrate }),
            Just(ClientMsg::Heartbeat),
            (prop::collection::vec(chunk_id(), 0..5), any::<bool>())
                .prop_map(|(chunks, full)| ClientMsg::Have { chunks, full }),
            prop::collection::vec(chunk_id(), 0..5).prop_map(|chunks| ClientMsg::Dropped { chunks }),
            (any::<u32>(), manifest(), meta())
                .prop_map(|(req, manifest, meta)| { ClientMsg::Publish { req, manifest, meta } }),
            (any::<u32>(), file_id()).prop_map(|(req, file)| ClientMsg::Locate { req, file }),
            (any::<u32>(), any::<String>(), any::<u32>()).prop_map(|(req, query, limit)| ClientMsg::Search {
                req,
                query,
                limit
            }),
            (peer_id(), any::<u64>(), signal()).prop_map(|(to, conn, signal)| ClientMsg::Signal { to, conn, signal }),
            (any::<u64>(), any::<u64>()).prop_map(|(used, capacity)| ClientMsg::Storage { used, capacity }),
            any::<u64>().prop_map(|order| ClientMsg::OrderDone { order }),
            (any::<u64>(), any::<String>()).prop_map(|(order, reason)| ClientMsg::OrderFailed { order, reason }),
            Just(ClientMsg::Leave),
            (peer_id(), chunk_id()).prop_map(|(peer, chunk)| ClientMsg::BadSource { peer, chunk }),
            path_report().prop_map(|report| ClientMsg::Paths { report }),
            prop::collection::vec(
                (any::<u64>(), any::<Option<[u8; 32]>>()).prop_map(|(id, proof)| ProofItem { id, proof }),
                0..4
            )
            .prop_map(|items| ClientMsg::Proofs { items }),
            (
                file_id(),
                prop::collection::vec(
                    (chunk_id(), any::<[u8; 16]>(), any::<[u8; 32]>()).prop_map(|(chunk, nonce, proof)| NonceItem {
                        chunk,
                        nonce,
                        proof
                    }),
                    0..4
                )
            )
                .prop_map(|(file, items)| ClientMsg::Nonces { file, items }),
            (any::<u32>(), file_id()).prop_map(|(req, file)| ClientMsg::Unpublish { req, file }),
        ]
    }

    pub(crate) fn summary() -> impl Strategy<Value = FileSummary> {
        (file_id(), meta(), any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(id, m, size, chunks, min_holders)| {
            FileSummary { id, name: m.name, mime: m.mime, size, chunks, min_holders }
        })
    }

    fn server_msg() -> impl Strategy<Value = ServerMsg> {
        prop_oneof![
            any::<[u8; 32]>().prop_map(|nonce| ServerMsg::AuthChallenge { nonce }),
            (
                any::<u32>(),
                peer_id(),
                any::<Option<u32>>(),
                prop::collection::vec(ice_server(), 0..3),
                prop::collection::vec("wss?://[a-z0-9.:]{1,30}/ws", 0..3)
            )
                .prop_map(|(version, peer_id, migrated, ice_servers, trackers)| ServerMsg::Welcome {
                    version,
                    peer_id,
                    migrated,
                    ice_servers,
                    trackers
                }),
            (any::<u32>(), file_id()).prop_map(|(req, file)| ServerMsg::Published { req, file }),
            (
                any::<u32>(),
                file_id(),
                meta(),
                manifest(),
                prop::collection::vec(peer_id(), 0..4),
                prop::collection::vec(prop::collection::vec(any::<u32>(), 0..4), 0..4)
            )
                .prop_map(|(req, file, meta, manifest, peers, holders)| {
                    ServerMsg::Located { req, file, meta, manifest, peers, holders }
                }),
            (any::<u32>(), prop::collection::vec(summary(), 0..4))
                .prop_map(|(req, files)| ServerMsg::SearchResults { req, files }),
            (peer_id(), any::<u64>(), signal()).prop_map(|(from, conn, signal)| ServerMsg::Signal {
                from,
                conn,
                signal
            }),
            (any::<Option<u32>>(), code(), any::<String>()).prop_map(|(req, code, message)| ServerMsg::Error {
                req,
                code,
                message
            }),
            (any::<u64>(), chunk_id(), any::<u32>(), prop::collection::vec(peer_id(), 0..4))
                .prop_map(|(order, chunk, size, sources)| ServerMsg::Replicate { order, chunk, size, sources }),
            prop::collection::vec(chunk_id(), 0..4).prop_map(|chunks| ServerMsg::Trim { chunks }),
            any::<u32>().prop_map(|stranded| ServerMsg::LeaveReady { stranded }),
            prop::collection::vec(
                (any::<u64>(), chunk_id(), any::<[u8; 16]>()).prop_map(|(id, chunk, nonce)| ChallengeItem {
                    id,
                    chunk,
                    nonce
                }),
                0..4
            )
            .prop_map(|items| ServerMsg::Challenge { items }),
            (any::<u32>(), file_id()).prop_map(|(req, file)| ServerMsg::Unpublished { req, file }),
            Just(ServerMsg::Reannounce),
            Just(ServerMsg::Heartbeat),
            prop::collection::vec("wss?://[a-z0-9.:]{1,30}/ws", 0..3)
                .prop_map(|trackers| ServerMsg::Trackers { trackers }),
        ]
    }

    proptest! {
        #[test]
        fn client_messages_round_trip(msg in client_msg()) {
            let json = msg.to_json();
            prop_assert_eq!(serde_json::from_str::<ClientMsg>(&json).unwrap(), msg);
        }

        #[test]
        fn server_messages_round_trip(msg in server_msg()) {
            let json = msg.to_json();
            prop_assert_eq!(serde_json::from_str::<ServerMsg>(&json).unwrap(), msg);
        }

    }

    /// Checks that `all` holds every variant of a fieldless enum once, in declaration order,
    /// without a second list: serde numbers such an enum's variants 0, 1, 2, … and refuses a
    /// number past the last, so decoding the numbers `0..=all.len()` walks the enum itself.
    fn assert_lists_every_variant<T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(all: &[T]) {
        use serde::de::value::{Error, U32Deserializer};
        let variant = |i: usize| T::deserialize(U32Deserializer::<Error>::new(i as u32));
        for (i, listed) in all.iter().enumerate() {
            let declared = variant(i).unwrap_or_else(|e| panic!("the enum has no variant number {i}: {e}"));
            assert_eq!(
                listed, &declared,
                "ALL[{i}] is not the enum's variant number {i} (ALL keeps declaration order)"
            );
        }
        if let Ok(extra) = variant(all.len()) {
            panic!("{extra:?} is missing from ALL: list every variant there, in declaration order");
        }
    }

    #[test]
    fn all_lists_every_variant() {
        assert_lists_every_variant(&ErrorCode::ALL);
        assert_lists_every_variant(&LinkPath::ALL);
    }

    #[test]
    fn wire_format_is_tagged_snake_case() {
        let json = ClientMsg::Locate { req: 7, file: FileId([0xab; 32]) }.to_json();
        assert_eq!(json, format!(r#"{{"type":"locate","req":7,"file":"{}"}}"#, "ab".repeat(32)));
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"nope"}"#).is_err());
    }

    #[test]
    fn challenges_and_proofs_are_hex() {
        let c =
            ServerMsg::Challenge { items: vec![ChallengeItem { id: 3, chunk: ChunkId([1; 32]), nonce: [0xab; 16] }] };
        assert_eq!(
            c.to_json(),
            format!(
                r#"{{"type":"challenge","items":[{{"id":3,"chunk":"{}","nonce":"{}"}}]}}"#,
                "01".repeat(32),
                "ab".repeat(16)
            )
        );
        let p = ClientMsg::Proofs {
            items: vec![ProofItem { id: 3, proof: Some([0xcd; 32]) }, ProofItem { id: 4, proof: None }],
        };
        assert_eq!(
            p.to_json(),
            format!(
                r#"{{"type":"proofs","items":[{{"id":3,"proof":"{}"}},{{"id":4,"proof":null}}]}}"#,
                "cd".repeat(32)
            )
        );
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"proofs","items":[{"id":1,"proof":"abc"}]}"#).is_err());
    }

    #[test]
    fn a_version_1_hello_still_parses_so_it_can_be_told_its_version() {
        let old: ClientMsg =
            serde_json::from_str(r#"{"type":"hello","version":1,"kind":"native","secret":"s"}"#).unwrap();
        assert!(matches!(old, ClientMsg::Hello { version: 1, ref key, .. } if key.is_empty()), "{old:?}");
        let hello = ClientMsg::Hello { version: 2, kind: PeerKind::Native, key: "k".into(), token: None };
        assert_eq!(hello.to_json(), r#"{"type":"hello","version":2,"kind":"native","key":"k"}"#);
        let proof = ClientMsg::AuthProof { origin: "ws://h:1".into(), signature: "s".into(), migrate: None };
        assert_eq!(proof.to_json(), r#"{"type":"auth_proof","origin":"ws://h:1","signature":"s"}"#);
    }

    #[test]
    fn public_file_meta_keeps_its_old_shape() {
        let meta = FileMeta::public("a.txt", "text/plain");
        assert_eq!(serde_json::to_string(&meta).unwrap(), r#"{"name":"a.txt","mime":"text/plain"}"#);
        let old: FileMeta = serde_json::from_str(r#"{"name":"a.txt","mime":"text/plain"}"#).unwrap();
        assert_eq!(old, meta);
        let private = FileMeta::private(SealedMeta(vec![1, 2, 255]));
        assert_eq!(serde_json::to_string(&private).unwrap(), r#"{"name":"","mime":"","sealed":"AQL_"}"#);
    }

    #[test]
    fn candidates_in_a_description_are_counted() {
        let sdp = "v=0\r\na=mid:0\r\na=candidate:1 1 udp 1 10.0.0.2 5000 typ host\r\na=candidate:2 1 udp 1 198.51.100.3 6000 typ srflx raddr 0.0.0.0 rport 0\r\na=end-of-candidates\r\n";
        assert_eq!(sdp_candidate_count(sdp), 2);
        assert_eq!(sdp_candidate_count(""), 0);
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("report (final).pdf").is_ok());
        assert!(validate_name("<img src=x onerror=alert(1)>").is_ok(), "stored as given");
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(300)).is_err());
        assert!(validate_name("").is_err());
    }
}
