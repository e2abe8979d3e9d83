SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'secrets' AND verb = 'create' AND response_code BETWEEN 200 AND 299
  AND json_get_str(request_object, 'type') = 'kubernetes.io/service-account-token'
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, ''))
