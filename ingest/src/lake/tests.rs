//! Tests of the lake (moved out of `lake/mod.rs`).

use super::DurableWrite;

/// The names in `dir`, sorted (temporary files included).
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_durable_write_is_whole_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sub/state.json");
    // Fails half-way, before the rename: no target, no temporary file left.
    let err = DurableWrite::new(&target)
        .write(|f| {
            use std::io::Write;
            f.write_all(b"{\"half\":")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
    // The cause is the error's source, not part of its message: the chain shows it.
    let message = crate::error::chain(&err);
    assert!(message.contains("disk full"), "{message}");
    assert!(!target.exists());
    assert_eq!(names(&dir.path().join("sub")), Vec::<String>::new());

    DurableWrite::new(&target).bytes(b"old").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
    // A failure replacing it leaves the old file whole…
    let _ = DurableWrite::new(&target).write(|f| {
        use std::io::Write;
        f.write_all(b"new but unfinished")?;
        Err(std::io::Error::other("killed"))
    });
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
    // …and so does a panic in the writer (the temporary file goes too).
    let panicked = std::panic::catch_unwind(|| {
        DurableWrite::new(&target).write(|f| {
            use std::io::Write;
            f.write_all(b"new")?;
            panic!("writer crashed")
        })
    });
    assert!(panicked.is_err());
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
    assert_eq!(names(&dir.path().join("sub")), ["state.json"]);

    DurableWrite::new(&target).bytes(b"new").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    assert_eq!(names(&dir.path().join("sub")), ["state.json"]);
}

#[test]
fn a_durable_write_keeps_the_mode_asked_for() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("report.html");
    DurableWrite::new(&private)
        .mode(0o600)
        .defer_dir_sync()
        .bytes(b"<html>")
        .unwrap();
    let mode = std::fs::metadata(&private).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    super::fsync_dir(dir.path()).unwrap();
}

#[test]
fn a_lake_debug_prints_no_credential() {
    let storage = std::collections::HashMap::from([
        (
            "aws_access_key_id".to_owned(),
            "AKIAEXAMPLEKEYID".to_owned(),
        ),
        (
            "aws_secret_access_key".to_owned(),
            "secret-value-never-printed".to_owned(),
        ),
        ("aws_region".to_owned(), "eu-west-1".to_owned()),
    ]);
    let lake = super::Lake::open("s3://bucket/prefix", &storage).unwrap();
    let text = format!("{lake:?}");
    assert!(text.contains("s3://bucket/prefix"), "{text}");
    assert!(!text.contains("secret-value-never-printed"), "{text}");
    assert!(!text.contains("AKIAEXAMPLEKEYID"), "{text}");
}

use super::*;
use std::sync::Arc;

#[test]
fn partition_paths_follow_the_hive_layout() {
    let lake = Lake::new("/data/lake");
    // 2026-11-22T05:xx UTC
    let hour = 1_795_326_899_i64 / 3600;
    let key = PartitionKey {
        cluster: Arc::from("prod-eu"),
        hour,
    };
    assert_eq!(
        lake.partition_dir(&key),
        PathBuf::from("/data/lake/audit_events/cluster=prod-eu/date=2026-11-22/hour=05")
    );
}

#[test]
fn cluster_names() {
    for ok in ["default", "prod-eu-1", "kind.local", "a_b"] {
        validate_cluster_name(ok).unwrap();
    }
    for bad in [
        "",
        "a/b",
        "../x",
        ".hidden",
        "_x",
        "has space",
        "x=y",
        &"x".repeat(64),
    ] {
        assert!(validate_cluster_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn second_writer_is_refused_with_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let first = lake.lock_writer().unwrap();
    let err = lake.lock_writer().unwrap_err();
    assert!(matches!(err, IngestError::LakeLocked { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    drop(first);
    lake.lock_writer().unwrap();
}
