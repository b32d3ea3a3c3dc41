//! Links: the shared fetching connections to other peers (a WebRTC data channel, and the
//! tracker relay while none is open: relay, then upgrade), and the events they bring.

use super::*;

impl Node {
    // ----- links -----

    /// Makes sure a link to the slot's peer exists and tells the run when it is ready.
    pub(super) fn connect(&self, st: &mut State, run: u64, slot: usize) {
        let Some(peer) = st.runs.get(&run).map(|r| r.dl.peer(slot).clone()) else { return };
        let now = js_sys::Date::now();
        let ready = match st.out.get_mut(&peer) {
            Some(l) => {
                if !l.users.contains(&(run, slot)) {
                    l.users.push((run, slot));
                }
                l.ready()
            }
            None => {
                let conn = random_u64();
                let rtc = if st.force_relay {
                    None
                } else {
                    match RtcConn::offer(&st.ice_servers, self.counters.clone(), self.out_handler((peer.clone(), conn)))
                    {
                        Ok(rtc) => Some(rtc),
                        Err(e) => {
                            gloo::console::warn!(format!("{e}: using the tracker relay"));
                            None
                        }
                    }
                };
                // Relay, then upgrade: the relay carries requests at once if the page asks for
                // it (`?relay_after=0`), else when the attempt has had its few hundred ms.
                let wait = relay_wait_ms(0.0, false, st.relay_start_ms);
                let relay = (rtc.is_none() || wait.is_none()).then(random_u64);
                let ready = relay.is_some();
                let mut link = OutLink {
                    conn,
                    rtc,
                    relay,
                    started: now,
                    users: vec![(run, slot)],
                    idle_since: now,
                    relay_timer: None,
                };
                if let (false, Some(ms)) = (ready, wait) {
                    link.relay_timer = Some(self.relay_timer(&peer, conn, ms));
                }
                st.out.insert(peer.clone(), link);
                ready
            }
        };
        if ready {
            if let Some(r) = st.runs.get_mut(&run) {
                let steps = r.dl.peer_ready(slot);
                self.apply_steps(st, run, steps);
            }
        }
    }

    /// A timer that looks at the link's WebRTC attempt `conn` after `ms`.
    fn relay_timer(&self, peer: &PeerId, conn: u64, ms: f64) -> Timeout {
        let weak = self.weak.clone();
        let peer = peer.clone();
        Timeout::new(ms.ceil() as u32, move || {
            if let Some(node) = weak.upgrade() {
                node.check_attempt(&peer, conn);
            }
        })
    }

    /// Relay, then upgrade: a link whose channel is not open yet starts sending through the
    /// relay (see [`crate::paths::relay_wait_ms`]), or looks again a little later.
    fn check_attempt(&self, peer: &PeerId, conn: u64) {
        let mut st = self.state.borrow_mut();
        let now = js_sys::Date::now();
        let start_ms = st.relay_start_ms;
        let Some(l) = st.out.get_mut(peer).filter(|l| l.conn == conn) else { return };
        l.relay_timer = None;
        if l.ready() {
            return;
        }
        let ice_connected = l.rtc.as_ref().is_some_and(|r| r.ice_connected());
        match relay_wait_ms(now - l.started, ice_connected, start_ms) {
            Some(ms) => l.relay_timer = Some(self.relay_timer(peer, conn, ms)),
            None => {
                gloo::console::log!(format!(
                    "no data channel to {} after {:.0} ms: requests go through the tracker relay while WebRTC keeps trying",
                    peer.short(),
                    now - l.started
                ));
                self.start_relay(&mut st, peer);
            }
        }
    }

    /// Sends on the link's data channel if open, else through its relay; returns whether it
    /// went on the channel.
    pub(super) fn send_on_link(&self, st: &State, peer: &PeerId, bytes: Vec<u8>) -> bool {
        let Some(l) = st.out.get(peer) else { return false };
        match (l.rtc_open(), l.relay) {
            (Some(rtc), _) => {
                rtc.send(bytes);
                true
            }
            (None, Some(relay)) => {
                self.send_relay(st, peer, relay, bytes);
                false
            }
            (None, None) => false, // not ready: runs only send after `peer_ready`
        }
    }

