//! The peer in the page: a thin driver of the sans-IO peer core
//! ([`swarm_core::peer::Peer`]), which owns every decision a peer makes — downloads, replication
//! orders, request matching, `have` batching, inventory and storage reports, trims, tracker
//! requests re-sent after a reconnect, links with relay-then-upgrade and fallback, serving,
//! path reports. The native peer drives the same core.
//!
//! This module only carries out what the core asks ([`Output`]) with the page's means and
//! feeds back what happens:
//! - the tracker websocket ([`TrackerLink`]): open → `tracker_connected`, messages →
//!   `handle_server_msg`, binary relay frames → `handle_relay`;
//! - WebRTC ([`RtcConn`]): `Dial` → an offering connection with the tracker's ICE servers,
//!   `Accept` → an answering one; their signals, opening (once `getStats()` told the path,
//!   [`crate::paths`]), path changes, messages (payloads left in JS memory,
//!   [`crate::js_chunk`]) and closing go back to the core;
//! - the store ([`ChunkStore`], IndexedDB): `Read` → read and check (the store does not
//!   verify on read) → `chunk_read`; `Verify` → `put_checked` (hashed in the store's worker)
//!   → `verified`; `Remove` → remove. What it holds is the core's [`Inventory`], with the
//!   chunks of the files this tab's user put or fetched pinned (never trimmed);
//! - time: `handle_timeout` at `poll_timeout`, one `Timeout` re-armed after every call;
//! - the page: [`Action`]s from the core's [`Event`]s and from its download state (chunk map,
//!   sources), progress at most every [`PROGRESS_MS`]; uploads (chunk, hash, store, announce,
//!   publish) and downloads (several at once, each cancellable; `#/file/<id>`, assembled into
//!   a `Blob` when done).
//!
//! The tab's identity (key and chunk store) comes from [`crate::identity`]; the core asks for the
//! tracker's challenge to be signed (`SignHello`), which the tab's key does
//! ([`crate::webkey::TabKey::sign`], a non-extractable WebCrypto key where the browser has one). The room it
//! offers the swarm is the user's choice (localStorage [`OFFER_KEY`]; by default the smaller of
//! [`crate::state::MAX_DEFAULT_OFFER`] and a tenth of the origin's quota), reported as the core's
//! [`Inventory::capacity`] and enforced here: a chunk kept for the swarm (not of a file the
//! user put or fetched) is not stored beyond it, and lowering the offer drops such chunks
//! until the store fits (the tracker hears of it and copies them elsewhere).
//!
//! A cancelled download keeps the chunks it verified: they are good copies the swarm can use.
//! They are no longer pinned (unless another file of the user's needs them), so they count as
//! chunks kept for the swarm: the tracker may trim them, and they go first if the store is
//! above the offer.
//!
//! `?relay=1` in the page's URL makes the tab use the tracker relay only
//! ([`PeerConfig::relay_only`]); `?relay_after=MS` sets how long a new link waits for its data
//! channel before it also uses the relay ([`PeerConfig::direct_grace_ms`]; `0`: relay at once,
//! then upgrade).
//!
//! All mutable state sits in one `RefCell`; the tracker link and the connections never call
//! back synchronously (see their docs), so the driver may hold the borrow while it sends.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

use gloo::events::EventListener;
use gloo::storage::{LocalStorage, Storage};
use gloo::timers::callback::{Interval, Timeout};
use js_sys::{Array, Reflect, Uint8Array};
use swarm_core::peer::{
    proof, serve, CellState, DownloadId, Event, Incoming, Inventory, LinkId, Output, Peer, PeerConfig, Purpose,
    ReadResult,
};
use swarm_core::relay::RelayFrame;
use swarm_core::share::{ShareLink, Target};
use swarm_core::wire::{sdp_candidate_count, FileMeta, IceServer, LinkPath, NonceItem, MAX_REMOTE_CANDIDATES};
use swarm_core::{
    ChunkId, ClientMsg, FileId, Manifest, ManifestBuilder, PeerId, PeerKind, ServerMsg, Signal, CHUNK_SIZE,
};
use thiserror::Error;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{BlobPropertyBag, File, Url};
use yew::prelude::*;

use crate::idb::IdbError;
use crate::identity::{Identity, MAX_SLOTS};
use crate::js_chunk::{split_incoming, JsChunk};
use crate::rtc::{js_error, ByteCounters, RtcConn, RtcEvent};
use crate::state::{Action, ConnStatus, LinkView, OfferView, SourceView, Stats, StorageInfo, TrimReport};
use crate::store::{ChunkStore, IdbStore, MemoryStore, WriteFailure};
use crate::tracker::{TrackerEvent, TrackerLink};
use crate::webkey::TabKey;
use swarm_core::peer::trackers::TrackerList;

/// localStorage key of the room (bytes) the user chose to offer the swarm.
pub const OFFER_KEY: &str = "pp-offer-bytes";
/// The upload limit the user set (bytes per second), kept in localStorage.
pub const UPLOAD_LIMIT_KEY: &str = "pp-upload-limit";
/// How often the byte counters are pushed to the page.
pub const STATS_MS: u32 = 250;
/// Least time between two progress updates of a download.
pub const PROGRESS_MS: f64 = 400.0;
/// How often the paths of open data channels are read again (`getStats()`).
pub const PATH_REFRESH_MS: u32 = 3_000;
/// How long a peer that fetched through the relay stays in the swarm view.
pub const RELAY_SEEN_MS: f64 = 30_000.0;
/// How often the storage estimate is refreshed.
pub const ESTIMATE_MS: u32 = 15_000;
/// Upload pauses while this many bytes wait to be committed to IndexedDB.
pub const UPLOAD_PENDING_LIMIT: u64 = 32 * 1024 * 1024;
use crate::state::{default_offer, DEFAULT_CAPACITY};

/// What can go wrong in the page's own file handling (the swarm's errors come from the core).
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("cannot read the file: {0}")]
    ReadFile(String),
    #[error(transparent)]
    Store(#[from] IdbError),
    #[error("a chunk vanished from the store")]
    ChunkVanished,
    #[error("cannot build the file: {0}")]
    Blob(String),
    #[error("{0}")]
    Link(#[from] swarm_core::share::ShareError),
    #[error("not a file id or share link: {0:?} (search the swarm by name below)")]
    NotALink(String),
}

/// The store as the peer core asks it.
struct StoreInventory<'a> {
    store: &'a dyn ChunkStore,
    capacity: u64,
    pinned: &'a HashSet<ChunkId>,
}

impl Inventory for StoreInventory<'_> {
    fn has(&self, chunk: &ChunkId) -> bool {
        self.store.has(chunk)
    }
    fn ids(&self) -> Vec<ChunkId> {
        self.store.ids()
    }
    fn used(&self) -> u64 {
        self.store.bytes()
    }
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn pinned(&self, chunk: &ChunkId) -> bool {
        self.pinned.contains(chunk)
    }
}

