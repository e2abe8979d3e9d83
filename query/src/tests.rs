use super::*;
use auditlake_ingest::{IngestOptions, Input, Lake, ingest};
use auditlake_schemas::audit_events_file_schema;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Int64Type};

const POD: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"p1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"create","user":{"username":"alice","groups":["devs"]},"sourceIPs":["203.0.113.9"],"objectRef":{"resource":"pods","namespace":"default","name":"web","apiVersion":"v1"},"responseStatus":{"code":201},"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web"},"spec":{"hostNetwork":true,"containers":[{"name":"web","image":"nginx:1.25"}]}},"requestReceivedTimestamp":"2026-11-22T05:10:00.000000Z","stageTimestamp":"2026-11-22T05:10:00.100000Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"devs\""}}"#;

fn event(id: &str, hour: u32, user: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/secrets","verb":"list","user":{{"username":"{user}"}},"sourceIPs":["10.1.1.1"],"objectRef":{{"resource":"secrets","apiVersion":"v1"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-11-22T{hour:02}:00:00.000000Z"}}"#
    )
}

fn lake_with(lines: &[String], cluster: &str, dir: &Path) {
    let path = dir.join(format!("{cluster}.log"));
    std::fs::write(&path, lines.join("\n")).unwrap();
    let report = ingest(
        &Lake::new(dir.join("lake")),
        &[Input::Path(path)],
        &IngestOptions::new(cluster).unwrap(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(report.rejected, 0);
}

async fn count(ctx: &SessionContext, sql: &str) -> i64 {
    let b = run_sql(ctx, sql).await.unwrap();
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn empty_lake_plans_and_counts_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("lake")).unwrap();
    let ctx = open_lake(&dir.path().join("lake"), &SessionOptions::default())
        .await
        .unwrap();
    assert_eq!(count(&ctx, "SELECT count(*) FROM audit_events").await, 0);
}

#[tokio::test]
async fn missing_lake_is_the_callers_fault() {
    let Err(err) = open_lake(Path::new("/nonexistent/lake"), &SessionOptions::default()).await
    else {
        panic!("opened a missing lake")
    };
    assert!(
        matches!(err, QueryError::LakeNotFound(_)) && err.is_caller_fault(),
        "{err}"
    );
}

#[tokio::test]
async fn partitions_json_functions_and_derived_columns() {
    let dir = tempfile::tempdir().unwrap();
    lake_with(
        &[POD.to_owned(), event("s1", 5, "bob"), event("s2", 6, "bob")],
        "prod",
        dir.path(),
    );
    lake_with(&[event("s1", 5, "carol")], "staging", dir.path());
    let ctx = open_lake(&dir.path().join("lake"), &SessionOptions::default())
        .await
        .unwrap();
    assert_eq!(count(&ctx, "SELECT count(*) FROM audit_events").await, 4);
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM audit_events WHERE cluster = 'prod'"
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM audit_events WHERE date = '2026-11-22' AND hour = '06'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM audit_events WHERE json_get_str(request_object, 'spec', 'containers', 0, 'image') = 'nginx:1.25'").await,
        1
    );
    assert_eq!(count(&ctx, "SELECT count(*) FROM audit_events WHERE pod_host_network AND array_has(pod_images, 'nginx:1.25')").await, 1);
    assert_eq!(count(&ctx, "SELECT count(*) FROM audit_events WHERE annotations['authorization.k8s.io/decision'] = 'allow'").await, 1);
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM audit_events WHERE stage_at >= TIMESTAMP '2026-11-22T05:30:00Z'"
        )
        .await,
        1
    );

    // The plan prunes partitions by path: only the files under cluster=staging are scanned.
    let plan = run_sql(
        &ctx,
        "EXPLAIN SELECT user_name FROM audit_events WHERE cluster = 'staging'",
    )
    .await
    .unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    assert!(
        text.contains("cluster=staging") && !text.contains("cluster=prod"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_sql_is_the_callers_fault_with_datafusions_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("lake")).unwrap();
    let ctx = open_lake(&dir.path().join("lake"), &SessionOptions::default())
        .await
        .unwrap();
    for (sql, needle) in [
        ("SELEC 1", "SELEC"),
        ("SELECT no_such_column FROM audit_events", "no_such_column"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        // Raised while running, by the query's own expressions: still the query's fault.
        ("SELECT CAST(v AS INT) FROM (VALUES ('x')) t(v)", "x"),
        (
            "SELECT a / b FROM (VALUES (1, 0)) t(a, b)",
            "Divide by zero",
        ),
    ] {
        let err = run_sql(&ctx, sql).await.unwrap_err();
        assert!(err.is_caller_fault(), "{sql}: {err:?}");
        assert!(err.to_string().contains(needle), "{sql}: {err}");
    }
}

#[tokio::test]
async fn output_formats() {
    let dir = tempfile::tempdir().unwrap();
    lake_with(&[POD.to_owned()], "prod", dir.path());
    let ctx = open_lake(&dir.path().join("lake"), &SessionOptions::default())
        .await
        .unwrap();
    let batches = run_sql(
        &ctx,
        "SELECT user_name, user_groups, pod_host_network, stage_at FROM audit_events",
    )
    .await
    .unwrap();
    let render = |f| {
        let mut out = Vec::new();
        write_batches(&batches, f, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let table = render(OutputFormat::Table);
    assert!(
        table.contains("| alice") && table.contains("[devs]"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(render(OutputFormat::Json).trim()).unwrap();
    assert_eq!(json["user_name"], "alice");
    assert_eq!(json["user_groups"][0], "devs");
    assert_eq!(json["pod_host_network"], true);
    let csv = render(OutputFormat::Csv);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "user_name,user_groups,pod_host_network,stage_at"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("alice,[devs],true,2026-11-22T05:10:00.100"),
        "{csv}"
    );
}

#[tokio::test]
async fn scope_restricts_events_and_views_to_window_and_cluster() {
    use chrono::TimeZone;
    let dir = tempfile::tempdir().unwrap();
    lake_with(
        &[
            event("s1", 5, "bob"),
            event("s2", 6, "bob"),
            event("s3", 7, "eve"),
        ],
        "prod",
        dir.path(),
    );
    lake_with(&[event("s1", 6, "carol")], "staging", dir.path());
    let lake = dir.path().join("lake");
    let everything = open_lake(&lake, &SessionOptions::default()).await.unwrap();
    assert_eq!(
        count(&everything, "SELECT count(*) FROM secret_access").await,
        4
    );
    let scope = Scope {
        since: Some(chrono::Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap()),
        until: Some(chrono::Utc.with_ymd_and_hms(2026, 11, 22, 7, 0, 0).unwrap()),
        clusters: vec!["prod".to_owned()],
    };
    let opts = SessionOptions {
        scope,
        ..SessionOptions::default()
    };
    let scoped = open_lake(&lake, &opts).await.unwrap();
    // Only s2: s1 is before the window, s3 at its (open) end, carol in another cluster.
    assert_eq!(count(&scoped, "SELECT count(*) FROM audit_events").await, 1);
    assert_eq!(
        count(
            &scoped,
            "SELECT count(*) FROM secret_access WHERE user_name = 'bob' AND allowed"
        )
        .await,
        1
    );
    // The whole lake stays reachable under its own name.
    assert_eq!(
        count(&scoped, "SELECT count(*) FROM audit_events_unscoped").await,
        4
    );
}

#[tokio::test]
async fn views_answer_the_common_questions() {
    let dir = tempfile::tempdir().unwrap();
    let exec = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/pods/web-0/exec?command=sh&container=web&stdin=true","verb":"create","user":{"username":"mallory"},"sourceIPs":["198.51.100.7"],"objectRef":{"resource":"pods","subresource":"exec","namespace":"prod","name":"web-0","apiVersion":"v1"},"responseStatus":{"code":101},"stageTimestamp":"2026-11-22T05:00:00.000000Z"}"#;
    let exec_started = exec.replace("ResponseComplete", "ResponseStarted");
    let denied = event("d1", 5, "mallory").replace(r#""code":200"#, r#""code":403"#);
    lake_with(
        &[exec.to_owned(), exec_started, denied, POD.to_owned()],
        "prod",
        dir.path(),
    );
    let ctx = open_lake(&dir.path().join("lake"), &SessionOptions::default())
        .await
        .unwrap();
    // The two stages of one exec are one session.
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM exec_sessions WHERE pod = 'web-0' AND container = 'web' AND command = ['sh']").await,
        1
    );
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM failed_requests WHERE user_name = 'mallory' AND response_code = 403").await,
        1
    );
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM secret_access WHERE NOT allowed").await,
        1
    );
    assert_eq!(count(&ctx, "SELECT count(*) FROM requests").await, 3);
    assert_eq!(count(&ctx, "SELECT count(*) FROM rbac_changes").await, 0);
}

#[tokio::test]
async fn query_entry_points_cannot_write_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    lake_with(&[event("s1", 5, "bob")], "prod", dir.path());
    let ctx = open_lake(&dir.path().join("lake"), &SessionOptions::default())
        .await
        .unwrap();
    for sql in [
        "INSERT INTO audit_events SELECT * FROM audit_events",
        "CREATE TABLE t AS SELECT 1",
        "CREATE EXTERNAL TABLE passwd (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'",
        "DROP TABLE audit_events",
    ] {
        let err = run_sql(&ctx, sql).await.unwrap_err();
        assert!(err.is_caller_fault(), "{sql}: {err}");
        assert!(err.to_string().contains("not supported"), "{sql}: {err}");
    }
    assert_eq!(count(&ctx, "SELECT count(*) FROM audit_events").await, 1);
}

#[tokio::test]
async fn a_long_lived_session_sees_files_committed_after_its_first_query() {
    // The shell, the PostgreSQL endpoint and serve's scheduler keep one session for hours;
    // DataFusion's default list-files cache would freeze the lake at its first listing.
    let dir = tempfile::tempdir().unwrap();
    lake_with(&[event("a1", 5, "bob")], "prod", dir.path());
    let ctx = open_lake(&dir.path().join("lake"), &SessionOptions::default())
        .await
        .unwrap();
    assert_eq!(count(&ctx, "SELECT count(*) FROM audit_events").await, 1);
    // Same partition (a new file beside the first) and a new one.
    lake_with(
        &[event("a2", 5, "eve"), event("a3", 7, "eve")],
        "prod",
        dir.path(),
    );
    assert_eq!(count(&ctx, "SELECT count(*) FROM audit_events").await, 3);
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM audit_events WHERE user_name = 'eve' AND hour = '07'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn filters_run_in_selectivity_order_and_give_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..40)
        .map(|i| {
            event(
                &format!("e{i}"),
                5,
                if i % 10 == 0 {
                    "dave"
                } else {
                    "system:node:n1"
                },
            )
        })
        .collect();
    lake_with(&lines, "prod", dir.path());
    let ctx = open_lake(&dir.path().join("lake"), &SessionOptions::default())
        .await
        .unwrap();
    let sql = "SELECT count(*) FROM audit_events WHERE verb IN ('get', 'list') \
               AND response_code BETWEEN 200 AND 299 AND resource = 'secrets' \
               AND user_name NOT LIKE 'system:%'";
    assert_eq!(count(&ctx, sql).await, 4);
    let plan = run_sql(&ctx, &format!("EXPLAIN {sql}")).await.unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} not in {text}"))
    };
    // The scan's predicate tests the object and the human before verb and status.
    assert!(at("resource@") < at("user_name@"), "{text}");
    assert!(at("user_name@") < at("verb@"), "{text}");
    assert!(at("verb@") < at("response_code@"), "{text}");
}

