//! Tests of the named log events (moved out of `log.rs`).

use std::sync::{Arc, Mutex};

use super::*;

/// A writer into a shared buffer: what the subscriber wrote, line by line.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The lines `events` writes through the subscriber [`init`] would install.
fn capture(format: Format, filter: &str, events: impl FnOnce()) -> Vec<String> {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = subscriber(format, parse_filter(filter).unwrap(), move || {
        writer.clone()
    });
    tracing::subscriber::with_default(subscriber, events);
    buffer.lines()
}

fn damaged() -> WalDamaged<'static> {
    WalDamaged {
        segment: std::path::Path::new("/var/wal/00000000000000000007.wal"),
        offset: 8,
        bytes_skipped: 120,
        reason: "checksum mismatch",
    }
}

fn listening() -> Listening<'static> {
    Listening {
        url: "https://0.0.0.0:8443",
        tls: "mtls",
        auth: "client-cert",
    }
}

/// `<time> <LEVEL> <event> key=value …`: the event's name first (greps such as
/// `listening url=` keep working), free text quoted, names and numbers bare.
#[test]
fn a_text_line_is_time_level_event_then_fields() {
    let lines = capture(Format::Text, "info", || {
        emit(&listening());
        emit(&damaged());
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (time, rest) = lines[0].split_once(' ').unwrap();
    chrono::DateTime::parse_from_rfc3339(time).unwrap();
    assert_eq!(
        rest,
        // Levels right-aligned to five characters, as tracing's own format does.
        " INFO listening url=https://0.0.0.0:8443 tls=mtls auth=client-cert"
    );
    let (_, rest) = lines[1].split_once(' ').unwrap();
    assert_eq!(
        rest,
        " WARN wal_damaged segment=00000000000000000007.wal offset=8 bytes_skipped=120 \
             reason=\"checksum mismatch\" quarantined=true"
    );
}

/// One object per line: timestamp, level, target, the event's name, typed fields.
#[test]
fn a_json_line_has_timestamp_level_target_and_typed_fields() {
    let lines = capture(Format::Json, "info", || emit(&damaged()));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(r#"{"timestamp":""#),
        "keys in order: {}",
        lines[0]
    );
    let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(
        line,
        serde_json::json!({
            "timestamp": line["timestamp"],
            "level": "WARN",
            "target": "auditlake",
            "event": "wal_damaged",
            "segment": "00000000000000000007.wal",
            "offset": 8,
            "bytes_skipped": 120,
            "reason": "checksum mismatch",
            "quarantined": true,
        })
    );
    // Absent optional values are left out, not written as a placeholder.
    let report = auditlake_ingest::lake::retention::RetentionReport {
        run_id: "01JRUN".into(),
        run_at: chrono::Utc::now(),
        dry_run: false,
        expired: Vec::new(),
        held: Vec::new(),
        events_version: None,
        vacuumed: vec!["part-0.parquet".into()],
        log_version: Some(4),
        recovered: Vec::new(),
    };
    let lines = capture(Format::Json, "info", || {
        emit(&RetentionRun { report: &report })
    });
    let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["partitions_removed"], 0);
    assert_eq!(line["files_deleted"], 1);
    assert_eq!(line["log_version"], 4);
    assert!(line.get("events_version").is_none(), "{line}");
}

/// The filter is EnvFilter syntax; below its level nothing is written, and the default
/// keeps the libraries' `info` out while ours is in.
#[test]
fn the_filter_selects_levels_and_targets() {
    let lines = capture(Format::Text, "warn", || {
        emit(&listening());
        emit(&damaged());
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(" WARN wal_damaged "), "{lines:?}");

    let lines = capture(Format::Text, DEFAULT_FILTER, || {
        emit(&listening());
        tracing::info!(target: "deltalake_core::kernel", "routine chatter");
        tracing::warn!(target: "deltalake_core::kernel", "something is off");
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains(" INFO listening "), "{lines:?}");
    assert!(
        lines[1].ends_with(" WARN deltalake_core::kernel: something is off"),
        "{lines:?}"
    );

    assert!(matches!(
        parse_filter("info,rdkafka=lots"),
        Err(LogInitError::Filter { .. })
    ));
}

/// A library's `log` record (librdkafka's lines come through rdkafka's `log` calls) is a
/// line with its own target and message; the bridge's `log.*` metadata is not repeated.
#[test]
fn log_crate_records_are_bridged_in() {
    // Global and once per process; other tests in this binary may have installed it.
    let _ = tracing_log::LogTracer::init();
    let record = || {
        tracing_log::log::warn!(
            target: "librdkafka",
            "librdkafka: FAIL [thrd:127.0.0.1:1/bootstrap]: Connect to ipv4#127.0.0.1:1 failed"
        );
        tracing_log::log::info!(target: "librdkafka", "librdkafka: routine notice");
    };
    let lines = capture(Format::Json, DEFAULT_FILTER, record);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 4, "{line}");
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["target"], "librdkafka");
    assert_eq!(
        line["message"],
        "librdkafka: FAIL [thrd:127.0.0.1:1/bootstrap]: Connect to ipv4#127.0.0.1:1 failed"
    );

    let lines = capture(Format::Text, "info", record);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].ends_with(" WARN librdkafka: librdkafka: FAIL [thrd:127.0.0.1:1/bootstrap]: Connect to ipv4#127.0.0.1:1 failed"),
        "{lines:?}"
    );
}
