//! The download scheduler (sans-IO): which chunk to ask which peer for next.
//!
//! Rarest first (the chunk with the fewest holders among those a peer has), spread over
//! every peer that holds something, with an endgame: when nothing is left unrequested, idle
//! peers duplicate requests still in flight elsewhere so one slow peer cannot hold back the
//! last chunks. Failures put a chunk back and strike the failing peer off its holders.

/// Index of a peer in the download's peer list.
pub type PeerIx = u32;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Needed,
    InFlight,
    Done,
}

#[derive(Debug, Clone)]
pub struct Scheduler {
    state: Vec<State>,
    holders: Vec<Vec<PeerIx>>,
    /// Peers a chunk is currently requested from.
    asked: Vec<Vec<PeerIx>>,
    remaining: usize,
}

impl Scheduler {
    /// `holders[i]`: the peers holding chunk `i`; `have[i]`: already stored locally.
    pub fn new(holders: Vec<Vec<PeerIx>>, have: &[bool]) -> Self {
        let state: Vec<State> =
            (0..holders.len()).map(|i| if have.get(i) == Some(&true) { State::Done } else { State::Needed }).collect();
        let remaining = state.iter().filter(|s| **s != State::Done).count();
        let asked = vec![Vec::new(); holders.len()];
        Self { state, holders, asked, remaining }
    }

    /// Chunks not yet done.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    pub fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// The next chunk to request from `peer`, if any.
    pub fn next_for(&mut self, peer: PeerIx) -> Option<usize> {
        let pick = (0..self.state.len())
            .filter(|&i| self.state[i] == State::Needed && self.holders[i].contains(&peer))
            .min_by_key(|&i| (self.holders[i].len(), i))
            .or_else(|| {
                // Endgame: duplicate a request in flight elsewhere.
                (0..self.state.len())
                    .filter(|&i| {
                        self.state[i] == State::InFlight
                            && self.holders[i].contains(&peer)
                            && !self.asked[i].contains(&peer)
                    })
                    .min_by_key(|&i| (self.asked[i].len(), i))
            })?;
        self.state[pick] = State::InFlight;
        self.asked[pick].push(peer);
        Some(pick)
    }

    /// Chunk `i` arrived verified from `peer`. Returns false if it was already done (a
    /// duplicate from the endgame).
    pub fn done(&mut self, i: usize, peer: PeerIx) -> bool {
        self.asked[i].retain(|p| *p != peer);
        if self.state[i] == State::Done {
            return false;
        }
        self.state[i] = State::Done;
        self.asked[i].clear();
        self.remaining -= 1;
        true
    }

    /// `peer` failed to deliver chunk `i` (missing, bad hash): never ask it for `i` again.
    pub fn failed(&mut self, i: usize, peer: PeerIx) {
        self.holders[i].retain(|p| *p != peer);
        self.asked[i].retain(|p| *p != peer);
        if self.state[i] == State::InFlight && self.asked[i].is_empty() {
            self.state[i] = State::Needed;
        }
    }

    /// `peer` is gone: everything it was asked for goes back, and it holds nothing any more.
    pub fn peer_gone(&mut self, peer: PeerIx) {
        for i in 0..self.state.len() {
            if self.holders[i].contains(&peer) {
                self.failed(i, peer);
            }
        }
    }

    /// Whether `peer` holds any chunk not yet done (it may still be needed, e.g. if another
    /// source fails).
    pub fn has_work_for(&self, peer: PeerIx) -> bool {
        (0..self.state.len()).any(|i| self.state[i] != State::Done && self.holders[i].contains(&peer))
    }

    /// A peer newly known to hold chunk `i`.
    pub fn add_holder(&mut self, i: usize, peer: PeerIx) {
        if !self.holders[i].contains(&peer) {
            self.holders[i].push(peer);
        }
    }

    /// Chunks still needed that no known peer holds.
    pub fn unavailable(&self) -> Vec<usize> {
        (0..self.state.len()).filter(|&i| self.state[i] != State::Done && self.holders[i].is_empty()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rarest_first_and_spread() {
        // chunk 0 held by both, chunk 1 only by peer 1, chunk 2 by both
        let mut s = Scheduler::new(vec![vec![0, 1], vec![1], vec![0, 1]], &[false; 3]);
        assert_eq!(s.next_for(1), Some(1), "rarest first");
        assert_eq!(s.next_for(0), Some(0));
        assert_eq!(s.next_for(1), Some(2));
        // endgame: peer 0 duplicates chunk 2 (held by it, asked only from peer 1)
        assert_eq!(s.next_for(0), Some(2));
        assert!(s.done(2, 1));
        assert!(!s.done(2, 0), "the duplicate is not counted twice");
        assert!(s.done(0, 0));
        assert!(s.done(1, 1));
        assert!(s.is_complete());
        assert_eq!(s.next_for(0), None);
    }

    #[test]
    fn failures_move_chunks_to_other_holders() {
        let mut s = Scheduler::new(vec![vec![0, 1], vec![0]], &[false, false]);
        assert_eq!(s.next_for(0), Some(1));
        assert_eq!(s.next_for(0), Some(0));
        s.peer_gone(0);
        assert_eq!(s.next_for(1), Some(0), "chunk 0 retried on its other holder");
        assert_eq!(s.unavailable(), vec![1]);
        assert_eq!(s.next_for(0), None);
    }

    #[test]
    fn already_stored_chunks_are_skipped() {
        let mut s = Scheduler::new(vec![vec![0], vec![0]], &[true, false]);
        assert_eq!(s.remaining(), 1);
        assert_eq!(s.next_for(0), Some(1));
    }
}
