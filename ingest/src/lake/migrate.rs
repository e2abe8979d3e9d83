//! `auditlake migrate`: a lake written before the Delta table format becomes one in place.
//!
//! The Parquet files stay where they are; one commit adds them all, each with its SHA-256 and
//! row count, so the migrated lake verifies like one written as Delta from the start. A second
//! run finds the table and changes nothing; a run interrupted after the table was created but
//! before the files were added (the table is still empty) adds them on the next run.
//!
//! Two tables are migrated: `audit_events` (local lakes: earlier versions wrote only those) and
//! `findings`, whose bare `findings/date=…/part-….parquet` files earlier versions wrote on local
//! disk and in buckets alike.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use auditlake_schemas::DATE;

use super::delta::sha256_hex;
use super::{AUDIT_EVENTS_DIR, FINDINGS_DIR, Lake, NewFile, hash_file};
use crate::error::{IngestError, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// The lake already had a table with files: nothing was done.
    pub already_delta: bool,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    /// The commit that added the files.
    pub version: Option<i64>,
    /// The same for the `findings` table.
    pub findings: TableMigration,
}

/// What migrating one table did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableMigration {
    /// The table already existed with files (or there was nothing to adopt): nothing was done.
    pub already_delta: bool,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    pub version: Option<i64>,
}

/// Whether a local lake holds Hive-style data but no Delta log: readers would see nothing and
/// a writer would start a table beside the old files, so both refuse until it is migrated.
pub fn needs_migration(lake: &Lake) -> bool {
    if lake.is_remote() {
        return false;
    }
    let dir = lake.audit_events_dir();
    if dir.join("_delta_log").is_dir() {
        return false;
    }
    fs::read_dir(&dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("cluster="))
    })
}

/// Whether the lake holds findings files but no `findings` table: a store or a reader would
/// start or read an empty table beside them, hiding every finding, so both refuse until it is
/// migrated. On object storage: one listing of the table's log, and one of `findings/` when
/// there is no table.
pub fn findings_need_migration(lake: &Lake) -> Result<bool> {
    if lake.findings().exists()? {
        return Ok(false);
    }
    Ok(!legacy_findings(lake)?.is_empty())
}

/// The bare findings files (`date=YYYY-MM-DD/part-….parquet`, relative to `findings/`).
fn legacy_findings(lake: &Lake) -> Result<Vec<super::LakeEntry>> {
    Ok(lake
        .list_files(FINDINGS_DIR)?
        .into_iter()
        .filter(|e| e.name.ends_with(".parquet") && !e.name.starts_with("_delta_log/"))
        .collect())
}

/// Adopts the bare findings files into a new `findings` table (one commit), unless the table
/// already holds files.
fn migrate_findings(lake: &Lake) -> Result<TableMigration> {
    let table = lake.findings();
    if table.exists()? && !table.all_files()?.is_empty() {
        return Ok(TableMigration {
            already_delta: true,
            ..TableMigration::default()
        });
    }
    let mut out = TableMigration::default();
    let mut adds = Vec::new();
    for entry in legacy_findings(lake)? {
        let rel = format!("{FINDINGS_DIR}/{}", entry.name);
        let location = lake.location_of(&rel);
        let Some(date) = entry
            .name
            .split('/')
            .find_map(|p| p.strip_prefix(&format!("{DATE}=")))
        else {
            return Err(IngestError::StrayFindingsFile { location });
        };
        let bytes = lake.read_file(&rel)?.ok_or_else(|| IngestError::Vanished {
            location: location.clone(),
        })?;
        let meta = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .map_err(|source| IngestError::LakeRead {
                path: location.clone().into(),
                source,
            })?;
        let rows = u64::try_from(meta.file_metadata().num_rows()).unwrap_or(0);
        out.files += 1;
        out.rows += rows;
        out.bytes += bytes.len() as u64;
        adds.push(NewFile {
            path: entry.name.clone(),
            partition: HashMap::from([(DATE.to_owned(), Some(date.to_owned()))]),
            size: bytes.len() as u64,
            rows,
            sha256: sha256_hex(&bytes),
        });
    }
    if adds.is_empty() {
        out.already_delta = true;
        return Ok(out);
    }
    let detail = serde_json::json!({ "files": out.files, "rows": out.rows });
    out.version = table.commit("migrate", detail, adds, Vec::new())?;
    Ok(out)
}

/// The legacy data files: `audit_events/cluster=*/date=*/hour=*/*.parquet`, sorted.
fn legacy_files(root: &Path) -> Result<Vec<(PathBuf, String, [String; 3])>> {
    let mut out = Vec::new();
    let dirs = |dir: &Path, key: &str| -> Result<Vec<(PathBuf, String)>> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(IngestError::lake_io(dir)(e)),
        };
        let mut v: Vec<(PathBuf, String)> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let value = name.strip_prefix(key)?.to_owned();
                Some((e.path(), value))
            })
            .collect();
        v.sort();
        Ok(v)
    };
    for (cdir, cluster) in dirs(root, "cluster=")? {
        for (ddir, date) in dirs(&cdir, "date=")? {
            for (hdir, hour) in dirs(&ddir, "hour=")? {
                for file in super::list_parquet_files(&hdir)? {
                    let name = file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let rel = format!("cluster={cluster}/date={date}/hour={hour}/{name}");
                    out.push((file, rel, [cluster.clone(), date.clone(), hour.clone()]));
                }
            }
        }
    }
    Ok(out)
}

fn row_count(path: &Path) -> Result<u64> {
    let file = fs::File::open(path).map_err(IngestError::lake_io(path))?;
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|source| IngestError::LakeRead {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(u64::try_from(meta.file_metadata().num_rows()).unwrap_or(0))
}

/// Migrates a lake: `audit_events` of a local lake (taking the writer lock: nothing may write
/// while the log is made), and the findings of any lake.
pub fn migrate(lake: &Lake) -> Result<MigrateReport> {
    if lake.is_remote() {
        // Object-store lakes were Delta from their first version; only findings predate that.
        return Ok(MigrateReport {
            already_delta: true,
            findings: migrate_findings(lake)?,
            ..MigrateReport::default()
        });
    }
    let _lock = lake.lock_writer()?;
    let findings = migrate_findings(lake)?;
    let fresh = !lake.audit_events_dir().join("_delta_log").is_dir();
    if !fresh && !lake.events().all_files()?.is_empty() {
        return Ok(MigrateReport {
            already_delta: true,
            findings,
            ..MigrateReport::default()
        });
    }
    let mut report = MigrateReport {
        findings,
        ..MigrateReport::default()
    };
    let mut adds = Vec::new();
    for (path, rel, [cluster, date, hour]) in legacy_files(&lake.root().join(AUDIT_EVENTS_DIR))? {
        let (size, sha256) = hash_file(&path)?;
        let rows = row_count(&path)?;
        report.files += 1;
        report.rows += rows;
        report.bytes += size;
        adds.push(NewFile {
            path: rel,
            partition: super::delta::event_partition(&cluster, &date, &hour),
            size,
            rows,
            sha256,
        });
    }
    let detail = serde_json::json!({ "files": report.files, "rows": report.rows });
    if adds.is_empty() {
        // An empty lake: the table exists from now on, like one a writer created.
        lake.events().all_files()?;
    } else {
        report.version = lake.events().commit("migrate", detail, adds, Vec::new())?;
    }
    Ok(report)
}
