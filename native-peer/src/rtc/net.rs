//! Which local addresses a peer offers as ICE host candidates, and how a link's path is
//! named once it is up.
//!
//! Like every WebRTC stack, a peer gathers a host candidate on every usable interface
//! address (IPv4 and IPv6), so two peers on one LAN find each other directly. Skipped:
//! loopback (unless the tracker itself is on loopback: then every peer is on this machine and
//! loopback is the only address worth offering), link-local addresses (IPv4 169.254/16 has no
//! route; IPv6 fe80::/10 needs a scope id that SDP cannot carry), interfaces that are down,
//! and the bridges of container and VM managers (docker0, br-…, virbr…, vboxnet…, vmnet…),
//! which lead only to guests on this machine. `--rtc-ip` overrides all of this with one
//! address.
//!
//! One UDP socket per address and link, not one shared socket: str0m must be told the local
//! address each datagram arrived on (a wildcard socket does not say), and two links to the
//! same remote peer (one fetching, one serving) would share one 5-tuple on a shared socket,
//! leaving nothing to tell their DTLS records apart.

use std::net::{IpAddr, SocketAddr};
use swarm_core::LinkPath;

/// One local address candidates are gathered on, with its subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iface {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl Iface {
    /// Whether `ip` is on this interface's subnet (reachable without a router).
    pub fn same_subnet(&self, ip: IpAddr) -> bool {
        match (self.ip, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix.min(32))).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix.min(128))).unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// Interface names of container and VM bridges (see the module docs).
const VIRTUAL_BRIDGES: [&str; 6] = ["docker", "br-", "virbr", "vboxnet", "vmnet", "lxcbr"];

/// Whether an interface address is worth offering (see the module docs).
pub fn usable(name: &str, ip: IpAddr, up: bool, tracker_on_loopback: bool) -> bool {
    if tracker_on_loopback {
        return ip.is_loopback();
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    up && !ip.is_loopback()
        && !link_local
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && !VIRTUAL_BRIDGES.iter().any(|p| name.starts_with(p))
}

/// The addresses to gather host candidates on. `rtc_ip` overrides; otherwise every usable
/// interface address (falling back to loopback when there is none at all).
pub fn local_ifaces(rtc_ip: Option<IpAddr>, tracker_on_loopback: bool) -> Vec<Iface> {
    if let Some(ip) = rtc_ip {
        return vec![Iface { ip, prefix: if ip.is_ipv4() { 32 } else { 128 } }];
    }
    let mut out: Vec<Iface> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| {
            usable(
                &i.name,
                i.ip(),
                i.is_oper_up() || i.oper_status == if_addrs::IfOperStatus::Unknown,
                tracker_on_loopback,
            )
        })
        .map(|i| {
            let prefix = match &i.addr {
                if_addrs::IfAddr::V4(a) => a.prefixlen,
                if_addrs::IfAddr::V6(a) => a.prefixlen,
            };
            Iface { ip: i.ip(), prefix }
        })
        .collect();
    out.dedup();
    // A bounded offer: a machine with dozens of addresses still offers a handful.
    out.truncate(MAX_LOCAL_ADDRS);
    if out.is_empty() {
        out.push(Iface { ip: IpAddr::from([127, 0, 0, 1]), prefix: 8 });
    }
    out
}

/// Most local addresses a link gathers on.
pub const MAX_LOCAL_ADDRS: usize = 8;

