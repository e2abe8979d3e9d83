SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, user_agent
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource IN ('selfsubjectaccessreviews', 'selfsubjectrulesreviews') AND verb = 'create'
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND NOT coalesce(array_has_any(user_groups, {{trusted_admin_groups}}), false)
  AND NOT (coalesce(user_name, '') NOT LIKE 'system:%' AND starts_with_any(user_agent, {{interactive_clients}}))
