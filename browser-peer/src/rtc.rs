//! One WebRTC connection to another peer, through web-sys: an `RTCPeerConnection` with one
//! ordered, reliable data channel named `chunks` carrying binary messages.
//!
//! The offerer (the downloader) creates the channel; the answerer (the holder) receives it in
//! `ondatachannel`. Signalling goes out as [`RtcEvent::Signal`] (the driver relays it through
//! the tracker) and comes in through [`RtcConn::on_signal`]; ICE candidates trickle both ways
//! and are queued until the remote description is set (remote lines are normalised by
//! [`normalize_candidate`]: str0m's `candidate:… typ srflx raddr … rport …` without a mid is
//! taken as the first m-line's).
//!
//! Every connection is created with the ICE servers the tracker sent in its `Welcome` (its own
//! STUN service, maybe TURN), so the tab gathers server-reflexive (and relayed) candidates and
//! can cross NATs. Once the channel is open the connection learns its path from `getStats()`
//! ([`RtcConn::refresh_path`], [`crate::paths::path_from_stats`]), reports it as
//! [`RtcEvent::Path`] and counts the bytes it receives under that path
//! ([`ByteCounters::by_path`]; bytes that arrive before the path is known are added once it is).
//!
//! Sending is flow-controlled: messages wait in an outbox while the channel's
//! `bufferedAmount` is above [`HIGH_WATER`] and resume on `bufferedamountlow` (set to
//! [`LOW_WATER`]). Measured between two tabs' connections on the project's 2-core machines:
//! 64 KiB messages with these marks (4 MiB / 1 MiB) ran at about 30 MB/s, CPU-bound, and a
//! higher high-water mark did not help. The driver learns which messages have left the
//! channel's buffer for the network ([`RtcConn::take_flushed`], and [`RtcEvent::Drained`] when
//! the buffer ran low): the peer core paces serving by what is still queued, outbox and
//! `bufferedAmount` together.
//!
//! Events are always delivered from a JS callback, never synchronously from a method call, so
//! the driver may hold its own state borrowed while it calls into a connection.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use gloo::timers::callback::Timeout;
use js_sys::{ArrayBuffer, Reflect, Uint8Array};
use swarm_core::wire::{sdp_candidate_count, MAX_REMOTE_CANDIDATES};
use swarm_core::wire::{IceServer, LinkPath};
use swarm_core::Signal;
use thiserror::Error;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit, RtcDataChannelState,
    RtcDataChannelType, RtcIceCandidateInit, RtcIceConnectionState, RtcPeerConnection, RtcPeerConnectionIceEvent,
    RtcPeerConnectionState, RtcSdpType, RtcSessionDescriptionInit,
};

use crate::paths::{describe_selected_pair, normalize_candidate, path_from_stats, PathCounters, StatsEntry};

/// Stop sending above this many buffered bytes.
pub const HIGH_WATER: u32 = 4 * 1024 * 1024;
/// Resume sending when the buffer drains to this.
pub const LOW_WATER: u32 = 1024 * 1024;
/// A connection whose channel is not open by then is given up.
pub const OPEN_TIMEOUT_MS: u32 = 20_000;
/// The data channel's label.
pub const LABEL: &str = "chunks";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtcError {
    #[error("cannot create RTCPeerConnection: {0}")]
    Create(String),
    /// A step of the offer/answer exchange the browser refused.
    #[error("{step}: {message}")]
    Negotiate { step: &'static str, message: String },
    #[error("description without sdp")]
    NoSdp,
}

/// The browser refused `step` (a rejected promise or a thrown exception).
fn refused(step: &'static str) -> impl Fn(JsValue) -> RtcError {
    move |e| RtcError::Negotiate { step, message: js_error(&e) }
}

/// Which side of the handshake this connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Offerer,
    Answerer,
}

/// What a connection reports to its driver.
#[derive(Debug, Clone)]
pub enum RtcEvent {
    /// Relay this to the remote peer through the tracker.
    Signal(Signal),
    /// The data channel is open: messages may flow.
    Open,
    /// A binary message arrived (left in JS memory: see `crate::js_chunk`).
    Message(Uint8Array),
    /// The channel's path became known or changed (from the selected ICE candidate pair).
    Path(LinkPath),
    /// The channel's buffer ran low: [`RtcConn::take_flushed`] has news.
    Drained,
    /// The connection is over (reported once).
    Closed(String),
}

