//! Fields derived at ingest so detections never re-parse JSON per event: pod-spec flags, RBAC
//! binding/role facts and the exec/attach command. A body that does not have the expected shape
//! (a JSON patch, a partial strategic-merge patch, a type the API server would refuse) simply
//! yields no derived values; it never rejects the event.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::decode::raw::{Str, StrList};

/// Facts read from a pod spec (a Pod, or the pod template of a workload).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub privileged: bool,
    pub privileged_images: Vec<String>,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub host_paths: Vec<String>,
    pub added_capabilities: Vec<String>,
    pub images: Vec<String>,
    pub service_account: Option<String>,
}

/// Facts read from a (Cluster)RoleBinding or a (Cluster)Role.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RbacFacts {
    pub role_ref_kind: Option<String>,
    pub role_ref_name: Option<String>,
    /// `None` when the body is not a binding.
    pub subjects: Option<Vec<String>>,
    /// `None` when the body is not a role.
    pub verbs: Option<Vec<String>>,
    pub resources: Option<Vec<String>>,
}

/// The command and container of a pods/exec or pods/attach request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExecFacts {
    pub command: Option<Vec<String>>,
    pub container: Option<String>,
}

/// Resources whose request body carries a pod spec, directly or as a template.
const POD_TEMPLATE_RESOURCES: &[&str] = &[
    "deployments",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "jobs",
    "cronjobs",
    "replicationcontrollers",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object<'a> {
    #[serde(borrow)]
    spec: Option<Spec<'a>>,
}

/// The union of a PodSpec and the specs that wrap one (workload `template`, CronJob `jobTemplate`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec<'a> {
    #[serde(borrow)]
    containers: Option<Vec<Container<'a>>>,
    #[serde(borrow)]
    init_containers: Option<Vec<Container<'a>>>,
    #[serde(borrow)]
    ephemeral_containers: Option<Vec<Container<'a>>>,
    host_network: Option<bool>,
    #[serde(rename = "hostPID")]
    host_pid: Option<bool>,
    #[serde(rename = "hostIPC")]
    host_ipc: Option<bool>,
    #[serde(borrow)]
    volumes: Option<Vec<Volume<'a>>>,
    #[serde(borrow)]
    service_account_name: Option<Str<'a>>,
    #[serde(borrow)]
    service_account: Option<Str<'a>>,
    #[serde(borrow)]
    template: Option<Box<Template<'a>>>,
    #[serde(borrow)]
    job_template: Option<Box<JobTemplate<'a>>>,
}

#[derive(Deserialize)]
struct Template<'a> {
    #[serde(borrow)]
    spec: Option<Spec<'a>>,
}

#[derive(Deserialize)]
struct JobTemplate<'a> {
    #[serde(borrow)]
    spec: Option<Spec<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container<'a> {
    #[serde(borrow)]
    image: Option<Str<'a>>,
    #[serde(borrow)]
    security_context: Option<SecurityContext<'a>>,
}

#[derive(Deserialize)]
struct SecurityContext<'a> {
    privileged: Option<bool>,
    #[serde(borrow)]
    capabilities: Option<Capabilities<'a>>,
}

#[derive(Deserialize)]
struct Capabilities<'a> {
    #[serde(borrow)]
    add: Option<StrList<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Volume<'a> {
    #[serde(borrow)]
    host_path: Option<HostPath<'a>>,
}

#[derive(Deserialize)]
struct HostPath<'a> {
    #[serde(borrow)]
    path: Option<Str<'a>>,
}

