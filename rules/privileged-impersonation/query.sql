SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, impersonated_user_name,
       array_to_string(impersonated_user_groups, ', ') AS impersonated_groups
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND authz_decision = 'allow'
  AND impersonated_user_name IS NOT NULL
  AND (array_has({{privileged_identities}}, impersonated_user_name)
       OR starts_with_any(impersonated_user_name, {{privileged_identity_prefixes}})
       OR coalesce(array_has_any(impersonated_user_groups, {{privileged_groups}}), false))
