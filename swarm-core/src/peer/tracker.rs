//! The peer's side of the tracker protocol: hello and the signed answer to the tracker's
//! challenge (see [`crate::identity`]) and inventory on every (re)connect, `have`
//! batching, storage and path reports, answers matched to requests, trims, signals routed to
//! links, replication orders handed to the fetch side. A request the tracker answers
//! `unavailable` (part of the swarm moving between tracker nodes) is sent again a few times
//! ([`UNAVAILABLE_TRIES`], [`UNAVAILABLE_RETRY_MS`] apart) before the answer reaches its caller.

use super::config::{
    HAVE_BATCH_MS, INVENTORY_BATCH, MAX_INBOUND, PATH_REPORT_MS, UNAVAILABLE_RETRY_MS, UNAVAILABLE_TRIES,
};
use super::links::InLink;
use super::{ChunkBuf, Event, Inventory, Output, Peer, Pending};
use crate::wire::ErrorCode;
use crate::{ChunkId, ClientMsg, PathReport, PeerId, ServerMsg, Signal};
use std::collections::BTreeMap;

/// What the tracker side remembers between calls.
#[derive(Debug, Default)]
pub struct Duties {
    /// Newly stored chunks not yet announced, and when the batch is due.
    have_batch: Vec<ChunkId>,
    have_due: Option<u64>,
    /// The storage last reported.
    reported_storage: Option<(u64, u64)>,
    /// The path report last sent, and when.
    reported_paths: Option<PathReport>,
    paths_at: u64,
    /// Requests the tracker answered `unavailable`: by request number, how many times, and
    /// when the request goes out again (`None`: it went out again).
    unavailable: BTreeMap<u32, (u32, Option<u64>)>,
    /// `hello` went out and the tracker's challenge (the nonce to sign) is awaited.
    awaiting_challenge: bool,
    /// The challenge the driver was asked to sign ([`Output::SignHello`]), until it answers.
    signing: Option<[u8; 32]>,
}

impl Duties {
    pub fn deadline(&self) -> Option<u64> {
        let retry = self.unavailable.values().filter_map(|(_, due)| *due).min();
        [self.have_due, Some(self.paths_at + PATH_REPORT_MS), retry].into_iter().flatten().min()
    }
}

impl<B: ChunkBuf + Clone> Peer<B> {
    /// The tracker connection is open (first time or again): say hello (this peer's key), and
    /// when the tracker's challenge comes, have the driver sign it (for
    /// [`super::PeerConfig::origin`], [`Output::SignHello`]); with the signature
    /// ([`Peer::hello_signed`]), prove it, announce the whole inventory and the room offered,
    /// and send again every request still unanswered.
    pub fn tracker_connected(&mut self, _inv: &dyn Inventory, now_ms: u64) {
        // Nothing else goes out before the proof (the tracker would refuse it unwelcomed).
        self.connected = false;
        self.tracker.awaiting_challenge = true;
        self.tracker.signing = None;
        self.links.number_from(now_ms);
        let hello = ClientMsg::Hello {
            version: crate::wire::PROTOCOL_VERSION,
            kind: self.config.kind,
            key: hex::encode(self.config.key),
            token: self.config.token.clone(),
        };
        self.out.push_back(Output::Tracker(hello));
    }

    /// The tracker this peer dials next (any URL of it: its origin is kept, see
    /// [`crate::identity::origin_of`]); the hello is signed for it.
    pub fn set_tracker_origin(&mut self, url: &str) {
        self.config.origin = crate::identity::origin_of(url).unwrap_or_else(|_| url.to_string());
    }

    /// The tracker's challenge: the driver signs it.
    fn on_auth_challenge(&mut self, nonce: [u8; 32]) {
        if !std::mem::take(&mut self.tracker.awaiting_challenge) {
            return;
        }
        self.tracker.signing = Some(nonce);
        self.out.push_back(Output::SignHello { nonce, origin: self.config.origin.clone() });
    }

    /// The driver's signature of the challenge `nonce` ([`Output::SignHello`]): the proof, then
    /// everything a (re)connect sends. Ignored unless `nonce` is the challenge of the
    /// connection open now (a signature that took longer than its connection is worthless).
    pub fn hello_signed(&mut self, nonce: [u8; 32], signature: [u8; 64], inv: &dyn Inventory, now_ms: u64) {
        if self.tracker.signing != Some(nonce) {
            return;
        }
        self.tracker.signing = None;
        self.connected = true;
        let proof = ClientMsg::AuthProof {
            signature: hex::encode(signature),
            origin: self.config.origin.clone(),
            migrate: None,
        };
        self.out.push_back(Output::Tracker(proof));
        self.announce_all(inv, now_ms);
    }

