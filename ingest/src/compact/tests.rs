use super::*;
use crate::decode::{DecodeOptions, Decoder, SourcePosition};
use crate::writer::LakeWriter;
use std::fs::File;

/// `n` events `<prefix>-<i>` in 2026-11-22 10:xx, in shuffled time order.
fn batches(prefix: &str, n: usize) -> Vec<crate::decode::DecodedBatch> {
    let mut d = Decoder::new(DecodeOptions::new("prod"));
    for i in 0..n {
        let second = (i * 7919) % 3600;
        let line = format!(
            r#"{{"auditID":"{prefix}-{i}","stage":"ResponseComplete","level":"Metadata","requestURI":"/api/v1/pods","verb":"list","user":{{"username":"u{i}"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"pods"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-11-22T10:{:02}:{:02}.000000Z"}}"#,
            second / 60,
            second % 60
        );
        d.decode(line.as_bytes(), &SourcePosition::default());
    }
    d.take().batches
}

fn write_flushed(lake: &Lake, prefixes: &[&str]) {
    let mut w = LakeWriter::open(lake, WriterOptions::default()).unwrap();
    for p in prefixes {
        for b in batches(p, 50) {
            w.write(b).unwrap();
        }
        w.flush().unwrap();
    }
}

fn read_file(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    Ok(reader.map(|b| b.unwrap()).collect())
}

fn partition(_lake: &Lake) -> PartitionRef {
    PartitionRef {
        cluster: "prod".into(),
        date: "2026-11-22".into(),
        hour: "10".into(),
    }
}

fn partition_dir(lake: &Lake) -> PathBuf {
    lake.audit_events_dir()
        .join("cluster=prod/date=2026-11-22/hour=10")
}

/// The partition's files in the table's latest snapshot.
fn table_files(lake: &Lake) -> Vec<PathBuf> {
    lake.events()
        .partition_files("prod", "2026-11-22", "10")
        .unwrap()
        .into_iter()
        .map(|f| lake.audit_events_dir().join(f.path))
        .collect()
}

/// Commits a file written outside the writer (another replica, another tool) into the table.
fn commit_foreign(lake: &Lake, file: &Path, name: &str) {
    let rows = ParquetRecordBatchReaderBuilder::try_new(File::open(file).unwrap())
        .unwrap()
        .metadata()
        .file_metadata()
        .num_rows() as u64;
    let key = partition(lake).key().unwrap();
    let add = lake
        .publish(file, &format!("{}/{name}", partition(lake)), &key, rows)
        .unwrap();
    lake.events()
        .commit("test", serde_json::Value::Null, vec![add], Vec::new())
        .unwrap();
}

fn rows_and_sorted(lake: &Lake) -> (usize, bool) {
    let mut rows = 0;
    let mut sorted = true;
    for f in table_files(lake) {
        let mut last = i64::MIN;
        for b in read_file(&f).unwrap() {
            rows += b.num_rows();
            let t = b
                .column_by_name("stage_at")
                .unwrap()
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            for v in t.values().iter() {
                sorted &= *v >= last;
                last = *v;
            }
            assert_eq!(t.null_count(), 0);
        }
    }
    (rows, sorted)
}

/// Compacts every hour, however recent, with the default options.
fn compact_now(lake: &Lake) -> CompactReport {
    let opts = CompactOptions {
        min_age_secs: 0,
        ..CompactOptions::default()
    };
    compact_lake(lake, &opts, now()).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[test]
fn small_files_of_a_closed_hour_become_one_sorted_file_with_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    write_flushed(&lake, &["a", "b", "c", "d", "e", "f"]);
    assert_eq!(table_files(&lake).len(), 6);
    let report = compact_now(&lake);
    assert_eq!(
        (
            report.partitions,
            report.files_before,
            report.files_after,
            report.rows
        ),
        (1, 6, 1, 300)
    );
    assert_eq!(rows_and_sorted(&lake), (300, true));
    // Nothing left behind, nothing more to do.
    assert_eq!(fs::read_dir(staging_root(&lake)).unwrap().count(), 0);
    assert_eq!(compact_now(&lake), CompactReport::default());
    // The merged file is still the dedup index: re-writing the same events adds nothing.
    let mut w = LakeWriter::open(&lake, WriterOptions::default()).unwrap();
    for b in batches("c", 50) {
        assert_eq!(w.write(b).unwrap(), 0);
    }
}

