//! What the load test counts: messages sent and received, errors, a latency histogram
//! (lock-free, log-linear: eight buckets per power of two of microseconds, so a quantile is
//! within 12.5% of the truth), quantiles of a list of durations, a process's resident
//! memory, and a tracker's `/api/stats`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Sub-buckets per power of two.
const SUB: usize = 8;
const BUCKETS: usize = 40 * SUB;

pub struct Stats {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Signals sent to peers that moved to another node after the failover, and those of them
    /// that arrived.
    pub sent_to_moved: AtomicU64,
    pub received_by_moved: AtomicU64,
    latency_us: Box<[AtomicU64]>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            sent_to_moved: AtomicU64::new(0),
            received_by_moved: AtomicU64::new(0),
            latency_us: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// The bucket of a latency: values below `SUB` have one each, above that the power of two
/// and the next three bits pick it.
fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as usize; // >= 3
    let sub = ((us >> (octave - 3)) & (SUB as u64 - 1)) as usize;
    ((octave - 2) * SUB + sub).min(BUCKETS - 1)
}

/// The smallest latency above bucket `i` (its exclusive upper bound).
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64 + 1;
    }
    let (octave, sub) = (i / SUB + 2, (i % SUB) as u64);
    (SUB as u64 + sub + 1) << (octave - 3)
}

impl Stats {
    pub fn record_latency(&self, us: u64) {
        self.latency_us[bucket(us)].fetch_add(1, Relaxed);
    }

    /// The latency below which `q` of the samples fall (upper bucket bound), in microseconds.
    pub fn latency_quantile(&self, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self.latency_us.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let target = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Some(upper(i));
            }
        }
        None
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

/// The `q` quantile of `sorted` (nearest rank), `None` when empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

/// Resident memory of a process in bytes (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| anyhow::anyhow!("cannot read the memory of tracker pid {pid}: {e}"))?;
    let line =
        status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?;
    let kb: u64 = line.split_whitespace().nth(1).unwrap_or("0").parse()?;
    Ok(kb * 1024)
}

/// The HTTP `host:port` of a tracker's websocket URL (`ws://127.0.0.1:8080/ws`).
pub fn http_host(ws_url: &str) -> anyhow::Result<&str> {
    let rest = ws_url.strip_prefix("ws://").ok_or_else(|| anyhow::anyhow!("not a ws:// URL: {ws_url}"))?;
    Ok(rest.split('/').next().unwrap_or_default())
}

/// `GET /api/stats` of the tracker behind `ws_url`, as JSON (a plain HTTP/1.0 request: the
/// tracker is on this machine).
pub async fn tracker_stats(ws_url: &str) -> anyhow::Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = http_host(ws_url)?;
    let get = async {
        let mut s = tokio::net::TcpStream::connect(host).await?;
        s.write_all(format!("GET /api/stats HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        anyhow::Ok(answer)
    };
    // Generous: a tracker busy with a wave of claims answers late (measured by the caller).
    let answer = tokio::time::timeout(Duration::from_secs(120), get)
        .await
        .map_err(|_| anyhow::anyhow!("http://{host}/api/stats: no answer in 120 s"))?
        .map_err(|e| anyhow::anyhow!("http://{host}/api/stats: {e:#}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("http://{host}/api/stats: no body"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "http://{host}/api/stats: {head}");
    serde_json::from_str(body).map_err(|e| anyhow::anyhow!("http://{host}/api/stats is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_buckets() {
        let s = Stats::default();
        for _ in 0..99 {
            s.record_latency(100); // bucket [96, 104)
        }
        s.record_latency(5000); // bucket [4608, 5120)
        assert_eq!(s.latency_quantile(0.5), Some(104));
        assert_eq!(s.latency_quantile(1.0), Some(5120));
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn buckets_are_ordered_and_bound_their_values() {
        let mut last = 0;
        for us in (0..100_000u64).chain([1 << 30, u64::MAX / 2]) {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            last = b;
            if b < BUCKETS - 1 {
                assert!(us < upper(b), "{us} < {}", upper(b));
                assert!(b == 0 || us >= upper(b - 1), "{us} >= {}", upper(b - 1));
            }
        }
    }

    #[test]
    fn http_host_of_a_ws_url() {
        assert_eq!(http_host("ws://127.0.0.1:8080/ws").unwrap(), "127.0.0.1:8080");
        assert!(http_host("wss://x/ws").is_err());
    }

    #[test]
    fn nearest_rank_quantiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&d, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&d, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&d, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
