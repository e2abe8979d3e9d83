//! `auditlake serve` with `[kafka]` against librdkafka's mock cluster (the real Kafka protocol
//! over TCP, in this test process): messages across partitions land exactly once, a poison
//! message is quarantined with its partition and offset and the partition moves on, and a
//! consumer killed with SIGKILL and restarted loses nothing and duplicates nothing.

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::webhook::{Server, event};
use crate::*;

fn produce(producer: &BaseProducer, key: &str, payload: &str) {
    loop {
        match producer.send(BaseRecord::to("audit").key(key).payload(payload)) {
            Ok(()) => return,
            Err((e, _)) => {
                assert!(format!("{e}").contains("Queue full"), "{e}");
                producer.poll(Duration::from_millis(10));
            }
        }
    }
}

fn rows(lake: &Path) -> i64 {
    if !lake.join("audit_events").is_dir() {
        return 0;
    }
    count(lake, "audit_events")
}

fn wait_rows(lake: &Path, n: i64, server: &Server) {
    let started = Instant::now();
    while rows(lake) < n {
        assert!(started.elapsed() < Duration::from_secs(90), "{} of {n} rows\n{}", rows(lake), server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kafka_messages_land_exactly_once_across_a_kill_and_poison_moves_on() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("audit", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    // 300 events as single Events (keys spread them over the 3 partitions), one poison message.
    for i in 0..300 {
        produce(&producer, &format!("k{i}"), &event(&format!("kafka-{i:04}")));
    }
    produce(&producer, "k7", r#"{"kind": 0}"#);
    producer.flush(Duration::from_secs(10)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let config = dir.path().join("auditlake.toml");
    std::fs::write(
        &config,
        format!(
            "[webhook]\nflush_interval_secs = 4\n\n[kafka]\nbrokers = \"{brokers}\"\ntopics = [\"audit\"]\ncluster = \"k8s-prod\"\n\
             # A killed member's partitions move on after its session times out.\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n"
        ),
    )
    .unwrap();
    let server = Server::start(&config, &lake);
    wait_rows(&lake, 300, &server);
    // More arrive and are consumed, but the kill comes before the lake flush that would hold
    // them (flushes are 4 s apart; auto-commit runs every second): their offsets must not have
    // been committed, so the restarted consumer reads them again.
    for i in 300..600 {
        produce(&producer, &format!("k{i}"), &event(&format!("kafka-{i:04}")));
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(rows(&lake) < 600, "the kill must come before the flush");
    server.kill9();

    let server = Server::start(&config, &lake);
    wait_rows(&lake, 600, &server);
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");

    let r = query(&lake, "SELECT count(*) AS n, count(DISTINCT audit_id) AS ids, min(cluster) AS c FROM audit_events");
    assert_eq!(r[0]["n"], 600, "no loss, no duplicate: {r:?}");
    assert_eq!(r[0]["ids"], 600);
    assert_eq!(r[0]["c"], "k8s-prod");
    // The poison message is in quarantine with its topic/partition and offset.
    let mut quarantined = String::new();
    for day in std::fs::read_dir(lake.join("_quarantine")).unwrap().flatten() {
        for f in std::fs::read_dir(day.path()).unwrap().flatten() {
            quarantined.push_str(&std::fs::read_to_string(f.path()).unwrap());
        }
    }
    let first: serde_json::Value = serde_json::from_str(quarantined.lines().next().expect("quarantined")).unwrap();
    assert_eq!(first["raw"], r#"{"kind": 0}"#);
    assert!(first["position"]["source"].as_str().unwrap().starts_with("kafka:audit/"), "{first}");
    assert!(first["position"]["byte_offset"].is_u64(), "{first}");
}
