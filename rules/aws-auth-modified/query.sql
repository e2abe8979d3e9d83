SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, verb
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'configmaps' AND namespace = 'kube-system' AND name = 'aws-auth'
  AND verb IN ('update', 'patch', 'delete')
  AND authz_decision = 'allow' AND response_code BETWEEN 200 AND 299
