SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'services' AND subresource IS NULL
  AND verb IN ('create', 'update', 'patch') AND response_code BETWEEN 200 AND 299
  AND json_get_str(request_object, 'spec', 'type') = 'LoadBalancer'
  AND (array_has({{dashboard_names}}, name)
       OR array_has({{dashboard_names}}, json_get_str(request_object, 'spec', 'selector', 'k8s-app'))
       OR array_has({{dashboard_names}}, json_get_str(request_object, 'spec', 'selector', 'app')))
