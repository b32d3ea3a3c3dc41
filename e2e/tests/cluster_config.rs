//! A tracker cluster refuses a node set up unlike the others, at start and with a clear
//! message, instead of running beside them and quietly losing files: a node given another
//! `--cluster-shards` than the cluster's would keep files under shards no other node reads.

use e2e::nats::NatsServer;
use e2e::{artifacts_dir, free_port, Tracker};
use std::time::Duration;

fn node(name: &str, nats: &str, shards: &str, dir: &std::path::Path) -> anyhow::Result<Tracker> {
    let port = free_port();
    let public = format!("ws://127.0.0.1:{port}/ws");
    let extra = ["--cluster", nats, "--public-url", &public, "--cluster-shards", shards, "--stun-listen", "off"];
    Tracker::start_with(name, None, &dir.join(name), port, &extra)
}

#[test]
fn a_node_with_another_shard_count_is_refused_at_start() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    nats.wait_healthy(Duration::from_secs(20))?;
    let tmp = tempfile::tempdir()?;
    let first = node("shards-first", &nats.url(), "16", tmp.path())?;
    // It listens before it has written its shard count to the cluster: until it has joined,
    // the odd node could be the first to write one (and the first node the one refused).
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(artifacts_dir().join("shards-first.log"))?.contains("joined the tracker cluster") {
        assert!(start.elapsed() < Duration::from_secs(20), "the first node never joined its cluster");
        std::thread::sleep(Duration::from_millis(50));
    }

    // It may bind its port before it reaches NATS: refused means it exits, with an error.
    if let Ok(mut odd) = node("shards-odd", &nats.url(), "8", tmp.path()) {
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(s) = odd.proc.child.try_wait()? {
                break s;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "a node with 8 shards next to 16 keeps running");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(!status.success(), "a refused node exits with a failure: {status}");
    }
    let log = std::fs::read_to_string(artifacts_dir().join("shards-odd.log"))?;
    assert!(
        log.contains("--cluster-shards 8") && log.contains("use 16"),
        "the refusal says which numbers differ: {log}"
    );

    // A node that agrees joins, and the first one is still serving.
    let second = node("shards-same", &nats.url(), "16", tmp.path())?;
    for t in [&first, &second] {
        assert_eq!(t.get_json("/api/cluster")?["shards"], 16, "{}", t.http_url());
    }
    Ok(())
}
