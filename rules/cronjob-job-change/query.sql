SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, verb
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND coalesce(api_group, 'batch') = 'batch' AND resource IN ('cronjobs', 'jobs') AND subresource IS NULL
  AND verb IN ('create', 'update', 'patch', 'delete') AND response_code BETWEEN 200 AND 299
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND coalesce(user_name, '') NOT LIKE 'system:serviceaccount:kube-system:%' AND coalesce(user_name, '') NOT LIKE 'system:node:%'
