//! The peer itself: glue between the tracker link, the connections to other peers, the chunk
//! store, the download scheduler and the page state. Components reach it through a context
//! ([`NodeHandle`], [`use_node`]) and only call its few entry points (`upload`, `download`);
//! everything it learns goes back to the page as [`Action`]s.
//!
//! Duties, as the native peer's (native-peer/src/node.rs):
//! - chunks and manifests live in IndexedDB ([`IdbStore`]); after a reload the whole
//!   inventory is announced again (`have`, `full: true`) with the room offered (`storage`);
//! - it serves chunks to whoever asks, over data channels or through the tracker relay;
//! - it carries out replication orders (`replicate` → fetch from a source, verify, store,
//!   `have`, `order_done` / `order_failed`) and trims (`trim` → delete, `dropped`).
//!
//! Fetching connections ("links") are shared: one per remote peer, used by every download and
//! order that needs that peer; requests are renumbered on the way out so answers find their
//! run. A link tries a WebRTC data channel (with the tracker's ICE servers) and sends through
//! the tracker relay meanwhile ("relay, then upgrade"): when the channel is not open after
//! [`RELAY_START_MS`] requests go through the relay at once while the WebRTC attempt goes on
//! (up to [`crate::rtc::OPEN_TIMEOUT_MS`]); once the channel opens, new requests take it, and
//! answers still due on the relay are taken from either. A link goes straight to the relay
//! when the remote refuses WebRTC, or the page runs with `?relay=1`; `?relay_after=MS` sets
//! another delay (`0`: relay at once, then upgrade).
//!
//! Each link's path (direct between hosts, direct through NATs, TURN, or the tracker relay) is
//! shown in the swarm view with the bytes received by path, and reported to the tracker
//! (`ClientMsg::Paths`) when it changes, at most every [`crate::paths::PATHS_REPORT_MS`].
//!
//! All mutable state sits in one `RefCell`; the link and connections never call back
//! synchronously (see their docs), so handlers may hold the borrow while they send.

mod links;
mod runs;
mod serving;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use gloo::events::EventListener;
use gloo::storage::{SessionStorage, Storage};
use gloo::timers::callback::{Interval, Timeout};
use js_sys::{Array, Reflect, Uint8Array};
use swarm_core::chunk_proto::PeerMsg;
use swarm_core::relay::RelayFrame;
use swarm_core::wire::{ErrorCode, FileMeta, IceServer, LinkPath, PROTOCOL_VERSION};
use swarm_core::{
    ChunkId, ClientMsg, FileId, Manifest, ManifestBuilder, PeerId, PeerKind, ServerMsg, Signal, CHUNK_SIZE,
};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{BlobPropertyBag, File, Url};
use yew::prelude::*;

use crate::js_chunk::{split_answer, JsChunk};
use crate::paths::{relay_wait_ms, ReportGate, RELAY_START_MS};
use crate::rtc::{js_error, ByteCounters, RtcConn, RtcEvent};
use crate::state::{Action, ConnStatus, LinkView, SourceView, Stats, StorageInfo};
use crate::store::{ChunkStore, IdbStore, MemoryStore, WriteFailure};
use crate::tracker::{TrackerEvent, TrackerLink};
use crate::transfer::{serve_request, Answer, Download, Step};

/// sessionStorage key of this tab's secret (a reload keeps the peer id).
pub const SECRET_KEY: &str = "pp-secret";
/// The IndexedDB database of this peer.
pub const DB_NAME: &str = "peer-pressure";
/// Most connections other peers may open to this tab at once.
pub const MAX_INBOUND: usize = 32;
/// How often the byte counters are pushed to the page.
pub const STATS_MS: u32 = 250;
/// How often downloads get the time (to notice stalled peers) and links are checked.
pub const TICK_MS: u32 = 1_000;
/// Least time between two progress updates of a download.
pub const PROGRESS_MS: f64 = 400.0;
/// How often the paths of open data channels are read again (`getStats()`).
pub const PATH_REFRESH_MS: f64 = 3_000.0;
/// A link no run uses is closed after this long.
pub const LINK_IDLE_MS: f64 = 30_000.0;
/// How often the storage estimate is refreshed.
pub const ESTIMATE_MS: u32 = 15_000;
/// Upload pauses while this many bytes wait to be committed to IndexedDB.
pub const UPLOAD_PENDING_LIMIT: u64 = 32 * 1024 * 1024;
/// Room offered when the browser gives no estimate.
pub const DEFAULT_CAPACITY: u64 = 1 << 30;

