SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, response_code
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND response_code IN (401, 403)
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, ''))
  AND NOT starts_with_any(coalesce(user_name, ''), array_concat({{known_controllers}}, {{extra_controllers}}))
