//! Networking for components, behind hooks: JSON from the tracker's REST API, fetched (and
//! refreshed) while a component shows it. Components never call `fetch` themselves.

use std::cell::Cell;
use std::rc::Rc;

use gloo::timers::callback::{Interval, Timeout};
use serde::de::DeserializeOwned;
use swarm_core::api::{FileDetail, PeersAnswer, SearchAnswer};
use swarm_core::FileId;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::Response;
use yew::prelude::*;

use crate::rtc::js_error;

/// Why a GET of the tracker's REST API gave no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// The request did not complete (network down, tracker gone): the browser's words.
    #[error("{0}")]
    Network(String),
    /// The tracker answered with an error status; `body` is the start of its answer.
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    /// The answer is not the JSON expected.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

/// GETs `url` (same origin) and parses the JSON body.
pub async fn fetch_json<T: DeserializeOwned>(url: &str) -> Result<T, FetchError> {
    let net = |e: JsValue| FetchError::Network(js_error(&e));
    let resp = JsFuture::from(gloo::utils::window().fetch_with_str(url)).await.map_err(net)?;
    let resp: Response = resp.dyn_into().map_err(|_| FetchError::Network("not a response".into()))?;
    let text = JsFuture::from(resp.text().map_err(net)?).await.map_err(net)?;
    let text = text.as_string().unwrap_or_default();
    if !resp.ok() {
        return Err(FetchError::Http { status: resp.status(), body: text.chars().take(200).collect() });
    }
    serde_json::from_str(&text).map_err(|e| FetchError::Decode(e.to_string()))
}

/// The latest answer for `url` (`None` until the first arrives), fetched after `delay_ms`
/// and then every `period_ms` (0: once). A new `url` starts over; stale answers are dropped.
#[hook]
pub fn use_json<T>(url: Option<String>, delay_ms: u32, period_ms: u32) -> Option<Rc<Result<T, FetchError>>>
where
    T: DeserializeOwned + 'static,
{
    let data = use_state(|| None::<Rc<Result<T, FetchError>>>);
    {
        let data = data.clone();
        use_effect_with(url, move |url| {
            let alive = Rc::new(Cell::new(true));
            let mut timers: (Option<Timeout>, Option<Interval>) = (None, None);
            if let Some(url) = url.clone() {
                let fetch = {
                    let (alive, data, url) = (alive.clone(), data.clone(), url.clone());
                    Rc::new(move || {
                        let (alive, data, url) = (alive.clone(), data.clone(), url.clone());
                        spawn_local(async move {
                            let r = fetch_json::<T>(&url).await;
                            if alive.get() {
                                data.set(Some(Rc::new(r)));
                            }
                        });
                    })
                };
                let first = fetch.clone();
                timers.0 = Some(Timeout::new(delay_ms, move || first()));
                if period_ms > 0 {
                    timers.1 = Some(Interval::new(period_ms, move || fetch()));
                }
            } else {
                data.set(None);
            }
            move || {
                alive.set(false);
                drop(timers);
            }
        });
    }
    (*data).clone()
}

/// Search as you type: the files whose names match `query` (debounced).
#[hook]
pub fn use_search(query: String) -> Option<Rc<Result<SearchAnswer, FetchError>>> {
    let url = format!("/api/search?q={}&limit=50", String::from(js_sys::encode_uri_component(query.trim())));
    use_json::<SearchAnswer>(Some(url), 150, 5_000)
}

/// Where a file's chunks are, refreshed every 2 s.
#[hook]
pub fn use_file_detail(file: Option<FileId>) -> Option<Rc<Result<FileDetail, FetchError>>> {
    use_json::<FileDetail>(file.map(|f| format!("/api/files/{}", f.to_hex())), 300, 2_000)
}

/// The swarm's peers, refreshed every 3 s.
#[hook]
pub fn use_peers() -> Option<Rc<Result<PeersAnswer, FetchError>>> {
    use_json::<PeersAnswer>(Some("/api/peers".into()), 0, 3_000)
}
