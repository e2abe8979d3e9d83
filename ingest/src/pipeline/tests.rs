use super::*;
use std::sync::mpsc;

fn event(id: &str, second: u32) -> String {
    format!(
        r#"{{"auditID":"{id}","stage":"ResponseComplete","level":"Metadata","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{{"username":"system:node:node-1"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"pods","namespace":"default","apiVersion":"v1"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-11-22T10:00:{second:02}.000000Z"}}"#
    )
}

/// An EventList as kube-apiserver sends it: items without kind/apiVersion.
fn event_list(ids: &[String]) -> Vec<u8> {
    let items: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event(id, i as u32 % 60))
        .collect();
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    )
    .into_bytes()
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

fn submission(body: Vec<u8>, opts: &PipelineOptions) -> Submission {
    let cluster: Arc<str> = Arc::from("prod");
    let source: Arc<str> = Arc::from(format!("test:{}", ulid::Ulid::generate()));
    let decoded = decode_body(
        &opts.decode,
        &cluster,
        &source,
        1,
        &body,
        BodyFraming::Document,
    );
    Submission {
        cluster,
        source,
        framing: BodyFraming::Document,
        received_at: 1,
        body,
        decoded,
    }
}

fn submit_and_wait(p: &Pipeline, s: Submission) -> std::result::Result<Durable, String> {
    let (tx, rx) = mpsc::channel();
    p.submit(s, Box::new(move |r| tx.send(r).unwrap()))
        .map_err(|e| e.to_string())?;
    rx.recv().unwrap().map_err(|e| crate::error::chain(&e))
}

/// Rows over every file in the table (files a compaction replaced stay on disk until vacuumed).
fn lake_keys(lake: &Lake) -> usize {
    let mut rows = 0;
    let files = lake.events().all_files().unwrap_or_default();
    for path in files.iter().map(|f| lake.audit_events_dir().join(&f.path)) {
        let f = std::fs::File::open(&path).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        rows += r.metadata().file_metadata().num_rows() as usize;
    }
    rows
}

fn options(lake: &Lake) -> PipelineOptions {
    let mut o = PipelineOptions::new(lake);
    o.min_free_disk_bytes = 0;
    o.flush_interval = Duration::from_secs(3600);
    o.compact = None;
    o
}

#[test]
fn acknowledged_requests_land_once_and_the_wal_is_emptied_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let opts = options(&lake);
    let (p, replayed) = Pipeline::open(&lake, opts.clone(), Arc::new(NoObserver)).unwrap();
    assert_eq!(replayed.records, 0);
    let a = submit_and_wait(&p, submission(event_list(&ids("a", 300)), &opts)).unwrap();
    // The same batch again (a sender's retry): acknowledged, but no new rows.
    let b = submit_and_wait(&p, submission(event_list(&ids("a", 300)), &opts)).unwrap();
    assert!(b.seq > a.seq);
    assert!(
        p.wal_bytes() > 0,
        "acknowledged data is in the WAL until flushed"
    );
    p.shutdown().unwrap();
    assert_eq!(lake_keys(&lake), 300);
    assert!(wal::list_segments(&opts.wal_dir).unwrap().is_empty());
}

#[test]
fn a_wal_left_by_a_crash_is_replayed_on_open_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let opts = options(&lake);
    // What a crashed server leaves: two acknowledged records, the second also re-sent later.
    let mut seg = Segment::create(&opts.wal_dir, 1).unwrap();
    let mut buf = Vec::new();
    for (seq, body) in [
        (1, event_list(&ids("x", 50))),
        (2, event_list(&ids("y", 70))),
    ] {
        WalRecord {
            seq,
            received_at: 5,
            cluster: Arc::from("prod"),
            source: Arc::from(format!("webhook:{seq}")),
            framing: BodyFraming::Document,
            body,
        }
        .encode(&mut buf);
    }
    // …and a torn third record, never acknowledged.
    let torn_at = buf.len();
    WalRecord {
        seq: 3,
        received_at: 5,
        cluster: Arc::from("prod"),
        source: Arc::from("webhook:3"),
        framing: BodyFraming::Document,
        body: event_list(&ids("z", 10)),
    }
    .encode(&mut buf);
    seg.append_durable(&buf[..torn_at + 20], 3).unwrap();
    drop(seg);

    let (p, replayed) = Pipeline::open(&lake, opts.clone(), Arc::new(NoObserver)).unwrap();
    assert_eq!(
        (replayed.records, replayed.events, replayed.rows_written),
        (2, 120, 120)
    );
    assert!(wal::list_segments(&opts.wal_dir).unwrap().is_empty());
    // New records continue after the replayed seqs.
    let d = submit_and_wait(&p, submission(event_list(&ids("y", 70)), &opts)).unwrap();
    assert_eq!(d.seq, 3);
    p.shutdown().unwrap();
    assert_eq!(lake_keys(&lake), 120);
}

