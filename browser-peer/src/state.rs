//! What the page shows, as a [`Reducible`] state: plain data and [`Action`]s, no I/O.
//!
//! The networking side (`node.rs`) dispatches actions; components only read this state.
//! Names that come from the swarm are kept as plain strings and rendered as text nodes.

use std::rc::Rc;
use swarm_core::peer::CellState;
use swarm_core::wire::LinkPath;
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
#[derive(Debug, Clone, PartialEq)]
pub struct UploadView {
    pub id: u32,
    pub name: String,
    pub size: u64,
    pub chunks_done: usize,
    pub chunks_total: usize,
    pub bytes_done: u64,
    pub started_ms: f64,
    pub updated_ms: f64,
    pub file: Option<FileId>,
    pub error: Option<String>,
    /// Deleted from the swarm by this tab (its publisher).
    pub deleted: bool,
    /// Why the last delete failed.
    pub delete_error: Option<String>,
    /// What the share link carries after `#/file/{id}`: `?key=…` for a private upload.
    pub link_query: String,
}

impl UploadView {
    /// Chunk + hash + store rate so far, bytes per second.
    pub fn rate(&self) -> f64 {
        let secs = (self.updated_ms - self.started_ms) / 1000.0;
        if secs > 0.0 {
            self.bytes_done as f64 / secs
        } else {
            0.0
        }
    }
}

/// One peer a download fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceView {
    pub peer: PeerId,
    /// Verified bytes it delivered.
    pub bytes: u64,
    /// How it is reached: the link's path as the page names it (`direct (host)`, `tracker
    /// relay`, … see `crate::paths::label`), `connecting`, or empty (not connected).
    pub via: &'static str,
}

/// This tab's storage as the browser reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StorageInfo {
    pub usage: Option<u64>,
    pub quota: Option<u64>,
    /// Whether persistent storage was granted (`navigator.storage.persist()`).
    pub persisted: Option<bool>,
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
    /// Per chunk: its state and source (the chunk map).
    pub cells: Rc<Vec<CellState>>,
    /// By slot: the peers of this download and what each delivered.
    pub sources: Vec<SourceView>,
    /// Bytes already stored when the transfer began (not counted in the rate).
    pub bytes_at_start: u64,
    /// When the transfer (not the lookup) began.
    pub transfer_ms: f64,
    /// Milliseconds from the tracker's answer (file located) to the first chunk stored.
    pub first_chunk_ms: Option<f64>,
}

impl DownloadView {
    /// Average transfer rate so far in bytes per second.
    pub fn rate(&self) -> f64 {
        let secs = (self.updated_ms - self.transfer_ms) / 1000.0;
        if secs > 0.0 {
            self.bytes_done.saturating_sub(self.bytes_at_start) as f64 / secs
        } else {
            0.0
        }
    }

    /// Seconds left at the current rate.
    pub fn eta_secs(&self) -> Option<f64> {
        let rate = self.rate();
        (rate > 0.0 && self.size >= self.bytes_done).then(|| (self.size - self.bytes_done) as f64 / rate)
    }

    fn empty(file: FileId, now: f64, phase: DownloadPhase) -> Self {
        DownloadView {
            file,
            name: None,
            size: 0,
            chunks_total: 0,
            chunks_done: 0,
            bytes_done: 0,
            peers: 0,
            started_ms: now,
            updated_ms: now,
            phase,
            cells: Rc::new(Vec::new()),
            sources: Vec::new(),
            bytes_at_start: 0,
            transfer_ms: now,
            first_chunk_ms: None,
        }
    }
}

/// Bytes moved over data channels, and what this tab holds and serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub received: u64,
    pub sent: u64,
    /// Bytes through the tracker relay.
    pub relay_received: u64,
    pub relay_sent: u64,
    /// Bytes received by path, in the order of `LinkPath::ALL` (direct host, direct
    /// reflexive, TURN, relay).
    pub by_path: [u64; 4],
    pub store_chunks: usize,
    pub store_bytes: u64,
    pub connections: usize,
}

