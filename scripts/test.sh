#!/usr/bin/env bash
# Sets up whatever is missing, checks formatting, lints (clippy, warnings denied) and tidiness,
# builds everything (the web app too) and runs every test:
# unit and property tests, integration tests against real trackers and peers, wasm tests in
# headless Chromium, and the browser end-to-end tests. Screenshots and logs of the end-to-end
# tests land in target/e2e-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n\033[1;32m== %s\033[0m\n' "$*"; }

step "setup"
scripts/setup.sh

step "tidy: formatting, tidy tests, clippy (native and wasm32)"
# Cheapest first. The tidy crate checks the code base itself (module docs, paths named in
# docs): see tidy/src/lib.rs.
cargo fmt --all --check
cargo test -p tidy
cargo clippy --workspace --all-targets -- -D warnings
# The browser peer again as it ships, on wasm32 (wasm-bindgen expands differently there, and
# usize is 32 bits), with the same toolchain as the wasm build.
(
  source scripts/wasm-env.sh
  cargo clippy -p browser-peer --all-targets --target wasm32-unknown-unknown -- -D warnings
)

step "build: web app (dist/)"
scripts/build-web.sh

step "build: native binaries"
cargo build --bins

step "native tests: unit, property, simulation, integration"
cargo test --workspace --exclude e2e --exclude browser-peer -- --test-threads=2
# The browser peer's pure logic (paths, relay-then-upgrade, page state) runs natively too.
cargo test -p browser-peer --lib

step "end-to-end tests: real tracker, native peers, headless Chromium, network namespaces"
# One at a time: each starts several processes (and browsers) on a 2-core machine. Every
# file runs even after a failure, so one run reports every failing test.
cargo test -p e2e --no-fail-fast -- --test-threads=1

step "wasm tests in headless Chromium"
(
  source scripts/wasm-env.sh
  export CHROMEDRIVER=/usr/bin/chromedriver
  export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
  export WASM_BINDGEN_TEST_TIMEOUT=120
  cd browser-peer && cargo test --target wasm32-unknown-unknown
)
step "all tests passed"
