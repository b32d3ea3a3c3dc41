//! `pp-loadtest`: opens N websocket peers against a running tracker, or the nodes of a tracker
//! cluster (loopback only), each saying hello with a random secret, and measures what the
//! tracker sustains, in the manner of aquatic's load tester:
//!
//! - connected peers, and how long connecting took (peers are spread round-robin over the
//!   `--tracker` URLs);
//! - each node's resident memory per idle peer: `VmRSS` of its `--tracker-pid` before and
//!   after connecting, divided by the peers connected to the whole cluster and by those
//!   connected to that node;
//! - signalling throughput: for `--duration` seconds peers send `signal` messages to random
//!   other peers (with `--cross-node`, to peers of another node) at `--signal-rate` messages
//!   per second in total, and count what arrives (messages relayed per second, relay latency
//!   quantiles);
//! - claims (`--files`, `--chunks-per-file`, `--holdings`): some peers publish synthetic
//!   files, round-robin over the nodes, then every peer claims chunks of them; files published
//!   and refused (by error code), the claims each node keeps (`/api/stats` `claims`) and each
//!   node's memory growth ([`claims`]);
//! - failover (`--failover-kill-pid`): kills one node and measures how long its peers take to
//!   be welcomed by another node and re-announce ([`failover`]), then signals for
//!   `--after-failover` seconds to check the moved peers are reachable.
//!
//! - `pp-loadtest exhaust`: starts its own tracker and tries to exhaust it, one identity and
//!   many from one address, measuring its memory and an honest get's time ([`exhaust`]).
//!
//! Run against a release tracker, e.g.
//! `pp-tracker --listen 127.0.0.1:8090 --max-conns-per-ip 0 --max-peers 20000 & pp-loadtest
//! --tracker ws://127.0.0.1:8090/ws --tracker-pid $! --peers 10000 --signal-rate 50000`;
//! `scripts/bench-cluster.sh` compares one node with a cluster of three;
//! `scripts/bench-claims.sh` compares the claims they keep.

mod claims;
mod exhaust;
mod failover;
mod peer;
mod stats;

use anyhow::Context;
use claims::Files;
use clap::Parser;
use failover::Failover;
use peer::{Plan, Round, Swarm};
use pp_cli::duration::{parse_secs, Secs};
use stats::{quantile, rss_bytes, tracker_stats, Stats};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

#[derive(Parser, Debug)]
#[command(name = "pp-loadtest", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Tracker websocket URL; several (comma-separated or repeated) for the nodes of a
    /// cluster, peers are assigned to them round-robin. Only loopback addresses are allowed.
    #[arg(long, value_delimiter = ',', default_value = "ws://127.0.0.1:8080/ws")]
    tracker: Vec<String>,
    /// Peers to connect (at most 30000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..=30_000))]
    peers: u32,
    /// How long peers signal (`30s`, `2m`; a bare number is seconds; at most 10m).
    #[arg(long, default_value_t = Secs::from_secs(10), value_parser = |s: &str| duration_in(s, 1, 600))]
    duration: Secs,
    /// Signalling messages per second, over all peers (0: only connect and measure memory).
    #[arg(long, default_value_t = 10_000)]
    signal_rate: u32,
    /// Peers that send signals (0: all of them); the others only receive.
    #[arg(long, default_value_t = 0)]
    senders: u32,
    /// Send every signal to a peer of another node than the sender's (needs several
    /// `--tracker`s); without it receivers are random.
    #[arg(long)]
    cross_node: bool,
    /// Tracker process ids, to read their resident memory from /proc: one per `--tracker`, in
    /// the same order (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    tracker_pid: Vec<u32>,
    /// After signalling, kill this tracker node (SIGKILL; one of `--tracker-pid`) and measure
    /// how long its peers take to reconnect to another node and re-announce.
    #[arg(long)]
    failover_kill_pid: Option<u32>,
    /// How long the peers of the killed node have to get back (`90s`, `2m`; bare: seconds).
    #[arg(long, default_value_t = Secs::from_secs(60), value_parser = |s: &str| duration_in(s, 1, 3600))]
    failover_timeout: Secs,
    /// How long peers signal (random receivers) once the failover is over, to check the moved
    /// peers are reachable (`3s`; bare: seconds; 0: none).
    #[arg(long, default_value_t = Secs::from_secs(3), value_parser = |s: &str| duration_in(s, 0, 600))]
    after_failover: Secs,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
    /// How long to wait after connecting before measuring memory (and before the kill)
    /// (`2s`, `500ms`; bare: seconds).
    #[arg(long, default_value_t = Secs::from_secs(2), value_parser = |s: &str| duration_in(s, 0, 600))]
    settle: Secs,
    /// Synthetic files to publish after connecting (0: no claims phase); file f is published
    /// by a peer of the node `f mod nodes` (at most 100000).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    files: u32,
    /// Chunks in each synthetic file (at most 4096).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    chunks_per_file: u32,
    /// Chunks of the published files every peer then claims (`have` with `full: true`; a
    /// deterministic pseudo-random choice per peer). Needs `--files`.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    holdings: u32,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Start a tracker with `--limit-exempt none` and try to exhaust it: one identity, then
    /// many from one address, flooding made-up claims and phantom publishes; prints its memory
    /// and an honest 4 MiB get's time beside the idle baseline.
    Exhaust(exhaust::ExhaustArgs),
}

