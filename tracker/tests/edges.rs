//! The tracker's edges against a real server on loopback: slow and idle HTTP connections are
//! closed after the header timeout, connections are capped at accept (per address and in
//! all) while an honest client still gets in, a flood of signals at one peer does not
//! disconnect it, oversize signals are refused, the web app carries its CSP, and TURN
//! credentials are per peer, short-lived and verifiable.

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use swarm_core::wire::ErrorCode;
use swarm_core::{ClientMsg, ServerMsg, Signal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `host` from the loopback address `from` (127.0.0.0/8 is all ours).
async fn connect_from(from: [u8; 4], host: &str) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((from, 0))).unwrap();
    s.connect(host.parse().unwrap()).await.unwrap()
}

/// Reads until the server closes; `None` if it is still open after `wait`.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET /healthz` on a fresh connection from `from`; the status line.
async fn healthz_from(from: [u8; 4], host: &str) -> String {
    let mut s = connect_from(from, host).await;
    let _ = s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await;
    let got = closed_within(&mut s, Duration::from_secs(5)).await.unwrap_or_default();
    String::from_utf8_lossy(&got).lines().next().unwrap_or("").to_string()
}

fn quick() -> tracker::Config {
    tracker::Config { header_timeout: Duration::from_millis(300), ..Default::default() }
}

#[tokio::test]
async fn slowloris_and_idle_connections_are_closed_after_the_header_timeout() {
    let (_, host) = start(quick()).await;
    // Twenty connections that each send part of a header, then one byte every 100 ms.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&host).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ").await.unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    let trickle = async {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            for s in &mut slow {
                let _ = s.write_all(b"a").await;
            }
        }
    };
    // An honest client meanwhile is served.
    let (_, honest) = tokio::join!(trickle, healthz_from([127, 0, 0, 1], &host));
    assert_eq!(honest, "HTTP/1.1 200 OK");
    for s in &mut slow {
        assert!(closed_within(s, Duration::from_millis(200)).await.is_some(), "a trickled header is cut off");
    }
    assert!(started.elapsed() < Duration::from_secs(4));

    // A kept-alive connection that asked once and then idles is closed too.
    let mut idle = TcpStream::connect(&host).await.unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut idle, Duration::from_secs(2)).await.is_some(), "idle keep-alive is closed");
}

