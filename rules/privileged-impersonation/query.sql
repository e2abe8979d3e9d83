-- The target is the impersonated identity (what impersonate is authorized on), not the object of
-- the impersonated request: the first one is often API discovery, which has no object.
SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, namespace, name, impersonated_user_name,
       array_to_string(impersonated_user_groups, ', ') AS impersonated_groups,
       CASE WHEN starts_with(impersonated_user_name, 'system:serviceaccount:')
                 AND array_length(string_to_array(impersonated_user_name, ':')) = 4
            THEN 'serviceaccounts ' || split_part(impersonated_user_name, ':', 3) || '/' || split_part(impersonated_user_name, ':', 4)
            ELSE 'users ' || impersonated_user_name END AS target
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND authz_decision = 'allow'
  AND impersonated_user_name IS NOT NULL
  AND (array_has({{privileged_identities}}, impersonated_user_name)
       OR starts_with_any(impersonated_user_name, {{privileged_identity_prefixes}})
       OR coalesce(array_has_any(impersonated_user_groups, {{privileged_groups}}), false))
