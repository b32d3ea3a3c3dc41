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

/// The tracker node the page is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerNodeView {
    /// Its `/ws` URL.
    pub url: String,
    /// How many tracker nodes the page knows (1: a single tracker).
    pub nodes: usize,
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
    Done {
        url: String,
    },
    Failed(String),
    /// The user stopped it.
    Cancelled,
    /// The user paused it: nothing is fetched until they resume it (kept so across reloads).
    Paused,
}

impl DownloadPhase {
    /// Stable machine-readable name (a download item's `data-state`).
    pub fn key(&self) -> &'static str {
        match self {
            DownloadPhase::Locating => "locating",
            DownloadPhase::Transferring => "downloading",
            DownloadPhase::Done { .. } => "done",
            DownloadPhase::Failed(_) => "failed",
            DownloadPhase::Cancelled => "cancelled",
            DownloadPhase::Paused => "paused",
        }
    }

    /// Still fetching (may be cancelled).
    pub fn running(&self) -> bool {
        matches!(self, DownloadPhase::Locating | DownloadPhase::Transferring)
    }
}

/// One download on the page.
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

    fn new(file: FileId, now: f64) -> Self {
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
            phase: DownloadPhase::Locating,
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

/// The room this tab offers the swarm (what it reports to the tracker as its capacity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OfferView {
    pub bytes: u64,
    /// The user chose it (otherwise it is the default from the browser's estimate).
    pub chosen: bool,
}

/// The default offer is at most this (and at most a tenth of the origin's quota).
pub const MAX_DEFAULT_OFFER: u64 = 2 << 30;
/// Room offered when the browser gives no estimate.
pub const DEFAULT_CAPACITY: u64 = 1 << 30;

/// The default offer for an origin quota of `quota` bytes: the smaller of
/// [`MAX_DEFAULT_OFFER`] and a tenth of the quota.
pub fn default_offer(quota: Option<u64>) -> u64 {
    quota.map_or(DEFAULT_CAPACITY, |q| (q / 10).min(MAX_DEFAULT_OFFER))
}

/// Bytes from a number of MiB typed by the user.
pub fn parse_mib(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let mib: f64 = t.parse().map_err(|_| format!("not a number of MiB: {t:?}"))?;
    if !mib.is_finite() || mib < 0.0 {
        return Err(format!("not a number of MiB: {t:?}"));
    }
    if mib > (1u64 << 44) as f64 {
        return Err("more than 16 PiB: surely not".to_string());
    }
    Ok((mib * (1 << 20) as f64) as u64)
}

/// An upload limit typed in MiB/s: empty or 0 is none.
pub fn parse_limit_mib(text: &str) -> Result<Option<u64>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse_mib(text).map(|b| (b > 0).then_some(b))
}

/// What lowering the offer did to the chunks held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrimReport {
    /// Chunks kept for the swarm that were dropped (the swarm copies them elsewhere).
    pub dropped_chunks: usize,
    pub dropped_bytes: u64,
    /// Bytes still above the offer: chunks of the user's own files, never dropped.
    pub still_over: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppState {
    pub conn: ConnStatus,
    /// The tracker node of the latest welcome.
    pub tracker: Option<TrackerNodeView>,
    pub peer_id: Option<PeerId>,
    /// This tab's identity slot (0: the origin's first tab; see `crate::identity`).
    pub slot: Option<u32>,
    pub uploads: Vec<UploadView>,
    /// Downloads in the order they were started (at most one per file).
    pub downloads: Vec<DownloadView>,
    /// Why the last thing typed in the download box was not fetched.
    pub download_error: Option<String>,
    pub offer: OfferView,
    /// The upload limit the user set (bytes per second), if any.
    pub upload_limit: Option<u64>,
    /// The last shrink of the offer below what was held.
    pub trim: Option<TrimReport>,
    pub stats: Stats,
    /// This tab's connections to other peers, sorted by peer.
    pub links: Rc<Vec<LinkView>>,
    pub storage: StorageInfo,
    /// A storage problem to show (quota exceeded, no IndexedDB).
    pub store_error: Option<String>,
}

