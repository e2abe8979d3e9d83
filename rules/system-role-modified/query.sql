SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, verb
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND coalesce(api_group, 'rbac.authorization.k8s.io') = 'rbac.authorization.k8s.io' AND resource IN ('clusterroles', 'roles') AND subresource IS NULL
  AND verb IN ('update', 'patch', 'delete') AND response_code BETWEEN 200 AND 299
  AND name LIKE 'system:%'
  AND NOT array_has({{excluded_roles}}, name)
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, ''))
