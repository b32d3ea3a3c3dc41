//! The core's connections: who is welcomed here (with the outbox its connection task drains),
//! admission of a new one, its end, and delivery of the swarm's outputs to outboxes (here) or
//! to the node a peer is connected to (in a cluster).

use super::{Core, Refusal};
use crate::core::outbox::{Frame, Outbox, PushError};
use std::collections::HashSet;
use swarm_core::swarm::budget::Work;
use swarm_core::swarm::policy::{AddrKey, PublishBudget};
use swarm_core::swarm::Output;
use swarm_core::wire::{ErrorCode, PeerKind};
use swarm_core::{PeerId, ServerMsg};

/// A connection welcomed here.
pub struct Connected {
    /// Distinguishes two connections of one peer (a reconnect replaces the older one).
    pub conn_serial: u64,
    pub outbox: Outbox,
    /// The client address it counts against (`None`: exempt from the per-address limits).
    pub addr: Option<AddrKey>,
}

/// Where a relay frame for a peer goes.
pub enum RelayRoute<'a> {
    /// Connected here: into this outbox.
    Here(&'a Outbox),
    /// Connected to another node of the cluster.
    Node(u16),
    /// Not connected anywhere this node knows of (or the frame's sender itself).
    Unknown,
}

impl Core {
    /// Registers a welcomed peer unless the tracker is full, its address has as many
    /// identities live as it may, or a new identity does not fit the state budget (a
    /// reconnecting peer always gets in); returns its connection's serial. An older
    /// connection of the same peer is dropped (its outbox closes, its task ends).
    pub fn admit(
        &mut self,
        id: &PeerId,
        kind: PeerKind,
        outbox: Outbox,
        addr: Option<AddrKey>,
        now_ms: u64,
        mono_ms: u64,
    ) -> Result<u64, Refusal> {
        let reconnect = self.connected.contains_key(id);
        if self.connected.len() >= self.limits.max_peers && !reconnect {
            let max = self.limits.max_peers;
            let msg = format!("the tracker is full ({max} peers); try again later");
            return Err(Refusal::new(ServerMsg::error(None, ErrorCode::LimitReached, msg)));
        }
        if let Some(a) = addr {
            let (live, already) = self.identities_at(a, id);
            if let Err(e) = self.limits.address().check_identity(a, live, already) {
                return Err(Refusal::new(ServerMsg::error(None, e.code(), e.to_string())));
            }
        }
        if !reconnect {
            // A new identity is new state: refused near the budget.
            let work = (Work::Identity, Work::Identity.cost(0));
            self.check_budget(work, addr).map_err(|msg| Refusal { msg, over_budget: true })?;
        }
        self.swarm.join(id.clone(), kind, now_ms);
        let serial = self.next_serial;
        self.next_serial += 1;
        if let Some(a) = addr {
            let used = self.addrs.entry(a).or_insert_with(|| super::AddrUse {
                identities: HashSet::new(),
                files: 0,
                chunks: 0,
                budget: PublishBudget::new(mono_ms),
            });
            used.identities.insert(id.clone());
        }
        let new = Connected { conn_serial: serial, outbox, addr };
        if let Some(old) = self.connected.insert(id.clone(), new) {
            old.outbox.close();
            if old.addr != addr {
                self.forget_identity(id, old.addr);
            }
        }
        // Connected here now (it may have been connected to another node before).
        self.homes.remove(id);
        Ok(serial)
    }

    fn forget_identity(&mut self, id: &PeerId, addr: Option<AddrKey>) {
        if let Some(used) = addr.and_then(|a| self.addrs.get_mut(&a)) {
            used.identities.remove(id);
        }
    }

    /// Forgets a connection, unless a newer one of the same peer replaced it: the peer leaves
    /// the swarm (unless it is connected to another node since).
    pub fn disconnect(&mut self, id: &PeerId, serial: u64, now_ms: u64) {
        if !self.is_current(id, serial) {
            return;
        }
        let c = self.connected.remove(id).expect("present");
        self.forget_identity(id, c.addr);
        self.leave_answers.remove(id);
        if self.homes.contains_key(id) {
            return; // it connected to another node since: it is live there
        }
        self.swarm.leave(id, now_ms);
        if let Some(n) = &self.nodes {
            n.peer_left(id);
        }
    }

    /// Whether `serial` is still the live connection of `id`.
    pub fn is_current(&self, id: &PeerId, serial: u64) -> bool {
        self.connected.get(id).is_some_and(|c| c.conn_serial == serial)
    }

    /// Whether `id` is connected here.
    pub fn is_connected(&self, id: &PeerId) -> bool {
        self.connected.contains_key(id)
    }

    /// Peers connected here.
    pub fn peer_count(&self) -> usize {
        self.connected.len()
    }

