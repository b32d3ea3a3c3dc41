//! Which address a request comes from, for per-address limits and logs.
//!
//! Directly connected, a client is its TCP peer address, whatever headers it sends. Behind a
//! reverse proxy (TLS in front of the tracker) every connection comes from the proxy, so the
//! tracker takes the client address from what the proxy says, but only when the TCP peer is
//! a proxy the operator trusts (`--trusted-proxy CIDR`):
//!
//! - `Forwarded` (RFC 7239) when the request has one, its `for=` nodes (quoted, bracketed
//!   IPv6 and ports handled), else
//! - `X-Forwarded-For`.
//!
//! Either lists the hops, the original client first and each proxy appending the address it
//! got the request from. Only the right end of the list was written by proxies the tracker
//! trusts; what lies to its left may have come from the client itself. So the list is read
//! from the right: trusted proxies are skipped, and the first address that is not a trusted
//! proxy is the client. If every hop is a trusted proxy, the left-most one is the client. A
//! hop that cannot be read (`unknown`, an obfuscated name, garbage) ends the walk: the
//! client is then the last trusted hop read (at worst the proxy itself), never an address
//! from further left. Bytes that are not UTF-8 only spoil the hop they are in. Nothing is
//! kept per connection: the result is one address.

use axum::http::header::{HeaderMap, FORWARDED};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::ControlFlow;

/// A `--trusted-proxy` value that is neither an address nor a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR block (like 127.0.0.1/32, 10.0.0.0/8 or fd00::/8)")]
pub struct BadCidr(pub String);

/// The reverse proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// `X-Forwarded-For` (not among `http`'s standard header names).
const X_FORWARDED_FOR: &str = "x-forwarded-for";

impl TrustedProxies {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self { nets: nets.into_iter().map(|n| canonical_net(n.trunc())).collect() }
    }

    /// Parses CIDR blocks (`10.0.0.0/8`) or single addresses (`127.0.0.1`, `::1`).
    pub fn parse<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Result<Self, BadCidr> {
        let nets = items
            .into_iter()
            .map(|s| {
                let s = s.as_ref().trim();
                s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).map_err(|_| BadCidr(s.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// 127.0.0.0/8 and ::1 (the default of the per-address limits' exemptions).
    pub fn loopback() -> Self {
        Self::parse(["127.0.0.0/8", "::1"]).expect("valid blocks")
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether `ip` is one of the trusted proxies (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address of a request whose TCP peer is `peer` (see the module docs).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let mut walk = Walk { proxies: self, client: peer };
        let forwarded = headers.get_all(FORWARDED);
        if forwarded.iter().any(|v| !v.as_bytes().trim_ascii().is_empty()) {
            // Quoted strings make splitting from the right unsafe: parse each line forwards.
            let mut hops = Vec::new();
            for line in forwarded.iter().rev() {
                hops.clear();
                forwarded_hops(&String::from_utf8_lossy(line.as_bytes()), &mut hops);
                if let ControlFlow::Break(ip) = hops.iter().rev().try_for_each(|hop| walk.step(*hop)) {
                    return ip;
                }
            }
            return walk.client;
        }
        for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
            let text = String::from_utf8_lossy(line.as_bytes());
            if let ControlFlow::Break(ip) = text.rsplit(',').try_for_each(|hop| walk.step(parse_node(hop))) {
                return ip;
            }
        }
        walk.client
    }
}

/// Reading hops from the right (nearest first).
struct Walk<'a> {
    proxies: &'a TrustedProxies,
    /// The client as far as the walk got: the last trusted hop read.
    client: IpAddr,
}

impl Walk<'_> {
    /// Takes the next hop to the left: the first one not trusted is the client; one that
    /// cannot be read ends the walk at the hop before it.
    fn step(&mut self, hop: Option<IpAddr>) -> ControlFlow<IpAddr> {
        let Some(ip) = hop else { return ControlFlow::Break(self.client) };
        self.client = ip;
        if self.proxies.contains(ip) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(ip)
        }
    }
}

/// An IPv4-mapped IPv6 block (`::ffff:10.0.0.0/104`) as the IPv4 block it means.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map(IpNet::V4).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// Appends the `for=` node of every element of one `Forwarded` header line (`None` for an
/// element without one, or one that is not an address). Commas and semicolons inside
/// quoted strings do not split.
fn forwarded_hops(text: &str, hops: &mut Vec<Option<IpAddr>>) {
    for element in split_unquoted(text, b',') {
        if element.trim().is_empty() {
            continue; // `a, , b`: empty list elements are allowed and mean nothing
        }
        let mut node = None;
        for pair in split_unquoted(element, b';') {
            let Some((name, value)) = pair.split_once('=') else { continue };
            if name.trim().eq_ignore_ascii_case("for") {
                node = Some(unquote(value.trim()).as_deref().and_then(parse_node));
                break;
            }
        }
        hops.push(node.flatten());
    }
}

