//! The peer's links, as plain data: one fetching link per remote peer (shared by every
//! download that uses that peer), the links other peers opened to fetch from this one, and
//! the peers left alone for a while.
//!
//! A fetching link is *ready* (requests may go out) once its data channel is open, or once
//! its requests may go through the tracker relay: after the grace period, at once for a
//! relay-only peer, or when its WebRTC attempt failed. Requests go over the channel when it
//! is open, else through the relay (relay-then-upgrade); a channel that fails falls back to
//! the relay. The decisions that use this table live in the peer core's fetch module.

use super::config::{LINK_IDLE_MS, LOST_COOLDOWN_MS};
use super::{DownloadId, LinkId};
use crate::{LinkPath, PathReport, PeerId};
use std::collections::{BTreeSet, HashMap};

/// The WebRTC side of a fetching link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// Dialled at this time, not open yet.
    Trying {
        since: u64,
    },
    Open(LinkPath),
    /// Failed, closed or never tried.
    None,
}

/// A fetching link to one remote peer.
#[derive(Debug)]
pub struct OutLink {
    pub link: LinkId,
    pub direct: Direct,
    /// Requests may go through the relay.
    pub relay: bool,
    /// (download, slot) pairs using this link.
    pub users: BTreeSet<(DownloadId, usize)>,
    pub started: u64,
    /// When the last user left (for closing idle links).
    pub idle_since: u64,
}

impl OutLink {
    pub fn ready(&self) -> bool {
        matches!(self.direct, Direct::Open(_)) || self.relay
    }

    /// The path requests take now.
    pub fn path(&self) -> Option<LinkPath> {
        match (self.direct, self.relay) {
            (Direct::Open(p), _) => Some(p),
            (_, true) => Some(LinkPath::Relay),
            _ => None,
        }
    }
}

/// A link another peer opened to fetch from this one.
#[derive(Debug)]
pub struct InLink {
    pub peer: PeerId,
    /// The remote's number for it (in signals).
    pub conn: u64,
    pub path: Option<LinkPath>,
}

/// Every link of the peer.
#[derive(Debug, Default)]
pub struct Links {
    pub out: HashMap<PeerId, OutLink>,
    /// Fetching links by number.
    pub out_ids: HashMap<LinkId, PeerId>,
    pub inbound: HashMap<LinkId, InLink>,
    pub inbound_ids: HashMap<(PeerId, u64), LinkId>,
    /// Peers whose link failed, or that the tracker says are gone, and when.
    pub lost: HashMap<PeerId, u64>,
    /// Bytes of the chunk protocol received, by path.
    pub bytes_by_path: [u64; 4],
    next_link: LinkId,
    /// Deadlines of links still trying (grace, timeout): the earliest.
    pub next_check: Option<u64>,
}

impl Links {
    /// A fresh link number: not colliding with the remote's numbers for links it opened (they
    /// live in another map anyway), and exact in JavaScript numbers.
    pub fn new_id(&mut self) -> LinkId {
        self.next_link += 1;
        self.next_link
    }

    /// Numbers new links after `base` (see [`super::Peer::number_links_after`]).
    pub fn number_after(&mut self, base: LinkId) {
        self.next_link = base;
    }

    /// Numbers links from the time this core first connects (1024 per millisecond before it),
    /// if none was handed out yet. A relay answer is taken only for the link number it names:
    /// answers still on their way to an earlier run of this peer (same id, restarted) then
    /// name numbers this run never uses, instead of 1, 2, … again, and are not taken for
    /// answers to this run's requests (whose numbers also start again).
    pub fn number_from(&mut self, now_ms: u64) {
        if self.next_link == 0 {
            self.next_link = (now_ms % (1 << 42)) << 10;
        }
    }

    pub fn is_lost(&self, peer: &PeerId, now: u64) -> bool {
        self.lost.get(peer).is_some_and(|at| now.saturating_sub(*at) < LOST_COOLDOWN_MS)
    }

    pub fn count_bytes(&mut self, path: LinkPath, n: usize) {
        let i = LinkPath::ALL.iter().position(|p| *p == path).expect("listed");
        self.bytes_by_path[i] += n as u64;
    }

    /// The path of a link (fetching or serving), if known.
    pub fn path_of(&self, link: LinkId) -> Option<LinkPath> {
        match self.out_ids.get(&link) {
            Some(peer) => self.out.get(peer).and_then(|l| l.path()),
            None => self.inbound.get(&link).and_then(|l| l.path),
        }
    }

    pub fn deadline(&self) -> Option<u64> {
        let idle = self.out.values().filter(|l| l.users.is_empty()).map(|l| l.idle_since + LINK_IDLE_MS).min();
        [self.next_check, idle].into_iter().flatten().min()
    }

    pub fn report(&self) -> PathReport {
        let mut links: HashMap<LinkPath, u32> = HashMap::new();
        for p in self.out.values().filter_map(|l| l.path()) {
            *links.entry(p).or_default() += 1;
        }
        for p in self.inbound.values().filter_map(|l| l.path) {
            *links.entry(p).or_default() += 1;
        }
        PathReport {
            links: LinkPath::ALL.iter().map(|p| (*p, links.get(p).copied().unwrap_or(0))).collect(),
            bytes_received: LinkPath::ALL.iter().zip(self.bytes_by_path).map(|(p, n)| (*p, n)).collect(),
        }
    }

    pub fn list(&self) -> Vec<(PeerId, Option<LinkPath>, &'static str)> {
        let mut v: Vec<_> = self.out.iter().map(|(p, l)| (p.clone(), l.path(), "fetch")).collect();
        v.extend(self.inbound.values().map(|l| (l.peer.clone(), l.path, "serve")));
        v
    }
}