#[tokio::test]
async fn connections_are_capped_at_accept_per_address_and_in_all() {
    let mut config = quick();
    config.header_timeout = Duration::from_secs(30); // the held connections stay while we look
    config.limits.max_conns_per_ip = 4;
    config.limits.max_connections = 10;
    let (url, host) = start(config).await;
    // Four silent connections from one address: no byte of HTTP, no upgrade.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from([127, 0, 0, 1], &host).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fifth = connect_from([127, 0, 0, 1], &host).await;
    let got = closed_within(&mut fifth, Duration::from_secs(2)).await.expect("the fifth is closed at once");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 503") && text.contains("too many connections from 127.0.0.1"), "{text}");
    // A websocket from that address is refused before its upgrade.
    assert!(tokio_tungstenite::connect_async(&url).await.is_err(), "no upgrade past the cap");
    // Another address is served.
    assert_eq!(healthz_from([127, 0, 0, 2], &host).await, "HTTP/1.1 200 OK");
    // Six more addresses fill the global cap of ten; the eleventh connection is refused.
    for i in 3..9 {
        held.push(connect_from([127, 0, 0, i], &host).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = connect_from([127, 0, 0, 20], &host).await;
    let got = closed_within(&mut over, Duration::from_secs(2)).await.expect("closed at once");
    let text = String::from_utf8_lossy(&got);
    assert!(text.is_empty() || text.contains("connections open, its limit"), "{text}");
    // Places are given back when connections close.
    held.truncate(2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ws = connect(&url).await;
    hello(&mut ws, &secret(1)).await;
    let (status, metrics) = http_get(&host, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("pp_connections_refused_total{reason=\"per_address\"} 2"), "{metrics}");
    assert!(metrics.contains("pp_connections_refused_total{reason=\"global\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_signal_flood_does_not_disconnect_its_target() {
    let mut config = quick();
    config.limits.outbox_frames = 64;
    config.limits.outbox_bytes = 256 * 1024;
    config.limits.msgs_per_sec = 0; // the flood is not stopped by the rate limit
    config.send_timeout = Duration::from_secs(30);
    let (url, _) = start(config).await;
    let mut victim = connect(&url).await;
    let victim_id = hello(&mut victim, &secret(1)).await;
    let mut attacker = connect(&url).await;
    hello(&mut attacker, &secret(2)).await;
    // The victim reads nothing while 1,000 signals of 32 KiB (32 MB) are sent at it.
    let sdp = "v".repeat(32 * 1024);
    let flood = async {
        use futures_util::SinkExt;
        for conn in 0..1000u64 {
            let msg = ClientMsg::Signal { to: victim_id.clone(), conn, signal: Signal::Offer { sdp: sdp.clone() } };
            let text = tokio_tungstenite::tungstenite::Message::Text(msg.to_json().into());
            if attacker.feed(text).await.is_err() {
                break;
            }
        }
        let _ = attacker.flush().await;
    };
    tokio::time::timeout(Duration::from_secs(30), flood).await.expect("the flood is sent");
    // The attacker hears that its signals were dropped.
    let mut busy = 0;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), next_frame(&mut attacker)).await {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            let msg: ServerMsg = serde_json::from_str(t.as_str()).unwrap();
            busy += matches!(msg, ServerMsg::Error { code: ErrorCode::PeerBusy | ErrorCode::RateLimited, .. }) as u32;
        }
    }
    assert!(busy > 0, "the sender is told");
    // The victim, reading now, gets some of the signals and is still connected.
    let mut signals = 0;
    send(&mut victim, &ClientMsg::Search { req: 9, query: String::new(), limit: 1 }).await;
    loop {
        match recv(&mut victim).await {
            ServerMsg::Signal { .. } => signals += 1,
            ServerMsg::SearchResults { req: 9, .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(signals > 0 && signals < 1000, "{signals} signals delivered");
}

#[tokio::test]
async fn oversize_signals_are_refused() {
    let mut config = quick();
    config.limits.max_signal_bytes = 4096;
    let (url, _) = start(config).await;
    let mut b = connect(&url).await;
    let id_b = hello(&mut b, &secret(1)).await;
    let mut a = connect(&url).await;
    hello(&mut a, &secret(2)).await;
    let big = Signal::Offer { sdp: "v".repeat(5000) };
    send(&mut a, &ClientMsg::Signal { to: id_b.clone(), conn: 1, signal: big }).await;
    let m = recv(&mut a).await;
    assert_eq!(error_code(&m), ErrorCode::TooLarge);
    let ServerMsg::Error { message, .. } = m else { unreachable!() };
    assert!(message.contains("4096"), "{message}");
    let small = Signal::Offer { sdp: "v".repeat(3000) };
    send(&mut a, &ClientMsg::Signal { to: id_b, conn: 2, signal: small }).await;
    match recv(&mut b).await {
        ServerMsg::Signal { conn, .. } => assert_eq!(conn, 2, "only the one that fits arrives"),
        other => panic!("expected the small signal, got {other:?}"),
    }
}

#[tokio::test]
async fn the_web_app_is_served_with_its_csp_and_never_framed() {
    let dir = tempfile::tempdir().unwrap();
    let loader = "import init from '/app.js'; await init();";
    std::fs::write(dir.path().join("index.html"), format!("<html><script type=\"module\">{loader}</script></html>"))
        .unwrap();
    std::fs::write(dir.path().join("app.js"), "export default async function init() {}").unwrap();
    let config = tracker::Config { web_dir: Some(dir.path().to_path_buf()), ..quick() };
    let (_, host) = start(config).await;
    let mut s = TcpStream::connect(&host).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let page = String::from_utf8(closed_within(&mut s, Duration::from_secs(5)).await.unwrap()).unwrap();
    let head = page.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    let csp = head.lines().find_map(|l| l.strip_prefix("content-security-policy: ")).expect("a CSP");
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self' 'wasm-unsafe-eval' 'sha256-"));
    assert!(head.contains("x-frame-options: deny"));
    let mut s = TcpStream::connect(&host).await.unwrap();
    s.write_all(format!("GET /app.js HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let js = String::from_utf8(closed_within(&mut s, Duration::from_secs(5)).await.unwrap()).unwrap();
    assert!(js.to_ascii_lowercase().contains("content-security-policy: frame-ancestors 'none'"), "{js}");
}

#[tokio::test]
async fn turn_credentials_are_per_peer_short_lived_and_verify() {
    let mut config = quick();
    config.ice_servers =
        vec![tracker::ice::parse_ice_server("turn:turn.example.org:3478", tracker::ice::TurnAuth::Secret).unwrap()];
    config.turn = Some(tracker::ice::TurnSecret { secret: "shared".into(), ttl: Duration::from_secs(120) });
    let (url, _) = start(config).await;
    let mut ws = connect(&url).await;
    let ServerMsg::Welcome { peer_id, ice_servers, .. } =
        hello_answer(&mut ws, &secret(1), swarm_core::PeerKind::Native, None, None).await
    else {
        panic!("welcome")
    };
    let turn = ice_servers.iter().find(|s| s.urls[0].starts_with("turn:")).expect("the TURN server");
    let (user, cred) = (turn.username.clone().unwrap(), turn.credential.clone().unwrap());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (expiry, who) = user.split_once(':').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert_eq!(who, peer_id.0, "the credential names the peer it was given to");
    assert!((now + 110..=now + 130).contains(&expiry), "expires after the ttl: {expiry} vs now {now}");
    assert!(tracker::ice::verify_turn_credentials("shared", &user, &cred, now));
    assert!(!tracker::ice::verify_turn_credentials("shared", &user, &cred, expiry + 1), "expired later");
    assert!(!tracker::ice::verify_turn_credentials("other", &user, &cred, now));
}