#[test]
fn files_committed_between_prepare_and_finish_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    write_flushed(&lake, &["a", "b", "c", "d"]);
    let opts = CompactOptions {
        min_age_secs: 0,
        ..CompactOptions::default()
    };
    let prepared = prepare(&lake, &partition(&lake), &opts, &|| false)
        .unwrap()
        .expect("4 small files");
    // A late event arrives while the merge runs.
    write_flushed(&lake, &["late"]);
    let report = finish(&lake, prepared).unwrap();
    assert_eq!((report.files_before, report.files_after), (4, 1));
    assert_eq!(
        table_files(&lake).len(),
        2,
        "the merged file and the late one"
    );
    assert_eq!(rows_and_sorted(&lake).0, 250);
}

#[test]
fn the_current_hour_and_partitions_with_few_small_files_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    write_flushed(&lake, &["a", "b", "c", "d"]);
    let hour_start = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .timestamp_micros();
    // At 10:59 the hour is still open; at 11:00 it is closed.
    assert!(
        closed_partitions(&lake, hour_start + 3_540_000_000)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        closed_partitions(&lake, hour_start + 3_600_000_000).unwrap(),
        vec![partition(&lake)]
    );
    let opts = CompactOptions {
        min_age_secs: 0,
        min_small_files: 5,
        ..CompactOptions::default()
    };
    assert!(
        prepare(&lake, &partition(&lake), &opts, &|| false)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_merge_writes_one_file_of_many_sorted_row_groups_with_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    write_flushed(&lake, &["a", "b", "c", "d", "e", "f"]);
    let opts = CompactOptions {
        min_age_secs: 0,
        writer: WriterOptions {
            row_group_rows: 64,
            ..WriterOptions::default()
        },
        ..CompactOptions::default()
    };
    let report = compact_lake(&lake, &opts, now()).unwrap();
    assert_eq!((report.files_after, report.rows), (1, 300));
    let files = table_files(&lake);
    let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(&files[0]).unwrap())
        .unwrap()
        .metadata()
        .clone();
    assert_eq!(meta.num_row_groups(), 5, "300 rows in row groups of 64");
    assert_eq!(rows_and_sorted(&lake), (300, true));
    let mut ids: Vec<String> = read_file(&files[0])
        .unwrap()
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name("audit_id").unwrap();
            let a = a
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            a.iter().map(|s| s.unwrap().to_owned()).collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300, "every row exactly once");
}

#[test]
fn a_file_not_known_to_be_sorted_is_left_as_it_is_and_the_rest_merges() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    write_flushed(&lake, &["a", "b", "c", "d"]);
    // A file written by something else, out of time order, without our sorted-by key.
    let batch = read_file(&table_files(&lake)[0]).unwrap().remove(0);
    let reversed = arrow::array::UInt32Array::from_iter_values((0..batch.num_rows() as u32).rev());
    let reversed = arrow::compute::take_record_batch(&batch, &reversed).unwrap();
    let written = dir.path().join("foreign.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        File::create(&written).unwrap(),
        reversed.schema(),
        None,
    )
    .unwrap();
    w.write(&reversed).unwrap();
    w.close().unwrap();
    commit_foreign(&lake, &written, "part-foreign.parquet");
    let foreign = partition_dir(&lake).join("part-foreign.parquet");
    let report = compact_now(&lake);
    assert_eq!(
        (report.files_before, report.files_after, report.rows),
        (5, 2, 200)
    );
    assert!(foreign.exists(), "the foreign file is kept as it is");
    assert_eq!(fs::read_dir(staging_root(&lake)).unwrap().count(), 0);
}

#[test]
fn more_small_files_than_the_fan_in_merge_into_one_file_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let prefixes: Vec<String> = (0..MERGE_FAN_IN + 2).map(|i| format!("p{i}")).collect();
    let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    write_flushed(&lake, &prefixes);
    let report = compact_now(&lake);
    assert_eq!(
        (report.files_before, report.files_after, report.rows),
        (MERGE_FAN_IN + 2, 2, 50 * (MERGE_FAN_IN as u64 + 2))
    );
    assert_eq!(rows_and_sorted(&lake), (50 * (MERGE_FAN_IN + 2), true));
}