/// One connection attempt: the remote peer and the offerer's connection number.
type ConnKey = (PeerId, u64);

/// A fetching connection to one peer, shared by runs: a WebRTC attempt (or open channel)
/// and, once it has waited long enough or failed, the tracker relay.
struct OutLink {
    /// The WebRTC attempt's connection number (in its signals).
    conn: u64,
    /// The attempt or the open channel; `None` once given up (or never tried).
    rtc: Option<RtcConn>,
    /// The relay's connection number (in relay frames), once requests may go through it.
    relay: Option<u64>,
    started: f64,
    /// (run, slot) pairs using this link.
    users: Vec<(u64, usize)>,
    idle_since: f64,
    /// Looks at the attempt when requests should start through the relay.
    relay_timer: Option<Timeout>,
}

impl OutLink {
    fn rtc_open(&self) -> Option<&RtcConn> {
        self.rtc.as_ref().filter(|r| r.is_open())
    }

    /// Requests can go out (over the channel or the relay).
    fn ready(&self) -> bool {
        self.rtc_open().is_some() || self.relay.is_some()
    }

    /// The path new requests take: `None` while connecting (or while an open channel's stats
    /// are not read yet).
    fn path(&self) -> Option<LinkPath> {
        match (self.rtc_open(), self.relay) {
            (Some(rtc), _) => rtc.path(),
            (None, Some(_)) => Some(LinkPath::Relay),
            (None, None) => None,
        }
    }
}

/// Where an outgoing request's answer goes.
#[derive(Clone, Copy)]
struct WireReq {
    run: u64,
    slot: usize,
    req: u32,
    chunk: ChunkId,
    /// Sent over the data channel (else through the relay): asked again through the relay
    /// if that channel fails.
    on_channel: bool,
}

enum RunKind {
    File { file: FileId, meta: FileMeta },
    Order { order: u64 },
}

struct Run {
    dl: Download<JsChunk>,
    kind: RunKind,
    last_progress: f64,
    /// When the run started (for a file: when the tracker located it).
    located: f64,
    /// When its first chunk was stored.
    first_chunk: Option<f64>,
}

enum Pending {
    Publish { upload: u32, manifest: Manifest, meta: FileMeta },
    Locate { file: FileId },
}

/// Who a served answer goes to.
#[derive(Clone)]
enum Target {
    Rtc(ConnKey),
    Relay(PeerId, u64),
}

struct State {
    link: Option<TrackerLink>,
    secret: String,
    me: Option<PeerId>,
    store: Rc<dyn ChunkStore>,
    next_req: u32,
    next_upload: u32,
    /// Requests awaiting an answer, with the message (sent again after a reconnect).
    pending: HashMap<u32, (Pending, ClientMsg)>,
    /// Connections other peers opened to fetch from this tab.
    inbound: HashMap<ConnKey, RtcConn>,
    /// This tab's fetching links, one per peer.
    out: HashMap<PeerId, OutLink>,
    wire: HashMap<u32, WireReq>,
    next_wire: u32,
    runs: HashMap<u64, Run>,
    next_run: u64,
    file_runs: HashMap<FileId, u64>,
    /// The object URL of the finished download shown on the page.
    object_url: Option<String>,
    capacity: u64,
    reported_storage: Option<(u64, u64)>,
    force_relay: bool,
    /// How long a new link waits for its data channel before it also uses the relay
    /// ([`RELAY_START_MS`]; `?relay_after=MS` in the page's URL sets another, e.g. for tests).
    relay_start_ms: f64,
    /// Newly stored chunks not yet announced (sent in batches: the tracker limits messages).
    have_batch: Vec<ChunkId>,
    /// Replication orders for chunks a running download is fetching anyway: done when it
    /// stores them, failed if it ends without them.
    waiting_orders: HashMap<ChunkId, Vec<u64>>,
    /// ICE servers from the tracker's latest `Welcome`, for every new connection.
    ice_servers: Vec<IceServer>,
    /// Peers that fetched from this tab through the relay, and when they last asked.
    relay_in: HashMap<PeerId, f64>,
    /// When the paths of open channels were last read.
    paths_read: f64,
    /// Decides when the tracker hears this tab's paths.
    path_gate: ReportGate,
}

