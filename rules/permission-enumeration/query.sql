WITH e AS (
    SELECT audit_id, stage_at, cluster, user_name, source_ip, verb, resource, subresource, namespace, name, request_uri, authz_decision,
           date_bin(INTERVAL '10 minutes', stage_at, TIMESTAMP '1970-01-01T00:00:00Z') AS bucket
    FROM audit_events
    WHERE stage = 'ResponseComplete'
      AND authz_decision IN ('allow', 'forbid')
      AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND NOT coalesce(array_has_any(user_groups, {{trusted_admin_groups}}), false) AND coalesce(user_name, '') NOT LIKE 'system:node:%' AND coalesce(user_name, '') NOT LIKE 'system:serviceaccount:kube-system:%'
), b AS (
    SELECT cluster, user_name, source_ip, bucket
    FROM e
    GROUP BY cluster, user_name, source_ip, bucket
    HAVING count(DISTINCT authz_decision) = 2
       AND count(DISTINCT coalesce(request_uri, concat_ws('/', verb, resource, subresource, namespace, name))) > {{min_distinct_uris}}
       AND count(DISTINCT resource) > {{min_distinct_resources}}
       AND count(*) < {{max_requests}}
)
SELECT e.audit_id, e.stage_at, e.cluster, e.user_name, e.source_ip, e.resource, e.subresource, e.namespace, e.name
FROM e JOIN b ON e.cluster = b.cluster AND e.user_name = b.user_name AND e.source_ip = b.source_ip AND e.bucket = b.bucket
WHERE e.authz_decision = 'forbid'
