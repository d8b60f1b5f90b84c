#!/usr/bin/env bash
# Steady load: lines appended to one file at RATE_MB MB/s for DURATION s, followed at the same
# time by trawl (file → null), by Fluent Bit (tail → null) when FLUENT_BIT=/path/to/fluent-bit
# is set, and by a second trawl when TRAWL_BASE=/path/to/trawl is set. Prints each follower's
# CPU over the load (utime + stime of the whole process from /proc/PID/stat, as % of one core),
# its peak RSS, and what it read: trawl's events out (from its /metrics, on a unix socket) and
# Fluent Bit's file position (from /proc/PID/fdinfo; trawl reads with pread, which keeps none).
#
# Usage: benches/steady.sh   (RATE_MB=10, DURATION=30, ROUNDS=1, SETTLE=3 seconds after the
#        last write before the CPU is read again; TRAWL=path to skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RATE_MB=${RATE_MB:-10}
DURATION=${DURATION:-30}
ROUNDS=${ROUNDS:-1}
SETTLE=${SETTLE:-3}
if [[ -z "${TRAWL:-}" ]]; then
    cargo build --profile dist >&2
    TRAWL=$ROOT/target/dist/trawl
fi
SHARED=${TRAWL_SHARED_DIR:-$ROOT/../shared}
[[ -d $SHARED/data/logs/loghub ]] || SHARED=/work/shared
LOGHUB=$SHARED/data/logs/loghub
TICKS=$(getconf CLK_TCK)

WORK=$(mktemp -d /tmp/trawl-bench-steady.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
    wait 2> /dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
awk 1 "$LOGHUB"/*/*.log > "$WORK/sample" # every line ends with a newline
LOG=$WORK/app.log

# Appends whole lines from the sample at a steady rate, in 20 ms steps paced on the monotonic
# clock (a late step writes what it owes, so the average holds); prints the lines and bytes.
WRITER=$(cat << 'EOF'
import os, sys, time
path, sample, rate, duration = sys.argv[1], sys.argv[2], float(sys.argv[3]) * 1e6, float(sys.argv[4])
lines = open(sample, 'rb').read().splitlines(keepends=True)
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
start = time.monotonic()
written = count = i = 0
while True:
    now = time.monotonic()
    if now - start >= duration:
        break
    owed = int(rate * (now - start)) - written
    chunk = []
    size = 0
    while size < owed:
        line = lines[i % len(lines)]
        i += 1
        chunk.append(line)
        size += len(line)
    if chunk:
        os.write(fd, b''.join(chunk))
        written += size
        count += len(chunk)
    time.sleep(max(0.0, 0.02 - (time.monotonic() - now)))
os.close(fd)
print(count, written)
EOF
)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime, all threads
peak_rss_kb() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
# What a follower read: trawl's events delivered to its null output, Fluent Bit's position in
# the file ("closed" when it holds no descriptor on it).
read_pos() { # pid name
    if [[ $2 != fluent-bit ]]; then
        curl -s --unix-socket "$WORK/$2.sock" http://trawl/metrics \
            | awk '/^trawl_events_out_total\{.*component="out"/ { print $2 " lines" }'
        return
    fi
    local fd
    for fd in /proc/"$1"/fd/*; do
        if [[ $(readlink "$fd" 2> /dev/null) == "$LOG" ]]; then
            awk '/^pos:/ { print $2 " bytes" }' "/proc/$1/fdinfo/${fd##*/}"
            return
        fi
    done
    echo closed
}

trawl_cfg() { # name → config path
    local f=$WORK/$1.yaml
    cat > "$f" << EOF
data_dir: $WORK/data-$1
http: { address: "unix:$WORK/$1.sock" }
inputs:
  in: { type: file, paths: ["$LOG"] }
outputs:
  out: { type: "null" }
EOF
    echo "$f"
}
fb_cfg() {
    local f=$WORK/fb.conf
    printf '[SERVICE]\n    Flush 1\n    Log_Level error\n' > "$f"
    printf '[INPUT]\n    Name tail\n    Path %s\n    Read_from_Head On\n    Refresh_Interval 1\n' "$LOG" >> "$f"
    printf '[OUTPUT]\n    Name null\n    Match *\n' >> "$f"
    echo "$f"
}

