//! The report pack over real data: the samples' incident and the real API server's log. Each
//! test asserts the facts a person reading the report would look for.

use std::path::{Path, PathBuf};

use auditlake_ingest::{IngestOptions, Input, Lake, ingest};
use auditlake_query::{Scope, SessionOptions, open_lake, run_sql};
use serde_json::Value;

use super::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn pack() -> PathBuf {
    repo().join("reports")
}

fn lake_of(log: &Path, cluster: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ingest(
        &Lake::new(dir.path().to_path_buf()),
        &[Input::Path(log.to_path_buf())],
        &IngestOptions::new(cluster).unwrap(),
        &|_| {},
    )
    .unwrap();
    dir
}

fn everything() -> ReportWindow {
    ReportWindow::from(&Scope::default())
}

async fn run(lake: &Path, id: &str) -> ReportResult {
    let ctx = open_lake(lake, &SessionOptions::default()).await.unwrap();
    let def = load_report(&pack(), id).unwrap();
    run_report(&ctx, &def, everything()).await.unwrap()
}

fn section<'a>(r: &'a ReportResult, id: &str) -> &'a SectionResult {
    r.sections.iter().find(|s| s.id == id).unwrap()
}

fn fact(r: &ReportResult, name: &str) -> i64 {
    r.facts
        .iter()
        .find(|f| f.name == name)
        .unwrap()
        .value
        .as_i64()
        .unwrap()
}

/// Values of `column` in a section's rows, as text.
fn column(s: &SectionResult, column: &str) -> Vec<String> {
    let i = s
        .columns
        .iter()
        .position(|c| c == column)
        .unwrap_or_else(|| panic!("{column} in {:?}", s.columns));
    s.rows.iter().map(|r| svg::cell_text(&r[i])).collect()
}

fn samples_lake() -> tempfile::TempDir {
    lake_of(&repo().join("samples/audit.log"), "prod-eu")
}

#[tokio::test]
async fn every_report_of_the_pack_loads_and_runs_on_an_empty_lake() {
    let defs = load_reports(&pack()).unwrap();
    let ids: Vec<&str> = defs.iter().map(|d| d.id.as_str()).collect();
    for want in [
        "secret-access",
        "rbac-changes",
        "privileged-workloads",
        "interactive-access",
        "anonymous-access",
        "sa-token-use",
        "deprecated-api",
        "findings-summary",
        "least-privilege",
    ] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    let empty = tempfile::tempdir().unwrap();
    let ctx = open_lake(empty.path(), &SessionOptions::default())
        .await
        .unwrap();
    for def in &defs {
        assert!(
            !def.cis.is_empty() || def.not_cis.is_some(),
            "{}: CIS mapping",
            def.id
        );
        let r = run_report(&ctx, def, everything())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for format in [
            ReportFormat::Markdown,
            ReportFormat::Html,
            ReportFormat::Json,
            ReportFormat::Csv,
        ] {
            render(&r, format, None).unwrap_or_else(|e| panic!("{}: {format:?}: {e}", def.id));
        }
    }
}

#[test]
fn definition_errors_name_the_file_and_line() {
    let f = Path::new("reports/bad.toml");
    let err = parse_report(f, "id = \"bad\"\ntitle = \"t\"\ndescription = 1\n").unwrap_err();
    assert!(err.to_string().starts_with("reports/bad.toml:3: "), "{err}");
    let text = "id = \"bad\"\ntitle = \"t\"\ndescription = \"d\"\nhow_to_read = \"h\"\nsummary = \"{{ oops\"\n";
    let err = parse_report(f, text).unwrap_err().to_string();
    assert!(
        err.starts_with("reports/bad.toml:5: summary template"),
        "{err}"
    );
    let err = parse_report(
        Path::new("reports/other.toml"),
        "id = \"bad\"\ntitle = \"t\"\ndescription = \"d\"\nhow_to_read = \"h\"\nsummary = \"s\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(":1: id \"bad\" must match the file name \"other\""),
        "{err}"
    );
}

