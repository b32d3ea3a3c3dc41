//! Serving: chunk requests from other peers, over the data channels they open to this tab or
//! through the tracker relay.

use super::*;

impl Node {
    // ----- relay -----

    pub(super) fn on_relay(&self, frame: RelayFrame) {
        let c = &self.relay_counters.received;
        c.set(c.get() + frame.payload.len() as u64);
        let mut st = self.state.borrow_mut();
        // Answers to this tab's requests: through the relay of one of its links (also after
        // the link moved to a data channel; they still find their run by `req`).
        let ours = st.out.get(&frame.peer).is_some_and(|l| l.relay == Some(frame.conn));
        self.counters.by_path.add(LinkPath::Relay, frame.payload.len() as u64);
        if ours {
            self.on_out_message(&mut st, &frame.peer, &Uint8Array::from(&frame.payload[..]));
            return;
        }
        drop(st);
        match PeerMsg::decode(&frame.payload) {
            Ok(PeerMsg::Request { req, chunk }) => {
                self.state.borrow_mut().relay_in.insert(frame.peer.clone(), js_sys::Date::now());
                self.serve(Target::Relay(frame.peer, frame.conn), req, chunk)
            }
            Ok(_) => {} // an answer for a link that is gone
            Err(e) => gloo::console::warn!(format!("bad relayed message from {}: {e}", frame.peer.short())),
        }
    }

    pub(super) fn send_relay(&self, st: &State, peer: &PeerId, conn: u64, payload: Vec<u8>) {
        let len = payload.len() as u64;
        if let Some(link) = &st.link {
            if link.send_relay(&RelayFrame { peer: peer.clone(), conn, payload }) {
                let c = &self.relay_counters.sent;
                c.set(c.get() + len);
            }
        }
    }

    // ----- serving -----

    /// Answers a chunk request from the store (asynchronously: IndexedDB reads are).
    pub(super) fn serve(&self, target: Target, req: u32, chunk: ChunkId) {
        let Some(node) = self.weak.upgrade() else { return };
        let store = self.state.borrow().store.clone();
        spawn_local(async move {
            let frames = serve_request(store.as_ref(), req, &chunk).await;
            let st = node.state.borrow();
            match &target {
                Target::Rtc(key) => {
                    if let Some(rtc) = st.inbound.get(key) {
                        for f in frames {
                            rtc.send(f);
                        }
                    }
                }
                Target::Relay(peer, conn) => {
                    for f in frames {
                        node.send_relay(&st, peer, *conn, f);
                    }
                }
            }
        });
    }

    // ----- connections other peers open -----

    pub(super) fn in_handler(&self, key: ConnKey) -> Rc<dyn Fn(RtcEvent)> {
        let weak = self.weak.clone();
        Rc::new(move |ev| {
            if let Some(node) = weak.upgrade() {
                node.on_in_event(&key, ev);
            }
        })
    }

    pub(super) fn on_signal(&self, from: PeerId, conn: u64, signal: Signal) {
        let mut st = self.state.borrow_mut();
        if let Some(l) = st.out.get(&from).filter(|l| l.conn == conn) {
            if signal == Signal::Gone {
                // The tracker says the peer is not there: its requests go elsewhere now (no
                // relay fallback; the relay cannot reach it either).
                gloo::console::warn!(format!("peer {} is not connected", from.short()));
                let users = l.users.clone();
                self.close_link(&mut st, &from);
                self.runs_lose(&mut st, users);
                return;
            }
            if let Some(rtc) = &l.rtc {
                rtc.on_signal(signal);
            }
            return;
        }
        let key = (from, conn);
        if let Some(c) = st.inbound.get(&key) {
            c.on_signal(signal);
            return;
        }
        let Signal::Offer { sdp } = signal else {
            return; // late signal of a finished attempt
        };
        let refuse = if st.force_relay {
            Some("this peer uses the relay only".to_string())
        } else if st.inbound.len() >= MAX_INBOUND {
            Some("too many connections".to_string())
        } else if swarm_core::wire::sdp_candidate_count(&sdp) > swarm_core::wire::MAX_REMOTE_CANDIDATES {
            Some(format!("the offer has more than {} candidates", swarm_core::wire::MAX_REMOTE_CANDIDATES))
        } else {
            None
        };
        if let Some(reason) = refuse {
            self.send(&st, &ClientMsg::Signal { to: key.0, conn, signal: Signal::Close { reason } });
            return;
        }
        match RtcConn::answer(sdp, &st.ice_servers, self.counters.clone(), self.in_handler(key.clone())) {
            Ok(rtc) => {
                st.inbound.insert(key, rtc);
            }
            Err(e) => {
                let reason = e.to_string();
                self.send(&st, &ClientMsg::Signal { to: key.0, conn, signal: Signal::Close { reason } });
            }
        }
    }

    pub(super) fn on_in_event(&self, key: &ConnKey, ev: RtcEvent) {
        let mut st = self.state.borrow_mut();
        if !st.inbound.contains_key(key) {
            return;
        }
        match ev {
            RtcEvent::Signal(signal) => {
                self.send(&st, &ClientMsg::Signal { to: key.0.clone(), conn: key.1, signal });
            }
            RtcEvent::Open | RtcEvent::Path(_) => {}
            RtcEvent::Message(bytes) => match PeerMsg::decode(&bytes.to_vec()) {
                Ok(PeerMsg::Request { req, chunk }) => {
                    drop(st);
                    self.serve(Target::Rtc(key.clone()), req, chunk);
                }
                Ok(_) => {}
                Err(e) => gloo::console::warn!(format!("bad message from {}: {e}", key.0.short())),
            },
            RtcEvent::Closed(_) => {
                if let Some(conn) = st.inbound.remove(key) {
                    // Dropped from a task, not inside the callback that reported the close.
                    spawn_local(async move { drop(conn) });
                }
            }
        }
    }
}
