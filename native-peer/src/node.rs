//! A running native peer: its tracker connection, its chunk store, its connections to other
//! peers, and its duties to the swarm: answering offers and relayed requests (serving),
//! carrying out replication orders, dropping trimmed chunks, handing chunks off on `leave`.

use crate::cli::PeerError;
use crate::conn::{FetchError, Outbound, PeerConn};
use crate::relay::RelaySender;
use crate::rtc::{Link, LinkEvent, RtcEnv, SignalHandle};
use crate::store::{ChunkStore, StoreError, StoredFile};
use crate::tracker_client::{Incoming, TrackerClient};
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_core::chunk_proto::{frames, PeerMsg, ProtoError, DEFAULT_FRAME_PAYLOAD};
use swarm_core::relay::RelayFrame;
use swarm_core::wire::FileMeta;
use swarm_core::{
    ChunkId, ClientMsg, FileId, LinkPath, ManifestBuilder, PathReport, PeerId, ServerMsg, Signal, CHUNK_SIZE,
};
use tokio::sync::{mpsc, watch, OnceCell, Semaphore};

/// Bytes this peer moved (tests read these to prove the path the bytes took).
#[derive(Debug, Default)]
pub struct DataStats {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub relay_received: AtomicU64,
    pub relay_sent: AtomicU64,
    /// Chunks received per source peer (verified and stored), for `status`.
    pub chunks_from: Mutex<HashMap<PeerId, u64>>,
    /// Chunks refused because they did not hash to their id.
    pub bad_chunks: AtomicU64,
    /// Chunk-protocol bytes received, by path (index: position in [`LinkPath::ALL`]).
    pub path_bytes: [AtomicU64; 4],
}

