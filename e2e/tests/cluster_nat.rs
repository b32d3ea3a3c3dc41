//! The tracker cluster between network namespaces (`Topology::build_cluster` in
//! `e2e/src/netns.rs`): three public hosts, each running one NATS server (JetStream, routed to
//! the other two hosts' addresses) and one tracker node; native peers and a headless Chromium
//! tab behind home routers with NAT, each given every node's URL, all with default flags
//! apart from ports, data dirs and short lease times.
//!
//! What a user relies on:
//! - a file published through one node is found through another, and a peer on a third node
//!   fetches it over a direct path punched through both NATs (the signalling crosses the
//!   nodes through NATS): the tracker relays next to nothing;
//! - a tab whose node's tracker is killed (SIGKILL) moves to another node and still downloads;
//! - a node cut off from the other nodes (its host's packets to and from them dropped, its
//!   processes running, its peers still reaching it) refuses shard requests with `unavailable`
//!   instead of acting on leases it lost, the other two keep every shard, and once the
//!   partition heals it catches up: what was published meanwhile is found and fetched
//!   through it;
//! - a native peer whose node's host drops off the network (link down) moves to another node
//!   within about 30 s (15 s of silence, then a reconnect) and announces what it holds there.
//!
//! Failure messages carry each node's cluster view and figures (`/api/cluster`,
//! `/api/stats`, `/metrics`). Tracker logs are `cnat-*-node*.log` and NATS logs `nats-*.log`
//! in `target/e2e-artifacts/`. Needs root (namespaces, iptables), nats-server, Chromium and the
//! built web app, like the other namespace tests; every namespace, process and iptables rule
//! goes with the topology when a test ends, passed or failed. Each test builds a topology of
//! its own (unique namespace names); run them one at a time (`--test-threads=1`).

use anyhow::{bail, ensure, Context};
use e2e::cluster::put_retrying;
use e2e::nats::NatsCluster;
use e2e::{bin, random_file, Browser, Host, NativePeer, Topology, Tracker};
use fantoccini::Locator;
use serde_json::Value;
use std::time::{Duration, Instant};

const NODES: usize = 3;
const SHARDS: u64 = 32;
/// Every node's HTTP (and STUN) port, on its own host.
const PORT: u16 = 8080;
/// Short leases, so the shards of a node cut off move within seconds.
const LEASE_SECS: &str = "3";
const MIB: usize = 1024 * 1024;
/// How long a cluster runs before a test cuts a host off ([`NatCluster::settle`]).
const SETTLED: Duration = Duration::from_secs(20);

/// Three NATS servers and three tracker nodes on the public hosts of a cluster topology.
struct NatCluster {
    // Dropped in this order: the trackers, the NATS servers, the data, then the namespaces
    // (whose `Drop` kills whatever still runs inside them).
    nodes: Vec<Option<Tracker>>,
    nats: NatsCluster,
    tmp: tempfile::TempDir,
    net: Topology,
    tag: String,
    /// When the NATS servers were started.
    born: Instant,
}

impl NatCluster {
    fn start(tag: &str, web: bool) -> anyhow::Result<Self> {
        let web = web.then(e2e::web_dir);
        if let Some(w) = &web {
            ensure!(w.join("index.html").exists(), "no web app in {} (scripts/build-web.sh)", w.display());
        }
        let net = Topology::build_cluster()?;
        let born = Instant::now();
        let mut nats = NatsCluster::start_in(&net, &Host::NODES)?;
        nats.wait_healthy(Duration::from_secs(60)).context("the NATS cluster across the hosts never formed")?;
        let mut c = Self { nodes: Vec::new(), nats, tmp: tempfile::tempdir()?, net, tag: tag.to_string(), born };
        // Every node is given every NATS server, as in the README.
        let servers = c.nats.url_list();
        for (i, h) in Host::NODES.into_iter().enumerate() {
            let public = c.url(i);
            let extra = [
                "--cluster",
                &servers,
                "--public-url",
                &public,
                "--cluster-lease-secs",
                LEASE_SECS,
                "--grace-secs",
                "1",
            ];
            let name = format!("{tag}-node{}", i + 1);
            let t = Tracker::start_on(&name, &c.net, h, PORT, web.as_deref(), &extra)?;
            c.nodes.push(Some(t));
        }
        c.wait_ready(&[0, 1, 2], Duration::from_secs(60))?;
        Ok(c)
    }

