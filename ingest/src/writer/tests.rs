use super::*;
use crate::decode::{DecodeOptions, Decoder, SourcePosition};
use arrow::array::{AsArray, TimestampMicrosecondArray};
use auditlake_schemas::{
    AUDIT_EVENTS_SCHEMA_VERSION, AUDIT_ID, NAME, POD_PRIVILEGED, REQUEST_OBJECT,
    REQUEST_RECEIVED_AT, REQUEST_URI, RESOURCE, RESPONSE_OBJECT, SCHEMA_VERSION_KEY, SOURCE_IP,
    STAGE_AT, SUBRESOURCE, USER_NAME, VERB,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnPath;
use std::fs::File;
use std::path::PathBuf;

/// An event at `2026-11-22T<hour>:<minute>:<second>Z`.
fn event(id: &str, hour: u32, minute: u32, second: u32) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{{"username":"system:node:node-1","groups":["system:nodes"]}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"pods","namespace":"default","apiVersion":"v1"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-11-22T{hour:02}:{minute:02}:{second:02}.000000Z"}}"#
    )
}

fn decode(lines: &[String]) -> Vec<DecodedBatch> {
    let mut d = Decoder::new(DecodeOptions::new("prod"));
    for (i, l) in lines.iter().enumerate() {
        d.decode(
            l.as_bytes(),
            &SourcePosition {
                line: Some(i as u64),
                ..Default::default()
            },
        );
    }
    let out = d.take();
    assert!(out.rejects.is_empty(), "{:?}", out.rejects);
    out.batches
}

fn read_rows(path: &std::path::Path) -> Vec<RecordBatch> {
    let f = File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// The files of the lake's table (what readers see), as local paths.
fn all_files(lake: &Lake) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = lake
        .events()
        .all_files()
        .unwrap()
        .into_iter()
        .map(|f| lake.audit_events_dir().join(f.path))
        .collect();
    out.sort();
    out
}

#[test]
fn flush_commits_sorted_zstd_files_with_bloom_filters_into_hour_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let mut w = LakeWriter::open(&lake, WriterOptions::default()).unwrap();
    // out of time order, across two hours
    let lines = vec![
        event("c", 5, 30, 0),
        event("a", 5, 10, 0),
        event("b", 5, 20, 0),
        event("z", 6, 0, 1),
    ];
    for b in decode(&lines) {
        w.write(b).unwrap();
    }
    assert_eq!(w.buffered_rows(), 4);
    let files = w.flush().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(w.buffered_rows(), 0);
    let paths = all_files(&lake);
    assert_eq!(paths.len(), 2, "{paths:?}");
    let rel: Vec<String> = paths
        .iter()
        .map(|p| {
            p.strip_prefix(lake.audit_events_dir())
                .unwrap()
                .parent()
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        rel,
        [
            "cluster=prod/date=2026-11-22/hour=05",
            "cluster=prod/date=2026-11-22/hour=06"
        ]
    );
    assert!(paths.iter().all(|p| {
        p.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("part-")
    }));

    let batches = read_rows(&paths[0]);
    let ids: Vec<&str> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(AUDIT_ID)
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(Option::unwrap)
        })
        .collect();
    assert_eq!(ids, ["a", "b", "c"], "rows are sorted by stage_at");

    let reader = SerializedFileReader::new(File::open(&paths[0]).unwrap()).unwrap();
    let meta = reader.metadata();
    let kv = meta.file_metadata().key_value_metadata().unwrap();
    assert!(
        kv.iter().any(|k| k.key == SCHEMA_VERSION_KEY
            && k.value.as_deref() == Some(AUDIT_EVENTS_SCHEMA_VERSION))
    );
    assert!(
        kv.iter()
            .any(|k| k.key == SORTED_BY_KEY && k.value.as_deref() == Some(STAGE_AT))
    );
    let rg = meta.row_group(0);
    assert!(
        rg.sorting_columns().is_none(),
        "not declared in Parquet's own field: DataFusion would stop splitting scans by bytes"
    );
    for c in rg.columns() {
        let plain = FILTER_COLUMNS_STORED_PLAIN.contains(&c.column_path().string().as_str());
        assert!(
            if plain {
                c.compression() == Compression::UNCOMPRESSED
            } else {
                matches!(c.compression(), Compression::ZSTD(_))
            },
            "{:?}: {:?}",
            c.column_path(),
            c.compression()
        );
    }
    let col = |name: &str| {
        rg.columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .unwrap()
    };
    for name in [AUDIT_ID, USER_NAME, NAME, SOURCE_IP] {
        assert!(
            col(name).bloom_filter_offset().is_some(),
            "bloom filter on {name}"
        );
    }
    assert!(
        col(STAGE_AT).column_index_offset().is_some(),
        "page index on stage_at"
    );
    // Sorted times are delta-encoded; the receive time, not sorted in that order, is plain.
    let encodings = |name: &str| col(name).encodings().collect::<Vec<_>>();
    assert!(
        encodings(STAGE_AT).contains(&parquet::basic::Encoding::DELTA_BINARY_PACKED),
        "{:?}",
        encodings(STAGE_AT)
    );
    assert!(
        !encodings(REQUEST_RECEIVED_AT).contains(&parquet::basic::Encoding::DELTA_BINARY_PACKED),
        "{:?}",
        encodings(REQUEST_RECEIVED_AT)
    );
    assert!(
        !lake.tmp_dir().read_dir().unwrap().any(|_| true),
        "no temp files left"
    );
}

