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
