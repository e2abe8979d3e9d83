SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND array_has({{full_admin_users}}, user_name)
