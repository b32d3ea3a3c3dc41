//! What each client address uses (live identities, files and chunks it published, its publish
//! budget), the limits the swarm does not know about that a peer's message is checked against
//! before the swarm sees it ([`swarm_core::swarm::policy`]: per identity, then per address),
//! and the state budget ([`swarm_core::swarm::budget`]): what each address is charged, the
//! check of new work, the heaviest addresses for `/metrics`. Per address, not per index
//! entry: an address's charge adds up its identities (at most `--max-identities-per-ip`) and
//! two counters, never walks the index.

use super::{Core, Refusal};
use std::collections::HashSet;
use swarm_core::swarm::budget::{BudgetRefusal, StateBudget, Work, FILE_BYTES, FILE_CHUNK_BYTES};
use swarm_core::swarm::policy::{AddrKey, PublishBudget, PublishLimits};
use swarm_core::swarm::{FileRecord, Output};
use swarm_core::{ClientMsg, FileId, PeerId, ServerMsg};

/// Addresses `/metrics` names (a bounded label set).
pub const TOP_CONSUMERS: usize = 5;

/// What one client address uses, for the per-address limits.
#[derive(Debug)]
pub struct AddrUse {
    /// Identities live from it now.
    pub identities: HashSet<PeerId>,
    /// Files in the index published from it (since start).
    pub files: u32,
    /// Chunks of those files (manifest entries).
    pub chunks: u64,
    pub budget: PublishBudget,
}

impl Core {
    /// Distinct identities live from `addr`, and whether `id` is one of them.
    pub(super) fn identities_at(&self, addr: AddrKey, id: &PeerId) -> (usize, bool) {
        self.addrs.get(&addr).map_or((0, false), |u| (u.identities.len(), u.identities.contains(id)))
    }

    /// Checks a peer's message against the state budget (claims, a publish of a new file) and
    /// the publish limits. `Ok` carries the address's publish budget after this publish, to
    /// keep ([`Core::spend_publish_budget`]) once the publish is done or has left for the node
    /// that keeps its file.
    pub fn check_peer_msg(
        &self,
        id: &PeerId,
        msg: &ClientMsg,
        mono_ms: u64,
    ) -> Result<Option<(AddrKey, PublishBudget)>, Refusal> {
        self.check_work(id, msg).map_err(|msg| Refusal { msg, over_budget: true })?;
        self.check_publish(id, msg, mono_ms).map_err(|msg| Refusal { msg, over_budget: false })
    }

    /// Keeps `addr`'s publish budget after a publish.
    pub fn spend_publish_budget(&mut self, addr: AddrKey, budget: PublishBudget) {
        if let Some(used) = self.addrs.get_mut(&addr) {
            used.budget = budget;
        }
    }

    /// New work (claims, a publish of a new file) against the state budget; `Err` is the
    /// refusal to send (with the request's id).
    fn check_work(&self, id: &PeerId, msg: &ClientMsg) -> Result<(), Box<ServerMsg>> {
        let (work, req) = match msg {
            ClientMsg::Have { chunks, full } => {
                // A full inventory replaces the claims kept: only growth counts.
                let kept = if *full { self.swarm.peer(id).map_or(0, |p| p.chunks.len()) } else { 0 };
                ((Work::Claims, Work::Claims.cost(chunks.len().saturating_sub(kept))), None)
            }
            ClientMsg::Publish { req, manifest, .. } if self.swarm.file(&manifest.file_id()).is_none() => {
                ((Work::Publish, Work::Publish.cost(manifest.chunks.len())), Some(*req))
            }
            _ => return Ok(()),
        };
        let addr = self.connected.get(id).and_then(|c| c.addr);
        self.check_budget(work, addr).map_err(|mut e| {
            if let ServerMsg::Error { req: r, .. } = e.as_mut() {
                *r = req;
            }
            e
        })
    }

