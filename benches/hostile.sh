#!/usr/bin/env bash
# What hostile streams cost the decoders, against a base binary in the same run: `trawl pcap
# --only flows,<protocol>` on each capture of gen_hostile_pcap.py (about 2 MB of client bytes
# each: 330,000 one-line headers, 330,000 one-byte chunks, 74,000 pipelined requests, one
# byte per segment, segments in reverse order, 100,000 HTTP/2 CONTINUATION frames, 500,000
# levels of RESP nesting, one-byte TLS records, a DNS message whose 7,800 names point into
# one run of 8,000 labels...). Printed per case: CPU s (user+sys, median of ROUNDS), µs of
# CPU per KB of stream, peak RSS, events out, and the ratio to base. A decoder whose cost
# grows faster than its input shows as a row far above the others.
# Env: TRAWL (default target/release/trawl), TRAWL_BASE (optional), ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
TRAWL=${TRAWL:-target/release/trawl}
TRAWL_BASE=${TRAWL_BASE:-}
ROUNDS=${ROUNDS:-3}
dir=benches/data/hostile
[ -s "$dir/sizes" ] || { mkdir -p "$dir"; python3 benches/gen_hostile_pcap.py "$dir" > "$dir/sizes"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
protocol() {
  case $1 in
    http_*) echo http ;; h2_*) echo http,http2 ;; redis_*) echo redis ;; tls_*) echo tls ;;
    pgsql_*) echo pgsql ;; mysql_*) echo mysql ;; dns_*) echo dns ;;
  esac
}
# run BIN CASE: prints "cpu_s rss_kb events", the median run by CPU.
run() {
  local bin=$1 case=$2 i
  for ((i = 0; i < ROUNDS; i++)); do
    /usr/bin/time -f "%U %S %M" -o "$work/t" "$bin" pcap --only "flows,$(protocol "$case")" \
      "$dir/$case.pcap" > "$work/out" 2>/dev/null || true
    read -r u s m < "$work/t"
    echo "$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }') $m $(wc -l < "$work/out")"
  done | sort -n | sed -n "$(((ROUNDS + 1) / 2))p"
}
echo "| case | stream KB | CPU s | µs CPU / KB | peak RSS MB | events |${TRAWL_BASE:+ base CPU s | CPU vs base |}"
echo "|---|---:|---:|---:|---:|---:|${TRAWL_BASE:+---:|---:|}"
while read -r case bytes; do
  read -r cpu rss events < <(run "$TRAWL" "$case")
  kb=$((bytes / 1024))
  row=$(awk -v c="$case" -v kb="$kb" -v cpu="$cpu" -v rss="$rss" -v ev="$events" \
    'BEGIN { printf "| %s | %d | %.2f | %.1f | %.1f | %d |", c, kb, cpu, cpu * 1e6 / kb, rss / 1024, ev }')
  if [ -n "$TRAWL_BASE" ]; then
    read -r bcpu _ _ < <(run "$TRAWL_BASE" "$case")
    ratio=$(awk -v a="$cpu" -v b="$bcpu" 'BEGIN { printf "%.2f", (a + 0.005) / (b + 0.005) }')
    row="$row $bcpu | ${ratio}x |"
  fi
  echo "$row"
done < "$dir/sizes"
