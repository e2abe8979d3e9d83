SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name,
       array_to_string(exec_command, ' ') AS command
FROM audit_events
WHERE stage IN ('ResponseStarted', 'ResponseComplete')
  AND resource = 'pods' AND subresource = 'exec'
  AND (authz_decision = 'allow' OR (authz_decision IS NULL AND response_code < 400))
  AND regexp_like(array_to_string(exec_command, ' '), {{suspicious_command_regex}})