/// The running peer.
pub struct Node {
    weak: Weak<Node>,
    state: RefCell<State>,
    counters: Rc<ByteCounters>,
    relay_counters: ByteCounters,
    dispatch: Callback<Action>,
    last_stats: Cell<Stats>,
    last_links: RefCell<Rc<Vec<LinkView>>>,
    _timers: RefCell<Vec<Interval>>,
    _listeners: RefCell<Vec<EventListener>>,
}

/// Context value giving components access to the node.
#[derive(Clone)]
pub struct NodeHandle(pub Rc<Node>);

impl PartialEq for NodeHandle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

/// The node of the surrounding `ContextProvider<NodeHandle>`.
#[hook]
pub fn use_node() -> NodeHandle {
    use_context::<NodeHandle>().expect("components run inside ContextProvider<NodeHandle>")
}

impl Node {
    /// Starts the peer: opens its store, connects to the tracker of this page's origin and
    /// follows `#/file/<id>`.
    pub fn start(dispatch: Callback<Action>) -> Rc<Node> {
        let search = gloo::utils::window().location().search().unwrap_or_default();
        let node = Rc::new_cyclic(|weak| Node {
            weak: weak.clone(),
            state: RefCell::new(State {
                link: None,
                secret: load_secret(),
                me: None,
                store: Rc::new(MemoryStore::new()),
                next_req: 1,
                next_upload: 1,
                pending: HashMap::new(),
                inbound: HashMap::new(),
                out: HashMap::new(),
                wire: HashMap::new(),
                next_wire: 1,
                runs: HashMap::new(),
                next_run: 1,
                file_runs: HashMap::new(),
                object_url: None,
                capacity: DEFAULT_CAPACITY,
                reported_storage: None,
                force_relay: search.contains("relay=1"),
                relay_start_ms: query_param(&search, "relay_after")
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|ms| ms.is_finite() && *ms >= 0.0)
                    .unwrap_or(RELAY_START_MS),
                have_batch: Vec::new(),
                waiting_orders: HashMap::new(),
                ice_servers: Vec::new(),
                relay_in: HashMap::new(),
                paths_read: 0.0,
                path_gate: ReportGate::default(),
            }),
            counters: Rc::new(ByteCounters::default()),
            relay_counters: ByteCounters::default(),
            dispatch,
            last_stats: Cell::new(Stats::default()),
            last_links: RefCell::new(Rc::new(Vec::new())),
            _timers: RefCell::new(Vec::new()),
            _listeners: RefCell::new(Vec::new()),
        });
        let weak = Rc::downgrade(&node);
        spawn_local(async move {
            let Some(node) = weak.upgrade() else { return };
            node.refresh_estimate(true).await;
            match IdbStore::open(DB_NAME).await {
                Ok(store) => {
                    let weak = node.weak.clone();
                    store.set_error_handler(Rc::new(move |f| {
                        if let Some(node) = weak.upgrade() {
                            node.on_store_failure(f);
                        }
                    }));
                    node.state.borrow_mut().store = Rc::new(store);
                }
                Err(e) => node.dispatch(Action::StoreError(Some(format!(
                    "IndexedDB is unavailable ({e}): chunks are kept in memory and lost on reload"
                )))),
            }
            node.connect_tracker();
            node.push_stats();
            node.follow_hash();
        });
        let weak = Rc::downgrade(&node);
        node._timers.borrow_mut().push(Interval::new(STATS_MS, move || {
            if let Some(node) = weak.upgrade() {
                node.push_stats();
            }
        }));
        let weak = Rc::downgrade(&node);
        node._timers.borrow_mut().push(Interval::new(TICK_MS, move || {
            if let Some(node) = weak.upgrade() {
                node.tick();
            }
        }));
        let weak = Rc::downgrade(&node);
        node._timers.borrow_mut().push(Interval::new(ESTIMATE_MS, move || {
            if let Some(node) = weak.upgrade() {
                spawn_local(async move { node.refresh_estimate(false).await });
            }
        }));
        let weak = Rc::downgrade(&node);
        let window = gloo::utils::window();
        node._listeners.borrow_mut().push(EventListener::new(&window, "hashchange", move |_| {
            if let Some(node) = weak.upgrade() {
                node.follow_hash();
            }
        }));
        node
    }

    fn connect_tracker(&self) {
        let weak = self.weak.clone();
        let link = TrackerLink::connect(
            tracker_url(),
            Rc::new(move |ev| {
                if let Some(node) = weak.upgrade() {
                    node.on_tracker(ev);
                }
            }),
        );
        self.state.borrow_mut().link = Some(link);
    }

    /// Starts the download named in the URL hash (`#/file/<id>`), if any.
    fn follow_hash(&self) {
        let hash = gloo::utils::window().location().hash().unwrap_or_default();
        if let Some(id) = hash.strip_prefix("#/file/") {
            self.download(id.trim());
        }
    }

    fn dispatch(&self, a: Action) {
        self.dispatch.emit(a);
    }

    fn send(&self, st: &State, msg: &ClientMsg) {
        if let Some(link) = &st.link {
            link.send(msg);
        }
    }

    /// Sends a request and remembers it until its answer (or error) arrives.
    fn request(&self, st: &mut State, kind: Pending, make: impl FnOnce(u32) -> ClientMsg) {
        let req = st.next_req;
        st.next_req = st.next_req.wrapping_add(1).max(1);
        let msg = make(req);
        self.send(st, &msg);
        st.pending.insert(req, (kind, msg));
    }

    /// Pushes the byte counters and store size to the page if they changed.
    pub fn push_stats(&self) {
        let mut st = self.state.borrow_mut();
        self.flush_have(&mut st);
        self.push_stats_of(&st);
    }

    /// Announces the chunks stored since the last batch.
    fn flush_have(&self, st: &mut State) {
        if !st.have_batch.is_empty() {
            let chunks = std::mem::take(&mut st.have_batch);
            self.send(st, &ClientMsg::Have { chunks, full: false });
        }
    }

    fn push_stats_of(&self, st: &State) {
        let stats = Stats {
            received: self.counters.received.get(),
            sent: self.counters.sent.get(),
            relay_received: self.relay_counters.received.get(),
            relay_sent: self.relay_counters.sent.get(),
            by_path: self.counters.by_path.snapshot(),
            store_chunks: st.store.len(),
            store_bytes: st.store.bytes(),
            connections: st.out.values().filter(|l| l.ready()).count()
                + st.inbound.values().filter(|c| c.is_open()).count(),
        };
        if stats != self.last_stats.get() {
            self.last_stats.set(stats);
            self.dispatch(Action::Stats(stats));
        }
        let links = links_view(st, js_sys::Date::now());
        if *links != **self.last_links.borrow() {
            let links = Rc::new(links);
            *self.last_links.borrow_mut() = links.clone();
            self.dispatch(Action::Links(links));
        }
    }

    /// Sends the tracker this tab's links and bytes by path, if they changed (at most every
    /// [`crate::paths::PATHS_REPORT_MS`]).
    fn report_paths(&self, st: &mut State, now: f64) {
        if !st.link.as_ref().is_some_and(|l| l.is_open()) {
            return;
        }
        let paths: Vec<LinkPath> = links_view(st, now).iter().filter_map(|l| l.path).collect();
        let report = crate::paths::report(&paths, self.counters.by_path.snapshot());
        if st.path_gate.offer(&report, now) {
            self.send(st, &ClientMsg::Paths { report });
        }
    }

    /// Asks for persistent storage (once) and reads the origin's usage and quota.
    async fn refresh_estimate(&self, first: bool) {
        let storage = gloo::utils::window().navigator().storage();
        let persisted = if first {
            match storage.persist() {
                Ok(p) => JsFuture::from(p).await.ok().and_then(|v| v.as_bool()),
                Err(_) => None,
            }
        } else {
            match storage.persisted() {
                Ok(p) => JsFuture::from(p).await.ok().and_then(|v| v.as_bool()),
                Err(_) => None,
            }
        };
        let estimate = match storage.estimate() {
            Ok(p) => JsFuture::from(p).await.ok(),
            Err(_) => None,
        };
        let num = |k: &str| {
            estimate.as_ref().and_then(|e| Reflect::get(e, &k.into()).ok()).and_then(|v| v.as_f64()).map(|v| v as u64)
        };
        let (usage, quota) = (num("usage"), num("quota"));
        if let Some(q) = quota {
            self.state.borrow_mut().capacity = q;
        }
        self.dispatch(Action::StorageInfo(StorageInfo { usage, quota, persisted }));
        self.report_storage();
    }

    /// Tells the tracker the room this tab offers, if it changed.
    fn report_storage(&self) {
        let mut st = self.state.borrow_mut();
        let now = (st.store.bytes(), st.capacity);
        if st.reported_storage != Some(now) && st.link.as_ref().is_some_and(|l| l.is_open()) {
            st.reported_storage = Some(now);
            self.send(&st, &ClientMsg::Storage { used: now.0, capacity: now.1 });
        }
    }

    fn on_store_failure(&self, f: WriteFailure) {
        let msg = if f.error.is_quota() {
            format!(
                "Storage is full: the browser refused to keep {} chunk(s) (quota exceeded). Free some space or \
                 allow this site more storage.",
                f.chunks.len()
            )
        } else {
            format!("Could not save {} chunk(s) in IndexedDB: {}", f.chunks.len(), f.error)
        };
        let st = self.state.borrow();
        if !f.chunks.is_empty() {
            self.send(&st, &ClientMsg::Dropped { chunks: f.chunks });
        }
        drop(st);
        self.dispatch(Action::StoreError(Some(msg)));
    }

    /// Gives every running download the time, closes idle links, reads the paths of open
    /// channels now and then, reports paths and storage changes.
    fn tick(&self) {
        let now = js_sys::Date::now();
        {
            let mut st = self.state.borrow_mut();
            if now - st.paths_read >= PATH_REFRESH_MS {
                st.paths_read = now;
                let out = st.out.values().filter_map(|l| l.rtc_open());
                for rtc in out.chain(st.inbound.values()) {
                    rtc.refresh_path();
                }
            }
            st.relay_in.retain(|_, t| now - *t < LINK_IDLE_MS);
            self.report_paths(&mut st, now);
            let idle: Vec<PeerId> = st
                .out
                .iter()
                .filter(|(_, l)| l.users.is_empty() && now - l.idle_since > LINK_IDLE_MS)
                .map(|(p, _)| p.clone())
                .collect();
            for peer in idle {
                self.close_link(&mut st, &peer);
            }
            let runs: Vec<u64> = st.runs.keys().copied().collect();
            for run in runs {
                if let Some(r) = st.runs.get_mut(&run) {
                    let steps = r.dl.tick(now);
                    self.apply_steps(&mut st, run, steps);
                }
            }
        }
        self.report_storage();
    }

    // ----- tracker -----

    fn on_tracker(&self, ev: TrackerEvent) {
        match ev {
            TrackerEvent::Open => {
                let mut st = self.state.borrow_mut();
                let Some(link) = st.link.clone() else { return };
                link.send(&ClientMsg::Hello {
                    version: PROTOCOL_VERSION,
                    kind: PeerKind::Browser,
                    secret: st.secret.clone(),
                });
                link.send(&ClientMsg::Have { chunks: st.store.ids(), full: true });
                st.path_gate.reset();
                let storage = (st.store.bytes(), st.capacity);
                link.send(&ClientMsg::Storage { used: storage.0, capacity: storage.1 });
                st.reported_storage = Some(storage);
                // Requests whose answers the old socket may have lost go out again.
                let mut pending: Vec<(&u32, &ClientMsg)> = st.pending.iter().map(|(r, (_, m))| (r, m)).collect();
                pending.sort_by_key(|(r, _)| **r);
                for (_, msg) in pending {
                    link.send(msg);
                }
            }
            TrackerEvent::Closed { retry_ms } => self.dispatch(Action::Conn(ConnStatus::Disconnected { retry_ms })),
            TrackerEvent::Message(msg) => self.on_server_msg(msg),
            TrackerEvent::Relay(frame) => self.on_relay(frame),
        }
    }

    fn on_server_msg(&self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome { peer_id, ice_servers, .. } => {
                let mut st = self.state.borrow_mut();
                st.me = Some(peer_id.clone());
                // Connections made from now on gather candidates through these.
                st.ice_servers = ice_servers;
                drop(st);
                self.dispatch(Action::Welcomed(peer_id));
            }
            ServerMsg::Published { req, file } => {
                let pending = self.state.borrow_mut().pending.remove(&req);
                if let Some((Pending::Publish { upload, manifest, meta }, _)) = pending {
                    self.keep_file(file, &manifest, &meta);
                    self.dispatch(Action::UploadPublished { id: upload, file });
                }
            }
            ServerMsg::Located { req, file, meta, manifest, peers, holders } => {
                let pending = self.state.borrow_mut().pending.remove(&req);
                if let Some((Pending::Locate { file: wanted }, _)) = pending {
                    if wanted != file {
                        self.fail_download(wanted, "the tracker answered about another file".into());
                        return;
                    }
                    self.start_file_run(file, meta, manifest, peers, holders);
                }
            }
            ServerMsg::SearchResults { .. } | ServerMsg::LeaveReady { .. } => {}
            ServerMsg::Replicate { order, chunk, size, sources } => self.start_order(order, chunk, size, sources),
            ServerMsg::Trim { chunks } => {
                let st = self.state.borrow();
                let dropped: Vec<ChunkId> = chunks.into_iter().filter(|c| st.store.remove(c)).collect();
                gloo::console::log!(format!("trimmed {} surplus chunk(s)", dropped.len()));
                self.send(&st, &ClientMsg::Dropped { chunks: dropped });
                drop(st);
                self.report_storage();
                self.push_stats();
            }
            ServerMsg::Signal { from, conn, signal } => self.on_signal(from, conn, signal),
            ServerMsg::Error { req, code, message } => {
                let pending = req.and_then(|r| self.state.borrow_mut().pending.remove(&r));
                match pending {
                    Some((Pending::Publish { upload, .. }, _)) => {
                        self.dispatch(Action::UploadFailed { id: upload, error: message })
                    }
                    Some((Pending::Locate { file }, _)) => {
                        let text =
                            if code == ErrorCode::UnknownFile { format!("unknown file: {message}") } else { message };
                        self.fail_download(file, text);
                    }
                    None => gloo::console::warn!(format!("tracker error {code:?}: {message}")),
                }
            }
        }
    }

    /// Keeps a file's manifest and name in the store (IndexedDB).
    fn keep_file(&self, file: FileId, manifest: &Manifest, meta: &FileMeta) {
        let json = serde_json::json!({ "manifest": manifest, "meta": meta }).to_string();
        self.state.borrow().store.put_file(file, json);
    }
}