impl DataStats {
    pub fn add_path_bytes(&self, path: LinkPath, n: usize) {
        let i = LinkPath::ALL.iter().position(|p| *p == path).expect("listed");
        self.path_bytes[i].fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// How a node is started.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub tracker_url: String,
    /// An extra CA certificate (PEM) to trust for a `wss://` tracker.
    pub tracker_ca: Option<PathBuf>,
    /// The one local address for WebRTC; `None`: every usable interface (see `rtc::net`).
    pub rtc_ip: Option<IpAddr>,
    /// Most bytes of chunks to keep.
    pub max_storage: u64,
    /// Time a data channel has to open before the attempt is given up (the relay carries
    /// the requests from [`DIRECT_GRACE`] on).
    pub rtc_timeout: Duration,
    /// Never try WebRTC (for tests and hostile networks).
    pub relay_only: bool,
    /// Connection attempts before giving up at start.
    pub connect_attempts: u32,
    /// Test only: flip a byte of every chunk served, to play a lying peer.
    pub corrupt_serve: bool,
}

/// Chunk ids per inventory message (about 660 KiB of JSON, well under the tracker's limit).
const INVENTORY_BATCH: usize = 10_000;

/// How long a peer whose connection failed is left alone.
const LOST_COOLDOWN: Duration = Duration::from_secs(5);

/// Replication orders carried out at once.
const ORDER_CONCURRENCY: usize = 8;

/// How long a new connection waits for a data channel before its requests start flowing
/// through the tracker relay (the WebRTC attempt goes on, and the connection moves to the
/// channel when it opens). Between namespaces a channel opens in 20-60 ms and on a real LAN
/// or through NATs in one to three round trips more; 300 ms keeps the relay out of every
/// path that works and still leaves time to first chunk well under a second where only the
/// relay does.
pub const DIRECT_GRACE: Duration = Duration::from_millis(300);

/// How often the node tells the tracker its links by path (when they changed).
const PATH_REPORT_EVERY: Duration = Duration::from_secs(5);

type ConnCell = Arc<OnceCell<Arc<PeerConn>>>;

pub struct Node {
    pub tracker: Arc<TrackerClient>,
    pub store: ChunkStore,
    pub config: NodeConfig,
    /// Signalling routes of WebRTC links, by (peer, conn).
    routes: Mutex<HashMap<(PeerId, u64), SignalHandle>>,
    /// Serving links (answered offers) open now, and their paths.
    serving: Mutex<HashMap<(PeerId, u64), LinkPath>>,
    /// Local addresses and STUN servers for new links.
    rtc_env: Mutex<RtcEnv>,
    /// Relay connections this node fetches through, by (peer, conn).
    relay_routes: Mutex<HashMap<(PeerId, u64), mpsc::UnboundedSender<LinkEvent>>>,
    /// Fetching connections, one per remote peer, shared.
    conns: Mutex<HashMap<PeerId, ConnCell>>,
    /// When a connection to a peer last failed or closed.
    lost: Mutex<HashMap<PeerId, std::time::Instant>>,
    orders: Semaphore,
    /// `LeaveReady` from the tracker: the number of stranded chunks.
    leave_ready: watch::Sender<Option<u32>>,
    pub stats: DataStats,
    /// Chunks newly stored and not yet announced (sent in batches: see [`Node::announce_have`]).
    have_batch: Mutex<Vec<ChunkId>>,
    have_wake: tokio::sync::Notify,
}

/// How long newly stored chunks wait to be announced together: the tracker limits messages
/// per second, and a fast download stores hundreds of chunks a second.
const HAVE_BATCH_DELAY: Duration = Duration::from_millis(50);

impl Node {
    /// Connects to the tracker, announces the whole inventory and starts its duties.
    pub async fn start(config: NodeConfig, data_dir: &Path) -> anyhow::Result<Arc<Self>> {
        let store = ChunkStore::open_with_capacity(data_dir, config.max_storage)?;
        let secret = crate::identity::load_or_create_secret(data_dir)?;
        let tls = if crate::tls::is_wss(&config.tracker_url) {
            Some(crate::tls::client_config(config.tracker_ca.as_deref())?)
        } else {
            if let Some(ca) = &config.tracker_ca {
                tracing::warn!("--tracker-ca {} is not used: the tracker URL is not wss://", ca.display());
            }
            None
        };
        let (tracker, incoming) = TrackerClient::connect(&config.tracker_url, &secret, config.connect_attempts, tls)
            .await
            .map_err(PeerError::from)?;
        let ifaces =
            crate::rtc::net::local_ifaces(config.rtc_ip, crate::rtc::net::tracker_on_loopback(&config.tracker_url));
        let node = Arc::new(Self {
            tracker,
            store,
            config,
            routes: Mutex::default(),
            serving: Mutex::default(),
            rtc_env: Mutex::new(RtcEnv { ifaces, stun_servers: Vec::new() }),
            relay_routes: Mutex::default(),
            conns: Mutex::default(),
            lost: Mutex::default(),
            orders: Semaphore::new(ORDER_CONCURRENCY),
            leave_ready: watch::Sender::new(None),
            stats: DataStats::default(),
            have_batch: Mutex::default(),
            have_wake: tokio::sync::Notify::new(),
        });
        let (corrupt_tx, mut corrupt_rx) = mpsc::unbounded_channel();
        node.store.notify_corrupt(corrupt_tx);
        let weak = Arc::downgrade(&node);
        tokio::spawn(async move {
            while let Some(c) = corrupt_rx.recv().await {
                let Some(n) = weak.upgrade() else { break };
                n.tracker.send(ClientMsg::Dropped { chunks: vec![c] });
                n.report_storage();
            }
        });
        tokio::spawn(Self::flush_haves(Arc::downgrade(&node)));
        tokio::spawn(Self::report_paths(Arc::downgrade(&node)));
        node.resolve_stun_servers().await;
        tracing::debug!(env = ?node.rtc_env.lock().unwrap(), "WebRTC candidates");
        node.announce();
        tracing::info!(peer = %node.peer_id(), chunks = node.store.list().len(), "joined the swarm");
        tokio::spawn(node.clone().dispatch(incoming));
        Ok(node)
    }

    pub fn peer_id(&self) -> &PeerId {
        &self.tracker.peer_id
    }

    /// Resolves the STUN servers of the tracker's latest `welcome` (`stun:host[:port]`,
    /// port 3478 by default) for new links.
    async fn resolve_stun_servers(&self) {
        let urls: Vec<String> = self.tracker.ice_servers.lock().unwrap().iter().flat_map(|s| s.urls.clone()).collect();
        let mut addrs = Vec::new();
        for target in urls.iter().filter_map(|u| crate::rtc::net::stun_target(u)).take(4) {
            match tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host(target.as_str())).await {
                Ok(Ok(found)) => addrs.extend(found.take(2)),
                _ => tracing::warn!("cannot resolve STUN server {target}"),
            }
        }
        addrs.dedup();
        self.rtc_env.lock().unwrap().stun_servers = addrs;
    }

    /// This node's links by path: open now, and bytes received since start.
    pub fn path_report(&self) -> PathReport {
        let mut links: HashMap<LinkPath, u32> = HashMap::new();
        for conn in self.conns.lock().unwrap().values().filter_map(|c| c.get()).filter(|c| !c.is_closed()) {
            *links.entry(conn.path()).or_default() += 1;
        }
        for path in self.serving.lock().unwrap().values() {
            *links.entry(*path).or_default() += 1;
        }
        PathReport {
            links: LinkPath::ALL.iter().map(|p| (*p, links.get(p).copied().unwrap_or(0))).collect(),
            bytes_received: LinkPath::ALL
                .iter()
                .zip(&self.stats.path_bytes)
                .map(|(p, n)| (*p, n.load(Ordering::Relaxed)))
                .collect(),
        }
    }

