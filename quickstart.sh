#!/usr/bin/env bash
# The main job on the embedded default: ingest the bundled samples into ./lake and run a few of
# the queries an incident responder would start with. Needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")"

cargo build --quiet --bin auditlake
bin="${CARGO_TARGET_DIR:-target}/debug/auditlake"
lake=lake

run() {
    printf '\n$ auditlake %s\n' "$(printf '%q ' "$@")"
    "$bin" "$@"
}

run ingest --lake "$lake" --cluster prod-eu samples/audit.log

run query --lake "$lake" "
SELECT CASE WHEN user_name LIKE 'system:node:%' THEN 'kubelets'
            WHEN user_name LIKE 'system:serviceaccount:%' THEN 'service accounts'
            WHEN user_name LIKE 'system:%' THEN 'control plane / anonymous'
            ELSE 'people' END AS who,
       count(*) AS events, count(DISTINCT user_name) AS identities
FROM audit_events GROUP BY 1 ORDER BY events DESC"

echo; echo "# Who read secrets, apart from the machines?"
run query --lake "$lake" "
SELECT user_name, source_ip, verb, namespace, name, response_code, user_agent
FROM audit_events
WHERE resource = 'secrets' AND verb IN ('get', 'list', 'watch') AND stage = 'ResponseComplete'
  AND user_name NOT LIKE 'system:%'
ORDER BY stage_at"

echo; echo "# Who got cluster-admin, and who else got bound to something?"
run query --lake "$lake" "
SELECT stage_at, user_name, verb, resource, name, role_ref_name, binding_subjects
FROM audit_events
WHERE resource IN ('clusterrolebindings', 'rolebindings') AND verb IN ('create', 'update', 'patch', 'delete')
  AND stage = 'ResponseComplete'
ORDER BY stage_at"

echo; echo "# Privileged or host-level pods and workloads (derived at ingest, no JSON parsing)"
run query --lake "$lake" "
SELECT user_name, resource, namespace, name, pod_privileged AS priv, pod_host_pid AS pid,
       pod_host_network AS net, pod_host_paths, pod_images
FROM audit_events
WHERE stage = 'ResponseComplete' AND verb = 'create'
  AND (pod_privileged OR pod_host_pid OR pod_host_ipc OR cardinality(pod_host_paths) > 0)
  AND user_name NOT LIKE 'system:serviceaccount:kube-system:daemon-set-controller'"

echo; echo "# Interactive access: exec, attach, port-forward, debug containers"
run query --lake "$lake" "
SELECT stage_at, user_name, namespace, name, subresource, exec_container, exec_command
FROM audit_events
WHERE resource = 'pods' AND subresource IN ('exec', 'attach', 'portforward', 'ephemeralcontainers')
  AND stage IN ('ResponseComplete')
ORDER BY stage_at"

echo; echo "# Anonymous requests the API server allowed (health checks excluded)"
run query --lake "$lake" "
SELECT source_ip, verb, request_uri, authz_reason
FROM audit_events
WHERE user_name = 'system:anonymous' AND authz_decision = 'allow' AND stage = 'ResponseComplete'
  AND request_uri NOT IN ('/healthz', '/livez', '/readyz', '/version')"

echo; echo "# The detection pack over the samples (built into the binary from rules/; exit code 1 means findings)"
run rules list --config samples/auditlake.toml
status=0
run detect --config samples/auditlake.toml --lake "$lake" || status=$?
[ "$status" -le 1 ] || exit "$status"

echo; echo "# The incident responder: what did dave do, in order? (findings marked ⚑; stored with --store)"
run detect --config samples/auditlake.toml --lake "$lake" --store --format json >/dev/null || true
run timeline --lake "$lake" --user dave@example.com --limit 40

echo; echo "# The auditor: compliance reports (reports/), CIS-mapped, as self-contained HTML"
mkdir -p reports-out
for r in $("$bin" report --list | awk '{print $1}'); do
    "$bin" report "$r" --lake "$lake" --out "reports-out/$r.html" 2>/dev/null
done
run report rbac-changes --lake "$lake" --section cluster_admin
ls reports-out

echo; echo "# The evidence is intact: every commit chained to the one before, every file re-hashed"
run verify --lake "$lake"

echo
echo "The lake is in ./$lake: a Delta table of Parquet files (delta-rs, Polars, Spark, Trino, DuckDB's delta_scan read it)."
echo "Reports are in ./reports-out/ (open them in a browser)."
echo "Try your own: $bin query --lake $lake 'SELECT ... FROM audit_events'   (columns: $bin schema)"
echo "or interactively: $bin shell --lake $lake      (or psql via: $bin pg --lake $lake)"
