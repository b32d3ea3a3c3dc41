//! One tracker node's membership and shard leases as a state machine, with no clock, no
//! NATS and no tasks: the driver feeds it what happened ([`Leases::handle_beat`],
//! [`Leases::handle_kv`], [`Leases::handle_took`], [`Leases::loaded`], and
//! [`Leases::handle_timeout`] at [`Leases::poll_timeout`]) and carries out its [`Output`]s.
//!
//! The rules it keeps:
//! - **Rounds.** Once a period every lease held is renewed (compare-and-set on the revision
//!   held) and every shard's lease is read ([`KvOp::ReadAll`]); once the reads are answered
//!   (or timed out), [`super::plan::plan`] decides what to take and release. Reads still
//!   waiting for a slow answer delay the next reads, never a renewal.
//! - **Validity.** A node acts for a shard ([`Leases::acts`]) only while the shard is loaded,
//!   it hears its own heartbeat, and less than [`super::Timing::fresh_ms`] has passed since it
//!   *sent* the last write of that lease that succeeded. The KV bucket keeps the entry for a
//!   lease time from when it *applied* the write (later than sent), and no other node can
//!   create it before: two nodes never act for one shard at once, however late an answer
//!   arrives (a node stopped with SIGSTOP reads its answers when it resumes).
//! - **A failed read or write is not a lost lease.** An error (JetStream electing a leader
//!   answers "no stream found" for seconds), a time-out or a refused renewal leaves the lease
//!   as held: it is renewed again next round and acted on while valid. A lease is lost only
//!   when a read shows it free or held by another node, or a newer `took` names another node.
//! - **Views age.** The owner of a shard, as read or as told in a `took` (revisions order
//!   them: an older `took` arriving late changes nothing), is reported for a lease time at
//!   most from when the read that backs it was sent; a node that was stopped or cut off says
//!   "unknown" until it has read again.

use super::plan::{plan, Seen, Step};
use super::Timing;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One operation on the lease bucket (key: the shard; value: the holder's tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvOp {
    /// Read every shard's lease (each read may fail on its own).
    ReadAll,
    /// Create the entry if there is none (take a free shard).
    Create { shard: u16 },
    /// Write it again if its revision is still `revision` (renew).
    Update { shard: u16, revision: u64 },
    /// Delete it if its revision is still `revision` (release).
    Delete { shard: u16, revision: u64 },
}

impl KvOp {
    /// The shard written (`None`: a read of them all).
    pub fn shard(&self) -> Option<u16> {
        match self {
            KvOp::ReadAll => None,
            KvOp::Create { shard } | KvOp::Update { shard, .. } | KvOp::Delete { shard, .. } => Some(*shard),
        }
    }
}

/// What the KV answered to a [`KvOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvResult {
    /// A read of every shard: per shard, `None` if its read failed, else the holder and
    /// revision (`None`: no entry, deleted or expired).
    Leases(Vec<Option<Option<Seen>>>),
    /// A write took effect at this revision.
    Done(u64),
    /// A create found an entry, or a compare-and-set found another revision.
    Conflict,
    /// An error or no answer in time: the entry may or may not have changed.
    Failed,
}

/// What the driver is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `op` to the lease bucket; answer with [`Leases::handle_kv`] and `id`.
    Kv { id: u64, op: KvOp },
    /// Publish this node's heartbeat.
    Beat,
    /// Load the files of `shard` (taken over); answer with [`Leases::loaded`].
    Load { shard: u16 },
    /// Stop keeping `shard`: its files leave this node's swarm.
    Drop { shard: u16, why: &'static str },
    /// Tell every node that this node keeps `shard` now, at lease `revision`.
    Took { shard: u16, revision: u64, reannounce: bool },
    /// A node appeared (or came back after it was forgotten).
    Joined { node: u16 },
    /// A node went silent for [`Timing::member_timeout_ms`] and is forgotten.
    Left { node: u16 },
    /// This node has not heard its own heartbeat for a lease time: move to another NATS
    /// server (at most once a lease time).
    Reconnect,
    /// This node hears itself again after it was cut off.
    Rejoined,
}

/// Another node, as its heartbeats describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub url: String,
    pub peers: u32,
    pub seen_ms: u64,
}

