#!/usr/bin/env bash
# Webhook throughput and time-to-2xx: `auditlake serve` (release) on loopback, concurrent senders
# POSTing 400-event EventLists (kube-apiserver's batch size) via `auditlake bench-webhook`.
# Writes benches/webhook_results.md. Not a test: numbers depend on the machine.
#
#   cargo build --release && benches/webhook_bench.sh
#
# Env: BIN (default target/release/auditlake), SECONDS_PER_RUN (20), SENDERS ("1 4 8 16"), TLS=1
# to serve HTTPS (server certificate only; openssl makes a throwaway CA).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/auditlake}
SECS=${SECONDS_PER_RUN:-20}
SENDERS=${SENDERS:-"1 4 8 16"}
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 20000))
SCHEME=http
CA_ARGS=()
{
  echo "[webhook]"
  echo "listen = \"127.0.0.1:$PORT\""
  echo "flush_interval_secs = 10"
} > "$WORK/auditlake.toml"
if [[ "${TLS:-0}" == 1 ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
    -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
  openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial \
    -days 2 -out "$WORK/server.crt" -extfile <(printf "subjectAltName=IP:127.0.0.1") 2>/dev/null
  printf 'tls_cert = "server.crt"\ntls_key = "server.key"\n' >> "$WORK/auditlake.toml"
  SCHEME=https
  CA_ARGS=(--ca "$WORK/ca.crt")
fi

"$BIN" --config "$WORK/auditlake.toml" serve --lake "$WORK/lake" 2> "$WORK/serve.log" &
SERVER=$!
for _ in $(seq 100); do grep -q listening "$WORK/serve.log" 2>/dev/null && break; sleep 0.1; done
URL="$SCHEME://127.0.0.1:$PORT/audit/bench"

metric() { curl -sk "$SCHEME://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1==m {print $2}'; }
cpu_secs() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }

OUT=benches/webhook_results.md
{
  echo "# Webhook benchmark"
  echo
  echo "\`benches/webhook_bench.sh\` on $(nproc) cores ($(date -u +%Y-%m-%d)), ${SCHEME^^}, $SECS s per row; the load"
  echo "generator runs on the same cores as the server. Each POST is a 400-event EventList"
  echo "(~$(( $("$BIN" generate --events 400 --seed 7 | wc -c) / 1024 )) KiB); every event has a fresh auditID. Time to 2xx includes the WAL fsync."
  echo
  echo "| senders | events/s | MB/s | requests ok | refused (503) | p50 ms | p90 ms | p99 ms | max ms | server CPU s/s | mean fsync ms | mean requests per fsync |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} > "$OUT.tmp"
for n in $SENDERS; do
  c0=$(cpu_secs $SERVER); f0=$(metric auditlake_wal_fsync_seconds_sum); k0=$(metric auditlake_wal_fsync_seconds_count)
  g0=$(metric auditlake_wal_group_requests_sum)
  r=$("$BIN" bench-webhook --url "$URL" --senders "$n" --seconds "$SECS" --json "${CA_ARGS[@]}")
  c1=$(cpu_secs $SERVER); f1=$(metric auditlake_wal_fsync_seconds_sum); k1=$(metric auditlake_wal_fsync_seconds_count)
  g1=$(metric auditlake_wal_group_requests_sum)
  python3 - "$r" "$c0" "$c1" "$f0" "$f1" "$k0" "$k1" "$g0" "$g1" >> "$OUT.tmp" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); c0, c1, f0, f1, k0, k1, g0, g1 = map(float, sys.argv[2:])
k = max(k1 - k0, 1)
print(f"| {r['senders']} | {r['events_per_sec']:,.0f} | {r['mb_per_sec']:.1f} | {r['requests_ok']:,} | {r['requests_refused']} | "
      f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {(c1 - c0) / r['seconds']:.2f} | "
      f"{(f1 - f0) / k * 1000:.2f} | {(g1 - g0) / k:.2f} |")
PY
done
{
  echo
  echo "Refusals by reason: $(curl -sk "$SCHEME://127.0.0.1:$PORT/metrics" | awk -F'[{}"]' '/^auditlake_webhook_requests_refused_total/ {printf "%s=%s ", $3, $5}' | sed 's/ $//')."
  echo "Server peak RSS: $(awk '/VmHWM/ {printf "%.0f MB", $2/1024}' /proc/$SERVER/status)."
  echo "Lake flushes: $(metric auditlake_lake_flush_seconds_count), mean $(python3 -c "print(f'{float(\"$(metric auditlake_lake_flush_seconds_sum)\")/max(float(\"$(metric auditlake_lake_flush_seconds_count)\"),1)*1000:.0f}')") ms."
} >> "$OUT.tmp"
kill -TERM $SERVER; wait $SERVER || true
rows=$("$BIN" query --lake "$WORK/lake" --format csv "SELECT count(*) AS n FROM audit_events" | tail -1)
echo "Rows in the lake after SIGTERM: $rows (= events acknowledged; dedup found no repeats)." >> "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
