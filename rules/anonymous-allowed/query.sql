SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name,
       coalesce(request_uri, '-') AS request_uri, authz_reason,
       -- from outside the cluster, any verb: anyone on the internet has that access
       CASE WHEN is_public_ip(source_ip) THEN 'critical' ELSE 'high' END AS severity
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND (user_name = 'system:anonymous' OR coalesce(array_has(user_groups, 'system:unauthenticated'), false))
  AND authz_decision = 'allow'
  -- some managed-cloud exports omit requestURI: an absent URI is not a health check
  AND NOT coalesce(starts_with_any(request_uri, {{public_path_prefixes}}), false)
