//! The log: `--log-format json` makes every stderr line of `serve` a JSON object, `AUDITLAKE_LOG`
//! filters, and the libraries' `log` records — librdkafka's broker complaints through rdkafka —
//! arrive in the same stream instead of being dropped.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::webhook::write_config;
use crate::*;

const SASL_PASSWORD: &str = "KAFKALOGS3CRET";

/// `serve` with a Kafka consumer pointed at a port nothing listens on: librdkafka logs that it
/// cannot connect. SASL credentials (from the environment) must never reach a line.
fn unreachable_broker_config(dir: &Path) -> PathBuf {
    write_config(
        dir,
        "[kafka]\nbrokers = \"127.0.0.1:1\"\ntopics = [\"audit\"]\ncluster = \"k8s\"\n\
         [kafka.properties]\n'security.protocol' = 'sasl_plaintext'\n'sasl.mechanism' = 'PLAIN'\n\
         'sasl.username' = 'auditlake'\n'sasl.password' = { env = 'AUDITLAKE_TEST_SASL' }\n",
    )
}

/// Runs `serve` until its stderr lines satisfy `ready`, `linger` more, then stops it with SIGTERM; returns its
/// stderr lines (all of them, through shutdown).
fn serve_until(
    mut cmd: Command,
    config: &Path,
    lake: &Path,
    ready: fn(&[String]) -> bool,
    linger: Duration,
) -> Vec<String> {
    cmd.arg("--config")
        .arg(config)
        .args(["serve", "--listen", "127.0.0.1:0", "--lake"])
        .arg(lake)
        .env("AUDITLAKE_TEST_SASL", SASL_PASSWORD)
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().expect("start auditlake serve"));
    let stderr = child.0.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let started = Instant::now();
    while !ready(&lines.lock().unwrap()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve never logged the awaited line:\n{}",
            lines.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(linger);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = child.0.wait().unwrap();
    reader.join().unwrap();
    let lines = lines.lock().unwrap().clone();
    assert!(status.success(), "{status}:\n{}", lines.join("\n"));
    lines
}

/// librdkafka's line about the broker it cannot reach (its text names the address).
fn is_broker_complaint_json(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|l| {
        l["target"] == "librdkafka"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("127.0.0.1:1"))
    })
}

fn is_listening_json(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|l| l["event"] == "listening")
}

#[test]
fn serve_with_json_logs_writes_only_json_lines_and_librdkafka_arrives_through_the_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let config = unreachable_broker_config(dir.path());
    let mut cmd = bin();
    cmd.args(["--log-format", "json"]);
    let lines = serve_until(
        cmd,
        &config,
        &dir.path().join("lake"),
        |lines| {
            lines.iter().any(|l| is_listening_json(l))
                && lines.iter().any(|l| is_broker_complaint_json(l))
        },
        Duration::ZERO,
    );
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    for (line, text) in parsed.iter().zip(&lines) {
        let time = line["timestamp"]
            .as_str()
            .unwrap_or_else(|| panic!("{text}"));
        chrono::DateTime::parse_from_rfc3339(time).unwrap();
        assert!(
            ["ERROR", "WARN", "INFO"].contains(&line["level"].as_str().unwrap()),
            "default filter lets no debug through: {text}"
        );
        let target = line["target"].as_str().unwrap_or_else(|| panic!("{text}"));
        if target == "auditlake" {
            assert!(line["event"].is_string(), "{text}");
        } else {
            assert!(line["message"].is_string(), "{text}");
            // Only warnings and errors from the libraries by default.
            assert_ne!(line["level"], "INFO", "{text}");
        }
        assert!(!text.contains(SASL_PASSWORD), "secret logged: {text}");
    }
    let event = |name: &str| {
        parsed
            .iter()
            .find(|l| l["event"] == name)
            .unwrap_or_else(|| panic!("no {name}:\n{}", lines.join("\n")))
    };
    let listening = event("listening");
    assert_eq!(listening["level"], "INFO");
    assert!(
        listening["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:"),
        "{listening}"
    );
    assert!(event("shutdown_finished")["wal_last_seq"].is_u64());
    let complaint = lines
        .iter()
        .find(|l| is_broker_complaint_json(l))
        .unwrap_or_else(|| panic!("librdkafka said nothing:\n{}", lines.join("\n")));
    let complaint: serde_json::Value = serde_json::from_str(complaint).unwrap();
    assert!(
        ["WARN", "ERROR"].contains(&complaint["level"].as_str().unwrap()),
        "{complaint}"
    );
}

#[test]
fn auditlake_log_warn_hides_the_info_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = unreachable_broker_config(dir.path());
    let mut cmd = bin();
    cmd.env("AUDITLAKE_LOG", "warn");
    // Nothing at info shows that serve started: wait for librdkafka's complaint (text format).
    // Then two seconds more: librdkafka repeats `AllBrokersDown` about 20 times a second
    // (client callback and poll alike), which must not become 80 lines.
    let lines = serve_until(
        cmd,
        &config,
        &dir.path().join("lake"),
        |lines| {
            lines
                .iter()
                .any(|l| l.contains(" librdkafka: ") && l.contains("127.0.0.1:1"))
        },
        Duration::from_secs(2),
    );
    assert!(lines.len() <= 10, "a flood:\n{}", lines.join("\n"));
    for line in &lines {
        let mut words = line.split_whitespace();
        chrono::DateTime::parse_from_rfc3339(words.next().unwrap()).unwrap();
        assert!(
            matches!(words.next(), Some("WARN" | "ERROR")),
            "below warn: {line}"
        );
        assert!(!line.contains(SASL_PASSWORD), "secret logged: {line}");
    }
    let all = lines.join("\n");
    assert!(!all.contains("listening url="), "{all}");
    assert!(!all.contains("shutdown_finished"), "{all}");
}

/// A bad filter is refused at start, naming the variable; with JSON logs the command's own
/// failure is a JSON line too.
#[test]
fn a_bad_filter_is_refused_and_a_json_failure_is_a_json_line() {
    let out = run(bin().env("AUDITLAKE_LOG", "info,librdkafka=chatty").args([
        "query",
        "--lake",
        "/nonexistent/lake",
        "SELECT 1",
    ]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: AUDITLAKE_LOG: invalid filter"),
        "{stderr}"
    );

    // serve failing to start (here: its config file is missing) says so in a JSON line.
    let out = run(bin().env("AUDITLAKE_LOG_FORMAT", "json").args([
        "--config",
        "/nonexistent/auditlake.toml",
        "serve",
        "--lake",
        "/nonexistent/lake",
    ]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line: serde_json::Value = serde_json::from_str(stderr.trim())
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {stderr}"));
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["target"], "auditlake");
    assert_eq!(line["event"], "command_failed");
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/auditlake.toml"),
        "{line}"
    );
}
