//! The ICE servers the tracker hands every peer in `welcome`: its own STUN service first
//! (`stun:HOST:PORT`, HOST being the name the peer used to reach the tracker, from the
//! request's `Host` header), then the servers the operator configured with `--ice-server`
//! (STUN, or TURN with `--turn-username`/`--turn-credential`; browsers use TURN natively).

use swarm_core::IceServer;

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
    #[error("ICE server {0:?}: TURN needs --turn-username and --turn-credential")]
    Credentials(String),
}

/// Checks one `--ice-server` URL (RFC 7064 / 7065 syntax) and builds its entry.
pub fn parse_ice_server(url: &str, username: Option<&str>, credential: Option<&str>) -> Result<IceServer, IceUrlError> {
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
    match (username, credential) {
        (Some(u), Some(c)) if !u.is_empty() && !c.is_empty() => Ok(IceServer {
            urls: vec![url.to_string()],
            username: Some(u.to_string()),
            credential: Some(c.to_string()),
        }),
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
        assert!(parse_ice_server("stun:stun.example.org:3478", None, None).is_ok());
        assert!(parse_ice_server("stun:198.51.100.1", None, None).is_ok());
        assert!(parse_ice_server("stun:[2001:db8::1]:3478", None, None).is_ok());
        let t = parse_ice_server("turn:turn.example.org:3478?transport=udp", Some("u"), Some("p")).unwrap();
        assert_eq!((t.username.as_deref(), t.credential.as_deref()), (Some("u"), Some("p")));
        assert_eq!(
            parse_ice_server("turn:t.example.org", None, None),
            Err(IceUrlError::Credentials("turn:t.example.org".into()))
        );
        assert!(matches!(parse_ice_server("http://x", None, None), Err(IceUrlError::Scheme(_))));
        assert!(matches!(parse_ice_server("stun:", None, None), Err(IceUrlError::Host(_))));
        assert!(matches!(parse_ice_server("stun:h:99999", None, None), Err(IceUrlError::Port(_))));
        assert!(matches!(parse_ice_server("stun:h:1?transport=udp", None, None), Err(IceUrlError::Query(_))));
        assert!(matches!(parse_ice_server("stun:<script>", None, None), Err(IceUrlError::Host(_))));
    }

    #[test]
    fn the_own_stun_server_uses_the_host_the_peer_used() {
        assert_eq!(host_of("tracker.example.org:8080"), Some("tracker.example.org"));
        assert_eq!(host_of("198.51.100.1"), Some("198.51.100.1"));
        assert_eq!(host_of("[2001:db8::1]:80"), Some("[2001:db8::1]"));
        assert_eq!(host_of("evil\"host"), None);
        let configured = [parse_ice_server("stun:other.example.org:3478", None, None).unwrap()];
        let w = welcome_servers(Some("198.51.100.1"), Some(8080), &configured);
        assert_eq!(w[0].urls, ["stun:198.51.100.1:8080"]);
        assert_eq!(w[1].urls, ["stun:other.example.org:3478"]);
        assert_eq!(welcome_servers(None, Some(8080), &configured).len(), 1, "no host: only the configured");
    }

    proptest! {
        #[test]
        fn no_header_or_url_panics_and_hosts_stay_plain(s in ".{0,80}") {
            if let Some(h) = host_of(&s) {
                prop_assert!(h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b)));
            }
            let _ = parse_ice_server(&s, Some("u"), Some("p"));
        }
    }
}
