//! `auditlake serve` with `[scheduler]` and `[[sinks]]`: findings are produced by the scheduled
//! rules from events arriving through the webhook, exactly once across restarts (kill -9
//! included), late events inside the lateness window are still found, and findings land in the
//! `findings` and `incidents` tables.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::webhook::{Server, plain_client, runtime};
use crate::*;

/// An allowed `kubectl exec` into `pod` by `user` at `t`.
pub(crate) fn exec_event(
    id: &str,
    user: &str,
    pod: &str,
    t: chrono::DateTime<chrono::Utc>,
) -> String {
    let t = t.format("%Y-%m-%dT%H:%M:%S%.6fZ");
    format!(
        r#"{{"level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/pods/{pod}/exec?command=sh&container=app&stdin=true&tty=true","verb":"create","user":{{"username":"{user}","groups":["developers"]}},"sourceIPs":["10.0.12.7"],"userAgent":"kubectl/v1.31.2","objectRef":{{"resource":"pods","namespace":"shop","name":"{pod}","apiVersion":"v1","subresource":"exec"}},"responseStatus":{{"metadata":{{}},"code":101}},"requestReceivedTimestamp":"{t}","stageTimestamp":"{t}","annotations":{{"authorization.k8s.io/decision":"allow"}}}}"#
    )
}

fn post(rt: &tokio::runtime::Runtime, server: &Server, events: &[String]) {
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
        events.join(",")
    );
    let status = rt.block_on(async {
        plain_client()
            .post(format!("{}/audit/prod", server.url))
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
}

/// Delivered findings in the file sink: idempotency key → how often it arrived. The sink may be
/// appending while this reads, so only complete lines (ending in a newline) count; a complete
/// line that is not JSON is a real defect and fails.
pub(crate) fn delivered(path: &Path) -> BTreeMap<String, (usize, String)> {
    let mut out: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let bytes = std::fs::read(path).unwrap_or_default();
    let complete = &bytes[..bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)];
    for line in std::str::from_utf8(complete).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let e = out
            .entry(v["idempotency_key"].as_str().unwrap().to_owned())
            .or_insert((0, v["target"].as_str().unwrap_or_default().to_owned()));
        e.0 += 1;
    }
    out
}

fn wait_for(what: &str, server: &Server, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// No finding waits for delivery: no `*.json` in the file sink's outbox (what the outbox itself
/// counts as pending; its temporary `.…tmp` files and set-aside `*.bad` files are not).
fn outbox_empty(lake: &Path) -> bool {
    std::fs::read_dir(lake.join("_state/outbox/file/pending")).is_ok_and(|d| {
        !d.flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "json"))
    })
}

/// A serve config with one file sink, the repo's rules and `scheduler` as the body of
/// `[scheduler]`. Returns (lake, sink file, config file).
fn setup(dir: &Path, flush_secs: f64, scheduler: &str) -> (PathBuf, PathBuf, PathBuf) {
    let lake = dir.join("lake");
    let sink = dir.join("alerts.jsonl");
    let config = dir.join("auditlake.toml");
    std::fs::write(
        &config,
        format!(
            "[webhook]\nflush_interval_secs = {flush_secs}\n\n[detect]\nrules_dir = \"{rules}\"\n\n\
             [scheduler]\n{scheduler}\n\n[[sinks]]\nname = \"file\"\ntype = \"file\"\npath = \"{sink}\"\n",
            rules = repo().join("rules").display(),
            sink = sink.display()
        ),
    )
    .unwrap();
    (lake, sink, config)
}

