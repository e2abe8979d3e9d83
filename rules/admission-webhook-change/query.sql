SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, verb
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND coalesce(api_group, 'admissionregistration.k8s.io') = 'admissionregistration.k8s.io'
  AND resource IN ('mutatingwebhookconfigurations', 'validatingwebhookconfigurations')
  AND verb IN ('create', 'update', 'patch', 'delete') AND response_code BETWEEN 200 AND 299
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND NOT array_has({{excluded_users}}, user_name)
