//! The peer itself: glue between the tracker link, the WebRTC connections, the chunk store,
//! the download scheduler and the page state. Components reach it through a context
//! ([`NodeHandle`], [`use_node`]) and only call its few entry points (`upload`, `download`);
//! everything it learns goes back to the page as [`Action`]s.
//!
//! All mutable state sits in one `RefCell`; the link and connections never call back
//! synchronously (see their docs), so handlers may hold the borrow while they send.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use gloo::events::EventListener;
use gloo::storage::{SessionStorage, Storage};
use gloo::timers::callback::Interval;
use js_sys::{Array, Uint8Array};
use swarm_core::chunk_proto::PeerMsg;
use swarm_core::wire::{ErrorCode, FileMeta, PROTOCOL_VERSION};
use swarm_core::{ChunkId, ClientMsg, FileId, ManifestBuilder, PeerId, PeerKind, ServerMsg, Signal, CHUNK_SIZE};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{Blob, BlobPropertyBag, File, Url};
use yew::prelude::*;

use crate::rtc::{js_error, ByteCounters, RtcConn, RtcEvent};
use crate::state::{Action, ConnStatus, Stats};
use crate::store::{ChunkStore, MemoryStore};
use crate::tracker::{TrackerEvent, TrackerLink};
use crate::transfer::{serve_request, Download, Step};

/// sessionStorage key of this tab's secret (a reload keeps the peer id).
pub const SECRET_KEY: &str = "pp-secret";
/// Most connections other peers may open to this tab at once.
pub const MAX_INBOUND: usize = 32;
/// How often the byte counters are pushed to the page.
pub const STATS_MS: u32 = 250;
/// How often downloads get the time (to notice stalled peers).
pub const TICK_MS: u32 = 1_000;
/// Least time between two progress updates of a download.
pub const PROGRESS_MS: f64 = 100.0;

/// One connection attempt: the remote peer and the offerer's connection number.
type ConnKey = (PeerId, u64);

struct Conn {
    rtc: RtcConn,
    /// For connections this tab opened to download: the file and the peer's slot.
    download: Option<(FileId, usize)>,
}

struct Run {
    dl: Download,
    meta: FileMeta,
    /// Slot -> connection.
    conns: HashMap<usize, ConnKey>,
    last_progress: f64,
}

enum Pending {
    Publish { upload: u32 },
    Locate { file: FileId },
}

struct State {
    link: Option<TrackerLink>,
    secret: String,
    me: Option<PeerId>,
    store: Box<dyn ChunkStore>,
    next_req: u32,
    next_upload: u32,
    /// Requests awaiting an answer, with the message (sent again after a reconnect).
    pending: HashMap<u32, (Pending, ClientMsg)>,
    conns: HashMap<ConnKey, Conn>,
    runs: HashMap<FileId, Run>,
    /// The object URL of the finished download shown on the page.
    object_url: Option<String>,
}

/// The running peer.
pub struct Node {
    weak: Weak<Node>,
    state: RefCell<State>,
    counters: Rc<ByteCounters>,
    dispatch: Callback<Action>,
    last_stats: Cell<Stats>,
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
    /// Starts the peer: connects to the tracker of this page's origin and follows `#/file/<id>`.
    pub fn start(dispatch: Callback<Action>) -> Rc<Node> {
        let node = Rc::new_cyclic(|weak| Node {
            weak: weak.clone(),
            state: RefCell::new(State {
                link: None,
                secret: load_secret(),
                me: None,
                store: Box::new(MemoryStore::new()),
                next_req: 1,
                next_upload: 1,
                pending: HashMap::new(),
                conns: HashMap::new(),
                runs: HashMap::new(),
                object_url: None,
            }),
            counters: Rc::new(ByteCounters::default()),
            dispatch,
            last_stats: Cell::new(Stats::default()),
            _timers: RefCell::new(Vec::new()),
            _listeners: RefCell::new(Vec::new()),
        });
        let weak = Rc::downgrade(&node);
        let link = TrackerLink::connect(
            tracker_url(),
            Rc::new(move |ev| {
                if let Some(node) = weak.upgrade() {
                    node.on_tracker(ev);
                }
            }),
        );
        node.state.borrow_mut().link = Some(link);
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
        let window = gloo::utils::window();
        node._listeners.borrow_mut().push(EventListener::new(&window, "hashchange", move |_| {
            if let Some(node) = weak.upgrade() {
                node.follow_hash();
            }
        }));
        node.follow_hash();
        node
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
        let st = self.state.borrow();
        self.push_stats_of(&st);
    }

