//! Whether the tracker node still answers: for a driver that cannot see the connection's own
//! keepalives (a browser's `WebSocket` has no ping frames).
//!
//! A node whose host drops off the network, or whose process is stopped, closes nothing: the
//! socket stays open and silent until TCP gives up, minutes later. The tracker answers every
//! `heartbeat` with one ([`crate::ServerMsg::Heartbeat`]), so a driver that heartbeats every
//! [`super::config::HEARTBEAT_MS`] and calls [`TrackerLiveness::beat`] then knows a node that
//! let a heartbeat go unanswered for [`super::config::TRACKER_SILENT_MS`] is gone, and moves
//! to the next node. Any message from the node counts as an answer.
//!
//! Silence is measured from the first heartbeat left unanswered, not from the last message:
//! a background tab whose timers the browser slows to one a minute does not mistake its own
//! slowness for the node's.

use super::config::TRACKER_SILENT_MS;

/// What the driver does at its heartbeat tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Send a heartbeat.
    Send,
    /// The node let a heartbeat go unanswered for [`TRACKER_SILENT_MS`]: close the session and
    /// connect to the next node.
    Silent,
}

/// One tracker session's liveness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerLiveness {
    unanswered_since: Option<u64>,
}

impl TrackerLiveness {
    /// A message came from the node.
    pub fn heard(&mut self) {
        self.unanswered_since = None;
    }

    /// The heartbeat tick, at `now_ms`.
    pub fn beat(&mut self, now_ms: u64) -> Beat {
        match self.unanswered_since {
            Some(since) if now_ms.saturating_sub(since) >= TRACKER_SILENT_MS => Beat::Silent,
            _ => {
                self.unanswered_since.get_or_insert(now_ms);
                Beat::Send
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::config::HEARTBEAT_MS;

    #[test]
    fn a_node_that_answers_stays_and_a_silent_one_is_left_after_the_silence() {
        let mut l = TrackerLiveness::default();
        // Answered every time: never silent, however long.
        for i in 0..100 {
            assert_eq!(l.beat(i * HEARTBEAT_MS), Beat::Send);
            l.heard();
        }
        // It stops answering at t0: heartbeats go on until the silence is long enough.
        let t0 = 100 * HEARTBEAT_MS;
        let mut t = t0;
        while l.beat(t) == Beat::Send {
            t += HEARTBEAT_MS;
            assert!(t - t0 <= TRACKER_SILENT_MS + HEARTBEAT_MS, "noticed within a heartbeat of the silence");
        }
        assert!(t - t0 >= TRACKER_SILENT_MS);
    }

    #[test]
    fn a_late_tick_after_an_answer_is_no_silence() {
        let mut l = TrackerLiveness::default();
        assert_eq!(l.beat(0), Beat::Send);
        l.heard();
        // A throttled background tab ticks a minute later: the last heartbeat was answered.
        assert_eq!(l.beat(60_000), Beat::Send);
        // Unanswered since 60 s: the next slow tick finds it silent.
        assert_eq!(l.beat(120_000), Beat::Silent);
    }
}
