//! kill -9 in the middle of an ingest: only complete files are visible (committed to the lake's
//! Delta log), and running the ingest again loses nothing and duplicates nothing.

use std::time::{Duration, Instant};

use crate::*;

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>, other: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.ends_with("_delta_log") {
            continue;
        }
        if p.is_dir() {
            parquet_files(&p, out, other);
        } else if p.extension().is_some_and(|e| e == "parquet") {
            out.push(p);
        } else {
            other.push(p);
        }
    }
}

/// A generated log big enough to kill an ingest of it midway: its path and its event count.
fn big_log(dir: &Path) -> (PathBuf, i64) {
    let log = dir.join("big.log");
    run_ok(
        bin()
            .args(["generate", "--events", "120000", "--seed", "3", "--out"])
            .arg(&log),
    );
    let events = std::fs::read_to_string(&log).unwrap().lines().count() as i64;
    (log, events)
}

#[test]
fn kill_9_mid_ingest_leaves_only_complete_files_and_a_rerun_completes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (log, events) = big_log(dir.path());
    let lake = dir.path().join("lake");
    // Small files so that many commits happen before the kill.
    let cfg = dir.path().join("auditlake.toml");
    std::fs::write(&cfg, "[ingest]\nmax_file_rows = 3000\nmax_buffer_mb = 8\n").unwrap();

    let mut child = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["ingest", "--quiet", "--lake"])
        .arg(&lake)
        .arg(&log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let (mut files, mut other) = (Vec::new(), Vec::new());
        parquet_files(&lake.join("audit_events"), &mut files, &mut other);
        // Version 0 creates the table; from version 2 on, data commits have been made.
        let commits = lake.join("audit_events/_delta_log/00000000000000000002.json");
        if files.len() >= 4 && commits.exists() {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "ingest finished before it could be killed; make the input bigger"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no files committed in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "ingest finished before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (mut files, mut other) = (Vec::new(), Vec::new());
    parquet_files(&lake.join("audit_events"), &mut files, &mut other);
    assert!(
        other.is_empty(),
        "only complete .parquet files are visible under audit_events: {other:?}"
    );
    // Every visible file reads completely (this decodes every row, not just footers).
    let rows = query(
        &lake,
        "SELECT count(*) AS n, count(DISTINCT audit_id || stage) AS k, sum(length(audit_id)) AS bytes FROM audit_events",
    );
    let partial = rows[0]["n"].as_i64().unwrap();
    assert!(
        partial > 0 && partial < events,
        "killed mid-way: {partial} of {events}"
    );
    assert_eq!(rows[0]["k"].as_i64().unwrap(), partial, "no duplicates");

    // Leftover temp files from the killed writer are cleaned up by the next writer.
    let summary = ingest(&lake, "default", &[&log]);
    assert_eq!(summary["events"].as_i64().unwrap(), events);
    assert_eq!(summary["duplicates_skipped"].as_i64().unwrap(), partial);
    assert_eq!(summary["rows_written"].as_i64().unwrap(), events - partial);
    let rows = query(
        &lake,
        "SELECT count(*) AS n, count(DISTINCT audit_id || stage) AS k FROM audit_events",
    );
    assert_eq!(rows[0]["n"].as_i64().unwrap(), events, "nothing lost");
    assert_eq!(rows[0]["k"].as_i64().unwrap(), events, "nothing duplicated");
    assert_eq!(std::fs::read_dir(lake.join("_tmp")).unwrap().count(), 0);
}

/// The same on an object-store lake (moto): kill -9 once commits have landed in the bucket; the
/// table holds only complete commits, and a rerun completes it exactly.
#[test]
fn kill_9_mid_ingest_to_s3_leaves_complete_commits_and_a_rerun_completes_exactly() {
    use crate::lake::{S3Server, s3_tools};
    if s3_tools().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (log, events) = big_log(dir.path());
    let s3 = S3Server::start();
    s3.create_bucket("crash");
    let url = "s3://crash/lake";
    let cfg = dir.path().join("auditlake.toml");
    std::fs::write(&cfg, "[ingest]\nmax_file_rows = 3000\nmax_buffer_mb = 8\n").unwrap();

    let mut child = s3
        .bin()
        .arg("--config")
        .arg(&cfg)
        .args(["ingest", "--quiet", "--lake", url])
        .arg(&log)
        .spawn()
        .unwrap();
    // Kill once the third commit (two data commits after the table's creation) is in the bucket.
    let probe = format!(
        r#"
import boto3, time, sys
s3 = boto3.client("s3", endpoint_url="{}", aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
deadline = time.time() + 120
while time.time() < deadline:
    r = s3.list_objects_v2(Bucket="crash", Prefix="lake/audit_events/_delta_log/00000000000000000002.json")
    if r.get("KeyCount", 0):
        sys.exit(0)
    time.sleep(0.02)
sys.exit(1)
"#,
        s3.endpoint
    );
    let waited = Command::new("python3")
        .args(["-c", &probe])
        .status()
        .unwrap();
    assert!(waited.success(), "no data commits in 2 minutes");
    assert!(
        child.try_wait().unwrap().is_none(),
        "ingest finished before it could be killed; make the input bigger"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let sql = "SELECT count(*) AS n, count(DISTINCT audit_id || stage) AS k FROM audit_events";
    let rows = s3.query(url, sql);
    let partial = rows[0]["n"].as_i64().unwrap();
    assert!(
        partial > 0 && partial < events,
        "killed mid-way: {partial} of {events}"
    );
    assert_eq!(rows[0]["k"].as_i64().unwrap(), partial, "no duplicates");

    let mut again = s3.bin();
    let out = run_ok(again.args(["ingest", "--json", "--lake", url]).arg(&log));
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["events"].as_i64().unwrap(), events);
    assert_eq!(summary["duplicates_skipped"].as_i64().unwrap(), partial);
    assert_eq!(summary["rows_written"].as_i64().unwrap(), events - partial);
    let rows = s3.query(url, sql);
    assert_eq!(rows[0]["n"].as_i64().unwrap(), events, "nothing lost");
    assert_eq!(rows[0]["k"].as_i64().unwrap(), events, "nothing duplicated");
    // The chain holds (the killed run's uncommitted uploads are younger than verify's grace).
    let mut v = s3.bin();
    let out = run(v.args(["verify", "--lake", url]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
