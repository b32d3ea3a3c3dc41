//! Peer Pressure's browser peer: a Yew app that is a full member of the swarm.
//!
//! - [`app`]: the components (page layout, upload and download panels, status bar).
//! - [`state`]: the page state as a `Reducible` with its actions; no I/O.
//! - [`node`]: the peer behind a context (`use_node`): a thin driver of the sans-IO peer core
//!   (`swarm_core::peer::Peer`, shared with the native peer) over the tracker socket, WebRTC,
//!   IndexedDB, timers and the page.
//! - [`tracker`]: the self-healing websocket to the tracker; [`failover`]: which node of a
//!   tracker cluster it talks to (pure logic).
//! - [`rtc`]: one `RTCPeerConnection` + data channel, offerer or answerer, flow-controlled.
//! - [`paths`]: a data channel's path from its stats, bytes by path.
//! - [`js_chunk`]: the receive path that keeps chunk bytes in JS memory and hashes with WebCrypto.
//! - [`store`]: the `ChunkStore` seam: IndexedDB (batched blob writes) and in-memory.
//! - [`idb`]: a thin async layer over IndexedDB (web-sys).
//! - [`private`]: private files: encrypt uploads, keys from links, decrypt downloads.
//! - [`identity`]: the tab's identity (key and chunk store), kept across restarts, one per tab.
//! - [`webkey`]: the tab's private key, a non-extractable WebCrypto key kept in IndexedDB.
//! - [`clipboard`]: share links to the clipboard and the system share sheet.
//! - [`hooks`]: REST data for components (search, placement, peers) behind hooks.
//! - [`leave`]: the browser's "leave this page?" while an upload is not yet published.
//! - [`resume`]: the tab's unfinished downloads, kept across reloads and started again.
//! - [`stream`] and [`player`]: play while downloading: `/stream/<id>` answered from the tab's
//!   store through the service worker `static/sw.js`, the element that plays it.
//!
//! Protocol, hashing, framing and every peer decision come from `swarm-core`; nothing here
//! re-implements them.
//!
//! The page (`static/index.html`, ids the end-to-end tests rely on): `#upload-input`,
//! `#upload-result[data-file-id]` (newest published upload), `#upload-progress`,
//! `#download-id` (a share link or id), `#download-button`, `#download-status` (`idle`, `locating…`,
//! `downloading …`, `done` or `error: …`), `#download-link` (blob URL, `download=<name>`),
//! `#conn-status[data-state=connecting|connected|disconnected]`, `#tracker-node[data-url][data-nodes]`
//! (the tracker node in use, and how many nodes the page knows), `#peer-id[data-peer-id]`,
//! `#dc-stats[data-received][data-sent]` (data-channel bytes, refreshed every 250 ms),
//! `#drop-zone`, `.placement[data-min-copies][data-peers]` (where an upload's chunks went),
//! `#search-input`, `#search-results li[data-file-id]`, `#search-empty`,
//! `#download-rate[data-rate]` (bytes/s), `#chunk-map[data-cells]`, `#swarm-peers`,
//! `#tab-storage[data-persisted][data-store-bytes]`, `#store-error` (quota and IndexedDB problems).
//! `#path-stats[data-direct-host][data-direct-reflexive][data-turn][data-relay]` (bytes received
//! by path), `#swarm-peers tr[data-peer-id] .path[data-path][data-fetching]` (the path of each
//! connection to that peer: `direct_host`, `direct_reflexive`, `turn`, `relay`, `direct` while
//! its stats are read, `connecting`), `#download-rate[data-first-chunk-ms]` (lookup to first
//! chunk stored), `#player[data-file-id]` (the newest download's audio, video, image or PDF
//! element, fed by [`stream`] through the service worker `static/sw.js`).
//! Downloads: `#downloads li.download-item[data-file-id][data-state]` (`locating`,
//! `downloading`, `done`, `failed`, `cancelled`), each with `.download-status`,
//! `.download-cancel` (while running), `.download-link` (when done), `.chunk-map[data-done]`;
//! the newest also carries the fixed ids above. `#download-error` (input that is not a link or
//! id). `.share-box[data-share-url]` with `.copy-link[data-copied]` and `#share-url` (newest
//! upload). Storage and identity: `#tab-offer[data-offer-bytes][data-chosen]`, `#offer-input`,
//! `#offer-save`, `#offer-trim[data-dropped-chunks][data-still-over]`, `#tab-identity[data-slot]`.
//! `#/file/<id>` in the URL starts a download; `?relay=1` makes the tab use the tracker relay only;
//! `?relay_after=MS` sets how long a new link waits for its data channel before it also uses the
//! relay (default `swarm_core::peer::config::DIRECT_GRACE_MS`; `0`: relay at once, then upgrade).
//!
//! Build: `scripts/build-web.sh` (writes `dist/`; `trunk serve` while developing). Test in headless
//! Chromium: `CHROMEDRIVER=/usr/bin/chromedriver
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
//! cargo test -p browser-peer --target wasm32-unknown-unknown` (uses `webdriver.json`).

pub mod app;
pub mod clipboard;
pub mod failover;
pub mod hooks;
pub mod idb;
pub mod identity;
pub mod js_chunk;
pub mod leave;
pub mod node;
pub mod paths;
pub mod player;
pub mod private;
pub mod resume;
pub mod rtc;
pub mod state;
pub mod store;
pub mod stream;
pub mod tracker;
pub mod webkey;
