//! A connection's outbound queue, bounded in frames and in bytes.
//!
//! Not a tokio channel: a bounded `mpsc` allocates a block of 32 slots per connection up
//! front, while an idle peer's [`Outbox`] is one small allocation with an empty queue (and
//! one waker, not a `Notify`). A full queue refuses the frame (the caller drops it or closes
//! the peer), so a slow recipient can never grow the tracker's memory without limit.
//!
//! The outbox also carries the time its peer was last heard from, so one sweep over all
//! connections (see `crate::idle_sweep`) replaces an idle timer per connection.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use swarm_core::ServerMsg;

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
}

/// Bytes a JSON frame is assumed to take in the byte budget (it is serialized late).
const JSON_FRAME_COST: usize = 256;

impl Frame {
    fn cost(&self) -> usize {
        match self {
            Frame::Json(_) => JSON_FRAME_COST,
            Frame::Binary(b) => b.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the recipient's queue is full")]
    Full,
    #[error("the connection is closed")]
    Closed,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Frame>,
    bytes: usize,
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

    /// Queues a frame, unless the queue is closed or full (by frames or by bytes; one frame
    /// always fits in an empty queue).
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
        q.frames.push_back(frame);
        q.wake();
        Ok(())
    }

    /// Closes the queue and drops what it holds: the connection task ends.
    pub fn close(&self) {
        let mut q = self.queue();
        q.closed = true;
        q.frames = VecDeque::new();
        q.bytes = 0;
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
        for f in q.frames.drain(..n) {
            q.bytes -= f.cost();
            batch.push(f);
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
}
