-- hostPID; images every container of which is allow-listed (by repository) are exempt.
SELECT audit_id, stage_at, cluster, user_name, source_ip, resource, subresource, coalesce(namespace, json_get_str(request_object, 'metadata', 'namespace')) AS namespace, coalesce(name, json_get_str(request_object, 'metadata', 'name'), json_get_str(request_object, 'metadata', 'generateName')) AS name,
       array_to_string(pod_images, ', ') AS images
FROM audit_events
WHERE stage = 'ResponseComplete'
  AND resource = 'pods' AND subresource IS NULL AND verb = 'create' AND response_code BETWEEN 200 AND 299
  AND pod_host_pid
  -- every image allow-listed → exempt; a pod that lists no image is not vacuously exempt
  AND (cardinality(pod_images) = 0 OR NOT array_has_all({{hostpid_images}}, image_repos(pod_images)))
