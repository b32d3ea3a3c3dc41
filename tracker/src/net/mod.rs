//! What the tracker knows of the networks around it, as pure rules: which client a request
//! comes from behind the reverse proxies it trusts ([`client_addr`]), how many TCP connections
//! each address and all together may hold ([`conns`]), the ICE servers it hands peers, with
//! short-lived TURN credentials ([`ice`]), and the relay frames peers send each other through
//! it ([`relay`]).

pub mod client_addr;
pub mod conns;
pub mod ice;
pub mod relay;
