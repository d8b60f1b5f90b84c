#!/usr/bin/env bash
# Live capture under load on a node-like set of interfaces: N pods (network namespaces) on one
# bridge, each behind a veth; pod 0 runs nginx, the others keep-alive HTTP clients as fast as
# they go for DURATION s. trawl (and TRAWL_BASE, at the same time, on the same traffic) capture
# the host-side veths the way the shipped DaemonSet pipeline does (`<prefix>*`, flows + HTTP).
# Prints per binary: CPU seconds (utime + stime), peak RSS, kernel drops, HTTP transactions
# counted against the requests the clients completed, and ratios against the base.
# Needs root (namespaces, veths).
#
# Usage: benches/capture_load.sh   (TRAWL=path to skip the build; TRAWL_BASE=another trawl;
#        PODS=10; DURATION=20; NICE=10 runs the binaries at that niceness, below the clients:
#        the overload where the kernel drops packets, on every run, as on a node whose pods
#        take the CPU first; HOGS=N busy loops beside the clients; CAPTURE and BASE_CAPTURE:
#        more keys of each one's `capture:` map, e.g. BASE_CAPTURE=", max_in_flight: 4GiB"
#        with TRAWL_BASE=$TRAWL to see what a setting changes on the same traffic; OUTPUT: the
#        output's map instead of `{ type: "null" }`, e.g. an Elasticsearch that is down,
#        OUTPUT='{ type: elasticsearch, hosts: ["http://127.0.0.1:9"] }', where the events
#        in flight wait); SMAPS=1 samples each binary's /proc/PID/smaps every 0.25 s and adds
#        a table of where its resident memory was at its highest sample: the packet ring
#        (`socket:` mappings), anonymous memory (heap, stacks, blocks) and the rest (file pages)
set -euo pipefail
cd "$(dirname "$0")/.."
PODS=${PODS:-10}
DURATION=${DURATION:-20}
HOGS=${HOGS:-0}
NICE=${NICE:-0}
OUTPUT=${OUTPUT:-'{ type: "null" }'}
if [[ -z "${TRAWL:-}" ]]; then
    cargo build --release >&2
    TRAWL=$PWD/target/release/trawl
