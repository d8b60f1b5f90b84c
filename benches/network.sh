#!/usr/bin/env bash
# Packet-side benchmarks, printed as Markdown tables:
# 1. `trawl pcap` on generated captures of >= 1,000,000 packets of HTTP (profiles `small` and
#    `mixed`, see gen_http_pcap.py) against tshark decoding HTTP on the same file in the same run:
#    packets/s and transactions/s per CPU second (one core), wall time, peak RSS, ratio.
# 2. Live capture on `lo` under a bounded local load (default 20,000 requests/s for 10 s):
#    requests seen, kernel drops, trawl's own drops, trawl's CPU share.
# Captures go to benches/data/ (git-ignored). Env: PROFILES="small mixed", LOAD_RPS, LOAD_SECS,
# TRAWL_ROUNDS and TSHARK_ROUNDS (runs per capture, default 9 and 3; the runs of both tools are
# interleaved and the median of each is reported, so that both see the same spells of noise).
# TRAWL_BASE=/path/to/other/trawl adds a row for a second binary (runs interleaved with trawl's)
# and a CPU ratio against it; CALLGRIND=1 adds instructions per packet under callgrind on the
# first CG_PACKETS (100000) packets of each capture (editcap and valgrind needed), for both.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILES=${PROFILES:-"small mixed"}
LOAD_RPS=${LOAD_RPS:-20000}
LOAD_SECS=${LOAD_SECS:-10}
TRAWL_ROUNDS=${TRAWL_ROUNDS:-9}
TSHARK_ROUNDS=${TSHARK_ROUNDS:-3}
TRAWL_BASE=${TRAWL_BASE:-}
CALLGRIND=${CALLGRIND:-0}
CG_PACKETS=${CG_PACKETS:-100000}
[ "$TRAWL_ROUNDS" -ge 1 ] && [ "$TSHARK_ROUNDS" -ge 1 ] || { echo "TRAWL_ROUNDS and TSHARK_ROUNDS must be at least 1" >&2; exit 2; }
# trawl as shipped (scripts/build-dist.sh: LTO, and PGO when llvm-profdata is there) unless
# TRAWL names a binary; the load generator needs no such care.
BIN=${TRAWL:-$(scripts/build-dist.sh)}
cargo build --release --quiet --example http_load
LOAD=target/release/examples/http_load
mkdir -p benches/data

measure() { # prints "wall cpu rss_kb" of the command, its stdout discarded (CPU to the µs)
  python3 benches/measure.py --cpu -- "$@" || true
}

echo "### trawl pcap vs tshark"
echo
echo "| capture | packets | transactions | tool | wall s | CPU s | packets/s (CPU) | transactions/s (CPU) | peak RSS MB | speed-up vs tshark | CPU vs base |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for profile in $PROFILES; do
  f=benches/data/http-$profile-1m.pcap
  if [ ! -s "$f" ] || [ ! -s "$f.meta" ]; then
    python3 benches/gen_http_pcap.py "$f" 1000000 "$profile" > "$f.meta"
  fi
  read -r pkts txs < "$f.meta"
  cat "$f" > /dev/null # both tools read from the page cache
  # This VM's CPU time swings by tens of percent between identical runs: each tool runs several
  # times, interleaved, and its median run by CPU time is reported.
  runs=$(mktemp)
  per=$(((TRAWL_ROUNDS + TSHARK_ROUNDS - 1) / TSHARK_ROUNDS))
  done_t=0
  for _ in $(seq "$TSHARK_ROUNDS"); do
    for _ in $(seq "$per"); do
      [ "$done_t" -lt "$TRAWL_ROUNDS" ] || break
      echo "trawl $(measure "$BIN" pcap "$f")" >> "$runs"
      [ -z "$TRAWL_BASE" ] || echo "base $(measure "$TRAWL_BASE" pcap "$f")" >> "$runs"
      done_t=$((done_t + 1))
    done
    echo "tshark $(measure tshark -r "$f" -Y http -T fields -e http.request.method -e http.request.uri -e http.response.code)" >> "$runs"
  done
  median() { awk -v t="$1" '$1 == t { print $2, $3, $4 }' "$runs" | sort -k2 -n | awk '{ r[NR] = $0 } END { print r[int((NR + 1) / 2)] }'; }
  read -r tw tc tr <<<"$(median trawl)"
  read -r sw sc sr <<<"$(median tshark)"
  rows=("trawl $tw $tc $tr")
  bc=""
  if [ -n "$TRAWL_BASE" ]; then
    read -r bw bc br <<<"$(median base)"
    rows+=("base $bw $bc $br")
  fi
  rows+=("tshark $sw $sc $sr")
  rm -f "$runs"
  for row in "${rows[@]}"; do
    read -r tool w c r <<<"$row"
    awk -v tool="$tool" -v w="$w" -v c="$c" -v r="$r" -v p="$pkts" -v x="$txs" -v base="$sc" -v tb="$bc" -v name="$profile" 'BEGIN {
      vs = (tb != "" && tool != "tshark") ? sprintf("%.2fx", c / tb) : ""
      printf "| %s | %d | %d | %s | %.2f | %.3f | %.0f | %.0f | %.1f | %.1fx | %s |\n", name, p, x, tool, w, c, p / c, x / c, r / 1024, base / c, vs }'
  done
