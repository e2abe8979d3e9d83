SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace,
       coalesce(name, json_get_str(request_object, 'metadata', 'name'),
                CASE WHEN user_name LIKE 'system:node:%' THEN substr(user_name, 13) END) AS name,
       response_code
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'nodes' AND subresource IS NULL AND verb = 'create'
  AND NOT array_has({{allowed_nodes}}, coalesce(name, json_get_str(request_object, 'metadata', 'name'),
                CASE WHEN user_name LIKE 'system:node:%' THEN substr(user_name, 13) END))
