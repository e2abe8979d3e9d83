//! `auditlake compact`: many small files become few, the rows stay exactly the same, and other
//! engines still read the lake.

use std::process::Command;

use crate::*;

fn parquet_count(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            n += parquet_count(&p);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            n += 1;
        }
    }
    n
}

#[test]
fn compaction_merges_small_files_without_changing_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // Twelve ingests of consecutive slices: many small files per partition, as streaming leaves.
    let log = std::fs::read_to_string(repo().join("samples/audit.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    for (i, chunk) in lines.chunks(lines.len().div_ceil(12)).enumerate() {
        let path = dir.path().join(format!("slice-{i}.log"));
        std::fs::write(&path, chunk.join("\n")).unwrap();
        ingest(&lake, "prod", &[&path]);
    }
    let fingerprint = "SELECT count(*) AS n, count(DISTINCT audit_id || stage) AS k, \
        sum(length(coalesce(request_object, ''))) AS body, min(stage_at) AS first, max(stage_at) AS last, \
        sum(CASE WHEN pod_privileged THEN 1 ELSE 0 END) AS privileged FROM audit_events";
    let before = query(&lake, fingerprint);
    let files_before = parquet_count(&lake.join("audit_events"));
    let hours = query(
        &lake,
        "SELECT count(DISTINCT cluster || date || hour) AS n FROM audit_events",
    )[0]["n"]
        .as_u64()
        .unwrap() as usize;
    assert!(
        files_before >= 4 * hours,
        "{files_before} files in {hours} partitions"
    );

    let out = run_ok(
        bin()
            .args(["compact", "--json", "--min-age", "0s", "--lake"])
            .arg(&lake),
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The replaced files stay on disk, out of the table, for the vacuum.
    assert_eq!(
        parquet_count(&lake.join("audit_events")),
        files_before + hours
    );
    assert_eq!(
        query(&lake, fingerprint),
        before,
        "compaction changed the rows"
    );
    // The vacuum deletes them once the grace period has passed (here: none), and records it.
    let config = dir.path().join("vacuum.toml");
    std::fs::write(&config, "[retention]\nvacuum_grace = \"0s\"\n").unwrap();
    let out = run_ok(
        bin()
            .args(["retention", "--json", "--config"])
            .arg(&config)
            .arg("--lake")
            .arg(&lake),
    );
    let vacuum: serde_json::Value = serde_json::from_str(&out).unwrap();
    let files_after = parquet_count(&lake.join("audit_events"));
    // The report covers the partitions it compacted (a partition with fewer small files than
    // `min_small_files` is left as it is).
    let removed =
        report["files_before"].as_u64().unwrap() - report["files_after"].as_u64().unwrap();
    assert_eq!(removed as usize, files_before - files_after, "{report}");
    assert_eq!(
        vacuum["vacuumed"].as_array().unwrap().len(),
        files_before,
        "{vacuum}"
    );
    assert_eq!(
        files_after, hours,
        "one file per partition after compaction and vacuum"
    );
    let logged = query(
        &lake,
        "SELECT sum(files) AS n FROM retention_log WHERE action = 'vacuum'",
    );
    assert_eq!(logged[0]["n"].as_u64(), Some(files_before as u64));
    assert_eq!(
        query(&lake, fingerprint),
        before,
        "compaction changed the rows"
    );
    assert!(
        std::fs::read_dir(lake.join("_state/compact"))
            .unwrap()
            .next()
            .is_none(),
        "staging left behind"
    );

    // The default minimum age keeps hours younger than an hour (the sample's hours are old).
    let out = run_ok(bin().args(["compact", "--json", "--lake"]).arg(&lake));
    let again: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["partitions"], 0, "nothing left to compact: {again}");
    // Re-ingesting after compaction still adds no duplicate.
    let summary = ingest(&lake, "prod", &[&repo().join("samples/audit.log")]);
    assert_eq!(summary["rows_written"], 0);

    if crate::duckdb::duckdb_available() {
        let glob = format!("{}/audit_events/**/*.parquet", lake.display());
        let out = Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import duckdb; print(duckdb.sql(\"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true)\").fetchall()[0][0])"
                ),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n: i64 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(n, before[0]["n"].as_i64().unwrap());
    }
}