/// Refuses any tracker URL but a `ws://` one on this machine.
pub(crate) fn check_loopback(url: &str) -> anyhow::Result<()> {
    let rest = url.strip_prefix("ws://").context("the tracker url must start with ws://")?;
    let host = rest.split('/').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    anyhow::ensure!(
        matches!(host, "127.0.0.1" | "localhost" | "[::1]"),
        "the load test only runs against a tracker on this machine (127.0.0.1), not {host} ({url})"
    );
    Ok(())
}

/// A duration flag of the load test: with a unit (`30s`, `2m`, `500ms`; a bare number is seconds,
/// as these flags took before), between `min` and `max` seconds.
pub(crate) fn duration_in(s: &str, min: u64, max: u64) -> Result<Secs, String> {
    let d = parse_secs(s)?;
    if d < Secs::from_secs(min) || d > Secs::from_secs(max) {
        return Err(format!("{d} is not between {} and {}", Secs::from_secs(min), Secs::from_secs(max)));
    }
    Ok(d)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
}

/// Checks the arguments against each other; returns the index of the node to kill, if any.
fn check(args: &Args) -> anyhow::Result<Option<usize>> {
    anyhow::ensure!(!args.tracker.is_empty(), "--tracker needs at least one URL");
    for url in &args.tracker {
        check_loopback(url)?;
    }
    let nodes = args.tracker.len();
    anyhow::ensure!(
        args.tracker_pid.is_empty() || args.tracker_pid.len() == nodes,
        "--tracker-pid takes one pid per --tracker ({nodes} URLs, {} pids)",
        args.tracker_pid.len()
    );
    anyhow::ensure!(!args.cross_node || nodes >= 2, "--cross-node needs at least two --tracker URLs");
    anyhow::ensure!(args.holdings == 0 || args.files > 0, "--holdings needs --files (chunks to claim)");
    let Some(pid) = args.failover_kill_pid else { return Ok(None) };
    anyhow::ensure!(nodes >= 2, "--failover-kill-pid needs at least two --tracker URLs (somewhere to go)");
    let node = args
        .tracker_pid
        .iter()
        .position(|p| *p == pid)
        .with_context(|| format!("--failover-kill-pid {pid} is none of --tracker-pid: which node is it?"))?;
    Ok(Some(node))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Exhaust(a)) = args.command {
        return exhaust::run(a).await;
    }
    let kill_node = check(&args)?;
    let nodes = args.tracker.len();
    let n = args.peers as usize;
    let limit = rlimit::increase_nofile_limit(n as u64 + 1024).context("cannot raise the file descriptor limit")?;
    anyhow::ensure!(limit >= n as u64 + 64, "file descriptor limit {limit} is too low for {n} peers");

    let rss_before = args.tracker_pid.iter().map(|p| rss_bytes(*p)).collect::<anyhow::Result<Vec<_>>>()?;

    // Connect, round-robin over the nodes.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut joins = Vec::with_capacity(n);
    for i in 0..n {
        let (gate, url) = (gate.clone(), args.tracker[i % nodes].clone());
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("open");
            let secret = peer::new_secret();
            let joined = tokio::time::timeout(Duration::from_secs(30), peer::join(&url, &secret))
                .await
                .map_err(|_| anyhow::anyhow!("{url}: no welcome within 30 s"))??;
            anyhow::Ok((i % nodes, secret, joined))
        }));
    }
    let mut conns = Vec::with_capacity(n);
    let mut failures = vec![0usize; nodes];
    let mut first_error = None;
    for (i, j) in joins.into_iter().enumerate() {
        match j.await? {
            Ok(c) => conns.push(c),
            Err(e) => {
                failures[i % nodes] += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    println!(
        "peers: {} connected, {} failed, in {connect_secs:.1} s ({:.0} connections/s)",
        conns.len(),
        failures.iter().sum::<usize>(),
        conns.len() as f64 / connect_secs
    );
    if let Some(e) = first_error {
        println!("  first failure: {e:#}");
    }
    // `key=value` words for scripts, printed last.
    let mut summary = vec![
        format!("peers={}", conns.len()),
        format!("failed={}", failures.iter().sum::<usize>()),
        format!("connect_s={connect_secs:.1}"),
    ];
    anyhow::ensure!(conns.len() >= 2, "too few peers connected");

    // Every peer lives in its own task from now on.
    let mut by_node = vec![Vec::new(); nodes];
    for (i, (node, _, _)) in conns.iter().enumerate() {
        by_node[*node].push(i);
    }
    if nodes > 1 {
        for (node, url) in args.tracker.iter().enumerate() {
            println!("  node {} {url}: {} connected, {} failed", node + 1, by_node[node].len(), failures[node]);
        }
    }
    let dead_url = kill_node.map(|k| args.tracker[k].clone());
    let swarm = Arc::new(Swarm {
        ids: conns.iter().map(|(_, _, j)| j.id.clone()).collect(),
        node_of: conns.iter().map(|(node, _, _)| *node).collect(),
        by_node,
        urls: args.tracker.clone(),
        moved: conns.iter().map(|_| AtomicBool::new(false)).collect(),
        lost: AtomicU64::new(0),
        epoch: Instant::now(),
        failover: Failover::new(dead_url, args.failover_timeout.duration()),
        files: OnceLock::new(),
    });
    let (plan, plan_rx) = watch::channel(Plan::Idle);
    let mut tasks = Vec::with_capacity(conns.len());
    for (i, (_, secret, joined)) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(peer::drive(i, secret, joined, swarm.clone(), plan_rx.clone())));
    }
    let peers = swarm.ids.len();

    tokio::time::sleep(args.settle.duration()).await;
    let mut rss_idle = Vec::new();
    if !rss_before.is_empty() {
        let mut total = 0;
        for (node, (pid, before)) in args.tracker_pid.iter().zip(&rss_before).enumerate() {
            let after = rss_bytes(*pid)?;
            rss_idle.push(after);
            let grown = after.saturating_sub(*before);
            total += grown;
            let here = swarm.by_node[node].len();
            println!(
                "tracker memory, node {} (pid {pid}): {:.1} MiB before, {:.1} MiB with {here} of {peers} idle peers: \
                 {:.0} bytes per idle peer of the cluster, {:.0} bytes per idle peer of this node",
                node + 1,
                mib(*before),
                mib(after),
                grown as f64 / peers as f64,
                grown as f64 / here.max(1) as f64,
            );
            summary.push(format!("mem_cluster_{}={:.0}", node + 1, grown as f64 / peers as f64));
            summary.push(format!("mem_node_{}={:.0}", node + 1, grown as f64 / here.max(1) as f64));
        }
        if nodes > 1 {
            println!(
                "tracker memory, all {nodes} nodes: {:.1} MiB more, {:.0} bytes per idle peer",
                mib(total),
                total as f64 / peers as f64
            );
        }
        summary.push(format!("mem_all={:.0}", total as f64 / peers as f64));
    }

    if args.files > 0 {
        summary.extend(claims_phase(&args, &swarm, &plan, &rss_before, &rss_idle).await?);
    }

    if args.signal_rate > 0 {
        summary.extend(signal(&args, &swarm, &plan, args.duration.duration(), args.cross_node, "signalling").await);
        for (node, pid) in args.tracker_pid.iter().enumerate() {
            println!("tracker memory after signalling, node {}: {:.1} MiB", node + 1, mib(rss_bytes(*pid)?));
        }
    }

    if let (Some(pid), Some(node)) = (args.failover_kill_pid, kill_node) {
        summary.extend(failover(&args, &swarm, pid, node).await?);
        if args.signal_rate > 0 && !args.after_failover.duration().is_zero() {
            let after =
                signal(&args, &swarm, &plan, args.after_failover.duration(), false, "signalling after the failover")
                    .await;
            summary.extend(after.into_iter().map(|kv| format!("after_{kv}")));
        }
    }
    let lost = Stats::get(&swarm.lost);
    if lost > 0 {
        println!("dropped by a tracker (outside the failover): {lost} peers");
    }
    summary.push(format!("lost_peers={lost}"));
    println!("summary: {}", summary.join(" "));
    let _ = plan.send(Plan::Stop);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// One signalling round of `length`; prints a line per second and the summary, and
/// returns the summary's `key=value` words.
async fn signal(
    args: &Args,
    swarm: &Swarm,
    plan: &watch::Sender<Plan>,
    length: Duration,
    cross_node: bool,
    what: &str,
) -> Vec<String> {
    let peers = swarm.ids.len();
    let senders = if args.senders == 0 { peers } else { (args.senders as usize).min(peers) };
    let stats = Arc::new(Stats::default());
    let start = Instant::now();
    let until = start + length;
    let interval = Duration::from_secs_f64(senders as f64 / args.signal_rate as f64);
    let _ = plan.send(Plan::Signal(Arc::new(Round { stats: stats.clone(), until, interval, senders, cross_node })));
    let mut last = (0, 0);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (s, r) = (Stats::get(&stats.sent), Stats::get(&stats.received));
        println!("  {:>4.0} s: sent {:>7}/s, received {:>7}/s", start.elapsed().as_secs_f64(), s - last.0, r - last.1);
        last = (s, r);
    }
    // Let the last messages arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = plan.send(Plan::Idle);
    let secs = length.as_secs_f64();
    let (sent, received) = (Stats::get(&stats.sent), Stats::get(&stats.received));
    let lat = |q| stats.latency_quantile(q).map_or("-".into(), |us| format!("{:.1}", us as f64 / 1000.0));
    let lost = 100.0 * sent.saturating_sub(received) as f64 / sent.max(1) as f64;
    let receivers = if cross_node { "on another node" } else { "random" };
    println!(
        "{what}: {senders} senders for {secs:.0} s, receivers {receivers}: sent {sent} ({:.0}/s), relayed and \
         received {received} ({:.0}/s, {lost:.2}% lost), errors {} (rate limited {}), latency p50 < {} ms p90 < {} ms \
         p99 < {} ms p99.9 < {} ms",
        sent as f64 / secs,
        received as f64 / secs,
        Stats::get(&stats.errors),
        Stats::get(&stats.rate_limited),
        lat(0.5),
        lat(0.9),
        lat(0.99),
        lat(0.999),
    );
    let to_moved = Stats::get(&stats.sent_to_moved);
    if to_moved > 0 {
        println!(
            "  to peers that moved in the failover: sent {to_moved}, received {}",
            Stats::get(&stats.received_by_moved)
        );
    }
    vec![
        format!("sig_sent_per_s={:.0}", sent as f64 / secs),
        format!("sig_received_per_s={:.0}", received as f64 / secs),
        format!("sig_lost_pct={lost:.2}"),
        format!("sig_errors={}", Stats::get(&stats.errors)),
        format!("p50_ms={}", lat(0.5)),
        format!("p99_ms={}", lat(0.99)),
    ]
}

