//! The background cluster: nodes, namespaces and workloads, and the identities that talk to the
//! API server all day (kubelets, controllers, operators, monitoring, CI, a few people).

use serde_json::{Value, json};

use super::{Level, Request, Rng, User};

pub const K8S_VERSION: &str = "v1.30.4";
const GIT: &str = "a51b3b7";

pub struct App {
    pub namespace: &'static str,
    pub name: &'static str,
    pub image: &'static str,
    pub service_account: &'static str,
    pub secrets: &'static [&'static str],
    pub pods: Vec<String>,
}

pub struct Cluster {
    pub nodes: Vec<String>,
    pub apps: Vec<App>,
}

/// Namespaces and workloads of the sample cluster.
const APPS: &[(&str, &str, &str, &str, &[&str])] = &[
    (
        "payments",
        "api",
        "registry.example.com/payments/api:4.12.0",
        "payments-api",
        &["db-password", "stripe-api-key", "api-tls"],
    ),
    (
        "payments",
        "worker",
        "registry.example.com/payments/worker:4.12.0",
        "payments-worker",
        &["db-password"],
    ),
    (
        "payments",
        "postgres",
        "docker.io/library/postgres:16.4",
        "default",
        &["db-password", "pg-replication"],
    ),
    (
        "web",
        "frontend",
        "registry.example.com/web/frontend:2.3.1",
        "frontend",
        &["session-key"],
    ),
    (
        "web",
        "cache",
        "docker.io/library/redis:7.4",
        "default",
        &[],
    ),
    (
        "monitoring",
        "prometheus-k8s",
        "quay.io/prometheus/prometheus:v2.53.0",
        "prometheus-k8s",
        &["prometheus-k8s-tls"],
    ),
    (
        "monitoring",
        "grafana",
        "docker.io/grafana/grafana:11.2.0",
        "grafana",
        &["grafana-admin"],
    ),
    (
        "argocd",
        "argocd-server",
        "quay.io/argoproj/argocd:v2.12.3",
        "argocd-server",
        &["argocd-secret"],
    ),
    (
        "argocd",
        "argocd-application-controller",
        "quay.io/argoproj/argocd:v2.12.3",
        "argocd-application-controller",
        &["argocd-secret"],
    ),
    (
        "kube-system",
        "coredns",
        "registry.k8s.io/coredns/coredns:v1.11.1",
        "coredns",
        &[],
    ),
    (
        "cert-manager",
        "cert-manager",
        "quay.io/jetstack/cert-manager-controller:v1.15.3",
        "cert-manager",
        &["letsencrypt-prod"],
    ),
];

impl Cluster {
    pub fn new(rng: &mut Rng) -> Self {
        let nodes = (1..=12)
            .map(|i| format!("ip-10-0-1-{}.eu-west-1.compute.internal", 10 + i))
            .collect();
        let apps = APPS
            .iter()
            .map(|&(namespace, name, image, service_account, secrets)| App {
                namespace,
                name,
                image,
                service_account,
                secrets,
                pods: (0..3)
                    .map(|_| format!("{name}-{}", rng.pod_suffix()))
                    .collect(),
            })
            .collect();
        Cluster { nodes, apps }
    }

    pub fn node_ip(node: &str) -> String {
        // ip-10-0-1-23.eu-west-1.compute.internal → 10.0.1.23
        node.trim_start_matches("ip-")
            .split('.')
            .next()
            .unwrap_or("")
            .replace('-', ".")
    }
}

fn ua(component: &str) -> String {
    format!("{component}/{K8S_VERSION} (linux/amd64) kubernetes/{GIT}")
}

fn controller_ua(sa: &str) -> String {
    format!(
        "kube-controller-manager/{K8S_VERSION} (linux/amd64) kubernetes/{GIT}/system:serviceaccount:kube-system:{sa}"
    )
}

pub fn kubectl_ua() -> String {
    "kubectl/v1.30.2 (darwin/arm64) kubernetes/3968350".to_owned()
}

fn rv(rng: &mut Rng) -> String {
    (48_000_000 + rng.below(2_000_000)).to_string()
}

const RBAC_REASON_NODE: &str = "";

fn allowed_by(binding: &str, role: &str, subject: &str) -> String {
    format!(
        "RBAC: allowed by ClusterRoleBinding \"{binding}\" of ClusterRole \"{role}\" to {subject}"
    )
}

/// One request of background traffic.
pub fn background_request(rng: &mut Rng, c: &Cluster) -> Request {
    let roll = rng.below(1000);
    match roll {
        0..=319 => kubelet(rng, c),
        320..=519 => controller(rng, c),
        520..=549 => scheduler(rng, c),
        550..=589 => apiserver(rng),
        590..=619 => coredns(rng),
        620..=679 => prometheus(rng, c),
        680..=749 => argocd(rng, c),
        750..=769 => cert_manager(rng, c),
        770..=799 => ci_deployer(rng, c),
        800..=829 => person(rng, c),
        830..=859 => health_probe(rng),
        _ => pod_churn(rng, c),
    }
}

