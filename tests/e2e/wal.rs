//! The write-ahead log survives damage: one flipped byte in an acknowledged record costs that
//! record (quarantined, logged, counted), not every record after it.

use std::time::Duration;

use crate::webhook::{Server, event, event_list, plain_client, runtime, write_config};
use crate::*;

#[test]
fn a_flipped_byte_in_the_wal_quarantines_one_record_and_the_rest_replay() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing is flushed to Parquet before the kill: all three bodies live only in the WAL.
    let (config, lake, server) = unflushed_server(dir.path());
    let rt = runtime();
    let client = plain_client();
    let batches: Vec<Vec<String>> = ["a", "b", "c"]
        .iter()
        .map(|b| (0..5).map(|i| format!("{b}-{i}")).collect())
        .collect();
    for ids in &batches {
        post(&rt, &client, &server, event_list(ids), "application/json");
    }
    server.kill9();
    assert_eq!(
        count(&lake, "audit_events"),
        0,
        "nothing flushed before the kill"
    );

    // One byte flipped inside the first record's body (its first event's verb).
    let wal_dir = lake.join("_state/wal");
    let segments: Vec<PathBuf> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let segment = &segments[0];
    let name = segment.file_name().unwrap().to_str().unwrap().to_owned();
    let mut bytes = std::fs::read(segment).unwrap();
    let first_body = find(&bytes, br#""auditID":"a-0""#).expect("first record in the WAL");
    let verb = first_body + find(&bytes[first_body..], br#""verb":"get""#).unwrap() + 8;
    assert!(
        find(&bytes, br#""auditID":"b-0""#).unwrap() > verb,
        "the flip is in the first record"
    );
    bytes[verb] ^= 0x20; // "get" → "Get"
    std::fs::write(segment, &bytes).unwrap();

    // Restart: replay skips the damaged record, reports it, and replays the two after it.
    let server = Server::start(&config, &lake);
    let metrics = server.metrics(&rt);
    assert!(
        metrics.contains("auditlake_wal_damaged_records_total 1\n"),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_millis(100));
    let log = server.log();
    let damaged = log
        .lines()
        .find(|l| l.contains(" wal_damaged "))
        .unwrap_or_else(|| panic!("no wal_damaged event:\n{log}"));
    assert!(
        damaged.contains(&format!("segment={name} offset=8 "))
            && damaged.contains("reason=\"checksum mismatch\""),
        "{damaged}"
    );
    let skipped: usize = damaged
        .split("bytes_skipped=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        log.contains("wal_replayed records=2 events=10 rows_written=10"),
        "{log}"
    );
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");

    let ids: Vec<String> = query(&lake, "SELECT audit_id FROM audit_events ORDER BY audit_id")
        .iter()
        .map(|r| r["audit_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [&batches[1][..], &batches[2][..]].concat());

    // The damaged record is in _quarantine, byte-exact, with its segment and offset.
    let lines = quarantined(&lake);
    let q: Vec<_> = lines
        .iter()
        .filter(|l| l["position"]["source"] == format!("wal:{name}").as_str())
        .collect();
    assert_eq!(q.len(), 1, "{lines:?}");
    assert_eq!(q[0]["position"]["byte_offset"], 8);
    let raw = match q[0]["raw_base64"].as_str() {
        Some(b) => base64_decode(b),
        None => q[0]["raw"].as_str().unwrap().as_bytes().to_vec(),
    };
    assert_eq!(raw.len(), skipped);
    assert_eq!(raw[..], bytes[8..8 + skipped], "quarantined byte-exact");
    assert!(find(&raw, br#""auditID":"a-4""#).is_some());
    assert!(
        find(&raw, br#""auditID":"b-0""#).is_none(),
        "only the damaged record"
    );
}

/// An NDJSON body acknowledged before a crash replays line by line: its framing is a field of
/// its WAL record (the current segment format), so the replayed events and the quarantined bad
/// line are what the request itself produced.
#[test]
fn ndjson_bodies_acknowledged_before_a_crash_replay_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (config, lake, server) = unflushed_server(dir.path());
    let rt = runtime();
    let client = plain_client();
    // Two lines each with one event, a line that is not JSON, and a document-framed request.
    let ndjson = format!("{}\n{}\nnot json\n", event("nd-1"), event("nd-2"));
    for (body, content_type) in [
        (ndjson, "application/x-ndjson"),
        (event_list(&["doc-1".to_owned()]), "application/json"),
    ] {
        post(&rt, &client, &server, body, content_type);
    }
    server.kill9();
    assert_eq!(
        count(&lake, "audit_events"),
        0,
        "nothing flushed before the kill"
    );
    let wal_dir = lake.join("_state/wal");
    let segment = std::fs::read_dir(&wal_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&segment).unwrap();
    assert_eq!(&bytes[..8], b"ALWAL\0\0\x03", "the current segment format");
    assert!(
        find(&bytes, b"#lines").is_none(),
        "framing is not on the source"
    );

    let server = Server::start(&config, &lake);
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("wal_replayed records=2 events=3 rows_written=3"),
        "{log}"
    );
    let ids: Vec<String> = query(&lake, "SELECT audit_id FROM audit_events ORDER BY audit_id")
        .iter()
        .map(|r| r["audit_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["doc-1", "nd-1", "nd-2"]);
    let rejects = quarantined(&lake);
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["position"]["line"], 3, "{rejects:?}");
    assert_eq!(rejects[0]["raw"], "not json", "{rejects:?}");
    let source = rejects[0]["position"]["source"].as_str().unwrap();
    assert!(
        source.starts_with("webhook:") && !source.contains('#'),
        "{source}"
    );
}

/// A server that flushes nothing to Parquet for an hour (what it acknowledges stays in the WAL
/// only), its config and its lake.
fn unflushed_server(dir: &Path) -> (PathBuf, PathBuf, Server) {
    let config = write_config(dir, "[webhook]\nflush_interval_secs = 3600\n");
    let lake = dir.join("lake");
    let server = Server::start(&config, &lake);
    (config, lake, server)
}

/// POSTs one body to `/audit/prod` and expects it acknowledged.
fn post(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    server: &Server,
    body: String,
    content_type: &str,
) {
    let status = rt.block_on(async {
        client
            .post(format!("{}/audit/prod", server.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200, "acknowledged: durable in the WAL");
}

/// Every quarantine entry of the lake.
fn quarantined(lake: &Path) -> Vec<serde_json::Value> {
    let mut entries = Vec::new();
    for day in std::fs::read_dir(lake.join("_quarantine")).unwrap() {
        for file in std::fs::read_dir(day.unwrap().path()).unwrap() {
            let text = std::fs::read_to_string(file.unwrap().path()).unwrap_or_default();
            entries.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
            );
        }
    }
    entries
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Standard base64 (the root package does not depend on a base64 crate; this is test-only).
fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
