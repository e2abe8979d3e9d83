use super::*;
use crate::{SessionOptions, open_lake, run_sql};
use auditlake_ingest::{IngestOptions, Input, Lake, ingest};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use std::path::Path;

fn event(id: &str, hour: u32, user: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/secrets","verb":"list","user":{{"username":"{user}"}},"sourceIPs":["10.1.1.1"],"objectRef":{{"resource":"secrets","apiVersion":"v1"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-11-22T{hour:02}:00:00.000000Z"}}"#
    )
}

fn ingest_into(lake: &Path, cluster: &str, lines: &[String]) {
    let path = lake.with_extension(format!("{cluster}.log"));
    std::fs::write(&path, lines.join("\n")).unwrap();
    let report = ingest(
        &Lake::new(lake),
        &[Input::Path(path)],
        &IngestOptions::new(cluster).unwrap(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(report.rejected, 0);
}

/// A lake of two clusters over several hours.
fn sample_lake(dir: &Path) -> std::path::PathBuf {
    let lake = dir.join("lake");
    ingest_into(
        &lake,
        "prod",
        &[
            event("a", 5, "bob"),
            event("b", 6, "bob"),
            event("c", 6, "eve"),
        ],
    );
    ingest_into(&lake, "staging", &[event("d", 5, "carol")]);
    lake
}

fn ballista() -> SessionOptions {
    SessionOptions {
        // Nothing listens there: these tests only plan, and every refusal comes before a job is
        // submitted.
        engine: Engine::parse("ballista://127.0.0.1:9").unwrap(),
        ..SessionOptions::default()
    }
}

#[test]
fn engine_spellings() {
    assert_eq!(Engine::parse("local").unwrap(), Engine::Local);
    assert_eq!(
        Engine::parse("ballista://sched.example:50055").unwrap(),
        Engine::Ballista {
            host: "sched.example".into(),
            port: 50055
        }
    );
    assert_eq!(
        Engine::parse("ballista://sched").unwrap().to_string(),
        "ballista://sched:50050"
    );
    for bad in [
        "http://x:1",
        "ballista://",
        "ballista://x:1/path",
        "nonsense",
    ] {
        let err = Engine::parse(bad).unwrap_err().to_string();
        assert!(err.contains("ballista://HOST:PORT"), "{bad}: {err}");
    }
}

#[tokio::test]
async fn the_ballista_session_keeps_auditlake_functions_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sample_lake(dir.path());
    let ctx = open_lake(&lake, &ballista()).await.unwrap();
    let state = ctx.state();
    let date_trunc = &state.scalar_functions()["date_trunc"];
    assert!(
        date_trunc
            .inner()
            .downcast_ref::<crate::date_trunc::UtcDateTrunc>()
            .is_some(),
        "date_trunc is DataFusion's again"
    );
    for f in ["image_repos", "ip_in_cidrs", "json_get_str", "is_public_ip"] {
        assert!(state.scalar_functions().contains_key(f), "{f} missing");
        assert!(cluster_functions().contains(f), "{f} not on the cluster");
    }
}

async fn plan_error(ctx: &SessionContext, sql: &str) -> String {
    let df = ctx.sql(sql).await.unwrap();
    match df.create_physical_plan().await {
        Ok(_) => panic!("{sql}: planned for the cluster"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn what_the_cluster_cannot_run_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sample_lake(dir.path());
    let ctx = open_lake(&lake, &ballista()).await.unwrap();
    // A table that is not one of the lake's (an in-memory one of this client).
    let batch = datafusion::arrow::record_batch::RecordBatch::try_from_iter([(
        "n",
        Arc::new(datafusion::arrow::array::Int64Array::from(vec![1]))
            as datafusion::arrow::array::ArrayRef,
    )])
    .unwrap();
    ctx.register_batch("scratch", batch).unwrap();
    let err = plan_error(&ctx, "SELECT count(*) FROM scratch").await;
    assert!(
        err.contains("table `scratch`") && err.contains("--engine local"),
        "{err}"
    );
    // The findings are a Delta table of the lake: they plan for the cluster.
    let df = ctx.sql("SELECT count(*) FROM incidents").await.unwrap();
    df.create_physical_plan().await.unwrap();
    // A function only this client has.
    ctx.register_udf(datafusion::logical_expr::create_udf(
        "local_only",
        vec![datafusion::arrow::datatypes::DataType::Int64],
        datafusion::arrow::datatypes::DataType::Int64,
        datafusion::logical_expr::Volatility::Immutable,
        Arc::new(|args| Ok(args[0].clone())),
    ));
    let err = plan_error(&ctx, "SELECT local_only(response_code) FROM audit_events").await;
    assert!(err.contains("function `local_only`"), "{err}");
    // Writes are refused before anything is submitted.
    let target = dir.path().join("out");
    let err = plan_error(
        &ctx,
        &format!(
            "COPY (SELECT user_name FROM audit_events) TO '{}' STORED AS PARQUET",
            target.display()
        ),
    )
    .await;
    assert!(
        err.to_lowercase().contains("not supported") || err.contains("DML"),
        "{err}"
    );
    assert!(!target.exists());
}

#[tokio::test]
async fn the_cluster_session_refuses_writes_too() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new_with_state(
        cluster_state(SessionConfig::new_with_ballista(), Arc::default()).unwrap(),
    );
    let target = dir.path().join("out");
    let err = plan_error(
        &ctx,
        &format!(
            "COPY (SELECT 1 AS x) TO '{}' STORED AS PARQUET",
            target.display()
        ),
    )
    .await;
    assert!(!err.is_empty());
    assert!(!target.exists());
}

#[tokio::test]
async fn lake_tables_cross_the_wire_as_table_and_lake_only() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sample_lake(dir.path());
    let ctx = open_lake(&lake, &SessionOptions::default()).await.unwrap();
    let provider = ctx.table_provider("audit_events").await.unwrap();
    let table_ref = TableReference::bare("audit_events");
    let mut buf = Vec::new();
    LakeCodec::client()
        .try_encode_table_provider(&table_ref, provider.clone(), &mut buf)
        .unwrap();
    let text = String::from_utf8(buf.clone()).unwrap();
    let lake_url = Lake::new(&lake).url().clone();
    assert_eq!(
        text,
        format!(
            "auditlake-delta-table/2\n{}\naudit_events\n{lake_url}",
            build_fingerprint()
        ),
        "only the build, the table and the lake travel"
    );
    let task = ctx.task_ctx();
    let decoded = LakeCodec::serving(lake_url.clone(), HashMap::new())
        .try_decode_table_provider(&buf, &table_ref, provider.schema(), &task)
        .unwrap();
    assert!(decoded.downcast_ref::<LiveDeltaTable>().is_some());
    let other = Url::parse("s3://other-bucket/lake/").unwrap();
    let err = LakeCodec::serving(other, HashMap::new())
        .try_decode_table_provider(&buf, &table_ref, provider.schema(), &task)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("serves the lake s3://other-bucket/lake/") && err.contains(lake_url.as_str()),
        "{err}"
    );

    // A plan from another auditlake build is refused, naming both builds, before its table is
    // opened: the same bytes with the build changed, and an encoding before builds were sent.
    let serving = LakeCodec::serving(lake_url.clone(), HashMap::new());
    let forged = text.replace(build_fingerprint(), "0.0.9+0000000000000000");
    let err = serving
        .try_decode_table_provider(forged.as_bytes(), &table_ref, provider.schema(), &task)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("cluster runs auditlake {}", build_fingerprint()))
            && err.contains("the client 0.0.9+0000000000000000")
            && err.contains("same auditlake build"),
        "{err}"
    );
    let old = format!("auditlake-delta-table/1\naudit_events\n{lake_url}");
    let err = serving
        .try_decode_table_provider(old.as_bytes(), &table_ref, provider.schema(), &task)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encodes tables in format 1"), "{err}");
    let truncated = format!(
        "auditlake-delta-table/2\n{}\naudit_events",
        build_fingerprint()
    );
    let err = serving
        .try_decode_table_provider(truncated.as_bytes(), &table_ref, provider.schema(), &task)
        .unwrap_err()
        .to_string();
    assert!(err.contains("malformed table `audit_events`"), "{err}");
    // The fingerprint names the version and a digest of the function names.
    let (version, digest) = build_fingerprint().split_once('+').unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(digest.len(), 16);
}

