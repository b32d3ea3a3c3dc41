//! `pp-loadtest exhaust`: can a stranger exhaust the tracker? Starts a real tracker (`tracker`
//! from `PP_BIN_DIR`, default `target/debug`) with `--limit-exempt none`, a native seeder of a
//! 4 MiB file, and measures, beside the same run's idle baseline:
//!
//! - **(a) one identity** flooding the tracker at full speed for `--duration` seconds: `have`
//!   of made-up chunk ids ([`CLAIMS_PER_HAVE`] per message, new ones each time) and phantom
//!   publishes (it claims made-up chunks, then publishes them as a file of
//!   [`PHANTOM_CHUNKS`] chunks), reconnecting whenever the tracker closes it;
//! - **(b) `--identities` identities from one address** doing the same together;
//! - the tracker's resident memory (`VmRSS`): idle, and its peak during each attack;
//! - an honest `pp-peer get` of the 4 MiB file (a fresh short-lived peer each time): quiet,
//!   and during each attack (repeated while it lasts).
//!
//! Each attack runs on a fresh tracker. The attackers come from made-up addresses through a
//! trusted proxy header (`--trusted-proxy 127.0.0.1/32`), the honest peers from 127.0.0.1, so
//! the per-address limits tell them apart as they would on the internet. The targets
//! (10 minutes of (a): at most 64 MiB more; (b): at most 256 MiB more; the get under 2× its
//! quiet time) are printed beside the figures; they are not asserted.

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use pp_cli::duration::Secs;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swarm_core::wire::{ErrorCode, FileMeta};
use swarm_core::{ChunkId, ClientMsg, Manifest, PeerKind, ServerMsg, CHUNK_SIZE};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Made-up chunk ids in one `have`.
pub const CLAIMS_PER_HAVE: usize = 10_000;
/// Chunks of one phantom file (as in the attack).
pub const PHANTOM_CHUNKS: usize = 60_000;
/// Size of the honest file.
const GET_BYTES: usize = 4 << 20;

#[derive(clap::Args, Debug, Clone)]
pub struct ExhaustArgs {
    /// How long each attack lasts (`60s`, `10m`; a bare number is seconds; at most 1h; the
    /// issue's target is for 10m).
    #[arg(long, default_value_t = Secs::from_secs(60), value_parser = |s: &str| crate::duration_in(s, 1, 3600))]
    pub duration: Secs,
    /// Identities from one address in attack (b).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub identities: u32,
    /// Honest gets timed before each attack (the median is the quiet time).
    #[arg(long, default_value_t = 3)]
    pub quiet_gets: u32,
    /// Extra tracker flags (repeatable), e.g. `--tracker-arg=--state-budget=256MiB`.
    #[arg(long, allow_hyphen_values = true)]
    pub tracker_arg: Vec<String>,
}