/// A link's WebRTC connection.
struct Conn {
    rtc: RtcConn,
    /// Its channel is open but its path not read yet: the core hears `link_open` once it is.
    awaiting_path: bool,
}

/// A download the page shows (the core's [`Purpose::Keep`]).
struct PageDownload {
    file: FileId,
    /// When the tracker located it, and what it is.
    located: Option<(f64, Manifest, FileMeta)>,
    first_chunk: Option<f64>,
    last_progress: f64,
    /// The last picture shown, kept up to date by chunk events (the core forgets a finished
    /// download before the page shows it complete).
    cells: Vec<CellState>,
    peers: Vec<PeerId>,
    sources: Vec<SourceView>,
}

struct State {
    /// This tab's identity slot, once claimed.
    slot: Option<u32>,
    /// Downloads to start again when the page opens ([`crate::resume`]).
    resume: Vec<crate::resume::Kept>,
    /// Paused downloads of this page and the chunks they keep pinned until resumed or
    /// cancelled.
    paused: HashMap<FileId, Vec<ChunkId>>,
    peer: Peer<JsChunk>,
    link: Option<TrackerLink>,
    store: Rc<dyn ChunkStore>,
    /// The room offered to the swarm (the user's choice, or the default).
    capacity: u64,
    /// The user chose `capacity` (a new estimate does not change it).
    offer_chosen: bool,
    /// Chunks of the files kept in earlier sessions (pinned).
    kept_files: HashMap<FileId, Vec<ChunkId>>,
    /// Chunks of files this tab's user put or fetched (even partly).
    pinned: HashSet<ChunkId>,
    conns: HashMap<LinkId, Conn>,
    /// This tab's key (`None` until the identity is claimed).
    key: Option<TabKey>,
    /// ICE servers from the tracker's latest `Welcome`, for every new connection.
    ice_servers: Vec<IceServer>,
    downloads: HashMap<DownloadId, PageDownload>,
    /// `Publish` requests awaiting their answer: the upload, its manifest and name, and the
    /// challenges (with answers) the tracker gets once the file is published.
    publishing: HashMap<u32, (u32, Manifest, FileMeta, Vec<NonceItem>)>,
    /// `Unpublish` requests awaiting their answer, and the file's chunks (unpinned on success
    /// so the tracker's trim removes them here too).
    unpublishing: HashMap<u32, FileId>,
    /// Files this tab published in this page, by id (what it may delete).
    uploaded: HashMap<FileId, Manifest>,
    /// Keys of private files this tab opened by link ([`crate::private`]).
    secrets: crate::private::Secrets,
    next_upload: u32,
    /// The object URLs of finished downloads, by file.
    object_urls: HashMap<FileId, String>,
    /// Peers that fetched from this tab through the relay, and when they last asked.
    relay_in: HashMap<PeerId, f64>,
    /// The core's next deadline and the timer armed for it.
    timer: Option<(u64, Timeout)>,
    /// Files located in this page, what [`crate::stream`] may play.
    streamable: HashMap<FileId, (Manifest, FileMeta)>,
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

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// The page's join token (`?token=…`), decoded.
fn page_token(search: &str) -> Option<String> {
    query_param(search, "token")
        .map(|t| js_sys::decode_uri_component(t).ok().and_then(|s| s.as_string()).unwrap_or_else(|| t.to_string()))
}

/// The peer's settings from the page's query string (`?relay=1`, `?relay_after=MS`, and
/// `?token=…`, the join token of a private tracker: share links keep it, see [`share_link`]).
fn peer_config(search: &str, key: [u8; 32]) -> PeerConfig {
    let mut config = PeerConfig::new(PeerKind::Browser, key);
    config.relay_only = query_param(search, "relay") == Some("1");
    config.token = page_token(search);
    if let Some(ms) = query_param(search, "relay_after").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            config.direct_grace_ms = ms as u64;
        }
    }
    config
}

