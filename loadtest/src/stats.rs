//! What the load test counts: messages sent and received, errors, a latency histogram in
//! power-of-two microsecond buckets (lock-free), and the tracker's resident memory.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub struct Stats {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Bucket `i` counts latencies in `[2^i, 2^(i+1))` microseconds.
    latency_us: [AtomicU64; 40],
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            latency_us: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Stats {
    pub fn record_latency(&self, us: u64) {
        let bucket = (64 - us.max(1).leading_zeros() as usize - 1).min(39);
        self.latency_us[bucket].fetch_add(1, Relaxed);
    }

    /// The latency below which `q` of the samples fall (upper bucket bound), in microseconds.
    pub fn latency_quantile(&self, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self.latency_us.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let target = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Some(1u64 << (i + 1));
            }
        }
        None
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

/// Resident memory of a process in bytes (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line =
        status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?;
    let kb: u64 = line.split_whitespace().nth(1).unwrap_or("0").parse()?;
    Ok(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_buckets() {
        let s = Stats::default();
        for _ in 0..99 {
            s.record_latency(100); // bucket [64, 128)
        }
        s.record_latency(5000); // bucket [4096, 8192)
        assert_eq!(s.latency_quantile(0.5), Some(128));
        assert_eq!(s.latency_quantile(1.0), Some(8192));
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }
}
