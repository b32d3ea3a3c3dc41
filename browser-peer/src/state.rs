//! What the page shows, as a [`Reducible`] state: plain data and [`Action`]s, no I/O.
//!
//! The networking side (`node.rs`) dispatches actions; components only read this state.
//! Names that come from the swarm are kept as plain strings and rendered as text nodes.

use std::rc::Rc;
use swarm_core::{FileId, PeerId};
use yew::Reducible;

/// The tracker connection as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnStatus {
    #[default]
    Connecting,
    /// Socket open, `Welcome` received.
    Connected,
    /// Socket closed; the next attempt starts in `retry_ms`.
    Disconnected { retry_ms: u32 },
}

impl ConnStatus {
    /// Stable machine-readable name (the status indicator's `data-state`).
    pub fn key(&self) -> &'static str {
        match self {
            ConnStatus::Connecting => "connecting",
            ConnStatus::Connected => "connected",
            ConnStatus::Disconnected { .. } => "disconnected",
        }
    }
}

/// One file this tab published (or is publishing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadView {
    pub id: u32,
    pub name: String,
    pub size: u64,
    pub chunks_done: usize,
    pub chunks_total: usize,
    pub file: Option<FileId>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadPhase {
    Locating,
    Transferring,
    Done { url: String },
    Failed(String),
}

/// The download shown on the page.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadView {
    pub file: FileId,
    pub name: Option<String>,
    pub size: u64,
    pub chunks_total: usize,
    pub chunks_done: usize,
    pub bytes_done: u64,
    pub peers: usize,
    pub started_ms: f64,
    pub updated_ms: f64,
    pub phase: DownloadPhase,
}

impl DownloadView {
    /// Average rate so far in bytes per second.
    pub fn rate(&self) -> f64 {
        let secs = (self.updated_ms - self.started_ms) / 1000.0;
        if secs > 0.0 {
            self.bytes_done as f64 / secs
        } else {
            0.0
        }
    }
}

/// Bytes moved over data channels, and what this tab holds and serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub received: u64,
    pub sent: u64,
    pub store_chunks: usize,
    pub store_bytes: u64,
    pub connections: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppState {
    pub conn: ConnStatus,
    pub peer_id: Option<PeerId>,
    pub uploads: Vec<UploadView>,
    pub download: Option<DownloadView>,
    pub stats: Stats,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Conn(ConnStatus),
    Welcomed(PeerId),
    UploadStarted {
        id: u32,
        name: String,
        size: u64,
        chunks_total: usize,
    },
    UploadProgress {
        id: u32,
        chunks_done: usize,
    },
    UploadPublished {
        id: u32,
        file: FileId,
    },
    UploadFailed {
        id: u32,
        error: String,
    },
    DownloadStarted {
        file: FileId,
        now: f64,
    },
    DownloadLocated {
        file: FileId,
        name: String,
        size: u64,
        chunks_total: usize,
    },
    DownloadProgress {
        file: FileId,
        chunks_done: usize,
        bytes_done: u64,
        peers: usize,
        now: f64,
    },
    DownloadDone {
        file: FileId,
        url: String,
        now: f64,
    },
    /// `file` is `None` when the input was not a file id at all.
    DownloadFailed {
        file: Option<FileId>,
        error: String,
    },
    Stats(Stats),
}

impl Reducible for AppState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut s = (*self).clone();
        match action {
            Action::Conn(c) => s.conn = c,
            Action::Welcomed(id) => {
                s.peer_id = Some(id);
                s.conn = ConnStatus::Connected;
            }
            Action::UploadStarted { id, name, size, chunks_total } => {
                s.uploads.push(UploadView { id, name, size, chunks_done: 0, chunks_total, file: None, error: None })
            }
            Action::UploadProgress { id, chunks_done } => {
                if let Some(u) = s.uploads.iter_mut().find(|u| u.id == id) {
                    u.chunks_done = chunks_done;
                }
            }
            Action::UploadPublished { id, file } => {
                if let Some(u) = s.uploads.iter_mut().find(|u| u.id == id) {
                    u.chunks_done = u.chunks_total;
                    u.file = Some(file);
                }
            }
            Action::UploadFailed { id, error } => {
                if let Some(u) = s.uploads.iter_mut().find(|u| u.id == id) {
                    u.error = Some(error);
                }
            }
            Action::DownloadStarted { file, now } => {
                s.download = Some(DownloadView {
                    file,
                    name: None,
                    size: 0,
                    chunks_total: 0,
                    chunks_done: 0,
                    bytes_done: 0,
                    peers: 0,
                    started_ms: now,
                    updated_ms: now,
                    phase: DownloadPhase::Locating,
                })
            }
            Action::DownloadLocated { file, name, size, chunks_total } => {
                if let Some(d) = s.download.as_mut().filter(|d| d.file == file) {
                    d.name = Some(name);
                    d.size = size;
                    d.chunks_total = chunks_total;
                    d.phase = DownloadPhase::Transferring;
                }
            }
            Action::DownloadProgress { file, chunks_done, bytes_done, peers, now } => {
                if let Some(d) = s.download.as_mut().filter(|d| d.file == file) {
                    d.chunks_done = chunks_done;
                    d.bytes_done = bytes_done;
                    d.peers = peers;
                    d.updated_ms = now;
                }
            }
            Action::DownloadDone { file, url, now } => {
                if let Some(d) = s.download.as_mut().filter(|d| d.file == file) {
                    d.chunks_done = d.chunks_total;
                    d.bytes_done = d.size;
                    d.updated_ms = now;
                    d.phase = DownloadPhase::Done { url };
                }
            }
            Action::DownloadFailed { file, error } => match (file, s.download.as_mut()) {
                (Some(f), Some(d)) if d.file == f => d.phase = DownloadPhase::Failed(error),
                (Some(_), _) => {} // an old download
                (None, _) => {
                    // Not a file id: show the error in place of any download.
                    s.download = Some(DownloadView {
                        file: FileId([0; 32]),
                        name: None,
                        size: 0,
                        chunks_total: 0,
                        chunks_done: 0,
                        bytes_done: 0,
                        peers: 0,
                        started_ms: 0.0,
                        updated_ms: 0.0,
                        phase: DownloadPhase::Failed(error),
                    })
                }
            },
            Action::Stats(st) => {
                if s.stats == st {
                    return self;
                }
                s.stats = st;
            }
        }
        Rc::new(s)
    }
}
