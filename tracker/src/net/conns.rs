//! TCP connections counted at accept, before a byte of HTTP is read: a global cap
//! (`--max-connections`) and a cap per client address (`--max-conns-per-ip`, an IPv6 /64
//! counting as one address, [`swarm_core::swarm::policy::addr_key`]). A connection over
//! either is answered a short `503` (written without waiting, never read from) and closed at
//! once, and counted in `pp_connections_refused_total`.
//!
//! The address counted at accept is the TCP peer's. A reverse proxy the operator trusts
//! (`--trusted-proxy`) carries many clients on its connections, so it is not capped per
//! address here; its clients are counted by the address it forwards, at the websocket
//! upgrade ([`crate::driver::Shared::ip_slot`]). The global cap applies to every connection.
//!
//! A [`ConnPermit`] holds one connection's place until the connection ends: the HTTP
//! connection's task holds it, and an upgraded websocket's task holds it after that (it is
//! handed over in the request's extensions).

use crate::net::client_addr::TrustedProxies;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use swarm_core::swarm::policy::{addr_key, AddrKey};

/// Why a connection was refused at accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnRefused {
    #[error("the tracker has {0} connections open, its limit; try again later")]
    Full(usize),
    #[error("too many connections from {addr} (at most {max})")]
    PerAddress { addr: AddrKey, max: usize },
}

/// The open connections, in total and per address.
#[derive(Debug)]
pub struct ConnTable {
    max_total: usize,
    max_per_addr: usize,
    /// Peers not capped per address (trusted proxies).
    proxies: TrustedProxies,
    counts: Mutex<Counts>,
    /// Connections refused at accept, by reason.
    pub refused_full: AtomicU64,
    pub refused_per_addr: AtomicU64,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_addr: HashMap<AddrKey, u32>,
}

/// One connection's place in the [`ConnTable`]; given back when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct ConnPermit(#[allow(dead_code)] Arc<Held>);

#[derive(Debug)]
struct Held {
    table: Arc<ConnTable>,
    addr: Option<AddrKey>,
}

impl ConnTable {
    /// `0` for either cap: no limit.
    pub fn new(max_total: usize, max_per_addr: usize, proxies: TrustedProxies) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_addr,
            proxies,
            counts: Mutex::default(),
            refused_full: AtomicU64::new(0),
            refused_per_addr: AtomicU64::new(0),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a connection from `peer`, or says which cap it is over.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<ConnPermit, ConnRefused> {
        let addr = (!self.proxies.contains(peer)).then(|| addr_key(peer.to_canonical()));
        let mut c = self.counts();
        if self.max_total > 0 && c.total >= self.max_total {
            self.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(ConnRefused::Full(self.max_total));
        }
        if let Some(a) = addr {
            let n = c.per_addr.entry(a).or_insert(0);
            if self.max_per_addr > 0 && *n as usize >= self.max_per_addr {
                if *n == 0 {
                    c.per_addr.remove(&a);
                }
                self.refused_per_addr.fetch_add(1, Ordering::Relaxed);
                return Err(ConnRefused::PerAddress { addr: a, max: self.max_per_addr });
            }
            *n += 1;
        }
        c.total += 1;
        Ok(ConnPermit(Arc::new(Held { table: self.clone(), addr })))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts().total
    }

    /// The Prometheus lines of the connection caps.
    pub fn metrics(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# HELP pp_connections_open TCP connections open now (HTTP and websocket).\n\
             # TYPE pp_connections_open gauge\npp_connections_open {}\n\
             # HELP pp_connections_refused_total TCP connections closed at accept, by the cap they were over.\n\
             # TYPE pp_connections_refused_total counter\n\
             pp_connections_refused_total{{reason=\"global\"}} {}\n\
             pp_connections_refused_total{{reason=\"per_address\"}} {}\n",
            self.open(),
            g(&self.refused_full),
            g(&self.refused_per_addr),
        )
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut c = self.table.counts();
        c.total -= 1;
        if let Some(a) = self.addr {
            if let Some(n) = c.per_addr.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    c.per_addr.remove(&a);
                }
            }
        }
    }
}

/// The answer to a refused connection: a complete `503` that closes it.
pub fn refusal_response(why: &ConnRefused) -> Vec<u8> {
    let body = format!("{why}\n");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\n\
         retry-after: 5\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_total_and_per_address_and_gives_places_back() {
        let t = ConnTable::new(4, 2, TrustedProxies::parse(["10.0.0.1"]).unwrap());
        let a1 = t.admit(ip("192.0.2.1")).unwrap();
        let _a2 = t.admit(ip("192.0.2.1")).unwrap();
        assert!(matches!(t.admit(ip("192.0.2.1")), Err(ConnRefused::PerAddress { max: 2, .. })));
        let _b = t.admit(ip("192.0.2.2")).unwrap();
        let p1 = t.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(t.admit(ip("10.0.0.1")).unwrap_err(), ConnRefused::Full(4), "a proxy is capped only globally");
        assert_eq!(t.open(), 4);
        drop(p1);
        let held = a1.clone();
        drop(a1);
        assert!(t.admit(ip("192.0.2.1")).is_err(), "a clone still holds the place");
        drop(held);
        let _again = t.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(t.refused_per_addr.load(Ordering::Relaxed), 2);
        assert_eq!(t.refused_full.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let t = ConnTable::new(0, 1, TrustedProxies::default());
        let _a = t.admit(ip("2001:db8:1:2::1")).unwrap();
        let e = t.admit(ip("2001:db8:1:2:ffff::9")).unwrap_err();
        assert!(e.to_string().contains("2001:db8:1:2::/64"), "{e}");
        let _b = t.admit(ip("2001:db8:1:3::1")).unwrap();
        let _c = t.admit(ip("192.0.2.7")).unwrap();
        assert!(t.admit(ip("::ffff:192.0.2.7")).is_err());
        assert!(String::from_utf8(refusal_response(&e)).unwrap().starts_with("HTTP/1.1 503"));
    }
}
