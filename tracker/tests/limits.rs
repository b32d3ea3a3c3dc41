//! Limits against a real tracker: each refusal comes with a clear error, abuse closes the
//! connection, and nothing else is harmed.

mod common;
use common::*;
use futures_util::SinkExt;
use swarm_core::wire::{ErrorCode, FileMeta};
use swarm_core::{ClientMsg, ManifestBuilder, ServerMsg, Signal};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn message_rate_limit_then_close_on_abuse() {
    let mut config = tracker::Config::default();
    config.limits.msgs_per_sec = 10;
    config.limits.msg_burst = 10;
    config.limits.abuse_limit = 50;
    let (url, host) = start(config).await;
    let mut a = connect(&url).await;
    hello(&mut a, &secret(1)).await;
    for req in 0..10 {
        send(&mut a, &ClientMsg::Search { req, query: String::new(), limit: 1 }).await;
    }
    for req in 0..10 {
        assert!(matches!(recv(&mut a).await, ServerMsg::SearchResults { req: r, .. } if r == req));
    }
    send(&mut a, &ClientMsg::Search { req: 99, query: String::new(), limit: 1 }).await;
    let m = recv(&mut a).await;
    assert_eq!(error_code(&m), ErrorCode::RateLimited);
    let ServerMsg::Error { message, .. } = m else { unreachable!() };
    assert!(message.contains("rate limit"), "{message}");
    // Keep hammering: the tracker closes the connection (after saying why).
    for _ in 0..200 {
        if futures_util::SinkExt::send(&mut a, Message::Text(ClientMsg::Heartbeat.to_json().into())).await.is_err() {
            break;
        }
    }
    let mut told = false;
    // Reads until the tracker closes the connection (next_frame panics after 5 s of silence).
    while let Some(frame) = next_frame(&mut a).await {
        if let Message::Text(t) = frame {
            told |= t.as_str().contains("persistently");
        }
    }
    assert!(told, "closed with a reason");
    let (_, st) = get_json(&host, "/api/stats").await;
    assert!(st["rate_limited"].as_u64().unwrap() > 50);
    assert_eq!(st["closed_abuse"], 1);
    // Others are unaffected.
    let mut b = connect(&url).await;
    hello(&mut b, &secret(2)).await;
}

#[tokio::test]
async fn peer_limit_refuses_hello() {
    let mut config = tracker::Config::default();
    config.limits.max_peers = 2;
    let (url, _) = start(config).await;
    let (mut a, mut b, mut c) = (connect(&url).await, connect(&url).await, connect(&url).await);
    hello(&mut a, &secret(1)).await;
    hello(&mut b, &secret(2)).await;
    let m = hello_answer(&mut c, &secret(3), swarm_core::PeerKind::Browser, None, None).await;
    assert_eq!(error_code(&m), ErrorCode::LimitReached);
    assert!(next_frame(&mut c).await.is_none(), "then closed");
    // A known peer reconnecting still gets in (it replaces its old connection).
    let mut a2 = connect(&url).await;
    hello(&mut a2, &secret(1)).await;
    assert!(next_frame(&mut a).await.is_none(), "the old connection is closed");
    // When one leaves, a newcomer fits.
    drop(b);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut d = connect(&url).await;
    hello(&mut d, &secret(4)).await;
}

#[tokio::test]
async fn connections_per_address_are_limited() {
    let mut config = tracker::Config::default();
    config.limits.max_conns_per_ip = 2;
    let (url, host) = start(config).await;
    let (_a, mut b) = (connect(&url).await, connect(&url).await);
    // The third is refused at accept, before any upgrade: a 503 that says why, then closed.
    assert!(tokio_tungstenite::connect_async(&url).await.is_err());
    let mut c = tokio::net::TcpStream::connect(&host).await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut c, &mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("too many connections from 127.0.0.1"), "{answer}");
    hello(&mut b, &secret(2)).await;
}

