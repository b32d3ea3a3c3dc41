//! Serves the web app: from the bundle embedded at build time (see `build.rs`), or from a
//! directory given with `--web-dir` (useful while developing the page). Unknown paths get
//! `index.html`, so the page's own routes (`/#/file/<id>`) work from any URL.
//!
//! - **Compression**: the embedded bundle carries brotli and gzip copies made at build time;
//!   the one the client's `Accept-Encoding` prefers is sent with `Content-Encoding`, and
//!   `Vary: Accept-Encoding` on every asset that has copies. `--web-dir` serves `NAME.br` /
//!   `NAME.gz` beside a file the same way when they exist.
//! - **Caching**: only names trunk made from the content (`app-<hash>.js`,
//!   `app-<hash>_bg.wasm`) are `immutable`; `index.html` and every other name (a service
//!   worker `sw.js` among them) is `no-cache`, so a new build is seen at once.
//! - **No app built in**: a static page at `/` says how to build it and where the API is.
//! - **Content Security Policy**: every page is served with [`csp`]: scripts only from this
//!   origin and the exact inline loader trunk writes into `index.html` (by its SHA-256), wasm
//!   compiled (`'wasm-unsafe-eval'`), connections to this origin and to `ws:`/`wss:` trackers,
//!   no plugins, and `frame-ancestors 'none'` (with `X-Frame-Options: DENY` for old browsers)
//!   so no other site can frame the app.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

/// The inline `<script>` blocks of a page (those without `src`), as written.
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else { break };
        let tag = &after[..open_end];
        let body = &after[open_end + 1..];
        let Some(close) = body.find("</script") else { break };
        if !tag.contains(" src=") {
            out.push(&body[..close]);
        }
        rest = &body[close..];
    }
    out
}

/// The Content-Security-Policy of the web app whose `index.html` is `index`.
pub fn csp(index: &str) -> String {
    let hashes: String = inline_scripts(index)
        .iter()
        .map(|s| {
            format!(" 'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s.as_bytes())))
        })
        .collect();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss: blob:; worker-src 'self' blob:; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The policy of the page shown when no app is built in (no script at all).
const NO_APP_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";
/// For everything that is not a page: no framing.
const NO_FRAMING: &str = "frame-ancestors 'none'";

/// Adds the security headers: `csp` on an HTML page, no framing on anything.
fn secure(h: &mut HeaderMap, csp: impl FnOnce() -> String) {
    let html = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("text/html"));
    let policy = if html { csp() } else { NO_FRAMING.to_string() };
    if let Ok(v) = HeaderValue::from_str(&policy) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// [`csp`] of the embedded app, computed once.
fn embedded_csp() -> String {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let index = embedded::ASSETS.iter().find(|a| a.path == "index.html");
        csp(&index.map(|a| String::from_utf8_lossy(a.raw).into_owned()).unwrap_or_default())
    })
    .clone()
}

/// One file of the web app, with its compressed copies (when they are smaller).
pub struct Asset {
    pub path: &'static str,
    pub raw: &'static [u8],
    pub br: Option<&'static [u8]>,
    pub gzip: Option<&'static [u8]>,
}

mod embedded {
    use super::Asset;
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// Whether a web app was embedded into this binary.
pub fn embedded() -> bool {
    embedded::ASSETS.iter().any(|a| a.path == "index.html")
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

/// Whether trunk named this file by its content (`name-<hex hash>[_bg].ext`): such a file
/// never changes under its name.
pub fn is_hashed(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    let Some((stem, _ext)) = file.rsplit_once('.') else { return false };
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    let Some((_, hash)) = stem.rsplit_once('-') else { return false };
    hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The `Cache-Control` for a file served under `path`.
pub fn cache_control(path: &str) -> &'static str {
    if is_hashed(path) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    }
}

/// A content coding the client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Br,
    Gzip,
    Identity,
}

