//! Shared state of the running tracker: the swarm index behind one lock, the outbound queue
//! of every connected peer, and traffic counters.

use crate::index::{FileIndex, IndexError};
use crate::Config;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use swarm_core::swarm::{Output, Swarm};
use swarm_core::{PeerId, ServerMsg};
use tokio::sync::mpsc;

/// Outbound messages a connection task writes to its socket.
pub type Outbox = mpsc::Sender<ServerMsg>;

/// Traffic counters, exposed by `/api/stats` (tests use them to prove file bytes did not
/// pass through the tracker).
#[derive(Debug, Default)]
pub struct Counters {
    pub ws_connections: AtomicU64,
    pub ws_messages_in: AtomicU64,
    pub ws_messages_out: AtomicU64,
    pub ws_bytes_in: AtomicU64,
    pub ws_bytes_out: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

pub struct Connected {
    /// Distinguishes two connections of one peer (a reconnect replaces the older one).
    pub conn_serial: u64,
    pub outbox: Outbox,
}

pub struct Inner {
    pub swarm: Swarm,
    pub connected: HashMap<PeerId, Connected>,
    next_serial: u64,
}

pub struct AppState {
    pub config: Config,
    pub index: Option<FileIndex>,
    /// Flips to true when the server shuts down; connection tasks watch it.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    pub inner: Mutex<Inner>,
    pub counters: Counters,
    pub started_ms: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl AppState {
    /// Opens the durable index (if configured) and restores every file from it.
    pub fn new(config: Config) -> Result<Self, IndexError> {
        let mut swarm = Swarm::with_config(config.repair.clone());
        let index = match &config.data_dir {
            Some(dir) => {
                let index = FileIndex::open(dir)?;
                let files = index.load()?;
                tracing::info!(files = files.len(), dir = %dir.display(), "file index loaded");
                for f in files {
                    swarm.restore_file(f);
                }
                Some(index)
            }
            None => None,
        };
        Ok(Self {
            config,
            index,
            shutdown: tokio::sync::watch::Sender::new(false),
            inner: Mutex::new(Inner { swarm, connected: HashMap::new(), next_serial: 1 }),
            counters: Counters::default(),
            started_ms: now_ms(),
        })
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Registers a welcomed connection; returns its serial. An older connection of the same
    /// peer is dropped (its outbox closes, its task ends).
    pub fn connect(&mut self, id: PeerId, outbox: Outbox) -> u64 {
        let serial = self.next_serial;
        self.next_serial += 1;
        self.connected.insert(id, Connected { conn_serial: serial, outbox });
        serial
    }

    /// Forgets a connection, unless a newer one of the same peer replaced it.
    pub fn disconnect(&mut self, id: &PeerId, serial: u64) {
        if self.connected.get(id).is_some_and(|c| c.conn_serial == serial) {
            self.connected.remove(id);
            self.swarm.leave(id, now_ms());
        }
    }

    /// Carries the swarm's outputs to the peers' outboxes. A peer whose outbox is full is too
    /// slow to keep up: its message is dropped (its connection task notices and closes).
    pub fn dispatch(&mut self, outputs: Vec<Output>) {
        for out in outputs {
            match out {
                Output::Send { to, msg } => {
                    if let Some(c) = self.connected.get(&to) {
                        let _ = c.outbox.try_send(msg);
                    }
                }
                Output::FileAdded(_) => {}
            }
        }
    }
}
