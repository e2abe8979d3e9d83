use std::io::Write;

use crate::*;

#[test]
fn samples_ingest_and_every_event_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let sample = repo().join("samples/audit.log");
    let lines = std::fs::read_to_string(&sample).unwrap().lines().count() as u64;
    let summary = ingest(&lake, "prod-eu", &[&sample]);
    assert_eq!(summary["events"], lines);
    assert_eq!(summary["rows_written"], lines);
    assert_eq!(summary["rejected"], 0);
    assert_eq!(count(&lake, "audit_events"), lines as i64);
    // two hours of event time → two partitions
    let hours = query(
        &lake,
        "SELECT DISTINCT cluster, date, hour FROM audit_events ORDER BY hour",
    );
    assert_eq!(hours.len(), 2, "{hours:?}");
    assert_eq!(hours[0]["cluster"], "prod-eu");
    assert!(
        lake.join("audit_events/cluster=prod-eu/date=2026-11-20/hour=08")
            .is_dir()
    );

    // Again: the same input adds nothing.
    let again = ingest(&lake, "prod-eu", &[&sample]);
    assert_eq!(again["rows_written"], 0);
    assert_eq!(again["duplicates_skipped"], lines);
    assert_eq!(count(&lake, "audit_events"), lines as i64);
    let distinct = query(
        &lake,
        "SELECT count(*) AS n FROM (SELECT DISTINCT cluster, audit_id, stage FROM audit_events)",
    );
    assert_eq!(distinct[0]["n"], lines);

    // The same events for another cluster are other events.
    ingest(&lake, "staging", &[&sample]);
    assert_eq!(
        count(&lake, "audit_events WHERE cluster = 'staging'"),
        lines as i64
    );
}

#[test]
fn human_summary_stdin_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let sample = std::fs::read(repo().join("samples/audit.log")).unwrap();
    let head: Vec<u8> = sample
        .split(|b| *b == b'\n')
        .take(100)
        .flat_map(|l| l.iter().copied().chain([b'\n']))
        .collect();
    let mut child = bin()
        .args(["ingest", "--lake"])
        .arg(&lake)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&head).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("ingested 100 events from 1 input"), "{text}");
    assert!(text.contains("written:     100 rows"), "{text}");
    assert_eq!(count(&lake, "audit_events WHERE cluster = 'default'"), 100);

    let gz_path = dir.path().join("audit.log.1.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&sample).unwrap();
    std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();
    let summary = ingest(&lake, "default", &[&gz_path]);
    assert_eq!(summary["duplicates_skipped"], 100);
    assert_eq!(
        count(&lake, "audit_events"),
        sample.iter().filter(|b| **b == b'\n').count() as i64
    );
}

#[test]
fn malformed_lines_are_quarantined_and_the_rest_lands() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let sample = std::fs::read_to_string(repo().join("samples/audit.log")).unwrap();
    let mut lines: Vec<&str> = sample.lines().take(10).collect();
    lines.insert(3, "{\"kind\":\"Event\",\"auditID\":\"x\"");
    lines.insert(6, "garbage \u{1F4A5}");
    let path = dir.path().join("mixed.log");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let summary = ingest(&lake, "c1", &[&path]);
    assert_eq!(summary["events"], 10);
    assert_eq!(summary["rejected"], 2);
    let qfile = summary["quarantine_file"].as_str().unwrap();
    let records: Vec<serde_json::Value> = std::fs::read_to_string(qfile)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0]["raw"], "{\"kind\":\"Event\",\"auditID\":\"x\"");
    assert_eq!(records[0]["position"]["line"], 4);
    assert!(
        records[0]["reason"]
            .as_str()
            .unwrap()
            .contains("EOF while parsing"),
        "{}",
        records[0]
    );
    assert_eq!(records[1]["raw"], "garbage \u{1F4A5}");
    assert_eq!(records[1]["reason"], "not a JSON object or array");
    assert_eq!(records[1]["cluster"], "c1");
}

