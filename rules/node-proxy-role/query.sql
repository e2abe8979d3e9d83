SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name,
       array_to_string(role_verbs, ', ') AS verbs,
       array_to_string(role_resources, ', ') AS resources
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND coalesce(api_group, 'rbac.authorization.k8s.io') = 'rbac.authorization.k8s.io' AND resource IN ('clusterroles', 'roles') AND subresource IS NULL
  AND verb IN ('create', 'update', 'patch') AND response_code BETWEEN 200 AND 299
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, ''))
  AND array_has_any(role_resources, {{node_proxy_resources}})
