#!/usr/bin/env python3
"""Builds real-looking `audit.k8s.io/v1` Events for rule fixtures.

Fixtures are committed JSON lines (`rules/<id>/fixtures/*.jsonl`); this module is how they were
made, so a reviewer can see every field is what a kube-apiserver emits. Usage from a rule folder:

    import sys; sys.path.insert(0, "rules/tools"); from fixture import *
    write("rules/privileged-pod/fixtures/positive.jsonl", [
        event("privileged-pod-pos-1", "create", "pods", namespace="default", name="debug",
              user=HUMAN, request_object=pod(privileged=True)),
    ])

`event` fills what the API server always sets (auditID, stage ResponseComplete, level, requestURI,
user, sourceIPs, userAgent, timestamps, responseStatus, authorization annotations) from the
arguments; everything can be overridden.
"""

import json
import zlib
from datetime import datetime, timedelta, timezone

BASE = datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone.utc)

# Identities that appear in real clusters.
HUMAN = {"username": "alice@example.com", "uid": "b6f1c1e4-3c55-4d0c-9a8e-6a0e2f1c9d11",
         "groups": ["developers", "system:authenticated"]}
HUMAN2 = {"username": "bob@example.com", "uid": "0f7a3a52-8d7b-4f73-b0f4-3f1f1f6d2a21",
          "groups": ["sre", "system:authenticated"]}
ADMIN = {"username": "kubernetes-admin", "uid": "", "groups": ["system:masters", "system:authenticated"]}
ANONYMOUS = {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
NODE = {"username": "system:node:ip-10-0-1-23.ec2.internal", "groups": ["system:nodes", "system:authenticated"]}
KCM = {"username": "system:kube-controller-manager", "groups": ["system:authenticated"]}
SCHEDULER = {"username": "system:kube-scheduler", "groups": ["system:authenticated"]}


def sa(namespace, name):
    """A service account identity."""
    return {"username": f"system:serviceaccount:{namespace}:{name}",
            "uid": f"5a1e{zlib.crc32(f'{namespace}/{name}'.encode()) % 10**8:08d}-0000-4000-8000-000000000000",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]}


KUBECTL_UA = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46"
CURL_UA = "curl/8.5.0"
CONTROLLER_UA = "kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/system:serviceaccount:kube-system:replicaset-controller"

CORE = {"pods", "services", "secrets", "configmaps", "namespaces", "serviceaccounts", "nodes", "events",
        "endpoints", "persistentvolumeclaims", "persistentvolumes", "replicationcontrollers"}
GROUPS = {
    "deployments": ("apps", "v1"), "daemonsets": ("apps", "v1"), "statefulsets": ("apps", "v1"),
    "replicasets": ("apps", "v1"), "jobs": ("batch", "v1"), "cronjobs": ("batch", "v1"),
    "roles": ("rbac.authorization.k8s.io", "v1"), "clusterroles": ("rbac.authorization.k8s.io", "v1"),
    "rolebindings": ("rbac.authorization.k8s.io", "v1"),
    "clusterrolebindings": ("rbac.authorization.k8s.io", "v1"),
    "ingresses": ("networking.k8s.io", "v1"),
    "mutatingwebhookconfigurations": ("admissionregistration.k8s.io", "v1"),
    "validatingwebhookconfigurations": ("admissionregistration.k8s.io", "v1"),
    "certificatesigningrequests": ("certificates.k8s.io", "v1"),
    "selfsubjectaccessreviews": ("authorization.k8s.io", "v1"),
    "selfsubjectrulesreviews": ("authorization.k8s.io", "v1"),
    "tokenreviews": ("authentication.k8s.io", "v1"),
}
SUCCESS = {"create": 201}


def uri_for(verb, resource, namespace, name, subresource, query):
    group, version = GROUPS.get(resource, ("", "v1"))
    path = "/api/v1" if not group else f"/apis/{group}/{version}"
    if namespace and resource != "namespaces":
        path += f"/namespaces/{namespace}"
    path += f"/{resource}"
    if name and verb not in ("create", "list", "watch") or subresource:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    if query:
        path += "?" + query
    elif verb == "watch":
        path += "?watch=true"
    return path


