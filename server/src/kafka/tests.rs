//! Tests of the Kafka consumer (moved out of `kafka.rs`).

use super::*;
use auditlake_ingest::{Lake, NoObserver, PipelineOptions};
use rdkafka::TopicPartitionList;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn event(id: &str) -> String {
    format!(
        r#"{{"auditID":"{id}","stage":"ResponseComplete","level":"Metadata","requestURI":"/api/v1/pods","verb":"list","user":{{"username":"u"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"pods"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-11-22T10:00:00.000000Z"}}"#
    )
}

/// An error repeated by librdkafka is logged once, then once a minute with its count;
/// another error is logged at once.
#[test]
fn repeated_errors_are_logged_once_a_minute_with_their_count() {
    let throttle = Throttle::default();
    let start = std::time::Instant::now();
    let down = "AllBrokersDown: 1/1 brokers are down";
    assert_eq!(throttle.admit(down, start), Some(0));
    for i in 1..=20 {
        let now = start + Duration::from_millis(50 * i);
        assert_eq!(throttle.admit(down, now), None);
    }
    assert_eq!(
        throttle.admit(
            "Authentication: SASL failed",
            start + Duration::from_secs(1)
        ),
        Some(0)
    );
    assert_eq!(
        throttle.admit(down, start + Duration::from_secs(61)),
        Some(20)
    );
    assert_eq!(throttle.admit(down, start + Duration::from_secs(62)), None);
    assert_eq!(
        throttle.admit(down, start + Duration::from_secs(122)),
        Some(1)
    );
}

/// Offsets are committed exactly up to what is durable in the lake.
#[test]
fn committed_offsets_follow_the_lake_flush() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("audit", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for i in 0..10 {
        producer
            .send(
                BaseRecord::to("audit")
                    .key("k")
                    .payload(&event(&format!("e{i}"))),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let mut popts = PipelineOptions::new(&lake);
    popts.min_free_disk_bytes = 0;
    popts.compact = None;
    popts.flush_interval = Duration::from_millis(300);
    let (pipeline, _) = Pipeline::open(&lake, popts.clone(), Arc::new(NoObserver)).unwrap();
    let pipeline = Arc::new(pipeline);
    let stop = Arc::new(AtomicBool::new(false));
    let opts = KafkaOptions {
        brokers: brokers.clone(),
        group_id: "g".into(),
        topics: vec!["audit".into()],
        topic_clusters: HashMap::new(),
        cluster_header: None,
        default_cluster: "prod".into(),
        default_cluster_explicit: true,
        until_caught_up: false,
        properties: vec![],
    };
    let metrics = Arc::new(Metrics::new());
    let t = start(
        opts,
        pipeline.clone(),
        popts.decode.clone(),
        metrics.clone(),
        stop.clone(),
    )
    .unwrap();
    let check: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "g")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("audit", 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let committed = check
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .unwrap();
        let off = committed.find_partition("audit", 0).unwrap().offset();
        if off == rdkafka::Offset::Offset(10) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "committed offset stays at {off:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Release);
    t.join().unwrap();
    pipeline.shutdown().unwrap();
    let text = metrics.encode(0);
    assert!(
        text.contains(r#"auditlake_kafka_messages_total{topic="audit"} 10"#),
        "{text}"
    );
    assert!(
        text.contains(r#"auditlake_kafka_events_total{topic="audit"} 10"#),
        "{text}"
    );
    assert!(
        text.contains("auditlake_kafka_flush_to_commit_seconds_count"),
        "{text}"
    );
}
