SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, verb
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'configmaps' AND verb IN ('create', 'update', 'patch')
  AND regexp_like(request_object, {{credential_regex}}, 'i')
