//! Decoder tests: every input shape, and every malformed case lands in rejects with a reason.

use super::*;
use arrow::array::{
    Array, AsArray, BooleanArray, Int32Array, ListArray, MapArray, StringArray,
    TimestampMicrosecondArray,
};
use auditlake_schemas as col;

const V1_EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"6a108e6f-a3f4-4ba3-9d8e-28f78ff37e61","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/audit-demo/secrets/db-creds","verb":"get","user":{"username":"mallory","uid":"uid-mallory","groups":["system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=abc"]}},"sourceIPs":["10.0.0.7","192.168.1.1"],"userAgent":"kubectl/v1.29.0 (linux/amd64) kubernetes/3f7a50f","objectRef":{"resource":"secrets","namespace":"audit-demo","name":"db-creds","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Failure","message":"secrets \"db-creds\" is forbidden: User \"mallory\" cannot get resource \"secrets\"","reason":"Forbidden","details":{"name":"db-creds","kind":"secrets"},"code":403},"requestReceivedTimestamp":"2026-11-22T05:55:01.100000Z","stageTimestamp":"2026-11-22T05:55:01.101234Z","annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}}"#;

const V1BETA1_EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","metadata":{"creationTimestamp":"2018-10-25T13:58:49Z"},"level":"Request","timestamp":"2018-10-25T13:58:49Z","auditID":"0f4fa4e4-0a1f-4d51-9f2a-b5b6d9c7b6f0","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"create","user":{"username":"minikube-user","groups":["system:masters","system:authenticated"]},"sourceIPs":["192.168.99.1"],"objectRef":{"resource":"pods","namespace":"default","name":"nginx-privileged","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"nginx-privileged"},"spec":{"containers":[{"name":"nginx","image":"nginx","securityContext":{"privileged":true}}]}},"requestReceivedTimestamp":"2018-10-25T13:58:49.730588Z","stageTimestamp":"2018-10-25T13:58:49.736141Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#;

fn pos(line: u64) -> SourcePosition {
    SourcePosition {
        source: Arc::from("test.log"),
        line: Some(line),
        byte_offset: Some(0),
        item: None,
    }
}

fn decode_all(lines: &[&str]) -> Decoded {
    let mut d = Decoder::new(DecodeOptions::new("test"));
    for (i, l) in lines.iter().enumerate() {
        d.decode(l.as_bytes(), &pos(i as u64 + 1));
    }
    d.take()
}

fn one_batch(decoded: &Decoded) -> &RecordBatch {
    assert_eq!(decoded.batches.len(), 1, "rejects: {:?}", decoded.rejects);
    &decoded.batches[0].batch
}

fn s<'a>(b: &'a RecordBatch, name: &str) -> &'a StringArray {
    b.column_by_name(name).unwrap().as_string::<i32>()
}

fn list(b: &RecordBatch, name: &str, row: usize) -> Option<Vec<String>> {
    let l = b
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<ListArray>()
        .unwrap();
    if l.is_null(row) {
        return None;
    }
    let v = l.value(row);
    Some(
        v.as_string::<i32>()
            .iter()
            .map(|x| x.unwrap().to_owned())
            .collect(),
    )
}

fn reasons(d: &Decoded) -> Vec<String> {
    d.rejects.iter().map(|r| r.reason.clone()).collect()
}