    /// Waits until the cluster has run for [`SETTLED`]: a test that cuts a host off does so in
    /// a cluster that has settled, as a deployment has, not in its first seconds (JetStream's
    /// replicas take a few seconds after the start to serve reads: a cut before that finds a
    /// cluster unlike any that has run for a while).
    fn settle(&self) {
        std::thread::sleep(SETTLED.saturating_sub(self.born.elapsed()));
    }

    /// Node `i`'s public `/ws` URL (0-based).
    fn url(&self, i: usize) -> String {
        format!("ws://{}:{PORT}/ws", self.net.ip(Host::NODES[i]))
    }

    /// Node `i`'s URL first, then the others': a peer's `--tracker`.
    fn urls_from(&self, i: usize) -> String {
        (0..NODES).map(|k| self.url((i + k) % NODES)).collect::<Vec<_>>().join(",")
    }

    fn node(&self, i: usize) -> &Tracker {
        self.nodes[i].as_ref().expect("node running")
    }

    /// A native peer (`pp-peer run`) on host `h`, given every node's URL, node `first`'s first.
    fn peer(&self, name: &str, h: Host, first: usize) -> anyhow::Result<NativePeer> {
        let prefix = self.net.exec_prefix(h);
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let dir = self.tmp.path().join(name);
        let p = NativePeer::start_with(name, &self.urls_from(first), &dir, &[], &prefix)?;
        eprintln!("{name}: peer {} on {}, node {} first", p.peer_id, self.net.describe(h), first + 1);
        Ok(p)
    }

    /// Kills node `i`'s tracker at once (SIGKILL), as a crash would; its NATS server stays.
    fn kill(&mut self, i: usize) {
        if let Some(mut t) = self.nodes[i].take() {
            t.proc.kill();
        }
    }

