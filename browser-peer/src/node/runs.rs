//! Runs: uploads (chunk, hash, store, publish), downloads and replication orders, driven by
//! the sans-IO download scheduler in `crate::transfer`.

use super::*;

impl Node {
    // ----- upload -----

    /// Chunks, hashes, stores and publishes a file, reading it one chunk at a time
    /// (`Blob.slice`), so a large file never sits whole in memory.
    pub fn upload(&self, file: File) {
        let Some(node) = self.weak.upgrade() else {
            return;
        };
        spawn_local(async move {
            let size = file.size() as u64;
            let name = file.name();
            let mime =
                Some(file.type_()).filter(|t| !t.is_empty()).unwrap_or_else(|| "application/octet-stream".into());
            let total = size.div_ceil(CHUNK_SIZE as u64) as usize;
            let id = {
                let mut st = node.state.borrow_mut();
                st.next_upload += 1;
                st.next_upload - 1
            };
            let started = js_sys::Date::now();
            node.dispatch(Action::UploadStarted { id, name: name.clone(), size, chunks_total: total, now: started });
            let mut builder = ManifestBuilder::new(CHUNK_SIZE);
            let mut last_progress = 0.0;
            let store = node.state.borrow().store.clone();
            for i in 0..total {
                let start = i as u64 * CHUNK_SIZE as u64;
                let end = (start + CHUNK_SIZE as u64).min(size);
                let bytes = match read_slice(&file, start, end).await {
                    Ok(b) => b,
                    Err(e) => {
                        node.dispatch(Action::UploadFailed { id, error: format!("cannot read the file: {e}") });
                        return;
                    }
                };
                let chunk = builder.push(&bytes);
                store.put(chunk, &bytes);
                drop(bytes);
                if store.pending_bytes() > UPLOAD_PENDING_LIMIT {
                    store.flushed().await;
                }
                let now = js_sys::Date::now();
                if now - last_progress > PROGRESS_MS || i + 1 == total {
                    last_progress = now;
                    node.dispatch(Action::UploadProgress { id, chunks_done: i + 1, bytes_done: end, now });
                }
            }
            store.flushed().await;
            let manifest = builder.finish();
            // Every chunk must really be stored before the swarm is told.
            let missing = manifest.chunks.iter().filter(|c| !store.has(c)).count();
            if missing > 0 {
                node.dispatch(Action::UploadFailed {
                    id,
                    error: format!("{missing} chunk(s) could not be stored (see the storage warning)"),
                });
                return;
            }
            let now = js_sys::Date::now();
            node.dispatch(Action::UploadProgress { id, chunks_done: total, bytes_done: size, now });
            let mut ids = manifest.chunks.clone();
            ids.sort();
            ids.dedup();
            {
                let mut st = node.state.borrow_mut();
                node.send(&st, &ClientMsg::Have { chunks: ids, full: false });
                let meta = FileMeta { name, mime };
                let (m, me) = (manifest.clone(), meta.clone());
                node.request(&mut st, Pending::Publish { upload: id, manifest, meta }, |req| ClientMsg::Publish {
                    req,
                    manifest: m,
                    meta: me,
                });
            }
            node.report_storage();
            node.push_stats();
            node.refresh_estimate(false).await;
        });
    }

    // ----- download -----

    /// Starts downloading the file with this id (64 hex digits).
    pub fn download(&self, id: &str) {
        let file: FileId = match id.trim().parse() {
            Ok(f) => f,
            Err(_) => {
                self.dispatch(Action::DownloadFailed { file: None, error: "not a file id (64 hex digits)".into() });
                return;
            }
        };
        let mut st = self.state.borrow_mut();
        if st.file_runs.contains_key(&file)
            || st.pending.values().any(|(p, _)| matches!(p, Pending::Locate { file: f } if *f == file))
        {
            return; // already running
        }
        if let Some(url) = st.object_url.take() {
            let _ = Url::revoke_object_url(&url);
        }
        self.request(&mut st, Pending::Locate { file }, |req| ClientMsg::Locate { req, file });
        drop(st);
        self.dispatch(Action::DownloadStarted { file, now: js_sys::Date::now() });
    }

