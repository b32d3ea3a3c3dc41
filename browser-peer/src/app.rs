//! The page: function components reading [`AppState`] and calling the node through
//! [`use_node`]; REST data comes through the hooks in [`crate::hooks`]. Every string that came
//! from the swarm (file names) is rendered as a text node or an attribute value, never as HTML.

use std::rc::Rc;

use swarm_core::wire::{FileSummary, LinkPath};
use swarm_core::{FileId, PeerId, PeerKind};
use web_sys::{DragEvent, HtmlInputElement};
use yew::prelude::*;

use crate::hooks::{use_file_detail, use_peers, use_search};
use crate::node::{share_link, use_node, Node, NodeHandle};
use crate::paths::label as path_label;
use crate::state::{
    AppState, ConnStatus, DownloadPhase, DownloadView, LinkView, OfferView, SourceView, Stats, StorageInfo,
    TrackerNodeView, TrimReport, UploadView,
};
use swarm_core::peer::CellState;

/// Colours of source peers in the chunk map and its legend.
const PALETTE: [&str; 8] = ["#6d5dfc", "#10b981", "#f59e0b", "#ec4899", "#0ea5e9", "#84cc16", "#f97316", "#a855f7"];

fn colour(slot: usize) -> &'static str {
    PALETTE[slot % PALETTE.len()]
}

/// The root: owns the state reducer and the node, provides the node as context.
#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(AppState::default);
    let node = {
        let dispatcher = state.dispatcher();
        use_state(move || NodeHandle(Node::start(Callback::from(move |a| dispatcher.dispatch(a)))))
    };
    // The browser asks before the tab closes or reloads while work would be lost.
    use_effect_with(state.unfinished_work(), |why| {
        let guard = why.clone().map(crate::leave::LeaveGuard::new);
        move || drop(guard)
    });
    html! {
        <ContextProvider<NodeHandle> context={(*node).clone()}>
            <div class="app">
                <header class="topbar">
                    <div class="brand">
                        <span class="logo" aria-hidden="true">{"◆"}</span>
                        <h1 class="title">{"Peer Pressure"}</h1>
                        <span class="tagline">{"a self-healing file swarm, in your tab"}</span>
                    </div>
                    <StatusBar conn={state.conn} tracker={state.tracker.clone()} peer_id={state.peer_id.clone()} stats={state.stats} />
                </header>
                if let Some(err) = &state.store_error {
                    <div id="store-error" class="banner error" role="alert">{err.clone()}</div>
                }
                <main class="panels">
                    <UploadPanel uploads={Rc::new(state.uploads.clone())} me={state.peer_id.clone()} />
                    <DownloadPanel downloads={Rc::new(state.downloads.clone())} error={state.download_error.clone()} />
                    <FilesPanel />
                    <SwarmPanel me={state.peer_id.clone()} stats={state.stats} storage={state.storage}
                        links={state.links.clone()} offer={state.offer} trim={state.trim} slot={state.slot}
                        upload_limit={state.upload_limit} />
                </main>
                <footer class="footer">
                    <span>{format!("Holding {} chunks ({}) in IndexedDB", state.stats.store_chunks, fmt_bytes(state.stats.store_bytes))}</span>
                    <span>{format!("{} open link(s) · relay ↓ {} ↑ {}", state.stats.connections,
                        fmt_bytes(state.stats.relay_received), fmt_bytes(state.stats.relay_sent))}</span>
                </footer>
            </div>
        </ContextProvider<NodeHandle>>
    }
}

#[derive(Properties, PartialEq)]
pub struct StatusBarProps {
    pub conn: ConnStatus,
    pub tracker: Option<TrackerNodeView>,
    pub peer_id: Option<PeerId>,
    pub stats: Stats,
}

/// Tracker connection (and the tracker node, in a cluster), this tab's peer id and the
/// data-channel byte counters.
#[function_component(StatusBar)]
pub fn status_bar(props: &StatusBarProps) -> Html {
    let label = match props.conn {
        ConnStatus::Connecting => "connecting…".to_string(),
        ConnStatus::Connected => "connected".to_string(),
        ConnStatus::Disconnected { retry_ms } => {
            format!("disconnected, reconnecting in {:.1} s", retry_ms as f64 / 1000.0)
        }
    };
    let key = props.conn.key();
    html! {
        <div class="status-bar">
            <span id="conn-status" class={classes!("conn", key)} data-state={key}>
                <span class="dot" aria-hidden="true"></span>{label}
            </span>
            if let Some(t) = &props.tracker {
                <span id="tracker-node" class="tracker-node" data-url={t.url.clone()}
                    data-nodes={t.nodes.to_string()}
                    title={format!("tracker node {} ({} known)", t.url, t.nodes)}>
                    {"via "}<code>{crate::failover::node_label(&t.url).to_string()}</code>
                </span>
            }
            if let Some(id) = &props.peer_id {
                <span id="peer-id" class="peer-id" data-peer-id={id.0.clone()} title={id.0.clone()}>
                    {"peer "}<code>{id.short().to_string()}</code>
                </span>
            }
            <span id="dc-stats" class="dc-stats"
                data-received={props.stats.received.to_string()}
                data-sent={props.stats.sent.to_string()}
                title="bytes over data channels">
                {format!("↓ {}  ↑ {}", fmt_bytes(props.stats.received), fmt_bytes(props.stats.sent))}
            </span>
        </div>
    }
}

// ----- upload -----

