#!/usr/bin/env python3
"""Writes fixture.jsonl: audit events for the imported SigmaHQ Kubernetes rules. Each `*-pos`
event must fire exactly one rule (named in EXPECT of tests/e2e/sigma.rs); each `*-near` event is
a near miss that must fire none. Run from this directory: python3 make_fixture.py"""
import json

T = "2026-11-20T10:%02d:00.000000Z"
n = 0


def ev(audit_id, verb, resource, ns=None, name=None, group="", sub=None, code=200, user="alice@example.com",
       ua="kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46", uri=None, obj=None, decision="allow"):
    global n
    n += 1
    ref = {"resource": resource, "apiVersion": "v1"}
    if group:
        ref["apiGroup"] = group
    if ns:
        ref["namespace"] = ns
    if name:
        ref["name"] = name
    if sub:
        ref["subresource"] = sub
    path = "/apis/%s/v1" % group if group else "/api/v1"
    if ns:
        path += "/namespaces/" + ns
    path += "/" + resource + ("/" + name if name else "") + ("/" + sub if sub else "")
    e = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse" if obj else "Metadata",
         "auditID": audit_id, "stage": "ResponseComplete", "requestURI": uri or path, "verb": verb,
         "user": {"username": user, "groups": ["system:authenticated"]}, "sourceIPs": ["10.0.12.7"],
         "userAgent": ua, "objectRef": ref, "responseStatus": {"metadata": {}, "code": code},
         "requestReceivedTimestamp": T % n, "stageTimestamp": T % n,
         "annotations": {"authorization.k8s.io/decision": decision, "authorization.k8s.io/reason": ""}}
    if obj:
        e["requestObject"] = obj
    return e


def pod(name, ns, volumes=None, caps=None):
    c = {"name": "app", "image": "nginx:1.27"}
    if caps:
        c["securityContext"] = {"capabilities": {"add": caps}}
    spec = {"containers": [c]}
    if volumes:
        spec["volumes"] = volumes
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns}, "spec": spec}


events = [
    ev("adm-pos", "create", "mutatingwebhookconfigurations", name="inject", group="admissionregistration.k8s.io"),
    ev("adm-near", "get", "validatingwebhookconfigurations", name="policy", group="admissionregistration.k8s.io"),
    ev("cron-pos", "create", "cronjobs", "shop", "nightly", group="batch"),
    ev("cron-near", "list", "cronjobs", "shop", group="batch"),
    ev("deploy-del-pos", "delete", "deployments", "shop", "api", group="apps"),
    ev("deploy-get-near", "get", "deployments", "shop", "api", group="apps"),
    ev("patch-deploy-pos", "patch", "deployments", "shop", "api", group="apps"),
    ev("events-del-pos", "delete", "events", "shop", group="events.k8s.io"),
    ev("events-list-near", "list", "events", "shop", group="events.k8s.io"),
    ev("exec-pos", "create", "pods", "shop", "api-1", sub="exec",
       uri="/api/v1/namespaces/shop/pods/api-1/exec?command=ls&container=app"),
    ev("attach-near", "create", "pods", "shop", "api-1", sub="attach"),
    ev("hostpath-pos", "create", "pods", "shop", "debug",
       obj=pod("debug", "shop", volumes=[{"name": "root", "hostPath": {"path": "/"}}])),
    ev("caps-pos", "create", "pods", "shop", "netadmin", obj=pod("netadmin", "shop", caps=["NET_ADMIN"])),
    ev("pod-plain-near", "create", "pods", "shop", "plain", obj=pod("plain", "shop")),
    ev("kube-pod-pos", "create", "pods", "kube-system", "sneaky", obj=pod("sneaky", "kube-system")),
    ev("enum-pos", "get", "configmaps", "shop", "settings", ua="trufflehog/3.63"),
    ev("enum-near", "get", "configmaps", "shop", "settings"),
    ev("ssrr-pos", "create", "selfsubjectrulesreviews", group="authorization.k8s.io"),
    ev("ssar-near", "create", "selfsubjectaccessreviews", group="authorization.k8s.io"),
    ev("rb-pos", "create", "rolebindings", "shop", "edit-bob", group="rbac.authorization.k8s.io"),
    ev("rb-near", "get", "rolebindings", "shop", "edit-bob", group="rbac.authorization.k8s.io"),
    ev("secrets-list-pos", "list", "secrets", "shop"),
    ev("secret-get-near", "get", "secrets", "shop", "db"),
    ev("secret-del-pos", "delete", "secrets", "shop", "db"),
    ev("sa-pos", "create", "serviceaccounts", "shop", "builder"),
    ev("sa-near", "get", "serviceaccounts", "shop", "builder"),
    ev("denied-pos", "get", "namespaces", user="system:anonymous", code=401, decision="forbid"),
]
with open("fixture.jsonl", "w") as f:
    for e in events:
        f.write(json.dumps(e, separators=(",", ":")) + "\n")
