//! A cluster's durable index in JetStream KV buckets, replicated by NATS (R3 on a 3-server
//! NATS cluster): what the single tracker keeps in redb ([`crate::persistence::index`]).
//!
//! - `{prefix}_files`: key `s{shard}.{file id}` → the file record (manifest, metadata, owner),
//!   written by the shard's owner before the publisher hears "published".
//! - `{prefix}_trust`: key `s{shard}.{chunk id}` → the chunk's verification state (origin,
//!   nonce pool), written by the owner in batches.
//!   Also `cluster.shards`: the number of shards every node must use ([`Store::agree_shards`]).
//! - `{prefix}_leases`: key `s{shard}` → the tag of the node that keeps the shard; entries
//!   expire after the lease time unless renewed (see [`super::shards`]).
//!
//! Keys start with the shard, so a node taking a shard over reads exactly that shard's
//! records (one ordered consumer filtered on `s{shard}.>`, last value per key).

use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use std::time::Duration;
use swarm_core::swarm::trust::TrustRecord;
use swarm_core::swarm::FileRecord;
use swarm_core::{ChunkId, FileId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the cluster's KV bucket {bucket}: {source}")]
    Open { bucket: String, source: async_nats::Error },
    #[error(
        "this node was started with --cluster-shards {ours} but the cluster's nodes use {theirs}: every node \
         of a cluster must use the same number (it is fixed for the life of the cluster's index)"
    )]
    ShardsDiffer { ours: u16, theirs: u16 },
    #[error("cluster KV {what}: {source}")]
    Kv { what: &'static str, source: async_nats::Error },
}

fn kv_err(what: &'static str) -> impl FnOnce(async_nats::Error) -> StoreError {
    move |source| StoreError::Kv { what, source }
}

pub struct Store {
    client: async_nats::Client,
    pub files: kv::Store,
    pub trust: kv::Store,
    pub leases: kv::Store,
}

fn shard_key(shard: u16, id: &[u8; 32]) -> String {
    format!("s{shard}.{}", hex::encode(id))
}

/// The key of the cluster's shard count in the `files` bucket (not a file: no `s{shard}.`).
const SHARDS_KEY: &str = "cluster.shards";

pub fn lease_key(shard: u16) -> String {
    format!("s{shard}")
}

