//! Tests of retention and the vacuum (moved out of `retention.rs`).

use super::*;

fn file(cluster: &str, date: &str, hour: &str, n: usize) -> TableFile {
    TableFile {
        path: format!("cluster={cluster}/date={date}/hour={hour}/part-{n}.parquet"),
        size: 100,
        rows: Some(10),
        partition: super::super::delta::event_partition(cluster, date, hour),
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[test]
fn expires_whole_hours_that_ended_before_the_period_and_keeps_held_clusters() {
    let policy = RetentionPolicy {
        days: Some(30),
        cluster_days: BTreeMap::from([("pci".to_owned(), 365)]),
        holds: vec![Hold {
            cluster: "case".into(),
            reason: "INC-7".into(),
        }],
        ..Default::default()
    };
    let files = vec![
        file("a", "2026-11-02", "23", 1),
        file("a", "2026-11-02", "23", 2),
        file("a", "2026-11-03", "00", 3), // ends 01:00 on 11-03: not yet 30 days old
        file("pci", "2026-01-01", "00", 4),
        file("pci", "2025-12-01", "00", 5),
        file("case", "2020-01-01", "00", 6),
        file("a", "not-a-date", "00", 7),
    ];
    let p = plan(files, &policy, at("2026-12-03T00:30:00Z"));
    let expired: Vec<_> = p
        .expired
        .iter()
        .map(|s| {
            (
                s.cluster.as_str(),
                s.date.as_str(),
                s.files,
                s.rule.as_str(),
            )
        })
        .collect();
    assert_eq!(
        expired,
        vec![
            ("a", "2026-11-02", 2, "retention.days = 30"),
            ("pci", "2025-12-01", 1, "retention.clusters.pci = 365 days"),
        ]
    );
    assert_eq!(p.removes.len(), 3);
    assert_eq!(p.expired[0].rows, 20);
    assert_eq!(p.held.len(), 1);
    assert_eq!(p.held[0].cluster, "case");
    assert_eq!(p.held[0].rule, "legal hold: INC-7");
}

#[test]
fn without_a_period_nothing_expires() {
    let p = plan(
        vec![file("a", "2000-01-01", "00", 1)],
        &RetentionPolicy::default(),
        Utc::now(),
    );
    assert!(p.expired.is_empty() && p.removes.is_empty() && p.held.is_empty());
}

#[test]
fn partition_of_reads_the_hive_path() {
    assert_eq!(
        partition_of("cluster=c/date=2026-01-01/hour=05/part-1.parquet"),
        (
            Some("c".into()),
            Some("2026-01-01".into()),
            Some("05".into())
        )
    );
    assert_eq!(partition_of("part-1.parquet"), (None, None, None));
}

/// A lake with 40 events of cluster prod in 2026-01-05 10:00.
fn lake_with_events(dir: &std::path::Path) -> Lake {
    use crate::decode::{DecodeOptions, Decoder, SourcePosition};
    let lake = Lake::new(dir);
    let mut d = Decoder::new(DecodeOptions::new("prod"));
    for i in 0..40 {
        let line = format!(
            r#"{{"auditID":"e-{i}","stage":"ResponseComplete","level":"Metadata","requestURI":"/api/v1/pods","verb":"list","user":{{"username":"u"}},"objectRef":{{"resource":"pods"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-01-05T10:{i:02}:00.000000Z"}}"#
        );
        d.decode(line.as_bytes(), &SourcePosition::default());
    }
    let mut w = crate::writer::LakeWriter::open(&lake, crate::WriterOptions::default()).unwrap();
    for b in d.take().batches {
        w.write(b).unwrap();
    }
    w.flush().unwrap();
    lake
}

type LogRow = (String, String, String, String, String, i64, String, i64);

/// retention_log's rows: run, action, cluster, date, hour, rows, rule, events version.
fn log_rows(lake: &Lake) -> Vec<LogRow> {
    use arrow::array::AsArray as _;
    use arrow::datatypes::Int64Type;
    let mut out = Vec::new();
    for f in lake.retention_log().all_files().unwrap() {
        let file = std::fs::File::open(lake.root().join("retention_log").join(&f.path)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            let t = |c: &str| b.column_by_name(c).unwrap().as_string::<i32>().clone();
            let n = |c: &str| {
                b.column_by_name(c)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .clone()
            };
            let (run, action, cluster, date, hour, rule) = (
                t("run_id"),
                t("action"),
                t("cluster"),
                t("date"),
                t("hour"),
                t("rule"),
            );
            let (rows, version) = (n("rows"), n("events_version"));
            for i in 0..b.num_rows() {
                out.push((
                    run.value(i).to_owned(),
                    action.value(i).to_owned(),
                    cluster.value(i).to_owned(),
                    date.value(i).to_owned(),
                    hour.value(i).to_owned(),
                    rows.value(i),
                    rule.value(i).to_owned(),
                    version.value(i),
                ));
            }
        }
    }
    out
}

#[test]
fn a_run_that_died_between_its_commit_and_its_log_append_is_recorded_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_events(dir.path());
    let policy = RetentionPolicy {
        days: Some(30),
        ..RetentionPolicy::default()
    };
    // What `run` commits, without the append that follows (the process died in between).
    let p = plan(lake.events().all_files().unwrap(), &policy, Utc::now());
    assert_eq!(p.expired.len(), 1);
    let detail = json!({
        "run_id": "01DIED",
        "expired": p.expired.iter().map(|s| json!({
            "cluster": s.cluster, "date": s.date, "hour": s.hour,
            "files": s.files, "rows": s.rows, "bytes": s.bytes, "rule": s.rule,
        })).collect::<Vec<_>>(),
    });
    let version = lake
        .events()
        .commit(ACTION_RETENTION, detail, Vec::new(), p.removes)
        .unwrap()
        .unwrap();
    assert!(logged_runs(&lake).unwrap().is_empty());

    // A run in flight (its commit younger than the cutoff) is left alone ...
    let hour_ago = Utc::now() - TimeDelta::hours(1);
    assert!(reconcile(&lake, hour_ago).unwrap().is_empty());
    assert!(!lake.retention_log().exists().unwrap());
    // ... and recorded once it is settled, from its commit: partition, rows, rule, version.
    assert_eq!(reconcile(&lake, Utc::now()).unwrap(), vec!["01DIED"]);
    assert!(logged_runs(&lake).unwrap().contains("01DIED"));
    let rows = log_rows(&lake);
    assert_eq!(
        rows,
        vec![(
            "01DIED".to_string(),
            "expire".to_string(),
            "prod".to_string(),
            "2026-01-05".to_string(),
            "10".to_string(),
            40,
            "retention.days = 30".to_string(),
            version,
        )]
    );
    // Once: neither a second reconciliation nor a full run records it again.
    assert!(reconcile(&lake, Utc::now()).unwrap().is_empty());
    let report = run(&lake, &policy, false, Utc::now()).unwrap();
    assert!(report.recovered.is_empty() && report.expired.is_empty());
    assert_eq!(log_rows(&lake).len(), 1);
    let verified = crate::lake::verify::verify(&lake, &Default::default()).unwrap();
    assert!(verified.intact(), "{:?}", verified.problems);
}
