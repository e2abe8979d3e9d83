SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, user_agent
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'secrets' AND verb IN ('get', 'list', 'watch') AND response_code BETWEEN 200 AND 299
  AND (user_name LIKE 'system:serviceaccount:%' OR user_name LIKE 'system:node:%')
  AND NOT ip_in_cidrs(source_ip, {{cluster_source_ranges}})
