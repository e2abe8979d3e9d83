#!/usr/bin/env bash
# Detection benchmark (not a test): the whole pack over the 1M-event lake that
# benches/lake_bench.py leaves in bench-out/lake-1000000, then over a 5-minute window of it.
# Usage: cargo build --release && python3 benches/lake_bench.py && benches/detect_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release/auditlake}
lake=${LAKE:-bench-out/lake-1000000}
cfg=samples/auditlake.toml
measure() {
    local label=$1; shift
    local start end status=0
    start=$(date +%s.%N)
    "$bin" detect --config "$cfg" --lake "$lake" --format json "$@" > /tmp/detect-bench.out 2>/tmp/detect-bench.err || status=$?
    end=$(date +%s.%N)
    [ "$status" -le 1 ] || { cat /tmp/detect-bench.err; exit "$status"; }
    printf '| %s | %.2f s | %s |\n' "$label" "$(python3 -c "print($end - $start)")" "$(wc -l < /tmp/detect-bench.out) findings"
}
first=$("$bin" query --lake "$lake" --format csv "SELECT min(stage_at) FROM audit_events" | tail -1)
from=$(date -u -d "$first + 30 minutes" +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u -d "$first + 35 minutes" +%Y-%m-%dT%H:%M:%SZ)
echo "| run | wall time | output |"
echo "|---|---:|---|"
measure "whole pack, all $( "$bin" query --lake "$lake" --format csv 'SELECT count(*) FROM audit_events' | tail -1) events" 
measure "whole pack, 5-minute window $from … $to" --since "$from" --until "$to"
