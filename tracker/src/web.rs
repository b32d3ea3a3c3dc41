//! Serves the web app: from the bundle embedded at build time (see `build.rs`), or from a
//! directory given with `--web-dir` (useful while developing the page). Unknown paths get
//! `index.html`, so the page's own routes (`/#/file/<id>`) work from any URL.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// Whether a web app was embedded into this binary.
pub fn embedded() -> bool {
    embedded::ASSETS.iter().any(|(p, _)| *p == "index.html")
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The fallback handler serving the embedded bundle.
pub async fn serve_embedded(uri: Uri) -> Response {
    let wanted = uri.path().trim_start_matches('/');
    let (path, bytes) = embedded::ASSETS
        .iter()
        .find(|(p, _)| *p == wanted)
        .or_else(|| embedded::ASSETS.iter().find(|(p, _)| *p == "index.html"))
        .copied()
        .unwrap_or(("", b""));
    if path.is_empty() {
        return (StatusCode::NOT_FOUND, "no web app in this build").into_response();
    }
    // Trunk names assets by content hash: they never change. The page itself always may.
    let cache = if path == "index.html" { "no-cache" } else { "public, max-age=31536000, immutable" };
    let mut resp = Response::new(Body::from(bytes));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn wasm_is_served_as_wasm() {
        assert_eq!(content_type("app_bg.wasm"), "application/wasm");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("weird"), "application/octet-stream");
    }
}
