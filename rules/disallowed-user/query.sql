SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND user_name IS NOT NULL AND user_name NOT LIKE 'system:%'
  AND NOT array_has({{allowed_users}}, user_name)
