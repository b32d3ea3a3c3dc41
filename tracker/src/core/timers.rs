//! Everything the tracker does because time passed, with one deadline for the driver to wait
//! for ([`Core::poll_timeout`]) and one input when it comes ([`Core::handle_timeout`]): the
//! swarm's own timers (grace periods, repair checks, order time-outs, leave answers), and the
//! sweeps (peers silent too long, files without a copy of every chunk, copies no file uses,
//! per-address budgets that refilled, the verification state to save). Two clocks come in:
//! wall time for the swarm (it is kept in the durable index), the driver's monotonic time for
//! what counts silence and rates.

use super::Core;
use swarm_core::{ChunkId, FileId};

/// Periods and deadlines of the sweeps (milliseconds; deadlines on the monotonic clock).
#[derive(Debug, Clone)]
pub struct Timers {
    /// A peer that sends nothing for this long is dropped ...
    idle_timeout_ms: u64,
    /// ... checked this often (a quarter of it: a peer goes between the timeout and the
    /// timeout plus a quarter after its last message; one sweep for all, no timer per
    /// connection, which would be memory every idle peer carries).
    idle_period_ms: u64,
    /// A file with a chunk nobody holds leaves the index after this long (checked a few times
    /// per it); `None`: never.
    unavailable_ttl_ms: Option<u64>,
    /// Copies no file uses are trimmed after this long ([`swarm_core::swarm::orphans`]).
    orphan_grace_ms: Option<u64>,
    next_repair: u64,
    next_idle: u64,
    next_expire: u64,
    next_orphans: u64,
    next_save: u64,
}

/// The swarm is ticked at most this long apart (a message may have moved its deadlines) ...
const REPAIR_MAX_MS: u64 = 50;
/// ... and at least this long apart.
const REPAIR_MIN_MS: u64 = 10;
/// The verification state is saved this often.
const SAVE_MS: u64 = 1_000;

impl Timers {
    pub fn new(idle_timeout_ms: u64, unavailable_ttl_ms: Option<u64>, orphan_grace_ms: Option<u64>) -> Self {
        let mut t = Self {
            idle_timeout_ms,
            idle_period_ms: (idle_timeout_ms / 4).clamp(20, 5_000),
            unavailable_ttl_ms,
            orphan_grace_ms,
            next_repair: 0,
            next_idle: 0,
            next_expire: 0,
            next_orphans: 0,
            next_save: 0,
        };
        t.next_idle = t.idle_period_ms;
        t.next_expire = t.expire_period();
        t.next_orphans = t.orphans_period();
        t.next_save = SAVE_MS;
        t
    }

    fn expire_period(&self) -> u64 {
        self.unavailable_ttl_ms.map_or(u64::MAX, |ttl| (ttl / 4).clamp(100, 60_000))
    }

    fn orphans_period(&self) -> u64 {
        self.orphan_grace_ms.map_or(u64::MAX, |g| (g / 4).clamp(100, 30_000))
    }
}

/// What a timeout asks the driver to carry out.
#[derive(Debug, Default)]
pub struct TimeoutStep {
    /// Peers closed as too slow while the swarm's messages were queued.
    pub closed_slow: u64,
    /// Peers dropped for silence.
    pub closed_idle: usize,
    /// Files that left the index (to forget durably).
    pub removed: Vec<FileId>,
    /// Time to write the verification state.
    pub save_trust: bool,
}

impl Core {
    /// How long the driver may wait before [`Core::handle_timeout`] (ms from now).
    pub fn poll_timeout(&self, mono_ms: u64) -> u64 {
        let t = &self.timers;
        [t.next_repair, t.next_idle, t.next_expire, t.next_orphans, t.next_save]
            .into_iter()
            .min()
            .unwrap_or(u64::MAX)
            .saturating_sub(mono_ms)
    }

    /// Runs what is due at `now_ms` (wall) / `mono_ms` (monotonic). `in_use` tells a chunk
    /// that a file kept elsewhere uses (in a cluster: another node's), which is no orphan.
    pub fn handle_timeout(&mut self, now_ms: u64, mono_ms: u64, in_use: impl Fn(&ChunkId) -> bool) -> TimeoutStep {
        let mut step = TimeoutStep::default();
        if mono_ms >= self.timers.next_repair {
            let out = self.swarm.tick(now_ms);
            step.closed_slow += self.dispatch(out);
            let next = self.swarm.next_deadline().map_or(REPAIR_MAX_MS, |d| d.saturating_sub(now_ms));
            self.timers.next_repair = mono_ms + next.clamp(REPAIR_MIN_MS, REPAIR_MAX_MS);
        }
        if mono_ms >= self.timers.next_idle {
            step.closed_idle = self.close_idle(mono_ms, self.timers.idle_timeout_ms);
            self.timers.next_idle = mono_ms + self.timers.idle_period_ms;
        }
        if mono_ms >= self.timers.next_expire {
            if let Some(ttl) = self.timers.unavailable_ttl_ms {
                let out = self.swarm.expire_unavailable(now_ms, ttl);
                step.removed = self.files_removed(&out);
                step.closed_slow += self.dispatch(out);
                self.prune_addrs(mono_ms);
            }
            self.timers.next_expire = mono_ms.saturating_add(self.timers.expire_period());
        }
        if mono_ms >= self.timers.next_orphans {
            if let Some(grace) = self.timers.orphan_grace_ms {
                let out = self.swarm.trim_orphans(now_ms, grace, in_use);
                step.closed_slow += self.dispatch(out);
            }
            self.timers.next_orphans = mono_ms.saturating_add(self.timers.orphans_period());
        }
        if mono_ms >= self.timers.next_save {
            step.save_trust = true;
            self.timers.next_save = mono_ms + SAVE_MS;
        }
        step
    }
}