/// One connection of this tab to another peer, as the swarm view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    pub peer: PeerId,
    /// The path its bytes take; `None` while connecting, or while a fresh channel's path is
    /// not read yet.
    pub path: Option<LinkPath>,
    /// Requests can flow.
    pub ready: bool,
    /// This tab fetches over it (otherwise the other peer does).
    pub fetching: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppState {
    pub conn: ConnStatus,
    pub peer_id: Option<PeerId>,
    pub uploads: Vec<UploadView>,
    pub download: Option<DownloadView>,
    pub stats: Stats,
    /// This tab's connections to other peers, sorted by peer.
    pub links: Rc<Vec<LinkView>>,
    pub storage: StorageInfo,
    /// A storage problem to show (quota exceeded, no IndexedDB).
    pub store_error: Option<String>,
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
        now: f64,
    },
    UploadProgress {
        id: u32,
        chunks_done: usize,
        bytes_done: u64,
        now: f64,
    },
    UploadPublished {
        id: u32,
        file: FileId,
    },
    /// A private upload: its link carries this after the id (`?key=…`).
    UploadLinkQuery {
        id: u32,
        query: String,
    },
    UploadFailed {
        id: u32,
        error: String,
    },
    /// The tracker forgot a file this tab published (at its request).
    FileDeleted {
        file: FileId,
    },
    FileDeleteFailed {
        file: FileId,
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
        cells: Rc<Vec<CellState>>,
    },
    DownloadProgress {
        file: FileId,
        chunks_done: usize,
        bytes_done: u64,
        peers: usize,
        now: f64,
        cells: Rc<Vec<CellState>>,
        sources: Vec<SourceView>,
        first_chunk_ms: Option<f64>,
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
    Links(Rc<Vec<LinkView>>),
    StorageInfo(StorageInfo),
    StoreError(Option<String>),
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
            Action::UploadStarted { id, name, size, chunks_total, now } => s.uploads.push(UploadView {
                id,
                name,
                size,
                chunks_done: 0,
                chunks_total,
                bytes_done: 0,
                started_ms: now,
                updated_ms: now,
                file: None,
                error: None,
                deleted: false,
                delete_error: None,
                link_query: String::new(),
            }),
            Action::UploadLinkQuery { id, query } => {
                if let Some(u) = s.uploads.iter_mut().find(|u| u.id == id) {
                    u.link_query = query;
                }
            }
            Action::UploadProgress { id, chunks_done, bytes_done, now } => {
                if let Some(u) = s.uploads.iter_mut().find(|u| u.id == id) {
                    u.chunks_done = chunks_done;
                    u.bytes_done = bytes_done;
                    u.updated_ms = now;
                }
            }
            Action::UploadPublished { id, file } => {
                if let Some(u) = s.uploads.iter_mut().find(|u| u.id == id) {
                    u.chunks_done = u.chunks_total;
                    u.file = Some(file);
                }
            }
            Action::FileDeleted { file } => {
                for u in s.uploads.iter_mut().filter(|u| u.file == Some(file)) {
                    u.deleted = true;
                    u.delete_error = None;
                }
            }
            Action::FileDeleteFailed { file, error } => {
                for u in s.uploads.iter_mut().filter(|u| u.file == Some(file)) {
                    u.delete_error = Some(error.clone());
                }
            }
            Action::UploadFailed { id, error } => {
                if let Some(u) = s.uploads.iter_mut().find(|u| u.id == id) {
                    u.error = Some(error);
                }
            }
            Action::DownloadStarted { file, now } => {
                s.download = Some(DownloadView::empty(file, now, DownloadPhase::Locating))
            }
            Action::DownloadLocated { file, name, size, chunks_total, cells } => {
                if let Some(d) = s.download.as_mut().filter(|d| d.file == file) {
                    d.name = Some(name);
                    d.size = size;
                    d.chunks_total = chunks_total;
                    d.chunks_done = cells.iter().filter(|c| matches!(c, CellState::Done(_))).count();
                    d.cells = cells;
                    d.phase = DownloadPhase::Transferring;
                }
            }
            Action::DownloadProgress { file, chunks_done, bytes_done, peers, now, cells, sources, first_chunk_ms } => {
                if let Some(d) = s.download.as_mut().filter(|d| d.file == file) {
                    if d.transfer_ms == d.started_ms {
                        // First progress: the rate counts from here, without what was stored.
                        d.transfer_ms = now;
                        d.bytes_at_start = bytes_done;
                    }
                    d.chunks_done = chunks_done;
                    d.bytes_done = bytes_done;
                    d.peers = peers;
                    d.updated_ms = now;
                    d.cells = cells;
                    d.sources = sources;
                    d.first_chunk_ms = d.first_chunk_ms.or(first_chunk_ms);
                }
            }
            Action::DownloadDone { file, url, now } => {
                if let Some(d) = s.download.as_mut().filter(|d| d.file == file) {
                    d.chunks_done = d.chunks_total;
                    d.bytes_done = d.size;
                    d.updated_ms = d.updated_ms.max(d.transfer_ms).min(now);
                    d.phase = DownloadPhase::Done { url };
                }
            }
            Action::DownloadFailed { file, error } => match (file, s.download.as_mut()) {
                (Some(f), Some(d)) if d.file == f => d.phase = DownloadPhase::Failed(error),
                (Some(_), _) => {} // an old download
                (None, _) => {
                    // Not a file id: show the error in place of any download.
                    s.download = Some(DownloadView::empty(FileId([0; 32]), 0.0, DownloadPhase::Failed(error)))
                }
            },
            Action::Links(links) => s.links = links,
            Action::StorageInfo(info) => s.storage = info,
            Action::StoreError(e) => s.store_error = e,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(file: FileId, now: f64, first_chunk_ms: Option<f64>) -> Action {
        Action::DownloadProgress {
            file,
            chunks_done: 1,
            bytes_done: 1,
            peers: 1,
            now,
            cells: Rc::new(Vec::new()),
            sources: Vec::new(),
            first_chunk_ms,
        }
    }

    #[test]
    fn the_first_chunk_time_is_kept_once_known() {
        let file = FileId([7; 32]);
        let mut s = Rc::new(AppState::default());
        s = s.reduce(Action::DownloadStarted { file, now: 0.0 });
        s = s.reduce(progress(file, 10.0, None));
        assert_eq!(s.download.as_ref().unwrap().first_chunk_ms, None);
        s = s.reduce(progress(file, 20.0, Some(180.0)));
        s = s.reduce(progress(file, 30.0, None));
        assert_eq!(s.download.as_ref().unwrap().first_chunk_ms, Some(180.0));
        // A new download starts without one.
        s = s.reduce(Action::DownloadStarted { file, now: 40.0 });
        assert_eq!(s.download.as_ref().unwrap().first_chunk_ms, None);
    }

    #[test]
    fn links_replace_the_previous_list() {
        let link = LinkView { peer: PeerId("ab".repeat(16)), path: Some(LinkPath::Relay), ready: true, fetching: true };
        let s = Rc::new(AppState::default()).reduce(Action::Links(Rc::new(vec![link.clone()])));
        assert_eq!(*s.links, vec![link]);
        let s = s.reduce(Action::Links(Rc::new(Vec::new())));
        assert!(s.links.is_empty());
    }
}