/// A fault of the environment (the lake's parent is a regular file: the same as root as for
/// anyone) exits 3, not 2, and the message says the OS error once.
#[test]
fn an_environment_fault_exits_3_and_says_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let out = run(bin()
        .args(["ingest", "--cluster", "prod", "--lake"])
        .arg(file.join("lake"))
        .arg(repo().join("samples/audit.log")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("a-file/lake"), "names the path: {err}");
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
    assert_eq!(err.matches("os error 20").count(), 1, "{err}");
}

#[test]
fn bad_arguments_and_config_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(bin()
        .args(["ingest", "--lake"])
        .arg(dir.path().join("l"))
        .arg(dir.path().join("missing.log")));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing.log") && err.contains("No such file"),
        "{err}"
    );

    let out = run(bin()
        .args(["ingest", "--cluster", "a/b", "--lake"])
        .arg(dir.path().join("l"))
        .arg("-"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid cluster name \"a/b\""));

    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[ingest]\nclustr = \"x\"\n").unwrap();
    let out = run(bin().arg("--config").arg(&cfg).args(["query", "SELECT 1"]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field `clustr`") && err.contains("bad.toml"),
        "{err}"
    );
}

#[test]
fn config_file_and_env_set_the_lake_and_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("auditlake.toml");
    let lake = dir.path().join("from-config");
    std::fs::write(
        &cfg,
        format!(
            "[lake]\npath = {:?}\n[ingest]\ncluster = \"cfg-cluster\"\n",
            lake.display().to_string()
        ),
    )
    .unwrap();
    let sample = repo().join("samples/audit.log");
    run_ok(
        bin()
            .arg("--config")
            .arg(&cfg)
            .args(["ingest", "--quiet"])
            .arg(&sample),
    );
    assert!(lake.join("audit_events/cluster=cfg-cluster").is_dir());
    // env beats the config file, flag beats env
    run_ok(
        bin()
            .env("AUDITLAKE_CONFIG", &cfg)
            .env("AUDITLAKE_CLUSTER", "env-cluster")
            .args(["ingest", "--quiet"])
            .arg(&sample),
    );
    assert!(lake.join("audit_events/cluster=env-cluster").is_dir());
    run_ok(
        bin()
            .env("AUDITLAKE_CONFIG", &cfg)
            .env("AUDITLAKE_CLUSTER", "env-cluster")
            .args(["ingest", "--quiet", "--cluster", "flag-cluster"])
            .arg(&sample),
    );
    assert!(lake.join("audit_events/cluster=flag-cluster").is_dir());
}

#[test]
fn committed_samples_match_the_generator() {
    let out = run(bin().args([
        "generate",
        "--events",
        "3000",
        "--seed",
        "7",
        "--rate",
        "0.5",
        "--scenarios",
        "--start",
        "2026-11-20T08:20:00Z",
    ]));
    assert!(out.status.success());
    let committed = std::fs::read(repo().join("samples/audit.log")).unwrap();
    assert!(
        out.stdout == committed,
        "samples/audit.log differs from the generator's output; regenerate it with the command in samples/README.md"
    );
}