/// Connects with a forwarding header, as a reverse proxy would (or a client pretending).
async fn connect_forwarded(url: &str, header: &str, value: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_counted() {
    let mut config = tracker::Config::default();
    config.limits.max_conns_per_ip = 1;
    config.trusted_proxies = tracker::client_addr::TrustedProxies::parse(["127.0.0.1/32"]).unwrap();
    let (url, _) = start(config).await;
    let mut a = connect_forwarded(&url, "x-forwarded-for", "6.6.6.6, 198.51.100.1").await;
    hello(&mut a, &secret(1)).await;
    let mut again = connect_forwarded(&url, "forwarded", "for=\"198.51.100.1:5000\"").await;
    let m = recv(&mut again).await;
    assert_eq!(error_code(&m), ErrorCode::LimitReached);
    let ServerMsg::Error { message, .. } = m else { unreachable!() };
    assert!(message.contains("198.51.100.1"), "names the client, not the proxy: {message}");
    let mut b = connect_forwarded(&url, "x-forwarded-for", "198.51.100.1, 198.51.100.2").await;
    hello(&mut b, &secret(2)).await;
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let mut config = tracker::Config::default();
    config.limits.max_conns_per_ip = 1;
    config.trusted_proxies = tracker::client_addr::TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
    let (url, host) = start(config).await;
    let mut a = connect_forwarded(&url, "x-forwarded-for", "198.51.100.1").await;
    hello(&mut a, &secret(1)).await;
    // Counted by its own address, at accept: refused before its headers are read.
    let mut b = tokio::net::TcpStream::connect(&host).await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut b, &mut answer).await.unwrap();
    assert!(answer.contains("too many connections from 127.0.0.1"), "counted by its own address: {answer}");
}

#[tokio::test]
async fn files_per_peer_and_manifest_size_are_limited() {
    let mut config = tracker::Config::default();
    config.limits.max_files_per_peer = 2;
    config.limits.max_manifest_chunks = 3;
    let (url, host) = start(config).await;
    let mut a = connect(&url).await;
    hello(&mut a, &secret(1)).await;
    let manifest = |seed: u8, chunks: usize| {
        let mut mb = ManifestBuilder::new(4);
        for i in 0..chunks {
            mb.push(&[seed, i as u8, 0, 0]);
        }
        mb.finish()
    };
    let meta = || FileMeta::public("f", "text/plain");
    send(&mut a, &ClientMsg::Publish { req: 1, manifest: manifest(1, 4), meta: meta() }).await;
    let m = recv(&mut a).await;
    assert_eq!(error_code(&m), ErrorCode::LimitReached);
    assert!(matches!(&m, ServerMsg::Error { req: Some(1), message, .. } if message.contains("--max-manifest-chunks")));
    let mut published = Vec::new();
    for seed in 2..4 {
        send(&mut a, &ClientMsg::Publish { req: seed as u32, manifest: manifest(seed, 1), meta: meta() }).await;
        let ServerMsg::Published { file, .. } = recv(&mut a).await else { panic!() };
        published.push(file);
    }
    send(&mut a, &ClientMsg::Publish { req: 9, manifest: manifest(9, 1), meta: meta() }).await;
    let m = recv(&mut a).await;
    assert_eq!(error_code(&m), ErrorCode::LimitReached);
    assert!(matches!(&m, ServerMsg::Error { req: Some(9), message, .. } if message.contains("published 2 files")));
    // Re-publishing a known file is not a new file.
    send(&mut a, &ClientMsg::Publish { req: 10, manifest: manifest(2, 1), meta: meta() }).await;
    assert!(matches!(recv(&mut a).await, ServerMsg::Published { req: 10, .. }));
    let (_, st) = get_json(&host, "/api/stats").await;
    assert_eq!(st["files"], 2);
}

