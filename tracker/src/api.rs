//! The REST API (JSON) over the swarm index, and the stats tests and operators read.

use crate::state::{AppState, Counters};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use swarm_core::FileId;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/stats", get(stats))
        .route("/api/files", get(files))
        .route("/api/files/{id}", get(file))
        .route("/api/search", get(search))
        .route("/api/peers", get(peers))
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let c = &state.counters;
    let inner = state.lock();
    Json(json!({
        "peers": inner.connected.len(),
        "files": inner.swarm.files().count(),
        "signals_relayed": inner.swarm.stats.signals_relayed,
        "errors_sent": inner.swarm.stats.errors_sent,
        "ws_connections_total": Counters::get(&c.ws_connections),
        "ws_messages_in": Counters::get(&c.ws_messages_in),
        "ws_messages_out": Counters::get(&c.ws_messages_out),
        "ws_bytes_in": Counters::get(&c.ws_bytes_in),
        "ws_bytes_out": Counters::get(&c.ws_bytes_out),
        "relay_bytes": 0,
    }))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    limit: Option<u32>,
}

async fn search(State(state): State<Arc<AppState>>, Query(q): Query<SearchQuery>) -> Json<serde_json::Value> {
    let inner = state.lock();
    let limit = q.limit.unwrap_or(50).min(swarm_core::swarm::MAX_SEARCH_RESULTS);
    Json(json!({ "files": inner.swarm.search(&q.q, limit) }))
}

async fn files(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let inner = state.lock();
    let files: Vec<_> = inner.swarm.files().map(|(id, rec)| inner.swarm.summary(id, rec)).collect();
    Json(json!({ "files": files }))
}

async fn file(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<FileId>() else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "file id must be 64 hex digits"}))).into_response();
    };
    let inner = state.lock();
    match inner.swarm.locate(0, &id) {
        Some(swarm_core::ServerMsg::Located { meta, manifest, peers, holders, .. }) => Json(json!({
            "id": id,
            "name": meta.name,
            "mime": meta.mime,
            "manifest": manifest,
            "peers": peers,
            "holders": holders,
        }))
        .into_response(),
        _ => (StatusCode::NOT_FOUND, Json(json!({"error": format!("no file {id}")}))).into_response(),
    }
}

async fn peers(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let inner = state.lock();
    let list: Vec<_> = inner
        .swarm
        .peers()
        .map(|(id, p)| json!({"id": id, "kind": p.kind, "joined_at_ms": p.joined_at_ms, "chunks": p.chunks.len()}))
        .collect();
    Json(json!({ "peers": list }))
}
