//! A connection's outbound queue, bounded in bytes (and, as a backstop, in frames).
//!
//! Not a tokio channel: a bounded `mpsc` allocates a block of 32 slots per connection up
//! front, while an idle peer's [`Outbox`] is one small allocation with an empty queue (and
//! one waker, not a `Notify`). A full queue refuses the frame (the caller drops it or closes
//! the peer), so a slow recipient can never grow the tracker's memory without limit.
//!
//! Bytes are counted as sent: a binary frame by its length, a message by the length of its
//! JSON ([`json_cost`], an upper bound computed without serializing; it is serialized late,
//! by the connection task, outside the swarm lock).
//!
//! Frames another peer sends (signals, relay frames: [`Outbox::push_forwarded`]) may fill
//! only half of the recipient's queue, and are refused rather than close the recipient when
//! that half is full: the other half is kept for the recipient's own answers, so no flood
//! from others makes the recipient look slow. Relay frames may fill three eighths: the last
//! eighth of the half is kept for signals, so a relay flood at a peer does not stop others
//! from opening a direct link to it (before, an honest `get` from a flooded seeder could fail
//! to connect: `native-peer/tests/attacks.rs`). Their bytes are charged to the sender until the
//! recipient's task takes them: a sender with a queue's worth of bytes waiting at recipients
//! gets its next frames refused, whoever it floods.
//!
//! The outbox also carries the time its peer was last heard from, so one sweep over all
//! connections (see `crate::idle_sweep`) replaces an idle timer per connection.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use swarm_core::{ServerMsg, Signal};

/// One frame for a peer: a protocol message (serialized by the connection task, outside the
/// swarm lock) or a binary relay frame.
#[derive(Debug, Clone)]
pub enum Frame {
    /// Boxed: a queue of small frames costs little while it waits.
    Json(Box<ServerMsg>),
    Binary(Bytes),
}

impl Frame {
    pub fn json(msg: ServerMsg) -> Self {
        Frame::Json(Box::new(msg))
    }

    /// Bytes the frame takes on the wire (at most).
    pub fn cost(&self) -> usize {
        match self {
            Frame::Json(m) => json_cost(m),
            Frame::Binary(b) => b.len(),
        }
    }
}

/// An upper bound of `s`'s length as a JSON string (escapes included).
fn str_cost(s: &str) -> usize {
    2 + s.len() + 5 * s.bytes().filter(|b| *b < 0x20 || matches!(b, b'"' | b'\\')).count()
}

/// An upper bound of the length of a signal's variable parts (SDP, candidate, reason) as JSON.
pub fn signal_cost(signal: &Signal) -> usize {
    match signal {
        Signal::Offer { sdp } | Signal::Answer { sdp } => str_cost(sdp),
        Signal::Candidate { candidate, mid } => str_cost(candidate) + mid.as_deref().map_or(4, str_cost),
        Signal::Close { reason } => str_cost(reason),
        _ => 0,
    }
}

