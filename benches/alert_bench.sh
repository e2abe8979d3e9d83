#!/usr/bin/env bash
# Detections in `serve` (not a test; numbers depend on the machine). Writes benches/alert_results.md.
#
#  1. Alert latency: serve ingests background traffic at a steady rate (bench-webhook --rate)
#     while a probe POSTs one `kubectl exec` event every 250 ms; the streaming rule exec-into-pod
#     reports it to a webhook sink (a local receiver). Latency = sink receipt − probe POST start.
#  2. Scheduled pack: RATE events/s of event time for 5 minutes (generate), ingested; then the
#     whole active pack over that 5-minute window (`detect --since --until`), as one scheduled
#     pass would run it.
#
#   cargo build --release && benches/alert_bench.sh
# Env: BIN (target/release/auditlake), RATE (10000), SECONDS_PER_RUN (30).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/auditlake}
RATE=${RATE:-10000}
SECS=${SECONDS_PER_RUN:-30}
WORK=$(mktemp -d)
trap 'kill $SERVER $RECEIVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 20000)); SINK_PORT=$((PORT + 1))

# The sink: records (receipt time, target) of every finding POSTed to it.
cat > "$WORK/receiver.py" <<'PY'
import http.server, json, sys, time
out = open(sys.argv[2], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out.write(json.dumps({"t": time.time(), "target": body["finding"].get("target"), "key": body["idempotency_key"]}) + "\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$WORK/receiver.py" "$SINK_PORT" "$WORK/received.jsonl" &
RECEIVER=$!

cat > "$WORK/auditlake.toml" <<TOML
[lake]
path = "$WORK/lake"
[webhook]
listen = "127.0.0.1:$PORT"
flush_interval_secs = 10
[detect]
rules_dir = "$PWD/rules"
[scheduler]
settle_secs = 30
[[sinks]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:$SINK_PORT/"
TOML
"$BIN" --config "$WORK/auditlake.toml" serve 2> "$WORK/serve.log" &
SERVER=$!
for _ in $(seq 200); do grep -q listening "$WORK/serve.log" 2>/dev/null && break; sleep 0.1; done

# The probe: one exec event every 250 ms, its POST start time in the pod name.
cat > "$WORK/probe.py" <<'PY'
import json, sys, time, urllib.request, uuid, datetime
url, seconds, log = sys.argv[1], float(sys.argv[2]), open(sys.argv[3], "w", buffering=1)
end = time.time() + seconds
while time.time() < end:
    t0 = time.time()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    pod = f"probe-{int(t0 * 1e6)}"
    ev = {"level": "Metadata", "auditID": str(uuid.uuid4()), "stage": "ResponseComplete",
          "requestURI": f"/api/v1/namespaces/bench/pods/{pod}/exec?command=sh", "verb": "create",
          "user": {"username": "probe@example.com"}, "sourceIPs": ["10.9.9.9"],
          "objectRef": {"resource": "pods", "namespace": "bench", "name": pod, "subresource": "exec", "apiVersion": "v1"},
          "responseStatus": {"code": 101}, "requestReceivedTimestamp": now, "stageTimestamp": now,
          "annotations": {"authorization.k8s.io/decision": "allow"}}
    body = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [ev]}).encode()
    urllib.request.urlopen(urllib.request.Request(url, body, {"Content-Type": "application/json"})).read()
    log.write(json.dumps({"pod": pod, "sent": t0}) + "\n")
    time.sleep(max(0, 0.25 - (time.time() - t0)))
PY
"$BIN" bench-webhook --url "http://127.0.0.1:$PORT/audit/bench" --senders 2 --rate "$RATE" --seconds "$SECS" --json > "$WORK/load.json" &
LOAD=$!
python3 "$WORK/probe.py" "http://127.0.0.1:$PORT/audit/bench" "$SECS" "$WORK/probes.jsonl"
wait $LOAD
sleep 2
CPU=$(awk '{print ($14+$15)/100}' /proc/$SERVER/stat)
RSS=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$SERVER/status)
kill -TERM $SERVER; wait $SERVER || true

python3 - "$WORK" "$RATE" "$SECS" "$CPU" "$RSS" > "$WORK/part1.md" <<'PY'
import json, sys
work, rate, secs, cpu, rss = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
sent = {json.loads(l)["pod"]: json.loads(l)["sent"] for l in open(f"{work}/probes.jsonl")}
got = {}
dups = 0
for l in open(f"{work}/received.jsonl"):
    r = json.loads(l)
    pod = (r["target"] or "").rsplit("/", 1)[-1]
    if pod in sent:
        if pod in got: dups += 1
        got.setdefault(pod, r["t"])
lat = sorted((got[p] - sent[p]) * 1000 for p in got)
load = json.load(open(f"{work}/load.json"))
pct = lambda q: lat[min(len(lat) - 1, round((len(lat) - 1) * q))]
print(f"## Streaming alert latency while ingesting {load['events_per_sec']:,.0f} events/s\n")
print(f"{len(sent)} probe execs over {secs:.0f} s beside `bench-webhook --rate {rate:.0f}` (2 senders, 400-event batches); "
      f"streaming rule `exec-into-pod` → webhook sink on loopback. Server CPU {cpu:.1f} s in all, peak RSS {rss} MB.\n")
print("| probes | alerted | duplicates | p50 ms | p90 ms | p99 ms | max ms |")
print("|---:|---:|---:|---:|---:|---:|---:|")
print(f"| {len(sent)} | {len(got)} | {dups} | {pct(.5):.0f} | {pct(.9):.0f} | {pct(.99):.0f} | {lat[-1]:.0f} |")
PY

# Part 2: the whole pack over one 5-minute window at RATE events/s of event time.
N=$(python3 -c "print(int($RATE * 300))")
"$BIN" generate --events "$N" --rate "$RATE" --start 2026-11-20T08:00:00Z --scenarios --out "$WORK/window.jsonl" 2>/dev/null
"$BIN" ingest --quiet --lake "$WORK/lake2" --cluster bench "$WORK/window.jsonl"
"$BIN" --config samples/auditlake.toml detect --lake "$WORK/lake2" --since 2026-11-20T08:00:00Z --until 2026-11-20T08:05:00Z --format json > /dev/null 2> "$WORK/detect1.log" || true
S=$(date +%s.%N)
"$BIN" --config samples/auditlake.toml detect --lake "$WORK/lake2" --since 2026-11-20T08:00:00Z --until 2026-11-20T08:05:00Z --format json > "$WORK/findings.json" 2> "$WORK/detect.log" || true
E=$(date +%s.%N)
{
  cat "$WORK/part1.md"
  echo
  echo "## Scheduled pass of the whole pack over a 5-minute window at ${RATE} events/s"
  echo
  echo "$N events of event time 08:00–08:05 (generator, with the attack scenarios), ingested; then"
  echo "\`auditlake detect --since 08:00 --until 08:05\` with every active rule, warm cache (second run)."
  echo
  echo "| events in window | rules | findings | pass time s | share of the 300 s window |"
  echo "|---:|---:|---:|---:|---:|"
  python3 -c "
import re
log = open('$WORK/detect.log').read()
m = re.search(r'(\d+) finding\(s\) from (\d+) active', log)
t = $E - $S
print(f'| {$N:,} | {m.group(2)} | {m.group(1)} | {t:.1f} | {t / 300 * 100:.1f} % |')
"
  echo
  echo "Run on $(nproc) cores, $(date -u +%Y-%m-%d)."
} > benches/alert_results.md
cat benches/alert_results.md
