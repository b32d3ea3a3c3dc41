//! Identities are Ed25519 key pairs: the peer id derives from the public key, and a peer proves
//! it is that peer by signing a fresh challenge from the tracker, bound to the tracker's origin.
//! No secret ever crosses the wire (see the handshake in [`crate::wire`]).
//!
//! - [`Keypair`]: a peer's signing key. Made from 32 bytes of *seed* ([`Keypair::from_seed`]) or
//!   from a legacy identity secret ([`Keypair::from_secret`]: the seed is
//!   `SHA-256(SEED_TAG ‖ secret)`, so a peer keeps its identity file and gains a key).
//! - [`PeerId::of_key`]: `SHA-256(ID_TAG ‖ public key)[..16]` in hex (32 digits, as before).
//! - [`hello_payload`]: what a peer signs: `HELLO_TAG ‖ nonce ‖ origin`. The origin is the
//!   tracker's `scheme://host:port` *as the peer dialled it* ([`origin_of`]): a signature made
//!   for a hostile host (a link naming it) is worthless at the real tracker, which accepts only
//!   origins it knows as its own ([`origin_accepted`]).
//! - [`verify_hello`]: the tracker's check; the answer is the peer id.
//!
//! Migration: identities made before keys were a random secret whose id was
//! `SHA-256(secret)[..16]` ([`PeerId::legacy_from_secret`]). Such a peer's key is derived from
//! that secret, so its id changes once; on its first session with its configured tracker it
//! sends the old secret (which that tracker already knew) in `hello.migrate`, and the tracker
//! moves the files the old id owned to the new one.

use crate::wire::{ClientMsg, PeerId, PeerKind, PROTOCOL_VERSION};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};

/// Domain separation of the seed derived from a legacy secret.
pub const SEED_TAG: &[u8] = b"peer-pressure/identity/v2/ed25519-seed\0";
/// Domain separation of the peer id derived from a public key.
pub const ID_TAG: &[u8] = b"peer-pressure/identity/v2/peer-id\0";
/// Domain separation of a hello signature.
pub const HELLO_TAG: &[u8] = b"peer-pressure/hello/v2\0";

/// A peer's Ed25519 signing key.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.peer_id().short())
    }
}

impl Keypair {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Keypair(SigningKey::from_bytes(&seed))
    }

    /// The key of a legacy identity secret (any string; in practice 64 hex digits).
    pub fn from_secret(secret: &str) -> Self {
        Self::from_seed(seed_of_secret(secret))
    }

    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    pub fn peer_id(&self) -> PeerId {
        PeerId::of_key(&self.public())
    }

    /// The 32 seed bytes (to store the key).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Signs `message` as is.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// The `hello` signature for `nonce` from the tracker at `origin` ([`origin_of`]).
    pub fn sign_hello(&self, nonce: &[u8; 32], origin: &str) -> [u8; 64] {
        self.sign(&hello_payload(nonce, origin))
    }

    /// The `hello` of this key.
    pub fn hello(&self, kind: PeerKind, token: Option<String>) -> ClientMsg {
        ClientMsg::Hello { version: PROTOCOL_VERSION, kind, key: hex::encode(self.public()), token }
    }

    /// The `auth_proof` answering a challenge's `nonce`, for the tracker at `url` (any URL of
    /// it: its origin is taken, or the URL as given if it has none).
    pub fn proof(&self, nonce: &[u8; 32], url: &str, migrate: Option<String>) -> ClientMsg {
        let origin = origin_of(url).unwrap_or_else(|_| url.to_string());
        ClientMsg::AuthProof { signature: hex::encode(self.sign_hello(nonce, &origin)), origin, migrate }
    }
}

/// The PKCS#8 `PrivateKeyInfo` (RFC 8410) of an Ed25519 key's 32-byte seed, the form WebCrypto
/// imports a private key from: a fixed 16-byte DER header, then the seed.
pub fn pkcs8_of_seed(seed: &[u8; 32]) -> [u8; 48] {
    const HEADER: [u8; 16] = [
        0x30, 0x2e, // SEQUENCE, 46 bytes
        0x02, 0x01, 0x00, // INTEGER 0 (version)
        0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, // AlgorithmIdentifier: OID 1.3.101.112 (Ed25519)
        0x04, 0x22, 0x04, 0x20, // OCTET STRING { OCTET STRING, 32 bytes }: the seed
    ];
    let mut der = [0u8; 48];
    der[..16].copy_from_slice(&HEADER);
    der[16..].copy_from_slice(seed);
    der
}

/// The seed a legacy secret's key is made from.
pub fn seed_of_secret(secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(SEED_TAG);
    h.update(secret.as_bytes());
    h.finalize().into()
}

impl PeerId {
    /// The id of the peer with this public key.
    pub fn of_key(public: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(ID_TAG);
        h.update(public);
        PeerId(hex::encode(&h.finalize()[..16]))
    }

    /// The id of the key derived from `secret` ([`Keypair::from_secret`]).
    pub fn from_secret(secret: &str) -> Self {
        Keypair::from_secret(secret).peer_id()
    }