fi
[[ $(id -u) -eq 0 ]] || { echo "needs root: it creates namespaces and veths" >&2; exit 2; }
command -v nginx > /dev/null || { echo "needs nginx (scripts/setup.sh installs it)" >&2; exit 2; }
P=tcl$$
BR=${P}br
WORK=$(mktemp -d /tmp/trawl-bench-capload.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
    [[ -f $WORK/nginx.pid ]] && kill "$(cat "$WORK/nginx.pid")" 2> /dev/null || true
    wait 2> /dev/null || true
    for ((i = 0; i < PODS; i++)); do ip netns del "${P}n$i" 2> /dev/null || true; done
    ip link del "$BR" 2> /dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ip link add "$BR" type bridge
ip link set "$BR" up
for ((i = 0; i < PODS; i++)); do
    ip netns add "${P}n$i"
    ip link add "${P}h$i" type veth peer name eth0 netns "${P}n$i"
    ip link set "${P}h$i" master "$BR" up
    ip -n "${P}n$i" addr add "10.77.0.$((i + 1))/24" dev eth0
    ip -n "${P}n$i" link set eth0 up
    ip -n "${P}n$i" link set lo up
done

cat > "$WORK/nginx.conf" << EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http {
    access_log off;
    server { listen 10.77.0.1:80; location / { return 200 "ok\n"; } }
}
EOF
ip netns exec "${P}n0" nginx -c "$WORK/nginx.conf" -p "$WORK" 2> /dev/null

start_trawl() { # name binary capture-keys
    local name=$1 bin=$2 extra=$3 dir=$WORK/$1
    mkdir -p "$dir"
    printf 'inputs:\n  node:\n    type: packet\n    capture: { interfaces: ["%sh*"]%s }\n    flows: { period: -1s }\n    protocols:\n      http: { ports: [80] }\noutputs:\n  out: %s\ndata_dir: %s\nhttp: { address: "unix:%s/m.sock" }\n' \
        "$P" "$extra" "$OUTPUT" "$dir" "$dir" > "$dir/p.yaml"
    nice -n "$NICE" "$bin" run -c "$dir/p.yaml" > "$dir/log" 2>&1 &
    echo $!
}
metric() { # name metric-prefix -> sum of the series
    curl -s --unix-socket "$WORK/$1/m.sock" http://x/metrics | awk -v m="$2" 'index($0, m) == 1 { s += $NF } END { printf "%d", s }'
}
cpu_s() { # pid
    awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"
}
hwm_mib() {
    awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

declare -A PID
PID[trawl]=$(start_trawl trawl "$TRAWL" "${CAPTURE:-}")
PIDS+=("${PID[trawl]}")
NAMES=(trawl)
if [[ -n "${TRAWL_BASE:-}" ]]; then
    PID[base]=$(start_trawl base "$TRAWL_BASE" "${BASE_CAPTURE:-}")
    PIDS+=("${PID[base]}")
    NAMES=(base trawl)
fi
sleep 3

cat > "$WORK/client.py" << 'EOF'
import socket, sys, time
end = time.time() + float(sys.argv[1])
n = 0
s = socket.create_connection(("10.77.0.1", 80))
while time.time() < end:
    s.sendall(b"GET /r HTTP/1.1\r\nHost: pod\r\n\r\n")
    buf = b""
    while not buf.endswith(b"ok\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("closed")
        buf += chunk
    n += 1
    if n % 1000 == 0:
        s.close()
        s = socket.create_connection(("10.77.0.1", 80))
print(n)
EOF
sample_smaps() { # pid out: keeps the sample with the most RSS, as "rss ring anon" in KiB
    local best=0
    while kill -0 "$1" 2> /dev/null; do
        local line
        line=$(awk '/^[0-9a-f]+-[0-9a-f]+ / { ring = ($6 ~ /^socket:/) } /^Rss:/ { rss += $2; if (ring) r += $2 } /^Anonymous:/ { a += $2 } END { print rss + 0, r + 0, a + 0 }' "/proc/$1/smaps" 2> /dev/null) || break
        local rss=${line%% *}
        if [[ -n $rss && $rss -gt $best ]]; then
            best=$rss
            echo "$line" > "$2.new" && mv "$2.new" "$2"
        fi
        sleep 0.25
    done
}
declare -A CPU0
for n in "${NAMES[@]}"; do CPU0[$n]=$(cpu_s "${PID[$n]}"); done
if [[ -n "${SMAPS:-}" ]]; then
    for n in "${NAMES[@]}"; do
        sample_smaps "${PID[$n]}" "$WORK/$n/smaps-peak" &
        PIDS+=($!)
    done
fi
CLIENTS=()
HOG_PIDS=()
for ((i = 0; i < HOGS; i++)); do
    timeout "$DURATION" sh -c 'while :; do :; done' &
    HOG_PIDS+=($!)
    PIDS+=($!)
done
for ((i = 1; i < PODS; i++)); do
    ip netns exec "${P}n$i" python3 "$WORK/client.py" "$DURATION" > "$WORK/client$i" &
    CLIENTS+=($!)
done
for c in "${CLIENTS[@]}"; do wait "$c"; done
for h in "${HOG_PIDS[@]}"; do wait "$h" || true; done # timeout's 124
SENT=$(cat "$WORK"/client* | awk '{ s += $1 } END { print s }')
# Connections left open are reported once their flow ends; transactions once answered.
sleep 5

echo "PODS=$PODS DURATION=${DURATION}s NICE=$NICE HOGS=$HOGS, requests completed by the clients: $SENT"
echo
echo "| binary | CPU s | CPU us / request | peak RSS MiB | kernel drops | analyzer drops | late | events dropped | HTTP transactions | of requests | no response | TCP gaps | CPU vs base |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
BASE_CPU=
for n in "${NAMES[@]}"; do
    cpu=$(awk -v a="$(cpu_s "${PID[$n]}")" -v b="${CPU0[$n]}" 'BEGIN { printf "%.2f", a - b }')
    [[ -z $BASE_CPU ]] && BASE_CPU=$cpu
    tx=$(metric "$n" trawl_http_requests_total)
    drops=$(metric "$n" trawl_capture_kernel_dropped_total)
    behind=$(metric "$n" trawl_capture_dropped_total)
    late=$(metric "$n" trawl_capture_late_packets_total)
    incomplete=$(curl -s --unix-socket "$WORK/$n/m.sock" http://x/metrics | awk 'index($0, "trawl_http_requests_total{") == 1 && /status_code="none"/ { s += $NF } END { printf "%d", s }')
    gaps=$(metric "$n" trawl_packet_tcp_gaps_total)
    shed=$(metric "$n" 'trawl_events_dropped_total{component_kind="input"')
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$cpu" \
        "$(awk -v c="$cpu" -v s="$SENT" 'BEGIN { printf "%.2f", c * 1e6 / (s > 0 ? s : 1) }')" \
        "$(hwm_mib "${PID[$n]}")" "$drops" "$behind" "$late" "$shed" "$tx" \
        "$(awk -v t="$tx" -v s="$SENT" 'BEGIN { printf "%.4f", t / (s > 0 ? s : 1) }')" "$incomplete" "$gaps" \
        "$(awk -v c="$cpu" -v b="$BASE_CPU" 'BEGIN { printf "%.2fx", c / (b > 0 ? b : 1) }')"
done
if [[ -n "${SMAPS:-}" ]]; then
    echo
    echo "| binary | sampled peak RSS MiB | packet ring MiB | anonymous MiB | other (file pages) MiB |"
    echo "|---|---:|---:|---:|---:|"
    for n in "${NAMES[@]}"; do
        read -r rss ring anon < "$WORK/$n/smaps-peak" || continue
        awk -v n="$n" -v t="$rss" -v r="$ring" -v a="$anon" 'BEGIN { printf "| %s | %.1f | %.1f | %.1f | %.1f |\n", n, t / 1024, r / 1024, a / 1024, (t - r - a) / 1024 }'
    done
fi