    /// Links open now: (peer, path, whether this node fetches over it or serves).
    pub fn links(&self) -> Vec<(PeerId, LinkPath, &'static str)> {
        let mut out: Vec<_> = self
            .conns
            .lock()
            .unwrap()
            .values()
            .filter_map(|c| c.get())
            .filter(|c| !c.is_closed())
            .map(|c| (c.peer.clone(), c.path(), "fetch"))
            .collect();
        out.extend(self.serving.lock().unwrap().iter().map(|((p, _), path)| (p.clone(), *path, "serve")));
        out
    }

    async fn report_paths(node: std::sync::Weak<Self>) {
        let mut last = PathReport::default();
        loop {
            tokio::time::sleep(PATH_REPORT_EVERY).await;
            let Some(n) = node.upgrade() else { return };
            let report = n.path_report();
            if report != last {
                n.tracker.send(ClientMsg::Paths { report: report.clone() });
                last = report;
            }
        }
    }

    /// Tells the tracker everything this peer holds and the room it offers.
    fn announce(&self) {
        // In batches, so a large store stays under the tracker's message size limit: the
        // first replaces what the tracker knew, the rest add to it.
        let chunks = self.store.list();
        let mut batches = chunks.chunks(INVENTORY_BATCH);
        self.tracker.send(ClientMsg::Have { chunks: batches.next().unwrap_or_default().to_vec(), full: true });
        for batch in batches {
            self.tracker.send(ClientMsg::Have { chunks: batch.to_vec(), full: false });
        }
        self.report_storage();
    }

    /// Announces a newly stored chunk: batched with others stored within
    /// [`HAVE_BATCH_DELAY`], so a fast download stays under the tracker's message rate limit.
    pub fn announce_have(&self, chunk: ChunkId) {
        let first = {
            let mut b = self.have_batch.lock().unwrap();
            b.push(chunk);
            b.len() == 1
        };
        if first {
            self.have_wake.notify_one();
        }
    }

    async fn flush_haves(node: std::sync::Weak<Self>) {
        loop {
            let Some(n) = node.upgrade() else { return };
            if n.have_batch.lock().unwrap().is_empty() {
                // Wake up now and then to notice the node is gone.
                let _ = tokio::time::timeout(Duration::from_secs(5), n.have_wake.notified()).await;
                continue;
            }
            tokio::time::sleep(HAVE_BATCH_DELAY).await;
            let chunks = std::mem::take(&mut *n.have_batch.lock().unwrap());
            if !chunks.is_empty() {
                n.tracker.send(ClientMsg::Have { chunks, full: false });
                n.report_storage();
            }
        }
    }

    /// Sends the announcements still batched and waits until the tracker has taken every
    /// message queued so far (a short-lived peer calls this before it exits).
    pub async fn flush(&self) {
        let chunks = std::mem::take(&mut *self.have_batch.lock().unwrap());
        if !chunks.is_empty() {
            self.tracker.send(ClientMsg::Have { chunks, full: false });
            self.report_storage();
        }
        // Answers come in order on the one websocket: once this one is back, all before it
        // were handled.
        let ping = self.tracker.request(|req| ClientMsg::Search { req, query: String::new(), limit: 1 });
        let _ = tokio::time::timeout(Duration::from_secs(5), ping).await;
    }

    /// Reads every stored chunk, drops the corrupt ones and tells the tracker.
    pub async fn scrub(&self) -> anyhow::Result<crate::store::ScrubReport> {
        let store = self.store.clone();
        let report = tokio::task::spawn_blocking(move || store.scrub()).await?;
        if report.dropped.is_empty() {
            tracing::debug!(checked = report.checked, "scrub: every chunk is sound");
        } else {
            tracing::warn!(checked = report.checked, dropped = report.dropped.len(), "scrub dropped corrupt chunks");
        }
        Ok(report)
    }

    fn report_storage(&self) {
        self.tracker.send(ClientMsg::Storage { used: self.store.used(), capacity: self.store.capacity });
    }