    /// Like [`Peer::tracker_connected`], for a driver whose transport said hello itself (it
    /// reports refusals before the peer starts): the tracker welcomed this peer.
    pub fn tracker_welcomed(&mut self, peer_id: PeerId, inv: &dyn Inventory, now_ms: u64) {
        self.connected = true;
        self.me = Some(peer_id);
        self.announce_all(inv, now_ms);
    }

    fn announce_all(&mut self, inv: &dyn Inventory, now_ms: u64) {
        self.forget_proofs();
        self.send_inventory(inv);
        self.tracker.reported_paths = None;
        self.tracker.paths_at = now_ms;
        // Every unanswered request goes out again now, those waiting to retry among them.
        for (_, due) in self.tracker.unavailable.values_mut() {
            *due = None;
        }
        let again: Vec<ClientMsg> = self.pending.values().map(|(_, m)| m.clone()).collect();
        for msg in again {
            self.send(msg);
        }
        // (Nothing on the first connection: no request went out yet.)
        self.relay_requests_lost(now_ms);
    }

    /// Announces every chunk held (replacing what the tracker knew) and the storage used.
    fn send_inventory(&mut self, inv: &dyn Inventory) {
        // In batches, so a large store stays under the tracker's message size limit: the
        // first replaces what the tracker knew, the rest add to it.
        let ids = inv.ids();
        let mut batches = ids.chunks(INVENTORY_BATCH);
        self.send(ClientMsg::Have { chunks: batches.next().unwrap_or_default().to_vec(), full: true });
        for batch in batches {
            self.send(ClientMsg::Have { chunks: batch.to_vec(), full: false });
        }
        // Announced above already.
        self.tracker.have_batch.clear();
        self.tracker.have_due = None;
        self.tracker.reported_storage = None;
        self.report_storage(inv);
    }

    /// The tracker connection is down; the driver reconnects (see [`super::backoff`]).
    pub fn tracker_disconnected(&mut self) {
        self.connected = false;
        self.tracker.awaiting_challenge = false;
        self.tracker.signing = None;
    }

    /// Announces a newly stored chunk (batched for [`HAVE_BATCH_MS`]).
    pub fn announce(&mut self, chunk: ChunkId, now_ms: u64) {
        self.tracker.have_batch.push(chunk);
        self.tracker.have_due.get_or_insert(now_ms + HAVE_BATCH_MS);
    }

    /// Sends the batched announcements now (before `order_done`, or before a short-lived
    /// peer exits), [`INVENTORY_BATCH`] chunks a message at most (a whole large file's
    /// chunks, announced at its upload, would go over the tracker's message size limit).
    pub fn flush_haves(&mut self) {
        self.tracker.have_due = None;
        let all = std::mem::take(&mut self.tracker.have_batch);
        for batch in all.chunks(INVENTORY_BATCH) {
            self.send(ClientMsg::Have { chunks: batch.to_vec(), full: false });
        }
    }

    /// Tells the tracker the room this peer offers, if it changed.
    pub fn report_storage(&mut self, inv: &dyn Inventory) {
        let now = (inv.used(), inv.capacity());
        if self.connected && self.tracker.reported_storage != Some(now) {
            self.tracker.reported_storage = Some(now);
            self.send(ClientMsg::Storage { used: now.0, capacity: now.1 });
        }
    }

    /// Chunks the store lost on its own (corruption found by a scrub, a failed write).
    pub fn dropped(&mut self, chunks: Vec<ChunkId>, inv: &dyn Inventory) {
        if !chunks.is_empty() {
            self.tracker.have_batch.retain(|c| !chunks.contains(c));
            self.send(ClientMsg::Dropped { chunks });
        }
        self.report_storage(inv);
    }

    /// Asks the tracker to hand this peer's chunks to others ([`Event::LeaveReady`] follows).
    pub fn leave(&mut self) {
        self.flush_haves();
        self.send(ClientMsg::Leave);
    }

