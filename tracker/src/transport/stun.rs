//! The tracker's STUN service: answers binding requests on UDP so peers learn their public
//! (server-reflexive) address, by default on the same port number as the HTTP listener.
//! What is answered, and why an answer is never much larger than its request, is
//! `swarm_core::stun`'s policy; this driver adds rate limits per source address and in all,
//! so the service cannot be used to flood a third party whose address was spoofed.

use crate::core::limits::TokenBucket;
use crate::driver::{Counters, Shared};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;

/// Answers per second to one source address (a burst of twice that is allowed): far above
/// what a few peers behind one NAT need (one request per link and STUN server).
pub const PER_IP_PER_SEC: f64 = 50.0;
/// Answers per second in all.
pub const TOTAL_PER_SEC: f64 = 20_000.0;
/// Sources whose buckets are remembered; past that, the table starts afresh (a flood of
/// spoofed sources cannot grow memory).
const MAX_TRACKED_SOURCES: usize = 65_536;

/// Answers STUN binding requests on `socket` until the task is dropped.
pub async fn serve(socket: UdpSocket, state: Arc<Shared>) {
    let mut buf = vec![0u8; 1500];
    let mut per_ip: HashMap<IpAddr, TokenBucket> = HashMap::new();
    let mut total = TokenBucket::new(TOTAL_PER_SEC, TOTAL_PER_SEC, state.mono_ms());
    loop {
        let (n, source) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors of earlier sends surface here on some systems: not fatal.
                tracing::trace!("stun: receive error: {e}");
                continue;
            }
        };
        Counters::add(&state.counters.stun_requests, 1);
        let Some(answer) = swarm_core::stun::answer(&buf[..n], source) else {
            Counters::add(&state.counters.stun_ignored, 1);
            continue;
        };
        let now = state.mono_ms();
        if per_ip.len() >= MAX_TRACKED_SOURCES && !per_ip.contains_key(&source.ip()) {
            per_ip.clear();
        }
        let bucket =
            per_ip.entry(source.ip()).or_insert_with(|| TokenBucket::new(PER_IP_PER_SEC, 2.0 * PER_IP_PER_SEC, now));
        if !bucket.take(1.0, now) || !total.take(1.0, now) {
            Counters::add(&state.counters.stun_rate_limited, 1);
            continue;
        }
        if socket.send_to(&answer, source).await.is_ok() {
            Counters::add(&state.counters.stun_answers, 1);
        }
    }
}