/// Parses a body that must be a JSON object (serde would also accept an array for a struct,
/// and a JSON patch is an array).
fn parse_object<'a, T: Deserialize<'a>>(body: &'a RawValue) -> Option<T> {
    let text = body.get();
    if !text.starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Reads pod facts from a request body, for pods and for workloads with a pod template.
/// `None` when the resource carries no pod spec or the body has no recognisable one.
pub fn pod_facts(resource: &str, subresource: Option<&str>, body: &RawValue) -> Option<PodFacts> {
    let is_pod = resource == "pods" && matches!(subresource, None | Some("ephemeralcontainers"));
    let is_workload = subresource.is_none() && POD_TEMPLATE_RESOURCES.contains(&resource);
    if !is_pod && !is_workload {
        return None;
    }
    let object: Object = parse_object(body)?;
    let mut spec = object.spec?;
    if is_workload {
        spec = if let Some(t) = spec.template {
            t.spec?
        } else if let Some(jt) = spec.job_template {
            jt.spec?.template?.spec?
        } else {
            return None;
        };
    }
    let mut facts = PodFacts {
        host_network: spec.host_network.unwrap_or(false),
        host_pid: spec.host_pid.unwrap_or(false),
        host_ipc: spec.host_ipc.unwrap_or(false),
        service_account: spec
            .service_account_name
            .or(spec.service_account)
            .map(|s| s.0.into_owned()),
        ..PodFacts::default()
    };
    let all = [
        spec.containers,
        spec.init_containers,
        spec.ephemeral_containers,
    ];
    for c in all.iter().flatten().flatten() {
        let image = c.image.as_ref().map(|s| s.as_str().to_owned());
        if let Some(image) = &image {
            facts.images.push(image.clone());
        }
        let Some(sc) = &c.security_context else {
            continue;
        };
        if sc.privileged == Some(true) {
            facts.privileged = true;
            facts.privileged_images.push(image.unwrap_or_default());
        }
        for cap in sc
            .capabilities
            .iter()
            .flat_map(|c| c.add.iter())
            .flat_map(|l| l.0.iter())
        {
            let cap = cap.as_str().to_ascii_uppercase();
            let cap = cap.strip_prefix("CAP_").unwrap_or(&cap).to_owned();
            if !facts.added_capabilities.contains(&cap) {
                facts.added_capabilities.push(cap);
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(path) = v.host_path.as_ref().and_then(|h| h.path.as_ref()) {
            facts.host_paths.push(path.as_str().to_owned());
        }
    }
    Some(facts)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RbacObject<'a> {
    #[serde(borrow)]
    role_ref: Option<RoleRef<'a>>,
    #[serde(borrow)]
    subjects: Option<Vec<Subject<'a>>>,
    #[serde(borrow)]
    rules: Option<Vec<PolicyRule<'a>>>,
}

#[derive(Deserialize)]
struct RoleRef<'a> {
    #[serde(borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Subject<'a> {
    #[serde(borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    namespace: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct PolicyRule<'a> {
    #[serde(borrow)]
    verbs: Option<StrList<'a>>,
    #[serde(borrow)]
    resources: Option<StrList<'a>>,
}

/// Reads binding or role facts from the request body of an RBAC object.
pub fn rbac_facts(resource: &str, body: &RawValue) -> Option<RbacFacts> {
    let is_binding = matches!(resource, "rolebindings" | "clusterrolebindings");
    let is_role = matches!(resource, "roles" | "clusterroles");
    if !is_binding && !is_role {
        return None;
    }
    let object: RbacObject = parse_object(body)?;
    let mut facts = RbacFacts::default();
    if is_binding {
        if let Some(r) = object.role_ref {
            facts.role_ref_kind = r.kind.map(|s| s.0.into_owned());
            facts.role_ref_name = r.name.map(|s| s.0.into_owned());
        }
        facts.subjects = object.subjects.map(|subjects| {
            subjects
                .iter()
                .map(|s| {
                    let kind = s.kind.as_ref().map_or("", Str::as_str);
                    let name = s.name.as_ref().map_or("", Str::as_str);
                    match (kind, &s.namespace) {
                        ("ServiceAccount", Some(ns)) => {
                            format!("ServiceAccount:{}/{name}", ns.as_str())
                        }
                        _ => format!("{kind}:{name}"),
                    }
                })
                .collect()
        });
    } else {
        let rules = object.rules?;
        let mut verbs: Vec<String> = Vec::new();
        let mut resources: Vec<String> = Vec::new();
        for rule in &rules {
            union_into(&mut verbs, rule.verbs.as_ref());
            union_into(&mut resources, rule.resources.as_ref());
        }
        facts.verbs = Some(verbs);
        facts.resources = Some(resources);
    }
    Some(facts)
}

fn union_into(acc: &mut Vec<String>, values: Option<&StrList>) {
    for v in values.iter().flat_map(|l| l.0.iter()) {
        if !acc.iter().any(|a| a == v.as_str()) {
            acc.push(v.as_str().to_owned());
        }
    }
}

/// Parses `command=` (repeated, in order) and `container=` from the query of a pods/exec or
/// pods/attach request URI. Values are URL-decoded (`+` is a space, as Go's url.Values encodes).
pub fn exec_facts(subresource: &str, request_uri: &str) -> Option<ExecFacts> {
    if subresource != "exec" && subresource != "attach" {
        return None;
    }
    let query = request_uri.split_once('?').map_or("", |(_, q)| q);
    let mut facts = ExecFacts::default();
    let mut command = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "command" => command.push(url_decode(value)),
            "container" => facts.container = Some(url_decode(value)),
            _ => {}
        }
    }
    if subresource == "exec" {
        facts.command = Some(command);
    }
    Some(facts)
}

