#!/usr/bin/env bash
# Idle memory of live capture on a node-like set of interfaces: N veth pairs (host sides up,
# nothing sent), trawl capturing `<prefix>*` the way the shipped DaemonSet pipeline does (one
# `packet` input, flows + HTTP) and the way it did before (two inputs, `http` and `flows`, each
# its own capture). Prints, per binary, shape and N: RSS, the part of it that is packet rings
# (the `socket:` mappings of /proc/PID/smaps: kernel memory mapped into trawl, resident from the
# moment an interface is opened), anonymous memory, threads, and the ratio of RSS to the base
# binary's in the same run. Needs root (veths).
#
# Usage: benches/capture_memory.sh   (TRAWL=path to skip the build; TRAWL_BASE=another trawl
#        to compare with; COUNTS="1 10 40"; SETTLE=4 seconds after the last interface opens)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${COUNTS:-"1 10 40"}
SETTLE=${SETTLE:-4}
if [[ -z "${TRAWL:-}" ]]; then
    cargo build --release >&2
    TRAWL=$PWD/target/release/trawl
fi
[[ $(id -u) -eq 0 ]] || { echo "needs root: it creates veth pairs" >&2; exit 2; }
PREFIX=tcm$$
WORK=$(mktemp -d /tmp/trawl-bench-capmem.XXXXXX)
PID=
cleanup() {
    [[ -n $PID ]] && kill "$PID" 2> /dev/null || true
    wait 2> /dev/null || true
    for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^${PREFIX}h" || true); do
        ip link del "$l" 2> /dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

veths() { # makes sure exactly $1 pairs exist: ${PREFIX}h<i> (captured) and ${PREFIX}p<i>
    local want=$1 i
    for ((i = 0; i < 64; i++)); do
        if ((i < want)); then
            ip link show "${PREFIX}h$i" > /dev/null 2>&1 || {
                ip link add "${PREFIX}h$i" type veth peer name "${PREFIX}p$i"
                ip link set "${PREFIX}h$i" up
                ip link set "${PREFIX}p$i" up
            }
        else
            ip link del "${PREFIX}h$i" 2> /dev/null || true
        fi
    done
}

pipeline() { # shape -> pipeline file
    local shape=$1 f=$WORK/$1.yaml cap="{ interfaces: [\"${PREFIX}h*\"] }"
    case $shape in
        one-packet-input)
            printf 'inputs:\n  wire:\n    type: packet\n    capture: %s\n    flows: { period: -1s }\n    protocols:\n      http: { ports: [80, 8080] }\n' "$cap" > "$f" ;;
        http-and-flows)
            printf 'inputs:\n  http: { type: http, capture: %s, ports: [80, 8080] }\n  flows: { type: flows, capture: %s, period: -1s }\n' "$cap" "$cap" > "$f" ;;
    esac
    printf 'outputs:\n  out: { type: "null" }\ndata_dir: %s/data-%s\nhttp: { enabled: false }\n' "$WORK" "$shape" >> "$f"
    echo "$f"
}

measure() { # bin pipeline n -> "rss_kb ring_kb anon_kb threads"
    local bin=$1 p=$2 n=$3 opened=0 inputs
    inputs=$(grep -c 'capture:' "$p")
    "$bin" --log-format json run -c "$p" > /dev/null 2> "$WORK/log" &
    PID=$!
    for _ in $(seq 300); do
        opened=$(grep -c '"capturing"' "$WORK/log" || true)
        ((opened >= n * inputs)) && break
        sleep 0.1
    done
    sleep "$SETTLE"
    local rss anon threads ring
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
    anon=$(awk '/^RssAnon/ {print $2}' "/proc/$PID/status")
    threads=$(awk '/^Threads/ {print $2}' "/proc/$PID/status")
    ring=$(awk '/^[0-9a-f]+-[0-9a-f]+ / {s = ($6 ~ /^socket:/)} /^Rss:/ && s {t += $2} END {print t + 0}' "/proc/$PID/smaps")
    kill "$PID"
    wait "$PID" 2> /dev/null || true
    PID=
    echo "$rss $ring $anon $threads"
}

BINS=("trawl|$TRAWL")
[[ -n ${TRAWL_BASE:-} ]] && BINS=("base|$TRAWL_BASE" "${BINS[@]}")
echo "| veths | pipeline | binary | RSS MiB | packet rings MiB | anonymous MiB | threads | RSS vs base |"
echo "|---:|---|---|---:|---:|---:|---:|---:|"
for n in $COUNTS; do
    veths "$n"
    for shape in one-packet-input http-and-flows; do
        p=$(pipeline "$shape")
        base_rss=
        for b in "${BINS[@]}"; do
            read -r rss ring anon threads <<< "$(measure "${b#*|}" "$p" "$n")"
            [[ -z $base_rss ]] && base_rss=$rss
            awk -v n="$n" -v s="$shape" -v b="${b%%|*}" -v r="$rss" -v g="$ring" -v a="$anon" -v t="$threads" -v br="$base_rss" 'BEGIN {
                printf "| %d | %s | %s | %.1f | %.1f | %.1f | %d | %.2fx |\n", n, s, b, r / 1024, g / 1024, a / 1024, t, r / br }'
        done
    done
done
