//! The page: function components reading [`AppState`] and calling the node through
//! [`use_node`]. Every string that came from the swarm (file names) is rendered as a text node
//! or an attribute value, never as HTML.

use std::rc::Rc;

use swarm_core::{FileId, PeerId};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::node::{use_node, Node, NodeHandle};
use crate::state::{AppState, ConnStatus, DownloadPhase, DownloadView, Stats, UploadView};

/// The root: owns the state reducer and the node, provides the node as context.
#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(AppState::default);
    let node = {
        let dispatcher = state.dispatcher();
        use_state(move || NodeHandle(Node::start(Callback::from(move |a| dispatcher.dispatch(a)))))
    };
    html! {
        <ContextProvider<NodeHandle> context={(*node).clone()}>
            <div class="app">
                <header class="topbar">
                    <div class="brand">
                        <span class="logo" aria-hidden="true">{"◆"}</span>
                        <span class="title">{"Peer Pressure"}</span>
                    </div>
                    <StatusBar conn={state.conn} peer_id={state.peer_id.clone()} stats={state.stats} />
                </header>
                <main class="panels">
                    <UploadPanel uploads={Rc::new(state.uploads.clone())} />
                    <DownloadPanel download={state.download.clone()} />
                </main>
                <footer class="footer">
                    <span>{format!("Holding {} chunks ({})", state.stats.store_chunks, fmt_bytes(state.stats.store_bytes))}</span>
                    <span>{format!("{} open data channel(s)", state.stats.connections)}</span>
                </footer>
            </div>
        </ContextProvider<NodeHandle>>
    }
}

#[derive(Properties, PartialEq)]
pub struct StatusBarProps {
    pub conn: ConnStatus,
    pub peer_id: Option<PeerId>,
    pub stats: Stats,
}

/// Tracker connection, this tab's peer id and the data-channel byte counters.
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

#[derive(Properties, PartialEq)]
pub struct UploadPanelProps {
    pub uploads: Rc<Vec<UploadView>>,
}

/// Picks files, shows hashing progress and the published file ids.
#[function_component(UploadPanel)]
pub fn upload_panel(props: &UploadPanelProps) -> Html {
    let node = use_node();
    let onchange = Callback::from(move |e: Event| {
        let input: HtmlInputElement = e.target_unchecked_into();
        if let Some(files) = input.files() {
            for i in 0..files.length() {
                if let Some(f) = files.get(i) {
                    node.0.upload(f);
                }
            }
        }
        input.set_value("");
    });
    let newest = props.uploads.len().checked_sub(1);
    html! {
        <section class="panel upload">
            <h2>{"Share a file"}</h2>
            <label class="picker">
                <input type="file" id="upload-input" multiple=true {onchange} />
                <span class="picker-label">{"Choose a file…"}</span>
            </label>
            <p class="hint">{"The file is cut into chunks and hashed here, in the tab; the swarm only ever sees chunks."}</p>
            <ul class="uploads">
                { for props.uploads.iter().enumerate().rev().map(|(i, u)| upload_item(u, Some(i) == newest)) }
            </ul>
        </section>
    }
}

fn upload_item(u: &UploadView, newest: bool) -> Html {
    let pct = percent(u.chunks_done, u.chunks_total, u.file.is_some());
    match (&u.file, &u.error) {
        (_, Some(err)) => html! {
            <li class="upload-item failed" key={u.id}>
                <div class="name">{u.name.clone()}</div>
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
                    <div class="file-id"><span class="label">{"file id "}</span><code>{hex.clone()}</code></div>
                    <a class="share" href={format!("#/file/{hex}")}>{"link to this file"}</a>
                </li>
            }
        }
        (None, None) => html! {
            <li class="upload-item working" key={u.id} id={newest.then_some("upload-progress")}>
                <div class="row">
                    <span class="name">{u.name.clone()}</span>
                    <span class="size">{fmt_bytes(u.size)}</span>
                </div>
                <Bar pct={pct} />
                <div class="muted">{
                    if u.chunks_done < u.chunks_total {
                        format!("hashing {}/{} chunks", u.chunks_done, u.chunks_total)
                    } else {
                        "publishing…".to_string()
                    }
                }</div>
            </li>
        },
    }
}

#[derive(Properties, PartialEq)]
pub struct DownloadPanelProps {
    pub download: Option<DownloadView>,
}

/// Asks for a file id and shows the download's progress and result.
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
    html! {
        <section class="panel download">
            <h2>{"Fetch a file"}</h2>
            <form class="fetch" {onsubmit}>
                <input id="download-id" ref={input} type="text" placeholder="file id (64 hex digits)"
                    spellcheck="false" autocomplete="off" />
                <button id="download-button" type="submit">{"Download"}</button>
            </form>
            { download_view(props.download.as_ref()) }
        </section>
    }
}

fn download_view(d: Option<&DownloadView>) -> Html {
    let Some(d) = d else {
        return html! { <p id="download-status" class="status idle">{"idle"}</p> };
    };
    let (status, class) = match &d.phase {
        DownloadPhase::Locating => ("locating…".to_string(), "working"),
        DownloadPhase::Transferring => {
            (format!("downloading {}/{} chunks from {} peer(s)", d.chunks_done, d.chunks_total, d.peers), "working")
        }
        DownloadPhase::Done { .. } => ("done".to_string(), "done"),
        DownloadPhase::Failed(e) => (format!("error: {e}"), "failed"),
    };
    let done = matches!(d.phase, DownloadPhase::Done { .. });
    let show_file = d.file != FileId([0; 32]);
    html! {
        <div class="download-view">
            if show_file {
                <div class="row">
                    <span class="name">{d.name.clone().unwrap_or_else(|| d.file.short())}</span>
                    <span class="size">{if d.size > 0 || done { fmt_bytes(d.size) } else { String::new() }}</span>
                </div>
            }
            if !matches!(d.phase, DownloadPhase::Failed(_)) {
                <Bar pct={percent(d.chunks_done, d.chunks_total, done)} />
                <div class="muted">{format!("{} / {} chunks · {}/s",
                    d.chunks_done, d.chunks_total, fmt_bytes(d.rate() as u64))}</div>
            }
            <p id="download-status" class={classes!("status", class)}>{status}</p>
            if let DownloadPhase::Done { url } = &d.phase {
                <a id="download-link" class="save" href={url.clone()}
                    download={d.name.clone().unwrap_or_else(|| d.file.to_hex())}>
                    {format!("Save {}", d.name.clone().unwrap_or_default())}
                </a>
            }
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct BarProps {
    pub pct: f64,
}

/// A progress bar.
#[function_component(Bar)]
pub fn bar(props: &BarProps) -> Html {
    let pct = props.pct.clamp(0.0, 100.0);
    html! {
        <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow={format!("{pct:.0}")}>
            <div class="fill" style={format!("width: {pct:.1}%")}></div>
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
