#!/usr/bin/env bash
# Builds the web app (browser-peer, Yew -> wasm) into dist/ with trunk.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/wasm-env.sh
if [ -n "${CARGO_UNSTABLE_BUILD_STD:-}" ]; then
  # Debian route: the standard library's own dependencies must be fetched once, which
  # trunk's offline cargo call cannot do; this build also warms the cache trunk reuses.
  cargo build --profile wasm-release --target wasm32-unknown-unknown -p browser-peer --bin browser-peer
fi
trunk build --release "$@"
