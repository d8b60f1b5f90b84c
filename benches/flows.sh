#!/usr/bin/env bash
# The flow table's cost, against a base binary in the same run: `trawl pcap` on two generated
# captures (gen_http_pcap.py): `churn` (111,112 connections of one request, ~11,000 a second of
# capture time, every flow closed soon after it opened) and `open` (90,000 handshakes and one
# request each, never closed: every flow is held in the table when the capture ends). Each
# capture is read two ways: `--only flows` (JSON lines on stdout, default max_flows 100,000)
# and `-c` a pipeline with max_flows 1,000,000 and a null output (events as maps, as `trawl
# run` makes them). Printed: flows/s per CPU second, CPU s (user+sys), peak RSS, and for `open`
# the bytes of peak RSS per flow held (peak RSS minus that of the same run on a 2-connection
# capture, divided by the 90,000 flows).
# Env: TRAWL (default target/release/trawl), TRAWL_BASE (optional: main built before a change),
# ROUNDS (interleaved runs per row, median by CPU; default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
TRAWL=${TRAWL:-target/release/trawl}
TRAWL_BASE=${TRAWL_BASE:-}
ROUNDS=${ROUNDS:-5}
mkdir -p benches/data
gen() { # name min_packets profile
  local f=benches/data/flows-$1.pcap
  [ -s "$f" ] && [ -s "$f.meta" ] || python3 benches/gen_http_pcap.py "$f" "$2" "$3" > "$f.meta"
}
gen churn 1000000 churn
gen open 540000 open
gen tiny 10 churn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/big.yaml" <<YAML
inputs:
  cap:
    type: packet
    capture: { interfaces: [lo] }
    flows: { max_flows: 1000000 }
outputs:
  sink: { type: "null" }
data_dir: $work/data
http: { address: "127.0.0.1:0" }
YAML

measure() { # prints "cpu_s rss_kb" of the command, its output discarded
  local t; t=$(mktemp)
  /usr/bin/time -f "%U %S %M" -o "$t" "$@" >/dev/null 2>&1 || true
  awk '{printf "%.2f %s\n", $1 + $2, $3}' "$t"; rm -f "$t"
}
run() { # binary mode capture
  case $2 in
    json) measure "$1" pcap --only flows "benches/data/flows-$3.pcap" ;;
    pipeline) measure "$1" pcap -c "$work/big.yaml" "benches/data/flows-$3.pcap" ;;
  esac
}

bins="trawl:$TRAWL"
[ -n "$TRAWL_BASE" ] && bins="$bins base:$TRAWL_BASE"
echo "| capture | read as | binary | flows | CPU s | flows/s (CPU) | peak RSS MB | bytes per flow held |"
echo "|---|---|---|---:|---:|---:|---:|---:|"
for capture in churn open; do
  read -r _ flows < "benches/data/flows-$capture.pcap.meta"
  for mode in json pipeline; do
    runs=$work/runs
    : > "$runs"
    for _ in $(seq "$ROUNDS"); do
      for b in $bins; do
        echo "${b%%:*} $(run "${b#*:}" $mode $capture)" >> "$runs"
      done
    done
    for b in $bins; do
      name=${b%%:*}
      read -r cpu rss <<<"$(awk -v n="$name" '$1 == n { print $2, $3 }' "$runs" | sort -n | awk '{ r[NR] = $0 } END { print r[int((NR + 1) / 2)] }')"
      read -r _ idle <<<"$(run "${b#*:}" $mode tiny)"
      awk -v c="$capture" -v m="$mode" -v n="$name" -v f="$flows" -v cpu="$cpu" -v rss="$rss" -v idle="$idle" 'BEGIN {
        per = (c == "open") ? sprintf("%.0f", (rss - idle) * 1024 / f) : "";
        printf "| %s | %s | %s | %d | %.2f | %.0f | %.1f | %s |\n", c, m, n, f, cpu, (cpu > 0 ? f / cpu : 0), rss / 1024, per }'
    done
  done
done
