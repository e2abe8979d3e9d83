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

#[test]
fn cidr_lists_and_compound_spans() {
    let (_dir, lake) = sample_lake();
    // IPv4, IPv6 and IPv4-mapped IPv6 against one constant list.
    let rows = query(
        &lake,
        "SELECT ip_in_cidrs(ip, make_array('10.0.0.0/8', '2001:db8::/32', '198.51.100.7')) AS hit
         FROM (VALUES ('10.1.2.3'), ('::ffff:10.1.2.3'), ('2001:db8::9'), ('198.51.100.7'), ('8.8.8.8')) AS t(ip)",
    );
    let hits: Vec<bool> = rows.iter().map(|r| r["hit"].as_bool().unwrap()).collect();
    assert_eq!(hits, [true, true, true, true, false]);
    // A bad literal is an error naming it, not a silent "no match".
    let out = run(bin().args(["query", "--lake"]).arg(&lake).arg(
        "SELECT count(*) FROM audit_events WHERE ip_in_cidrs(source_ip, make_array('10.0.0.0/8', '10.0.0.0/33'))",
    ));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // (Filter pushdown into the Parquet scan quotes DataFusion's message with Debug.)
    assert!(
        err.contains("ip_in_cidrs: ")
            && err.contains("10.0.0.0/33")
            && err.contains("is not an IP address or CIDR"),
        "{err}"
    );

    // Spans: compound ones are accepted, a bare number says what is missing.
    let since = |span: &str| {
        run(bin()
            .args([
                "timeline",
                "--user",
                "dave@example.com",
                "--since",
                span,
                "--lake",
            ])
            .arg(&lake))
    };
    let all = since("36500d");
    assert!(all.status.success(), "{all:?}");
    let compound = since("1h30m");
    assert!(compound.status.success(), "{compound:?}");
    let bare = since("90");
    assert_eq!(bare.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bare.stderr);
    assert!(
        err.contains("--since 90") && err.contains("time unit needed"),
        "{err}"
    );
}
