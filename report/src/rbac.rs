//! Least privilege: the access an identity actually used, as the smallest RBAC that allows it.
//! Namespaced use becomes a Role + RoleBinding per namespace; use without a namespace (cluster-
//! scoped resources, lists across all namespaces, non-resource URLs such as `/healthz`) becomes
//! a ClusterRole + ClusterRoleBinding. Resources of one API group that were used with the same
//! verbs share a rule. Output is YAML in JSON flow style (valid YAML, no YAML library needed).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// One distinct use: who, where, what, how.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AccessRow {
    pub identity: String,
    /// None: not namespaced (or across all namespaces).
    pub namespace: Option<String>,
    /// "" for the core group.
    pub api_group: String,
    /// `pods`, `pods/exec`, …; None for a non-resource URL.
    pub resource: Option<String>,
    pub verb: String,
    pub non_resource_url: Option<String>,
}

/// Reads the columns a least-privilege section must return.
pub(crate) fn access_rows(
    columns: &[String],
    rows: &[Vec<Value>],
) -> Result<Vec<AccessRow>, String> {
    let idx = |name: &str| {
        columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| format!("least-privilege sections must return column {name:?}"))
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let (i_id, i_ns, i_group, i_res, i_verb, i_url) = (
        idx("identity")?,
        idx("namespace")?,
        idx("api_group")?,
        idx("resource")?,
        idx("verb")?,
        idx("non_resource_url")?,
    );
    let text = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(AccessRow {
                identity: text(&r[i_id])?,
                namespace: text(&r[i_ns]),
                api_group: text(&r[i_group]).unwrap_or_default(),
                resource: text(&r[i_res]),
                verb: text(&r[i_verb])?,
                non_resource_url: text(&r[i_url]),
            })
        })
        .collect())
}

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

fn list<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| q(s)).collect();
    format!("[{}]", items.join(", "))
}

/// Kubernetes object names: lower-case; anything but `a-z0-9.-:` becomes `-`.
fn object_name(identity: &str) -> String {
    let name: String = identity
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("least-privilege:{name}")
}

/// The binding subject of an identity.
fn subject(identity: &str) -> String {
    match identity
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((ns, sa)) => format!(
            "- kind: ServiceAccount\n  name: {}\n  namespace: {}\n",
            q(sa),
            q(ns)
        ),
        None => format!(
            "- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: {}\n",
            q(identity)
        ),
    }
}

/// Rules for one scope: resources grouped by (API group, verb set); URLs by verb set.
fn rules(rows: &[&AccessRow]) -> String {
    // (group, resource) -> verbs
    let mut by_resource: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut by_url: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rows {
        match (&r.resource, &r.non_resource_url) {
            (Some(res), _) => {
                by_resource
                    .entry((r.api_group.clone(), res.clone()))
                    .or_default()
                    .insert(r.verb.clone());
            }
            (None, Some(url)) => {
                by_url
                    .entry(url.clone())
                    .or_default()
                    .insert(r.verb.clone());
            }
            (None, None) => {}
        }
    }
    // (group, verbs) -> resources
    let mut grouped: BTreeMap<(String, Vec<String>), BTreeSet<String>> = BTreeMap::new();
    for ((group, res), verbs) in by_resource {
        grouped
            .entry((group, verbs.into_iter().collect()))
            .or_default()
            .insert(res);
    }
    let mut out = String::from("rules:\n");
    for ((group, verbs), resources) in grouped {
        out.push_str(&format!(
            "- apiGroups: [{}]\n  resources: {}\n  verbs: {}\n",
            q(&group),
            list(&resources),
            list(&verbs)
        ));
    }
    let mut urls: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for (url, verbs) in by_url {
        urls.entry(verbs.into_iter().collect())
            .or_default()
            .insert(url);
    }
    for (verbs, urls) in urls {
        out.push_str(&format!(
            "- nonResourceURLs: {}\n  verbs: {}\n",
            list(&urls),
            list(&verbs)
        ));
    }
    out
}

