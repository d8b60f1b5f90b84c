#!/usr/bin/env bash
# trawl's benchmark harness: builds the binary as shipped (`--profile dist`), generates realistic input (loghub lines
# repeated to SIZE_MB, default 1024), and prints one Markdown table of throughput and peak RSS,
# with `cat FILE > /dev/null` measured in the same run as the ceiling each row is compared with.
# Rows from other areas come from benches/rows/*.sh (each prints `| row |` lines; see README).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${SIZE_MB:-1024}
SHARED=${TRAWL_SHARED_DIR:-$ROOT/../shared}
DATA_DIR=$ROOT/benches/data
DATA=$DATA_DIR/loghub-${SIZE_MB}m.log
mkdir -p "$DATA_DIR"

# The binary as shipped (PGO when llvm-profdata is there; scripts/build-dist.sh), unless TRAWL
# names one already built.
TRAWL=${TRAWL:-$("$ROOT/scripts/build-dist.sh")}
export TRAWL DATA DATA_DIR SHARED ROOT

if [ ! -s "$DATA" ]; then
  # All six loghub samples, interleaved, repeated until SIZE_MB is reached.
  python3 - "$SHARED/data/logs/loghub" "$DATA" "$SIZE_MB" <<'PY'
import sys, glob, os
src, dst, size_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = []
for f in sorted(glob.glob(os.path.join(src, "*", "*.log"))):
    with open(f, "rb") as fh:
        lines.extend(l if l.endswith(b"\n") else l + b"\n" for l in fh)
block = b"".join(lines)
target = size_mb * 1024 * 1024
with open(dst, "wb") as out:
    written = 0
    while written < target:
        out.write(block)
        written += len(block)
PY
fi
BYTES=$(stat -c %s "$DATA")
LINES=$(wc -l < "$DATA")
export BYTES LINES

# measure [--stdin F] [--stdout F] CMD...: prints `seconds peak_rss_kb` for CMD.
measure() {
  python3 "$ROOT/benches/measure.py" "$@" || true
}
export -f measure

row() { # row NAME LINES BYTES "ELAPSED RSS_KB" BASE_ELAPSED
  python3 - "$@" <<'PY'
import sys
name, lines, nbytes, m, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(), float(sys.argv[5])
secs, rss = max(float(m[0]), 1e-4), int(m[1])
print(f"| {name} | {lines/secs:,.0f} | {nbytes/secs/1e6:,.1f} | {rss/1024:.1f} | {secs:.3f} | {base/secs:.3f} |")
PY
}
export -f row

P=$(mktemp -d)
trap 'rm -rf "$P"' EXIT
cat > "$P/null.yaml" <<'YAML'
inputs: { in: { type: stdin } }
outputs: { out: { type: "null" } }
http: { enabled: false }
data_dir: /tmp/trawl-bench
YAML
cat > "$P/json.yaml" <<'YAML'
inputs: { in: { type: stdin } }
outputs: { out: { type: stdout } }
http: { enabled: false }
data_dir: /tmp/trawl-bench
YAML

cat "$DATA" > /dev/null # warm the page cache
BASE=$(measure cat "$DATA")
BASE_S=$(echo "$BASE" | cut -d' ' -f1)
export BASE_S

echo "input: $DATA ($LINES lines, $((BYTES / 1024 / 1024)) MiB), $(nproc) cores"
echo
echo "| scenario | lines/s | MB/s | peak RSS (MB) | seconds | vs cat (time ratio) |"
echo "|---|---|---|---|---|---|"
row "cat FILE > /dev/null (ceiling)" "$LINES" "$BYTES" "$BASE" "$BASE_S"
row "stdin → null" "$LINES" "$BYTES" "$(measure --stdin "$DATA" "$TRAWL" run -c "$P/null.yaml")" "$BASE_S"
row "stdin → stdout (json)" "$LINES" "$BYTES" "$(measure --stdin "$DATA" "$TRAWL" run -c "$P/json.yaml")" "$BASE_S"
for r in "$ROOT"/benches/rows/*.sh; do
  [ -e "$r" ] && bash "$r"
done

# Idle footprint: a running pipeline with nothing to do.
sleep 3600 | "$TRAWL" run -c "$P/null.yaml" &
sleep 5 # past the release of start-up's code pages, 2 s after start (benches/idle.py)
IDLE_PID=$(pgrep -n -f "$P/null.yaml" || true)
if [ -n "$IDLE_PID" ]; then
  echo
  echo "idle RSS: $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$IDLE_PID/status) (goal < 15 MB)"
  kill "$IDLE_PID" 2>/dev/null || true
fi
pkill -f "sleep 3600" 2>/dev/null || true
wait 2>/dev/null || true

# The areas' own tables (each with its baseline measured in the same run): ALL=1 benches/run.sh
if [ "${ALL:-0}" = 1 ]; then
  echo; echo "## Logs (file input, tee)"; python3 "$ROOT/benches/logs.py" --size-mb "$SIZE_MB" --tee-mb 100 --trawl "$TRAWL"
  echo; echo "## Parsers"; bash "$ROOT/benches/processors.sh"
  echo; echo "## Packets"; bash "$ROOT/benches/network.sh"
  echo; echo "## Outputs"; python3 "$ROOT/benches/outputs.py" 1000000
fi