#[tokio::test]
async fn bad_input_and_departed_peers_damage_nothing() {
    let (url, host) = start(tracker::Config::default()).await;
    let (mut a, mut b) = (connect(&url).await, connect(&url).await);
    hello(&mut a, &secret(1)).await;
    let id_b = hello(&mut b, &secret(2)).await;
    for junk in ["", "null", "{\"type\":\"publish\"}", "{\"type\":\"have\",\"chunks\":[\"zz\"],\"full\":true}"] {
        futures_util::SinkExt::send(&mut a, Message::Text(junk.into())).await.unwrap();
        assert_eq!(error_code(&recv(&mut a).await), ErrorCode::BadMessage, "{junk:?}");
    }
    let keys = swarm_core::identity::Keypair::from_secret(&secret(1));
    send(&mut a, &keys.hello(swarm_core::PeerKind::Native, None)).await;
    assert_eq!(error_code(&recv(&mut a).await), ErrorCode::NotWelcomed, "second hello");
    // Signalling to a peer that left.
    drop(b);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    send(&mut a, &ClientMsg::Signal { to: id_b, conn: 3, signal: Signal::Close { reason: "bye".into() } }).await;
    assert_eq!(error_code(&recv(&mut a).await), ErrorCode::UnknownPeer);
    send(&mut a, &ClientMsg::Locate { req: 4, file: swarm_core::FileId([9; 32]) }).await;
    assert_eq!(error_code(&recv(&mut a).await), ErrorCode::UnknownFile);
    let (status, st) = get_json(&host, "/api/stats").await;
    assert_eq!(status, 200);
    assert_eq!(st["peers"], 1);
    assert_eq!(st["files"], 0);
}

/// Before `welcome` a connection may send only small messages (a hello is a few hundred
/// bytes), and only a few: the tracker buffers little for a stranger.
#[tokio::test]
async fn an_unwelcomed_connection_is_bounded() {
    let (url, _) = start(tracker::Config::default()).await;
    let mut ws = connect(&url).await;
    ws.send(Message::Text("x".repeat(5_000).into())).await.unwrap();
    assert!(next_frame(&mut ws).await.is_none(), "a large message before hello closes the connection");

    let mut ws = connect(&url).await;
    for _ in 0..16 {
        send(&mut ws, &ClientMsg::Heartbeat).await;
        assert_eq!(error_code(&recv(&mut ws).await), ErrorCode::NotWelcomed);
    }
    send(&mut ws, &ClientMsg::Heartbeat).await;
    assert!(next_frame(&mut ws).await.is_none(), "the 17th message before hello closes the connection");

    // Once welcomed, the full limit applies.
    let mut ws = connect(&url).await;
    hello(&mut ws, &secret(5)).await;
    ws.send(Message::Text("x".repeat(100_000).into())).await.unwrap();
    assert_eq!(error_code(&recv(&mut ws).await), ErrorCode::BadMessage);
}

/// Message bytes are paced: a connection that sends faster than its byte rate is not read
/// again until it may go on, and two connections from one address share the address's rate. Nothing is refused or lost: every message is answered, later. (The bound
/// is a lower one: pacing can only make this slower, whatever the machine's load.)
/// A tracker config that paces message bytes (no address exempt): `per_conn` and `per_ip`
/// bytes a second after a 100 kB burst.
fn paced(per_conn: u64, per_ip: u64) -> tracker::Config {
    let mut config = tracker::Config { limit_exempt: Default::default(), ..Default::default() };
    config.limits.msg_bytes_per_sec = per_conn;
    config.limits.msg_bytes_per_sec_per_ip = per_ip;
    config.limits.msg_burst_bytes = 100_000;
    config
}