    /// A link that came up on the relay and moved to a data channel goes back to the relay
    /// when that channel fails (the peer may well still be there): requests the channel took
    /// are asked again through the relay (a half-delivered answer starts over).
    fn back_to_relay(&self, st: &mut State, peer: &PeerId, reason: &str) {
        let Some(l) = st.out.get_mut(peer) else { return };
        let (Some(relay), Some(rtc)) = (l.relay, l.rtc.take()) else { return };
        spawn_local(async move { drop(rtc) });
        gloo::console::warn!(format!("data channel to {} closed ({reason}): back on the relay", peer.short()));
        let runs = &st.runs;
        let again: Vec<(u32, ChunkId)> = st
            .wire
            .iter_mut()
            .filter(|(_, w)| w.on_channel && runs.get(&w.run).is_some_and(|r| r.dl.peer(w.slot) == peer))
            .map(|(id, w)| {
                w.on_channel = false;
                (*id, w.chunk)
            })
            .collect();
        for (req, chunk) in again {
            self.send_relay(st, peer, relay, PeerMsg::Request { req, chunk }.encode());
        }
    }

    /// Requests to this peer may go through the tracker relay from now on (until a data
    /// channel opens); the runs waiting for the link are told it is ready.
    pub(super) fn start_relay(&self, st: &mut State, peer: &PeerId) {
        let Some(l) = st.out.get_mut(peer) else { return };
        if l.relay.is_some() {
            return;
        }
        let was_ready = l.ready();
        l.relay = Some(random_u64());
        l.relay_timer = None;
        if was_ready {
            return;
        }
        let users = l.users.clone();
        for (run, slot) in users {
            if let Some(r) = st.runs.get_mut(&run) {
                let steps = r.dl.peer_ready(slot);
                self.apply_steps(st, run, steps);
            }
        }
    }

    /// Closes a link (its users must be told by the caller).
    pub(super) fn close_link(&self, st: &mut State, peer: &PeerId) {
        if let Some(l) = st.out.remove(peer) {
            if let Some(rtc) = l.rtc {
                rtc.close();
                self.send(
                    st,
                    &ClientMsg::Signal {
                        to: peer.clone(),
                        conn: l.conn,
                        signal: Signal::Close { reason: "done".into() },
                    },
                );
                spawn_local(async move { drop(rtc) });
            }
        }
    }

    /// Tells each run that fetched through a link (`users`: run, slot) that its peer is gone.
    pub(super) fn runs_lose(&self, st: &mut State, users: Vec<(u64, usize)>) {
        for (run, slot) in users {
            if let Some(r) = st.runs.get_mut(&run) {
                let steps = r.dl.peer_gone(slot);
                self.apply_steps(st, run, steps);
            }
        }
    }

    pub(super) fn out_handler(&self, key: ConnKey) -> Rc<dyn Fn(RtcEvent)> {
        let weak = self.weak.clone();
        Rc::new(move |ev| {
            if let Some(node) = weak.upgrade() {
                node.on_out_event(&key, ev);
            }
        })
    }

    pub(super) fn on_out_event(&self, key: &ConnKey, ev: RtcEvent) {
        let mut st = self.state.borrow_mut();
        let (peer, conn) = key;
        let current = st.out.get(peer).is_some_and(|l| l.conn == *conn && l.rtc.is_some());
        if !current {
            return;
        }
        match ev {
            RtcEvent::Signal(signal) => {
                self.send(&st, &ClientMsg::Signal { to: peer.clone(), conn: *conn, signal });
            }
            RtcEvent::Open => {
                let l = st.out.get_mut(peer).expect("current");
                l.relay_timer = None;
                let ms = js_sys::Date::now() - l.started;
                if l.relay.is_some() {
                    // Requests already sent through the relay are answered there; new ones
                    // take the channel.
                    gloo::console::log!(format!(
                        "data channel to {} open after {ms:.0} ms: upgraded from the relay",
                        peer.short()
                    ));
                    return;
                }
                gloo::console::log!(format!("data channel to {} open after {ms:.0} ms", peer.short()));
                let users = l.users.clone();
                for (run, slot) in users {
                    if let Some(r) = st.runs.get_mut(&run) {
                        let steps = r.dl.peer_ready(slot);
                        self.apply_steps(&mut st, run, steps);
                    }
                }
            }
            RtcEvent::Path(_) => {} // logged by the connection; read through `OutLink::path`
            RtcEvent::Message(bytes) => self.on_out_message(&mut st, peer, &bytes),
            RtcEvent::Closed(reason) => {
                let l = st.out.get_mut(peer).expect("current");
                let was_open = l.rtc.as_ref().is_some_and(|r| r.is_open());
                if !was_open {
                    // The attempt failed: the relay carries the link (it may already).
                    if let Some(rtc) = l.rtc.take() {
                        spawn_local(async move { drop(rtc) });
                    }
                    gloo::console::warn!(format!(
                        "no data channel to {} ({reason}): using the tracker relay",
                        peer.short()
                    ));
                    self.start_relay(&mut st, peer);
                    return;
                }
                if l.relay.is_some() {
                    self.back_to_relay(&mut st, peer, &reason);
                    return;
                }
                gloo::console::log!(format!("link to {} closed: {reason}", peer.short()));
                let users = l.users.clone();
                if let Some(l) = st.out.remove(peer) {
                    spawn_local(async move { drop(l) });
                }
                self.runs_lose(&mut st, users);
            }
        }
    }

