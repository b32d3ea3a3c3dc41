//! The ICE servers the tracker hands every peer in `welcome`: its own STUN service first
//! (`stun:HOST:PORT`, HOST being the name the peer used to reach the tracker, from the
//! request's `Host` header), then the servers the operator configured with `--ice-server`
//! (STUN, or TURN; browsers use TURN natively).
//!
//! TURN credentials are short-lived by default: with `--turn-secret` (the secret the TURN
//! server shares, coturn's `static-auth-secret`), each peer gets its own, made by the TURN
//! REST API scheme (draft-uberti-behave-turn-rest): username `EXPIRY:PEER_ID` (EXPIRY in
//! Unix seconds, `--turn-ttl` from now), credential `base64(HMAC-SHA1(secret, username))`.
//! The TURN server checks the HMAC and the expiry; a credential copied out of a peer is worth
//! nothing after the ttl, and names the peer it was given to. Static credentials
//! (`--turn-username`/`--turn-credential`, handed to every peer as they are) are used only if
//! configured that way explicitly.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use std::time::Duration;
use swarm_core::{IceServer, PeerId};

/// The shared secret of the TURN servers, and how long a peer's credentials last.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSecret {
    pub secret: String,
    pub ttl: Duration,
}

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnSecret").field("secret", &"<hidden>").field("ttl", &self.ttl).finish()
    }
}

/// How the configured TURN servers authenticate peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnAuth<'a> {
    /// Static credentials, the same for every peer.
    Static {
        username: &'a str,
        credential: &'a str,
    },
    /// Per-peer credentials made from a shared secret when a peer is welcomed.
    Secret,
    None,
}

/// `base64(HMAC-SHA1(secret, username))`.
fn turn_mac(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The TURN REST API credentials for `peer`, valid until `expires_unix` (seconds).
pub fn turn_credentials(secret: &str, peer: &PeerId, expires_unix: u64) -> (String, String) {
    let username = format!("{expires_unix}:{peer}");
    let credential = turn_mac(secret, &username);
    (username, credential)
}

/// What a TURN server checks: the credential is the username's HMAC and the expiry in the
/// username is not past at `now_unix`.
pub fn verify_turn_credentials(secret: &str, username: &str, credential: &str, now_unix: u64) -> bool {
    let Some(expiry) = username.split(':').next().and_then(|e| e.parse::<u64>().ok()) else { return false };
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(credential) else { return false };
    expiry >= now_unix && mac.verify_slice(&given).is_ok()
}

/// Fills the credentials of every TURN entry that has none (the `--turn-secret` ones) for
/// `peer`, valid for the secret's ttl from `now_unix`.
pub fn with_turn_credentials(
    mut servers: Vec<IceServer>,
    turn: Option<&TurnSecret>,
    peer: &PeerId,
    now_unix: u64,
) -> Vec<IceServer> {
    let Some(turn) = turn else { return servers };
    for s in servers.iter_mut().filter(|s| s.username.is_none() && s.urls.iter().any(|u| u.starts_with("turn"))) {
        let (username, credential) = turn_credentials(&turn.secret, peer, now_unix + turn.ttl.as_secs());
        s.username = Some(username);
        s.credential = Some(credential);
    }
    servers
}

/// Why a configured ICE server is refused at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IceUrlError {
    #[error("ICE server {0:?}: the scheme must be stun:, stuns:, turn: or turns:")]
    Scheme(String),
    #[error("ICE server {0:?}: no host")]
    Host(String),
    #[error("ICE server {0:?}: the port must be a number from 1 to 65535")]
    Port(String),
    #[error("ICE server {0:?}: only `?transport=udp` or `?transport=tcp` may follow, and only on turn(s):")]
    Query(String),
    #[error(
        "ICE server {0:?}: TURN needs --turn-secret (the TURN server's shared secret; short-lived \
         credentials per peer), or static --turn-username and --turn-credential"
    )]
    Credentials(String),
}

/// Checks one `--ice-server` URL (RFC 7064 / 7065 syntax) and builds its entry (a TURN entry
/// with [`TurnAuth::Secret`] gets its credentials per peer, [`with_turn_credentials`]).
pub fn parse_ice_server(url: &str, auth: TurnAuth<'_>) -> Result<IceServer, IceUrlError> {
    let err = |f: fn(String) -> IceUrlError| f(url.to_string());
    let (scheme, rest) = url.split_once(':').ok_or_else(|| err(IceUrlError::Scheme))?;
    let turn = match scheme {
        "stun" | "stuns" => false,
        "turn" | "turns" => true,
        _ => return Err(err(IceUrlError::Scheme)),
    };
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    if let Some(q) = query {
        if !turn || !matches!(q, "transport=udp" | "transport=tcp") {
            return Err(err(IceUrlError::Query));
        }
    }
    let (host, port) = split_host_port(hostport).ok_or_else(|| err(IceUrlError::Host))?;
    if !valid_host(host) {
        return Err(err(IceUrlError::Host));
    }
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(err(IceUrlError::Port));
        }
    }
    if !turn {
        return Ok(IceServer { urls: vec![url.to_string()], username: None, credential: None });
    }
    match auth {
        TurnAuth::Static { username: u, credential: c } if !u.is_empty() && !c.is_empty() => Ok(IceServer {
            urls: vec![url.to_string()],
            username: Some(u.to_string()),
            credential: Some(c.to_string()),
        }),
        TurnAuth::Secret => Ok(IceServer { urls: vec![url.to_string()], username: None, credential: None }),
        _ => Err(err(IceUrlError::Credentials)),
    }
}