#[tokio::test]
async fn samples_secret_access_names_dave_and_the_stolen_token() {
    let lake = samples_lake();
    let r = run(lake.path(), "secret-access").await;
    let people = section(&r, "people");
    let users = column(people, "user_name");
    // dave lists all secrets, then reads 7 in 4 namespaces (samples/README.md, 08:34).
    let dave_reads = users.iter().filter(|u| *u == "dave@example.com").count();
    assert!(dave_reads >= 8, "{users:?}");
    assert!(column(people, "namespace").contains(&"(all namespaces)".to_owned()));
    assert!(r.summary.contains("dave@example.com"), "{}", r.summary);
    // The payments SA token used from 203.0.113.77 (09:10).
    // And the stolen default/default token probing from dave's address (08:29).
    let outside = section(&r, "workloads_from_outside");
    let pairs: Vec<String> = column(outside, "user_name")
        .iter()
        .zip(column(outside, "source_ip"))
        .map(|(u, ip)| format!("{u} {ip}"))
        .collect();
    assert!(
        pairs.contains(&"system:serviceaccount:payments:payments-api 203.0.113.77".to_owned()),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&"system:serviceaccount:default:default 198.51.100.23".to_owned()),
        "{pairs:?}"
    );
    assert!(
        pairs.iter().all(|p| !p.contains(" 10.")),
        "cluster-internal use is not listed: {pairs:?}"
    );
    assert!(fact(&r, "denied") > 0 && fact(&r, "reads") > fact(&r, "denied"));
}

#[tokio::test]
async fn samples_rbac_changes_show_the_cluster_admin_grant_and_wildcard_role() {
    let lake = samples_lake();
    let r = run(lake.path(), "rbac-changes").await;
    let grants = section(&r, "cluster_admin");
    assert_eq!(column(grants, "name"), ["backup-operator"]);
    assert_eq!(column(grants, "user_name"), ["dave@example.com"]);
    assert_eq!(
        column(grants, "subjects"),
        ["ServiceAccount:kube-system/backup"]
    );
    assert!(
        r.summary.contains("backup-operator by dave@example.com"),
        "{}",
        r.summary
    );
    assert!(column(section(&r, "wildcards"), "name").contains(&"ops-superuser".to_owned()));
    // The binding's deletion at 09:14 shows what it was before.
    let ba = section(&r, "before_after");
    let i = ba
        .rows
        .iter()
        .position(|row| row[5] == "backup-operator")
        .expect("backup-operator before/after");
    assert!(
        svg::cell_text(&ba.rows[i][6]).contains("cluster-admin"),
        "{:?}",
        ba.rows[i]
    );
    assert_eq!(svg::cell_text(&ba.rows[i][7]), "(deleted)");
}

#[tokio::test]
async fn samples_privileged_workloads_put_the_attackers_pod_first() {
    let lake = samples_lake();
    let r = run(lake.path(), "privileged-workloads").await;
    let w = section(&r, "workloads");
    let first = &w.rows[0];
    let cols = |c: &str| w.columns.iter().position(|x| x == c).unwrap();
    assert_eq!(first[cols("user_name")], "dave@example.com");
    let by_dave: Vec<String> = w
        .rows
        .iter()
        .filter(|r| r[cols("user_name")] == "dave@example.com")
        .map(|r| {
            format!(
                "{} {}",
                svg::cell_text(&r[cols("name")]),
                svg::cell_text(&r[cols("flags")])
            )
        })
        .collect();
    assert!(
        by_dave.contains(
            &"node-debugger privileged hostPID hostIPC hostNetwork hostPath capabilities"
                .to_owned()
        ),
        "{by_dave:?}"
    );
    assert!(
        by_dave
            .iter()
            .any(|s| s.starts_with("log-collector ") && s.contains("hostPath")),
        "{by_dave:?}"
    );
    // kube-proxy pods by the DaemonSet controller are there too, after the people.
    assert!(
        column(w, "user_name")
            .iter()
            .any(|u| u.starts_with("system:serviceaccount:kube-system:daemon-set-controller"))
    );
    assert!(r.summary.contains("node-debugger"), "{}", r.summary);
}

