SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, verb
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND verb IN ('create', 'delete') AND subresource IS NULL AND response_code BETWEEN 200 AND 299
  AND array_has({{feed_resources}}, resource)
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, ''))
  AND NOT (resource = 'secrets' AND (namespace = 'kube-system' OR coalesce(user_name, '') LIKE 'system:%'))
