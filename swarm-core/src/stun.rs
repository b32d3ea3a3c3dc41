//! STUN binding (RFC 8489) for server-reflexive addresses, both sides, sans-IO over bytes:
//! the tracker answers binding requests ([`answer`]); a native peer asks
//! ([`BindingRequest`]) and reads its public address from the answer ([`mapped_address`]).
//! Parsing and writing are `stun-types`'; this module is the policy around them.
//!
//! Against reflection and amplification (a spoofed source makes the tracker answer a
//! victim): only well-formed binding *requests* of at most [`MAX_REQUEST_BYTES`] are
//! answered, with a success response that holds nothing but XOR-MAPPED-ADDRESS, so an answer
//! is never more than [`MAX_GROWTH`] bytes larger than the request that caused it. Requests
//! with comprehension-required attributes this side does not know, indications, responses,
//! and anything that is not STUN get no answer at all (no error responses: they would be
//! bytes sent to an address nobody proved it owns). Rate limits per source are the driver's.

use std::net::SocketAddr;
use stun_types::attribute::{AttributeStaticType, Fingerprint, Software, XorMappedAddress};
use stun_types::message::{Message, MessageClass, MessageWriteVec, TransactionId, BINDING};
use stun_types::prelude::*;

/// Largest request answered: the IPv4 minimum MTU's payload, as RFC 8489 suggests.
pub const MAX_REQUEST_BYTES: usize = 548;
/// Most bytes an answer adds over the request: a XOR-MAPPED-ADDRESS of an IPv6 address
/// (4 + 20). A request is at least a 20-byte header.
pub const MAX_GROWTH: usize = 24;

/// Whether `bytes` look like a STUN message (first two bits zero, magic cookie): lets a
/// socket shared with other protocols pick STUN out cheaply.
pub fn is_stun(bytes: &[u8]) -> bool {
    bytes.len() >= 20 && bytes[0] & 0xc0 == 0 && bytes[4..8] == [0x21, 0x12, 0xa4, 0x42]
}

/// The answer to a binding request that came from `source`, or `None` when it gets none.
pub fn answer(request: &[u8], source: SocketAddr) -> Option<Vec<u8>> {
    if request.len() > MAX_REQUEST_BYTES || !is_stun(request) {
        return None;
    }
    let msg = Message::from_bytes(request).ok()?;
    if !msg.has_class(MessageClass::Request) || !msg.has_method(BINDING) {
        return None;
    }
    // Unknown comprehension-required attributes (types below 0x8000): no answer (RFC 8489
    // would send a 420 error, which is the larger message).
    let known = [Software::TYPE, Fingerprint::TYPE];
    if msg.iter_attributes().any(|(_, a)| a.get_type().value() < 0x8000 && !known.contains(&a.get_type())) {
        return None;
    }
    let mut out = Message::builder_success(&msg, MessageWriteVec::with_capacity(request.len() + MAX_GROWTH));
    out.add_attribute(&XorMappedAddress::new(source, msg.transaction_id())).ok()?;
    Some(out.finish())
}

/// One binding request a peer sends to a STUN server; match the answer with
/// [`mapped_address`].
#[derive(Debug, Clone)]
pub struct BindingRequest {
    id: u128,
    bytes: Vec<u8>,
}

impl BindingRequest {
    /// A request with a random transaction id.
    pub fn new() -> Self {
        let msg = Message::builder_request(BINDING, MessageWriteVec::new());
        let bytes = msg.finish();
        let id = Message::from_bytes(&bytes).map(|m| u128::from(m.transaction_id())).unwrap_or_default();
        Self { id, bytes }
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// The address the server saw this request come from, if `response` answers it.
    pub fn mapped_address(&self, response: &[u8]) -> Option<SocketAddr> {
        mapped_address(response, self.id)
    }
}

impl Default for BindingRequest {
    fn default() -> Self {
        Self::new()
    }
}

/// The XOR-MAPPED-ADDRESS of a binding success response to the request with transaction
/// `id`, or `None` when `response` is anything else.
pub fn mapped_address(response: &[u8], id: u128) -> Option<SocketAddr> {
    if !is_stun(response) {
        return None;
    }
    let msg = Message::from_bytes(response).ok()?;
    let tid: TransactionId = id.into();
    if msg.transaction_id() != tid || !msg.has_class(MessageClass::Success) || !msg.has_method(BINDING) {
        return None;
    }
    Some(msg.attribute::<XorMappedAddress>().ok()?.addr(tid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_binding_request_is_answered_with_the_source_address() {
        for source in ["198.51.100.7:40000", "[2001:db8::7]:5"] {
            let source: SocketAddr = source.parse().unwrap();
            let req = BindingRequest::new();
            let answer = answer(req.bytes(), source).expect("answered");
            assert_eq!(req.mapped_address(&answer), Some(source));
            assert!(answer.len() <= req.bytes().len() + MAX_GROWTH);
            assert_eq!(BindingRequest::new().mapped_address(&answer), None, "another transaction's answer");
        }
    }

    #[test]
    fn responses_indications_and_oversized_requests_get_no_answer() {
        let src: SocketAddr = "198.51.100.7:1".parse().unwrap();
        let req = BindingRequest::new();
        let resp = answer(req.bytes(), src).unwrap();
        assert_eq!(answer(&resp, src), None, "a response is not answered");
        let ind = Message::builder_indication(BINDING, MessageWriteVec::new()).finish();
        assert_eq!(answer(&ind, src), None);
        let mut big = Message::builder_request(BINDING, MessageWriteVec::new());
        big.add_attribute(&Software::new(&"x".repeat(600)).unwrap()).unwrap();
        assert_eq!(answer(&big.finish(), src), None, "oversized");
        assert_eq!(answer(b"GET / HTTP/1.1\r\n\r\n......", src), None);
    }

    #[test]
    fn unknown_comprehension_required_attributes_get_no_answer() {
        let mut req = BindingRequest::new().bytes().to_vec();
        // A USERNAME-like attribute type 0x0006 with 4 bytes: not known here.
        req.extend_from_slice(&[0x00, 0x06, 0x00, 0x04, b'a', b'b', b'c', b'd']);
        req[2..4].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(answer(&req, "198.51.100.7:1".parse().unwrap()), None);
    }

    proptest! {
        #[test]
        fn no_input_is_amplified_or_panics(bytes in prop::collection::vec(any::<u8>(), 0..700), cookie in any::<bool>()) {
            let mut bytes = bytes;
            if cookie && bytes.len() >= 20 {
                bytes[0] &= 0x3f;
                bytes[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            }
            let src: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
            if let Some(a) = answer(&bytes, src) {
                prop_assert!(a.len() <= bytes.len() + MAX_GROWTH);
            }
            let _ = mapped_address(&bytes, 7);
        }
    }
}
