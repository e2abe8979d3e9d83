SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'namespaces' AND subresource IS NULL AND verb = 'create'
  AND NOT array_has({{allowed_namespaces}}, name)
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, ''))