/// The coding to send, given `Accept-Encoding` and which copies exist: brotli before gzip,
/// each only when accepted with a non-zero q (directly or through `*`).
pub fn choose(accept: Option<&str>, br: bool, gzip: bool) -> Coding {
    let Some(accept) = accept else { return Coding::Identity };
    let q = |name: &str| -> Option<f32> {
        let mut star = None;
        for part in accept.split(',') {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or("").trim();
            let q =
                it.find_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.trim().parse::<f32>().ok())).unwrap_or(1.0);
            if coding.eq_ignore_ascii_case(name) {
                return Some(q);
            }
            if coding == "*" {
                star = Some(q);
            }
        }
        star
    };
    if br && q("br").is_some_and(|q| q > 0.0) {
        Coding::Br
    } else if gzip && q("gzip").is_some_and(|q| q > 0.0) {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// The response for one asset, compressed as the request accepts.
pub fn asset_response(asset: &Asset, request: &HeaderMap) -> Response {
    let accept = request.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok());
    let (body, coding) = match choose(accept, asset.br.is_some(), asset.gzip.is_some()) {
        Coding::Br => (asset.br.unwrap_or(asset.raw), Some("br")),
        Coding::Gzip => (asset.gzip.unwrap_or(asset.raw), Some("gzip")),
        Coding::Identity => (asset.raw, None),
    };
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(asset.path)));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control(asset.path)));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if asset.br.is_some() || asset.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Some(c) = coding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    secure(h, embedded_csp);
    resp
}

/// The fallback handler serving the embedded bundle (or, without one, the page that says how
/// to build it).
pub async fn serve_embedded(uri: Uri, headers: HeaderMap) -> Response {
    let wanted = uri.path().trim_start_matches('/');
    let assets = embedded::ASSETS;
    let found = assets.iter().find(|a| a.path == wanted).or_else(|| assets.iter().find(|a| a.path == "index.html"));
    match found {
        Some(asset) => asset_response(asset, &headers),
        None => no_app(&uri),
    }
}

/// The page a tracker built without the web app shows: static text, nothing from the request.
const NO_APP_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Peer Pressure tracker</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; line-height: 1.5">
<h1>Peer Pressure tracker</h1>
<p>This tracker is running, but it was built without the web app.</p>
<h2>Add the web app</h2>
<ul>
<li>Build it with <code>scripts/build-web.sh</code> (writes <code>dist/</code>), then rebuild the tracker
(<code>cargo build --release -p tracker</code>): the app is embedded at build time.</li>
<li>Or serve a built app from a directory: <code>pp-tracker --web-dir dist</code>.</li>
</ul>
<h2>What works without it</h2>
<ul>
<li>Native peers: <code>pp-peer --tracker ws://HOST:PORT/ws run</code>, then <code>put</code>, <code>get</code>, <code>search</code>.</li>
<li>The API: <a href="/api/files">/api/files</a>, <a href="/api/stats">/api/stats</a>, <a href="/api/peers">/api/peers</a>,
<code>/api/search?q=</code>, <a href="/metrics">/metrics</a>, <a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a>; peers connect at <code>/ws</code>.</li>
</ul>
</body>
</html>
"#;