    async fn dispatch(self: Arc<Self>, mut incoming: mpsc::UnboundedReceiver<Incoming>) {
        while let Some(inc) = incoming.recv().await {
            match inc {
                Incoming::Reconnected => {
                    self.resolve_stun_servers().await;
                    self.announce()
                }
                Incoming::Relay(frame) => self.on_relay(frame),
                Incoming::Msg(ServerMsg::Signal { from, conn, signal }) => self.on_signal(from, conn, signal).await,
                Incoming::Msg(ServerMsg::Replicate { order, chunk, size, sources }) => {
                    tokio::spawn(self.clone().replicate(order, chunk, size, sources));
                }
                Incoming::Msg(ServerMsg::Trim { chunks }) => {
                    // Chunks of files this peer's user put or fetched (even partly: a download
                    // resumes from them) are kept; only surplus replica copies go.
                    let pinned: std::collections::HashSet<ChunkId> =
                        self.store.files().into_iter().flat_map(|f| f.manifest.chunks).collect();
                    let dropped: Vec<ChunkId> =
                        chunks.into_iter().filter(|c| !pinned.contains(c) && self.store.remove(c)).collect();
                    tracing::info!(chunks = dropped.len(), "trimmed surplus copies");
                    self.tracker.send(ClientMsg::Dropped { chunks: dropped });
                    self.report_storage();
                }
                Incoming::Msg(ServerMsg::LeaveReady { stranded }) => {
                    self.leave_ready.send_replace(Some(stranded));
                }
                Incoming::Msg(other) => tracing::debug!(?other, "unexpected message from the tracker"),
            }
        }
    }

    async fn on_signal(self: &Arc<Self>, from: PeerId, conn: u64, signal: Signal) {
        if let Signal::Offer { sdp } = &signal {
            if self.config.relay_only {
                let close = Signal::Close { reason: "this peer uses the relay only".into() };
                self.tracker.send(ClientMsg::Signal { to: from, conn, signal: close });
                return;
            }
            let env = self.rtc_env.lock().unwrap().clone();
            match Link::answer(&env, sdp) {
                Ok(link) => {
                    self.routes.lock().unwrap().insert((from.clone(), conn), link.signal_handle());
                    tokio::spawn(self.clone().serve_link(from, conn, link));
                }
                Err(e) => {
                    tracing::warn!(peer = %from, "cannot answer offer: {e:#}");
                    let close = Signal::Close { reason: format!("{e:#}") };
                    self.tracker.send(ClientMsg::Signal { to: from, conn, signal: close });
                }
            }
            return;
        }
        if signal == Signal::Gone {
            // The tracker says the peer is not there: no relay fallback, no retry for a while.
            self.lost.lock().unwrap().insert(from.clone(), std::time::Instant::now());
        }
        let route = self.routes.lock().unwrap().get(&(from.clone(), conn)).cloned();
        match route {
            Some(r) => r.deliver(signal),
            None => tracing::debug!(peer = %from, conn, "signal for an unknown link"),
        }
    }

