//! Serving the web app over real HTTP: compressed assets (brotli, gzip) chosen by
//! `Accept-Encoding` that decompress to the original, the cache rules (immutable only for
//! hashed names), `--web-dir` with precompressed files, the page of a tracker built without
//! the app, and `/healthz`, `/readyz`.

mod common;
use common::*;
use std::io::{Read, Write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

async fn get(host: &str, path: &str, accept_encoding: Option<&str>) -> Reply {
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let ae = accept_encoding.map(|a| format!("Accept-Encoding: {a}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{ae}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().into(), v.trim().into())).collect();
    Reply { status, headers, body: raw[split + 4..].to_vec() }
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096).read_to_end(&mut out).expect("valid brotli");
    out
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b).read_to_end(&mut out).expect("valid gzip");
    out
}

/// Asserts that `path` comes as brotli, gzip and plain, each equal to `raw` once decoded.
async fn assert_compressed(host: &str, path: &str, raw: &[u8]) {
    let br = get(host, path, Some("gzip, deflate, br")).await;
    assert_eq!(br.status, 200, "{path}");
    assert_eq!(br.header("content-encoding"), Some("br"), "{path}");
    assert!(br.header("vary").is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")), "{path}");
    assert!(br.body.len() < raw.len(), "{path}: brotli is smaller");
    assert_eq!(unbrotli(&br.body), raw, "{path}: brotli decodes to the original");
    let gz = get(host, path, Some("gzip")).await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"), "{path}");
    assert_eq!(gunzip(&gz.body), raw, "{path}: gzip decodes to the original");
    let plain = get(host, path, None).await;
    assert_eq!(plain.header("content-encoding"), None, "{path}");
    assert_eq!(plain.body, raw, "{path}");
}

fn compressible_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| b"peer pressure wasm "[i % 19] ^ ((i / 977) as u8 & 3)).collect()
}

#[tokio::test]
async fn web_dir_serves_precompressed_files_with_cache_rules() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = compressible_bytes(200_000);
    let name = "browser-peer-0123456789abcdef_bg.wasm";
    std::fs::write(dir.path().join("index.html"), b"<!doctype html><title>app</title>").unwrap();
    std::fs::write(dir.path().join(name), &wasm).unwrap();
    let mut br = Vec::new();
    brotli::CompressorWriter::new(&mut br, 4096, 9, 22).write_all(&wasm).unwrap();
    std::fs::write(dir.path().join(format!("{name}.br")), &br).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&wasm).unwrap();
    std::fs::write(dir.path().join(format!("{name}.gz")), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.path().join("sw.js"), b"self.addEventListener('fetch', () => {});").unwrap();
    let config = tracker::Config { web_dir: Some(dir.path().into()), ..Default::default() };
    let (_, host) = start(config).await;

    assert_compressed(&host, &format!("/{name}"), &wasm).await;
    let wasm_reply = get(&host, &format!("/{name}"), Some("br")).await;
    assert_eq!(wasm_reply.header("content-type"), Some("application/wasm"));
    assert_eq!(wasm_reply.header("cache-control"), Some("public, max-age=31536000, immutable"));
    for path in ["/", "/index.html", "/sw.js", "/some/page/route", "/missing-0123456789abcdef.js"] {
        let r = get(&host, path, Some("br")).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path} must not be cached for ever");
    }
}

#[tokio::test]
async fn embedded_app_comes_compressed_or_a_page_says_how_to_build_it() {
    let (_, host) = start(tracker::Config::default()).await;
    let index = get(&host, "/", None).await;
    assert_eq!(index.status, 200);
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    let html = String::from_utf8(index.body.clone()).unwrap();
    if !tracker::web::embedded() {
        assert!(html.contains("scripts/build-web.sh") && html.contains("/api/files"), "{html}");
        assert!(html.contains("--web-dir"), "{html}");
        let other = get(&host, "/%3Cscript%3Ealert(1)%3C/script%3E", None).await;
        assert_eq!(other.status, 404);
        let body = String::from_utf8_lossy(&other.body);
        assert!(!body.contains("alert(1)") && !body.contains("script%3E"), "nothing from the request: {body}");
        return;
    }
    assert_compressed(&host, "/", &index.body).await;
    // Every hashed asset index.html names: compressed when it is text or wasm, immutable.
    let names: Vec<&str> = html.split(['"', '\'']).filter(|w| w.ends_with(".js") || w.ends_with(".wasm")).collect();
    assert!(!names.is_empty(), "index.html names the app's files: {html}");
    for name in names {
        let path = if name.starts_with('/') { name.to_string() } else { format!("/{name}") };
        let plain = get(&host, &path, None).await;
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(plain.header("cache-control"), Some("public, max-age=31536000, immutable"), "{path}");
        assert_compressed(&host, &path, &plain.body).await;
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let data = tempfile::tempdir().unwrap();
    let config = tracker::Config { data_dir: Some(data.path().into()), ..Default::default() };
    let (_, host, server) = start_with(config, async move {
        let _ = stop_rx.await;
    })
    .await;
    assert_eq!(http_get(&host, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(http_get(&host, "/readyz").await, (200, "ready\n".into()));
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
