//! What a REST read costs the address that asks: every `/api/*` and `/metrics` request is admitted against
//! a read budget per address (at `--msg-bytes-per-sec-per-ip` with `--msg-burst-bytes`, the
//! rate its websocket messages have, in a bucket of their own) and then charged for the work it did, in the units of
//! `--search-bytes-per-file`: a handler names the entries it walked with [`ReadCost`] in its
//! response, and this layer takes them from the address's budget after the answer. A request
//! that arrives while the address is in debt is answered `429 Too Many Requests` with
//! `Retry-After` (whole seconds) before any work is done, so a crawler is held to the rate and
//! never gets a walk it has not paid for. Addresses exempt from limits (`--limit-exempt`,
//! loopback by default) are not charged.

use crate::app::AppState;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::net::SocketAddr;
use std::sync::Arc;
use swarm_core::api::ApiError;

/// What any request is charged before it is answered (about its header bytes).
pub const REQUEST_BYTES: u64 = 512;

/// Index entries a handler walked for its answer (a response extension).
#[derive(Debug, Clone, Copy)]
pub struct ReadCost(pub usize);

/// The admission and charge around every `/api/*` route.
pub async fn charge(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| state.config.trusted_proxies.client_ip(a.ip(), req.headers()));
    let Some(ip) = ip else { return next.run(req).await };
    if let Err(wait_ms) = state.admit_read(ip, REQUEST_BYTES, state.mono_ms()) {
        crate::driver::Counters::add(&state.counters.rate_limited, 1);
        let secs = wait_ms.div_ceil(1000).max(1);
        let body = ApiError { error: format!("too many requests from this address: retry in {secs} s") };
        let mut res = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return res;
    }
    let res = next.run(req).await;
    if let Some(ReadCost(entries)) = res.extensions().get::<ReadCost>() {
        let per_entry = state.config.limits.search_bytes_per_file;
        state.charge_read(ip, (*entries as u64).saturating_mul(per_entry), state.mono_ms());
    }
    res
}
