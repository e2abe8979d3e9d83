use super::*;
use std::io::Write;

fn event(id: &str, minute: u32) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/nodes/node-1","verb":"get","user":{{"username":"system:node:node-1"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"nodes","name":"node-1","apiVersion":"v1"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-11-22T05:{minute:02}:00.000000Z"}}"#
    )
}

fn opts() -> IngestOptions {
    let mut o = IngestOptions::new("prod").unwrap();
    o.chunk_bytes = 700; // a few events per chunk: exercises lines spanning chunk boundaries
    o
}

fn quarantine_records(report: &IngestReport) -> Vec<serde_json::Value> {
    let Some(path) = &report.quarantine_file else {
        return Vec::new();
    };
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn good_lines_land_and_bad_lines_are_quarantined_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let log = dir.path().join("audit.log");
    let mut text = String::new();
    for i in 0..20 {
        text.push_str(&event(&format!("e{i}"), i % 60));
        text.push('\n');
        if i == 7 {
            text.push_str("{\"kind\": 0}\n");
        }
    }
    text.push_str(&event("last-no-newline", 59));
    std::fs::write(&log, &text).unwrap();
    let report = ingest(&lake, &[Input::Path(log.clone())], &opts(), &|_| {}).unwrap();
    assert_eq!(report.events, 21);
    assert_eq!(report.rejected, 1);
    assert_eq!(report.rows_written, 21);
    assert_eq!(report.input_bytes, text.len() as u64);
    assert!(report.input_errors.is_empty());
    let q = quarantine_records(&report);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["raw"], "{\"kind\": 0}");
    assert_eq!(q[0]["position"]["line"], 9);
    let offset = text.find("{\"kind\": 0}").unwrap();
    assert_eq!(q[0]["position"]["byte_offset"], offset as u64);
    assert_eq!(q[0]["position"]["source"], log.display().to_string());
    assert_eq!(q[0]["cluster"], "prod");

    // Same input again: nothing new.
    let again = ingest(&lake, &[Input::Path(log)], &opts(), &|_| {}).unwrap();
    assert_eq!(
        (again.events, again.rows_written, again.duplicates_skipped),
        (21, 0, 21)
    );
    assert!(again.files.is_empty());
}

#[test]
fn directories_of_rotated_and_gzipped_logs() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..5 {
        writeln!(gz, "{}", event(&format!("old{i}"), i)).unwrap();
    }
    std::fs::write(
        logs.join("audit-2026-11-22T05-00-00.000.log.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    // rotated file overlaps the live one by one event
    let live: String = (4..8)
        .map(|i| event(&format!("old{i}"), i) + "\n")
        .collect();
    std::fs::write(logs.join("audit.log"), live).unwrap();
    std::fs::write(logs.join(".hidden"), "ignored").unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let report = ingest(&lake, &[Input::Path(logs)], &opts(), &|_| {}).unwrap();
    assert_eq!(report.inputs, 2);
    assert_eq!(report.events, 9);
    assert_eq!(report.rows_written, 8);
    assert_eq!(report.duplicates_skipped, 1);
    assert_eq!(report.rejected, 0);
}

#[test]
fn a_truncated_gzip_reports_an_error_and_keeps_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..2000 {
        writeln!(gz, "{}", event(&format!("t{i}"), i % 60)).unwrap();
    }
    let bytes = gz.finish().unwrap();
    let path = dir.path().join("audit.log.gz");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let good = dir.path().join("good.log");
    std::fs::write(&good, event("g", 1) + "\n").unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let report = ingest(
        &lake,
        &[Input::Path(path), Input::Path(good)],
        &opts(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(report.input_errors.len(), 1, "{:?}", report.input_errors);
    assert!(report.input_errors[0].contains("audit.log.gz"));
    assert!(
        report.events > 1 && report.events < 2001,
        "{}",
        report.events
    );
    assert_eq!(
        report.rejected, 0,
        "the cut-off partial line is not quarantined as garbage"
    );
    assert_eq!(report.rows_written, report.events);
}

#[test]
fn a_line_over_the_limit_is_streamed_to_quarantine_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let huge = format!("{{\"kind\":\"Event\",\"pad\":\"{}\"}}", "y".repeat(50_000));
    let text = format!("{}\n{huge}\n{}\n", event("before", 1), event("after", 2));
    let path = dir.path().join("audit.log");
    std::fs::write(&path, &text).unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let mut o = opts();
    o.max_line_bytes = 10_000;
    let report = ingest(&lake, &[Input::Path(path)], &o, &|_| {}).unwrap();
    assert_eq!(report.events, 2);
    let q = quarantine_records(&report);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["position"]["line"], 2);
    assert!(
        q[0]["reason"]
            .as_str()
            .unwrap()
            .contains("longer than 10000")
    );
    let sidecar = report
        .quarantine_file
        .as_ref()
        .unwrap()
        .parent()
        .unwrap()
        .join(q[0]["raw_file"].as_str().unwrap());
    assert_eq!(std::fs::read(sidecar).unwrap(), huge.as_bytes());
    assert_eq!(q[0]["raw_len"], huge.len() as u64);
}

#[test]
fn missing_input_is_a_caller_error_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let err = ingest(
        &lake,
        &[Input::Path(dir.path().join("nope.log"))],
        &opts(),
        &|_| {},
    )
    .unwrap_err();
    assert_eq!(err.fault(), crate::Fault::Caller);
    assert!(err.to_string().contains("nope.log"), "{err}");
    assert!(!lake.audit_events_dir().exists());
}

#[test]
fn progress_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let text: String = (0..50).map(|i| event(&format!("p{i}"), i) + "\n").collect();
    std::fs::write(&path, &text).unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let last = Mutex::new(Progress::default());
    ingest(&lake, &[Input::Path(path)], &opts(), &|p| {
        *last.lock().unwrap() = p.clone()
    })
    .unwrap();
    let last = last.into_inner().unwrap();
    assert_eq!(last.events, 50);
    assert_eq!(last.stored_bytes_total, Some(text.len() as u64));
    assert_eq!(last.stored_bytes_read, text.len() as u64);
}
