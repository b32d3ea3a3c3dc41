//! Embeds the built web app (trunk's `dist/`) into the tracker binary when it exists, so one
//! process serves a whole deployment. Without `dist/` the tracker still builds; it then serves
//! a page that says how to build the app, unless given `--web-dir` (build the app first with
//! `scripts/build-web.sh`). `PP_WEB_DIST` points at another directory.
//!
//! Text and wasm assets are also compressed here, once, with brotli (quality 11) and gzip
//! (level 9), so the tracker answers `Accept-Encoding` with no work per request; a
//! compressed copy is kept only when it is smaller. `.br` and `.gz` files already in `dist/`
//! are not embedded as assets of their own.
//!
//! `PP_WEB_PENDING` names a file that exists while the web app is still being built beside this
//! build (scripts/up.sh): the script waits until it is gone (at most 30 minutes, and not past cargo's end), so the rest
//! of the native build runs meanwhile and the tracker's crate is compiled once, with the app.
//! It is only a rendezvous, not an input: changing it reruns nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.is_file() && !matches!(p.extension().and_then(|e| e.to_str()), Some("br" | "gz")) {
            out.push(p);
        }
    }
}

/// Whether a file of this name is worth compressing (images and fonts are compressed already).
fn compressible(name: &str) -> bool {
    matches!(
        name.rsplit_once('.').map(|(_, e)| e),
        Some("html" | "js" | "mjs" | "css" | "wasm" | "svg" | "json" | "txt" | "map" | "webmanifest")
    )
}

fn brotli(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 11, lgwin: 24, ..Default::default() };
    brotli::BrotliCompress(&mut &raw[..], &mut out, &params).expect("brotli into memory");
    out
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(raw).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// The process that started this one (cargo), where the platform says.
fn parent() -> Option<u32> {
    #[cfg(unix)]
    return Some(std::os::unix::process::parent_id());
    #[cfg(not(unix))]
    None
}

/// Waits while the web app is being built beside this build (see the module doc).
fn wait_for_web_build() {
    let Some(pending) = std::env::var_os("PP_WEB_PENDING").map(PathBuf::from) else { return };
    let (start, cargo) = (std::time::Instant::now(), parent());
    // Not past cargo's end either (an interrupted scripts/up.sh).
    while pending.exists() && start.elapsed() < std::time::Duration::from_secs(30 * 60) && parent() == cargo {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn main() {
    wait_for_web_build();
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let dist = std::env::var_os("PP_WEB_DIST").map(PathBuf::from).unwrap_or_else(|| manifest.join("../dist"));
    println!("cargo:rerun-if-env-changed=PP_WEB_DIST");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        walk(&dist, &mut files);
        files.sort();
    }
    let packed = out_dir.join("web");
    let _ = std::fs::remove_dir_all(&packed);
    std::fs::create_dir_all(&packed).expect("create OUT_DIR/web");
    let mut code =
        String::from("/// The web app's files (paths relative to dist/).\npub static ASSETS: &[Asset] = &[\n");
    for (i, f) in files.iter().enumerate() {
        println!("cargo:rerun-if-changed={}", f.display());
        let rel = f.strip_prefix(&dist).expect("under dist").to_string_lossy().replace('\\', "/");
        let abs = f.canonicalize().expect("file exists");
        let raw = std::fs::read(&abs).expect("read a dist file");
        let variant = |ext: &str, bytes: Vec<u8>| -> String {
            if !compressible(&rel) || bytes.len() >= raw.len() {
                return "None".into();
            }
            let p = packed.join(format!("{i}.{ext}"));
            std::fs::write(&p, bytes).expect("write a compressed asset");
            format!("Some(include_bytes!({:?}))", p.to_string_lossy())
        };
        let (br, gz) = if compressible(&rel) { (brotli(&raw), gzip(&raw)) } else { (Vec::new(), Vec::new()) };
        let br = variant("br", br);
        let gz = variant("gz", gz);
        code.push_str(&format!(
            "    Asset {{ path: {rel:?}, raw: include_bytes!({:?}), br: {br}, gzip: {gz} }},\n",
            abs.to_string_lossy()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("web_assets.rs"), code).expect("write web_assets.rs");
}
