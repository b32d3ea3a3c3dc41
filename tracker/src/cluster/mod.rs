//! Several tracker nodes sharing one swarm through NATS (`pp-tracker --cluster nats://…`).
//! Without `--cluster` nothing here runs: one tracker with its redb index is the default.
//!
//! How the swarm is split (see `README.md`, "A tracker cluster"):
//! - **Durable state** (file records, chunk verification state) lives in replicated JetStream
//!   KV buckets ([`store`]) instead of redb.
//! - **Files are sharded** by file id ([`shards`]); each shard is leased to one node, which
//!   keeps that shard's files in its [`swarm_core::swarm::Swarm`] — the same sans-IO core
//!   a single tracker runs — and so locates them, verifies their holders and plans their
//!   repair. A node whose lease lapsed (it lost NATS, or was stopped) refuses those requests
//!   with `unavailable` until it has renewed, instead of diverging. A node that takes a shard
//!   over loads it from KV and asks peers, in batches, to re-announce ([`leases`]).
//! - **Every node knows every live peer** (which node it is connected to, its kind and
//!   storage report: [`msg::NodeMsg::Joined`]/[`msg::NodeMsg::Left`], about 100 bytes per
//!   peer per node), so any node can sign peers up as repair targets, and route signalling,
//!   relay frames and orders to the node the peer is connected to ([`route`], [`inbound`]).
//! - **A claim lives only on the node that keeps its chunk's file** ([`claims`]): a peer's
//!   `have`, `dropped` and `bad_source` are split by a chunk index every node keeps from the
//!   KV file index ([`index`]); `storage` and `leave` go to every node; requests about one file (`publish`, `locate`, `unpublish`, `nonces`) to the owner of
//!   its shard; answers to orders and challenges to the node that sent them (order and
//!   challenge ids carry the node's tag: [`swarm_core::swarm::Swarm::set_id_base`]); search
//!   and file details are asked of every node ([`msg::Query`]).

pub mod claims;
pub mod inbound;
pub mod index;
pub mod leases;
pub mod local;
pub mod msg;
pub mod route;
pub mod shards;
pub mod store;

use msg::NodeMsg;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use swarm_core::cluster::lease::Leases;
use tokio::sync::mpsc;

pub use crate::config::ClusterConfig;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to NATS at {servers}: {source}")]
    Connect { servers: String, source: async_nats::ConnectError },
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub msgs_out: AtomicU64,
    pub msgs_in: AtomicU64,
    pub relay_out: AtomicU64,
    pub relay_in: AtomicU64,
    /// Messages not sent: the queue to NATS was full, or NATS refused them.
    pub dropped: AtomicU64,
    pub shards_taken: AtomicU64,
    pub shards_lost: AtomicU64,
    pub refused_unavailable: AtomicU64,
    /// Claims sent to the nodes that keep their chunks, as peers announced them.
    pub claims_sent: AtomicU64,
    /// Loose claims moved to the node that keeps their chunks once it was known.
    pub claims_moved: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// What goes out to NATS.
enum Outgoing {
    All(Vec<u8>),
    To(u16, Vec<u8>),
    Relay(u16, Vec<u8>),
}

/// Messages waiting for NATS; beyond this they are dropped and counted (a node cut off from
/// NATS must not grow without bound).
const OUT_QUEUE: usize = 65_536;

