//! The REST API (JSON) over the swarm index: files (paginated), one file with its holders and
//! replication health, search, peers, and swarm-wide stats. In a cluster, search and one
//! file are asked of every node; the file list, peers and stats are this node's. Bad ids get 400, unknown ones
//! 404, always with a JSON `{"error": ...}` body.

use crate::app::AppState;
use crate::cluster::msg::{Answer, Query as NodeQuery};
use crate::cluster::route::QUERY_WAIT;
use crate::driver::now_ms;
use crate::http::metrics;
use crate::http::read_charge::ReadCost;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use swarm_core::api::{ApiError, FileDetail, FilesPage, PeerInfo, PeersAnswer, SearchAnswer, Stats, MAX_HOLDERS_PAGE};
use swarm_core::swarm::MAX_SEARCH_RESULTS;
use swarm_core::FileId;

/// Longest page of `/api/files`.
pub const MAX_PAGE: usize = 500;

/// The REST routes, each admitted and charged per address ([`crate::http::read_charge`]).
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/stats", get(stats))
        .route("/api/files", get(files))
        .route("/api/files/{id}", get(file))
        .route("/api/search", get(search))
        .route("/api/peers", get(peers))
        .route("/api/cluster", get(cluster))
        .route_layer(axum::middleware::from_fn_with_state(state, crate::http::read_charge::charge))
}

/// `answer` with the index entries walked for it (what the asker is charged).
fn charged(answer: impl IntoResponse, entries: usize) -> Response {
    let mut res = answer.into_response();
    res.extensions_mut().insert(ReadCost(entries));
    res
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ApiError { error: message.into() })).into_response()
}

/// A count as the API sends it (saturating: no file has 2^32 chunks).
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

async fn stats(State(state): State<Arc<AppState>>) -> Response {
    let (stats, figures): (Stats, _) = metrics::stats(&state).await;
    charged(Json(stats), figures.walked)
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    limit: Option<u32>,
}

async fn search(State(state): State<Arc<AppState>>, q: Result<Query<SearchQuery>, QueryRejection>) -> Response {
    let Ok(Query(q)) = q else { return error(StatusCode::BAD_REQUEST, "expected ?q=text&limit=n") };
    let limit = q.limit.unwrap_or(50).min(MAX_SEARCH_RESULTS);
    if let Some(cluster) = &state.cluster {
        let files = crate::cluster::route::search(cluster, q.q.clone(), limit).await;
        // Every node searched its own shards: charged as if this node's every file was looked at.
        let (replication, entries) = {
            let core = state.core();
            (core.swarm().config.replication, core.swarm().file_count())
        };
        return charged(Json(SearchAnswer { query: q.q, replication: count(replication), files }), entries);
    }
    let ((files, entries), replication) = {
        let core = state.core();
        (core.swarm().search_counted(&q.q, limit), core.swarm().config.replication)
    };
    charged(Json(SearchAnswer { query: q.q, replication: count(replication), files }), entries)
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

async fn files(State(state): State<Arc<AppState>>, page: Result<Query<Page>, QueryRejection>) -> Response {
    let Ok(Query(page)) = page else { return error(StatusCode::BAD_REQUEST, "expected ?offset=n&limit=n") };
    let limit = page.limit.unwrap_or(50).min(MAX_PAGE);
    let core = state.core();
    let s = core.swarm();
    // Files with a chunk nobody holds are not listed (still there by id until they expire).
    // One walk gives the page and the total.
    let (mut files, mut total) = (Vec::new(), 0usize);
    for (id, rec) in s.listed_files() {
        if total >= page.offset && files.len() < limit {
            files.push(s.summary(id, rec));
        }
        total += 1;
    }
    // The walk looked at every file and, for its availability, at up to every chunk of each:
    // charged as such.
    let walked = s.file_count() + s.manifest_chunk_count();
    drop(core);
    let (total, offset, limit) = (total as u64, page.offset as u64, limit as u64);
    charged(Json(FilesPage { total, offset, limit, files }), walked)
}

/// Entries a file's detail walks: its chunks four times (who holds each, and its verified,
/// claimed and staying copies) and its holders.
fn detail_walk(d: &FileDetail) -> usize {
    4 * d.manifest.chunks.len() + d.peers.len()
}

/// `/api/files/{id}?offset=&limit=`: a file, its replication health, and the holders of a page
/// of its chunks (from chunk `offset`, at most `limit`, [`MAX_HOLDERS_PAGE`] at most and by
/// default).
async fn file(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
) -> Response {
    let Ok(id) = id.parse::<FileId>() else {
        return error(StatusCode::BAD_REQUEST, "file id must be 64 hex digits");
    };
    let Ok(Query(page)) = page else { return error(StatusCode::BAD_REQUEST, "expected ?offset=n&limit=n") };
    let (offset, limit) = (page.offset, page.limit.unwrap_or(MAX_HOLDERS_PAGE));
    let answer = |d: FileDetail| {
        let walked = detail_walk(&d);
        charged(Json(d.page_holders(offset, limit)), walked)
    };
    if let Some(cluster) = &state.cluster {
        // Kept by the node that owns its shard: ask them all.
        let answers = cluster.ask_all(&NodeQuery::Detail { file: id }, QUERY_WAIT).await;
        return match answers.into_iter().find_map(|a| match a {
            Answer::Detail { detail } => Some(detail),
            _ => None,
        }) {
            Some(d) => answer(*d),
            // In the cluster's index, but no node answered for it: its shard is between nodes
            // (or its node is slow), which is not "no such file".
            None if cluster.index().contains_file(&id) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "file {id} is published, but no tracker node keeps it right now (its shard is moving); try again"
                ),
            ),
            None => error(StatusCode::NOT_FOUND, format!("no file {id}")),
        };
    }
    let detail = state.core().swarm().file_detail(&id);
    match detail {
        Some(d) => answer(d),
        None => error(StatusCode::NOT_FOUND, format!("no file {id}")),
    }
}

