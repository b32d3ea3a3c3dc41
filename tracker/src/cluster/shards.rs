//! Which tracker node keeps which part of the swarm: the balancing rule lives in the sans-IO
//! core ([`swarm_core::cluster::plan`]); the lease rounds in [`swarm_core::cluster::lease`],
//! driven by [`super::leases`].

pub use swarm_core::cluster::plan::{plan, shard_of, Seen, Step};