/// Splits at `sep` outside double-quoted strings (a backslash escapes the next character
/// inside them). An unterminated quote runs to the end.
fn split_unquoted(text: &str, sep: u8) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut quoted = false;
    std::iter::from_fn(move || {
        if start > bytes.len() {
            return None;
        }
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b if b == sep && !quoted => {
                    let part = &text[start..i];
                    i += 1;
                    start = i;
                    return Some(part);
                }
                _ => {}
            }
            i += 1;
        }
        let part = &text[start..];
        start = bytes.len() + 1;
        Some(part)
    })
}

/// A token as it is, a quoted string without its quotes and escapes; `None` if a quote is
/// not closed.
fn unquote(value: &str) -> Option<std::borrow::Cow<'_, str>> {
    let Some(inner) = value.strip_prefix('"') else { return Some(value.into()) };
    let inner = inner.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(inner.into());
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out.into())
}

/// A node: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:8080`
/// (ports may be RFC 7239's obfuscated `_name`). `None` for `unknown`, obfuscated names and
/// anything else.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)) {
            return None;
        }
        return ip.parse::<Ipv6Addr>().ok().map(|ip| IpAddr::V6(ip).to_canonical());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (ip, port) = node.rsplit_once(':')?;
    if !valid_port(port) {
        return None;
    }
    ip.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn valid_port(port: &str) -> bool {
    match port.strip_prefix('_') {
        Some(name) => {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    #[test]
    fn parses_cidrs_and_single_addresses() {
        let t = proxies(&["10.0.0.0/8", " 127.0.0.1 ", "fd00::/8", "::1", "192.168.1.77/24"]);
        assert!(t.contains(ip("10.200.1.1")));
        assert!(t.contains(ip("127.0.0.1")));
        assert!(!t.contains(ip("127.0.0.2")));
        assert!(t.contains(ip("fd12::5")));
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("192.168.1.3")), "host bits are dropped");
        assert!(t.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped addresses match as IPv4");
        assert!(proxies(&["::ffff:10.0.0.0/104"]).contains(ip("10.1.2.3")));
        assert_eq!(TrustedProxies::parse(["10.0.0.0/33"]), Err(BadCidr("10.0.0.0/33".into())));
        assert!(TrustedProxies::parse(["nginx"]).is_err());
        assert!(TrustedProxies::parse([""]).is_err());
        assert!(TrustedProxies::default().is_empty());
    }

    #[test]
    fn untrusted_peers_are_their_own_address() {
        let t = proxies(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(t.client_ip(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(TrustedProxies::default().client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn x_forwarded_for_is_read_from_the_right() {
        let t = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        let client = |xff: &[&str]| {
            let pairs: Vec<_> = xff.iter().map(|v| ("x-forwarded-for", *v)).collect();
            t.client_ip(peer, &headers(&pairs))
        };
        assert_eq!(client(&[]), peer, "no header: the proxy itself");
        assert_eq!(client(&["198.51.100.7"]), ip("198.51.100.7"));
        assert_eq!(client(&["6.6.6.6, 198.51.100.7"]), ip("198.51.100.7"), "the client's own claim is ignored");
        assert_eq!(client(&["6.6.6.6, 198.51.100.7, 10.1.1.1"]), ip("198.51.100.7"), "trusted hops skipped");
        assert_eq!(client(&["6.6.6.6", "198.51.100.7,10.1.1.1"]), ip("198.51.100.7"), "lines in order");
        assert_eq!(client(&["10.9.9.9, 10.1.1.1"]), ip("10.9.9.9"), "all trusted: the left-most");
        assert_eq!(client(&["6.6.6.6, unknown, 10.1.1.1"]), ip("10.1.1.1"), "stops at what it cannot read");
        assert_eq!(client(&["6.6.6.6, garbage"]), peer);
        assert_eq!(client(&["198.51.100.7:4711"]), ip("198.51.100.7"));
        assert_eq!(client(&["[2001:db8::1]:4711"]), ip("2001:db8::1"));
        assert_eq!(client(&[" 2001:db8::2 "]), ip("2001:db8::2"));
        assert_eq!(client(&["::ffff:198.51.100.7"]), ip("198.51.100.7"));
    }

    #[test]
    fn forwarded_is_preferred_and_parsed_per_rfc_7239() {
        let t = proxies(&["10.0.0.0/8", "fd00::/8"]);
        let peer = ip("10.0.0.1");
        let client = |fwd: &str| t.client_ip(peer, &headers(&[("forwarded", fwd), ("x-forwarded-for", "6.6.6.6")]));
        // The examples of RFC 7239, section 4 and 7.
        assert_eq!(client("for=\"_gazonk\""), peer);
        assert_eq!(client("For=\"[2001:db8:cafe::17]:4711\""), ip("2001:db8:cafe::17"));
        assert_eq!(client("for=192.0.2.60;proto=http;by=203.0.113.43"), ip("192.0.2.60"));
        assert_eq!(client("for=192.0.2.43, for=198.51.100.17"), ip("198.51.100.17"));
        assert_eq!(client("for=192.0.2.43, for=\"[fd00::17]\""), ip("192.0.2.43"), "trusted hop skipped");
        assert_eq!(client("for=192.0.2.43, for=unknown"), peer);
        assert_eq!(client("for=\"192.0.2.43:47011\""), ip("192.0.2.43"));
        assert_eq!(client("for=192.0.2.43:_hidden"), ip("192.0.2.43"));
        assert_eq!(client("proto=https;for=\"198.51.100.1\";host=example.com"), ip("198.51.100.1"));
        assert_eq!(client("for=\"1.2.3.4, for=5.6.7.8\""), peer, "a comma inside quotes does not split");
        assert_eq!(client("for=\"\\1.2.3.4\""), ip("1.2.3.4"), "escapes in quoted strings");
        assert_eq!(client("for=9.9.9.9, proto=https"), peer, "a hop without for= is unknown");
        assert_eq!(client("for=\"unterminated"), peer);
        let two = headers(&[("forwarded", "for=1.1.1.1"), ("forwarded", "for=2.2.2.2;proto=https")]);
        assert_eq!(t.client_ip(peer, &two), ip("2.2.2.2"), "header lines in order");
        let blank = headers(&[("forwarded", " "), ("x-forwarded-for", "3.3.3.3")]);
        assert_eq!(t.client_ip(peer, &blank), ip("3.3.3.3"), "an empty Forwarded falls back to X-Forwarded-For");
    }

    #[test]
    fn bytes_that_are_not_utf8_spoil_only_their_hop() {
        let t = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(b"\xff\xfe, 198.51.100.7").unwrap());
        assert_eq!(t.client_ip(peer, &h), ip("198.51.100.7"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(b"1.2.3.\xff").unwrap());
        assert_eq!(t.client_ip(peer, &h), peer);
        let mut h = HeaderMap::new();
        h.append(FORWARDED, HeaderValue::from_bytes(b"for=\"\xff\", for=198.51.100.8").unwrap());
        assert_eq!(t.client_ip(peer, &h), ip("198.51.100.8"));
    }

    /// Header values as a client may send them: addresses, ports, brackets, quotes,
    /// separators and arbitrary bytes.
    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            any::<Ipv4Addr>().prop_map(|a| a.to_string()),
            any::<Ipv6Addr>().prop_map(|a| a.to_string()),
            any::<Ipv6Addr>().prop_map(|a| format!("\"[{a}]:80\"")),
            Just("for=".to_string()),
            Just("For=\"".to_string()),
            "[,;=\"\\\\\\[\\]: _]{1,3}",
            "[a-z0-9.:]{0,12}",
            any::<u16>().prop_map(|p| format!(":{p}")),
        ];
        prop_oneof![
            prop::collection::vec(piece, 0..12).prop_map(|v| v.concat().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..40),
        ]
    }

    /// Header lines, `true` for `Forwarded`, `false` for `X-Forwarded-For`.
    fn to_headers(values: &[(bool, Vec<u8>)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (fwd, v) in values {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                h.append(if *fwd { FORWARDED.as_str() } else { X_FORWARDED_FOR }, v);
            }
        }
        h
    }

    proptest! {
        /// Any headers: no panic, and an untrusted peer is always its own address.
        #[test]
        fn malformed_headers_never_panic_nor_spoof(
            values in prop::collection::vec((any::<bool>(), header_value()), 0..5),
            peer in any::<Ipv4Addr>(),
        ) {
            let h = to_headers(&values);
            let peer = IpAddr::V4(peer);
            let some = proxies(&["10.0.0.0/8"]);
            if !some.contains(peer) {
                prop_assert_eq!(some.client_ip(peer, &h), peer);
            }
            let all = proxies(&["0.0.0.0/0", "::/0"]);
            let got = all.client_ip(peer, &h);
            let address_like = values.iter().any(|(_, v)| v.iter().any(|b| b.is_ascii_hexdigit() || *b == b':'));
            prop_assert!(got == peer || address_like, "{got} made up from {values:?}");
        }

        /// Whatever a client sends, the address its trusted proxy appended wins.
        #[test]
        fn the_proxy_appended_address_wins(
            sent in header_value(),
            client in any::<Ipv4Addr>(),
            forwarded in any::<bool>(),
        ) {
            let t = proxies(&["10.0.0.0/8"]);
            prop_assume!(!t.contains(IpAddr::V4(client)));
            let h = if forwarded {
                // A proxy adds its own line: quotes the client left open stay in the client's.
                to_headers(&[(true, sent), (true, format!("for={client}").into_bytes())])
            } else {
                // nginx's $proxy_add_x_forwarded_for: the client's value, ", ", the address.
                let mut value = sent;
                value.extend_from_slice(format!(", {client}").as_bytes());
                to_headers(&[(false, value)])
            };
            prop_assume!(!h.is_empty());
            prop_assert_eq!(t.client_ip(ip("10.0.0.1"), &h), IpAddr::V4(client));
        }
    }
}
