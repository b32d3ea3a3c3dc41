//! `swarm-core`: the pieces every Peer Pressure part shares, written once and free of I/O.
//!
//! - [`api`]: the answers of the tracker's REST API (JSON), for the tracker, the web app and tests.
//! - [`content`]: content addressing: chunk and file ids (SHA-256), manifests, streaming chunking.
//! - [`envelope`]: private files: AES-256-GCM around chunks and the sealed name, type and size.
//! - [`identity`]: identities are Ed25519 key pairs; the hello's challenge, signature and origin.
//! - [`wire`]: the versioned JSON messages between peers and the tracker (websocket).
//! - [`cluster`]: a tracker cluster's membership and shard leases as a sans-IO state machine.
//! - [`chunk_proto`]: the binary peer-to-peer chunk protocol spoken over WebRTC data channels.
//! - [`range`]: HTTP byte ranges, for the native gateway and the web app's media stream.
//! - [`relay`]: binary frames that carry the chunk protocol through the tracker when WebRTC cannot.
//! - [`peer`]: the peer, sans-IO: one download state machine, links, serving, tracker duties;
//!   the native peer and the web app are thin drivers of it.
//! - `stun` (feature `stun`): STUN binding requests and answers, for server-reflexive addresses.
//! - [`share`]: share links (`{web}/#/file/{id}[?key=…]`), the one token users pass around.
//! - [`swarm`]: the tracker's swarm index as a plain state struct (sans-IO): peers, files, holders.
//!
//! Nothing here opens a socket or reads a clock: drivers (tokio in the tracker and native peer,
//! web-sys in the browser) feed inputs in and carry outputs out.

pub mod api;
pub mod chunk_proto;
pub mod cluster;
pub mod content;
pub mod envelope;
pub mod identity;
pub mod peer;
pub mod range;
pub mod relay;
pub mod share;
#[cfg(feature = "stun")]
pub mod stun;
pub mod swarm;
pub mod wire;

pub use content::{ChunkId, FileId, Manifest, ManifestBuilder, CHUNK_SIZE};
pub use wire::{ClientMsg, IceServer, LinkPath, PathReport, PeerId, PeerKind, ServerMsg, Signal};