#[tokio::test]
async fn samples_interactive_access_lists_daves_sessions_with_commands() {
    let lake = samples_lake();
    let r = run(lake.path(), "interactive-access").await;
    let s = section(&r, "sessions");
    let commands = column(s, "command");
    assert!(
        commands.iter().any(|c| c.starts_with("chroot /host")),
        "{commands:?}"
    );
    assert!(column(s, "kind").contains(&"portforward".to_owned()));
    assert!(column(s, "kind").contains(&"attach".to_owned()));
    let by_user = section(&r, "by_user");
    assert!(column(by_user, "user_name").contains(&"dave@example.com".to_owned()));
    // The stolen default token's exec probes were all refused: no established session.
    let default_sa = s
        .rows
        .iter()
        .filter(|row| row[2] == "system:serviceaccount:default:default")
        .map(|row| row[10].as_i64().unwrap())
        .collect::<Vec<_>>();
    assert!(
        !default_sa.is_empty() && default_sa.iter().all(|c| *c == 403),
        "{default_sa:?}"
    );
    assert!(fact(&r, "debug") >= 1, "kubectl debug container");
}

#[tokio::test]
async fn samples_anonymous_access_finds_the_binding_and_the_tor_exit() {
    let lake = samples_lake();
    let r = run(lake.path(), "anonymous-access").await;
    let grants = section(&r, "grants");
    assert_eq!(column(grants, "user_name"), ["dave@example.com"]);
    assert_eq!(column(grants, "role_ref_name"), ["view"]);
    let by_source = section(&r, "by_source");
    let tor = by_source
        .rows
        .iter()
        .find(|row| row[0] == "185.220.101.47")
        .expect("the Tor exit");
    assert_eq!(tor[1], true, "public");
    assert!(
        tor[4].as_i64().unwrap() >= 13,
        "13 denials in the scan: {tor:?}"
    );
    // After the binding, anonymous lists pods and config maps in default (09:01).
    let allowed = section(&r, "allowed");
    assert!(
        column(allowed, "resource").contains(&"pods".to_owned()),
        "{:?}",
        allowed.rows
    );
    assert!(fact(&r, "allowed_non_health") < fact(&r, "allowed"));
}

#[tokio::test]
async fn samples_sa_tokens_show_daves_token_request_and_the_outside_use() {
    let lake = samples_lake();
    let r = run(lake.path(), "sa-token-use").await;
    let t = section(&r, "token_requests");
    let cols = |c: &str| t.columns.iter().position(|x| x == c).unwrap();
    let backup = t
        .rows
        .iter()
        .find(|row| row[cols("service_account")] == "backup")
        .expect("TokenRequest for backup");
    assert_eq!(backup[cols("user_name")], "dave@example.com");
    // The samples' policy logs token requests at Metadata (no body): the lifetime is unknown.
    assert_eq!(backup[cols("expiration_seconds")], Value::Null);
    assert!(
        column(section(&r, "outside"), "user_name")
            .contains(&"system:serviceaccount:payments:payments-api".to_owned())
    );
    // The `backup-token` secret (08:56) was logged at Metadata: its type is unknown, so it is not
    // a *known* legacy token secret, but the secret-access report lists its creation.
    assert_eq!(section(&r, "legacy_secrets").columns[4], "name");
    let secrets = run(lake.path(), "secret-access").await;
    let changes = section(&secrets, "changes");
    assert!(
        changes.rows.iter().any(|row| row[2] == "dave@example.com"
            && row[4] == "create"
            && row[6] == "backup-token"),
        "{:?}",
        changes.rows
    );
}

#[tokio::test]
async fn samples_deprecated_api_names_the_old_flowcontrol_client() {
    let lake = samples_lake();
    let r = run(lake.path(), "deprecated-api").await;
    let apis = column(section(&r, "apis"), "api");
    assert!(
        apis.iter()
            .any(|a| a.contains("flowcontrol") && a.contains("v1beta3")),
        "{apis:?}"
    );
    assert!(
        r.summary.contains("requests used deprecated APIs"),
        "{}",
        r.summary
    );
}

