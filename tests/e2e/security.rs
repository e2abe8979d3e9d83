//! Attacks on each entry point, through the real binary and real protocol peers: a read-only SQL
//! endpoint that must not write (psql over the simple protocol, psycopg over the extended one), a
//! cluster-bound credential that must not write another cluster, compression bombs, control
//! sequences in event data, secrets in sink URLs, and clients that hold connections open.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::webhook::{Server, event, event_list, plain_client, runtime, write_config};
use crate::*;

fn post(
    rt: &tokio::runtime::Runtime,
    url: String,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String) {
    rt.block_on(async {
        let r = plain_client()
            .post(url)
            .bearer_auth(token)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

/// Every file under `dir` with its contents' hash: "byte-identical afterwards" is equality.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, u64> {
    use std::hash::{Hash, Hasher};
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&p).unwrap().hash(&mut h);
                out.insert(p, h.finish());
            }
        }
    }
    out
}

fn quarantine_text(lake: &Path) -> String {
    let q = lake.join("_quarantine");
    if !q.exists() {
        return String::new();
    }
    snapshot(&q)
        .keys()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A credential bound to one cluster writes only that cluster.

fn eks_payload(cluster: &str, id: &str) -> String {
    serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "111122223333",
        "logGroup": format!("/aws/eks/{cluster}/cluster"), "logStream": "kube-apiserver-audit-1",
        "logEvents": [{"id": "1", "timestamp": 1, "message": format!("{{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",{}", &event(id)[1..])}]})
    .to_string()
}

fn aks_payload(cluster: &str, id: &str) -> String {
    serde_json::json!({"records": [{"resourceId": format!("/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/{cluster}"),
        "category": "kube-audit", "properties": {"log": format!("{{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",{}", &event(id)[1..])}}]})
    .to_string()
}

fn gke_payload(cluster: &str, id: &str) -> String {
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    serde_json::json!({"insertId": id, "timestamp": now, "receiveTimestamp": now,
        "resource": {"type": "k8s_cluster", "labels": {"cluster_name": cluster, "location": "europe-west1"}},
        "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": "k8s.io",
            "methodName": "io.k8s.core.v1.secrets.get", "resourceName": "core/v1/namespaces/prod/secrets/db",
            "authenticationInfo": {"principalEmail": "mallory@example.com"}, "status": {}}})
    .to_string()
}

fn gzip_base64(bytes: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    base64::engine::general_purpose::STANDARD
        .encode(gz.finish().unwrap())
        .into_bytes()
}

#[test]
fn a_credential_bound_to_one_cluster_cannot_write_another_through_an_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    std::fs::write(
        dir.path().join("tokens"),
        "dev-token-0123456789abcdef,dev\nany-token-0123456789abcdef,*\n",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        "[webhook]\ntokens_file = \"tokens\"\nflush_interval_secs = 0.2\n",
    );
    let server = Server::start(&config, &lake);
    let rt = runtime();
    let dev = format!("{}/audit/dev", server.url);
    let json = "application/json";

    // Forged: the dev credential, envelopes naming prod (EKS, AKS, GKE, and EKS as Firehose
    // delivers it, base64 gzip).
    for (what, body) in [
        ("eks", eks_payload("prod", "forged-eks").into_bytes()),
        ("aks", aks_payload("prod", "forged-aks").into_bytes()),
        ("gke", gke_payload("prod", "forged-gke").into_bytes()),
        (
            "eks base64-gzip",
            gzip_base64(eks_payload("prod", "forged-gz").as_bytes()),
        ),
    ] {
        let (status, text) = post(&rt, dev.clone(), "dev-token-0123456789abcdef", json, body);
        assert_eq!(status, 403, "{what}: {text}");
        let err: serde_json::Value = serde_json::from_str(&text).unwrap();
        let err = err["error"].as_str().unwrap();
        assert!(
            err.contains("\"prod\"") && err.contains("\"dev\""),
            "{what}: {err}"
        );
    }
    // The envelope naming the bound cluster itself is fine.
    let (status, text) = post(
        &rt,
        dev.clone(),
        "dev-token-0123456789abcdef",
        json,
        eks_payload("dev", "own-eks").into_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    // Nothing bound the cluster (`POST /audit`, a `*` token): the envelope names it.
    let (status, text) = post(
        &rt,
        format!("{}/audit", server.url),
        "any-token-0123456789abcdef",
        json,
        eks_payload("prod", "unbound-eks").into_bytes(),
    );
    assert_eq!(status, 200, "{text}");

    let metrics = server.metrics(&rt);
    assert!(
        metrics.contains(r#"auditlake_cluster_mismatch_events_total{source="webhook"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"auditlake_webhook_requests_refused_total{reason="cluster_mismatch"} 4"#),
        "{metrics}"
    );
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(
        log.matches("cluster_mismatch source=").count(),
        4,
        "one log line per refused request:\n{log}"
    );
    let rows = query(
        &lake,
        "SELECT cluster, audit_id FROM audit_events ORDER BY audit_id",
    );
    assert_eq!(
        rows,
        vec![
            serde_json::json!({"cluster": "dev", "audit_id": "own-eks"}),
            serde_json::json!({"cluster": "prod", "audit_id": "unbound-eks"}),
        ]
    );
    assert!(
        !quarantine_text(&lake).contains("forged"),
        "a refused request stores nothing"
    );

    // The same rule for a cluster bound by the operator (`--cluster`, like `kafka.cluster`): the
    // forged events are quarantined with the reason, the rest lands.
    let input = dir.path().join("export.jsonl");
    std::fs::write(
        &input,
        format!(
            "{}\n{}\n",
            eks_payload("prod", "file-forged"),
            eks_payload("dev", "file-own")
        ),
    )
    .unwrap();
    let summary = ingest(&lake, "dev", &[&input]);
    assert_eq!(summary["events"], 1, "{summary}");
    assert_eq!(summary["rejected"], 1, "{summary}");
    let q = quarantine_text(&lake);
    assert!(
        q.contains("cluster mismatch: the envelope names cluster \\\"prod\\\" but this source is bound to \\\"dev\\\""),
        "{q}"
    );
    assert_eq!(count(&lake, "audit_events WHERE cluster = 'prod'"), 1);
}

// ---------------------------------------------------------------------------------------------
// One decompression budget per request.

/// A base64 line of concatenated gzip members that expands to `mib` MiB: `{"x":"aaa…"}`.
fn bomb_line(mib: usize) -> Vec<u8> {
    use base64::Engine;
    let member = |data: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    };
    let filler = member(&vec![b'a'; 1 << 20]);
    let mut gz = member(br#"{"x":""#);
    for _ in 0..mib {
        gz.extend_from_slice(&filler);
    }
    gz.extend_from_slice(&member(br#""}"#));
    base64::engine::general_purpose::STANDARD
        .encode(gz)
        .into_bytes()
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

#[test]
fn nested_compression_cannot_expand_a_request_past_max_body() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let config = write_config(
        dir.path(),
        "[webhook]\nmax_body_mb = 1\nflush_interval_secs = 0.2\n",
    );
    let server = Server::start(&config, &lake);
    let rt = runtime();
    // Three lines that would expand to 200 MiB each, and one real event.
    let bomb = bomb_line(200);
    let mut body = Vec::new();
    for _ in 0..3 {
        body.extend_from_slice(&bomb);
        body.push(b'\n');
    }
    let real = format!(
        "{{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",{}",
        &event("real-1")[1..]
    );
    body.extend_from_slice(real.as_bytes());
    body.push(b'\n');
    assert!(
        body.len() < 1 << 20,
        "the body itself is within max_body_mb"
    );
    let rss_before = peak_rss_mib(server.pid());
    let (status, text) = post(
        &rt,
        format!("{}/audit/prod", server.url),
        "",
        "application/x-ndjson",
        body.clone(),
    );
    assert_eq!(status, 200, "{text}");
    let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["events"], 1, "{reply}");
    assert_eq!(reply["quarantined"], 3, "{reply}");
    let rss_after = peak_rss_mib(server.pid());

    // The same bomb inside a gzip Content-Encoding: both layers draw on one budget.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bomb).unwrap();
    let status = rt.block_on(async {
        plain_client()
            .post(format!("{}/audit/prod", server.url))
            .header("Content-Type", "application/x-ndjson")
            .header("Content-Encoding", "gzip")
            .body(gz.finish().unwrap())
            .send()
            .await
            .unwrap()
            .status()
    });
    // Refused as a body that is no audit input (400) once its one line is over the budget;
    // quarantined compressed like the others.
    assert_eq!(status, 400);
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");

    assert!(
        rss_after < rss_before + 120,
        "peak RSS grew from {rss_before} to {rss_after} MiB for a 1 MiB request"
    );
    let q = lake.join("_quarantine");
    let stored: u64 = snapshot(&q)
        .keys()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        stored < 4 << 20,
        "quarantine holds {stored} bytes: never the lines' expansion"
    );
    let text = quarantine_text(&lake);
    assert_eq!(
        text.matches("expands past the decompression budget")
            .count(),
        4,
        "{}",
        &text[..text.len().min(2000)]
    );
    // Its expansion cannot be checked for secret values without expanding it: the record keeps
    // the reason, position and length, not the bytes.
    assert_eq!(
        text.matches("\"withheld\":").count(),
        4,
        "{}",
        &text[..text.len().min(2000)]
    );
    assert!(text.contains(&format!("\"raw_len\":{}", bomb.len())));
    assert_eq!(count(&lake, "audit_events"), 1);
    eprintln!("bomb request: peak RSS {rss_before} → {rss_after} MiB, quarantine {stored} bytes");
}

// ---------------------------------------------------------------------------------------------
// Event data reaches a terminal only with its control characters shown.

#[test]
fn control_sequences_in_event_data_are_escaped_for_people_and_exact_for_programs() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    // A user agent that retitles the terminal and clears it; an exec command with a percent-
    // encoded escape sequence and a right-to-left override.
    let agent = "kubectl\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m";
    let event = serde_json::json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": "esc-1", "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/shop/pods/web-0/exec?command=sh&command=-c&command=%1B%5B2J%E2%80%AEtxt.exe&container=app",
        "verb": "create", "user": {"username": "mallory"}, "sourceIPs": ["10.0.0.9"], "userAgent": agent,
        "objectRef": {"resource": "pods", "namespace": "shop", "name": "web-0", "subresource": "exec", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 101}, "requestReceivedTimestamp": now.to_string(),
        "stageTimestamp": now.to_string()});
    let input = dir.path().join("audit.log");
    std::fs::write(&input, format!("{event}\n")).unwrap();
    ingest(&lake, "prod", &[&input]);

    let timeline = run_ok(
        bin()
            .args(["timeline", "--user", "mallory", "--since", "1h", "--lake"])
            .arg(&lake),
    );
    let table = run_ok(
        bin()
            .args(["query", "--lake"])
            .arg(&lake)
            .arg("SELECT user_agent, exec_command FROM audit_events"),
    );
    for (what, out) in [("timeline", &timeline), ("table", &table)] {
        assert!(
            !out.chars()
                .any(|c| matches!(c, '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202e}')),
            "{what} passed a control character through: {out:?}"
        );
        assert!(
            out.contains("kubectl\\e]0;owned\\x07\\e[2J\\x9b31m"),
            "{what}: {out}"
        );
        assert!(out.contains("\\e[2J\\u{202e}txt.exe"), "{what}: {out}");
    }
    // JSON and CSV stay exact.
    let rows = query(&lake, "SELECT user_agent FROM audit_events");
    assert_eq!(rows[0]["user_agent"], agent);
    let csv = run_ok(
        bin()
            .args(["query", "--format", "csv", "--lake"])
            .arg(&lake)
            .arg("SELECT user_agent FROM audit_events"),
    );
    assert!(csv.contains(agent), "{csv:?}");
}

// ---------------------------------------------------------------------------------------------
// A sink's secret URL never reaches the log.

#[test]
fn a_failing_sink_is_logged_by_host_and_port_never_its_secret_path_or_query() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = write_config(
        dir.path(),
        &format!(
            "[webhook]\nflush_interval_secs = 0.2\n\n[detect]\nrules_dir = \"{rules}\"\n\n\
             [scheduler]\nrules = [\"exec-into-pod\"]\nschedule_secs = 1\ntick_secs = 0.2\nsettle_secs = 0\n\n\
             [[sinks]]\nname = \"hook\"\ntype = \"webhook\"\n\
             url = \"http://127.0.0.1:{port}/services/T0PSECRETPATH/hook?token=S3CRETQUERY\"\n",
            rules = repo().join("rules").display()
        ),
    );
    let server = Server::start(&config, &lake);
    let rt = runtime();
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    let exec = format!(
        r#"{{"level":"Metadata","auditID":"x1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/pods/db-0/exec?command=sh&container=app&stdin=true&tty=true","verb":"create","user":{{"username":"mallory","groups":["developers"]}},"sourceIPs":["10.0.12.7"],"userAgent":"kubectl/v1.31.2","objectRef":{{"resource":"pods","namespace":"shop","name":"db-0","apiVersion":"v1","subresource":"exec"}},"responseStatus":{{"metadata":{{}},"code":101}},"requestReceivedTimestamp":"{now}","stageTimestamp":"{now}","annotations":{{"authorization.k8s.io/decision":"allow"}}}}"#
    );
    let body = format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{exec}]}}"#);
    let (status, text) = post(
        &rt,
        format!("{}/audit/prod", server.url),
        "",
        "application/json",
        body.into_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let started = Instant::now();
    while !server.log().contains("sink_delivery_failed") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no delivery failure logged:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, log) = server.terminate();
    assert!(
        !log.contains("T0PSECRETPATH") && !log.contains("S3CRETQUERY"),
        "{log}"
    );
    assert!(
        log.contains(&format!("http://127.0.0.1:{port}")),
        "the log still says where delivery failed:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// Connections: time limits, a connection limit, no open unauthenticated listener.

/// Reads until the server closes the connection; how long that took (None: still open at
/// `limit`).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn slow_silent_and_excess_connections_are_closed_and_an_open_listener_needs_consent() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");

    // A non-loopback address with no authentication is refused unless the config says so.
    let open = write_config(dir.path(), "[webhook]\nlisten = \"0.0.0.0:0\"\n");
    let out = run(bin()
        .arg("--config")
        .arg(&open)
        .args(["serve", "--lake"])
        .arg(&lake)
        .stdin(Stdio::null()));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("webhook.allow_unauthenticated") && err.contains("not a loopback address"),
        "{err}"
    );

    let config = write_config(
        dir.path(),
        "[webhook]\nheader_timeout_secs = 2\nbody_timeout_secs = 2\nmax_connections = 3\n",
    );
    let server = Server::start(&config, &lake);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let connect = || TcpStream::connect(&addr).unwrap();

    // Silent after connecting, and half-sent headers: closed after the header timeout.
    let mut silent = connect();
    let mut slow_headers = connect();
    slow_headers
        .write_all(b"POST /audit/prod HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // A third connection fills the limit; a fourth is closed at once.
    let third = connect();
    std::thread::sleep(Duration::from_millis(300));
    let mut fourth = connect();
    let refused = closed_within(&mut fourth, Duration::from_secs(1));
    assert!(refused.is_some(), "a connection over the limit was kept");
    for (what, s) in [("silent", &mut silent), ("slow headers", &mut slow_headers)] {
        let t = closed_within(s, Duration::from_secs(8));
        assert!(
            t.is_some_and(|t| t < Duration::from_secs(6)),
            "{what} connection not closed in time: {t:?}"
        );
    }
    drop(third);

    // A body that trickles: 408 once the body timeout passes.
    let mut trickle = connect();
    trickle
        .write_all(b"POST /audit/prod HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"kind\":")
        .unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    trickle
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while !reply.windows(4).any(|w| w == b"\r\n\r\n") && started.elapsed() < Duration::from_secs(8)
    {
        match trickle.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Once the pressure is gone, a real sender is served.
    let rt = runtime();
    let (status, text) = post(
        &rt,
        format!("{}/audit/prod", server.url),
        "",
        "application/json",
        event_list(&["after-1".to_owned()]).into_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let metrics = server.metrics(&rt);
    assert!(
        metrics.contains(r#"auditlake_webhook_requests_refused_total{reason="connection_limit"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"auditlake_webhook_requests_refused_total{reason="body_timeout"} 1"#),
        "{metrics}"
    );
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("connection_refused"), "{log}");

    // With consent the open listener starts.
    let consent = write_config(
        dir.path(),
        "[webhook]\nlisten = \"0.0.0.0:0\"\nallow_unauthenticated = true\n",
    );
    let mut child = KillOnDrop(
        bin()
            .arg("--config")
            .arg(&consent)
            .args(["serve", "--lake"])
            .arg(&lake)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = child.0.stderr.take().unwrap();
    let mut seen = String::new();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    while !seen.contains("listening url=http://0.0.0.0:")
        && started.elapsed() < Duration::from_secs(30)
    {
        match stderr.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    drop(child);
    assert!(seen.contains("listening url=http://0.0.0.0:"), "{seen}");
}

// ---------------------------------------------------------------------------------------------
// The PostgreSQL endpoint cannot write, at any depth, over either protocol.

fn have(cmd: &str, args: &[&str], what: &str) -> bool {
    let ok = std::process::Command::new(cmd)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping part of this test: {what} is not installed");
    }
    ok
}

/// What may not run on a read-only endpoint: every write-shaped statement we know of.
const WRITES: &[&str] = &[
    "INSERT INTO audit_events (audit_id, cluster, stage) VALUES ('forged', 'prod', 'ResponseComplete')",
    "INSERT INTO audit_events SELECT * FROM audit_events",
    "UPDATE audit_events SET verb = 'get'",
    "DELETE FROM audit_events",
    "SELECT * INTO stolen FROM audit_events",
    "CREATE TABLE stolen AS SELECT * FROM audit_events",
    "CREATE VIEW v AS SELECT 1",
    "CREATE SCHEMA s",
    "CREATE TABLE t (a INT)",
    "DROP TABLE audit_events",
    "DROP VIEW requests",
    "COPY audit_events TO '/tmp/auditlake-stolen.csv'",
    "COPY (SELECT 1) TO '/tmp/auditlake-stolen.parquet'",
    "EXPLAIN ANALYZE INSERT INTO audit_events (audit_id) VALUES ('x')",
    "PREPARE p AS INSERT INTO audit_events (audit_id) VALUES ('x')",
    "SET datafusion.execution.target_partitions = 1",
    "ALTER TABLE audit_events ADD COLUMN x INT",
];

#[test]
fn the_sql_endpoint_refuses_every_write_at_any_depth_over_both_protocols() {
    if !have("psql", &["--version"], "psql (Debian: postgresql-client)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod", &[&repo().join("samples/audit.log")]);
    let before = snapshot(&lake);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(dir.path(), "");
    let pg = KillOnDrop(
        bin()
            .arg("--config")
            .arg(&config)
            .args(["pg", "--listen", &format!("127.0.0.1:{port}"), "--lake"])
            .arg(&lake)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, Duration::from_secs(60), "pg endpoint");
    let conninfo =
        format!("host=127.0.0.1 port={port} user=auditor dbname=auditlake sslmode=disable");
    let psql = |sql: &str| {
        std::process::Command::new("psql")
            .args([
                conninfo.as_str(),
                "--no-psqlrc",
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                "VERBOSITY=verbose",
                "-c",
                sql,
            ])
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap()
    };

    // Simple protocol: alone, inside a transaction, inside a cursor.
    let mut refused = 0;
    for w in WRITES {
        for sql in [
            w.to_string(),
            format!("BEGIN; {w}; COMMIT"),
            format!("BEGIN; DECLARE c CURSOR FOR {w}; FETCH ALL FROM c; COMMIT"),
        ] {
            let out = psql(&sql);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "ran: {sql}");
            // The parser may reject a write where a cursor wants a query (a syntax error);
            // everything it accepts is refused as a write.
            assert!(
                err.contains("25006")
                    || (sql.contains("CURSOR") && err.contains("sql parser error")),
                "{sql}: {err}"
            );
            refused += err.contains("25006") as usize;
        }
    }
    // The two statements the review got through.
    for sql in [
        "DECLARE c CURSOR FOR INSERT INTO audit_events (audit_id, cluster, stage) VALUES ('forged', 'prod', 'ResponseComplete')",
        "DECLARE c CURSOR FOR SELECT * INTO stolen FROM audit_events",
    ] {
        let err = String::from_utf8_lossy(&psql(sql).stderr).into_owned();
        assert!(err.contains("25006"), "{sql}: {err}");
    }
    // Reads still work, cursors included; one connection's objects are never another's.
    let out = psql(
        "BEGIN; DECLARE c CURSOR FOR SELECT count(*) FROM audit_events; FETCH ALL FROM c; COMMIT",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!psql("SELECT * FROM stolen").status.success());

    // Extended protocol (psycopg 3): unnamed and named prepared statements, in a transaction,
    // in a cursor.
    let script = repo().join("tests/e2e/support/pg_attack.py");
    if have(
        "python3",
        &["-c", "import psycopg"],
        "psycopg (pip install psycopg[binary])",
    ) {
        let statements = serde_json::to_string(WRITES).unwrap();
        for mode in ["extended", "prepared", "transaction", "cursor"] {
            let out = std::process::Command::new("python3")
                .arg(&script)
                .args([conninfo.as_str(), mode, statements.as_str()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{mode}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let results: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
            for (w, r) in WRITES.iter().zip(&results) {
                assert!(
                    r[0] == "25006"
                        || (mode == "cursor"
                            && r.get(1).is_some_and(|m| m.contains("sql parser error"))),
                    "{mode}: {w} → {r:?}"
                );
                refused += (r[0] == "25006") as usize;
            }
        }
    }
    drop(pg);
    assert_eq!(before, snapshot(&lake), "the lake is byte-identical");
    assert!(!Path::new("/tmp/auditlake-stolen.csv").exists());
    eprintln!("{refused} write attempts refused with SQLSTATE 25006");
}