#[test]
fn duplicates_are_dropped_within_a_run_and_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let lines: Vec<String> = (0..10)
        .map(|i| event(&format!("id-{i}"), 5, i, 0))
        .collect();
    {
        let mut w = LakeWriter::open(&lake, WriterOptions::default()).unwrap();
        for b in decode(&lines[..6]) {
            assert_eq!(w.write(b).unwrap(), 6);
        }
        // the same rows again in one run (overlapping rotated logs)
        for b in decode(&lines[..6]) {
            assert_eq!(w.write(b).unwrap(), 0);
        }
        w.close().unwrap();
    }
    let mut w = LakeWriter::open(&lake, WriterOptions::default()).unwrap();
    let mut new = 0;
    for b in decode(&lines) {
        new += w.write(b).unwrap();
    }
    assert_eq!(new, 4, "only the four rows not yet in the lake");
    assert_eq!(w.stats().duplicates_skipped, 6);
    w.close().unwrap();
    let total: usize = all_files(&lake)
        .iter()
        .flat_map(|p| read_rows(p))
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(total, 10);
}

#[test]
fn files_roll_by_rows_and_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let opts = WriterOptions {
        max_file_rows: 4,
        encoder_threads: 1,
        ..WriterOptions::default()
    };
    let mut w = LakeWriter::open(&lake, opts).unwrap();
    let lines: Vec<String> = (0..10)
        .map(|i| event(&format!("id-{i}"), 7, i, 0))
        .collect();
    for line in &lines {
        for b in decode(std::slice::from_ref(line)) {
            w.write(b).unwrap();
        }
    }
    w.close().unwrap();
    let rows: Vec<usize> = all_files(&lake)
        .iter()
        .map(|p| read_rows(p).iter().map(|b| b.num_rows()).sum())
        .collect();
    assert_eq!(rows.iter().sum::<usize>(), 10);
    assert!(rows.iter().all(|&r| r <= 4), "{rows:?}");

    // A tiny buffer budget forces the least recently written partition out first.
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let opts = WriterOptions {
        max_buffer_bytes: 1,
        encoder_threads: 1,
        ..WriterOptions::default()
    };
    let mut w = LakeWriter::open(&lake, opts).unwrap();
    for b in decode(&[event("x", 1, 0, 0), event("y", 2, 0, 0)]) {
        w.write(b).unwrap();
        assert_eq!(w.buffered_rows(), 0, "over budget: rolled immediately");
    }
    w.close().unwrap();
    assert_eq!(all_files(&lake).len(), 2);
}

