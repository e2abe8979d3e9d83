SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'pods' AND verb IN ('create', 'update', 'patch')
  AND (user_name = 'system:anonymous' OR coalesce(array_has(user_groups, 'system:unauthenticated'), false))
  AND (authz_decision = 'allow' OR response_code BETWEEN 200 AND 299)
