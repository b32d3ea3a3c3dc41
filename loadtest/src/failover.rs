//! The failover measurement: the main task kills one tracker node (SIGKILL) once the peers are
//! connected and settled; each peer that was connected to it reconnects with the same secret
//! to another node (those its `welcome` listed, then the `--tracker` URLs, starting at a
//! different one per peer so they spread), and re-announces: `welcome` followed by its full
//! `have` (empty, or what it claims in the claims phase: [`crate::claims`]). What is measured
//! is the time from the kill to that `have` being sent, per peer, and how many never got back
//! in time.

use crate::peer::{join, Joined};
use futures_util::SinkExt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long one reconnection attempt may take.
const ATTEMPT: Duration = Duration::from_secs(5);
/// Pause after every node refused a peer, before it tries them again.
const RETRY: Duration = Duration::from_millis(250);

pub struct Failover {
    /// The URL of the node to kill (`None`: no failover measurement).
    dead_url: Option<String>,
    killed_at: OnceLock<Instant>,
    /// Time a peer has after the kill to get back.
    timeout: Duration,
    /// Kill-to-`have` time of every peer that got back.
    times: Mutex<Vec<Duration>>,
    /// Peers that gave up (timed out).
    pub gave_up: AtomicU64,
    /// Reconnection attempts that failed (each was retried), and the first error.
    pub failed_attempts: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Failover {
    pub fn new(dead_url: Option<String>, timeout: Duration) -> Self {
        Self {
            dead_url,
            killed_at: OnceLock::new(),
            timeout,
            times: Mutex::new(Vec::new()),
            gave_up: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    /// Whether `url` is the node killed (and it has been).
    pub fn is_dead(&self, url: &str) -> bool {
        self.killed_at.get().is_some() && self.dead_url.as_deref() == Some(url)
    }

    /// Notes the time and kills `pid` with SIGKILL; returns the time of the kill.
    pub fn kill(&self, pid: u32) -> anyhow::Result<Instant> {
        let at = *self.killed_at.get_or_init(Instant::now);
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .map_err(|e| anyhow::anyhow!("cannot run kill: {e}"))?;
        anyhow::ensure!(status.success(), "kill -KILL {pid} failed ({status})");
        Ok(at)
    }

    /// Sorted kill-to-`have` times of the peers back so far.
    pub fn times(&self) -> Vec<Duration> {
        let mut t = self.times.lock().unwrap_or_else(|e| e.into_inner()).clone();
        t.sort();
        t
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Peer `me`, whose node `dead` went away, reconnects elsewhere and re-announces; returns
    /// the new node's URL and connection, or `None` if it could not within the timeout.
    pub async fn reconnect(
        &self,
        me: usize,
        secret: &str,
        dead: &str,
        told: &[String],
        configured: &[String],
        have: tokio_tungstenite::tungstenite::Message,
    ) -> Option<(String, Joined)> {
        let killed_at = *self.killed_at.get()?;
        let deadline = killed_at + self.timeout;
        let nodes = candidates(me, dead, told, configured);
        if nodes.is_empty() {
            self.fail("no other tracker node to reconnect to".into());
            self.gave_up.fetch_add(1, Relaxed);
            return None;
        }
        loop {
            for url in &nodes {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.gave_up.fetch_add(1, Relaxed);
                    return None;
                }
                let attempt = async {
                    let mut j = join(url, secret).await?;
                    j.ws.send(have.clone()).await?;
                    anyhow::Ok(j)
                };
                match tokio::time::timeout(left.min(ATTEMPT), attempt).await {
                    Ok(Ok(j)) => {
                        self.times.lock().unwrap_or_else(|e| e.into_inner()).push(killed_at.elapsed());
                        return Some((url.clone(), j));
                    }
                    Ok(Err(e)) => self.fail(format!("{url}: {e:#}")),
                    Err(_) => self.fail(format!("{url}: no welcome within {} s", ATTEMPT.as_secs())),
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    fn fail(&self, e: String) {
        self.failed_attempts.fetch_add(1, Relaxed);
        self.first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
    }
}

/// Where peer `me` tries to reconnect, in order: the nodes its `welcome` listed (loopback
/// ones only), then the configured ones, without `dead`, rotated by `me` so the peers of the
/// dead node spread over the others.
fn candidates(me: usize, dead: &str, told: &[String], configured: &[String]) -> Vec<String> {
    let mut nodes: Vec<String> = Vec::new();
    for url in told.iter().filter(|u| crate::check_loopback(u).is_ok()).chain(configured) {
        if url != dead && !nodes.contains(url) {
            nodes.push(url.clone());
        }
    }
    if !nodes.is_empty() {
        let by = me % nodes.len();
        nodes.rotate_left(by);
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_skip_the_dead_node_and_spread() {
        let urls: Vec<String> = (1..=3).map(|i| format!("ws://127.0.0.1:900{i}/ws")).collect();
        let told = vec![urls[1].clone(), "ws://10.0.0.1:9000/ws".into()];
        assert_eq!(candidates(0, &urls[0], &told, &urls), vec![urls[1].clone(), urls[2].clone()]);
        assert_eq!(candidates(1, &urls[0], &told, &urls), vec![urls[2].clone(), urls[1].clone()]);
        assert!(candidates(0, &urls[0], &[], &urls[..1]).is_empty());
    }

    #[test]
    fn only_the_killed_node_is_dead() {
        let f = Failover::new(Some("ws://127.0.0.1:1/ws".into()), Duration::from_secs(1));
        assert!(!f.is_dead("ws://127.0.0.1:1/ws"), "not before the kill");
        f.killed_at.get_or_init(Instant::now);
        assert!(f.is_dead("ws://127.0.0.1:1/ws"));
        assert!(!f.is_dead("ws://127.0.0.1:2/ws"));
    }
}