    /// A relay frame: an answer for one of our relay connections, or a request to serve.
    fn on_relay(self: &Arc<Self>, frame: RelayFrame) {
        self.stats.relay_received.fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
        let key = (frame.peer.clone(), frame.conn);
        if let Some(tx) = self.relay_routes.lock().unwrap().get(&key) {
            self.stats.add_path_bytes(LinkPath::Relay, frame.payload.len());
            let _ = tx.send(LinkEvent::Message(frame.payload));
            return;
        }
        match PeerMsg::decode(&frame.payload) {
            Ok(PeerMsg::Request { req, chunk }) => {
                let sender = RelaySender { tracker: self.tracker.clone(), peer: frame.peer, conn: frame.conn };
                let node = self.clone();
                tokio::spawn(async move {
                    for m in node.answer(req, chunk).await {
                        node.stats.relay_sent.fetch_add(m.len() as u64, Ordering::Relaxed);
                        if sender.send(m).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Ok(_) => tracing::debug!(peer = %frame.peer.short(), "relay answer for no open request"),
            Err(e) => tracing::warn!(peer = %frame.peer.short(), "bad relayed message: {e}"),
        }
    }

    /// The frames answering a request: the chunk, verified from disk, or `missing`.
    async fn answer(&self, req: u32, chunk: ChunkId) -> Vec<Vec<u8>> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.get(&chunk)).await {
            Ok(Ok(Some(mut b))) => {
                if self.config.corrupt_serve {
                    if let Some(x) = b.first_mut() {
                        *x ^= 0x55;
                    }
                }
                frames(req, &b, DEFAULT_FRAME_PAYLOAD).collect()
            }
            _ => vec![PeerMsg::Missing { req }.encode()],
        }
    }

    /// Serves chunk requests arriving on an answered link until it closes.
    async fn serve_link(self: Arc<Self>, from: PeerId, conn: u64, mut link: Link) {
        while let Some(ev) = link.events.recv().await {
            match ev {
                LinkEvent::Signal(s) => self.forward_signal(&from, conn, s),
                LinkEvent::Open(path) => {
                    tracing::debug!(peer = %from.short(), path = path.as_str(), "serving link open");
                    self.serving.lock().unwrap().insert((from.clone(), conn), path);
                }
                LinkEvent::Message(bytes) => {
                    self.stats.received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    match PeerMsg::decode(&bytes) {
                        Ok(PeerMsg::Request { req, chunk }) => {
                            for m in self.answer(req, chunk).await {
                                self.stats.sent.fetch_add(m.len() as u64, Ordering::Relaxed);
                                if link.sender.send(m).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Ok(other) => {
                            tracing::debug!(peer = %from.short(), ?other, "unexpected message on a serving link")
                        }
                        Err(e) => tracing::warn!(peer = %from.short(), "bad message: {e}"),
                    }
                }
                LinkEvent::Closed(reason) => {
                    tracing::debug!(peer = %from.short(), %reason, "serving link closed");
                    break;
                }
            }
        }
        self.serving.lock().unwrap().remove(&(from.clone(), conn));
        self.routes.lock().unwrap().remove(&(from, conn));
    }

    fn forward_signal(&self, to: &PeerId, conn: u64, s: Signal) {
        self.tracker.send(ClientMsg::Signal { to: to.clone(), conn, signal: s });
    }

    /// The shared fetching connection to `peer`, opened on first use: a WebRTC data channel,
    /// or the tracker relay if none opens in time.
    /// A peer whose connection just failed or closed is not tried again for
    /// [`LOST_COOLDOWN`]: callers go to other holders instead of waiting on a peer that is
    /// most likely gone.
    pub async fn conn(self: &Arc<Self>, peer: &PeerId) -> anyhow::Result<Arc<PeerConn>> {
        if let Some(at) = self.lost.lock().unwrap().get(peer) {
            if at.elapsed() < LOST_COOLDOWN {
                bail!("the connection to {} failed moments ago", peer.short());
            }
        }
        let cell = self.conns.lock().unwrap().entry(peer.clone()).or_default().clone();
        let result = match cell.get_or_try_init(|| self.open_conn(peer)).await {
            Ok(c) if !c.is_closed() => return Ok(c.clone()),
            Ok(_) => Err(anyhow::anyhow!("the connection to {} closed", peer.short())),
            Err(e) => Err(e),
        };
        self.forget_conn(peer, &cell);
        self.lost.lock().unwrap().insert(peer.clone(), std::time::Instant::now());
        result
    }

    fn forget_conn(&self, peer: &PeerId, cell: &ConnCell) {
        let mut conns = self.conns.lock().unwrap();
        if conns.get(peer).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            conns.remove(peer);
        }
    }

    /// Opens a connection to `peer`: a data channel if one opens within [`DIRECT_GRACE`];
    /// otherwise the tracker relay at once, moved to the data channel if it opens later.
    async fn open_conn(self: &Arc<Self>, peer: &PeerId) -> anyhow::Result<Arc<PeerConn>> {
        if self.config.relay_only {
            return Ok(self.relay_conn(peer).0);
        }
        let mut attempt = match self.start_rtc(peer) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(peer = %peer.short(), "cannot start WebRTC ({e:#}): using the tracker relay");
                return Ok(self.relay_conn(peer).0);
            }
        };
        match tokio::time::timeout(DIRECT_GRACE, self.wait_open(peer, &mut attempt)).await {
            Ok(Ok(path)) => Ok(self.direct_conn(peer, attempt, path)),
            Ok(Err(e)) => {
                self.routes.lock().unwrap().remove(&(peer.clone(), attempt.conn_id));
                // `conn` checked `lost` before this attempt: an entry now is the tracker's
                // word that the peer is gone (see `on_signal`); the relay cannot reach it either.
                if self.lost.lock().unwrap().get(peer).is_some_and(|at| at.elapsed() < LOST_COOLDOWN) {
                    return Err(e);
                }
                tracing::info!(peer = %peer.short(), "no data channel ({e:#}): using the tracker relay");
                Ok(self.relay_conn(peer).0)
            }
            Err(_) => {
                tracing::debug!(peer = %peer.short(), "no data channel yet: starting on the relay");
                let (conn, events) = self.relay_conn(peer);
                let (node, peer, conn2) = (self.clone(), peer.clone(), conn.clone());
                let rest = self.config.rtc_timeout.saturating_sub(DIRECT_GRACE);
                tokio::spawn(async move {
                    match tokio::time::timeout(rest, node.wait_open(&peer, &mut attempt)).await {
                        Ok(Ok(path)) if !conn2.is_closed() => node.upgrade(&conn2, attempt, path, events),
                        outcome => {
                            node.routes.lock().unwrap().remove(&(peer.clone(), attempt.conn_id));
                            let why = match outcome {
                                Ok(Err(e)) => format!("{e:#}"),
                                Err(_) => format!("none within {:?}", node.config.rtc_timeout),
                                Ok(Ok(_)) => "the connection closed meanwhile".into(),
                            };
                            tracing::info!(peer = %peer.short(), "no data channel ({why}): staying on the tracker relay");
                        }
                    }
                });
                Ok(conn)
            }
        }
    }

    /// A connection through the tracker relay, and the sender of its event queue (for a
    /// data channel that may join it later).
    fn relay_conn(self: &Arc<Self>, peer: &PeerId) -> (Arc<PeerConn>, mpsc::UnboundedSender<LinkEvent>) {
        let conn_id = rand::random::<u64>() >> 12;
        let (tx, rx) = mpsc::unbounded_channel();
        self.relay_routes.lock().unwrap().insert((peer.clone(), conn_id), tx.clone());
        let sender = RelaySender { tracker: self.tracker.clone(), peer: peer.clone(), conn: conn_id };
        let (node, key) = (Arc::downgrade(self), (peer.clone(), conn_id));
        let conn = PeerConn::start(
            peer.clone(),
            LinkPath::Relay,
            Outbound::Relay(sender),
            rx,
            |_| {},
            move || {
                if let Some(n) = node.upgrade() {
                    n.relay_routes.lock().unwrap().remove(&key);
                }
            },
        );
        (conn, tx)
    }

    /// Starts a WebRTC attempt: the offer goes out through the tracker.
    fn start_rtc(&self, peer: &PeerId) -> anyhow::Result<RtcAttempt> {
        let env = self.rtc_env.lock().unwrap().clone();
        let link = Link::offer(&env)?;
        let conn_id = rand::random::<u64>() >> 12; // stays exact in JavaScript numbers
        self.routes.lock().unwrap().insert((peer.clone(), conn_id), link.signal_handle());
        Ok(RtcAttempt { link, conn_id })
    }

    /// Carries the attempt's signalling until its data channel opens (its path) or it ends.
    async fn wait_open(&self, peer: &PeerId, attempt: &mut RtcAttempt) -> anyhow::Result<LinkPath> {
        while let Some(ev) = attempt.link.events.recv().await {
            match ev {
                LinkEvent::Signal(s) => self.forward_signal(peer, attempt.conn_id, s),
                LinkEvent::Open(path) => return Ok(path),
                LinkEvent::Closed(r) => anyhow::bail!("link closed before opening: {r}"),
                LinkEvent::Message(_) => {}
            }
        }
        anyhow::bail!("link ended")
    }

    /// A connection over an open data channel.
    fn direct_conn(self: &Arc<Self>, peer: &PeerId, attempt: RtcAttempt, path: LinkPath) -> Arc<PeerConn> {
        tracing::debug!(peer = %peer.short(), path = path.as_str(), "data channel open");
        let (tx, rx) = mpsc::unbounded_channel();
        let sender = attempt.link.sender.clone();
        let conn = PeerConn::start(peer.clone(), path, Outbound::Link(sender), rx, |_| {}, || {});
        self.pump(peer, attempt, path, tx, None);
        conn
    }

    /// Moves a relay connection to a data channel that opened late.
    fn upgrade(
        self: &Arc<Self>,
        conn: &Arc<PeerConn>,
        attempt: RtcAttempt,
        path: LinkPath,
        events: mpsc::UnboundedSender<LinkEvent>,
    ) {
        tracing::info!(peer = %conn.peer.short(), path = path.as_str(), "data channel open: moving off the relay");
        conn.upgrade(attempt.link.sender.clone(), path);
        self.pump(&conn.peer.clone(), attempt, path, events, Some(conn.clone()));
    }

    /// Carries an open link's events: signalling to the tracker, messages (counted) to the
    /// connection. When the link closes, a connection that has a relay to fall back to moves
    /// back to it (`fallback`); otherwise the close reaches the connection.
    fn pump(
        self: &Arc<Self>,
        peer: &PeerId,
        mut attempt: RtcAttempt,
        path: LinkPath,
        tx: mpsc::UnboundedSender<LinkEvent>,
        fallback: Option<Arc<PeerConn>>,
    ) {
        let (node, to) = (Arc::downgrade(self), peer.clone());
        tokio::spawn(async move {
            while let Some(ev) = attempt.link.events.recv().await {
                let Some(n) = node.upgrade() else { break };
                match ev {
                    LinkEvent::Signal(s) => n.forward_signal(&to, attempt.conn_id, s),
                    LinkEvent::Message(m) => {
                        n.stats.received.fetch_add(m.len() as u64, Ordering::Relaxed);
                        n.stats.add_path_bytes(path, m.len());
                        if tx.send(LinkEvent::Message(m)).is_err() {
                            break;
                        }
                    }
                    LinkEvent::Open(_) => {}
                    LinkEvent::Closed(reason) => {
                        match &fallback {
                            Some(c) if c.downgrade() => {
                                tracing::info!(peer = %to.short(), %reason, "data channel closed: back on the relay")
                            }
                            _ => {
                                let _ = tx.send(LinkEvent::Closed(reason));
                            }
                        }
                        break;
                    }
                }
            }
            if let Some(n) = node.upgrade() {
                n.routes.lock().unwrap().remove(&(to, attempt.conn_id));
            }
        });
    }

    /// Fetches one chunk from `peer`, verifies and stores it, and announces it. A bad chunk
    /// is reported to the tracker and never stored.
    pub async fn fetch_chunk(self: &Arc<Self>, peer: &PeerId, chunk: ChunkId, len: u32) -> Result<(), FetchError> {
        self.fetch_chunk_inner(peer, chunk, len, true).await.map(drop)
    }

    /// Fetches one chunk from `peer` and returns its verified bytes; stores and announces it
    /// if there is room (the HTTP gateway serves a file even when this peer cannot keep it).
    pub async fn fetch_chunk_bytes(
        self: &Arc<Self>,
        peer: &PeerId,
        chunk: ChunkId,
        len: u32,
    ) -> Result<Vec<u8>, FetchError> {
        self.fetch_chunk_inner(peer, chunk, len, false).await
    }

    async fn fetch_chunk_inner(
        self: &Arc<Self>,
        peer: &PeerId,
        chunk: ChunkId,
        len: u32,
        must_store: bool,
    ) -> Result<Vec<u8>, FetchError> {
        let conn = self.conn(peer).await.map_err(|e| FetchError::Closed(format!("{e:#}")))?;
        let started = std::time::Instant::now();
        let bytes = match conn.fetch(chunk, len).await {
            Ok(b) => b,
            Err(FetchError::Bad(ProtoError::OutOfOrder { expected, got })) => {
                // A gap, not a lie: a relayed frame was lost on the way. Try again elsewhere.
                tracing::debug!(peer = %peer.short(), chunk = %chunk.short(), expected, got, "a frame went missing");
                return Err(FetchError::Bad(ProtoError::OutOfOrder { expected, got }));
            }
            Err(FetchError::Bad(e)) => {
                self.stats.bad_chunks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer.short(), chunk = %chunk.short(), "refused a bad chunk: {e}");
                self.tracker.send(ClientMsg::BadSource { peer: peer.clone(), chunk });
                return Err(FetchError::Bad(e));
            }
            Err(e) => return Err(e),
        };
        let secs = started.elapsed().as_secs_f64().max(1e-6);
        tracing::debug!(
            chunk = %chunk.short(),
            peer = %peer.short(),
            via = conn.path().as_str(),
            ms = (secs * 1000.0) as u64,
            mb_s = format!("{:.1}", bytes.len() as f64 / secs / 1e6),
            "chunk received"
        );
        *self.stats.chunks_from.lock().unwrap().entry(peer.clone()).or_default() += 1;
        let store = self.store.clone();
        let (stored, bytes) = tokio::task::spawn_blocking(move || (store.put(&chunk, &bytes), bytes))
            .await
            .map_err(|e| FetchError::Closed(e.to_string()))?;
        match stored {
            Ok(()) => self.announce_have(chunk),
            Err(e) if must_store => return Err(FetchError::Store(e.to_string())),
            Err(e) => tracing::debug!(chunk = %chunk.short(), "not keeping the chunk: {e}"),
        }
        Ok(bytes)
    }

