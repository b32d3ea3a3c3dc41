//! The tracker's HTTP face: the server with its connection caps and time-outs ([`server`],
//! [`crate::net::conns`]), the router ([`router`]), the REST API ([`api`]), figures for `/api/stats` and
//! `/metrics` ([`metrics`], [`process_metrics`]), what a read costs its address
//! ([`read_charge`]), and the web app's files ([`web`]). The websocket upgrade at `/ws` hands
//! the connection to [`crate::transport::ws`].

pub mod api;
pub mod metrics;
pub mod process_metrics;
pub mod read_charge;
pub mod server;
pub mod web;

use crate::app::AppState;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tower_http::services::{ServeDir, ServeFile};

/// Builds the HTTP router over shared state.
pub fn router(state: Arc<AppState>) -> Router {
    let app = Router::new()
        .route("/ws", get(crate::transport::ws::upgrade))
        .route(
            "/metrics",
            get(metrics::metrics).route_layer(axum::middleware::from_fn_with_state(state.clone(), read_charge::charge)),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(api::routes(state.clone()))
        .with_state(state.clone());
    match &state.config.web_dir {
        Some(dir) => {
            let index = ServeFile::new(dir.join("index.html")).precompressed_br().precompressed_gzip();
            let files = ServeDir::new(dir).precompressed_br().precompressed_gzip().fallback(index);
            let dir = dir.clone();
            let headers = axum::middleware::from_fn(move |req, next| web::dir_headers(dir.clone(), req, next));
            app.fallback_service(Router::new().fallback_service(files).layer(headers))
        }
        // The embedded app, or the page that says how to build one.
        None => app.fallback(web::serve_embedded),
    }
}

/// `/readyz`: 200 while the tracker accepts peers with its index open; 503 once it is
/// shutting down. (`/healthz` answers while the process serves HTTP at all.)
async fn readyz(axum::extract::State(state): axum::extract::State<Arc<AppState>>) -> (StatusCode, &'static str) {
    let index_open = state.config.data_dir.is_none() || state.index.is_some() || state.cluster.is_some();
    let nats_up =
        state.cluster.as_ref().is_none_or(|c| c.client.connection_state() == async_nats::connection::State::Connected);
    if *state.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if !nats_up {
        (StatusCode::SERVICE_UNAVAILABLE, "not connected to the cluster's NATS servers\n")
    } else if *state.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if !index_open {
        (StatusCode::SERVICE_UNAVAILABLE, "file index not open\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
