//! One WebRTC connection to another peer, through web-sys: an `RTCPeerConnection` with one
//! ordered, reliable data channel named `chunks` carrying binary messages.
//!
//! The offerer (the downloader) creates the channel; the answerer (the holder) receives it in
//! `ondatachannel`. Signalling goes out as [`RtcEvent::Signal`] (the driver relays it through
//! the tracker) and comes in through [`RtcConn::on_signal`]; ICE candidates trickle both ways
//! and are queued until the remote description is set. No ICE servers: host candidates only.
//!
//! Sending is flow-controlled: messages wait in an outbox while the channel's
//! `bufferedAmount` is above [`HIGH_WATER`] and resume on `bufferedamountlow` (set to
//! [`LOW_WATER`]), as measured in shared/WEBRTC.md.
//!
//! Events are always delivered from a JS callback, never synchronously from a method call, so
//! the driver may hold its own state borrowed while it calls into a connection.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use gloo::timers::callback::Timeout;
use js_sys::{ArrayBuffer, Reflect, Uint8Array};
use swarm_core::Signal;
use thiserror::Error;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit, RtcDataChannelState,
    RtcDataChannelType, RtcIceCandidateInit, RtcPeerConnection, RtcPeerConnectionIceEvent, RtcPeerConnectionState,
    RtcSdpType, RtcSessionDescriptionInit,
};

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
    /// The connection is over (reported once).
    Closed(String),
}

/// Bytes moved over all data channels, for the page's counters.
#[derive(Debug, Default)]
pub struct ByteCounters {
    pub received: Cell<u64>,
    pub sent: Cell<u64>,
}

type Handler = Rc<dyn Fn(RtcEvent)>;
/// A JS event callback kept alive as long as the connection.
type JsCallback = Closure<dyn FnMut(JsValue)>;

struct Inner {
    role: Role,
    pc: RtcPeerConnection,
    dc: RefCell<Option<RtcDataChannel>>,
    outbox: RefCell<VecDeque<Vec<u8>>>,
    /// Remote candidates that arrived before the remote description.
    early_candidates: RefCell<Vec<(String, Option<String>)>>,
    remote_set: Cell<bool>,
    open: Cell<bool>,
    closed: Cell<bool>,
    handler: Handler,
    counters: Rc<ByteCounters>,
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
    pub fn offer(counters: Rc<ByteCounters>, handler: Handler) -> Result<Self, RtcError> {
        let conn = Self::new(Role::Offerer, counters, handler)?;
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
    pub fn answer(sdp: String, counters: Rc<ByteCounters>, handler: Handler) -> Result<Self, RtcError> {
        let conn = Self::new(Role::Answerer, counters, handler)?;
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

    fn new(role: Role, counters: Rc<ByteCounters>, handler: Handler) -> Result<Self, RtcError> {
        let cfg = RtcConfiguration::new();
        let pc = RtcPeerConnection::new_with_configuration(&cfg).map_err(|e| RtcError::Create(js_error(&e)))?;
        let inner = Rc::new(Inner {
            role,
            pc,
            dc: RefCell::new(None),
            outbox: RefCell::new(VecDeque::new()),
            early_candidates: RefCell::new(Vec::new()),
            remote_set: Cell::new(false),
            open: Cell::new(false),
            closed: Cell::new(false),
            handler,
            counters,
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

    /// Applies a signal relayed from the remote peer.
    pub fn on_signal(&self, signal: Signal) {
        let inner = &self.inner;
        match signal {
            Signal::Answer { sdp } if inner.role == Role::Offerer && !inner.remote_set.get() => {
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
        inner.open.set(true);
        inner.timeout.borrow_mut().take();
        inner.emit(RtcEvent::Open);
        pump(&inner);
    });
    let weak = Rc::downgrade(inner);
    let on_message = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
        let Some(inner) = weak.upgrade() else { return };
        let ev: MessageEvent = ev.unchecked_into();
        if let Ok(buf) = ev.data().dyn_into::<ArrayBuffer>() {
            let bytes = Uint8Array::new(&buf);
            let c = &inner.counters.received;
            c.set(c.get() + bytes.length() as u64);
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
                }
            }
        });
    }
    *inner.dc.borrow_mut() = Some(dc);
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
    }
}

async fn make_offer(pc: &RtcPeerConnection) -> Result<String, String> {
    let offer = JsFuture::from(pc.create_offer()).await.map_err(|e| js_error(&e))?;
    let sdp = sdp_of(&offer)?;
    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
    desc.set_sdp(&sdp);
    JsFuture::from(pc.set_local_description(&desc)).await.map_err(|e| js_error(&e))?;
    Ok(sdp)
}

async fn make_answer(inner: &Rc<Inner>, offer: String) -> Result<String, String> {
    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
    desc.set_sdp(&offer);
    JsFuture::from(inner.pc.set_remote_description(&desc)).await.map_err(|e| js_error(&e))?;
    apply_early_candidates(inner);
    let answer = JsFuture::from(inner.pc.create_answer()).await.map_err(|e| js_error(&e))?;
    let sdp = sdp_of(&answer)?;
    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
    desc.set_sdp(&sdp);
    JsFuture::from(inner.pc.set_local_description(&desc)).await.map_err(|e| js_error(&e))?;
    Ok(sdp)
}

fn sdp_of(desc: &JsValue) -> Result<String, String> {
    Reflect::get(desc, &JsValue::from_str("sdp"))
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| "description without sdp".to_string())
}

fn apply_early_candidates(inner: &Rc<Inner>) {
    inner.remote_set.set(true);
    let early = std::mem::take(&mut *inner.early_candidates.borrow_mut());
    for (candidate, mid) in early {
        add_candidate(inner, candidate, mid);
    }
}

/// Adds a remote candidate; failures are ignored (a bad candidate just does not help).
fn add_candidate(inner: &Rc<Inner>, candidate: String, mid: Option<String>) {
    let init = RtcIceCandidateInit::new(&candidate);
    init.set_sdp_mid(mid.as_deref());
    if mid.is_none() {
        init.set_sdp_m_line_index(Some(0));
    }
    let promise = inner.pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
    spawn_local(async move {
        let _ = JsFuture::from(promise).await;
    });
}

/// A readable message from a thrown JS value.
pub fn js_error(e: &JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    Reflect::get(e, &JsValue::from_str("message")).ok().and_then(|m| m.as_string()).unwrap_or_else(|| format!("{e:?}"))
}
