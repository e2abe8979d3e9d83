WITH e AS (
    SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name,
           date_bin(INTERVAL '10 minutes', stage_at, TIMESTAMP '1970-01-01T00:00:00Z') AS bucket
    FROM audit_events
    WHERE stage = 'ResponseComplete'
      AND resource = 'secrets' AND verb = 'get' AND response_code BETWEEN 200 AND 299
      AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND NOT coalesce(array_has_any(user_groups, {{trusted_admin_groups}}), false) AND coalesce(user_name, '') NOT LIKE 'system:node:%' AND coalesce(user_name, '') NOT LIKE 'system:serviceaccount:kube-system:%'
      AND NOT starts_with_any(coalesce(user_name, ''), array_concat({{known_controllers}}, {{extra_controllers}}))
), b AS (
    SELECT cluster, user_name, bucket FROM e GROUP BY cluster, user_name, bucket
    HAVING count(DISTINCT namespace || '/' || name) >= {{min_distinct_secrets}}
)
SELECT e.audit_id, e.stage_at, e.cluster, e.user_name, e.source_ip, e.resource, e.subresource, e.namespace, e.name
FROM e JOIN b ON e.cluster = b.cluster AND e.user_name = b.user_name AND e.bucket = b.bucket
