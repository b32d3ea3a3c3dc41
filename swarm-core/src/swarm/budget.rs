//! What the tracker's state costs, and admission control when it nears its budget.
//!
//! - **An estimate, kept as it changes.** [`Swarm::state_bytes`] estimates the bytes each kind
//!   of state takes ([`StateBytes`]: peers, claims, files with their manifests and chunk index,
//!   verification state) from counters the swarm keeps as it changes and from map lengths: it
//!   never walks the index, so `/metrics` can ask often. The per-entry figures are the heap
//!   each entry takes, calibrated on the resident memory a tracker grew by in the `exhaust`
//!   benchmark (`loadtest/src/exhaust.rs`: about 1.2 KiB per chunk of a phantom file with its
//!   publisher's claim, allocator overhead included), and checked against the core's own
//!   growth per entry by `swarm-core/tests/state_bytes_bench.rs` (a claim: 340 resident bytes
//!   against 384 estimated; a loose claim: 477 against 528; a peer and a file take a sixth of
//!   their estimates in the core, which also cover the tracker's connection and durable-index
//!   bookkeeping of them).
//! - **Charged to someone.** A peer's share is [`Swarm::peer_bytes`] (itself and its claims);
//!   a file's is [`file_bytes`], charged to the address that published it. The tracker adds
//!   them up per client address.
//! - **Admission.** [`StateBudget::check`] decides whether new work (a new identity, a
//!   publish, claims) from an address is taken: work that would take an address over its
//!   own share is refused always; near the budget (7/8 of it) the heaviest addresses, those
//!   holding at least their even share of what is used, are refused; at the budget every new
//!   identity and publish is refused. Peers already in the swarm go on working (their downloads, their other
//!   messages): only growth is refused, with [`ErrorCode::OverBudget`].

use super::Swarm;
use crate::wire::{ErrorCode, PeerId};

/// Estimated bytes of one live peer, beside its claims (its entry, its connection's queue and
/// bookkeeping in the tracker).
pub const PEER_BYTES: u64 = 8 * 1024;
/// Estimated bytes of one claim: the peer's set entry, the chunk's holder entry and the
/// verification bookkeeping of it.
pub const CLAIM_BYTES: u64 = 384;
/// Estimated bytes a claim of a chunk no file uses (a loose claim) takes beyond
/// [`CLAIM_BYTES`]: the peer's loose entry (its made-up chunk's holder entry is new too). Measured by
/// `swarm-core/tests/state_bytes_bench.rs`: 477 resident bytes a loose claim against 340 a
/// claim of a published chunk (the estimate of a loose claim was 384: 1.24× under).
pub const LOOSE_BYTES: u64 = 144;
/// Estimated bytes of one file beside its chunks (record, name, durable-index cache).
pub const FILE_BYTES: u64 = 1024;
/// Estimated bytes of one chunk of a manifest: its id in the manifest, the chunk index entry
/// and the repair bookkeeping of it.
pub const FILE_CHUNK_BYTES: u64 = 768;
/// Estimated bytes of a chunk's origin, of its nonce pool, of a challenge in flight, of an
/// identity remembered.
pub const ORIGIN_BYTES: u64 = 96;
pub const POOL_BYTES: u64 = 320;
pub const CHALLENGE_BYTES: u64 = 160;
pub const REMEMBERED_BYTES: u64 = 256;

/// Estimated bytes of a file of `chunks` chunks (what its publisher's address is charged).
pub fn file_bytes(chunks: usize) -> u64 {
    FILE_BYTES + chunks as u64 * FILE_CHUNK_BYTES
}

/// Estimated bytes of the swarm's state, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateBytes {
    pub peers: u64,
    pub claims: u64,
    pub files: u64,
    pub trust: u64,
}

impl StateBytes {
    pub fn total(&self) -> u64 {
        self.peers + self.claims + self.files + self.trust
    }