#[tokio::test]
async fn least_privilege_role_lists_exactly_what_the_service_account_used() {
    let lake = samples_lake();
    let r = run(lake.path(), "least-privilege").await;
    let sa = "system:serviceaccount:ci:deployer";
    let manifests = &section(&r, "manifests").manifests;
    let yaml = &manifests
        .iter()
        .find(|m| m.identity == sa)
        .unwrap_or_else(|| {
            panic!(
                "{sa} not in {:?}",
                manifests.iter().map(|m| &m.identity).collect::<Vec<_>>()
            )
        })
        .yaml;
    // What the SA did, straight from the lake: each (namespace, group, resource, verb) it used
    // must be in a rule of the Role of that namespace, and nothing else.
    let ctx = open_lake(lake.path(), &SessionOptions::default())
        .await
        .unwrap();
    let used = run_sql(
        &ctx,
        &format!(
            "SELECT DISTINCT namespace, coalesce(api_group, '') AS g, resource, verb FROM requests \
             WHERE user_name = '{sa}' AND response_code NOT IN (401, 403) ORDER BY 1, 2, 3, 4"
        ),
    )
    .await
    .unwrap();
    let (_, used) = batches_to_rows(&used).unwrap();
    assert!(!used.is_empty());
    let mut expected_rules = std::collections::BTreeSet::new();
    for row in &used {
        let [ns, g, res, verb] = &row[..] else {
            unreachable!()
        };
        assert!(
            yaml.contains(&format!(
                "namespace: {}",
                serde_json::to_string(ns).unwrap()
            )),
            "{ns} in {yaml}"
        );
        expected_rules.insert((
            g.as_str().unwrap().to_owned(),
            res.as_str().unwrap().to_owned(),
            verb.as_str().unwrap().to_owned(),
        ));
    }
    // Parse the rules back out of the YAML and compare as sets.
    let mut got_rules = std::collections::BTreeSet::new();
    let lines: Vec<&str> = yaml.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some(groups) = l.strip_prefix("- apiGroups: ") {
            let groups: Vec<String> = serde_json::from_str(groups).unwrap();
            let resources: Vec<String> = serde_json::from_str(
                lines[i + 1]
                    .trim_start()
                    .strip_prefix("resources: ")
                    .unwrap(),
            )
            .unwrap();
            let verbs: Vec<String> =
                serde_json::from_str(lines[i + 2].trim_start().strip_prefix("verbs: ").unwrap())
                    .unwrap();
            for g in &groups {
                for r in &resources {
                    for v in &verbs {
                        got_rules.insert((g.clone(), r.clone(), v.clone()));
                    }
                }
            }
        }
    }
    assert_eq!(got_rules, expected_rules, "{yaml}");
    assert!(!yaml.contains("\"*\""), "no wildcards: {yaml}");
}

#[tokio::test]
async fn html_is_one_self_contained_file_with_charts_and_escaped_data() {
    let lake = samples_lake();
    let r = run(lake.path(), "secret-access").await;
    let html = render(&r, ReportFormat::Html, None).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.matches("<svg").count() >= 2, "bar + time series");
    assert!(!html.contains("<script"), "no scripts");
    assert!(
        !html.contains("<link") && !html.contains("src="),
        "nothing fetched"
    );
    assert!(
        html.find("id=\"summary\"").unwrap() < html.find("<table").unwrap(),
        "summary first"
    );
    assert!(html.contains("5.1.2 — Minimize access to secrets"));
    let md = render(&r, ReportFormat::Markdown, None).unwrap();
    assert!(md.starts_with("# Secret access\n\n"));
    assert!(md.contains("| stage_at | cluster | user_name |"), "{md}");
    let json: Value = serde_json::from_str(&render(&r, ReportFormat::Json, None).unwrap()).unwrap();
    assert_eq!(json["id"], "secret-access");
    assert_eq!(json["sections"][0]["id"], "people");
    let csv = render(&r, ReportFormat::Csv, Some("refused")).unwrap();
    assert!(csv.starts_with("stage_at,cluster,user_name,"), "{csv}");
    assert_eq!(csv.lines().count(), section(&r, "refused").rows.len() + 1);
    assert!(
        render(&r, ReportFormat::Csv, Some("nope"))
            .unwrap_err()
            .to_string()
            .contains("have: people")
    );
}

