SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, verb,
       -- cluster-wide RBAC is cluster-wide power; a namespace's RBAC is that namespace's
       CASE WHEN namespace IS NULL THEN 'high' ELSE 'medium' END AS severity
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND user_name LIKE 'system:serviceaccount:%'
  AND NOT array_has({{excluded_service_accounts}}, user_name)
  -- an export without the group: the RBAC resources are named only in that group
  AND (api_group = 'rbac.authorization.k8s.io' OR (api_group IS NULL AND resource IN ('roles', 'rolebindings', 'clusterroles', 'clusterrolebindings')))
  AND verb IN ('create', 'update', 'patch', 'delete', 'deletecollection', 'escalate', 'bind')
  AND authz_decision = 'allow'
  AND NOT starts_with_any(coalesce(user_name, ''), array_concat({{known_controllers}}, {{extra_controllers}}))
