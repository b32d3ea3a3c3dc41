//! Which tracker node keeps which part of the swarm: files are cut into a fixed number of
//! shards by file id, and each shard is leased to one node through a JetStream KV bucket
//! whose entries expire unless renewed ([`super::lease::Leases`] runs the rounds). This module
//! is the balancing rule alone: which shard a file is in, and what a node should do with the
//! leases it sees ([`plan`]).
//!
//! The rules, applied by every node once per lease period:
//! - renew every lease it holds;
//! - take free shards while it holds fewer than its fair share, `ceil(shards / live nodes)`,
//!   starting at a place that depends on its tag (nodes starting together try different
//!   shards first instead of racing for the same ones);
//! - hold more than `floor(shards / live nodes)` while another live node holds fewer than
//!   that: release one shard per period (a node below its fair share takes it at its next
//!   period; peers re-announce to it). Shares then differ by at most one.

use crate::FileId;
use std::collections::{BTreeMap, BTreeSet};

/// The shard `file` belongs to, out of `shards`.
pub fn shard_of(file: &FileId, shards: u16) -> u16 {
    u16::from_be_bytes([file.0[0], file.0[1]]) % shards.max(1)
}

/// One lease as read from the bucket: its holder and the entry's revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub owner: u16,
    pub revision: u64,
}

/// One thing to do with the lease bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Extend my lease (compare-and-set on `revision`).
    Renew { shard: u16, revision: u64 },
    /// Try to create the lease of a free shard.
    Take { shard: u16 },
    /// Give a shard up (delete on `revision`) for a node that holds fewer.
    Release { shard: u16, revision: u64 },
}

/// What node `me` should do, given every shard's lease (`seen[shard]`, `None`: free) and the
/// live nodes (`me` among them).
pub fn plan(me: u16, members: &BTreeSet<u16>, seen: &[Option<Seen>]) -> Vec<Step> {
    let shards = seen.len();
    let nodes = members.len().max(1);
    let fair = shards.div_ceil(nodes);
    let floor = shards / nodes;
    let mut held: BTreeMap<u16, usize> = members.iter().map(|m| (*m, 0)).collect();
    for s in seen.iter().flatten() {
        *held.entry(s.owner).or_insert(0) += 1;
    }
    let mine = held.get(&me).copied().unwrap_or(0);
    let mut steps: Vec<Step> = seen
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.filter(|s| s.owner == me).map(|s| Step::Renew { shard: i as u16, revision: s.revision }))
        .collect();
    if mine < fair {
        let start = (me as usize).wrapping_mul(7919) % shards.max(1);
        let free = (0..shards).map(|k| (start + k) % shards).filter(|i| seen[*i].is_none());
        steps.extend(free.take(fair - mine).map(|i| Step::Take { shard: i as u16 }));
    } else if mine > floor && members.iter().any(|m| *m != me && held.get(m).copied().unwrap_or(0) < floor) {
        let last = seen.iter().enumerate().rev().find_map(|(i, s)| s.filter(|s| s.owner == me).map(|s| (i, s)));
        if let Some((i, s)) = last {
            steps.retain(|st| *st != Step::Renew { shard: i as u16, revision: s.revision });
            steps.push(Step::Release { shard: i as u16, revision: s.revision });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs every node's plan in turn against one shared lease table (takes succeed when the
    /// shard is still free, as a KV create does) until nothing changes.
    fn settle(members: &BTreeSet<u16>, table: &mut [Option<Seen>]) -> usize {
        let mut rounds = 0;
        loop {
            rounds += 1;
            let before = table.to_vec();
            for me in members {
                for step in plan(*me, members, table) {
                    match step {
                        Step::Renew { shard, .. } => {
                            let s = table[shard as usize].as_mut().expect("held");
                            s.revision += 1;
                        }
                        Step::Take { shard } => {
                            if table[shard as usize].is_none() {
                                table[shard as usize] = Some(Seen { owner: *me, revision: 1 });
                            }
                        }
                        Step::Release { shard, .. } => table[shard as usize] = None,
                    }
                }
            }
            let owners = |t: &[Option<Seen>]| t.iter().map(|s| s.map(|s| s.owner)).collect::<Vec<_>>();
            if owners(&before) == owners(table) || rounds > 100 {
                return rounds;
            }
        }
    }

    fn counts(table: &[Option<Seen>]) -> BTreeMap<u16, usize> {
        let mut m = BTreeMap::new();
        for s in table.iter().flatten() {
            *m.entry(s.owner).or_insert(0) += 1;
        }
        m
    }

    #[test]
    fn a_lone_node_takes_every_shard() {
        let members = BTreeSet::from([5]);
        let mut table = vec![None; 16];
        settle(&members, &mut table);
        assert_eq!(counts(&table), BTreeMap::from([(5, 16)]));
    }

    #[test]
    fn nodes_that_join_get_a_fair_share_and_a_dead_nodes_shards_are_taken() {
        let mut members = BTreeSet::from([1]);
        let mut table = vec![None; 16];
        settle(&members, &mut table);
        members.extend([2, 3]);
        let rounds = settle(&members, &mut table);
        let c = counts(&table);
        assert!(table.iter().all(Option::is_some), "every shard has an owner: {table:?}");
        assert!(c.values().all(|n| (5..=6).contains(n)), "balanced: {c:?}");
        assert!(rounds < 40, "settles in a bounded number of periods: {rounds}");
        // Node 2 dies: its leases expire (the bucket forgets them), the others take them.
        members.remove(&2);
        for s in table.iter_mut() {
            if s.is_some_and(|s| s.owner == 2) {
                *s = None;
            }
        }
        settle(&members, &mut table);
        let c = counts(&table);
        assert!(table.iter().all(Option::is_some));
        assert_eq!(c.values().sum::<usize>(), 16);
        assert!(c.values().all(|n| *n == 8), "{c:?}");
    }

    #[test]
    fn renewals_name_the_revision_seen_and_nothing_is_released_without_a_taker() {
        let members = BTreeSet::from([1, 2]);
        let mut table = vec![Some(Seen { owner: 1, revision: 9 }); 4];
        table[3] = Some(Seen { owner: 2, revision: 4 });
        table[2] = Some(Seen { owner: 2, revision: 3 });
        // Both hold their fair share (2 each): renew only.
        assert_eq!(
            plan(1, &members, &table),
            vec![Step::Renew { shard: 0, revision: 9 }, Step::Renew { shard: 1, revision: 9 }]
        );
        // Node 1 holds 3, node 2 one (below 4 / 2): one release.
        table[2] = Some(Seen { owner: 1, revision: 3 });
        let steps = plan(1, &members, &table);
        assert!(steps.contains(&Step::Release { shard: 2, revision: 3 }), "{steps:?}");
        // Node 2 unknown (not live): node 1 keeps all it has.
        let alone = BTreeSet::from([1]);
        assert!(plan(1, &alone, &table).iter().all(|s| matches!(s, Step::Renew { .. } | Step::Take { .. })));
    }

    #[test]
    fn shards_spread_file_ids() {
        let mut n = [0u32; 8];
        for i in 0..800u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.wrapping_mul(2654435761).to_be_bytes());
            n[shard_of(&FileId(id), 8) as usize] += 1;
        }
        assert!(n.iter().all(|c| *c > 50), "{n:?}");
    }
}