fn url_decode(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn privileged_pod_with_host_namespaces_and_paths() {
        let body = raw(
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"priv-pod"},"spec":{
                "hostPID":true,"hostNetwork":true,"serviceAccountName":"builder",
                "volumes":[{"name":"root","hostPath":{"path":"/","type":""}},{"name":"cfg","configMap":{"name":"x"}}],
                "initContainers":[{"name":"init","image":"busybox:1.36"}],
                "containers":[
                  {"name":"a","image":"nginx:1.25","securityContext":{"privileged":false}},
                  {"name":"b","image":"alpine:3.19","securityContext":{"privileged":true,"capabilities":{"add":["SYS_ADMIN","cap_net_admin"]}}}
                ]}}"#,
        );
        let facts = pod_facts("pods", None, &body).unwrap();
        assert!(facts.privileged && facts.host_pid && facts.host_network && !facts.host_ipc);
        assert_eq!(facts.privileged_images, ["alpine:3.19"]);
        assert_eq!(facts.host_paths, ["/"]);
        assert_eq!(facts.added_capabilities, ["SYS_ADMIN", "NET_ADMIN"]);
        assert_eq!(facts.images, ["nginx:1.25", "alpine:3.19", "busybox:1.36"]);
        assert_eq!(facts.service_account.as_deref(), Some("builder"));
    }

    #[test]
    fn unprivileged_pod_yields_false_not_null() {
        let body = raw(r#"{"kind":"Pod","spec":{"containers":[{"name":"a","image":"nginx"}]}}"#);
        let facts = pod_facts("pods", None, &body).unwrap();
        assert!(!facts.privileged && facts.privileged_images.is_empty());
        assert_eq!(facts.images, ["nginx"]);
    }

    #[test]
    fn workload_templates_are_read() {
        let ds = raw(
            r#"{"kind":"DaemonSet","spec":{"selector":{},"template":{"metadata":{},"spec":{"hostNetwork":true,
               "containers":[{"name":"agent","image":"evil/agent","securityContext":{"privileged":true}}]}}}}"#,
        );
        let facts = pod_facts("daemonsets", None, &ds).unwrap();
        assert!(facts.privileged && facts.host_network);
        let cron = raw(
            r#"{"kind":"CronJob","spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{
               "volumes":[{"name":"sock","hostPath":{"path":"/var/run/docker.sock"}}],
               "containers":[{"name":"c","image":"docker:cli"}]}}}}}}"#,
        );
        assert_eq!(
            pod_facts("cronjobs", None, &cron).unwrap().host_paths,
            ["/var/run/docker.sock"]
        );
    }

    #[test]
    fn ephemeral_container_body_is_a_pod() {
        let body = raw(
            r#"{"kind":"Pod","spec":{"containers":[{"name":"app","image":"app:1"}],
               "ephemeralContainers":[{"name":"debugger","image":"busybox","securityContext":{"privileged":true}}]}}"#,
        );
        let facts = pod_facts("pods", Some("ephemeralcontainers"), &body).unwrap();
        assert_eq!(facts.privileged_images, ["busybox"]);
    }

    #[test]
    fn no_pod_facts_for_other_bodies() {
        let body = raw(r#"{"kind":"Pod","spec":{"containers":[]}}"#);
        assert!(pod_facts("pods", Some("status"), &body).is_none());
        assert!(pod_facts("configmaps", None, &body).is_none());
        // a JSON patch is an array: no facts, and no error
        assert!(
            pod_facts(
                "pods",
                None,
                &raw(r#"[{"op":"add","path":"/x","value":1}]"#)
            )
            .is_none()
        );
        // a deployment patch without template
        assert!(pod_facts("deployments", None, &raw(r#"{"spec":{"replicas":3}}"#)).is_none());
    }

    #[test]
    fn binding_facts() {
        let body = raw(
            r#"{"kind":"ClusterRoleBinding","metadata":{"name":"mallory-cluster-admin"},
               "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
               "subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"mallory"},
                           {"kind":"ServiceAccount","name":"default","namespace":"kube-system"},
                           {"kind":"Group","name":"system:anonymous"}]}"#,
        );
        let f = rbac_facts("clusterrolebindings", &body).unwrap();
        assert_eq!(f.role_ref_kind.as_deref(), Some("ClusterRole"));
        assert_eq!(f.role_ref_name.as_deref(), Some("cluster-admin"));
        assert_eq!(
            f.subjects.unwrap(),
            [
                "User:mallory",
                "ServiceAccount:kube-system/default",
                "Group:system:anonymous"
            ]
        );
        assert!(f.verbs.is_none());
    }

    #[test]
    fn role_facts_union_verbs_and_resources() {
        let body = raw(r#"{"kind":"ClusterRole","rules":[
                 {"apiGroups":[""],"resources":["pods","pods/exec"],"verbs":["get","create"]},
                 {"apiGroups":["*"],"resources":["*"],"verbs":["*","get"]}]}"#);
        let f = rbac_facts("clusterroles", &body).unwrap();
        assert_eq!(f.verbs.unwrap(), ["get", "create", "*"]);
        assert_eq!(f.resources.unwrap(), ["pods", "pods/exec", "*"]);
        assert!(f.subjects.is_none());
    }

    #[test]
    fn exec_command_is_url_decoded_in_order() {
        let uri = "/api/v1/namespaces/default/pods/web/exec?command=sh&command=-c&command=cat+%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=web&stdin=true&stdout=true&tty=true";
        let f = exec_facts("exec", uri).unwrap();
        assert_eq!(
            f.command.unwrap(),
            [
                "sh",
                "-c",
                "cat /var/run/secrets/kubernetes.io/serviceaccount/token"
            ]
        );
        assert_eq!(f.container.as_deref(), Some("web"));
        let attach = exec_facts(
            "attach",
            "/api/v1/namespaces/x/pods/p/attach?container=c&stdin=true",
        )
        .unwrap();
        assert_eq!(
            (attach.command, attach.container.as_deref()),
            (None, Some("c"))
        );
        assert!(exec_facts("log", "/api/v1/namespaces/x/pods/p/log").is_none());
    }
}