    fn push_stats_of(&self, st: &State) {
        let stats = Stats {
            received: self.counters.received.get(),
            sent: self.counters.sent.get(),
            store_chunks: st.store.len(),
            store_bytes: st.store.bytes(),
            connections: st.conns.values().filter(|c| c.rtc.is_open()).count(),
        };
        if stats != self.last_stats.get() {
            self.last_stats.set(stats);
            self.dispatch(Action::Stats(stats));
        }
    }

    /// Gives every running download the time.
    fn tick(&self) {
        let now = js_sys::Date::now();
        let mut st = self.state.borrow_mut();
        let files: Vec<FileId> = st.runs.keys().copied().collect();
        for file in files {
            if let Some(run) = st.runs.get_mut(&file) {
                let steps = run.dl.tick(now);
                self.apply_steps(&mut st, file, steps);
            }
        }
    }

    // ----- tracker -----

    fn on_tracker(&self, ev: TrackerEvent) {
        match ev {
            TrackerEvent::Open => {
                let st = self.state.borrow();
                let Some(link) = st.link.clone() else { return };
                link.send(&ClientMsg::Hello {
                    version: PROTOCOL_VERSION,
                    kind: PeerKind::Browser,
                    secret: st.secret.clone(),
                });
                link.send(&ClientMsg::Have { chunks: st.store.ids(), full: true });
                // Requests whose answers the old socket may have lost go out again.
                let mut pending: Vec<(&u32, &ClientMsg)> = st.pending.iter().map(|(r, (_, m))| (r, m)).collect();
                pending.sort_by_key(|(r, _)| **r);
                for (_, msg) in pending {
                    link.send(msg);
                }
            }
            TrackerEvent::Closed { retry_ms } => self.dispatch(Action::Conn(ConnStatus::Disconnected { retry_ms })),
            TrackerEvent::Message(msg) => self.on_server_msg(msg),
        }
    }

