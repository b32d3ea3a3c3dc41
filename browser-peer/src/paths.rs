//! Which way a data channel's bytes travel: the pure decisions behind "peer-to-peer across
//! real networks" that need the browser's stats, kept free of web APIs so they are unit-tested
//! natively (`cargo test -p browser-peer --lib`). When a link stops waiting for WebRTC
//! (relay, then upgrade) and what the tracker hears about paths are the peer core's
//! (`swarm_core::peer`).
//!
//! - **Path of a data channel**: from `RTCPeerConnection.getStats()`, the selected candidate
//!   pair (the transport's `selectedCandidatePairId`, else a nominated succeeded pair, else
//!   Firefox's `selected` pair) and the `candidateType` of its two candidates
//!   ([`path_from_stats`]). A link that carries requests through the tracker is
//!   [`LinkPath::Relay`].
//! - **Bytes by path** ([`PathCounters`]), for the page.
//! - **Remote candidates** as signalled by any peer (browsers, str0m) are normalised before
//!   `addIceCandidate` ([`normalize_candidate`]).

use std::cell::Cell;

use swarm_core::wire::LinkPath;

/// The path a candidate of this `candidateType` stands for, alone.
pub fn candidate_path(candidate_type: &str) -> Option<LinkPath> {
    match candidate_type {
        "host" => Some(LinkPath::DirectHost),
        "srflx" | "prflx" => Some(LinkPath::DirectReflexive),
        "relay" => Some(LinkPath::Turn),
        _ => None,
    }
}

/// The path of a candidate pair: through TURN if either end is relayed; between hosts if
/// either end's address is on the loopback network (both peers on one machine); through a NAT
/// if either end is reflexive; between host addresses otherwise. `None` if neither type is
/// known.
///
/// The loopback rule matters because Chromium, when the page may not enumerate interfaces,
/// sends from an any-address socket: to a peer on 127.0.0.1 its packets leave from 127.0.0.1,
/// which matches none of its candidates, so its own end of the pair shows as peer-reflexive
/// (address hidden) although no NAT is crossed.
pub fn pair_path(local: Candidate<'_>, remote: Candidate<'_>) -> Option<LinkPath> {
    let paths: Vec<LinkPath> = [local.kind, remote.kind].into_iter().flatten().filter_map(candidate_path).collect();
    if paths.is_empty() {
        None
    } else if paths.contains(&LinkPath::Turn) {
        Some(LinkPath::Turn)
    } else if [local.address, remote.address].into_iter().flatten().any(is_loopback) {
        Some(LinkPath::DirectHost)
    } else if paths.contains(&LinkPath::DirectReflexive) {
        Some(LinkPath::DirectReflexive)
    } else {
        Some(LinkPath::DirectHost)
    }
}

/// One end of a candidate pair: its `candidateType` and address, as far as the stats tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub kind: Option<&'a str>,
    pub address: Option<&'a str>,
}

impl<'a> Candidate<'a> {
    pub fn new(kind: &'a str, address: &'a str) -> Self {
        Self { kind: Some(kind), address: Some(address) }
    }
}

