SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, request_uri
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'nodes' AND subresource = 'proxy'
  AND (authz_decision = 'allow' OR (authz_decision IS NULL AND response_code < 400))
  -- an export without requestURI: the proxied path is unknown, so it is not a metrics scrape
  AND NOT coalesce(regexp_like(request_uri, '/proxy/(metrics|healthz|stats|configz)'), false)
  AND NOT array_has({{control_plane_users}}, coalesce(user_name, '')) AND coalesce(user_name, '') NOT LIKE 'system:node:%' AND NOT array_has({{excluded_users}}, user_name)
