//! `pp-loadtest`: opens N websocket peers against a running tracker (loopback only), each
//! saying hello with a random secret, and measures what the tracker sustains, in the manner
//! of aquatic's load tester:
//!
//! - connected peers, and how long connecting took;
//! - the tracker's resident memory per idle peer: `VmRSS` of `--tracker-pid` before and after
//!   connecting, divided by the peers connected;
//! - signalling throughput: for `--duration` seconds peers send `signal` messages to random
//!   other peers at `--signal-rate` messages per second in total, and count what arrives
//!   (messages relayed per second, relay latency quantiles).
//!
//! Run against a release tracker, e.g.
//! `tracker --listen 127.0.0.1:8090 --max-conns-per-ip 0 --max-peers 20000 & pp-loadtest
//! --tracker ws://127.0.0.1:8090/ws --tracker-pid $! --peers 10000 --signal-rate 50000`.

mod peer;
mod stats;

use anyhow::Context;
use clap::Parser;
use stats::{rss_bytes, Stats};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
#[command(name = "pp-loadtest", version, about, long_about = None)]
struct Args {
    /// Tracker websocket url; only loopback addresses are allowed.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    tracker: String,
    /// Peers to connect (at most 30000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..=30_000))]
    peers: u32,
    /// Seconds of signalling (at most 600).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration: u64,
    /// Signalling messages per second, over all peers (0: only connect and measure memory).
    #[arg(long, default_value_t = 10_000)]
    signal_rate: u32,
    /// Peers that send signals (0: all of them); the others only receive.
    #[arg(long, default_value_t = 0)]
    senders: u32,
    /// Tracker process id, to read its resident memory from /proc.
    #[arg(long)]
    tracker_pid: Option<u32>,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
    /// Seconds to wait after connecting before measuring memory.
    #[arg(long, default_value_t = 2)]
    settle: u64,
}

fn check_loopback(url: &str) -> anyhow::Result<()> {
    let rest = url.strip_prefix("ws://").context("the tracker url must start with ws://")?;
    let host = rest.split('/').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    anyhow::ensure!(
        matches!(host, "127.0.0.1" | "localhost" | "[::1]"),
        "the load test only runs against a tracker on this machine (127.0.0.1), not {host}"
    );
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    check_loopback(&args.tracker)?;
    let n = args.peers as usize;
    let limit = rlimit::increase_nofile_limit(n as u64 + 1024).context("cannot raise the file descriptor limit")?;
    anyhow::ensure!(limit >= n as u64 + 64, "file descriptor limit {limit} is too low for {n} peers");

    let rss_before = args.tracker_pid.map(rss_bytes).transpose()?;
    let stats = Arc::new(Stats::default());

    // Connect.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut joins = Vec::with_capacity(n);
    for _ in 0..n {
        let (gate, url) = (gate.clone(), args.tracker.clone());
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("open");
            tokio::time::timeout(Duration::from_secs(30), peer::join(&url)).await.map_err(anyhow::Error::from)?
        }));
    }
    let mut conns = Vec::with_capacity(n);
    let mut failures = 0;
    let mut first_error = None;
    for j in joins {
        match j.await? {
            Ok(c) => conns.push(c),
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    println!(
        "peers: {} connected, {failures} failed, in {connect_secs:.1} s ({:.0} connections/s)",
        conns.len(),
        conns.len() as f64 / connect_secs
    );
    if let Some(e) = first_error {
        println!("  first failure: {e:#}");
    }
    anyhow::ensure!(conns.len() >= 2, "too few peers connected");

    if let (Some(pid), Some(before)) = (args.tracker_pid, rss_before) {
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        let after = rss_bytes(pid)?;
        let per_peer = after.saturating_sub(before) as f64 / conns.len() as f64;
        println!(
            "tracker memory: {:.1} MiB before, {:.1} MiB with {} idle peers: {per_peer:.0} bytes per idle peer",
            mib(before),
            mib(after),
            conns.len()
        );
    }
    if args.signal_rate == 0 {
        return Ok(());
    }

    // Signal.
    let ids: Arc<Vec<_>> = Arc::new(conns.iter().map(|(_, id)| id.clone()).collect());
    let senders = if args.senders == 0 { conns.len() } else { (args.senders as usize).min(conns.len()) };
    let interval = Duration::from_secs_f64(senders as f64 / args.signal_rate as f64);
    let epoch = Instant::now();
    let until = epoch + Duration::from_secs(args.duration);
    let mut tasks = Vec::with_capacity(conns.len());
    for (i, (ws, _)) in conns.into_iter().enumerate() {
        let every = (i < senders).then_some(interval);
        tasks.push(tokio::spawn(peer::run(ws, i, ids.clone(), every, epoch, until, stats.clone())));
    }
    let mut last = (0, 0);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (s, r) = (Stats::get(&stats.sent), Stats::get(&stats.received));
        println!("  {:>4.0} s: sent {:>7}/s, received {:>7}/s", epoch.elapsed().as_secs_f64(), s - last.0, r - last.1);
        last = (s, r);
    }
    // Let the last messages arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let secs = args.duration as f64;
    let (sent, received) = (Stats::get(&stats.sent), Stats::get(&stats.received));
    let ms = |q| stats.latency_quantile(q).map_or("-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0));
    println!(
        "signalling: {senders} senders for {secs:.0} s: sent {sent} ({:.0}/s), relayed and received {received} ({:.0}/s), \
         errors {} (rate limited {}), latency p50 < {} p99 < {}",
        sent as f64 / secs,
        received as f64 / secs,
        Stats::get(&stats.errors),
        Stats::get(&stats.rate_limited),
        ms(0.5),
        ms(0.99),
    );
    if let Some(pid) = args.tracker_pid {
        println!("tracker memory after signalling: {:.1} MiB", mib(rss_bytes(pid)?));
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
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
}