    /// Each kind with its name (the `kind` label of `pp_state_bytes`).
    pub fn kinds(&self) -> [(&'static str, u64); 4] {
        [("peers", self.peers), ("claims", self.claims), ("files", self.files), ("trust", self.trust)]
    }
}

impl Swarm {
    /// The state's estimated size (counters and map lengths only; see the module docs).
    pub fn state_bytes(&self) -> StateBytes {
        let (origins, pools, challenges, remembered) = self.trust_sizes();
        StateBytes {
            peers: self.peers.len() as u64 * PEER_BYTES,
            claims: self.claims_total as u64 * CLAIM_BYTES + self.loose_total as u64 * LOOSE_BYTES,
            files: self.files.len() as u64 * FILE_BYTES + self.manifest_chunks as u64 * FILE_CHUNK_BYTES,
            trust: origins as u64 * ORIGIN_BYTES
                + pools as u64 * POOL_BYTES
                + challenges as u64 * CHALLENGE_BYTES
                + remembered as u64 * REMEMBERED_BYTES,
        }
    }

    /// The estimated bytes live peer `id` takes (itself and its claims; 0 if not live).
    pub fn peer_bytes(&self, id: &PeerId) -> u64 {
        self.peers
            .get(id)
            .map_or(0, |p| PEER_BYTES + p.chunks.len() as u64 * CLAIM_BYTES + p.loose.len() as u64 * LOOSE_BYTES)
    }
}

/// New work an address asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A `hello` of an identity not live yet.
    Identity,
    /// A publish of a file the index does not know.
    Publish,
    /// Claims (`have`).
    Claims,
}

impl Work {
    /// Estimated bytes of the work: a new identity; a publish of `n` chunks (the file and its
    /// publisher's claims); `n` claims.
    pub fn cost(self, n: usize) -> u64 {
        match self {
            Work::Identity => PEER_BYTES,
            Work::Publish => file_bytes(n) + n as u64 * CLAIM_BYTES,
            Work::Claims => n as u64 * CLAIM_BYTES,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Work::Identity => "identities",
            Work::Publish => "files",
            Work::Claims => "claims",
        }
    }
}

/// The state budget (bytes, estimated as [`Swarm::state_bytes`] does); 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateBudget {
    /// The whole tracker's.
    pub total: u64,
    /// One client address's share (its identities, their claims, the files it published).
    pub per_addr: u64,
}

/// Why new work was refused for the budget's sake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetRefusal {
    #[error(
        "{addr} holds {used} bytes of tracker state, its share is {max} (--state-budget-per-ip): \
         no new {noun} from it until it holds less"
    )]
    Address { addr: String, used: u64, max: u64, noun: &'static str },
    #[error(
        "the tracker's state is near its budget ({used} of {max} bytes, --state-budget) and {addr} is \
         among its heaviest users: no new {noun} from it for now"
    )]
    Heavy { addr: String, used: u64, max: u64, noun: &'static str },
    #[error("the tracker's state is at its budget ({used} of {max} bytes, --state-budget): no new {noun} for now")]
    Full { used: u64, max: u64, noun: &'static str },
}

impl BudgetRefusal {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::OverBudget
    }
}

impl StateBudget {
    pub const NONE: StateBudget = StateBudget { total: 0, per_addr: 0 };