    pub(super) fn tracker_timeout(&mut self, inv: &dyn Inventory, now_ms: u64) {
        let pending = &self.pending;
        self.tracker.unavailable.retain(|req, _| pending.contains_key(req));
        let due: Vec<u32> = (self.tracker.unavailable.iter())
            .filter(|(_, (_, due))| due.is_some_and(|d| now_ms >= d))
            .map(|(req, _)| *req)
            .collect();
        for req in due {
            if let Some((_, due)) = self.tracker.unavailable.get_mut(&req) {
                *due = None;
            }
            // (While disconnected nothing goes out: the reconnect sends every pending request.)
            if let Some((_, msg)) = self.pending.get(&req) {
                let msg = msg.clone();
                self.send(msg);
            }
        }
        if self.tracker.have_due.is_some_and(|due| now_ms >= due) {
            self.flush_haves();
            self.report_storage(inv);
        }
        if now_ms >= self.tracker.paths_at + PATH_REPORT_MS {
            self.tracker.paths_at = now_ms;
            let report = self.links.report();
            if self.is_connected() && self.tracker.reported_paths.as_ref() != Some(&report) {
                self.tracker.reported_paths = Some(report.clone());
                self.send(ClientMsg::Paths { report });
            }
        }
    }

    /// Whether the tracker's `unavailable` answer to request `req` is kept from its caller:
    /// the request goes out again in [`UNAVAILABLE_RETRY_MS`], unless it was sent
    /// [`UNAVAILABLE_TRIES`] times already.
    fn retry_unavailable(&mut self, req: u32, now_ms: u64) -> bool {
        if !self.pending.contains_key(&req) {
            return false;
        }
        let (times, due) = self.tracker.unavailable.entry(req).or_insert((0, None));
        *times += 1;
        if *times >= UNAVAILABLE_TRIES {
            self.tracker.unavailable.remove(&req);
            return false;
        }
        *due = Some(now_ms + UNAVAILABLE_RETRY_MS);
        true
    }

    /// A message from the tracker.
    pub fn handle_server_msg(&mut self, msg: ServerMsg, inv: &dyn Inventory, now_ms: u64) {
        if let ServerMsg::Error { req: Some(req), code: ErrorCode::Unavailable, .. } = msg {
            if self.retry_unavailable(req, now_ms) {
                return;
            }
        }
        match msg {
            ServerMsg::AuthChallenge { nonce } => self.on_auth_challenge(nonce),
            ServerMsg::Welcome { peer_id, ice_servers, trackers, .. } => {
                self.me = Some(peer_id.clone());
                self.event(Event::Welcomed { peer_id, ice_servers, trackers });
            }
            ServerMsg::Reannounce => {
                if self.connected {
                    self.send_inventory(inv);
                }
            }
            // The node is alive: the driver's business (see [`super::liveness`]).
            ServerMsg::Heartbeat => {}
            ServerMsg::Trackers { trackers } => self.event(Event::Trackers { trackers }),
            ServerMsg::Published { req, .. }
            | ServerMsg::SearchResults { req, .. }
            | ServerMsg::Unpublished { req, .. } => {
                if let Some((Pending::Driver, _)) = self.pending.remove(&req) {
                    self.event(Event::Reply { req, msg });
                }
            }
            ServerMsg::Located { req, .. } => match self.pending.remove(&req) {
                Some((Pending::Locate(download), _)) => self.on_located(download, msg, inv, now_ms),
                Some((Pending::Driver, _)) => self.event(Event::Reply { req, msg }),
                None => {}
            },
            ServerMsg::Error { req: Some(req), ref message, code } => match self.pending.remove(&req) {
                Some((Pending::Locate(download), _)) => {
                    let why = super::Failure::Tracker { code, message: message.clone() };
                    self.finish(download, Err(why), now_ms);
                }
                Some((Pending::Driver, _)) => self.event(Event::Reply { req, msg }),
                None => {}
            },
            ServerMsg::Error { req: None, message, code } => {
                self.event(Event::Notice(format!("tracker error {code:?}: {message}")));
            }
            ServerMsg::Replicate { order, chunk, size, sources } => {
                self.on_order(order, chunk, size, sources, inv, now_ms)
            }
            ServerMsg::Trim { chunks } => {
                // Chunks of files this peer's user keeps (even partly: a download resumes from
                // them) stay, and so do copies another tracker's swarm placed (a tracker only
                // touches what it placed); only this swarm's surplus replica copies go.
                let (kept, chunks): (Vec<ChunkId>, Vec<ChunkId>) =
                    chunks.into_iter().filter(|c| inv.has(c)).partition(|c| inv.pinned(c) || inv.placed_elsewhere(c));
                let foreign = kept.iter().filter(|c| inv.placed_elsewhere(c)).count();
                if foreign > 0 {
                    self.event(Event::Notice(format!(
                        "kept {foreign} copies another tracker placed (this one asked to trim them)"
                    )));
                }
                if !chunks.is_empty() {
                    self.out.push_back(Output::Remove { chunks: chunks.clone() });
                    self.send(ClientMsg::Dropped { chunks });
                }
                // The tracker stopped counting the trimmed copies when it sent the trim: the
                // ones kept are announced again, or this peer would hold them without being a
                // source of them until its next reconnect (and then be trimmed again).
                if !kept.is_empty() {
                    self.send(ClientMsg::Have { chunks: kept, full: false });
                }
            }
            ServerMsg::LeaveReady { stranded } => self.event(Event::LeaveReady { stranded }),
            ServerMsg::Challenge { items } => self.on_challenge(items, inv),
            ServerMsg::Signal { from, conn, signal } => self.on_signal(from, conn, signal, now_ms),
        }
    }

