//! Lying peers against a tracker cluster, with real processes: a 3-server NATS JetStream
//! cluster and three tracker nodes on loopback (`e2e/src/cluster.rs`), honest `pp-peer run`
//! peers, and liars: raw websocket clients (`e2e/src/attacker.rs`) connected to other nodes
//! than the publisher's. An honest peer publishes a file through node 1; liars on nodes 2 and
//! 3 claim its chunks without holding them (answering challenges wrongly, "not held", or not
//! at all), say `order_done` for orders of other peers, and report the honest holders as bad
//! sources; one more, with a clean record and the most room, takes repair orders and says
//! `order_done` without copying anything.
//!
//! What a user relies on, whichever node they ask:
//! - a file's replication (`/api/files/{id}` `health`: verified copies, chunks lost, status;
//!   search's `min_holders`) never counts a liar as a copy, on any node, and the holders a
//!   downloader is given list the verified (honest) holders of each chunk before any liar;
//! - liars are found out: challenged, and struck (`pp_trust_challenges_sent_total`,
//!   `pp_trust_strikes_total`, summed over the nodes, since each node checks the claims of
//!   the shards it keeps);
//! - false reports do not evict honest holders: their copies stay counted and on their disks;
//! - a peer that knows only node 3 downloads the file, byte for byte, from honest peers;
//! - when an honest holder dies, repair brings the file back to R verified copies, on the
//!   honest peers left, whatever the liars say they did.

use anyhow::{bail, ensure, Context};
use e2e::attacker::{Answer, Attacker, Seen};
use e2e::cluster::{wait_healthy, Cluster, NODES};
use e2e::{bin, NativePeer, Tracker};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use swarm_core::swarm::ID_RANGE_BITS;
use swarm_core::{ChunkId, ClientMsg, PeerId};

const CHUNK: usize = 256 * 1024;
/// Chunks of the honest file.
const CHUNKS: usize = 12;
/// The tracker's replication (its default).
const R: u64 = 3;

/// A liar: the node it connects to (0-based) and how it answers challenges.
const LIARS: [(usize, Answer); 4] = [(1, Answer::Silent), (1, Answer::Wrong), (2, Answer::NotHeld), (2, Answer::Wrong)];

/// The file's detail as node `t` answers it.
fn detail(t: &Tracker, id: &str) -> anyhow::Result<Value> {
    t.get_json(&format!("/api/files/{id}")).with_context(|| format!("GET /api/files/{id} on port {}", t.port))
}

/// Checks what every live node says of the file: `ok` on each health; and, in the holders
/// each node gives a downloader (verified holders first), that the first `min_copies` holders
/// of every chunk, which are verified ones, are no liars.
fn check_every_node(
    c: &Cluster,
    id: &str,
    liars: &BTreeSet<String>,
    what: &str,
    ok: &dyn Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    for (i, t) in c.live() {
        let d = detail(t, id)?;
        let h = &d["health"];
        ensure!(ok(h), "{what}: node {} says {h}", i + 1);
        let verified = h["min_copies"].as_u64().context("min_copies")? as usize;
        let peers: Vec<&str> = d["peers"].as_array().context("peers")?.iter().filter_map(Value::as_str).collect();
        for (k, holders) in d["holders"].as_array().context("holders")?.iter().enumerate() {
            let ids: Vec<&str> = holders
                .as_array()
                .context("holders of a chunk")?
                .iter()
                .filter_map(|x| peers.get(x.as_u64()? as usize).copied())
                .collect();
            ensure!(
                ids.iter().take(verified).all(|p| !liars.contains(*p)),
                "{what}: node {} lists a liar among the verified holders of chunk {k}: {ids:?}",
                i + 1
            );
        }
    }
    Ok(())
}