    pub(super) fn start_file_run(
        &self,
        file: FileId,
        meta: FileMeta,
        manifest: Manifest,
        peers: Vec<PeerId>,
        holders: Vec<Vec<u32>>,
    ) {
        let mut st = self.state.borrow_mut();
        let dl = {
            let store = st.store.clone();
            Download::new(file, manifest, peers, holders, st.me.as_ref(), |c| store.has(c))
        };
        let mut dl = match dl {
            Ok(dl) => dl,
            Err(e) => {
                drop(st);
                self.fail_download(file, e.to_string());
                return;
            }
        };
        self.dispatch(Action::DownloadLocated {
            file,
            name: meta.name.clone(),
            size: dl.manifest().size,
            chunks_total: dl.total(),
            cells: Rc::new(dl.cells()),
        });
        let run = st.next_run;
        st.next_run += 1;
        let mut steps = dl.tick(js_sys::Date::now());
        steps.extend(dl.start());
        let located = js_sys::Date::now();
        st.runs.insert(
            run,
            Run { dl, kind: RunKind::File { file, meta }, last_progress: 0.0, located, first_chunk: None },
        );
        st.file_runs.insert(file, run);
        self.apply_steps(&mut st, run, steps);
    }

    /// Takes a replication order: fetch one chunk from a source, verify, store, announce.
    pub(super) fn start_order(&self, order: u64, chunk: ChunkId, size: u32, sources: Vec<PeerId>) {
        let mut st = self.state.borrow_mut();
        if st.store.has(&chunk) {
            self.send(&st, &ClientMsg::Have { chunks: vec![chunk], full: false });
            self.send(&st, &ClientMsg::OrderDone { order });
            return;
        }
        if st.store.bytes() + size as u64 > st.capacity {
            let reason = format!("no room: {} of {} bytes used", st.store.bytes(), st.capacity);
            self.send(&st, &ClientMsg::OrderFailed { order, reason });
            return;
        }
        let downloading =
            st.runs.values().any(|r| matches!(r.kind, RunKind::File { .. }) && r.dl.manifest().chunks.contains(&chunk));
        if downloading {
            st.waiting_orders.entry(chunk).or_default().push(order);
            return;
        }
        let manifest = Manifest { size: size as u64, chunk_size: size.max(1), chunks: vec![chunk] };
        let holders = vec![(0..sources.len() as u32).collect()];
        let dl = Download::new(manifest.file_id(), manifest, sources, holders, st.me.as_ref(), |_| false);
        let mut dl = match dl {
            Ok(dl) => dl,
            Err(e) => {
                self.send(&st, &ClientMsg::OrderFailed { order, reason: e.to_string() });
                return;
            }
        };
        dl.set_max_peers(1);
        dl.set_endgame(false);
        let run = st.next_run;
        st.next_run += 1;
        let mut steps = dl.tick(js_sys::Date::now());
        steps.extend(dl.start());
        let located = js_sys::Date::now();
        st.runs.insert(run, Run { dl, kind: RunKind::Order { order }, last_progress: 0.0, located, first_chunk: None });
        self.apply_steps(&mut st, run, steps);
    }

