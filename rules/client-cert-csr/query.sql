SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, verb
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'certificatesigningrequests' AND response_code BETWEEN 200 AND 299
  AND ((verb = 'create' AND subresource IS NULL
        AND json_get_str(request_object, 'spec', 'signerName') = 'kubernetes.io/kube-apiserver-client')
       OR (subresource = 'approval' AND verb IN ('update', 'patch')))
  AND coalesce(user_name, '') NOT LIKE 'system:node:%' AND coalesce(user_name, '') NOT LIKE 'system:bootstrap:%'
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND NOT array_has({{excluded_users}}, user_name)