    /// Carries out a replication order.
    async fn replicate(self: Arc<Self>, order: u64, chunk: ChunkId, size: u32, sources: Vec<PeerId>) {
        let Ok(_permit) = self.orders.acquire().await else { return };
        let result = async {
            if self.store.has(&chunk) {
                self.tracker.send(ClientMsg::Have { chunks: vec![chunk], full: false });
                return Ok(());
            }
            if !self.store.has_room(size as u64) {
                return Err(format!("no room: {} of {} bytes used", self.store.used(), self.store.capacity));
            }
            let mut last = String::from("no sources");
            for src in sources.iter().filter(|s| *s != self.peer_id()) {
                match self.fetch_chunk(src, chunk, size).await {
                    Ok(()) => return Ok(()),
                    Err(FetchError::Store(e)) => return Err(e),
                    Err(e) => last = format!("{}: {e}", src.short()),
                }
            }
            Err(format!("no source delivered: {last}"))
        }
        .await;
        match result {
            Ok(()) => {
                tracing::debug!(order, chunk = %chunk.short(), "replication order done");
                self.tracker.send(ClientMsg::OrderDone { order });
            }
            Err(reason) => {
                tracing::warn!(order, chunk = %chunk.short(), "replication order failed: {reason}");
                self.tracker.send(ClientMsg::OrderFailed { order, reason });
            }
        }
        self.report_storage();
    }