/// The whole file as a `Blob` built from the stored chunk blobs (no copy in the JS heap),
/// behind an object URL. The type is never the swarm's: a blob URL shares this page's origin,
/// and a peer-chosen `text/html` opened from it could run script here.
async fn assemble(store: &dyn ChunkStore, manifest: &Manifest) -> Result<String, String> {
    let blobs = store.get_blobs(&manifest.chunks).await.map_err(|e| e.to_string())?;
    let parts = Array::new();
    for b in blobs {
        match b {
            Some(b) => {
                parts.push(&b);
            }
            None => return Err("a chunk vanished from the store".into()),
        }
    }
    let bag = BlobPropertyBag::new();
    bag.set_type("application/octet-stream");
    let blob = web_sys::Blob::new_with_blob_sequence_and_options(&parts, &bag).map_err(|e| js_error(&e))?;
    Url::create_object_url_with_blob(&blob).map_err(|e| js_error(&e))
}

/// This tab's connections to other peers, one entry per connection, sorted by peer:
/// fetching links (connecting, on the relay or on a channel), channels other peers opened, and
/// peers that fetched through the relay lately.
fn links_view(st: &State, now: f64) -> Vec<LinkView> {
    let mut v: Vec<LinkView> = st
        .out
        .iter()
        .map(|(peer, l)| LinkView { peer: peer.clone(), path: l.path(), ready: l.ready(), fetching: true })
        .collect();
    v.extend(st.inbound.iter().filter(|(_, c)| c.is_open()).map(|((peer, _), c)| LinkView {
        peer: peer.clone(),
        path: c.path(),
        ready: true,
        fetching: false,
    }));
    v.extend(st.relay_in.iter().filter(|(_, t)| now - **t < LINK_IDLE_MS).map(|(peer, _)| LinkView {
        peer: peer.clone(),
        path: Some(LinkPath::Relay),
        ready: true,
        fetching: false,
    }));
    v.sort_by(|a, b| {
        (&a.peer.0, !a.fetching, a.path.map(LinkPath::as_str)).cmp(&(
            &b.peer.0,
            !b.fetching,
            b.path.map(LinkPath::as_str),
        ))
    });
    v
}