#[tokio::test]
async fn window_and_cluster_scope_the_report() {
    let lake = samples_lake();
    let def = load_report(&pack(), "rbac-changes").unwrap();
    // Before dave's RBAC changes at 08:40: no grant.
    let scope = Scope {
        since: None,
        until: Some("2026-11-20T08:35:00Z".parse().unwrap()),
        clusters: vec!["prod-eu".to_owned()],
    };
    let ctx = open_lake(
        lake.path(),
        &SessionOptions {
            scope: scope.clone(),
            ..SessionOptions::default()
        },
    )
    .await
    .unwrap();
    let window = ReportWindow::from(&scope);
    let r = run_report(&ctx, &def, window).await.unwrap();
    assert_eq!(section(&r, "cluster_admin").rows.len(), 0);
    assert!(
        r.summary.contains("cluster-admin was not granted"),
        "{}",
        r.summary
    );
    let md = render(&r, ReportFormat::Markdown, None).unwrap();
    assert!(
        md.contains("beginning of the lake → 2026-11-20 08:35 UTC"),
        "{md}"
    );
}

/// `../shared/testdata/real-apiserver-metadata`: a real API server at audit level Metadata.
fn real_log() -> Option<PathBuf> {
    let p = repo().join("../shared/testdata/real-apiserver-metadata/audit.log");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipped: {} is absent (it is beside the repo in CI)",
            p.display()
        );
        None
    }
}

#[tokio::test]
async fn real_apiserver_mallorys_grant_and_the_reads_it_enabled() {
    let Some(log) = real_log() else { return };
    let lake = lake_of(&log, "real");
    let r = run(lake.path(), "secret-access").await;
    let people = section(&r, "people");
    let cols = |c: &str| people.columns.iter().position(|x| x == c).unwrap();
    let mallory: Vec<(String, i64)> = people
        .rows
        .iter()
        .filter(|row| row[cols("user_name")] == "mallory")
        .map(|row| {
            (
                svg::cell_text(&row[cols("secret")]),
                row[cols("response_code")].as_i64().unwrap(),
            )
        })
        .collect();
    // Refused (steps 5-7) until the grant (8), then allowed (9, 10), then refused again after
    // the binding is deleted (24, 25): the testdata README's sequence.
    let codes: Vec<i64> = mallory.iter().map(|m| m.1).collect();
    let first_allowed = codes
        .iter()
        .position(|c| *c == 200)
        .expect("an allowed read");
    assert!(
        first_allowed >= 2 && codes[..first_allowed].iter().all(|c| *c == 403),
        "{mallory:?}"
    );
    assert!(
        mallory.contains(&("db-creds".to_owned(), 200)),
        "{mallory:?}"
    );
    assert_eq!(*codes.last().unwrap(), 403, "{mallory:?}");
    assert!(r.summary.contains("mallory"), "{}", r.summary);

    let rbac = run(lake.path(), "rbac-changes").await;
    let grants = section(&rbac, "cluster_admin");
    assert_eq!(column(grants, "name"), ["mallory-cluster-admin"]);
    // The grant came between the last refused and the first allowed read.
    let granted_at = column(grants, "stage_at")[0].clone();
    let read_at: Vec<String> = people
        .rows
        .iter()
        .filter(|row| row[cols("user_name")] == "mallory")
        .map(|row| svg::cell_text(&row[cols("stage_at")]))
        .collect();
    assert!(
        read_at[first_allowed - 1] < granted_at && granted_at < read_at[first_allowed],
        "{granted_at} vs {read_at:?}"
    );
    assert_eq!(
        column(grants, "role"),
        ["(not logged)"],
        "Metadata level: no body"
    );
    assert!(
        rbac.summary.contains("mallory-cluster-admin"),
        "{}",
        rbac.summary
    );

    // Metadata level: the privileged pod cannot be assessed, and the report says so.
    let p = run(lake.path(), "privileged-workloads").await;
    assert!(column(section(&p, "unassessed"), "name").contains(&"priv-pod".to_owned()));
    assert!(p.summary.contains("could not be assessed"), "{}", p.summary);

    let i = run(lake.path(), "interactive-access").await;
    let kinds = column(section(&i, "sessions"), "kind");
    // Two exec attempts (steps 16, 18; kubectl may try a second transport after the first
    // fails, so at least two requests) and one port-forward (19).
    assert!(
        kinds.iter().filter(|k| *k == "exec").count() >= 2,
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "portforward"), "{kinds:?}");
    assert_eq!(fact(&i, "sessions"), 0, "all three failed (400: no node)");
}
