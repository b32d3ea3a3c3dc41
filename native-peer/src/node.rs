//! A running native peer, as its callers see it: a handle to the driver task
//! ([`crate::driver`]) that runs the peer core, plus the chunk store and byte counters.
//! Commands (download, fetch a chunk for the gateway, ask the tracker, leave) go to the
//! driver as messages; answers come back on oneshot channels.

use crate::cli::PeerError;
use crate::driver::{Cmd, DownloadOutcome, Driver, FetchFailure, Input, Views, Waiter};
pub use crate::driver::{DataStats, NodeConfig};
use crate::rtc::RtcEnv;
use crate::store::{ChunkStore, StoreError, StoredFile};
use crate::tracker_client::{RequestError, TrackerClient, TrackerError, TrackerTls};
use anyhow::{bail, Context};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_core::envelope::{self, FileKey, Kdf, PlainMeta, SealedMeta};
use swarm_core::peer::proof::{nonce_items, NONCES_PER_CHUNK};
use swarm_core::peer::trackers::TrackerList;
use swarm_core::wire::FileMeta;
use swarm_core::{ChunkId, ClientMsg, FileId, LinkPath, ManifestBuilder, PathReport, PeerId, ServerMsg, CHUNK_SIZE};
use tokio::sync::{mpsc, oneshot};

/// A file removed from the swarm: its id, and its name if this peer knew it.
#[derive(Debug, Clone)]
pub struct StoredFileSummary {
    pub id: FileId,
    pub name: Option<String>,
}

pub struct Node {
    pub store: ChunkStore,
    pub config: NodeConfig,
    pub stats: Arc<DataStats>,
    /// Gets not finished yet ([`crate::pending`]).
    pub pending: crate::pending::PendingGets,
    peer_id: PeerId,
    inputs: mpsc::UnboundedSender<Input>,
    views: Arc<Mutex<Views>>,
    tracker: Arc<TrackerClient>,
}

impl Node {
    /// Connects to the tracker, announces the whole inventory and starts the driver.
    pub async fn start(config: NodeConfig, data_dir: &Path) -> anyhow::Result<Arc<Self>> {
        let store = ChunkStore::open_with_capacity(data_dir, config.max_storage)?;
        let identity = crate::identity::load_or_create(data_dir)?;
        // The swarm this session's copies are taken for: the first configured tracker's origin
        // (every URL configured together, and the nodes a welcome names, are one swarm).
        store.set_swarm(
            swarm_core::identity::origin_of(&config.tracker_url).unwrap_or_else(|_| config.tracker_url.clone()),
        );
        // The tracker client says hello itself; the driver keeps the key for what the core asks.
        let keys = identity.keys.clone();
        let trackers = TrackerList::new(config.tracker_urls()).map_err(|e| anyhow::anyhow!("--tracker: {e}"))?;
        // Made up front when a configured tracker needs it, so a bad CA file is said at once.
        let tls = if config.tracker_urls().any(crate::tls::is_wss) {
            Some(crate::tls::client_config(config.tracker_ca.as_deref())?)
        } else {
            if let Some(ca) = &config.tracker_ca {
                tracing::warn!("--tracker-ca {} is not used: no tracker URL is wss://", ca.display());
            }
            None
        };
        let tls = TrackerTls { ca: config.tracker_ca.clone(), config: tls };
        let (tracker, incoming) = TrackerClient::connect(
            trackers,
            identity,
            config.migrate_identity,
            config.join_token.as_deref(),
            config.connect_attempts,
            tls,
        )
        .await
        .map_err(PeerError::from)?;
        let ifaces =
            crate::rtc::net::local_ifaces(config.rtc_ip, crate::rtc::net::tracker_on_loopback(&config.tracker_url));
        let env = Arc::new(Mutex::new(RtcEnv { ifaces, stun_servers: Vec::new() }));
        crate::driver::resolve_stun_servers(&tracker, &env).await;
        tracing::debug!(env = ?env.lock().unwrap(), "WebRTC candidates");
        let stats = Arc::new(DataStats::default());
        stats.connected.store(true, std::sync::atomic::Ordering::Relaxed);
        let views = Arc::new(Mutex::new(Views::default()));
        let peer_id = tracker.peer_id.clone();
        let chunks = store.list().len();
        let inputs = Driver::start(
            tracker.clone(),
            incoming,
            store.clone(),
            config.clone(),
            keys,
            stats.clone(),
            views.clone(),
            env,
        );
        let (corrupt_tx, mut corrupt_rx) = mpsc::unbounded_channel();
        store.notify_corrupt(corrupt_tx);
        let to_driver = inputs.clone();
        tokio::spawn(async move {
            while let Some(c) = corrupt_rx.recv().await {
                if to_driver.send(Input::Corrupt(vec![c])).is_err() {
                    break;
                }
            }
        });
        tracing::info!(peer = %peer_id, chunks, tracker = tracker.current_url(), "joined the swarm");
        let pending = crate::pending::PendingGets::new(data_dir);
        Ok(Arc::new(Self { store, config, stats, pending, peer_id, inputs, views, tracker }))
    }