fn kubelet(rng: &mut Rng, c: &Cluster) -> Request {
    let node = rng.pick(&c.nodes).clone();
    let user = User::new(
        &format!("system:node:{node}"),
        &["system:nodes", "system:authenticated"],
    );
    let ip = Cluster::node_ip(&node);
    let agent = ua("kubelet");
    let app = rng.pick(&c.apps);
    let pod = rng.pick(&app.pods).clone();
    match rng.below(100) {
        0..=29 => Request::new(
            "update",
            format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}?timeout=10s"),
            &user,
            &ip,
            &agent,
        )
        .object("leases", Some("kube-node-lease"), Some(&node))
        .level(Level::Request)
        .bodies(Some(lease(rng, "kube-node-lease", &node, &node, 40)), None)
        .reason(RBAC_REASON_NODE),
        30..=44 => Request::new("get", format!("/api/v1/nodes/{node}?resourceVersion=0&timeout=10s"), &user, &ip, &agent)
            .object("nodes", None, Some(&node)),
        45..=54 => {
            let body = node_status_patch(rng);
            Request::new("patch", format!("/api/v1/nodes/{node}/status?timeout=10s"), &user, &ip, &agent)
                .object("nodes", None, Some(&node))
                .subresource("status")
                .level(Level::Request)
                .bodies(Some(body), None)
        }
        55..=64 => Request::new(
            "watch",
            format!(
                "/api/v1/pods?allowWatchBookmarks=true&fieldSelector=spec.nodeName%3D{node}&resourceVersion={}&timeoutSeconds={}&watch=true",
                rv(rng),
                300 + rng.below(300)
            ),
            &user,
            &ip,
            &agent,
        )
        .object("pods", None, None)
        .streaming(),
        65..=74 if !app.secrets.is_empty() => {
            let secret = *rng.pick(app.secrets);
            Request::new("get", format!("/api/v1/namespaces/{}/secrets/{secret}", app.namespace), &user, &ip, &agent)
                .object("secrets", Some(app.namespace), Some(secret))
        }
        65..=82 => Request::new(
            "get",
            format!("/api/v1/namespaces/{}/configmaps/kube-root-ca.crt", app.namespace),
            &user,
            &ip,
            &agent,
        )
        .object("configmaps", Some(app.namespace), Some("kube-root-ca.crt")),
        83..=92 => {
            let body = pod_status_patch(rng, &pod);
            Request::new("patch", format!("/api/v1/namespaces/{}/pods/{pod}/status", app.namespace), &user, &ip, &agent)
                .object("pods", Some(app.namespace), Some(&pod))
                .subresource("status")
                .level(Level::Request)
                .bodies(Some(body), None)
        }
        93..=96 => Request::new(
            "create",
            format!("/api/v1/namespaces/{}/serviceaccounts/{}/token", app.namespace, app.service_account),
            &user,
            &ip,
            &agent,
        )
        .object("serviceaccounts", Some(app.namespace), Some(app.service_account))
        .subresource("token")
        .code(201),
        _ => {
            let body = json!({"kind":"Event","apiVersion":"v1","metadata":{"name":format!("{pod}.{:x}", rng.next_u64() >> 8),"namespace":app.namespace},
                "involvedObject":{"kind":"Pod","namespace":app.namespace,"name":pod,"uid":rng.uuid(),"apiVersion":"v1","fieldPath":format!("spec.containers{{{}}}", app.name)},
                "reason":"Pulled","message":format!("Container image \"{}\" already present on machine", app.image),"source":{"component":"kubelet","host":node},
                "firstTimestamp":"2026-11-20T08:00:00Z","lastTimestamp":"2026-11-20T08:00:00Z","count":1,"type":"Normal","reportingComponent":"kubelet","reportingInstance":node});
            Request::new("create", format!("/api/v1/namespaces/{}/events", app.namespace), &user, &ip, &agent)
                .object("events", Some(app.namespace), None)
                .level(Level::Request)
                .bodies(Some(body), None)
                .code(201)
        }
    }
}