/// `(identity, YAML)` for every identity in `rows`, sorted by identity.
pub fn least_privilege_yaml(rows: &[AccessRow]) -> Vec<(String, String)> {
    let mut by_identity: BTreeMap<&str, Vec<&AccessRow>> = BTreeMap::new();
    for r in rows {
        by_identity.entry(&r.identity).or_default().push(r);
    }
    by_identity
        .into_iter()
        .map(|(identity, rows)| {
            let name = object_name(identity);
            let subject = subject(identity);
            let mut docs = Vec::new();
            let cluster: Vec<&AccessRow> =
                rows.iter().copied().filter(|r| r.namespace.is_none()).collect();
            if !cluster.is_empty() {
                docs.push(format!(
                    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {n}\n{rules}",
                    n = q(&name),
                    rules = rules(&cluster)
                ));
                docs.push(format!(
                    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {n}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {n}\nsubjects:\n{subject}",
                    n = q(&name)
                ));
            }
            let mut namespaces: BTreeMap<&str, Vec<&AccessRow>> = BTreeMap::new();
            for r in &rows {
                if let Some(ns) = &r.namespace {
                    namespaces.entry(ns).or_default().push(r);
                }
            }
            for (ns, rows) in namespaces {
                docs.push(format!(
                    "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {n}\n  namespace: {ns}\n{rules}",
                    n = q(&name),
                    ns = q(ns),
                    rules = rules(&rows)
                ));
                docs.push(format!(
                    "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {n}\n  namespace: {ns}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {n}\nsubjects:\n{subject}",
                    n = q(&name),
                    ns = q(ns)
                ));
            }
            (identity.to_owned(), docs.join("---\n"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, ns: Option<&str>, group: &str, res: &str, verb: &str) -> AccessRow {
        AccessRow {
            identity: id.to_owned(),
            namespace: ns.map(str::to_owned),
            api_group: group.to_owned(),
            resource: Some(res.to_owned()),
            verb: verb.to_owned(),
            non_resource_url: None,
        }
    }

    #[test]
    fn service_account_gets_role_per_namespace_and_cluster_role_for_the_rest() {
        let sa = "system:serviceaccount:ci:builder";
        let rows = vec![
            row(sa, Some("ci"), "", "pods", "get"),
            row(sa, Some("ci"), "", "pods", "list"),
            row(sa, Some("ci"), "", "configmaps", "get"),
            row(sa, Some("ci"), "", "configmaps", "list"),
            row(sa, Some("ci"), "apps", "deployments", "patch"),
            row(sa, None, "", "namespaces", "list"),
            AccessRow {
                non_resource_url: Some("/healthz".to_owned()),
                resource: None,
                api_group: String::new(),
                ..row(sa, None, "", "", "get")
            },
        ];
        let out = least_privilege_yaml(&rows);
        assert_eq!(out.len(), 1);
        let yaml = &out[0].1;
        assert!(yaml.contains(
            "kind: ClusterRole\nmetadata:\n  name: \"least-privilege:system:serviceaccount:ci:builder\"\nrules:\n\
             - apiGroups: [\"\"]\n  resources: [\"namespaces\"]\n  verbs: [\"list\"]\n\
             - nonResourceURLs: [\"/healthz\"]\n  verbs: [\"get\"]\n"
        ), "{yaml}");
        // Same verbs, same group: one rule for both resources.
        assert!(yaml.contains(
            "kind: Role\nmetadata:\n  name: \"least-privilege:system:serviceaccount:ci:builder\"\n  namespace: \"ci\"\nrules:\n\
             - apiGroups: [\"\"]\n  resources: [\"configmaps\", \"pods\"]\n  verbs: [\"get\", \"list\"]\n\
             - apiGroups: [\"apps\"]\n  resources: [\"deployments\"]\n  verbs: [\"patch\"]\n"
        ), "{yaml}");
        assert!(yaml.contains(
            "subjects:\n- kind: ServiceAccount\n  name: \"builder\"\n  namespace: \"ci\"\n"
        ));
        assert_eq!(yaml.matches("\n---\n").count() + 1, 4, "CR, CRB, Role, RB");
    }

    #[test]
    fn users_are_user_subjects_with_safe_names() {
        let out = least_privilege_yaml(&[row("Alice@Example.com", Some("dev"), "", "pods", "get")]);
        assert!(
            out[0]
                .1
                .contains("name: \"least-privilege:alice-example.com\"")
        );
        assert!(out[0].1.contains(
            "- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: \"Alice@Example.com\"\n"
        ));
        assert!(!out[0].1.contains("ClusterRole"));
    }
}
