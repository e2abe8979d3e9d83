#!/usr/bin/env bash
# Noise benchmark (issue 16): the default pack over benign traffic with the controller and
# operator behaviours that trip naive rules (`generate --controllers`, no scenarios): findings per
# cluster-hour per severity, against the target (no critical, <= 1 medium-or-higher, <= 5 low per
# cluster-hour). Then the same traffic with `--scenarios`: every scenario must still be detected.
# Exits 1 when the target is missed or a scenario goes undetected.
#
# Usage: cargo build && benches/noise_bench.sh
#   BIN=path/to/auditlake   (default target/debug/auditlake)
#   RULES=dir               (default rules/; e.g. an older pack for a before/after table)
#   HOURS=2 RATE=50         (cluster-hours of traffic and background requests per second)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/debug/auditlake}
rules=${RULES:-rules}
hours=${HOURS:-2}
rate=${RATE:-50}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Background events for $hours of event time: each request is ~2 events (see src/generate).
events=$(python3 -c "print(int($hours * 3600 * $rate * 2.0))")

run_detect() { # lake → findings (JSON lines)
    local status=0
    "$bin" detect --lake "$1" --rules-dir "$rules" --format json >"$2" 2>"$work/detect.err" || status=$?
    [ "$status" -le 1 ] || { cat "$work/detect.err" >&2; exit "$status"; }
}

"$bin" generate --controllers --events "$events" --rate "$rate" -o "$work/benign.log" 2>/dev/null
"$bin" ingest -q --lake "$work/benign" --cluster bench "$work/benign.log"
run_detect "$work/benign" "$work/benign.json"

"$bin" generate --controllers --scenarios --events "$events" --rate "$rate" -o "$work/attack.log" 2>/dev/null
"$bin" ingest -q --lake "$work/attack" --cluster bench "$work/attack.log"
run_detect "$work/attack" "$work/attack.json"

python3 - "$work/benign.json" "$work/attack.json" "$work/benign.log" "$rules" <<'PY'
import json, sys, collections, datetime
benign, attack, log, rules = sys.argv[1:5]
def load(p):
    return [json.loads(l) for l in open(p) if l.strip()]
def span_hours(p):
    first = last = None
    with open(p) as f:
        for line in f:
            t = json.loads(line)["stageTimestamp"]
            first = t if first is None or t < first else first
            last = t if last is None or t > last else last
    parse = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (parse(last) - parse(first)).total_seconds() / 3600
hours = span_hours(log)
found = load(benign)
by_sev = collections.Counter(f["severity"] for f in found)
by_rule = collections.Counter((f["severity"], f["rule_id"]) for f in found)
per_h = {s: by_sev.get(s, 0) / hours for s in ["critical", "high", "medium", "low", "info"]}
medium_up = per_h["critical"] + per_h["high"] + per_h["medium"]
print(f"pack: {rules}; benign traffic with controllers: {hours:.2f} cluster-hours, {len(found)} findings")
print()
print("| severity | findings | per cluster-hour |")
print("|---|---:|---:|")
for s in ["critical", "high", "medium", "low", "info"]:
    print(f"| {s} | {by_sev.get(s, 0)} | {per_h[s]:.2f} |")
print(f"| medium or higher | {sum(by_sev.get(s, 0) for s in ['critical', 'high', 'medium'])} | {medium_up:.2f} |")
print()
print("| rule | severity | findings |")
print("|---|---|---:|")
for (sev, rule), n in sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0])):
    print(f"| {rule} | {sev} | {n} |")
# Each scenario of `generate --scenarios` (src/generate/scenarios.rs) and rules any of which
# must report it with the scenario's actor.
SCENARIOS = [
    ("anonymous scan from a Tor exit", "system:anonymous", ["forbidden-burst-public-ip", "tor-exit-node"]),
    ("reconnaissance", "dave@example.com", ["self-access-review", "multi-resource-discovery", "permission-enumeration"]),
    ("secret reads", "dave@example.com", ["secrets-listed", "bulk-secret-reads", "secret-read-scripting-client"]),
    ("RBAC escalation", "dave@example.com", ["privileged-role-binding", "wildcard-role", "anonymous-binding"]),
    ("privileged workloads", "dave@example.com", ["privileged-pod", "host-pid-pod", "sensitive-hostpath-pod"]),
    ("interactive access", "dave@example.com", ["exec-into-pod", "port-forward", "ephemeral-container"]),
    ("tokens and impersonation", "dave@example.com", ["token-request", "privileged-impersonation"]),
    ("anonymous access after the grant", "system:anonymous", ["anonymous-allowed"]),
    ("persistence and exposure", "dave@example.com", ["admission-webhook-change", "cronjob-job-change", "nodeport-service", "configmap-credentials", "coredns-modified"]),
    ("stolen token from outside", "system:serviceaccount:payments:payments-api", ["system-principal-public-ip", "secret-read-by-workload-identity"]),
    ("cover tracks", "dave@example.com", ["events-deleted", "secret-modified-deleted", "workload-deleted"]),
]
hits = load(attack)
print()
print("| scenario | detected by |")
print("|---|---|")
missed = 0
for name, actor, want in SCENARIOS:
    got = sorted({f["rule_id"] for f in hits if f["rule_id"] in want and f.get("actor") == actor})
    missed += not got
    print(f"| {name} | {', '.join(got) if got else 'MISSED'} |")
ok = per_h["critical"] == 0 and medium_up <= 1 and per_h["low"] <= 5 and not missed
print()
print(f"target (no critical, <= 1 medium+/h, <= 5 low/h, every scenario detected): {'met' if ok else 'MISSED'}")
sys.exit(0 if ok else 1)
PY