/// Whether `address` (an IP, maybe in brackets) is on the loopback network.
fn is_loopback(address: &str) -> bool {
    address.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One entry of an `RTCStatsReport`, reduced to what [`path_from_stats`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsEntry {
    pub id: String,
    /// The stats `type`: `transport`, `candidate-pair`, `local-candidate`, `remote-candidate`, …
    pub kind: String,
    /// `transport.selectedCandidatePairId`.
    pub selected_pair_id: Option<String>,
    /// `candidate-pair.localCandidateId` / `remoteCandidateId`.
    pub local_candidate_id: Option<String>,
    pub remote_candidate_id: Option<String>,
    /// `candidate-pair.state` (`succeeded`, `in-progress`, …).
    pub state: Option<String>,
    pub nominated: bool,
    /// `candidate-pair.selected` (Firefox only).
    pub selected: bool,
    /// `*-candidate.candidateType`: `host`, `srflx`, `prflx` or `relay`.
    pub candidate_type: Option<String>,
    /// `*-candidate.address` / `port` / `protocol` (for the logs).
    pub address: Option<String>,
    pub port: Option<u32>,
    pub protocol: Option<String>,
}

/// The pair the connection sends on: the transport's selected pair; else a pair marked
/// `selected`; else a nominated pair that succeeded.
pub fn selected_pair(entries: &[StatsEntry]) -> Option<&StatsEntry> {
    let by_id = |id: &str| entries.iter().find(|e| e.kind == "candidate-pair" && e.id == id);
    entries
        .iter()
        .filter(|e| e.kind == "transport")
        .filter_map(|t| t.selected_pair_id.as_deref())
        .find_map(by_id)
        .or_else(|| entries.iter().find(|e| e.kind == "candidate-pair" && e.selected))
        .or_else(|| {
            entries
                .iter()
                .find(|e| e.kind == "candidate-pair" && e.nominated && e.state.as_deref() == Some("succeeded"))
        })
}

/// The path of a data channel, from its connection's stats; `None` while no pair is selected.
pub fn path_from_stats(entries: &[StatsEntry]) -> Option<LinkPath> {
    let pair = selected_pair(entries)?;
    let candidate = |id: Option<&str>, kind: &str| {
        let e = id.and_then(|id| entries.iter().find(|e| e.id == id && e.kind == kind));
        Candidate {
            kind: e.and_then(|e| e.candidate_type.as_deref()),
            address: e.and_then(|e| e.address.as_deref()).filter(|a| !a.is_empty()),
        }
    };
    pair_path(
        candidate(pair.local_candidate_id.as_deref(), "local-candidate"),
        candidate(pair.remote_candidate_id.as_deref(), "remote-candidate"),
    )
}

/// The selected pair in words, for the logs: `srflx 198.51.100.4:5000/udp -> host
/// 203.0.113.9:6000/udp` (local end first; Chromium hides some local addresses).
pub fn describe_selected_pair(entries: &[StatsEntry]) -> Option<String> {
    let pair = selected_pair(entries)?;
    let describe = |id: Option<&str>| {
        let c = id.and_then(|id| entries.iter().find(|e| e.id == id && e.kind.ends_with("-candidate")));
        match c {
            Some(c) => format!(
                "{} {}:{}/{}",
                c.candidate_type.as_deref().unwrap_or("?"),
                c.address.as_deref().map(|a| if a.is_empty() { "(hidden)" } else { a }).unwrap_or("?"),
                c.port.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                c.protocol.as_deref().unwrap_or("?"),
            ),
            None => "?".into(),
        }
    };
    Some(format!(
        "{} -> {}",
        describe(pair.local_candidate_id.as_deref()),
        describe(pair.remote_candidate_id.as_deref())
    ))
}

/// A remote ICE candidate as `addIceCandidate` takes it: one `candidate:…` line without the
/// SDP `a=` prefix or line ending (str0m and browsers trickle `candidate:…`; some peers send
/// the SDP attribute line). `None` for anything else; an empty line (end of candidates) stays
/// empty.
pub fn normalize_candidate(line: &str) -> Option<String> {
    let line = line.trim();
    let line = line.strip_prefix("a=").unwrap_or(line);
    if line.is_empty() {
        return Some(String::new());
    }
    (line.starts_with("candidate:") && !line.contains(['\r', '\n'])).then(|| line.to_string())
}

/// The index of a path in per-path arrays (the order of [`LinkPath::ALL`]).
pub fn index(path: LinkPath) -> usize {
    match path {
        LinkPath::DirectHost => 0,
        LinkPath::DirectReflexive => 1,
        LinkPath::Turn => 2,
        LinkPath::Relay => 3,
    }
}

/// Bytes received by path since the page loaded: every message that arrived on a data channel
/// (under that channel's path) or through the tracker relay.
#[derive(Debug, Default)]
pub struct PathCounters {
    received: [Cell<u64>; 4],
}

impl PathCounters {
    pub fn add(&self, path: LinkPath, bytes: u64) {
        let c = &self.received[index(path)];
        c.set(c.get() + bytes);
    }

    pub fn get(&self, path: LinkPath) -> u64 {
        self.received[index(path)].get()
    }

    /// All four, in the order of [`LinkPath::ALL`].
    pub fn snapshot(&self) -> [u64; 4] {
        LinkPath::ALL.map(|p| self.get(p))
    }
}

/// How the page names a path: `direct (host)`, `direct (through NAT)`, `TURN`, `tracker relay`.
pub fn label(path: LinkPath) -> &'static str {
    match path {
        LinkPath::DirectHost => "direct (host)",
        LinkPath::DirectReflexive => "direct (through NAT)",
        LinkPath::Turn => "TURN server",
        LinkPath::Relay => "tracker relay",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str, kind: &str, t: &str) -> StatsEntry {
        StatsEntry {
            id: id.into(),
            kind: kind.into(),
            candidate_type: Some(t.into()),
            address: Some("198.51.100.7".into()),
            ..Default::default()
        }
    }

    fn pair(id: &str, local: &str, remote: &str, state: &str, nominated: bool) -> StatsEntry {
        StatsEntry {
            id: id.into(),
            kind: "candidate-pair".into(),
            local_candidate_id: Some(local.into()),
            remote_candidate_id: Some(remote.into()),
            state: Some(state.into()),
            nominated,
            ..Default::default()
        }
    }

    fn transport(selected: Option<&str>) -> StatsEntry {
        StatsEntry {
            id: "T01".into(),
            kind: "transport".into(),
            selected_pair_id: selected.map(Into::into),
            ..Default::default()
        }
    }

    /// A report like Chromium's: host, srflx and relay local candidates, two remote ones.
    fn chromium_report(selected: Option<&str>) -> Vec<StatsEntry> {
        vec![
            transport(selected),
            cand("L-host", "local-candidate", "host"),
            cand("L-srflx", "local-candidate", "srflx"),
            cand("L-relay", "local-candidate", "relay"),
            cand("R-host", "remote-candidate", "host"),
            cand("R-srflx", "remote-candidate", "srflx"),
            pair("P-hh", "L-host", "R-host", "failed", false),
            pair("P-ss", "L-srflx", "R-srflx", "succeeded", true),
            pair("P-rs", "L-relay", "R-srflx", "succeeded", false),
        ]
    }

    #[test]
    fn candidate_types_map_to_paths() {
        assert_eq!(candidate_path("host"), Some(LinkPath::DirectHost));
        assert_eq!(candidate_path("srflx"), Some(LinkPath::DirectReflexive));
        assert_eq!(candidate_path("prflx"), Some(LinkPath::DirectReflexive));
        assert_eq!(candidate_path("relay"), Some(LinkPath::Turn));
        assert_eq!(candidate_path("bogus"), None);
    }

    #[test]
    fn a_pair_takes_the_path_of_its_most_indirect_end() {
        let c = Candidate::new;
        let kind = |k| Candidate { kind: Some(k), address: None };
        assert_eq!(pair_path(c("host", "192.168.1.2"), c("host", "192.168.1.3")), Some(LinkPath::DirectHost));
        assert_eq!(pair_path(c("host", "10.0.0.2"), c("srflx", "203.0.113.9")), Some(LinkPath::DirectReflexive));
        assert_eq!(pair_path(c("srflx", "198.51.100.4"), c("host", "203.0.113.9")), Some(LinkPath::DirectReflexive));
        assert_eq!(pair_path(kind("prflx"), c("host", "203.0.113.9")), Some(LinkPath::DirectReflexive));
        assert_eq!(pair_path(c("srflx", "198.51.100.4"), c("relay", "203.0.113.9")), Some(LinkPath::Turn));
        assert_eq!(pair_path(kind("relay"), kind("host")), Some(LinkPath::Turn));
        assert_eq!(pair_path(Candidate::default(), kind("host")), Some(LinkPath::DirectHost));
        assert_eq!(pair_path(Candidate::default(), Candidate::default()), None);
    }

    #[test]
    fn a_pair_on_the_loopback_network_is_direct_host() {
        // What Chromium reports for a native peer on 127.0.0.1: its own end peer-reflexive
        // with the address hidden (an any-address socket), the peer's end a loopback host.
        let local = Candidate { kind: Some("prflx"), address: None };
        assert_eq!(pair_path(local, Candidate::new("host", "127.0.0.1")), Some(LinkPath::DirectHost));
        assert_eq!(
            pair_path(Candidate::new("srflx", "127.0.0.1"), Candidate::new("host", "127.0.0.1")),
            Some(LinkPath::DirectHost)
        );
        assert_eq!(pair_path(local, Candidate::new("prflx", "[::1]")), Some(LinkPath::DirectHost));
        // A TURN server on the same machine is still TURN.
        assert_eq!(
            pair_path(Candidate::new("relay", "127.0.0.1"), Candidate::new("host", "127.0.0.1")),
            Some(LinkPath::Turn)
        );
    }

    #[test]
    fn the_transports_selected_pair_decides() {
        assert_eq!(path_from_stats(&chromium_report(Some("P-rs"))), Some(LinkPath::Turn));
        assert_eq!(path_from_stats(&chromium_report(Some("P-ss"))), Some(LinkPath::DirectReflexive));
    }

    #[test]
    fn without_a_selected_pair_id_the_nominated_succeeded_pair_decides() {
        assert_eq!(path_from_stats(&chromium_report(None)), Some(LinkPath::DirectReflexive));
        // A selected id that names no pair in the report falls back the same way.
        assert_eq!(path_from_stats(&chromium_report(Some("gone"))), Some(LinkPath::DirectReflexive));
    }

    #[test]
    fn firefox_marks_the_selected_pair() {
        let mut r = vec![
            cand("a", "local-candidate", "host"),
            cand("b", "remote-candidate", "host"),
            cand("c", "remote-candidate", "srflx"),
            pair("p1", "a", "c", "succeeded", true),
            pair("p2", "a", "b", "succeeded", true),
        ];
        r[4].selected = true;
        assert_eq!(path_from_stats(&r), Some(LinkPath::DirectHost));
    }

    #[test]
    fn no_path_before_a_pair_works() {
        let r = vec![
            transport(None),
            cand("a", "local-candidate", "host"),
            cand("b", "remote-candidate", "host"),
            pair("p", "a", "b", "in-progress", false),
        ];
        assert_eq!(path_from_stats(&r), None);
        assert_eq!(path_from_stats(&[]), None);
    }

    #[test]
    fn chromium_to_a_native_peer_on_loopback_is_direct_host() {
        // As logged by the page against a native peer on 127.0.0.1.
        let mut local = cand("a", "local-candidate", "prflx");
        local.address = Some(String::new());
        let mut remote = cand("b", "remote-candidate", "host");
        remote.address = Some("127.0.0.1".into());
        let r = vec![transport(Some("p")), local, remote, pair("p", "a", "b", "succeeded", true)];
        assert_eq!(path_from_stats(&r), Some(LinkPath::DirectHost));
        assert_eq!(describe_selected_pair(&r).unwrap(), "prflx (hidden):?/? -> host 127.0.0.1:?/?");
    }

    #[test]
    fn candidates_are_normalized_for_add_ice_candidate() {
        let str0m = "candidate:1 1 udp 1694498815 203.0.113.7 40123 typ srflx raddr 10.0.0.2 rport 40123";
        assert_eq!(normalize_candidate(str0m).as_deref(), Some(str0m));
        assert_eq!(normalize_candidate(&format!("a={str0m}\r\n")).as_deref(), Some(str0m));
        assert_eq!(normalize_candidate("").as_deref(), Some(""));
        assert_eq!(normalize_candidate("not a candidate"), None);
        assert_eq!(normalize_candidate("candidate:1 1 udp 1 1.2.3.4 5 typ host\r\na=evil"), None);
    }

    #[test]
    fn counters_cover_every_path() {
        let c = PathCounters::default();
        c.add(LinkPath::DirectHost, 10);
        c.add(LinkPath::Relay, 5);
        c.add(LinkPath::DirectHost, 1);
        assert_eq!(c.snapshot(), [11, 0, 0, 5]);
    }
}