/// Bytes moved over all data channels, for the page's counters.
#[derive(Debug, Default)]
pub struct ByteCounters {
    pub received: Cell<u64>,
    pub sent: Cell<u64>,
    /// Received bytes by the path of the channel they came on.
    pub by_path: PathCounters,
}

type Handler = Rc<dyn Fn(RtcEvent)>;
/// A JS event callback kept alive as long as the connection.
type JsCallback = Closure<dyn FnMut(JsValue)>;

struct Inner {
    role: Role,
    pc: RtcPeerConnection,
    dc: RefCell<Option<RtcDataChannel>>,
    outbox: RefCell<VecDeque<Vec<u8>>>,
    /// Lengths of messages handed to the channel and perhaps still in its `bufferedAmount`.
    in_buffer: RefCell<VecDeque<usize>>,
    /// Bytes handed to the channel, and bytes of them known to have left it, since the start.
    handed: Cell<u64>,
    left: Cell<u64>,
    /// Remote candidates that arrived before the remote description.
    early_candidates: RefCell<Vec<(String, Option<String>)>>,
    /// Remote candidates taken so far (at most [`MAX_REMOTE_CANDIDATES`]).
    candidates_taken: Cell<usize>,
    remote_set: Cell<bool>,
    open: Cell<bool>,
    closed: Cell<bool>,
    handler: Handler,
    counters: Rc<ByteCounters>,
    /// The channel's path, once `getStats()` told it.
    path: Cell<Option<LinkPath>>,
    /// Bytes received before the path was known (counted under it when it is).
    unattributed: Cell<u64>,
    /// A `getStats()` is under way.
    probing: Cell<bool>,
    callbacks: RefCell<Vec<JsCallback>>,
    timeout: RefCell<Option<Timeout>>,
}

/// A handle to one connection; cheap to clone.
#[derive(Clone)]
pub struct RtcConn {
    inner: Rc<Inner>,
}

impl RtcConn {
    /// Starts a connection as the offerer: creates the channel and the offer.
    pub fn offer(ice: &[IceServer], counters: Rc<ByteCounters>, handler: Handler) -> Result<Self, RtcError> {
        let conn = Self::new(Role::Offerer, ice, counters, handler)?;
        let init = RtcDataChannelInit::new();
        init.set_ordered(true);
        let dc = conn.inner.pc.create_data_channel_with_data_channel_dict(LABEL, &init);
        wire_channel(&conn.inner, dc);
        let weak = Rc::downgrade(&conn.inner);
        spawn_local(async move {
            let Some(inner) = weak.upgrade() else { return };
            match make_offer(&inner.pc).await {
                Ok(sdp) => inner.emit(RtcEvent::Signal(Signal::Offer { sdp })),
                Err(e) => inner.fail(format!("offer failed: {e}")),
            }
        });
        Ok(conn)
    }

