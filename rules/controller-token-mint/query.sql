SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'serviceaccounts' AND subresource = 'token' AND verb = 'create' AND response_code BETWEEN 200 AND 299
  AND (array_has({{controller_users}}, coalesce(user_name, '')) OR coalesce(user_name, '') LIKE 'system:serviceaccount:kube-system:%')
  AND NOT array_has({{system_namespaces}}, coalesce(namespace, ''))
  AND NOT array_has({{excluded_users}}, user_name)
