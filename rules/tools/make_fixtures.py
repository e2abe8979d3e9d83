#!/usr/bin/env python3
"""Writes every rule's fixtures: rules/<id>/fixtures/positive.jsonl and negative.jsonl.

Run from the repo root: `python3 rules/tools/make_fixtures.py`. The JSONL files are committed; this is
how they were made. Positive events have auditIDs `<rule>-pos-N`; each rule's positive test expects
exactly those as evidence. Negative events (`<rule>-neg-N`) are the near misses that must not fire:
allow-listed images, control-plane or admin identities, wrong verbs, denied requests.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from fixture import (ADMIN, ANONYMOUS, BASE, CURL_UA, HUMAN, HUMAN2, KCM, KUBECTL_UA, NODE,  # noqa: E402
                     SCHEDULER, binding, container, event, pod, role, sa, workload, write)

APISERVER = {"username": "system:apiserver", "uid": "4f0c7c38-2b1d-4b7e-9a8e-0d1b7a1f2c3d",
             "groups": ["system:masters"]}
RS_CONTROLLER = sa("kube-system", "replicaset-controller")
DS_CONTROLLER = sa("kube-system", "daemon-set-controller")
CJ_CONTROLLER = sa("kube-system", "cronjob-controller")
ARGO = sa("argocd", "argocd-application-controller")
PY_UA = "python-requests/2.31.0"
PUBLIC_IP = "203.0.113.50"
POD = {"namespace": "shop", "name": "api-7d9f8b6c4-x2kqp"}

FIXTURES = {}


def rule(rule_id, pos, neg, findings=None, **test):
    """`findings` defaults to one finding per positive event; `test` adds since/params to both tests."""
    FIXTURES[rule_id] = {"pos": pos, "neg": neg,
                         "findings": len(pos) if findings is None else findings, "test": test}


def ids(prefix, n):
    return [f"{prefix}-{i}" for i in range(1, n + 1)]


def pod_create(audit_id, at=0, user=RS_CONTROLLER, namespace="shop", name="api-7d9f8b6c4-x2kqp", code=201,
               verb="create", **pod_kw):
    return event(audit_id, verb, "pods", namespace=namespace, user=user, at=at, code=code,
                 user_agent="kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/system:serviceaccount:kube-system:replicaset-controller"
                 if user == RS_CONTROLLER else KUBECTL_UA,
                 request_object=pod(name=name, namespace=namespace, **pod_kw),
                 response_object=None)


# ---------------------------------------------------------------------------------------------- pods
r = "privileged-pod"
rule(r, [
    pod_create(f"{r}-pos-1", name="debug-6c9f", user=HUMAN, privileged=True, image="docker.io/library/ubuntu:22.04"),
    pod_create(f"{r}-pos-2", at=60, name="api-2", containers=[
        container("app"), container("sidecar", image="ghcr.io/evil/miner:latest", privileged=True)]),
    pod_create(f"{r}-pos-3", at=120, name="init-priv", init_containers=[
        container("setup", image="busybox:1.36", privileged=True)]),
], [
    pod_create(f"{r}-neg-1", privileged=False),
    pod_create(f"{r}-neg-2", at=10, namespace="kube-system", name="kube-proxy-x7k2p", user=DS_CONTROLLER,
               privileged=True, image="registry.k8s.io/kube-proxy:v1.31.2"),
    pod_create(f"{r}-neg-3", at=20, user=HUMAN, privileged=True, code=403, image="ubuntu:22.04"),
    pod_create(f"{r}-neg-4", at=30, user=HUMAN, verb="get", privileged=True),
])

r = "sensitive-hostpath-pod"
rule(r, [
    pod_create(f"{r}-pos-1", user=HUMAN, name="escape", host_paths=["/"], image="alpine:3.20"),
    pod_create(f"{r}-pos-2", at=60, name="sock", host_paths=["/tmp/cache", "/var/run/docker.sock"]),
    pod_create(f"{r}-pos-3", at=120, name="kubelet-pki", host_paths=["/var/lib/kubelet/pki"]),
], [
    pod_create(f"{r}-neg-1", host_paths=["/var/log/app"]),
    pod_create(f"{r}-neg-2", at=10, namespace="monitoring", name="node-exporter-4kq", user=DS_CONTROLLER,
               host_paths=["/proc", "/sys"], image="prom/node-exporter:v1.8.1"),
    pod_create(f"{r}-neg-3", at=20, host_paths=["/etc"], code=422),
])

r = "host-network-pod"
rule(r, [pod_create(f"{r}-pos-1", user=HUMAN, name="sniffer", host_network=True, image="nicolaka/netshoot:v0.13")], [
    pod_create(f"{r}-neg-1"),
    pod_create(f"{r}-neg-2", at=10, namespace="kube-system", name="kube-proxy-x", user=DS_CONTROLLER,
               host_network=True, image="registry.k8s.io/kube-proxy:v1.31.2"),
])

r = "host-pid-pod"
rule(r, [pod_create(f"{r}-pos-1", user=HUMAN, name="nsenter", host_pid=True, privileged=True, image="alpine:3.20")], [
    pod_create(f"{r}-neg-1", host_ipc=True),
    pod_create(f"{r}-neg-2", at=10, host_pid=True, code=403, user=HUMAN),
])

r = "host-ipc-pod"
rule(r, [pod_create(f"{r}-pos-1", user=HUMAN, name="shm-reader", host_ipc=True)], [
    pod_create(f"{r}-neg-1", host_pid=True),
    pod_create(f"{r}-neg-2", at=10, host_ipc=False),
])

r = "dangerous-capabilities"
rule(r, [
    pod_create(f"{r}-pos-1", user=HUMAN, name="tools", capabilities=["SYS_ADMIN"]),
    pod_create(f"{r}-pos-2", at=60, name="tracer", capabilities=["NET_RAW", "CAP_SYS_PTRACE"]),
], [
    pod_create(f"{r}-neg-1", capabilities=["NET_BIND_SERVICE", "CHOWN"]),
    pod_create(f"{r}-neg-2", at=10, capabilities=["SYS_ADMIN"], code=403, user=HUMAN),
])

r = "pod-in-system-namespace"
rule(r, [
    pod_create(f"{r}-pos-1", namespace="kube-system", name="kube-dns-proxy", user=HUMAN, image="ghcr.io/attacker/dnsx:1.0"),
    pod_create(f"{r}-pos-2", at=60, namespace="kube-public", name="pub-1", image="busybox:1.36"),
], [
    pod_create(f"{r}-neg-1", namespace="kube-system", name="coredns-5d78c9869d-abcde",
               image="registry.k8s.io/coredns/coredns:v1.11.1"),
    pod_create(f"{r}-neg-2", at=10, namespace="shop"),
    pod_create(f"{r}-neg-3", at=20, namespace="kube-system", name="x", user=HUMAN, code=403, image="busybox:1.36"),
])

r = "controller-sa-pod"
rule(r, [pod_create(f"{r}-pos-1", namespace="kube-system", name="helper", user=HUMAN,
                    service_account="clusterrole-aggregation-controller", image="alpine:3.20")], [
    pod_create(f"{r}-neg-1", namespace="kube-system", name="helper", user=HUMAN, service_account="coredns"),
    pod_create(f"{r}-neg-2", at=10, namespace="shop", name="ctl", service_account="ingress-controller"),
])

r = "disallowed-image"
rule(r, [
    pod_create(f"{r}-pos-1", name="x1", image="docker.io/attacker/xmrig:6.21"),
    pod_create(f"{r}-pos-2", at=60, name="x2", containers=[
        container("app", image="registry.example.com/shop/api:1.8.2"), container("debug", image="busybox:1.36")]),
], [
    pod_create(f"{r}-neg-1", image="registry.example.com/shop/api:1.8.3"),
    pod_create(f"{r}-neg-2", at=10, image="registry.example.com/shop/api@sha256:" + "a" * 64),
], params={"allowed_images": ["registry.example.com/shop/api"]})

r = "ephemeral-container"
eph = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": POD["name"], "namespace": "shop"},
       "spec": {"ephemeralContainers": [{"name": "debugger-abc", "image": "busybox:1.36", "targetContainerName": "app",
                                         "stdin": True, "tty": True}]}}
rule(r, [event(f"{r}-pos-1", "patch", "pods", subresource="ephemeralcontainers", **POD, user=HUMAN, request_object=eph)], [
    event(f"{r}-neg-1", "patch", "pods", subresource="ephemeralcontainers", **POD, user=HUMAN, code=403),
    event(f"{r}-neg-2", "get", "pods", subresource="ephemeralcontainers", **POD, user=HUMAN),
    event(f"{r}-neg-3", "patch", "pods", subresource="status", **POD, user=NODE),
])

r = "anonymous-pod-write"
rule(r, [pod_create(f"{r}-pos-1", user=ANONYMOUS, name="pwn", image="alpine:3.20")], [
    pod_create(f"{r}-neg-1", user=ANONYMOUS, name="pwn", code=403),
    pod_create(f"{r}-neg-2", at=10, user=HUMAN, name="ok"),
])

r = "cronjob-job-change"
rule(r, [
    event(f"{r}-pos-1", "create", "cronjobs", namespace="shop", name="backup", user=HUMAN,
          request_object=workload("CronJob", "backup", namespace="shop", image="curlimages/curl:8.8.0")),
    event(f"{r}-pos-2", "patch", "cronjobs", namespace="shop", name="report", user=HUMAN2, at=60),
], [
    event(f"{r}-neg-1", "create", "jobs", namespace="shop", name="backup-28876520", user=CJ_CONTROLLER),
    event(f"{r}-neg-2", "get", "cronjobs", namespace="shop", name="backup", user=HUMAN),
    event(f"{r}-neg-3", "update", "cronjobs", namespace="shop", name="backup", subresource="status", user=CJ_CONTROLLER),
])

r = "daemonset-created"
rule(r, [event(f"{r}-pos-1", "create", "daemonsets", namespace="default", name="node-agent", user=HUMAN,
               request_object=workload("DaemonSet", "node-agent", image="ghcr.io/evil/agent:1"))], [
    event(f"{r}-neg-1", "patch", "daemonsets", namespace="kube-system", name="kube-proxy", user=HUMAN),
    event(f"{r}-neg-2", "create", "daemonsets", namespace="default", name="x", user=HUMAN, code=403),
])

r = "deployment-patched"
rule(r, [event(f"{r}-pos-1", "patch", "deployments", namespace="shop", name="api", user=HUMAN,
               request_object={"spec": {"template": {"spec": {"containers": [
                   {"name": "proxy", "image": "ghcr.io/evil/proxy:1"}]}}}})], [
    event(f"{r}-neg-1", "patch", "deployments", namespace="shop", name="api", subresource="scale", user=HUMAN),
    event(f"{r}-neg-2", "patch", "deployments", namespace="shop", name="api", user=sa("kube-system", "deployment-controller")),
    event(f"{r}-neg-3", "update", "deployments", namespace="shop", name="api", subresource="status",
          user=sa("kube-system", "deployment-controller")),
])

r = "workload-deleted"
rule(r, [
    event(f"{r}-pos-1", "delete", "deployments", namespace="shop", name="api", user=HUMAN),
    event(f"{r}-pos-2", "delete", "statefulsets", namespace="shop", name="postgres", user=HUMAN, at=30),
], [
    event(f"{r}-neg-1", "delete", "replicasets", namespace="shop", name="api-7d9f8b6c4",
          user=sa("kube-system", "deployment-controller")),
    event(f"{r}-neg-2", "delete", "deployments", namespace="shop", name="api", user=HUMAN2, code=403),
], findings=1)

svc = lambda t, name="web", selector=None: {  # noqa: E731
    "kind": "Service", "apiVersion": "v1", "metadata": {"name": name},
    "spec": {"type": t, "selector": selector or {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}
r = "nodeport-service"
rule(r, [event(f"{r}-pos-1", "create", "services", namespace="shop", name="web", user=HUMAN, request_object=svc("NodePort"))], [
    event(f"{r}-neg-1", "create", "services", namespace="shop", name="web", user=HUMAN, request_object=svc("ClusterIP")),
    event(f"{r}-neg-2", "create", "services", namespace="shop", name="web2", user=HUMAN, request_object=svc("NodePort"), code=403),
])

ing = lambda tls: {"kind": "Ingress", "apiVersion": "networking.k8s.io/v1", "metadata": {"name": "shop"},  # noqa: E731
                   "spec": dict({"rules": [{"host": "shop.example.com"}]}, **({"tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]} if tls else {}))}
r = "ingress-without-tls"
rule(r, [event(f"{r}-pos-1", "create", "ingresses", namespace="shop", name="shop", user=HUMAN, request_object=ing(False))], [
    event(f"{r}-neg-1", "create", "ingresses", namespace="shop", name="shop", user=HUMAN, request_object=ing(True)),
    event(f"{r}-neg-2", "create", "ingresses", namespace="shop", name="shop2", user=HUMAN),
])

r = "exposed-dashboard"
rule(r, [event(f"{r}-pos-1", "create", "services", namespace="kubernetes-dashboard", name="kubernetes-dashboard",
               user=HUMAN, request_object=svc("LoadBalancer", "kubernetes-dashboard", {"k8s-app": "kubernetes-dashboard"}))], [
    event(f"{r}-neg-1", "create", "services", namespace="kubernetes-dashboard", name="kubernetes-dashboard",
          user=HUMAN, request_object=svc("ClusterIP", "kubernetes-dashboard", {"k8s-app": "kubernetes-dashboard"})),
    event(f"{r}-neg-2", "create", "services", namespace="shop", name="web", user=HUMAN, request_object=svc("LoadBalancer")),
])

# ---------------------------------------------------------------------------------------------- RBAC
r = "privileged-role-binding"
rule(r, [
    event(f"{r}-pos-1", "create", "clusterrolebindings", name="backdoor", user=HUMAN,
          request_object=binding("backdoor", "cluster-admin", [("User", "eve@example.com")])),
    event(f"{r}-pos-2", "create", "rolebindings", namespace="shop", name="default-admin", user=HUMAN2, at=60,
          request_object=binding("default-admin", "admin", [("ServiceAccount", "default", "shop")], kind="RoleBinding", namespace="shop")),
], [
    event(f"{r}-neg-1", "create", "clusterrolebindings", name="cluster-admin", user=APISERVER,
          request_object=binding("cluster-admin", "cluster-admin", [("Group", "system:masters")])),
    event(f"{r}-neg-2", "create", "rolebindings", namespace="shop", name="viewers", user=HUMAN,
          request_object=binding("viewers", "view", [("Group", "developers")], kind="RoleBinding", namespace="shop")),
    event(f"{r}-neg-3", "create", "clusterrolebindings", name="backdoor", user=HUMAN, code=403,
          request_object=binding("backdoor", "cluster-admin", [("User", "eve@example.com")])),
])

r = "rbac-binding-change"
rule(r, [
    event(f"{r}-pos-1", "create", "clusterrolebindings", name="ops", user=HUMAN),
    event(f"{r}-pos-2", "delete", "rolebindings", namespace="shop", name="viewers", user=HUMAN, at=60),
], [
    event(f"{r}-neg-1", "create", "clusterrolebindings", name="system:basic-user", user=APISERVER),
    event(f"{r}-neg-2", "get", "clusterrolebindings", name="ops", user=HUMAN),
    event(f"{r}-neg-3", "create", "clusterrolebindings", name="ops2", user=HUMAN, code=403),
])

r = "anonymous-binding"
rule(r, [event(f"{r}-pos-1", "create", "clusterrolebindings", name="open", user=HUMAN,
               request_object=binding("open", "view", [("Group", "system:unauthenticated")]))], [
    event(f"{r}-neg-1", "create", "clusterrolebindings", name="auth", user=HUMAN,
          request_object=binding("auth", "view", [("Group", "system:authenticated")])),
])

wild = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
r = "wildcard-role"
rule(r, [
    event(f"{r}-pos-1", "create", "clusterroles", name="superuser", user=HUMAN, request_object=role("superuser", wild)),
    event(f"{r}-pos-2", "create", "roles", namespace="shop", name="all-pods", user=HUMAN, at=60,
          request_object=role("all-pods", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}], kind="Role", namespace="shop")),
], [
    event(f"{r}-neg-1", "create", "clusterroles", name="cluster-admin", user=APISERVER, request_object=role("cluster-admin", wild)),
    event(f"{r}-neg-2", "create", "clusterroles", name="reader", user=HUMAN,
          request_object=role("reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])),
])

r = "write-role"
rule(r, [event(f"{r}-pos-1", "create", "clusterroles", name="deployer", user=HUMAN,
               request_object=role("deployer", [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create", "patch"]}]))], [
    event(f"{r}-neg-1", "create", "clusterroles", name="reader", user=HUMAN,
          request_object=role("reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}])),
    event(f"{r}-neg-2", "create", "clusterroles", name="system:aggregate-to-edit", user=APISERVER,
          request_object=role("system:aggregate-to-edit", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}])),
])

r = "pod-exec-role"
rule(r, [event(f"{r}-pos-1", "create", "roles", namespace="shop", name="debugger", user=HUMAN,
               request_object=role("debugger", [{"apiGroups": [""], "resources": ["pods", "pods/exec"], "verbs": ["get", "create"]}], kind="Role", namespace="shop"))], [
    event(f"{r}-neg-1", "create", "roles", namespace="shop", name="logs", user=HUMAN,
          request_object=role("logs", [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}], kind="Role", namespace="shop")),
])

r = "node-proxy-role"
rule(r, [event(f"{r}-pos-1", "create", "clusterroles", name="kubelet-api", user=HUMAN,
               request_object=role("kubelet-api", [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get", "create"]}]))], [
    event(f"{r}-neg-1", "create", "clusterroles", name="node-reader", user=HUMAN,
          request_object=role("node-reader", [{"apiGroups": [""], "resources": ["nodes", "nodes/metrics"], "verbs": ["get"]}])),
])

r = "system-role-modified"
rule(r, [
    event(f"{r}-pos-1", "patch", "clusterroles", name="system:node", user=HUMAN),
    event(f"{r}-pos-2", "delete", "clusterroles", name="system:kube-scheduler", user=HUMAN, at=60),
], [
    event(f"{r}-neg-1", "patch", "clusterroles", name="system:coredns", user=HUMAN),
    event(f"{r}-neg-2", "update", "clusterroles", name="system:aggregate-to-view", user=APISERVER),
    event(f"{r}-neg-3", "patch", "clusterroles", name="app-reader", user=HUMAN),
    event(f"{r}-neg-4", "create", "clusterroles", name="system:custom", user=HUMAN),
])

r = "sa-modifies-rbac"
rule(r, [event(f"{r}-pos-1", "create", "clusterrolebindings", name="ci-admin", user=sa("ci", "runner"),
               user_agent="Go-http-client/2.0")], [
    event(f"{r}-neg-1", "update", "clusterroles", name="admin",
          user=sa("kube-system", "clusterrole-aggregation-controller")),
    event(f"{r}-neg-2", "create", "clusterrolebindings", name="x", user=sa("ci", "runner"), code=403),
    event(f"{r}-neg-3", "create", "clusterrolebindings", name="ops", user=HUMAN),
])

r = "rbac-then-workload"
rule(r, [
    event(f"{r}-pos-1", "create", "clusterroles", name="pod-manager", user=HUMAN2, at=0),
    event(f"{r}-pos-2", "create", "daemonsets", namespace="default", name="agent", user=HUMAN2, at=120),
], [
    event(f"{r}-neg-1", "create", "clusterroles", name="pod-manager", user=HUMAN, at=0),
    event(f"{r}-neg-2", "create", "daemonsets", namespace="default", name="agent", user=HUMAN, at=600),
    event(f"{r}-neg-3", "create", "deployments", namespace="default", name="web", user=HUMAN2, at=30),
], findings=1)

r = "privileged-impersonation"
rule(r, [
    event(f"{r}-pos-1", "list", "secrets", namespace="kube-system", user=HUMAN,
          impersonated_user={"username": "system:serviceaccount:kube-system:clusterrole-aggregation-controller"}),
    event(f"{r}-pos-2", "get", "nodes", user=HUMAN2, at=60,
          impersonated_user={"username": "ops-bot", "groups": ["system:masters"]}),
], [
    event(f"{r}-neg-1", "list", "pods", namespace="shop", user=HUMAN,
          impersonated_user={"username": "system:serviceaccount:shop:default"}),
    event(f"{r}-neg-2", "list", "secrets", namespace="kube-system", user=HUMAN, code=403,
          impersonated_user={"username": "kubernetes-admin"}),
])

r = "token-request"
rule(r, [event(f"{r}-pos-1", "create", "serviceaccounts", subresource="token", namespace="kube-system", name="default", user=HUMAN)], [
    event(f"{r}-neg-1", "create", "serviceaccounts", subresource="token", namespace="shop", name="api", user=NODE),
    event(f"{r}-neg-2", "create", "serviceaccounts", subresource="token", namespace="shop", name="api", user=HUMAN, code=403),
])

tok = lambda name, ns: {"kind": "Secret", "apiVersion": "v1", "type": "kubernetes.io/service-account-token",  # noqa: E731
                        "metadata": {"name": name, "namespace": ns, "annotations": {"kubernetes.io/service-account.name": "default"}}}
r = "long-lived-token-secret"
rule(r, [event(f"{r}-pos-1", "create", "secrets", namespace="kube-system", name="persist-token", user=HUMAN, request_object=tok("persist-token", "kube-system"))], [
    event(f"{r}-neg-1", "create", "secrets", namespace="shop", name="default-token-abcde", user=KCM, request_object=tok("default-token-abcde", "shop")),
    event(f"{r}-neg-2", "create", "secrets", namespace="shop", name="db", user=HUMAN,
          request_object={"kind": "Secret", "apiVersion": "v1", "type": "Opaque", "metadata": {"name": "db"}}),
])

r = "sa-created-kube-namespace"
rule(r, [event(f"{r}-pos-1", "create", "serviceaccounts", namespace="kube-system", name="backup-agent", user=HUMAN)], [
    event(f"{r}-neg-1", "create", "serviceaccounts", namespace="kube-system", name="coredns", user=HUMAN),
    event(f"{r}-neg-2", "create", "serviceaccounts", namespace="shop", name="api", user=HUMAN),
])

csr = lambda signer: {"kind": "CertificateSigningRequest", "apiVersion": "certificates.k8s.io/v1",  # noqa: E731
                      "metadata": {"name": "eve"}, "spec": {"request": "LS0tLS1CRUdJTi...", "signerName": signer,
                                                            "usages": ["client auth"]}}
r = "client-cert-csr"
rule(r, [
    event(f"{r}-pos-1", "create", "certificatesigningrequests", name="eve", user=HUMAN, request_object=csr("kubernetes.io/kube-apiserver-client")),
    event(f"{r}-pos-2", "update", "certificatesigningrequests", subresource="approval", name="eve", user=HUMAN, at=30),
], [
    event(f"{r}-neg-1", "create", "certificatesigningrequests", name="csr-abcde", user=NODE,
          request_object=csr("kubernetes.io/kube-apiserver-client-kubelet")),
    event(f"{r}-neg-2", "update", "certificatesigningrequests", subresource="approval", name="csr-abcde",
          user=sa("kube-system", "certificate-controller")),
], findings=1)

r = "admission-webhook-change"
rule(r, [event(f"{r}-pos-1", "create", "mutatingwebhookconfigurations", name="inject", user=HUMAN)], [
    event(f"{r}-neg-1", "patch", "validatingwebhookconfigurations", name="cert-manager-webhook",
          user=sa("cert-manager", "cert-manager-cainjector")),
    event(f"{r}-neg-2", "get", "mutatingwebhookconfigurations", name="inject", user=HUMAN),
])

r = "coredns-modified"
rule(r, [event(f"{r}-pos-1", "patch", "configmaps", namespace="kube-system", name="coredns", user=HUMAN)], [
    event(f"{r}-neg-1", "patch", "configmaps", namespace="shop", name="coredns", user=HUMAN),
    event(f"{r}-neg-2", "get", "configmaps", namespace="kube-system", name="coredns", user=HUMAN),
])

r = "aws-auth-modified"
rule(r, [event(f"{r}-pos-1", "update", "configmaps", namespace="kube-system", name="aws-auth", user=HUMAN)], [
    event(f"{r}-neg-1", "update", "configmaps", namespace="kube-system", name="aws-auth", user=HUMAN, code=403),
    event(f"{r}-neg-2", "get", "configmaps", namespace="kube-system", name="aws-auth", user=HUMAN),
])

# ------------------------------------------------------------------------------- access and recon
r = "exec-into-pod"
rule(r, [
    event(f"{r}-pos-1", "create", "pods", subresource="exec", **POD, user=HUMAN, stage="ResponseStarted", code=101,
          query="command=sh&container=app&stdin=true&stdout=true&tty=true"),
    event(f"{r}-pos-2", "create", "pods", subresource="attach", **POD, user=HUMAN2, at=60, code=400,
          query="container=app&stdin=true"),
], [
    event(f"{r}-neg-1", "create", "pods", subresource="exec", **POD, user=HUMAN, code=403,
          query="command=sh&container=app&stdin=true&tty=true"),
    event(f"{r}-neg-2", "get", "pods", subresource="log", **POD, user=HUMAN),
])

r = "suspicious-exec-command"
rule(r, [
    event(f"{r}-pos-1", "create", "pods", subresource="exec", **POD, user=HUMAN, code=101, stage="ResponseStarted",
          query="command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=app&stdout=true"),
    event(f"{r}-pos-2", "create", "pods", subresource="exec", **POD, user=HUMAN, at=30, code=101, stage="ResponseStarted",
          query="command=sh&command=-c&command=curl+-s+http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F&container=app&stdout=true"),
    event(f"{r}-pos-3", "create", "pods", subresource="exec", **POD, user=HUMAN, at=60, code=101, stage="ResponseStarted",
          query="command=tar&command=cf&command=-&command=%2Fdata&container=app&stdout=true"),
], [
    event(f"{r}-neg-1", "create", "pods", subresource="exec", **POD, user=HUMAN, code=101, stage="ResponseStarted",
          query="command=ls&command=-la&command=%2Fapp&container=app&stdout=true"),
    event(f"{r}-neg-2", "create", "pods", subresource="exec", **POD, user=HUMAN, code=403,
          query="command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=app&stdout=true"),
], findings=1)

r = "port-forward"
rule(r, [event(f"{r}-pos-1", "create", "pods", subresource="portforward", namespace="shop", name="postgres-0", user=HUMAN, code=101,
               stage="ResponseStarted")], [
    event(f"{r}-neg-1", "create", "pods", subresource="portforward", namespace="shop", name="postgres-0", user=HUMAN2, code=403),
])

r = "node-proxy"
rule(r, [event(f"{r}-pos-1", "get", "nodes", subresource="proxy", name="ip-10-0-1-23.ec2.internal", user=HUMAN,
               request_uri="/api/v1/nodes/ip-10-0-1-23.ec2.internal/proxy/runningpods/")], [
    event(f"{r}-neg-1", "get", "nodes", subresource="proxy", name="ip-10-0-1-23.ec2.internal", user=sa("monitoring", "prometheus"),
          request_uri="/api/v1/nodes/ip-10-0-1-23.ec2.internal/proxy/metrics/cadvisor"),
    event(f"{r}-neg-2", "get", "nodes", subresource="proxy", name="ip-10-0-1-23.ec2.internal", user=HUMAN, code=403,
          request_uri="/api/v1/nodes/ip-10-0-1-23.ec2.internal/proxy/runningpods/"),
])

r = "anonymous-allowed"
rule(r, [
    event(f"{r}-pos-1", "list", "pods", namespace="default", user=ANONYMOUS, source_ip=PUBLIC_IP, user_agent="python-requests/2.31.0",
          reason='RBAC: allowed by RoleBinding "oops/default" of Role "pod-reader" to Group "system:unauthenticated"'),
], [
    event(f"{r}-neg-1", "get", user=ANONYMOUS, request_uri="/healthz", source_ip="10.0.0.2", user_agent="kube-probe/1.31",
          reason='RBAC: allowed by ClusterRoleBinding "system:public-info-viewer"'),
    event(f"{r}-neg-2", "get", user=ANONYMOUS, request_uri="/version", source_ip=PUBLIC_IP,
          reason='RBAC: allowed by ClusterRoleBinding "system:public-info-viewer"'),
    event(f"{r}-neg-3", "list", "secrets", user=ANONYMOUS, source_ip=PUBLIC_IP, code=403),
])

r = "forbidden-request"
rule(r, [
    event(f"{r}-pos-1", "get", "secrets", namespace="kube-system", name="admin-token", user=HUMAN, code=403),
    event(f"{r}-pos-2", "list", "nodes", user=HUMAN, code=403, at=20),
], [
    event(f"{r}-neg-1", "get", "configmaps", namespace="kube-system", name="extension-apiserver-authentication", user=SCHEDULER, code=403),
    event(f"{r}-neg-2", "get", "secrets", namespace="kube-system", name="admin-token", user=HUMAN, code=404),
], findings=1)

r = "forbidden-burst-public-ip"
scan = [("list", "pods"), ("list", "secrets"), ("list", "nodes"), ("list", "namespaces"), ("list", "configmaps"),
        ("list", "deployments"), ("list", "serviceaccounts"), ("list", "clusterroles"), ("list", "roles"),
        ("list", "clusterrolebindings"), ("list", "rolebindings")]
rule(r, [event(f"{r}-pos-{i + 1}", v, res, user=ANONYMOUS, source_ip="198.51.100.77", user_agent="Mozilla/5.0 zgrab/0.x",
               code=403, at=i * 3) for i, (v, res) in enumerate(scan)], [
    event(f"{r}-neg-{i + 1}", v, res, user=HUMAN, source_ip="10.0.12.7", code=403, at=i * 3) for i, (v, res) in enumerate(scan)
] + [event(f"{r}-neg-{20 + i}", v, res, user=ANONYMOUS, source_ip="198.51.100.78", code=403, at=i * 400)
     for i, (v, res) in enumerate(scan)], findings=1)

r = "forbidden-unusual-user-agent"
rule(r, [
    event(f"{r}-base-1", "list", "pods", namespace="shop", user=HUMAN, at=-86400),
    event(f"{r}-base-2", "get", "secrets", namespace="shop", name="db", user=HUMAN, code=403, at=-3600),
    event(f"{r}-pos-1", "list", "secrets", namespace="kube-system", user=HUMAN, code=403, user_agent="Go-http-client/1.1", at=60),
    event(f"{r}-pos-2", "get", "secrets", namespace="kube-system", name="x", user=HUMAN, code=403, user_agent="Go-http-client/1.1", at=90),
], [
    event(f"{r}-neg-base-1", "list", "pods", namespace="shop", user=HUMAN, at=-86400),
    event(f"{r}-neg-base-2", "list", "pods", namespace="shop", user=HUMAN2, at=-7200, user_agent=PY_UA),
    event(f"{r}-neg-1", "list", "secrets", namespace="kube-system", user=HUMAN, code=403, at=60),
    event(f"{r}-neg-2", "list", "secrets", namespace="kube-system", user=HUMAN, code=403, at=60, user_agent=PY_UA),
], findings=1, since="2026-11-20T10:00:00Z")

r = "permission-enumeration"
probe = ["pods", "secrets", "nodes", "configmaps", "deployments", "serviceaccounts"]
# Evidence is the denied requests; the allowed ones (`-ctx-`) complete the allow+forbid pattern.
rule(r, [event(f"{r}-{'ctx' if i % 3 == 0 else 'pos'}-{i + 1}", "list", res, user=sa("shop", "api"), source_ip="10.0.31.9",
               user_agent=CURL_UA, code=200 if i % 3 == 0 else 403, at=i * 5) for i, res in enumerate(probe)], [
    event(f"{r}-neg-{i + 1}", "list", res, user=HUMAN, code=200, at=i * 5) for i, res in enumerate(probe)
] + [event(f"{r}-neg-10", "get", "secrets", namespace="shop", name="db", user=HUMAN2, code=403)], findings=1)

r = "multi-resource-discovery"
recon = ["namespaces", "nodes", "pods", "roles", "clusterrolebindings"]
rule(r, [event(f"{r}-pos-{i + 1}", "list", res, user=HUMAN2, user_agent=PY_UA, source_ip=PUBLIC_IP, at=i * 4) for i, res in enumerate(recon)], [
    event(f"{r}-neg-{i + 1}", "list", res, user=HUMAN, at=i * 90) for i, res in enumerate(recon)
] + [event(f"{r}-neg-{10 + i}", "list", res, user=KCM, at=i) for i, res in enumerate(recon)], findings=1)

r = "self-access-review"
rule(r, [
    event(f"{r}-pos-1", "create", "selfsubjectrulesreviews", user=sa("shop", "api"), user_agent=CURL_UA),
    event(f"{r}-pos-2", "create", "selfsubjectaccessreviews", user=HUMAN2, user_agent=PY_UA, at=60),
], [
    event(f"{r}-neg-1", "create", "selfsubjectaccessreviews", user=HUMAN),
])

r = "secrets-listed"
rule(r, [
    event(f"{r}-pos-1", "list", "secrets", user=HUMAN, request_uri="/api/v1/secrets?limit=500"),
    event(f"{r}-pos-2", "list", "secrets", namespace="kube-system", user=HUMAN2, at=60),
], [
    event(f"{r}-neg-1", "list", "secrets", user=ADMIN),
    event(f"{r}-neg-2", "watch", "secrets", user=sa("kube-system", "namespace-controller")),
    event(f"{r}-neg-3", "list", "secrets", namespace="shop", user=HUMAN, code=403),
])

r = "bulk-secret-reads"
rule(r, [event(f"{r}-pos-{i + 1}", "get", "secrets", namespace="shop", name=f"secret-{i}", user=HUMAN2, user_agent=PY_UA,
               at=i * 20) for i in range(6)], [
    event(f"{r}-neg-{i + 1}", "get", "secrets", namespace="shop", name="db-creds", user=HUMAN, at=i * 20) for i in range(8)
] + [event(f"{r}-neg-{10 + i}", "get", "secrets", namespace="shop", name=f"s-{i}", user=HUMAN2, at=i * 900) for i in range(4)],
     findings=1)

r = "secret-read-denied"
rule(r, [
    event(f"{r}-pos-1", "get", "secrets", namespace="kube-system", name="admin-token", user=HUMAN, code=403),
    event(f"{r}-pos-2", "list", "secrets", namespace="kube-system", user=HUMAN, code=403, at=10),
], [
    event(f"{r}-neg-1", "get", "secrets", namespace="shop", name="db", user=NODE, code=403),
    event(f"{r}-neg-2", "get", "secrets", namespace="shop", name="db", user=HUMAN, code=404),
], findings=1)

r = "secret-read-scripting-client"
rule(r, [event(f"{r}-pos-1", "list", "secrets", namespace="shop", user=HUMAN2, user_agent=PY_UA, source_ip=PUBLIC_IP)], [
    event(f"{r}-neg-1", "list", "secrets", namespace="shop", user=HUMAN),
    event(f"{r}-neg-2", "get", "secrets", namespace="shop", name="db", user=HUMAN2, user_agent=CURL_UA, code=403),
])

r = "new-secret-reader"
rule(r, [
    event(f"{r}-base-1", "get", "secrets", namespace="shop", name="db", user=HUMAN, at=-86400),
    event(f"{r}-pos-1", "get", "secrets", namespace="shop", name="db", user=HUMAN2, at=60),
    event(f"{r}-pos-2", "list", "secrets", namespace="shop", user=HUMAN2, at=90),
], [
    event(f"{r}-neg-base-1", "get", "secrets", namespace="shop", name="db", user=HUMAN, at=-86400),
    event(f"{r}-neg-1", "get", "secrets", namespace="shop", name="db", user=HUMAN, at=60),
    event(f"{r}-neg-2", "get", "secrets", namespace="shop", name="db", user=ADMIN, at=60),
    event(f"{r}-neg-3", "get", "secrets", namespace="shop", name="db", user=HUMAN2, at=60, code=403),
], findings=1, since="2026-11-20T10:00:00Z")

r = "secret-read-by-workload-identity"
rule(r, [event(f"{r}-pos-1", "get", "secrets", namespace="shop", name="db", user=sa("shop", "api"), source_ip=PUBLIC_IP, user_agent=CURL_UA)], [
    event(f"{r}-neg-1", "get", "secrets", namespace="shop", name="db", user=sa("shop", "api"), source_ip="10.244.1.17",
          user_agent="api/1.8.2"),
    event(f"{r}-neg-2", "get", "secrets", namespace="shop", name="db", user=HUMAN, source_ip=PUBLIC_IP),
])

# ------------------------------------------------------------------- changes, allow-lists, IPs, feed
r = "secret-modified-deleted"
rule(r, [
    event(f"{r}-pos-1", "delete", "secrets", namespace="shop", name="db-creds", user=HUMAN),
    event(f"{r}-pos-2", "patch", "secrets", namespace="shop", name="tls", user=HUMAN, at=30),
], [
    event(f"{r}-neg-1", "create", "secrets", namespace="shop", name="new", user=HUMAN),
    event(f"{r}-neg-2", "delete", "secrets", namespace="shop", name="sh.helm.release.v1.shop.v3", user=HUMAN),
    event(f"{r}-neg-3", "update", "secrets", namespace="kube-system", name="bootstrap-token-abcdef",
          user=sa("kube-system", "token-cleaner")),
], findings=1)

cm = lambda data: {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "app"}, "data": data}  # noqa: E731
r = "configmap-credentials"
rule(r, [
    event(f"{r}-pos-1", "create", "configmaps", namespace="shop", name="app", user=HUMAN,
          request_object=cm({"aws_access_key_id": "AKIAEXAMPLE", "region": "eu-west-1"})),
    event(f"{r}-pos-2", "update", "configmaps", namespace="shop", name="app", user=HUMAN, at=30,
          request_object=cm({"DB_PASSWORD": "hunter2"})),
], [
    event(f"{r}-neg-1", "create", "configmaps", namespace="shop", name="app", user=HUMAN, request_object=cm({"region": "eu-west-1"})),
    event(f"{r}-neg-2", "get", "configmaps", namespace="shop", name="app", user=HUMAN, response_object=cm({"password": "x"})),
], findings=1)

r = "events-deleted"
rule(r, [event(f"{r}-pos-1", "deletecollection", "events", namespace="shop", user=HUMAN,
               request_uri="/api/v1/namespaces/shop/events")], [
    event(f"{r}-neg-1", "delete", "events", namespace="shop", name="x.17a", user=sa("kube-system", "namespace-controller")),
    event(f"{r}-neg-2", "list", "events", namespace="shop", user=HUMAN),
])

r = "disallowed-namespace"
rule(r, [event(f"{r}-pos-1", "create", "namespaces", name="crypto", user=HUMAN)], [
    event(f"{r}-neg-1", "create", "namespaces", name="shop", user=HUMAN),
    event(f"{r}-neg-2", "create", "namespaces", name="kube-node-lease", user=APISERVER),
], params={"allowed_namespaces": ["default", "kube-system", "kube-public", "shop"]})

r = "disallowed-user"
rule(r, [event(f"{r}-pos-1", "list", "pods", namespace="shop", user={"username": "eve", "groups": ["system:authenticated"]})], [
    event(f"{r}-neg-1", "list", "pods", namespace="shop", user=HUMAN),
    event(f"{r}-neg-2", "list", "pods", namespace="shop", user=KCM),
], params={"allowed_users": ["alice@example.com", "bob@example.com"]})

r = "admin-user-activity"
rule(r, [event(f"{r}-pos-1", "list", "secrets", user=ADMIN)], [event(f"{r}-neg-1", "list", "secrets", user=HUMAN)],
     params={"full_admin_users": ["kubernetes-admin"]})

node_obj = lambda n: {"kind": "Node", "apiVersion": "v1", "metadata": {"name": n}}  # noqa: E731
r = "untrusted-node"
rule(r, [event(f"{r}-pos-1", "create", "nodes", name="rogue-1", user={"username": "system:node:rogue-1", "groups": ["system:nodes"]},
               request_object=node_obj("rogue-1"), source_ip=PUBLIC_IP)], [
    event(f"{r}-neg-1", "create", "nodes", name="ip-10-0-1-23.ec2.internal", user=NODE, request_object=node_obj("ip-10-0-1-23.ec2.internal")),
    event(f"{r}-neg-2", "get", "nodes", name="rogue-1", user=HUMAN),
], params={"allowed_nodes": ["ip-10-0-1-23.ec2.internal"]})

r = "system-principal-public-ip"
rule(r, [event(f"{r}-pos-1", "list", "secrets", namespace="shop", user=sa("shop", "api"), source_ip="198.51.100.9", user_agent=CURL_UA)], [
    event(f"{r}-neg-1", "list", "secrets", namespace="shop", user=sa("shop", "api"), source_ip="10.244.1.17"),
    event(f"{r}-neg-2", "list", "pods", user=NODE, source_ip="52.95.110.1"),
    event(f"{r}-neg-3", "list", "pods", user=HUMAN, source_ip="198.51.100.9"),
], params={"cloud_ranges": ["52.95.0.0/16"]})

r = "tor-exit-node"
rule(r, [
    event(f"{r}-pos-1", "list", "pods", user=ANONYMOUS, source_ip="185.220.101.47", code=403),
    event(f"{r}-pos-2", "get", "secrets", namespace="shop", name="db", user=HUMAN2, source_ip="192.0.2.66", at=30),
], [event(f"{r}-neg-1", "list", "pods", user=HUMAN, source_ip="203.0.113.9")],
     params={"tor_exit_nodes": ["185.220.101.0/24"], "bad_ips": ["192.0.2.66"]})

ARC = sa("azure-arc", "azure-arc-kube-aad-proxy-sa")
r = "azure-arc-proxy-secrets"
rule(r, [event(f"{r}-pos-1", "get", "secrets", namespace="shop", name="db", user=ARC, impersonated_user={"username": "eve@contoso.com"})], [
    event(f"{r}-neg-1", "get", "secrets", namespace="azure-arc", name="cfg", user=ARC, impersonated_user={"username": "eve@contoso.com"}),
    event(f"{r}-neg-2", "get", "secrets", namespace="shop", name="db", user=HUMAN),
])

r = "activity-feed"
rule(r, [
    event(f"{r}-pos-1", "create", "deployments", namespace="shop", name="api", user=HUMAN),
    event(f"{r}-pos-2", "delete", "secrets", namespace="shop", name="db", user=HUMAN, at=10),
    event(f"{r}-pos-3", "create", "namespaces", name="team-a", user=HUMAN, at=20),
], [
    event(f"{r}-neg-1", "create", "secrets", namespace="kube-system", name="bootstrap-token-abc", user=HUMAN),
    event(f"{r}-neg-2", "create", "secrets", namespace="shop", name="default-token-x", user=KCM),
    event(f"{r}-neg-3", "create", "pods", namespace="shop", name="api-1", user=RS_CONTROLLER),
    event(f"{r}-neg-4", "update", "deployments", namespace="shop", name="api", user=HUMAN),
], params={})


def main():
    root = os.path.join(os.path.dirname(__file__), "..")
    for rule_id, f in FIXTURES.items():
        write(os.path.join(root, rule_id, "fixtures", "positive.jsonl"), f["pos"])
        write(os.path.join(root, rule_id, "fixtures", "negative.jsonl"), f["neg"])


if __name__ == "__main__":
    main()
