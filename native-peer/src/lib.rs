//! The Peer Pressure native peer as a library: the `pp-peer` binary is a thin CLI over it,
//! and integration tests drive the same pieces.
//!
//! - [`node`]: a running peer (tracker session, serving, replication orders, leave).
//! - [`conn`]: shared fetching connections to other peers (data channel or relay).
//! - [`rtc`]: WebRTC data-channel links driven by str0m.
//! - [`relay`]: the peer side of the tracker relay.
//! - [`download`]: multi-source downloads and file assembly.
//! - [`gateway`]: the HTTP gateway (`GET /files/{id}` with Range).
//! - [`store`]: the content-addressed chunk store on disk.
//! - [`control`]: the local control socket of a running peer.
//! - [`tracker_client`], [`tls`], [`identity`], [`cli`]: tracker session (and TLS for
//!   `wss://`), stable identity, exit codes.

pub mod cli;
pub mod conn;
pub mod control;
pub mod download;
pub mod gateway;
pub mod identity;
pub mod node;
pub mod relay;
pub mod rtc;
pub mod store;
pub mod tls;
pub mod tracker_client;
