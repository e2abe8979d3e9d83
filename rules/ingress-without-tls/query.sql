SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'ingresses' AND subresource IS NULL AND verb = 'create' AND response_code BETWEEN 200 AND 299
  AND request_object IS NOT NULL
  AND coalesce(json_length(request_object, 'spec', 'tls'), 0) = 0
