//! Detections end to end: the rule pack through `rules check`, `rules test` and `detect`, on the
//! samples, on Falco's 66 labelled cases and on a real API server's log.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::*;

fn rules_dir() -> PathBuf {
    repo().join("rules")
}

/// `auditlake detect -f json` → findings (exit 0 or 1).
fn detect(lake: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut cmd = bin();
    cmd.args(["detect", "--format", "json", "--lake"])
        .arg(lake)
        .arg("--rules-dir")
        .arg(rules_dir())
        .args(extra);
    let out = run(&mut cmd);
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "{cmd:?} exited {code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        code == Some(1),
        !findings.is_empty(),
        "exit code 1 exactly when findings"
    );
    findings
}

#[test]
fn rules_check_and_fixture_tests_pass() {
    let out = run_ok(
        bin()
            .args(["rules", "check", "--rules-dir"])
            .arg(rules_dir()),
    );
    assert!(out.contains("ok"), "{out}");
    let out = run(bin()
        .args(["rules", "test", "--rules-dir"])
        .arg(rules_dir()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "rules test failed:\n{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn the_pack_covers_every_catalog_detection() {
    let out = run_ok(
        bin()
            .args(["rules", "list", "--rules-dir"])
            .arg(rules_dir()),
    );
    let covered: BTreeSet<String> = out
        .lines()
        .flat_map(|l| l.split_whitespace().nth(3).unwrap_or("").split(','))
        .filter(|c| c.starts_with('K'))
        .map(str::to_owned)
        .collect();
    let missing: Vec<String> = (1..=61)
        .map(|i| format!("K{i:02}"))
        .filter(|k| !covered.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "catalog detections without a rule: {missing:?}"
    );
}

#[test]
fn a_broken_rule_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("broken-rule");
    std::fs::create_dir_all(&rule).unwrap();
    std::fs::write(
        rule.join("rule.toml"),
        "id = \"broken-rule\"\nversion = 1\ntitle = \"t\"\nseverity = \"low\"\ndescription = \"d\"\n\
         attack = []\nsummary = \"s\"\nrunbook = \"r\"\n",
    )
    .unwrap();
    std::fs::write(
        rule.join("query.sql"),
        "SELECT audit_id, stage_at, cluster\nFROM audit_events\nWHERE no_such_column = 1",
    )
    .unwrap();
    let out = run(bin()
        .args(["rules", "check", "--rules-dir"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken-rule/query.sql:") && err.contains("no_such_column"),
        "{err}"
    );

    std::fs::write(
        rule.join("query.sql"),
        "SELECT audit_id, stage_at, cluster\nFROM audit_events\nWHERE user_name = {{who}}",
    )
    .unwrap();
    let out = run(bin()
        .args(["rules", "check", "--rules-dir"])
        .arg(dir.path()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken-rule/query.sql:3: unknown parameter `who`"),
        "{err}"
    );
}

/// The pack travels with the binary: from a directory with no `rules/` or `reports/`, detect,
/// `rules list|test` and `report` use the built-in pack; `--rules-dir` adds a rule and replaces
/// a built-in one by id; a mistyped directory is an error naming it.
#[test]
fn the_built_in_pack_works_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod-eu1", &[&repo().join("samples/audit.log")]);
    let here = || {
        let mut cmd = bin();
        cmd.current_dir(dir.path());
        cmd
    };
    let out = run(here().args(["detect", "--format", "json", "--lake", "lake"]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let priv_pod: Vec<_> = findings
        .iter()
        .filter(|f| f["rule_id"] == "privileged-pod")
        .collect();
    assert_eq!(priv_pod.len(), 1, "{findings:#?}");
    assert_eq!(priv_pod[0]["severity"], "high");
    let built_in_count = findings.len();
    assert!(built_in_count > 10, "{built_in_count} findings");

    let list = run_ok(here().args(["rules", "list"]));
    assert!(list.contains("privileged-pod"), "{list}");
    let tested = run_ok(here().args(["rules", "test", "--rules", "privileged-pod"]));
    assert!(tested.contains(" 0 failed"), "{tested}");
    let report = run_ok(here().args(["report", "secret-access", "--lake", "lake"]));
    assert!(report.starts_with("# Secret access"), "{report}");

    // A directory of our own: a replacement for privileged-pod (critical) and a new rule.
    let mine = dir.path().join("my-rules");
    let copy = |id: &str, to: &str| {
        let src = repo().join("rules").join(id);
        std::fs::create_dir_all(mine.join(to)).unwrap();
        let toml = std::fs::read_to_string(src.join("rule.toml"))
            .unwrap()
            .replace(&format!("id = \"{id}\""), &format!("id = \"{to}\""))
            .replace("severity = \"high\"", "severity = \"critical\"");
        // No fixtures travel with the copy: its tests are dropped.
        let toml = toml.split("\n[[tests]]").next().unwrap().to_owned();
        std::fs::write(mine.join(to).join("rule.toml"), toml).unwrap();
        std::fs::copy(src.join("query.sql"), mine.join(to).join("query.sql")).unwrap();
    };
    copy("privileged-pod", "privileged-pod");
    copy("exec-into-pod", "my-exec-rule");
    let out = run(here().args([
        "detect",
        "--format",
        "json",
        "--lake",
        "lake",
        "--rules-dir",
        "my-rules",
    ]));
    let findings: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by = |id: &str| {
        findings
            .iter()
            .filter(|f| f["rule_id"] == id)
            .collect::<Vec<_>>()
    };
    assert_eq!(by("privileged-pod").len(), 1);
    assert_eq!(
        by("privileged-pod")[0]["severity"],
        "critical",
        "replaced by id"
    );
    assert_eq!(by("my-exec-rule").len(), by("exec-into-pod").len());
    assert!(!by("my-exec-rule").is_empty());
    assert_eq!(findings.len(), built_in_count + by("my-exec-rule").len());
    // Only our directory.
    let list = run_ok(here().args([
        "rules",
        "list",
        "--rules-dir",
        "my-rules",
        "--no-builtin-rules",
    ]));
    assert!(list.ends_with("2 rules, 2 active\n"), "{list}");

    for args in [
        &["detect", "--lake", "lake", "--rules-dir", "no-such-rules"][..],
        &["rules", "list", "--rules-dir", "no-such-rules"][..],
    ] {
        let out = run(here().args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("rules directory no-such-rules does not exist"),
            "{args:?}: {err}"
        );
    }
    let out = run(here().args([
        "report",
        "secret-access",
        "--lake",
        "lake",
        "--reports-dir",
        "nope",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reports directory nope does not exist"));
}

#[test]
fn detect_on_the_samples_finds_the_incident() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod-eu1", &[&repo().join("samples/audit.log")]);
    let findings = detect(&lake, &[]);
    let rules: BTreeSet<&str> = findings
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap())
        .collect();
    for expected in [
        "privileged-pod",
        "exec-into-pod",
        "privileged-role-binding",
        "wildcard-role",
        "secret-read-scripting-client",
        "anonymous-allowed",
        "token-request",
        "privileged-impersonation",
        "forbidden-burst-public-ip",
    ] {
        assert!(
            rules.contains(expected),
            "{expected} did not fire on the samples; fired: {rules:?}"
        );
    }
    // The incident's actor is in the findings; every finding carries evidence that exists.
    assert!(findings.iter().any(|f| f["actor"] == "dave@example.com"));
    for f in &findings {
        let ids = f["evidence_audit_ids"].as_array().unwrap();
        assert!(!ids.is_empty() && f["event_count"].as_i64().unwrap() >= ids.len() as i64);
    }
    // A window that ends before the incident finds none of it.
    let early = detect(&lake, &["--until", "2026-11-20T08:21:00Z"]);
    assert!(
        early.iter().all(|f| f["actor"] != "dave@example.com"),
        "{early:?}"
    );
}

/// (rule, actor, target) of each finding on the real API server's log: exactly the attack.
#[test]
fn real_apiserver_log_reports_exactly_the_attack() {
    let Some(data) = shared_testdata() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(
        &lake,
        "real",
        &[&data.join("real-apiserver-metadata/audit.log")],
    );
    // The log is minutes long: first-seen rules would still be warming up (see the test below).
    let cfg = no_warmup_config(dir.path());
    let findings = detect(&lake, &["--config", cfg.to_str().unwrap()]);
    let got: BTreeSet<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{} | {} | {}",
                f["rule_id"].as_str().unwrap(),
                f["actor"].as_str().unwrap_or("-"),
                f["target"].as_str().unwrap_or("-")
            )
        })
        .collect();
    let want: BTreeSet<String> = REAL_APISERVER_EXPECTED
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        got,
        want,
        "\ngot:\n{}",
        got.iter().cloned().collect::<Vec<_>>().join("\n")
    );
    // Nothing about the server's own traffic.
    assert!(findings.iter().all(|f| f["actor"] != "system:apiserver"));
}

/// Benign controller and operator traffic (`generate --controllers`: GitOps RBAC reconciles,
/// cert-manager and external-secrets on secrets, Velero, denied CRD discovery, people patching
/// Deployments) raises nothing critical, at most one medium-or-higher finding, and nothing about
/// the known controllers.
#[test]
fn controller_noise_stays_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("benign.log");
    run_ok(
        bin()
            .args([
                "generate",
                "--controllers",
                "--events",
                "40000",
                "--rate",
                "20",
                "-o",
            ])
            .arg(&log),
    );
    let lake = dir.path().join("lake");
    ingest(&lake, "bench", &[&log]);
    let findings = detect(&lake, &[]);
    let known = std::fs::read_to_string(rules_dir().join("known-controllers.txt")).unwrap();
    let prefixes: Vec<&str> = known
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(prefixes.contains(&"system:serviceaccount:argocd:argocd-application-controller"));
    let mut medium_up = 0;
    for f in &findings {
        let severity = f["severity"].as_str().unwrap();
        assert_ne!(severity, "critical", "{f}");
        medium_up += usize::from(matches!(severity, "high" | "medium"));
        let actor = f["actor"].as_str().unwrap_or("");
        assert!(
            !prefixes.iter().any(|p| actor.starts_with(p)),
            "a known controller was reported: {f}"
        );
    }
    assert!(medium_up <= 1, "{findings:#?}");
}

/// A config that trusts an empty baseline: first-seen rules fire at once (short logs, tests).
fn no_warmup_config(dir: &Path) -> PathBuf {
    let path = dir.join("no-warmup.toml");
    std::fs::write(&path, "[detect.params]\nbaseline_days = 0\n").unwrap();
    path
}

/// On a lake younger than `baseline_days`, first-seen rules stay silent (an empty baseline makes
/// everyone "new") and `rules list` says until when; other rules fire as usual.
#[test]
fn first_seen_rules_warm_up_on_a_young_lake() {
    let Some(data) = shared_testdata() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(
        &lake,
        "real",
        &[&data.join("real-apiserver-metadata/audit.log")],
    );
    let fired = |extra: &[&str]| -> BTreeSet<String> {
        detect(&lake, extra)
            .iter()
            .map(|f| f["rule_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let default = fired(&[]);
    assert!(!default.contains("new-secret-reader"), "{default:?}");
    assert!(default.contains("secrets-listed"), "{default:?}");
    let cfg = no_warmup_config(dir.path());
    assert!(fired(&["--config", cfg.to_str().unwrap()]).contains("new-secret-reader"));

    // Warm until the first event + baseline_days (7).
    let until = query(
        &lake,
        "SELECT to_char(min(stage_at) + INTERVAL '7 days', '%Y-%m-%dT%H:%MZ') AS t FROM audit_events",
    )[0]["t"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = run_ok(
        bin()
            .args(["rules", "list", "--rules-dir"])
            .arg(rules_dir())
            .arg("--lake")
            .arg(&lake),
    );
    let line = |id: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} not listed:\n{out}"))
            .to_owned()
    };
    assert!(
        line("new-secret-reader").contains(&format!("warming up until {until}")),
        "{out}"
    );
    assert!(line("exec-into-pod").contains(" active "), "{out}");
}

/// The attack in the real log (see ../shared/testdata/README.md, steps 1–25): rule | actor | target.
const REAL_APISERVER_EXPECTED: &[&str] = &[
    // 5–7, 11, 25: mallory's denied secret reads and the refused impersonation (403, no decision).
    "forbidden-request | mallory | secrets audit-demo/db-creds",
    "secret-read-denied | mallory | secrets audit-demo/db-creds",
    // 8, 24: admin grants mallory cluster-admin, later deletes the binding (Metadata level: no roleRef).
    "rbac-binding-change | admin | clusterrolebindings mallory-cluster-admin",
    // 9–10: mallory's first successful secret read, and the list.
    "new-secret-reader | mallory | secrets audit-demo/db-creds",
    "secrets-listed | mallory | secrets audit-demo/*",
    // 12: mallory impersonates admin: the target is the identity (the first impersonated request
    // is API discovery, which has no object).
    "privileged-impersonation | mallory | users admin",
    // 16, 18: exec attempts, one of them `cat /host/etc/shadow`; 19: port-forward.
    "exec-into-pod | admin | pods/exec audit-demo/priv-pod",
    "suspicious-exec-command | admin | pods/exec audit-demo/priv-pod",
    "port-forward | admin | pods/portforward audit-demo/priv-pod",
    // 21: token minted for builder.
    "token-request | admin | serviceaccounts/token audit-demo/builder",
    // 23: the secret deleted.
    "secret-modified-deleted | admin | secrets audit-demo/db-creds",
];

// ---- Falco's 66 labelled cases -------------------------------------------------------------

/// Falco rule name (k8saudit 0.6.0) → our rule id.
const FALCO_TO_OURS: &[(&str, &str)] = &[
    ("Create Disallowed Pod", "disallowed-image"),
    ("Create Privileged Pod", "privileged-pod"),
    ("Create Sensitive Mount Pod", "sensitive-hostpath-pod"),
    ("Create HostNetwork Pod", "host-network-pod"),
    ("Disallowed K8s User", "disallowed-user"),
    ("Create NodePort Service", "nodeport-service"),
    (
        "Create/Modify Configmap With Private Credentials",
        "configmap-credentials",
    ),
    ("Anonymous Request Allowed", "anonymous-allowed"),
    ("Attach/Exec Pod", "exec-into-pod"),
    ("Create Disallowed Namespace", "disallowed-namespace"),
    ("Pod Created in Kube Namespace", "pod-in-system-namespace"),
    (
        "Service Account Created in Kube Namespace",
        "sa-created-kube-namespace",
    ),
    (
        "System ClusterRole Modified/Deleted",
        "system-role-modified",
    ),
    ("Attach to cluster-admin Role", "privileged-role-binding"),
    ("ClusterRole With Wildcard Created", "wildcard-role"),
    ("ClusterRole With Write Privileges Created", "write-role"),
    ("ClusterRole With Pod Exec Created", "pod-exec-role"),
    ("K8s Deployment Created", "activity-feed"),
    ("K8s Deployment Deleted", "activity-feed"),
    ("K8s Service Created", "activity-feed"),
    ("K8s Service Deleted", "activity-feed"),
    ("K8s ConfigMap Created", "activity-feed"),
    ("K8s ConfigMap Deleted", "activity-feed"),
    ("K8s Namespace Created", "activity-feed"),
    ("K8s Namespace Deleted", "activity-feed"),
    ("K8s Serviceaccount Created", "activity-feed"),
    ("K8s Serviceaccount Deleted", "activity-feed"),
    ("K8s Role/Clusterrole Created", "activity-feed"),
    ("K8s Role/Clusterrole Deleted", "activity-feed"),
    ("K8s Role/Clusterrolebinding Created", "activity-feed"),
    ("K8s Role/Clusterrolebinding Deleted", "activity-feed"),
    ("K8s Secret Created", "activity-feed"),
    ("K8s Secret Deleted", "activity-feed"),
    ("json_pointer_example", "json-pointer-example"),
];

/// Falco's default `allowed_k8s_users` (k8saudit-rules 0.6.0).
const FALCO_ALLOWED_USERS: &[&str] = &[
    "minikube",
    "minikube-user",
    "kubelet",
    "kops",
    "admin",
    "kube",
    "kube-proxy",
    "kube-apiserver-healthcheck",
    "kubernetes-admin",
    "vertical-pod-autoscaler",
    "cluster-autoscaler",
    "system:addon-manager",
    "cloud-controller-manager",
    "system:kube-controller-manager",
];

fn toml_list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A rule's default list parameter, read from its rule.toml.
fn default_list(rule: &str, param: &str) -> Vec<String> {
    let text = std::fs::read_to_string(rules_dir().join(rule).join("rule.toml")).unwrap();
    let value: toml::Table = toml::from_str(&text).unwrap();
    value["params"][param]
        .as_array()
        .unwrap_or_else(|| panic!("{rule} has no list parameter {param}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// The config that makes our pack behave like Falco with the case's override files loaded.
fn falco_equivalent_config(rules_loaded: &str) -> String {
    let loaded = |f: &str| rules_loaded.contains(f);
    let engine_v4 = loaded("engine_v4_k8s_audit_rules.yaml");
    let mut users: Vec<String> = if engine_v4 {
        ["minikube", "minikube-user", "kubelet", "kops"]
            .map(String::from)
            .to_vec()
    } else {
        FALCO_ALLOWED_USERS.iter().map(|s| s.to_string()).collect()
    };
    if loaded("allow_user_some-user.yaml") {
        users.push("some-user".into());
    }
    let mut namespaces: Vec<String> = ["kube-system", "kube-public", "default"]
        .map(String::from)
        .to_vec();
    if loaded("allow_namespace_foo.yaml") {
        namespaces.push("foo".into());
    }
    let mut cfg = String::new();
    let mut rule = |id: &str, body: String| {
        writeln!(cfg, "[detect.rules.{id}]\n{body}").unwrap();
    };
    rule(
        "activity-feed",
        format!("enabled = {}", !loaded("disallow_kactivity.yaml")),
    );
    rule(
        "disallowed-user",
        format!("params.allowed_users = {}", toml_list(&users)),
    );
    rule(
        "disallowed-namespace",
        format!("params.allowed_namespaces = {}", toml_list(&namespaces)),
    );
    // Falco's allowed_k8s_containers macro: always true by default (rule off); the overrides
    // name the one allowed image repository.
    let images = if loaded("allow_only_apache_container.yaml") {
        vec!["apache".to_owned()]
    } else if loaded("allow_nginx_container.yaml") {
        vec!["nginx".to_owned()]
    } else {
        Vec::new()
    };
    rule(
        "disallowed-image",
        format!("params.allowed_images = {}", toml_list(&images)),
    );
    if loaded("trust_nginx_container.yaml") {
        for (id, param) in [
            ("privileged-pod", "privileged_images"),
            ("host-network-pod", "hostnetwork_images"),
            ("sensitive-hostpath-pod", "sensitive_mount_images"),
        ] {
            let mut list = default_list(id, param);
            list.push("nginx".into());
            rule(id, format!("params.{param} = {}", toml_list(&list)));
        }
    }
    cfg
}

fn cluster_for(trace: &str) -> String {
    let stem = Path::new(trace).file_stem().unwrap().to_str().unwrap();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.chars().take(63).collect()
}

#[test]
fn falco_labelled_cases_all_come_out_right() {
    let Some(data) = shared_testdata() else {
        return;
    };
    let falco = data.join("falco-k8s-audit");
    let manifest = std::fs::read_to_string(falco.join("manifest.tsv")).unwrap();
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let cases: Vec<Vec<String>> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert_eq!(cases.len(), 66);

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let traces: BTreeSet<&str> = cases
        .iter()
        .map(|c| c[col("trace_file")].as_str())
        .collect();
    for trace in &traces {
        let mut cmd = bin();
        cmd.args(["ingest", "--json", "--lake"])
            .arg(&lake)
            .args(["--cluster", &cluster_for(trace)])
            .arg(falco.join(trace));
        run(&mut cmd); // fal_01_003 is malformed: quarantined, exit code 1 is expected
    }

    // One detect run per distinct set of Falco override files.
    let mut by_profile: BTreeMap<String, Vec<&Vec<String>>> = BTreeMap::new();
    for c in &cases {
        by_profile
            .entry(c[col("rules_loaded")].clone())
            .or_default()
            .push(c);
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    for (profile, cases) in &by_profile {
        let findings = if profile.contains("single_rule_with_json_pointer.yaml") {
            // A test-only Falco rule (JSON pointers into the event): its port lives in tests/.
            let mut cmd = bin();
            cmd.args(["detect", "--format", "json", "--lake"])
                .arg(&lake)
                .arg("--rules-dir")
                .arg(repo().join("tests/e2e/falco-rules"))
                .arg("--no-builtin-rules");
            String::from_utf8(run(&mut cmd).stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .collect::<Vec<_>>()
        } else {
            let cfg = dir.path().join("falco.toml");
            std::fs::write(&cfg, falco_equivalent_config(profile)).unwrap();
            detect(&lake, &["--config", cfg.to_str().unwrap()])
        };
        for case in cases {
            checked += 1;
            let name = &case[col("test_name")];
            let cluster = cluster_for(&case[col("trace_file")]);
            let here: Vec<&serde_json::Value> = findings
                .iter()
                .filter(|f| f["cluster"] == cluster.as_str())
                .collect();
            if case[col("should_fire")] == "True" {
                let falco_rule = case[col("expected_rule")].as_str();
                let ours = FALCO_TO_OURS
                    .iter()
                    .find(|(f, _)| *f == falco_rule)
                    .unwrap_or_else(|| panic!("no mapping for Falco rule {falco_rule}"))
                    .1;
                let want: i64 = case[col("expected_count")].parse().unwrap();
                let events: i64 = here
                    .iter()
                    .filter(|f| f["rule_id"] == ours)
                    .map(|f| f["event_count"].as_i64().unwrap())
                    .sum();
                if events != want {
                    failures.push(format!(
                        "{name}: {ours} (Falco \"{falco_rule}\") covered {events} event(s), want {want}"
                    ));
                }
            } else if !here.is_empty() {
                let fired: Vec<&str> = here
                    .iter()
                    .map(|f| f["rule_id"].as_str().unwrap())
                    .collect();
                failures.push(format!("{name}: should fire nothing, fired {fired:?}"));
            }
        }
    }
    assert_eq!(checked, 66);
    assert!(
        failures.is_empty(),
        "{} of 66 cases wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn stderr_of(cmd: &mut std::process::Command) -> (Option<i32>, String, String) {
    let out = run(cmd);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `[[detect.suppressions]]` through the binary: a matching, unexpired entry holds findings back
/// from `detect`; an expired one is logged (`suppression_expired`) and holds nothing back;
/// `rules suppressions` shows each entry's hits over the lake; a bad entry names its key.
#[test]
fn suppressions_hold_back_findings_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod-eu1", &[&repo().join("samples/audit.log")]);
    let key = |f: &serde_json::Value| {
        format!(
            "{} {} {}",
            f["rule_id"].as_str().unwrap(),
            f["actor"].as_str().unwrap_or("-"),
            f["target"].as_str().unwrap_or("-")
        )
    };
    let before: BTreeSet<String> = detect(&lake, &[]).iter().map(key).collect();
    let ci = "deployment-patched system:serviceaccount:ci:deployer deployments monitoring/prometheus-k8s";
    let exec = "exec-into-pod dave@example.com pods/exec payments/api-96hv2hndm-9djds";
    assert!(before.contains(ci) && before.contains(exec), "{before:#?}");
    let forbidden_kube_system: Vec<&String> = before
        .iter()
        .filter(|k| k.starts_with("forbidden-request ") && k.contains(" kube-system/"))
        .collect();
    assert_eq!(forbidden_kube_system.len(), 2, "{before:#?}");

    let cfg = dir.path().join("suppress.toml");
    std::fs::write(
        &cfg,
        r#"
[[detect.suppressions]]
rule = "deployment-patched"
actor = "system:serviceaccount:ci:*"
source_cidr = "10.0.0.0/8"
reason = "the CI deployer rolls out releases from the build network"
expires = 2099-01-01

[[detect.suppressions]]
rule = "forbidden-request"
namespace = "kube-system"
reason = "a probe we retired"
expires = "2020-01-01T00:00:00Z"

[[detect.suppressions]]
rule = "exec-into-pod"
target = "pods/exec *"
namespace = "payments"
reason = "the payments on-call debugs api pods"
"#,
    )
    .unwrap();
    let out = run(bin()
        .args(["detect", "--format", "json", "--lake"])
        .arg(&lake)
        .arg("--config")
        .arg(&cfg));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "suppression_expired key=detect.suppressions[1] rule=forbidden-request expired_at=2020-01-01T00:00:00Z reason=\"a probe we retired\""
        ),
        "{err}"
    );
    assert!(
        err.contains("2 finding(s) left out by [[detect.suppressions]]"),
        "{err}"
    );
    let after: BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| key(&serde_json::from_str(l).unwrap()))
        .collect();
    let gone: Vec<&String> = before.difference(&after).collect();
    assert_eq!(
        gone,
        vec![&ci.to_owned(), &exec.to_owned()],
        "exactly these two"
    );
    assert!(after.is_superset(&forbidden_kube_system.into_iter().cloned().collect()));

    // Hit counts over the lake, per entry (the expired one still shows what it would match).
    let listing = run_ok(
        bin()
            .args(["rules", "suppressions", "--lake"])
            .arg(&lake)
            .arg("--config")
            .arg(&cfg),
    );
    let rows: BTreeMap<String, Vec<String>> = listing
        .lines()
        .filter(|l| l.starts_with("detect.suppressions["))
        .map(|l| {
            let cells: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
            (cells[0].clone(), cells[1..6].to_vec())
        })
        .collect();
    let row = |i: usize| rows[&format!("detect.suppressions[{i}]")].join(" ");
    assert_eq!(
        row(0),
        "deployment-patched active 2099-01-01T00:00Z 1 18",
        "{listing}"
    );
    assert_eq!(
        row(1),
        "forbidden-request expired 2020-01-01T00:00Z 2 13",
        "{listing}"
    );
    assert_eq!(row(2), "exec-into-pod active never 1 2", "{listing}");
    assert!(
        listing.contains("the payments on-call debugs api pods"),
        "{listing}"
    );

    // A bad entry is an error naming its key, for every command that loads the pack.
    for (entry, want) in [
        (
            "rule = \"deployment-patched\"\nactor = \"x\"\nsource_cidr = [\"10.0.0.0/33\"]\nreason = \"r\"",
            "config `detect.suppressions[0].source_cidr`: \"10.0.0.0/33\" is not an IP address or CIDR",
        ),
        (
            "rule = \"no-such-rule\"\nactor = \"x\"\nreason = \"r\"",
            "config `detect.suppressions[0].rule`: no rule with id \"no-such-rule\"",
        ),
        (
            "rule = \"exec-into-pod\"\nactor = \"x\"\nreason = \"r\"\nexpires = \"soon\"",
            "config `detect.suppressions[0].expires`: \"soon\" is not a date",
        ),
        (
            "rule = \"exec-into-pod\"\nreason = \"r\"",
            "config `detect.suppressions[0]`: give at least one of actor, target, namespace, source_cidr",
        ),
    ] {
        std::fs::write(&cfg, format!("[[detect.suppressions]]\n{entry}\n")).unwrap();
        for args in [&["detect"][..], &["rules", "suppressions"][..]] {
            let (code, _, err) = stderr_of(
                bin()
                    .args(args)
                    .arg("--lake")
                    .arg(&lake)
                    .arg("--config")
                    .arg(&cfg),
            );
            assert_eq!(code, Some(2), "{args:?} {entry}: {err}");
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
}

/// `{ append = [...] }` extends a rule's default list; a plain list replaces it. On benign
/// controller traffic the known controllers stay quiet with an appended entry, and come back
/// when the list is replaced.
#[test]
fn list_parameters_can_extend_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let traffic = dir.path().join("controllers.jsonl");
    run_ok(
        bin()
            .args(["generate", "--events", "3000", "--controllers", "--out"])
            .arg(&traffic),
    );
    let lake = dir.path().join("lake");
    ingest(&lake, "prod", &[&traffic]);
    let actors = |config: &str| -> BTreeSet<String> {
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, config).unwrap();
        detect(&lake, &["--config", cfg.to_str().unwrap()])
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f["rule_id"].as_str().unwrap(),
                    f["actor"].as_str().unwrap_or("-")
                )
            })
            .collect()
    };
    let controller = |a: &String| {
        [
            "argocd",
            "flux-system",
            "cert-manager",
            "velero",
            "external-secrets",
            "kyverno",
        ]
        .iter()
        .any(|c| a.contains(&format!("system:serviceaccount:{c}:")))
    };
    let ci = "deployment-patched system:serviceaccount:ci:deployer".to_owned();
    let defaults = actors("[detect.params]\nbaseline_days = 0\n");
    assert!(defaults.contains(&ci), "{defaults:#?}");
    assert!(!defaults.iter().any(controller), "{defaults:#?}");

    let appended = actors(
        "[detect.params]\nbaseline_days = 0\nknown_controllers = { append = [\"system:serviceaccount:ci:\"] }\n",
    );
    let mut want = defaults.clone();
    want.remove(&ci);
    assert_eq!(
        appended, want,
        "the appended prefix is exempt, the defaults still are"
    );

    let per_rule = actors(
        "[detect.params]\nbaseline_days = 0\n[detect.rules.deployment-patched.params]\nexcluded_users = { append = [\"system:serviceaccount:ci:deployer\"] }\n",
    );
    assert_eq!(per_rule, want);

    let replaced = actors(
        "[detect.params]\nbaseline_days = 0\nknown_controllers = [\"system:serviceaccount:ci:\"]\n",
    );
    assert!(!replaced.contains(&ci));
    let back: Vec<&String> = replaced.iter().filter(|a| controller(a)).collect();
    assert!(
        back.len() >= 5,
        "replacing the list drops the defaults: {replaced:#?}"
    );
}

/// Managed-cloud exports and log shippers drop optional fields. Every rule's positive fixtures,
/// stripped of `stage` and `objectRef.apiGroup`/`apiVersion` (and then of `requestURI` too),
/// give the same findings — rule, actor and target — as the originals.
#[test]
fn rules_stay_right_when_exports_drop_optional_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = no_warmup_config(dir.path());
    let strip = |ev: &mut serde_json::Value, uri: bool| {
        let obj = ev.as_object_mut().unwrap();
        obj.remove("stage");
        if uri {
            obj.remove("requestURI");
        }
        if let Some(o) = obj.get_mut("objectRef").and_then(|o| o.as_object_mut()) {
            o.remove("apiGroup");
            o.remove("apiVersion");
        }
    };
    let lakes: Vec<PathBuf> = ["original", "no-stage-group", "no-uri-either"]
        .iter()
        .enumerate()
        .map(|(variant, name)| {
            let lake = dir.path().join(name);
            let mut rules: Vec<PathBuf> = std::fs::read_dir(rules_dir())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.join("fixtures/positive.jsonl").is_file())
                .collect();
            rules.sort();
            // One input of every rule's fixtures (audit IDs prefixed with the rule, so fixtures
            // of different rules never collide on the dedup key); the three variants differ only
            // in the stripped fields.
            let mut out = String::new();
            for rule in rules {
                let id = rule.file_name().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(rule.join("fixtures/positive.jsonl")).unwrap();
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let mut ev: serde_json::Value = serde_json::from_str(line).unwrap();
                    let audit_id = format!("{id}:{}", ev["auditID"].as_str().unwrap());
                    ev["auditID"] = serde_json::Value::String(audit_id);
                    if variant > 0 {
                        strip(&mut ev, variant == 2);
                    }
                    out += &ev.to_string();
                    out.push('\n');
                }
            }
            let input = dir.path().join(format!("{name}.jsonl"));
            std::fs::write(&input, out).unwrap();
            let summary = ingest(&lake, "fixtures", &[&input]);
            assert_eq!(summary["rejected"], 0, "{name}: {summary}");
            lake
        })
        .collect();
    let findings = |lake: &Path| -> BTreeSet<String> {
        detect(lake, &["--config", config.to_str().unwrap()])
            .iter()
            .map(|f| format!("{} | {} | {}", f["rule_id"], f["actor"], f["target"]))
            .collect()
    };
    let original = findings(&lakes[0]);
    assert!(original.len() > 60, "{}", original.len());
    let without_stage_and_group = findings(&lakes[1]);
    assert_eq!(
        original
            .symmetric_difference(&without_stage_and_group)
            .collect::<Vec<_>>(),
        Vec::<&String>::new()
    );
    // Without the URI too, only what the URI alone carries is lost: the command run through
    // exec (it is in the URI's query string, nowhere else).
    let without_uri = findings(&lakes[2]);
    let lost: Vec<&String> = original.difference(&without_uri).collect();
    assert!(
        lost.iter()
            .all(|f| f.starts_with("\"suspicious-exec-command\"")),
        "{lost:?}"
    );
    let gained: Vec<&String> = without_uri.difference(&original).collect();
    assert!(gained.is_empty(), "{gained:?}");
}