    /// Answers a remote offer; the channel arrives through `ondatachannel`.
    pub fn answer(
        sdp: String,
        ice: &[IceServer],
        counters: Rc<ByteCounters>,
        handler: Handler,
    ) -> Result<Self, RtcError> {
        let conn = Self::new(Role::Answerer, ice, counters, handler)?;
        conn.inner.candidates_taken.set(sdp_candidate_count(&sdp));
        let weak = Rc::downgrade(&conn.inner);
        let on_channel = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
            let Some(inner) = weak.upgrade() else { return };
            let ev: RtcDataChannelEvent = ev.unchecked_into();
            let dc = ev.channel();
            if dc.label() == LABEL && inner.dc.borrow().is_none() {
                wire_channel(&inner, dc);
            }
        });
        conn.inner.pc.set_ondatachannel(Some(on_channel.as_ref().unchecked_ref()));
        conn.inner.callbacks.borrow_mut().push(on_channel);
        let weak = Rc::downgrade(&conn.inner);
        spawn_local(async move {
            let Some(inner) = weak.upgrade() else { return };
            match make_answer(&inner, sdp).await {
                Ok(sdp) => inner.emit(RtcEvent::Signal(Signal::Answer { sdp })),
                Err(e) => {
                    inner.emit(RtcEvent::Signal(Signal::Close { reason: format!("cannot answer: {e}") }));
                    inner.fail(format!("answer failed: {e}"));
                }
            }
        });
        Ok(conn)
    }

    fn new(role: Role, ice: &[IceServer], counters: Rc<ByteCounters>, handler: Handler) -> Result<Self, RtcError> {
        let cfg = RtcConfiguration::new();
        cfg.set_ice_servers(&ice_servers_js(ice));
        let pc = match RtcPeerConnection::new_with_configuration(&cfg) {
            Ok(pc) => pc,
            Err(e) if !ice.is_empty() => {
                // A server the browser refuses (a bad URL, TURN without credentials) must not
                // cost the tab WebRTC: host candidates still work on a LAN.
                gloo::console::warn!(format!("ICE servers refused ({}): connecting without them", js_error(&e)));
                let cfg = RtcConfiguration::new();
                RtcPeerConnection::new_with_configuration(&cfg).map_err(|e| RtcError::Create(js_error(&e)))?
            }
            Err(e) => return Err(RtcError::Create(js_error(&e))),
        };
        let inner = Rc::new(Inner {
            role,
            pc,
            dc: RefCell::new(None),
            outbox: RefCell::new(VecDeque::new()),
            in_buffer: RefCell::new(VecDeque::new()),
            handed: Cell::new(0),
            left: Cell::new(0),
            early_candidates: RefCell::new(Vec::new()),
            candidates_taken: Cell::new(0),
            remote_set: Cell::new(false),
            open: Cell::new(false),
            closed: Cell::new(false),
            handler,
            counters,
            path: Cell::new(None),
            unattributed: Cell::new(0),
            probing: Cell::new(false),
            callbacks: RefCell::new(Vec::new()),
            timeout: RefCell::new(None),
        });
        let weak = Rc::downgrade(&inner);
        let on_ice = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
            let Some(inner) = weak.upgrade() else { return };
            let ev: RtcPeerConnectionIceEvent = ev.unchecked_into();
            if let Some(c) = ev.candidate() {
                let candidate = c.candidate();
                if !candidate.is_empty() {
                    inner.emit(RtcEvent::Signal(Signal::Candidate { candidate, mid: c.sdp_mid() }));
                }
            }
        });
        inner.pc.set_onicecandidate(Some(on_ice.as_ref().unchecked_ref()));
        let weak = Rc::downgrade(&inner);
        let on_state = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            let Some(inner) = weak.upgrade() else { return };
            match inner.pc.connection_state() {
                RtcPeerConnectionState::Failed => inner.fail("ICE failed".into()),
                RtcPeerConnectionState::Closed => inner.fail("connection closed".into()),
                _ => {}
            }
        });
        inner.pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        inner.callbacks.borrow_mut().extend([on_ice, on_state]);
        let weak = Rc::downgrade(&inner);
        *inner.timeout.borrow_mut() = Some(Timeout::new(OPEN_TIMEOUT_MS, move || {
            if let Some(inner) = weak.upgrade() {
                if !inner.open.get() {
                    inner.fail("data channel did not open in time".into());
                }
            }
        }));
        Ok(Self { inner })
    }

    pub fn role(&self) -> Role {
        self.inner.role
    }

    pub fn is_open(&self) -> bool {
        self.inner.open.get()
    }

    /// Whether ICE found a working candidate pair (the channel may still be opening).
    pub fn ice_connected(&self) -> bool {
        matches!(
            self.inner.pc.ice_connection_state(),
            RtcIceConnectionState::Connected | RtcIceConnectionState::Completed
        )
    }

    /// The channel's path, once known (see [`RtcConn::refresh_path`]).
    pub fn path(&self) -> Option<LinkPath> {
        self.inner.path.get()
    }

    /// Reads the connection's stats and updates its path; reports [`RtcEvent::Path`] (from a
    /// task) when it changed. Does nothing before the channel is open or while a read is
    /// under way.
    pub fn refresh_path(&self) {
        probe_path(&self.inner);
    }

    /// Applies a signal relayed from the remote peer.
    pub fn on_signal(&self, signal: Signal) {
        let inner = &self.inner;
        match signal {
            Signal::Answer { sdp } if inner.role == Role::Offerer && !inner.remote_set.get() => {
                let count = sdp_candidate_count(&sdp);
                if count > MAX_REMOTE_CANDIDATES {
                    let weak = Rc::downgrade(inner);
                    spawn_local(async move {
                        if let Some(inner) = weak.upgrade() {
                            inner.fail(format!("the answer has {count} candidates (at most {MAX_REMOTE_CANDIDATES})"));
                        }
                    });
                    return;
                }
                inner.candidates_taken.set(count);
                let weak = Rc::downgrade(inner);
                spawn_local(async move {
                    let Some(inner) = weak.upgrade() else { return };
                    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
                    desc.set_sdp(&sdp);
                    match JsFuture::from(inner.pc.set_remote_description(&desc)).await {
                        Ok(_) => apply_early_candidates(&inner),
                        Err(e) => inner.fail(format!("bad answer: {}", js_error(&e))),
                    }
                });
            }
            Signal::Candidate { candidate, mid } => {
                let Some(candidate) = normalize_candidate(&candidate) else {
                    gloo::console::warn!(format!("ignored a malformed ICE candidate: {candidate:?}"));
                    return;
                };
                if inner.candidates_taken.get() >= MAX_REMOTE_CANDIDATES {
                    gloo::console::warn!(format!("ignored an ICE candidate beyond {MAX_REMOTE_CANDIDATES}"));
                    return;
                }
                inner.candidates_taken.set(inner.candidates_taken.get() + 1);
                if inner.remote_set.get() {
                    add_candidate(inner, candidate, mid);
                } else {
                    inner.early_candidates.borrow_mut().push((candidate, mid));
                }
            }
            Signal::Gone => self.on_signal(Signal::Close { reason: "the peer is not connected".into() }),
            Signal::Close { reason } => {
                let weak = Rc::downgrade(inner);
                spawn_local(async move {
                    if let Some(inner) = weak.upgrade() {
                        inner.fail(format!("remote closed: {reason}"));
                    }
                });
            }
            Signal::Offer { .. } | Signal::Answer { .. } => {} // renegotiation is not supported
        }
    }

    /// Queues a binary message; it leaves as soon as the channel's buffer has room.
    pub fn send(&self, bytes: Vec<u8>) {
        if self.inner.closed.get() {
            return;
        }
        self.inner.outbox.borrow_mut().push_back(bytes);
        pump(&self.inner);
    }

    /// Lengths of the messages that left the channel's buffer (for the network) since the last
    /// call, in order (nothing once closed: the core forgets a closed link's queue).
    pub fn take_flushed(&self) -> Vec<usize> {
        let inner = &self.inner;
        let mut done = Vec::new();
        let mut in_buffer = inner.in_buffer.borrow_mut();
        let buffered = inner.dc.borrow().as_ref().map_or(0, |dc| dc.buffered_amount() as u64);
        let gone = inner.handed.get().saturating_sub(buffered);
        while let Some(&n) = in_buffer.front() {
            if inner.left.get() + n as u64 > gone {
                break;
            }
            inner.left.set(inner.left.get() + n as u64);
            done.push(n);
            in_buffer.pop_front();
        }
        done
    }

    /// Messages still waiting in the outbox.
    pub fn queued(&self) -> usize {
        self.inner.outbox.borrow().len()
    }

    /// Closes the connection without reporting `Closed` (the driver asked for it).
    pub fn close(&self) {
        let inner = &self.inner;
        if inner.closed.replace(true) {
            return;
        }
        shut(inner);
    }
}

