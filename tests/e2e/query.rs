use crate::*;

fn sample_lake() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod", &[&repo().join("samples/audit.log")]);
    (dir, lake)
}

#[test]
fn scenario_facts_are_queryable_through_derived_columns() {
    let (_dir, lake) = sample_lake();
    let rows = query(
        &lake,
        "SELECT name, user_name, binding_subjects FROM audit_events
         WHERE resource = 'clusterrolebindings' AND verb = 'create' AND stage = 'ResponseComplete' AND role_ref_name = 'cluster-admin'",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], "backup-operator");
    assert_eq!(rows[0]["user_name"], "dave@example.com");
    assert_eq!(
        rows[0]["binding_subjects"][0],
        "ServiceAccount:kube-system/backup"
    );

    let rows = query(
        &lake,
        "SELECT DISTINCT name FROM audit_events WHERE resource = 'pods' AND subresource IS NULL AND verb = 'create'
         AND pod_privileged AND pod_host_pid AND array_has(pod_host_paths, '/')",
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "node-debugger");

    let rows = query(
        &lake,
        "SELECT exec_command FROM audit_events WHERE subresource = 'exec' AND stage = 'ResponseComplete'
         AND array_has(exec_command, 'cat /var/run/secrets/kubernetes.io/serviceaccount/token')",
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["exec_command"][0], "sh");

    // Secret reads by people: never system identities.
    let rows = query(
        &lake,
        "SELECT DISTINCT user_name FROM audit_events WHERE resource = 'secrets' AND verb IN ('get','list')
         AND response_code = 200 AND user_name NOT LIKE 'system:%'",
    );
    assert_eq!(
        rows,
        vec![serde_json::json!({"user_name": "dave@example.com"})]
    );

    // JSON functions over bodies.
    let rows = query(
        &lake,
        "SELECT json_get_str(request_object, 'spec', 'type') AS t FROM audit_events
         WHERE resource = 'services' AND verb = 'create' AND stage = 'ResponseComplete'",
    );
    assert_eq!(rows[0]["t"], "NodePort");
}

#[test]
fn output_formats_and_timing() {
    let (_dir, lake) = sample_lake();
    let sql = "SELECT user_name, count(*) AS n FROM audit_events WHERE user_name LIKE '%@example.com' GROUP BY user_name ORDER BY user_name";
    let table = run_ok(bin().args(["query", "--lake"]).arg(&lake).arg(sql));
    assert!(
        table.contains("| user_name") && table.contains("| alice@example.com"),
        "{table}"
    );
    let csv = run_ok(
        bin()
            .args(["query", "-f", "csv", "--lake"])
            .arg(&lake)
            .arg(sql),
    );
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("user_name,n"));
    assert!(lines.next().unwrap().starts_with("alice@example.com,"));
    let out = run(bin()
        .args(["query", "--timing", "--lake"])
        .arg(&lake)
        .arg(sql));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rows in"),
        "timing goes to stderr"
    );
}

#[test]
fn bad_sql_exits_2_with_datafusions_message() {
    let (_dir, lake) = sample_lake();
    for (sql, needle) in [
        ("SELEC * FROM audit_events", "SELEC"),
        ("SELECT nope FROM audit_events", "nope"),
        ("SELECT * FROM audit_event", "audit_event"),
    ] {
        let out = run(bin().args(["query", "--lake"]).arg(&lake).arg(sql));
        assert_eq!(out.status.code(), Some(2), "{sql}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{sql}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = run(bin().args(["query", "--lake", "/nonexistent/lake", "SELECT 1"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no lake at /nonexistent/lake"));
}

#[test]
fn schema_command_prints_the_description() {
    let out = run_ok(bin().arg("schema"));
    let read = |name: &str| std::fs::read_to_string(repo().join("schemas").join(name)).unwrap();
    assert_eq!(
        out,
        format!("{}\n{}", read("audit_events.md"), read("findings.md"))
    );
}
