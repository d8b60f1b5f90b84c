#!/usr/bin/env bash
# Builds trawl-forward (forwarder/), the program the sidecar manifest copies into app containers,
# linked statically (static-pie glibc: no loader, no shared library), and prints its path.
# Usage: scripts/build-forwarder.sh [TARGET_DIR]   (default target/forwarder)
# Only std, libc and pure-Rust crates: glibc's static parts that need NSS or dlopen (user and
# host name look-ups) are never called, and trawl's build.rs `-no-pie` (which turns a static-pie
# link into a binary that crashes at start) does not apply to this package.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=$(realpath -m "${1:-target/forwarder}")
HOST=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps crt-static off the build scripts and proc macros, which must stay dynamic.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --manifest-path forwarder/Cargo.toml \
  --target "$HOST" --target-dir "$TARGET_DIR" >&2
echo "$TARGET_DIR/$HOST/release/trawl-forward"
