#!/usr/bin/env bash
# Sets up whatever is missing, checks formatting, lints (clippy, warnings denied) and tidiness,
# builds everything (the web app too) and runs every test:
# unit and property tests, integration tests against real trackers and peers, wasm tests in
# headless Chromium, and the browser end-to-end tests. Screenshots and logs of the end-to-end
# tests land in target/e2e-artifacts/. Ends with a table of the time of every step and of every
# end-to-end test file (also when a step fails).
#
# One build per profile and target, shared by clippy and the tests: the workspace's crates are
# compiled by clippy-driver (RUSTC_WORKSPACE_WRAPPER, as `cargo clippy` does), so the build that
# the tests run from is also the lint, and every later cargo command here selects the same
# packages (`--workspace`), so cargo resolves the same features and rebuilds nothing. The
# end-to-end test binaries run as built (one call per file), for the same reason.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- timing table ---------------------------------------------------------------------------
ROWS=()      # "label<TAB>seconds<TAB>result<TAB>load"
FAILED=()    # what failed without stopping the run (end-to-end files, wasm tests)
T_START=$EPOCHREALTIME
# Runs "$@", records its time under label $1's name; returns its status.
timed() {
  local label=$1 t0=$EPOCHREALTIME rc=0
  shift
  "$@" || rc=$?
  local secs
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
  ROWS+=("$label"$'\t'"$secs"$'\t'"$([ $rc = 0 ] && echo ok || echo "FAILED ($rc)")"$'\t'"$(cut -d' ' -f1 /proc/loadavg)")
  return $rc
}
# A step: a header, then timed. A failing step ends the run (set -e), with the table.
step() {
  printf '\n\033[1;32m== %s\033[0m\n' "$1"
  timed "$@"
}
# The table, then exit with the run's status ($1, else the last command's).
table() {
  local rc=${1:-$?}
  local total
  total=$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
  printf '\n\033[1;34m== times (s; load: the 1-minute load average when the step ended, %s cores)\033[0m\n' "$(nproc)"
  printf '%-46s %6s  %-12s %s\n' "step / end-to-end file" "secs" "result" "load"
  local r
  for r in "${ROWS[@]}"; do
    IFS=$'\t' read -r label secs result load <<<"$r"
    printf '%-46s %6s  %-12s %s\n' "$label" "$secs" "$result" "$load"
  done
  printf '%-46s %6s\n' "total" "$total"
  if [ ${#FAILED[@]} -gt 0 ]; then
    printf '\n\033[1;31mfailed: %s\033[0m\n' "${FAILED[*]}"
  fi
  exit $rc
}
trap table EXIT

# --- steps ----------------------------------------------------------------------------------
# cargo-deny is installed (once, minutes of compiling) in the background lane below, not here.
step "setup" env PP_SETUP_DENY=later scripts/setup.sh

step "fmt" cargo fmt --all --check

# clippy-driver compiles the workspace's crates (lints denied as warnings, like
# `cargo clippy -- -D warnings`); dependencies are compiled by rustc as usual.
CLIPPY_DRIVER=$(command -v clippy-driver || true)
[ -n "$CLIPPY_DRIVER" ] || { echo "test.sh: no clippy-driver (scripts/setup.sh installs clippy)" >&2; exit 1; }
export RUSTC_WORKSPACE_WRAPPER="$CLIPPY_DRIVER"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# Every step builds once from a clean clone, so incremental compilation data would be written
# for nothing: measured on a fresh target (2 cores), the native build took 289 s and 13 GB with
# it and full debug info, 200 s and 4.1 GB without it and with line tables only (Cargo.toml,
# [profile.dev]). CARGO_INCREMENTAL=1 keeps it for an edit-and-rerun loop.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Cheapest first. The tidy crate checks the code base itself (module docs, paths named in docs):
# see tidy/src/lib.rs. It has no dependencies, so its build is the one the workspace build uses.
step "tidy" cargo test -p tidy

# Before the native build: the tracker's build script embeds dist/ (tracker/build.rs), so the
# tracker is built once, with the app in it. Not through clippy-driver: the release wasm is
# linted as the wasm32 test build below, and on the Debian route it needs Debian's toolchain.
step "web build (dist/, wasm-release)" env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS scripts/build-web.sh

# Every target of every crate, lints included, in one build: libraries, binaries (target/debug/
# pp-tracker, pp-peer, … that the tests start), unit, integration and end-to-end test binaries.
# The JSON lists the test executables, to run the end-to-end files from.
native_build() {
  local rc=0
  cargo test --workspace --all-targets --no-run --message-format=json-diagnostic-rendered-ansi \
    >target/test-build.json || rc=$?
  python3 -c '
import json, sys
for line in open("target/test-build.json"):
    m = json.loads(line)
    if m.get("reason") == "compiler-message":
        sys.stderr.write(m["message"]["rendered"])
'
  return $rc
}
mkdir -p target
step "clippy + build native (all targets, one build)" native_build


# End-to-end: real tracker, native peers, headless Chromium, network namespaces. Each file
# starts several processes (and browsers) on a 2-core machine, so they run one at a time, in
# two lanes: the tracker-cluster files (NATS servers and tracker nodes, mostly waiting on
# lease times) run in the background from here, while the native tests, the other end-to-end
# files and the wasm tests run in the foreground. Every file runs even after a failure, so
# one run reports every failing file. (One lane took 1,009 s of the last CI run's 1,351 s;
# the cluster files were 377 s of it.)
e2e_exes=$(python3 -c '
import json
for line in open("target/test-build.json"):
    m = json.loads(line)
    t = m.get("target", {})
    if m.get("reason") == "compiler-artifact" and m.get("executable") and t.get("kind") == ["test"] \
            and m["package_id"].split("#")[0].endswith("/e2e"):
        print(t["name"], m["executable"])
' | sort)
[ -n "$e2e_exes" ] || { echo "test.sh: the build listed no end-to-end test binaries" >&2; exit 1; }
[ "$(wc -l <<<"$e2e_exes")" = "$(ls e2e/tests/*.rs | wc -l)" ] \
  || { echo "test.sh: the build listed $(wc -l <<<"$e2e_exes") end-to-end test binaries for $(ls e2e/tests/*.rs | wc -l) files" >&2; exit 1; }
cluster_exes=$(grep -E '^(cluster|nats)' <<<"$e2e_exes" || true)
other_exes=$(grep -vE '^(cluster|nats)' <<<"$e2e_exes" || true)

# Runs the end-to-end files listed in $1 ("name exe" lines), one at a time.
e2e_files() {
  local name exe
  while read -r name exe; do
    [ -n "$name" ] || continue
    printf '\n\033[1;32m-- e2e %s\033[0m\n' "$name"
    # As `cargo test` runs it: from the package's directory.
    timed "e2e $name" bash -c 'cd e2e && CARGO_MANIFEST_DIR="$PWD" exec "$0" --test-threads=1' "$exe" \
      || FAILED+=("e2e/tests/$name.rs")
  done <<<"$1"
}

# The cluster lane (and cargo deny): its output goes to a log, printed when the lane is waited
# for; its rows and failures come back through files. Job control on (set -m), so the lane is not started
# with SIGINT ignored, as a non-interactive shell's background jobs are (a Ctrl-C test relies
# on it).
lane_dir=target/e2e-lane
rm -rf "$lane_dir" && mkdir -p "$lane_dir"
# After the cluster files, in the same lane: cargo-deny's checks of the dependency graph
# (deny.toml; offline, so not advisories). Where it is missing, it is built while the cluster
# files run (they mostly wait on lease timers), niced so their processes come first. Errors
# only: the duplicates it warns about are upstream's (deny.toml says which ones fail).
deny_check() {
  # cargo-deny reads the crates of every platform in Cargo.lock, offline (--frozen): a Linux
  # build never downloads windows-sys and its kin, so a fresh machine fetches them first
  # (quick and quiet where they are there; this failed on a fresh machine without it).
  wait "$deny_install" && cargo fetch --locked --quiet \
    && cargo deny --frozen --log-level error check bans licenses sources
}
set -m
(
  ROWS=() FAILED=()
  trap - EXIT
  nice -n 10 scripts/setup.sh deny >"$lane_dir/deny-install.log" 2>&1 &
  deny_install=$!
  e2e_files "$cluster_exes"
  cat "$lane_dir/deny-install.log"
  printf '\n\033[1;32m-- cargo deny check bans licenses sources\033[0m\n'
  timed "cargo deny (deny.toml)" deny_check \
    || FAILED+=("cargo deny: the dependency graph breaks deny.toml (its errors are in the cluster lane's output)")
  printf '%s\n' "${ROWS[@]}" >"$lane_dir/rows"
  printf '%s\n' "${FAILED[@]}" >"$lane_dir/failed"
) >"$lane_dir/log" 2>&1 &
lane_pid=$!
set +m
# Joins the cluster lane: its output, its rows, its failures. Also on the way out of a
# failed foreground step (the EXIT trap), so no lane outlives the run.
join_lane() {
  [ -n "${lane_pid:-}" ] || return 0
  local pid=$lane_pid
  lane_pid=
  wait "$pid" || true
  printf '\n\033[1;32m== %s\033[0m\n' "end-to-end tests, cluster lane (run beside the steps above)"
  cat "$lane_dir/log"
  local r
  while IFS= read -r r; do [ -n "$r" ] && ROWS+=("$r"); done <"$lane_dir/rows"
  while IFS= read -r r; do [ -n "$r" ] && FAILED+=("$r"); done <"$lane_dir/failed"
  [ -s "$lane_dir/rows" ] || FAILED+=("the cluster lane (it reported nothing)")
}
on_exit() {
  local rc=$?
  join_lane
  table "$rc"
}
trap on_exit EXIT

# The native tests: every crate's unit tests (the browser peer's pure logic runs natively too)
# and every integration test outside e2e/. Same packages selected (--workspace), so nothing is
# rebuilt; the e2e files run beside them and next.
native_tests=()
for f in */tests/*.rs; do
  case "$f" in e2e/* | browser-peer/*) continue ;; esac
  native_tests+=(--test "$(basename "$f" .rs)")
done
step "native tests: unit, property, simulation, integration" \
  cargo test --workspace --no-fail-fast --lib --bins "${native_tests[@]}" -- --test-threads=2
# Doc tests (rustdoc builds them itself; the libraries are those built above).
step "doc tests" cargo test --workspace --doc

printf '\n\033[1;32m== %s\033[0m\n' "end-to-end tests (one file at a time)"
e2e_files "$other_exes"

printf '\n\033[1;32m== %s\033[0m\n' "wasm32: clippy, build, tests in headless Chromium"
# In a subshell (its environment stays there); its rows come back on stdout, cargo's output goes
# to stderr.
wasm_rows=$(
  ROWS=()
  source scripts/wasm-env.sh
  # The wasm build's own clippy-driver (Debian's on the Debian route: scripts/wasm-env.sh).
  RUSTC_WORKSPACE_WRAPPER=$(command -v clippy-driver)
  export CHROMEDRIVER=/usr/bin/chromedriver
  export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
  export WASM_BINDGEN_TEST_TIMEOUT=120
  cd browser-peer
  # The browser peer as it ships, on wasm32 (wasm-bindgen expands differently there, and usize
  # is 32 bits): lints and test build in one, then the tests in headless Chromium.
  rc=0
  timed "clippy + build wasm32 tests" cargo test --target wasm32-unknown-unknown --all-targets --no-run >&2 \
    && timed "wasm tests in headless Chromium" cargo test --target wasm32-unknown-unknown >&2 || rc=$?
  printf '%s\n' "${ROWS[@]}"
  exit $rc
) || FAILED+=("wasm32 tests")
while IFS= read -r r; do [ -n "$r" ] && ROWS+=("$r"); done <<<"$wasm_rows"

join_lane
if [ ${#FAILED[@]} -gt 0 ]; then
  exit 1
fi
printf '\n\033[1;32m== all tests passed\033[0m\n'