#[test]
fn v1_event_maps_every_field() {
    let d = decode_all(&[V1_EVENT]);
    assert_eq!(d.events, 1);
    let b = one_batch(&d);
    assert_eq!(
        s(b, col::AUDIT_ID).value(0),
        "6a108e6f-a3f4-4ba3-9d8e-28f78ff37e61"
    );
    assert_eq!(s(b, col::STAGE).value(0), "ResponseComplete");
    assert_eq!(s(b, col::LEVEL).value(0), "Metadata");
    assert_eq!(s(b, col::EVENT_API_VERSION).value(0), API_V1);
    assert_eq!(s(b, col::SOURCE_FORMAT).value(0), FORMAT_K8S_AUDIT);
    assert_eq!(s(b, col::VERB).value(0), "get");
    assert_eq!(s(b, col::USER_NAME).value(0), "mallory");
    assert_eq!(s(b, col::USER_UID).value(0), "uid-mallory");
    assert_eq!(
        list(b, col::USER_GROUPS, 0).unwrap(),
        ["system:authenticated"]
    );
    assert_eq!(
        list(b, col::SOURCE_IPS, 0).unwrap(),
        ["10.0.0.7", "192.168.1.1"]
    );
    assert_eq!(s(b, col::SOURCE_IP).value(0), "10.0.0.7");
    assert_eq!(s(b, col::RESOURCE).value(0), "secrets");
    assert_eq!(s(b, col::NAMESPACE).value(0), "audit-demo");
    assert_eq!(s(b, col::NAME).value(0), "db-creds");
    assert!(s(b, col::SUBRESOURCE).is_null(0));
    assert!(s(b, col::API_GROUP).is_null(0));
    assert_eq!(s(b, col::API_VERSION).value(0), "v1");
    let code = b
        .column_by_name(col::RESPONSE_CODE)
        .unwrap()
        .as_any()
        .downcast_ref::<Int32Array>()
        .unwrap();
    assert_eq!(code.value(0), 403);
    assert_eq!(s(b, col::RESPONSE_STATUS).value(0), "Failure");
    assert_eq!(s(b, col::RESPONSE_REASON).value(0), "Forbidden");
    assert!(
        s(b, col::RESPONSE_MESSAGE)
            .value(0)
            .contains("cannot get resource")
    );
    assert_eq!(s(b, col::AUTHZ_DECISION).value(0), "forbid");
    assert_eq!(s(b, col::AUTHZ_REASON).value(0), "");
    let ann = b
        .column_by_name(col::ANNOTATIONS)
        .unwrap()
        .as_any()
        .downcast_ref::<MapArray>()
        .unwrap();
    assert_eq!(ann.value(0).len(), 2);
    let extra = b
        .column_by_name(col::USER_EXTRA)
        .unwrap()
        .as_any()
        .downcast_ref::<MapArray>()
        .unwrap();
    assert_eq!(
        extra.keys().as_string::<i32>().value(0),
        "authentication.kubernetes.io/credential-id"
    );
    let ts = |name| {
        b.column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap()
            .value(0)
    };
    assert_eq!(
        ts(col::STAGE_AT),
        crate::time::parse_rfc3339_micros("2026-11-22T05:55:01.101234Z").unwrap()
    );
    assert_eq!(
        ts(col::REQUEST_RECEIVED_AT),
        crate::time::parse_rfc3339_micros("2026-11-22T05:55:01.1Z").unwrap()
    );
    assert!(s(b, col::REQUEST_OBJECT).is_null(0) && s(b, col::RESPONSE_OBJECT).is_null(0));
    let hour = d.batches[0].partition.hour;
    assert_eq!(
        crate::time::partition_date_hour(hour * MICROS_PER_HOUR),
        ("2026-11-22".into(), "05".into())
    );
    assert_eq!(
        d.batches[0].keys,
        [dedup_key(
            "6a108e6f-a3f4-4ba3-9d8e-28f78ff37e61",
            "ResponseComplete"
        )]
    );
}

#[test]
fn a_record_without_a_stage_lands_under_the_stage_its_content_shows_and_says_so() {
    let completed = V1_EVENT.replace("\"stage\":\"ResponseComplete\",", "");
    let received = completed
        .replace("\"auditID\":\"6a108e6f", "\"auditID\":\"7a108e6f")
        .replace(
            &completed[completed.find(",\"responseStatus\"").unwrap()
                ..completed.find(",\"requestReceivedTimestamp\"").unwrap()],
            "",
        );
    assert!(!received.contains("responseStatus"));
    let d = decode_all(&[&completed, &received]);
    assert!(d.rejects.is_empty(), "{:?}", reasons(&d));
    let b = one_batch(&d);
    assert_eq!(s(b, col::STAGE).value(0), "ResponseComplete");
    assert_eq!(s(b, col::STAGE).value(1), "RequestReceived");
    let annotations = b
        .column_by_name(col::ANNOTATIONS)
        .unwrap()
        .as_any()
        .downcast_ref::<MapArray>()
        .unwrap();
    for (row, stored) in [(0, "ResponseComplete"), (1, "RequestReceived")] {
        let entry = annotations.value(row);
        let keys = entry.column(0).as_string::<i32>();
        let values = entry.column(1).as_string::<i32>();
        let i = (0..keys.len())
            .find(|&i| keys.value(i) == crate::columns::STAGE_DEFAULTED_ANNOTATION)
            .expect("the annotation says the stage was chosen");
        assert!(values.value(i).contains(stored), "{}", values.value(i));
        // The record's own annotations are kept beside it.
        assert!((0..keys.len()).any(|i| keys.value(i) == "authorization.k8s.io/decision"));
    }
    // A record that has its stage is stored as it is, with no note.
    let d = decode_all(&[V1_EVENT]);
    let b = one_batch(&d);
    let entry = b
        .column_by_name(col::ANNOTATIONS)
        .unwrap()
        .as_any()
        .downcast_ref::<MapArray>()
        .unwrap()
        .value(0);
    assert!(
        !entry
            .column(0)
            .as_string::<i32>()
            .iter()
            .any(|k| k == Some(crate::columns::STAGE_DEFAULTED_ANNOTATION))
    );
}

