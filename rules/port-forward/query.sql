SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
FROM audit_events
WHERE resource = 'pods' AND subresource = 'portforward'
  AND (authz_decision = 'allow' OR (authz_decision IS NULL AND response_code < 400))
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, ''))