#[derive(Properties, PartialEq)]
pub struct UploadPanelProps {
    pub uploads: Rc<Vec<UploadView>>,
    pub me: Option<PeerId>,
}

/// Picks or takes dropped files, shows hashing progress, the published ids and where the
/// swarm placed the chunks.
#[function_component(UploadPanel)]
pub fn upload_panel(props: &UploadPanelProps) -> Html {
    let node = use_node();
    let hover = use_state(|| false);
    // The "private" switch: encrypt in the tab, the share link carries the key.
    let private = use_state(|| false);
    let on_private = {
        let private = private.clone();
        Callback::from(move |e: Event| private.set(e.target_unchecked_into::<HtmlInputElement>().checked()))
    };
    let is_private = *private;
    let onchange = {
        let node = node.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            if let Some(files) = input.files() {
                for i in 0..files.length() {
                    if let Some(f) = files.get(i) {
                        node.0.upload_as(f, is_private);
                    }
                }
            }
            input.set_value("");
        })
    };
    let ondragover = {
        let hover = hover.clone();
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            hover.set(true);
        })
    };
    let ondragleave = {
        let hover = hover.clone();
        Callback::from(move |_: DragEvent| hover.set(false))
    };
    let ondrop = {
        let hover = hover.clone();
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            hover.set(false);
            if let Some(files) = e.data_transfer().and_then(|d| d.files()) {
                for i in 0..files.length() {
                    if let Some(f) = files.get(i) {
                        node.0.upload_as(f, is_private);
                    }
                }
            }
        })
    };
    let newest = props.uploads.len().checked_sub(1);
    html! {
        <section class="panel upload">
            <h2>{"Share a file"}</h2>
            <label id="drop-zone" class={classes!("dropzone", (*hover).then_some("hover"))}
                {ondragover} {ondragleave} {ondrop}>
                <input type="file" id="upload-input" multiple=true {onchange} />
                <span class="drop-icon" aria-hidden="true">{"⇪"}</span>
                <span class="drop-main">{"Drop files here or "}<span class="link">{"choose…"}</span></span>
                <span class="hint">{"Cut into 256 KiB chunks and hashed here, in the tab; the swarm keeps copies of each on several peers."}</span>
            </label>
            <label class="private-switch" title="Encrypted in this tab before it is chunked: peers and the tracker hold ciphertext only, and only the share link (which carries the key) opens it.">
                <input type="checkbox" id="upload-private" checked={is_private} onchange={on_private} />
                {" private (end-to-end encrypted; only the link opens it)"}
            </label>
            <ul class="uploads">
                { for props.uploads.iter().enumerate().rev().map(|(i, u)| upload_item(u, Some(i) == newest, props.me.as_ref())) }
            </ul>
        </section>
    }
}

fn upload_item(u: &UploadView, newest: bool, me: Option<&PeerId>) -> Html {
    let pct = percent(u.chunks_done, u.chunks_total, u.file.is_some());
    match (&u.file, &u.error) {
        (_, Some(err)) => html! {
            <li class="upload-item failed" key={u.id}>
                <div class="row"><span class="name">{u.name.clone()}</span><span class="size">{fmt_bytes(u.size)}</span></div>
                <div class="error">{format!("error: {err}")}</div>
            </li>
        },
        (Some(file), None) => {
            let hex = file.to_hex();
            html! {
                <li class="upload-item published" key={u.id} id={newest.then_some("upload-result")}
                    data-file-id={hex.clone()}>
                    <div class="row">
                        <span class="name">{u.name.clone()}</span>
                        <span class="size">{fmt_bytes(u.size)}</span>
                    </div>
                    <div class="muted">{format!("{} chunks hashed and stored at {}/s", u.chunks_total, fmt_bytes(u.rate() as u64))}</div>
                    <div class="file-id"><span class="label">{"file id "}</span><code>{hex.clone()}</code></div>
                    if u.deleted {
                        <div class="muted" id="file-deleted">{"deleted from the swarm"}</div>
                    } else {
                        <ShareBox file={*file} newest={newest} secret={u.link_query.clone()} />
                        <DeleteButton file={*file} />
                        if let Some(e) = &u.delete_error {
                            <div class="error" id="delete-error">{format!("not deleted: {e}")}</div>
                        }
                        <Placement file={*file} me={me.cloned()} />
                    }
                </li>
            }
        }
        (None, None) => html! {
            <li class="upload-item working" key={u.id} id={newest.then_some("upload-progress")}>
                <div class="row">
                    <span class="name">{u.name.clone()}</span>
                    <span class="size">{fmt_bytes(u.size)}</span>
                </div>
                <Bar pct={pct} label="upload progress" />
                <div class="muted">{
                    if u.chunks_done < u.chunks_total {
                        format!("hashing and storing {}/{} chunks · {}/s", u.chunks_done, u.chunks_total, fmt_bytes(u.rate() as u64))
                    } else {
                        "publishing…".to_string()
                    }
                }</div>
            </li>
        },
    }
}

#[derive(Properties, PartialEq)]
pub struct DeleteButtonProps {
    pub file: FileId,
}

