//! The state budget applied to client addresses ([`swarm_core::swarm::budget`]): what each
//! address is charged (its live identities with their claims, and the files it published),
//! the check of new work against the budget, and the heaviest addresses for `/metrics`.
//! Per address, not per index entry: an address's charge adds up its identities (at most
//! `--max-identities-per-ip`) and two counters, never walks the index.

use crate::state::Inner;
use swarm_core::swarm::budget::{BudgetRefusal, StateBudget, Work, FILE_BYTES, FILE_CHUNK_BYTES};
use swarm_core::swarm::policy::AddrKey;
use swarm_core::ServerMsg;

/// Addresses `/metrics` names (a bounded label set).
pub const TOP_CONSUMERS: usize = 5;

impl Inner {
    /// Estimated bytes of tracker state charged to `addr`.
    pub fn addr_bytes(&self, addr: &AddrKey) -> u64 {
        let Some(used) = self.addrs.get(addr) else { return 0 };
        let peers: u64 = used.identities.iter().map(|id| self.swarm.peer_bytes(id)).sum();
        let files = used.files as u64 * FILE_BYTES + used.chunks * FILE_CHUNK_BYTES;
        peers + files
    }

    /// Whether new `work` (with its estimated bytes) from `addr` (`None`: exempt from the per-address limits) fits the
    /// state budget; the refusal is the message the peer is sent.
    pub fn check_budget(
        &self,
        budget: StateBudget,
        work: (Work, u64),
        addr: Option<AddrKey>,
    ) -> Result<(), Box<ServerMsg>> {
        if budget == StateBudget::NONE {
            return Ok(());
        }
        let used = self.swarm.state_bytes().total();
        let name = addr.map(|a| a.to_string());
        let mine = addr.map(|a| self.addr_bytes(&a));
        let charged = name.as_deref().zip(mine);
        budget
            .check(work, charged, used, self.addrs.len())
            .map_err(|e: BudgetRefusal| Box::new(ServerMsg::error(None, e.code(), e.to_string())))
    }

    /// The [`TOP_CONSUMERS`] addresses charged most, heaviest first.
    pub fn top_consumers(&self) -> Vec<(AddrKey, u64)> {
        let mut all: Vec<(AddrKey, u64)> = self.addrs.keys().map(|a| (*a, self.addr_bytes(a))).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(TOP_CONSUMERS);
        all
    }
}