/// A lease this node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub revision: u64,
    /// When the last write of it that succeeded was sent.
    pub valid_from_ms: u64,
    /// When that write's answer came: a read sent before may not see it.
    pub confirmed_ms: u64,
    /// The shard's files are loaded.
    pub ready: bool,
}

/// A shard's owner as this node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    node: u16,
    revision: u64,
    /// The owner held the lease at some time since this: when the read that saw it was *sent*
    /// (an answer read late, after a stop, is no fresher than its question).
    at_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    op: KvOp,
    sent_ms: u64,
    deadline_ms: u64,
    /// A renewal of a lease the bucket names this node for but not held here: its success
    /// makes the lease held (and loaded) again. Any other renewal that succeeds for a lease no
    /// longer held (released meanwhile) changes nothing.
    recover: bool,
    /// Sent before the shard was let go: a create that succeeds after does not take it again
    /// (the release may have deleted the entry it made).
    void: bool,
}

/// One node's view of the cluster and the leases it holds.
#[derive(Debug)]
pub struct Leases {
    me: u16,
    timing: Timing,
    shards: u16,
    now: u64,
    members: BTreeMap<u16, Member>,
    self_seen: Option<u64>,
    last_reconnect: Option<u64>,
    owners: Vec<Option<Owner>>,
    /// Per shard: when the last read of it that was answered was sent (0: never).
    read_at: Vec<u64>,
    mine: BTreeMap<u16, Held>,
    pending: BTreeMap<u64, Pending>,
    /// Writes that timed out: a late "done" still tells the revision now held.
    late: BTreeMap<u64, Pending>,
    next_id: u64,
    /// The round of reads waiting for its answer, and when it was sent.
    reading: Option<u64>,
    reads_sent: u64,
    next_round: u64,
    next_beat: u64,
    out: VecDeque<Output>,
}

impl Leases {
    /// Node `me` of a cluster of `shards` shards, starting at `now_ms`.
    pub fn new(me: u16, shards: u16, timing: Timing, now_ms: u64) -> Self {
        Self {
            me,
            timing,
            shards: shards.max(1),
            now: now_ms,
            members: BTreeMap::new(),
            self_seen: None,
            last_reconnect: Some(now_ms),
            owners: vec![None; shards.max(1) as usize],
            read_at: vec![0; shards.max(1) as usize],
            mine: BTreeMap::new(),
            pending: BTreeMap::new(),
            late: BTreeMap::new(),
            next_id: 1,
            reading: None,
            reads_sent: now_ms,
            next_round: now_ms,
            next_beat: now_ms,
            out: VecDeque::new(),
        }
    }

    pub fn me(&self) -> u16 {
        self.me
    }
    pub fn timing(&self) -> Timing {
        self.timing
    }
    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Leases::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> u64 {
        let mut t = self.next_beat.min(self.next_round);
        if let Some(d) = self.pending.values().map(|p| p.deadline_ms).min() {
            t = t.min(d);
        }
        t
    }

    fn clock(&mut self, now_ms: u64) -> u64 {
        self.now = self.now.max(now_ms);
        self.now
    }

