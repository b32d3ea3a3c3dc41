//! The core alone, in virtual time: admission and what an address is charged, a peer's
//! messages through the limits, reconnects, the timers.

use super::*;
use crate::core::outbox::{Frame, Outbox};
use swarm_core::swarm::policy::addr_key;
use swarm_core::wire::FileMeta;
use swarm_core::{Manifest, ManifestBuilder, PeerKind};

fn core_with(limits: Limits) -> Core {
    let mut repair = swarm_core::swarm::repair::RepairConfig::default();
    repair.trust.verify = false;
    Core::new(Swarm::with_config(repair), limits, Timers::new(1_000, Some(60_000), Some(60_000)), None)
}

fn peer(n: u8) -> PeerId {
    PeerId::from_secret(&format!("core-test-{n}"))
}

fn addr(n: u8) -> Option<AddrKey> {
    Some(addr_key(std::net::IpAddr::from([10, 0, 0, n])))
}

fn manifest(seed: u8, chunks: usize) -> Manifest {
    let mut b = ManifestBuilder::new(4);
    for i in 0..chunks {
        b.push(&[seed, i as u8, (i >> 8) as u8, 7]);
    }
    b.finish()
}

fn outbox() -> Outbox {
    Outbox::new(64, 1 << 20)
}

fn publish(core: &mut Core, p: &PeerId, serial: u64, m: &Manifest) -> Handled {
    let have = ClientMsg::Have { chunks: m.chunks.clone(), full: false };
    assert!(matches!(core.handle_peer_msg(p, serial, have, 0, 0), Handled::Done(_)));
    let meta = FileMeta::public("a.txt", "text/plain");
    core.handle_peer_msg(p, serial, ClientMsg::Publish { req: 1, manifest: m.clone(), meta }, 0, 0)
}