    /// Every node (of `live`) sees the others of `live`, says it is connected, and every
    /// shard has an owner among them.
    fn wait_ready(&self, live: &[usize], timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let tags: Vec<Option<u64>> = live
                .iter()
                .map(|&i| self.node(i).get_json("/api/cluster").ok().and_then(|v| v["node"].as_u64()))
                .collect();
            let ready = tags.iter().all(Option::is_some)
                && live.iter().all(|&i| {
                    let Ok(v) = self.node(i).get_json("/api/cluster") else { return false };
                    v["connected"] == true
                        && v["members"].as_array().map(Vec::len) == Some(live.len())
                        && v["owners"].as_array().is_some_and(|o| {
                            o.len() as u64 == SHARDS && o.iter().all(|x| x.is_u64() && tags.contains(&x.as_u64()))
                        })
                });
            if ready {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("nodes {live:?} never settled in {timeout:?}:\n{}", self.figures());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// One `/metrics` figure of node `i` (the first line starting with `name`).
    fn metric(&self, i: usize, name: &str) -> anyhow::Result<u64> {
        let text = self.node(i).get_text("/metrics")?;
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .with_context(|| format!("no {name} in node {}'s metrics", i + 1))
    }

    /// `/api/stats` `relay_bytes`, summed over the running nodes.
    fn relay_bytes(&self) -> anyhow::Result<u64> {
        let mut sum = 0;
        for t in self.nodes.iter().flatten() {
            sum += t.get_json("/api/stats")?["relay_bytes"].as_u64().context("no relay_bytes in /api/stats")?;
        }
        Ok(sum)
    }

    /// What each running node says of itself, for failure messages: its cluster view, its
    /// relay and peer figures, its cluster metrics.
    fn figures(&self) -> String {
        let mut out = String::new();
        for (i, t) in self.nodes.iter().enumerate() {
            let Some(t) = t else {
                out.push_str(&format!("  node {} ({}): killed\n", i + 1, self.url(i)));
                continue;
            };
            let cluster = match t.get_json("/api/cluster") {
                Ok(v) => format!(
                    "tag {} connected {} members {} owned {} owners {}",
                    v["node"],
                    v["connected"],
                    v["members"].as_array().map_or(0, Vec::len),
                    v["owned"].as_array().map_or(0, Vec::len),
                    v["owners"]
                ),
                Err(e) => format!("/api/cluster: {e:#}"),
            };
            let stats = match t.get_json("/api/stats") {
                Ok(s) => format!(
                    "peers {} files {} relay_bytes {} reported_bytes {}",
                    s["peers"], s["files"], s["relay_bytes"], s["reported_bytes"]
                ),
                Err(e) => format!("/api/stats: {e:#}"),
            };
            let metrics = match t.get_text("/metrics") {
                Ok(m) => m
                    .lines()
                    .filter(|l| l.starts_with("pp_cluster_") || l.starts_with("pp_peer_received_bytes"))
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(e) => format!("/metrics: {e:#}"),
            };
            out.push_str(&format!("  node {} ({}): {cluster}\n    {stats}\n    {metrics}\n", i + 1, self.url(i)));
        }
        out.push_str(&format!("  (logs: {}/{}-node*.log)", e2e::artifacts_dir().display(), self.tag));
        out
    }

    /// `pp-peer get` as a one-shot command on host `h`, through `trackers`, into a fresh data
    /// dir: the bytes it saved, or what it printed.
    fn get_fresh(&self, h: Host, trackers: &str, id: &str, tag: &str) -> anyhow::Result<Vec<u8>> {
        let out = self.tmp.path().join(format!("{tag}.out"));
        let o = self
            .net
            .command(h, bin("pp-peer"))
            .args(["--tracker", trackers, "--data-dir"])
            .arg(self.tmp.path().join(format!("{tag}-data")))
            .args(["get", id, "-o"])
            .arg(&out)
            .output()?;
        ensure!(
            o.status.success(),
            "get {id} on {} via {trackers} failed ({}): {}\n{}",
            self.net.describe(h),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim(),
            self.figures()
        );
        Ok(std::fs::read(out)?)
    }

    /// Waits until file `id` has `n` copies of every chunk, as node `via` answers. An error
    /// answer is waited out too: right after the cluster starts, shards still move between the
    /// nodes (one release per period), and a file whose shard is being handed over is answered
    /// 404 until its new owner has loaded it.
    fn wait_copies(&self, via: usize, id: &str, n: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.node(via).get_json(&format!("/api/files/{id}")) {
                Ok(f) if f["health"]["min_copies"].as_u64().unwrap_or(0) >= n => return Ok(()),
                Ok(f) => f["health"].to_string(),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "file {id} never reached {n} copies through node {} in {timeout:?}: {last}\n{}",
                    via + 1,
                    self.figures()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The node URL a running peer says it uses (`status --json`).
fn tracker_of(p: &NativePeer) -> anyhow::Result<String> {
    let s = p.cli_json(&["status"])?;
    s["tracker"].as_str().map(String::from).with_context(|| format!("no tracker in status: {s}"))
}

#[test]
fn a_file_published_through_one_node_is_fetched_through_another_directly_across_two_nats() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let c = NatCluster::start("cnat-direct", false)?;
    let started = t0.elapsed();
    // Three sources on LAN 1 (the file at R = 3 before anyone fetches it, so the getter
    // receives no replication order), spread over nodes 1 and 3.
    let a = c.peer("cnat-direct-a", Host::Lan1A, 0)?;
    let b = c.peer("cnat-direct-b", Host::Lan1B, 2)?;
    let _s = c.peer("cnat-direct-s", Host::Lan1A, 0)?;
    ensure!(tracker_of(&a)? == c.url(0), "the publisher is on node 1");
    ensure!(tracker_of(&b)? == c.url(2), "the searcher is on node 3");
    let size = 16 * MIB + 5;
    let (id, bytes) = put_retrying(&a, c.tmp.path(), "direct.bin", size, 61)?;
    let (warm, warm_bytes) = put_retrying(&a, c.tmp.path(), "warm.bin", MIB + 1, 60)?;
    c.wait_copies(1, &id, 3, Duration::from_secs(90))?;
    c.wait_copies(1, &warm, 3, Duration::from_secs(90))?;

    // Found by search through node 3.
    let found = b.cli_json(&["search", "direct.bin"])?;
    ensure!(found.to_string().contains(&id), "search through node 3 does not find {id}: {found}\n{}", c.figures());

    // A peer behind router 2 on node 2 fetches a small file from the sources behind router 1:
    // the offers, answers and candidates cross the nodes through NATS, and the data channels
    // open through both NATs. Until they open (300 ms), chunks go through the relay
    // (relay-then-upgrade): on a loaded machine that can be a good part of a small file, so
    // the figures of this first fetch are printed, not asserted.
    let d = c.peer("cnat-direct-d", Host::Lan2, 1)?;
    ensure!(tracker_of(&d)? == c.url(1), "the getter is on node 2");
    let relay0 = c.relay_bytes()?;
    let out = c.tmp.path().join("warm.out");
    let first = d.cli_json(&["get", &warm, "-o", &out.to_string_lossy()])?;
    let warm_relayed = c.relay_bytes()? - relay0;
    ensure!(std::fs::read(&out)? == warm_bytes, "the getter on node 2 wrote other bytes than were put through node 1");
    let before = d.cli_json(&["status"])?;
    let by_path = |s: &Value, p: &str| s["bytes_received_by_path"][p].as_u64().unwrap_or(0);

    // Then the large file, over the links that are open now.
    let relay0 = c.relay_bytes()?;
    let out = c.tmp.path().join("direct.out");
    let get = d.cli_json(&["get", &id, "-o", &out.to_string_lossy()])?;
    let relayed = c.relay_bytes()? - relay0;
    ensure!(std::fs::read(&out)? == bytes, "the getter on node 2 wrote other bytes than were put through node 1");
    let status = d.cli_json(&["status"])?;
    let links = status["links"].as_array().cloned().unwrap_or_default();
    let paths: Vec<String> =
        links.iter().filter(|l| l["role"] == "fetch").filter_map(|l| l["path"].as_str().map(String::from)).collect();
    let reflexive = by_path(&status, "direct_reflexive") - by_path(&before, "direct_reflexive");
    let via_relay = by_path(&status, "relay") - by_path(&before, "relay");
    // The getter reports its paths to node 2 (every few seconds): wait for the figure there.
    let want = by_path(&status, "direct_reflexive");
    let deadline = Instant::now() + Duration::from_secs(20);
    let reported = loop {
        let r = c.metric(1, "pp_peer_received_bytes{path=\"direct_reflexive\"}").unwrap_or(0);
        if r >= want || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "first fetch across the nodes (1 MiB): first chunk after {:.3} s; the getter received {} bytes \
         reflexive, {} on the relay; the nodes relayed {warm_relayed} bytes (a frame crossing nodes counts on both)",
        first["first_chunk_seconds"].as_f64().unwrap_or(f64::NAN),
        by_path(&before, "direct_reflexive"),
        by_path(&before, "relay"),
    );
    eprintln!(
        "node 1 → node 2 across two NATs: {:.2} s; paths {paths:?}; the getter received {reflexive} bytes \
         reflexive, {via_relay} on the relay (node 2's /metrics: {reported} reflexive in all); the nodes relayed \
         {relayed} of {size} bytes; cluster up in {started:?}, test {:?}",
        get["seconds"].as_f64().unwrap_or(f64::NAN),
        t0.elapsed()
    );
    let figures = c.figures();
    assert!(
        !paths.is_empty() && paths.iter().all(|p| p == "direct_reflexive"),
        "the getter's fetching links are not all direct through the NATs: {paths:?}\n{status}\n{figures}"
    );
    assert!(reflexive >= size as u64, "the getter received {reflexive} of {size} bytes reflexive: {status}\n{figures}");
    assert!(
        reported >= want,
        "node 2's /metrics reports {reported} of {want} bytes received direct_reflexive\n{figures}"
    );
    // As for a single tracker (`nat_native.rs`): next to nothing goes through the relay.
    assert!(relayed < size as u64 / 20, "the nodes relayed {relayed} of {size} bytes on direct paths\n{figures}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_behind_a_nat_moves_to_another_node_when_its_tracker_is_killed() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut c = NatCluster::start("cnat-tab", true)?;
    // The file at R = 3 on natives before the tab opens: the tab gets no order for it.
    let a = c.peer("cnat-tab-a", Host::Lan1A, 0)?;
    let _b = c.peer("cnat-tab-b", Host::Lan1B, 2)?;
    let _s = c.peer("cnat-tab-s", Host::Lan1A, 2)?;
    let size = 2 * MIB + 17;
    let (id, bytes) = put_retrying(&a, c.tmp.path(), "tab.bin", size, 62)?;
    c.wait_copies(0, &id, 3, Duration::from_secs(90))?;

    // A tab behind router 2 opens node 2's page.
    let browser = Browser::start_in("cnat-tab-tab", &c.net, Host::Lan2).await?;
    browser.client.goto(&format!("{}/", c.node(1).http_url())).await?;
    let tab = browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(60)).await?;
    let first = browser.wait_attr("#tracker-node", "data-url", Duration::from_secs(10)).await?;
    ensure!(first == c.url(1), "the tab starts on its page's node ({}), not {first}", c.url(1));
    let nodes = browser.num_attr_at_least("#tracker-node", "data-nodes", NODES as u64).await?;
    ensure!(nodes >= NODES as u64, "the tab learned {nodes} nodes from its welcome, not {NODES}");

    c.kill(1);
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(40);
    let moved = loop {
        let url = browser.wait_attr("#tracker-node", "data-url", Duration::from_secs(5)).await?;
        let state = browser.wait_attr("#conn-status", "data-state", Duration::from_secs(5)).await?;
        if url != c.url(1) && state == "connected" {
            break url;
        }
        if Instant::now() > deadline {
            browser.screenshot("cnat-tab-stuck").await?;
            bail!("the tab never left its killed node: {url} {state}\n{}", c.figures());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let moved_after = killed.elapsed();
    let other = if moved == c.url(0) { 0 } else { 2 };
    ensure!(moved == c.url(other), "the tab moved to {moved}, which is no node of the cluster");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c.node(other).get_json("/api/peers")?.to_string().contains(&tab) {
        ensure!(Instant::now() < deadline, "node {} never listed the tab {tab}\n{}", other + 1, c.figures());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // It works there: it downloads the file from the natives behind router 1.
    let dl = Instant::now();
    browser.client.find(Locator::Css("#download-id")).await?.send_keys(&id).await?;
    browser.client.find(Locator::Css("#download-button")).await?.click().await?;
    if let Err(e) = browser.wait_text("#download-status", Duration::from_secs(120), |t| t.contains("done")).await {
        browser.screenshot("cnat-tab-download-failed").await?;
        bail!("the tab's download after the move did not finish: {e:#}\n{}", c.figures());
    }
    let href = browser.wait_attr("#download-link", "href", Duration::from_secs(5)).await?;
    ensure!(browser.fetch_bytes(&href).await? == bytes, "the tab's bytes after the move differ from the natives'");
    browser.screenshot("cnat-tab-moved").await?;
    eprintln!(
        "the tab moved from node 2 to node {} {moved_after:?} after the kill; its download took {:?}; test {:?}",
        other + 1,
        dl.elapsed(),
        t0.elapsed()
    );
    Ok(())
}

#[test]
fn a_node_cut_off_from_the_others_refuses_what_it_lost_and_catches_up_when_healed() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let c = NatCluster::start("cnat-cut", false)?;
    // Three peers on nodes 1 and 2 (R copies on the side that carries on), one on node 3.
    let p1 = c.peer("cnat-cut-p1", Host::Lan1A, 0)?;
    let _p2 = c.peer("cnat-cut-p2", Host::Lan1B, 1)?;
    let _p3 = c.peer("cnat-cut-p3", Host::Lan2, 0)?;
    let q = c.peer("cnat-cut-q", Host::Lan2, 2)?;
    ensure!(tracker_of(&q)? == c.url(2), "the cut node's peer is on node 3");
    // Shards spread over the nodes one release per period: wait until node 3 keeps some.
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let v = c.node(2).get_json("/api/cluster")?;
        if v["owned"].as_array().is_some_and(|o| o.len() >= 4) {
            break v;
        }
        ensure!(Instant::now() < deadline, "node 3 never got a share of the shards: {v}\n{}", c.figures());
        std::thread::sleep(Duration::from_millis(250));
    };
    let tag3 = before["node"].clone();
    eprintln!("node 3 (tag {tag3}) keeps shards {} before the cut", before["owned"]);

    c.settle();
    // Node 3's host is cut off from the other two (NATS routes and client links alike); its
    // peer still reaches it.
    c.net.partition(Host::Node3, &[Host::Node1, Host::Node2], true)?;
    let cut_at = Instant::now();
    let deadline = cut_at + Duration::from_secs(30);
    loop {
        let settled = [0, 1].iter().all(|&i| {
            let Ok(v) = c.node(i).get_json("/api/cluster") else { return false };
            v["members"].as_array().is_some_and(|m| m.len() == NODES - 1)
                && v["owners"].as_array().is_some_and(|o| o.iter().all(|x| x.is_u64() && *x != tag3))
        });
        if settled {
            break;
        }
        ensure!(Instant::now() < deadline, "nodes 1 and 2 never took node 3's shards over\n{}", c.figures());
        std::thread::sleep(Duration::from_millis(250));
    }
    let taken_after = cut_at.elapsed();
    // Every shard is kept by one of the two nodes that carry on.
    let deadline = Instant::now() + Duration::from_secs(20);
    let owned = loop {
        let owned = c.metric(0, "pp_cluster_shards_owned")? + c.metric(1, "pp_cluster_shards_owned")?;
        if owned == SHARDS || Instant::now() > deadline {
            break owned;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(
        owned,
        SHARDS,
        "nodes 1 and 2 keep {owned} of {SHARDS} shards (pp_cluster_shards_owned)\n{}",
        c.figures()
    );

    // Through node 3, a publish is refused (`unavailable`), or, if it gets through, it is
    // published where the cluster carries on: never taken on a lease node 3 lost.
    let (path, _) = random_file(c.tmp.path(), "cut.bin", MIB, 63)?;
    let put_at = Instant::now();
    let (code, out, err) = q.cli(&["put", &path.to_string_lossy()])?;
    let put_took = put_at.elapsed();
    let view3 = c.node(2).get_json("/api/cluster").map(|v| v.to_string()).unwrap_or_else(|e| format!("{e:#}"));
    eprintln!(
        "put through node 3 while cut off: exit {code} after {put_took:?}; stderr {:?}; node 3's view: {view3}",
        err.trim()
    );
    if code == 0 {
        let put: Value = serde_json::from_str(&out).with_context(|| format!("put printed {out:?}"))?;
        let x = put["files"][0]["id"].as_str().context("put printed no id")?;
        let known = c.node(0).get_json(&format!("/api/files/{x}")).map(|f| f["name"] == "cut.bin").unwrap_or(false);
        assert!(
            known,
            "the put through node 3 succeeded while it was cut off, yet node 1 does not know the file: node 3 \
             acted on its own ({out})\n{}",
            c.figures()
        );
    } else {
        assert!(
            err.to_lowercase().contains("unavailable"),
            "the put through the cut-off node 3 failed (exit {code}) without saying the cluster is unavailable: \
             {err}\n{}",
            c.figures()
        );
    }
    let refused3 = c.metric(2, "pp_cluster_refused_total")?;

    // The other two carry on.
    let (y, y_bytes) = put_retrying(&p1, c.tmp.path(), "during.bin", MIB + 3, 64)?;
    c.wait_copies(1, &y, 3, Duration::from_secs(60))?;

    c.net.partition(Host::Node3, &[Host::Node1, Host::Node2], false)?;
    let healed = Instant::now();
    eprintln!("healed after a cut of {:?} (shards moved after {taken_after:?})", cut_at.elapsed());
    // It catches up: three members everywhere, one owner per shard, which every node agrees on.
    // Right after the heal shards still move back for balance, and a `took` reaches each
    // node a moment apart: the views must come to agree, not agree at one instant.
    c.wait_ready(&[0, 1, 2], Duration::from_secs(60))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let views = loop {
        let views: Vec<Value> = (0..NODES).map(|i| c.node(i).get_json("/api/cluster")).collect::<Result<_, _>>()?;
        if views.windows(2).all(|w| w[0]["owners"] == w[1]["owners"]) {
            break views;
        }
        let figures = c.figures();
        assert!(Instant::now() < deadline, "the nodes disagree on who keeps each shard after the heal\n{figures}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let figures = c.figures();
    let (_, twice) = e2e::cluster::shards_kept(&views);
    assert!(twice.is_empty(), "shards {twice:?} are kept by two nodes after the heal\n{figures}");
    let settled = healed.elapsed();

    // Node 3 knows again the peers connected to the other two (it forgot them while they were
    // silent): without them it cannot route signalling or relay frames to the holders.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let remote = c.metric(2, "pp_cluster_remote_peers")?;
        if remote >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 knows {remote} of the 3 peers connected to nodes 1 and 2, {:?} after the heal \
             (pp_cluster_remote_peers)\n{}",
            healed.elapsed(),
            c.figures()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // What was published meanwhile is found, located and fetched through node 3.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let found = q.cli_json(&["search", "during.bin"]).map(|v| v.to_string()).unwrap_or_default();
        if found.contains(&y) {
            break;
        }
        ensure!(Instant::now() < deadline, "node 3 never found during.bin after the heal: {found}\n{}", c.figures());
        std::thread::sleep(Duration::from_millis(500));
    }
    let detail = c.node(2).get_json(&format!("/api/files/{y}"))?;
    assert_eq!(detail["name"], "during.bin", "node 3 answers for the file published while it was cut off: {detail}");
    let out = c.tmp.path().join("during.out");
    let got = q.cli_json(&["get", &y, "-o", &out.to_string_lossy()]);
    let got = got.with_context(|| format!("get through node 3 after the heal\n{}", c.figures()))?;
    assert!(std::fs::read(&out)? == y_bytes, "the bytes fetched through node 3 after the heal differ");
    eprintln!(
        "node 3 refused {refused3} requests while cut off; settled {settled:?} after the heal; its peer fetched \
         during.bin in {:.2} s; test {:?}",
        got["seconds"].as_f64().unwrap_or(f64::NAN),
        t0.elapsed()
    );
    Ok(())
}

#[test]
fn a_native_peer_whose_nodes_host_drops_off_the_network_moves_to_another_node() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let c = NatCluster::start("cnat-link", false)?;
    // The only peer of the swarm at first: the file's only holder is m.
    let m = c.peer("cnat-link-m", Host::Lan2, 1)?;
    ensure!(tracker_of(&m)? == c.url(1), "the peer starts on node 2");
    let (id, bytes) = put_retrying(&m, c.tmp.path(), "moved.bin", 3 * MIB + 7, 65)?;
    c.wait_copies(0, &id, 1, Duration::from_secs(30))?;

    c.settle();
    // Node 2's host drops off the network: its NATS server and tracker run on, unheard.
    c.net.set_link(Host::Node2, false)?;
    let cut = Instant::now();
    let deadline = cut + Duration::from_secs(60);
    let (moved_to, moved_after) = loop {
        let url = tracker_of(&m).unwrap_or_default();
        let listed = (url == c.url(0) || url == c.url(2))
            && c.node(if url == c.url(0) { 0 } else { 2 })
                .get_json("/api/peers")
                .is_ok_and(|p| p.to_string().contains(&m.peer_id));
        if listed {
            break (url, cut.elapsed());
        }
        ensure!(Instant::now() < deadline, "the peer never left node 2 (now on {url:?})\n{}", c.figures());
        std::thread::sleep(Duration::from_millis(250));
    };
    let other = if moved_to == c.url(0) { 0 } else { 2 };
    eprintln!("the peer moved to node {} {moved_after:?} after node 2's link went down", other + 1);
    // 15 s without a word (pings every 5 s: noticed 15 to 20 s after the last one), the node it
    // was on tried once more (a connection that never opens is given up after 10 s), then the
    // next node: about 30 s at worst.
    assert!(
        moved_after < Duration::from_secs(35),
        "the peer took {moved_after:?} to move to node {} (15 s of silence, then a reconnect)\n{}",
        other + 1,
        c.figures()
    );

    // The two nodes left keep every shard between them (node 2's leases lapsed 3 s after its
    // last renewal, long before the peer moved).
    let lapse = Duration::from_secs(40).saturating_sub(cut.elapsed());
    c.wait_ready(&[0, 2], lapse.max(Duration::from_secs(5)))
        .with_context(|| format!("{:?} after node 2's link went down", cut.elapsed()))?;
    eprintln!("nodes 1 and 3 keep every shard {:?} after the cut", cut.elapsed());

    // Its holdings are announced there: the two nodes left list it as the file's holder (the
    // shard may have moved with node 2), and a fresh peer fetches the file through the other.
    let third = 2 - other;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let f = c.node(third).get_json(&format!("/api/files/{id}")).unwrap_or(Value::Null);
        if f["peers"].to_string().contains(&m.peer_id) && f["health"]["min_copies"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "node {} never knew the moved peer holds the file: {f}\n{}",
            third + 1,
            c.figures()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let got = c.get_fresh(Host::Lan1A, &c.url(third), &id, "moved")?;
    assert!(got == bytes, "the bytes fetched through node {} from the moved peer differ", third + 1);
    eprintln!("fetched through node {} from the moved peer; test {:?}", third + 1, t0.elapsed());
    Ok(())
}
