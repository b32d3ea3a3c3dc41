//! The figures the core publishes for reads (`/api/stats`, `/metrics`): taken in one walk
//! under the driver's lock, by the driver, at most a few times a second however many readers
//! ask (`crate::driver::Shared::figures`), so an HTTP read never walks the swarm itself.

use super::Core;
use swarm_core::api::Stats;
use swarm_core::swarm::budget::StateBytes;
use swarm_core::swarm::claims::ClaimStats;
use swarm_core::swarm::policy::AddrKey;
use swarm_core::swarm::Swarm;
use swarm_core::{LinkPath, PathReport, PeerKind};

/// The swarm's figures at one moment.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Readers' requests this one answers: the driver's count of them when it was taken
    /// (a reader waits for figures taken after it asked).
    pub serves: u64,
    /// `/api/stats` as the swarm has it: the traffic counters and the uptime, which the driver
    /// keeps beside the core, are left at 0 (the HTTP layer fills them in as it answers).
    pub stats: Stats,
    pub state_bytes: StateBytes,
    pub top_consumers: Vec<(AddrKey, u64)>,
    pub claim_stats: ClaimStats,
    /// In a cluster: peers connected to other nodes, as this node knows them.
    pub remote_peers: u64,
    /// Entries walked to take them: the peers, and every chunk twice (against R, and for
    /// whether it has a copy).
    pub walked: usize,
}

/// Sums one field of every live peer's path report, per path (every path listed, zeros too).
fn sum_reports<T: Copy + Into<u64>>(
    s: &Swarm,
    field: impl Fn(&PathReport) -> &Vec<(LinkPath, T)>,
) -> Vec<(LinkPath, u64)> {
    LinkPath::ALL
        .iter()
        .map(|path| {
            let total = s
                .peers()
                .filter_map(|(_, p)| p.paths.as_deref())
                .flat_map(|r| field(r).iter().filter(|(q, _)| q == path).map(|(_, n)| (*n).into()))
                .fold(0u64, u64::saturating_add);
            (*path, total)
        })
        .collect()
}

impl Core {
    /// Takes the figures now (`serves`: see [`Figures::serves`]).
    pub fn figures(&self, serves: u64) -> Figures {
        let s = &self.swarm;
        let native = s.peers().filter(|(_, p)| p.kind == PeerKind::Native).count() as u64;
        let (peers, chunks) = (self.connected.len() as u64, s.chunk_count() as u64);
        let stats = Stats {
            peers,
            peers_native: native,
            peers_browser: s.peers().count() as u64 - native,
            files: s.file_count() as u64,
            chunks,
            claims: s.claims_kept() as u64,
            replication: s.config.replication as u64,
            under_replicated: s.under_replicated() as u64,
            lost: s.lost_chunks() as u64,
            orders_in_flight: s.orders().count() as u64,
            orders_issued: s.repair_stats.orders_issued,
            orders_done: s.repair_stats.orders_done,
            orders_failed: s.repair_stats.orders_failed,
            orders_expired: s.repair_stats.orders_expired,
            chunks_trimmed: s.repair_stats.chunks_trimmed,
            orphans_trimmed: s.repair_stats.orphans_trimmed,
            signals_relayed: s.stats.signals_relayed,
            errors_sent: s.stats.errors_sent,
            bad_sources_reported: s.stats.bad_sources_reported,
            reported_links: sum_reports(s, |r| &r.links),
            reported_bytes: sum_reports(s, |r| &r.bytes_received),
            trust: s.trust_stats().clone(),
            ..Stats::default()
        };
        Figures {
            serves,
            stats,
            state_bytes: s.state_bytes(),
            top_consumers: self.top_consumers(),
            claim_stats: s.claim_stats.clone(),
            remote_peers: self.homes.len() as u64,
            walked: (peers + 2 * chunks) as usize,
        }
    }
}
