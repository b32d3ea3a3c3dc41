//! Unit tests of the lease machine, one rule at a time (the whole cluster under faults is
//! simulated in `swarm-core/tests/cluster_sim.rs`).

use super::*;

const TTL: u64 = 3000;

fn node(me: u16, shards: u16) -> Leases {
    Leases::new(me, shards, Timing::new(TTL), 0)
}

fn drain(l: &mut Leases) -> Vec<Output> {
    std::iter::from_fn(|| l.poll_output()).collect()
}

fn kv_ops(out: &[Output]) -> Vec<(u64, KvOp)> {
    out.iter().filter_map(|o| if let Output::Kv { id, op } = o { Some((*id, *op)) } else { None }).collect()
}

/// Node 1 alone takes all `shards` at time 0 (reads free, creates at revisions 1..).
fn alone_with_all(shards: u16) -> Leases {
    let mut l = node(1, shards);
    l.handle_beat(0, 1, String::new(), 0);
    l.handle_timeout(0);
    let reads = kv_ops(&drain(&mut l));
    assert_eq!(reads, vec![(reads[0].0, KvOp::ReadAll)]);
    l.handle_kv(0, reads[0].0, KvResult::Leases(vec![Some(None); shards as usize]));
    let creates = kv_ops(&drain(&mut l));
    assert!(creates.iter().all(|(_, op)| matches!(op, KvOp::Create { .. })), "{creates:?}");
    for (i, (id, _)) in creates.into_iter().enumerate() {
        l.handle_kv(0, id, KvResult::Done(i as u64 + 1));
    }
    for s in 0..shards {
        l.loaded(0, s, Some(0));
    }
    drain(&mut l);
    l
}

#[test]
fn a_lone_node_takes_every_shard_and_acts_for_them() {
    let l = alone_with_all(4);
    assert!((0..4).all(|s| l.acts(10, s)));
    assert_eq!(l.owners(10), vec![Some(1); 4]);
    assert!(l.reaches_cluster(10));
}

#[test]
fn failed_reads_and_writes_keep_a_lease_until_its_validity_ends() {
    let mut l = alone_with_all(2);
    let period = l.timing().period_ms();
    let fresh = l.timing().fresh_ms();
    // Every read and renewal fails (a JetStream leader election), heartbeats still heard.
    let mut t = 0;
    while t < 3 * TTL {
        t += period / 2;
        l.handle_beat(t, 1, String::new(), 0);
        l.handle_timeout(t);
        for o in drain(&mut l) {
            assert!(!matches!(o, Output::Drop { .. }), "a failed read is not a lost lease: {o:?}");
            if let Output::Kv { id, .. } = o {
                l.handle_kv(t, id, KvResult::Failed);
            }
        }
        assert_eq!(l.acts(t, 0), t < fresh, "acts within validity only, at {t}");
        assert!(l.holds(0), "still held, to renew when the KV is back");
    }
    // The KV is back: the renewal on the revision held succeeds, and it acts again.
    let mut acted = false;
    for _ in 0..4 {
        t += period;
        l.handle_beat(t, 1, String::new(), 0);
        l.handle_timeout(t);
        for o in drain(&mut l) {
            if let Output::Kv { id, op } = o {
                let r = match op {
                    KvOp::ReadAll => {
                        KvResult::Leases((0..2).map(|s| Some(Some(Seen { owner: 1, revision: s + 1 }))).collect())
                    }
                    _ => KvResult::Done(100 + t),
                };
                l.handle_kv(t, id, r);
            }
        }
        acted |= l.acts(t, 0) && l.acts(t, 1);
    }
    assert!(acted, "acts again once renewed");
}

#[test]
fn an_answer_that_arrives_late_does_not_extend_a_lease() {
    let mut l = alone_with_all(1);
    let period = l.timing().period_ms();
    l.handle_beat(period, 1, String::new(), 0);
    l.handle_timeout(period);
    let ops = kv_ops(&drain(&mut l));
    let renew: Vec<_> = ops.iter().filter(|(_, op)| matches!(op, KvOp::Update { .. })).collect();
    assert!(matches!(renew[0].1, KvOp::Update { shard: 0, revision: 1 }), "{ops:?}");
    // The node is stopped for 10 s right after sending; the KV's "done" is read on resuming.
    let resumed = period + 10_000;
    l.handle_kv(resumed, renew[0].0, KvResult::Done(7));
    l.handle_beat(resumed, 1, String::new(), 0);
    assert!(!l.acts(resumed, 0), "validity counts from when the renewal was sent");
}

