SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, verb
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND coalesce(api_group, 'rbac.authorization.k8s.io') = 'rbac.authorization.k8s.io' AND resource IN ('clusterrolebindings', 'rolebindings') AND subresource IS NULL
  AND verb IN ('create', 'update', 'patch', 'delete', 'deletecollection') AND response_code BETWEEN 200 AND 299
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, ''))
  AND NOT starts_with_any(coalesce(user_name, ''), array_concat({{known_controllers}}, {{extra_controllers}}))
