//! The Peer Pressure native peer as a library: the `pp-peer` binary is a thin CLI over it,
//! and integration tests drive the same pieces.
//!
//! The peer's logic (downloads, links, serving, tracker duties) is `swarm_core::peer`, shared
//! with the web app; this crate drives it:
//! - [`node`]: a running peer as callers see it (download, put, leave, status).
//! - [`driver`]: the task that runs the peer core and carries out its outputs.
//! - [`rtc`]: WebRTC data-channel links driven by str0m.
//! - [`download`]: the caller's side of a download, and file assembly.
//! - [`gateway`]: the HTTP gateway (`GET /files/{id}` with Range); [`http_guard`] its edges.
//! - [`private`]: private files: encrypt on put, decrypt on get (the key is in the link).
//! - [`store`]: the content-addressed chunk store on disk.
//! - [`control`]: the local control socket of a running peer; [`pending`]: its gets not
//!   finished yet (`pp-peer run --resume`).
//! - [`settings`]: `pp-peer`'s settings (flags, environment, TOML file, per-user data dir).
//! - [`links`]: share links on the command line.
//! - [`output`]: what commands print for people (without `--json`).
//! - [`tracker_client`], [`tls`], [`identity`], [`cli`]: tracker session (and TLS for
//!   `wss://`), stable identity, exit codes.

pub mod cli;
pub mod control;
pub mod download;
pub mod driver;
pub mod gateway;
pub mod http_guard;
pub mod identity;
pub mod links;
pub mod node;
pub mod output;
pub mod pending;
pub mod private;
pub mod rtc;
pub mod settings;
pub mod store;
pub mod tls;
pub mod tracker_client;
