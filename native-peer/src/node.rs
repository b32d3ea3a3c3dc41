//! A running native peer: its tracker connection, its chunk store, and its WebRTC links.
//! Incoming offers become serving links; downloads open links of their own (see
//! [`crate::download`]). Signalling for every link is routed by (peer, conn).

use crate::rtc::{Link, LinkEvent, SignalHandle};
use crate::store::{ChunkStore, StoredFile};
use crate::tracker_client::{IncomingSignal, TrackerClient};
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use swarm_core::chunk_proto::{frames, PeerMsg, DEFAULT_FRAME_PAYLOAD};
use swarm_core::wire::FileMeta;
use swarm_core::{ClientMsg, FileId, ManifestBuilder, PeerId, ServerMsg, Signal, CHUNK_SIZE};
use tokio::sync::mpsc;

/// Bytes this peer moved over data channels (tests read these to prove the path).
#[derive(Debug, Default)]
pub struct DataStats {
    pub received: AtomicU64,
    pub sent: AtomicU64,
}

pub struct Node {
    pub tracker: Arc<TrackerClient>,
    pub store: ChunkStore,
    pub rtc_ip: IpAddr,
    routes: Mutex<HashMap<(PeerId, u64), SignalHandle>>,
    pub stats: DataStats,
}

impl Node {
    /// Connects to the tracker, announces the whole inventory and starts answering offers.
    pub async fn start(tracker_url: &str, data_dir: &Path, rtc_ip: IpAddr) -> anyhow::Result<Arc<Self>> {
        let store = ChunkStore::open(data_dir)?;
        let secret = crate::identity::load_or_create_secret(data_dir)?;
        let (tracker, signals) = TrackerClient::connect(tracker_url, &secret).await?;
        let inventory = store.list();
        tracing::info!(peer = %tracker.peer_id, chunks = inventory.len(), "joined the swarm");
        tracker.send(ClientMsg::Have { chunks: inventory, full: true });
        let node = Arc::new(Self { tracker, store, rtc_ip, routes: Mutex::default(), stats: DataStats::default() });
        tokio::spawn(node.clone().route_signals(signals));
        Ok(node)
    }

    pub fn peer_id(&self) -> &PeerId {
        &self.tracker.peer_id
    }

    async fn route_signals(self: Arc<Self>, mut signals: mpsc::UnboundedReceiver<IncomingSignal>) {
        while let Some((from, conn, signal)) = signals.recv().await {
            if let Signal::Offer { sdp } = &signal {
                match Link::answer(self.rtc_ip, sdp).await {
                    Ok(link) => {
                        self.routes.lock().unwrap().insert((from.clone(), conn), link.signal_handle());
                        tokio::spawn(self.clone().serve_link(from, conn, link));
                    }
                    Err(e) => {
                        tracing::warn!(peer = %from, "cannot answer offer: {e:#}");
                        let close = Signal::Close { reason: format!("{e:#}") };
                        self.tracker.send(ClientMsg::Signal { to: from, conn, signal: close });
                    }
                }
                continue;
            }
            let route = self.routes.lock().unwrap().get(&(from.clone(), conn)).cloned();
            match route {
                Some(r) => r.deliver(signal),
                None => tracing::debug!(peer = %from, conn, "signal for an unknown link"),
            }
        }
    }

    /// Carries a link's own signalling to the remote peer.
    pub fn forward_signal(&self, to: &PeerId, conn: u64, s: Signal) {
        self.tracker.send(ClientMsg::Signal { to: to.clone(), conn, signal: s });
    }

    /// Opens a link to `to` as the offerer; returns it with its connection number.
    pub async fn open_link(&self, to: &PeerId) -> anyhow::Result<(Link, u64)> {
        let link = Link::offer(self.rtc_ip).await?;
        let conn = rand::random::<u64>() >> 12; // stays exact in JavaScript numbers
        self.routes.lock().unwrap().insert((to.clone(), conn), link.signal_handle());
        Ok((link, conn))
    }