#[test]
fn v1beta1_event_with_body_derives_pod_facts() {
    let d = decode_all(&[V1BETA1_EVENT]);
    let b = one_batch(&d);
    assert_eq!(s(b, col::EVENT_API_VERSION).value(0), API_V1BETA1);
    let privileged = b
        .column_by_name(col::POD_PRIVILEGED)
        .unwrap()
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap();
    assert!(privileged.value(0));
    assert_eq!(list(b, col::POD_PRIVILEGED_IMAGES, 0).unwrap(), ["nginx"]);
    let body: serde_json::Value = serde_json::from_str(s(b, col::REQUEST_OBJECT).value(0)).unwrap();
    assert_eq!(body["metadata"]["name"], "nginx-privileged");
}

#[test]
fn event_list_items_without_kind_take_the_list_api_version() {
    // What the real webhook sends: items carry no kind/apiVersion.
    let list = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[
        {"level":"Metadata","auditID":"a1","stage":"RequestReceived","requestURI":"/readyz","verb":"get","user":{"username":"admin"},"sourceIPs":["127.0.0.1"],"requestReceivedTimestamp":"2026-11-22T05:54:58.277872Z","stageTimestamp":"2026-11-22T05:54:58.277872Z"},
        {"level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/readyz","verb":"get","user":{"username":"admin"},"sourceIPs":["127.0.0.1"],"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-11-22T05:54:58.277872Z","stageTimestamp":"2026-11-22T05:54:58.280000Z"}]}"#;
    let d = decode_all(&[&list.replace('\n', "")]);
    assert!(d.rejects.is_empty(), "{:?}", reasons(&d));
    let b = one_batch(&d);
    assert_eq!(b.num_rows(), 2);
    assert_eq!(s(b, col::EVENT_API_VERSION).value(1), API_V1);
    assert_eq!(s(b, col::STAGE).value(0), "RequestReceived");
}

#[test]
fn json_array_of_events_and_lists() {
    let list = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[{"auditID":"b2","stage":"Panic","stageTimestamp":"2026-11-22T06:00:00Z"}]}"#;
    let arr = format!("[{V1_EVENT},{list}]");
    let d = decode_all(&[&arr]);
    assert!(d.rejects.is_empty(), "{:?}", reasons(&d));
    assert_eq!(d.events, 2);
    // two hours → two partitions
    assert_eq!(d.batches.len(), 2);
    let beta = d
        .batches
        .iter()
        .find(|b| b.batch.num_rows() == 1 && s(&b.batch, col::AUDIT_ID).value(0) == "b2")
        .unwrap();
    assert_eq!(s(&beta.batch, col::EVENT_API_VERSION).value(0), API_V1BETA1);
}

#[test]
fn blank_lines_are_ignored_and_crlf_is_accepted() {
    let d = decode_all(&["", "   ", &format!("{V1_EVENT}\r")]);
    assert_eq!((d.events, d.rejects.len()), (1, 0));
}

#[test]
fn escaped_strings_are_decoded() {
    let ev = V1_EVENT.replace("/db-creds\"", "/db-creds?x=1\\u0026y=\\\"2\\\"\"");
    let d = decode_all(&[&ev]);
    let b = one_batch(&d);
    assert!(s(b, col::REQUEST_URI).value(0).ends_with("?x=1&y=\"2\""));
}

#[test]
fn secret_bodies_are_redacted_by_default_and_kept_when_asked() {
    let ev = V1_EVENT.replace(
        r#""annotations":{"#,
        r#""requestObject":{"kind":"Secret","data":{"password":"aHVudGVyMg=="}},"annotations":{"#,
    );
    let d = decode_all(&[&ev]);
    let b = one_batch(&d);
    assert!(!s(b, col::REQUEST_OBJECT).value(0).contains("aHVudGVyMg=="));
    assert!(s(b, col::REQUEST_OBJECT).value(0).contains("<redacted>"));

    let mut opts = DecodeOptions::new("test");
    opts.redact_secrets = false;
    let mut dec = Decoder::new(opts);
    dec.decode(ev.as_bytes(), &pos(1));
    let d = dec.take();
    assert!(
        s(&d.batches[0].batch, col::REQUEST_OBJECT)
            .value(0)
            .contains("aHVudGVyMg==")
    );
}

