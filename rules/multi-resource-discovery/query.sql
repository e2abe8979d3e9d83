WITH e AS (
    SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, user_agent,
           date_bin(INTERVAL '1 minute', stage_at, TIMESTAMP '1970-01-01T00:00:00Z') AS bucket
    FROM audit_events
    WHERE stage = 'ResponseComplete'
      AND verb IN ('get', 'list')
      AND array_has({{discovery_resources}}, resource)
      AND coalesce(user_name, '') NOT LIKE 'system:%'
      AND NOT coalesce(array_has_any(user_groups, {{trusted_admin_groups}}), false)
), b AS (
    SELECT cluster, user_name, source_ip, user_agent, bucket
    FROM e GROUP BY cluster, user_name, source_ip, user_agent, bucket
    HAVING count(DISTINCT resource) >= {{min_distinct_resources}}
)
SELECT e.audit_id, e.stage_at, e.cluster, e.user_name, e.source_ip, e.resource, e.subresource, e.namespace, e.name, e.user_agent
FROM e JOIN b ON e.cluster = b.cluster AND e.user_name = b.user_name AND e.source_ip = b.source_ip
             AND e.user_agent = b.user_agent AND e.bucket = b.bucket
