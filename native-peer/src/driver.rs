//! The native driver of the peer core ([`swarm_core::peer::Peer`]): one tokio task owns the
//! core and carries out its outputs with tokio, str0m ([`crate::rtc`]) and the disk store.
//!
//! Everything that decides (downloads, links, serving, tracker duties) is the core's; this
//! task only moves bytes: tracker messages and relay frames ([`TrackerClient`]), WebRTC links
//! (one task each, plus a writer task so a slow link never blocks the loop; writers report
//! what they flushed, and the core paces serving by it), store reads and
//! hash checks on blocking threads, and commands from the [`crate::node::Node`] handle.

use crate::rtc::{Link, LinkEvent, RtcEnv};
use crate::store::ChunkStore;
use crate::tracker_client::{Incoming as FromTracker, TrackerClient};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use swarm_core::identity::Keypair;
use swarm_core::peer::{
    DownloadId, Event, Failure, Incoming, Inventory, LinkId, Output, Peer, PeerConfig, Purpose, ReadResult,
};
use swarm_core::relay::RelayFrame;
use swarm_core::{ChunkId, ClientMsg, FileId, LinkPath, PathReport, PeerId, PeerKind, ServerMsg};
use tokio::sync::{mpsc, oneshot};

/// str0m writes a message only when all of it fits its SCTP send buffer
/// ([`crate::rtc::SCTP_BUFFER`], 32 KiB, the fastest measured): frames are 16 KiB.
pub const FRAME_PAYLOAD: usize = swarm_core::chunk_proto::DEFAULT_FRAME_PAYLOAD;

/// Progress callback: (bytes of the file stored, file size, bytes fetched by this download).
pub type Progress = Arc<dyn Fn(u64, u64, u64) + Send + Sync>;

/// Bytes this peer moved (tests read these to prove the path the bytes took).
#[derive(Debug, Default)]
pub struct DataStats {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub relay_received: AtomicU64,
    pub relay_sent: AtomicU64,
    /// Bytes per second sent lately (data channels and relay), sampled every second.
    pub upload_rate: AtomicU64,
    /// The upload limit in force (bytes per second; `u64::MAX`: none).
    pub upload_limit: AtomicU64,
    /// Chunks received per source peer (verified and stored), for `status`.
    pub chunks_from: Mutex<HashMap<PeerId, u64>>,
    /// Chunks refused because they did not hash to their id.
    pub bad_chunks: AtomicU64,
    /// Whether a tracker session is open now (the gateway's `/readyz`).
    pub connected: std::sync::atomic::AtomicBool,
}

/// What the driver last published about its links.
#[derive(Debug, Default)]
pub struct Views {
    pub paths: PathReport,
    pub links: Vec<(PeerId, Option<LinkPath>, &'static str)>,
}

/// How a node is started.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The tracker (the first one configured: share links name it).
    pub tracker_url: String,
    /// More trackers to fail over to, in order (the nodes of a tracker cluster; the ones
    /// every `welcome` names are added to them).
    pub more_trackers: Vec<String>,
    /// An extra CA certificate (PEM) to trust for a `wss://` tracker.
    pub tracker_ca: Option<PathBuf>,
    /// The one local address for WebRTC; `None`: every usable interface (see `rtc::net`).
    pub rtc_ip: Option<IpAddr>,
    /// Most bytes of chunks to keep.
    pub max_storage: u64,
    /// Bytes per second this peer sends at most (`None`: no limit).
    pub upload_limit: Option<u64>,
    /// Time a data channel has to open before the attempt is given up (the relay carries
    /// the requests after the core's grace period).
    pub rtc_timeout: Duration,
    /// Never try WebRTC (for tests and hostile networks).
    pub relay_only: bool,
    /// Connection attempts before giving up at start.
    pub connect_attempts: u32,
    /// Test only: flip a byte of every chunk served, to play a lying peer.
    pub corrupt_serve: bool,
    /// Publish without giving the tracker challenges (for tests and measurements).
    pub no_nonces: bool,
    /// The join token of a private tracker (sent in `hello`).
    pub join_token: Option<String>,
    /// The trackers are the configured ones (not a link's): a legacy identity may move its
    /// files there ([`crate::identity`]).
    pub migrate_identity: bool,
}

