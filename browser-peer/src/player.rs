//! The player: a download's audio, video, image or PDF shown in the page while it downloads.
//!
//! The element reads `/stream/<file id>` ([`crate::stream`]): the service worker answers its
//! range requests from this tab's store, and each read moves the download's playhead, so the
//! chunks under it (a seek included) are fetched first. Mount it once the file is located (its
//! type is known then: a component whose props do not change is not drawn again); it shows the
//! element once a service worker controls the page (browsers offer service workers in secure contexts only:
//! https, or http on localhost). Ids: `#player[data-file-id]` (the `video`, `audio`, `img` or
//! `object` element), `#player-waiting` while the worker starts.

use gloo::events::EventListener;
use swarm_core::FileId;
use yew::prelude::*;

use crate::node::use_node;
use crate::stream::{self, Kind};

#[derive(Properties, PartialEq)]
pub struct PlayerProps {
    pub file: FileId,
}

#[function_component(Player)]
pub fn player(props: &PlayerProps) -> Html {
    let node = use_node();
    let controlled = use_state(stream::controlled);
    {
        let controlled = controlled.clone();
        use_effect_with((), move |_| {
            let listener = stream::container()
                .filter(|_| !*controlled)
                .map(|c| EventListener::new(&c, "controllerchange", move |_| controlled.set(stream::controlled())));
            move || drop(listener)
        });
    }
    let Some(meta) = node.0.stream_file(props.file) else { return html! {} };
    let Some(kind) = stream::kind(&meta.mime) else { return html! {} };
    if !*controlled {
        let why = if stream::container().is_some() {
            "starting the player…"
        } else {
            "this browser cannot play while downloading here (it needs https)"
        };
        return html! { <p id="player-waiting" class="muted">{why}</p> };
    }
    let src = format!("{}{}", stream::PREFIX, props.file.to_hex());
    let id = props.file.to_hex();
    html! {
        <div class="player-box">
            { match kind {
                Kind::Video => html! {
                    <video id="player" class="player" data-file-id={id} controls={true} preload="auto" {src}></video>
                },
                Kind::Audio => html! {
                    <audio id="player" class="player" data-file-id={id} controls={true} preload="auto" {src}></audio>
                },
                Kind::Image => html! {
                    <img id="player" class="player" data-file-id={id} alt={meta.name.clone()} {src} />
                },
                Kind::Pdf => html! {
                    <object id="player" class="player" data-file-id={id} type="application/pdf" data={src.clone()}
                        title={meta.name.clone()}>
                        // Shown where the browser has no PDF viewer (and the object's text alternative).
                        <p class="muted">{format!("{} (PDF): ", meta.name)}<a href={src} target="_blank">{"open it"}</a></p>
                    </object>
                },
            } }
        </div>
    }
}