    /// Asks the tracker to hand this peer's chunks to others and waits until it has.
    /// Returns the number of chunks no staying peer holds.
    pub async fn leave(&self, timeout: Duration) -> anyhow::Result<u32> {
        let mut rx = self.leave_ready.subscribe();
        rx.borrow_and_update();
        self.tracker.send(ClientMsg::Leave);
        let ready = tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .context("the swarm did not take over this peer's chunks in time")??;
        Ok(ready.unwrap_or(0))
    }

    /// Chunks, hashes and stores a file (streaming), then announces and publishes it.
    pub async fn put(&self, path: &Path) -> anyhow::Result<StoredFile> {
        self.put_with_progress(path, |_, _| {}).await
    }

    /// [`Node::put`], calling `progress(bytes stored, file size)` as it goes.
    pub async fn put_with_progress(
        &self,
        path: &Path,
        progress: impl Fn(u64, u64) + Send + 'static,
    ) -> anyhow::Result<StoredFile> {
        let store = self.store.clone();
        let p = path.to_owned();
        let manifest = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut f = std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
            let meta = f.metadata()?;
            if !meta.is_file() {
                bail!("{} is not a regular file", p.display());
            }
            let size = meta.len();
            // Refuse at once what cannot fit, rather than filling the store and failing late.
            if !store.has_room(size) {
                bail!(PeerError::from(StoreError::NoRoom { need: size, used: store.used(), capacity: store.capacity }));
            }
            let mut done = 0u64;
            progress(0, size);
            let mut builder = ManifestBuilder::new(CHUNK_SIZE);
            let mut buf = vec![0u8; CHUNK_SIZE as usize];
            loop {
                let n = read_full(&mut f, &mut buf)?;
                if n == 0 {
                    break;
                }
                let id = builder.push(&buf[..n]);
                store.put(&id, &buf[..n]).map_err(PeerError::from)?;
                done += n as u64;
                progress(done, size);
                if n < buf.len() {
                    break;
                }
            }
            Ok(builder.finish())
        })
        .await??;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let mime = mime_guess::from_path(&name).first_or_octet_stream().to_string();
        let meta = FileMeta { name, mime };
        for batch in manifest.chunks.chunks(INVENTORY_BATCH) {
            self.tracker.send(ClientMsg::Have { chunks: batch.to_vec(), full: false });
        }
        self.report_storage();
        let answer = self
            .tracker
            .request(|req| ClientMsg::Publish { req, manifest: manifest.clone(), meta: meta.clone() })
            .await
            .map_err(PeerError::from)?;
        let ServerMsg::Published { file, .. } = answer else { bail!("unexpected answer to publish: {answer:?}") };
        anyhow::ensure!(file == manifest.file_id(), "tracker computed another file id");
        let stored = StoredFile { manifest, meta };
        self.store.put_file(&stored).map_err(PeerError::from)?;
        Ok(stored)
    }

    /// Resolves an id or a name to a file id (a name must match exactly one file).
    pub async fn resolve(&self, id_or_name: &str) -> anyhow::Result<FileId> {
        if let Ok(id) = id_or_name.parse::<FileId>() {
            return Ok(id);
        }
        let answer = self
            .tracker
            .request(|req| ClientMsg::Search { req, query: id_or_name.into(), limit: 100 })
            .await
            .map_err(PeerError::from)?;
        let ServerMsg::SearchResults { files, .. } = answer else { bail!("unexpected answer to search") };
        let exact: Vec<_> = files.iter().filter(|f| f.name == id_or_name).collect();
        match exact.as_slice() {
            [one] => Ok(one.id),
            [] => bail!(PeerError::NotFound(format!("no file named {id_or_name:?} in the swarm"))),
            many => bail!(
                "{} files are named {id_or_name:?}; pick one by id: {}",
                many.len(),
                many.iter().map(|f| f.id.to_hex()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

fn read_full(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A WebRTC connection attempt: the link and the id its signalling travels under.
struct RtcAttempt {
    link: Link,
    conn_id: u64,
}
