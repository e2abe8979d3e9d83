SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, coalesce(impersonated_user_name, '-') AS on_behalf_of
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND user_name LIKE 'system:serviceaccount:azure-arc:%'
  AND resource IN ('secrets', 'configmaps') AND response_code BETWEEN 200 AND 299
  AND coalesce(namespace, '') NOT LIKE 'azure-arc%' AND coalesce(namespace, '') <> 'kube-system'