#[test]
fn a_row_two_writers_both_committed_is_kept_once_by_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    write_flushed(&lake, &["a", "b", "c", "d"]);
    // Another replica wrote the re-delivered batch "b" too: a second copy of its file.
    let copy = dir.path().join("replica.parquet");
    let b_file = table_files(&lake)[1].clone();
    fs::copy(&b_file, &copy).unwrap();
    commit_foreign(&lake, &copy, "part-replica.parquet");
    assert_eq!(
        rows_and_sorted(&lake).0,
        250,
        "the duplicate is visible before compaction"
    );
    let report = compact_now(&lake);
    assert_eq!(report.duplicates_removed, 50);
    assert_eq!(rows_and_sorted(&lake), (200, true));
    assert!(
        !table_files(&lake)
            .iter()
            .any(|f| f.ends_with("part-replica.parquet")),
        "the replica's copy left the table"
    );
}

/// Files on disk in the test partition.
fn files_on_disk(lake: &Lake) -> std::collections::BTreeSet<PathBuf> {
    fs::read_dir(partition_dir(lake))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn replaced_files_stay_readable_until_the_vacuum_deletes_and_records_them() {
    use crate::lake::retention::{self, RetentionPolicy};
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    write_flushed(&lake, &["a", "b", "c", "d"]);
    // A query planned before the compaction holds these paths.
    let planned = table_files(&lake);
    assert_eq!(planned.len(), 4);
    compact_now(&lake);
    let merged = table_files(&lake);
    assert_eq!(merged.len(), 1);
    assert!(!planned.contains(&merged[0]));
    // ... and can still read every one of them after the compaction committed.
    let rows: usize = planned
        .iter()
        .map(|f| {
            read_file(f)
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(rows, 200, "the old snapshot's files are still whole");
    assert_eq!(files_on_disk(&lake).len(), 5);

    // Within the grace period the vacuum keeps them.
    let policy = RetentionPolicy::default();
    let report = retention::run(&lake, &policy, false, chrono::Utc::now()).unwrap();
    assert!(report.vacuumed.is_empty(), "{:?}", report.vacuumed);
    assert_eq!(files_on_disk(&lake).len(), 5);

    // Past it they are deleted, only they, and the deletion is recorded.
    let policy = RetentionPolicy {
        vacuum_grace: chrono::TimeDelta::zero(),
        ..RetentionPolicy::default()
    };
    let dry = retention::run(&lake, &policy, true, chrono::Utc::now()).unwrap();
    assert_eq!(dry.vacuumed.len(), 4);
    assert_eq!(files_on_disk(&lake).len(), 5, "a dry run deletes nothing");
    let report = retention::run(&lake, &policy, false, chrono::Utc::now()).unwrap();
    assert_eq!(report.vacuumed.len(), 4, "{:?}", report.vacuumed);
    assert!(report.expired.is_empty());
    assert_eq!(
        files_on_disk(&lake).into_iter().collect::<Vec<_>>(),
        merged,
        "only the merged file is left"
    );
    assert!(
        report.log_version.is_some(),
        "the deletion is in retention_log"
    );
    assert_eq!(rows_and_sorted(&lake), (200, true));
}

#[test]
fn a_compaction_whose_input_was_removed_meanwhile_is_abandoned_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    write_flushed(&lake, &["a", "b", "c", "d"]);
    let inputs = table_files(&lake);
    let opts = CompactOptions {
        min_age_secs: 0,
        ..CompactOptions::default()
    };
    let first = prepare(&lake, &partition(&lake), &opts, &|| false)
        .unwrap()
        .unwrap();
    let second = prepare(&lake, &partition(&lake), &opts, &|| false)
        .unwrap()
        .unwrap();
    finish(&lake, first).unwrap();
    let err = finish(&lake, second).unwrap_err().to_string();
    assert!(err.contains("abandoned"), "{err}");
    assert_eq!(rows_and_sorted(&lake), (200, true));
    // On disk: the merged file and the four it replaced (left to the vacuum); the loser's
    // merged file is deleted.
    let mut expected: std::collections::BTreeSet<PathBuf> = inputs.into_iter().collect();
    expected.extend(table_files(&lake));
    assert_eq!(
        files_on_disk(&lake),
        expected,
        "the loser's merged file is deleted"
    );
}
