//! Tests of the envelope decoder (moved out of `envelope.rs`).

use super::*;
use crate::decode::DecodeOptions;
use arrow::array::{Array, AsArray};

fn event(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/db","verb":"get","user":{{"username":"masterclient","groups":["system:masters"]}},"sourceIPs":["20.1.2.3"],"objectRef":{{"resource":"secrets","namespace":"prod","name":"db","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"2026-11-22T10:00:00.100000Z","stageTimestamp":"2026-11-22T10:00:00.120000Z","annotations":{{"authorization.k8s.io/decision":"allow"}}}}"#
    )
}

fn decode(input: &[u8]) -> crate::decode::Decoded {
    let mut opts = DecodeOptions::new("aks-prod");
    opts.envelope_cluster = true;
    let mut d = Decoder::new(opts);
    d.decode(input, &SourcePosition::default());
    d.take()
}

fn formats(out: &crate::decode::Decoded) -> Vec<String> {
    out.batches
        .iter()
        .flat_map(|b| {
            let a = b
                .batch
                .column_by_name("source_format")
                .unwrap()
                .as_string::<i32>()
                .clone();
            (0..a.len())
                .map(move |i| a.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn envelopes_name_the_cluster_when_the_operator_did_not() {
    let aks = serde_json::json!({"records": [
        {"resourceId": "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-WEU-1",
         "category": "kube-audit", "properties": {"log": event("a1")}},
        {"resourceId": "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-WEU-1",
         "category": "kube-audit", "properties": {"log": "skipped-too-big-size-object"}}
    ]})
    .to_string();
    let eks =
        serde_json::json!({"messageType": "DATA_MESSAGE", "logGroup": "/aws/eks/eks-prod/cluster",
        "logEvents": [{"id": "1", "timestamp": 1, "message": event("e1")}]})
        .to_string();
    let gke = serde_json::json!({"insertId": "g1", "timestamp": "2026-11-22T10:00:00Z",
        "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "gke-prod"}},
        "protoPayload": {"serviceName": "k8s.io", "methodName": "io.k8s.core.v1.secrets.get",
            "resourceName": "core/v1/namespaces/prod/secrets/db",
            "authenticationInfo": {"principalEmail": "a@example.com"}, "status": {}}})
    .to_string();
    let clusters = |envelope_cluster: bool| {
        let mut opts = DecodeOptions::new("fallback");
        opts.envelope_cluster = envelope_cluster;
        let mut d = Decoder::new(opts);
        for (i, line) in [&aks, &eks, &gke, &event("plain")].iter().enumerate() {
            d.decode(
                line.as_bytes(),
                &SourcePosition {
                    line: Some(i as u64 + 1),
                    ..SourcePosition::default()
                },
            );
        }
        let out = d.take();
        let mut c: Vec<String> = out
            .batches
            .iter()
            .map(|b| format!("{}:{}", b.partition.cluster, b.batch.num_rows()))
            .collect();
        c.sort();
        (
            c,
            out.rejects
                .iter()
                .map(|r| r.cluster.to_string())
                .collect::<Vec<_>>(),
            out.rejects
                .iter()
                .filter(|r| {
                    r.reason
                        .starts_with("cluster mismatch: the envelope names cluster")
                })
                .count() as u64,
            out.cluster_conflicts,
        )
    };
    assert_eq!(
        clusters(true),
        (
            vec![
                "aks-weu-1:1".into(),
                "eks-prod:1".into(),
                "fallback:1".into(),
                "gke-prod:1".into()
            ],
            vec!["aks-weu-1".to_owned()],
            0,
            0
        ),
        "each envelope's events (and its quarantined record) go to its cluster; a bare event to the default"
    );
    assert_eq!(
        clusters(false),
        (
            vec!["fallback:1".into()],
            vec!["fallback".to_owned(); 4],
            3,
            3
        ),
        "a bound cluster is authoritative: envelopes naming another are refused (quarantined in the bound cluster with the reason), never relabelled"
    );
    assert_eq!(
        aks_cluster("/subscriptions/x/managedClusters/bad name"),
        None
    );
    assert_eq!(eks_cluster("/aws/eks/prod/cluster"), Some("prod".into()));
    assert_eq!(eks_cluster("/aws/lambda/x"), None);
}

#[test]
fn an_aks_storage_export_of_one_record_per_line_lands() {
    let id = "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-WEU-1";
    let lines = [
        serde_json::json!({"time": "2026-11-22T10:00:00.2Z", "resourceId": id, "category": "kube-audit",
            "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
            "properties": {"log": event("line-1"), "stream": "stdout", "pod": "kube-apiserver-1"}}),
        serde_json::json!({"time": "2026-11-22T10:00:01Z", "resourceId": id, "category": "kube-apiserver",
            "properties": {"log": "I1122 10:00:01 not an audit event"}}),
        serde_json::json!({"time": "2026-11-22T10:00:02Z", "resourceId": id, "category": "kube-audit-admin",
            "properties": {"log": event("line-2")}}),
        serde_json::json!({"time": "2026-11-22T10:00:03Z", "resourceId": id, "category": "kube-audit",
            "properties": {"log": "skipped-too-big-size-object"}}),
    ];
    // As a file is read: one unit per line.
    let mut opts = DecodeOptions::new("aks-prod");
    opts.envelope_cluster = true;
    let mut d = Decoder::new(opts);
    for (i, line) in lines.iter().enumerate() {
        let pos = SourcePosition {
            line: Some(i as u64 + 1),
            ..SourcePosition::default()
        };
        d.decode(line.to_string().as_bytes(), &pos);
    }
    let out = d.take();
    // Before: each line was quarantined as "missing auditID".
    assert_eq!(out.events, 2, "{:?}", out.rejects);
    assert_eq!(formats(&out), vec![FORMAT_AKS, FORMAT_AKS]);
    assert_eq!(out.rejects.len(), 1);
    assert!(
        out.rejects[0]
            .reason
            .contains("skipped-too-big-size-object")
    );
    assert_eq!(out.rejects[0].position.line, Some(4));
    // The cluster comes from the resource id when no source binds one.
    assert_eq!(&*out.batches[0].partition.cluster, "aks-weu-1");
}

#[test]
fn aks_records_unwrap_skip_other_categories_and_quarantine_too_big_events() {
    let line = serde_json::json!({"records": [
        {"time": "2026-11-22T10:00:00.2Z", "resourceId": "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD",
         "category": "kube-audit", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
         "properties": {"log": event("aks-1"), "stream": "stdout", "pod": "kube-apiserver-6d8b9c7f4-abcde"}},
        {"category": "kube-apiserver", "properties": {"log": "I1122 10:00:00 some apiserver log line"}},
        {"category": "kube-audit-admin", "properties": {"log": event("aks-2")}},
        {"category": "kube-audit", "properties": {"log": "skipped-too-big-size-object", "pod": "kube-apiserver-6d8b9c7f4-abcde"}}
    ]}).to_string();
    let out = decode(line.as_bytes());
    assert_eq!(out.events, 2);
    assert_eq!(formats(&out), vec![FORMAT_AKS, FORMAT_AKS]);
    assert_eq!(out.rejects.len(), 1);
    assert!(
        out.rejects[0]
            .reason
            .contains("skipped-too-big-size-object")
    );
    assert_eq!(out.rejects[0].position.item, Some(3));
    assert!(
        String::from_utf8_lossy(&out.rejects[0].raw).contains("kube-apiserver-6d8b9c7f4-abcde")
    );
}

#[test]
fn eks_subscription_payloads_unwrap_also_gzip_and_base64_and_truncated_events_keep_their_id() {
    let truncated = format!("{}{TRUNCATED}", &event("eks-cut")[..180]);
    let payload = serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": "/aws/eks/prod/cluster", "logStream": "kube-apiserver-audit-1f2e3d",
        "subscriptionFilters": ["to-kafka"],
        "logEvents": [
            {"id": "1", "timestamp": 1795341600100i64, "message": event("eks-1")},
            {"id": "2", "timestamp": 1795341600200i64, "message": truncated},
            {"id": "3", "timestamp": 1795341600300i64, "message": event("eks-2")}
        ]
    })
    .to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, payload.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&gz);
    for input in [payload.as_bytes(), &gz[..], b64.as_bytes()] {
        let out = decode(input);
        assert_eq!(out.events, 2);
        assert_eq!(formats(&out), vec![FORMAT_EKS, FORMAT_EKS]);
        assert_eq!(out.rejects.len(), 1);
        assert!(
            out.rejects[0].reason.contains("auditID eks-cut"),
            "{}",
            out.rejects[0].reason
        );
        assert_eq!(out.rejects[0].position.item, Some(1));
    }
    let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;
    let out = decode(control.as_bytes());
    assert_eq!((out.events, out.rejects.len()), (0, 0));
}

#[test]
fn gke_log_entries_map_onto_the_event_columns() {
    let entry = serde_json::json!({
        "insertId": "1a2b3c4d", "logName": "projects/acme/logs/cloudaudit.googleapis.com%2Factivity",
        "operation": {"id": "9f2c5e4b-1d3a-4c7e-8b6f-0a1b2c3d4e5f", "producer": "k8s.io", "first": true, "last": true},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "mallory@example.com"},
            "authorizationInfo": [{"granted": true, "permission": "io.k8s.core.v1.pods.exec.create", "resource": "core/v1/namespaces/payments/pods/api-0/exec"}],
            "methodName": "io.k8s.core.v1.pods.exec.create",
            "requestMetadata": {"callerIp": "203.0.113.9", "callerSuppliedUserAgent": "kubectl/v1.31.0 (linux/amd64)"},
            "resourceName": "core/v1/namespaces/payments/pods/api-0/exec",
            "serviceName": "k8s.io",
            "status": {"code": 0}
        },
        "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "gke-prod", "location": "europe-west1", "project_id": "acme"}},
        "timestamp": "2026-11-22T10:00:00.123456Z", "severity": "NOTICE"
    });
    let denied = serde_json::json!({
        "insertId": "x2", "protoPayload": {
            "authenticationInfo": {"principalEmail": "system:anonymous"},
            "authorizationInfo": [{"granted": false, "permission": "io.k8s.authorization.rbac.v1.clusterrolebindings.create"}],
            "methodName": "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
            "resourceName": "rbac.authorization.k8s.io/v1/clusterrolebindings",
            "serviceName": "k8s.io", "status": {"code": 7, "message": "forbidden"},
            "request": {"kind": "ClusterRoleBinding", "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "mallory"}]}
        },
        "timestamp": "2026-11-22T10:00:01Z"
    });
    let other = serde_json::json!({"insertId": "x3", "protoPayload": {"serviceName": "container.googleapis.com", "methodName": "google.container.v1.ClusterManager.UpdateCluster"}, "timestamp": "2026-11-22T10:00:02Z"});
    let mut d = Decoder::new(DecodeOptions::new("gke-prod"));
    for e in [&entry, &denied, &other] {
        d.decode(e.to_string().as_bytes(), &SourcePosition::default());
    }
    let out = d.take();
    assert_eq!((out.events, out.rejects.len()), (2, 0), "{:?}", out.rejects);
    let b = &out.batches[0].batch;
    let col = |n: &str| {
        let a = arrow::compute::cast(
            b.column_by_name(n).unwrap(),
            &arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let a = a.as_string::<i32>().clone();
        (0..a.len())
            .map(|i| (!a.is_null(i)).then(|| a.value(i).to_owned()))
            .collect::<Vec<_>>()
    };
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        col("audit_id"),
        vec![s("9f2c5e4b-1d3a-4c7e-8b6f-0a1b2c3d4e5f"), s("x2")]
    );
    assert_eq!(col("verb"), vec![s("create"), s("create")]);
    assert_eq!(col("resource"), vec![s("pods"), s("clusterrolebindings")]);
    assert_eq!(col("subresource"), vec![s("exec"), None]);
    assert_eq!(col("namespace"), vec![s("payments"), None]);
    assert_eq!(col("name"), vec![s("api-0"), None]);
    assert_eq!(
        col("api_group"),
        vec![s(""), s("rbac.authorization.k8s.io")]
    );
    assert_eq!(
        col("user_name"),
        vec![s("mallory@example.com"), s("system:anonymous")]
    );
    assert_eq!(col("source_ip"), vec![s("203.0.113.9"), None]);
    assert_eq!(col("response_code"), vec![s("200"), s("403")]);
    assert_eq!(col("authz_decision"), vec![s("allow"), s("forbid")]);
    assert_eq!(col("role_ref_name"), vec![None, s("cluster-admin")]);
    assert_eq!(col("source_format"), vec![s(FORMAT_GKE), s(FORMAT_GKE)]);
    assert_eq!(col("level"), vec![s("Metadata"), s("RequestResponse")]);
}

#[test]
fn an_exported_eks_line_cut_by_cloudwatch_is_quarantined_with_its_audit_id() {
    let line = format!("{}{TRUNCATED}", &event("eks-cut-2")[..200]);
    let out = decode(line.as_bytes());
    assert_eq!(out.events, 0);
    assert_eq!(out.rejects.len(), 1);
    assert!(
        out.rejects[0].reason.contains("auditID eks-cut-2"),
        "{}",
        out.rejects[0].reason
    );
    assert_eq!(
        out.rejects[0].raw,
        line.as_bytes(),
        "quarantined byte-exact"
    );
}