#[test]
fn stale_temp_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    std::fs::create_dir_all(lake.tmp_dir()).unwrap();
    std::fs::write(lake.tmp_dir().join("part-dead.parquet.tmp"), b"half a file").unwrap();
    let _w = LakeWriter::open(&lake, WriterOptions::default()).unwrap();
    assert_eq!(std::fs::read_dir(lake.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn a_failed_commit_poisons_the_writer_and_keeps_no_phantom_keys() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let mut w = LakeWriter::open(
        &lake,
        WriterOptions {
            encoder_threads: 1,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    for b in decode(&[event("p", 3, 0, 0)]) {
        w.write(b).unwrap();
    }
    // Make the partition directory impossible to create: a file where a directory must go.
    std::fs::create_dir_all(lake.audit_events_dir().join("cluster=prod")).unwrap();
    std::fs::write(
        lake.audit_events_dir().join("cluster=prod/date=2026-11-22"),
        b"",
    )
    .unwrap();
    let err = w.flush().unwrap_err();
    assert!(matches!(err.fault(), crate::Fault::Environment), "{err}");
    assert!(matches!(
        w.write(decode(&[event("q", 3, 0, 0)]).remove(0)),
        Err(IngestError::WriterPoisoned(_))
    ));
    drop(w);
    std::fs::remove_file(lake.audit_events_dir().join("cluster=prod/date=2026-11-22")).unwrap();
    let mut w = LakeWriter::open(&lake, WriterOptions::default()).unwrap();
    for b in decode(&[event("p", 3, 0, 0)]) {
        assert_eq!(
            w.write(b).unwrap(),
            1,
            "the row that never became durable is accepted on retry"
        );
    }
    w.close().unwrap();
}

/// `stage_at` of every row of a file, in file order.
fn stage_times(path: &std::path::Path) -> Vec<i64> {
    read_rows(path)
        .iter()
        .flat_map(|b| {
            b.column_by_name(STAGE_AT)
                .unwrap()
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect()
}

#[test]
fn a_partition_becomes_one_file_of_sorted_row_groups_and_late_rows_a_file_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let opts = WriterOptions {
        row_group_rows: 16,
        encoder_threads: 2,
        ..WriterOptions::default()
    };
    let mut w = LakeWriter::open(&lake, opts).unwrap();
    // 200 events a second apart, each pair swapped (completion order is not stage order; the
    // held-back rows absorb that), then one event from the start of the hour: older than
    // everything already written, it cannot join the open file.
    let mut lines = Vec::new();
    for i in 0..200u32 {
        let j = if i % 2 == 0 { i + 1 } else { i - 1 };
        lines.push(event(&format!("id-{j}"), 5, 10 + j / 60, j % 60));
    }
    lines.push(event("late", 5, 0, 0));
    for line in &lines {
        for b in decode(std::slice::from_ref(line)) {
            w.write(b).unwrap();
        }
    }
    assert!(
        w.stats().rows_committed == 0,
        "nothing is visible before the file is complete"
    );
    assert!(all_files(&lake).is_empty());
    let files = w.close().unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    let mut by_rows: Vec<_> = all_files(&lake)
        .into_iter()
        .map(|p| (stage_times(&p), p))
        .collect();
    by_rows.sort_by_key(|(t, _)| t.len());
    let (late, main) = (&by_rows[0], &by_rows[1]);
    assert_eq!(late.0.len(), 1, "the late row is a file of its own");
    assert_eq!(main.0.len(), 200);
    assert!(
        main.0.windows(2).all(|w| w[0] <= w[1]),
        "sorted across row groups"
    );
    let meta = SerializedFileReader::new(File::open(&main.1).unwrap())
        .unwrap()
        .metadata()
        .clone();
    assert!(
        meta.num_row_groups() >= 10,
        "{} row groups",
        meta.num_row_groups()
    );
    for rg in meta.row_groups() {
        assert!(rg.num_rows() <= 16);
        let bloom = rg
            .columns()
            .iter()
            .find(|c| c.column_path().string() == AUDIT_ID)
            .unwrap()
            .bloom_filter_offset();
        assert!(bloom.is_some(), "every row group has its bloom filters");
    }
    // Every row exactly once.
    let mut ids: Vec<String> = all_files(&lake)
        .iter()
        .flat_map(|p| read_rows(p))
        .flat_map(|b| {
            b.column_by_name(AUDIT_ID)
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..200).map(|i| format!("id-{i}")).collect();
    want.push("late".into());
    want.sort();
    assert_eq!(ids, want);
    assert!(
        !lake.tmp_dir().read_dir().unwrap().any(|_| true),
        "no temp files left"
    );
}

#[test]
fn a_file_is_committed_at_max_file_rows_and_the_rest_starts_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let opts = WriterOptions {
        row_group_rows: 8,
        max_file_rows: 40,
        encoder_threads: 1,
        ..WriterOptions::default()
    };
    let mut w = LakeWriter::open(&lake, opts).unwrap();
    for i in 0..100u32 {
        for b in decode(&[event(&format!("id-{i}"), 5, i / 60, i % 60)]) {
            w.write(b).unwrap();
        }
    }
    assert!(
        w.stats().files_committed >= 2,
        "full files are committed while writing"
    );
    w.close().unwrap();
    let rows: Vec<usize> = all_files(&lake)
        .iter()
        .map(|p| stage_times(p).len())
        .collect();
    assert_eq!(rows.iter().sum::<usize>(), 100);
    assert!(rows.iter().all(|&r| r <= 40), "{rows:?}");
    assert_eq!(rows.len(), 3, "{rows:?}");
}

#[test]
fn a_long_input_across_many_hours_keeps_a_bounded_number_of_files_open() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let opts = WriterOptions {
        row_group_rows: 1,
        encoder_threads: 1,
        ..WriterOptions::default()
    };
    let mut w = LakeWriter::open(&lake, opts).unwrap();
    let hours = MAX_OPEN_FILES + 6;
    for h in 0..hours {
        let day = 1 + h / 24;
        let line = event(&format!("id-{h}"), (h % 24) as u32, 0, 0)
            .replace("2026-11-22T", &format!("2026-11-{day:02}T"));
        for b in decode(&[line]) {
            w.write(b).unwrap();
        }
    }
    assert_eq!(
        w.stats().files_committed,
        6,
        "the least recently written hours were committed"
    );
    w.close().unwrap();
    assert_eq!(all_files(&lake).len(), hours);
}

#[test]
fn audit_ids_get_zstd_1_bodies_the_bulk_level_filter_columns_none_and_the_rest_the_default() {
    let batches: Vec<RecordBatch> = decode(&[event("a", 5, 0, 0)])
        .into_iter()
        .map(|b| b.batch)
        .collect();
    let opts = WriterOptions {
        zstd_level: 4,
        bulk_zstd_level: 11,
        ..WriterOptions::default()
    };
    let props = writer_properties(&opts, &batches, 1).unwrap();
    let level = |col: &str| match props.compression(&ColumnPath::from(col)) {
        Compression::ZSTD(level) => level.compression_level(),
        Compression::UNCOMPRESSED => 0,
        other => panic!("{col}: {other:?}"),
    };
    assert_eq!(level(AUDIT_ID), 1);
    for col in [REQUEST_OBJECT, RESPONSE_OBJECT, REQUEST_URI] {
        assert_eq!(level(col), 11, "{col}");
    }
    for col in [NAME, SOURCE_IP, REQUEST_RECEIVED_AT] {
        assert_eq!(level(col), 4, "{col}");
    }
    for col in [
        RESOURCE,
        SUBRESOURCE,
        VERB,
        USER_NAME,
        STAGE_AT,
        POD_PRIVILEGED,
    ] {
        assert_eq!(level(col), 0, "{col} is stored uncompressed");
    }
}
