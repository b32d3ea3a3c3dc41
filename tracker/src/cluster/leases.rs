//! The node's periodic work in a cluster: heartbeats, shard leases (renew, take, release,
//! following [`super::shards::plan`]), loading a shard taken over and letting go of one lost,
//! and writing the verification state of the chunks of the shards kept here.

use super::inbound;
use super::msg::NodeMsg;
use super::shards::{plan, Seen, Step};
use super::store::lease_key;
use super::{Cluster, Held};
use crate::state::AppState;
use std::sync::Arc;
use std::time::Instant;
use swarm_core::FileId;

/// Runs heartbeats: every period, tells the others this node is alive, forgets nodes gone
/// silent, and moves to another NATS server when its own heartbeats stop coming back. Apart
/// from the lease work, which waits on JetStream: a slow KV must not make a node look dead.
pub async fn beat(state: Arc<AppState>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(cluster.config.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reconnect = Instant::now();
    loop {
        tick.tick().await;
        let peers = state.lock().connected.len() as u32;
        let beat = NodeMsg::Beat { node: cluster.tag, url: cluster.config.public_url.clone(), peers };
        // Straight to NATS, not through the queue other messages wait in.
        match cluster.client.publish(cluster.subject_beat(), super::msg::encode(&beat).into()).await {
            Ok(()) => super::add(&cluster.stats.msgs_out, 1),
            Err(e) => tracing::debug!("cannot send a heartbeat: {e}"),
        }
        inbound::forget_silent(&state, &cluster);
        // Not hearing itself through NATS for a lease time: move to another NATS server now
        // rather than wait for the client to give up on this one.
        let cut = cluster.view().self_seen.is_some_and(|t| t.elapsed() > cluster.config.lease_ttl);
        if cut && last_reconnect.elapsed() > cluster.config.lease_ttl {
            last_reconnect = Instant::now();
            tracing::warn!("this node's heartbeats do not come back through NATS: reconnecting");
            let client = cluster.client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.force_reconnect().await {
                    tracing::warn!("cannot reconnect to NATS: {e}");
                }
            });
        }
    }
}

/// Runs the lease rules, every period.
pub async fn run(state: Arc<AppState>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(cluster.config.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        leases(&state, &cluster).await;
    }
}

/// Writes verification state, every period, apart from the lease rules: thousands of
/// changes (a swarm of peers re-announcing) must not hold a lease renewal back.
pub async fn persist(state: Arc<AppState>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(cluster.config.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        save_trust(&state, &cluster).await;
    }
}