#[test]
fn a_refused_renewal_or_a_newer_took_loses_the_shard_an_older_took_does_not() {
    let mut l = alone_with_all(3);
    l.handle_took(5, 2, 0, 1);
    assert!(l.holds(0), "a took older than (or as old as) the lease held changes nothing");
    assert_eq!(l.owner(5, 0), Some(1));
    l.handle_took(6, 2, 0, 50);
    assert!(!l.holds(0) && l.owner(6, 0) == Some(2), "a newer took moves the shard");
    assert!(drain(&mut l).contains(&Output::Drop { shard: 0, why: "another node took its lease" }));
    l.handle_took(7, 3, 0, 20);
    assert_eq!(l.owner(7, 0), Some(2), "a took that arrives late does not undo a newer one");
    // A renewal refused (compare-and-set) keeps the shard until a read says otherwise.
    let period = l.timing().period_ms();
    l.handle_timeout(period);
    for (id, op) in kv_ops(&drain(&mut l)) {
        match op {
            KvOp::ReadAll => {
                let mut v: Vec<_> = (0..3).map(|s| Some(Some(Seen { owner: 1, revision: s + 1 }))).collect();
                v[0] = Some(Some(Seen { owner: 2, revision: 50 }));
                l.handle_kv(period, id, KvResult::Leases(v));
            }
            KvOp::Update { shard: 1, .. } => l.handle_kv(period, id, KvResult::Conflict),
            _ => {}
        }
    }
    assert!(l.holds(1) && l.holds(2), "a refused renewal alone is not a lost lease");
}

#[test]
fn a_view_older_than_its_view_time_is_not_reported() {
    let l = alone_with_all(2);
    let view = l.timing().view_ttl_ms();
    assert_eq!(l.owner(view - 1, 0), Some(1));
    assert_eq!(l.owner(view, 0), None, "a node stopped for its view time knows nothing for sure");
}

#[test]
fn members_join_and_leave_and_a_silent_self_reconnects() {
    let mut l = node(1, 1);
    l.handle_beat(0, 1, String::new(), 0);
    l.handle_beat(0, 2, "ws://b/ws".into(), 3);
    assert!(drain(&mut l).contains(&Output::Joined { node: 2 }));
    assert_eq!(l.members(1), BTreeSet::from([1, 2]));
    let gone = l.timing().member_timeout_ms();
    l.handle_timeout(gone);
    let out = drain(&mut l);
    assert!(out.contains(&Output::Left { node: 2 }), "{out:?}");
    assert!(out.contains(&Output::Reconnect), "not heard itself for a lease time: {out:?}");
    l.handle_beat(gone + 1, 1, String::new(), 0);
    assert!(drain(&mut l).contains(&Output::Rejoined));
}

#[test]
fn a_resumed_node_reports_no_shard_kept_until_a_write_of_its_own_succeeds() {
    // What `/api/cluster` says as "owned": a node stopped for 10 s hears itself again at once
    // (its heartbeat comes back), and its reads still fail (its NATS client reconnects). It
    // still holds its leases (a failed read is not a lost lease) but keeps none of them: the
    // other nodes may keep those shards by now.
    let mut l = alone_with_all(2);
    assert_eq!(l.kept(10), vec![0, 1]);
    let resumed = 10_000;
    l.handle_beat(resumed, 1, String::new(), 0);
    l.handle_timeout(resumed);
    for (id, op) in kv_ops(&drain(&mut l)) {
        let r = if op == KvOp::ReadAll { KvResult::Leases(vec![None, None]) } else { KvResult::Failed };
        l.handle_kv(resumed, id, r);
    }
    assert!(l.connected(resumed) && l.holds(0) && l.holds(1));
    assert_eq!(l.kept(resumed), Vec::<u16>::new(), "stale leases are not reported as kept");
    assert_eq!(l.owned(), vec![0, 1], "held and loaded, to renew");
    // A renewal sent after the resume succeeds: kept again.
    let t = resumed + l.timing().period_ms();
    l.handle_beat(t, 1, String::new(), 0);
    l.handle_timeout(t);
    for (id, op) in kv_ops(&drain(&mut l)) {
        let r = match op {
            KvOp::ReadAll => KvResult::Leases(vec![None, None]),
            KvOp::Update { revision, .. } => KvResult::Done(revision + 10),
            _ => KvResult::Failed,
        };
        l.handle_kv(t, id, r);
    }
    assert_eq!(l.kept(t), vec![0, 1]);
}
