//! How peers reach the tracker: the websocket codec ([`websocket`]), a peer's connection
//! from `hello` to close (`ws`), the STUN service ([`stun`]).

pub mod stun;
pub mod websocket;
pub(crate) mod ws;
