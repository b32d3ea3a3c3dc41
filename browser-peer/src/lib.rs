//! Peer Pressure's browser peer: a Yew app that is a full member of the swarm.
//!
//! - [`app`]: the components (page layout, upload and download panels, status bar).
//! - [`state`]: the page state as a `Reducible` with its actions; no I/O.
//! - [`node`]: the peer driver behind a context (`use_node`): tracker, connections, store.
//! - [`tracker`]: the self-healing websocket to the tracker.
//! - [`rtc`]: one `RTCPeerConnection` + data channel, offerer or answerer, flow-controlled.
//! - [`transfer`]: the sans-IO download scheduler and the serving side of the chunk protocol.
//! - [`store`]: the `ChunkStore` seam and its in-memory implementation.
//!
//! Protocol, hashing and framing come from `swarm-core`; nothing here re-implements them.

pub mod app;
pub mod node;
pub mod rtc;
pub mod state;
pub mod store;
pub mod tracker;
pub mod transfer;