    /// Changes the upload limit of this running peer (bytes per second; `None`: none).
    pub fn set_upload_limit(&self, rate: Option<u64>) {
        self.cmd(Cmd::UploadLimit(rate));
    }

    /// The upload limit in force, and what was sent in the last second (bytes per second).
    pub fn upload(&self) -> (Option<u64>, u64) {
        let limit = self.stats.upload_limit.load(std::sync::atomic::Ordering::Relaxed);
        ((limit != u64::MAX).then_some(limit), self.stats.upload_rate.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn peer_id(&self) -> &PeerId {
        &self.peer_id
    }

    fn cmd(&self, cmd: Cmd) {
        let _ = self.inputs.send(Input::Cmd(cmd));
    }

    /// Sends a request to the tracker and waits for its answer (sent again after a
    /// reconnect); a tracker error becomes `Err(RequestError::Tracker)`.
    pub async fn request(
        &self,
        make: impl FnOnce(u32) -> ClientMsg + Send + 'static,
    ) -> Result<ServerMsg, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.cmd(Cmd::Request { msg: Box::new(make), reply });
        let answer = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .map_err(|_| RequestError::Timeout)?
            .map_err(|_| RequestError::Lost)?;
        match answer {
            ServerMsg::Error { code, message, .. } => Err(TrackerError { code, message }.into()),
            m => Ok(m),
        }
    }

    /// Downloads `file` into the store (what is stored already is not fetched again);
    /// `progress` gets (bytes of the file stored, file size, bytes fetched).
    pub async fn download(&self, file: FileId, progress: crate::driver::Progress) -> anyhow::Result<StoredFile> {
        let (done, rx) = oneshot::channel();
        self.cmd(Cmd::Download { file, waiter: Waiter { progress: Some(progress), done, fetched: 0 } });
        match rx.await.context("the peer stopped")? {
            Ok(DownloadOutcome::File { manifest, meta }) => {
                let stored = StoredFile { manifest, meta };
                self.store.put_file(&stored).map_err(PeerError::from)?;
                Ok(stored)
            }
            Ok(DownloadOutcome::Chunk(_)) => bail!("unexpected answer to a download"),
            Err(FetchFailure::NoRoom(e)) => Err(PeerError::from(e).into()),
            Err(FetchFailure::Tracker(e)) => Err(PeerError::from(RequestError::from(e)).into()),
            Err(FetchFailure::Failed(e)) => bail!("{e}"),
        }
    }

    /// Fetches one chunk (`len` bytes) from one of `sources`, verified; kept in the store if
    /// there is room (the HTTP gateway serves a file even when this peer cannot keep it).
    pub async fn fetch_chunk_bytes(&self, chunk: ChunkId, len: u32, sources: Vec<PeerId>) -> anyhow::Result<Vec<u8>> {
        let (done, rx) = oneshot::channel();
        self.cmd(Cmd::FetchChunk { chunk, size: len, sources, waiter: Waiter { progress: None, done, fetched: 0 } });
        match rx.await.context("the peer stopped")? {
            Ok(DownloadOutcome::Chunk(b)) => Ok(b),
            Ok(DownloadOutcome::File { .. }) => bail!("unexpected answer to a chunk fetch"),
            Err(e) => bail!("{e}"),
        }
    }

    /// A reader reads `file` from byte `offset` on: a running download of it (e.g. a `get`
    /// through this peer) fetches the chunks from there first. Returns whether one runs.
    pub async fn set_playhead(&self, file: FileId, offset: u64) -> bool {
        let (running, rx) = oneshot::channel();
        self.cmd(Cmd::Playhead { file, offset, running });
        rx.await.unwrap_or(false)
    }

    /// This node's links by path: open now, and bytes received since start.
    pub fn path_report(&self) -> PathReport {
        self.views.lock().unwrap().paths.clone()
    }

    /// Links open now: (peer, path, whether this node fetches over it or serves).
    pub fn links(&self) -> Vec<(PeerId, LinkPath, &'static str)> {
        let v = self.views.lock().unwrap();
        v.links.iter().filter_map(|(p, path, role)| path.map(|path| (p.clone(), path, *role))).collect()
    }

    /// Sends the announcements still batched and waits until the tracker has taken every
    /// message queued so far (a short-lived peer calls this before it exits).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.cmd(Cmd::Flush(tx));
        let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
    }

