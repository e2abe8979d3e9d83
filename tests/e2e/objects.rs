//! Object-storage sources: the managed clouds' audit-log exports (EKS through Firehose, GKE's
//! Cloud Logging sink, AKS diagnostic settings) in a real S3-protocol server process (moto),
//! read by `auditlake ingest s3://…` and polled by `serve`.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::lake::{S3Server, s3_tools};
use crate::webhook::Server;
use crate::*;

/// PUTs objects into the S3 server with boto3 (which moto depends on), signed like any client.
fn put_many(s3: &S3Server, bucket: &str, objects: &[(String, Vec<u8>)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = Vec::new();
    for (i, (key, bytes)) in objects.iter().enumerate() {
        let file = dir.path().join(i.to_string());
        std::fs::write(&file, bytes).unwrap();
        manifest.push(serde_json::json!([key, file]));
    }
    let script = r#"
import json, sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
for key, path in json.load(open(sys.argv[3])):
    s3.put_object(Bucket=sys.argv[2], Key=key, Body=open(path, "rb").read())
"#;
    let list = dir.path().join("manifest.json");
    std::fs::write(&list, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = Command::new("python3")
        .args(["-c", script, &s3.endpoint, bucket])
        .arg(&list)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "PUT {} objects: {}",
        objects.len(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn put(s3: &S3Server, bucket: &str, key: &str, bytes: &[u8]) {
    put_many(s3, bucket, &[(key.to_owned(), bytes.to_vec())]);
}

fn k8s_event(id: &str, user: &str, verb: &str, resource: &str, name: &str) -> String {
    serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
        "stage": "ResponseComplete", "verb": verb,
        "requestURI": format!("/api/v1/namespaces/payments/{resource}/{name}"),
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.7"],
        "objectRef": {"resource": resource, "namespace": "payments", "name": name, "apiVersion": "v1"},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": "2026-12-03T10:00:00.000000Z",
        "stageTimestamp": "2026-12-03T10:00:00.020000Z"
    })
    .to_string()
}

/// A Firehose object of an EKS CloudWatch Logs subscription: gzip members back to back, each a
/// subscription payload with no newline after it, as Firehose writes them to S3.
fn firehose_object(cluster: &str, batches: &[&[&str]]) -> Vec<u8> {
    let mut out = Vec::new();
    for ids in batches {
        let payload = serde_json::json!({
            "messageType": "DATA_MESSAGE", "owner": "123456789012",
            "logGroup": format!("/aws/eks/{cluster}/cluster"),
            "logStream": "kube-apiserver-audit-6f2c",
            "subscriptionFilters": ["audit-to-firehose"],
            "logEvents": ids.iter().enumerate().map(|(i, id)| serde_json::json!({
                "id": format!("3{i}"), "timestamp": 1_764_756_000_000i64,
                "message": k8s_event(id, "arn:aws:iam::123456789012:role/deployer", "get", "secrets", "db-creds"),
            })).collect::<Vec<_>>(),
        });
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(payload.to_string().as_bytes()).unwrap();
        out.extend(gz.finish().unwrap());
    }
    out
}

/// A GKE Cloud Logging sink file: one `LogEntry` per line.
fn gke_entry(insert_id: &str, principal: &str) -> String {
    serde_json::json!({
        "insertId": insert_id, "logName": "projects/acme/logs/cloudaudit.googleapis.com%2Factivity",
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": principal},
            "authorizationInfo": [{"granted": true, "permission": "io.k8s.core.v1.pods.exec.create"}],
            "methodName": "io.k8s.core.v1.pods.exec.create",
            "requestMetadata": {"callerIp": "203.0.113.9", "callerSuppliedUserAgent": "kubectl/v1.31.0"},
            "resourceName": "core/v1/namespaces/payments/pods/api-0/exec",
            "serviceName": "k8s.io", "status": {"code": 0}
        },
        "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "gke-prod", "location": "europe-west1", "project_id": "acme"}},
        "timestamp": "2026-12-03T10:00:01.000000Z", "severity": "NOTICE"
    })
    .to_string()
}

const AKS_KEY: &str = "aks/insights-logs-kube-audit/resourceId=/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-WEU-1/y=2026/m=12/d=03/h=10/m=00/PT1H.json";

/// One AKS diagnostic record (a line of the storage export).
fn aks_line(id: &str) -> String {
    serde_json::json!({
        "time": "2026-12-03T10:00:02Z",
        "resourceId": "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-WEU-1",
        "category": "kube-audit",
        "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
        "properties": {"log": k8s_event(id, "system:serviceaccount:ci:deployer", "delete", "pods", "api-0"), "stream": "stdout", "pod": "kube-apiserver-7c9"}
    })
    .to_string() + "\n"
}

fn ingest_objects(cmd: &mut Command) -> serde_json::Value {
    let out = run_ok(cmd);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Rows per cluster of an object-store lake.
fn per_cluster(s3: &S3Server, lake: &str) -> Vec<(String, i64)> {
    let out = run_ok(s3.bin().args([
        "query",
        "--format",
        "json",
        "--lake",
        lake,
        "SELECT cluster, count(*) AS n FROM audit_events GROUP BY cluster ORDER BY cluster",
    ]));
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["cluster"].as_str().unwrap().to_owned(),
                v["n"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn cloud_exports_in_s3_land_once_and_an_append_blob_is_read_from_its_offset() {
    let Some(()) = s3_tools() else { return };
    let s3 = S3Server::start();
    s3.create_bucket("exports");
    put(
        &s3,
        "exports",
        "eks/2026/12/03/10/audit-to-s3-1-2026-12-03-10-00-00-4f1a",
        &firehose_object("eks-prod", &[&["e1", "e2"], &["e3"]]),
    );
    let gke = format!(
        "{}\n{}\n{{\"insertId\": \"poison\", broken\n",
        gke_entry("g1", "mallory@example.com"),
        gke_entry("g2", "alice@example.com")
    );
    let gke_key = "gke/cloudaudit.googleapis.com/activity/2026/12/03/10:00:00_10:59:59_S0.json";
    put(&s3, "exports", gke_key, gke.as_bytes());
    let mut aks = aks_line("a1") + &aks_line("a2");
    put(&s3, "exports", AKS_KEY, aks.as_bytes());

    // The lake lives in the same bucket, under the source's prefix: its own files are not input.
    let lake = "s3://exports/lake";
    let ingest = || {
        let mut cmd = s3.bin();
        cmd.args(["ingest", "--json", "--lake", lake, "s3://exports/"]);
        ingest_objects(&mut cmd)["sources"][0].clone()
    };
    let first = ingest();
    assert_eq!(first["objects_listed"], 3, "{first}");
    assert_eq!(first["objects_read"], 3, "{first}");
    assert_eq!(first["events"], 7, "{first}");
    assert_eq!(first["quarantined"], 1, "the cut GKE line: {first}");
    // Each cloud's envelope named its cluster.
    let expected = vec![
        ("aks-weu-1".to_owned(), 2),
        ("eks-prod".to_owned(), 3),
        ("gke-prod".to_owned(), 2),
    ];
    assert_eq!(per_cluster(&s3, lake), expected);
    // What the findings are built on: who did what to what.
    let out = run_ok(s3.bin().args([
        "query", "--format", "json", "--lake", lake,
        "SELECT cluster, user_name, verb, resource, name FROM audit_events WHERE audit_id IN ('g1', 'e3', 'a2') ORDER BY cluster",
    ]));
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert_eq!(rows[0]["user_name"], "system:serviceaccount:ci:deployer");
    assert_eq!(
        (rows[0]["verb"].as_str(), rows[0]["name"].as_str()),
        (Some("delete"), Some("api-0"))
    );
    assert_eq!(
        rows[1]["user_name"],
        "arn:aws:iam::123456789012:role/deployer"
    );
    assert_eq!(
        (rows[1]["resource"].as_str(), rows[1]["name"].as_str()),
        (Some("secrets"), Some("db-creds"))
    );
    assert_eq!(rows[2]["user_name"], "mallory@example.com");

    // Nothing new: nothing read, nothing added.
    let idle = ingest();
    assert_eq!(
        (idle["objects_read"].as_u64(), idle["events"].as_u64()),
        (Some(0), Some(0)),
        "{idle}"
    );

    // The AKS blob grows through the hour (a new etag, like every Azure append): only the new
    // line is read.
    let before = aks.len() as u64;
    aks += &aks_line("a3");
    put(&s3, "exports", AKS_KEY, aks.as_bytes());
    let grown = ingest();
    assert_eq!(grown["objects_read"], 1, "{grown}");
    assert_eq!(grown["events"], 1, "{grown}");
    assert_eq!(
        grown["bytes_read"].as_u64(),
        Some(aks.len() as u64 - before)
    );
    assert_eq!(grown["rewritten"], serde_json::json!([]));

    // The GKE file is replaced by other content: reported as a rewrite and read again; the
    // lake keeps one copy of each event.
    let replaced = format!(
        "{}\n{}\n",
        gke_entry("g1", "mallory@example.com"),
        gke_entry("g9", "eve@example.com")
    );
    put(&s3, "exports", gke_key, replaced.as_bytes());
    let mut cmd = s3.bin();
    cmd.args(["ingest", "--lake", lake, "s3://exports/"]);
    let out = run(&mut cmd);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: object rewritten since it was read") && stderr.contains(gke_key),
        "{stderr}"
    );
    let expected = vec![
        ("aks-weu-1".to_owned(), 3),
        ("eks-prod".to_owned(), 3),
        ("gke-prod".to_owned(), 3),
    ];
    assert_eq!(per_cluster(&s3, lake), expected);
    // The lake's integrity check still passes: nothing of the source was written into it.
    run_ok(s3.bin().args(["verify", "--lake", lake]));
}

/// Reads the checkpoint documents of a local lake: objects recorded.
fn checkpointed(lake: &Path) -> usize {
    std::fs::read_dir(lake.join("_state/sources"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map(|v| v["objects"].as_object().map_or(0, |o| o.len()))
        .sum()
}

#[test]
fn a_firehose_prefix_lands_exactly_once_through_kill_9_and_a_poison_record_names_its_object_and_offset()
 {
    let Some(()) = s3_tools() else { return };
    let s3 = S3Server::start();
    s3.create_bucket("exports");
    // Three hours of Firehose output in each of its two shapes: gzip members of CloudWatch
    // subscription payloads, and (with Firehose's decompression + message extraction) the audit
    // events back to back with no delimiter.
    const GZ_EVENTS: usize = 6000;
    const JSON_EVENTS: usize = 2500;
    let mut objects = Vec::new();
    let mut poison_offset = 0;
    for hour in 10..13 {
        let ids: Vec<String> = (0..GZ_EVENTS).map(|i| format!("gz{hour}-{i}")).collect();
        let batches: Vec<Vec<&str>> = ids
            .chunks(500)
            .map(|c| c.iter().map(String::as_str).collect())
            .collect();
        let batches: Vec<&[&str]> = batches.iter().map(Vec::as_slice).collect();
        objects.push((
            format!("firehose/gz/2026/12/03/{hour}/audit-1-2026-12-03-{hour}-00-00-6b1d.gz"),
            firehose_object("eks-prod", &batches),
        ));
        let mut body = String::new();
        for i in 0..JSON_EVENTS {
            if hour == 12 && i == 1200 {
                poison_offset = body.len();
                body += r#"{"kind":"Event","auditID":"poison","verb":42}"#;
            }
            body += &k8s_event(&format!("js{hour}-{i}"), "alice", "list", "pods", "");
        }
        objects.push((
            format!("firehose/json/2026/12/03/{hour}/audit-2-2026-12-03-{hour}-00-00-77aa"),
            body.into_bytes(),
        ));
    }
    put_many(&s3, "exports", &objects);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let config = dir.path().join("auditlake.toml");
    // Commit and checkpoint every MiB, so a kill lands between commits, inside an object.
    std::fs::write(
        &config,
        "[ingest]\ncluster = \"eks-prod\"\n[[sources.object_store]]\nurl = \"s3://exports/firehose/\"\nround_mb = 1\n",
    )
    .unwrap();
    let ingest = || {
        let mut cmd = s3.bin();
        cmd.arg("--config")
            .arg(&config)
            .args(["ingest", "--json", "--lake"])
            .arg(&lake)
            .arg("s3://exports/firehose/");
        cmd
    };
    let mut child = ingest()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while checkpointed(&lake) == 0 && child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint was written"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let at_kill = checkpointed(&lake);
    assert!(
        at_kill > 0 && at_kill < objects.len(),
        "the kill should land mid-run: {at_kill} of {} objects checkpointed",
        objects.len()
    );

    let again: serde_json::Value = serde_json::from_str(&run_ok(&mut ingest())).unwrap();
    let again = &again["sources"][0];
    assert!(
        again["objects_read"].as_u64().unwrap() <= (objects.len() - at_kill) as u64,
        "the rerun reads only what was not checkpointed: {again}"
    );
    let total = (3 * (GZ_EVENTS + JSON_EVENTS)) as i64;
    assert_eq!(count(&lake, "audit_events"), total);
    assert_eq!(
        query(
            &lake,
            "SELECT count(DISTINCT audit_id) AS n FROM audit_events"
        )[0]["n"]
            .as_i64(),
        Some(total)
    );
    assert_eq!(
        count(&lake, "audit_events WHERE cluster = 'eks-prod'"),
        total
    );
    assert_eq!(checkpointed(&lake), objects.len());
    // A second run reads nothing.
    let idle: serde_json::Value = serde_json::from_str(&run_ok(&mut ingest())).unwrap();
    assert_eq!(idle["sources"][0]["objects_read"], 0, "{idle}");
    assert_eq!(idle["sources"][0]["events"], 0, "{idle}");

    // The poison record: in quarantine with its object's URL and byte offset.
    let mut records = Vec::new();
    for day in std::fs::read_dir(lake.join("_quarantine"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(day.path()).unwrap().flatten() {
            for line in std::fs::read_to_string(f.path()).unwrap().lines() {
                records.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
            }
        }
    }
    let poison: Vec<_> = records
        .iter()
        .filter(|r| r["raw"].as_str().is_some_and(|s| s.contains("poison")))
        .collect();
    assert!(!poison.is_empty(), "{records:?}");
    for r in poison {
        assert_eq!(
            r["position"]["source"],
            "s3://exports/firehose/json/2026/12/03/12/audit-2-2026-12-03-12-00-00-77aa"
        );
        assert_eq!(
            r["position"]["byte_offset"].as_u64(),
            Some(poison_offset as u64)
        );
        assert!(
            r["reason"]
                .as_str()
                .unwrap()
                .contains("not a valid audit event"),
            "{r}"
        );
    }
}

/// A labelled value of `/metrics`.
fn metric(text: &str, name: &str, source: &str) -> Option<f64> {
    let prefix = format!("{name}{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn serve_polls_an_object_store_source_and_exports_its_progress() {
    let Some(()) = s3_tools() else { return };
    let s3 = S3Server::start();
    s3.create_bucket("exports");
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let config = dir.path().join("auditlake.toml");
    std::fs::write(
        &config,
        "[[sources.object_store]]\nurl = \"s3://exports/aks/\"\npoll_secs = 1\n",
    )
    .unwrap();
    let server = Server::start_with(s3.bin(), &config, &lake);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let source = "s3://exports/aks/";
    // Declared at zero before anything was read, so alerts see the first change.
    let m = server.metrics(&rt);
    assert_eq!(
        metric(&m, "auditlake_object_source_events_total", source),
        Some(0.0),
        "{m}"
    );
    let wait_events = |n: f64| {
        let started = Instant::now();
        loop {
            let m = server.metrics(&rt);
            if metric(&m, "auditlake_object_source_events_total", source) == Some(n) {
                return m;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "events never reached {n}:\n{m}\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let mut blob = aks_line("s1") + &aks_line("s2");
    put(&s3, "exports", AKS_KEY, blob.as_bytes());
    wait_events(2.0);
    blob += &aks_line("s3");
    put(&s3, "exports", AKS_KEY, blob.as_bytes());
    let m = wait_events(3.0);
    assert_eq!(
        metric(&m, "auditlake_object_source_objects_total", source),
        Some(2.0)
    );
    assert_eq!(
        metric(&m, "auditlake_object_source_rewrites_total", source),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "auditlake_object_source_errors_total", source),
        Some(0.0)
    );
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("object_source_polled source=\"s3://exports/aks/\" objects=1"),
        "{log}"
    );
    assert_eq!(count(&lake, "audit_events WHERE cluster = 'aks-weu-1'"), 3);
}

#[test]
fn a_bad_source_gets_a_clear_error_and_costs_nothing_else() {
    let Some(()) = s3_tools() else { return };
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // A bucket that does not exist: the error names the source.
    let out = run(s3
        .bin()
        .args(["ingest", "--lake"])
        .arg(&lake)
        .arg("s3://no-such-bucket/eks/"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("s3://no-such-bucket/eks/"), "{stderr}");
    // Files and URLs are not mixed in one run.
    let file = dir.path().join("audit.log");
    std::fs::write(&file, k8s_event("f1", "alice", "get", "pods", "x") + "\n").unwrap();
    let out = run(s3
        .bin()
        .args(["ingest", "--lake"])
        .arg(&lake)
        .arg(&file)
        .arg("s3://exports/"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("separate runs"));
    // A bad entry names its key; a typo in a storage option names the option.
    for (toml, key) in [
        (
            "[[sources.object_store]]\nurl = \"/var/log/audit\"\n",
            "sources.object_store[0].url",
        ),
        (
            "[[sources.object_store]]\nurl = \"s3://b/\"\npoll_secs = 0\n",
            "sources.object_store[0].poll_secs",
        ),
        (
            "[[sources.object_store]]\nurl = \"s3://b/\"\nstorage = { aws_endpoint_urll = \"http://x\" }\n",
            "aws_endpoint_urll",
        ),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, toml).unwrap();
        let out = run(bin()
            .arg("--config")
            .arg(&config)
            .args(["ingest", "--lake"])
            .arg(&lake)
            .arg("s3://b/"));
        assert!(!out.status.success(), "{toml}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{toml}: {stderr}");
    }
    assert!(!lake.join("audit_events").join("cluster=default").exists());
}

/// Azurite (Microsoft's Azure Storage emulator) serving blobs on a free port, or `None` (with a
/// message) where it is not installed. `.ci/run` installs it with npm (and the Python client
/// the test writes append blobs with) and sets AUDITLAKE_REQUIRE_AZURITE.
struct Azurite {
    _process: KillOnDrop,
    _data: tempfile::TempDir,
    port: u16,
}

/// The emulator's well-known development account key (public, in Microsoft's documentation).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Azurite {
    fn start() -> Option<Azurite> {
        let installed = std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(".cache/auditlake/azurite/node_modules/.bin/azurite-blob"))
            .filter(|p| p.exists());
        let client = Command::new("python3")
            .args(["-c", "import azure.storage.blob"])
            .output()
            .is_ok_and(|o| o.status.success());
        let (Some(bin), true) = (installed, client) else {
            assert!(
                std::env::var_os("AUDITLAKE_REQUIRE_AZURITE").is_none(),
                "AUDITLAKE_REQUIRE_AZURITE is set but Azurite or azure-storage-blob is missing"
            );
            eprintln!(
                "skipping: Azurite (npm install azurite in ~/.cache/auditlake/azurite) or the Python client (pip install azure-storage-blob) is not installed; .ci/run installs them"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = tempfile::tempdir().unwrap();
        let process = Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--silent", "--skipApiVersionCheck", "--location"])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite");
        let process = KillOnDrop(process);
        wait_for_port(port, Duration::from_secs(60), "Azurite");
        Some(Azurite {
            _process: process,
            _data: data,
            port,
        })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Appends `bytes` to an append blob (created on first use), as Azure Monitor does.
    fn append(&self, container: &str, blob: &str, bytes: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let body = dir.path().join("body");
        std::fs::write(&body, bytes).unwrap();
        let script = r#"
import sys
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + sys.argv[1]
        + ";BlobEndpoint=" + sys.argv[2] + "/devstoreaccount1;")
service = BlobServiceClient.from_connection_string(conn)
try:
    service.create_container(sys.argv[3])
except ResourceExistsError:
    pass
blob = service.get_blob_client(sys.argv[3], sys.argv[4])
if not blob.exists():
    blob.create_append_blob()
blob.append_block(open(sys.argv[5], "rb").read())
"#;
        let out = Command::new("python3")
            .args(["-c", script, AZURITE_KEY, &self.endpoint(), container, blob])
            .arg(&body)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "append {blob}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The binary, pointed at this emulator.
    fn bin(&self) -> Command {
        let mut cmd = bin();
        cmd.env("AZURE_STORAGE_USE_EMULATOR", "true")
            .env("AZURITE_BLOB_STORAGE_URL", self.endpoint());
        cmd
    }
}

#[test]
fn an_aks_append_blob_on_azurite_lands_every_line_once_as_it_grows() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    let container = "insights-logs-kube-audit";
    let blob = AKS_KEY.trim_start_matches("aks/insights-logs-kube-audit/");
    azurite.append(
        container,
        blob,
        (aks_line("z1") + &aks_line("z2")).as_bytes(),
    );
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let ingest = || -> serde_json::Value {
        let mut cmd = azurite.bin();
        cmd.args(["ingest", "--json", "--lake"])
            .arg(&lake)
            .arg(format!("az://{container}/"));
        let out: serde_json::Value = serde_json::from_str(&run_ok(&mut cmd)).unwrap();
        out["sources"][0].clone()
    };
    let first = ingest();
    assert_eq!(first["objects_read"], 1, "{first}");
    assert_eq!(first["events"], 2, "{first}");
    // The hour goes on: Azure Monitor appends a block to the same blob.
    azurite.append(
        container,
        blob,
        (aks_line("z3") + &aks_line("z4")).as_bytes(),
    );
    let second = ingest();
    assert_eq!(second["events"], 2, "{second}");
    assert_eq!(
        second["rewritten"],
        serde_json::json!([]),
        "an append is not a rewrite"
    );
    let idle = ingest();
    assert_eq!(idle["objects_read"], 0, "{idle}");
    // Every line once, in the cluster the resource id names.
    assert_eq!(count(&lake, "audit_events"), 4);
    assert_eq!(count(&lake, "audit_events WHERE cluster = 'aks-weu-1'"), 4);
    assert_eq!(
        query(
            &lake,
            "SELECT count(DISTINCT audit_id) AS n FROM audit_events"
        )[0]["n"]
            .as_i64(),
        Some(4)
    );
}