impl Inner {
    fn emit(&self, ev: RtcEvent) {
        if !self.closed.get() {
            (self.handler)(ev);
        }
    }

    /// Ends the connection and reports it, once.
    fn fail(&self, reason: String) {
        if self.closed.replace(true) {
            return;
        }
        shut(self);
        (self.handler)(RtcEvent::Closed(reason));
    }
}

fn shut(inner: &Inner) {
    inner.timeout.borrow_mut().take();
    inner.outbox.borrow_mut().clear();
    inner.in_buffer.borrow_mut().clear();
    if let Some(dc) = inner.dc.borrow().as_ref() {
        dc.set_onopen(None);
        dc.set_onmessage(None);
        dc.set_onclose(None);
        dc.set_onbufferedamountlow(None);
        dc.close();
    }
    inner.pc.set_onicecandidate(None);
    inner.pc.set_onconnectionstatechange(None);
    inner.pc.set_ondatachannel(None);
    inner.pc.close();
}

/// Hooks up the data channel's events.
fn wire_channel(inner: &Rc<Inner>, dc: RtcDataChannel) {
    dc.set_binary_type(RtcDataChannelType::Arraybuffer);
    dc.set_buffered_amount_low_threshold(LOW_WATER);
    let weak = Rc::downgrade(inner);
    let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        let Some(inner) = weak.upgrade() else { return };
        if inner.open.replace(true) {
            // An answerer's channel can be open when it arrives and still fire `open`:
            // reported once.
            return;
        }
        inner.timeout.borrow_mut().take();
        inner.emit(RtcEvent::Open);
        pump(&inner);
        probe_path(&inner);
    });
    let weak = Rc::downgrade(inner);
    let on_message = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
        let Some(inner) = weak.upgrade() else { return };
        let ev: MessageEvent = ev.unchecked_into();
        if let Ok(buf) = ev.data().dyn_into::<ArrayBuffer>() {
            let bytes = Uint8Array::new(&buf);
            let n = bytes.length() as u64;
            let c = &inner.counters.received;
            c.set(c.get() + n);
            match inner.path.get() {
                Some(path) => inner.counters.by_path.add(path, n),
                None => inner.unattributed.set(inner.unattributed.get() + n),
            }
            inner.emit(RtcEvent::Message(bytes));
        }
    });
    let weak = Rc::downgrade(inner);
    let on_close = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        if let Some(inner) = weak.upgrade() {
            inner.fail("data channel closed".into());
        }
    });
    let weak: Weak<Inner> = Rc::downgrade(inner);
    let on_low = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        if let Some(inner) = weak.upgrade() {
            pump(&inner);
            inner.emit(RtcEvent::Drained);
        }
    });
    dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    dc.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
    inner.callbacks.borrow_mut().extend([on_open, on_message, on_close, on_low]);
    if dc.ready_state() == RtcDataChannelState::Open {
        // Already open (can happen for an answerer's channel): report it from a task.
        let weak = Rc::downgrade(inner);
        spawn_local(async move {
            if let Some(inner) = weak.upgrade() {
                if !inner.open.replace(true) {
                    inner.timeout.borrow_mut().take();
                    inner.emit(RtcEvent::Open);
                    pump(&inner);
                    probe_path(&inner);
                }
            }
        });
    }
    *inner.dc.borrow_mut() = Some(dc);
}