fn controller(rng: &mut Rng, c: &Cluster) -> Request {
    let app = rng.pick(&c.apps);
    let ns = app.namespace;
    let ip = "10.0.1.5";
    match rng.below(100) {
        0..=19 => {
            let user = User::new("system:kube-controller-manager", &["system:authenticated"]);
            Request::new(
                "update",
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager?timeout=5s",
                &user,
                ip,
                &format!("{}/leader-election", ua("kube-controller-manager")),
            )
            .object("leases", Some("kube-system"), Some("kube-controller-manager"))
            .level(Level::Request)
            .bodies(Some(lease(rng, "kube-system", "kube-controller-manager", "ip-10-0-1-5_5b8e2c1a-7f0d-4e8b-9a51-3c2f1d0e9b7a", 15)), None)
        }
        20..=39 => {
            let user = User::service_account("kube-system", "endpointslice-controller");
            let name = format!("{}-{}", app.name, &rng.pod_suffix()[10..]);
            Request::new(
                "update",
                format!("/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/{name}"),
                &user,
                ip,
                &controller_ua("endpointslice-controller"),
            )
            .object("endpointslices", Some(ns), Some(&name))
            .level(Level::Request)
            .bodies(Some(endpoint_slice(rng, ns, &name, app.name)), None)
            .reason(allowed_by(
                "system:controller:endpointslice-controller",
                "system:controller:endpointslice-controller",
                "User \"system:serviceaccount:kube-system:endpointslice-controller\"",
            ))
        }
        40..=54 => {
            let user = User::service_account("kube-system", "replicaset-controller");
            let name = format!("{}-{}", app.name, &rng.pod_suffix()[..9]);
            Request::new(
                "update",
                format!("/apis/apps/v1/namespaces/{ns}/replicasets/{name}/status"),
                &user,
                ip,
                &controller_ua("replicaset-controller"),
            )
            .object("replicasets", Some(ns), Some(&name))
            .subresource("status")
            .level(Level::Request)
            .bodies(Some(json!({"kind":"ReplicaSet","apiVersion":"apps/v1","metadata":{"name":name,"namespace":ns,"uid":rng.uuid(),"resourceVersion":rv(rng),"generation":3,
                "labels":{"app":app.name,"pod-template-hash":&name[name.len()-9..]},
                "managedFields":managed_fields("kube-controller-manager", Some("status"), &["availableReplicas","fullyLabeledReplicas","observedGeneration","readyReplicas","replicas"])},
                "spec":{"replicas":3,"selector":{"matchLabels":{"app":app.name}}},
                "status":{"replicas":3,"fullyLabeledReplicas":3,"readyReplicas":3,"availableReplicas":3,"observedGeneration":3}})), None)
            .code(if rng.chance(0.08) { 409 } else { 200 })
        }
        55..=64 => {
            let user = User::service_account("kube-system", "deployment-controller");
            Request::new(
                "update",
                format!(
                    "/apis/apps/v1/namespaces/{ns}/deployments/{}/status",
                    app.name
                ),
                &user,
                ip,
                &controller_ua("deployment-controller"),
            )
            .object("deployments", Some(ns), Some(app.name))
            .subresource("status")
            .level(Level::Request)
            .bodies(Some(deployment(rng, app)), None)
        }
        _ => {
            let user = User::new("system:kube-controller-manager", &["system:authenticated"]);
            let resource = *rng.pick(&[
                "pods",
                "replicasets",
                "deployments",
                "daemonsets",
                "statefulsets",
                "jobs",
                "cronjobs",
                "services",
                "endpointslices",
                "namespaces",
                "serviceaccounts",
                "secrets",
                "configmaps",
                "nodes",
                "leases",
                "persistentvolumeclaims",
                "horizontalpodautoscalers",
                "poddisruptionbudgets",
                "roles",
                "rolebindings",
            ]);
            let (group, version) = super::api_group_version(resource);
            let prefix = match group {
                Some(g) => format!("/apis/{g}/{version}"),
                None => "/api/v1".to_owned(),
            };
            let watch = rng.chance(0.6);
            let uri = if watch {
                format!(
                    "{prefix}/{resource}?allowWatchBookmarks=true&resourceVersion={}&timeout=7m{}s&timeoutSeconds={}&watch=true",
                    rv(rng),
                    rng.below(60),
                    420 + rng.below(120)
                )
            } else {
                format!("{prefix}/{resource}?limit=500&resourceVersion=0")
            };
            let req = Request::new(
                if watch { "watch" } else { "list" },
                uri,
                &user,
                ip,
                &ua("kube-controller-manager"),
            )
            .object(resource, None, None);
            if watch {
                req.streaming()
            } else {
                req.latency(4_000 + rng.below(20_000) as i64)
            }
        }
    }
}

fn scheduler(rng: &mut Rng, c: &Cluster) -> Request {
    let user = User::new("system:kube-scheduler", &["system:authenticated"]);
    let ip = "10.0.1.5";
    if rng.chance(0.6) {
        Request::new(
            "update",
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler?timeout=5s",
            &user,
            ip,
            &ua("kube-scheduler"),
        )
        .object("leases", Some("kube-system"), Some("kube-scheduler"))
        .reason(allowed_by(
            "system:kube-scheduler",
            "system:kube-scheduler",
            "User \"system:kube-scheduler\"",
        ))
    } else {
        let app = rng.pick(&c.apps);
        let pod = rng.pick(&app.pods).clone();
        let node = rng.pick(&c.nodes).clone();
        Request::new("create", format!("/api/v1/namespaces/{}/pods/{pod}/binding", app.namespace), &user, ip, &ua("kube-scheduler"))
            .object("pods", Some(app.namespace), Some(&pod))
            .subresource("binding")
            .code(201)
            .level(Level::Request)
            .bodies(Some(json!({"kind":"Binding","apiVersion":"v1","metadata":{"name":pod,"namespace":app.namespace,"uid":rng.uuid()},"target":{"kind":"Node","name":node}})), None)
            .reason(allowed_by("system:kube-scheduler", "system:kube-scheduler", "User \"system:kube-scheduler\""))
    }
}

