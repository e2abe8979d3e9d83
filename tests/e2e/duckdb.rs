//! DuckDB reads the lake as it is (Hive partitions, standard types) and sees the same rows.

use std::process::Command;

use crate::*;

pub fn duckdb_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("AUDITLAKE_REQUIRE_DUCKDB").is_none(),
            "AUDITLAKE_REQUIRE_DUCKDB is set but `python3 -c 'import duckdb'` fails (pip install duckdb)"
        );
        eprintln!(
            "skipping: DuckDB is not installed (pip install duckdb); .ci/run installs it and requires this test"
        );
    }
    ok
}

#[test]
fn duckdb_reads_the_lake_unchanged_and_counts_the_same_rows() {
    if !duckdb_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod", &[&repo().join("samples/audit.log")]);
    ingest(&lake, "staging", &[&repo().join("samples/audit.log")]);
    let glob = format!("{}/audit_events/**/*.parquet", lake.display());
    let script = format!(
        r#"
import duckdb, json
t = "read_parquet('{glob}', hive_partitioning=true)"
c = duckdb.connect()
q = lambda sql: c.sql(sql.replace("TBL", t)).fetchall()
print(json.dumps({{
  "rows": q("SELECT count(*) FROM TBL")[0][0],
  "per_cluster": dict(q("SELECT cluster, count(*) FROM TBL GROUP BY cluster")),
  "privileged": q("SELECT count(*) FROM TBL WHERE pod_privileged AND cluster = 'prod'")[0][0],
  "anonymous_allowed": q("SELECT count(*) FROM TBL WHERE user_name = 'system:anonymous' AND annotations['authorization.k8s.io/decision'] = 'allow' AND cluster = 'prod'")[0][0],
  "groups": q("SELECT count(*) FROM TBL WHERE list_contains(user_groups, 'system:nodes') AND cluster = 'prod'")[0][0],
  "hours": q("SELECT count(DISTINCT hour) FROM TBL")[0][0],
  "last": q("SELECT max(stage_at)::VARCHAR FROM TBL")[0][0],
}}))
"#
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duck: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(duck["rows"].as_i64().unwrap(), count(&lake, "audit_events"));
    assert_eq!(
        duck["per_cluster"]["prod"].as_i64().unwrap(),
        count(&lake, "audit_events WHERE cluster = 'prod'")
    );
    assert_eq!(
        duck["privileged"].as_i64().unwrap(),
        count(
            &lake,
            "audit_events WHERE pod_privileged AND cluster = 'prod'"
        )
    );
    assert_eq!(
        duck["anonymous_allowed"].as_i64().unwrap(),
        count(
            &lake,
            "audit_events WHERE user_name = 'system:anonymous' AND authz_decision = 'allow' AND cluster = 'prod'"
        )
    );
    assert_eq!(
        duck["groups"].as_i64().unwrap(),
        count(
            &lake,
            "audit_events WHERE array_has(user_groups, 'system:nodes') AND cluster = 'prod'"
        )
    );
    assert_eq!(duck["hours"], 2);
    assert_eq!(duck["last"], "2026-11-20 09:18:01.579948+00");
}