#[tokio::test]
async fn string_columns_are_string_views_that_mix_with_plain_strings() {
    let dir = tempfile::tempdir().unwrap();
    lake_with(
        &[POD.to_owned(), event("s1", 5, "system:node:n1")],
        "prod",
        dir.path(),
    );
    let ctx = open_lake(&dir.path().join("lake"), &SessionOptions::default())
        .await
        .unwrap();
    let schema = ctx.table("audit_events").await.unwrap().schema().clone();
    for col in READ_AS_VIEWS {
        assert_eq!(
            schema.field_with_unqualified_name(col).unwrap().data_type(),
            &DataType::Utf8View,
            "{col}"
        );
    }
    // Views and plain strings compare, concatenate, union and join with each other.
    let rows = run_sql(
        &ctx,
        "SELECT resource || '/' || coalesce(subresource, '-') AS what, upper(user_name) AS who, \
                split_part(user_name, ':', 2) AS kind, CASE WHEN namespace IS NULL THEN name ELSE namespace END AS scope \
         FROM audit_events WHERE verb IN ('create', 'list') AND user_name NOT LIKE 'system:%' \
         UNION ALL SELECT 'x', 'y', 'z', 'w' ORDER BY what",
    )
    .await
    .unwrap();
    for format in [OutputFormat::Json, OutputFormat::Csv, OutputFormat::Table] {
        let mut out = Vec::new();
        write_batches(&rows, format, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("pods/-") && text.contains("ALICE") && text.contains("default"),
            "{text}"
        );
    }
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM audit_events a JOIN audit_events b ON a.user_name = b.name OR a.namespace = b.name OR a.resource = 'secrets'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn audit_events_reads_every_lake_column_and_the_partitions() {
    let schema = delta_table::read_schema(auditlake_ingest::lake::TableKind::AuditEvents)
        .await
        .unwrap();
    let file = audit_events_file_schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut want: Vec<&str> = file.fields().iter().map(|f| f.name().as_str()).collect();
    want.extend(auditlake_schemas::PARTITION_COLUMNS);
    assert_eq!(names, want);
}
