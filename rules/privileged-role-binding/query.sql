SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, role_ref_name,
       array_to_string(binding_subjects, ', ') AS subjects,
       -- a RoleBinding grants its role inside one namespace only: cluster-admin there is namespace admin
       CASE WHEN resource = 'clusterrolebindings' THEN 'critical' ELSE 'medium' END AS severity
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND coalesce(api_group, 'rbac.authorization.k8s.io') = 'rbac.authorization.k8s.io' AND resource IN ('clusterrolebindings', 'rolebindings')
  AND verb IN ('create', 'update', 'patch') AND response_code BETWEEN 200 AND 299
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, ''))
  -- GitOps controllers apply team RoleBindings all day; a ClusterRoleBinding is reported whoever makes it
  AND (resource = 'clusterrolebindings' OR NOT starts_with_any(coalesce(user_name, ''), array_concat({{known_controllers}}, {{extra_controllers}})))
  AND (array_has({{privileged_roles}}, role_ref_name)
       OR (array_has({{default_sa_roles}}, role_ref_name)
           AND regexp_like(array_to_string(binding_subjects, '|'), '(^|\|)ServiceAccount:[^|/]+/default($|\|)')))