/// The error code a refusal carries.
fn code(h: &Handled) -> Option<swarm_core::wire::ErrorCode> {
    match h {
        Handled::Refused(r) => match r.msg.as_ref() {
            ServerMsg::Error { code, .. } => Some(*code),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn an_address_is_charged_for_the_files_it_publishes_until_they_go() {
    let mut core = core_with(Limits::default());
    let p = peer(1);
    let serial = core.admit(&p, PeerKind::Native, outbox(), addr(1), 0, 0).expect("admitted");
    let alone = core.addr_bytes(&addr(1).unwrap());
    let m = manifest(1, 50);
    let Handled::Done(step) = publish(&mut core, &p, serial, &m) else { panic!("publish refused") };
    assert_eq!(step.added.len(), 1, "the new file is handed out to be stored durably");
    let with_file = core.addr_bytes(&addr(1).unwrap());
    assert!(with_file > alone, "the file and its 50 chunks are charged to the address ({alone} -> {with_file})");
    assert_eq!(core.top_consumers()[0].0, addr(1).unwrap());
    let unpublish = ClientMsg::Unpublish { req: 2, file: m.file_id() };
    let Handled::Done(step) = core.handle_peer_msg(&p, serial, unpublish, 0, 0) else { panic!("refused") };
    assert_eq!(step.removed, vec![m.file_id()], "the file is handed out to be forgotten durably");
    assert_eq!(core.addr_bytes(&addr(1).unwrap()), alone, "the address is charged for its peer alone again");
}

#[test]
fn publishes_past_an_address_limit_are_refused_and_change_nothing() {
    let limits = Limits { max_files_per_ip: 1, ..Limits::default() };
    let mut core = core_with(limits);
    let (a, b) = (peer(1), peer(2));
    let sa = core.admit(&a, PeerKind::Native, outbox(), addr(1), 0, 0).unwrap();
    let sb = core.admit(&b, PeerKind::Native, outbox(), addr(1), 0, 0).unwrap();
    assert!(matches!(publish(&mut core, &a, sa, &manifest(1, 3)), Handled::Done(_)));
    let second = publish(&mut core, &b, sb, &manifest(2, 3));
    assert_eq!(code(&second), Some(swarm_core::wire::ErrorCode::LimitReached), "{second:?}");
    assert_eq!(core.swarm().file_count(), 1, "the refused file is not in the swarm");
}

#[test]
fn the_tracker_full_refuses_new_peers_but_lets_a_reconnect_in_and_ends_the_old_connection() {
    let limits = Limits { max_peers: 1, ..Limits::default() };
    let mut core = core_with(limits);
    let (a, b) = (peer(1), peer(2));
    let first = outbox();
    let s1 = core.admit(&a, PeerKind::Native, first.clone(), addr(1), 0, 0).unwrap();
    assert!(core.admit(&b, PeerKind::Native, outbox(), addr(2), 0, 0).is_err(), "full");
    let s2 = core.admit(&a, PeerKind::Native, outbox(), addr(2), 0, 0).expect("a reconnect gets in");
    assert!(first.is_closed(), "the older connection's outbox is closed: its task ends");
    assert!(!core.is_current(&a, s1) && core.is_current(&a, s2));
    assert!(matches!(core.handle_peer_msg(&a, s1, ClientMsg::Heartbeat, 0, 0), Handled::Stale));
    core.disconnect(&a, s1, 0);
    assert!(core.is_connected(&a), "the old connection's end does not take the new one down");
    assert_eq!(core.identities_at(addr(1).unwrap(), &a), (0, false), "the old address no longer counts it");
    assert_eq!(core.identities_at(addr(2).unwrap(), &a), (1, true));
    core.disconnect(&a, s2, 0);
    assert!(!core.is_connected(&a) && !core.swarm().is_live(&a), "gone from the swarm");
}

#[test]
fn a_silent_peer_is_dropped_by_the_timers_after_its_idle_time_and_not_before() {
    let mut core = core_with(Limits::default());
    let p = peer(1);
    let ob = outbox();
    core.admit(&p, PeerKind::Native, ob.clone(), None, 0, 0).unwrap();
    ob.touch(0);
    let mut now = 0;
    while now < 999 {
        now += core.poll_timeout(now).max(1);
        if now < 1_000 {
            core.handle_timeout(now, now, |_| false);
        }
    }
    assert!(!ob.is_closed(), "not before its idle time");
    let mut waited = 0;
    while !ob.is_closed() {
        let wait = core.poll_timeout(now).max(1);
        now += wait;
        waited += wait;
        assert!(now <= 1_250 + 50, "dropped within a quarter of the idle time after it ({now} ms)");
        core.handle_timeout(now, now, |_| false);
    }
    assert!(waited > 0 && now >= 1_000);
    let mut batch = Vec::new();
    assert_eq!(ob.try_pop(&mut batch, 8), Some(false), "the connection task sees its outbox closed");
    assert!(batch.iter().all(|f| matches!(f, Frame::Json(_))));
}

#[test]
fn the_timers_never_ask_to_wait_longer_than_the_swarms_tick() {
    let core = core_with(Limits::default());
    for now in [0, 7, 1_000, 123_456] {
        assert!(core.poll_timeout(now) <= 50, "the swarm is ticked at least every 50 ms");
    }
}

#[test]
fn the_figures_count_what_the_core_holds_and_what_their_walk_costs() {
    let mut core = core_with(Limits::default());
    let (a, b) = (peer(1), peer(2));
    let sa = core.admit(&a, PeerKind::Native, outbox(), addr(1), 0, 0).unwrap();
    core.admit(&b, PeerKind::Browser, outbox(), addr(2), 0, 0).unwrap();
    assert!(matches!(publish(&mut core, &a, sa, &manifest(1, 5)), Handled::Done(_)));
    let f = core.figures(7);
    let st = &f.stats;
    assert_eq!((f.serves, st.peers, st.peers_native, st.peers_browser), (7, 2, 1, 1));
    assert_eq!((st.files, st.chunks, st.claims), (1, 5, 5));
    assert_eq!(f.walked, 2 + 2 * 5, "the peers, and every chunk twice");
    assert_eq!(f.top_consumers[0].0, addr(1).unwrap(), "the publisher's address is the heaviest");
}

/// A cluster's link as the core sees it, recording what it was asked to send.
#[derive(Default)]
struct Link {
    left: std::sync::Mutex<Vec<PeerId>>,
    to_peer: std::sync::Mutex<Vec<(u16, PeerId)>>,
}

impl NodeLink for Link {
    fn tag(&self) -> u16 {
        1
    }
    fn urls(&self) -> Vec<String> {
        vec!["ws://node1/ws".into(), "ws://node2/ws".into()]
    }
    fn members(&self) -> BTreeSet<u16> {
        [1, 2].into()
    }
    fn peer_left(&self, peer: &PeerId) {
        self.left.lock().unwrap().push(peer.clone());
    }
    fn to_peer(&self, node: u16, peer: PeerId, _msg: ServerMsg) {
        self.to_peer.lock().unwrap().push((node, peer));
    }
}

fn node_core() -> (Core, Arc<Link>) {
    let link = Arc::new(Link::default());
    let mut repair = swarm_core::swarm::repair::RepairConfig::default();
    repair.trust.verify = false;
    let timers = Timers::new(1_000, None, None);
    let core =
        Core::new(Swarm::with_config(repair), Limits::default(), timers, Some(link.clone() as Arc<dyn NodeLink>));
    (core, link)
}

fn remote(n: u8) -> nodes::RosterPeer {
    nodes::RosterPeer { peer: peer(n), kind: PeerKind::Native, storage: Some((10, 1_000)) }
}

#[test]
fn a_peer_of_another_node_is_known_until_it_leaves_there_and_a_late_message_does_not_bring_it_back() {
    let (mut core, link) = node_core();
    assert!(core.joined_elsewhere(2, remote(5), 0), "new here");
    assert!(!core.joined_elsewhere(2, remote(5), 1), "told twice: nothing new");
    assert_eq!((core.home_of(1, &peer(5)), core.peers_at(2), core.remote_peer_count()), (Some(2), 1, 1));
    assert!(core.swarm().is_live(&peer(5)), "a repair target of this node's swarm too");
    // What this node's swarm sends it goes to its node.
    core.dispatch(vec![Output::Send { to: peer(5), msg: ServerMsg::Reannounce }]);
    assert_eq!(link.to_peer.lock().unwrap().as_slice(), &[(2, peer(5))]);
    assert!(core.accept_from_node(2, &peer(5), 2), "its node speaks for it");
    assert!(!core.accept_from_node(3, &peer(5), 2), "another node does not");
    core.left_elsewhere(2, peer(5), 3);
    assert!(!core.swarm().is_live(&peer(5)) && core.home_of(1, &peer(5)).is_none());
    assert!(!core.accept_from_node(2, &peer(5), 4), "a message that overtook the news of its leaving is dropped");
    core.forget_departed(10_000, 1_000);
    assert!(core.accept_from_node(2, &peer(5), 10_001), "once the departure is forgotten it may come back");
    assert!(link.left.lock().unwrap().is_empty(), "no node is told of a leave that was not here");
}

#[test]
fn a_peer_that_moved_here_from_another_node_ends_its_old_life_there_and_one_that_moved_away_is_not_lost() {
    let (mut core, link) = node_core();
    core.joined_elsewhere(2, remote(5), 0);
    let ob = outbox();
    let serial = core.admit(&peer(5), PeerKind::Native, ob.clone(), None, 1, 1).unwrap();
    assert_eq!(core.home_of(1, &peer(5)), Some(1), "connected here now");
    // It moves on to node 2: its connection here is stale and closed, its leave here is no leave.
    assert!(core.joined_elsewhere(2, remote(5), 2));
    assert!(ob.is_closed());
    core.disconnect(&peer(5), serial, 3);
    assert!(core.swarm().is_live(&peer(5)), "live at node 2");
    assert!(link.left.lock().unwrap().is_empty(), "the other nodes are not told it left");
}

#[test]
fn a_silent_node_s_peers_are_forgotten_and_a_shard_let_go_takes_its_files_and_chunks_with_it() {
    let (mut core, _link) = node_core();
    core.joined_elsewhere(2, remote(5), 0);
    core.joined_elsewhere(2, remote(6), 0);
    core.joined_elsewhere(3, remote(7), 0);
    assert_eq!(core.forget_node(2, 1), 2);
    assert_eq!((core.peers_at(2), core.peers_at(3)), (0, 1));
    let p = peer(1);
    let serial = core.admit(&p, PeerKind::Native, outbox(), None, 0, 0).unwrap();
    let m = manifest(3, 4);
    core.handle_peer_msg(&p, serial, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0, 0);
    let meta = FileMeta::public("s.txt", "text/plain");
    let step = core.handle_owned(&p, ClientMsg::Publish { req: 1, manifest: m.clone(), meta }, 9, 0).expect("known");
    assert_eq!(step.added.len(), 1);
    assert_eq!(core.let_go_shard(8, |_| 9), 0, "another shard's let-go leaves the file");
    assert_eq!(core.let_go_shard(9, |_| 9), 1, "the shard's one file leaves");
    assert_eq!(core.swarm().file_count(), 0);
}

#[test]
fn a_file_the_index_has_and_a_shard_s_load_lacked_is_adopted_once_and_leaves_when_the_index_drops_it() {
    let (mut core, _link) = node_core();
    let m = manifest(4, 3);
    let record = swarm_core::swarm::FileRecord {
        manifest: m.clone(),
        meta: FileMeta::public("late.txt", "text/plain"),
        published_at_ms: 0,
        owner: Some(peer(1)),
    };
    core.load_shard(9, Vec::new(), Vec::new());
    assert!(core.adopt_file(9, record.clone()), "missing from the load: adopted");
    assert!(!core.adopt_file(9, record), "kept already: nothing changes");
    assert_eq!(core.swarm().file_count(), 1);
    assert!(core.swarm().file(&m.file_id()).is_some());
    assert_eq!(core.let_go_shard(9, |_| 9), 1, "it belongs to its shard: let go with it");
    assert!(!core.forget_unindexed_file(&m.file_id()), "gone already");
    core.load_shard(9, Vec::new(), Vec::new());
    core.adopt_file(
        9,
        swarm_core::swarm::FileRecord {
            manifest: m.clone(),
            meta: FileMeta::public("late.txt", "text/plain"),
            published_at_ms: 0,
            owner: Some(peer(1)),
        },
    );
    assert!(core.forget_unindexed_file(&m.file_id()), "the index dropped it: it leaves");
    assert_eq!(core.swarm().file_count(), 0);
}

#[test]
fn a_leaving_peer_hears_leave_ready_once_every_node_answered() {
    let (mut core, _link) = node_core();
    let ob = outbox();
    core.admit(&peer(5), PeerKind::Native, ob.clone(), None, 0, 0).unwrap();
    core.dispatch(vec![Output::Send { to: peer(5), msg: ServerMsg::LeaveReady { stranded: 1 } }]);
    let mut batch = Vec::new();
    ob.try_pop(&mut batch, 8);
    assert!(batch.is_empty(), "node 2 has not answered yet");
    core.deliver_from_node(2, &peer(5), ServerMsg::LeaveReady { stranded: 2 });
    ob.try_pop(&mut batch, 8);
    let texts: Vec<String> = batch
        .iter()
        .map(|f| match f {
            Frame::Json(m) => m.to_json(),
            Frame::Binary(_) => String::new(),
        })
        .collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("leave_ready") && texts[0].contains("\"stranded\":3"), "{texts:?}");
}