    /// The id a secret gave before identities were keys: `SHA-256(secret)[..16]`.
    pub fn legacy_from_secret(secret: &str) -> Self {
        PeerId(hex::encode(&Sha256::digest(secret.as_bytes())[..16]))
    }
}

/// What a `hello` signs: `HELLO_TAG ‖ nonce ‖ origin`.
pub fn hello_payload(nonce: &[u8; 32], origin: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(HELLO_TAG.len() + 32 + origin.len());
    m.extend_from_slice(HELLO_TAG);
    m.extend_from_slice(nonce);
    m.extend_from_slice(origin.as_bytes());
    m
}

/// Whether `k` is an Ed25519 public key (a point on the curve, in its compressed form).
pub fn is_public_key(k: &[u8; 32]) -> bool {
    VerifyingKey::from_bytes(k).is_ok()
}

/// Why a `hello` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("hello: key must be 64 hex digits (an Ed25519 public key)")]
    BadKey,
    #[error("hello: signature must be 128 hex digits")]
    BadSignatureFormat,
    #[error("hello: the signature does not match the key, the challenge and the origin")]
    BadSignature,
    #[error("hello: signed for {signed}, but this tracker is not known by that name (it accepts {accepted})")]
    WrongOrigin { signed: String, accepted: String },
}

/// Checks a hello's signature (hex `key` and `signature`) over `nonce` and `origin`; the
/// answer is the peer's id. The origin must be checked as this tracker's own separately
/// ([`origin_accepted`]).
pub fn verify_hello(key: &str, signature: &str, nonce: &[u8; 32], origin: &str) -> Result<PeerId, HelloError> {
    let mut k = [0u8; 32];
    hex::decode_to_slice(key, &mut k).map_err(|_| HelloError::BadKey)?;
    let mut s = [0u8; 64];
    hex::decode_to_slice(signature, &mut s).map_err(|_| HelloError::BadSignatureFormat)?;
    let vk = VerifyingKey::from_bytes(&k).map_err(|_| HelloError::BadKey)?;
    vk.verify_strict(&hello_payload(nonce, origin), &Signature::from_bytes(&s))
        .map_err(|_| HelloError::BadSignature)?;
    Ok(PeerId::of_key(&k))
}

/// Why a URL names no tracker origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("{0:?} is not a ws://, wss://, http:// or https:// URL")]
    Scheme(String),
    #[error("{0:?} has no host")]
    NoHost(String),
    #[error("{0:?} has a bad port")]
    Port(String),
}

/// The origin of a tracker URL as a peer signs it: `ws://host:port` or `wss://host:port`, the
/// scheme and host in lower case, the port always written (80 or 443 when the URL has none).
/// `http(s)://` (a page's address) counts as `ws(s)://`. Path, query and user info are dropped.
pub fn origin_of(url: &str) -> Result<String, OriginError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| OriginError::Scheme(url.into()))?;
    let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => ("ws", 80),
        "wss" | "https" => ("wss", 443),
        _ => return Err(OriginError::Scheme(url.into())),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| OriginError::NoHost(url.into()))?;
        (format!("[{}]", h.to_ascii_lowercase()), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(OriginError::NoHost(url.into()));
    }
    let port = match port {
        None | Some("") => default_port,
        Some(p) => p.parse::<u16>().map_err(|_| OriginError::Port(url.into()))?,
    };
    Ok(format!("{scheme}://{host}:{port}"))
}

