#!/usr/bin/env bash
# Builds trawl_<version>_<arch>.deb with dpkg-deb from the binary as shipped (`--profile dist`), the systemd unit and
# the host pipeline. Usage: packaging/deb/build.sh [OUT_DIR]
# TRAWL_BIN=path packages that binary instead of building the shipped one (tests use the
# `--release` build: the shipped one takes about 15 minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/deb}
VERSION=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
ARCH=$(dpkg --print-architecture)
BIN=${TRAWL_BIN:-$(scripts/build-dist.sh)} # LTO, and PGO when llvm-profdata is there
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
install -Dm755 "$BIN" "$ROOT/usr/bin/trawl"
# Symbols are a third of the binary and nothing at run time needs them (Debian policy 10.1).
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$ROOT/usr/bin/trawl"
install -Dm644 packaging/systemd/trawl.service "$ROOT/lib/systemd/system/trawl.service"
install -Dm644 pipelines/host-systemd.yaml "$ROOT/etc/trawl/trawl.yaml"
install -d "$ROOT/var/lib/trawl" "$ROOT/DEBIAN"
# Depends: the packages that own the shared libraries the binary links (libpcap, OpenSSL, zlib,
# ...), found the way dpkg-shlibdeps would, so the package installs on a bare host.
DEPENDS=$(readelf -d "$BIN" | awk '/NEEDED/ { gsub(/[][]/, "", $5); print $5 }' |
  while read -r lib; do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')
    [ -n "$path" ] || continue
    real=$(readlink -f "$path")
    dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || true
  done | cut -d: -f1 | sort -u | paste -sd, | sed 's/,/, /g')
cat > "$ROOT/DEBIAN/control" <<CTRL
Package: trawl
Version: $VERSION
Architecture: $ARCH
Maintainer: trawl developers <dev@trawl.invalid>
Depends: ${DEPENDS:-libc6, libpcap0.8}
Section: admin
Priority: optional
Description: ships logs and network traffic
 One binary that tails files, tees an application's stdout, captures HTTP from the wire,
 enriches events and delivers them to Elasticsearch, Kafka or stdout.
CTRL
echo "/etc/trawl/trawl.yaml" > "$ROOT/DEBIAN/conffiles"
# Maintainer scripts: enabled on install, restarted on upgrade, stopped on remove; the
# registry and buffers in /var/lib/trawl go on purge only, so a remove then reinstall resumes
# where it was (nothing read twice, nothing lost). Without systemd running (a container, a
# chroot), the service steps are skipped.
cat > "$ROOT/DEBIAN/postinst" <<'POST'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
  systemctl enable trawl.service >/dev/null || true
  # An upgrade ($2: the version replaced) restarts the running service on the new binary.
  if [ -n "$2" ]; then
    systemctl try-restart trawl.service >/dev/null || true
  fi
fi
POST
cat > "$ROOT/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
# Stopped on remove (SIGTERM: trawl drains in-flight events first); an upgrade keeps it running
# until postinst restarts it.
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop trawl.service >/dev/null || true
fi
PRERM
cat > "$ROOT/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
case "$1" in
  remove)
    if [ -d /run/systemd/system ]; then
      systemctl daemon-reload >/dev/null || true
    fi
    ;;
  purge)
    if [ -d /run/systemd/system ]; then
      systemctl disable trawl.service >/dev/null 2>&1 || true
      systemctl daemon-reload >/dev/null || true
    fi
    # Offsets, disk buffers, dead letters: the data a remove keeps for a reinstall.
    rm -rf /var/lib/trawl
    ;;
esac
POSTRM
chmod 755 "$ROOT/DEBIAN/postinst" "$ROOT/DEBIAN/prerm" "$ROOT/DEBIAN/postrm"
mkdir -p "$OUT"
dpkg-deb --root-owner-group --build "$ROOT" "$OUT/trawl_${VERSION}_${ARCH}.deb"
