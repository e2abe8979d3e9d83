SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, response_code
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND (ip_in_cidrs(source_ip, {{tor_exit_nodes}}) OR ip_in_cidrs(source_ip, {{bad_ips}}))
