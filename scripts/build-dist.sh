#!/usr/bin/env bash
# Builds trawl as shipped: the `dist` profile (fat LTO), optimised with a profile of its own
# hot paths (PGO) when an llvm-profdata of rustc's LLVM version is at hand. Prints the path of
# the binary on stdout; progress goes to stderr.
#
# PGO: an instrumented build runs a training set that touches every hot path of an agent: HTTP
# and flows from generated captures (`trawl pcap`), the loghub example pipelines on stdin
# (regex, timestamp, stdout), a file tailed to the null output, and `trawl tee`. The profile
# then steers inlining and code layout of the real build: here, a fifth less CPU for
# `trawl pcap` and a third less for a regex pipeline (see README).
#
# Without llvm-profdata (Debian: `apt-get install llvm-<N>` where N is rustc's LLVM major;
# rustup: `rustup component add llvm-tools`), or with PGO=0, this is `cargo build --profile dist`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { echo "build-dist: $*" >&2; }

plain() {
  cargo build --profile dist --quiet --bin trawl >&2
  echo "$ROOT/target/dist/trawl"
}

major=$(rustc --version --verbose | awk '/^LLVM version/ { split($3, v, "."); print v[1] }')
profdata=${PROFDATA:-}
if [ -z "$profdata" ]; then
  host=$(rustc --version --verbose | awk '/^host/ { print $2 }')
  for c in "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" \
    "/usr/lib/llvm-$major/bin/llvm-profdata" "$(command -v "llvm-profdata-$major" || true)" \
    "$(command -v llvm-profdata || true)"; do
    if [ -x "$c" ] && "$c" --version 2>/dev/null | grep -q "LLVM version $major\."; then
      profdata=$c
      break
    fi
  done
fi
if [ "${PGO:-1}" = 0 ] || [ -z "$profdata" ]; then
  [ "${PGO:-1}" = 0 ] || log "PGO off: no llvm-profdata for LLVM $major (apt-get install llvm-$major)"
  plain
  exit 0
fi

work=$ROOT/target/pgo-work
raw=$work/raw
gen_target=$ROOT/target/pgo-gen
use_target=$ROOT/target/pgo
log "instrumented build (LLVM $major, $profdata)"
RUSTFLAGS="-Cprofile-generate=$raw" CARGO_TARGET_DIR=$gen_target \
  cargo build --profile dist --quiet --bin trawl >&2
rm -rf "$raw" # build scripts and proc macros were instrumented too: only trawl's runs count
mkdir -p "$work/data" "$raw"
gen=$gen_target/dist/trawl

log "training"
for profile in small mixed; do
  cap=$work/data/http-$profile.pcap
  [ -s "$cap" ] || python3 benches/gen_http_pcap.py "$cap" 200000 "$profile" > /dev/null
  "$gen" pcap "$cap" > /dev/null
done
shared=${TRAWL_SHARED_DIR:-$ROOT/../shared}
for sample in "$shared"/data/logs/loghub/*/*_2k.log; do
  [ -f "$sample" ] || continue
  name=$(basename "$(dirname "$sample")" | tr '[:upper:]' '[:lower:]')
  pipeline=pipelines/examples/loghub-$name.yaml
  [ -f "$pipeline" ] || continue
  for _ in $(seq 20); do cat "$sample"; done |
    TRAWL_DATA_DIR=$(mktemp -d -p "$work") "$gen" --log-level error run -c "$pipeline" > /dev/null
done
lines=$work/data/lines.log
[ -s "$lines" ] || for _ in $(seq 20); do cat "$shared"/data/logs/loghub/*/*_2k.log 2> /dev/null || echo "a line"; done > "$lines"
tail_dir=$(mktemp -d -p "$work")
cat > "$tail_dir/p.yaml" <<YAML
inputs:
  f: { type: file, paths: ["$lines"] }
outputs:
  o: { type: "null" }
data_dir: $tail_dir
http: { enabled: false }
YAML
"$gen" --log-level error run -c "$tail_dir/p.yaml" &
pid=$!
sleep 5
kill -TERM "$pid"
wait "$pid" || true
cat > "$tail_dir/tee.yaml" <<YAML
outputs:
  o: { type: "null" }
data_dir: $tail_dir
http: { enabled: false }
YAML
"$gen" tee -c "$tail_dir/tee.yaml" -- cat "$lines" > /dev/null

"$profdata" merge -o "$work/trawl.profdata" "$raw"
log "optimised build"
RUSTFLAGS="-Cprofile-use=$work/trawl.profdata" CARGO_TARGET_DIR=$use_target \
  cargo build --profile dist --quiet --bin trawl >&2
echo "$use_target/dist/trawl"
