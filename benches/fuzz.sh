#!/usr/bin/env bash
# The fuzz targets of the decoders, the envelopes, the gzip/base64 layers, secret redaction and the
# WAL reader, run longer than the test suite does (it runs 256 inputs per target). Stable Rust:
# the targets are proptest properties named `fuzz_*` (ingest/src/decode/fuzz.rs,
# ingest/src/decode/secret_tests.rs, ingest/src/wal/tests.rs); a failure prints the shrunk input.
#
#   benches/fuzz.sh               # 20 000 inputs per target, test profile
#   CASES=200000 benches/fuzz.sh  # longer
#   PROFILE=release benches/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CASES="${CASES:-20000}"
args=(--offline -p auditlake-ingest --lib)
[ "${PROFILE:-}" = release ] && args+=(--release)
started=$(date +%s)
PROPTEST_CASES="$CASES" cargo test "${args[@]}" fuzz_ -- --test-threads=2 2>&1 | tee /tmp/auditlake-fuzz.log \
    | grep -E '^test .*fuzz_|test result'
targets=$(grep -cE '^test .*fuzz_.* ok$' /tmp/auditlake-fuzz.log || true)
echo "$targets targets × $CASES inputs passed in $(( $(date +%s) - started )) s"
