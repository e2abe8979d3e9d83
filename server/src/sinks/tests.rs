use super::*;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

fn finding(id: &str, severity: &str) -> Finding {
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .to_utc();
    Finding {
        finding_id: format!("{id:0>32}"),
        dedup_key: format!("rule|prod|{id}"),
        rule_id: "exec-into-pod".into(),
        rule_version: 1,
        severity: severity.into(),
        title: "Exec into a pod".into(),
        summary: format!("admin exec'd into {id}"),
        cluster: "prod".into(),
        actor: Some("admin".into()),
        source_ip: Some("10.0.0.1".into()),
        target: Some("pods/exec audit-demo/priv-pod".into()),
        namespace: Some("audit-demo".into()),
        first_event_at: t,
        last_event_at: t,
        event_count: 2,
        evidence_audit_ids: vec!["e1".into(), "e2".into()],
        attack_ids: vec!["T1609".into()],
        catalog_ids: vec!["K20".into()],
        bucket_start: t,
        detected_at: t,
        revision: 1,
        origin: "scheduled".into(),
        incident_id: Some("inc-1".into()),
    }
}

fn sink(name: &str, kind: SinkKind, min: &str) -> SinkConfig {
    SinkConfig {
        name: name.into(),
        kind,
        min_severity: min.into(),
        timeout: Duration::from_secs(5),
        headers: vec![],
    }
}

#[test]
fn the_outbox_keeps_each_key_once_and_filters_by_severity() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new(
        &Lake::new(dir.path()),
        vec![
            sink("all", SinkKind::Stdout, "info"),
            sink("pager", SinkKind::Stdout, "high"),
        ],
    )
    .unwrap();
    let f = [finding("a", "critical"), finding("b", "medium")];
    outbox.enqueue(&f).unwrap();
    outbox.enqueue(&f).unwrap(); // a repeated run after a crash
    assert_eq!(outbox.pending("all").unwrap().len(), 2);
    assert_eq!(outbox.pending("pager").unwrap().len(), 1);
    let first = outbox.pending("pager").unwrap().remove(0);
    outbox.mark_sent("pager", &first).unwrap();
    outbox.enqueue(&f).unwrap(); // delivered keys are not queued again
    assert!(outbox.pending("pager").unwrap().is_empty());
    // A new revision is a new key.
    let mut updated = finding("a", "critical");
    updated.revision = 2;
    outbox.enqueue(&[updated]).unwrap();
    assert_eq!(outbox.pending("pager").unwrap().len(), 1);
}

/// The Alertmanager v2 `postableAlerts` schema: an array of objects with `labels` (required,
/// string → string), optional `annotations` (string → string), `startsAt`/`endsAt` (RFC 3339) and
/// `generatorURL` (URI); no other keys.
fn check_postable_alerts(v: &Value) {
    let alerts = v.as_array().expect("an array");
    assert!(!alerts.is_empty());
    for a in alerts {
        let obj = a.as_object().expect("alert object");
        for k in obj.keys() {
            assert!(
                [
                    "labels",
                    "annotations",
                    "startsAt",
                    "endsAt",
                    "generatorURL"
                ]
                .contains(&k.as_str()),
                "unknown key {k}"
            );
        }
        let labels = obj["labels"].as_object().expect("labels required");
        assert!(labels.contains_key("alertname"));
        for (k, v) in labels {
            assert!(
                k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "label name {k}"
            );
            assert!(
                !v.as_str().expect("label values are strings").is_empty(),
                "empty label {k}"
            );
        }
        for v in obj
            .get("annotations")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(_, v)| v)
        {
            assert!(v.is_string(), "annotation values are strings");
        }
        for k in ["startsAt", "endsAt"] {
            if let Some(t) = obj.get(k) {
                chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap()).expect("RFC 3339");
            }
        }
    }
}

#[test]
fn alertmanager_and_falco_payloads_have_the_documented_shape() {
    let f = finding("a", "critical");
    let am = alertmanager_payload(&f);
    check_postable_alerts(&am);
    assert_eq!(am[0]["labels"]["alertname"], "exec-into-pod");
    assert_eq!(am[0]["labels"]["severity"], "critical");
    assert_eq!(am[0]["annotations"]["idempotency_key"], f.idempotency_key());
    let falco = falco_payload(&f);
    for k in ["output", "priority", "rule", "time", "output_fields"] {
        assert!(falco.get(k).is_some(), "falco payload lacks {k}");
    }
    assert_eq!(falco["priority"], "Critical");
    assert_eq!(falco["output_fields"]["ka.user.name"], "admin");
    chrono::DateTime::parse_from_rfc3339(falco["time"].as_str().unwrap()).unwrap();
    // A finding round-trips through its outbox JSON.
    assert_eq!(
        stored_finding(&finding_json(&f)).unwrap().idempotency_key(),
        f.idempotency_key()
    );
}