    /// Time passed: operations not answered in time fail, heartbeats go out, silent nodes are
    /// forgotten, and a round of lease reads starts when one is due.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let now = self.clock(now_ms);
        let expired: Vec<u64> = self.pending.iter().filter(|(_, p)| p.deadline_ms <= now).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(p) = self.pending.get(&id).copied().filter(|p| matches!(p.op, KvOp::Update { .. })) {
                self.late.insert(id, p);
            }
            self.handle_kv(now, id, KvResult::Failed);
        }
        let ttl = self.timing.lease_ttl_ms;
        self.late.retain(|_, p| p.sent_ms + ttl > now);
        if now >= self.next_beat {
            self.next_beat = now + self.timing.period_ms();
            self.out.push_back(Output::Beat);
            let timeout = self.timing.member_timeout_ms();
            let gone: Vec<u16> = self
                .members
                .iter()
                .filter(|(_, m)| now.saturating_sub(m.seen_ms) >= timeout)
                .map(|(t, _)| *t)
                .collect();
            for node in gone {
                self.members.remove(&node);
                self.out.push_back(Output::Left { node });
            }
            let ttl = self.timing.lease_ttl_ms;
            let cut = self.self_seen.is_some_and(|t| now.saturating_sub(t) > ttl);
            if cut && self.last_reconnect.is_none_or(|t| now.saturating_sub(t) > ttl) {
                self.last_reconnect = Some(now);
                self.out.push_back(Output::Reconnect);
            }
        }
        if now >= self.next_round {
            self.next_round = now + self.timing.period_ms();
            // Renewals go out every period on their own, not behind the reads: one slow read
            // must not hold back the renewal of every lease.
            let renew: Vec<(u16, u64)> = self.mine.iter().map(|(s, h)| (*s, h.revision)).collect();
            for (shard, revision) in renew {
                self.send(now, KvOp::Update { shard, revision });
            }
            // A round of reads, unless the last one still waits for a slow answer.
            if self.reading.is_none() {
                self.reads_sent = now;
                self.reading = Some(self.next_id);
                self.send(now, KvOp::ReadAll);
            }
        }
    }

    fn send(&mut self, now: u64, op: KvOp) {
        self.send_op(now, op, false);
    }

    fn send_op(&mut self, now: u64, op: KvOp, recover: bool) {
        let id = self.next_id;
        self.next_id += 1;
        let deadline_ms = now + self.timing.kv_timeout_ms();
        self.pending.insert(id, Pending { op, sent_ms: now, deadline_ms, recover, void: false });
        self.out.push_back(Output::Kv { id, op });
    }

    /// A node's heartbeat (this node's own too: it proves NATS carries its messages).
    pub fn handle_beat(&mut self, now_ms: u64, node: u16, url: String, peers: u32) {
        let now = self.clock(now_ms);
        if node == self.me {
            let cut = self.self_seen.is_some_and(|t| now.saturating_sub(t) >= self.timing.fresh_ms());
            self.self_seen = Some(now);
            if cut {
                self.out.push_back(Output::Rejoined);
            }
            return;
        }
        let timeout = self.timing.member_timeout_ms();
        let new = self.members.get(&node).is_none_or(|m| now.saturating_sub(m.seen_ms) >= timeout);
        self.members.insert(node, Member { url, peers, seen_ms: now });
        if new {
            self.out.push_back(Output::Joined { node });
        }
    }

    /// Another node says it keeps `shard` at lease `revision` (0: not said).
    pub fn handle_took(&mut self, now_ms: u64, node: u16, shard: u16, revision: u64) {
        self.clock(now_ms);
        if node == self.me || shard >= self.shards {
            return;
        }
        let newer = |known: u64| revision == 0 || revision >= known;
        if !self.owners[shard as usize].is_none_or(|o| newer(o.revision)) {
            return; // told late: the lease moved on since
        }
        // As fresh as the last read of the shard, no fresher: a newer revision was written
        // after that read (the read would have seen it), but this message may have waited
        // (for a stopped node, for as long as it was stopped).
        let at_ms = self.read_at[shard as usize];
        self.owners[shard as usize] = Some(Owner { node, revision, at_ms });
        if self.mine.get(&shard).is_some_and(|h| revision == 0 || revision > h.revision) {
            self.drop_shard(shard, "another node took its lease");
        }
    }

    /// The files of `shard` are loaded (`Some(files)`), or could not be (`None`: the lease is
    /// given back).
    pub fn loaded(&mut self, now_ms: u64, shard: u16, files: Option<usize>) {
        let now = self.clock(now_ms);
        let Some(h) = self.mine.get_mut(&shard) else { return };
        match files {
            Some(n) => {
                h.ready = true;
                let (revision, at_ms) = (h.revision, h.valid_from_ms);
                self.owners[shard as usize] = Some(Owner { node: self.me, revision, at_ms });
                self.out.push_back(Output::Took { shard, revision, reannounce: n > 0 });
            }
            None => {
                let revision = h.revision;
                self.drop_shard(shard, "its files could not be loaded");
                self.send(now, KvOp::Delete { shard, revision });
            }
        }
    }

    fn drop_shard(&mut self, shard: u16, why: &'static str) {
        // A write sent to take the lease (back) must not bring it back once it is let go.
        for p in self.pending.values_mut().chain(self.late.values_mut()) {
            if p.op.shard() == Some(shard) {
                p.recover = false;
                p.void = true;
            }
        }
        if self.mine.remove(&shard).is_some() {
            self.out.push_back(Output::Drop { shard, why });
        }
    }

    /// The KV's answer to operation `id` (an answer to an operation that timed out already is
    /// ignored).
    pub fn handle_kv(&mut self, now_ms: u64, id: u64, result: KvResult) {
        let now = self.clock(now_ms);
        let p = match self.pending.remove(&id) {
            Some(p) => p,
            // A renewal answered after its time-out: if it took effect, the revision it made
            // is the one to renew next (its validity counts from when it was sent, as ever).
            None => match (self.late.remove(&id), &result) {
                (Some(p), KvResult::Done(_)) => p,
                _ => return,
            },
        };
        match (p.op, result) {
            (KvOp::ReadAll, r) => {
                self.reading = None;
                let reads = match r {
                    KvResult::Leases(mut v) => {
                        v.resize(self.shards as usize, None);
                        v
                    }
                    _ => vec![None; self.shards as usize],
                };
                self.end_reads(now, reads);
            }
            (KvOp::Create { shard }, KvResult::Done(revision)) if !p.void && !self.mine.contains_key(&shard) => {
                let held = Held { revision, valid_from_ms: p.sent_ms, confirmed_ms: now, ready: false };
                self.mine.insert(shard, held);
                self.out.push_back(Output::Load { shard });
            }
            (KvOp::Update { shard, revision: was }, KvResult::Done(revision)) => match self.mine.get_mut(&shard) {
                Some(h) if h.revision == was => {
                    h.revision = revision;
                    h.valid_from_ms = h.valid_from_ms.max(p.sent_ms);
                    h.confirmed_ms = now;
                    if h.ready {
                        let at_ms = h.valid_from_ms;
                        self.owners[shard as usize] = Some(Owner { node: self.me, revision, at_ms });
                    }
                }
                Some(_) => {}
                None if !p.recover => {}
                None => {
                    // Held in the bucket but not here (dropped on a `took` that was stale, or
                    // this node restarted with its tag): load it again.
                    let held = Held { revision, valid_from_ms: p.sent_ms, confirmed_ms: now, ready: false };
                    self.mine.insert(shard, held);
                    self.out.push_back(Output::Load { shard });
                }
            },
            // A refused renewal or a failed write changes nothing: the lease stays valid as long
            // as it was (no other node can create it before), and the next round's read tells
            // whether it is still this node's (a write that timed out may have taken effect,
            // and made the revision held here stale). Deletes are not waited for.
            _ => {}
        }
    }

    /// The round's reads are answered: what is lost goes, then the plan's writes.
    fn end_reads(&mut self, now: u64, reads: Vec<Option<Option<Seen>>>) {
        let sent = self.reads_sent;
        let mut seen: Vec<Option<Seen>> = vec![None; self.shards as usize];
        let mut lost = Vec::new();
        for (i, r) in reads.into_iter().enumerate() {
            let shard = i as u16;
            // A read sent before a write of this node's to the shard was answered may have
            // been served before it: it says nothing about the lease held.
            let r = match self.mine.get(&shard) {
                Some(h) if sent < h.confirmed_ms => None,
                _ => r,
            };
            seen[i] = match r {
                Some(e) => {
                    self.owners[i] = e.map(|s| Owner { node: s.owner, revision: s.revision, at_ms: sent });
                    self.read_at[i] = sent;
                    if let Some(h) = self.mine.get_mut(&shard) {
                        match e {
                            // A write that looked failed took effect: that revision is ours.
                            Some(s) if s.owner == self.me => h.revision = s.revision,
                            _ => lost.push(shard),
                        }
                    }
                    e
                }
                // Unknown: mine as held (renewed on the revision held), else held by whoever
                // held it last, or someone (never taken by this node on a guess).
                _ => match self.mine.get(&shard) {
                    Some(h) => Some(Seen { owner: self.me, revision: h.revision }),
                    None => Some(Seen { owner: self.owners[i].map_or(0, |o| o.node), revision: 0 }),
                },
            };
        }
        for shard in lost {
            self.drop_shard(shard, "its lease lapsed");
        }
        let members = self.members(now);
        for step in plan(self.me, &members, &seen) {
            match step {
                // Leases held here are renewed every period already; one the bucket names
                // this node for but not held here (a create that timed out but took effect)
                // is renewed, then loaded.
                Step::Renew { shard, revision } if !self.mine.contains_key(&shard) => {
                    self.send_op(now, KvOp::Update { shard, revision }, true)
                }
                Step::Renew { .. } => {}
                Step::Take { shard } => self.send(now, KvOp::Create { shard }),
                Step::Release { shard, revision } => {
                    self.drop_shard(shard, "another node holds fewer shards");
                    self.owners[shard as usize] = None;
                    self.send(now, KvOp::Delete { shard, revision });
                }
            }
        }
    }

    /// Gives every lease up (a clean shutdown): deletes to send, nothing acted on any more.
    pub fn release_all(&mut self, now_ms: u64) {
        let now = self.clock(now_ms);
        let mine: Vec<(u16, u64)> = self.mine.iter().map(|(s, h)| (*s, h.revision)).collect();
        for (shard, revision) in mine {
            self.drop_shard(shard, "shutting down");
            self.send(now, KvOp::Delete { shard, revision });
        }
    }

    /// Whether this node hears its own heartbeat lately (NATS carries its messages).
    pub fn connected(&self, now_ms: u64) -> bool {
        self.self_seen.is_some_and(|t| now_ms.saturating_sub(t) < self.timing.fresh_ms())
    }

    /// Whether this node acts for `shard` now: loaded, connected, and within the validity of
    /// its last successful write.
    pub fn acts(&self, now_ms: u64, shard: u16) -> bool {
        self.connected(now_ms)
            && self.mine.get(&shard).is_some_and(|h| {
                h.ready && now_ms.saturating_sub(h.valid_from_ms) < self.timing.fresh_ms() && now_ms >= h.valid_from_ms
            })
    }

    /// Whether this node holds `shard`'s lease as far as it knows (valid or not, loaded or not).
    pub fn holds(&self, shard: u16) -> bool {
        self.mine.contains_key(&shard)
    }

    /// The leases this node holds.
    pub fn held(&self) -> impl Iterator<Item = (u16, &Held)> {
        self.mine.iter().map(|(s, h)| (*s, h))
    }

    /// The shards this node acts for now ([`Leases::acts`]), in order: what it reports as kept.
    /// A lease held but no longer valid is not among them: a node that was stopped or cut off
    /// still holds its leases until a read shows whom the bucket names now, and another node
    /// may keep those shards by then.
    pub fn kept(&self, now_ms: u64) -> Vec<u16> {
        self.mine.keys().copied().filter(|s| self.acts(now_ms, *s)).collect()
    }

    /// Loaded shards, in order, valid or not ([`Leases::kept`]: the valid ones).
    pub fn owned(&self) -> Vec<u16> {
        self.mine.iter().filter(|(_, h)| h.ready).map(|(s, _)| *s).collect()
    }

    /// The node that keeps `shard`, as heard within a lease time (`None`: unknown or free).
    pub fn owner(&self, now_ms: u64, shard: u16) -> Option<u16> {
        let o = self.owners.get(shard as usize).copied().flatten()?;
        (now_ms.saturating_sub(o.at_ms) < self.timing.view_ttl_ms()).then_some(o.node)
    }

    /// Every shard's owner ([`Leases::owner`]).
    pub fn owners(&self, now_ms: u64) -> Vec<Option<u16>> {
        (0..self.shards).map(|s| self.owner(now_ms, s)).collect()
    }

    /// Live nodes (heard within a lease time: a node silent that long holds no valid lease,
    /// and its shards are shared out without it), this one included.
    pub fn members(&self, now_ms: u64) -> BTreeSet<u16> {
        let timeout = self.timing.live_ms();
        let mut m: BTreeSet<u16> =
            self.members.iter().filter(|(_, m)| now_ms.saturating_sub(m.seen_ms) < timeout).map(|(t, _)| *t).collect();
        m.insert(self.me);
        m
    }

    /// The other live nodes ([`Leases::members`]) as heard.
    pub fn others(&self, now_ms: u64) -> impl Iterator<Item = (u16, &Member)> {
        let timeout = self.timing.live_ms();
        self.members.iter().filter(move |(_, m)| now_ms.saturating_sub(m.seen_ms) < timeout).map(|(t, m)| (*t, m))
    }

    /// Whether this node can reach the shards it does not keep: it hears itself, and it is not
    /// alone without every shard (a node cut off behind its own NATS server hears itself).
    pub fn reaches_cluster(&self, now_ms: u64) -> bool {
        self.connected(now_ms) && (self.members(now_ms).len() > 1 || self.owned().len() == self.shards as usize)
    }
}

#[cfg(test)]
mod tests;
