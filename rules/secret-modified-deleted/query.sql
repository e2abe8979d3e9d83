SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, verb
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'secrets' AND subresource IS NULL
  AND verb IN ('update', 'patch', 'delete', 'deletecollection') AND response_code BETWEEN 200 AND 299
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND coalesce(user_name, '') NOT LIKE 'system:node:%' AND coalesce(user_name, '') NOT LIKE 'system:serviceaccount:kube-system:%'
  AND NOT starts_with_any(coalesce(name, ''), {{excluded_name_prefixes}})
  AND NOT starts_with_any(coalesce(user_name, ''), array_concat({{known_controllers}}, {{extra_controllers}}))