def event(audit_id, verb, resource=None, *, namespace=None, name=None, subresource=None, user=None,
          source_ip="10.0.12.7", user_agent=KUBECTL_UA, code=None, decision=None, reason=None,
          at=0, stage="ResponseComplete", level=None, request_object=None, response_object=None,
          impersonated_user=None, request_uri=None, query=None, annotations=None, api_version=None):
    """One audit event. `at` is seconds after BASE (2026-11-20T10:00:00Z); `code` defaults to
    201 for create and 200 otherwise; decision defaults to allow for 2xx, forbid for 403."""
    user = user or HUMAN
    if code is None:
        code = SUCCESS.get(verb, 200)
    if decision is None:
        decision = "allow" if code < 400 or code not in (401, 403) else "forbid"
        if code == 401:
            decision = None
    ts = BASE + timedelta(seconds=at)
    e = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level or ("RequestResponse" if response_object is not None else
                           "Request" if request_object is not None else "Metadata"),
        "auditID": audit_id,
        "stage": stage,
        "requestURI": request_uri or (uri_for(verb, resource, namespace, name, subresource, query)
                                      if resource else "/version"),
        "verb": verb,
        "user": user,
        "sourceIPs": [source_ip] if isinstance(source_ip, str) else source_ip,
        "userAgent": user_agent,
    }
    if impersonated_user:
        e["impersonatedUser"] = impersonated_user
    if resource:
        group, version = GROUPS.get(resource, ("", "v1"))
        ref = {"resource": resource}
        if namespace and resource != "namespaces":
            ref["namespace"] = namespace
        if name:
            ref["name"] = name
        if group:
            ref["apiGroup"] = group
        ref["apiVersion"] = api_version or version
        if subresource:
            ref["subresource"] = subresource
        e["objectRef"] = ref
    status = {"metadata": {}, "code": code}
    if code >= 400:
        status["status"] = "Failure"
        status["reason"] = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                            409: "AlreadyExists", 422: "Invalid"}.get(code, "InternalError")
        status["message"] = f"{resource or 'request'} {name or ''} {status['reason']}".strip()
    if stage != "RequestReceived":
        e["responseStatus"] = status
    if request_object is not None:
        e["requestObject"] = request_object
    if response_object is not None:
        e["responseObject"] = response_object
    e["requestReceivedTimestamp"] = (ts - timedelta(milliseconds=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    e["stageTimestamp"] = ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ann = {}
    if decision:
        ann["authorization.k8s.io/decision"] = decision
        ann["authorization.k8s.io/reason"] = reason or (
            'RBAC: allowed by ClusterRoleBinding "ops" of ClusterRole "edit" to Group "developers"'
            if decision == "allow" else "")
    ann.update(annotations or {})
    if ann:
        e["annotations"] = ann
    return e


def container(name="app", image="registry.example.com/shop/api:1.8.2", privileged=None,
              capabilities=None, mounts=None):
    c = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
         "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
         "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
    sc = {}
    if privileged is not None:
        sc["privileged"] = privileged
    if capabilities:
        sc["capabilities"] = {"add": capabilities}
    if sc:
        c["securityContext"] = sc
    if mounts:
        c["volumeMounts"] = [{"name": m, "mountPath": f"/mnt/{m}"} for m in mounts]
    return c


def pod(name="api-7d9f8b6c4-x2kqp", namespace="default", containers=None, host_network=False,
        host_pid=False, host_ipc=False, host_paths=(), service_account="default", init_containers=None,
        **container_kw):
    """A Pod request object; `container_kw` shapes the single default container."""
    containers = containers or [container(**container_kw)]
    spec = {"containers": containers, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "serviceAccountName": service_account, "securityContext": {},
            "schedulerName": "default-scheduler"}
    if init_containers:
        spec["initContainers"] = init_containers
    if host_network:
        spec["hostNetwork"] = True
    if host_pid:
        spec["hostPID"] = True
    if host_ipc:
        spec["hostIPC"] = True
    if host_paths:
        spec["volumes"] = [{"name": f"host-{i}", "hostPath": {"path": p, "type": ""}}
                           for i, p in enumerate(host_paths)]
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name.split("-")[0]}},
            "spec": spec, "status": {}}


def workload(kind, name, namespace="default", **pod_kw):
    """A Deployment/DaemonSet/StatefulSet/Job/CronJob request object wrapping a pod template."""
    template = pod(name=name, namespace=namespace, **pod_kw)
    tpl = {"metadata": {"labels": {"app": name}}, "spec": template["spec"]}
    api = "batch/v1" if kind in ("Job", "CronJob") else "apps/v1"
    if kind == "CronJob":
        spec = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": tpl}}}
    elif kind == "Job":
        spec = {"template": tpl, "backoffLimit": 2}
    else:
        spec = {"selector": {"matchLabels": {"app": name}}, "template": tpl}
        if kind != "DaemonSet":
            spec["replicas"] = 2
    return {"kind": kind, "apiVersion": api, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def role(name, rules, kind="ClusterRole", namespace=None):
    md = {"name": name}
    if namespace:
        md["namespace"] = namespace
    return {"kind": kind, "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": md, "rules": rules}


def binding(name, role_name, subjects, kind="ClusterRoleBinding", role_kind="ClusterRole", namespace=None):
    """`subjects` are ("User"|"Group"|"ServiceAccount", name[, namespace]) tuples."""
    subs = []
    for s in subjects:
        d = {"kind": s[0], "name": s[1]}
        if s[0] == "ServiceAccount":
            d["namespace"] = s[2] if len(s) > 2 else "default"
        else:
            d["apiGroup"] = "rbac.authorization.k8s.io"
        subs.append(d)
    md = {"name": name}
    if namespace:
        md["namespace"] = namespace
    return {"kind": kind, "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": md,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
            "subjects": subs}


def write(path, events):
    import os
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for e in events:
            f.write(json.dumps(e, separators=(",", ":")) + "\n")