/// The scan the scheduler plans reads exactly what delta-rs' scan reads, partition pruning
/// included.
#[tokio::test]
async fn the_plain_parquet_scan_reads_what_the_delta_scan_reads() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sample_lake(dir.path());
    let ctx = open_lake(&lake, &SessionOptions::default()).await.unwrap();
    let provider = ctx.table_provider("audit_events").await.unwrap();
    let url = provider
        .downcast_ref::<LiveDeltaTable>()
        .unwrap()
        .url()
        .clone();
    ctx.register_table(
        "plain",
        Arc::new(
            LiveDeltaTable::new(url, HashMap::new(), provider.schema()).with_plain_parquet_scan(),
        ),
    )
    .unwrap();
    for sql in [
        "SELECT * FROM {t} ORDER BY cluster, audit_id, stage",
        "SELECT audit_id, hour, user_name FROM {t} WHERE cluster = 'prod' AND hour = '06' ORDER BY audit_id",
        "SELECT cluster, date, count(*) FROM {t} GROUP BY cluster, date ORDER BY cluster",
        "SELECT user_name FROM {t} WHERE user_name = 'carol'",
        "SELECT count(*) FROM {t} WHERE cluster = 'nowhere'",
    ] {
        let want = run_sql(&ctx, &sql.replace("{t}", "audit_events"))
            .await
            .unwrap();
        let got = run_sql(&ctx, &sql.replace("{t}", "plain")).await.unwrap();
        assert_eq!(
            pretty_format_batches(&got).unwrap().to_string(),
            pretty_format_batches(&want).unwrap().to_string(),
            "{sql}"
        );
    }
    // Partition filters prune files: only prod's hour-06 file is scanned.
    let plan = ctx
        .sql("SELECT audit_id FROM plain WHERE cluster = 'prod' AND hour = '06'")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let shown = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    assert_eq!(shown.matches(".parquet").count(), 1, "{shown}");
}
