SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, role_ref_name,
       array_to_string(binding_subjects, ', ') AS subjects
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND coalesce(api_group, 'rbac.authorization.k8s.io') = 'rbac.authorization.k8s.io' AND resource IN ('clusterrolebindings', 'rolebindings')
  AND verb IN ('create', 'update', 'patch') AND response_code BETWEEN 200 AND 299
  AND array_has_any(binding_subjects, {{anonymous_subjects}})
  AND NOT (array_has({{bootstrap_users}}, coalesce(user_name, ''))
           AND coalesce(json_get_str(request_object, 'metadata', 'labels', 'kubernetes.io/bootstrapping'), '') = 'rbac-defaults')
