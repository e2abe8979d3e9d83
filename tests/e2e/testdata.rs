//! The shared, real audit data: every event lands.

use crate::*;

#[test]
fn real_apiserver_log_lands_completely() {
    let Some(data) = shared_testdata() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary = ingest(
        &lake,
        "real",
        &[&data.join("real-apiserver-metadata/audit.log")],
    );
    assert_eq!(summary["events"], 1132);
    assert_eq!(summary["rejected"], 0);
    assert_eq!(count(&lake, "audit_events"), 1132);
    let stages = query(
        &lake,
        "SELECT stage, count(*) AS n FROM audit_events GROUP BY stage ORDER BY stage",
    );
    let names: Vec<&str> = stages
        .iter()
        .map(|r| r["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Panic",
            "RequestReceived",
            "ResponseComplete",
            "ResponseStarted"
        ]
    );
    // mallory's cluster-admin binding is a Metadata-level event: no body, but the name is there.
    assert_eq!(
        count(
            &lake,
            "audit_events WHERE resource = 'clusterrolebindings' AND name = 'mallory-cluster-admin' AND verb = 'create' AND stage = 'ResponseComplete'"
        ),
        1
    );
}

#[test]
fn replaying_the_webhook_posts_gives_exactly_the_log() {
    let Some(data) = shared_testdata() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let from_log = dir.path().join("log-lake");
    let from_posts = dir.path().join("post-lake");
    ingest(
        &from_log,
        "real",
        &[&data.join("real-apiserver-metadata/audit.log")],
    );
    let bodies = real_webhook_posts(&data);
    let refs: Vec<&Path> = bodies.iter().map(PathBuf::as_path).collect();
    let summary = ingest(&from_posts, "real", &refs);
    assert_eq!(summary["rejected"], 0);
    assert_eq!(summary["rows_written"], 1132);
    let keys = |lake: &Path| {
        query(
            lake,
            "SELECT audit_id, stage FROM audit_events ORDER BY audit_id, stage",
        )
    };
    assert_eq!(keys(&from_log), keys(&from_posts));
}

#[test]
fn falco_traces_land_and_the_malformed_one_is_quarantined() {
    let Some(data) = shared_testdata() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // The traces are independent test cases, and two pairs of them reuse an auditID: each goes
    // to its own cluster, as each case runs alone in Falco's suite.
    let mut traces: Vec<PathBuf> = std::fs::read_dir(data.join("falco-k8s-audit/trace_files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    traces.sort();
    let (mut events, mut rejected, mut quarantine) = (0, 0, Vec::new());
    for (i, trace) in traces.iter().enumerate() {
        let cluster = format!("trace-{i:02}");
        let summary = ingest(&lake, &cluster, &[trace]);
        events += summary["events"].as_i64().unwrap();
        rejected += summary["rejected"].as_i64().unwrap();
        if let Some(q) = summary["quarantine_file"].as_str() {
            quarantine.push(std::fs::read_to_string(q).unwrap());
        }
    }
    assert_eq!((events, rejected), (51, 1));
    assert_eq!(count(&lake, "audit_events"), 51);
    assert_eq!(quarantine.len(), 1);
    let record: serde_json::Value = serde_json::from_str(quarantine[0].trim()).unwrap();
    assert_eq!(record["raw"], "{\"kind\": 0}");
    assert!(
        record["position"]["source"]
            .as_str()
            .unwrap()
            .ends_with("fal_01_003.json")
    );
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("invalid type: integer `0`, expected a string")
    );
    // v1beta1 events keep their version; the traces Falco stripped of apiVersion are read as v1.
    assert_eq!(
        count(
            &lake,
            "audit_events WHERE event_api_version = 'audit.k8s.io/v1beta1'"
        ),
        9
    );
}