fn apiserver(rng: &mut Rng) -> Request {
    let user = User::new("system:apiserver", &["system:masters"])
        .with_uid("c68c21d2-90b3-424a-b3e3-946d499e482a");
    let resource = *rng.pick(&[
        "configmaps",
        "namespaces",
        "services",
        "endpoints",
        "leases",
        "priorityclasses",
        "flowschemas",
    ]);
    let (group, version) = super::api_group_version(resource);
    let prefix = match group {
        Some(g) => format!("/apis/{g}/{version}"),
        None => "/api/v1".to_owned(),
    };
    if resource == "leases" {
        let name = "apiserver-xk4mzbqbmwxg7wx5gnxbkw6v5q";
        Request::new(
            "update",
            format!("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}"),
            &user,
            "::1",
            &ua("kube-apiserver"),
        )
        .object("leases", Some("kube-system"), Some(name))
    } else {
        Request::new(
            "list",
            format!("{prefix}/{resource}?limit=500&resourceVersion=0"),
            &user,
            "::1",
            &ua("kube-apiserver"),
        )
        .object(resource, None, None)
        .latency(900 + rng.below(3_000) as i64)
    }
}

fn coredns(rng: &mut Rng) -> Request {
    let user = User::service_account("kube-system", "coredns");
    let resource = *rng.pick(&["endpointslices", "services", "namespaces"]);
    let (group, version) = super::api_group_version(resource);
    let prefix = match group {
        Some(g) => format!("/apis/{g}/{version}"),
        None => "/api/v1".to_owned(),
    };
    Request::new(
        "watch",
        format!("{prefix}/{resource}?allowWatchBookmarks=true&resourceVersion={}&timeout=6m{}s&timeoutSeconds={}&watch=true", rv(rng), rng.below(60), 360 + rng.below(60)),
        &user,
        "10.244.3.17",
        "coredns/v1.11.1 (linux/amd64) kubernetes/$Format",
    )
    .object(resource, None, None)
    .streaming()
    .reason(allowed_by("system:coredns", "system:coredns", "ServiceAccount \"coredns/kube-system\""))
}

fn prometheus(rng: &mut Rng, c: &Cluster) -> Request {
    let user = User::service_account("monitoring", "prometheus-k8s");
    let ip = "10.244.5.31";
    let agent = "Prometheus/2.53.0";
    let reason = allowed_by(
        "prometheus-k8s",
        "prometheus-k8s",
        "ServiceAccount \"prometheus-k8s/monitoring\"",
    );
    match rng.below(10) {
        0..=3 => Request::new("get", "/metrics", &user, ip, agent)
            .reason(reason)
            .latency(15_000),
        4..=5 => {
            let node = rng.pick(&c.nodes).clone();
            Request::new(
                "get",
                format!("/api/v1/nodes/{node}/proxy/metrics/cadvisor"),
                &user,
                ip,
                agent,
            )
            .object("nodes", None, Some(&node))
            .subresource("proxy")
            .reason(reason)
            .latency(45_000)
        }
        _ => {
            let resource = *rng.pick(&["pods", "endpoints", "services"]);
            Request::new(
                "watch",
                format!("/api/v1/{resource}?allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={}&watch=true", rv(rng), 400 + rng.below(100)),
                &user,
                ip,
                agent,
            )
            .object(resource, None, None)
            .streaming()
            .reason(reason)
        }
    }
}