/// `host[:port]` or `[v6][:port]` → (host without brackets... kept with them for v6, port).
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, rest) = s.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            r => Some((host, Some(r.strip_prefix(':')?))),
        };
    }
    match s.matches(':').count() {
        0 => Some((s, None)),
        1 => s.split_once(':').map(|(h, p)| (h, Some(p))),
        _ => None,
    }
}

/// A DNS name, an IPv4 address, or a bracketed IPv6 address.
fn valid_host(h: &str) -> bool {
    if let Some(inner) = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !h.is_empty() && h.len() <= 253 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// The host part of a request's `Host` header, if it is a plain name or address (anything
/// else is ignored rather than reflected).
pub fn host_of(header: &str) -> Option<&str> {
    let (host, _) = split_host_port(header.trim())?;
    valid_host(host).then_some(host)
}

/// What `welcome` carries: the tracker's own STUN service as reached through `host` (when
/// both are known), then the configured servers.
pub fn welcome_servers(host: Option<&str>, stun_port: Option<u16>, configured: &[IceServer]) -> Vec<IceServer> {
    let own = host.zip(stun_port).map(|(h, p)| IceServer { urls: vec![format!("stun:{h}:{p}")], ..no_auth() });
    own.into_iter().chain(configured.iter().cloned()).collect()
}

fn no_auth() -> IceServer {
    IceServer { urls: Vec::new(), username: None, credential: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urls_are_checked() {
        let none = TurnAuth::None;
        assert!(parse_ice_server("stun:stun.example.org:3478", none).is_ok());
        assert!(parse_ice_server("stun:198.51.100.1", none).is_ok());
        assert!(parse_ice_server("stun:[2001:db8::1]:3478", none).is_ok());
        let fixed = TurnAuth::Static { username: "u", credential: "p" };
        let t = parse_ice_server("turn:turn.example.org:3478?transport=udp", fixed).unwrap();
        assert_eq!((t.username.as_deref(), t.credential.as_deref()), (Some("u"), Some("p")));
        let t = parse_ice_server("turn:turn.example.org:3478", TurnAuth::Secret).unwrap();
        assert_eq!(t.username, None, "filled per peer");
        assert_eq!(
            parse_ice_server("turn:t.example.org", none),
            Err(IceUrlError::Credentials("turn:t.example.org".into()))
        );
        assert!(matches!(parse_ice_server("http://x", none), Err(IceUrlError::Scheme(_))));
        assert!(matches!(parse_ice_server("stun:", none), Err(IceUrlError::Host(_))));
        assert!(matches!(parse_ice_server("stun:h:99999", none), Err(IceUrlError::Port(_))));
        assert!(matches!(parse_ice_server("stun:h:1?transport=udp", none), Err(IceUrlError::Query(_))));
        assert!(matches!(parse_ice_server("stun:<script>", none), Err(IceUrlError::Host(_))));
    }

    #[test]
    fn the_own_stun_server_uses_the_host_the_peer_used() {
        assert_eq!(host_of("tracker.example.org:8080"), Some("tracker.example.org"));
        assert_eq!(host_of("198.51.100.1"), Some("198.51.100.1"));
        assert_eq!(host_of("[2001:db8::1]:80"), Some("[2001:db8::1]"));
        assert_eq!(host_of("evil\"host"), None);
        let configured = [parse_ice_server("stun:other.example.org:3478", TurnAuth::None).unwrap()];
        let w = welcome_servers(Some("198.51.100.1"), Some(8080), &configured);
        assert_eq!(w[0].urls, ["stun:198.51.100.1:8080"]);
        assert_eq!(w[1].urls, ["stun:other.example.org:3478"]);
        assert_eq!(welcome_servers(None, Some(8080), &configured).len(), 1, "no host: only the configured");
    }

    #[test]
    fn turn_rest_api_credentials_expire_and_verify() {
        // The expected credential computed independently, with Python's hmac module:
        // base64(hmac.new(b"s3cret", b"1700000600:abab…", hashlib.sha1).digest()).
        let peer = PeerId("ab".repeat(16));
        let (user, cred) = turn_credentials("s3cret", &peer, 1_700_000_600);
        assert_eq!(user, format!("1700000600:{peer}"));
        assert_eq!(cred, "7SoDdsIdzPL9EP6GGd0SLmvi628=");
        assert!(verify_turn_credentials("s3cret", &user, &cred, 1_700_000_000));
        assert!(!verify_turn_credentials("s3cret", &user, &cred, 1_700_000_601), "expired");
        assert!(!verify_turn_credentials("other", &user, &cred, 1_700_000_000), "another secret");
        let forged = format!("1900000000:{peer}");
        assert!(!verify_turn_credentials("s3cret", &forged, &cred, 1_700_000_000), "a later expiry is not signed");
        let servers = vec![
            parse_ice_server("stun:s.example", TurnAuth::None).unwrap(),
            parse_ice_server("turn:t.example", TurnAuth::Secret).unwrap(),
        ];
        let turn = TurnSecret { secret: "s3cret".into(), ttl: Duration::from_secs(600) };
        let got = with_turn_credentials(servers, Some(&turn), &peer, 1_700_000_000);
        assert_eq!(got[0].username, None, "STUN takes none");
        assert_eq!(got[1].username.as_deref(), Some(user.as_str()));
        assert_eq!(got[1].credential.as_deref(), Some(cred.as_str()));
        assert!(!format!("{turn:?}").contains("s3cret"), "the secret is not logged");
    }

    proptest! {
        #[test]
        fn no_header_or_url_panics_and_hosts_stay_plain(s in ".{0,80}") {
            if let Some(h) = host_of(&s) {
                prop_assert!(h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b)));
            }
            let _ = parse_ice_server(&s, TurnAuth::Static { username: "u", credential: "p" });
        }
    }
}
