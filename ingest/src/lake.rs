//! The lake on disk: paths, the single-writer lock, and durable file operations.
//!
//! ```text
//! <lake>/audit_events/cluster=<c>/date=YYYY-MM-DD/hour=HH/part-<ulid>.parquet
//! <lake>/_quarantine/date=YYYY-MM-DD/quarantine-<ulid>.jsonl
//! <lake>/_state/writer.lock
//! <lake>/_tmp/                      files being written (never read by queries)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::decode::{MICROS_PER_HOUR, PartitionKey};
use crate::error::{IngestError, Result};
use crate::time::partition_date_hour;

pub const AUDIT_EVENTS_DIR: &str = "audit_events";
pub const QUARANTINE_DIR: &str = "_quarantine";
pub const STATE_DIR: &str = "_state";
pub const TMP_DIR: &str = "_tmp";

#[derive(Debug, Clone)]
pub struct Lake {
    root: PathBuf,
}

impl Lake {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Lake { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn audit_events_dir(&self) -> PathBuf {
        self.root.join(AUDIT_EVENTS_DIR)
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join(QUARANTINE_DIR)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    /// `<lake>/audit_events/cluster=<c>/date=YYYY-MM-DD/hour=HH`
    pub fn partition_dir(&self, key: &PartitionKey) -> PathBuf {
        let (date, hour) = partition_date_hour(key.hour * MICROS_PER_HOUR);
        self.audit_events_dir()
            .join(format!("cluster={}", key.cluster))
            .join(format!("date={date}"))
            .join(format!("hour={hour}"))
    }

    /// Takes the lake's single-writer lock. Held until the returned guard drops; the OS
    /// releases it if the process dies, so a crash never leaves the lake locked.
    pub fn lock_writer(&self) -> Result<WriterLock> {
        let state = self.state_dir();
        create_dir_durable(&state)?;
        let path = state.join("writer.lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(IngestError::lake_io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                return Err(IngestError::LakeLocked {
                    path: self.root.clone(),
                    holder: if holder.is_empty() {
                        "unknown process".into()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(IngestError::LakeIo { path, source: e }),
        }
        file.set_len(0).map_err(IngestError::lake_io(&path))?;
        writeln!(
            file,
            "pid {} ({})",
            std::process::id(),
            std::env::args().next().unwrap_or_default()
        )
        .map_err(IngestError::lake_io(&path))?;
        Ok(WriterLock { _file: file })
    }
}

/// Holds the lake's writer lock (an OS file lock) while alive.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

/// Checks a cluster name: it becomes a path segment (`cluster=<name>`) and a SQL value, so it
/// must be short, portable and free of separators.
pub fn validate_cluster_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(['.', '_'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(IngestError::InvalidClusterName {
            name: name.to_owned(),
        })
    }
}

/// Creates a directory and any missing parents, fsyncing each parent whose entry changed, so a
/// crash cannot lose a directory that a committed file lives in.
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) if !p.as_os_str().is_empty() => cur = p,
            _ => break,
        }
    }
    fs::create_dir_all(dir).map_err(IngestError::lake_io(dir))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// fsyncs a directory so that entries created or renamed in it survive a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(IngestError::lake_io(dir))
}

/// Makes a fully written, fsynced temp file visible under its final name, durably:
/// rename (atomic on one filesystem), then fsync the target directory.
pub fn commit_file(tmp: &Path, target: &Path) -> Result<()> {
    let dir = target
        .parent()
        .ok_or_else(|| IngestError::Internal(format!("{} has no parent", target.display())))?;
    create_dir_durable(dir)?;
    fs::rename(tmp, target).map_err(IngestError::lake_io(target))?;
    fsync_dir(dir)
}

/// Removes leftovers of writers that died mid-file. Only call while holding the writer lock.
pub fn clean_tmp(lake: &Lake) -> Result<usize> {
    let dir = lake.tmp_dir();
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            fs::remove_file(entry.path()).map_err(IngestError::lake_io(entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Lists the committed Parquet files of a partition directory (sorted by name).
pub fn list_parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(IngestError::LakeIo {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
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
}
