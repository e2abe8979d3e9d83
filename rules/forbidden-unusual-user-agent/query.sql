WITH seen AS (
    SELECT DISTINCT cluster, user_agent FROM audit_events_baseline WHERE user_agent IS NOT NULL
), known_clusters AS (
    SELECT DISTINCT cluster FROM audit_events_baseline
)
SELECT e.audit_id, e.stage_at, e.cluster, e.user_name, e.source_ip, e.resource, e.subresource, e.namespace, e.name, e.user_agent
FROM audit_events e
JOIN known_clusters k ON k.cluster = e.cluster
LEFT JOIN seen s ON s.cluster = e.cluster AND s.user_agent = e.user_agent
WHERE e.stage = 'ResponseComplete'
  AND (e.authz_decision = 'forbid' OR e.response_code = 403)
  AND s.user_agent IS NULL
  AND NOT array_has({{control_plane_users}}, coalesce(e.user_name, ''))
