//! Two real `RtcConn`s in one headless Chromium page, signalling relayed in memory: the
//! offerer requests a chunk over the data channel, the answerer serves it in frames, and the
//! frames reassemble through the peer core's download state machine exactly as in the page:
//! payloads stay in JS memory (`js_chunk`) and WebCrypto checks every chunk.

use std::cell::RefCell;
use std::rc::Rc;

use browser_peer::js_chunk::{sha256, split_incoming, JsChunk};
use browser_peer::rtc::{ByteCounters, RtcConn, RtcEvent};
use browser_peer::store::{ChunkStore, MemoryStore};
use swarm_core::chunk_proto::{frames, PeerMsg};
use swarm_core::peer::config::FRAME_PAYLOAD;
use swarm_core::peer::{Download, Incoming, Step};
use swarm_core::wire::LinkPath;
use swarm_core::{ChunkId, ManifestBuilder, PeerId, Signal};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window().unwrap().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms).unwrap();
    });
    JsFuture::from(p).await.unwrap();
}

#[derive(Default)]
struct World {
    offerer: Option<RtcConn>,
    answerer: Option<RtcConn>,
    early: Vec<Signal>,
    store: MemoryStore,
    chunks: Vec<Vec<u8>>,
    download: Option<Download<JsChunk>>,
    stored: Vec<Vec<u8>>,
    complete: bool,
    log: Vec<String>,
    path: Option<LinkPath>,
}

type W = Rc<RefCell<World>>;

fn apply(w: &W, steps: Vec<Step<JsChunk>>) {
    for s in steps {
        match s {
            Step::Request { req, chunk, .. } => {
                w.borrow().offerer.as_ref().unwrap().send(PeerMsg::Request { req, chunk }.encode())
            }
            Step::Verify { slot, index, bytes, .. } => {
                let w = w.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let actual = sha256(&bytes.concat()).await;
                    let steps = w.borrow_mut().download.as_mut().unwrap().verified(slot, index, bytes, actual);
                    apply(&w, steps);
                });
            }
            Step::Stored { bytes, .. } => w.borrow_mut().stored.push(bytes.concat().to_vec()),
            Step::Complete => w.borrow_mut().complete = true,
            other => w.borrow_mut().log.push(format!("{other:?}")),
        }
    }
}