impl NodeConfig {
    /// Every configured tracker URL, the first one first.
    pub fn tracker_urls(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.tracker_url.as_str()).chain(self.more_trackers.iter().map(String::as_str))
    }
}

/// Commands for the driver.
pub enum Cmd {
    Request {
        msg: Box<dyn FnOnce(u32) -> ClientMsg + Send>,
        reply: oneshot::Sender<ServerMsg>,
    },
    Download {
        file: FileId,
        waiter: Waiter,
    },
    FetchChunk {
        chunk: ChunkId,
        size: u32,
        sources: Vec<PeerId>,
        waiter: Waiter,
    },
    Announce(Vec<ChunkId>),
    /// A reader (the HTTP gateway) reads `file` from byte `offset` on: a running download of it
    /// fetches from there first. `running` hears whether one runs.
    Playhead {
        file: FileId,
        offset: u64,
        running: oneshot::Sender<bool>,
    },
    /// Challenges (with answers) for the tracker's pools, right after a publish.
    Nonces {
        file: FileId,
        items: Vec<swarm_core::wire::NonceItem>,
    },
    Flush(oneshot::Sender<()>),
    /// A new upload limit (bytes per second; `None`: none).
    UploadLimit(Option<u64>),
    Leave(oneshot::Sender<u32>),
    /// Stop: announce what is batched, close the tracker session (the tracker sees this peer
    /// go at once), then answer.
    Close(oneshot::Sender<()>),
}

/// What reaches the driver task.
pub enum Input {
    Cmd(Cmd),
    Tracker(FromTracker),
    Link(LinkId, LinkEvent),
    Read(u64, ReadResult),
    Verified {
        token: u64,
        bytes: Vec<u8>,
        actual: ChunkId,
        kept: Result<(), String>,
    },
    /// The store found these chunks corrupt and dropped them.
    Corrupt(Vec<ChunkId>),
    /// A link's writer passed a message of this many bytes on to str0m (or dropped it).
    LinkFlushed(LinkId, usize),
    /// A relay frame (to, conn, payload bytes) went to the tracker connection (or was lost).
    RelayFlushed(PeerId, u64, usize),
}

/// The disk store as the core sees it.
struct Inv<'a> {
    store: &'a ChunkStore,
    pinned: OnceLock<HashSet<ChunkId>>,
}

impl<'a> Inv<'a> {
    fn new(store: &'a ChunkStore) -> Self {
        Self { store, pinned: OnceLock::new() }
    }
}

impl Inventory for Inv<'_> {
    fn has(&self, chunk: &ChunkId) -> bool {
        self.store.has(chunk)
    }
    fn ids(&self) -> Vec<ChunkId> {
        self.store.list()
    }
    fn used(&self) -> u64 {
        self.store.used()
    }
    fn capacity(&self) -> u64 {
        self.store.capacity
    }
    fn pinned(&self, chunk: &ChunkId) -> bool {
        self.pinned
            .get_or_init(|| self.store.files().into_iter().flat_map(|f| f.manifest.chunks).collect())
            .contains(chunk)
    }
    fn placed_elsewhere(&self, chunk: &ChunkId) -> bool {
        self.store.placed_elsewhere(chunk)
    }
}

/// A WebRTC link's handles: dropping the link closes it.
struct LinkHandles {
    _link: Link,
    signals: crate::rtc::SignalHandle,
    writer: mpsc::UnboundedSender<Vec<u8>>,
}

/// A download a caller waits on.
pub struct Waiter {
    pub progress: Option<Progress>,
    pub done: oneshot::Sender<Result<DownloadOutcome, FetchFailure>>,
    pub fetched: u64,
}

/// What a finished download hands back.
pub enum DownloadOutcome {
    File { manifest: swarm_core::Manifest, meta: swarm_core::wire::FileMeta },
    Chunk(Vec<u8>),
}

