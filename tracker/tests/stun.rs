//! The tracker's STUN service against a real server on port 0: a binding request is
//! answered with the address it came from, `welcome` names the service, nothing else gets an
//! answer, and one source cannot make the tracker send without limit.

mod common;

use common::*;
use std::time::Duration;
use swarm_core::stun::{BindingRequest, MAX_GROWTH};
use swarm_core::ServerMsg;
use tokio::net::UdpSocket;

async fn start_with_stun(config: tracker::Config) -> (String, String, std::net::SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The default: the same port number as HTTP, on UDP.
    let stun = UdpSocket::bind(addr).await.unwrap();
    tokio::spawn(tracker::serve_with_stun(listener, Some(stun), config, std::future::pending()));
    (format!("ws://{addr}/ws"), addr.to_string(), addr)
}

async fn ask(sock: &UdpSocket, to: std::net::SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    sock.send_to(bytes, to).await.unwrap();
    let mut buf = [0u8; 1500];
    match tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => {
            assert_eq!(from, to, "answers come from the STUN port");
            Some(buf[..n].to_vec())
        }
        _ => None,
    }
}

#[tokio::test]
async fn binding_requests_are_answered_and_welcome_names_the_service() {
    let (url, host, stun_addr) = start_with_stun(tracker::Config::default()).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let req = BindingRequest::new();
    let answer = ask(&client, stun_addr, req.bytes()).await.expect("an answer");
    assert_eq!(req.mapped_address(&answer), Some(client.local_addr().unwrap()));
    assert!(answer.len() <= req.bytes().len() + MAX_GROWTH, "no amplification");

    let mut ws = connect(&url).await;
    let welcome = hello_answer(&mut ws, &secret(1), swarm_core::PeerKind::Native, None, None).await;
    let ServerMsg::Welcome { ice_servers, .. } = welcome else { panic!("welcome") };
    assert_eq!(ice_servers[0].urls, [format!("stun:127.0.0.1:{}", stun_addr.port())], "{host}");

    let (_, stats) = get_json(&host, "/api/stats").await;
    assert_eq!(stats["stun_answers"], 1, "{stats}");
}

#[tokio::test]
async fn anything_but_a_binding_request_gets_no_answer() {
    let (_, _, stun_addr) = start_with_stun(tracker::Config::default()).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(ask(&client, stun_addr, b"hello, is this STUN?").await, None);
    assert_eq!(ask(&client, stun_addr, &[0u8; 20]).await, None, "a zero header is no STUN message");
    let mut big = BindingRequest::new().bytes().to_vec();
    big.resize(1200, 0);
    let len = (big.len() - 20) as u16;
    big[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(ask(&client, stun_addr, &big).await, None, "oversized");
    // A response (as if the tracker were asked to answer its own kind) is dropped too.
    let req = BindingRequest::new();
    let answer = ask(&client, stun_addr, req.bytes()).await.unwrap();
    assert_eq!(ask(&client, stun_addr, &answer).await, None);
    // Still serving after all that.
    assert!(ask(&client, stun_addr, BindingRequest::new().bytes()).await.is_some());
}

#[tokio::test]
async fn one_source_is_rate_limited() {
    let (_, host, stun_addr) = start_with_stun(tracker::Config::default()).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sent = 400;
    for _ in 0..sent {
        client.send_to(BindingRequest::new().bytes(), stun_addr).await.unwrap();
    }
    let mut answers = 0;
    let mut buf = [0u8; 1500];
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf)).await {
        answers += 1;
    }
    let limit = (2.0 * tracker::stun::PER_IP_PER_SEC) as usize;
    assert!(answers >= limit / 2 && answers <= limit + 20, "{answers} answers to {sent} requests");
    let (_, stats) = get_json(&host, "/api/stats").await;
    assert!(stats["stun_rate_limited"].as_u64().unwrap() > 0, "{stats}");
}
