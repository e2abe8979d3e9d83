SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name,
       coalesce(namespace, 'all namespaces') AS scope,
       -- every secret of the cluster at once, or one namespace's
       CASE WHEN namespace IS NULL THEN 'medium' ELSE 'low' END AS severity
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'secrets' AND verb = 'list' AND response_code BETWEEN 200 AND 299
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND NOT coalesce(array_has_any(user_groups, {{trusted_admin_groups}}), false) AND coalesce(user_name, '') NOT LIKE 'system:node:%' AND coalesce(user_name, '') NOT LIKE 'system:serviceaccount:kube-system:%'
  AND NOT array_has({{excluded_users}}, user_name)
  AND NOT starts_with_any(coalesce(user_name, ''), array_concat({{known_controllers}}, {{extra_controllers}}))