fn argocd(rng: &mut Rng, c: &Cluster) -> Request {
    let user = User::service_account("argocd", "argocd-application-controller");
    let ip = "10.244.7.12";
    let agent = "argocd-application-controller/v0.0.0 (linux/amd64) kubernetes/$Format";
    let reason = allowed_by(
        "argocd-application-controller",
        "argocd-application-controller",
        "ServiceAccount \"argocd-application-controller/argocd\"",
    );
    if rng.chance(0.05) {
        // An old client library still on a deprecated API version: what upgrade reports look for.
        Request::new(
            "list",
            "/apis/flowcontrol.apiserver.k8s.io/v1beta3/flowschemas?limit=500",
            &user,
            ip,
            agent,
        )
        .object("flowschemas", None, None)
        .reason(reason)
        .annotate("k8s.io/deprecated", "true")
        .annotate("k8s.io/removed-release", "1.32")
    } else if rng.chance(0.25) {
        let app = rng.pick(&c.apps);
        Request::new(
            "patch",
            format!(
                "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/{}",
                app.name
            ),
            &user,
            ip,
            agent,
        )
        .object("applications", Some("argocd"), Some(app.name))
        .level(Level::Request)
        .bodies(Some(argocd_status(rng, c, app)), None)
        .reason(reason)
    } else {
        let resource = *rng.pick(&[
            "deployments",
            "services",
            "configmaps",
            "ingresses",
            "statefulsets",
            "cronjobs",
            "serviceaccounts",
            "roles",
            "rolebindings",
            "networkpolicies",
        ]);
        let (group, version) = super::api_group_version(resource);
        let prefix = match group {
            Some(g) => format!("/apis/{g}/{version}"),
            None => "/api/v1".to_owned(),
        };
        Request::new(
            "list",
            format!("{prefix}/{resource}?limit=500"),
            &user,
            ip,
            agent,
        )
        .object(resource, None, None)
        .reason(reason)
        .latency(6_000 + rng.below(20_000) as i64)
    }
}

fn cert_manager(rng: &mut Rng, c: &Cluster) -> Request {
    let user = User::service_account("cert-manager", "cert-manager");
    let ip = "10.244.2.40";
    let agent = "cert-manager-certificates-trigger/v1.15.3 (linux/amd64) cert-manager/9a5a8d3";
    let app = rng.pick(&c.apps);
    if rng.chance(0.5) {
        Request::new(
            "update",
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/cert-manager-controller",
            &user,
            ip,
            agent,
        )
        .object(
            "leases",
            Some("kube-system"),
            Some("cert-manager-controller"),
        )
    } else {
        let secret = app
            .secrets
            .iter()
            .find(|s| s.ends_with("-tls"))
            .copied()
            .unwrap_or("api-tls");
        Request::new(
            "get",
            format!("/api/v1/namespaces/{}/secrets/{secret}", app.namespace),
            &user,
            ip,
            agent,
        )
        .object("secrets", Some(app.namespace), Some(secret))
        .code(if app.secrets.contains(&secret) {
            200
        } else {
            404
        })
        .reason(allowed_by(
            "cert-manager-controller-certificates",
            "cert-manager-controller-certificates",
            "ServiceAccount \"cert-manager/cert-manager\"",
        ))
    }
}

fn ci_deployer(rng: &mut Rng, c: &Cluster) -> Request {
    let user = User::service_account("ci", "deployer");
    let ip = "10.0.5.10";
    let agent = "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350";
    let app = rng.pick(&c.apps);
    let reason = format!(
        "RBAC: allowed by RoleBinding \"deployer/{}\" of ClusterRole \"edit\" to ServiceAccount \"deployer/ci\"",
        app.namespace
    );
    if rng.chance(0.5) {
        Request::new(
            "get",
            format!(
                "/apis/apps/v1/namespaces/{}/deployments/{}",
                app.namespace, app.name
            ),
            &user,
            ip,
            agent,
        )
        .object("deployments", Some(app.namespace), Some(app.name))
        .reason(reason)
    } else {
        let body = json!({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt": format!("2026-11-20T08:{:02}:00Z", rng.below(60))}},
            "spec":{"containers":[{"name":app.name,"image":app.image}]}}}});
        Request::new(
            "patch",
            format!(
                "/apis/apps/v1/namespaces/{}/deployments/{}?fieldManager=kubectl-patch",
                app.namespace, app.name
            ),
            &user,
            ip,
            agent,
        )
        .object("deployments", Some(app.namespace), Some(app.name))
        .level(Level::RequestResponse)
        .bodies(Some(body), Some(deployment(rng, app)))
        .reason(reason)
        .latency(12_000)
    }
}

fn person(rng: &mut Rng, c: &Cluster) -> Request {
    let (user, ip) = if rng.chance(0.6) {
        (
            User::new("alice@example.com", &["oidc:devs", "system:authenticated"]),
            "192.168.50.21",
        )
    } else {
        (
            User::new("bob@example.com", &["oidc:sre", "system:authenticated"]),
            "192.168.50.34",
        )
    };
    let agent = kubectl_ua();
    let app = rng.pick(&c.apps);
    let pod = rng.pick(&app.pods).clone();
    let ns = app.namespace;
    let reason = format!(
        "RBAC: allowed by RoleBinding \"team-view/{ns}\" of ClusterRole \"view\" to Group \"oidc:devs\""
    );
    match rng.below(10) {
        0..=2 => Request::new("list", format!("/api/v1/namespaces/{ns}/pods?limit=500"), &user, ip, &agent)
            .object("pods", Some(ns), None)
            .reason(reason),
        3..=4 => Request::new("get", format!("/api/v1/namespaces/{ns}/pods/{pod}"), &user, ip, &agent)
            .object("pods", Some(ns), Some(&pod))
            .reason(reason),
        5..=6 => Request::new("get", format!("/api/v1/namespaces/{ns}/pods/{pod}/log?container={}&tailLines=200", app.name), &user, ip, &agent)
            .object("pods", Some(ns), Some(&pod))
            .subresource("log")
            .reason(reason),
        7 => Request::new("list", format!("/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3D{pod}"), &user, ip, &agent)
            .object("events", Some(ns), None)
            .reason(reason),
        8 => Request::new("get", format!("/apis/apps/v1/namespaces/{ns}/deployments/{}", app.name), &user, ip, &agent)
            .object("deployments", Some(ns), Some(app.name))
            .reason(reason),
        _ => Request::new("list", "/api/v1/nodes?limit=500", &user, ip, &agent)
            .object("nodes", None, None)
            .code(if user.username.starts_with("alice") { 403 } else { 200 })
            .reason("RBAC: allowed by ClusterRoleBinding \"sre-view\" of ClusterRole \"view\" to Group \"oidc:sre\""),
    }
}

