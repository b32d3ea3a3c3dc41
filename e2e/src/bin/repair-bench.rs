//! Repair benchmark: how long the swarm takes to bring every chunk back to R copies after a
//! native peer holding a whole file is killed, split into detection (kill → repair orders
//! start, which includes the grace period) and repair (orders start → every chunk at R), with
//! the repair rate beside a plain multi-source download rate measured in the same run.
//!
//! Usage: `cargo build --release --bins && PP_BIN_DIR=target/release \
//!   cargo run --release -p e2e --bin repair-bench -- [MiB] [peers]` (defaults 256 MiB, 5 peers).

use anyhow::{bail, Context};
use e2e::{random_file, NativePeer, Tracker};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(256);
    let n_peers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("bench-repair-tracker", None)?;
    let mut peers: Vec<NativePeer> = (0..n_peers)
        .map(|i| NativePeer::start(&format!("bench-repair-peer{i}"), &tracker, &tmp.path().join(format!("p{i}"))))
        .collect::<anyhow::Result<_>>()?;
    let (path, _) = random_file(tmp.path(), "bench.bin", mib << 20, 42)?;
    let t = Instant::now();
    let put = peers[0].cli_json(&["put", &path.to_string_lossy()])?;
    let id = put["files"][0]["id"].as_str().context("file id")?.to_string();
    println!("put {mib} MiB in {:.2} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    wait(&tracker, &id, |h| h["under_replicated"] == 0, Duration::from_secs(600))?;
    let placement = t.elapsed().as_secs_f64();
    println!(
        "placement to R copies: {placement:.2} s ({:.1} MB/s of copies)",
        2.0 * (mib << 20) as f64 / placement / 1e6
    );

    // Kill the uploader: it holds every chunk, so every chunk drops one copy.
    let orders_before = tracker.get_json("/api/stats")?["orders_issued"].as_u64().unwrap_or(0);
    let t0 = Instant::now();
    peers[0].proc.kill();
    let mut gone = None;
    let mut started = None;
    loop {
        let stats = tracker.get_json("/api/stats")?;
        if gone.is_none() && stats["peers"].as_u64() == Some(n_peers as u64 - 1) {
            gone = Some(t0.elapsed());
        }
        if started.is_none() && stats["orders_issued"].as_u64().unwrap_or(0) > orders_before {
            started = Some(t0.elapsed());
        }
        if started.is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("no repair began within 60 s: {stats}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    wait(&tracker, &id, |h| h["under_replicated"] == 0, Duration::from_secs(600))?;
    let done = t0.elapsed();
    let (gone, started) = (gone.unwrap_or(started.unwrap()), started.unwrap());
    let repair = done - started;
    let repair_rate = (mib << 20) as f64 / repair.as_secs_f64() / 1e6;

    // Baseline in the same run: a plain multi-source download of the same file.
    let fresh = NativePeer::start("bench-repair-fresh", &tracker, &tmp.path().join("fresh"))?;
    let out = tmp.path().join("got.bin");
    let t = Instant::now();
    fresh.cli_json(&["get", &id, "-o", &out.to_string_lossy()])?;
    let get_rate = (mib << 20) as f64 / t.elapsed().as_secs_f64() / 1e6;

    println!("peer killed holding {mib} MiB ({n_peers} peers, R=3, grace 3 s)");
    println!("  tracker saw it gone:   {:.3} s", gone.as_secs_f64());
    println!("  detection (to repair): {:.3} s  (target <= 5 s)", started.as_secs_f64());
    println!("  repair:                {:.3} s  (target: whole repair <= 15 s)", repair.as_secs_f64());
    println!("  kill to all at R:      {:.3} s", done.as_secs_f64());
    println!("  repair rate:           {repair_rate:.1} MB/s");
    println!("  download rate (same run, {} sources): {get_rate:.1} MB/s", n_peers - 1);
    println!("  repair / download:     {:.2}", repair_rate / get_rate);
    Ok(())
}

fn wait(tracker: &Tracker, id: &str, ok: impl Fn(&serde_json::Value) -> bool, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let f = tracker.get_json(&format!("/api/files/{id}"))?;
        if ok(&f["health"]) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("timed out: {}", f["health"]);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
