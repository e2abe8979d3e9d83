SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND coalesce(api_group, 'apps') = 'apps' AND resource = 'deployments' AND subresource IS NULL
  AND verb = 'patch' AND response_code BETWEEN 200 AND 299
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND coalesce(user_name, '') NOT LIKE 'system:serviceaccount:kube-system:%'
  AND NOT array_has({{excluded_users}}, user_name)
  AND NOT starts_with_any(coalesce(user_name, ''), array_concat({{known_controllers}}, {{extra_controllers}}))
  -- a logged body that leaves the pod template's spec alone (rollout restart, scale) cannot inject a sidecar
  AND coalesce(json_contains(request_object, 'spec', 'template', 'spec'), true)
