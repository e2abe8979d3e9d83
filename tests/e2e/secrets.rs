//! No secret value or token is written to the lake or the quarantine: every secret-bearing shape
//! an audit log carries, through `auditlake ingest`, then every stored column read back through
//! `auditlake query` and every quarantine file read raw.

use serde_json::json;

use crate::*;

const MARK: &str = "E2EMARKERV4LUE";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn event(id: &str, resource: &str, sub: Option<&str>, verb: &str) -> serde_json::Value {
    let mut object_ref =
        json!({"resource": resource, "namespace": "prod", "name": "db", "apiVersion": "v1"});
    if let Some(s) = sub {
        object_ref["subresource"] = json!(s);
    }
    json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": id,
        "stage": "ResponseComplete", "requestURI": format!("/api/v1/namespaces/prod/{resource}/db"),
        "verb": verb, "user": {"username": "alice"}, "sourceIPs": ["10.0.0.7"], "objectRef": object_ref,
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-11-22T05:55:01.100000Z", "stageTimestamp": "2026-11-22T05:55:01.101234Z"})
}

fn with(mut ev: serde_json::Value, field: &str, body: serde_json::Value) -> String {
    ev[field] = body;
    ev.to_string()
}

/// Splices a body given as JSON text (duplicate keys, depth serde_json refuses) into an event.
fn with_text(ev: serde_json::Value, field: &str, body: &str) -> String {
    let mut text = ev.to_string();
    text.pop();
    format!("{text},\"{field}\":{body}}}")
}

fn secret() -> serde_json::Value {
    json!({"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
        "metadata": {"name": "db", "annotations": {
            LAST_APPLIED: json!({"apiVersion": "v1", "kind": "Secret", "data": {"password": MARK}}).to_string()}},
        "data": {"password": MARK}})
}

#[test]
fn no_secret_value_or_token_reaches_the_lake_or_the_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut bare = secret();
    bare.as_object_mut().unwrap().remove("kind");
    let la = secret()["metadata"]["annotations"][LAST_APPLIED].clone();
    let lines = vec![
        with(
            event("s-create", "secrets", None, "create"),
            "requestObject",
            secret(),
        ),
        with(
            event("sa-token", "serviceaccounts", Some("token"), "create"),
            "responseObject",
            json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "spec": {"audiences": ["api"]}, "status": {"token": format!("eyJhbGci.{MARK}.sig")}}),
        ),
        with(
            event("review", "tokenreviews", None, "create"),
            "requestObject",
            json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "spec": {"token": MARK}}),
        ),
        with(
            event("json-patch", "secrets", None, "patch"),
            "requestObject",
            json!([{"op": "replace", "path": "/data/password", "value": MARK},
                   {"op": "add", "path": "/metadata/annotations", "value": {LAST_APPLIED: la}}]),
        ),
        with(
            event("merge-patch", "secrets", None, "patch"),
            "requestObject",
            json!({"stringData": {"password": MARK}, "metadata": {"annotations": {LAST_APPLIED: la}}}),
        ),
        with(
            event("table", "secrets", None, "list"),
            "responseObject",
            json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "columnDefinitions": [{"name": "Name"}],
                "rows": [{"cells": ["db", "Opaque", 1], "object": secret()},
                         {"cells": ["db"], "object": {"kind": "PartialObjectMetadata", "metadata": secret()["metadata"]}}]}),
        ),
        with(
            event("list", "secrets", None, "list"),
            "responseObject",
            json!({"kind": "SecretList", "apiVersion": "v1", "items": [bare]}),
        ),
        with_text(
            event("duplicate", "secrets", None, "create"),
            "requestObject",
            &format!(r#"{{"kind":"Secret","data":{{"password":"{MARK}"}},"data":{{}}}}"#),
        ),
        with_text(
            event("deep", "secrets", None, "create"),
            "requestObject",
            &format!(
                r#"{{"kind":"Secret","metadata":{{"labels":{{"x":{}1{}}}}},"data":{{"password":"{MARK}"}}}}"#,
                "[".repeat(300),
                "]".repeat(300)
            ),
        ),
        with(
            event("list-apply", "deployments", None, "create"),
            "requestObject",
            json!({"kind": "List", "items": [{"kind": "Deployment", "metadata": {"name": "web"}}, secret()]}),
        ),
        json!({"records": [{"category": "kube-audit", "properties": {
            "log": with(event("aks", "secrets", None, "get"), "responseObject", secret())}}]})
        .to_string(),
    ];
    let landing = lines.len() as i64;
    let truncated = with(
        event("cut", "secrets", None, "create"),
        "requestObject",
        secret(),
    );
    let cut = &truncated[..truncated.rfind(MARK).unwrap() + 6];
    let input = dir.path().join("secrets.log");
    std::fs::write(&input, lines.join("\n") + "\n" + cut + "\n").unwrap();
    assert!(std::fs::read_to_string(&input).unwrap().contains(MARK));

    let summary = ingest(&lake, "prod", &[&input]);
    assert_eq!(summary["events"], landing, "{summary}");
    assert_eq!(summary["rejected"], 1, "{summary}");
    assert_eq!(count(&lake, "audit_events"), landing);

    // Every stored column, decompressed by the query engine.
    let rows = query(&lake, "SELECT * FROM audit_events");
    assert_eq!(rows.len() as i64, landing);
    let stored = serde_json::to_string(&rows).unwrap();
    assert!(!stored.contains(MARK), "a stored column holds the marker");
    assert!(stored.contains("<redacted>"));
    // Bodies parsed faithfully stay JSON with their keys; those that were not are marked.
    let marked = query(
        &lake,
        "SELECT audit_id FROM audit_events WHERE annotations['auditlake.io/body-masked'] IS NOT NULL ORDER BY audit_id",
    );
    assert_eq!(
        marked,
        vec![
            json!({"audit_id": "deep"}),
            json!({"audit_id": "duplicate"})
        ]
    );
    let token = query(
        &lake,
        "SELECT response_object FROM audit_events WHERE audit_id = 'sa-token'",
    );
    assert!(
        token[0]["response_object"]
            .as_str()
            .unwrap()
            .contains(r#""token":"<redacted>""#),
        "{token:?}"
    );

    // Every file under the lake, raw: the quarantine records and the Parquet bytes.
    let mut files = Vec::new();
    let mut stack = vec![lake.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let mut quarantine = String::new();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(MARK),
            "{} holds the marker",
            f.display()
        );
        if f.to_string_lossy().contains("_quarantine") {
            quarantine += &String::from_utf8_lossy(&bytes);
        }
    }
    let record: serde_json::Value =
        serde_json::from_str(quarantine.lines().next().unwrap()).unwrap();
    assert_eq!(record["masked"], true, "{record}");
    assert!(
        !record["raw"].as_str().unwrap().contains(&MARK[..4]),
        "{record}"
    );
    assert!(
        record["raw"]
            .as_str()
            .unwrap()
            .contains(r#""auditID":"cut""#),
        "{record}"
    );
}