/// Peers a page of `/api/peers` has when the asker does not say.
pub const PEERS_PAGE: usize = 100;

/// `/api/peers?offset=&limit=`: a page of the live peers in the order of their ids
/// ([`PEERS_PAGE`] by default, [`MAX_PAGE`] at most). Every open page polls it: the whole list
/// at 18,000 peers was about 3 MB a poll per tab.
async fn peers(State(state): State<Arc<AppState>>, page: Result<Query<Page>, QueryRejection>) -> Response {
    let Ok(Query(page)) = page else { return error(StatusCode::BAD_REQUEST, "expected ?offset=n&limit=n") };
    let limit = page.limit.unwrap_or(PEERS_PAGE).min(MAX_PAGE);
    let core = state.core();
    let now = now_ms();
    let default_capacity = core.swarm().config.default_capacity;
    let mut all: Vec<_> = core.swarm().peers().collect();
    let total = all.len();
    // The page's peers by id: the first offset + limit in order, without sorting the rest.
    let end = page.offset.saturating_add(limit).min(total);
    if end > 0 && end < total {
        all.select_nth_unstable_by(end - 1, |a, b| a.0.cmp(b.0));
        all.truncate(end);
    }
    all.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let peers: Vec<PeerInfo> = all
        .into_iter()
        .skip(page.offset)
        .map(|(id, p)| PeerInfo {
            id: id.clone(),
            kind: p.kind,
            joined_at_ms: p.joined_at_ms,
            uptime_secs: now.saturating_sub(p.joined_at_ms) / 1000,
            chunks: p.chunks.len() as u64,
            storage_used: p.used,
            storage_capacity: p.capacity,
            storage_free: p.free(default_capacity),
            orders_in_flight: p.orders as u64,
            leaving: p.leaving,
        })
        .collect();
    drop(core);
    let (offset, limit) = (page.offset as u64, limit as u64);
    charged(Json(PeersAnswer { total: total as u64, offset, limit, peers }), total)
}

/// `/api/cluster`: this node, the live nodes, and which node keeps each shard.
async fn cluster(State(state): State<Arc<AppState>>) -> Response {
    let Some(c) = &state.cluster else {
        return error(StatusCode::NOT_FOUND, "this tracker is not part of a cluster (see --cluster)");
    };
    let here = state.core().peer_count();
    let (nodes, owned, owners, connected) = {
        let m = c.machine();
        let now = c.now_ms();
        let mut nodes = vec![serde_json::json!({"node": c.tag, "url": c.config.public_url, "peers": here})];
        nodes.extend(m.others(now).map(|(t, m)| serde_json::json!({"node": t, "url": m.url, "peers": m.peers})));
        (nodes, m.kept(now), m.owners(now), m.connected(now))
    };
    Json(serde_json::json!({
        "node": c.tag,
        "url": c.config.public_url,
        "connected": connected,
        "shards": c.config.shards,
        "owned": owned,
        "owners": owners,
        "members": nodes,
    }))
    .into_response()
}
