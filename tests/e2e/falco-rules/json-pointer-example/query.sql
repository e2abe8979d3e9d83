SELECT audit_id, stage_at, cluster, verb, resource
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND annotations['authorization.k8s.io/decision'] IS NOT NULL