#[test]
fn managed_cloud_exports_land_with_their_format_and_their_losses_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let aks = ingest(
        &lake,
        "aks-prod",
        &[&repo().join("samples/cloud/aks-diagnostics.json")],
    );
    assert_eq!(
        (aks["events"].as_i64(), aks["rejected"].as_i64()),
        (Some(6), Some(1)),
        "{aks}"
    );
    let eks = ingest(
        &lake,
        "eks-prod",
        &[&repo().join("samples/cloud/eks-subscription.b64")],
    );
    assert_eq!(
        (eks["events"].as_i64(), eks["rejected"].as_i64()),
        (Some(6), Some(1)),
        "{eks}"
    );
    let gke = ingest(
        &lake,
        "gke-prod",
        &[&repo().join("samples/cloud/gke-logentries.jsonl")],
    );
    assert_eq!(
        (gke["events"].as_i64(), gke["rejected"].as_i64()),
        (Some(3), Some(0)),
        "{gke}"
    );
    let g = query(
        &lake,
        "SELECT verb, resource, subresource, namespace, name, user_name, response_code, authz_decision, role_ref_name \
         FROM audit_events WHERE cluster = 'gke-prod' ORDER BY stage_at",
    );
    assert_eq!(
        (g[0]["subresource"].as_str(), g[0]["name"].as_str()),
        (Some("exec"), Some("api-7c9d"))
    );
    assert_eq!(g[1]["role_ref_name"], "cluster-admin");
    assert_eq!(
        (
            g[2]["response_code"].as_i64(),
            g[2]["authz_decision"].as_str()
        ),
        (Some(403), Some("forbid"))
    );
    let rows = query(
        &lake,
        "SELECT cluster, source_format, count(*) AS n FROM audit_events WHERE cluster <> 'gke-prod' GROUP BY cluster, source_format ORDER BY cluster",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (
            rows[0]["cluster"].as_str(),
            rows[0]["source_format"].as_str(),
            rows[0]["n"].as_i64()
        ),
        (Some("aks-prod"), Some("aks-diagnostics"), Some(6))
    );
    assert_eq!(
        (
            rows[1]["cluster"].as_str(),
            rows[1]["source_format"].as_str(),
            rows[1]["n"].as_i64()
        ),
        (Some("eks-prod"), Some("eks-cloudwatch"), Some(6))
    );
    let quarantine = |summary: &serde_json::Value| {
        std::fs::read_to_string(summary["quarantine_file"].as_str().unwrap()).unwrap()
    };
    assert!(quarantine(&aks).contains("skipped-too-big-size-object"));
    let eks_q = quarantine(&eks);
    assert!(
        eks_q.contains("truncated by CloudWatch Logs")
            && eks_q.contains("auditID 6c22f3d6-50d3-4f31-83ea-58f99a3c62a6"),
        "{eks_q}"
    );
}

/// AKS diagnostic settings → storage account: append blobs of one record per line
/// (`insights-logs-kube-audit/…/PT1H.json`). They were quarantined as "missing auditID".
#[test]
fn an_aks_storage_export_of_one_record_per_line_lands() {
    let dir = tempfile::tempdir().unwrap();
    let id = "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-WEU-1";
    let event = |audit_id: &str| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{audit_id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/db","verb":"get","user":{{"username":"alice"}},"sourceIPs":["20.1.2.3"],"objectRef":{{"resource":"secrets","namespace":"prod","name":"db","apiVersion":"v1"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"2026-11-22T10:00:00.100000Z","stageTimestamp":"2026-11-22T10:00:00.120000Z"}}"#
        )
    };
    let lines: Vec<String> = [
        serde_json::json!({"time": "2026-11-22T10:00:00Z", "resourceId": id, "category": "kube-audit",
            "properties": {"log": event("aks-1"), "stream": "stdout", "pod": "kube-apiserver-1"}}),
        serde_json::json!({"time": "2026-11-22T10:00:01Z", "resourceId": id, "category": "kube-apiserver",
            "properties": {"log": "I1122 10:00:01 not an audit event"}}),
        serde_json::json!({"time": "2026-11-22T10:00:02Z", "resourceId": id, "category": "kube-audit-admin",
            "properties": {"log": event("aks-2")}}),
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    let input = dir.path().join("PT1H.json");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let lake = dir.path().join("lake");
    // A source bound to another cluster than the resource id names quarantines the records
    // (a credential bound to a cluster writes only that cluster).
    let elsewhere = ingest(&dir.path().join("other"), "aks-prod", &[&input]);
    assert_eq!(elsewhere["rows_written"], 0, "{elsewhere}");
    assert_eq!(elsewhere["rejected"], 2, "{elsewhere}");
    let summary = ingest(&lake, "aks-weu-1", &[&input]);
    assert_eq!(summary["rows_written"], 2, "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");
    let rows = query(
        &lake,
        "SELECT audit_id, cluster, source_format FROM audit_events ORDER BY audit_id",
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["audit_id"], "aks-1");
    assert_eq!(rows[0]["cluster"], "aks-weu-1");
    assert_eq!(rows[0]["source_format"], "aks-diagnostics");
}
