#!/usr/bin/env bash
# Kafka → committed Parquet: events/s of `auditlake ingest --kafka` (the consumer `serve` runs,
# in one-shot mode: read to the end of every partition, flush, commit offsets after the lake
# commit) against a real broker process (tansu, memory storage), with one consumer and with two
# consumers in one group (two replicas, each with its own lake). The topic is filled first by a
# producer nobody here wrote (Python confluent-kafka), so the timing is consumption only.
# Writes benches/kafka_results.md. Not a test: numbers depend on the machine.
#
#   cargo build --release && pip install confluent-kafka && benches/kafka_bench.sh
#
# Env: BIN (default target/release/auditlake), TANSU (default ~/.cache/auditlake/tools/bin/tansu),
# EVENTS (default 500000), PARTITIONS (default 4).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/auditlake}
TANSU=${TANSU:-$HOME/.cache/auditlake/tools/bin/tansu}
EVENTS=${EVENTS:-500000}
PARTITIONS=${PARTITIONS:-4}
WORK=$(mktemp -d)
trap 'kill $BROKER 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 20000))
URL="tcp://127.0.0.1:$PORT"

"$TANSU" broker --listener-url "$URL" --advertised-listener-url "$URL" --storage-engine memory://tansu/ \
  > "$WORK/broker.log" 2>&1 &
BROKER=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done

"$BIN" generate --events "$EVENTS" --seed 11 --out "$WORK/events.jsonl" >/dev/null
BYTES=$(stat -c %s "$WORK/events.jsonl")

produce() { # topic
  "$TANSU" topic create "$1" --broker "$URL" --partitions "$PARTITIONS" >/dev/null
  python3 - "$1" "$WORK/events.jsonl" "127.0.0.1:$PORT" <<'EOF'
import sys
from confluent_kafka import Producer
topic, path, brokers = sys.argv[1], sys.argv[2], sys.argv[3]
p = Producer({"bootstrap.servers": brokers, "linger.ms": 20, "batch.size": 1 << 20,
              "compression.type": "none", "queue.buffering.max.messages": 1000000})
n = 0
with open(path, "rb") as f:
    for line in f:
        while True:
            try:
                p.produce(topic, line.rstrip(b"\n"), key=str(n).encode())
                break
            except BufferError:
                p.poll(0.05)
        n += 1
        if n % 10000 == 0:
            p.poll(0)
left = p.flush(120)
assert left == 0, f"{left} messages not delivered"
print(n)
EOF
}

consume() { # topic group lake → JSON summary
  "$BIN" ingest --json --kafka "127.0.0.1:$PORT" --topic "$1" --group "$2" --cluster bench --lake "$3"
}

peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# One consumer.
produce single >/dev/null
start=$(date +%s.%N)
consume single g1 "$WORK/lake1" > "$WORK/one.json"
end=$(date +%s.%N)
ONE_SECS=$(python3 -c "print(round($end - $start, 2))")
ONE_EPS=$(python3 -c "import json; d=json.load(open('$WORK/one.json')); print(round(d['events']/($end-$start)))")
ONE_EVENTS=$(python3 -c "import json; print(json.load(open('$WORK/one.json'))['events'])")

# The broker's ceiling: a bare librdkafka consumer (Python confluent-kafka) reading the same
# topic to its end, storing nothing.
BASE_SECS=$(python3 - "127.0.0.1:$PORT" <<'EOF'
import sys, time
from confluent_kafka import Consumer, KafkaError
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "baseline", "auto.offset.reset": "earliest",
              "enable.partition.eof": True})
start = time.time()
c.subscribe(["single"])
eof, n = set(), 0
while True:
    m = c.poll(1)
    if m is None:
        continue
    if m.error():
        if m.error().code() == KafkaError._PARTITION_EOF:
            eof.add(m.partition())
            if len(eof) == len(c.assignment()) and n > 0:
                break
        continue
    n += 1
print(round(time.time() - start, 2))
c.close()
EOF
)
BASE_EPS=$(python3 -c "print(round($ONE_EVENTS/$BASE_SECS))")

# Two consumers in one group, each with its own lake (two replicas).
produce pair >/dev/null
start=$(date +%s.%N)
consume pair g2 "$WORK/lakeA" > "$WORK/a.json" &
A=$!
consume pair g2 "$WORK/lakeB" > "$WORK/b.json" &
B=$!
wait $A $B
end=$(date +%s.%N)
TWO_SECS=$(python3 -c "print(round($end - $start, 2))")
read -r A_EV B_EV < <(python3 -c "import json; print(json.load(open('$WORK/a.json'))['events'], json.load(open('$WORK/b.json'))['events'])")
TWO_EPS=$(python3 -c "print(round(($A_EV + $B_EV)/($end-$start)))")
ROWS_A=$("$BIN" query --format csv --lake "$WORK/lakeA" "SELECT count(*) FROM audit_events" | tail -1)
ROWS_B=$("$BIN" query --format csv --lake "$WORK/lakeB" "SELECT count(*) FROM audit_events" | tail -1)

{
  echo "# Kafka → committed Parquet"
  echo
  echo "\`benches/kafka_bench.sh\`, $(date -u +%Y-%m-%d), $(nproc) cores; broker: tansu $("$TANSU" --version 2>/dev/null | awk '{print $NF}') (memory storage) on loopback,"
  echo "$EVENTS events ($(python3 -c "print(round($BYTES/1e6))") MB of JSON, ~$(python3 -c "print(round($BYTES/$EVENTS))") B/event) in $PARTITIONS partitions, one event per message."
  echo "Time = from start of \`auditlake ingest --kafka\` (group join included) to exit (last Parquet"
  echo "file committed, offsets committed). The broker and the consumers share the cores."
  echo
  echo "| consumers | events read | wall time | events/s | MB/s |"
  echo "|---:|---:|---:|---:|---:|"
  echo "| 1 | $ONE_EVENTS | ${ONE_SECS} s | $ONE_EPS | $(python3 -c "print(round($BYTES/1e6/$ONE_SECS,1))") |"
  echo "| 2 in one group | $A_EV + $B_EV | ${TWO_SECS} s | $TWO_EPS | $(python3 -c "print(round($BYTES/1e6/$TWO_SECS,1))") |"
  echo "| *baseline: bare librdkafka consumer (Python), stores nothing* | $ONE_EVENTS | ${BASE_SECS} s | $BASE_EPS | $(python3 -c "print(round($BYTES/1e6/$BASE_SECS,1))") |"
  echo
  echo "Rows in the two replicas' lakes: $ROWS_A + $ROWS_B = $((ROWS_A + ROWS_B)) (of $EVENTS: a partition handed"
  echo "over in the rebalance while the second consumer joined is re-read from the last commit by its new owner;"
  echo "within one lake the dedup key drops repeats, across replicas' lakes they can appear twice)."
} > benches/kafka_results.md
cat benches/kafka_results.md