#[test]
fn scheduled_findings_arrive_exactly_once_across_restarts_and_late_events_count() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, sink, config) = setup(
        dir.path(),
        0.2,
        "rules = [\"exec-into-pod\"]\nschedule_secs = 1\ntick_secs = 0.2\nsettle_secs = 0\nlateness_secs = 600\n\
         # This test is about the schedule: late events must be found by it, not by streaming.\nstreaming = false",
    );
    let rt = runtime();
    let now = chrono::Utc::now();
    let ago = |s: i64| now - chrono::TimeDelta::seconds(s);

    // Step 1: alice execs into pod-1.
    let server = Server::start(&config, &lake);
    assert!(
        server.log().contains("scheduler_started rules=1 sinks=1"),
        "{}",
        server.log()
    );
    post(
        &rt,
        &server,
        &[exec_event("e1", "alice@example.com", "pod-1", ago(2))],
    );
    wait_for("the first finding", &server, || {
        delivered(&sink).len() == 1 && outbox_empty(&lake)
    });
    // No warning: kill -9.
    server.kill9();

    // Step 2: restart; bob execs into pod-2 now, and a late event arrives: carol's exec into
    // pod-3 five minutes ago — before the watermark, inside the lateness window.
    let server = Server::start(&config, &lake);
    post(
        &rt,
        &server,
        &[
            exec_event("e2", "bob@example.com", "pod-2", chrono::Utc::now()),
            exec_event("e3", "carol@example.com", "pod-3", ago(300)),
            // alice again, same pod, at the same instant as her first exec (so surely in the same
            // dedup bucket): the same finding with more evidence.
            exec_event("e4", "alice@example.com", "pod-1", ago(2)),
        ],
    );
    wait_for("the second and the late finding", &server, || {
        delivered(&sink).len() == 3 && outbox_empty(&lake)
    });
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");

    // Step 3: restart and let the scheduler run a few passes over the same windows.
    let server = Server::start(&config, &lake);
    std::thread::sleep(Duration::from_secs(3));
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");

    let got = delivered(&sink);
    let targets: Vec<&str> = got.values().map(|(_, t)| t.as_str()).collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.values().all(|(n, _)| *n == 1),
        "a finding was delivered twice: {got:?}"
    );
    for pod in ["pod-1", "pod-2", "pod-3"] {
        assert!(
            targets.iter().any(|t| t.ends_with(&format!("shop/{pod}"))),
            "{pod} missing: {targets:?}"
        );
    }
    // The findings table has each finding once, pod-1's at revision 2 (two events, one alert).
    let rows = query(
        &lake,
        "SELECT target, revision, event_count, origin, incident_id FROM findings ORDER BY target",
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["revision"], 2, "{rows:?}");
    assert_eq!(rows[0]["event_count"], 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["origin"] == "scheduled"));
    let history = count(&lake, "findings_history");
    assert_eq!(history, 4, "three first revisions and one update");
    // Three different actors and pods: three incidents.
    assert_eq!(count(&lake, "incidents"), 3);
    let watermarks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lake.join("_state/scheduler.json")).unwrap())
            .unwrap();
    assert!(
        watermarks["rules"]["exec-into-pod"]["watermark"].is_string(),
        "{watermarks}"
    );
}

#[test]
fn a_streaming_rule_reports_within_seconds_and_the_schedule_does_not_repeat_it() {
    let dir = tempfile::tempdir().unwrap();
    // The schedule only looks at events older than 8 s, so the streaming run is first (with room
    // for a loaded CI machine); then the scheduled run sees the same event and must recognise it.
    let (lake, sink, config) = setup(
        dir.path(),
        0.5,
        "rules = [\"exec-into-pod\"]\nschedule_secs = 1\ntick_secs = 0.2\nsettle_secs = 8",
    );
    let rt = runtime();
    let server = Server::start(&config, &lake);
    let posted = Instant::now();
    post(
        &rt,
        &server,
        &[exec_event("s1", "mallory", "db-0", chrono::Utc::now())],
    );
    wait_for("the streaming finding", &server, || {
        delivered(&sink).len() == 1
    });
    let latency = posted.elapsed();
    assert!(
        latency < Duration::from_secs(5),
        "streaming finding after {latency:?}"
    );
    // Let the scheduled run pass over the event.
    std::thread::sleep(Duration::from_secs(11));
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    let got = delivered(&sink);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got.values().all(|(n, _)| *n == 1));
    let rows = query(&lake, "SELECT origin, revision FROM findings");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["origin"], "streaming");
    assert_eq!(rows[0]["revision"], 1);
    eprintln!("streaming: POST → finding in the sink after {latency:?}");
}

#[test]
fn a_retro_hunt_records_findings_once_and_marks_them() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod", &[&repo().join("samples/audit.log")]);
    let detect = |extra: &[&str]| {
        let out = run(bin()
            .args(["--config"])
            .arg(repo().join("samples/auditlake.toml"))
            .args([
                "detect",
                "--format",
                "json",
                "--rules",
                "exec-into-pod",
                "--lake",
            ])
            .arg(&lake)
            .args(extra));
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (stdout, stderr) = detect(&["--store"]);
    let found = stdout.lines().count();
    assert!(found > 0);
    assert!(
        stdout
            .lines()
            .all(|l| l.contains(r#""origin":"retro-hunt""#)),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("recorded {found} new and 0 updated")),
        "{stderr}"
    );
    // Again: nothing new is recorded.
    let (_, stderr) = detect(&["--store"]);
    assert!(stderr.contains("recorded 0 new and 0 updated"), "{stderr}");
    let rows = query(
        &lake,
        "SELECT origin, count(*) AS n FROM findings GROUP BY origin",
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["origin"], "retro-hunt");
    assert_eq!(rows[0]["n"].as_u64().unwrap() as usize, found);
}