/// Every node's `claims` and expired challenges (`/api/stats`), in `--tracker` order, and
/// the longest any node took to answer.
async fn node_claims(args: &Args) -> anyhow::Result<(Vec<u64>, Vec<u64>, Duration)> {
    let (mut claims, mut expired, mut slowest) = (Vec::new(), Vec::new(), Duration::ZERO);
    for url in &args.tracker {
        let asked = Instant::now();
        let s = tracker_stats(url).await?;
        slowest = slowest.max(asked.elapsed());
        claims.push(s["claims"].as_u64().with_context(|| format!("{url}: /api/stats has no claims: {s}"))?);
        expired.push(s["trust"]["challenges_expired"].as_u64().unwrap_or(0));
    }
    Ok((claims, expired, slowest))
}

/// The claims phase ([`claims`]): publish the synthetic files, announce the holdings, wait
/// for the trackers' claim counts to settle, and report them with each node's memory; returns
/// the summary's `key=value` words.
async fn claims_phase(
    args: &Args,
    swarm: &Swarm,
    plan: &watch::Sender<Plan>,
    rss_before: &[u64],
    rss_idle: &[u64],
) -> anyhow::Result<Vec<String>> {
    let nodes = args.tracker.len();
    let peers = swarm.ids.len();
    let n = args.files as usize;
    let k = args.chunks_per_file as usize;
    let by_node = &swarm.by_node;
    let files = Arc::new(Files::new(n, k, args.holdings as usize, rand::random(), |f| {
        let here = &by_node[f % nodes];
        if here.is_empty() {
            f % peers
        } else {
            here[(f / nodes) % here.len()]
        }
    }));
    if swarm.files.set(files.clone()).is_err() {
        anyhow::bail!("the claims phase runs once");
    }
    let (claims_before, expired_before, _) = node_claims(args).await?;

    // Publish, and wait for every answer.
    let started = Instant::now();
    let _ = plan.send(Plan::Publish(files.clone()));
    let deadline = started + Duration::from_secs(60);
    let mut next_line = started + Duration::from_secs(1);
    while (Stats::get(&files.answered) as usize) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if Instant::now() >= next_line {
            next_line += Duration::from_secs(1);
            println!(
                "  {:>4.0} s: {} of {n} publishes answered",
                started.elapsed().as_secs_f64(),
                Stats::get(&files.answered)
            );
        }
    }
    let (published, refused, codes) = files.outcome();
    let codes_text = codes.iter().map(|(c, n)| format!("{c}:{n}")).collect::<Vec<_>>().join(",");
    println!(
        "files: {published} of {n} published ({k} chunks each) in {:.1} s, {refused} refused{}, {} unanswered",
        started.elapsed().as_secs_f64(),
        if codes.is_empty() { String::new() } else { format!(" ({codes_text})") },
        n - published - refused,
    );
    let pool = files.close_publishing().len();
    let rss_published = args.tracker_pid.iter().map(|p| rss_bytes(*p)).collect::<anyhow::Result<Vec<_>>>()?;

    // Every peer announces its whole inventory, holdings included.
    files.holding.store(true, Relaxed);
    let expected: u64 = (0..peers).map(|me| files.inventory(me).len() as u64).sum();
    let started = Instant::now();
    let _ = plan.send(Plan::Hold(files.clone()));
    let deadline = started + Duration::from_secs(30);
    while (Stats::get(&files.announced) as usize) < peers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let announced = Stats::get(&files.announced);
    // The counts settle once every node has taken every `have`: stop when they add up to the
    // claims made, when every node keeps them all, when they stop moving, or after 90 s. A
    // tracker busy with the claims may answer late: that is measured too.
    let mut last = Vec::new();
    let mut still = 0;
    let mut slowest = Duration::ZERO;
    let (counts, expired) = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (now, expired, slow) = node_claims(args).await?;
        slowest = slowest.max(slow);
        let made: Vec<u64> = now.iter().zip(&claims_before).map(|(a, b)| a.saturating_sub(*b)).collect();
        still = if made == last { still + 1 } else { 0 };
        last = made.clone();
        let done = made.iter().sum::<u64>() == expected || made.iter().all(|c| *c == expected) || still >= 3;
        if done || started.elapsed() > Duration::from_secs(90) {
            let expired: Vec<u64> = expired.iter().zip(&expired_before).map(|(a, b)| a.saturating_sub(*b)).collect();
            break (made, expired);
        }
    };
    let settled = started.elapsed();
    let _ = plan.send(Plan::Idle);
    println!(
        "claims: {announced} of {peers} peers announced {expected} claims ({} holdings each of {pool} published chunks, \
         and the publishers' own chunks); kept after {:.1} s: {}; challenges expired meanwhile: {}; slowest \
         /api/stats answer {:.1} s",
        args.holdings,
        settled.as_secs_f64(),
        counts.iter().enumerate().map(|(i, c)| format!("node {} {c}", i + 1)).collect::<Vec<_>>().join(", "),
        expired.iter().map(u64::to_string).collect::<Vec<_>>().join("/"),
        slowest.as_secs_f64(),
    );
    let mut summary = vec![
        format!("files_published={published}"),
        format!("files_refused={refused}"),
        format!("refusals={}", if codes.is_empty() { "-".to_string() } else { codes_text }),
        format!("claims_expected={expected}"),
        format!("claims_all={}", counts.iter().sum::<u64>()),
        format!("claims_settle_s={:.1}", settled.as_secs_f64()),
        format!("stats_slowest_s={:.1}", slowest.as_secs_f64()),
        format!("challenges_expired={}", expired.iter().map(u64::to_string).collect::<Vec<_>>().join("/")),
    ];
    for (node, c) in counts.iter().enumerate() {
        summary.push(format!("claims_{}={c}", node + 1));
    }
    for (node, pid) in args.tracker_pid.iter().enumerate() {
        let now = rss_bytes(*pid)?;
        let (before, idle, published) = (rss_before[node], rss_idle[node], rss_published[node]);
        let grown = now.saturating_sub(before);
        let phase = now.saturating_sub(idle);
        let per_claim =
            if counts[node] > 0 { format!("{:.0}", phase as f64 / counts[node] as f64) } else { "-".into() };
        println!(
            "tracker memory with claims, node {} (pid {pid}): {:.1} MiB idle, {:.1} MiB with the files, {:.1} MiB with \
             {} claims: {:.0} bytes per peer of the cluster in all ({:.0} of them since idle), {per_claim} bytes per \
             claim kept since idle",
            node + 1,
            mib(idle),
            mib(published),
            mib(now),
            counts[node],
            grown as f64 / peers as f64,
            phase as f64 / peers as f64,
        );
        summary.push(format!("mem_claims_peer_{}={:.0}", node + 1, grown as f64 / peers as f64));
        summary.push(format!("mem_claims_phase_{}={:.0}", node + 1, phase as f64 / peers as f64));
        summary.push(format!("bytes_per_claim_{}={per_claim}", node + 1));
    }
    Ok(summary)
}

