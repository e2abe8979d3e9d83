SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'secrets' AND verb IN ('get', 'list', 'watch')
  AND response_code IN (401, 403)
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND coalesce(user_name, '') NOT LIKE 'system:node:%'
