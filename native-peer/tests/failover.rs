//! Failover between trackers: a peer given several tracker URLs joins through the first that
//! answers, moves to another when the one it is on dies (or goes silent) and keeps working
//! there, and when none answers says which URLs it tried, each cause once.

mod common;

use native_peer::node::{Node, NodeConfig};
use std::time::{Duration, Instant};
use swarm_core::{ClientMsg, ServerMsg};

fn config(first: String, more: Vec<String>) -> NodeConfig {
    NodeConfig {
        tracker_url: first,
        more_trackers: more,
        tracker_ca: None,
        rtc_ip: Some("127.0.0.1".parse().unwrap()),
        max_storage: 1 << 30,
        upload_limit: None,
        rtc_timeout: Duration::from_secs(5),
        relay_only: true,
        connect_attempts: 3,
        corrupt_serve: false,
        no_nonces: false,
        join_token: None,
        migrate_identity: true,
    }
}

/// A URL nothing listens on.
fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("ws://127.0.0.1:{port}/ws")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_joins_through_the_first_tracker_that_answers_and_fails_over_when_it_dies() {
    let mut a = common::Tracker::start(2);
    let b = common::Tracker::start(2);
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dead_url(), vec![a.ws_url(), b.ws_url()]), dir.path())
        .await
        .expect("joins through a live tracker");
    assert_eq!(node.tracker_url(), a.ws_url(), "the first URL that answers");

    a.proc.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(node.connected() && node.tracker_url() == b.ws_url()) {
        assert!(Instant::now() < deadline, "still on {} (connected: {})", node.tracker_url(), node.connected());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It works on the new tracker: a request is answered there.
    let answer = node.request(|req| ClientMsg::Search { req, query: String::new(), limit: 5 }).await;
    assert!(matches!(answer, Ok(ServerMsg::SearchResults { .. })), "{answer:?}");
    node.shutdown().await;
}

/// A tracker that goes silent without closing anything (stopped with SIGSTOP: the kernel keeps
/// its sockets open, nothing answers, as when a tracker's host drops off the network): the peer
/// notices within `SILENT_AFTER` and moves to another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_moves_away_from_a_tracker_that_went_silent() {
    use native_peer::tracker_client::SILENT_AFTER;
    let a = common::Tracker::start(2);
    let b = common::Tracker::start(2);
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(a.ws_url(), vec![b.ws_url()]), dir.path()).await.expect("joins");
    assert_eq!(node.tracker_url(), a.ws_url());
    let pid = a.proc.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let stopped = Instant::now();
    let deadline = stopped + SILENT_AFTER + Duration::from_secs(20);
    let moved = loop {
        if node.connected() && node.tracker_url() == b.ws_url() {
            break Ok(stopped.elapsed());
        }
        if Instant::now() > deadline {
            break Err(format!("still on {} (connected: {})", node.tracker_url(), node.connected()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = std::process::Command::new("kill").args(["-CONT", &pid]).status();
    let moved = moved.unwrap();
    eprintln!("moved to the other tracker {moved:?} after the first went silent");
    let answer = node.request(|req| ClientMsg::Search { req, query: String::new(), limit: 5 }).await;
    assert!(matches!(answer, Ok(ServerMsg::SearchResults { .. })), "{answer:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_no_tracker_answers_the_error_names_each_url_and_the_cause_once() {
    let (x, y) = (dead_url(), dead_url());
    let dir = tempfile::tempdir().unwrap();
    let err = match Node::start(config(x.clone(), vec![y.clone()]), dir.path()).await {
        Ok(_) => panic!("joined through trackers that are not there"),
        Err(e) => e,
    };
    let text = native_peer::cli::error_text(&err);
    assert!(text.contains(&x) && text.contains(&y), "{text}");
    assert_eq!(text.matches("refused").count(), 1, "each cause once: {text}");
    assert_eq!(native_peer::cli::exit_code(&err), native_peer::cli::EXIT_TRACKER_UNREACHABLE);
}