#[test]
fn over_the_wal_limit_new_requests_are_refused_not_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let mut opts = options(&lake);
    opts.wal_max_bytes = 64 << 10;
    let (p, _) = Pipeline::open(&lake, opts.clone(), Arc::new(NoObserver)).unwrap();
    submit_and_wait(&p, submission(event_list(&ids("a", 200)), &opts)).unwrap();
    let err = submit_and_wait(&p, submission(event_list(&ids("b", 10)), &opts)).unwrap_err();
    assert!(
        err.contains("overloaded") && err.contains("write-ahead log"),
        "{err}"
    );
    p.shutdown().unwrap();
    assert_eq!(lake_keys(&lake), 200);
}

#[test]
fn a_flush_by_rows_checkpoints_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let mut opts = options(&lake);
    opts.flush_rows = 100;
    let (p, _) = Pipeline::open(&lake, opts.clone(), Arc::new(NoObserver)).unwrap();
    submit_and_wait(&p, submission(event_list(&ids("a", 150)), &opts)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.wal_bytes() > 0 {
        assert!(
            Instant::now() < deadline,
            "WAL not checkpointed: {} bytes",
            p.wal_bytes()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lake_keys(&lake), 150);
    assert!(wal::list_segments(&opts.wal_dir).unwrap().is_empty());
    p.shutdown().unwrap();
}

#[test]
fn malformed_items_are_quarantined_and_ndjson_bodies_decode_per_line() {
    let opts = PipelineOptions::new(&Lake::new("/nonexistent"));
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{},{{"auditID":7}}]}}"#,
        event("ok-1", 1)
    );
    let cluster: Arc<str> = Arc::from("c1");
    let src: Arc<str> = Arc::from("webhook:r1");
    let d = decode_body(
        &opts.decode,
        &cluster,
        &src,
        1,
        body.as_bytes(),
        BodyFraming::Document,
    );
    assert_eq!(d.events, 1);
    assert_eq!(d.rejects.len(), 1);
    assert_eq!(d.rejects[0].position.item, Some(1));
    assert_eq!(&*d.rejects[0].cluster, "c1");

    let lines = format!("{}\n{}\nnot json\n", event("l-1", 1), event("l-2", 2));
    let src: Arc<str> = Arc::from("webhook:r2");
    let d = decode_body(
        &opts.decode,
        &cluster,
        &src,
        1,
        lines.as_bytes(),
        BodyFraming::Lines,
    );
    assert_eq!(d.events, 2);
    assert_eq!(d.rejects.len(), 1);
    assert_eq!(d.rejects[0].position.line, Some(3));
}

#[test]
fn closed_partitions_are_compacted_in_the_background_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let mut opts = options(&lake);
    opts.flush_rows = 1; // every request becomes its own file
    // Compact once all six files exist (a pass over fewer would leave two files, both under the
    // threshold, and the test would depend on timing).
    let compact = CompactOptions {
        min_age_secs: 0,
        min_small_files: 6,
        ..CompactOptions::default()
    };
    opts.compact = Some((compact, Duration::from_millis(200)));
    let (p, _) = Pipeline::open(&lake, opts.clone(), Arc::new(NoObserver)).unwrap();
    for b in 0..6 {
        submit_and_wait(
            &p,
            submission(event_list(&ids(&format!("b{b}"), 40)), &opts),
        )
        .unwrap();
        // Let each flush commit its own file.
        std::thread::sleep(Duration::from_millis(30));
    }
    // The table's files (the replaced ones stay on disk for the vacuum).
    let files = || lake.events().all_files().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while files() > 1 {
        assert!(Instant::now() < deadline, "still {} files", files());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still accepting; a re-delivered batch adds nothing to the compacted partition.
    submit_and_wait(&p, submission(event_list(&ids("b3", 40)), &opts)).unwrap();
    p.shutdown().unwrap();
    assert_eq!(lake_keys(&lake), 240);
}