fn health_probe(rng: &mut Rng) -> Request {
    let user = User::new("system:anonymous", &["system:unauthenticated"]);
    let path = *rng.pick(&["/readyz", "/livez", "/healthz"]);
    Request::new("get", path, &user, "10.0.0.2", "ELB-HealthChecker/2.0")
        .reason(allowed_by(
            "system:public-info-viewer",
            "system:public-info-viewer",
            "Group \"system:unauthenticated\"",
        ))
        .latency(400)
}

/// Pods come and go: the replicaset controller creates and deletes them (bodies logged), the
/// daemonset controller creates host-level agents (privileged by design: a classic false positive).
fn pod_churn(rng: &mut Rng, c: &Cluster) -> Request {
    if rng.chance(0.15) {
        let user = User::service_account("kube-system", "daemon-set-controller");
        let node = rng.pick(&c.nodes).clone();
        let name = format!("kube-proxy-{}", &rng.pod_suffix()[10..]);
        let spec = json!({"hostNetwork": true, "serviceAccountName": "kube-proxy", "nodeName": node, "priorityClassName": "system-node-critical",
            "containers": [{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.30.4",
                "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"],
                "securityContext": {"privileged": true},
                "volumeMounts": [{"name": "kube-proxy", "mountPath": "/var/lib/kube-proxy"}, {"name": "xtables-lock", "mountPath": "/run/xtables.lock"}, {"name": "lib-modules", "mountPath": "/lib/modules", "readOnly": true}]}],
            "volumes": [{"name": "kube-proxy", "configMap": {"name": "kube-proxy"}}, {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}}, {"name": "lib-modules", "hostPath": {"path": "/lib/modules", "type": ""}}]});
        let body = pod_object(rng, "kube-system", &name, spec, false);
        let response = pod_object(rng, "kube-system", &name, body["spec"].clone(), true);
        return Request::new(
            "create",
            "/api/v1/namespaces/kube-system/pods",
            &user,
            "10.0.1.5",
            &controller_ua("daemon-set-controller"),
        )
        .object("pods", Some("kube-system"), Some(&name))
        .level(Level::RequestResponse)
        .bodies(Some(body), Some(response))
        .code(201)
        .reason(allowed_by(
            "system:controller:daemon-set-controller",
            "system:controller:daemon-set-controller",
            "User \"system:serviceaccount:kube-system:daemon-set-controller\"",
        ))
        .latency(9_000);
    }
    let user = User::service_account("kube-system", "replicaset-controller");
    let app = rng.pick(&c.apps);
    let name = format!("{}-{}", app.name, rng.pod_suffix());
    let reason = allowed_by(
        "system:controller:replicaset-controller",
        "system:controller:replicaset-controller",
        "User \"system:serviceaccount:kube-system:replicaset-controller\"",
    );
    if rng.chance(0.5) {
        let spec = app_pod_spec(app);
        let body = pod_object(rng, app.namespace, &name, spec.clone(), false);
        let response = pod_object(rng, app.namespace, &name, spec, true);
        Request::new(
            "create",
            format!("/api/v1/namespaces/{}/pods", app.namespace),
            &user,
            "10.0.1.5",
            &controller_ua("replicaset-controller"),
        )
        .object("pods", Some(app.namespace), Some(&name))
        .level(Level::RequestResponse)
        .bodies(Some(body), Some(response))
        .code(201)
        .reason(reason)
        .latency(8_000)
    } else {
        Request::new(
            "delete",
            format!("/api/v1/namespaces/{}/pods/{name}", app.namespace),
            &user,
            "10.0.1.5",
            &controller_ua("replicaset-controller"),
        )
        .object("pods", Some(app.namespace), Some(&name))
        .level(Level::RequestResponse)
        .bodies(
            Some(
                json!({"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}),
            ),
            None,
        )
        .reason(reason)
        .latency(6_000)
    }
}

pub fn app_pod_spec(app: &App) -> Value {
    json!({
        "serviceAccountName": app.service_account,
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": app.name, "image": app.image,
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]
        }],
        "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]
    })
}