/// An upper bound of the length of `msg` as JSON: the variable parts counted, a fixed
/// allowance for the rest (ids, numbers, field names).
pub fn json_cost(msg: &ServerMsg) -> usize {
    const BASE: usize = 128;
    const ID: usize = 70; // a quoted 64-hex id and a comma
    match msg {
        ServerMsg::Signal { signal, .. } => BASE + signal_cost(signal),
        ServerMsg::Error { message, .. } => BASE + str_cost(message),
        ServerMsg::Located { meta, manifest, peers, holders, .. } => {
            let sealed = meta.sealed.as_ref().map_or(0, |s| 4 * s.0.len() / 3 + 16);
            BASE + str_cost(&meta.name)
                + str_cost(&meta.mime)
                + sealed
                + ID * manifest.chunks.len()
                + ID * peers.len()
                + holders.iter().map(|h| 4 + 11 * h.len()).sum::<usize>()
        }
        ServerMsg::SearchResults { files, .. } => {
            BASE + files.iter().map(|f| BASE + ID + str_cost(&f.name) + str_cost(&f.mime)).sum::<usize>()
        }
        ServerMsg::Replicate { sources, .. } => BASE + ID + ID * sources.len(),
        ServerMsg::Trim { chunks } => BASE + ID * chunks.len(),
        ServerMsg::Challenge { items } => BASE + items.len() * (2 * ID + 24),
        ServerMsg::Welcome { ice_servers, trackers, .. } => {
            let ice = ice_servers
                .iter()
                .map(|s| {
                    BASE + s.urls.iter().map(|u| str_cost(u)).sum::<usize>()
                        + s.username.as_deref().map_or(0, str_cost)
                        + s.credential.as_deref().map_or(0, str_cost)
                })
                .sum::<usize>();
            2 * BASE + ice + trackers.iter().map(|t| str_cost(t)).sum::<usize>()
        }
        _ => 2 * BASE,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the recipient's queue is full")]
    Full,
    #[error("the connection is closed")]
    Closed,
    /// [`Outbox::push_forwarded`]: the sender has as many bytes waiting at recipients as its
    /// own queue may hold.
    #[error("the sender has too many bytes waiting at recipients")]
    SenderBusy,
}

/// Bytes of a forwarded frame charged to its sender; given back when the frame leaves the
/// queue (taken by the recipient's task, or dropped).
#[derive(Debug)]
struct Charge {
    sender: Weak<Shared>,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(s) = self.sender.upgrade() {
            s.forwarded_out.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct Entry {
    frame: Frame,
    cost: usize,
    /// From another peer: counted in `Queue::foreign_*`, and charged to its sender if known.
    forwarded: Option<Option<Charge>>,
    /// A forwarded relay frame: counted in `Queue::relay_*` too.
    relay: bool,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Entry>,
    bytes: usize,
    /// Forwarded frames queued, and their bytes.
    foreign_frames: usize,
    foreign_bytes: usize,
    /// Of those, relay frames (binary), and their bytes.
    relay_frames: usize,
    relay_bytes: usize,
    closed: bool,
    /// The connection task waiting for frames.
    waker: Option<Waker>,
}

impl Queue {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// When the peer was last heard from (the owner's clock, in ms).
    last_seen_ms: AtomicU64,
    /// Bytes this peer sent that wait in other peers' queues.
    forwarded_out: AtomicUsize,
}

/// Cloneable handle to one connection's queue.
#[derive(Debug, Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
    max_frames: u32,
    max_bytes: u32,
}

impl Outbox {
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            shared: Arc::default(),
            max_frames: max_frames.min(u32::MAX as usize) as u32,
            max_bytes: max_bytes.min(u32::MAX as usize) as u32,
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame for this peer, unless the queue is closed or full (by bytes or by
    /// frames; one frame always fits in an empty queue).
    pub fn push(&self, frame: Frame) -> Result<(), PushError> {
        let mut q = self.queue();
        if q.closed {
            return Err(PushError::Closed);
        }
        let cost = frame.cost();
        if !q.frames.is_empty()
            && (q.frames.len() >= self.max_frames as usize || q.bytes + cost > self.max_bytes as usize)
        {
            return Err(PushError::Full);
        }
        q.bytes += cost;
        q.frames.push_back(Entry { frame, cost, forwarded: None, relay: false });
        q.wake();
        Ok(())
    }

    /// Queues a frame another peer sent (`sender`, when it is connected here): it may fill
    /// half of this queue (relay frames three eighths: the rest of the half is kept for
    /// signals), and counts against the sender's budget (as many bytes as its own queue holds)
    /// until this peer's task takes it. A refusal never closes this peer.
    pub fn push_forwarded(&self, frame: Frame, sender: Option<&Outbox>) -> Result<(), PushError> {
        let cost = frame.cost();
        let charge = match sender {
            Some(s) => {
                let out = &s.shared.forwarded_out;
                let before = out.fetch_add(cost, Ordering::Relaxed);
                // Nothing waiting: one frame always goes (a budget smaller than a frame
                // must not stop a sender for good).
                if before > 0 && before + cost > s.max_bytes as usize {
                    out.fetch_sub(cost, Ordering::Relaxed);
                    return Err(PushError::SenderBusy);
                }
                Some(Charge { sender: Arc::downgrade(&s.shared), bytes: cost })
            }
            None => None,
        };
        let mut q = self.queue();
        if q.closed {
            return Err(PushError::Closed);
        }
        let (half_frames, half_bytes) = ((self.max_frames as usize / 2).max(1), (self.max_bytes as usize / 2).max(1));
        if q.foreign_frames > 0 && (q.foreign_frames >= half_frames || q.foreign_bytes + cost > half_bytes) {
            return Err(PushError::Full);
        }
        let relay = matches!(frame, Frame::Binary(_));
        let (relay_frames, relay_bytes) = ((half_frames * 3 / 4).max(1), (half_bytes * 3 / 4).max(1));
        if relay && q.relay_frames > 0 && (q.relay_frames >= relay_frames || q.relay_bytes + cost > relay_bytes) {
            return Err(PushError::Full);
        }
        if !q.frames.is_empty()
            && (q.frames.len() >= self.max_frames as usize || q.bytes + cost > self.max_bytes as usize)
        {
            return Err(PushError::Full);
        }
        q.bytes += cost;
        q.foreign_frames += 1;
        q.foreign_bytes += cost;
        if relay {
            q.relay_frames += 1;
            q.relay_bytes += cost;
        }
        q.frames.push_back(Entry { frame, cost, forwarded: Some(charge), relay });
        q.wake();
        Ok(())
    }

    /// Bytes this peer sent that wait in other peers' queues.
    pub fn forwarded_out(&self) -> usize {
        self.shared.forwarded_out.load(Ordering::Relaxed)
    }

    /// Bytes queued for this peer.
    pub fn queued_bytes(&self) -> usize {
        self.queue().bytes
    }

    /// Closes the queue and drops what it holds: the connection task ends.
    pub fn close(&self) {
        let mut q = self.queue();
        q.closed = true;
        q.frames = VecDeque::new();
        q.bytes = 0;
        q.foreign_frames = 0;
        q.foreign_bytes = 0;
        q.relay_frames = 0;
        q.relay_bytes = 0;
        q.wake();
    }

    pub fn is_closed(&self) -> bool {
        self.queue().closed
    }

    /// Records that the peer was heard from at `now_ms`.
    pub fn touch(&self, now_ms: u64) {
        self.shared.last_seen_ms.store(now_ms, Ordering::Relaxed);
    }

    /// When the peer was last heard from (0: never touched).
    pub fn last_seen_ms(&self) -> u64 {
        self.shared.last_seen_ms.load(Ordering::Relaxed)
    }

    /// Moves up to `max` queued frames into `batch` (`Ready(true)`), or `Ready(false)` once
    /// closed; if the queue is empty, the task is woken by the next push or close.
    pub fn poll_pop(&self, cx: &mut Context<'_>, batch: &mut Vec<Frame>, max: usize) -> Poll<bool> {
        let mut q = self.queue();
        match Self::pop_locked(&mut q, batch, max) {
            Some(open) => Poll::Ready(open),
            None => {
                if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    q.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Waits for frames and moves up to `max` of them into `batch`; `false` once closed.
    /// Cancel-safe: nothing is taken unless it returns.
    pub async fn pop_batch(&self, batch: &mut Vec<Frame>, max: usize) -> bool {
        std::future::poll_fn(|cx| self.poll_pop(cx, batch, max)).await
    }

    /// Moves up to `max` queued frames into `batch` without waiting: `Some(true)` if it moved
    /// some, `Some(false)` if closed, `None` if the queue is empty.
    pub fn try_pop(&self, batch: &mut Vec<Frame>, max: usize) -> Option<bool> {
        Self::pop_locked(&mut self.queue(), batch, max)
    }

    fn pop_locked(q: &mut Queue, batch: &mut Vec<Frame>, max: usize) -> Option<bool> {
        if q.closed {
            return Some(false);
        }
        if q.frames.is_empty() {
            return None;
        }
        let n = q.frames.len().min(max);
        for _ in 0..n {
            let Some(e) = q.frames.pop_front() else { break };
            q.bytes -= e.cost;
            if e.forwarded.is_some() {
                q.foreign_frames -= 1;
                q.foreign_bytes -= e.cost;
            }
            if e.relay {
                q.relay_frames -= 1;
                q.relay_bytes -= e.cost;
            }
            batch.push(e.frame); // the sender's charge (if any) is given back here
        }
        if q.frames.is_empty() {
            q.frames = VecDeque::new(); // an idle peer's queue holds no memory
        }
        Some(true)
    }

    /// Whether two handles name the same queue.
    pub fn same(&self, other: &Outbox) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_by_frames_and_bytes() {
        let o = Outbox::new(3, 1000);
        let bin = |n| Frame::Binary(Bytes::from(vec![0u8; n]));
        o.push(bin(2000)).expect("one frame always fits");
        assert_eq!(o.push(bin(1)), Err(PushError::Full));
        let mut batch = Vec::new();
        assert!(o.pop_batch(&mut batch, 10).await);
        assert_eq!(batch.len(), 1);
        for _ in 0..3 {
            o.push(bin(10)).unwrap();
        }
        assert_eq!(o.push(bin(10)), Err(PushError::Full));
        batch.clear();
        assert!(o.pop_batch(&mut batch, 2).await);
        assert_eq!(batch.len(), 2);
        o.close();
        assert_eq!(o.push(bin(1)), Err(PushError::Closed));
        assert!(!o.pop_batch(&mut batch, 2).await);
    }

    fn signal(sdp_len: usize) -> Frame {
        let from = swarm_core::PeerId("ab".repeat(16));
        Frame::json(ServerMsg::Signal { from, conn: 1, signal: Signal::Offer { sdp: "v".repeat(sdp_len) } })
    }

    #[test]
    fn message_costs_bound_their_json() {
        for msg in [
            ServerMsg::Signal {
                from: swarm_core::PeerId("ab".repeat(16)),
                conn: u64::MAX,
                signal: Signal::Candidate { candidate: "a\"\\\n\u{1}é".repeat(50), mid: Some("0".into()) },
            },
            ServerMsg::error(Some(7), swarm_core::wire::ErrorCode::BadMessage, "x\u{0}".repeat(100)),
            ServerMsg::Trim { chunks: vec![swarm_core::ChunkId([7; 32]); 100] },
            ServerMsg::Heartbeat,
        ] {
            let json = msg.to_json().len();
            assert!(json <= json_cost(&msg), "{json} > {} for {msg:?}", json_cost(&msg));
        }
        assert!(signal(60_000).cost() > 60_000, "a big signal costs its size");
    }

    #[tokio::test]
    async fn forwarded_frames_fill_half_and_never_close_the_recipient() {
        let victim = Outbox::new(100, 10_000);
        let sender = Outbox::new(100, 1_000_000);
        let mut n = 0;
        while victim.push_forwarded(signal(1000), Some(&sender)).is_ok() {
            n += 1;
        }
        assert_eq!(n, 4, "about half of 10,000 bytes in ~1,130-byte signals");
        assert_eq!(victim.push_forwarded(signal(1000), Some(&sender)), Err(PushError::Full));
        assert!(!victim.is_closed());
        for _ in 0..4 {
            victim.push(Frame::json(ServerMsg::Heartbeat)).expect("room kept for the peer's own messages");
        }
        assert!(sender.forwarded_out() > 4000);
        let mut batch = Vec::new();
        assert!(victim.pop_batch(&mut batch, 100).await);
        assert_eq!(sender.forwarded_out(), 0, "taken by the recipient: the sender's charge is given back");
        victim.push_forwarded(signal(1000), Some(&sender)).unwrap();
        victim.close();
        assert_eq!(sender.forwarded_out(), 0, "dropped with a closed queue: given back too");
    }

    #[tokio::test]
    async fn a_relay_flood_leaves_room_for_signals() {
        let victim = Outbox::new(1000, 16_000);
        let flooder = Outbox::new(1000, 1_000_000);
        let honest = Outbox::new(1000, 1_000_000);
        let relay = || Frame::Binary(Bytes::from(vec![0u8; 500]));
        let mut n = 0;
        while victim.push_forwarded(relay(), Some(&flooder)).is_ok() {
            n += 1;
        }
        assert_eq!(n, 12, "relay frames fill three eighths of 16,000 bytes");
        assert_eq!(victim.push_forwarded(relay(), Some(&flooder)), Err(PushError::Full));
        victim.push_forwarded(signal(1000), Some(&honest)).expect("a signal still goes through the flood");
        // Once read, the relay's share is free again.
        let mut batch = Vec::new();
        assert!(victim.pop_batch(&mut batch, 1000).await);
        assert_eq!(batch.len(), 13);
        victim.push_forwarded(relay(), Some(&flooder)).expect("room again");
    }

    #[test]
    fn a_sender_is_refused_once_its_bytes_wait_everywhere() {
        let sender = Outbox::new(100, 5_000);
        let victims: Vec<_> = (0..10).map(|_| Outbox::new(100, 1_000_000)).collect();
        let sent = victims.iter().filter(|v| v.push_forwarded(signal(1000), Some(&sender)).is_ok()).count();
        assert_eq!(sent, 4, "5,000 bytes of budget in ~1,130-byte signals");
        assert_eq!(victims[9].push_forwarded(signal(1000), Some(&sender)), Err(PushError::SenderBusy));
        assert_eq!(victims[9].queued_bytes(), 0, "refused before it costs the recipient anything");
        let lone = Outbox::new(100, 10);
        Outbox::new(10, 1_000_000).push_forwarded(signal(1000), Some(&lone)).expect("one frame always goes");
    }
}