    /// New `work` of `cost` bytes ([`Work::cost`]) from an address (`addr`: its name and the
    /// bytes it holds; `None`: exempt from the per-address limits) while the tracker holds
    /// `used` bytes over `addresses` active addresses.
    pub fn check(
        &self,
        (work, cost): (Work, u64),
        addr: Option<(&str, u64)>,
        used: u64,
        addresses: usize,
    ) -> Result<(), BudgetRefusal> {
        let noun = work.noun();
        if let Some((name, mine)) = addr {
            if self.per_addr > 0 && mine.saturating_add(cost) > self.per_addr {
                return Err(BudgetRefusal::Address { addr: name.into(), used: mine, max: self.per_addr, noun });
            }
            let near = self.total > 0 && used >= self.total / 8 * 7;
            if near && mine > 0 && mine.saturating_mul(addresses.max(1) as u64) >= used {
                return Err(BudgetRefusal::Heavy { addr: name.into(), used, max: self.total, noun });
            }
        }
        if self.total > 0 && used >= self.total && work != Work::Claims {
            return Err(BudgetRefusal::Full { used, max: self.total, noun });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::testkit::{manifest, peer, publish, trusting_swarm};
    use crate::wire::{ClientMsg, PeerKind};
    use proptest::prelude::*;

    #[test]
    fn the_estimate_follows_the_state_both_ways() {
        let mut s = trusting_swarm();
        assert_eq!(s.state_bytes().total(), 0);
        let (a, b) = (peer(1), peer(2));
        s.join(a.clone(), PeerKind::Native, 0);
        s.join(b.clone(), PeerKind::Native, 0);
        assert_eq!(s.state_bytes().peers, 2 * PEER_BYTES);
        let m = manifest(&[b"aaaa", b"bbbb", b"cccc"]);
        publish(&mut s, &a, &m, 0);
        s.handle(&b, ClientMsg::Have { chunks: m.chunks[..2].to_vec(), full: false }, 0);
        let st = s.state_bytes();
        assert_eq!(st.claims, 5 * CLAIM_BYTES);
        assert_eq!(st.files, file_bytes(3));
        assert_eq!(s.peer_bytes(&a), PEER_BYTES + 3 * CLAIM_BYTES);
        assert_eq!(s.peer_bytes(&peer(9)), 0);
        s.leave(&b, 0);
        assert_eq!(s.state_bytes().claims, 3 * CLAIM_BYTES);
        s.handle(&a, ClientMsg::Unpublish { req: 2, file: m.file_id() }, 0);
        let st = s.state_bytes();
        assert_eq!((st.claims, st.files), (0, 0));
        s.leave(&a, 0);
        assert_eq!(s.state_bytes().peers, 0);
    }

    #[test]
    fn heavy_addresses_are_refused_first() {
        let b = StateBudget { total: 8_000, per_addr: 2_000 };
        assert!(b.check((Work::Claims, 0), Some(("a", 100)), 1_000, 4).is_ok());
        assert!(b.check((Work::Publish, 1_900), Some(("a", 100)), 1_000, 4).is_ok(), "up to its share");
        let e = b.check((Work::Publish, 1_901), Some(("a", 100)), 1_000, 4).unwrap_err();
        assert!(matches!(e, BudgetRefusal::Address { .. }), "not beyond, cost included");
        assert_eq!(Work::Publish.cost(10), file_bytes(10) + 10 * CLAIM_BYTES);
        let e = b.check((Work::Publish, 1), Some(("a", 2_000)), 3_000, 4).unwrap_err();
        assert!(matches!(e, BudgetRefusal::Address { .. }));
        assert_eq!(e.code(), ErrorCode::OverBudget);
        assert!(e.to_string().contains("--state-budget-per-ip"), "{e}");
        // Near the budget: the heavy one is refused, a light one is not.
        assert!(matches!(b.check((Work::Claims, 0), Some(("h", 1_900)), 7_000, 4), Err(BudgetRefusal::Heavy { .. })));
        assert!(b.check((Work::Claims, 0), Some(("l", 100)), 7_000, 4).is_ok());
        assert!(b.check((Work::Identity, 0), Some(("l", 0)), 7_000, 4).is_ok());
        // At it: no new identity or file from anyone, claims of light addresses still.
        assert!(matches!(b.check((Work::Identity, 0), None, 8_000, 4), Err(BudgetRefusal::Full { .. })));
        assert!(b.check((Work::Claims, 0), Some(("l", 100)), 8_000, 4).is_ok());
        assert!(StateBudget::NONE.check((Work::Publish, 0), Some(("a", u64::MAX)), u64::MAX, 1).is_ok());
    }

    proptest! {
        /// Whoever is admitted near the budget holds less than its even share.
        #[test]
        fn near_the_budget_only_light_addresses_grow(mine in 0u64..10_000, used in 0u64..20_000, n in 1usize..50) {
            let b = StateBudget { total: 16_000, per_addr: 0 };
            if used >= 14_000 && b.check((Work::Claims, 0), Some(("x", mine)), used, n).is_ok() {
                prop_assert!(mine == 0 || mine * (n as u64) < used);
            }
        }
    }
}