/// Records the WAL events the pipeline reports.
#[derive(Default)]
struct WalEvents(Mutex<Vec<(String, u64, u64, String)>>);
impl PipelineObserver for WalEvents {
    fn wal_damaged(&self, segment: &Path, offset: u64, bytes: u64, reason: &str) {
        let name = segment.file_name().unwrap().to_string_lossy().into_owned();
        self.0
            .lock()
            .unwrap()
            .push((name, offset, bytes, reason.to_owned()));
    }
    fn wal_torn_tail(&self, segment: &Path, offset: u64, bytes: u64) {
        let name = segment.file_name().unwrap().to_string_lossy().into_owned();
        self.0
            .lock()
            .unwrap()
            .push((name, offset, bytes, "torn tail".to_owned()));
    }
}

fn quarantine_lines(lake: &Lake) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for day in std::fs::read_dir(lake.quarantine_dir())
        .into_iter()
        .flatten()
    {
        for f in std::fs::read_dir(day.unwrap().path()).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            out.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
        }
    }
    out
}

/// The security review's case through the pipeline: three acknowledged EventLists of 5 events,
/// one byte flipped in the first. Its record is quarantined with segment and offset and
/// reported; the 10 events of the other two land. A second replay of the same segment (what a
/// recovery does) reports nothing twice.
#[test]
fn a_damaged_wal_record_is_quarantined_and_the_records_after_it_replay() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let opts = options(&lake);
    let mut seg = Segment::create(&opts.wal_dir, 1).unwrap();
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    for (seq, prefix) in [(1, "a"), (2, "b"), (3, "c")] {
        WalRecord {
            seq,
            received_at: 5,
            cluster: Arc::from("prod"),
            source: Arc::from(format!("webhook:{seq}")),
            framing: BodyFraming::Document,
            body: event_list(&ids(prefix, 5)),
        }
        .encode(&mut buf);
        ends.push(buf.len());
    }
    buf[ends[0] - 10] ^= 0x04;
    seg.append_durable(&buf, 3).unwrap();
    let segment = seg.path.clone();
    drop(seg);
    let copy = dir.path().join("segment-copy");
    std::fs::copy(&segment, &copy).unwrap();

    let events = Arc::new(WalEvents::default());
    let (p, replayed) = Pipeline::open(&lake, opts.clone(), events.clone()).unwrap();
    assert_eq!(
        (replayed.records, replayed.events, replayed.rows_written),
        (2, 10, 10)
    );
    assert_eq!(
        (replayed.damaged, replayed.damaged_bytes),
        (1, ends[0] as u64)
    );
    let name = wal::segment_name(1);
    assert_eq!(
        *events.0.lock().unwrap(),
        vec![(name.clone(), 8, ends[0] as u64, "checksum mismatch".into())]
    );
    p.shutdown().unwrap();
    assert_eq!(lake_keys(&lake), 10);
    let q = quarantine_lines(&lake);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["position"]["source"], format!("wal:{name}"));
    assert_eq!(q[0]["position"]["byte_offset"], 8);
    assert!(
        q[0]["reason"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch")
    );

    // Replaying the same damaged segment again with the same memory of what was reported.
    std::fs::create_dir_all(&opts.wal_dir).unwrap();
    std::fs::copy(&copy, &segment).unwrap();
    let mut writer = LakeWriter::open(&lake, opts.writer.clone()).unwrap();
    let mut quarantine = QuarantineWriter::new(&lake);
    let mut reported = HashSet::new();
    for round in 0..2 {
        let (report, last) = replay_into(
            &opts,
            wal::TornTail::Stop,
            &mut writer,
            &mut quarantine,
            events.as_ref(),
            &mut reported,
        )
        .unwrap();
        assert_eq!((report.records, last), (2, Some(3)));
        assert_eq!(report.damaged, 1 - round, "round {round}");
        assert_eq!(report.duplicates_skipped, 10, "already in the lake");
    }
    assert_eq!(events.0.lock().unwrap().len(), 2, "once at open, once here");
    assert_eq!(quarantine_lines(&lake).len(), 2);
}
