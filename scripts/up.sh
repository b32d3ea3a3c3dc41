#!/usr/bin/env bash
# Sets up what running needs (scripts/setup.sh run: no browser, proxy or test tools), builds the
# web app, the tracker (with the app embedded) and pp-peer, in release, and starts a local swarm:
# the tracker serving the web app on http://127.0.0.1:${PP_PORT:-8080} and two native peers
# joined to it. Data lives under ${PP_DATA:-.pp-data}/. Runs until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PP_PORT:-8080}"
DATA="${PP_DATA:-.pp-data}"

# wasm-bindgen-cli (a minute of compiling on a fresh machine) is built in the web app's lane
# below, beside the native binaries, not before them.
PP_SETUP_BINDGEN=later scripts/setup.sh run
# The web app builds beside the release binaries (each build leaves a core idle in its serial
# stretches). The tracker's crate embeds dist/, so its build script waits for the web build
# (PP_WEB_PENDING, tracker/build.rs) while pp-peer and the tracker's dependencies compile: the
# tracker is built once, with the app in it.
mkdir -p target
pending="$PWD/target/.web-pending"
touch "$pending"
# A new dist/ gets the pending file's time, from before cargo started: cargo compares the files
# the build script watches with when it started it (early, to wait), and would otherwise
# rebuild the tracker on the next run.
(trap 'rm -f "$pending"' EXIT; scripts/setup.sh bindgen && scripts/build-web.sh && find dist -newer "$pending" -exec touch -r "$pending" {} +) &
web=$!
PP_WEB_PENDING="$pending" cargo build --release -p tracker -p native-peer --bin pp-tracker --bin pp-peer &
native=$!
trap 'kill "$web" "$native" 2>/dev/null || true; rm -f "$pending"' EXIT
wait "$web" || { echo "up: the web app did not build (above)" >&2; exit 1; }
wait "$native"
mkdir -p "$DATA"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

target/release/pp-tracker --listen "127.0.0.1:$PORT" --data-dir "$DATA/tracker" >"$DATA/tracker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$PORT/api/stats" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/api/stats" >/dev/null || { echo "tracker did not start; see $DATA/tracker.log" >&2; exit 1; }
for n in 1 2; do
  target/release/pp-peer --tracker "ws://127.0.0.1:$PORT/ws" --data-dir "$DATA/peer$n" run >"$DATA/peer$n.log" 2>&1 &
  pids+=($!)
done
sleep 1
echo
echo "Peer Pressure is up: open http://127.0.0.1:$PORT"
echo "  tracker log: $DATA/tracker.log   native peers: $DATA/peer1, $DATA/peer2"
echo "  try: target/release/pp-peer --data-dir $DATA/peer1 put FILE"
echo "Ctrl-C stops everything."
wait
