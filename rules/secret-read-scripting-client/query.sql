SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, user_agent
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'secrets' AND verb IN ('get', 'list') AND response_code BETWEEN 200 AND 299
  AND starts_with_any(lower(user_agent), {{scripting_user_agents}})
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, ''))