/// Deletes a file this tab published, after a second click to confirm: the tracker forgets it
/// and every holder drops chunks no other file uses.
#[function_component(DeleteButton)]
pub fn delete_button(props: &DeleteButtonProps) -> Html {
    let node = use_node();
    let armed = use_state(|| false);
    if *armed {
        let file = props.file;
        let confirm = {
            let armed = armed.clone();
            Callback::from(move |_: MouseEvent| {
                node.0.unpublish(file);
                armed.set(false);
            })
        };
        let cancel = {
            let armed = armed.clone();
            Callback::from(move |_: MouseEvent| armed.set(false))
        };
        html! {
            <div class="delete">
                <span>{"Delete it for everyone? Peers holding copies drop them."}</span>
                <button id="delete-confirm" class="danger" onclick={confirm}>{"Delete"}</button>
                <button class="small" onclick={cancel}>{"Keep"}</button>
            </div>
        }
    } else {
        let arm = Callback::from(move |_: MouseEvent| armed.set(true));
        html! { <button id="delete-file" class="small" onclick={arm}>{"Delete from the swarm"}</button> }
    }
}

#[derive(Properties, PartialEq)]
pub struct PlacementProps {
    pub file: FileId,
    pub me: Option<PeerId>,
}

/// Where the swarm placed a file's chunks: copies per chunk and the holding peers.
#[function_component(Placement)]
pub fn placement(props: &PlacementProps) -> Html {
    let detail = use_file_detail(Some(props.file));
    let Some(detail) = detail else {
        return html! { <div class="placement muted">{"asking the tracker where the chunks went…"}</div> };
    };
    let d = match detail.as_ref() {
        Ok(d) => d,
        Err(e) => return html! { <div class="placement muted">{format!("placement unknown: {e}")}</div> },
    };
    let r = d.health.replication.max(1);
    let mut per_peer = vec![0usize; d.peers.len()];
    for h in &d.holders {
        for &p in h {
            if let Some(c) = per_peer.get_mut(p as usize) {
                *c += 1;
            }
        }
    }
    let status = if d.health.min_copies >= r {
        "ok"
    } else if d.health.min_copies > 0 {
        "warn"
    } else {
        "bad"
    };
    html! {
        <div class="placement" data-min-copies={d.health.min_copies.to_string()} data-peers={d.peers.len().to_string()}>
            <div class="placement-head">
                <span class={classes!("pill", status)}>{format!("{} / {} copies", d.health.min_copies, r)}</span>
                <span class="muted">{format!("placed on {} peer(s)", d.peers.len())}</span>
            </div>
            <div class="copies-map" title="one cell per chunk: copies in the swarm">
                { for d.holders.iter().enumerate().map(|(i, h)| {
                    let i = d.holders_offset as usize + i;
                    let n = h.len() as u32;
                    let class = if n >= r { "c3" } else if n == 2 { "c2" } else if n == 1 { "c1" } else { "c0" };
                    let who: Vec<String> = h.iter().filter_map(|&p| d.peers.get(p as usize)).map(|p| p.short().to_string()).collect();
                    html! { <span class={classes!("cell", class)} title={format!("chunk {i}: {n} copies ({})", who.join(", "))}></span> }
                }) }
            </div>
            if d.holders.len() < d.manifest.chunks.len() {
                <div class="muted">{format!("the first {} of {} chunks", d.holders.len(), d.manifest.chunks.len())}</div>
            }
            <ul class="holders">
                { for d.peers.iter().zip(per_peer).map(|(p, n)| html! {
                    <li>
                        <code>{p.short().to_string()}</code>
                        if Some(p) == props.me.as_ref() { <span class="you">{" (this tab)"}</span> }
                        <span class="muted">{format!(" {n} chunk(s)")}</span>
                    </li>
                }) }
            </ul>
        </div>
    }
}

// ----- download -----

#[derive(Properties, PartialEq)]
pub struct DownloadPanelProps {
    /// In the order they were started.
    pub downloads: Rc<Vec<DownloadView>>,
    /// Why the last input was not fetched.
    pub error: Option<String>,
}

