WITH known AS (
    SELECT DISTINCT cluster, user_name FROM audit_events_baseline
    WHERE resource = 'secrets' AND verb IN ('get', 'list') AND response_code BETWEEN 200 AND 299
)
SELECT e.audit_id, e.stage_at, e.cluster, e.user_name, e.source_ip, e.resource, e.subresource, e.namespace, e.name
FROM audit_events e
LEFT JOIN known k ON k.cluster = e.cluster AND k.user_name = e.user_name
WHERE e.stage = 'ResponseComplete'
  AND e.resource = 'secrets' AND e.verb IN ('get', 'list') AND e.response_code BETWEEN 200 AND 299
  AND k.user_name IS NULL
  AND NOT array_has({{control_plane_users}}, coalesce(e.user_name, ''))
  AND NOT coalesce(array_has_any(e.user_groups, {{trusted_admin_groups}}), false)
  AND coalesce(e.user_name, '') NOT LIKE 'system:node:%'
  AND coalesce(e.user_name, '') NOT LIKE 'system:serviceaccount:kube-system:%'
  AND NOT starts_with_any(coalesce(e.user_name, ''), array_concat({{known_controllers}}, {{extra_controllers}}))