struct Counting(Mutex<Vec<String>>);
impl DeliveryObserver for Counting {
    fn delivered(&self, sink: &str) {
        self.0.lock().unwrap().push(format!("ok {sink}"));
    }
    fn failed(&self, sink: &str, _e: &str) {
        self.0.lock().unwrap().push(format!("fail {sink}"));
    }
    fn outbox_depth(&self, _sink: &str, _depth: usize) {}
}

/// A webhook receiver on loopback: `respond` decides each answer; the idempotency keys of the
/// requests it answered 2xx are collected in order.
async fn hook_server(
    respond: impl Fn(&axum::http::HeaderMap, &Value) -> StatusCode + Clone + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = {
        let received = received.clone();
        Router::new().route(
            "/hook",
            post(
                move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
                    let (received, respond) = (received.clone(), respond.clone());
                    async move {
                        let status = respond(&headers, &body);
                        if status.is_success() {
                            received
                                .lock()
                                .unwrap()
                                .push(body["idempotency_key"].as_str().unwrap().to_owned());
                        }
                        status
                    }
                },
            ),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_fails_then_recovers_receives_every_finding_exactly_once_in_order() {
    // A receiver that answers 500 to the first three requests.
    let calls = Arc::new(AtomicUsize::new(0));
    let (url, received) = hook_server(move |headers, body| {
        if calls.fetch_add(1, Ordering::SeqCst) < 3 {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        assert_eq!(
            headers["idempotency-key"],
            body["idempotency_key"].as_str().unwrap()
        );
        StatusCode::OK
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let hook = sink("hook", SinkKind::Webhook { url }, "info");
    let outbox = Arc::new(Outbox::new(&Lake::new(dir.path()), vec![hook.clone()]).unwrap());
    let mut findings: Vec<Finding> = (0..4).map(|i| finding(&format!("f{i}"), "high")).collect();
    for (i, f) in findings.iter_mut().enumerate() {
        f.detected_at += chrono::TimeDelta::seconds(i as i64);
    }
    outbox.enqueue(&findings).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let observer = Arc::new(Counting(Mutex::default()));
    let task = tokio::spawn(delivery_loop(
        outbox.clone(),
        hook,
        http_client().unwrap(),
        observer.clone(),
        stop_rx,
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while received.lock().unwrap().len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered: {:?}",
            observer.0.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a duplicate the chance to show up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    let expected: Vec<String> = findings.iter().map(|f| f.idempotency_key()).collect();
    assert_eq!(*received.lock().unwrap(), expected);
    assert!(outbox.pending("hook").unwrap().is_empty());
    assert_eq!(
        observer
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("fail"))
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_sink_produces_each_finding_once_with_its_key() {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;
    use rdkafka::mocking::MockCluster;

    // librdkafka's mock cluster: the real Kafka protocol over TCP.
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("findings", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let kafka = sink(
        "siem",
        SinkKind::Kafka {
            brokers: brokers.clone(),
            topic: "findings".into(),
            properties: vec![("client.id".into(), "auditlake-test".into())],
        },
        "info",
    );
    let outbox = Arc::new(Outbox::new(&Lake::new(dir.path()), vec![kafka.clone()]).unwrap());
    let findings: Vec<Finding> = (0..3).map(|i| finding(&format!("k{i}"), "high")).collect();
    outbox.enqueue(&findings).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let observer = Arc::new(Counting(Mutex::default()));
    let task = tokio::spawn(delivery_loop(
        outbox.clone(),
        kafka,
        http_client().unwrap(),
        observer.clone(),
        stop_rx,
    ));

    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "test")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["findings"]).unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("finding on the topic")
            .unwrap();
        let value: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let header = m.headers().unwrap().get(0);
        assert_eq!(header.key, "idempotency_key");
        assert_eq!(
            header.value.unwrap(),
            value["idempotency_key"].as_str().unwrap().as_bytes()
        );
        assert_eq!(
            m.key().unwrap(),
            value["finding_id"].as_str().unwrap().as_bytes()
        );
        got.push(value["idempotency_key"].as_str().unwrap().to_owned());
    }
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    let expected: Vec<String> = findings.iter().map(|f| f.idempotency_key()).collect();
    assert_eq!(got, expected);
    assert!(outbox.pending("siem").unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_the_sink_rejects_for_good_is_set_aside_and_the_rest_flows() {
    // Refuses one finding with 422 (permanently), takes the others.
    let (url, received) =
        hook_server(
            |_, body| match body["idempotency_key"].as_str().unwrap().contains("bad") {
                true => StatusCode::UNPROCESSABLE_ENTITY,
                false => StatusCode::OK,
            },
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let hook = sink("hook", SinkKind::Webhook { url }, "info");
    let outbox = Arc::new(Outbox::new(&Lake::new(dir.path()), vec![hook.clone()]).unwrap());
    let mut findings = vec![
        finding("good1", "high"),
        finding("bad", "high"),
        finding("good2", "high"),
    ];
    for (i, f) in findings.iter_mut().enumerate() {
        f.finding_id = f.finding_id.replace('0', "") + &"0".repeat(i + 1);
        f.detected_at += chrono::TimeDelta::seconds(i as i64);
    }
    outbox.enqueue(&findings).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let observer = Arc::new(Counting(Mutex::default()));
    let task = tokio::spawn(delivery_loop(
        outbox.clone(),
        hook,
        http_client().unwrap(),
        observer.clone(),
        stop_rx,
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            observer.0.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    assert!(outbox.pending("hook").unwrap().is_empty());
    let failed: Vec<_> = fs::read_dir(dir.path().join("_state/outbox/hook/failed"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(failed.len(), 2, "the payload and its reason");
    // Restarting the outbox still knows every key: nothing is queued again.
    let reopened = Outbox::new(
        &Lake::new(dir.path()),
        vec![sink("hook", SinkKind::Stdout, "info")],
    )
    .unwrap();
    reopened.enqueue(&findings).unwrap();
    assert!(reopened.pending("hook").unwrap().is_empty());
}

/// On an object-store lake the outbox is objects in the bucket: what one replica enqueued and
/// did not deliver is pending for the replica that takes over, and a key either one delivered is
/// not queued again.
#[test]
fn the_outbox_of_an_object_store_lake_is_shared_through_the_bucket() {
    let staging = tempfile::tempdir().unwrap();
    let bucket = Arc::new(object_store::memory::InMemory::new());
    let replica = || {
        Lake::open_with_store("s3://evidence/lake", bucket.clone(), Some(staging.path())).unwrap()
    };
    let sinks = || vec![sink("hook", SinkKind::Stdout, "info")];
    let a = Outbox::new(&replica(), sinks()).unwrap();
    assert!(
        !a.is_active(),
        "a replica delivers only once it holds the lease"
    );
    let f = [finding("a", "critical"), finding("b", "medium")];
    a.enqueue(&f).unwrap();
    assert_eq!(a.pending("hook").unwrap().len(), 2);
    // A dies; B starts on the same bucket and finds both pending.
    let b = Outbox::new(&replica(), sinks()).unwrap();
    let pending = b.pending("hook").unwrap();
    assert_eq!(pending.len(), 2);
    let body: Value =
        serde_json::from_slice(&b.read_pending("hook", &pending[0]).unwrap().unwrap()).unwrap();
    assert_eq!(body["finding_id"], f[0].finding_id);
    b.mark_sent("hook", &pending[0]).unwrap();
    b.mark_failed("hook", &pending[1], "HTTP 422").unwrap();
    assert!(b.pending("hook").unwrap().is_empty());
    // Enqueued again by either replica (a repeated run): nothing new is pending.
    b.enqueue(&f).unwrap();
    a.reload().unwrap();
    a.enqueue(&f).unwrap();
    assert!(a.pending("hook").unwrap().is_empty());
    let lake = replica();
    let names: Vec<String> = lake
        .list_state("outbox/hook")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        [
            format!("failed/{}", pending[1]),
            format!(
                "failed/{}.reason",
                pending[1].strip_suffix(".json").unwrap()
            ),
            format!("sent/{}", pending[0]),
        ]
    );
    // Pruning removes old sent records only.
    b.prune_sent(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(5));
    b.prune_sent(Duration::ZERO);
    assert!(lake.list_state("outbox/hook/sent").unwrap().is_empty());
    assert_eq!(lake.list_state("outbox/hook/failed").unwrap().len(), 2);
}
