//! Data relay through the tracker: binary frames reach the recipient naming the true sender;
//! unknown recipients and oversized frames are refused; relayed bytes are counted.

mod common;
use common::*;
use futures_util::SinkExt;
use swarm_core::relay::{RelayFrame, MAX_RELAY_PAYLOAD};
use swarm_core::wire::ErrorCode;
use swarm_core::PeerId;
use tokio_tungstenite::tungstenite::Message;

async fn send_frame(ws: &mut Ws, f: &RelayFrame) {
    ws.send(Message::Binary(f.encode().unwrap().into())).await.unwrap();
}

#[tokio::test]
async fn relay_frames_arrive_with_the_true_sender() {
    let (url, host) = start(tracker::Config::default()).await;
    let (mut a, mut b, mut c) = (connect(&url).await, connect(&url).await, connect(&url).await);
    let id_a = hello(&mut a, &secret(1)).await;
    let id_b = hello(&mut b, &secret(2)).await;
    let id_c = hello(&mut c, &secret(3)).await;
    let payload: Vec<u8> = (0..MAX_RELAY_PAYLOAD).map(|i| i as u8).collect();
    send_frame(&mut a, &RelayFrame { peer: id_b.clone(), conn: 42, payload: payload.clone() }).await;
    let Some(Message::Binary(got)) = next_frame(&mut b).await else { panic!("no relay frame") };
    let got = RelayFrame::decode(&got).unwrap();
    assert_eq!(got, RelayFrame { peer: id_a.clone(), conn: 42, payload: payload.clone() }, "names the sender");

    // C cannot pretend to be A: whatever it writes in the peer field names the recipient.
    send_frame(&mut c, &RelayFrame { peer: id_b.clone(), conn: 1, payload: b"hi".to_vec() }).await;
    let Some(Message::Binary(got)) = next_frame(&mut b).await else { panic!() };
    assert_eq!(RelayFrame::decode(&got).unwrap().peer, id_c);

    let (_, stats) = get_json(&host, "/api/stats").await;
    assert_eq!(stats["relay_frames"], 2);
    assert_eq!(stats["relay_bytes"].as_u64().unwrap(), (24 + payload.len() + 24 + 2) as u64);
}

#[tokio::test]
async fn unknown_recipients_and_bad_frames_are_refused() {
    let (url, host) = start(tracker::Config::default()).await;
    let mut a = connect(&url).await;
    let id_a = hello(&mut a, &secret(1)).await;
    let nobody = PeerId::from_secret("nobody");
    send_frame(&mut a, &RelayFrame { peer: nobody, conn: 1, payload: vec![1] }).await;
    assert_eq!(error_code(&recv(&mut a).await), ErrorCode::UnknownPeer);
    send_frame(&mut a, &RelayFrame { peer: id_a.clone(), conn: 1, payload: vec![1] }).await;
    assert_eq!(error_code(&recv(&mut a).await), ErrorCode::UnknownPeer, "not to itself");
    a.send(Message::Binary(vec![0u8; 10].into())).await.unwrap();
    assert_eq!(error_code(&recv(&mut a).await), ErrorCode::BadMessage, "truncated");
    a.send(Message::Binary(vec![0u8; 24 + MAX_RELAY_PAYLOAD + 1].into())).await.unwrap();
    assert_eq!(error_code(&recv(&mut a).await), ErrorCode::TooLarge);
    // Still alive.
    send(&mut a, &swarm_core::ClientMsg::Search { req: 1, query: String::new(), limit: 1 }).await;
    assert!(matches!(recv(&mut a).await, swarm_core::ServerMsg::SearchResults { req: 1, .. }));
    let (_, stats) = get_json(&host, "/api/stats").await;
    assert_eq!(stats["relay_frames"], 0);
    assert_eq!(stats["relay_refused"], 4);
}

#[tokio::test]
async fn relay_to_a_peer_that_does_not_read_is_bounded() {
    let mut config = tracker::Config::default();
    config.limits.outbox_bytes = 256 * 1024;
    config.limits.relay_bytes_per_sec = 0;
    config.limits.msgs_per_sec = 0;
    let (url, host) = start(config).await;
    let (mut a, mut b) = (connect(&url).await, connect(&url).await);
    hello(&mut a, &secret(1)).await;
    let id_b = hello(&mut b, &secret(2)).await;
    // B never reads. A pushes 64 MiB at it: the tracker must drop, not buffer.
    let payload = vec![7u8; MAX_RELAY_PAYLOAD];
    let frame = RelayFrame { peer: id_b, conn: 1, payload }.encode().unwrap();
    let mut busy = false;
    for _ in 0..1000 {
        a.send(Message::Binary(frame.clone().into())).await.unwrap();
    }
    while let Ok(Some(Message::Text(t))) =
        tokio::time::timeout(std::time::Duration::from_secs(2), async { next_frame(&mut a).await }).await
    {
        if t.as_str().contains("peer_busy") {
            busy = true;
            break;
        }
    }
    assert!(busy, "the sender is told the recipient is busy");
    let (_, stats) = get_json(&host, "/api/stats").await;
    assert!(stats["relay_dropped"].as_u64().unwrap() > 0);
    assert!(stats["relay_bytes"].as_u64().unwrap() < 1000 * frame.len() as u64);
    drop(b);
}