    fn on_signal(&mut self, from: PeerId, conn: u64, signal: Signal, now_ms: u64) {
        match signal {
            Signal::Offer { sdp } => {
                let refuse = if self.config.relay_only {
                    Some("this peer uses the relay only")
                } else if self.links.inbound.len() >= MAX_INBOUND {
                    Some("this peer serves too many links")
                } else if self.links.inbound_ids.contains_key(&(from.clone(), conn)) {
                    Some("this link exists")
                } else {
                    None
                };
                if let Some(reason) = refuse {
                    let signal = Signal::Close { reason: reason.into() };
                    self.send(ClientMsg::Signal { to: from, conn, signal });
                    return;
                }
                let link = self.links.new_id();
                self.links.inbound_ids.insert((from.clone(), conn), link);
                self.links.inbound.insert(link, InLink { peer: from.clone(), conn, path: None });
                self.out.push_back(Output::Accept { link, peer: from, sdp });
            }
            Signal::Gone => {
                // The tracker says the peer is not there: no relay fallback, no retry for a while.
                self.links.lost.insert(from.clone(), now_ms);
                if let Some(&link) = self.links.inbound_ids.get(&(from.clone(), conn)) {
                    self.out.push_back(Output::Close { link });
                    self.forget_inbound(link);
                }
                if self.links.out.get(&from).is_some_and(|l| l.link == conn) {
                    self.drop_out_link(&from, now_ms);
                }
            }
            signal => {
                let link = match self.links.out.get(&from) {
                    Some(l) if l.link == conn => Some(l.link),
                    _ => self.links.inbound_ids.get(&(from, conn)).copied(),
                };
                if let Some(link) = link {
                    self.out.push_back(Output::Signal { link, signal });
                }
            }
        }
    }

    /// A signal from a link's WebRTC side (answer, candidate, close) for the remote.
    pub fn link_signal(&mut self, link: super::LinkId, signal: Signal) {
        let to = match self.links.out_ids.get(&link) {
            Some(peer) => Some((peer.clone(), link)),
            None => self.links.inbound.get(&link).map(|l| (l.peer.clone(), l.conn)),
        };
        if let Some((to, conn)) = to {
            self.send(ClientMsg::Signal { to, conn, signal });
        }
    }