/// Reads the stats and updates the path (see [`RtcConn::refresh_path`]).
fn probe_path(inner: &Rc<Inner>) {
    if !inner.open.get() || inner.closed.get() || inner.probing.replace(true) {
        return;
    }
    let weak = Rc::downgrade(inner);
    let stats = inner.pc.get_stats();
    spawn_local(async move {
        let report = JsFuture::from(stats).await;
        let Some(inner) = weak.upgrade() else { return };
        inner.probing.set(false);
        let Ok(report) = report else { return };
        let entries = stats_entries(&report);
        let Some(path) = path_from_stats(&entries) else { return };
        if inner.path.replace(Some(path)) != Some(path) {
            let pair = describe_selected_pair(&entries).unwrap_or_default();
            gloo::console::log!(format!("data channel path: {} ({pair})", path.as_str()));
            let early = inner.unattributed.replace(0);
            inner.counters.by_path.add(path, early);
            inner.emit(RtcEvent::Path(path));
        }
    });
}

/// Sends queued messages while the channel's buffer is below the high-water mark.
fn pump(inner: &Rc<Inner>) {
    if !inner.open.get() || inner.closed.get() {
        return;
    }
    let dc = inner.dc.borrow();
    let Some(dc) = dc.as_ref() else { return };
    let mut outbox = inner.outbox.borrow_mut();
    while dc.buffered_amount() < HIGH_WATER {
        let Some(msg) = outbox.pop_front() else { break };
        if let Err(e) = dc.send_with_u8_array(&msg) {
            let reason = format!("send failed: {}", js_error(&e));
            let weak = Rc::downgrade(inner);
            spawn_local(async move {
                if let Some(inner) = weak.upgrade() {
                    inner.fail(reason);
                }
            });
            return;
        }
        let c = &inner.counters.sent;
        c.set(c.get() + msg.len() as u64);
        inner.handed.set(inner.handed.get() + msg.len() as u64);
        inner.in_buffer.borrow_mut().push_back(msg.len());
    }
}

async fn make_offer(pc: &RtcPeerConnection) -> Result<String, RtcError> {
    let offer = JsFuture::from(pc.create_offer()).await.map_err(refused("createOffer"))?;
    let sdp = sdp_of(&offer)?;
    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
    desc.set_sdp(&sdp);
    JsFuture::from(pc.set_local_description(&desc)).await.map_err(refused("setLocalDescription"))?;
    Ok(sdp)
}

