//! `auditlake serve` with `[kafka]` against librdkafka's mock cluster (the real Kafka protocol
//! over TCP, in this test process): messages across partitions land exactly once, a poison
//! message is quarantined with its partition and offset and the partition moves on, and a
//! consumer killed with SIGKILL and restarted loses nothing and duplicates nothing.

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};

use crate::webhook::{Server, event};
use crate::*;

/// A one-broker mock cluster with topic `audit` of `partitions` partitions, its bootstrap
/// address and a producer on it. Keep the cluster alive for as long as the test uses it.
fn mock_cluster(
    partitions: i32,
) -> (
    MockCluster<'static, DefaultProducerContext>,
    String,
    BaseProducer,
) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("audit", partitions, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    (cluster, brokers, producer)
}

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
    let (_cluster, brokers, producer) = mock_cluster(3);
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
    let (_cluster, brokers, producer) = mock_cluster(4);
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

/// `auditlake ingest --kafka`: a one-shot read up to the end of each partition, offsets
/// committed after the lake commit, so a second run of the same group reads only what is new.
#[test]
fn ingest_kafka_reads_to_the_end_once_and_the_next_run_continues() {
    let (_cluster, brokers, producer) = mock_cluster(2);
    for i in 0..200 {
        produce(&producer, &format!("k{i}"), &event(&format!("once-{i:04}")));
    }
    // An EKS subscription payload naming its cluster: with no --cluster, the envelope decides.
    let eks = serde_json::json!({"messageType": "DATA_MESSAGE", "logGroup": "/aws/eks/eks-prod/cluster",
        "logEvents": [{"id": "1", "timestamp": 1, "message": event("eks-0001")}]});
    produce(&producer, "eks", &eks.to_string());
    producer.flush(Duration::from_secs(10)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let read = |what: &str| -> serde_json::Value {
        let out = run_ok(
            bin()
                .args([
                    "ingest", "--json", "--kafka", &brokers, "--topic", "audit", "--group",
                    "oneshot", "--lake",
                ])
                .arg(&lake),
        );
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {out}"))
    };
    let first = read("first run");
    assert_eq!(first["messages"], 201, "{first}");
    assert_eq!(first["events"], 201);
    assert_eq!(count(&lake, "audit_events"), 201);
    assert_eq!(count(&lake, "audit_events WHERE cluster = 'eks-prod'"), 1);
    assert_eq!(count(&lake, "audit_events WHERE cluster = 'default'"), 200);

    // Nothing new: the committed offsets say so, nothing is read again.
    let second = read("second run");
    assert_eq!(second["messages"], 0, "{second}");
    for i in 200..250 {
        produce(&producer, &format!("k{i}"), &event(&format!("once-{i:04}")));
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let third = read("third run");
    assert_eq!(third["messages"], 50, "{third}");
    assert_eq!(count(&lake, "audit_events"), 251);
    assert_eq!(
        count(&lake, "(SELECT DISTINCT audit_id FROM audit_events)"),
        251
    );
}

/// The tansu broker (`cargo install tansu --locked --features dynostore`), installed by
/// `.ci/run` under `$HOME/.cache/auditlake/tools/bin`, or on PATH.
fn tansu() -> Option<PathBuf> {
    let cached =
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/auditlake/tools/bin/tansu"));
    if let Some(p) = cached.filter(|p| p.is_file()) {
        return Some(p);
    }
    let on_path = std::process::Command::new("tansu")
        .arg("--version")
        .output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return Some(PathBuf::from("tansu"));
    }
    eprintln!(
        "skipping: the tansu broker is not installed (cargo install tansu --locked --features dynostore \
         --root $HOME/.cache/auditlake/tools; .ci/run does this)"
    );
    None
}

/// Produces each line of a file as one message (key = line number) and prints the count.
const PRODUCE_PY: &str = r#"
import sys
from confluent_kafka import Producer
brokers, topic, path = sys.argv[1:4]
p = Producer({"bootstrap.servers": brokers})
n = 0
for line in open(path, "rb"):
    p.produce(topic, line.rstrip(b"\n"), key=str(n).encode())
    n += 1
assert p.flush(30) == 0
print(n)
"#;

struct Broker(std::process::Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Kafka-protocol broker in its own process, and a producer nobody here wrote: Python's
/// confluent-kafka.
#[test]
fn real_broker_tansu_messages_land_through_serve_and_ingest() {
    let Some(tansu) = tansu() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let _broker = Broker(
        std::process::Command::new(&tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tansu"),
    );
    wait_for_port(port, Duration::from_secs(30), "tansu");
    let created = std::process::Command::new(&tansu)
        .args([
            "topic",
            "create",
            "audit",
            "--broker",
            &url,
            "--partitions",
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    // The producer is Python's confluent-kafka (tansu's `cat produce` writes batches librdkafka
    // does not read back here; kcat 1.7 fails at ApiVersions).
    let input = dir.path().join("events.jsonl");
    let lines: Vec<String> = (0..120).map(|i| event(&format!("tansu-{i:04}"))).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let produced = std::process::Command::new("python3")
        .args([
            "-c",
            PRODUCE_PY,
            &format!("127.0.0.1:{port}"),
            "audit",
            input.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    if String::from_utf8_lossy(&produced.stderr).contains("No module named 'confluent_kafka'") {
        eprintln!(
            "skipping: Python's confluent-kafka is not installed (pip install confluent-kafka; .ci/run does this)"
        );
        return;
    }
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&produced.stdout).trim(), "120");

    // serve consumes them as a group…
    let lake = dir.path().join("lake");
    let config = crate::webhook::write_config(
        dir.path(),
        &format!(
            "[kafka]\nbrokers = \"127.0.0.1:{port}\"\ntopics = [\"audit\"]\ngroup_id = \"serve\"\ncluster = \"tansu\"\n"
        ),
    );
    let server = Server::start(&config, &lake);
    wait_rows(&lake, 120, &server);
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(count(&lake, "audit_events WHERE cluster = 'tansu'"), 120);
    assert_eq!(
        count(&lake, "(SELECT DISTINCT audit_id FROM audit_events)"),
        120
    );

    // …and a one-shot ingest in another group reads the same topic to its end.
    let lake2 = dir.path().join("lake2");
    let out = run_ok(
        bin()
            .args([
                "ingest",
                "--json",
                "--kafka",
                &format!("127.0.0.1:{port}"),
                "--topic",
                "audit",
                "--group",
                "oneshot",
                "--cluster",
                "tansu",
                "--lake",
            ])
            .arg(&lake2),
    );
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["events"], 120, "{summary}");
    assert_eq!(count(&lake2, "audit_events"), 120);
}