/// Whether the tracker URL's host is a loopback address or `localhost`.
pub fn tracker_on_loopback(url: &str) -> bool {
    let Ok(uri) = url.parse::<tokio_tungstenite::tungstenite::http::Uri>() else { return false };
    let host = uri.host().unwrap_or_default();
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `host:port` to resolve for a `stun:host[:port]` URL (port 3478 by default), or `None` for
/// any other kind of ICE server (this peer does not speak TURN).
pub fn stun_target(url: &str) -> Option<String> {
    let rest = url.strip_prefix("stun:")?.split('?').next()?;
    if rest.is_empty() {
        return None;
    }
    if rest.starts_with('[') {
        return Some(if rest.ends_with(']') { format!("{rest}:3478") } else { rest.to_string() });
    }
    Some(if rest.contains(':') { rest.to_string() } else { format!("{rest}:3478") })
}

/// Names the path of a link that is up: data goes from local `iface` to `remote`; the remote
/// peer offered `remote_hosts` as its host candidates.
pub fn classify(iface: Iface, remote: SocketAddr, remote_hosts: &[SocketAddr]) -> LinkPath {
    if remote.ip().is_loopback() || remote_hosts.contains(&remote) || iface.same_subnet(remote.ip()) {
        // Same machine or same LAN (a browser hides its host addresses behind mDNS names, so
        // on a LAN it shows up peer-reflexive from an address on our subnet).
        LinkPath::DirectHost
    } else {
        LinkPath::DirectReflexive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_worth_offering() {
        let lan: IpAddr = "192.168.1.10".parse().unwrap();
        assert!(usable("eth0", lan, true, false));
        assert!(!usable("eth0", lan, false, false), "down");
        assert!(!usable("docker0", "172.17.0.1".parse().unwrap(), true, false));
        assert!(!usable("eth0", "169.254.3.4".parse().unwrap(), true, false));
        assert!(!usable("eth0", "fe80::1".parse().unwrap(), true, false));
        assert!(usable("eth0", "2001:db8::5".parse().unwrap(), true, false));
        assert!(!usable("lo", "127.0.0.1".parse().unwrap(), true, false));
        assert!(usable("lo", "127.0.0.1".parse().unwrap(), true, true), "tracker on loopback: loopback only");
        assert!(!usable("eth0", lan, true, true));
    }

    #[test]
    fn tracker_urls_on_loopback() {
        assert!(tracker_on_loopback("ws://127.0.0.1:8080/ws"));
        assert!(tracker_on_loopback("wss://localhost/ws"));
        assert!(tracker_on_loopback("ws://[::1]:80/ws"));
        assert!(!tracker_on_loopback("ws://198.51.100.1:8080/ws"));
        assert!(!tracker_on_loopback("wss://tracker.example.org/ws"));
    }

    #[test]
    fn stun_urls() {
        assert_eq!(stun_target("stun:198.51.100.1:8080").as_deref(), Some("198.51.100.1:8080"));
        assert_eq!(stun_target("stun:stun.example.org").as_deref(), Some("stun.example.org:3478"));
        assert_eq!(stun_target("stun:[2001:db8::1]").as_deref(), Some("[2001:db8::1]:3478"));
        assert_eq!(stun_target("stun:[2001:db8::1]:9").as_deref(), Some("[2001:db8::1]:9"));
        assert_eq!(stun_target("turn:t.example.org:3478"), None);
        assert_eq!(stun_target("stun:"), None);
    }

    #[test]
    fn paths_are_named() {
        let iface = Iface { ip: "10.1.1.2".parse().unwrap(), prefix: 24 };
        let on_lan: SocketAddr = "10.1.1.3:5000".parse().unwrap();
        let public: SocketAddr = "198.51.100.12:40000".parse().unwrap();
        assert_eq!(classify(iface, on_lan, &[]), LinkPath::DirectHost);
        assert_eq!(classify(iface, public, &[]), LinkPath::DirectReflexive);
        assert_eq!(classify(iface, public, &[public]), LinkPath::DirectHost, "a public host candidate");
        assert_eq!(classify(iface, "127.0.0.1:9".parse().unwrap(), &[]), LinkPath::DirectHost);
        let v6 = Iface { ip: "2001:db8::1".parse().unwrap(), prefix: 64 };
        assert!(v6.same_subnet("2001:db8::ffff".parse().unwrap()));
        assert!(!v6.same_subnet("2001:db9::1".parse().unwrap()));
    }
}
