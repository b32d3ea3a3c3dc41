#!/usr/bin/env bash
# Builds the web app (browser-peer, Yew -> wasm) into dist/ with cargo and wasm-bindgen alone,
# as trunk would (trunk itself stays the tool for `trunk serve` while developing: Trunk.toml):
#   1. cargo builds browser-peer for wasm32 in the size-tuned wasm-release profile;
#   2. wasm-bindgen (the CLI matching the pinned crate, scripts/setup.sh) writes the JS glue;
#   3. scripts/lib/web-dist.py names the JS, wasm and CSS by their content (`name-<hash>`: the
#      tracker caches such files for ever, tracker/src/http/web.rs), writes index.html from
#      static/index.html with the loader, and copies sw.js as it is.
# Why not trunk here: installing it is `cargo install trunk`, about 8 minutes on this project's
# machines, for what is these three steps. dist/ is replaced whole, only once the build worked.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/wasm-env.sh
WB_VERSION=$(sed -n 's/^wasm-bindgen = { version = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
  echo "build-web: needs wasm-bindgen-cli $WB_VERSION (scripts/setup.sh run installs it)" >&2
  exit 1
fi
command -v python3 >/dev/null || { echo "build-web: needs python3" >&2; exit 1; }
cargo build --profile wasm-release --target wasm32-unknown-unknown -p browser-peer --bin browser-peer
TARGET_DIR=${CARGO_TARGET_DIR:-target}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
wasm-bindgen --target web --no-typescript --out-dir "$stage/bindgen" --out-name browser-peer \
  "$TARGET_DIR/wasm32-unknown-unknown/wasm-release/browser-peer.wasm"
python3 scripts/lib/web-dist.py "$stage/bindgen" static "$stage/dist"
# The same app as before leaves dist/ as it is: the tracker's build script watches dist/, and a
# new dist/ (new mtimes) would recompile the tracker on every scripts/up.sh.
if ! diff -rq "$stage/dist" dist >/dev/null 2>&1; then
  rm -rf dist.old
  [ ! -e dist ] || mv dist dist.old
  mv "$stage/dist" dist
  rm -rf dist.old
fi
echo "build-web: dist/ ($(du -sh dist | cut -f1))"
