#!/usr/bin/env bash
# CPU per line of the logs path: trawl stdin → null, file → null, file → regex → null and
# stdin → stdout (JSON) on generated files; with FLUENT_BIT=/path/to/fluent-bit, Fluent Bit's
# tail → null and tail → regex → null on the same files; with TRAWL_BASE=/path/to/other/trawl,
# the same trawl rows with that binary (main's, say). Cases run interleaved, round after round,
# and the table shows medians: wall, CPU (user+sys), µs of CPU per line, peak RSS, and ratios.
# Then a callgrind row per trawl binary: instructions per line (stable on a loaded machine).
#
# Usage: benches/cpu.sh   (LINES=1000000 per file, ROUNDS=5, CG_LINES=200000, CALLGRIND=0 to
#        skip it, TRAWL=path to skip the build; WORKERS sets pipeline.workers for trawl)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LINES=${LINES:-1000000}
ROUNDS=${ROUNDS:-5}
CG_LINES=${CG_LINES:-200000}
CALLGRIND=${CALLGRIND:-1}
if [[ -z "${TRAWL:-}" ]]; then
    cargo build --profile dist >&2
    TRAWL=$ROOT/target/dist/trawl
fi
SHARED=${TRAWL_SHARED_DIR:-$ROOT/../shared}
[[ -d $SHARED/data/logs/loghub ]] || SHARED=/work/shared
LOGHUB=$SHARED/data/logs/loghub

