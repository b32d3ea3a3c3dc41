//! The loopback tracker cluster of the cluster tests (`e2e/tests/cluster.rs`,
//! `e2e/tests/cluster_liars.rs`): a 3-server NATS JetStream cluster and three tracker nodes
//! with short leases ([`Cluster`]), native peers given every node's URL (their own node's
//! first), and the waits and one-shot commands those tests share.

use crate::nats::NatsCluster;
use crate::{bin, free_port, web_dir, NativePeer, Tracker};
use anyhow::{bail, Context};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Tracker nodes in a [`Cluster`].
pub const NODES: usize = 3;
/// Shards of the cluster (the tracker's default `--cluster-shards`).
pub const SHARDS: u64 = 32;
/// Short leases, so a dead node's shards move within seconds.
pub const LEASE_SECS: &str = "3";

/// A 3-server NATS cluster and [`NODES`] tracker nodes on loopback, with a temporary
/// directory for their data and the peers'; every process is killed when it drops.
pub struct Cluster {
    pub nats: NatsCluster,
    /// The nodes (`None`: killed).
    pub nodes: Vec<Option<Tracker>>,
    pub ports: Vec<u16>,
    /// The NATS URLs each node is given.
    pub nats_of: Vec<String>,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// NATS cluster and three nodes; `nats_of(i)` chooses node i's NATS URLs (all by default).
    pub fn start(name: &str, nats_of: impl Fn(&NatsCluster, usize) -> String) -> anyhow::Result<Self> {
        let mut nats = NatsCluster::start(3)?;
        nats.wait_healthy(Duration::from_secs(30))?;
        let tmp = tempfile::tempdir()?;
        let mut c = Self {
            nodes: (0..NODES).map(|_| None).collect(),
            ports: (0..NODES).map(|_| free_port()).collect(),
            nats_of: (0..NODES).map(|i| nats_of(&nats, i)).collect(),
            nats,
            dir: tmp.path().to_path_buf(),
            _tmp: tmp,
        };
        for i in 0..NODES {
            c.start_node(name, i)?;
        }
        c.wait_ready(NODES, Duration::from_secs(60))?;
        Ok(c)
    }

    pub fn start_node(&mut self, name: &str, i: usize) -> anyhow::Result<()> {
        let port = self.ports[i];
        let public = format!("ws://127.0.0.1:{port}/ws");
        let data = self.dir.join(format!("node{i}"));
        let extra = [
            "--cluster",
            &self.nats_of[i],
            "--public-url",
            &public,
            "--cluster-lease-secs",
            LEASE_SECS,
            "--grace-secs",
            "1",
            "--stun-listen",
            "off",
        ];
        let t = Tracker::start_with(&format!("{name}-node{i}"), Some(&web_dir()), &data, port, &extra)?;
        self.nodes[i] = Some(t);
        Ok(())
    }

    pub fn node(&self, i: usize) -> &Tracker {
        self.nodes[i].as_ref().expect("node running")
    }