async fn make_answer(inner: &Rc<Inner>, offer: String) -> Result<String, RtcError> {
    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
    desc.set_sdp(&offer);
    JsFuture::from(inner.pc.set_remote_description(&desc)).await.map_err(refused("setRemoteDescription"))?;
    apply_early_candidates(inner);
    let answer = JsFuture::from(inner.pc.create_answer()).await.map_err(refused("createAnswer"))?;
    let sdp = sdp_of(&answer)?;
    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
    desc.set_sdp(&sdp);
    JsFuture::from(inner.pc.set_local_description(&desc)).await.map_err(refused("setLocalDescription"))?;
    Ok(sdp)
}

fn sdp_of(desc: &JsValue) -> Result<String, RtcError> {
    Reflect::get(desc, &JsValue::from_str("sdp")).ok().and_then(|v| v.as_string()).ok_or(RtcError::NoSdp)
}

fn apply_early_candidates(inner: &Rc<Inner>) {
    inner.remote_set.set(true);
    let early = std::mem::take(&mut *inner.early_candidates.borrow_mut());
    for (candidate, mid) in early {
        add_candidate(inner, candidate, mid);
    }
}

/// Adds a remote candidate (one without a mid belongs to the only m-line, the data channel's);
/// a candidate the browser refuses is logged and otherwise ignored (it just does not help).
fn add_candidate(inner: &Rc<Inner>, candidate: String, mid: Option<String>) {
    let init = RtcIceCandidateInit::new(&candidate);
    init.set_sdp_mid(mid.as_deref());
    if mid.is_none() {
        init.set_sdp_m_line_index(Some(0));
    }
    let promise = inner.pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
    spawn_local(async move {
        if let Err(e) = JsFuture::from(promise).await {
            gloo::console::warn!(format!("ICE candidate {candidate:?} refused: {}", js_error(&e)));
        }
    });
}

/// `RTCConfiguration.iceServers` from the tracker's list (`urls`, `username`, `credential`).
fn ice_servers_js(ice: &[IceServer]) -> JsValue {
    let list = js_sys::Array::new();
    for server in ice {
        let entry = js_sys::Object::new();
        let urls: js_sys::Array = server.urls.iter().map(|u| JsValue::from_str(u)).collect();
        let _ = Reflect::set(&entry, &"urls".into(), &urls);
        if let Some(u) = &server.username {
            let _ = Reflect::set(&entry, &"username".into(), &u.into());
        }
        if let Some(c) = &server.credential {
            let _ = Reflect::set(&entry, &"credential".into(), &c.into());
        }
        list.push(&entry);
    }
    list.into()
}

/// The entries of an `RTCStatsReport` (a maplike of plain objects) that say which candidate
/// pair is in use.
fn stats_entries(report: &JsValue) -> Vec<StatsEntry> {
    let text = |o: &JsValue, k: &str| Reflect::get(o, &k.into()).ok().and_then(|v| v.as_string());
    let flag = |o: &JsValue, k: &str| Reflect::get(o, &k.into()).ok().and_then(|v| v.as_bool()).unwrap_or(false);
    let mut out = Vec::new();
    let map: &js_sys::Map = report.unchecked_ref();
    map.for_each(&mut |value, _key| {
        let kind = text(&value, "type").unwrap_or_default();
        if !matches!(kind.as_str(), "transport" | "candidate-pair" | "local-candidate" | "remote-candidate") {
            return;
        }
        out.push(StatsEntry {
            id: text(&value, "id").unwrap_or_default(),
            selected_pair_id: text(&value, "selectedCandidatePairId"),
            local_candidate_id: text(&value, "localCandidateId"),
            remote_candidate_id: text(&value, "remoteCandidateId"),
            state: text(&value, "state"),
            nominated: flag(&value, "nominated"),
            selected: flag(&value, "selected"),
            candidate_type: text(&value, "candidateType"),
            address: text(&value, "address").or_else(|| text(&value, "ip")),
            port: Reflect::get(&value, &"port".into()).ok().and_then(|v| v.as_f64()).map(|p| p as u32),
            protocol: text(&value, "protocol"),
            kind,
        });
    });
    out
}

/// A readable message from a thrown JS value.
pub fn js_error(e: &JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    Reflect::get(e, &JsValue::from_str("message")).ok().and_then(|m| m.as_string()).unwrap_or_else(|| format!("{e:?}"))
}