/// The value of `name` in a URL's query string (`?a=1&b=2`), undecoded.
fn query_param<'a>(search: &'a str, name: &str) -> Option<&'a str> {
    search.trim_start_matches('?').split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// `ws(s)://<this page's host>/ws`: the tracker serves the page and the socket.
fn tracker_url() -> String {
    let loc = gloo::utils::window().location();
    let scheme = if loc.protocol().unwrap_or_default() == "https:" { "wss" } else { "ws" };
    format!("{scheme}://{}/ws", loc.host().unwrap_or_default())
}

/// This tab's secret: 32 random bytes in hex, kept for the session.
fn load_secret() -> String {
    if let Ok(s) = SessionStorage::raw().get_item(SECRET_KEY) {
        if let Some(s) = s.filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())) {
            return s;
        }
    }
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let _ = SessionStorage::raw().set_item(SECRET_KEY, &secret);
    secret
}

fn random_bytes(buf: &mut [u8]) {
    let crypto = gloo::utils::window().crypto().expect("crypto.getRandomValues is available");
    crypto.get_random_values_with_u8_array(buf).expect("getRandomValues works");
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    // 53 bits: the number survives any JSON tool, JavaScript's included.
    u64::from_be_bytes(b) & ((1 << 53) - 1)
}

/// Reads bytes `start..end` of a file (`Blob.slice().arrayBuffer()`).
async fn read_slice(file: &File, start: u64, end: u64) -> Result<Vec<u8>, String> {
    let blob = file.slice_with_f64_and_f64(start as f64, end as f64).map_err(|e| js_error(&e))?;
    let buf = JsFuture::from(blob.array_buffer()).await.map_err(|e| js_error(&e))?;
    Ok(Uint8Array::new(&buf).to_vec())
}