/// A Pod object as a request body (`response` adds what the server fills in).
pub fn pod_object(rng: &mut Rng, ns: &str, name: &str, spec: Value, response: bool) -> Value {
    let mut pod = json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name.split('-').next().unwrap_or(name)},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name.rsplit_once('-').map_or(name, |x| x.0), "uid": rng.uuid(), "controller": true, "blockOwnerDeletion": true}]},
        "spec": spec,
        "status": {}
    });
    if response {
        pod["metadata"]["managedFields"] = json!([{"manager":"kube-controller-manager","operation":"Update","apiVersion":"v1","time":"2026-11-20T08:00:00Z","fieldsType":"FieldsV1",
            "fieldsV1":{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"0\"}":{}}},
                "f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{},"f:resources":{},"f:securityContext":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},"f:volumeMounts":{}}},
                "f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:serviceAccount":{},"f:serviceAccountName":{},"f:terminationGracePeriodSeconds":{},"f:volumes":{}}}}]);
        // Defaults the API server fills in.
        let spec = &mut pod["spec"];
        for (k, v) in [
            ("dnsPolicy", json!("ClusterFirst")),
            ("restartPolicy", json!("Always")),
            ("schedulerName", json!("default-scheduler")),
            ("terminationGracePeriodSeconds", json!(30)),
            ("enableServiceLinks", json!(true)),
            ("preemptionPolicy", json!("PreemptLowerPriority")),
            ("priority", json!(0)),
            ("serviceAccount", spec["serviceAccountName"].clone()),
            (
                "tolerations",
                json!([{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300},
                                   {"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}]),
            ),
        ] {
            if spec.get(k).is_none() {
                spec[k] = v;
            }
        }
        if let Some(containers) = spec["containers"].as_array_mut() {
            for ctr in containers {
                ctr["imagePullPolicy"] = "IfNotPresent".into();
                ctr["terminationMessagePath"] = "/dev/termination-log".into();
                ctr["terminationMessagePolicy"] = "File".into();
            }
        }
        pod["metadata"]["uid"] = rng.uuid().into();
        pod["metadata"]["resourceVersion"] = rv(rng).into();
        pod["metadata"]["creationTimestamp"] = "2026-11-20T08:00:00Z".into();
        pod["status"] = json!({"phase": "Pending", "qosClass": "Burstable"});
    }
    pod
}

fn deployment(rng: &mut Rng, app: &App) -> Value {
    json!({"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":app.name,"namespace":app.namespace,"uid":rng.uuid(),"resourceVersion":rv(rng),"generation":40 + rng.below(20),
        "managedFields":managed_fields("kube-controller-manager", Some("status"), &["availableReplicas","conditions","observedGeneration","readyReplicas","replicas","updatedReplicas"])},
        "spec":{"replicas":3,"selector":{"matchLabels":{"app":app.name}},"template":{"metadata":{"labels":{"app":app.name}},"spec":app_pod_spec(app)}},
        "status":{"replicas":3,"readyReplicas":3,"updatedReplicas":1}})
}

/// `metadata.managedFields` as clients send it back on update: a large share of real audit bytes.
fn managed_fields(manager: &str, subresource: Option<&str>, fields: &[&str]) -> Value {
    let spec: serde_json::Map<String, Value> = fields
        .iter()
        .map(|f| (format!("f:{f}"), json!({})))
        .collect();
    let mut entry = json!({"manager":manager,"operation":"Update","apiVersion":"v1","time":"2026-11-20T07:58:12Z","fieldsType":"FieldsV1",
        "fieldsV1":{"f:metadata":{"f:annotations":{".":{},"f:deployment.kubernetes.io/revision":{}},"f:labels":{".":{},"f:app":{}}},"f:spec":spec}});
    if let Some(sub) = subresource {
        entry["subresource"] = sub.into();
    }
    json!([entry])
}

/// Argo CD writes the sync status of every managed resource into its Application: big patches.
fn argocd_status(rng: &mut Rng, c: &Cluster, app: &App) -> Value {
    let resources: Vec<Value> = c
        .apps
        .iter()
        .filter(|a| a.namespace == app.namespace)
        .flat_map(|a| {
            [("apps", "Deployment", a.name), ("", "Service", a.name), ("", "ServiceAccount", a.service_account), ("", "ConfigMap", a.name)]
                .map(|(group, kind, name)| json!({"group":group,"version":"v1","kind":kind,"namespace":a.namespace,"name":name,"status":"Synced","health":{"status":"Healthy"}}))
        })
        .collect();
    json!({"status":{"reconciledAt":format!("2026-11-20T08:{:02}:{:02}Z", rng.below(60), rng.below(60)),
        "sync":{"status":"Synced","comparedTo":{"source":{"repoURL":"https://git.example.com/platform/deploy.git","path":format!("apps/{}", app.namespace),"targetRevision":"main"},
            "destination":{"server":"https://kubernetes.default.svc","namespace":app.namespace}},"revision":format!("{:016x}{:08x}", rng.next_u64(), rng.next_u64() >> 32)},
        "health":{"status":"Healthy"},"resources":resources}})
}

