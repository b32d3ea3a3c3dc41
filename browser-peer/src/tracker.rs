//! The websocket link to the tracker: connect, reconnect with jittered backoff
//! ([`swarm_core::peer::backoff::Backoff`]), heartbeat, JSON in/out.
//!
//! A node that goes silent without closing (its host dropped off the network, its process
//! stopped) is left once it let a heartbeat go unanswered for
//! [`swarm_core::peer::config::TRACKER_SILENT_MS`] ([`swarm_core::peer::liveness`]): the
//! next attempt goes to the next node.
//!
//! [`TrackerLink`] owns the socket and nothing else; what the messages mean is the peer
//! core's business (`swarm_core::peer`, driven by `node`), which gets [`TrackerEvent`]s. On every
//! (re)connect the core says hello, announces the full inventory and re-sends its unanswered
//! requests; messages sent while the socket is down are dropped (the core keeps what matters).
//!
//! Events are only ever delivered from socket or timer callbacks, never from [`TrackerLink::send`].
//!
//! Failover (a tracker cluster): the link keeps the nodes each `welcome` names
//! ([`TrackerLink::learn`]); a dropped session reconnects to its node, and an attempt that
//! fails moves on to the next node ([`crate::failover::next_url`]).

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo::timers::callback::{Interval, Timeout};
use js_sys::{ArrayBuffer, Uint8Array};
use swarm_core::peer::backoff::Backoff;
use swarm_core::peer::config::HEARTBEAT_MS;
use swarm_core::peer::liveness::{Beat, TrackerLiveness};
use swarm_core::peer::trackers::TrackerList;
use swarm_core::relay::RelayFrame;
use swarm_core::{ClientMsg, ServerMsg};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, MessageEvent, WebSocket};

#[derive(Debug, Clone, PartialEq)]
pub enum TrackerEvent {
    /// The socket is open: send `Hello` now.
    Open,
    /// A message from the tracker.
    Message(ServerMsg),
    /// A relayed chunk-protocol message from another peer (binary frame).
    Relay(RelayFrame),
    /// The socket closed (or never opened); the next attempt is in `retry_ms`.
    Closed { retry_ms: u32 },
}

type Handler = Rc<dyn Fn(TrackerEvent)>;

struct Inner {
    /// The nodes to connect to, and the one in use.
    trackers: TrackerList,
    /// The page's protocol (`https:` pages reach `wss://` nodes only).
    protocol: String,
    handler: Handler,
    ws: Option<WebSocket>,
    open: bool,
    /// Whether the current socket's session was welcomed.
    welcomed: bool,
    /// Counts sockets, so events of an old one are ignored.
    generation: u32,
    backoff: Backoff,
    callbacks: Vec<Closure<dyn FnMut(JsValue)>>,
    retry: Option<Timeout>,
    heartbeat: Option<Interval>,
    /// Whether the current socket's node still answers.
    liveness: TrackerLiveness,
}

/// A self-healing websocket to the tracker.
#[derive(Clone)]
pub struct TrackerLink {
    inner: Rc<RefCell<Inner>>,
}

impl TrackerLink {
    /// Starts connecting to the first of `trackers` (the page's own origin, e.g.
    /// `ws://host/ws`), from a page loaded with `protocol` (`"https:"`, `"http:"`).
    pub fn connect(trackers: TrackerList, protocol: String, handler: Handler) -> Self {
        let inner = Rc::new(RefCell::new(Inner {
            trackers,
            protocol,
            handler,
            ws: None,
            open: false,
            welcomed: false,
            generation: 0,
            backoff: Backoff::default(),
            callbacks: Vec::new(),
            retry: None,
            heartbeat: None,
            liveness: TrackerLiveness::default(),
        }));
        let weak = Rc::downgrade(&inner);
        inner.borrow_mut().heartbeat = Some(Interval::new(HEARTBEAT_MS as u32, move || {
            let Some(rc) = weak.upgrade() else { return };
            let silent = {
                let mut inner = rc.borrow_mut();
                if !inner.open {
                    return;
                }
                match inner.liveness.beat(js_sys::Date::now() as u64) {
                    Beat::Send => {
                        if let Some(ws) = &inner.ws {
                            let _ = ws.send_with_str(&ClientMsg::Heartbeat.to_json());
                        }
                        None
                    }
                    Beat::Silent => {
                        let url = inner.trackers.current().to_string();
                        gloo::console::warn!(format!("the tracker at {url} went silent: moving on"));
                        // Not back to the same node first, as after a close.
                        inner.welcomed = false;
                        Some(inner.generation)
                    }
                }
            };
            if let Some(generation) = silent {
                schedule_retry(&rc, generation);
            }
        }));
        open_socket(&inner);
        Self { inner }
    }

    pub fn is_open(&self) -> bool {
        self.inner.borrow().open
    }

    /// The tracker node of the current (or next) socket.
    pub fn url(&self) -> String {
        self.inner.borrow().trackers.current().to_string()
    }

    /// Keeps the nodes a `welcome` named (those this page can reach) to fail over to; returns
    /// how many nodes the link knows now.
    pub fn learn(&self, trackers: &[String]) -> usize {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let protocol = inner.protocol.as_str();
        inner.trackers.learn(trackers, |u| crate::failover::reachable_from(protocol, u));
        inner.trackers.len()
    }