DATA=$ROOT/benches/data
mkdir -p "$DATA"
WORK=$(mktemp -d /tmp/trawl-bench-cpu.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# Repeats `src` (lines) until `n` lines, into `dst` (kept between runs, git-ignored).
make_file() {
    local dst=$1 n=$2; shift 2
    if [[ -f $dst && $(wc -l < "$dst") -eq $n ]]; then return; fi
    local blob=$WORK/blob
    awk 1 "$@" > "$blob" # every line ends with a newline, also a sample's last
    local have; have=$(wc -l < "$blob")
    for ((i = 0; i < (n + have - 1) / have; i++)); do cat "$blob"; done > "$WORK/repeated"
    head -n "$n" "$WORK/repeated" > "$dst.tmp"
    rm -f "$WORK/repeated"
    mv "$dst.tmp" "$dst"
}
PLAIN=$DATA/cpu-loghub-$LINES.log
APACHE=$DATA/cpu-apache-$LINES.log
make_file "$PLAIN" "$LINES" "$LOGHUB"/*/*.log
make_file "$APACHE" "$LINES" "$LOGHUB"/Apache/Apache_2k.log
BYTES=$(stat -c %s "$PLAIN")

# The regex both agents run: three captures, the line replaced by them.
REGEX='^\[(?<time>[^\]]+)\] \[(?<level>[^\]]+)\] (?<message>.*)$'
FB_REGEX='^\[(?<time>[^\]]+)\] \[(?<level>[^\]]+)\] (?<log>.*)$'

trawl_cfg() { # name input(stdin|file:path) output(null|stdout) regex(0|1)
    local name=$1 input=$2 output=$3 regex=$4 f=$WORK/$1.yaml
    {
        echo "data_dir: $WORK/data-$name"
        echo "http: { enabled: false }"
        [[ -n ${WORKERS:-} ]] && echo "pipeline: { workers: $WORKERS }"
        echo "inputs:"
        if [[ $input == stdin ]]; then echo "  in: { type: stdin }"
        else echo "  in: { type: file, paths: [\"${input#file:}\"] }"; fi
        if [[ $regex == 1 ]]; then
            echo "processors:"
            echo "  - type: regex"
            echo "    patterns: ['$REGEX']"
        fi
        echo "outputs:"
        if [[ $output == null ]]; then echo '  out: { type: "null" }'; else echo "  out: { type: stdout }"; fi
    } > "$f"
    echo "$f"
}

fb_cfg() { # name file regex(0|1)
    local name=$1 file=$2 regex=$3 f=$WORK/$1.conf
    {
        printf '[SERVICE]\n    Flush 1\n    Log_Level error\n    Parsers_File %s\n' "$WORK/parsers.conf"
        printf '[INPUT]\n    Name tail\n    Path %s\n    Read_from_Head On\n    Exit_On_Eof On\n' "$file"
        if [[ $regex == 1 ]]; then
            printf '[FILTER]\n    Name parser\n    Match *\n    Key_Name log\n    Parser bench\n'
        fi
        printf '[OUTPUT]\n    Name null\n    Match *\n'
    } > "$f"
    echo "$f"
}
printf '[PARSER]\n    Name bench\n    Format regex\n    Regex %s\n' "$FB_REGEX" > "$WORK/parsers.conf"

# Cases: "label|lines|command" (the command reads the files itself; state is wiped first).
CASES=()
add_trawl_cases() { # tag binary
    local tag=$1 bin=$2
    CASES+=("$tag stdin → null|$LINES|$bin --log-level error run -c $(trawl_cfg "$tag-sn" stdin null 0) < $PLAIN")
    CASES+=("$tag file → null|$LINES|$bin --log-level error run --once -c $(trawl_cfg "$tag-fn" "file:$PLAIN" null 0)")
    CASES+=("$tag file → regex → null|$LINES|$bin --log-level error run --once -c $(trawl_cfg "$tag-frn" "file:$APACHE" null 1)")
    CASES+=("$tag stdin → stdout JSON|$LINES|$bin --log-level error run -c $(trawl_cfg "$tag-sj" stdin stdout 0) < $PLAIN > /dev/null")
}
add_trawl_cases trawl "$TRAWL"
[[ -n ${TRAWL_BASE:-} ]] && add_trawl_cases base "$TRAWL_BASE"
if [[ -n ${FLUENT_BIT:-} ]]; then
    CASES+=("fluent-bit tail → null|$LINES|$FLUENT_BIT -q -c $(fb_cfg fb-fn "$PLAIN" 0)")
    CASES+=("fluent-bit tail → regex → null|$LINES|$FLUENT_BIT -q -c $(fb_cfg fb-frn "$APACHE" 1)")
fi

# One run: prints "wall user sys maxrss_kb".
measure() {
    rm -rf "$WORK"/data-*
    # Both files in the page cache before every case: here it drops a file read a few minutes
    # ago (a cold 437 MB read cost the first case of a round 0.7 s of system time), which
    # penalised whichever binary came first in a round.
    cat "$PLAIN" "$APACHE" > /dev/null
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" bash -c "$1" > /dev/null 2> "$WORK/stderr" \
        || { echo "failed: $1" >&2; cat "$WORK/stderr" >&2; exit 1; }
    tail -n 1 "$WORK/time"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A WALL CPU RSS
for ((r = 1; r <= ROUNDS; r++)); do
    for i in "${!CASES[@]}"; do
        IFS='|' read -r _ _ cmd <<< "${CASES[$i]}"
        read -r wall user sys rss <<< "$(measure "$cmd")"
        WALL[$i]+="$wall "
        CPU[$i]+="$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') "
        RSS[$i]+="$rss "
    done
    echo "round $r/$ROUNDS done" >&2
done

med() { tr ' ' '\n' <<< "$1" | grep -v '^$' | median; }
declare -A MW MC MR
for i in "${!CASES[@]}"; do
    MW[$i]=$(med "${WALL[$i]}"); MC[$i]=$(med "${CPU[$i]}"); MR[$i]=$(med "${RSS[$i]}")
done
# The row another row is compared with: Fluent Bit's of the same work, and base's.
find_case() { for i in "${!CASES[@]}"; do [[ ${CASES[$i]%%|*} == "$1" ]] && { echo "$i"; return; }; done; echo; }
fb_of() {
    case $1 in
        *"stdin → null"|*"file → null") find_case "fluent-bit tail → null" ;;
        *"file → regex → null") find_case "fluent-bit tail → regex → null" ;;
        *) echo ;;
    esac
}

echo
echo "### CPU per line: $LINES lines per file ($((BYTES / 1048576)) MiB of loghub lines; Apache error lines for regex), medians of $ROUNDS interleaved rounds"
echo
echo "| case | wall s | CPU s (user+sys) | µs CPU/line | lines/s | peak RSS MiB | CPU vs Fluent Bit | wall vs Fluent Bit | CPU vs base |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for i in "${!CASES[@]}"; do
    IFS='|' read -r label lines _ <<< "${CASES[$i]}"
    fb=$(fb_of "$label"); base=""
    [[ $label == trawl* && -n ${TRAWL_BASE:-} ]] && base=$(find_case "base${label#trawl}")
    awk -v l="$label" -v n="$lines" -v w="${MW[$i]}" -v c="${MC[$i]}" -v r="${MR[$i]}" \
        -v fw="${fb:+${MW[$fb]}}" -v fc="${fb:+${MC[$fb]}}" -v bc="${base:+${MC[$base]}}" 'BEGIN {
        rc = (fc > 0 && !(l ~ /^fluent/)) ? sprintf("%.2f×", c / fc) : "";
        rw = (fw > 0 && !(l ~ /^fluent/)) ? sprintf("%.2f×", w / fw) : "";
        rb = (bc > 0) ? sprintf("%.2f×", c / bc) : "";
        rate = (w > 0) ? sprintf("%\047d", n / w) : "";
        printf "| %s | %.2f | %.2f | %.3f | %s | %.1f | %s | %s | %s |\n", l, w, c, c * 1e6 / n, rate, r / 1024, rc, rw, rb
    }'
done

if [[ $CALLGRIND == 1 ]] && command -v valgrind > /dev/null; then
    CG=$DATA/cpu-loghub-$CG_LINES.log
    CGA=$DATA/cpu-apache-$CG_LINES.log
    make_file "$CG" "$CG_LINES" "$LOGHUB"/*/*.log
    make_file "$CGA" "$CG_LINES" "$LOGHUB"/Apache/Apache_2k.log
    echo
    echo "### Instructions per line (callgrind, $CG_LINES lines, all threads; startup of an empty run subtracted)"
    echo
    echo "| binary | stdin → null | file → null | file → regex → null | stdin → stdout JSON | JSON rate vs null |"
    echo "|---|---:|---:|---:|---:|---:|"
    instr() { # stdin-file binary args... → instructions
        local in=$1; shift
        rm -rf "$WORK"/data-*
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" < "$in" 2>&1 > /dev/null \
            | awk '/Collected/ { print $4 }' | tr -d ,
    }
    for pair in "trawl:$TRAWL" ${TRAWL_BASE:+"base:$TRAWL_BASE"}; do
        tag=${pair%%:*} bin=${pair#*:}
        empty=$(instr /dev/null "$bin" --log-level error run -c "$(trawl_cfg "$tag-cge" stdin null 0)")
        sn=$(instr "$CG" "$bin" --log-level error run -c "$(trawl_cfg "$tag-cgs" stdin null 0)")
        fn=$(instr /dev/null "$bin" --log-level error run --once -c "$(trawl_cfg "$tag-cgf" "file:$CG" null 0)")
        frn=$(instr /dev/null "$bin" --log-level error run --once -c "$(trawl_cfg "$tag-cgr" "file:$CGA" null 1)")
        sj=$(instr "$CG" "$bin" --log-level error run -c "$(trawl_cfg "$tag-cgj" stdin stdout 0)")
        awk -v t="$tag" -v e="$empty" -v s="$sn" -v f="$fn" -v r="$frn" -v j="$sj" -v n="$CG_LINES" \
            'BEGIN { printf "| %s | %.0f | %.0f | %.0f | %.0f | %.2f× |\n", t, (s - e) / n, (f - e) / n, (r - e) / n, (j - e) / n, (s - e) / (j - e) }'
    done
fi