    pub fn live(&self) -> impl Iterator<Item = (usize, &Tracker)> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    /// Every live node sees `n` members and every shard has an owner.
    pub fn wait_ready(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let views: Vec<Value> = self.live().filter_map(|(_, t)| t.get_json("/api/cluster").ok()).collect();
            let ready = views.len() == self.live().count()
                && views.iter().all(|v| {
                    v["members"].as_array().map(Vec::len) == Some(n)
                        && v["connected"] == true
                        && v["owners"]
                            .as_array()
                            .is_some_and(|o| o.len() as u64 == SHARDS && o.iter().all(|x| x.is_u64()))
                });
            if ready {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("the cluster never settled with {n} nodes: {views:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every live node keeps its fair share of the shards (at least `SHARDS / live nodes`)
    /// and none is free: the shards stop moving. Until then a file whose shard is between
    /// two nodes is unknown to both (`/api/files/{id}` answers 404).
    pub fn wait_balanced(&self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let owned: Vec<usize> = self
                .live()
                .map(|(_, t)| t.get_json("/api/cluster").map(|v| v["owned"].as_array().map_or(0, Vec::len)))
                .collect::<Result<_, _>>()?;
            let fair = SHARDS as usize / owned.len().max(1);
            if owned.iter().sum::<usize>() == SHARDS as usize && owned.iter().all(|n| *n >= fair) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("the shards never spread over the nodes: each keeps {owned:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The index of the node that keeps file `id`'s shard.
    pub fn owner_of(&self, id: &str) -> anyhow::Result<usize> {
        let bytes = hex::decode(&id[..4])?;
        let shard = u16::from_be_bytes([bytes[0], bytes[1]]) as usize % SHARDS as usize;
        let (_, any) = self.live().next().context("no node")?;
        let tag = any.get_json("/api/cluster")?["owners"][shard].as_u64().context("shard has no owner")?;
        for (i, t) in self.live() {
            if t.get_json("/api/cluster")?["node"].as_u64() == Some(tag) {
                return Ok(i);
            }
        }
        bail!("no live node has tag {tag}")
    }

    /// Node `i`'s URL first, then the others': a peer's `--tracker`.
    pub fn urls_from(&self, i: usize) -> String {
        let mut order: Vec<usize> = (i..NODES).chain(0..i).collect();
        order.dedup();
        order.iter().map(|j| format!("ws://127.0.0.1:{}/ws", self.ports[*j])).collect::<Vec<_>>().join(",")
    }

    pub fn peer(&self, name: &str, node: usize) -> anyhow::Result<NativePeer> {
        NativePeer::start_with(name, &self.urls_from(node), &self.dir.join(name), &[], &[])
    }

    /// Kills node `i` as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut t) = self.nodes[i].take() {
            t.proc.kill();
        }
    }

    pub fn metric(&self, i: usize, name: &str) -> anyhow::Result<u64> {
        let text = self.node(i).get_text("/metrics")?;
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .with_context(|| format!("no {name} in node {i}'s metrics"))
    }
}

/// The shards the nodes' `/api/cluster` views say they keep (act for: a valid lease, loaded):
/// how many in all, and those kept by two nodes at once. The views are read one node after
/// the other, a few milliseconds apart: a shard handed over between two reads can show on
/// both, once. A shard seen twice in two polls in a row is kept twice.
pub fn shards_kept(views: &[Value]) -> (usize, std::collections::BTreeSet<u64>) {
    let mut owned: Vec<u64> = views
        .iter()
        .flat_map(|v| v["owned"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_u64())
        .collect();
    owned.sort_unstable();
    let twice = owned.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
    (owned.len(), twice)
}

/// Waits until every chunk of `id` has R copies and none is under-replicated (asked of node `via`).
pub fn wait_healthy(t: &Tracker, id: &str, timeout: Duration) -> anyhow::Result<Value> {
    let start = Instant::now();
    loop {
        let h = t.get_json(&format!("/api/files/{id}")).map(|f| f["health"].clone()).unwrap_or(Value::Null);
        if h["min_copies"].as_u64().unwrap_or(0) >= 3 && h["under_replicated"] == 0 {
            return Ok(h);
        }
        if start.elapsed() > timeout {
            bail!("file {id} never healed to R in {timeout:?}: {h}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A one-shot `pp-peer get` through `trackers`, into a fresh data dir; the bytes it saved.
pub fn get_fresh(trackers: &str, dir: &Path, id: &str, tag: &str) -> anyhow::Result<Vec<u8>> {
    let out = dir.join(format!("{tag}.out"));
    let o = Command::new(bin("pp-peer"))
        .args(["--tracker", trackers, "--data-dir"])
        .arg(dir.join(format!("{tag}-data")))
        .args(["get", id, "-o"])
        .arg(&out)
        .output()?;
    if !o.status.success() {
        bail!("get {id} via {trackers} failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(std::fs::read(out)?)
}

/// Retries a put until it succeeds (a shard may be moving, NATS electing a leader).
pub fn put_retrying(
    p: &NativePeer,
    dir: &Path,
    name: &str,
    size: usize,
    seed: u64,
) -> anyhow::Result<(String, Vec<u8>)> {
    let start = Instant::now();
    loop {
        match p.put_random(dir, name, size, seed) {
            Ok(x) => return Ok(x),
            Err(e) if start.elapsed() < Duration::from_secs(40) => {
                eprintln!("put {name} failed, retrying: {e:#}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends signal `sig` (`STOP`, `CONT`, `KILL`, …) to process `pid`.
pub fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status()?.success();
    anyhow::ensure!(ok, "kill -{sig} {pid} failed");
    Ok(())
}