    /// Stops cleanly: what is batched goes out, then the tracker session closes, so the
    /// tracker sees this peer go at once (its chunks' grace period starts now, not after the
    /// idle timeout). Waits a few seconds at most.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        self.cmd(Cmd::Close(tx));
        let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
    }

    /// The tracker node of the current (or latest) session.
    pub fn tracker_url(&self) -> String {
        self.tracker.current_url()
    }

    /// Whether a tracker session is open now.
    pub fn connected(&self) -> bool {
        self.stats.connected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The name and type of a file in the swarm (asks the tracker).
    pub async fn describe(&self, file: FileId) -> anyhow::Result<FileMeta> {
        Ok(self.locate(file).await?.0)
    }

    /// The file's meta and manifest, as the tracker has them (the manifest checked against
    /// the id: its chunk ids are the ones to trust).
    pub async fn locate(&self, file: FileId) -> anyhow::Result<(FileMeta, swarm_core::Manifest)> {
        let answer = self.request(move |req| ClientMsg::Locate { req, file }).await.map_err(PeerError::from)?;
        let ServerMsg::Located { meta, manifest, .. } = answer else {
            bail!("unexpected answer to locate: {answer:?}")
        };
        anyhow::ensure!(manifest.file_id() == file, "the tracker answered with another file");
        Ok((meta, manifest))
    }

    /// Reads every stored chunk, drops the corrupt ones and tells the tracker.
    pub async fn scrub(&self) -> anyhow::Result<crate::store::ScrubReport> {
        let store = self.store.clone();
        let report = tokio::task::spawn_blocking(move || store.scrub()).await?;
        if report.dropped.is_empty() {
            tracing::debug!(checked = report.checked, "scrub: every chunk is sound");
        } else {
            tracing::warn!(checked = report.checked, dropped = report.dropped.len(), "scrub dropped corrupt chunks");
        }
        Ok(report)
    }

    /// Asks the tracker to hand this peer's chunks to others and waits until it has.
    /// Returns the number of chunks no staying peer holds.
    pub async fn leave(&self, timeout: Duration) -> anyhow::Result<u32> {
        let (tx, rx) = oneshot::channel();
        self.cmd(Cmd::Leave(tx));
        let stranded = tokio::time::timeout(timeout, rx)
            .await
            .context("the swarm did not take over this peer's chunks in time")?
            .context("the peer stopped")?;
        Ok(stranded)
    }

    /// Chunks, hashes and stores a file (streaming), then announces and publishes it, and
    /// gives the tracker two challenges per chunk (computed while chunking) so that the
    /// file's replicas can be verified at once.
    pub async fn put(&self, path: &Path) -> anyhow::Result<StoredFile> {
        self.put_with_progress(path, |_, _| {}).await
    }

    /// [`Node::put`], calling `progress(bytes stored, file size)` as it goes.
    pub async fn put_with_progress(
        &self,
        path: &Path,
        progress: impl Fn(u64, u64) + Send + 'static,
    ) -> anyhow::Result<StoredFile> {
        self.put_sealed(path, None, progress).await
    }

    /// [`Node::put_with_progress`]; with `private` (see [`crate::private`]) every chunk is
    /// encrypted before it is hashed, and the name, type and size travel sealed.
    pub async fn put_sealed(
        &self,
        path: &Path,
        private: Option<(FileKey, Kdf)>,
        progress: impl Fn(u64, u64) + Send + 'static,
    ) -> anyhow::Result<StoredFile> {
        let store = self.store.clone();
        let p = path.to_owned();
        let nonces = !self.config.no_nonces;
        let key = private.as_ref().map(|(k, _)| k.clone());
        let (manifest, items, size) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut f = std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
            let meta = f.metadata()?;
            if !meta.is_file() {
                bail!("{} is not a regular file", p.display());
            }
            let size = meta.len();
            // Refuse at once what cannot fit, rather than filling the store and failing late.
            let need = if key.is_some() { envelope::cipher_size(size) } else { size };
            if !store.has_room(need) {
                bail!(PeerError::from(StoreError::NoRoom { need, used: store.used(), capacity: store.capacity }));
            }
            let mut done = 0u64;
            progress(0, size);
            let mut builder = ManifestBuilder::new(CHUNK_SIZE);
            let cipher = key.map(|k| envelope::FileCipher::new(&k, size));
            let plain_len = if cipher.is_some() { envelope::PLAIN_CHUNK } else { CHUNK_SIZE as usize };
            let mut buf = vec![0u8; plain_len];
            let mut items = Vec::new();
            for index in 0u64.. {
                buf.resize(plain_len, 0);
                let n = read_full(&mut f, &mut buf)?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                if let Some(c) = &cipher {
                    c.seal_chunk(index, &mut buf);
                }
                let n = buf.len();
                let id = builder.push(&buf[..n]);
                if nonces {
                    let randoms: [[u8; 16]; NONCES_PER_CHUNK] = std::array::from_fn(|_| rand::random());
                    items.extend(nonce_items(id, &buf[..n], &randoms));
                }
                store.put(&id, &buf[..n]).map_err(PeerError::from)?;
                done = (done + plain_len as u64).min(size);
                progress(done, size);
                if n < CHUNK_SIZE as usize {
                    break;
                }
            }
            Ok((builder.finish(), items, size))
        })
        .await??;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let mime = mime_guess::from_path(&name).first_or_octet_stream().to_string();
        let meta = match &private {
            None => FileMeta::public(name, mime),
            Some((key, kdf)) => FileMeta::private(SealedMeta::seal(key, *kdf, &PlainMeta { name, mime, size })),
        };
        self.cmd(Cmd::Announce(manifest.chunks.clone()));
        let (m, md) = (manifest.clone(), meta.clone());
        let answer = self
            .request(move |req| ClientMsg::Publish { req, manifest: m, meta: md })
            .await
            .map_err(PeerError::from)?;
        let ServerMsg::Published { file, .. } = answer else { bail!("unexpected answer to publish: {answer:?}") };
        anyhow::ensure!(file == manifest.file_id(), "tracker computed another file id");
        // Announced again now that they are a file's: before the publish they were claims of
        // chunks no file uses, of which the tracker keeps only so many per peer
        // (`--max-loose-claims`, 4096 by default: a 1 GiB file of 256 KiB chunks).
        self.cmd(Cmd::Announce(manifest.chunks.clone()));
        if !items.is_empty() {
            self.cmd(Cmd::Nonces { file, items });
        }
        let stored = StoredFile { manifest, meta };
        self.store.put_file(&stored).map_err(PeerError::from)?;
        Ok(stored)
    }

    /// Removes a file this peer published from the swarm's index (by id, or by the exact
    /// name of a file this peer keeps or the swarm lists). The tracker refuses unless this
    /// peer's identity published it. On success the driver forgets the local file record
    /// (so its chunks are no longer kept for this peer's user) before the tracker's trim of
    /// the file's chunks arrives; holders of replicas drop theirs on the same trim.
    pub async fn unpublish(&self, id_or_name: &str) -> anyhow::Result<StoredFileSummary> {
        let local = self.store.files();
        let file = match id_or_name.parse::<FileId>() {
            Ok(id) => id,
            Err(_) => {
                let mine: Vec<_> = local.iter().filter(|f| f.meta.name == id_or_name).collect();
                match mine.as_slice() {
                    [one] => one.manifest.file_id(),
                    [] => self.resolve(id_or_name).await?,
                    many => bail!(
                        "{} files here are named {id_or_name:?}; pick one by id: {}",
                        many.len(),
                        many.iter().map(|f| f.manifest.file_id().to_hex()).collect::<Vec<_>>().join(", ")
                    ),
                }
            }
        };
        let answer = self.request(move |req| ClientMsg::Unpublish { req, file }).await.map_err(PeerError::from)?;
        let ServerMsg::Unpublished { file: gone, .. } = answer else {
            bail!("unexpected answer to unpublish: {answer:?}")
        };
        anyhow::ensure!(gone == file, "tracker unpublished another file");
        let name = local.iter().find(|f| f.manifest.file_id() == file).map(|f| f.meta.name.clone());
        Ok(StoredFileSummary { id: file, name })
    }

    /// Resolves an id or a name to a file id (a name must match exactly one file).
    pub async fn resolve(&self, id_or_name: &str) -> anyhow::Result<FileId> {
        if let Ok(id) = id_or_name.parse::<FileId>() {
            return Ok(id);
        }
        let query = id_or_name.to_string();
        let answer =
            self.request(move |req| ClientMsg::Search { req, query, limit: 100 }).await.map_err(PeerError::from)?;
        let ServerMsg::SearchResults { files, .. } = answer else { bail!("unexpected answer to search") };
        let exact: Vec<_> = files.iter().filter(|f| f.name == id_or_name).collect();
        match exact.as_slice() {
            [one] => Ok(one.id),
            [] => bail!(PeerError::NotFound(format!("no file named {id_or_name:?} in the swarm"))),
            many => bail!(
                "{} files are named {id_or_name:?}; pick one by id: {}",
                many.len(),
                many.iter().map(|f| f.id.to_hex()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

fn read_full(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