    /// The peers connected here.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.connected.keys().cloned().collect()
    }

    /// Where a relay frame from `from` to `to` goes.
    pub fn relay_route(&self, from: &PeerId, to: &PeerId) -> RelayRoute<'_> {
        match (self.connected.get(to), self.homes.get(to)) {
            (Some(c), _) if to != from => RelayRoute::Here(&c.outbox),
            (None, Some(node)) if self.nodes.is_some() => RelayRoute::Node(*node),
            _ => RelayRoute::Unknown,
        }
    }

    /// Queues `frame` for `peer` if it is connected here; `false` if it is not or its queue
    /// is full.
    pub fn deliver_frame(&self, peer: &PeerId, frame: Frame) -> bool {
        self.connected.get(peer).is_some_and(|c| c.outbox.push(frame).is_ok())
    }

    /// Closes every peer's outbox: their connection tasks end (server shutdown).
    pub fn close_all(&mut self) {
        for c in self.connected.values() {
            c.outbox.close();
        }
    }

    /// Closes the outbox of every peer not heard from for `timeout_ms` (their connection
    /// tasks end); returns how many.
    pub fn close_idle(&self, mono_ms: u64, timeout_ms: u64) -> usize {
        let mut closed = 0;
        for (id, c) in &self.connected {
            if mono_ms.saturating_sub(c.outbox.last_seen_ms()) >= timeout_ms && !c.outbox.is_closed() {
                tracing::info!(peer = %id, "no heartbeat: dropping peer");
                c.outbox.close();
                closed += 1;
            }
        }
        closed
    }

    /// Queues `msg` for `to` if it is connected here; a peer whose outbox is full is closed.
    /// Returns the peers closed that way (0 or 1).
    pub fn tell(&self, to: &PeerId, msg: ServerMsg) -> u64 {
        if let ServerMsg::Signal { from, .. } = &msg {
            if from != to {
                return self.push_signal(to, msg); // sent by another peer: ws/relay.rs
            }
        }
        if let Some(c) = self.connected.get(to) {
            if c.outbox.push(Frame::json(msg)) == Err(PushError::Full) {
                tracing::warn!(peer = %to, "peer does not read its messages: dropping it");
                c.outbox.close();
                return 1;
            }
        }
        0
    }

    /// Queues a `signal` from another peer (`from` in the message) for `to`, if connected
    /// here, as a forwarded frame ([`Outbox::push_forwarded`]): it may fill only half of the
    /// recipient's queue and its bytes count against the sender until taken. A refusal goes
    /// back to the sender (if connected here); `to` stays connected. Returns the peers closed
    /// as too slow.
    fn push_signal(&self, to: &PeerId, msg: ServerMsg) -> u64 {
        let (Some(c), ServerMsg::Signal { from, .. }) = (self.connected.get(to), &msg) else { return 0 };
        let from = from.clone();
        let sender = self.connected.get(&from).map(|s| &s.outbox);
        let why = match c.outbox.push_forwarded(Frame::json(msg), sender) {
            Ok(()) | Err(PushError::Closed) => return 0,
            Err(PushError::Full) => {
                (ErrorCode::PeerBusy, format!("peer {to} is not reading its signals: signal dropped; try again later"))
            }
            Err(PushError::SenderBusy) => (
                ErrorCode::RateLimited,
                format!(
                    "too many of your signals wait for peers that have not read them ({} bytes): signal to {to} \
                     dropped; slow down",
                    sender.map_or(0, |s| s.forwarded_out())
                ),
            ),
        };
        if sender.is_some() {
            return self.tell(&from, ServerMsg::error(None, why.0, why.1));
        }
        0
    }

    /// Queues `msg` for every peer connected here; returns the peers closed as too slow.
    pub fn tell_all(&self, msg: &ServerMsg) -> u64 {
        self.connected.keys().map(|p| self.tell(p, msg.clone())).sum()
    }

    /// A message from another node for `peer`, connected here (`node` sent it): queued as the
    /// swarm's own outputs are; a node's `leave_ready` counts towards the one the peer hears.
    /// Returns the peers closed as too slow.
    pub fn deliver_from_node(&mut self, node: u16, peer: &PeerId, msg: ServerMsg) -> u64 {
        let msg = match msg {
            ServerMsg::LeaveReady { .. } if !self.connected.contains_key(peer) => None,
            ServerMsg::LeaveReady { stranded } => self.leave_answer(peer, node, stranded),
            msg => Some(msg),
        };
        msg.map_or(0, |m| self.tell(peer, m))
    }

    /// In a cluster, every node hands a leaving peer's chunks of its own shards to others and
    /// answers `leave_ready`: the peer hears one answer, once every live node has answered
    /// (with the chunks stranded anywhere). `node` answered now.
    fn leave_answer(&mut self, peer: &PeerId, node: u16, stranded: u32) -> Option<ServerMsg> {
        let members = self.nodes.as_ref()?.members();
        let (answered, total) = self.leave_answers.entry(peer.clone()).or_default();
        answered.insert(node);
        *total += stranded;
        if members.is_subset(answered) {
            let (_, total) = self.leave_answers.remove(peer)?;
            return Some(ServerMsg::LeaveReady { stranded: total });
        }
        None
    }

    /// Carries the swarm's outputs to the peers' outboxes (or to the node a peer is connected
    /// to). A peer whose outbox is full is too slow to keep up: its outbox is closed, which
    /// ends its connection (it may reconnect). Returns how many peers were closed that way.
    pub fn dispatch(&mut self, outputs: Vec<Output>) -> u64 {
        let mut closed = 0;
        for out in outputs {
            match out {
                Output::Send { to, msg: ServerMsg::LeaveReady { stranded } }
                    if self.nodes.is_some() && self.connected.contains_key(&to) =>
                {
                    let me = self.nodes.as_ref().map_or(0, |n| n.tag());
                    if let Some(msg) = self.leave_answer(&to, me, stranded) {
                        closed += self.tell(&to, msg);
                    }
                }
                Output::Send { to, msg } => {
                    if self.connected.contains_key(&to) {
                        closed += self.tell(&to, msg);
                    } else if let (Some(n), Some(node)) = (&self.nodes, self.homes.get(&to)) {
                        n.to_peer(*node, to, msg);
                    }
                }
                Output::FileAdded(_) | Output::FileRemoved(_) => {}
            }
        }
        closed
    }
}