    /// An answer on one of this tab's links: back to the run that asked.
    pub(super) fn on_out_message(&self, st: &mut State, peer: &PeerId, bytes: &Uint8Array) {
        let answer = match split_answer(bytes) {
            Ok(Some(a)) => a,
            Ok(None) => return, // links only fetch
            Err(e) => {
                gloo::console::warn!(format!("bad message from {}: {e}", peer.short()));
                return;
            }
        };
        let (w, last) = match &answer {
            Answer::Data { req, offset, total, part } => {
                (*req, *offset as usize + part.length() as usize >= *total as usize)
            }
            Answer::Missing { req } => (*req, true),
        };
        let Some(wr) = (if last { st.wire.remove(&w) } else { st.wire.get(&w).copied() }) else {
            return;
        };
        let answer = match answer {
            Answer::Data { offset, total, part, .. } => Answer::Data { req: wr.req, offset, total, part },
            Answer::Missing { .. } => Answer::Missing { req: wr.req },
        };
        if let Some(r) = st.runs.get_mut(&wr.run) {
            let steps = r.dl.on_answer(wr.slot, answer);
            self.apply_steps(st, wr.run, steps);
        }
    }

    pub(super) fn finish_run(&self, st: &mut State, run: u64) {
        let manifest = st.runs.get(&run).map(|r| r.dl.manifest().clone());
        let kind = self.end_run(st, run);
        let Some(manifest) = manifest else { return };
        self.flush_have(st);
        match kind {
            Some(RunKind::Order { order }) => {
                self.send(st, &ClientMsg::OrderDone { order });
            }
            Some(RunKind::File { file, meta }) => {
                let json = serde_json::json!({ "manifest": &manifest, "meta": &meta }).to_string();
                st.store.put_file(file, json);
                self.push_stats_of(st);
                let Some(node) = self.weak.upgrade() else { return };
                let store = st.store.clone();
                spawn_local(async move {
                    match assemble(store.as_ref(), &manifest).await {
                        Ok(url) => {
                            node.state.borrow_mut().object_url = Some(url.clone());
                            gloo::console::log!(format!("download of {} done", meta.name));
                            node.dispatch(Action::DownloadDone { file, url, now: js_sys::Date::now() });
                            node.refresh_estimate(false).await;
                        }
                        Err(e) => node.dispatch(Action::DownloadFailed { file: Some(file), error: e }),
                    }
                });
            }
            None => {}
        }
    }

    /// Forgets a run, detaches it from its links and returns what it was.
    pub(super) fn end_run(&self, st: &mut State, run: u64) -> Option<RunKind> {
        let r = st.runs.remove(&run)?;
        let now = js_sys::Date::now();
        for l in st.out.values_mut() {
            let before = l.users.len();
            l.users.retain(|u| u.0 != run);
            if l.users.is_empty() && before > 0 {
                l.idle_since = now;
            }
        }
        st.wire.retain(|_, w| w.run != run);
        if let RunKind::File { file, .. } = &r.kind {
            st.file_runs.remove(file);
            for c in &r.dl.manifest().chunks {
                if let Some(orders) = st.waiting_orders.remove(c) {
                    for order in orders {
                        let reason = "the download that was fetching it stopped".to_string();
                        self.send(st, &ClientMsg::OrderFailed { order, reason });
                    }
                }
            }
        }
        Some(r.kind)
    }

    pub(super) fn fail_download(&self, file: FileId, error: String) {
        let mut st = self.state.borrow_mut();
        if let Some(run) = st.file_runs.get(&file).copied() {
            self.end_run(&mut st, run);
        }
        drop(st);
        self.dispatch(Action::DownloadFailed { file: Some(file), error });
    }
}