pub struct Driver {
    core: Peer<Vec<u8>>,
    /// This peer's key: the driver signs what the core asks at once ([`Output::SignHello`]).
    keys: Keypair,
    started: Instant,
    tracker: Arc<TrackerClient>,
    store: ChunkStore,
    config: NodeConfig,
    stats: Arc<DataStats>,
    views: Arc<Mutex<Views>>,
    env: Arc<Mutex<RtcEnv>>,
    inputs: mpsc::UnboundedSender<Input>,
    links: HashMap<LinkId, LinkHandles>,
    relay_writer: mpsc::UnboundedSender<RelayFrame>,
    requests: HashMap<u32, oneshot::Sender<ServerMsg>>,
    downloads: HashMap<DownloadId, Waiter>,
    /// Files of running user downloads (recorded for resume on `Located`).
    located: HashMap<DownloadId, (swarm_core::Manifest, swarm_core::wire::FileMeta)>,
    leave: Option<oneshot::Sender<u32>>,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        tracker: Arc<TrackerClient>,
        from_tracker: mpsc::UnboundedReceiver<FromTracker>,
        store: ChunkStore,
        config: NodeConfig,
        keys: Keypair,
        stats: Arc<DataStats>,
        views: Arc<Mutex<Views>>,
        env: Arc<Mutex<RtcEnv>>,
    ) -> mpsc::UnboundedSender<Input> {
        let mut pc = PeerConfig::new(PeerKind::Native, keys.public());
        pc.token = config.join_token.clone();
        pc.relay_only = config.relay_only;
        pc.direct_timeout_ms = config.rtc_timeout.as_millis() as u64;
        pc.frame_payload = FRAME_PAYLOAD;
        // Benchmarks only (pp-bench's same-run baseline): the download policy before issue 23.
        if std::env::var_os("PP_BENCH_EAGER_ENDGAME").is_some_and(|v| v == "1") {
            pc.endgame = swarm_core::peer::Endgame::Eager;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        // Relay frames go out in order, waiting while the tracker's relay queue is full.
        // Each is reported flushed once the tracker connection took it: the core paces serving
        // by what is still queued here.
        let (relay_writer, mut relay_rx) = mpsc::unbounded_channel::<RelayFrame>();
        let t = tracker.clone();
        let flushed = tx.clone();
        tokio::spawn(async move {
            while let Some(f) = relay_rx.recv().await {
                if t.send_relay(&f).await.is_err() {
                    tracing::debug!("relay frame not sent: tracker connection closed");
                }
                let _ = flushed.send(Input::RelayFlushed(f.peer, f.conn, f.payload.len()));
            }
        });
        let forward = tx.clone();
        tokio::spawn(async move {
            let mut from_tracker = from_tracker;
            while let Some(m) = from_tracker.recv().await {
                if forward.send(Input::Tracker(m)).is_err() {
                    break;
                }
            }
        });
        let mut driver = Driver {
            core: Peer::new(pc),
            keys,
            started: Instant::now(),
            tracker,
            store,
            config,
            stats,
            views,
            env,
            inputs: tx.clone(),
            links: HashMap::new(),
            relay_writer,
            requests: HashMap::new(),
            downloads: HashMap::new(),
            located: HashMap::new(),
            leave: None,
        };
        // A peer back under the same identity must not reuse its previous run's link numbers
        // (a remote may still answer on them): start from a random base, exact in JavaScript
        // numbers (the web app reads them).
        driver.core.number_links_after(rand::random::<u64>() >> 13);
        let now = driver.now();
        driver.core.set_upload_limit(driver.config.upload_limit, now);
        driver.stats.upload_limit.store(driver.config.upload_limit.unwrap_or(u64::MAX), Ordering::Relaxed);
        // What was sent lately, for `status` (a second's worth, sampled every second).
        let sampled = Arc::downgrade(&driver.stats);
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                every.tick().await;
                let Some(stats) = sampled.upgrade() else { return };
                let sent = stats.sent.load(Ordering::Relaxed) + stats.relay_sent.load(Ordering::Relaxed);
                stats.upload_rate.store(sent.saturating_sub(last), Ordering::Relaxed);
                last = sent;
            }
        });
        let me = driver.tracker.peer_id.clone();
        driver.core.tracker_welcomed(me, &Inv::new(&driver.store), now);
        driver.drain();
        tokio::spawn(driver.run(rx));
        tx
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        loop {
            let deadline = self.core.poll_timeout().map(|ms| self.started + Duration::from_millis(ms));
            let input = match deadline {
                Some(at) => tokio::select! {
                    i = rx.recv() => i,
                    _ = tokio::time::sleep_until(at.into()) => {
                        let now = self.now();
                        self.core.handle_timeout(&Inv::new(&self.store), now);
                        self.drain();
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(input) = input else { return };
            self.on_input(input);
            // Everything already queued is taken before outputs run (fewer wake-ups).
            while let Ok(more) = rx.try_recv() {
                self.on_input(more);
            }
            self.drain();
            self.publish_views();
        }
    }

    fn on_input(&mut self, input: Input) {
        let now = self.now();
        let store = self.store.clone();
        let inv = Inv::new(&store);
        match input {
            Input::Cmd(cmd) => self.on_cmd(cmd, &inv, now),
            Input::Tracker(FromTracker::Msg(msg)) => {
                if let ServerMsg::Unpublished { file, .. } = &msg {
                    // At once, not when the reply event runs: the trim of the file's chunks is
                    // the next message (maybe in this same batch of inputs), and they must no
                    // longer count as kept for this peer's user (`Inventory::pinned`).
                    if self.store.remove_file(file) {
                        tracing::info!(file = %file, "unpublished: file record removed");
                    }
                }
                self.core.handle_server_msg(msg, &Inv::new(&store), now)
            }
            Input::Tracker(FromTracker::Relay(frame)) => {
                self.stats.relay_received.fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
                match Incoming::decode(&frame.payload) {
                    Ok(msg) => self.core.handle_relay(frame.peer, frame.conn, msg, now),
                    Err(e) => tracing::debug!(peer = %frame.peer.short(), "bad relayed message: {e}"),
                }
            }
            Input::Tracker(FromTracker::Reconnected) => {
                self.stats.connected.store(true, Ordering::Relaxed);
                let env = self.env.clone();
                let tracker = self.tracker.clone();
                tokio::spawn(async move { resolve_stun_servers(&tracker, &env).await });
                self.core.tracker_welcomed(self.tracker.peer_id.clone(), &inv, now);
            }
            Input::Tracker(FromTracker::Disconnected) => {
                self.stats.connected.store(false, Ordering::Relaxed);
                self.core.tracker_disconnected()
            }
            Input::Link(link, ev) => match ev {
                LinkEvent::Signal(s) => self.core.link_signal(link, s),
                LinkEvent::Open(path) => {
                    tracing::debug!(link, path = path.as_str(), "data channel open");
                    self.core.link_open(link, path, now)
                }
                LinkEvent::Message(bytes) => {
                    self.stats.received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    match Incoming::decode(&bytes) {
                        Ok(msg) => self.core.handle_link_msg(link, msg, now),
                        Err(e) => tracing::debug!(link, "bad message on a link: {e}"),
                    }
                }
                LinkEvent::Closed(reason) => {
                    tracing::debug!(link, %reason, "link closed");
                    self.links.remove(&link);
                    self.core.link_closed(link, &reason, now);
                }
            },
            Input::Read(token, result) => self.core.chunk_read(token, result),
            Input::Verified { token, bytes, actual, kept } => {
                self.core.verified(token, bytes, actual, kept, now);
                self.core.report_storage(&inv);
            }
            Input::Corrupt(chunks) => self.core.dropped(chunks, &inv),
            Input::LinkFlushed(link, n) => self.core.link_flushed(link, n),
            Input::RelayFlushed(to, conn, n) => self.core.relay_flushed(&to, conn, n),
        }
    }

    fn on_cmd(&mut self, cmd: Cmd, inv: &Inv, now: u64) {
        match cmd {
            Cmd::Request { msg, reply } => {
                let req = self.core.request(msg);
                self.requests.insert(req, reply);
            }
            Cmd::Download { file, waiter } => {
                let id = self.core.download(file, Purpose::Keep, now);
                self.downloads.insert(id, waiter);
            }
            Cmd::FetchChunk { chunk, size, sources, waiter } => {
                let id = self.core.fetch_chunk(chunk, size, sources, Purpose::Read, inv, now);
                self.downloads.insert(id, waiter);
            }
            Cmd::Playhead { file, offset, running } => {
                let d = self.core.download_of(file);
                if let Some(d) = d {
                    self.core.set_playhead(d, Some(offset), now);
                }
                let _ = running.send(d.is_some());
            }
            Cmd::Announce(chunks) => {
                for c in chunks {
                    self.core.announce(c, now);
                }
                self.core.flush_haves();
                self.core.report_storage(inv);
            }
            Cmd::Nonces { file, items } => self.core.publish_nonces(file, items),
            Cmd::UploadLimit(rate) => {
                self.core.set_upload_limit(rate, now);
                self.stats.upload_limit.store(rate.unwrap_or(u64::MAX), Ordering::Relaxed);
            }
            Cmd::Flush(done) => {
                self.core.flush_haves();
                self.core.report_storage(inv);
                // Answers come in order on the one websocket: once this one is back, every
                // message queued before it was handled.
                let req = self.core.request(|req| ClientMsg::Search { req, query: String::new(), limit: 1 });
                self.requests.insert(req, {
                    let (tx, rx) = oneshot::channel();
                    tokio::spawn(async move {
                        let _ = rx.await;
                        let _ = done.send(());
                    });
                    tx
                });
            }
            Cmd::Leave(done) => {
                self.leave = Some(done);
                self.core.leave();
            }
            Cmd::Close(done) => {
                self.core.flush_haves();
                self.drain();
                let tracker = self.tracker.clone();
                tokio::spawn(async move {
                    tracker.close(Duration::from_secs(2)).await;
                    let _ = done.send(());
                });
            }
        }
    }

    /// Carries out every output of the core.
    fn drain(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Tracker(msg) => {
                    if let ClientMsg::BadSource { peer, chunk } = &msg {
                        self.stats.bad_chunks.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %peer.short(), chunk = %chunk.short(), "refused a bad chunk");
                    }
                    self.tracker.send(msg)
                }
                // (Not while the tracker client says hello itself, as it does today.)
                Output::SignHello { nonce, origin } => {
                    let (signature, now) = (self.keys.sign_hello(&nonce, &origin), self.now());
                    self.core.hello_signed(nonce, signature, &Inv::new(&self.store), now);
                }
                Output::Relay { to, conn, payload } => {
                    self.stats.relay_sent.fetch_add(payload.len() as u64, Ordering::Relaxed);
                    let _ = self.relay_writer.send(RelayFrame { peer: to, conn, payload });
                }
                Output::Dial { link, peer } => {
                    let env = self.env.lock().unwrap().clone();
                    match Link::offer(&env) {
                        Ok(l) => self.adopt(link, l),
                        Err(e) => {
                            tracing::warn!(peer = %peer.short(), "cannot start WebRTC ({e:#}): using the relay");
                            let _ = self.inputs.send(Input::Link(link, LinkEvent::Closed(format!("{e:#}"))));
                        }
                    }
                }
                Output::Accept { link, peer, sdp } => {
                    let env = self.env.lock().unwrap().clone();
                    match Link::answer(&env, &sdp) {
                        Ok(l) => self.adopt(link, l),
                        Err(e) => {
                            tracing::warn!(peer = %peer.short(), "cannot answer offer: {e:#}");
                            let close = swarm_core::Signal::Close { reason: format!("{e:#}") };
                            self.core.link_signal(link, close);
                            let _ = self.inputs.send(Input::Link(link, LinkEvent::Closed(format!("{e:#}"))));
                        }
                    }
                }
                Output::Signal { link, signal } => {
                    if let Some(h) = self.links.get(&link) {
                        h.signals.deliver(signal);
                    }
                }
                Output::Send { link, bytes } => match self.links.get(&link) {
                    Some(h) => {
                        self.stats.sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        let _ = h.writer.send(bytes);
                    }
                    None => self.core.link_flushed(link, bytes.len()),
                },
                Output::Close { link } => {
                    self.links.remove(&link);
                }
                Output::Read { token, chunk } => {
                    // (a lying server that keeps its disk intact: it passes the tracker's
                    // challenges, and downloads refuse what it serves)
                    let corrupt = self.config.corrupt_serve && !self.core.reading_for_proof(token);
                    let (store, inputs) = (self.store.clone(), self.inputs.clone());
                    tokio::task::spawn_blocking(move || {
                        // The store checks every chunk it reads against its id (and drops a
                        // corrupt one, telling the driver through `notify_corrupt`).
                        let result = match store.get(&chunk) {
                            Ok(Some(mut b)) => {
                                if corrupt {
                                    if let Some(x) = b.first_mut() {
                                        *x ^= 0x55;
                                    }
                                }
                                ReadResult::Found(b)
                            }
                            Ok(None) => ReadResult::Missing,
                            Err(_) => ReadResult::Corrupt,
                        };
                        let _ = inputs.send(Input::Read(token, result));
                    });
                }
                Output::Verify { token, chunk, bytes, keep } => {
                    let (store, inputs) = (self.store.clone(), self.inputs.clone());
                    tokio::task::spawn_blocking(move || {
                        let actual = ChunkId::of(&bytes);
                        let kept = if actual != chunk {
                            Ok(())
                        } else {
                            // The core decides what a failed put means (`keep`: fatal for
                            // a download, not for a gateway read).
                            store.put(&chunk, &bytes).map_err(|e| {
                                tracing::debug!(chunk = %chunk.short(), keep, "not keeping the chunk: {e}");
                                e.to_string()
                            })
                        };
                        let _ = inputs.send(Input::Verified { token, bytes, actual, kept });
                    });
                }
                Output::Remove { chunks } => {
                    let n = chunks.iter().filter(|c| self.store.remove(c)).count();
                    tracing::info!(chunks = n, "trimmed surplus copies");
                    self.core.report_storage(&Inv::new(&self.store));
                }
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    /// Wires a new link: its events into the loop, its writes through a writer task.
    fn adopt(&mut self, link: LinkId, mut l: Link) {
        let mut events = std::mem::replace(&mut l.events, mpsc::unbounded_channel().1);
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let closed = matches!(ev, LinkEvent::Closed(_));
                if inputs.send(Input::Link(link, ev)).is_err() || closed {
                    break;
                }
            }
        });
        // Each message is reported flushed once str0m's side took it (at most 8 messages and
        // the SCTP buffer wait there): the core paces serving by what is still queued here.
        let (writer, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
        let sender = l.sender.clone();
        let flushed = self.inputs.clone();
        tokio::spawn(async move {
            while let Some(m) = wrx.recv().await {
                let n = m.len();
                let sent = sender.send(m).await;
                let _ = flushed.send(Input::LinkFlushed(link, n));
                if sent.is_err() {
                    break;
                }
            }
        });
        let signals = l.signal_handle();
        self.links.insert(link, LinkHandles { _link: l, signals, writer });
    }

    fn on_event(&mut self, e: Event<Vec<u8>>) {
        match e {
            // The tracker client keeps the nodes to fail over to.
            Event::Welcomed { .. } | Event::Trackers { .. } => {}
            Event::Reply { req, msg } => {
                if let Some(reply) = self.requests.remove(&req) {
                    let _ = reply.send(msg);
                }
            }
            Event::Located { download, manifest, meta, .. } => {
                // Recorded before the first chunk arrives: the chunks of a file this peer
                // wants are not trimmed away, and an interrupted download resumes from them.
                let need: u64 = (0..manifest.chunks.len())
                    .filter(|&i| !self.store.has(&manifest.chunks[i]))
                    .map(|i| manifest.chunk_len(i) as u64)
                    .sum();
                if !self.store.has_room(need) {
                    let e = crate::store::StoreError::NoRoom {
                        need,
                        used: self.store.used(),
                        capacity: self.store.capacity,
                    };
                    if let Some(w) = self.downloads.remove(&download) {
                        let _ = w.done.send(Err(FetchFailure::NoRoom(e)));
                    }
                    self.core.cancel(download, self.now());
                    return;
                }
                let record = crate::store::StoredFile { manifest: manifest.clone(), meta: meta.clone() };
                if let Err(e) = self.store.put_file(&record) {
                    tracing::warn!("cannot record the download: {e}");
                }
                self.located.insert(download, (manifest, meta));
                if let Some(w) = self.downloads.get(&download) {
                    if let Some(p) = &w.progress {
                        let (done, size) = self
                            .core
                            .download_state(download)
                            .map(|d| (d.bytes_done(), d.manifest().size))
                            .unwrap_or((0, 0));
                        p(done, size, 0);
                    }
                }
            }
            Event::Chunk { download, index, len, stored, size, from, bytes } => {
                tracing::debug!(download, index, peer = %from.short(), "chunk received");
                *self.stats.chunks_from.lock().unwrap().entry(from).or_default() += 1;
                let Some(w) = self.downloads.get_mut(&download) else { return };
                if let Some(bytes) = bytes {
                    if let Some(w) = self.downloads.remove(&download) {
                        let _ = w.done.send(Ok(DownloadOutcome::Chunk(bytes)));
                    }
                    return;
                }
                w.fetched += len as u64;
                if let Some(p) = &w.progress {
                    p(stored, size, w.fetched);
                }
            }
            Event::Finished { download, purpose, result } => {
                let located = self.located.remove(&download);
                let Some(w) = self.downloads.remove(&download) else {
                    if let (Purpose::Order { order }, Err(e)) = (&purpose, &result) {
                        tracing::warn!(order, "replication order failed: {e}");
                    }
                    return;
                };
                let outcome = match (result, located) {
                    (Ok(()), Some((manifest, meta))) => Ok(DownloadOutcome::File { manifest, meta }),
                    (Ok(()), None) => Err(FetchFailure::Failed("the download ended without its file".into())),
                    (Err(Failure::Tracker { code, message }), _) => {
                        Err(FetchFailure::Tracker(crate::tracker_client::TrackerError { code, message }))
                    }
                    (Err(e), _) => Err(FetchFailure::Failed(e.to_string())),
                };
                let _ = w.done.send(outcome);
            }
            Event::LeaveReady { stranded } => {
                if let Some(done) = self.leave.take() {
                    let _ = done.send(stranded);
                }
            }
            Event::Notice(n) => tracing::info!("{n}"),
        }
    }

    fn publish_views(&self) {
        let mut v = self.views.lock().unwrap();
        v.paths = self.core.path_report();
        v.links = self.core.links();
    }
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchFailure {
    /// The store cannot take the file.
    #[error(transparent)]
    NoRoom(crate::store::StoreError),
    /// The tracker refused (an unknown file).
    #[error(transparent)]
    Tracker(crate::tracker_client::TrackerError),
    #[error("{0}")]
    Failed(String),
}

/// Resolves the STUN servers of the tracker's latest `welcome` (`stun:host[:port]`,
/// port 3478 by default) for new links.
pub async fn resolve_stun_servers(tracker: &TrackerClient, env: &Mutex<RtcEnv>) {
    let urls: Vec<String> = tracker.ice_servers.lock().unwrap().iter().flat_map(|s| s.urls.clone()).collect();
    let mut addrs = Vec::new();
    for target in urls.iter().filter_map(|u| crate::rtc::net::stun_target(u)).take(4) {
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host(target.as_str())).await {
            Ok(Ok(found)) => addrs.extend(found.take(2)),
            _ => tracing::warn!("cannot resolve STUN server {target}"),
        }
    }
    addrs.dedup();
    env.lock().unwrap().stun_servers = addrs;
}