done

if [ "$CALLGRIND" = 1 ]; then
  echo
  echo "### instructions per packet (callgrind, first $CG_PACKETS packets)"
  echo
  echo "| capture | binary | instructions | per packet |"
  echo "|---|---|---:|---:|"
  for profile in $PROFILES; do
    cut=benches/data/http-$profile-cg$CG_PACKETS.pcap
    [ -s "$cut" ] || editcap -F pcap -r "benches/data/http-$profile-1m.pcap" "$cut" "1-$CG_PACKETS"
    for b in "trawl $BIN" ${TRAWL_BASE:+"base $TRAWL_BASE"}; do
      read -r name path <<<"$b"
      n=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$path" pcap "$cut" 2>&1 >/dev/null |
        awk '/Collected :/ { print $NF }')
      awk -v c="$profile" -v b="$name" -v n="$n" -v p="$CG_PACKETS" 'BEGIN { printf "| %s | %s | %d | %.0f |\n", c, b, n, n / p }'
    done
  done
fi

echo
echo "### live capture on lo under load"
echo
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
cat > "$dir/p.yaml" <<YAML
inputs:
  web:
    type: http
    capture: { interfaces: [lo], bpf_filter: "tcp port $port" }
    ports: [$port]
outputs:
  sink: { type: "null" }
data_dir: $dir
http: { address: "127.0.0.1:0" }
YAML
"$BIN" --log-format json run -c "$dir/p.yaml" 2> "$dir/log" &
tpid=$!
trap 'kill $tpid 2>/dev/null || true; rm -rf "$dir"' EXIT
alive() { kill -0 $tpid 2>/dev/null || { echo "trawl exited early:"; cat "$dir/log"; exit 1; }; }
for _ in $(seq 100); do grep -q '"capturing"' "$dir/log" && grep -q 'serving /metrics' "$dir/log" && break; sleep 0.1; done
alive
maddr=$(grep -o '"address":"[^"]*"' "$dir/log" | head -1 | cut -d'"' -f4)
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$tpid/stat"; }
c0=$(cpu)
read -r _ sent rps <<<"$("$LOAD" "$port" "$LOAD_RPS" "$LOAD_SECS" 8)"
sleep 1.5
c1=$(cpu)
metrics=$(curl -s "http://$maddr/metrics" 2>/dev/null || python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://$maddr/metrics').read().decode())")
kdrop=$(echo "$metrics" | awk '/^trawl_capture_kernel_dropped_total/ {s += $2} END {print s + 0}')
odrop=$(echo "$metrics" | awk '/^trawl_capture_dropped_total/ {s += $2} END {print s + 0}')
seen=$(echo "$metrics" | awk '/^trawl_http_requests_total/ {s += $2} END {print s + 0}')
rss=$(awk '/VmHWM/ {print $2}' "/proc/$tpid/status")
kill -TERM $tpid; wait $tpid 2>/dev/null || true
echo "| target req/s | achieved req/s | requests sent | requests seen by trawl | kernel drops | trawl drops | trawl CPU (cores) | peak RSS MB |"
echo "|---|---|---|---|---|---|---|---|"
awk -v t="$LOAD_RPS" -v a="$rps" -v s="$sent" -v seen="$seen" -v k="$kdrop" -v o="$odrop" -v c0="$c0" -v c1="$c1" -v hz="$ticks" -v secs="$LOAD_SECS" -v r="$rss" 'BEGIN {
  printf "| %d | %d | %d | %d | %d | %d | %.3f | %.1f |\n", t, a, s, seen, k, o, (c1 - c0) / hz / (secs + 1.5), r / 1024 }'
