//! Benign controller and operator behaviour that trips naive rules (auditlake issue 16): GitOps
//! controllers reconciling RBAC, cert-manager and external-secrets reading and writing secrets in
//! every namespace, Velero listing secrets for backups, operators denied on CRD discovery, and
//! people patching Deployments. Mixed into the background with `generate --controllers`; nothing
//! here is an attack, so every finding it raises is noise (see benches/noise_bench.sh).

use serde_json::{Value, json};

use super::actors::{Cluster, kubectl_ua};
use super::{Level, Request, Rng, User};

fn sa_reason(binding: &str, role: &str, ns: &str, sa: &str) -> String {
    format!(
        "RBAC: allowed by ClusterRoleBinding \"{binding}\" of ClusterRole \"{role}\" to ServiceAccount \"{sa}/{ns}\""
    )
}

/// One request of operator traffic.
pub fn operator_request(rng: &mut Rng, c: &Cluster) -> Request {
    match rng.below(100) {
        0..=24 => gitops_rbac(rng, c),
        25..=44 => cert_manager_secrets(rng, c),
        45..=54 => external_secrets(rng, c),
        55..=59 => velero(rng),
        60..=74 => discovery_denied(rng),
        _ => person_patches_deployment(rng, c),
    }
}

/// Argo CD or Flux re-applying the RBAC of each team namespace: RoleBindings of the
/// `cluster-admin` ClusterRole to the team's group (namespace admin: the usual GitOps pattern),
/// `edit` for the CI deployer, and the controller's own ClusterRole.
fn gitops_rbac(rng: &mut Rng, c: &Cluster) -> Request {
    let (user, ip, agent, manager) = if rng.chance(0.5) {
        (
            User::service_account("argocd", "argocd-application-controller"),
            "10.244.7.12",
            "argocd-application-controller/v0.0.0 (linux/amd64) kubernetes/$Format",
            "argocd-controller",
        )
    } else {
        (
            User::service_account("flux-system", "kustomize-controller"),
            "10.244.3.17",
            "kustomize-controller/v1.3.0 (linux/amd64)",
            "kustomize-controller",
        )
    };
    let reason = if manager == "argocd-controller" {
        sa_reason(
            "argocd-application-controller",
            "cluster-admin",
            "argocd",
            "argocd-application-controller",
        )
    } else {
        sa_reason(
            "cluster-reconciler-flux-system",
            "cluster-admin",
            "flux-system",
            "kustomize-controller",
        )
    };
    let app = rng.pick(&c.apps);
    let ns = app.namespace;
    if rng.chance(0.1) {
        // The controller's own aggregated ClusterRole, re-applied.
        let body = json!({"kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "gitops-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [{"apiGroups": ["argoproj.io", "kustomize.toolkit.fluxcd.io"], "resources": ["applications", "kustomizations"], "verbs": ["get", "list", "watch"]}]});
        return Request::new(
            "patch",
            format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/gitops-view?fieldManager={manager}&force=true"),
            &user,
            ip,
            agent,
        )
        .object("clusterroles", None, Some("gitops-view"))
        .level(Level::Request)
        .bodies(Some(body), None)
        .reason(reason);
    }
    let (name, role, subject) = if rng.chance(0.6) {
        (
            "team-admins",
            "cluster-admin",
            json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": format!("oidc:{ns}-team")}),
        )
    } else {
        (
            "ci-deployer",
            "edit",
            json!({"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}),
        )
    };
    let body = json!({"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": manager}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [subject]});
    Request::new(
        "patch",
        format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/{name}?fieldManager={manager}&force=true"),
        &user,
        ip,
        agent,
    )
    .object("rolebindings", Some(ns), Some(name))
    .level(Level::Request)
    .bodies(Some(body), None)
    .reason(reason)
}

/// cert-manager looks at the TLS secret of every Certificate, in every namespace, and keeps a
/// cluster-wide informer on secrets.
fn cert_manager_secrets(rng: &mut Rng, c: &Cluster) -> Request {
    let user = User::service_account("cert-manager", "cert-manager");
    let ip = "10.244.2.40";
    let agent = "cert-manager-certificates-readiness/v1.15.3 (linux/amd64) cert-manager/9a5a8d3";
    let reason = sa_reason(
        "cert-manager-controller-certificates",
        "cert-manager-controller-certificates",
        "cert-manager",
        "cert-manager",
    );
    if rng.chance(0.1) {
        return Request::new(
            "list",
            "/api/v1/secrets?labelSelector=controller.cert-manager.io%2Ffao%3Dtrue&limit=500",
            &user,
            ip,
            agent,
        )
        .object("secrets", None, None)
        .reason(reason);
    }
    let app = rng.pick(&c.apps);
    let name = format!("{}-tls", app.name);
    Request::new(
        "get",
        format!("/api/v1/namespaces/{}/secrets/{name}", app.namespace),
        &user,
        ip,
        agent,
    )
    .object("secrets", Some(app.namespace), Some(&name))
    .reason(reason)
}

/// external-secrets syncs each ExternalSecret into a Secret: reads it, updates it.
fn external_secrets(rng: &mut Rng, c: &Cluster) -> Request {
    let user = User::service_account("external-secrets", "external-secrets");
    let ip = "10.244.5.9";
    let agent = "external-secrets/v0.10.3 (linux/amd64)";
    let reason = sa_reason(
        "external-secrets-controller",
        "external-secrets-controller",
        "external-secrets",
        "external-secrets",
    );
    let app = rng.pick(&c.apps);
    let name = format!("{}-db-credentials", app.name);
    let verb = if rng.chance(0.7) { "get" } else { "update" };
    let req = Request::new(
        verb,
        format!("/api/v1/namespaces/{}/secrets/{name}", app.namespace),
        &user,
        ip,
        agent,
    )
    .object("secrets", Some(app.namespace), Some(&name))
    .reason(reason);
    if verb == "update" {
        let body: Value = json!({"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
            "metadata": {"name": name, "namespace": app.namespace, "labels": {"reconcile.external-secrets.io/managed": "true"}},
            "data": {"password": "<redacted>"}});
        req.level(Level::Request).bodies(Some(body), None)
    } else {
        req
    }
}

/// Velero's scheduled backup lists every resource type, secrets included, cluster-wide.
fn velero(rng: &mut Rng) -> Request {
    let user = User::service_account("velero", "velero");
    let resource = *rng.pick(&[
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "serviceaccounts",
    ]);
    Request::new(
        "list",
        format!("/api/v1/{resource}?limit=500"),
        &user,
        "10.244.9.3",
        "velero-server/v1.14.1 (linux/amd64) 8afe3cea",
    )
    .object(resource, None, None)
    .reason(sa_reason("velero", "cluster-admin", "velero", "velero"))
    .latency(40_000)
}

/// Operators probing for CRDs and API groups they are not allowed to read: 403 all day.
fn discovery_denied(rng: &mut Rng) -> Request {
    let (ns, sa, agent) = *rng.pick(&[
        (
            "monitoring",
            "prometheus-operator",
            "prometheus-operator/v0.76.0 (linux/amd64)",
        ),
        (
            "kyverno",
            "kyverno-background-controller",
            "kyverno/v1.12.5",
        ),
        (
            "gatekeeper-system",
            "gatekeeper-admin",
            "gatekeeper/v3.17.0 (linux/amd64)",
        ),
    ]);
    let user = User::service_account(ns, sa);
    let crd = *rng.pick(&[
        "alertmanagerconfigs.monitoring.coreos.com",
        "policyreports.wgpolicyk8s.io",
        "constrainttemplates.templates.gatekeeper.sh",
        "scrapeconfigs.monitoring.coreos.com",
    ]);
    Request::new(
        "get",
        format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}"),
        &user,
        "10.244.4.21",
        agent,
    )
    .object("customresourcedefinitions", None, Some(crd))
    .code(403)
}

/// People restart, scale and re-image Deployments with kubectl.
fn person_patches_deployment(rng: &mut Rng, c: &Cluster) -> Request {
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
    let app = rng.pick(&c.apps);
    let body = match rng.below(3) {
        0 => {
            json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-20T09:12:00Z"}}}}})
        }
        1 => json!({"spec": {"replicas": 2 + rng.below(4)}}),
        _ => {
            json!({"spec": {"template": {"spec": {"containers": [{"name": app.name, "image": app.image}]}}}})
        }
    };
    Request::new(
        "patch",
        format!(
            "/apis/apps/v1/namespaces/{}/deployments/{}?fieldManager=kubectl-patch",
            app.namespace, app.name
        ),
        &user,
        ip,
        &kubectl_ua(),
    )
    .object("deployments", Some(app.namespace), Some(app.name))
    .level(Level::Request)
    .bodies(Some(body), None)
    .reason(format!(
        "RBAC: allowed by RoleBinding \"team-admins/{}\" of ClusterRole \"cluster-admin\" to Group \"oidc:devs\"",
        app.namespace
    ))
}
