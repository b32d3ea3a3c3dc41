//! The real tracker on port 0, spoken to by real websocket clients.

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use swarm_core::identity::Keypair;
use swarm_core::wire::{ErrorCode, FileMeta, PROTOCOL_VERSION};
use swarm_core::{ClientMsg, ManifestBuilder, PeerId, PeerKind, ServerMsg, Signal};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn start() -> String {
    start_with(tracker::Config::default(), std::future::pending()).await.0
}

async fn start_with(
    config: tracker::Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(tracker::serve(listener, config, shutdown));
    (format!("ws://{addr}/ws"), server)
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send_raw(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

async fn send(ws: &mut Ws, msg: &ClientMsg) {
    send_raw(ws, &msg.to_json()).await;
}

/// The next message, skipping replication orders (the tracker's repair loop may send them to
/// any live peer at any time; these tests are about other things).
async fn recv(ws: &mut Ws) -> ServerMsg {
    loop {
        let msg =
            tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("answer in time").unwrap().unwrap();
        if let Message::Text(t) = msg {
            match serde_json::from_str(t.as_str()).unwrap() {
                ServerMsg::Replicate { .. } | ServerMsg::Heartbeat => continue,
                m => return m,
            }
        }
    }
}

/// The tracker's origin as this socket dialled it.
fn origin(ws: &Ws) -> String {
    match ws.get_ref() {
        MaybeTlsStream::Plain(s) => format!("ws://{}", s.peer_addr().unwrap()),
        _ => panic!("a plain socket"),
    }
}

/// Says hello as `keys`, and answers the challenge signed for `signed_for` (the tracker's own
/// origin when `None`); the tracker's answer.
async fn prove(ws: &mut Ws, keys: &Keypair, signed_for: Option<&str>) -> ServerMsg {
    send(ws, &keys.hello(PeerKind::Native, None)).await;
    let ServerMsg::AuthChallenge { nonce } = recv(ws).await else { panic!("a challenge") };
    let url = signed_for.map_or_else(|| origin(ws), str::to_string);
    send(ws, &keys.proof(&nonce, &url, None)).await;
    recv(ws).await
}

async fn hello(ws: &mut Ws, secret: &str) -> PeerId {
    match prove(ws, &Keypair::from_secret(secret), None).await {
        ServerMsg::Welcome { peer_id, .. } => peer_id,
        other => panic!("expected welcome, got {other:?}"),
    }
}

fn error_code(m: &ServerMsg) -> ErrorCode {
    match m {
        ServerMsg::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

const SECRET_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SECRET_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[tokio::test]
async fn bad_input_gets_an_error_and_the_connection_lives_on() {
    let url = start().await;
    let mut ws = connect(&url).await;
    send_raw(&mut ws, "{not json").await;
    assert_eq!(error_code(&recv(&mut ws).await), ErrorCode::BadMessage);
    send_raw(&mut ws, r#"{"type":"launch_missiles"}"#).await;
    assert_eq!(error_code(&recv(&mut ws).await), ErrorCode::BadMessage);
    send(&mut ws, &ClientMsg::Heartbeat).await;
    assert_eq!(error_code(&recv(&mut ws).await), ErrorCode::NotWelcomed);
    let id = hello(&mut ws, SECRET_A).await;
    assert_eq!(id, PeerId::from_secret(SECRET_A), "the id is derived from the key");
    send_raw(&mut ws, "[]").await;
    assert_eq!(error_code(&recv(&mut ws).await), ErrorCode::BadMessage);
    send(&mut ws, &ClientMsg::Locate { req: 9, file: swarm_core::FileId([1; 32]) }).await;
    let m = recv(&mut ws).await;
    assert_eq!(error_code(&m), ErrorCode::UnknownFile);
    assert!(matches!(m, ServerMsg::Error { req: Some(9), .. }));
    let to = PeerId::from_secret("nobody");
    send(&mut ws, &ClientMsg::Signal { to, conn: 1, signal: Signal::Close { reason: "x".into() } }).await;
    assert_eq!(error_code(&recv(&mut ws).await), ErrorCode::UnknownPeer);
    // Still alive: a valid request gets a valid answer.
    send(&mut ws, &ClientMsg::Search { req: 2, query: String::new(), limit: 10 }).await;
    assert!(matches!(recv(&mut ws).await, ServerMsg::SearchResults { req: 2, .. }));
}

#[tokio::test]
async fn wrong_version_is_refused_clearly() {
    let url = start().await;
    let mut ws = connect(&url).await;
    send(&mut ws, &ClientMsg::Hello { version: 999, kind: PeerKind::Browser, key: String::new(), token: None }).await;
    assert_eq!(error_code(&recv(&mut ws).await), ErrorCode::UnsupportedVersion);
    // A peer of the version before keys: told which version this tracker speaks.
    let mut old = connect(&url).await;
    send_raw(&mut old, &format!(r#"{{"type":"hello","version":1,"kind":"native","secret":"{SECRET_A}"}}"#)).await;
    let m = recv(&mut old).await;
    assert_eq!(error_code(&m), ErrorCode::UnsupportedVersion);
    assert!(format!("{m:?}").contains("speaks 2"), "{m:?}");
}

/// A hello is a proof of the key, bound to this tracker: a signature made for another host (a
/// hostile tracker named in a link, relaying this tracker's challenge) or for another nonce
/// gets nobody in, and a bad key is refused clearly.
#[tokio::test]
async fn only_a_proof_for_this_tracker_and_this_challenge_gets_in() {
    let url = start().await;
    let keys = Keypair::from_secret(SECRET_A);
    let mut ws = connect(&url).await;
    let port = url.rsplit(':').next().unwrap().trim_end_matches("/ws").parse::<u16>().unwrap();
    for elsewhere in [format!("ws://evil.example:{port}"), format!("ws://127.0.0.1:{}", port.wrapping_add(1))] {
        let m = prove(&mut ws, &keys, Some(&elsewhere)).await;
        assert_eq!(error_code(&m), ErrorCode::WrongOrigin, "{elsewhere}: {m:?}");
        ws = connect(&url).await;
    }
    // A signature over another nonce (a replayed proof).
    send(&mut ws, &keys.hello(PeerKind::Native, None)).await;
    let ServerMsg::AuthChallenge { .. } = recv(&mut ws).await else { panic!("a challenge") };
    let replay = keys.proof(&[0; 32], &origin(&ws), None);
    send(&mut ws, &replay).await;
    assert_eq!(error_code(&recv(&mut ws).await), ErrorCode::BadSignature);
    // Not a key at all.
    let mut bad = connect(&url).await;
    send(
        &mut bad,
        &ClientMsg::Hello { version: PROTOCOL_VERSION, kind: PeerKind::Native, key: "short".into(), token: None },
    )
    .await;
    assert_eq!(error_code(&recv(&mut bad).await), ErrorCode::BadSignature);
    // `localhost` on a loopback socket is this tracker too.
    let mut local = connect(&url.replace("127.0.0.1", "localhost")).await;
    let m = prove(&mut local, &keys, Some(&format!("ws://localhost:{port}"))).await;
    assert!(matches!(m, ServerMsg::Welcome { .. }), "{m:?}");
}

#[tokio::test]
async fn publish_locate_search_and_signal_relay() {
    let url = start().await;
    let (mut a, mut b) = (connect(&url).await, connect(&url).await);
    let id_a = hello(&mut a, SECRET_A).await;
    let id_b = hello(&mut b, SECRET_B).await;
    let mut mb = ManifestBuilder::new(4);
    mb.push(b"abcd");
    mb.push(b"ef");
    let manifest = mb.finish();
    send(&mut a, &ClientMsg::Have { chunks: manifest.chunks.clone(), full: true }).await;
    let meta = FileMeta::public("holiday photos.zip", "application/zip");
    send(&mut a, &ClientMsg::Publish { req: 1, manifest: manifest.clone(), meta }).await;
    let ServerMsg::Published { req: 1, file } = recv(&mut a).await else { panic!("not published") };
    assert_eq!(file, manifest.file_id());

    send(&mut b, &ClientMsg::Search { req: 5, query: "photo".into(), limit: 10 }).await;
    let ServerMsg::SearchResults { files, .. } = recv(&mut b).await else { panic!() };
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].min_holders, 1);

    send(&mut b, &ClientMsg::Locate { req: 6, file }).await;
    let ServerMsg::Located { peers, holders, manifest: m, .. } = recv(&mut b).await else { panic!() };
    assert_eq!(m, manifest);
    assert_eq!(peers, vec![id_a.clone()]);
    assert_eq!(holders, vec![vec![0], vec![0]]);

    send(&mut b, &ClientMsg::Signal { to: id_a.clone(), conn: 77, signal: Signal::Offer { sdp: "v=0".into() } }).await;
    match recv(&mut a).await {
        ServerMsg::Signal { from, conn, signal } => {
            assert_eq!(from, id_b, "the relay names the true sender");
            assert_eq!(conn, 77);
            assert_eq!(signal, Signal::Offer { sdp: "v=0".into() });
        }
        other => panic!("{other:?}"),
    }

    // A leaves: its chunks have no holder any more.
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut b, &ClientMsg::Locate { req: 7, file }).await;
    let ServerMsg::Located { peers, .. } = recv(&mut b).await else { panic!() };
    assert!(peers.is_empty());
}

#[tokio::test]
async fn oversized_frames_are_refused_and_the_tracker_lives_on() {
    let url = start().await;
    let mut ws = connect(&url).await;
    let huge = "x".repeat(swarm_core::wire::MAX_MESSAGE_BYTES + 10);
    let _ = ws.send(Message::Text(huge.into())).await;
    // The connection is closed by the server; a new one works.
    let mut ws2 = connect(&url).await;
    hello(&mut ws2, SECRET_B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_same_data_dir_loses_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = tracker::Config { data_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (url, server) = start_with(config.clone(), async move {
        let _ = stop_rx.await;
    })
    .await;
    let mut a = connect(&url).await;
    hello(&mut a, SECRET_A).await;
    let mut mb = ManifestBuilder::new(4);
    mb.push(b"wxyz");
    let manifest = mb.finish();
    let meta = FileMeta::public("kept.txt", "text/plain");
    send(&mut a, &ClientMsg::Publish { req: 1, manifest: manifest.clone(), meta }).await;
    assert!(matches!(recv(&mut a).await, ServerMsg::Published { .. }));
    drop(a);
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();

    let (url, _server) = start_with(config, std::future::pending()).await;
    // The publisher comes back (its origin of the chunk was kept: another identity's claim
    // would be challenged first, see `a_restarted_tracker_does_not_trust_the_first_claimant`).
    let mut b = connect(&url).await;
    hello(&mut b, SECRET_A).await;
    send(&mut b, &ClientMsg::Locate { req: 3, file: manifest.file_id() }).await;
    let ServerMsg::Located { file, peers, .. } = recv(&mut b).await else { panic!("the file survived the restart") };
    assert_eq!(file, manifest.file_id());
    assert!(peers.is_empty(), "locations are soft state, re-announced by peers");
    // Until a peer announces its chunks again, it is not listed.
    send(&mut b, &ClientMsg::Search { req: 4, query: "kept".into(), limit: 5 }).await;
    let ServerMsg::SearchResults { files, .. } = recv(&mut b).await else { panic!() };
    assert!(files.is_empty(), "no copy of its chunk: not listed");
    send(&mut b, &ClientMsg::Have { chunks: manifest.chunks.clone(), full: true }).await;
    send(&mut b, &ClientMsg::Search { req: 5, query: "kept".into(), limit: 5 }).await;
    let ServerMsg::SearchResults { files, .. } = recv(&mut b).await else { panic!() };
    assert_eq!(files.len(), 1, "listed again once held");
    assert_eq!(files[0].min_holders, 1);
}

/// Every heartbeat is answered, so a peer that cannot see websocket pongs (a browser) can
/// tell a live node from one that went silent.
#[tokio::test]
async fn heartbeats_are_answered() {
    let url = start().await;
    let mut ws = connect(&url).await;
    hello(&mut ws, SECRET_A).await;
    for _ in 0..3 {
        send(&mut ws, &ClientMsg::Heartbeat).await;
        let answer = loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("in time").unwrap().unwrap();
            if let Message::Text(t) = msg {
                match serde_json::from_str(t.as_str()).unwrap() {
                    ServerMsg::Replicate { .. } => continue,
                    m => break m,
                }
            }
        };
        assert_eq!(answer, ServerMsg::Heartbeat);
    }
}

#[tokio::test]
async fn a_silent_peer_is_dropped_and_a_talking_one_is_not() {
    let config = tracker::Config { idle_timeout: Duration::from_millis(400), ..Default::default() };
    let (url, _server) = start_with(config, std::future::pending()).await;
    let (mut silent, mut talking) = (connect(&url).await, connect(&url).await);
    hello(&mut silent, SECRET_A).await;
    hello(&mut talking, SECRET_B).await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(&mut talking, &ClientMsg::Heartbeat).await;
    }
    // 800 ms of silence: past the idle timeout and the sweep that follows it.
    let end = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match silent.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    });
    end.await.expect("the silent peer's connection is closed");
    send(&mut talking, &ClientMsg::Heartbeat).await;
    send_raw(&mut talking, "{not json").await;
    assert_eq!(error_code(&recv(&mut talking).await), ErrorCode::BadMessage, "the talking peer is still served");
}

#[tokio::test]
async fn a_plain_http_request_to_the_websocket_path_is_refused() {
    let url = start().await;
    let addr = url.trim_start_matches("ws://").trim_end_matches("/ws").to_string();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}
