SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, verb
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'configmaps' AND namespace = 'kube-system'
  AND array_has({{dns_configmaps}}, name)
  AND verb IN ('update', 'patch', 'delete') AND response_code BETWEEN 200 AND 299
  AND coalesce(user_name, '') NOT LIKE 'system:node:%' AND NOT array_has({{excluded_users}}, user_name)
