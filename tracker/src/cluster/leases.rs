//! The driver of this node's lease machine ([`swarm_core::cluster::lease::Leases`], sans-IO):
//! one task feeds it the time and the answers of the lease bucket and of shard loads, and
//! carries out what it asks for (KV reads and writes, heartbeats, loading a shard taken over,
//! letting go of one lost, telling the other nodes). Heartbeats and `took` messages heard are
//! fed to it by [`super::inbound`], which then wakes this task. Also: writing the verification
//! state of the chunks of the shards kept here, apart from the lease work.

use super::msg::NodeMsg;
use super::store::lease_key;
use super::Cluster;
use crate::driver::Shared;
use async_nats::jetstream::kv;
use std::sync::Arc;
use std::time::Duration;
use swarm_core::cluster::lease::{KvOp, KvResult, Output};
use swarm_core::cluster::plan::Seen;
use swarm_core::cluster::shard_load::{LoadStep, ShardLoad};
use swarm_core::FileId;
use tokio::sync::mpsc;

/// A shard's files and the verification state of its chunks, as loaded from KV.
type ShardData =
    (Vec<swarm_core::swarm::FileRecord>, Vec<(swarm_core::ChunkId, swarm_core::swarm::trust::TrustRecord)>);

/// What the tasks this driver spawns report back.
enum Done {
    Kv(u64, KvResult),
    Loaded(u16, Option<ShardData>),
}