impl Node {
    /// Starts the peer: opens its store, connects to the tracker of this page's origin and
    /// follows `#/file/<id>`.
    pub fn start(dispatch: Callback<Action>) -> Rc<Node> {
        let search = gloo::utils::window().location().search().unwrap_or_default();
        let node = Rc::new_cyclic(|weak| Node {
            weak: weak.clone(),
            state: RefCell::new(State {
                slot: None,
                resume: Vec::new(),
                paused: HashMap::new(),
                // Replaced by the peer of this tab's identity before the tracker is reached.
                peer: Peer::new(peer_config(&search, [0; 32])),
                link: None,
                store: Rc::new(MemoryStore::new()),
                capacity: saved_offer().unwrap_or(DEFAULT_CAPACITY),
                offer_chosen: saved_offer().is_some(),
                kept_files: HashMap::new(),
                pinned: HashSet::new(),
                conns: HashMap::new(),
                key: None,
                ice_servers: Vec::new(),
                downloads: HashMap::new(),
                publishing: HashMap::new(),
                unpublishing: HashMap::new(),
                uploaded: HashMap::new(),
                secrets: Default::default(),
                next_upload: 1,
                object_urls: HashMap::new(),
                relay_in: HashMap::new(),
                timer: None,
                streamable: HashMap::new(),
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
            let identity = crate::identity::claim().await;
            let Some(node) = weak.upgrade() else { return };
            node.take_identity(&identity, &search);
            node.refresh_estimate(true).await;
            let opened = if identity.slot >= MAX_SLOTS {
                Err(IdbError::other("every identity slot is taken by other tabs"))
            } else {
                IdbStore::open(&identity.db_name()).await
            };
            match opened {
                Ok(store) => {
                    let weak = node.weak.clone();
                    store.set_error_handler(Rc::new(move |f| {
                        if let Some(node) = weak.upgrade() {
                            node.on_store_failure(f);
                        }
                    }));
                    // The files kept in earlier sessions stay pinned.
                    for json in store.files().await.unwrap_or_default() {
                        let Some(manifest) = serde_json::from_str::<serde_json::Value>(&json)
                            .ok()
                            .and_then(|v| serde_json::from_value::<Manifest>(v["manifest"].clone()).ok())
                        else {
                            continue;
                        };
                        let mut st = node.state.borrow_mut();
                        st.pinned.extend(manifest.chunks.iter().copied());
                        st.kept_files.insert(manifest.file_id(), manifest.chunks);
                    }
                    node.state.borrow_mut().store = Rc::new(store);
                }
                Err(e) => node.dispatch(Action::StoreError(Some(format!(
                    "IndexedDB is unavailable ({e}): chunks are kept in memory and lost on reload"
                )))),
            }
            node.connect_tracker();
            node.push_stats();
            node.follow_hash();
            node.resume_downloads();
        });
        let every = |ms: u32, f: fn(&Node)| {
            let weak = Rc::downgrade(&node);
            Interval::new(ms, move || {
                if let Some(node) = weak.upgrade() {
                    f(&node);
                }
            })
        };
        node._timers.borrow_mut().extend([
            every(STATS_MS, Node::push_stats),
            every(PATH_REFRESH_MS, Node::refresh_paths),
            every(ESTIMATE_MS, |node| {
                if let Some(node) = node.weak.upgrade() {
                    spawn_local(async move { node.refresh_estimate(false).await });
                }
            }),
        ]);
        node._listeners.borrow_mut().extend(crate::stream::install(Rc::downgrade(&node)));
        let weak = Rc::downgrade(&node);
        let window = gloo::utils::window();
        node._listeners.borrow_mut().push(EventListener::new(&window, "hashchange", move |_| {
            if let Some(node) = weak.upgrade() {
                node.follow_hash();
            }
        }));
        node
    }

    /// Becomes the peer of `identity` (before the tracker is reached).
    fn take_identity(&self, identity: &Identity, search: &str) {
        let mut peer = Peer::new(peer_config(search, identity.key.public()));
        // A reload keeps the peer id: new link numbers, so remotes do not mistake them for the
        // previous page's (below 2^52: exact in any JSON reader).
        peer.number_links_after((js_sys::Math::random() * (1u64 << 52) as f64) as u64);
        let mut st = self.state.borrow_mut();
        st.peer = peer;
        st.key = Some(identity.key.clone());
        st.slot = Some(identity.slot);
        let limit = LocalStorage::raw().get_item(UPLOAD_LIMIT_KEY).ok().flatten().and_then(|v| v.parse().ok());
        st.peer.set_upload_limit(limit, now_ms());
        let kept = LocalStorage::raw().get_item(&crate::resume::key(identity.slot)).ok().flatten();
        st.resume = crate::resume::decode(&kept.unwrap_or_default());
        drop(st);
        self.dispatch(Action::Identity { slot: identity.slot });
        self.dispatch(Action::UploadLimit(limit));
    }

    /// Starts again the downloads an earlier page of this slot left unfinished; lists the
    /// paused ones as paused.
    fn resume_downloads(&self) {
        let kept = self.state.borrow().resume.clone();
        for k in kept {
            if k.paused {
                self.state.borrow_mut().paused.insert(k.file, Vec::new());
                self.dispatch(Action::DownloadStarted { file: k.file, now: js_sys::Date::now() });
                self.dispatch(Action::DownloadPaused { file: k.file });
            } else {
                self.download(&k.file.to_string());
            }
        }
    }

    /// Changes the list of unfinished downloads and keeps it.
    fn change_resume(&self, change: impl FnOnce(&[crate::resume::Kept]) -> Vec<crate::resume::Kept>) {
        let mut st = self.state.borrow_mut();
        st.resume = change(&st.resume);
        if let Some(slot) = st.slot {
            let _ = LocalStorage::raw().set_item(&crate::resume::key(slot), &crate::resume::encode(&st.resume));
        }
    }

    fn connect_tracker(&self) {
        let weak = self.weak.clone();
        let loc = gloo::utils::window().location();
        let protocol = loc.protocol().unwrap_or_default();
        let origin = crate::failover::origin_ws_url(&protocol, &loc.host().unwrap_or_default());
        let trackers = match TrackerList::new([origin]) {
            Ok(t) => t,
            Err(e) => {
                gloo::console::error!(format!("no tracker for this page: {e}"));
                return;
            }
        };
        let link = TrackerLink::connect(
            trackers,
            protocol,
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
        if hash.starts_with("#/file/") {
            self.download(&hash);
        }
    }

    fn dispatch(&self, a: Action) {
        self.dispatch.emit(a);
    }

    // ----- driving the core -----

    /// Calls the peer core, then carries out everything it asked for, shows progress and
    /// re-arms the timer.
    fn drive<R>(&self, f: impl FnOnce(&mut Peer<JsChunk>, &dyn Inventory, u64) -> R) -> R {
        let mut actions = Vec::new();
        let r = {
            let mut st = self.state.borrow_mut();
            let State { peer, store, capacity, pinned, conns, .. } = &mut *st;
            let r = f(peer, &StoreInventory { store: &**store, capacity: *capacity, pinned }, now_ms());
            // What left the channels' buffers: serving is paced by what is still queued.
            for (link, c) in conns.iter() {
                for n in c.rtc.take_flushed() {
                    peer.link_flushed(*link, n);
                }
            }
            self.carry_out(&mut st, &mut actions);
            progress(&mut st, &mut actions);
            self.arm_timer(&mut st);
            r
        };
        for a in actions {
            self.dispatch(a);
        }
        r
    }

    fn arm_timer(&self, st: &mut State) {
        let Some(at) = st.peer.poll_timeout() else {
            st.timer = None;
            return;
        };
        if st.timer.as_ref().is_some_and(|(t, _)| *t == at) {
            return;
        }
        let weak = self.weak.clone();
        let delay = at.saturating_sub(now_ms()).min(60_000) as u32;
        let timeout = Timeout::new(delay, move || {
            if let Some(node) = weak.upgrade() {
                node.state.borrow_mut().timer = None;
                node.drive(|p, inv, now| p.handle_timeout(inv, now));
            }
        });
        st.timer = Some((at, timeout));
    }

    /// Carries out the core's outputs (and those they lead to).
    fn carry_out(&self, st: &mut State, actions: &mut Vec<Action>) {
        while let Some(out) = st.peer.poll_output() {
            match out {
                Output::Tracker(msg) => {
                    if let Some(link) = &st.link {
                        link.send(&msg);
                    }
                }
                Output::SignHello { nonce, origin } => self.sign_hello(st, nonce, origin),
                Output::Relay { to, conn, payload } => {
                    let len = payload.len() as u64;
                    let frame = RelayFrame { peer: to.clone(), conn, payload };
                    if st.link.as_ref().is_some_and(|l| l.send_relay(&frame)) {
                        let c = &self.relay_counters.sent;
                        c.set(c.get() + len);
                    }
                    // Handed to the tab's websocket (its own buffer is the tracker module's).
                    st.peer.relay_flushed(&to, conn, len as usize);
                }
                Output::Dial { link, peer: _ } => {
                    match RtcConn::offer(&st.ice_servers, self.counters.clone(), self.rtc_handler(link)) {
                        Ok(rtc) => {
                            st.conns.insert(link, Conn { rtc, awaiting_path: false });
                        }
                        Err(e) => {
                            gloo::console::warn!(format!("{e}: using the tracker relay"));
                            st.peer.link_closed(link, &e.to_string(), now_ms());
                        }
                    }
                }
                Output::Accept { link, peer: _, sdp } => {
                    let conn = if sdp_candidate_count(&sdp) > MAX_REMOTE_CANDIDATES {
                        Err(format!("the offer has more than {MAX_REMOTE_CANDIDATES} candidates"))
                    } else {
                        RtcConn::answer(sdp, &st.ice_servers, self.counters.clone(), self.rtc_handler(link))
                            .map_err(|e| e.to_string())
                    };
                    match conn {
                        Ok(rtc) => {
                            st.conns.insert(link, Conn { rtc, awaiting_path: false });
                        }
                        Err(reason) => {
                            st.peer.link_signal(link, Signal::Close { reason: reason.clone() });
                            st.peer.link_closed(link, &reason, now_ms());
                        }
                    }
                }
                Output::Signal { link, signal } => {
                    if let Some(c) = st.conns.get(&link) {
                        c.rtc.on_signal(signal);
                    }
                }
                Output::Send { link, bytes } => match st.conns.get(&link) {
                    Some(c) => c.rtc.send(bytes),
                    None => st.peer.link_flushed(link, bytes.len()),
                },
                Output::Close { link } => {
                    if let Some(c) = st.conns.remove(&link) {
                        c.rtc.close();
                        // Dropped from a task, not inside a callback of the connection.
                        spawn_local(async move { drop(c) });
                    }
                }
                Output::Read { token, chunk } => self.read(st, token, chunk),
                Output::Verify { token, chunk, bytes, keep: _ } => self.verify(st, token, chunk, bytes),
                Output::Remove { chunks } => {
                    let n = chunks.iter().filter(|c| st.store.remove(c)).count();
                    gloo::console::log!(format!("trimmed {n} surplus chunk(s)"));
                    let inv = StoreInventory { store: &*st.store, capacity: st.capacity, pinned: &st.pinned };
                    st.peer.report_storage(&inv);
                }
                Output::Event(e) => self.on_event(st, e, actions),
            }
        }
    }

    /// Signs the tracker's challenge with the tab's key (WebCrypto signs asynchronously).
    fn sign_hello(&self, st: &State, nonce: [u8; 32], origin: String) {
        let Some(key) = st.key.clone() else {
            gloo::console::error!("the tracker's challenge came before the tab had its key");
            return;
        };
        let weak = self.weak.clone();
        spawn_local(async move {
            match key.sign(&swarm_core::identity::hello_payload(&nonce, &origin)).await {
                Ok(signature) => {
                    if let Some(node) = weak.upgrade() {
                        node.drive(|p, inv, now| p.hello_signed(nonce, signature, inv, now));
                    }
                }
                Err(e) => gloo::console::error!(format!("could not sign the tracker's challenge: {e}")),
            }
        });
    }

    /// Reads a chunk to serve it and checks it (the store does not verify on read).
    fn read(&self, st: &State, token: u64, chunk: ChunkId) {
        let (weak, store) = (self.weak.clone(), st.store.clone());
        spawn_local(async move {
            let result = match store.get(&chunk).await {
                Ok(Some(bytes)) if serve::check(&chunk, &bytes) => ReadResult::Found(bytes),
                Ok(Some(_)) => {
                    gloo::console::warn!(format!("chunk {} is corrupt in the store: dropped", chunk.short()));
                    store.remove(&chunk);
                    ReadResult::Corrupt
                }
                Ok(None) => ReadResult::Missing,
                Err(e) => {
                    gloo::console::warn!(format!("cannot read chunk {}: {e}", chunk.short()));
                    ReadResult::Missing
                }
            };
            if let Some(node) = weak.upgrade() {
                node.drive(|p, _, _| p.chunk_read(token, result));
            }
        });
    }

    /// Hashes a reassembled chunk in the store's worker and keeps it if it is `chunk` — and,
    /// for a chunk kept for the swarm (not pinned), if it fits the offer.
    fn verify(&self, st: &State, token: u64, chunk: ChunkId, bytes: JsChunk) {
        let (weak, store) = (self.weak.clone(), st.store.clone());
        if !st.pinned.contains(&chunk)
            && !store.has(&chunk)
            && store.bytes().saturating_add(bytes.len() as u64) > st.capacity
        {
            let reason = format!("no room: {} of the {} bytes offered are used", store.bytes(), st.capacity);
            spawn_local(async move {
                if let Some(node) = weak.upgrade() {
                    node.drive(|p, _, now| p.verified(token, bytes, chunk, Err(reason), now));
                }
            });
            return;
        }
        spawn_local(async move {
            let checked = store.put_checked(chunk, bytes.clone()).await;
            let Some(node) = weak.upgrade() else { return };
            node.drive(|p, _, now| match checked {
                Ok(actual) => p.verified(token, bytes, actual, Ok(()), now),
                Err(e) => {
                    gloo::console::warn!(format!("chunk {}: {e}", chunk.short()));
                    p.unverified(token, now)
                }
            });
        });
    }

    fn on_event(&self, st: &mut State, e: Event<JsChunk>, actions: &mut Vec<Action>) {
        match e {
            Event::Welcomed { peer_id, ice_servers, trackers } => {
                // Connections made from now on gather candidates through these.
                st.ice_servers = ice_servers;
                actions.push(Action::Welcomed(peer_id));
                // The nodes of a tracker cluster, to fail over to; the status line names the
                // one in use.
                if let Some(link) = &st.link {
                    let nodes = link.learn(&trackers);
                    actions.push(Action::TrackerNode { url: link.url(), nodes });
                }
            }
            Event::Trackers { trackers } => {
                if let Some(link) = &st.link {
                    let nodes = link.learn(&trackers);
                    actions.push(Action::TrackerNode { url: link.url(), nodes });
                }
            }
            Event::Reply { req, msg } => {
                if let Some(file) = st.unpublishing.remove(&req) {
                    match msg {
                        ServerMsg::Unpublished { .. } => {
                            // Nothing of it is kept for the user any more: the trim that follows
                            // removes its chunks from this tab too.
                            let chunks: Vec<ChunkId> = st.uploaded.remove(&file).map(|m| m.chunks).unwrap_or_default();
                            for c in chunks {
                                st.pinned.remove(&c);
                            }
                            actions.push(Action::FileDeleted { file });
                        }
                        ServerMsg::Error { message, .. } => {
                            actions.push(Action::FileDeleteFailed { file, error: message })
                        }
                        _ => {}
                    }
                    return;
                }
                let Some((upload, manifest, meta, nonces)) = st.publishing.remove(&req) else { return };
                match msg {
                    ServerMsg::Published { file, .. } => {
                        keep_file(st.store.as_ref(), file, &manifest, &meta);
                        // Announced again now that they are a file's: before the publish
                        // they were claims of chunks no file uses, of which the tracker keeps
                        // only so many per peer (`--max-loose-claims`).
                        let now = js_sys::Date::now() as u64;
                        for c in &manifest.chunks {
                            st.peer.announce(*c, now);
                        }
                        st.peer.flush_haves();
                        st.peer.publish_nonces(file, nonces);
                        st.uploaded.insert(file, manifest.clone());
                        actions.push(Action::UploadPublished { id: upload, file });
                    }
                    ServerMsg::Error { message, .. } => {
                        actions.push(Action::UploadFailed { id: upload, error: message })
                    }
                    _ => {}
                }
            }
            Event::Located { download, file, manifest, meta } => {
                if !st.downloads.contains_key(&download) {
                    return;
                }
                let name = match st.secrets.open(file, &meta, &manifest) {
                    Ok(plain) => plain.map_or_else(|| meta.name.clone(), |p| p.name),
                    Err(error) => {
                        st.downloads.remove(&download);
                        st.peer.cancel(download, js_sys::Date::now() as u64);
                        actions.push(Action::DownloadFailed { file, error });
                        return;
                    }
                };
                let Some(d) = st.downloads.get_mut(&download) else { return };
                match st.peer.download_state(download) {
                    Some(dl) => (d.cells, d.peers) = (dl.cells(), dl.peers().to_vec()),
                    None => d.cells = vec![CellState::Needed; manifest.chunks.len()], // done already
                }
                actions.push(Action::DownloadLocated {
                    file,
                    name,
                    size: manifest.size,
                    chunks_total: manifest.chunks.len(),
                    cells: Rc::new(d.cells.clone()),
                });
                st.pinned.extend(manifest.chunks.iter().copied());
                st.streamable.insert(file, (manifest.clone(), meta.clone()));
                d.located = Some((js_sys::Date::now(), manifest, meta));
            }
            Event::Chunk { download, index, from, .. } => {
                let Some(d) = st.downloads.get_mut(&download) else { return };
                d.first_chunk.get_or_insert_with(js_sys::Date::now);
                if let Some(cell) = d.cells.get_mut(index) {
                    *cell = CellState::Done(d.peers.iter().position(|p| *p == from));
                }
            }
            Event::Finished { download, purpose, result } => match purpose {
                Purpose::Keep => {
                    let Some(d) = st.downloads.remove(&download) else { return };
                    match (result, d.located.clone()) {
                        (Ok(()), Some((_, manifest, meta))) => self.finish_download(st, d, manifest, meta, actions),
                        (Ok(()), None) => {}
                        (Err(error), _) => {
                            actions.push(Action::DownloadFailed { file: d.file, error: error.to_string() })
                        }
                    }
                }
                Purpose::Order { order } => {
                    if let Err(e) = result {
                        gloo::console::warn!(format!("replication order {order} failed: {e}"));
                    }
                }
                Purpose::Read => {}
            },
            Event::LeaveReady { .. } => {}
            Event::Notice(text) => gloo::console::warn!(text),
        }
    }

    /// Shows a download complete, keeps its manifest and builds the file behind a blob URL.
    fn finish_download(
        &self,
        st: &mut State,
        mut d: PageDownload,
        manifest: Manifest,
        meta: FileMeta,
        actions: &mut Vec<Action>,
    ) {
        for c in d.cells.iter_mut().filter(|c| !matches!(c, CellState::Done(_))) {
            *c = CellState::Done(None);
        }
        let now = js_sys::Date::now();
        actions.push(Action::DownloadProgress {
            file: d.file,
            chunks_done: d.cells.len(),
            bytes_done: manifest.size,
            peers: d.sources.iter().filter(|s| s.bytes > 0).count(),
            now,
            cells: Rc::new(d.cells),
            sources: d.sources,
            first_chunk_ms: d.first_chunk.zip(d.located.as_ref()).map(|(f, l)| f - l.0),
        });
        keep_file(st.store.as_ref(), d.file, &manifest, &meta);
        st.kept_files.insert(d.file, manifest.chunks.clone());
        let (Some(node), store, file) = (self.weak.upgrade(), st.store.clone(), d.file) else { return };
        let private = st.secrets.opened(&file);
        spawn_local(async move {
            let built = match &private {
                Some((cipher, _)) => crate::private::assemble(store.as_ref(), &manifest, cipher).await,
                None => assemble(store.as_ref(), &manifest).await.map_err(|e| e.to_string()),
            };
            match built {
                Ok(url) => {
                    if let Some(old) = node.state.borrow_mut().object_urls.insert(file, url.clone()) {
                        let _ = Url::revoke_object_url(&old);
                    }
                    gloo::console::log!(format!("download of {} done", meta.name));
                    node.change_resume(|kept| crate::resume::without(kept, file));
                    node.dispatch(Action::DownloadDone { file, url, now: js_sys::Date::now() });
                    node.refresh_estimate(false).await;
                }
                Err(e) => node.dispatch(Action::DownloadFailed { file, error: e.to_string() }),
            }
        });
    }

    // ----- tracker -----

    fn on_tracker(&self, ev: TrackerEvent) {
        match ev {
            TrackerEvent::Open => {
                // The hello is signed for the node this socket reached.
                let url = self.state.borrow().link.as_ref().map(TrackerLink::url).unwrap_or_default();
                self.drive(|p, inv, now| {
                    p.set_tracker_origin(&url);
                    p.tracker_connected(inv, now)
                })
            }
            TrackerEvent::Closed { retry_ms } => {
                self.state.borrow_mut().peer.tracker_disconnected();
                self.dispatch(Action::Conn(ConnStatus::Disconnected { retry_ms }));
            }
            TrackerEvent::Message(msg) => self.drive(|p, inv, now| p.handle_server_msg(msg, inv, now)),
            TrackerEvent::Relay(RelayFrame { peer, conn, payload }) => {
                let len = payload.len() as u64;
                let c = &self.relay_counters.received;
                c.set(c.get() + len);
                self.counters.by_path.add(LinkPath::Relay, len);
                match split_incoming(&Uint8Array::from(&payload[..])) {
                    Ok(msg) => {
                        if matches!(msg, Incoming::Request { .. }) {
                            self.state.borrow_mut().relay_in.insert(peer.clone(), js_sys::Date::now());
                        }
                        self.drive(|p, _, now| p.handle_relay(peer, conn, msg, now));
                    }
                    Err(e) => gloo::console::warn!(format!("bad relayed message from {}: {e}", peer.short())),
                }
            }
        }
    }

    // ----- WebRTC -----

    fn rtc_handler(&self, link: LinkId) -> Rc<dyn Fn(RtcEvent)> {
        let weak = self.weak.clone();
        Rc::new(move |ev| {
            if let Some(node) = weak.upgrade() {
                node.on_rtc(link, ev);
            }
        })
    }

    fn on_rtc(&self, link: LinkId, ev: RtcEvent) {
        match ev {
            RtcEvent::Signal(signal) => self.drive(|p, _, _| p.link_signal(link, signal)),
            RtcEvent::Open => {
                let path = {
                    let mut st = self.state.borrow_mut();
                    let Some(c) = st.conns.get_mut(&link) else { return };
                    c.awaiting_path = c.rtc.path().is_none();
                    c.rtc.path()
                };
                if let Some(path) = path {
                    self.drive(|p, _, now| p.link_open(link, path, now));
                }
            }
            RtcEvent::Path(path) => {
                let awaiting = {
                    let mut st = self.state.borrow_mut();
                    let Some(c) = st.conns.get_mut(&link) else { return };
                    std::mem::take(&mut c.awaiting_path)
                };
                if awaiting {
                    self.drive(|p, _, now| p.link_open(link, path, now));
                } else {
                    self.drive(|p, _, _| p.link_path(link, path));
                }
            }
            RtcEvent::Drained => self.drive(|_, _, _| ()),
            RtcEvent::Message(bytes) => match split_incoming(&bytes) {
                Ok(msg) => self.drive(|p, _, now| p.handle_link_msg(link, msg, now)),
                Err(e) => gloo::console::warn!(format!("bad message on link {link}: {e}")),
            },
            RtcEvent::Closed(reason) => {
                let Some(c) = self.state.borrow_mut().conns.remove(&link) else { return };
                // Dropped from a task, not inside the callback that reported the close.
                spawn_local(async move { drop(c) });
                self.drive(|p, _, now| p.link_closed(link, &reason, now));
            }
        }
    }

    /// Reads the paths of open data channels again (a changed path comes back as an event).
    fn refresh_paths(&self) {
        for c in self.state.borrow().conns.values().filter(|c| c.rtc.is_open()) {
            c.rtc.refresh_path();
        }
    }

    // ----- the page -----

    /// Pushes the byte counters, store size and links to the page if they changed.
    pub fn push_stats(&self) {
        let now = js_sys::Date::now();
        let (stats, links) = {
            let mut st = self.state.borrow_mut();
            st.relay_in.retain(|_, t| now - *t < RELAY_SEEN_MS);
            let stats = Stats {
                received: self.counters.received.get(),
                sent: self.counters.sent.get(),
                relay_received: self.relay_counters.received.get(),
                relay_sent: self.relay_counters.sent.get(),
                by_path: self.counters.by_path.snapshot(),
                store_chunks: st.store.len(),
                store_bytes: st.store.bytes(),
                connections: st.peer.links().iter().filter(|l| l.1.is_some()).count(),
            };
            (stats, links_view(&st))
        };
        if stats != self.last_stats.get() {
            self.last_stats.set(stats);
            self.dispatch(Action::Stats(stats));
        }
        if *links != **self.last_links.borrow() {
            let links = Rc::new(links);
            *self.last_links.borrow_mut() = links.clone();
            self.dispatch(Action::Links(links));
        }
    }

    /// Asks for persistent storage (once) and reads the origin's usage and quota.
    async fn refresh_estimate(&self, first: bool) {
        let storage = gloo::utils::window().navigator().storage();
        let persisted = if first { storage.persist() } else { storage.persisted() };
        let persisted = match persisted {
            Ok(p) => JsFuture::from(p).await.ok().and_then(|v| v.as_bool()),
            Err(_) => None,
        };
        let estimate = match storage.estimate() {
            Ok(p) => JsFuture::from(p).await.ok(),
            Err(_) => None,
        };
        let num = |k: &str| {
            estimate.as_ref().and_then(|e| Reflect::get(e, &k.into()).ok()).and_then(|v| v.as_f64()).map(|v| v as u64)
        };
        let (usage, quota) = (num("usage"), num("quota"));
        let offer = {
            let mut st = self.state.borrow_mut();
            if !st.offer_chosen {
                st.capacity = default_offer(quota);
            }
            OfferView { bytes: st.capacity, chosen: st.offer_chosen }
        };
        self.dispatch(Action::StorageInfo(StorageInfo { usage, quota, persisted }));
        self.dispatch(Action::Offer(offer));
        self.drive(|p, inv, _| p.report_storage(inv));
    }

    /// The user's offer: kept in localStorage, reported to the tracker, and enforced at once
    /// (chunks kept for the swarm above it are dropped; the user's own files stay).
    /// Sets the upload limit (bytes per second; `None`: none), kept across reloads:
    /// everything this tab serves counts against it.
    pub fn set_upload_limit(&self, rate: Option<u64>) {
        let storage = LocalStorage::raw();
        let _ = match rate {
            Some(r) => storage.set_item(UPLOAD_LIMIT_KEY, &r.to_string()),
            None => storage.remove_item(UPLOAD_LIMIT_KEY),
        };
        self.drive(|p, _, now| p.set_upload_limit(rate, now));
        self.dispatch(Action::UploadLimit(rate));
    }

    pub fn set_offer(&self, bytes: u64) {
        let _ = LocalStorage::raw().set_item(OFFER_KEY, &bytes.to_string());
        {
            let mut st = self.state.borrow_mut();
            st.capacity = bytes;
            st.offer_chosen = true;
        }
        self.dispatch(Action::Offer(OfferView { bytes, chosen: true }));
        let report = self.fit_offer();
        self.dispatch(Action::Trimmed(report));
        self.drive(|p, inv, _| p.report_storage(inv));
    }

    /// Drops chunks kept for the swarm (unpinned) until the store fits the offer, and tells
    /// the tracker; chunks of the user's own files are never dropped.
    fn fit_offer(&self) -> TrimReport {
        let (dropped, dropped_bytes, still_over) = {
            let st = self.state.borrow();
            let (mut used, mut dropped, mut bytes) = (st.store.bytes(), Vec::new(), 0);
            for c in st.store.ids() {
                if used <= st.capacity {
                    break;
                }
                if st.pinned.contains(&c) {
                    continue;
                }
                let before = st.store.bytes();
                if st.store.remove(&c) {
                    let freed = before.saturating_sub(st.store.bytes());
                    used = used.saturating_sub(freed);
                    bytes += freed;
                    dropped.push(c);
                }
            }
            (dropped, bytes, used.saturating_sub(st.capacity))
        };
        let report = TrimReport { dropped_chunks: dropped.len(), dropped_bytes, still_over };
        if !dropped.is_empty() {
            self.drive(|p, inv, _| p.dropped(dropped, inv));
        }
        report
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
        self.drive(|p, inv, _| p.dropped(f.chunks, inv));
        self.dispatch(Action::StoreError(Some(msg)));
    }

    // ----- upload -----

    /// Chunks, hashes, stores and publishes a file, reading it one chunk at a time
    /// (`Blob.slice`), so a large file never sits whole in memory.
    pub fn upload(&self, file: File) {
        self.upload_as(file, false)
    }

    /// [`Node::upload`]; `private`: encrypted first ([`crate::private::Sealer`]), and the
    /// upload's share link carries the key.
    pub fn upload_as(&self, file: File, private: bool) {
        let Some(node) = self.weak.upgrade() else { return };
        spawn_local(async move {
            let size = file.size() as u64;
            let name = file.name();
            let mime =
                Some(file.type_()).filter(|t| !t.is_empty()).unwrap_or_else(|| "application/octet-stream".into());
            let sealer = private.then(|| crate::private::Sealer::new(size));
            let plain_chunk = if private { swarm_core::envelope::PLAIN_CHUNK as u64 } else { CHUNK_SIZE as u64 };
            let total = size.div_ceil(plain_chunk) as usize;
            let id = {
                let mut st = node.state.borrow_mut();
                st.next_upload += 1;
                st.next_upload - 1
            };
            let started = js_sys::Date::now();
            node.dispatch(Action::UploadStarted { id, name: name.clone(), size, chunks_total: total, now: started });
            if let Some(s) = &sealer {
                node.dispatch(Action::UploadLinkQuery { id, query: crate::private::link_query(&s.key) });
            }
            let mut builder = ManifestBuilder::new(CHUNK_SIZE);
            // One challenge per chunk for the tracker (a proof costs a hash of the chunk on
            // this thread; the tracker adds more later from holders that agree).
            let mut nonces = Vec::with_capacity(total);
            let mut last_progress = 0.0;
            let store = node.state.borrow().store.clone();
            for i in 0..total {
                let start = i as u64 * plain_chunk;
                let end = (start + plain_chunk).min(size);
                let mut bytes = match read_slice(&file, start, end).await {
                    Ok(b) => b,
                    Err(e) => {
                        node.dispatch(Action::UploadFailed { id, error: e.to_string() });
                        return;
                    }
                };
                if let Some(s) = &sealer {
                    s.seal(i as u64, &mut bytes);
                }
                let chunk = builder.push(&bytes);
                nonces.extend(proof::nonce_items(chunk, &bytes, &[random_nonce()]));
                store.put(chunk, &bytes);
                drop(bytes);
                if store.pending_bytes() > UPLOAD_PENDING_LIMIT {
                    store.flushed().await;
                }
                let now = js_sys::Date::now();
                if now - last_progress > PROGRESS_MS || i + 1 == total {
                    last_progress = now;
                    node.dispatch(Action::UploadProgress { id, chunks_done: i + 1, bytes_done: end, now });
                }
            }
            store.flushed().await;
            let manifest = builder.finish();
            // Every chunk must really be stored before the swarm is told.
            let missing = manifest.chunks.iter().filter(|c| !store.has(c)).count();
            if missing > 0 {
                node.dispatch(Action::UploadFailed {
                    id,
                    error: format!("{missing} chunk(s) could not be stored (see the storage warning)"),
                });
                return;
            }
            let now = js_sys::Date::now();
            node.dispatch(Action::UploadProgress { id, chunks_done: total, bytes_done: size, now });
            let mut ids = manifest.chunks.clone();
            ids.sort();
            ids.dedup();
            node.state.borrow_mut().pinned.extend(ids.iter().copied());
            let meta = match &sealer {
                Some(s) => s.meta(name, mime),
                None => FileMeta::public(name, mime),
            };
            let (m, me) = (manifest.clone(), meta.clone());
            // The tracker hears of the chunks before the file that needs them.
            let req = node.drive(|p, inv, now| {
                for c in ids {
                    p.announce(c, now);
                }
                p.flush_haves();
                p.report_storage(inv);
                p.request(|req| ClientMsg::Publish { req, manifest: m, meta: me })
            });
            node.state.borrow_mut().publishing.insert(req, (id, manifest, meta, nonces));
            node.push_stats();
            node.refresh_estimate(false).await;
        });
    }

    /// Asks the tracker to forget a file this tab published; the answer arrives as
    /// [`Action::FileDeleted`] or [`Action::FileDeleteFailed`] (only the publisher may).
    pub fn unpublish(&self, file: FileId) {
        let req = self.drive(|p, _, _| p.request(|req| ClientMsg::Unpublish { req, file }));
        self.state.borrow_mut().unpublishing.insert(req, file);
    }

    // ----- download -----

    /// A file located in this page, in plaintext terms, for [`crate::stream`]: a private one
    /// only if this page opened it with its key.
    pub fn stream_file(&self, file: FileId) -> Option<crate::stream::Source> {
        let st = self.state.borrow();
        let (manifest, meta) = st.streamable.get(&file)?.clone();
        if !meta.is_private() {
            return Some(crate::stream::Source::public(manifest, meta.name, meta.mime));
        }
        let (cipher, plain) = st.secrets.opened(&file)?;
        Some(crate::stream::Source::private(manifest, &plain, cipher))
    }

    /// The tab's chunk store.
    pub fn chunk_store(&self) -> Rc<dyn ChunkStore> {
        self.state.borrow().store.clone()
    }

    /// A player reads `file` from byte `offset` on: its running download fetches from there
    /// first (nothing happens once it is complete).
    pub fn set_playhead(&self, file: FileId, offset: u64) {
        self.drive(|p, _, now| {
            if let Some(d) = p.download_of(file) {
                p.set_playhead(d, Some(offset), now);
            }
        });
    }

    /// Starts downloading what the user typed or opened: a share link (a private file's
    /// carries its key), a `#/file/…` fragment or a file id. A file already downloading is
    /// not started twice.
    pub fn download(&self, input: &str) {
        let (file, secret) = match parse_target(input) {
            Ok(link) => (link.file, link.secret),
            Err(e) => return self.dispatch(Action::DownloadInputError(e.to_string())),
        };
        if secret.is_none() {
            // A private file's key is not kept: it does not resume.
            self.change_resume(|kept| crate::resume::with(kept, crate::resume::Kept::running(file)));
        }
        {
            let mut st = self.state.borrow_mut();
            st.secrets.remember(file, secret);
            st.paused.remove(&file);
            if st.downloads.values().any(|d| d.file == file) {
                return; // already running
            }
        }
        let download = self.drive(|p, _, now| p.download(file, Purpose::Keep, now));
        let d = PageDownload {
            file,
            located: None,
            first_chunk: None,
            last_progress: 0.0,
            cells: Vec::new(),
            peers: Vec::new(),
            sources: Vec::new(),
        };
        self.state.borrow_mut().downloads.insert(download, d);
        self.dispatch(Action::DownloadStarted { file, now: js_sys::Date::now() });
    }

    /// Stops the download of `file`. The chunks it verified stay in the store (good copies the
    /// swarm can use) but are no longer pinned unless another of the user's files needs them,
    /// so they count against the offer (and go if the store is above it).
    pub fn cancel(&self, file: FileId) {
        self.change_resume(|kept| crate::resume::without(kept, file));
        let was_paused = self.state.borrow_mut().paused.remove(&file);
        let chunks = match (self.stop(file), was_paused) {
            (Some(chunks), _) | (None, Some(chunks)) => chunks,
            (None, None) => return,
        };
        self.unpin_unneeded(&chunks);
        self.dispatch(Action::DownloadCancelled { file });
        self.fit_offer();
        self.drive(|p, inv, _| p.report_storage(inv));
    }

    /// Pauses the download of `file`: it fetches nothing more until resumed ([`Node::download`]
    /// again), and stays paused across reloads. Its chunks stay pinned while this page lives.
    pub fn pause(&self, file: FileId) {
        let Some(chunks) = self.stop(file) else { return };
        self.state.borrow_mut().paused.insert(file, chunks);
        self.change_resume(|kept| {
            if kept.iter().any(|k| k.file == file) {
                crate::resume::with(kept, crate::resume::Kept { file, paused: true })
            } else {
                kept.to_vec() // a private file: not kept, so not kept paused either
            }
        });
        self.dispatch(Action::DownloadPaused { file });
    }

    /// Stops the running download of `file`; the chunks of its file, if it was located.
    fn stop(&self, file: FileId) -> Option<Vec<ChunkId>> {
        let removed = {
            let mut st = self.state.borrow_mut();
            let id = st.downloads.iter().find(|(_, d)| d.file == file).map(|(id, _)| *id);
            id.and_then(|id| st.downloads.remove(&id).map(|d| (id, d)))
        };
        let (id, d) = removed?;
        self.drive(|p, _, now| p.cancel(id, now));
        Some(d.located.map(|(_, manifest, _)| manifest.chunks).unwrap_or_default())
    }

    /// Unpins those of `chunks` that no file of the user's still needs.
    fn unpin_unneeded(&self, chunks: &[ChunkId]) {
        let mut st = self.state.borrow_mut();
        let needed: HashSet<ChunkId> = st
            .uploaded
            .values()
            .flat_map(|m| m.chunks.iter())
            .chain(st.kept_files.values().flatten())
            .chain(st.downloads.values().filter_map(|d| d.located.as_ref()).flat_map(|l| l.1.chunks.iter()))
            .chain(st.paused.values().flatten())
            .copied()
            .collect();
        for c in chunks {
            if !needed.contains(c) {
                st.pinned.remove(c);
            }
        }
    }
}

/// The file a share link, `#/file/…` fragment or bare id names.
fn parse_target(input: &str) -> Result<ShareLink, NodeError> {
    match Target::parse(input)? {
        Target::Link(link) => Ok(link),
        Target::Name(name) => Err(NodeError::NotALink(name.chars().take(100).collect())),
    }
}

/// This page's absolute share link for `file`: its origin (plus `?token=…` if the page has a
/// join token) and `#/file/<id>`.
pub fn share_link(file: FileId) -> String {
    let loc = gloo::utils::window().location();
    let origin = loc.origin().unwrap_or_default();
    let web = match page_token(&loc.search().unwrap_or_default()) {
        Some(t) => format!("{origin}/?token={}", String::from(js_sys::encode_uri_component(&t))),
        None => origin,
    };
    ShareLink { web: Some(web), file, secret: None }.to_string()
}

/// The offer the user chose earlier, if any.
fn saved_offer() -> Option<u64> {
    LocalStorage::raw().get_item(OFFER_KEY).ok().flatten().and_then(|v| v.parse().ok())
}

/// Shows the progress of running downloads (each at most every [`PROGRESS_MS`]).
fn progress(st: &mut State, actions: &mut Vec<Action>) {
    let now = js_sys::Date::now();
    let State { peer, downloads, .. } = st;
    for (id, d) in downloads.iter_mut().filter(|(_, d)| now - d.last_progress >= PROGRESS_MS) {
        let (Some(dl), Some(located)) = (peer.download_state(*id), &d.located) else { continue };
        d.last_progress = now;
        let links = peer.links();
        let via = |p: &PeerId| match links.iter().find(|l| l.0 == *p && l.2 == "fetch") {
            Some((_, Some(path), _)) => crate::paths::label(*path),
            Some((_, None, _)) => "connecting",
            None => "",
        };
        d.cells = dl.cells();
        d.peers = dl.peers().to_vec();
        d.sources = d
            .peers
            .iter()
            .zip(dl.delivered())
            .map(|(p, b)| SourceView { peer: p.clone(), bytes: *b, via: via(p) })
            .collect();
        actions.push(Action::DownloadProgress {
            file: d.file,
            chunks_done: dl.done(),
            bytes_done: dl.bytes_done(),
            peers: dl.active_peers(),
            now,
            cells: Rc::new(d.cells.clone()),
            sources: d.sources.clone(),
            first_chunk_ms: d.first_chunk.map(|t| t - located.0),
        });
    }
}

/// Keeps a file's manifest and name in the store (IndexedDB).
fn keep_file(store: &dyn ChunkStore, file: FileId, manifest: &Manifest, meta: &FileMeta) {
    store.put_file(file, serde_json::json!({ "manifest": manifest, "meta": meta }).to_string());
}

/// The whole file as a `Blob` built from the stored chunk blobs (no copy in the JS heap),
/// behind an object URL. The type is never the swarm's: a blob URL shares this page's origin,
/// and a peer-chosen `text/html` opened from it could run script here.
async fn assemble(store: &dyn ChunkStore, manifest: &Manifest) -> Result<String, NodeError> {
    let parts = Array::new();
    for b in store.get_blobs(&manifest.chunks).await? {
        let b = b.ok_or(NodeError::ChunkVanished)?;
        parts.push(&b);
    }
    let bag = BlobPropertyBag::new();
    bag.set_type("application/octet-stream");
    let blob =
        web_sys::Blob::new_with_blob_sequence_and_options(&parts, &bag).map_err(|e| NodeError::Blob(js_error(&e)))?;
    Url::create_object_url_with_blob(&blob).map_err(|e| NodeError::Blob(js_error(&e)))
}

/// This tab's connections to other peers, one entry per connection, sorted by peer:
/// fetching links (connecting, on the relay or on a channel), channels other peers opened, and
/// peers that fetched through the relay lately.
fn links_view(st: &State) -> Vec<LinkView> {
    let mut v: Vec<LinkView> = st
        .peer
        .links()
        .into_iter()
        .filter(|(_, path, kind)| *kind == "fetch" || path.is_some())
        .map(|(peer, path, kind)| LinkView { peer, path, ready: path.is_some(), fetching: kind == "fetch" })
        .collect();
    v.extend(st.relay_in.keys().map(|peer| LinkView {
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

/// A challenge nonce: 16 random bytes.
fn random_nonce() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    let crypto = gloo::utils::window().crypto().expect("crypto.getRandomValues is available");
    crypto.get_random_values_with_u8_array(&mut bytes).expect("getRandomValues works");
    bytes
}

/// Reads bytes `start..end` of a file (`Blob.slice().arrayBuffer()`).
async fn read_slice(file: &File, start: u64, end: u64) -> Result<Vec<u8>, NodeError> {
    let read = |e: wasm_bindgen::JsValue| NodeError::ReadFile(js_error(&e));
    let blob = file.slice_with_f64_and_f64(start as f64, end as f64).map_err(read)?;
    let buf = JsFuture::from(blob.array_buffer()).await.map_err(read)?;
    Ok(Uint8Array::new(&buf).to_vec())
}