async fn bucket(
    js: &async_nats::jetstream::Context,
    name: String,
    replicas: usize,
    max_age: Duration,
) -> Result<kv::Store, StoreError> {
    let config = kv::Config {
        bucket: name.clone(),
        history: 1,
        num_replicas: replicas,
        max_age,
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    };
    // NATS servers started at the same time as the trackers may still be choosing a JetStream
    // leader ("no suitable peers for placement"): try again for a while before giving up.
    let deadline = tokio::time::Instant::now() + OPEN_PATIENCE;
    loop {
        let e = match js.create_key_value(config.clone()).await {
            Ok(kv) => return Ok(kv),
            Err(e) => e,
        };
        // Made by another node already, maybe with other settings: use it as it is.
        if let Ok(kv) = js.get_key_value(name.clone()).await {
            return Ok(kv);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Open { bucket: name, source: e.into() });
        }
        tracing::warn!("cannot open the cluster's KV bucket {name} yet ({e}); trying again");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Verification records written at once.
pub const TRUST_WRITES: usize = 64;

/// How long a node waits at start for JetStream to take its buckets.
const OPEN_PATIENCE: Duration = Duration::from_secs(60);

impl Store {
    pub async fn open(
        js: &async_nats::jetstream::Context,
        prefix: &str,
        replicas: usize,
        lease_ttl: Duration,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            client: js.client(),
            files: bucket(js, format!("{prefix}_files"), replicas, Duration::ZERO).await?,
            trust: bucket(js, format!("{prefix}_trust"), replicas, Duration::ZERO).await?,
            leases: bucket(js, format!("{prefix}_leases"), replicas, lease_ttl).await?,
        })
    }

    /// Checks that this node cuts files into as many shards as the cluster does (the first
    /// node writes its number into the `files` bucket; a node that differs is refused at start
    /// instead of keeping files under shards no other node reads).
    pub async fn agree_shards(&self, shards: u16) -> Result<(), StoreError> {
        use async_nats::jetstream::kv::CreateErrorKind;
        // JetStream may still be placing the bucket when nodes start together: transient
        // errors are tried again, as in opening the buckets.
        let deadline = tokio::time::Instant::now() + OPEN_PATIENCE;
        loop {
            let e: async_nats::Error = match self.files.create(SHARDS_KEY, shards.to_string().into()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => match self.files.get(SHARDS_KEY).await {
                    Ok(v) => {
                        let theirs = v.and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u16>().ok());
                        return match theirs {
                            Some(theirs) if theirs != shards => Err(StoreError::ShardsDiffer { ours: shards, theirs }),
                            _ => Ok(()),
                        };
                    }
                    Err(e) => e.into(),
                },
                Err(e) => e.into(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(kv_err("agree on the shard count")(e));
            }
            tracing::warn!("cannot check the cluster's shard count yet ({e}); trying again");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Stores files of `shard`.
    pub async fn put_file(&self, shard: u16, record: &FileRecord) -> Result<(), StoreError> {
        let bytes = crate::persistence::index::encode_record(record).map_err(|e| kv_err("encode")(e.into()))?;
        self.files
            .put(shard_key(shard, &record.manifest.file_id().0), bytes.into())
            .await
            .map_err(|e| kv_err("put file")(e.into()))?;
        Ok(())
    }

    /// One file of `shard` (`None`: not in the index, or damaged).
    pub async fn file(&self, shard: u16, file: &FileId) -> Result<Option<FileRecord>, StoreError> {
        let value = self.files.get(shard_key(shard, &file.0)).await.map_err(|e| kv_err("read file")(e.into()))?;
        Ok(value.and_then(|v| crate::persistence::index::decode_record(&file.0, &v)))
    }

    pub async fn remove_file(&self, shard: u16, file: &FileId) -> Result<(), StoreError> {
        self.files.purge(shard_key(shard, &file.0)).await.map_err(|e| kv_err("remove file")(e.into()))
    }

    /// Writes verification changes of `shard`'s chunks (`None` deletes), [`TRUST_WRITES`] at
    /// a time (one after another, 26,000 changes took longer than a lease).
    pub async fn save_trust(&self, changes: &[(u16, ChunkId, Option<TrustRecord>)]) -> Result<(), StoreError> {
        let mut writes = Vec::with_capacity(changes.len());
        for (shard, chunk, record) in changes {
            let key = shard_key(*shard, &chunk.0);
            let bytes = match record {
                Some(r) => Some(bytes::Bytes::from(serde_json::to_vec(r).map_err(|e| kv_err("encode")(e.into()))?)),
                None => None,
            };
            let trust = self.trust.clone();
            writes.push(async move {
                match bytes {
                    Some(b) => trust.put(key, b).await.map(|_| ()).map_err(|e| kv_err("put trust")(e.into())),
                    None => trust.purge(key).await.map_err(|e| kv_err("remove trust")(e.into())),
                }
            });
        }
        let results: Vec<Result<(), StoreError>> =
            futures_util::stream::iter(writes).buffer_unordered(TRUST_WRITES).collect().await;
        results.into_iter().collect()
    }

    /// Every file of `shard`, and the kept verification state of its chunks.
    pub async fn load_shard(&self, shard: u16) -> Result<(Vec<FileRecord>, Vec<(ChunkId, TrustRecord)>), StoreError> {
        let files = last_values(&self.client, &self.files, shard)
            .await?
            .into_iter()
            .filter_map(|(id, v)| {
                let r = crate::persistence::index::decode_record(&id, &v);
                if r.is_none() {
                    tracing::warn!(shard, "skipping a damaged file record in the cluster index");
                }
                r
            })
            .collect();
        let trust = last_values(&self.client, &self.trust, shard)
            .await?
            .into_iter()
            .filter_map(|(id, v)| serde_json::from_slice::<TrustRecord>(&v).ok().map(|r| (ChunkId(id), r)))
            .collect();
        Ok((files, trust))
    }
}

/// The last value of every live key `s{shard}.<64 hex>` of a bucket.
async fn last_values(
    client: &async_nats::Client,
    store: &kv::Store,
    shard: u16,
) -> Result<Vec<([u8; 32], bytes::Bytes)>, StoreError> {
    let consumer = store
        .stream
        .create_consumer(OrderedConfig {
            deliver_subject: client.new_inbox(),
            filter_subject: format!("{}s{shard}.>", store.prefix),
            deliver_policy: DeliverPolicy::LastPerSubject,
            replay_policy: async_nats::jetstream::consumer::ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .map_err(|e| kv_err("read shard")(e.into()))?;
    let mut out = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer.messages().await.map_err(|e| kv_err("read shard")(e.into()))?;
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .map_err(|e| kv_err("read shard")(e.into()))?
    {
        let m = m.map_err(|e| kv_err("read shard")(e.into()))?;
        let pending = m.info().map(|i| i.pending).unwrap_or(0);
        let deleted = m
            .headers
            .as_ref()
            .is_some_and(|h| h.get("KV-Operation").is_some() || h.get("Nats-Marker-Reason").is_some());
        let id = m.subject.rsplit('.').next().and_then(|h| <[u8; 32]>::try_from(hex::decode(h).ok()?).ok());
        if let (false, Some(id)) = (deleted, id) {
            out.push((id, m.payload.clone()));
        }
        if pending == 0 {
            break;
        }
    }
    Ok(out)
}