#[tokio::test]
async fn message_bytes_are_paced_per_connection_and_per_address() {
    let (url, host) = start(paced(200_000, 200_000)).await;
    let big = |req| ClientMsg::Search { req, query: "x".repeat(100_000), limit: 1 };
    let started = std::time::Instant::now();
    // Two connections from 127.0.0.1, 500 kB each: 1 MB at 200 kB/s for the address after a
    // 100 kB burst (alone, each connection's own rate would let them through in 2 s).
    let run = |n: u32| {
        let url = url.clone();
        async move {
            let mut ws = connect(&url).await;
            hello(&mut ws, &secret(n)).await;
            for req in 0..5 {
                send(&mut ws, &big(req)).await;
            }
            search_answers(&mut ws, 5, "a paced message is answered, not refused").await;
        }
    };
    tokio::join!(run(1), run(2));
    let took = started.elapsed();
    // The tenth message is read once the eight before it, past the burst, are paid for: 4 s.
    assert!(took >= std::time::Duration::from_millis(3_500), "1 MB at 200 kB/s took only {took:?}");
    let (_, st) = get_json(&host, "/api/stats").await;
    assert!(st["read_pauses"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["rate_limited"], 0, "paced, never refused: {st}");
}

/// A connection whose reading is paused for its message bytes still gets what it is sent:
/// a signal from another peer reaches it while its own messages wait to be paid for (a paused
/// peer that heard nothing kept a flooded seeder's downloaders from connecting to it).
#[tokio::test]
async fn a_paced_connection_still_receives() {
    let (url, _host) = start(paced(100_000, 10_000_000)).await;
    let mut paced = connect(&url).await;
    let paced_id = hello(&mut paced, &secret(1)).await;
    let mut other = connect(&url).await;
    hello(&mut other, &secret(2)).await;
    // 400 kB at 100 kB/s past a 100 kB burst: after handling it, the tracker reads nothing of
    // this connection for 3 s.
    send(&mut paced, &ClientMsg::Search { req: 1, query: "x".repeat(400_000), limit: 1 }).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sent = std::time::Instant::now();
    let offer = Signal::Offer { sdp: "v=0".into() };
    send(&mut other, &ClientMsg::Signal { to: paced_id, conn: 9, signal: offer }).await;
    loop {
        match recv(&mut paced).await {
            ServerMsg::Signal { conn: 9, .. } => break,
            ServerMsg::SearchResults { .. } | ServerMsg::Heartbeat => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let took = sent.elapsed();
    assert!(took < std::time::Duration::from_millis(1_500), "the signal waited {took:?} for the pause to end");
}

/// A search is paid for by the name index entries it looks at (`search_bytes_per_file`), so a
/// stranger cannot keep the swarm's lock busy with searches that cost a few bytes each. Same
/// searches, same files, with the charge and without it.
#[tokio::test]
async fn searches_are_charged_by_the_entries_they_look_at() {
    let three_searches = |per_file: u64| async move {
        let mut config = paced(100_000, 10_000_000);
        config.limits.search_bytes_per_file = per_file;
        let (host, mut ws) = three_files(config).await;
        let started = std::time::Instant::now();
        for req in 0..3 {
            send(&mut ws, &ClientMsg::Search { req, query: "f".into(), limit: 10 }).await;
        }
        search_answers(&mut ws, 3, "a charged search is answered, not refused").await;
        let (_, st) = get_json(&host, "/api/stats").await;
        (started.elapsed(), st["read_pauses"].as_u64().unwrap())
    };
    // 3 files at 100 kB each: 300 kB a search at 100 kB/s past a 100 kB burst; the third
    // search is read once the first two are paid for (about 5 s).
    let (charged, pauses) = three_searches(100_000).await;
    let (free, free_pauses) = three_searches(0).await;
    eprintln!("three searches: {charged:?} charged ({pauses} pauses), {free:?} free ({free_pauses} pauses)");
    assert!(charged >= std::time::Duration::from_secs(4), "charged searches went through in {charged:?}");
    assert!(pauses >= 2, "{pauses} read pauses");
    assert_eq!(free_pauses, 0, "uncharged searches of a few bytes are not paced");
}

/// Reads paced at 100 kB/s (100 kB burst) per address, each entry walked costing `per_entry`.
fn reads_at(per_entry: u64) -> tracker::Config {
    let mut config = paced(100_000, 100_000);
    config.limits.search_bytes_per_file = per_entry;
    config
}

/// Three files named f0..f2 published by one peer of a tracker with `config`; its address.
async fn three_files(config: tracker::Config) -> (String, Ws) {
    let (url, host) = start(config).await;
    let mut ws = connect(&url).await;
    hello(&mut ws, &secret(1)).await;
    for seed in 0..3u8 {
        let mut mb = ManifestBuilder::new(4);
        mb.push(&[seed, 0, 0, 0]);
        let meta = FileMeta::public(format!("f{seed}"), "text/plain");
        send(&mut ws, &ClientMsg::Publish { req: u32::from(seed), manifest: mb.finish(), meta }).await;
        assert!(matches!(recv(&mut ws).await, ServerMsg::Published { .. }));
    }
    (host, ws)
}

/// `GET /api/search` is charged per address like a websocket search: a search that looked
/// at 3 entries at 100 kB each puts the address 200 kB past its 100 kB burst, and its next
/// REST read is refused with 429 and `Retry-After` before any work; without the charge the
/// same reads all go through.
#[tokio::test]
async fn rest_searches_are_charged_and_refused_with_retry_after() {
    let (host, _ws) = three_files(reads_at(100_000)).await;
    let (status, body) = get_json(&host, "/api/search?q=f").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["files"].is_array(), "{body}"); // (none available: no copy was announced; looked at all the same)
    let (status, head, body) = http_get_with_head(&host, "/api/search?q=f").await;
    assert_eq!(status, 429, "the second search went through: {body}");
    let retry: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: ").or_else(|| l.strip_prefix("Retry-After: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {head}"));
    assert!((1..=3).contains(&retry), "Retry-After: {retry}");
    assert!(body.contains("too many requests"), "{body}");

    let (host, _ws) = three_files(reads_at(0)).await;
    for _ in 0..5 {
        let (status, body) = get_json(&host, "/api/search?q=f").await;
        assert_eq!(status, 200, "an uncharged search was refused: {body}");
    }
}

/// `/metrics` and `/api/stats` walk every chunk under the swarm's lock (their copies against R):
/// charged for it like a search, so a scrape of 3 files' chunks at 100 kB an entry leaves the
/// address in debt and its next read is refused; without the charge both keep answering.
#[tokio::test]
async fn stats_and_metrics_are_charged_by_what_they_walk() {
    let (host, _ws) = three_files(reads_at(100_000)).await;
    let (status, body) = http_get(&host, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(&host, "/api/stats").await;
    assert_eq!(status, 429, "a read past the budget went through: {body}");

    let (host, _ws) = three_files(reads_at(0)).await;
    for path in ["/metrics", "/api/stats", "/metrics", "/api/stats"] {
        assert_eq!(http_get(&host, path).await.0, 200, "{path} refused without a charge");
    }
}

/// `GET /api/files/{id}` is charged for the chunks its health walks (four walks of each) and
/// its holders: at 100 kB an entry, the first detail of a one-chunk file puts the address past
/// its burst and the next read waits; at 0 every read goes through.
#[tokio::test]
async fn a_file_detail_is_charged_by_the_chunks_it_walks() {
    let mut mb = ManifestBuilder::new(4);
    mb.push(&[0, 0, 0, 0]);
    let path = format!("/api/files/{}", mb.finish().file_id());
    let (host, _ws) = three_files(reads_at(100_000)).await;
    let (status, body) = http_get(&host, &path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(http_get(&host, &path).await.0, 429, "a detail read past the budget went through");

    let (host, _ws) = three_files(reads_at(0)).await;
    for _ in 0..4 {
        assert_eq!(http_get(&host, &path).await.0, 200, "refused without a charge");
    }
}