#[test]
fn exec_command_is_derived_from_the_uri() {
    let ev = V1_EVENT
        .replace(
            "/api/v1/namespaces/audit-demo/secrets/db-creds",
            "/api/v1/namespaces/audit-demo/pods/web/exec?command=cat\\u0026command=%2Fetc%2Fshadow\\u0026container=web",
        )
        .replace(r#""resource":"secrets""#, r#""resource":"pods","subresource":"exec""#);
    let d = decode_all(&[&ev]);
    let b = one_batch(&d);
    assert_eq!(
        list(b, col::EXEC_COMMAND, 0).unwrap(),
        ["cat", "/etc/shadow"]
    );
    assert_eq!(s(b, col::EXEC_CONTAINER).value(0), "web");
}

#[test]
fn malformed_input_is_rejected_byte_exact_with_a_reason() {
    let cases: Vec<(String, &str)> = vec![
        ("{\"kind\": 0}".into(), "invalid type: integer `0`"),
        ("{not json".into(), "not a valid audit event"),
        ("hello world".into(), "not a JSON object or array"),
        ("[1, 2".into(), "not valid JSON"),
        ("42".into(), "not a JSON object or array"),
        (
            V1_EVENT.replace("\"kind\":\"Event\"", "\"kind\":\"Pod\""),
            "kind must be \"Event\" or \"EventList\", got \"Pod\"",
        ),
        (
            V1_EVENT.replace("audit.k8s.io/v1", "audit.k8s.io/v1alpha1"),
            "unsupported apiVersion \"audit.k8s.io/v1alpha1\"",
        ),
        (
            V1_EVENT.replace("\"auditID\":\"6a108e6f-a3f4-4ba3-9d8e-28f78ff37e61\",", ""),
            "missing auditID",
        ),
        (
            V1_EVENT.replace(
                "\"auditID\":\"6a108e6f-a3f4-4ba3-9d8e-28f78ff37e61\"",
                "\"auditID\":\"\"",
            ),
            "missing auditID",
        ),
        (
            V1_EVENT.replace("\"stage\":\"ResponseComplete\"", "\"stage\":\"Done\""),
            "unknown stage \"Done\"",
        ),
        (
            V1_EVENT.replace("2026-11-22T05:55:01.101234Z", "yesterday"),
            "stageTimestamp is not an RFC 3339 time: \"yesterday\"",
        ),
        (
            V1_EVENT
                .replace(
                    ",\"requestReceivedTimestamp\":\"2026-11-22T05:55:01.100000Z\"",
                    "",
                )
                .replace(",\"stageTimestamp\":\"2026-11-22T05:55:01.101234Z\"", ""),
            "missing stageTimestamp and requestReceivedTimestamp",
        ),
        (
            V1_EVENT.replace("\"verb\":\"get\"", "\"verb\":7"),
            "invalid type: integer `7`, expected a string",
        ),
        (
            V1_EVENT.replace("\"code\":403", "\"code\":\"403\""),
            "invalid type: string \"403\"",
        ),
        (format!("{V1_EVENT} trailing"), "trailing characters"),
        (
            V1_EVENT.replace("\"kind\":\"Event\",", "\"kind\":\"Event\",\"items\":[],"),
            "has \"items\" but kind is not \"EventList\"",
        ),
    ];
    for (i, (line, want)) in cases.iter().enumerate() {
        let d = decode_all(&[line]);
        assert_eq!(d.events, 0, "case {i} should not decode: {line}");
        assert_eq!(d.rejects.len(), 1, "case {i}");
        let r = &d.rejects[0];
        assert!(
            r.reason.contains(want),
            "case {i}: reason {:?} lacks {want:?}",
            r.reason
        );
        assert_eq!(r.raw, line.as_bytes(), "case {i}: raw bytes must be exact");
        assert_eq!(r.position.line, Some(1));
        assert_eq!(&*r.cluster, "test");
    }
}

#[test]
fn a_bad_item_is_rejected_alone_and_the_rest_of_the_list_lands() {
    let good = r#"{"auditID":"g1","stage":"ResponseComplete","verb":"get","stageTimestamp":"2026-11-22T05:00:00Z"}"#;
    let bad = r#"{"auditID":"b1","stage":"ResponseComplete","verb":["get"],"stageTimestamp":"2026-11-22T05:00:00Z"}"#;
    let no_id = r#"{"stage":"ResponseComplete","stageTimestamp":"2026-11-22T05:00:00Z"}"#;
    let list = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{good},{bad},{good},{no_id}]}}"#
    );
    let d = decode_all(&[&list]);
    assert_eq!(d.events, 2);
    assert_eq!(d.rejects.len(), 2);
    assert_eq!(d.rejects[0].raw, bad.as_bytes());
    assert_eq!(d.rejects[0].position.item, Some(1));
    assert_eq!(d.rejects[1].raw, no_id.as_bytes());
    assert_eq!(d.rejects[1].position.item, Some(3));
    assert!(d.rejects[1].reason.contains("missing auditID"));
}