/// Checks [`check_every_node`] on every poll for `secs` seconds.
fn hold(
    c: &Cluster,
    id: &str,
    liars: &BTreeSet<String>,
    what: &str,
    secs: u64,
    ok: &dyn Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        check_every_node(c, id, liars, what, ok)?;
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

/// Polls `f` until it gives `Some`, for at most `timeout`.
fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A metric summed over the live nodes (0 where a node does not have it yet).
fn metric_sum(c: &Cluster, name: &str) -> u64 {
    c.live().map(|(i, _)| c.metric(i, name).unwrap_or(0)).sum()
}

/// A number in `/api/stats` (a `/`-separated path), summed over the live nodes.
fn stat_sum(c: &Cluster, path: &str) -> anyhow::Result<u64> {
    let mut sum = 0;
    for (_, t) in c.live() {
        let mut v = t.get_json("/api/stats")?;
        for key in path.split('/') {
            v = v[key].take();
        }
        sum += v.as_u64().with_context(|| format!("/api/stats has no {path}"))?;
    }
    Ok(sum)
}

/// Chunks a running honest peer holds, by its own account.
fn held(p: &NativePeer) -> anyhow::Result<u64> {
    p.cli_json(&["status"])?["chunks"].as_u64().context("status has no chunks")
}

/// A one-shot `pp-peer get` through `trackers` into a fresh data dir: the bytes it saved and
/// the peers it fetched chunks from.
fn get_fresh(trackers: &str, dir: &Path, id: &str, tag: &str) -> anyhow::Result<(Vec<u8>, Vec<String>)> {
    let out = dir.join(format!("{tag}.out"));
    let o = Command::new(bin("pp-peer"))
        .args(["--tracker", trackers, "--data-dir"])
        .arg(dir.join(format!("{tag}-data")))
        .args(["--json", "get", id, "-o"])
        .arg(&out)
        .output()
        .context("cannot run pp-peer get")?;
    ensure!(o.status.success(), "get {id} via {trackers} failed: {}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout)
        .with_context(|| format!("get printed {}", String::from_utf8_lossy(&o.stdout)))?;
    let from = v["chunks_from"].as_object().with_context(|| format!("no chunks_from in {v}"))?;
    Ok((std::fs::read(&out).context("the downloaded file")?, from.keys().cloned().collect()))
}

/// What every liar received, for the log.
fn seen_line(liars: &[Attacker]) -> String {
    let line = |l: &Attacker| {
        let s = &l.seen;
        format!(
            "{:?}: {} challenged, {} orders, {} trims, {} errors",
            l.answer,
            Seen::get(&s.challenges),
            Seen::get(&s.orders),
            Seen::get(&s.trims),
            Seen::get(&s.errors)
        )
    };
    liars.iter().map(line).collect::<Vec<_>>().join("; ")
}

#[test]
fn liars_on_other_nodes_are_never_counted_and_harm_no_one() -> anyhow::Result<()> {
    let started = Instant::now();
    let c = Cluster::start("liars", |n, _| n.url_list())?;
    // No shard moves from here on (no node dies in this test).
    c.wait_balanced(Duration::from_secs(90))?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    // Honest peers: the publisher on node 1, one on each other node, and one more on node 1
    // (so repair has somewhere honest to copy to).
    let mut honest: Vec<NativePeer> = [0, 1, 2, 0]
        .iter()
        .enumerate()
        .map(|(n, node)| c.peer(&format!("liars-h{n}"), *node))
        .collect::<Result<_, _>>()?;
    let size = (CHUNKS - 1) * CHUNK + 5_000;
    let (id, bytes) = honest[0].put_random(&c.dir, "liars.bin", size, 71)?;
    for i in 0..NODES {
        wait_healthy(c.node(i), &id, Duration::from_secs(90))?;
    }
    let d = detail(c.node(0), &id)?;
    let chunks: Vec<ChunkId> =
        serde_json::from_value(d["manifest"]["chunks"].clone()).with_context(|| format!("node 1 answered {d}"))?;
    ensure!(chunks.len() == CHUNKS, "{CHUNKS} chunks: {}", d["manifest"]);
    // Each chunk is on R of the four (the publisher and two others, chosen per chunk).
    let before: Vec<u64> = honest.iter().map(held).collect::<Result<_, _>>()?;
    ensure!(before[0] == CHUNKS as u64, "the publisher holds its file: {before:?}");
    ensure!(before.iter().sum::<u64>() == R * CHUNKS as u64, "R copies of each chunk on honest peers: {before:?}");
    eprintln!("the file is at R on honest peers (chunks each: {before:?}) after {:?}", started.elapsed());

    // The liars connect to nodes 2 and 3, with room for everything.
    let liars: Vec<Attacker> = LIARS
        .iter()
        .enumerate()
        .map(|(n, (node, answer))| {
            rt.block_on(Attacker::connect(&c.node(*node).ws_url(), &format!("{:064x}", 0x11a0 + n), *answer))
        })
        .collect::<Result<_, _>>()?;
    let liar_ids: BTreeSet<String> = liars.iter().map(|l| l.peer_id.0.clone()).collect();
    let all_fine = |h: &Value| {
        h["min_copies"] == R
            && h["max_copies"] == R
            && h["lost"] == 0
            && h["under_replicated"] == 0
            && h["status"] == "ok"
    };
    let challenged_before = metric_sum(&c, "pp_trust_challenges_sent_total");
    for l in &liars {
        l.send(ClientMsg::Storage { used: 0, capacity: 1 << 50 })?;
        // A whole inventory of the file: surplus at R, so trimmed at once...
        l.send(ClientMsg::Have { chunks: chunks.clone(), full: true })?;
        // ...and the same claims one by one, as a downloader turned source would make them:
        // they stand until checked.
        l.send(ClientMsg::Have { chunks: chunks.clone(), full: false })?;
    }
    wait_until("the liars' claims to reach the shard's node", Duration::from_secs(30), || {
        let claimed = c
            .live()
            .filter_map(|(_, t)| detail(t, &id).ok())
            .map(|d| d["health"]["max_claimed"].as_u64().unwrap_or(0))
            .max();
        Ok(claimed.filter(|n| *n > R).map(|_| ()))
    })
    .or_else(|e| {
        // Checked at once and gone already: the attack was delivered all the same.
        let seen: u64 = liars.iter().map(|l| Seen::get(&l.seen.challenges) + Seen::get(&l.seen.trims)).sum();
        if seen > 0 {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    hold(&c, &id, &liar_ids, "with liars' claims", 5, &all_fine)?;

    // Orders of other peers, guessed: every node numbers its orders from its tag.
    let tags: Vec<u64> = c
        .live()
        .map(|(_, t)| t.get_json("/api/cluster").map(|v| v["node"].as_u64().unwrap_or(0)))
        .collect::<Result<_, _>>()?;
    let spray = |n: u64| -> anyhow::Result<()> {
        for l in &liars {
            for tag in &tags {
                for k in 0..n {
                    l.send(ClientMsg::OrderDone { order: (tag << ID_RANGE_BITS) + k })?;
                }
            }
        }
        Ok(())
    };
    spray(200)?;

    // Slander: every liar reports every honest peer for every chunk.
    for l in &liars {
        for h in &honest {
            for ch in &chunks {
                l.send(ClientMsg::BadSource { peer: PeerId(h.peer_id.clone()), chunk: *ch })?;
            }
        }
    }
    let refuted = wait_until("reports refuted by audits", Duration::from_secs(60), || {
        let n = stat_sum(&c, "trust/reports_refuted")?;
        Ok((n > 0).then_some(n))
    })?;
    hold(&c, &id, &liar_ids, "after slander and fake order_done", 8, &all_fine)?;
    for (n, p) in honest.iter().enumerate() {
        ensure!(held(p)? >= before[n], "honest peer {n} lost chunks to slander (held {})", before[n]);
    }

    // Found out: challenged, failed, and struck.
    let strikes = wait_until("strikes for the liars", Duration::from_secs(90), || {
        let s = metric_sum(&c, "pp_trust_strikes_total");
        Ok((s > 0).then_some(s))
    })?;
    let challenged = metric_sum(&c, "pp_trust_challenges_sent_total") - challenged_before;
    let failed = metric_sum(&c, "pp_trust_challenges_answered_total{outcome=\"failed\"}")
        + metric_sum(&c, "pp_trust_challenges_answered_total{outcome=\"expired\"}");
    let liar_challenges: u64 = liars.iter().map(|l| Seen::get(&l.seen.challenges)).sum();
    ensure!(liar_challenges > 0 && challenged > 0, "challenges: {challenged} sent, liars saw {liar_challenges}");
    ensure!(failed > 0, "no challenge failed: {}", seen_line(&liars));
    eprintln!(
        "liars found out: {challenged} challenges sent, {failed} failed or expired, {strikes} strikes, {refuted} reports refuted; {}",
        seen_line(&liars)
    );
    for (i, t) in c.live() {
        let found = t.get_json("/api/search?q=liars.bin")?;
        let f = found["files"].as_array().and_then(|f| f.iter().find(|f| f["id"] == id.as_str())).cloned();
        ensure!(f.as_ref().is_some_and(|f| f["min_holders"] == R), "search through node {} says {found}", i + 1);
    }

    // A peer that knows only node 3 downloads the file from honest peers.
    let node3 = c.node(2).ws_url();
    let (got, from) = get_fresh(&node3, &c.dir, &id, "liars-get")?;
    ensure!(got == bytes, "the bytes fetched through node 3 differ");
    let honest_ids: BTreeSet<&str> = honest.iter().map(|p| p.peer_id.as_str()).collect();
    ensure!(from.iter().all(|p| honest_ids.contains(p.as_str())), "fetched from {from:?}, not only honest peers");

    // An honest holder dies (not the publisher): repair brings the file back to R verified
    // copies, so onto all three honest peers left, while the liars take orders and lie.
    // A liar with a clean record and the most room, on node 3: repair's first choice for every
    // copy. It claims nothing; it takes orders and says they are done without fetching.
    let replicator = rt.block_on(Attacker::connect(&node3, &format!("{:064x}", 0x11af), Answer::Wrong))?;
    replicator.send(ClientMsg::Storage { used: 0, capacity: 1 << 50 })?;
    let victim = (1..honest.len()).max_by_key(|n| before[*n]).context("a holder other than the publisher")?;
    honest[victim].proc.kill();
    eprintln!("killed honest peer {victim}, which held {} chunks", before[victim]);
    spray(400)?;
    let at_most_r = |h: &Value| h["max_copies"].as_u64().is_some_and(|n| n <= R) && h["lost"] == 0;
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        check_every_node(&c, &id, &liar_ids, "during repair", &at_most_r)?;
        let healed = c.live().all(|(_, t)| detail(t, &id).is_ok_and(|d| all_fine(&d["health"])));
        if healed {
            break;
        }
        if Instant::now() > deadline {
            let h: Vec<Value> =
                c.live().filter_map(|(_, t)| detail(t, &id).ok()).map(|d| d["health"].clone()).collect();
            bail!("repair never brought the file back to R on honest peers: {h:?}; {}", seen_line(&liars));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    hold(&c, &id, &liar_ids, "repaired", 5, &all_fine)?;
    for n in (0..honest.len()).filter(|n| *n != victim) {
        ensure!(held(&honest[n])? >= CHUNKS as u64, "honest peer {n} does not hold the whole file after repair");
    }
    let orders = Seen::get(&replicator.seen.orders);
    ensure!(orders > 0, "repair never tried the liar with the most room: the lie was not told");
    eprintln!(
        "repaired on honest peers; repair orders the liars took and said were done: {orders} (replicator), {} (claimants); \
         took {:?}",
        liars.iter().map(|l| Seen::get(&l.seen.orders)).sum::<u64>(),
        started.elapsed()
    );
    drop(liars);
    Ok(())
}