/// Kills node `node` (process `pid`) and waits for its peers to be back elsewhere; returns
/// the summary's `key=value` words.
async fn failover(args: &Args, swarm: &Swarm, pid: u32, node: usize) -> anyhow::Result<Vec<String>> {
    let f = &swarm.failover;
    let expected = swarm.by_node[node].len();
    let killed_at = f.kill(pid)?;
    println!("failover: killed node {} (pid {pid}, {}) with {expected} peers", node + 1, args.tracker[node]);
    let deadline = killed_at + args.failover_timeout.duration() + Duration::from_secs(1);
    let mut next_line = killed_at + Duration::from_secs(1);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let back = f.times().len();
        let gave_up = Stats::get(&f.gave_up) as usize;
        if Instant::now() >= next_line {
            next_line += Duration::from_secs(1);
            println!("  {:>4.0} s: {back} of {expected} back", killed_at.elapsed().as_secs_f64());
        }
        if back + gave_up >= expected || Instant::now() >= deadline {
            break;
        }
    }
    let times = f.times();
    let never = expected.saturating_sub(times.len());
    println!(
        "failover: {} of {expected} peers welcomed by another node and re-announced, {never} never came back \
         within {}; time from the kill p50 {} p99 {} max {}; {} failed reconnection attempts",
        times.len(),
        args.failover_timeout,
        ms(quantile(&times, 0.5)),
        ms(quantile(&times, 0.99)),
        ms(times.last().copied()),
        Stats::get(&f.failed_attempts),
    );
    if let Some(e) = f.first_error() {
        println!("  first failed attempt: {e}");
    }
    tokio::time::sleep(args.settle.duration()).await;
    let ms = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1000.0));
    Ok(vec![
        format!("failover_peers={expected}"),
        format!("failover_back={}", times.len()),
        format!("failover_never={never}"),
        format!("failover_p50_ms={}", ms(quantile(&times, 0.5))),
        format!("failover_p99_ms={}", ms(quantile(&times, 0.99))),
        format!("failover_max_ms={}", ms(times.last().copied())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_trackers() {
        assert!(check_loopback("ws://127.0.0.1:8080/ws").is_ok());
        assert!(check_loopback("ws://localhost:1/ws").is_ok());
        assert!(check_loopback("ws://example.com:8080/ws").is_err());
        assert!(check_loopback("ws://10.0.0.1/ws").is_err());
        assert!(check_loopback("http://127.0.0.1/ws").is_err());
    }

    fn args(extra: &[&str]) -> anyhow::Result<Args> {
        let base =
            ["pp-loadtest", "--tracker", "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws", "--tracker", "ws://127.0.0.1:3/ws"];
        Ok(Args::try_parse_from(base.iter().chain(extra))?)
    }

    #[test]
    fn duration_flags_take_units_and_bare_seconds() {
        let a = args(&["--duration", "2m", "--settle", "500ms", "--failover-timeout", "90", "--after-failover", "0"])
            .unwrap();
        assert_eq!(a.duration.duration(), Duration::from_secs(120));
        assert_eq!(a.settle.duration(), Duration::from_millis(500));
        assert_eq!(a.failover_timeout.duration(), Duration::from_secs(90));
        assert!(a.after_failover.duration().is_zero());
        let d = args(&[]).unwrap();
        assert_eq!(
            [d.duration, d.settle, d.failover_timeout, d.after_failover].map(|s| s.duration().as_secs()),
            [10, 2, 60, 3],
            "the defaults are the seconds they were"
        );
        for bad in [["--duration", "11m"], ["--duration", "0s"], ["--duration", "soon"], ["--settle", "2 parsecs"]] {
            assert!(args(&bad).is_err(), "{bad:?} is refused");
        }
        let e = Args::try_parse_from(["pp-loadtest", "exhaust", "--duration", "10m"]).unwrap();
        let Some(Command::Exhaust(e)) = e.command else { panic!("the exhaust subcommand") };
        assert_eq!(e.duration.duration(), Duration::from_secs(600));
        assert!(Args::try_parse_from(["pp-loadtest", "exhaust", "--duration", "2h"]).is_err(), "at most 1h");
    }

    #[test]
    fn several_trackers_and_pids() {
        let a = args(&["--tracker-pid", "11,12", "--tracker-pid", "13", "--cross-node"]).unwrap();
        assert_eq!(a.tracker.len(), 3);
        assert_eq!(a.tracker_pid, vec![11, 12, 13]);
        assert_eq!(check(&a).unwrap(), None);
        let a = args(&["--tracker-pid", "11,12,13", "--failover-kill-pid", "12"]).unwrap();
        assert_eq!(check(&a).unwrap(), Some(1));
        assert!(check(&args(&["--tracker-pid", "11"]).unwrap()).is_err(), "one pid per node");
        assert!(check(&args(&["--tracker-pid", "11,12,13", "--failover-kill-pid", "14"]).unwrap()).is_err());
        let mut a = args(&["--tracker", "ws://example.com/ws"]).unwrap();
        assert!(check(&a).is_err(), "every URL is loopback");
        a.tracker.truncate(1);
        a.cross_node = true;
        assert!(check(&a).is_err(), "cross-node needs two nodes");
    }

    #[test]
    fn claims_options() {
        let a = args(&["--files", "500", "--holdings", "64"]).unwrap();
        assert_eq!((a.files, a.chunks_per_file, a.holdings), (500, 64, 64));
        assert!(check(&a).is_ok());
        let a = args(&[]).unwrap();
        assert_eq!((a.files, a.holdings), (0, 0), "no claims phase by default");
        assert!(check(&args(&["--holdings", "8"]).unwrap()).is_err(), "holdings need files");
        assert!(args(&["--files", "2", "--chunks-per-file", "0"]).is_err());
    }
}
