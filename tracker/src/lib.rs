//! The Peer Pressure tracker: one process that keeps the swarm index, relays WebRTC signalling
//! between peers over its websocket (`/ws`), answers the REST API (`/api/...`) and serves the
//! built web app at `/`.
//!
//! Rooms, from the ground up: [`core`] (everything the tracker knows, sans-IO: the swarm of
//! [`swarm_core::swarm::Swarm`], sessions with their outboxes and rate budgets, address
//! accounting, timers), [`persistence`] (the durable index), [`net`] (client addresses, ICE servers), [`driver`] (the core behind its
//! one lock, with what the layers above share), [`cluster`] (several nodes through NATS),
//! [`app`] (the driver beside the cluster membership), [`transport`] (websocket peers, STUN,
//! relay frames), [`http`] (the server, the REST API, metrics, the web app), and `serve`
//! (starts the tracker, runs its timer loop, stops it); [`config`] and [`settings`].

pub mod app;
pub mod cluster;
pub mod config;
pub mod core;
pub mod driver;
pub mod http;
pub mod net;
pub mod persistence;
mod serve;
pub mod settings;
pub mod transport;

pub use app::AppState;
pub use config::{Config, Limits};
pub use core::NodeLink;
pub use core::{limits, outbox};
pub use driver::{Counters, Shared};
pub use http::router;
pub use http::web;
pub use net::{client_addr, conns, ice, relay};
pub use persistence::index;
pub use serve::{serve, serve_with_stun};
pub use transport::{stun, websocket};