/// Drives the lease machine until the process ends.
pub async fn run(state: Arc<Shared>, cluster: Arc<Cluster>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
    loop {
        let outputs = {
            let mut m = cluster.machine();
            m.handle_timeout(cluster.now_ms());
            std::iter::from_fn(|| m.poll_output()).collect::<Vec<_>>()
        };
        for o in outputs {
            execute(&state, &cluster, &tx, o);
        }
        let due = cluster.machine().poll_timeout();
        let wait = Duration::from_millis(due.saturating_sub(cluster.now_ms()));
        tokio::select! {
            done = rx.recv() => match done {
                Some(done) => on_done(&state, &cluster, done),
                None => return,
            },
            _ = cluster.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A KV answer or a loaded shard, fed to the machine.
fn on_done(state: &Shared, cluster: &Cluster, done: Done) {
    let now = cluster.now_ms();
    match done {
        Done::Kv(id, r) => cluster.machine().handle_kv(now, id, r),
        Done::Loaded(shard, loaded) => {
            // Dropped meanwhile (its lease lapsed while it loaded): its files stay out. (The
            // machine's lock is never held while the state's is taken: the state's holders
            // ask the machine.) A drop between here and `loaded` comes out of the machine as
            // an output this task carries out next, after this restore.
            if !cluster.machine().holds(shard) {
                return;
            }
            match loaded {
                Some((files, trust)) => {
                    // Counted in the swarm, not in the load: a file the index's watch kept
                    // here while the shard loaded counts too (its holders must re-announce).
                    let n = {
                        let mut core = state.core();
                        core.load_shard(shard, files, trust);
                        core.swarm().files().filter(|(id, _)| cluster.shard_of(id) == shard).count()
                    };
                    cluster.machine().loaded(now, shard, Some(n));
                    tracing::info!(shard, files = n, "keeping a shard");
                }
                None => cluster.machine().loaded(now, shard, None),
            }
        }
    }
}

fn execute(state: &Arc<Shared>, cluster: &Arc<Cluster>, tx: &mpsc::UnboundedSender<Done>, o: Output) {
    match o {
        Output::Kv { id, op } => {
            let (cluster, tx) = (cluster.clone(), tx.clone());
            tokio::spawn(async move {
                let bound = Duration::from_millis(cluster.machine().timing().kv_timeout_ms());
                let r = tokio::time::timeout(bound, kv_op(&cluster, op)).await.unwrap_or(KvResult::Failed);
                let _ = tx.send(Done::Kv(id, r));
            });
        }
        Output::Beat => {
            let peers = state.core().peer_count() as u32;
            let beat = NodeMsg::Beat { node: cluster.tag, url: cluster.config.public_url.clone(), peers };
            // Straight to NATS, not through the queue other messages wait in.
            let cluster = cluster.clone();
            tokio::spawn(async move {
                match cluster.client.publish(cluster.subject_beat(), super::msg::encode(&beat).into()).await {
                    Ok(()) => super::add(&cluster.stats.msgs_out, 1),
                    Err(e) => tracing::debug!("cannot send a heartbeat: {e}"),
                }
            });
            super::inbound::forget_departed(state);
        }
        Output::Load { shard } => {
            let (cluster, tx) = (cluster.clone(), tx.clone());
            tokio::spawn(async move {
                let loaded = load_with_retries(&cluster, shard).await;
                let _ = tx.send(Done::Loaded(shard, loaded));
            });
        }
        Output::Drop { shard, why } => let_go(state, cluster, shard, why),
        Output::Took { shard, revision, reannounce } => {
            // Every node routes this shard's claims here from now on; every node's peers
            // re-announce (the shard's last node may have died with its claims).
            cluster.broadcast(&NodeMsg::Took { node: cluster.tag, shards: vec![shard], reannounce, revision });
            super::add(&cluster.stats.shards_taken, 1);
            if reannounce {
                tracing::info!(shard, "asking every node's peers to re-announce");
                cluster.want_reannounce();
            }
        }
        Output::Joined { node } => {
            tracing::info!(node, "tracker node joined the cluster");
            // It does not know the peers connected here (or forgot them while away).
            super::inbound::send_roster(state, cluster, node);
            super::inbound::tell_nodes(state, cluster);
        }
        Output::Left { node } => {
            super::inbound::forget_node(state, node);
            super::inbound::tell_nodes(state, cluster);
        }
        Output::Reconnect => {
            // Not hearing itself through NATS for a lease time: move to another NATS server now
            // rather than wait for the client to give up on this one.
            tracing::warn!("this node's heartbeats do not come back through NATS: reconnecting");
            let client = cluster.client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.force_reconnect().await {
                    tracing::warn!("cannot reconnect to NATS: {e}");
                }
            });
        }
        Output::Rejoined => {
            // What this node's peers announced while it was cut off did not reach the nodes
            // that keep their chunks.
            tracing::info!("this node hears the cluster again");
            cluster.rewatch_index.notify_one();
            cluster.want_reannounce();
        }
    }
}

/// Loads a shard taken over ([`ShardLoad`]: checked against the files this node's watch of
/// the index has seen, read again while behind or failing, for a lease time). JetStream
/// answers "temporarily unavailable" for seconds while it elects a leader, and a replica
/// catching up after a partition answers with an old view; a load that fails gives the lease
/// back (without retries the shards churned between the nodes: 108 takes on one node in one
/// run). `None`: not loaded within the lease time.
async fn load_with_retries(cluster: &Cluster, shard: u16) -> Option<ShardData> {
    let ttl = cluster.config.lease_ttl;
    let mut load = ShardLoad::new(cluster.now_ms(), ttl.as_millis() as u64);
    let mut data: Option<ShardData> = None;
    let mut step = LoadStep::ReadShard;
    let mut why = String::new();
    // One read may take longer than the lease time (a slow JetStream after a NATS server
    // died): the reads together are bounded by 4 lease times, the tries by the machine.
    let start = tokio::time::Instant::now();
    let left = || (ttl * 4).saturating_sub(start.elapsed());
    loop {
        step = match step {
            LoadStep::ReadShard => {
                let read = match tokio::time::timeout(left(), cluster.store.load_shard(shard)).await {
                    Ok(Ok(x)) => Some(x),
                    Ok(Err(e)) => {
                        why = e.to_string();
                        None
                    }
                    Err(_) => {
                        why = "timed out".to_string();
                        None
                    }
                };
                let ids: Option<Vec<FileId>> =
                    read.as_ref().map(|(files, _)| files.iter().map(|r| r.manifest.file_id()).collect());
                if read.is_some() {
                    data = read;
                }
                let indexed = cluster.index().files_of(shard);
                load.shard_read(cluster.now_ms(), ids.as_deref(), &indexed)
            }
            LoadStep::ReadFiles(ids) => {
                let mut found = Vec::new();
                for f in &ids {
                    if let Ok(Ok(Some(r))) = tokio::time::timeout(left(), cluster.store.file(shard, f)).await {
                        found.push(r);
                    }
                }
                let found_ids: Vec<FileId> = found.iter().map(|r| r.manifest.file_id()).collect();
                if let Some((files, _)) = data.as_mut() {
                    files.extend(found);
                }
                why = format!("its load lacked {} files the cluster's index has", ids.len() - found_ids.len());
                let indexed = cluster.index().files_of(shard);
                load.files_read(cluster.now_ms(), &found_ids, &indexed)
            }
            LoadStep::WaitUntil(t) => {
                tracing::warn!(shard, "cannot load a shard taken over yet (trying again): {why}");
                tokio::time::sleep(Duration::from_millis(t.saturating_sub(cluster.now_ms()))).await;
                LoadStep::ReadShard
            }
            LoadStep::Done => {
                if load.reads_behind() > 0 {
                    tracing::warn!(
                        shard,
                        reads = load.reads_behind(),
                        "a shard's load caught up with the cluster's index"
                    );
                }
                return data;
            }
            LoadStep::GiveUp { missing } => {
                tracing::error!(shard, missing, "cannot load a shard taken over: {why}");
                return None;
            }
        }
    }
}

/// One operation on the lease bucket, its outcome as the machine sees it: a compare-and-set
/// refused is a conflict; every other error is a failure that says nothing about the lease.
async fn kv_op(cluster: &Cluster, op: KvOp) -> KvResult {
    let leases = &cluster.store.leases;
    let tag = || bytes::Bytes::from(cluster.tag.to_string());
    match op {
        KvOp::ReadAll => {
            // Each read bounded on its own (a little under the machine's time-out for the
            // whole), so one that hangs leaves the others' answers usable.
            let bound = Duration::from_millis(cluster.machine().timing().kv_timeout_ms() * 3 / 4);
            let reads = futures_util::future::join_all((0..cluster.config.shards).map(|s| async move {
                match tokio::time::timeout(bound, leases.entry(lease_key(s))).await {
                    Ok(Ok(e)) => Some(e.and_then(|e| {
                        let owner = std::str::from_utf8(&e.value).ok()?.parse().ok()?;
                        matches!(e.operation, kv::Operation::Put).then_some(Seen { owner, revision: e.revision })
                    })),
                    Ok(Err(e)) => {
                        tracing::debug!(shard = s, "cannot read a shard lease: {e}");
                        None
                    }
                    Err(_) => None,
                }
            }))
            .await;
            let failed = reads.iter().filter(|r| r.is_none()).count();
            if failed > 0 {
                tracing::warn!(failed, "cannot read some shard leases this round (leases held are kept while valid)");
            }
            KvResult::Leases(reads)
        }
        KvOp::Create { shard } => match leases.create(lease_key(shard), tag()).await {
            Ok(rev) => KvResult::Done(rev),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => KvResult::Conflict,
            Err(e) => {
                tracing::debug!(shard, "cannot take a shard lease: {e}");
                KvResult::Failed
            }
        },
        KvOp::Update { shard, revision } => match leases.update(lease_key(shard), tag(), revision).await {
            Ok(rev) => KvResult::Done(rev),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => KvResult::Conflict,
            Err(e) => {
                tracing::warn!(shard, "cannot renew a shard lease (kept while valid; tried again): {e}");
                KvResult::Failed
            }
        },
        KvOp::Delete { shard, revision } => match leases.delete_expect_revision(lease_key(shard), Some(revision)).await
        {
            Ok(()) => KvResult::Done(0),
            Err(_) => KvResult::Failed,
        },
    }
}

/// Runs [`save_trust`] every period, apart from the lease rules: thousands of changes (a swarm
/// of peers re-announcing) must not hold a lease renewal back.
pub async fn persist(state: Arc<Shared>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(cluster.config.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        save_trust(&state, &cluster).await;
    }
}

/// This node no longer keeps `shard`: its files leave this node's swarm (they stay
/// published: the new owner keeps them).
fn let_go(state: &Shared, cluster: &Cluster, shard: u16, why: &str) {
    super::add(&cluster.stats.shards_lost, 1);
    let files = state.core().let_go_shard(shard, |f| cluster.shard_of(f));
    tracing::info!(shard, files, "letting a shard go: {why}");
}

/// Writes the verification changes of the chunks of the shards kept here.
async fn save_trust(state: &Shared, cluster: &Cluster) {
    let changes = state.core().take_trust_changes_by_shard();
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
pub async fn release_all(state: &Shared, cluster: &Cluster) {
    save_trust(state, cluster).await;
    let outputs = {
        let mut m = cluster.machine();
        m.release_all(cluster.now_ms());
        std::iter::from_fn(|| m.poll_output()).collect::<Vec<_>>()
    };
    for o in outputs {
        match o {
            Output::Drop { shard, why } => let_go(state, cluster, shard, why),
            Output::Kv { op: op @ KvOp::Delete { .. }, .. } => {
                let _ = tokio::time::timeout(cluster.config.lease_ttl, kv_op(cluster, op)).await;
            }
            _ => {}
        }
    }
    let _ = cluster.client.flush().await;
}