/// This node's membership of a cluster.
pub struct Cluster {
    /// This node's tag: random, names it in every message and in its order and challenge ids.
    pub tag: u16,
    pub config: ClusterConfig,
    pub client: async_nats::Client,
    pub store: store::Store,
    out: mpsc::Sender<Outgoing>,
    /// Membership and leases, sans-IO ([`swarm_core::cluster::lease`]); [`leases::run`] drives it.
    machine: Mutex<Leases>,
    /// The machine's clock starts here (its times are milliseconds since).
    epoch: Instant,
    /// Wakes [`leases::run`]: an input fed from another task may have left outputs.
    pub wake: tokio::sync::Notify,
    /// Per node: heartbeats in a row whose peer count differed from this node's count of that
    /// node's peers (a lost roster or `joined`: see [`msg::NodeMsg::RosterPlease`]).
    pub off_counts: Mutex<HashMap<u16, u32>>,
    pub stats: ClusterStats,
    /// Which shards every chunk of every published file is in ([`index::follow`] keeps it).
    index: Mutex<index::ChunkIndex>,
    /// Makes [`index::follow`] read the file index anew.
    pub rewatch_index: tokio::sync::Notify,
    /// Wakes [`claims::reannouncer`].
    pub reannounce_wanted: std::sync::Arc<tokio::sync::Notify>,
    /// The tracker's state, set once it exists (tasks spawned from a connection take it).
    state: std::sync::OnceLock<std::sync::Weak<crate::driver::Shared>>,
}

/// What the shared state asks of the cluster ([`crate::core::NodeLink`]).
impl crate::core::NodeLink for Cluster {
    fn tag(&self) -> u16 {
        self.tag
    }

    fn urls(&self) -> Vec<String> {
        Cluster::urls(self)
    }

    fn members(&self) -> BTreeSet<u16> {
        Cluster::members(self)
    }

    fn peer_left(&self, peer: &swarm_core::PeerId) {
        self.broadcast(&NodeMsg::Left { node: self.tag, peer: peer.clone() });
    }

    fn to_peer(&self, node: u16, peer: swarm_core::PeerId, msg: swarm_core::ServerMsg) {
        self.send_to(node, &NodeMsg::ToPeer { node: self.tag, peer, msg });
    }
}