    /// Carries out what a run's scheduler decided.
    pub(super) fn apply_steps(&self, st: &mut State, run: u64, steps: Vec<Step<JsChunk>>) {
        let mut stored_any = false;
        for step in steps {
            match step {
                Step::Connect { slot } => self.connect(st, run, slot),
                Step::Disconnect { slot } => {
                    let Some(peer) = st.runs.get(&run).map(|r| r.dl.peer(slot).clone()) else { continue };
                    gloo::console::warn!(format!("peer {} stalled; dropping its link", peer.short()));
                    let others: Vec<(u64, usize)> = st
                        .out
                        .get(&peer)
                        .map(|l| l.users.iter().copied().filter(|u| u.0 != run).collect())
                        .unwrap_or_default();
                    self.close_link(st, &peer);
                    self.runs_lose(st, others);
                }
                Step::Send { slot, bytes } => {
                    let Ok(PeerMsg::Request { req, chunk }) = PeerMsg::decode(&bytes) else { continue };
                    let Some(peer) = st.runs.get(&run).map(|r| r.dl.peer(slot).clone()) else { continue };
                    let w = st.next_wire;
                    st.next_wire = st.next_wire.wrapping_add(1).max(1);
                    let on_channel = self.send_on_link(st, &peer, PeerMsg::Request { req: w, chunk }.encode());
                    st.wire.insert(w, WireReq { run, slot, req, chunk, on_channel });
                }
                Step::Verify { slot, index, chunk, bytes } => {
                    // The store checks the hash (in its worker) and keeps the chunk if it matches.
                    let Some(node) = self.weak.upgrade() else { continue };
                    let store = st.store.clone();
                    spawn_local(async move {
                        let checked = store.put_checked(chunk, bytes.clone()).await;
                        let mut st = node.state.borrow_mut();
                        let Some(r) = st.runs.get_mut(&run) else { return };
                        let steps = match checked {
                            Ok(actual) => r.dl.verified(slot, index, bytes, actual),
                            Err(e) => {
                                gloo::console::warn!(format!("chunk {index}: {e}"));
                                r.dl.unverified(slot, index)
                            }
                        };
                        node.apply_steps(&mut st, run, steps);
                    });
                }
                Step::Stored { chunk, .. } => {
                    if let Some(r) = st.runs.get_mut(&run) {
                        r.first_chunk.get_or_insert_with(js_sys::Date::now);
                    }
                    // Checked and kept by `put_checked` (unless removed again meanwhile).
                    if st.store.has(&chunk) {
                        st.have_batch.push(chunk);
                    }
                    if let Some(orders) = st.waiting_orders.remove(&chunk) {
                        self.flush_have(st);
                        for order in orders {
                            self.send(st, &ClientMsg::OrderDone { order });
                        }
                    }
                    stored_any = true;
                }
                Step::Rejected { slot, index, reason } => {
                    gloo::console::warn!(format!("chunk {index} from peer slot {slot} refused: {reason}"));
                }
                Step::BadSource { slot, chunk } => {
                    if let Some(peer) = st.runs.get(&run).map(|r| r.dl.peer(slot).clone()) {
                        self.send(st, &ClientMsg::BadSource { peer, chunk });
                    }
                }
                Step::Complete => {
                    self.progress(st, run, true);
                    self.finish_run(st, run);
                    return;
                }
                Step::Failed(e) => {
                    let kind = self.end_run(st, run);
                    match kind {
                        Some(RunKind::File { file, .. }) => {
                            self.dispatch(Action::DownloadFailed { file: Some(file), error: e.to_string() })
                        }
                        Some(RunKind::Order { order }) => {
                            self.send(st, &ClientMsg::OrderFailed { order, reason: e.to_string() })
                        }
                        None => {}
                    }
                    return;
                }
            }
        }
        let _ = stored_any;
        self.progress(st, run, false);
    }

    /// Shows a file run's progress (at most every [`PROGRESS_MS`] unless `force`).
    pub(super) fn progress(&self, st: &mut State, run: u64, force: bool) {
        let now = js_sys::Date::now();
        let Some(r) = st.runs.get_mut(&run) else { return };
        let RunKind::File { file, .. } = &r.kind else { return };
        if !force && now - r.last_progress < PROGRESS_MS {
            return;
        }
        r.last_progress = now;
        let sources: Vec<SourceView> =
            r.dl.peers()
                .iter()
                .zip(r.dl.delivered())
                .map(|(p, b)| SourceView {
                    peer: p.clone(),
                    bytes: *b,
                    via: match st.out.get(p) {
                        Some(l) if !l.ready() => "connecting",
                        Some(l) => l.path().map(crate::paths::label).unwrap_or("direct"),
                        None => "",
                    },
                })
                .collect();
        self.dispatch(Action::DownloadProgress {
            file: *file,
            chunks_done: r.dl.done(),
            bytes_done: r.dl.bytes_done(),
            peers: r.dl.active_peers(),
            now,
            cells: Rc::new(r.dl.cells()),
            sources,
            first_chunk_ms: r.first_chunk.map(|t| t - r.located),
        });
    }
}