    pub(super) fn forget_inbound(&mut self, link: super::LinkId) {
        self.forget_route_link(link);
        if let Some(l) = self.links.inbound.remove(&link) {
            self.links.inbound_ids.remove(&(l.peer, l.conn));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Event, Failure, PeerConfig};
    use super::*;
    use crate::wire::PeerKind;
    use crate::FileId;

    struct Empty;
    impl Inventory for Empty {
        fn has(&self, _: &ChunkId) -> bool {
            false
        }
        fn ids(&self) -> Vec<ChunkId> {
            Vec::new()
        }
        fn used(&self) -> u64 {
            0
        }
        fn capacity(&self) -> u64 {
            1 << 30
        }
    }

    fn welcomed() -> Peer<Vec<u8>> {
        let mut p = Peer::new(PeerConfig::new(PeerKind::Native, [0; 32]));
        p.tracker_welcomed(PeerId::from_secret("me"), &Empty, 0);
        while p.poll_output().is_some() {}
        p
    }

    /// Requests sent to the tracker and events, in order.
    fn drain(p: &mut Peer<Vec<u8>>) -> (Vec<ClientMsg>, Vec<Event<Vec<u8>>>) {
        let (mut sent, mut events) = (Vec::new(), Vec::new());
        while let Some(o) = p.poll_output() {
            match o {
                Output::Tracker(m) => sent.push(m),
                Output::Event(e) => events.push(e),
                _ => {}
            }
        }
        (sent, events)
    }

    fn unavailable(req: u32) -> ServerMsg {
        ServerMsg::Error { req: Some(req), code: ErrorCode::Unavailable, message: "moving".into() }
    }

    /// Runs the core's timers up to `until` (virtual time), as a driver does.
    fn run_until(p: &mut Peer<Vec<u8>>, until: u64) {
        while let Some(at) = p.poll_timeout().filter(|&at| at <= until) {
            p.handle_timeout(&Empty, at);
        }
    }

    fn search(req: u32) -> ClientMsg {
        ClientMsg::Search { req, query: "holiday".into(), limit: 5 }
    }

    #[test]
    fn a_request_answered_unavailable_goes_out_again_and_the_caller_sees_only_the_real_answer() {
        let mut p = welcomed();
        let req = p.request(search);
        assert_eq!(drain(&mut p).0, vec![search(req)]);
        p.handle_server_msg(unavailable(req), &Empty, 1_000);
        let (sent, events) = drain(&mut p);
        assert!(sent.is_empty() && events.is_empty(), "the caller does not hear of it: {events:?}");
        assert_eq!(p.poll_timeout(), Some(1_000 + UNAVAILABLE_RETRY_MS), "a retry is due in 500 ms");
        run_until(&mut p, 1_000 + UNAVAILABLE_RETRY_MS - 1);
        assert!(drain(&mut p).0.is_empty(), "not before its time");
        run_until(&mut p, 1_000 + UNAVAILABLE_RETRY_MS);
        assert_eq!(drain(&mut p).0, vec![search(req)], "the same request, same number");
        let answer = ServerMsg::SearchResults { req, files: vec![] };
        p.handle_server_msg(answer.clone(), &Empty, 1_600);
        let (_, events) = drain(&mut p);
        assert!(matches!(&events[..], [Event::Reply { req: r, msg }] if *r == req && *msg == answer), "{events:?}");
        run_until(&mut p, 10_000);
        assert!(drain(&mut p).0.iter().all(|m| !matches!(m, ClientMsg::Search { .. })), "nothing more goes out");
    }

    #[test]
    fn after_the_last_unavailable_answer_the_caller_gets_the_error() {
        let mut p = welcomed();
        let req = p.request(search);
        drain(&mut p);
        let mut now = 0;
        let mut sends = 1;
        loop {
            p.handle_server_msg(unavailable(req), &Empty, now);
            let (_, events) = drain(&mut p);
            if let Some(e) = events.into_iter().next() {
                let Event::Reply { msg: ServerMsg::Error { code, .. }, .. } = e else { panic!("{e:?}") };
                assert_eq!(code, ErrorCode::Unavailable);
                break;
            }
            now += UNAVAILABLE_RETRY_MS;
            run_until(&mut p, now);
            sends += drain(&mut p).0.iter().filter(|m| matches!(m, ClientMsg::Search { .. })).count();
            assert!(sends <= 2 * UNAVAILABLE_TRIES as usize, "retries without end");
        }
        assert_eq!(sends as u32, UNAVAILABLE_TRIES, "sent {UNAVAILABLE_TRIES} times in all");
        assert_eq!(now, (UNAVAILABLE_TRIES as u64 - 1) * UNAVAILABLE_RETRY_MS, "half a second apart");
    }

    #[test]
    fn a_download_whose_locate_stays_unavailable_fails_with_that_error() {
        let mut p = welcomed();
        let file = FileId([7; 32]);
        let download = p.download(file, super::super::Purpose::Keep, 0);
        let (sent, _) = drain(&mut p);
        let [ClientMsg::Locate { req, .. }] = sent[..] else { panic!("{sent:?}") };
        let mut locates = 1;
        let mut finished = None;
        for round in 0..UNAVAILABLE_TRIES as u64 {
            let now = round * UNAVAILABLE_RETRY_MS;
            p.handle_server_msg(unavailable(req), &Empty, now);
            run_until(&mut p, now + UNAVAILABLE_RETRY_MS);
            let (sent, events) = drain(&mut p);
            locates += sent.iter().filter(|m| matches!(m, ClientMsg::Locate { req: r, .. } if *r == req)).count();
            finished = finished.or(events.into_iter().find_map(|e| match e {
                Event::Finished { download: d, result, .. } if d == download => Some(result),
                _ => None,
            }));
        }
        assert_eq!(locates as u32, UNAVAILABLE_TRIES);
        let Some(Err(Failure::Tracker { code, .. })) = finished else { panic!("{finished:?}") };
        assert_eq!(code, ErrorCode::Unavailable);
    }

    #[test]
    fn a_reconnect_sends_a_waiting_request_at_once_and_only_once() {
        let mut p = welcomed();
        let req = p.request(search);
        drain(&mut p);
        p.handle_server_msg(unavailable(req), &Empty, 0);
        p.tracker_disconnected();
        run_until(&mut p, 100);
        p.tracker_welcomed(PeerId::from_secret("me"), &Empty, 100);
        let searches =
            |sent: Vec<ClientMsg>| sent.into_iter().filter(|m| matches!(m, ClientMsg::Search { .. })).count();
        assert_eq!(searches(drain(&mut p).0), 1, "re-sent with the inventory on reconnect");
        run_until(&mut p, 5_000);
        assert_eq!(searches(drain(&mut p).0), 0, "its retry is not sent again");
    }

    #[test]
    fn the_driver_signs_the_challenge_and_only_a_signature_of_the_open_connection_counts() {
        use crate::identity::{verify_hello, Keypair};
        let keys = Keypair::from_seed([3; 32]);
        let mut p = Peer::<Vec<u8>>::new(PeerConfig::new(PeerKind::Browser, keys.public()));
        p.set_tracker_origin("ws://127.0.0.1:9/ws");
        p.tracker_connected(&Empty, 0);
        let (sent, _) = drain(&mut p);
        assert!(matches!(&sent[..], [ClientMsg::Hello { key, .. }] if *key == hex::encode(keys.public())));
        let sign = |p: &mut Peer<Vec<u8>>| {
            let mut asked = Vec::new();
            while let Some(o) = p.poll_output() {
                match o {
                    Output::SignHello { nonce, origin } => asked.push((nonce, origin)),
                    other => panic!("nothing but the signing before the proof: {other:?}"),
                }
            }
            asked
        };
        p.handle_server_msg(ServerMsg::AuthChallenge { nonce: [1; 32] }, &Empty, 0);
        assert_eq!(sign(&mut p), vec![([1; 32], "ws://127.0.0.1:9".to_string())]);
        // The connection drops while the driver signs; the next one has its own challenge.
        p.tracker_disconnected();
        p.tracker_connected(&Empty, 10);
        drain(&mut p);
        p.handle_server_msg(ServerMsg::AuthChallenge { nonce: [2; 32] }, &Empty, 10);
        assert_eq!(sign(&mut p).len(), 1);
        p.hello_signed([1; 32], keys.sign_hello(&[1; 32], "ws://127.0.0.1:9"), &Empty, 20);
        assert!(drain(&mut p).0.is_empty(), "the old connection's signature is ignored");
        p.hello_signed([2; 32], keys.sign_hello(&[2; 32], "ws://127.0.0.1:9"), &Empty, 20);
        let (sent, _) = drain(&mut p);
        let ClientMsg::AuthProof { signature, origin, migrate: None } = &sent[0] else { panic!("{sent:?}") };
        assert_eq!(verify_hello(&hex::encode(keys.public()), signature, &[2; 32], origin), Ok(keys.peer_id()));
        assert!(matches!(sent[1], ClientMsg::Have { full: true, .. }), "the inventory follows the proof");
        p.hello_signed([2; 32], keys.sign_hello(&[2; 32], "ws://127.0.0.1:9"), &Empty, 30);
        assert!(drain(&mut p).0.is_empty(), "one proof per challenge");
    }
}