    /// The publish limits: per identity, then per client address.
    fn check_publish(
        &self,
        id: &PeerId,
        msg: &ClientMsg,
        mono_ms: u64,
    ) -> Result<Option<(AddrKey, PublishBudget)>, Box<ServerMsg>> {
        let ClientMsg::Publish { req, manifest, .. } = msg else { return Ok(None) };
        let l = &self.limits;
        let limits =
            PublishLimits { max_manifest_chunks: l.max_manifest_chunks, max_files_per_peer: l.max_files_per_peer };
        let mine = self.published_by.get(id).copied().unwrap_or(0);
        let known = self.swarm.file(&manifest.file_id()).is_some();
        if let Err(refusal) = limits.check(manifest.chunks.len(), mine, known) {
            return Err(Box::new(ServerMsg::error(Some(*req), refusal.code(), refusal.to_string())));
        }
        let Some(addr) = self.connected.get(id).and_then(|c| c.addr) else { return Ok(None) };
        let Some(used) = self.addrs.get(&addr) else { return Ok(None) };
        let mut budget = used.budget;
        let (held, chunks) = ((used.files, used.chunks), manifest.chunks.len());
        match l.address().check_publish(addr, held, chunks, known, &mut budget, mono_ms) {
            Ok(()) => Ok(Some((addr, budget))),
            Err(refusal) => Err(Box::new(ServerMsg::error(Some(*req), refusal.code(), refusal.to_string()))),
        }
    }

    /// Counts new files against the address they were published from; returns the records
    /// to store durably.
    pub(super) fn files_added(&mut self, out: &[Output], addr: Option<AddrKey>) -> Vec<FileRecord> {
        let mut added = Vec::new();
        for o in out {
            if let Output::FileAdded(f) = o {
                let Some(rec) = self.swarm.file(f) else { continue };
                let chunks = rec.manifest.chunks.len() as u64;
                added.push(rec.clone());
                if let Some(a) = addr {
                    self.file_addr.insert(*f, (a, chunks));
                    if let Some(used) = self.addrs.get_mut(&a) {
                        used.files += 1;
                        used.chunks += chunks;
                    }
                }
            }
        }
        added
    }

    /// Counts removed files down from the addresses that published them; returns their ids
    /// (to remove durably).
    pub(super) fn files_removed(&mut self, out: &[Output]) -> Vec<FileId> {
        let mut removed = Vec::new();
        for o in out {
            if let Output::FileRemoved(f) = o {
                removed.push(*f);
                if let Some((a, chunks)) = self.file_addr.remove(f) {
                    if let Some(used) = self.addrs.get_mut(&a) {
                        used.files = used.files.saturating_sub(1);
                        used.chunks = used.chunks.saturating_sub(chunks);
                    }
                }
            }
        }
        removed
    }

    /// Forgets addresses with no identity, no file and a full publish budget.
    pub(super) fn prune_addrs(&mut self, mono_ms: u64) {
        let per_hour = self.limits.max_publishes_per_hour_per_ip;
        self.addrs.retain(|_, u| !u.identities.is_empty() || u.files > 0 || !u.budget.is_full(per_hour, mono_ms));
    }

    /// Estimated bytes of tracker state charged to `addr`.
    pub fn addr_bytes(&self, addr: &AddrKey) -> u64 {
        let Some(used) = self.addrs.get(addr) else { return 0 };
        let peers: u64 = used.identities.iter().map(|id| self.swarm.peer_bytes(id)).sum();
        let files = used.files as u64 * FILE_BYTES + used.chunks * FILE_CHUNK_BYTES;
        peers + files
    }

    /// Whether new `work` (with its estimated bytes) from `addr` (`None`: exempt from the
    /// per-address limits) fits the state budget; the refusal is the message the peer is sent.
    pub(super) fn check_budget(&self, work: (Work, u64), addr: Option<AddrKey>) -> Result<(), Box<ServerMsg>> {
        let budget = self.limits.budget();
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
