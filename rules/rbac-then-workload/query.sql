WITH rbac AS (
    SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
    FROM audit_events
    WHERE stage = 'ResponseComplete' AND response_code BETWEEN 200 AND 299
      AND coalesce(api_group, 'rbac.authorization.k8s.io') = 'rbac.authorization.k8s.io' AND resource IN ('roles', 'clusterroles')
      AND verb IN ('create', 'update', 'patch')
      AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND coalesce(user_name, '') NOT LIKE 'system:serviceaccount:kube-system:%'
), workload AS (
    SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
    FROM audit_events
    WHERE stage = 'ResponseComplete' AND response_code BETWEEN 200 AND 299
      AND resource IN ('daemonsets', 'deployments', 'cronjobs') AND subresource IS NULL
      AND verb IN ('create', 'patch')
      AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND coalesce(user_name, '') NOT LIKE 'system:serviceaccount:kube-system:%'
), pairs AS (
    SELECT r.audit_id AS rbac_id, w.audit_id AS workload_id
    FROM rbac r JOIN workload w
      ON r.cluster = w.cluster AND r.user_name = w.user_name
     AND w.stage_at >= r.stage_at AND w.stage_at <= r.stage_at + INTERVAL '{{window_minutes}} minutes'
)
SELECT * FROM rbac WHERE audit_id IN (SELECT rbac_id FROM pairs)
UNION ALL
SELECT * FROM workload WHERE audit_id IN (SELECT workload_id FROM pairs)
