#!/usr/bin/env bash
# Builds the web app (browser-peer, Yew -> wasm) into dist/ with trunk.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/wasm-env.sh
trunk build --release "$@"