/// What the attackers sent and were told.
#[derive(Default)]
struct Tally {
    claims: AtomicU64,
    publishes: AtomicU64,
    reconnects: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn error(&self, code: ErrorCode) {
        let name = serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        *self.errors.lock().unwrap_or_else(|e| e.into_inner()).entry(name).or_default() += 1;
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

/// `n` fresh random chunk ids.
fn made_up(n: usize) -> Vec<ChunkId> {
    (0..n).map(|_| ChunkId(rand::random())).collect()
}

/// A connection from `addr` (as a trusted proxy names it), welcomed as `secret`.
async fn attacker(url: &str, addr: &str, secret: &str) -> anyhow::Result<crate::peer::Ws> {
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("x-forwarded-for", addr.parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let keys = swarm_core::identity::Keypair::from_secret(secret);
    ws.send(Message::Text(keys.hello(PeerKind::Native, None).to_json().into())).await?;
    while let Some(m) = ws.next().await {
        if let Message::Text(t) = m? {
            match serde_json::from_str::<ServerMsg>(t.as_str())? {
                ServerMsg::AuthChallenge { nonce } => {
                    ws.send(Message::Text(keys.proof(&nonce, url, None).to_json().into())).await?;
                }
                ServerMsg::Welcome { .. } => return Ok(ws),
                ServerMsg::Error { code, message, .. } => anyhow::bail!("hello refused: {code:?}: {message}"),
                _ => {}
            }
        }
    }
    anyhow::bail!("closed before welcome")
}

/// One attacking identity: floods until `stop`, reconnecting when closed or refused.
async fn flood(url: String, addr: &'static str, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let secret = crate::peer::new_secret();
    let mut req = 0u32;
    while !stop.load(Relaxed) {
        let ws = match attacker(&url, addr, &secret).await {
            Ok(ws) => ws,
            Err(_) => {
                tally.reconnects.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let (mut tx, mut rx) = ws.split();
        let t = tally.clone();
        // Reads (and counts the refusals) so the tracker never finds it slow.
        let reader = tokio::spawn(async move {
            while let Some(Ok(m)) = rx.next().await {
                if let Message::Text(text) = m {
                    if let Ok(ServerMsg::Error { code, .. }) = serde_json::from_str::<ServerMsg>(text.as_str()) {
                        t.error(code);
                    }
                }
            }
        });
        while !stop.load(Relaxed) && !reader.is_finished() {
            let have = ClientMsg::Have { chunks: made_up(CLAIMS_PER_HAVE), full: false };
            if tx.send(Message::Text(have.to_json().into())).await.is_err() {
                break;
            }
            tally.claims.fetch_add(CLAIMS_PER_HAVE as u64, Relaxed);
            let chunks = made_up(PHANTOM_CHUNKS);
            let manifest = Manifest { size: chunks.len() as u64 * CHUNK_SIZE as u64, chunk_size: CHUNK_SIZE, chunks };
            let have = ClientMsg::Have { chunks: manifest.chunks.clone(), full: false };
            req += 1;
            let meta = FileMeta::public(format!("phantom-{req}.bin"), "application/octet-stream");
            let publish = ClientMsg::Publish { req, manifest, meta };
            if tx.send(Message::Text(have.to_json().into())).await.is_err()
                || tx.send(Message::Text(publish.to_json().into())).await.is_err()
            {
                break;
            }
            tally.publishes.fetch_add(1, Relaxed);
        }
        reader.abort();
        tally.reconnects.fetch_add(1, Relaxed);
    }
}

/// A tracker with the seeder of the honest file.
struct Setup {
    tracker: e2e::Tracker,
    _seeder: e2e::NativePeer,
    file: String,
    dir: tempfile::TempDir,
    pid: u32,
}

fn setup(args: &ExhaustArgs) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let mut flags = vec!["--limit-exempt", "none", "--trusted-proxy", "127.0.0.1/32", "--max-conns-per-ip", "0"];
    flags.extend(args.tracker_arg.iter().map(String::as_str));
    let tdir = dir.path().join("tracker");
    std::fs::create_dir_all(&tdir)?;
    let tracker = e2e::Tracker::start_with("exhaust-tracker", None, &tdir, 0, &flags)?;
    let pid = tracker.proc.child.id();
    let sdir = dir.path().join("seeder");
    std::fs::create_dir_all(&sdir)?;
    let seeder = e2e::NativePeer::start("exhaust-seeder", &tracker, &sdir)?;
    let (file, _) = seeder.put_random(dir.path(), "honest.bin", GET_BYTES, 7)?;
    Ok(Setup { tracker, _seeder: seeder, file, dir, pid })
}

/// One honest `pp-peer get` with a fresh data dir: how long it took.
async fn honest_get(s: &Setup, n: u32) -> anyhow::Result<Duration> {
    let data = s.dir.path().join(format!("getter-{n}"));
    let out = s.dir.path().join(format!("got-{n}.bin"));
    let started = Instant::now();
    let status = tokio::process::Command::new(e2e::bin("pp-peer"))
        .arg("--tracker")
        .arg(s.tracker.ws_url())
        .arg("--data-dir")
        .arg(&data)
        .args(["--quiet", "get", &s.file, "--force", "-o"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await?;
    let took = started.elapsed();
    anyhow::ensure!(status.success(), "pp-peer get exited {status}");
    anyhow::ensure!(std::fs::metadata(&out)?.len() == GET_BYTES as u64, "the honest get wrote a short file");
    let _ = std::fs::remove_dir_all(&data);
    Ok(took)
}

/// Runs one attack of `identities` identities from one address on a fresh tracker; prints
/// its figures beside the idle baseline and returns `key=value` words.
async fn attack(args: &ExhaustArgs, name: &str, identities: u32, addr: &'static str) -> anyhow::Result<Vec<String>> {
    let s = setup(args)?;
    let mut quiet = Vec::new();
    for n in 0..args.quiet_gets.max(1) {
        quiet.push(honest_get(&s, n).await.context("honest get, quiet")?);
    }
    let quiet = median(quiet).expect("one at least");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = crate::stats::rss_bytes(s.pid)?;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let floods: Vec<_> =
        (0..identities).map(|_| tokio::spawn(flood(s.tracker.ws_url(), addr, stop.clone(), tally.clone()))).collect();
    let until = Instant::now() + args.duration.duration();
    let mut peak = idle;
    let mut during = Vec::new();
    let mut failed_gets = 0;
    let mut n = 100;
    while Instant::now() < until {
        n += 1;
        match honest_get(&s, n).await {
            Ok(took) => during.push(took),
            Err(_) => failed_gets += 1,
        }
        peak = peak.max(crate::stats::rss_bytes(s.pid)?);
        let left = until.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
        tokio::time::sleep(left).await;
        peak = peak.max(crate::stats::rss_bytes(s.pid)?);
    }
    stop.store(true, Relaxed);
    for f in floods {
        f.abort();
    }
    let end = crate::stats::rss_bytes(s.pid)?;
    peak = peak.max(end);
    let st = crate::stats::tracker_stats(&s.tracker.ws_url()).await?;
    let gets = during.len();
    let during_med = median(during.clone());
    let worst = during.iter().max().copied();
    let ratio = during_med.map(|d| d.as_secs_f64() / quiet.as_secs_f64());
    let errors = tally.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!("{name}: {identities} identities from {addr} for {}", args.duration);
    println!(
        "  tracker RSS: idle {:.1} MiB, peak {:.1} MiB (+{:.1} MiB), at the end {:.1} MiB",
        mib(idle),
        mib(peak),
        mib(peak.saturating_sub(idle)),
        mib(end)
    );
    println!(
        "  honest 4 MiB get: quiet {:.2} s (median of {}), during {} (median of {gets}, worst {}, {failed_gets} failed): \
         {} its quiet time",
        quiet.as_secs_f64(),
        args.quiet_gets.max(1),
        during_med.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        worst.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        ratio.map_or("-".into(), |r| format!("{r:.2}×")),
    );
    println!(
        "  sent: {} made-up claims, {} phantom publishes of {PHANTOM_CHUNKS} chunks, {} reconnects; told: {errors:?}",
        Tally::get(&tally.claims),
        Tally::get(&tally.publishes),
        Tally::get(&tally.reconnects),
    );
    println!("  tracker kept: {} claims, {} files, {} peers", st["claims"], st["files"], st["peers"]);
    let key = name.split_whitespace().next().unwrap_or(name).trim_matches(|c| c == '(' || c == ')');
    Ok(vec![
        format!("{key}_rss_idle_mib={:.1}", mib(idle)),
        format!("{key}_rss_grown_mib={:.1}", mib(peak.saturating_sub(idle))),
        format!("{key}_get_quiet_s={:.2}", quiet.as_secs_f64()),
        format!("{key}_get_during_s={}", during_med.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64()))),
    ])
}

impl Tally {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

/// Runs both attacks; prints their figures and a `summary:` line.
pub async fn run(args: ExhaustArgs) -> anyhow::Result<()> {
    let tracker = e2e::bin("tracker");
    anyhow::ensure!(
        Path::new(&tracker).exists() && e2e::bin("pp-peer").exists(),
        "no {} (build the binaries first: cargo build --release --bins, and set PP_BIN_DIR=target/release)",
        tracker.display()
    );
    rlimit::increase_nofile_limit(4096).context("cannot raise the file descriptor limit")?;
    let mut summary = attack(&args, "(a) one identity", 1, "198.51.100.66").await?;
    summary.extend(attack(&args, "(b) many identities", args.identities, "198.51.100.77").await?);
    println!("targets: (a) at most 64 MiB more over 600 s, (b) at most 256 MiB more, the get under 2× its quiet time");
    println!("summary: {}", summary.join(" "));
    Ok(())
}