/// One KV call, given at most a lease time (a hung NATS server must not stall the loop).
async fn bounded<T, E: std::fmt::Display>(
    cluster: &Cluster,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(cluster.config.lease_ttl, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// One round of the lease rules.
async fn leases(state: &Arc<AppState>, cluster: &Arc<Cluster>) {
    let shards = cluster.config.shards;
    // Read together; a read that fails (a NATS server that hangs) leaves its shard as it was
    // last seen, so one slow read does not stop every renewal.
    // Bounded by two periods, not a lease time: a read that a silently dead NATS server was
    // given times out for as long as its routes stay up (80 s measured), and a round that
    // waited a lease time for it would renew too late.
    let bound = cluster.config.period() * 2;
    let reads = futures_util::future::join_all((0..shards).map(|s| async move {
        match tokio::time::timeout(bound, cluster.store.leases.entry(lease_key(s))).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("timed out".to_string()),
        }
    }))
    .await;
    let failed = reads.iter().filter(|r| r.is_err()).count();
    if failed == reads.len() {
        // Cut off from NATS: leases cannot be renewed; they go stale on their own and
        // requests about them are refused until NATS is back.
        tracing::warn!("cannot read the shard leases");
        return;
    }
    if failed > 0 {
        tracing::warn!(failed, "cannot read some shard leases this round");
    }
    let unknown: Vec<bool> = reads.iter().map(Result::is_err).collect();
    let seen: Vec<Option<Seen>> = {
        let v = cluster.view();
        reads
            .into_iter()
            .enumerate()
            .map(|(s, r)| match r {
                Ok(e) => e.and_then(|e| {
                    let owner = std::str::from_utf8(&e.value).ok()?.parse().ok()?;
                    matches!(e.operation, async_nats::jetstream::kv::Operation::Put)
                        .then_some(Seen { owner, revision: e.revision })
                }),
                // Unknown: mine as held (renewed on the revision held), else taken by
                // someone (never taken by this node on a guess).
                Err(_) => match v.mine.get(&(s as u16)) {
                    Some(h) => Some(Seen { owner: cluster.tag, revision: h.revision }),
                    None => Some(Seen { owner: v.owners.get(s).copied().flatten().unwrap_or(0), revision: 0 }),
                },
            })
            .collect()
    };
    // Leases this node thought it held but no longer does.
    let lost: Vec<u16> = {
        let mut v = cluster.view();
        // A shard whose read failed keeps the owner seen last.
        let owners: Vec<Option<u16>> = seen
            .iter()
            .zip(&unknown)
            .enumerate()
            .map(|(i, (s, unknown))| if *unknown { v.owners.get(i).copied().flatten() } else { s.map(|s| s.owner) })
            .collect();
        v.owners = owners;
        let lost: Vec<u16> =
            v.mine.keys().copied().filter(|s| seen[*s as usize].is_none_or(|x| x.owner != cluster.tag)).collect();
        lost
    };
    for s in lost {
        let_go(state, cluster, s, "its lease lapsed");
    }
    let members = cluster.members();
    for step in plan(cluster.tag, &members, &seen) {
        match step {
            Step::Renew { shard, revision } => {
                let renew = cluster.store.leases.update(lease_key(shard), cluster.tag.to_string().into(), revision);
                match bounded(cluster, renew).await {
                    Ok(rev) => {
                        let held = match cluster.view().mine.get_mut(&shard) {
                            Some(h) => {
                                h.revision = rev;
                                h.renewed = Instant::now();
                                true
                            }
                            None => false,
                        };
                        if !held {
                            // Held in the bucket but not loaded here (this node restarted
                            // with the same tag, or a load failed): load it now.
                            take(state, cluster, shard, rev).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(shard, "lost a shard lease: {e}");
                        let_go(state, cluster, shard, "its lease was taken");
                    }
                }
            }
            Step::Take { shard } => {
                let create = cluster.store.leases.create(lease_key(shard), cluster.tag.to_string().into());
                if let Ok(rev) = bounded(cluster, create).await {
                    take(state, cluster, shard, rev).await;
                }
            }
            Step::Release { shard, revision } => {
                let_go(state, cluster, shard, "another node holds fewer shards");
                let _ = bounded(cluster, cluster.store.leases.delete_expect_revision(lease_key(shard), Some(revision)))
                    .await;
            }
        }
    }
}

/// This node now keeps `shard`: its files and verification state come from KV, then every
/// peer is asked (in batches) to re-announce, so the chunks' holders are known here.
async fn take(state: &Arc<AppState>, cluster: &Arc<Cluster>, shard: u16, revision: u64) {
    cluster.view().mine.insert(shard, Held { revision, renewed: Instant::now(), ready: false });
    let (files, trust) = match bounded(cluster, cluster.store.load_shard(shard)).await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(shard, "cannot load a shard taken over: {e}");
            cluster.view().mine.remove(&shard);
            let _ = bounded(cluster, cluster.store.leases.delete(lease_key(shard))).await;
            return;
        }
    };
    let n = files.len();
    {
        let mut inner = state.lock();
        for f in files {
            for c in &f.manifest.chunks {
                inner.chunk_shards.insert(*c, shard);
            }
            inner.swarm.restore_file(f);
        }
        for (c, r) in trust {
            inner.swarm.restore_trust(c, r);
        }
    }
    if let Some(h) = cluster.view().mine.get_mut(&shard) {
        h.ready = true;
        h.renewed = Instant::now();
    }
    // Every node routes this shard's claims here from now on; every node's peers re-announce
    // (the shard's last node may have died with its claims).
    cluster.set_owner(shard, cluster.tag);
    cluster.broadcast(&NodeMsg::Took { node: cluster.tag, shards: vec![shard], reannounce: n > 0 });
    super::add(&cluster.stats.shards_taken, 1);
    tracing::info!(shard, files = n, "keeping a shard; asking every node's peers to re-announce");
    if n > 0 {
        cluster.want_reannounce();
    }
}

/// This node no longer keeps `shard`: its files leave this node's swarm (they stay
/// published: the new owner keeps them).
pub fn let_go(state: &AppState, cluster: &Cluster, shard: u16, why: &str) {
    if cluster.view().mine.remove(&shard).is_none() {
        return;
    }
    super::add(&cluster.stats.shards_lost, 1);
    let mut inner = state.lock();
    let files: Vec<FileId> = inner.swarm.files().map(|(id, _)| *id).filter(|f| cluster.shard_of(f) == shard).collect();
    inner.swarm.evict_files(&files);
    inner.chunk_shards.retain(|_, s| *s != shard);
    tracing::info!(shard, files = files.len(), "letting a shard go: {why}");
}

/// Writes the verification changes of the chunks of the shards kept here.
async fn save_trust(state: &AppState, cluster: &Cluster) {
    let changes: Vec<_> = {
        let mut inner = state.lock();
        let changes = inner.swarm.take_trust_changes();
        changes
            .into_iter()
            .filter_map(|(c, r)| {
                let shard = inner.chunk_shards.get(&c).copied()?;
                if r.is_none() {
                    inner.chunk_shards.remove(&c);
                }
                Some((shard, c, r))
            })
            .collect()
    };
    if !changes.is_empty() {
        // Not bounded by the lease time: each write has JetStream's own timeout, and a large
        // batch may take longer than a lease (it holds nothing else back).
        if let Err(e) = cluster.store.save_trust(&changes).await {
            tracing::error!("cannot save chunk verification state to the cluster index: {e}");
        }
    }
}

/// Gives every lease up (a clean shutdown): the other nodes take the shards at their next
/// period, not after the lease time.
pub async fn release_all(state: &AppState, cluster: &Cluster) {
    save_trust(state, cluster).await;
    let mine: Vec<(u16, u64)> = cluster.view().mine.iter().map(|(s, h)| (*s, h.revision)).collect();
    for (shard, revision) in mine {
        let_go(state, cluster, shard, "shutting down");
        let _ = cluster.store.leases.delete_expect_revision(lease_key(shard), Some(revision)).await;
    }
    let _ = cluster.client.flush().await;
}