    pub fn close_route(&self, to: &PeerId, conn: u64) {
        self.routes.lock().unwrap().remove(&(to.clone(), conn));
    }

    /// Serves chunk requests arriving on an answered link until it closes.
    async fn serve_link(self: Arc<Self>, from: PeerId, conn: u64, mut link: Link) {
        while let Some(ev) = link.events.recv().await {
            match ev {
                LinkEvent::Signal(s) => self.forward_signal(&from, conn, s),
                LinkEvent::Open => tracing::debug!(peer = %from.short(), "serving link open"),
                LinkEvent::Message(bytes) => {
                    self.stats.received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    match PeerMsg::decode(&bytes) {
                        Ok(PeerMsg::Request { req, chunk }) => {
                            let store = self.store.clone();
                            let data = tokio::task::spawn_blocking(move || store.get(&chunk)).await;
                            let msgs: Vec<Vec<u8>> = match data {
                                Ok(Ok(Some(b))) => frames(req, &b, DEFAULT_FRAME_PAYLOAD).collect(),
                                _ => vec![PeerMsg::Missing { req }.encode()],
                            };
                            for m in msgs {
                                self.stats.sent.fetch_add(m.len() as u64, Ordering::Relaxed);
                                if link.sender.send(m).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Ok(other) => {
                            tracing::debug!(peer = %from.short(), ?other, "unexpected message on a serving link")
                        }
                        Err(e) => tracing::warn!(peer = %from.short(), "bad message: {e}"),
                    }
                }
                LinkEvent::Closed(reason) => {
                    tracing::debug!(peer = %from.short(), %reason, "serving link closed");
                    break;
                }
            }
        }
        self.close_route(&from, conn);
    }

    /// Chunks, hashes and stores a file (streaming), then announces and publishes it.
    pub async fn put(&self, path: &Path) -> anyhow::Result<StoredFile> {
        let store = self.store.clone();
        let p = path.to_owned();
        let manifest = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut f = std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
            if !f.metadata()?.is_file() {
                bail!("{} is not a regular file", p.display());
            }
            let mut builder = ManifestBuilder::new(CHUNK_SIZE);
            let mut buf = vec![0u8; CHUNK_SIZE as usize];
            loop {
                let n = read_full(&mut f, &mut buf)?;
                if n == 0 {
                    break;
                }
                let id = builder.push(&buf[..n]);
                store.put(&id, &buf[..n])?;
                if n < buf.len() {
                    break;
                }
            }
            Ok(builder.finish())
        })
        .await??;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let mime = mime_guess::from_path(&name).first_or_octet_stream().to_string();
        let meta = FileMeta { name, mime };
        self.tracker.send(ClientMsg::Have { chunks: manifest.chunks.clone(), full: false });
        let answer = self
            .tracker
            .request(|req| ClientMsg::Publish { req, manifest: manifest.clone(), meta: meta.clone() })
            .await?;
        let ServerMsg::Published { file, .. } = answer else { bail!("unexpected answer to publish: {answer:?}") };
        anyhow::ensure!(file == manifest.file_id(), "tracker computed another file id");
        let stored = StoredFile { manifest, meta };
        self.store.put_file(&stored)?;
        Ok(stored)
    }

    /// Resolves an id or a name to a file id (a name must match exactly one file).
    pub async fn resolve(&self, id_or_name: &str) -> anyhow::Result<FileId> {
        if let Ok(id) = id_or_name.parse::<FileId>() {
            return Ok(id);
        }
        let answer =
            self.tracker.request(|req| ClientMsg::Search { req, query: id_or_name.into(), limit: 100 }).await?;
        let ServerMsg::SearchResults { files, .. } = answer else { bail!("unexpected answer to search") };
        let exact: Vec<_> = files.iter().filter(|f| f.name == id_or_name).collect();
        match exact.as_slice() {
            [one] => Ok(one.id),
            [] => bail!(crate::cli::NotFound(format!("no file named {id_or_name:?} in the swarm"))),
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