/// Whether a tracker accepts a hello signed for `origin` (already normalised by the peer with
/// [`origin_of`]; anything else is refused). The rule:
/// - an origin in `known`: the tracker's configured public URLs (`--public-url`, the nodes of
///   its cluster), normalised; that is how it is known behind a reverse proxy or by a DNS name;
/// - or, on any scheme, the very socket address the connection arrived on (`local`): an IP
///   literal and port (or `localhost` on a loopback socket) that only this tracker answers on.
///
/// Never the `Host` header: whoever relays a handshake chooses it.
pub fn origin_accepted(origin: &str, known: &[String], local: Option<SocketAddr>) -> bool {
    if origin_of(origin).ok().as_deref() != Some(origin) {
        return false;
    }
    if known.iter().any(|k| origin_of(k).ok().as_deref() == Some(origin)) {
        return true;
    }
    let Some(local) = local else { return false };
    let rest = origin.split_once("://").map_or("", |(_, r)| r);
    let Some((host, port)) = rest.rsplit_once(':') else { return false };
    if port.parse::<u16>().ok() != Some(local.port()) {
        return false;
    }
    let ip = local.ip().to_canonical();
    if host == "localhost" {
        return ip.is_loopback();
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>().is_ok_and(|h| h.to_canonical() == ip)
}

/// The origins a tracker lists as accepted, for a refusal's message.
pub fn accepted_text(known: &[String], local: Option<SocketAddr>) -> String {
    let mut all: Vec<String> = known.iter().filter_map(|k| origin_of(k).ok()).collect();
    if let Some(l) = local {
        all.push(format!("ws(s)://{l}"));
    }
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn legacy_ids_are_what_they_were() {
        // The id today's binaries give the secret "s": sha256("s")[..16].
        assert_eq!(PeerId::legacy_from_secret("s").0, "043a718774c572bd8a25adbeb1bfcd5c");
        assert_ne!(PeerId::from_secret("s"), PeerId::legacy_from_secret("s"));
    }

    #[test]
    fn a_signed_hello_verifies_only_for_its_nonce_origin_and_key() {
        let k = Keypair::from_secret(&"ab".repeat(32));
        let (nonce, origin) = ([7u8; 32], "ws://127.0.0.1:8080");
        let sig = hex::encode(k.sign_hello(&nonce, origin));
        let key = hex::encode(k.public());
        assert_eq!(verify_hello(&key, &sig, &nonce, origin), Ok(k.peer_id()));
        assert_eq!(verify_hello(&key, &sig, &[8; 32], origin), Err(HelloError::BadSignature));
        assert_eq!(verify_hello(&key, &sig, &nonce, "ws://evil:8080"), Err(HelloError::BadSignature));
        let other = hex::encode(Keypair::from_secret("x").public());
        assert_eq!(verify_hello(&other, &sig, &nonce, origin), Err(HelloError::BadSignature));
        assert_eq!(verify_hello("zz", &sig, &nonce, origin), Err(HelloError::BadKey));
        assert_eq!(verify_hello(&key, "00", &nonce, origin), Err(HelloError::BadSignatureFormat));
    }

    #[test]
    fn pkcs8_wraps_a_seed_as_rfc_8410_does() {
        // RFC 8410 section 10.3: the example private key, and its seed.
        let der = "302e020100300506032b657004220420\
                   d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842";
        let seed: [u8; 32] = hex::decode(&der[32..]).unwrap().try_into().unwrap();
        assert_eq!(hex::encode(pkcs8_of_seed(&seed)), der);
    }

    #[test]
    fn origins_are_normalised() {
        assert_eq!(origin_of("ws://127.0.0.1:8080/ws").unwrap(), "ws://127.0.0.1:8080");
        assert_eq!(origin_of("WSS://Tracker.Example.org/ws?x=1").unwrap(), "wss://tracker.example.org:443");
        assert_eq!(origin_of("http://host/#/file/ab").unwrap(), "ws://host:80");
        assert_eq!(origin_of("ws://[::1]:9/ws").unwrap(), "ws://[::1]:9");
        assert_eq!(origin_of("ws://user@h:1").unwrap(), "ws://h:1");
        assert!(origin_of("ftp://h").is_err());
        assert!(origin_of("ws://:80/ws").is_err());
        assert!(origin_of("ws://h:99999").is_err());
    }

    #[test]
    fn a_tracker_accepts_its_public_urls_and_its_own_socket_only() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let known = vec!["wss://tracker.example.org/ws".to_string()];
        assert!(origin_accepted("wss://tracker.example.org:443", &known, Some(local)));
        assert!(origin_accepted("ws://127.0.0.1:8080", &known, Some(local)));
        assert!(origin_accepted("ws://localhost:8080", &[], Some(local)));
        assert!(!origin_accepted("ws://127.0.0.1:8081", &known, Some(local)), "another port is another server");
        assert!(!origin_accepted("ws://evil.example:8080", &known, Some(local)), "a name it was not given");
        assert!(!origin_accepted("ws://tracker.example.org:443", &known, Some(local)), "the scheme counts");
        assert!(!origin_accepted("ws://127.0.0.1:8080/ws", &[], Some(local)), "not normalised");
        let v6: SocketAddr = "[::ffff:10.0.0.5]:80".parse().unwrap();
        assert!(origin_accepted("ws://10.0.0.5:80", &[], Some(v6)));
        assert!(!origin_accepted("ws://localhost:80", &[], Some(v6)));
        assert!(!origin_accepted("ws://127.0.0.1:8080", &[], None));
    }

    proptest! {
        // Ed25519 in a debug build is slow: fewer cases than the default 256.
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn ids_are_32_hex_digits_and_stable(secret in any::<String>()) {
            let id = PeerId::from_secret(&secret);
            prop_assert_eq!(id.0.len(), 32);
            prop_assert_eq!(&id, &PeerId::from_secret(&secret));
            prop_assert_eq!(Keypair::from_seed(Keypair::from_secret(&secret).seed()).peer_id(), id);
        }

        #[test]
        fn a_signature_for_one_origin_never_passes_for_another(
            seed in any::<[u8; 32]>(), nonce in any::<[u8; 32]>(), a in "[a-z]{1,8}", b in "[a-z]{1,8}", port in 1u16..,
        ) {
            let k = Keypair::from_seed(seed);
            let (oa, ob) = (format!("ws://{a}:{port}"), format!("ws://{b}:{port}"));
            let sig = hex::encode(k.sign_hello(&nonce, &oa));
            let key = hex::encode(k.public());
            prop_assert_eq!(verify_hello(&key, &sig, &nonce, &oa), Ok(k.peer_id()));
            prop_assert_eq!(verify_hello(&key, &sig, &nonce, &ob).is_ok(), a == b);
        }
    }
}