    fn on_server_msg(&self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome { peer_id, .. } => {
                self.state.borrow_mut().me = Some(peer_id.clone());
                self.dispatch(Action::Welcomed(peer_id));
            }
            ServerMsg::Published { req, file } => {
                if let Some((Pending::Publish { upload }, _)) = self.state.borrow_mut().pending.remove(&req) {
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
                    self.start_run(file, meta, manifest, peers, holders);
                }
            }
            ServerMsg::SearchResults { .. } => {}
            // Replication orders: taken by browser peers in the self-healing work (issue 6).
            ServerMsg::Replicate { .. } | ServerMsg::Trim { .. } | ServerMsg::LeaveReady { .. } => {}
            ServerMsg::Signal { from, conn, signal } => self.on_signal(from, conn, signal),
            ServerMsg::Error { req, code, message } => {
                let pending = req.and_then(|r| self.state.borrow_mut().pending.remove(&r));
                match pending {
                    Some((Pending::Publish { upload }, _)) => {
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

    // ----- upload -----

    /// Chunks, hashes, stores and publishes a file, reading it one chunk at a time.
    pub fn upload(&self, file: File) {
        let Some(node) = self.weak.upgrade() else {
            return;
        };
        spawn_local(async move {
            let size = file.size() as u64;
            let name = file.name();
            let mime =
                Some(file.type_()).filter(|t| !t.is_empty()).unwrap_or_else(|| "application/octet-stream".into());
            let total = size.div_ceil(CHUNK_SIZE as u64) as usize;
            let id = {
                let mut st = node.state.borrow_mut();
                st.next_upload += 1;
                st.next_upload - 1
            };
            node.dispatch(Action::UploadStarted { id, name: name.clone(), size, chunks_total: total });
            let mut builder = ManifestBuilder::new(CHUNK_SIZE);
            let mut ids: Vec<ChunkId> = Vec::with_capacity(total);
            for i in 0..total {
                let start = i as u64 * CHUNK_SIZE as u64;
                let end = (start + CHUNK_SIZE as u64).min(size);
                let bytes = match read_slice(&file, start, end).await {
                    Ok(b) => b,
                    Err(e) => {
                        node.dispatch(Action::UploadFailed { id, error: format!("cannot read the file: {e}") });
                        return;
                    }
                };
                let chunk = builder.push(&bytes);
                node.state.borrow_mut().store.put(chunk, Rc::new(bytes));
                ids.push(chunk);
                node.dispatch(Action::UploadProgress { id, chunks_done: i + 1 });
            }
            let manifest = builder.finish();
            ids.sort();
            ids.dedup();
            let mut st = node.state.borrow_mut();
            node.send(&st, &ClientMsg::Have { chunks: ids, full: false });
            let meta = FileMeta { name, mime };
            node.request(&mut st, Pending::Publish { upload: id }, |req| ClientMsg::Publish { req, manifest, meta });
            drop(st);
            node.push_stats();
        });
    }

    // ----- download -----

    /// Starts downloading the file with this id (64 hex digits).
    pub fn download(&self, id: &str) {
        let file: FileId = match id.trim().parse() {
            Ok(f) => f,
            Err(_) => {
                self.dispatch(Action::DownloadFailed { file: None, error: "not a file id (64 hex digits)".into() });
                return;
            }
        };
        let mut st = self.state.borrow_mut();
        if st.runs.contains_key(&file) {
            return; // already running
        }
        if let Some(url) = st.object_url.take() {
            let _ = Url::revoke_object_url(&url);
        }
        self.request(&mut st, Pending::Locate { file }, |req| ClientMsg::Locate { req, file });
        drop(st);
        self.dispatch(Action::DownloadStarted { file, now: js_sys::Date::now() });
    }

    fn start_run(
        &self,
        file: FileId,
        meta: FileMeta,
        manifest: swarm_core::Manifest,
        peers: Vec<PeerId>,
        holders: Vec<Vec<u32>>,
    ) {
        let mut st = self.state.borrow_mut();
        let dl = {
            let store = &st.store;
            Download::new(file, manifest, peers, holders, st.me.as_ref(), |c| store.has(c))
        };
        let mut dl = match dl {
            Ok(dl) => dl,
            Err(e) => {
                drop(st);
                self.fail_download(file, e.to_string());
                return;
            }
        };
        self.dispatch(Action::DownloadLocated {
            file,
            name: meta.name.clone(),
            size: dl.manifest().size,
            chunks_total: dl.total(),
        });
        let mut steps = dl.tick(js_sys::Date::now());
        steps.extend(dl.start());
        st.runs.insert(file, Run { dl, meta, conns: HashMap::new(), last_progress: 0.0 });
        self.apply_steps(&mut st, file, steps);
    }

    /// Carries out what the scheduler decided.
    fn apply_steps(&self, st: &mut State, file: FileId, steps: Vec<Step>) {
        let mut stored_any = false;
        for step in steps {
            match step {
                Step::Connect { slot } => self.connect(st, file, slot),
                Step::Disconnect { slot } => {
                    let key = st.runs.get_mut(&file).and_then(|r| r.conns.remove(&slot));
                    if let Some(conn) = key.and_then(|k| st.conns.remove(&k)) {
                        gloo::console::warn!(format!("peer slot {slot} stalled; dropping it"));
                        conn.rtc.close();
                    }
                }
                Step::Send { slot, bytes } => {
                    let key = st.runs.get(&file).and_then(|r| r.conns.get(&slot)).cloned();
                    if let Some(conn) = key.and_then(|k| st.conns.get(&k)) {
                        conn.rtc.send(bytes);
                    }
                }
                Step::Stored { chunk, bytes, .. } => {
                    // The assembler verified the SHA-256 before handing the bytes out.
                    if st.store.put(chunk, Rc::new(bytes)) {
                        self.send(st, &ClientMsg::Have { chunks: vec![chunk], full: false });
                    }
                    stored_any = true;
                }
                Step::Rejected { slot, index, reason } => {
                    gloo::console::warn!(format!("chunk {index} from peer slot {slot} refused: {reason}"));
                }
                Step::BadSource { slot, chunk } => {
                    if let Some(peer) = st.runs.get(&file).map(|r| r.dl.peer(slot).clone()) {
                        self.send(st, &ClientMsg::BadSource { peer, chunk });
                    }
                }
                Step::Complete => {
                    self.finish_run(st, file);
                    return;
                }
                Step::Failed(e) => {
                    self.end_run(st, file);
                    self.dispatch(Action::DownloadFailed { file: Some(file), error: e.to_string() });
                    return;
                }
            }
        }
        if stored_any {
            let now = js_sys::Date::now();
            if let Some(run) = st.runs.get_mut(&file) {
                if now - run.last_progress >= PROGRESS_MS {
                    run.last_progress = now;
                    self.dispatch(Action::DownloadProgress {
                        file,
                        chunks_done: run.dl.done(),
                        bytes_done: run.dl.bytes_done(),
                        peers: run.dl.active_peers(),
                        now,
                    });
                }
            }
        }
    }

    /// Opens a connection to a holder as the offerer.
    fn connect(&self, st: &mut State, file: FileId, slot: usize) {
        let Some(run) = st.runs.get_mut(&file) else {
            return;
        };
        let peer = run.dl.peer(slot).clone();
        let key: ConnKey = (peer, random_u64());
        let steps = match RtcConn::offer(self.counters.clone(), self.conn_handler(key.clone())) {
            Ok(rtc) => {
                run.conns.insert(slot, key.clone());
                st.conns.insert(key, Conn { rtc, download: Some((file, slot)) });
                return;
            }
            Err(e) => {
                gloo::console::error!(e.to_string());
                run.dl.peer_gone(slot)
            }
        };
        self.apply_steps(st, file, steps);
    }

    fn finish_run(&self, st: &mut State, file: FileId) {
        let Some(run) = st.runs.get(&file) else {
            return;
        };
        let name = run.meta.name.clone();
        let parts = Array::new();
        for c in &run.dl.manifest().chunks {
            match st.store.get(c) {
                Some(bytes) => {
                    parts.push(&Uint8Array::from(&bytes[..]));
                }
                None => {
                    self.end_run(st, file);
                    self.dispatch(Action::DownloadFailed {
                        file: Some(file),
                        error: "a chunk vanished from the store".into(),
                    });
                    return;
                }
            }
        }
        self.end_run(st, file);
        // The type is never the swarm's: a blob URL shares this page's origin, and a
        // peer-chosen `text/html` opened from it could run script here.
        let bag = BlobPropertyBag::new();
        bag.set_type("application/octet-stream");
        let url = Blob::new_with_u8_array_sequence_and_options(&parts, &bag)
            .and_then(|b| Url::create_object_url_with_blob(&b));
        match url {
            Ok(url) => {
                st.object_url = Some(url.clone());
                gloo::console::log!(format!("download of {name} done"));
                self.push_stats_of(st);
                self.dispatch(Action::DownloadDone { file, url, now: js_sys::Date::now() });
            }
            Err(e) => self.dispatch(Action::DownloadFailed { file: Some(file), error: js_error(&e) }),
        }
    }

    /// Forgets a download and closes the connections it opened.
    fn end_run(&self, st: &mut State, file: FileId) {
        if let Some(run) = st.runs.remove(&file) {
            for key in run.conns.values() {
                if let Some(conn) = st.conns.remove(key) {
                    conn.rtc.close();
                    self.send(
                        st,
                        &ClientMsg::Signal {
                            to: key.0.clone(),
                            conn: key.1,
                            signal: Signal::Close { reason: "done".into() },
                        },
                    );
                }
            }
        }
    }

    fn fail_download(&self, file: FileId, error: String) {
        let mut st = self.state.borrow_mut();
        self.end_run(&mut st, file);
        drop(st);
        self.dispatch(Action::DownloadFailed { file: Some(file), error });
    }

    // ----- connections -----

    fn conn_handler(&self, key: ConnKey) -> Rc<dyn Fn(RtcEvent)> {
        let weak = self.weak.clone();
        Rc::new(move |ev| {
            if let Some(node) = weak.upgrade() {
                node.on_conn_event(&key, ev);
            }
        })
    }

    fn on_signal(&self, from: PeerId, conn: u64, signal: Signal) {
        let key = (from, conn);
        let mut st = self.state.borrow_mut();
        if let Some(c) = st.conns.get(&key) {
            c.rtc.on_signal(signal);
            return;
        }
        let Signal::Offer { sdp } = signal else {
            return;
        }; // late signal of a finished attempt
        let inbound = st.conns.values().filter(|c| c.download.is_none()).count();
        if inbound >= MAX_INBOUND {
            let reason = "too many connections".to_string();
            self.send(&st, &ClientMsg::Signal { to: key.0, conn, signal: Signal::Close { reason } });
            return;
        }
        match RtcConn::answer(sdp, self.counters.clone(), self.conn_handler(key.clone())) {
            Ok(rtc) => {
                st.conns.insert(key, Conn { rtc, download: None });
            }
            Err(e) => {
                let reason = e.to_string();
                self.send(&st, &ClientMsg::Signal { to: key.0, conn, signal: Signal::Close { reason } });
            }
        }
    }

    fn on_conn_event(&self, key: &ConnKey, ev: RtcEvent) {
        let mut st = self.state.borrow_mut();
        let Some(download) = st.conns.get(key).map(|c| c.download) else {
            return;
        };
        match ev {
            RtcEvent::Signal(signal) => {
                self.send(&st, &ClientMsg::Signal { to: key.0.clone(), conn: key.1, signal });
            }
            RtcEvent::Open => {
                if let Some((file, slot)) = download {
                    if let Some(run) = st.runs.get_mut(&file) {
                        let steps = run.dl.peer_ready(slot);
                        self.apply_steps(&mut st, file, steps);
                    }
                }
            }
            RtcEvent::Message(bytes) => match PeerMsg::decode(&bytes) {
                Ok(PeerMsg::Request { req, chunk }) => {
                    let frames = serve_request(st.store.as_ref(), req, &chunk);
                    if let Some(conn) = st.conns.get(key) {
                        for f in frames {
                            conn.rtc.send(f);
                        }
                    }
                }
                Ok(msg) => {
                    if let Some((file, slot)) = download {
                        if let Some(run) = st.runs.get_mut(&file) {
                            let steps = run.dl.on_message(slot, msg);
                            self.apply_steps(&mut st, file, steps);
                        }
                    }
                }
                Err(e) => gloo::console::warn!(format!("bad message from {}: {e}", key.0.short())),
            },
            RtcEvent::Closed(reason) => {
                if let Some(conn) = st.conns.remove(key) {
                    // Dropped from a task, not inside the callback that reported the close.
                    spawn_local(async move { drop(conn) });
                }
                if let Some((file, slot)) = download {
                    gloo::console::log!(format!("connection to {} closed: {reason}", key.0.short()));
                    if let Some(run) = st.runs.get_mut(&file) {
                        run.conns.remove(&slot);
                        let steps = run.dl.peer_gone(slot);
                        self.apply_steps(&mut st, file, steps);
                    }
                }
            }
        }
    }
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
