SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, request_uri, authz_reason
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND (user_name = 'system:anonymous' OR coalesce(array_has(user_groups, 'system:unauthenticated'), false))
  AND authz_decision = 'allow'
  AND NOT starts_with_any(request_uri, {{public_path_prefixes}})
