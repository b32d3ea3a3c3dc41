//! A tracker cluster's membership and shard ownership, sans-IO: the tracker's NATS driver
//! (`tracker/src/cluster/leases.rs`) and the simulation (`swarm-core/tests/cluster_sim.rs`)
//! feed the same machine ([`lease::Leases`]) heartbeats heard, results of KV reads and writes
//! (errors and time-outs included) and the time, and carry out what it asks for.
//!
//! - [`plan`]: the balancing rule (which shard a file is in; take, renew, release).
//! - [`lease`]: the state machine: rounds of lease reads and writes, the validity of each
//!   lease held (counted from when its last successful write was *sent*), members heard.
//! - [`shard_load`]: loading a shard taken over, checked against the node's watch of the
//!   index (a read from a replica still catching up is behind).

pub mod lease;
pub mod plan;
pub mod shard_load;

/// The timing of a cluster, derived from its lease time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A lease not renewed for this long expires in the KV bucket (its `max_age`).
    pub lease_ttl_ms: u64,
}

impl Timing {
    pub fn new(lease_ttl_ms: u64) -> Self {
        Self { lease_ttl_ms: lease_ttl_ms.max(1) }
    }
    /// Time between lease rounds and heartbeats.
    pub fn period_ms(&self) -> u64 {
        (self.lease_ttl_ms / 5).clamp(100, 2000)
    }
    /// A node acts for a shard for this long after it *sent* its last successful write of the
    /// lease (the KV keeps the entry at least `lease_ttl_ms` from then: the margin covers clocks
    /// that run at slightly different rates). Also how long its own heartbeat counts.
    pub fn fresh_ms(&self) -> u64 {
        self.lease_ttl_ms * 6 / 10
    }
    /// A node heard within this long is live: the shards are shared out among live nodes, and
    /// requests routed to them. A lease time: a node silent that long holds no valid lease.
    pub fn live_ms(&self) -> u64 {
        self.lease_ttl_ms
    }
    /// A node silent this long is forgotten with its peers: twice the lease time (its shards move after one lease
    /// time; forgetting its peers costs re-announcements, so it waits for surer news).
    pub fn member_timeout_ms(&self) -> u64 {
        self.lease_ttl_ms * 2
    }
    /// A KV read or write not answered in this long failed (a hung NATS server, an election).
    pub fn kv_timeout_ms(&self) -> u64 {
        self.period_ms() * 2
    }
    /// An owner heard of (read, or told in a `took`) longer ago than this is no longer
    /// reported: a node that was stopped or cut off says "unknown" rather than what it knew.
    /// Three lease times, not one: where some reads of every round fail (a KV replica behind a
    /// partition: e2e/tests/cluster_nat.rs saw a third of them fail for minutes), a record is
    /// refreshed by the next read that works, and one lease time let records lapse at random
    /// (a shard's owner flickering to "unknown" on a node that was never cut off).
    pub fn view_ttl_ms(&self) -> u64 {
        self.lease_ttl_ms * 3
    }
}
