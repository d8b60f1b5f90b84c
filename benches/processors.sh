#!/usr/bin/env bash
# Parser throughput (regex, dissect, json, syslog, key_value) on the loghub samples, one core, as a Markdown table.
# Usage: benches/processors.sh   (BENCH_MS=1500 per measurement; TRAWL_SHARED_DIR to find shared/)
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench processors
