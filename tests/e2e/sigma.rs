//! `auditlake rules import-sigma` over SigmaHQ's Kubernetes rules (../shared/testdata): every
//! Kubernetes-audit rule imports, plans (`rules check`) and fires on exactly its event of our
//! fixture (tests/e2e/sigma/fixture.jsonl, written by make_fixture.py), staying silent on the
//! near misses; the managed-cloud rules are refused with the reason, never dropped silently.

use std::collections::{BTreeMap, BTreeSet};

use crate::*;

/// Rule id → the fixture events it must fire on (and nothing else).
const EXPECT: &[(&str, &str)] = &[
    (
        "sigma-kubernetes-audit-change-admission-controller",
        "adm-pos",
    ),
    ("sigma-kubernetes-audit-cronjob-modification", "cron-pos"),
    (
        "sigma-kubernetes-audit-deployment-deleted",
        "deploy-del-pos",
    ),
    ("sigma-kubernetes-audit-events-deleted", "events-del-pos"),
    ("sigma-kubernetes-audit-exec-into-container", "exec-pos"),
    ("sigma-kubernetes-audit-hostpath-mount", "hostpath-pos"),
    (
        "sigma-kubernetes-audit-pod-in-system-namespace",
        "kube-pod-pos",
    ),
    (
        "sigma-kubernetes-audit-potential-enumeration-activity",
        "enum-pos",
    ),
    ("sigma-kubernetes-audit-privileged-pod-creation", "caps-pos"),
    ("sigma-kubernetes-audit-rbac-permisions-listing", "ssrr-pos"),
    ("sigma-kubernetes-audit-rolebinding-modification", "rb-pos"),
    (
        "sigma-kubernetes-audit-secrets-enumeration",
        "secrets-list-pos",
    ),
    (
        "sigma-kubernetes-audit-secrets-modified-or-deleted",
        "secret-del-pos",
    ),
    ("sigma-kubernetes-audit-serviceaccount-creation", "sa-pos"),
    (
        "sigma-kubernetes-audit-sidecar-injection",
        "patch-deploy-pos",
    ),
    (
        "sigma-kubernetes-audit-unauthorized-unauthenticated-actions",
        "denied-pos",
    ),
];

#[test]
fn sigma_kubernetes_rules_import_plan_and_fire_exactly() {
    let Some(data) = shared_testdata() else {
        return;
    };
    let sigma = data.join("sigma-kubernetes/rules");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sigma-rules");
    let res = run(bin()
        .args(["rules", "import-sigma", "--out"])
        .arg(&out)
        .arg(&sigma));
    let stdout = String::from_utf8_lossy(&res.stdout);
    // The GCP and Azure rules are refused (exit 1), each with its reason.
    assert_eq!(res.status.code(), Some(1), "{stdout}");
    let refused: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("not imported "))
        .collect();
    assert_eq!(refused.len(), 14, "{stdout}");
    assert!(
        refused
            .iter()
            .all(|l| l.contains("/cloud/") && l.contains("not a Kubernetes audit log")),
        "{stdout}"
    );
    let imported: BTreeSet<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("imported "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let want: BTreeSet<&str> = EXPECT.iter().map(|(r, _)| *r).collect();
    assert_eq!(imported, want, "{stdout}");
    // Interpretations are said, and kept in the rule with the DRL attribution.
    assert!(stdout.contains("interpreted: `apiGroup`"), "{stdout}");
    let toml = std::fs::read_to_string(out.join("sigma-kubernetes-audit-hostpath-mount/rule.toml"))
        .unwrap();
    assert!(
        toml.contains("Detection Rule License (DRL) 1.1")
            && toml.contains("Interpretation: `hostPath"),
        "{toml}"
    );

    let check = run_ok(
        bin()
            .args(["rules", "check", "--no-builtin-rules", "--rules-dir"])
            .arg(&out),
    );
    assert!(check.contains("16 rules planned"), "{check}");

    let lake = dir.path().join("lake");
    ingest(
        &lake,
        "sigma",
        &[&repo().join("tests/e2e/sigma/fixture.jsonl")],
    );
    let res = run(bin()
        .args(["detect", "--format", "json", "--no-builtin-rules", "--lake"])
        .arg(&lake)
        .arg("--rules-dir")
        .arg(&out));
    assert_eq!(res.status.code(), Some(1));
    let mut fired: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8(res.stdout).unwrap().lines() {
        let f: serde_json::Value = serde_json::from_str(line).unwrap();
        fired
            .entry(f["rule_id"].as_str().unwrap().to_owned())
            .or_default()
            .extend(
                f["evidence_audit_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned()),
            );
    }
    let want: BTreeMap<String, BTreeSet<String>> = EXPECT
        .iter()
        .map(|(r, e)| (r.to_string(), BTreeSet::from([e.to_string()])))
        .collect();
    assert_eq!(fired, want);
}