    /// Sends a message if the socket is open; returns whether it went out.
    pub fn send(&self, msg: &ClientMsg) -> bool {
        let inner = self.inner.borrow();
        match &inner.ws {
            Some(ws) if inner.open => ws.send_with_str(&msg.to_json()).is_ok(),
            _ => false,
        }
    }

    /// Sends a relay frame (binary) if the socket is open; returns whether it went out.
    pub fn send_relay(&self, frame: &RelayFrame) -> bool {
        let Ok(bytes) = frame.encode() else { return false };
        let inner = self.inner.borrow();
        match &inner.ws {
            Some(ws) if inner.open => ws.send_with_u8_array(&bytes).is_ok(),
            _ => false,
        }
    }

    /// Bytes queued in the socket, not yet sent.
    pub fn buffered(&self) -> u32 {
        self.inner.borrow().ws.as_ref().map(|ws| ws.buffered_amount()).unwrap_or(0)
    }
}

fn open_socket(rc: &Rc<RefCell<Inner>>) {
    let mut inner = rc.borrow_mut();
    inner.generation += 1;
    let generation = inner.generation;
    inner.welcomed = false;
    let ws = match WebSocket::new(inner.trackers.current()) {
        Ok(ws) => ws,
        Err(_) => {
            drop(inner);
            schedule_retry(rc, generation);
            return;
        }
    };
    let weak = Rc::downgrade(rc);
    let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        let Some(rc) = current(&weak, generation) else {
            return;
        };
        {
            let mut inner = rc.borrow_mut();
            inner.open = true;
            inner.liveness = TrackerLiveness::default();
        }
        let handler = rc.borrow().handler.clone();
        handler(TrackerEvent::Open);
    });
    let weak = Rc::downgrade(rc);
    let on_message = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
        let Some(rc) = current(&weak, generation) else {
            return;
        };
        rc.borrow_mut().liveness.heard();
        let ev: MessageEvent = ev.unchecked_into();
        let data = ev.data();
        if let Some(buf) = data.dyn_ref::<ArrayBuffer>() {
            match RelayFrame::decode(&Uint8Array::new(buf).to_vec()) {
                Ok(frame) => {
                    let handler = rc.borrow().handler.clone();
                    handler(TrackerEvent::Relay(frame));
                }
                Err(e) => gloo::console::warn!(format!("bad relay frame: {e}")),
            }
            return;
        }
        let Some(text) = data.as_string() else {
            return;
        };
        match serde_json::from_str::<ServerMsg>(&text) {
            Ok(msg) => {
                if matches!(msg, ServerMsg::Welcome { .. }) {
                    let mut inner = rc.borrow_mut();
                    inner.backoff.reset();
                    inner.welcomed = true;
                }
                let handler = rc.borrow().handler.clone();
                handler(TrackerEvent::Message(msg));
            }
            Err(e) => gloo::console::warn!(format!("tracker sent an unknown message: {e}")),
        }
    });
    let weak = Rc::downgrade(rc);
    let on_close = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        let Some(rc) = current(&weak, generation) else {
            return;
        };
        schedule_retry(&rc, generation);
    });
    ws.set_binary_type(BinaryType::Arraybuffer);
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    // Old callbacks are dropped here; their socket's handlers were cleared in schedule_retry.
    inner.callbacks = vec![on_open, on_message, on_close];
    inner.ws = Some(ws);
}

/// The link, if `generation` is still its current socket.
fn current(weak: &Weak<RefCell<Inner>>, generation: u32) -> Option<Rc<RefCell<Inner>>> {
    let rc = weak.upgrade()?;
    let ok = rc.borrow().generation == generation;
    ok.then_some(rc)
}

fn schedule_retry(rc: &Rc<RefCell<Inner>>, generation: u32) {
    let retry_ms = {
        let mut inner = rc.borrow_mut();
        if inner.generation != generation || inner.retry.is_some() {
            return;
        }
        inner.open = false;
        // The next attempt: the same node after a welcomed session, else the next node.
        let welcomed = std::mem::take(&mut inner.welcomed);
        let next = crate::failover::next_url(&mut inner.trackers, welcomed).to_string();
        if !welcomed && inner.trackers.len() > 1 {
            gloo::console::info!(format!("tracker unreachable: trying {next}"));
        }
        if let Some(ws) = inner.ws.take() {
            ws.set_onopen(None);
            ws.set_onmessage(None);
            ws.set_onclose(None);
            let _ = ws.close();
        }
        // 53 random bits (all a JS number holds) spread the reconnects of many tabs.
        let random = (js_sys::Math::random() * (1u64 << 53) as f64) as u64;
        let retry_ms = inner.backoff.next_delay_ms(random).min(u32::MAX as u64) as u32;
        let weak = Rc::downgrade(rc);
        inner.retry = Some(Timeout::new(retry_ms, move || {
            if let Some(rc) = weak.upgrade() {
                rc.borrow_mut().retry = None;
                open_socket(&rc);
            }
        }));
        retry_ms
    };
    let handler = rc.borrow().handler.clone();
    handler(TrackerEvent::Closed { retry_ms });
}