impl Cluster {
    /// Connects to NATS, opens the buckets and starts the sender task.
    pub async fn connect(config: ClusterConfig) -> Result<std::sync::Arc<Self>, ClusterError> {
        let servers = config.servers.join(",");
        let reannounce_wanted = std::sync::Arc::new(tokio::sync::Notify::new());
        let wake = reannounce_wanted.clone();
        let client = async_nats::ConnectOptions::new()
            // Core NATS carries messages at most once: what this node's peers announced while
            // the client moved to another server may be lost. Their next inventory is not.
            .event_callback(move |event| {
                let wake = wake.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        wake.notify_one();
                    }
                }
            })
            .name(format!("pp-tracker {}", config.public_url))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            // A NATS server that hangs (stopped, or cut off) keeps its TCP connection open: pings
            // every period find out in a few periods, and the client moves to another server.
            .ping_interval(config.period().max(Duration::from_millis(500)))
            .connect(config.servers.clone())
            .await
            .map_err(|source| ClusterError::Connect { servers: servers.clone(), source })?;
        // The first connection is awaited so a wrong URL is an error at start, not a hang.
        tokio::time::timeout(Duration::from_secs(10), async {
            while client.connection_state() != async_nats::connection::State::Connected {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .map_err(|_| ClusterError::Connect {
            servers: servers.clone(),
            source: async_nats::ConnectError::new(async_nats::ConnectErrorKind::TimedOut),
        })?;
        let js = async_nats::jetstream::new(client.clone());
        let mut config = config;
        if config.replicas_auto {
            // As many copies as NATS servers (at most 3), whatever subset of them this node was
            // given: a node given one URL of a 3-server cluster must not make the index R1 on
            // that one server (the cluster's servers advertise each other's client URLs).
            let known = client.server_info().connect_urls.len().max(config.servers.len());
            config.replicas = known.clamp(1, 3);
        }
        let store = store::Store::open(&js, &config.prefix, config.replicas, config.lease_ttl).await?;
        store.agree_shards(config.shards).await?;
        let tag = loop {
            let t: u16 = rand::random();
            if t != 0 {
                break t;
            }
        };
        let (out, rx) = mpsc::channel(OUT_QUEUE);
        let cluster = std::sync::Arc::new(Self {
            tag,
            machine: Mutex::new(Leases::new(
                tag,
                config.shards,
                swarm_core::cluster::Timing::new(config.lease_ttl.as_millis() as u64),
                0,
            )),
            epoch: Instant::now(),
            wake: tokio::sync::Notify::new(),
            off_counts: Mutex::new(HashMap::new()),
            config,
            client,
            store,
            out,
            stats: ClusterStats::default(),
            index: Mutex::new(index::ChunkIndex::default()),
            reannounce_wanted,
            rewatch_index: tokio::sync::Notify::new(),
            state: std::sync::OnceLock::new(),
        });
        tokio::spawn(send_loop(cluster.clone(), rx));
        tracing::info!(node = tag, servers, replicas = cluster.config.replicas, "joined the tracker cluster");
        Ok(cluster)
    }

    /// Starts this node's cluster work over the tracker's state.
    pub fn start(
        self: &std::sync::Arc<Self>,
        state: &std::sync::Arc<crate::driver::Shared>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let _ = self.state.set(std::sync::Arc::downgrade(state));
        vec![
            tokio::spawn(inbound::run(state.clone(), self.clone())),
            tokio::spawn(leases::run(state.clone(), self.clone())),
            tokio::spawn(inbound::beats(state.clone(), self.clone())),
            tokio::spawn(leases::persist(state.clone(), self.clone())),
            tokio::spawn(index::follow(self.clone())),
            tokio::spawn(claims::reannouncer(state.clone(), self.clone())),
            tokio::spawn(claims::run(state.clone(), self.clone())),
        ]
    }

    /// The tracker's state (`None` before [`Cluster::start`] or after shutdown).
    pub fn state(&self) -> Option<std::sync::Arc<crate::driver::Shared>> {
        self.state.get().and_then(std::sync::Weak::upgrade)
    }

    pub fn subject_all(&self) -> String {
        format!("{}.all", self.config.prefix)
    }
    /// Heartbeats alone: a backlog of announcements on the other subjects must not delay them
    /// (a node whose own heartbeat comes back late takes itself for cut off).
    pub fn subject_beat(&self) -> String {
        format!("{}.beat", self.config.prefix)
    }
    pub fn subject_node(&self, tag: u16) -> String {
        format!("{}.n.{tag}", self.config.prefix)
    }
    pub fn subject_relay(&self, tag: u16) -> String {
        format!("{}.r.{tag}", self.config.prefix)
    }
    pub fn subject_query(&self) -> String {
        format!("{}.q", self.config.prefix)
    }

    /// The lease machine (feed it, then [`Cluster::wake`] the driver if it may have outputs).
    pub fn machine(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The machine's time now.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn index(&self) -> std::sync::MutexGuard<'_, index::ChunkIndex> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks this node's peers to re-announce (soon, in batches: [`claims::reannouncer`]).
    pub fn want_reannounce(&self) {
        self.reannounce_wanted.notify_one();
    }

    fn queue(&self, o: Outgoing) {
        if self.out.try_send(o).is_err() {
            add(&self.stats.dropped, 1);
        }
    }

    /// Tells every other node.
    pub fn broadcast(&self, msg: &NodeMsg) {
        self.queue(Outgoing::All(msg::encode(msg)));
    }

    /// Tells node `tag`.
    pub fn send_to(&self, tag: u16, msg: &NodeMsg) {
        self.queue(Outgoing::To(tag, msg::encode(msg)));
    }

    /// Hands a relay frame to node `tag` for its peer `to` (16 raw id bytes).
    pub fn relay_to(&self, tag: u16, to: [u8; 16], frame: &[u8]) {
        let mut payload = Vec::with_capacity(16 + frame.len());
        payload.extend_from_slice(&to);
        payload.extend_from_slice(frame);
        add(&self.stats.relay_out, 1);
        self.queue(Outgoing::Relay(tag, payload));
    }

    /// The shard of `file`.
    pub fn shard_of(&self, file: &swarm_core::FileId) -> u16 {
        shards::shard_of(file, self.config.shards)
    }

    /// Whether this node keeps `shard` now: it holds a lease whose last renewal was sent
    /// recently enough, the shard's files are loaded, and NATS carries its messages.
    pub fn owns(&self, shard: u16) -> bool {
        self.machine().acts(self.now_ms(), shard)
    }

    /// Whether NATS carried this node's own heartbeat back lately: the one test that covers
    /// every way of being cut off (a dead or stopped NATS server, a partition, a full
    /// buffer), long before the client's own ping timeout notices.
    pub fn connected(&self) -> bool {
        self.machine().connected(self.now_ms())
    }

    /// Whether this node can reach the shards it does not keep: it hears itself through NATS,
    /// and it is not alone without every shard. A node cut off behind its own NATS server
    /// still hears its own heartbeats (measured between namespaces), but no other node; a
    /// node truly alone keeps every shard.
    pub fn reaches_cluster(&self) -> bool {
        self.machine().reaches_cluster(self.now_ms())
    }

    /// The node that keeps `shard`, as heard within a lease time (`None`: no node right now,
    /// or not known for sure).
    pub fn owner(&self, shard: u16) -> Option<u16> {
        self.machine().owner(self.now_ms(), shard)
    }

    /// Every shard's owner ([`Cluster::owner`]).
    pub fn owners(&self) -> Vec<Option<u16>> {
        self.machine().owners(self.now_ms())
    }

    /// Live nodes, this one included.
    pub fn members(&self) -> BTreeSet<u16> {
        self.machine().members(self.now_ms())
    }

    /// Every live node's public `/ws` URL, this one first.
    pub fn urls(&self) -> Vec<String> {
        let m = self.machine();
        let mut urls = vec![self.config.public_url.clone()];
        let mut others: Vec<String> =
            m.others(self.now_ms()).map(|(_, m)| m.url.clone()).filter(|u| !u.is_empty()).collect();
        others.sort();
        urls.extend(others);
        urls.dedup();
        urls
    }

    /// Shards this node keeps now (acts for: [`Cluster::owns`]).
    pub fn shards_owned(&self) -> usize {
        self.machine().kept(self.now_ms()).len()
    }

    /// Asks every node (this one too) `query`; the answers that came within `wait`.
    pub async fn ask_all(&self, query: &msg::Query, wait: Duration) -> Vec<msg::Answer> {
        use futures_util::StreamExt;
        let expected = self.members().len();
        let inbox = self.client.new_inbox();
        let Ok(mut sub) = self.client.subscribe(inbox.clone()).await else { return Vec::new() };
        if self.client.publish_with_reply(self.subject_query(), inbox, msg::encode(query).into()).await.is_err() {
            return Vec::new();
        }
        let mut answers = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while answers.len() < expected {
            match tokio::time::timeout_at(deadline, sub.next()).await {
                Ok(Some(m)) => {
                    if let Ok(a) = msg::decode::<msg::Answer>(&m.payload) {
                        answers.push(a);
                    }
                }
                _ => break,
            }
        }
        let _ = sub.unsubscribe().await;
        answers
    }
}

/// Carries queued messages to NATS, in order.
async fn send_loop(cluster: std::sync::Arc<Cluster>, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(o) = rx.recv().await {
        let (subject, payload) = match o {
            Outgoing::All(p) => (cluster.subject_all(), p),
            Outgoing::To(t, p) => (cluster.subject_node(t), p),
            Outgoing::Relay(t, p) => (cluster.subject_relay(t), p),
        };
        match cluster.client.publish(subject, payload.into()).await {
            Ok(()) => add(&cluster.stats.msgs_out, 1),
            Err(e) => {
                add(&cluster.stats.dropped, 1);
                tracing::debug!("cannot send to the cluster: {e}");
            }
        }
    }
}