fn no_app(uri: &Uri) -> Response {
    let status = if matches!(uri.path(), "/" | "/index.html") { StatusCode::OK } else { StatusCode::NOT_FOUND };
    let mut resp = (status, Html(NO_APP_PAGE)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(resp.headers_mut(), || NO_APP_CSP.to_string());
    resp
}

/// Middleware for `--web-dir`: the cache rule above (`immutable` only for a hashed name that
/// exists as a file in `dir`, so the index served for an unknown path is never cached),
/// `Vary: Accept-Encoding` on compressible files, and the security headers (the CSP from
/// `dir/index.html` as it is now: the directory is for page development).
pub async fn dir_headers(dir: PathBuf, req: Request, next: Next) -> Response {
    let path = req.uri().path().trim_start_matches('/').to_string();
    let mut resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    let safe = Path::new(&path).components().all(|c| matches!(c, Component::Normal(_)));
    let exists = safe && !path.is_empty() && dir.join(&path).is_file();
    let cache = if exists { cache_control(&path) } else { "no-cache" };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let compressible = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| {
        t.starts_with("text/") || t.contains("javascript") || t.contains("wasm") || t.contains("json")
    });
    if compressible && !h.contains_key(header::VARY) {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    secure(h, || csp(&std::fs::read_to_string(dir.join("index.html")).unwrap_or_default()));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasm_is_served_as_wasm() {
        assert_eq!(content_type("app_bg.wasm"), "application/wasm");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("weird"), "application/octet-stream");
    }

    #[test]
    fn only_hashed_names_are_immutable() {
        assert!(is_hashed("browser-peer-72cf03c0b95525d2_bg.wasm"));
        assert!(is_hashed("browser-peer-72cf03c0b95525d2.js"));
        assert!(is_hashed("style-45ad655b9938a6e.css"), "trunk's css hash may be 15 digits");
        for unhashed in ["index.html", "sw.js", "browser-peer.js", "my-file.css", "a-b-c.wasm", "favicon.ico"] {
            assert!(!is_hashed(unhashed), "{unhashed}");
            assert_eq!(cache_control(unhashed), "no-cache");
        }
    }

    #[test]
    fn without_the_app_a_static_page_says_how_to_build_it() {
        let home = no_app(&Uri::from_static("/"));
        assert_eq!(home.status(), StatusCode::OK);
        assert_eq!(home.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(NO_APP_PAGE.contains("scripts/build-web.sh") && NO_APP_PAGE.contains("/api/files"));
        assert_eq!(no_app(&Uri::from_static("/x%3Cb%3E")).status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_loader() {
        let page = "<html><head><script type=\"module\">import init from '/app.js';\nawait init();</script>\
                    <script src=\"/x.js\"></script><script>b()</script></head></html>";
        assert_eq!(inline_scripts(page), ["import init from '/app.js';\nawait init();", "b()"]);
        let p = csp(page);
        let h = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"b()"));
        assert!(p.contains(&format!("'sha256-{h}'")), "{p}");
        assert_eq!(p.matches("'sha256-").count(), 2);
        for part in
            ["script-src 'self' 'wasm-unsafe-eval'", "frame-ancestors 'none'", "connect-src 'self' ws: wss: blob:"]
        {
            assert!(p.contains(part), "{part} in {p}");
        }
        assert!(!p.contains("'unsafe-inline' 'wasm") && !p.contains("script-src 'self' 'unsafe-inline'"));
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/wasm"));
        secure(&mut h, || unreachable!("not a page"));
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], NO_FRAMING);
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(no_app(&Uri::from_static("/")).headers()[header::CONTENT_SECURITY_POLICY], NO_APP_CSP);
    }

    #[test]
    fn brotli_before_gzip_when_accepted() {
        assert_eq!(choose(Some("gzip, deflate, br, zstd"), true, true), Coding::Br);
        assert_eq!(choose(Some("gzip"), true, true), Coding::Gzip);
        assert_eq!(choose(Some("br;q=0, gzip;q=0.5"), true, true), Coding::Gzip);
        assert_eq!(choose(Some("br"), false, true), Coding::Identity);
        assert_eq!(choose(Some("*"), true, true), Coding::Br);
        assert_eq!(choose(Some("identity"), true, true), Coding::Identity);
        assert_eq!(choose(None, true, true), Coding::Identity);
    }

    #[test]
    fn responses_name_their_coding_and_vary() {
        let asset = Asset { path: "app-0123456789abcdef_bg.wasm", raw: b"raw", br: Some(b"b"), gzip: Some(b"g") };
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let r = asset_response(&asset, &h);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers()[header::VARY], "accept-encoding");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
        let r = asset_response(&asset, &HeaderMap::new());
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
    }
}
