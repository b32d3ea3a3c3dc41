//! A tracker cluster with real processes: a 3-server NATS cluster (JetStream, the index kept
//! on all three), three tracker nodes on loopback, native peers spread over the nodes (each
//! given every node's URL, its own first), and a headless Chromium tab on one of them.
//!
//! What a user relies on: a file published through one node is found, located and fetched
//! through the others; when the node that keeps a file's shard dies mid-download, the download
//! finishes, that node's peers (a tab too, whether its node died or went silent) carry on
//! through the others, and a holder lost afterwards is
//! still replaced; a dead NATS server or restarted trackers lose nothing; a node cut off (stopped
//! with SIGSTOP while the others take its shards) does not act on leases it lost, and catches up.
//!
//! The cluster harness is `e2e/src/cluster.rs`.

use anyhow::{bail, Context};
use e2e::cluster::{get_fresh, put_retrying, signal, wait_healthy, Cluster, NODES, SHARDS};
use e2e::{bin, random_file, Browser, NativePeer};
use fantoccini::Locator;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_published_on_one_node_is_found_and_fetched_through_the_others() -> anyhow::Result<()> {
    let c = Cluster::start("cross", |n, _| n.url_list())?;
    let peers: Vec<NativePeer> = (0..NODES).map(|i| c.peer(&format!("cross-p{i}"), i)).collect::<Result<_, _>>()?;
    let (id, bytes) = peers[0].put_random(&c.dir, "cross.bin", 3 << 20, 11)?;
    // Replicated to R through orders planned by the shard's owner, whichever node that is.
    wait_healthy(c.node(2), &id, Duration::from_secs(60))?;
    // Its claims (3 copies of each chunk) are kept by the shard's node alone, not by all three
    // (once the shards stop moving between the nodes that just started).
    c.wait_balanced(Duration::from_secs(60))?;
    let start = Instant::now();
    let (owner, claims) = loop {
        let owner = c.owner_of(&id)?;
        let claims: Vec<u64> = (0..NODES).map(|i| c.metric(i, "pp_claims ")).collect::<Result<_, _>>()?;
        let only_owner = claims.iter().enumerate().all(|(i, n)| (i == owner) == (*n > 0));
        if only_owner || start.elapsed() > Duration::from_secs(30) {
            break (owner, claims);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let chunks = (3u64 << 20).div_ceil(swarm_core::CHUNK_SIZE as u64);
    assert_eq!(claims[owner], 3 * chunks, "node {owner} keeps the file's claims, the others none: {claims:?}");
    assert_eq!(claims.iter().sum::<u64>(), 3 * chunks, "each claim is kept once: {claims:?}");

    let found = peers[2].cli_json(&["search", "cross.bin"])?;
    assert!(found.to_string().contains(&id), "search through node 2 finds it: {found}");
    for (i, t) in c.live() {
        let f = t.get_json(&format!("/api/files/{id}"))?;
        assert_eq!(f["name"], "cross.bin", "node {i} answers for the file");
    }
    // A peer that knows only node 1 fetches it from peers connected to the other nodes.
    let one = format!("ws://127.0.0.1:{}/ws", c.ports[1]);
    assert!(get_fresh(&one, &c.dir, &id, "fresh")? == bytes, "the bytes fetched through node 1 are intact");
    for i in 0..NODES {
        assert!(c.metric(i, "pp_cluster_messages_total{dir=\"in\"}")? > 0, "node {i} heard the others");
    }

    // A tab on node 1's page downloads it too.
    let browser = Browser::start("cluster-tab").await?;
    browser.client.goto(&c.node(1).http_url()).await?;
    browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    browser.client.find(Locator::Css("#download-id")).await?.send_keys(&id).await?;
    browser.client.find(Locator::Css("#download-button")).await?.click().await?;
    browser.wait_text("#download-status", Duration::from_secs(60), |t| t.contains("done")).await?;
    let href = browser.wait_attr("#download-link", "href", Duration::from_secs(5)).await?;
    assert!(browser.fetch_bytes(&href).await? == bytes, "the tab's bytes are intact");
    browser.screenshot("cluster-tab-done").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_moves_to_another_node_when_its_node_dies() -> anyhow::Result<()> {
    tab_moves_when_its_node("tabmove", "KILL").await
}

/// A node that goes silent without closing anything (SIGSTOP: its host dropped off the
/// network) keeps the tab's websocket open; the tab notices its heartbeats go unanswered and
/// moves on all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_moves_to_another_node_when_its_node_goes_silent() -> anyhow::Result<()> {
    tab_moves_when_its_node("tabsilent", "STOP").await
}

/// A tab on node 2; node 2 gets `sig` (`KILL` or `STOP`); the tab moves to another node,
/// which knows it, and downloads there.
async fn tab_moves_when_its_node(tag: &str, sig: &str) -> anyhow::Result<()> {
    let mut c = Cluster::start(tag, |n, _| n.url_list())?;
    let peers: Vec<NativePeer> = (0..NODES).map(|i| c.peer(&format!("{tag}-p{i}"), i)).collect::<Result<_, _>>()?;
    let (id, bytes) = peers[0].put_random(&c.dir, "tab.bin", 2 << 20, 51)?;
    wait_healthy(c.node(0), &id, Duration::from_secs(60))?;

    let browser = Browser::start(&format!("cluster-{tag}")).await?;
    browser.client.goto(&c.node(2).http_url()).await?;
    let tab = browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    let first = browser.wait_attr("#tracker-node", "data-url", Duration::from_secs(10)).await?;
    assert!(first.contains(&c.ports[2].to_string()), "the tab starts on its page's node: {first}");
    // The tab learned every node from its welcome.
    let nodes = browser.num_attr_at_least("#tracker-node", "data-nodes", NODES as u64).await?;
    assert!(nodes >= NODES as u64, "the tab knows every node: {nodes}");

    let pid = c.node(2).proc.child.id();
    let hit = Instant::now();
    match sig {
        "KILL" => c.kill(2),
        _ => signal(pid, sig)?,
    }
    let deadline = Instant::now() + Duration::from_secs(45);
    let moved = loop {
        let url = browser.wait_attr("#tracker-node", "data-url", Duration::from_secs(5)).await?;
        let state = browser.wait_attr("#conn-status", "data-state", Duration::from_secs(5)).await?;
        if !url.contains(&c.ports[2].to_string()) && state == "connected" {
            break url;
        }
        assert!(Instant::now() < deadline, "the tab never moved off its node (SIG{sig}): {url} {state}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("SIG{sig}: the tab moved to {moved} {:.1} s after", hit.elapsed().as_secs_f64());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.node(0).get_json("/api/peers")?.to_string().contains(&tab) {
        assert!(Instant::now() < deadline, "the surviving nodes know the tab");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // It works there: it downloads the file.
    browser.client.find(Locator::Css("#download-id")).await?.send_keys(&id).await?;
    browser.client.find(Locator::Css("#download-button")).await?.click().await?;
    browser.wait_text("#download-status", Duration::from_secs(60), |t| t.contains("done")).await?;
    let href = browser.wait_attr("#download-link", "href", Duration::from_secs(5)).await?;
    assert!(browser.fetch_bytes(&href).await? == bytes, "the tab's bytes are intact after the move");
    browser.screenshot(&format!("cluster-{tag}-moved")).await?;
    if sig == "STOP" {
        c.kill(2);
    }
    Ok(())
}

#[test]
fn killing_the_node_that_keeps_a_file_mid_download_loses_nothing() -> anyhow::Result<()> {
    let mut c = Cluster::start("failover", |n, _| n.url_list())?;
    let peers: Vec<NativePeer> =
        (0..4).map(|i| c.peer(&format!("failover-p{i}"), i % NODES)).collect::<Result<_, _>>()?;
    let (path, bytes) = random_file(&c.dir, "big.bin", 48 << 20, 21)?;
    let put = peers[0].cli_json(&["put", &path.to_string_lossy()])?;
    let id = put["files"][0]["id"].as_str().context("an id")?.to_string();
    let owner = c.owner_of(&id)?;
    let survivor = (owner + 1) % NODES;
    wait_healthy(c.node(survivor), &id, Duration::from_secs(120))?;

    // A downloader connected to the owner node; the owner dies while it downloads.
    let down = c.peer("failover-down", owner)?;
    let out = c.dir.join("big.out");
    let mut get = Command::new(bin("pp-peer"))
        .args(["--tracker", &down.tracker, "--data-dir"])
        .arg(&down.data_dir)
        .args(["get", &id, "-o"])
        .arg(&out)
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let killed_at = Instant::now();
    c.kill(owner);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = get.try_wait()? {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = get.kill();
            bail!("the download never finished after its node died");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the download finished");
    assert!(std::fs::read(&out)? == bytes, "its bytes are intact");

    // The other nodes took the dead node's shards; its peers are connected to them now.
    c.wait_ready(NODES - 1, Duration::from_secs(30))?;
    let everyone: Vec<&str> = peers.iter().chain([&down]).map(|p| p.peer_id.as_str()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = c.node(survivor).get_json("/api/peers")?.to_string();
        if everyone.iter().all(|p| listed.contains(p)) {
            break;
        }
        assert!(Instant::now() < deadline, "every peer is back through the surviving nodes: {listed}");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("peers failed over within {:?} of the kill", killed_at.elapsed());
    wait_healthy(c.node(survivor), &id, Duration::from_secs(60))?;

    // A holder dies afterwards: the new owner still repairs the file to R.
    let holders = c.node(survivor).get_json(&format!("/api/files/{id}"))?["peers"].clone();
    let mut peers = peers;
    let victim = peers
        .iter()
        .position(|p| p.peer_id != peers[0].peer_id && holders.to_string().contains(&p.peer_id))
        .context("a holder other than the publisher")?;
    peers[victim].proc.kill();
    let h = wait_healthy(c.node(survivor), &id, Duration::from_secs(90))?;
    assert_eq!(h["lost"], 0, "nothing was lost: {h}");
    let rest = c.urls_from(survivor);
    assert!(get_fresh(&rest, &c.dir, &id, "after")? == bytes, "still whole after both deaths");
    Ok(())
}

#[test]
fn the_index_survives_a_dead_nats_server_and_restarted_trackers() -> anyhow::Result<()> {
    let mut c = Cluster::start("durable", |n, _| n.url_list())?;
    let peers: Vec<NativePeer> = (0..NODES).map(|i| c.peer(&format!("durable-p{i}"), i)).collect::<Result<_, _>>()?;
    let (a, _) = peers[0].put_random(&c.dir, "before.bin", 1 << 20, 31)?;
    wait_healthy(c.node(1), &a, Duration::from_secs(60))?;

    c.nats.kill(1);
    let (b, b_bytes) = put_retrying(&peers[1], &c.dir, "after.bin", 1 << 20, 32)?;
    wait_healthy(c.node(2), &b, Duration::from_secs(60))?;

    // Every tracker dies at once and comes back: the index is in NATS, intact.
    for i in 0..NODES {
        c.kill(i);
    }
    for i in 0..NODES {
        c.start_node("durable-again", i)?;
    }
    c.wait_ready(NODES, Duration::from_secs(60))?;
    for (id, name) in [(&a, "before.bin"), (&b, "after.bin")] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let f = c.node(0).get_json(&format!("/api/files/{id}"))?;
            if f["name"] == name {
                break;
            }
            assert!(Instant::now() < deadline, "{name} is in the index after the restart: {f}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let urls = c.urls_from(2);
    assert!(get_fresh(&urls, &c.dir, &b, "restarted")? == b_bytes, "the file written with a NATS server down");
    Ok(())
}

#[test]
fn a_node_cut_off_refuses_to_act_on_what_it_lost_and_catches_up() -> anyhow::Result<()> {
    let c = Cluster::start("partition", |n, _| n.url_list())?;
    let here = c.peer("partition-p0", 0)?;
    // Enough peers on the side that carries on for R copies.
    let _others = [c.peer("partition-p1", 1)?, c.peer("partition-p2", 0)?];
    let only2 = format!("ws://127.0.0.1:{}/ws", c.ports[2]);
    let cut = NativePeer::start_with("partition-cut", &only2, &c.dir.join("cut"), &[], &[])?;
    // Shards spread over the nodes one release per period: wait until node 2 keeps some.
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let v = c.node(2).get_json("/api/cluster")?;
        if v["owned"].as_array().is_some_and(|o| !o.is_empty()) {
            break v;
        }
        assert!(Instant::now() < deadline, "node 2 never got a share of the shards: {v}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let tag2 = before["node"].clone();

    // Node 2 stops (SIGSTOP): cut off from NATS and from its peers while its leases lapse.
    let pid = c.node(2).proc.child.id();
    signal(pid, "STOP")?;
    let result = (|| -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = c.node(0).get_json("/api/cluster")?;
            let tag2_gone = v["members"].as_array().is_some_and(|m| m.len() == NODES - 1);
            let owners_alive = v["owners"].as_array().is_some_and(|o| o.iter().all(|x| x.is_u64() && *x != tag2));
            if tag2_gone && owners_alive {
                break;
            }
            assert!(Instant::now() < deadline, "the others never took node 2's shards: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
        // The rest of the cluster carries on.
        let (y, _) = put_retrying(&here, &c.dir, "during.bin", 1 << 20, 42)?;
        wait_healthy(c.node(0), &y, Duration::from_secs(60))?;
        Ok(y)
    })();
    signal(pid, "CONT")?;
    let y = result?;
    // Back: at once, node 2 keeps none of the shards it held (its leases are stale), so a
    // publish through it goes to the new owners or is refused, never taken on a lapsed lease.
    let v = c.node(2).get_json("/api/cluster")?;
    let (path, x_bytes) = random_file(&c.dir, "cut.bin", 1 << 20, 41)?;
    let (code, _, err) = cut.cli(&["put", &path.to_string_lossy()])?;
    assert!(code == 0 || err.to_lowercase().contains("unavailable"), "published, or refused saying why: {err}");
    eprintln!("node 2 right after it resumed: {v}; put exit {code}");
    // It catches up: the shard owners agree, it finds what was published meanwhile, and it
    // publishes again.
    c.wait_ready(NODES, Duration::from_secs(40))?;
    // The shards then move to node 2 again, one release per period: the nodes agree once
    // they stop moving, within a bound (swarm-core/tests/cluster_sim.rs checks the same).
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut twice_before = std::collections::BTreeSet::new();
    loop {
        let views: Vec<Value> = c.live().map(|(_, t)| t.get_json("/api/cluster")).collect::<Result<_, _>>()?;
        let owners: Vec<&Value> = views.iter().map(|v| &v["owners"]).collect();
        let (n, twice) = e2e::cluster::shards_kept(&views);
        assert!(twice.is_disjoint(&twice_before), "no shard is kept by two nodes: {views:?}");
        if owners.windows(2).all(|w| w[0] == w[1]) && n == SHARDS as usize && twice.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "every node agrees who keeps each shard: {owners:?}");
        twice_before = twice;
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let found = cut.cli_json(&["search", "during.bin"]).map(|v| v.to_string()).unwrap_or_default();
        if found.contains(&y) {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 never caught up: {found}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (x, _) = put_retrying(&cut, &c.dir, "cut.bin", 1 << 20, 41)?;
    let all = c.urls_from(0);
    assert!(get_fresh(&all, &c.dir, &x, "cut")? == x_bytes, "what node 2 published after it came back is whole");
    Ok(())
}

/// A peer that knows one node learns a node that joins while it is connected (the tracker
/// sends the new node list, not only `welcome`), and fails over to it when every node it
/// knew from its welcome is gone.
#[test]
fn a_peer_learns_a_node_that_joins_while_it_is_connected() -> anyhow::Result<()> {
    let mut c = Cluster::start("learn", |n, _| n.url_list())?;
    c.kill(2);
    // Node 0 forgets node 2 (a welcome from it lists nodes 0 and 1 only).
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.node(0).get_json("/api/cluster")?["members"].as_array().map_or(0, Vec::len) != NODES - 1 {
        assert!(Instant::now() < deadline, "node 0 never forgot node 2");
        std::thread::sleep(Duration::from_millis(200));
    }
    let only0 = format!("ws://127.0.0.1:{}/ws", c.ports[0]);
    let peer = NativePeer::start_with("learn-p", &only0, &c.dir.join("learn-p"), &[], &[])?;
    c.start_node("learn-again", 2)?;
    c.wait_ready(NODES, Duration::from_secs(40))?;
    // Nodes 0 and 1 go: the peer has only node 2 left, which no welcome named.
    c.kill(0);
    c.kill(1);
    // Node 2 counts the peers connected to it first in its members (every node lists every
    // live peer in /api/peers, wherever it is connected).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = c.node(2).get_json("/api/cluster")?;
        if v["members"][0]["peers"].as_u64() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the peer {} never reached node 2: {v}", peer.peer_id);
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}