#[wasm_bindgen_test]
async fn chunks_flow_over_a_real_data_channel() {
    // A 600 KiB file of 3 chunks (the last short), held by the answerer.
    let file: Vec<u8> = (0..600 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut b = ManifestBuilder::new(swarm_core::CHUNK_SIZE);
    let w: W = Rc::new(RefCell::new(World::default()));
    for c in file.chunks(swarm_core::CHUNK_SIZE as usize) {
        let id = b.push(c);
        w.borrow_mut().store.put(id, c);
        w.borrow_mut().chunks.push(c.to_vec());
    }
    let manifest = b.finish();
    let holder = PeerId::from_secret("holder");
    let n = manifest.chunks.len();
    let mut dl =
        Download::new(manifest.file_id(), manifest.clone(), vec![holder], vec![vec![0]; n], None, |_| false).unwrap();
    assert!(matches!(dl.start()[..], [Step::Connect { slot: 0 }]));
    w.borrow_mut().download = Some(dl);

    let counters = Rc::new(ByteCounters::default());
    let answerer_counters = Rc::new(ByteCounters::default());
    let w2 = w.clone();
    let ac = answerer_counters.clone();
    let offerer = RtcConn::offer(
        &[],
        counters.clone(),
        Rc::new(move |ev| match ev {
            RtcEvent::Signal(Signal::Offer { sdp }) => {
                let w3 = w2.clone();
                let answerer = RtcConn::answer(
                    sdp,
                    &[],
                    ac.clone(),
                    Rc::new(move |ev| match ev {
                        RtcEvent::Signal(s) => w3.borrow().offerer.as_ref().unwrap().on_signal(s),
                        RtcEvent::Message(bytes) => {
                            let Ok(PeerMsg::Request { req, chunk }) = PeerMsg::decode(&bytes.to_vec()) else {
                                return;
                            };
                            // The same answer the node sends (read synchronously here: the
                            // store is in memory and the test's handler is not async).
                            let bytes = w3.borrow().chunks.iter().find(|c| ChunkId::of(c) == chunk).cloned();
                            let frames: Vec<Vec<u8>> = match bytes {
                                Some(b) => frames(req, &b, FRAME_PAYLOAD).collect(),
                                None => vec![PeerMsg::Missing { req }.encode()],
                            };
                            let world = w3.borrow();
                            for f in frames {
                                world.answerer.as_ref().unwrap().send(f);
                            }
                        }
                        other => w3.borrow_mut().log.push(format!("answerer: {other:?}")),
                    }),
                )
                .unwrap();
                let early = std::mem::take(&mut w2.borrow_mut().early);
                for s in early {
                    answerer.on_signal(s);
                }
                w2.borrow_mut().answerer = Some(answerer);
            }
            RtcEvent::Signal(s) => {
                let mut world = w2.borrow_mut();
                match &world.answerer {
                    Some(a) => a.on_signal(s),
                    None => world.early.push(s),
                }
            }
            RtcEvent::Open => {
                let steps = w2.borrow_mut().download.as_mut().unwrap().peer_ready(0);
                apply(&w2, steps);
            }
            RtcEvent::Message(bytes) => {
                let Ok(Incoming::Answer(answer)) = split_incoming(&bytes) else { panic!("an answer") };
                let steps = w2.borrow_mut().download.as_mut().unwrap().on_answer(0, answer);
                apply(&w2, steps);
            }
            RtcEvent::Path(path) => w2.borrow_mut().path = Some(path),
            RtcEvent::Drained => {}
            RtcEvent::Closed(reason) => w2.borrow_mut().log.push(format!("offerer closed: {reason}")),
        }),
    )
    .unwrap();
    w.borrow_mut().offerer = Some(offerer);

    for _ in 0..200 {
        if w.borrow().complete {
            break;
        }
        sleep(50).await;
    }
    let world = w.borrow();
    assert!(world.complete, "download over the data channel completed; log: {:?}", world.log);
    let rebuilt: Vec<u8> = world.stored.concat();
    assert_eq!(rebuilt.len(), file.len());
    assert_eq!(
        manifest.chunks,
        world.stored.iter().map(|c| ChunkId::of(c)).collect::<Vec<_>>(),
        "chunks arrive verified (in order here: one peer, ordered channel)"
    );
    // Every byte was counted on both sides (3 requests of 37 bytes; 600 KiB + headers back).
    assert_eq!(counters.sent.get(), 3 * 37);
    assert_eq!(answerer_counters.received.get(), 3 * 37);
    assert_eq!(counters.received.get(), answerer_counters.sent.get());
    assert!(counters.received.get() > file.len() as u64);
    // The channel knows its path (two host candidates of one machine; a host candidate hidden
    // behind an mDNS name is learnt as peer-reflexive), and counted every byte under it.
    let path = world.path.expect("the offerer learnt its path from getStats()");
    assert!(matches!(path, LinkPath::DirectHost | LinkPath::DirectReflexive), "{path:?}");
    assert_eq!(counters.by_path.get(path), counters.received.get(), "every byte received is counted by path");
    drop(world);
    w.borrow().offerer.as_ref().unwrap().close();
    w.borrow().answerer.as_ref().unwrap().close();
}

/// Both ends of a connection whose signalling goes through `a=`-prefixed candidate lines (as
/// some peers send them) and whose ICE servers are useless (a STUN server nobody answers) or
/// refused by the browser (TURN without credentials): the channel still opens on host
/// candidates, and each end learns a direct path.
#[wasm_bindgen_test]
async fn a_channel_opens_whatever_the_ice_servers_and_candidate_lines() {
    use swarm_core::wire::IceServer;
    #[derive(Default)]
    struct Ends {
        offerer: Option<RtcConn>,
        answerer: Option<RtcConn>,
        early: Vec<Signal>,
        open: u32,
        paths: Vec<LinkPath>,
        log: Vec<String>,
    }
    let e = Rc::new(RefCell::new(Ends::default()));
    let dead_stun = [IceServer { urls: vec!["stun:127.0.0.1:9".into()], username: None, credential: None }];
    let bad_turn = vec![IceServer { urls: vec!["turn:127.0.0.1:9".into()], username: None, credential: None }];
    // Candidates cross as SDP attribute lines (`a=candidate:…`) without a mid.
    let mangle = |s: Signal| match s {
        Signal::Candidate { candidate, .. } if !candidate.is_empty() => {
            Signal::Candidate { candidate: format!("a={candidate}\r\n"), mid: None }
        }
        other => other,
    };
    let on_end = |e: &Rc<RefCell<Ends>>, ev: RtcEvent| match ev {
        RtcEvent::Open => e.borrow_mut().open += 1,
        RtcEvent::Path(p) => e.borrow_mut().paths.push(p),
        other => e.borrow_mut().log.push(format!("{other:?}")),
    };
    let e2 = e.clone();
    let offerer = RtcConn::offer(
        &dead_stun,
        Rc::new(ByteCounters::default()),
        Rc::new(move |ev| match ev {
            RtcEvent::Signal(Signal::Offer { sdp }) => {
                let e3 = e2.clone();
                let answerer = RtcConn::answer(
                    sdp,
                    &bad_turn,
                    Rc::new(ByteCounters::default()),
                    Rc::new(move |ev| match ev {
                        RtcEvent::Signal(s) => e3.borrow().offerer.as_ref().unwrap().on_signal(mangle(s)),
                        ev => on_end(&e3, ev),
                    }),
                )
                .expect("a refused TURN server does not stop the connection");
                for s in std::mem::take(&mut e2.borrow_mut().early) {
                    answerer.on_signal(s);
                }
                e2.borrow_mut().answerer = Some(answerer);
            }
            RtcEvent::Signal(s) => {
                let mut ends = e2.borrow_mut();
                match &ends.answerer {
                    Some(a) => a.on_signal(mangle(s)),
                    None => ends.early.push(mangle(s)),
                }
            }
            ev => on_end(&e2, ev),
        }),
    )
    .unwrap();
    e.borrow_mut().offerer = Some(offerer);
    for _ in 0..200 {
        if e.borrow().paths.len() == 2 {
            break;
        }
        sleep(50).await;
    }
    let ends = e.borrow();
    assert_eq!(ends.open, 2, "both ends open; log: {:?}", ends.log);
    assert_eq!(ends.paths.len(), 2, "both ends learnt their path; log: {:?}", ends.log);
    assert!(
        ends.paths.iter().all(|p| matches!(p, LinkPath::DirectHost | LinkPath::DirectReflexive)),
        "{:?}",
        ends.paths
    );
    ends.offerer.as_ref().unwrap().close();
    ends.answerer.as_ref().unwrap().close();
}