#[test]
fn event_list_with_a_bad_api_version_or_nested_list_is_rejected() {
    let d = decode_all(&[r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v2","items":[]}"#]);
    assert!(reasons(&d)[0].contains("unsupported apiVersion"));
    let nested = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"kind":"EventList","items":[]}]}"#;
    let d = decode_all(&[nested]);
    assert!(reasons(&d)[0].contains("nested"), "{:?}", reasons(&d));
}

#[test]
fn empty_event_list_is_fine() {
    let d = decode_all(&[
        r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":null}"#,
    ]);
    assert_eq!((d.events, d.rejects.len(), d.batches.len()), (0, 0, 0));
}

#[test]
fn a_line_of_many_megabytes_decodes() {
    let big = "x".repeat(8 << 20);
    let ev = V1BETA1_EVENT.replace(
        r#""metadata":{"name":"nginx-privileged"}"#,
        &format!(r#""metadata":{{"name":"nginx-privileged","annotations":{{"big":"{big}"}}}}"#),
    );
    let d = decode_all(&[&ev]);
    let b = one_batch(&d);
    assert!(s(b, col::REQUEST_OBJECT).value(0).len() > 8 << 20);
}

#[test]
fn batches_roll_by_rows_and_partitions_split_by_hour() {
    let mut opts = DecodeOptions::new("c1");
    opts.batch_rows = 3;
    let mut d = Decoder::new(opts);
    for i in 0..7 {
        let ev = V1_EVENT.replace("6a108e6f-a3f4-4ba3-9d8e-28f78ff37e61", &format!("id-{i}"));
        d.decode(ev.as_bytes(), &pos(i));
    }
    d.decode(V1BETA1_EVENT.as_bytes(), &pos(8));
    let out = d.take();
    let rows: Vec<usize> = out.batches.iter().map(|b| b.batch.num_rows()).collect();
    assert_eq!(out.events, 8);
    assert_eq!(rows.iter().sum::<usize>(), 8);
    assert!(rows.iter().all(|&r| r <= 3), "{rows:?}");
    assert!(out.batches.iter().all(|b| &*b.partition.cluster == "c1"));
    let hours: std::collections::BTreeSet<i64> =
        out.batches.iter().map(|b| b.partition.hour).collect();
    assert_eq!(hours.len(), 2);
}

#[test]
fn every_falco_trace_decodes_and_the_malformed_one_is_rejected() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/falco-k8s-audit/trace_files");
    if !dir.is_dir() {
        eprintln!(
            "skipping: {} is absent (it ships beside the repo in CI, not in a user's clone)",
            dir.display()
        );
        return;
    }
    let mut events = 0;
    let mut rejected = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let d = decode_all(&text.lines().collect::<Vec<_>>());
        events += d.events;
        for r in d.rejects {
            rejected.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                r.reason,
                r.raw,
            ));
        }
    }
    assert_eq!(events, 51, "the README of the traces says 51 real events");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, "fal_01_003.json");
    assert_eq!(rejected[0].2, b"{\"kind\": 0}");
}

#[test]
fn dedup_key_is_the_same_for_short_and_long_ids() {
    let long = "x".repeat(200);
    let mut joined = long.clone().into_bytes();
    joined.push(0);
    joined.extend_from_slice(b"ResponseComplete");
    assert_eq!(dedup_key(&long, "ResponseComplete"), xxh3_128(&joined));
    assert_ne!(
        dedup_key("a", "RequestReceived"),
        dedup_key("a", "ResponseComplete")
    );
    assert_ne!(dedup_key("ab", "c"), dedup_key("a", "bc"));
}

#[test]
fn invalid_utf8_is_rejected_byte_exact() {
    let mut line = V1_EVENT.as_bytes().to_vec();
    line[40] = 0xff;
    let mut d = Decoder::new(DecodeOptions::new("test"));
    d.decode(&line, &pos(1));
    let out = d.take();
    assert_eq!(out.rejects.len(), 1);
    assert_eq!(out.rejects[0].reason, "not valid UTF-8 (at byte 40)");
    assert_eq!(out.rejects[0].raw, line);
}
