#!/usr/bin/env bash
# Builds a Debian package of Peer Pressure: pp-tracker and pp-peer in /usr/bin, the systemd units
# (packaging/systemd/: the tracker as a system service, pp-peer as a user service), the licences.
#   scripts/package-deb.sh [BIN_DIR] [OUT_DIR]
# BIN_DIR holds the built binaries (default target/release: `cargo build --release -p tracker
# -p native-peer` first); the package lands in OUT_DIR (default target/debian). Prints its path.
# Plain dpkg-deb rather than cargo-deb: nothing to install, and the package's layout is written
# here, where a reader sees it whole. PP_DEB_COMPRESS=none skips compression (the test does).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR="${1:-target/release}"
OUT_DIR="${2:-target/debian}"
for b in pp-tracker pp-peer; do
  [ -x "$BIN_DIR/$b" ] || { echo "package-deb: $BIN_DIR/$b is missing: build it first" >&2; exit 1; }
done
command -v dpkg-deb >/dev/null || { echo "package-deb: needs dpkg-deb (Debian's dpkg)" >&2; exit 1; }
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
install -Dm755 "$BIN_DIR/pp-tracker" "$ROOT/usr/bin/pp-tracker"
install -Dm755 "$BIN_DIR/pp-peer" "$ROOT/usr/bin/pp-peer"
install -Dm644 packaging/systemd/pp-tracker.service "$ROOT/lib/systemd/system/pp-tracker.service"
install -Dm644 packaging/systemd/pp-peer.service "$ROOT/usr/lib/systemd/user/pp-peer.service"
install -Dm644 LICENSE-MIT "$ROOT/usr/share/doc/peer-pressure/LICENSE-MIT"
install -Dm644 LICENSE-APACHE "$ROOT/usr/share/doc/peer-pressure/LICENSE-APACHE"
install -Dm644 README.md "$ROOT/usr/share/doc/peer-pressure/README.md"
mkdir -p "$ROOT/DEBIAN"
SIZE=$(du -sk "$ROOT" | cut -f1)
cat >"$ROOT/DEBIAN/control" <<CONTROL
Package: peer-pressure
Version: $VERSION
Architecture: $ARCH
Maintainer: Peer Pressure developers <dev@peer-pressure.invalid>
Installed-Size: $SIZE
Depends: libc6
Section: net
Priority: optional
Homepage: https://peer-pressure.invalid
Description: self-healing swarm for sharing files
 pp-tracker keeps the swarm's index, relays WebRTC signalling and serves the web app;
 pp-peer is a native peer that keeps, serves and fetches verified chunks.
CONTROL
mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/peer-pressure_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group "-Z${PP_DEB_COMPRESS:-xz}" --build "$ROOT" "$OUT" >/dev/null
echo "$OUT"