impl AppState {
    /// Why closing or reloading the tab now would lose work, if it would: an upload still
    /// being chunked and published (its bytes are only in this tab). Downloads resume after a
    /// reload ([`crate::resume`]). `None`: nothing to warn about.
    pub fn unfinished_work(&self) -> Option<String> {
        let uploading = self.uploads.iter().filter(|u| u.file.is_none() && u.error.is_none()).count();
        (uploading > 0).then(|| format!("Leaving now stops {uploading} upload(s) not yet published."))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Conn(ConnStatus),
    Welcomed(PeerId),
    /// The tracker node this page is welcomed by, and how many nodes it knows to fail over to.
    TrackerNode {
        url: String,
        nodes: usize,
    },
    /// The identity slot this tab holds.
    Identity {
        slot: u32,
    },
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
    DownloadFailed {
        file: FileId,
        error: String,
    },
    /// The user stopped the download of `file`.
    DownloadCancelled {
        file: FileId,
    },
    /// The user paused it (or it was paused when the page last closed).
    DownloadPaused {
        file: FileId,
    },
    /// What was typed (or opened) is not something the page can fetch.
    DownloadInputError(String),
    Offer(OfferView),
    /// The upload limit in force (bytes per second; `None`: none).
    UploadLimit(Option<u64>),
    Trimmed(TrimReport),
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
            Action::TrackerNode { url, nodes } => s.tracker = Some(TrackerNodeView { url, nodes }),
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
            Action::Identity { slot } => s.slot = Some(slot),
            Action::DownloadStarted { file, now } => {
                s.download_error = None;
                if s.downloads.iter().any(|d| d.file == file && d.phase.running()) {
                    return self; // one download per file
                }
                // A finished, failed or cancelled one starts over, as the newest.
                s.downloads.retain(|d| d.file != file);
                s.downloads.push(DownloadView::new(file, now));
            }
            Action::DownloadLocated { file, name, size, chunks_total, cells } => {
                if let Some(d) = running(&mut s, file) {
                    d.name = Some(name);
                    d.size = size;
                    d.chunks_total = chunks_total;
                    d.chunks_done = cells.iter().filter(|c| matches!(c, CellState::Done(_))).count();
                    d.cells = cells;
                    d.phase = DownloadPhase::Transferring;
                }
            }
            Action::DownloadProgress { file, chunks_done, bytes_done, peers, now, cells, sources, first_chunk_ms } => {
                if let Some(d) = running(&mut s, file) {
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
                if let Some(d) = running(&mut s, file) {
                    d.chunks_done = d.chunks_total;
                    d.bytes_done = d.size;
                    d.updated_ms = d.updated_ms.max(d.transfer_ms).min(now);
                    d.phase = DownloadPhase::Done { url };
                }
            }
            Action::DownloadFailed { file, error } => {
                if let Some(d) = running(&mut s, file) {
                    d.phase = DownloadPhase::Failed(error);
                }
            }
            Action::DownloadCancelled { file } => {
                if let Some(d) = s
                    .downloads
                    .iter_mut()
                    .find(|d| d.file == file && (d.phase.running() || d.phase == DownloadPhase::Paused))
                {
                    d.phase = DownloadPhase::Cancelled;
                }
            }
            Action::DownloadPaused { file } => {
                if let Some(d) = running(&mut s, file) {
                    d.phase = DownloadPhase::Paused;
                }
            }
            Action::DownloadInputError(e) => s.download_error = Some(e),
            Action::Offer(o) => s.offer = o,
            Action::UploadLimit(l) => s.upload_limit = l,
            Action::Trimmed(t) => s.trim = Some(t),
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

/// The running download of `file`, if any (updates for ended ones are stale).
fn running(s: &mut AppState, file: FileId) -> Option<&mut DownloadView> {
    s.downloads.iter_mut().find(|d| d.file == file && d.phase.running())
}

impl AppState {
    /// The most recently started download (the one the page's fixed ids point at).
    pub fn newest_download(&self) -> Option<&DownloadView> {
        self.downloads.last()
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
    fn a_paused_download_waits_and_starts_over_when_resumed_or_ends_when_cancelled() {
        let file = FileId([9; 32]);
        let mut s = Rc::new(AppState::default());
        s = s.reduce(Action::DownloadStarted { file, now: 0.0 });
        s = s.reduce(Action::DownloadPaused { file });
        assert_eq!(s.downloads[0].phase, DownloadPhase::Paused);
        assert!(!s.downloads[0].phase.running());
        s = s.reduce(Action::DownloadFailed { file, error: "late".into() });
        assert_eq!(s.downloads[0].phase, DownloadPhase::Paused, "a paused download fetches nothing, fails nothing");
        s = s.reduce(Action::DownloadStarted { file, now: 1.0 });
        assert_eq!((s.downloads.len(), s.downloads[0].phase.key()), (1, "locating"), "resumed: one item, running");
        s = s.reduce(Action::DownloadPaused { file });
        s = s.reduce(Action::DownloadCancelled { file });
        assert_eq!(s.downloads[0].phase, DownloadPhase::Cancelled, "a paused download can be cancelled");
    }

    #[test]
    fn an_upload_limit_is_typed_in_mib_per_second_and_empty_or_zero_is_none() {
        assert_eq!(parse_limit_mib("1.5"), Ok(Some(3 << 19)));
        assert_eq!(parse_limit_mib(" "), Ok(None));
        assert_eq!(parse_limit_mib("0"), Ok(None));
        assert!(parse_limit_mib("fast").is_err());
        assert!(parse_limit_mib("-1").is_err());
    }

    #[test]
    fn leaving_warns_only_while_an_upload_is_unpublished() {
        let mut s = Rc::new(AppState::default());
        assert_eq!(s.unfinished_work(), None, "nothing going on: no nagging");
        s = s.reduce(Action::UploadStarted { id: 1, name: "a".into(), size: 10, chunks_total: 1, now: 0.0 });
        assert_eq!(s.unfinished_work().as_deref(), Some("Leaving now stops 1 upload(s) not yet published."));
        s = s.reduce(Action::DownloadStarted { file: FileId([7; 32]), now: 0.0 });
        s = s.reduce(Action::UploadPublished { id: 1, file: FileId([8; 32]) });
        assert_eq!(s.unfinished_work(), None, "published; a download resumes after a reload");
        s = s.reduce(Action::UploadStarted { id: 2, name: "b".into(), size: 10, chunks_total: 1, now: 2.0 });
        s = s.reduce(Action::UploadFailed { id: 2, error: "quota".into() });
        assert_eq!(s.unfinished_work(), None, "a failed upload has nothing left to lose");
    }

    #[test]
    fn the_status_line_follows_the_tracker_node_across_a_failover() {
        let mut s = Rc::new(AppState::default());
        s = s.reduce(Action::TrackerNode { url: "ws://a:8080/ws".into(), nodes: 3 });
        s = s.reduce(Action::Conn(ConnStatus::Disconnected { retry_ms: 500 }));
        assert_eq!(s.tracker.as_ref().map(|t| t.url.as_str()), Some("ws://a:8080/ws"), "the last node until another");
        s = s.reduce(Action::TrackerNode { url: "ws://b:8081/ws".into(), nodes: 3 });
        assert_eq!(s.tracker, Some(TrackerNodeView { url: "ws://b:8081/ws".into(), nodes: 3 }));
    }

    #[test]
    fn the_first_chunk_time_is_kept_once_known() {
        let file = FileId([7; 32]);
        let mut s = Rc::new(AppState::default());
        s = s.reduce(Action::DownloadStarted { file, now: 0.0 });
        s = s.reduce(progress(file, 10.0, None));
        assert_eq!(s.downloads[0].first_chunk_ms, None);
        s = s.reduce(progress(file, 20.0, Some(180.0)));
        s = s.reduce(progress(file, 30.0, None));
        assert_eq!(s.downloads[0].first_chunk_ms, Some(180.0));
        // A new download of it (after this one ended) starts without one.
        s = s.reduce(Action::DownloadCancelled { file });
        s = s.reduce(Action::DownloadStarted { file, now: 40.0 });
        assert_eq!(s.downloads.len(), 1);
        assert_eq!(s.downloads[0].first_chunk_ms, None);
    }

    #[test]
    fn downloads_run_side_by_side_each_with_its_own_progress() {
        let (a, b) = (FileId([1; 32]), FileId([2; 32]));
        let mut s = Rc::new(AppState::default());
        s = s.reduce(Action::DownloadStarted { file: a, now: 0.0 });
        s = s.reduce(Action::DownloadStarted { file: b, now: 1.0 });
        s = s.reduce(progress(a, 5.0, None));
        s = s.reduce(Action::DownloadDone { file: b, url: "blob:b".into(), now: 6.0 });
        assert_eq!(s.downloads.len(), 2);
        assert_eq!(s.downloads[0].chunks_done, 1);
        assert_eq!(s.downloads[0].phase, DownloadPhase::Locating);
        assert_eq!(s.downloads[1].phase, DownloadPhase::Done { url: "blob:b".into() });
        assert_eq!(s.newest_download().map(|d| d.file), Some(b));
    }

    #[test]
    fn the_same_file_twice_is_one_download() {
        let a = FileId([1; 32]);
        let mut s = Rc::new(AppState::default());
        s = s.reduce(Action::DownloadStarted { file: a, now: 0.0 });
        s = s.reduce(progress(a, 5.0, None));
        let again = s.clone().reduce(Action::DownloadStarted { file: a, now: 9.0 });
        assert!(Rc::ptr_eq(&s, &again), "a running download is not restarted");
        // A finished one stays listed with its link; starting it again starts over.
        s = s.reduce(Action::DownloadDone { file: a, url: "blob:a".into(), now: 10.0 });
        assert_eq!(s.downloads[0].phase.key(), "done");
        s = s.reduce(Action::DownloadStarted { file: a, now: 11.0 });
        assert_eq!(s.downloads.len(), 1);
        assert_eq!(s.downloads[0].phase, DownloadPhase::Locating);
    }

    #[test]
    fn a_cancelled_download_ignores_late_updates() {
        let a = FileId([1; 32]);
        let mut s = Rc::new(AppState::default());
        s = s.reduce(Action::DownloadStarted { file: a, now: 0.0 });
        s = s.reduce(Action::DownloadCancelled { file: a });
        s = s.reduce(progress(a, 5.0, None));
        s = s.reduce(Action::DownloadFailed { file: a, error: "late".into() });
        assert_eq!(s.downloads[0].phase, DownloadPhase::Cancelled);
        assert_eq!(s.downloads[0].chunks_done, 0);
        assert!(!s.downloads[0].phase.running());
    }

    #[test]
    fn a_bad_input_is_an_error_until_the_next_download() {
        let mut s = Rc::new(AppState::default());
        s = s.reduce(Action::DownloadInputError("not a file id".into()));
        assert_eq!(s.download_error.as_deref(), Some("not a file id"));
        assert!(s.downloads.is_empty());
        s = s.reduce(Action::DownloadStarted { file: FileId([3; 32]), now: 0.0 });
        assert_eq!(s.download_error, None);
    }

    #[test]
    fn the_default_offer_is_modest() {
        assert_eq!(default_offer(Some(10 << 30)), 1 << 30);
        assert_eq!(default_offer(Some(100 << 30)), 2 << 30);
        assert_eq!(default_offer(None), DEFAULT_CAPACITY);
    }

    #[test]
    fn offers_are_typed_in_mib() {
        assert_eq!(parse_mib(" 64 "), Ok(64 << 20));
        assert_eq!(parse_mib("0.5"), Ok(512 << 10));
        assert_eq!(parse_mib("0"), Ok(0));
        assert!(parse_mib("-1").is_err());
        assert!(parse_mib("lots").is_err());
        assert!(parse_mib("NaN").is_err());
        assert!(parse_mib("1e30").is_err());
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