fn lease(rng: &mut Rng, ns: &str, name: &str, holder: &str, duration: u64) -> Value {
    json!({"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":name,"namespace":ns,"uid":rng.uuid(),"resourceVersion":rv(rng),
        "creationTimestamp":"2026-10-02T11:20:41Z","managedFields":managed_fields(holder.split('_').next().unwrap_or(holder), None, &["holderIdentity","leaseDurationSeconds","renewTime"])},
        "spec":{"holderIdentity":holder,"leaseDurationSeconds":duration,"renewTime":format!("2026-11-20T08:{:02}:{:02}.{:06}Z", rng.below(60), rng.below(60), rng.below(1_000_000))}})
}

fn endpoint_slice(rng: &mut Rng, ns: &str, name: &str, app: &str) -> Value {
    let endpoints: Vec<Value> = (0..3)
        .map(|_| json!({"addresses":[format!("10.244.{}.{}", rng.below(8), 2 + rng.below(250))],"conditions":{"ready":true,"serving":true,"terminating":false},
            "targetRef":{"kind":"Pod","namespace":ns,"name":format!("{app}-{}", rng.pod_suffix()),"uid":rng.uuid()},"nodeName":format!("ip-10-0-1-{}.eu-west-1.compute.internal", 11 + rng.below(12))}))
        .collect();
    json!({"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":name,"namespace":ns,"uid":rng.uuid(),"resourceVersion":rv(rng),
        "managedFields":managed_fields("kube-controller-manager", None, &["addressType","endpoints","ports"]),
        "labels":{"endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io","kubernetes.io/service-name":app}},
        "addressType":"IPv4","endpoints":endpoints,"ports":[{"name":"http","protocol":"TCP","port":8080}]})
}

fn node_status_patch(rng: &mut Rng) -> Value {
    let t = format!("2026-11-20T08:{:02}:{:02}Z", rng.below(60), rng.below(60));
    if rng.chance(0.7) {
        // Every few minutes the kubelet also reports the images it holds.
        let images: Vec<Value> = APPS
            .iter()
            .map(|a| json!({"names":[format!("{}@sha256:{:016x}{:016x}{:016x}{:016x}", a.2.split(':').next().unwrap_or(a.2), rng.next_u64(), rng.next_u64(), rng.next_u64(), rng.next_u64()), a.2],"sizeBytes":20_000_000 + rng.below(400_000_000)}))
            .collect();
        return json!({"status":{"$setElementOrder/conditions":[{"type":"MemoryPressure"},{"type":"DiskPressure"},{"type":"PIDPressure"},{"type":"Ready"}],
            "conditions":[{"lastHeartbeatTime":t,"type":"MemoryPressure"},{"lastHeartbeatTime":t,"type":"DiskPressure"},{"lastHeartbeatTime":t,"type":"PIDPressure"},{"lastHeartbeatTime":t,"type":"Ready"}],
            "images":images}});
    }
    json!({"status":{"$setElementOrder/conditions":[{"type":"MemoryPressure"},{"type":"DiskPressure"},{"type":"PIDPressure"},{"type":"Ready"}],
        "conditions":[{"lastHeartbeatTime":t,"type":"MemoryPressure"},{"lastHeartbeatTime":t,"type":"DiskPressure"},{"lastHeartbeatTime":t,"type":"PIDPressure"},{"lastHeartbeatTime":t,"type":"Ready"}]}})
}

fn pod_status_patch(rng: &mut Rng, pod: &str) -> Value {
    let t = format!("2026-11-20T08:{:02}:{:02}Z", rng.below(60), rng.below(60));
    json!({"metadata":{"uid":rng.uuid()},"status":{"$setElementOrder/conditions":[{"type":"PodReadyToStartContainers"},{"type":"Initialized"},{"type":"Ready"},{"type":"ContainersReady"},{"type":"PodScheduled"}],
        "conditions":[{"lastTransitionTime":t,"status":"True","type":"Ready"},{"lastTransitionTime":t,"status":"True","type":"ContainersReady"}],
        "containerStatuses":[{"containerID":format!("containerd://{:016x}{:016x}", rng.next_u64(), rng.next_u64()),"image":"registry.example.com/app:1","imageID":"sha256:0d3f","lastState":{},"name":pod.split('-').next().unwrap_or(pod),"ready":true,"restartCount":0,"started":true,"state":{"running":{"startedAt":t}}}]}})
}