declare -A CPU RSS POS
NAMES=()
for ((r = 1; r <= ROUNDS; r++)); do
    rm -rf "$WORK"/data-* "$LOG"
    : > "$LOG"
    PIDS=()
    NAMES=(trawl)
    "$TRAWL" --log-level error run -c "$(trawl_cfg trawl)" > /dev/null 2> "$WORK/trawl.err" &
    PIDS+=($!)
    if [[ -n ${TRAWL_BASE:-} ]]; then
        NAMES+=(base)
        "$TRAWL_BASE" --log-level error run -c "$(trawl_cfg base)" > /dev/null 2> "$WORK/base.err" &
        PIDS+=($!)
    fi
    if [[ -n ${FLUENT_BIT:-} ]]; then
        NAMES+=(fluent-bit)
        "$FLUENT_BIT" -q -c "$(fb_cfg)" > /dev/null 2> "$WORK/fb.err" &
        PIDS+=($!)
    fi
    sleep 3 # started and idle: their start-up is not counted
    declare -A T0
    for i in "${!PIDS[@]}"; do
        kill -0 "${PIDS[$i]}" || { echo "${NAMES[$i]} exited at start" >&2; cat "$WORK"/*.err >&2; exit 1; }
        T0[$i]=$(cpu_ticks "${PIDS[$i]}")
    done
    w0=$(date +%s.%N)
    read -r lines bytes <<< "$(python3 -c "$WRITER" "$LOG" "$WORK/sample" "$RATE_MB" "$DURATION")"
    sleep "$SETTLE"
    w1=$(date +%s.%N)
    for i in "${!PIDS[@]}"; do
        t1=$(cpu_ticks "${PIDS[$i]}")
        CPU[$i]+="$(awk -v a="${T0[$i]}" -v b="$t1" -v t="$TICKS" -v w0="$w0" -v w1="$w1" \
            'BEGIN { printf "%.2f", (b - a) / t / (w1 - w0) * 100 }') "
        RSS[$i]+="$(peak_rss_kb "${PIDS[$i]}") "
        POS[$i]+="$(read_pos "${PIDS[$i]}" "${NAMES[$i]}" | tr " " _) "
    done
    for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
    wait 2> /dev/null || true
    echo "round $r/$ROUNDS: $lines lines, $bytes bytes in ${DURATION}s" >&2
done

med() { tr ' ' '\n' <<< "$1" | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
fb=""
for i in "${!NAMES[@]}"; do [[ ${NAMES[$i]} == fluent-bit ]] && fb=$i; done
echo
echo "### Steady load: $RATE_MB MB/s of loghub lines appended for ${DURATION}s, file → null, medians of $ROUNDS round(s)"
echo
echo "| follower | CPU % of a core (median) | per round | CPU vs Fluent Bit | peak RSS MiB | read (last round: $lines lines, $bytes bytes) |"
echo "|---|---:|---|---:|---:|---:|"
for i in "${!NAMES[@]}"; do
    c=$(med "${CPU[$i]}")
    ratio=""
    if [[ -n $fb && $i != "$fb" ]]; then
        ratio=$(awk -v a="$c" -v b="$(med "${CPU[$fb]}")" 'BEGIN { if (b > 0) printf "%.2f×", a / b }')
    fi
    last_pos=$(tr ' ' '\n' <<< "${POS[$i]}" | grep -v '^$' | tail -n 1)
    printf '| %s | %.1f | %s | %s | %.1f | %s |\n' "${NAMES[$i]}" "$c" "${CPU[$i]% }" "$ratio" \
        "$(awk -v k="$(med "${RSS[$i]}")" 'BEGIN { print k / 1024 }')" "${last_pos//_/ }"
done