/// Asks for a file id or share link and lists the downloads, newest first, each with its
/// progress, chunk map, cancel button or result. The newest carries the page's fixed ids.
#[function_component(DownloadPanel)]
pub fn download_panel(props: &DownloadPanelProps) -> Html {
    let node = use_node();
    let input = use_node_ref();
    let onsubmit = {
        let input = input.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(el) = input.cast::<HtmlInputElement>() {
                node.0.download(&el.value());
            }
        })
    };
    let newest = props.downloads.len().checked_sub(1);
    html! {
        <section class="panel download">
            <h2>{"Fetch a file"}</h2>
            <form class="fetch" {onsubmit}>
                <label class="field-label" for="download-id">{"Share link or file id"}</label>
                <input id="download-id" ref={input} type="text" placeholder="share link or file id (64 hex digits)"
                    spellcheck="false" autocomplete="off" />
                <button id="download-button" type="submit">{"Download"}</button>
            </form>
            if let Some(e) = &props.error {
                <p id="download-error" class="error" role="alert">{format!("error: {e}")}</p>
            }
            if props.downloads.is_empty() {
                <p id="download-status" class="status idle">{"idle"}</p>
                <p class="hint">{"Paste a file id or share link, open a share link, or pick a file from the swarm below. Several downloads can run at once."}</p>
            }
            <ul id="downloads" class="downloads">
                { for props.downloads.iter().enumerate().rev().map(|(i, d)| html! {
                    <DownloadItem key={d.file.to_hex()} download={d.clone()} newest={Some(i) == newest} />
                }) }
            </ul>
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct DownloadItemProps {
    pub download: DownloadView,
    /// The newest download: it carries the page's fixed ids (`#download-status`, …).
    pub newest: bool,
}

/// One download: `li.download-item[data-file-id][data-state]` (`locating`, `downloading`,
/// `done`, `failed`, `cancelled`, `paused`), with `.download-pause` / `.download-resume` and
/// `.download-cancel` buttons.
#[function_component(DownloadItem)]
pub fn download_item(props: &DownloadItemProps) -> Html {
    let node = use_node();
    let d = &props.download;
    let id = |name: &'static str| props.newest.then_some(name);
    let (status, class) = match &d.phase {
        DownloadPhase::Locating => ("locating…".to_string(), "working"),
        DownloadPhase::Transferring => {
            (format!("downloading {}/{} chunks from {} peer(s)", d.chunks_done, d.chunks_total, d.peers), "working")
        }
        DownloadPhase::Done { .. } => ("done".to_string(), "done"),
        DownloadPhase::Failed(e) => (format!("error: {e}"), "failed"),
        DownloadPhase::Cancelled => (
            format!("cancelled after {}/{} chunks (kept here as copies for the swarm)", d.chunks_done, d.chunks_total),
            "cancelled",
        ),
        DownloadPhase::Paused => {
            (format!("paused after {}/{} chunks (resumes where it stopped)", d.chunks_done, d.chunks_total), "paused")
        }
    };
    let done = matches!(d.phase, DownloadPhase::Done { .. });
    let eta = match (&d.phase, d.eta_secs()) {
        (DownloadPhase::Transferring, Some(s)) => format!(" · ETA {}", fmt_duration(s.ceil() as u64)),
        _ => String::new(),
    };
    let file = d.file;
    let oncancel = {
        let node = node.clone();
        Callback::from(move |_: MouseEvent| node.0.cancel(file))
    };
    let onpause = {
        let node = node.clone();
        Callback::from(move |_: MouseEvent| node.0.pause(file))
    };
    let onresume = Callback::from(move |_: MouseEvent| node.0.download(&file.to_hex()));
    let paused = d.phase == DownloadPhase::Paused;
    html! {
        <li class={classes!("download-item", d.phase.key())} data-file-id={d.file.to_hex()} data-state={d.phase.key()}>
            <div class="row">
                <span class="name">{d.name.clone().unwrap_or_else(|| d.file.short())}</span>
                <span class="size">{if d.size > 0 || done { fmt_bytes(d.size) } else { String::new() }}</span>
            </div>
            if d.phase.running() || done {
                <Bar pct={percent(d.chunks_done, d.chunks_total, done)} label="download progress" />
                <div id={id("download-rate")} class="muted download-rate" data-rate={format!("{:.0}", d.rate())}
                    data-first-chunk-ms={d.first_chunk_ms.map(|ms| format!("{ms:.0}"))}>
                    {format!("{} / {} chunks · {} of {} · {}/s{eta}",
                        d.chunks_done, d.chunks_total, fmt_bytes(d.bytes_done), fmt_bytes(d.size),
                        fmt_bytes(d.rate() as u64))}
                    if let Some(ms) = d.first_chunk_ms {
                        <span class="first-chunk">{format!(" · first chunk {:.2} s after the lookup", ms / 1000.0)}</span>
                    }
                </div>
            }
            <p id={id("download-status")} class={classes!("status", "download-status", class)}>{status}</p>
            // One player at a time (`#player`): the newest download's.
            if props.newest && d.chunks_total > 0 && !matches!(d.phase, DownloadPhase::Failed(_) | DownloadPhase::Cancelled) {
                <crate::player::Player file={d.file} />
            }
            <div class="download-actions">
                if d.phase.running() {
                    <button class="small download-pause" onclick={onpause}>{"Pause"}</button>
                }
                if paused {
                    <button class="small download-resume" onclick={onresume}>{"Resume"}</button>
                }
                if d.phase.running() || paused {
                    <button class="small download-cancel" onclick={oncancel}>{"Cancel"}</button>
                }
                if let DownloadPhase::Done { url } = &d.phase {
                    <a id={id("download-link")} class="save download-link" href={url.clone()}
                        download={d.name.clone().unwrap_or_else(|| d.file.to_hex())}>
                        {format!("Save {}", d.name.clone().unwrap_or_default())}
                    </a>
                }
            </div>
            if done {
                <ShareBox file={d.file} />
            }
            if !d.cells.is_empty() {
                <ChunkMap cells={d.cells.clone()} sources={Rc::new(d.sources.clone())} id={id("chunk-map")} />
            }
        </li>
    }
}

#[derive(Properties, PartialEq)]
pub struct ShareBoxProps {
    pub file: FileId,
    /// The newest upload's box carries `#share-url`.
    #[prop_or_default]
    pub newest: bool,
    /// A private file's `?key=…` (after the id in the link's fragment).
    #[prop_or_default]
    pub secret: String,
}

/// A file's absolute share link, with a copy button (Clipboard API) and the system share
/// sheet (`navigator.share`) where the browser has one. `data-copied`: `true` once copied,
/// `false` if the browser refused (the link is then selected for a manual copy).
#[function_component(ShareBox)]
pub fn share_box(props: &ShareBoxProps) -> Html {
    let link = format!("{}{}", share_link(props.file), props.secret);
    let copied = use_state(|| None::<bool>);
    let input = use_node_ref();
    let oncopy = {
        let (link, copied, input) = (link.clone(), copied.clone(), input.clone());
        Callback::from(move |_: MouseEvent| {
            let (link, copied, input) = (link.clone(), copied.clone(), input.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let ok = crate::clipboard::copy_text(&link).await;
                if !ok {
                    if let Some(el) = input.cast::<HtmlInputElement>() {
                        el.select();
                    }
                }
                copied.set(Some(ok));
            });
        })
    };
    let can_share = crate::clipboard::can_share();
    let onshare = {
        let link = link.clone();
        Callback::from(move |_: MouseEvent| crate::clipboard::share_sheet(&link))
    };
    let label = match *copied {
        None => "Copy link",
        Some(true) => "Copied ✓",
        Some(false) => "Copy refused: press Ctrl+C",
    };
    html! {
        <div class="share-box" data-share-url={link.clone()}>
            <label class="share-label">
                <span class="muted">{"Link"}</span>
                <input ref={input} class="share-url" id={props.newest.then_some("share-url")} type="text" readonly=true
                    value={link.clone()} />
            </label>
            <button class="small copy-link" onclick={oncopy}
                data-copied={copied.map(|c| c.to_string())}>{label}</button>
            if can_share {
                <button class="small share-native" onclick={onshare}>{"Share…"}</button>
            }
            <a class="share" href={link} target="_blank" rel="noopener">{"open"}</a>
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct ChunkMapProps {
    pub cells: Rc<Vec<CellState>>,
    pub sources: Rc<Vec<SourceView>>,
    /// `chunk-map` on the newest download.
    #[prop_or_default]
    pub id: Option<&'static str>,
}

/// One cell per chunk, coloured by its source peer; pale while in flight, grey while needed.
/// Drawn on a canvas, repainting only the cells that changed: as a thousand DOM elements the
/// map cost the tab a third of its main thread during a fast download (style, layout, paint).
#[function_component(ChunkMap)]
pub fn chunk_map(props: &ChunkMapProps) -> Html {
    let canvas = use_node_ref();
    let drawn = use_mut_ref(|| (Vec::<CellState>::new(), 0u32));
    {
        let (canvas, drawn, cells) = (canvas.clone(), drawn.clone(), props.cells.clone());
        use_effect_with(cells, move |cells| {
            if let Some(c) = canvas.cast::<web_sys::HtmlCanvasElement>() {
                draw_chunk_map(&c, cells, &mut drawn.borrow_mut());
            }
        });
    }
    let had = props.cells.contains(&CellState::Done(None));
    let here = props.cells.iter().filter(|c| matches!(c, CellState::Done(_))).count();
    let label = format!("chunk map: {here} of {} chunks here", props.cells.len());
    html! {
        <div class="chunk-map-box">
            <div class="chunk-map-scroll">
                <canvas ref={canvas} id={props.id} class="chunk-map" role="img" aria-label={label}
                    data-cells={props.cells.len().to_string()} data-done={here.to_string()}></canvas>
            </div>
            <ul class="legend">
                { for props.sources.iter().enumerate().filter(|(_, s)| s.bytes > 0 || !s.via.is_empty()).map(|(i, s)| html! {
                    <li>
                        <span class="swatch" style={format!("background:{}", colour(i))}></span>
                        <code>{s.peer.short().to_string()}</code>
                        <span class="muted">{format!(" {} {}", fmt_bytes(s.bytes), s.via)}</span>
                    </li>
                }) }
                if had { <li><span class="swatch local"></span><span class="muted">{"already here"}</span></li> }
                <li><span class="swatch needed"></span><span class="muted">{"to fetch"}</span></li>
            </ul>
        </div>
    }
}

/// Cell edge and gap of the chunk map, in CSS pixels.
const CELL: f64 = 9.0;
const GAP: f64 = 2.0;

/// Paints `cells` on the canvas; `drawn` is what it shows now (and at which width), so only
/// changed cells are painted unless the layout changed.
fn draw_chunk_map(canvas: &web_sys::HtmlCanvasElement, cells: &[CellState], drawn: &mut (Vec<CellState>, u32)) {
    use wasm_bindgen::JsCast;
    let css_width = canvas.client_width().max(1) as f64;
    let cols = ((css_width + GAP) / (CELL + GAP)).floor().max(1.0) as usize;
    let rows = cells.len().div_ceil(cols).max(1);
    let ratio = gloo::utils::window().device_pixel_ratio().max(1.0);
    let (w, h) = ((css_width * ratio) as u32, ((rows as f64 * (CELL + GAP) - GAP) * ratio) as u32);
    let relayout =
        canvas.width() != w || canvas.height() != h || drawn.1 != cols as u32 || drawn.0.len() != cells.len();
    if relayout {
        canvas.set_width(w);
        canvas.set_height(h);
        let _ = canvas.style().set_property("height", &format!("{}px", h as f64 / ratio));
        drawn.0.clear();
        drawn.1 = cols as u32;
    }
    let Ok(Some(ctx)) = canvas.get_context("2d") else { return };
    let Ok(ctx) = ctx.dyn_into::<web_sys::CanvasRenderingContext2d>() else { return };
    let _ = ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
    for (i, cell) in cells.iter().enumerate() {
        if drawn.0.get(i) == Some(cell) {
            continue;
        }
        let (x, y) = ((i % cols) as f64 * (CELL + GAP), (i / cols) as f64 * (CELL + GAP));
        let (fill, alpha) = match cell {
            CellState::Needed => ("#9aa0b4", 0.35),
            CellState::InFlight(s) => (colour(*s), 0.4),
            CellState::Done(Some(s)) => (colour(*s), 1.0),
            CellState::Done(None) => ("#8a8fa8", 1.0),
        };
        ctx.clear_rect(x, y, CELL, CELL);
        ctx.set_global_alpha(alpha);
        ctx.set_fill_style_str(fill);
        ctx.fill_rect(x, y, CELL, CELL);
    }
    ctx.set_global_alpha(1.0);
    drawn.0.clear();
    drawn.0.extend_from_slice(cells);
}

// ----- files in the swarm -----

/// Search as you type over the swarm's files.
#[function_component(FilesPanel)]
pub fn files_panel() -> Html {
    let query = use_state(String::new);
    let results = use_search((*query).clone());
    let oninput = {
        let query = query.clone();
        Callback::from(move |e: InputEvent| {
            let input: HtmlInputElement = e.target_unchecked_into();
            query.set(input.value());
        })
    };
    let body = match results.as_deref() {
        None => html! { <p class="muted">{"searching…"}</p> },
        Some(Err(e)) => html! { <p class="error">{format!("search failed: {e}")}</p> },
        Some(Ok(a)) if a.files.is_empty() => html! {
            <p class="muted" id="search-empty">{ if query.trim().is_empty() { "No files in the swarm yet.".to_string() } else { format!("Nothing matches “{}”.", query.trim()) } }</p>
        },
        Some(Ok(a)) => html! {
            <ul id="search-results" class="file-list">
                { for a.files.iter().map(|f| html! { <FileRow file={f.clone()} replication={a.replication} /> }) }
            </ul>
        },
    };
    html! {
        <section class="panel files">
            <h2>{"Files in the swarm"}</h2>
            <label class="field-label" for="search-input">{"Search by name"}</label>
            <input id="search-input" class="search" type="search" placeholder="search by name…"
                value={(*query).clone()} {oninput} spellcheck="false" autocomplete="off" />
            { body }
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct FileRowProps {
    pub file: FileSummary,
    /// The tracker's replication target.
    pub replication: u32,
}

#[function_component(FileRow)]
pub fn file_row(props: &FileRowProps) -> Html {
    let node = use_node();
    let f = &props.file;
    let hex = f.id.to_hex();
    let onclick = {
        let hex = hex.clone();
        Callback::from(move |_: MouseEvent| {
            let _ = gloo::utils::window().location().set_hash(&format!("/file/{hex}"));
            node.0.download(&hex);
        })
    };
    let r = props.replication.max(1);
    let copies = f.min_holders.min(r);
    let status = if f.min_holders >= r {
        "ok"
    } else if f.min_holders > 0 {
        "warn"
    } else {
        "bad"
    };
    html! {
        <li class="file-row" data-file-id={hex.clone()}>
            <div class="file-main">
                <span class="name" title={f.name.clone()}>{f.name.clone()}</span>
                <span class="muted">{format!("{} · {} chunk(s)", fmt_bytes(f.size), f.chunks)}</span>
            </div>
            <div class="health" title={format!("fewest copies of any chunk: {} (target {r})", f.min_holders)}>
                <div class={classes!("health-bar", status)}>
                    <div class="fill" style={format!("width:{:.0}%", copies as f64 * 100.0 / r as f64)}></div>
                </div>
                <span class="muted">{format!("{}/{r}", f.min_holders)}</span>
            </div>
            <a class="share small" href={share_link(f.id)} title="share link">{"link"}</a>
            <button class="get" {onclick}>{"Get"}</button>
        </li>
    }
}

// ----- the swarm -----

#[derive(Properties, PartialEq)]
pub struct SwarmPanelProps {
    pub me: Option<PeerId>,
    pub stats: Stats,
    pub storage: StorageInfo,
    /// This tab's connections, sorted by peer.
    pub links: Rc<Vec<LinkView>>,
    pub offer: OfferView,
    pub upload_limit: Option<u64>,
    pub trim: Option<TrimReport>,
    pub slot: Option<u32>,
}

/// The path of one connection as a pill: `data-path` is the wire name (`direct_host`,
/// `direct_reflexive`, `turn`, `relay`), or `connecting` / `direct` while not known yet.
fn path_pill(l: &LinkView) -> Html {
    let (key, text) = match (l.ready, l.path) {
        (false, _) => ("connecting", "…"),
        (true, None) => ("direct", "direct"),
        (true, Some(p)) => (p.as_str(), short_path_label(p)),
    };
    let title = format!(
        "{}: {}",
        match (l.ready, l.path) {
            (false, _) => "connecting",
            (true, None) => "direct",
            (true, Some(p)) => path_label(p),
        },
        if l.fetching { "this tab fetches from this peer" } else { "this peer fetches from this tab" }
    );
    html! {
        <span class={classes!("path", key)} data-path={key} data-fetching={l.fetching.to_string()} {title}>
            {text}{if l.fetching { " ↓" } else { " ↑" }}
        </span>
    }
}

/// A path in a word, for the peers table (the full name is in the pill's title).
fn short_path_label(p: LinkPath) -> &'static str {
    match p {
        LinkPath::DirectHost => "direct",
        LinkPath::DirectReflexive => "NAT",
        LinkPath::Turn => "TURN",
        LinkPath::Relay => "relay",
    }
}

/// The swarm's peers (with the path of each connection to them) and this tab's storage and
/// bytes received by path.
#[function_component(SwarmPanel)]
pub fn swarm_panel(props: &SwarmPanelProps) -> Html {
    let peers = use_peers();
    let list = match peers.as_deref() {
        None => html! { <p class="muted">{"loading…"}</p> },
        Some(Err(e)) => html! { <p class="error">{format!("cannot list peers: {e}")}</p> },
        Some(Ok(a)) => html! {
            <div class="peers-box"><table id="swarm-peers" class="peers">
                <thead><tr><th>{"peer"}</th><th>{"kind"}</th><th>{"link"}</th><th>{"up"}</th><th>{"chunks"}</th><th>{"storage"}</th></tr></thead>
                <tbody>
                { for a.peers.iter().map(|p| {
                    let me = Some(&p.id) == props.me.as_ref();
                    let kind = match p.kind { PeerKind::Browser => "browser", PeerKind::Native => "native" };
                    html! {
                        <tr class={classes!(me.then_some("me"))} data-peer-id={p.id.0.clone()}>
                            <td><code>{p.id.short().to_string()}</code>{ if me { " (this tab)" } else if p.leaving { " (leaving)" } else { "" } }</td>
                            <td><span class={classes!("kind", kind)}>{kind}</span></td>
                            <td class="links">{ for props.links.iter().filter(|l| l.peer == p.id).map(path_pill) }</td>
                            <td>{fmt_duration(p.uptime_secs)}</td>
                            <td>{p.chunks}</td>
                            <td>{match p.storage_capacity {
                                Some(c) if c > 0 => format!("{} of {}", fmt_bytes(p.storage_used), fmt_bytes(c)),
                                _ => fmt_bytes(p.storage_used),
                            }}</td>
                        </tr>
                    }
                }) }
                </tbody>
            </table>
            { if a.total > a.peers.len() as u64 {
                html! { <p class="muted" id="swarm-peers-more">{format!("{} of {} peers shown", a.peers.len(), a.total)}</p> }
            } else { html! {} } }
            </div>
        },
    };
    let by_path = |p: LinkPath| props.stats.by_path[crate::paths::index(p)];
    let s = props.storage;
    let persisted = match s.persisted {
        Some(true) => "granted",
        Some(false) => "not granted (the browser may evict these chunks under pressure)",
        None => "unknown",
    };
    html! {
        <section class="panel swarm">
            <h2>{"Swarm"}</h2>
            { list }
            <div id="tab-storage" class="tab-storage" data-persisted={s.persisted.map(|p| p.to_string()).unwrap_or_default()}
                data-store-bytes={props.stats.store_bytes.to_string()}>
                <h3>{"This tab"}</h3>
                <dl>
                    <dt>{"chunks held"}</dt><dd>{format!("{} ({})", props.stats.store_chunks, fmt_bytes(props.stats.store_bytes))}</dd>
                    <dt>{"origin storage"}</dt><dd>{match (s.usage, s.quota) {
                        (Some(u), Some(q)) => format!("{} used of a {} quota", fmt_bytes(u), fmt_bytes(q)),
                        _ => "unknown".to_string(),
                    }}</dd>
                    <dt>{"offered to the swarm"}</dt>
                    <dd><OfferForm offer={props.offer} trim={props.trim} held={props.stats.store_bytes} quota={s.quota} /></dd>
                    <dt>{"upload limit"}</dt>
                    <dd><UploadLimitForm limit={props.upload_limit} /></dd>
                    <dt>{"persistent storage"}</dt><dd>{persisted}</dd>
                    <dt>{"received by path"}</dt>
                    <dd id="path-stats"
                        data-direct-host={by_path(LinkPath::DirectHost).to_string()}
                        data-direct-reflexive={by_path(LinkPath::DirectReflexive).to_string()}
                        data-turn={by_path(LinkPath::Turn).to_string()}
                        data-relay={by_path(LinkPath::Relay).to_string()}>
                        { for LinkPath::ALL.into_iter().filter(|p| by_path(*p) > 0).map(|p| html! {
                            <span class={classes!("path", p.as_str())}>{format!("{} {}", path_label(p), fmt_bytes(by_path(p)))}</span>
                        }) }
                        if LinkPath::ALL.into_iter().all(|p| by_path(p) == 0) { {"nothing yet"} }
                    </dd>
                </dl>
                if let (Some(u), Some(q)) = (s.usage, s.quota) {
                    <Bar pct={if q > 0 { u as f64 * 100.0 / q as f64 } else { 0.0 }} label="storage used of the browser's quota" />
                }
                <p id="tab-identity" class="hint" data-slot={props.slot.map(|s| s.to_string())}>
                    {"This tab keeps its peer identity and its chunks across reloads and browser restarts. "}
                    {"While it is closed, the chunks it holds are not served: the swarm makes new copies from other peers, "}
                    {"and this tab's copies count again when you come back."}
                    if props.slot.is_some_and(|s| s > 0) {
                        {" Another tab of this site is open, so this one is a separate peer with its own storage."}
                    }
                </p>
            </div>
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct OfferFormProps {
    pub offer: OfferView,
    pub trim: Option<TrimReport>,
    /// Bytes this tab holds now.
    pub held: u64,
    pub quota: Option<u64>,
}

/// The room this tab offers the swarm, in MiB, changeable (kept across reloads):
/// `#tab-offer[data-offer-bytes][data-chosen]`, `#offer-input`, `#offer-save`, `#offer-trim`.
#[function_component(OfferForm)]
pub fn offer_form(props: &OfferFormProps) -> Html {
    let node = use_node();
    let on_set =
        Callback::from(move |text: String| crate::state::parse_mib(&text).map(|bytes| node.0.set_offer(bytes)));
    let o = props.offer;
    let over = props.held > o.bytes;
    html! {
        <div id="tab-offer" data-offer-bytes={o.bytes.to_string()} data-chosen={o.chosen.to_string()}>
            <span>{format!("{} ({})", fmt_bytes(o.bytes), if o.chosen { "your choice" } else { "default: 10% of the quota, at most 2 GiB" })}</span>
            <SettingForm id="offer" label="Offer to the swarm (MiB)" step="1"
                placeholder={format!("{}", o.bytes / (1 << 20))} {on_set} />
            if let Some(q) = props.quota.filter(|q| o.bytes > *q) {
                <div class="muted">{format!("More than the browser allows this site ({}): writes stop at its quota.", fmt_bytes(q))}</div>
            }
            <div class="muted">{"Lowering it below what this tab holds drops chunks it keeps for others (the swarm copies them elsewhere); your own files stay."}</div>
            if let Some(t) = props.trim {
                <div id="offer-trim" class="muted" data-dropped-chunks={t.dropped_chunks.to_string()} data-still-over={t.still_over.to_string()}>
                    { if t.dropped_chunks > 0 {
                        format!("Dropped {} chunk(s) ({}) kept for the swarm.", t.dropped_chunks, fmt_bytes(t.dropped_bytes))
                    } else {
                        "Nothing had to be dropped.".to_string()
                    } }
                    if t.still_over > 0 {
                        {format!(" Your own files still use {} more than the offer: they stay, and this tab takes no new copies for others until there is room.", fmt_bytes(t.still_over))}
                    }
                </div>
            } else if over {
                <div class="muted">{"This tab holds more than it offers (your own files): it takes no new copies for others."}</div>
            }
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct UploadLimitFormProps {
    pub limit: Option<u64>,
}

/// The most this tab sends per second, for everything it serves, in MiB/s, changeable (kept
/// across reloads): `#tab-upload-limit[data-limit]` (bytes per second, empty for none),
/// `#upload-limit-input`, `#upload-limit-save`.
#[function_component(UploadLimitForm)]
pub fn upload_limit_form(props: &UploadLimitFormProps) -> Html {
    let node = use_node();
    let on_set = Callback::from(move |text: String| {
        crate::state::parse_limit_mib(&text).map(|rate| node.0.set_upload_limit(rate))
    });
    html! {
        <div id="tab-upload-limit" data-limit={props.limit.map(|l| l.to_string())}>
            <span>{match props.limit {
                Some(l) => format!("{}/s (your choice)", fmt_bytes(l)),
                None => "none".to_string(),
            }}</span>
            <SettingForm id="upload-limit" label="Upload limit (MiB/s; empty or 0: none)" step="0.1" {on_set} />
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct SettingFormProps {
    /// `#{id}-input` and `#{id}-save`.
    pub id: AttrValue,
    pub label: AttrValue,
    pub step: AttrValue,
    #[prop_or_default]
    pub placeholder: Option<AttrValue>,
    /// What was typed, when saved: `Err` is shown under the field.
    pub on_set: Callback<String, Result<(), String>>,
}

/// A number the user sets in a panel: a labelled field and its Set button.
#[function_component(SettingForm)]
pub fn setting_form(props: &SettingFormProps) -> Html {
    let input = use_node_ref();
    let error = use_state(|| None::<String>);
    let onsubmit = {
        let (input, error, on_set) = (input.clone(), error.clone(), props.on_set.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(el) = input.cast::<HtmlInputElement>() else { return };
            error.set(on_set.emit(el.value()).err());
        })
    };
    let (input_id, save_id) = (format!("{}-input", props.id), format!("{}-save", props.id));
    html! {
        <>
            <form class="offer" {onsubmit}>
                <label class="muted" for={input_id.clone()}>{props.label.clone()}</label>
                <input id={input_id} ref={input} type="number" min="0" step={props.step.clone()}
                    placeholder={props.placeholder.clone()} />
                <button id={save_id} class="small" type="submit">{"Set"}</button>
            </form>
            if let Some(e) = &*error { <div class="error">{e.clone()}</div> }
        </>
    }
}

#[derive(Properties, PartialEq)]
pub struct BarProps {
    pub pct: f64,
    /// What the bar measures (its accessible name).
    pub label: AttrValue,
}

/// A progress bar.
#[function_component(Bar)]
pub fn bar(props: &BarProps) -> Html {
    let pct = props.pct.clamp(0.0, 100.0);
    html! {
        <div class="bar" role="progressbar" aria-label={props.label.clone()} aria-valuemin="0" aria-valuemax="100"
            aria-valuenow={format!("{pct:.0}")}>
            // A transform, not a width: the bar moves on the compositor, with no layout or
            // repaint of the panel at every frame.
            <div class="fill" style={format!("transform: scaleX({:.4})", pct / 100.0)}></div>
        </div>
    }
}

fn percent(done: usize, total: usize, complete: bool) -> f64 {
    if complete {
        100.0
    } else if total == 0 {
        0.0
    } else {
        done as f64 * 100.0 / total as f64
    }
}

/// Bytes in binary units, e.g. `1.5 MiB`.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A duration like `45 s`, `3 min`, `2 h 5 min`.
pub fn fmt_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}
