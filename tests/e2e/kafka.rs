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
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} of {n} rows\n{}",
            rows(lake),
            server.log()
        );
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
        produce(
            &producer,
            &format!("k{i}"),
            &event(&format!("kafka-{i:04}")),
        );
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
        produce(
            &producer,
            &format!("k{i}"),
            &event(&format!("kafka-{i:04}")),
        );
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(rows(&lake) < 600, "the kill must come before the flush");
    server.kill9();

    let server = Server::start(&config, &lake);
    wait_rows(&lake, 600, &server);
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");

    let r = query(
        &lake,
        "SELECT count(*) AS n, count(DISTINCT audit_id) AS ids, min(cluster) AS c FROM audit_events",
    );
    assert_eq!(r[0]["n"], 600, "no loss, no duplicate: {r:?}");
    assert_eq!(r[0]["ids"], 600);
    assert_eq!(r[0]["c"], "k8s-prod");
    // The poison message is in quarantine with its topic/partition and offset.
    let mut quarantined = String::new();
    for day in std::fs::read_dir(lake.join("_quarantine"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(day.path()).unwrap().flatten() {
            quarantined.push_str(&std::fs::read_to_string(f.path()).unwrap());
        }
    }
    let first: serde_json::Value =
        serde_json::from_str(quarantined.lines().next().expect("quarantined")).unwrap();
    assert_eq!(first["raw"], r#"{"kind": 0}"#);
    assert!(
        first["position"]["source"]
            .as_str()
            .unwrap()
            .starts_with("kafka:audit/"),
        "{first}"
    );
    assert!(first["position"]["byte_offset"].is_u64(), "{first}");
}

fn audit_ids(lake: &Path) -> Vec<String> {
    if !lake.join("audit_events").is_dir() {
        return Vec::new();
    }
    query(lake, "SELECT audit_id FROM audit_events")
        .iter()
        .map(|r| r["audit_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Two replicas in one consumer group (each with its own lake) split the partitions; when the
/// second joins, the first flushes before giving partitions up, so together they hold every
/// event. (A broker may refuse the commit during the rebalance; then the new owner re-reads
/// what the old one flushed since its last commit — reported, bounded, never a loss.)
#[test]
fn two_consumers_in_a_group_split_partitions_and_a_rebalance_loses_and_repeats_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("audit", 4, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let send = |from: usize, to: usize| {
        for i in from..to {
            produce(&producer, &format!("k{i}"), &event(&format!("grp-{i:04}")));
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    let setup = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let config = d.join("auditlake.toml");
        std::fs::write(
            &config,
            format!(
                "[webhook]\nflush_interval_secs = 0.5\n\n[kafka]\nbrokers = \"{brokers}\"\ntopics = [\"audit\"]\n\
                 [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n"
            ),
        )
        .unwrap();
        (d.join("lake"), config)
    };
    let (lake_a, config_a) = setup("a");
    let (lake_b, config_b) = setup("b");
    send(0, 200);
    let a = Server::start(&config_a, &lake_a);
    wait_rows(&lake_a, 200, &a);
    // The second replica joins: the group rebalances while more events flow.
    let b = Server::start(&config_b, &lake_b);
    send(200, 400);
    let started = Instant::now();
    loop {
        let n = audit_ids(&lake_a).len() + audit_ids(&lake_b).len();
        if n >= 400 && !audit_ids(&lake_b).is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{n} of 400\n{}\n{}",
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (sa, la) = a.terminate();
    let (sb, lb) = b.terminate();
    assert!(sa.success() && sb.success(), "{la}\n{lb}");
    let (ida, idb) = (audit_ids(&lake_a), audit_ids(&lake_b));
    let all: std::collections::BTreeSet<&String> = ida.iter().chain(&idb).collect();
    assert_eq!(
        all.len(),
        400,
        "every event in one of the lakes\n{la}\n{lb}"
    );
    for ids in [&ida, &idb] {
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "a lake holds a row twice");
    }
    assert!(!idb.is_empty(), "the second replica took partitions");
    let repeated = ida.len() + idb.len() - 400;
    assert!(repeated <= 200, "{repeated} events in both lakes");
    eprintln!(
        "rebalance: {} events in a, {} in b, {repeated} in both",
        ida.len(),
        idb.len()
    );
}
