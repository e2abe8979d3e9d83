SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, user_agent
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND starts_with_any(user_name, {{system_prefixes}})
  AND is_public_ip(source_ip)
  AND NOT ip_in_cidrs(source_ip, {{cloud_ranges}})
