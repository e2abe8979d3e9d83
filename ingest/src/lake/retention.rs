//! Retention: whole expired partitions leave the lake through Delta `remove` actions, their
//! files are deleted by a vacuum once a grace period has passed, and every deletion is recorded
//! twice — in the removing commit (part of the hash chain `verify` walks) and as rows of the
//! `retention_log` table (a Delta table of its own, hash-chained the same way, queryable).
//!
//! The unit is a whole partition (cluster, date, hour): it expires when its hour ended more
//! than the cluster's retention period ago. A cluster under a legal hold is never expired,
//! whatever its period. Nothing is deleted before it has been removed from the table for the
//! grace period, so a query planned on an older snapshot still finds its files.
//!
//! Order of a run: plan from the latest snapshot → one commit removing every expired file
//! (re-planned if a concurrent compaction or retention run changed one of them first) → vacuum
//! (delta-rs plans it: files the table no longer names, removed or never committed, older than
//! the grace period; the deletion is ours, so no vacuum commit unlinked from the chain is
//! written) → the `retention_log` rows. A crash after the commit but before the log append
//! leaves the commit's own record (which names the run, every partition and rule); the next run
//! first **reconciles**: it reads the commits made since the last reconciled version
//! (`_state/retention.json`), and appends the rows of every retention commit whose run is missing
//! from `retention_log`, rebuilt from the commit (its time, partitions, rules and version).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use object_store::ObjectStoreExt as _;
use serde_json::json;

use super::delta::{ACTION_RETENTION, INFO_ACTION, INFO_DETAIL, TableFile};
use super::store::block_on;
use super::{Append, Lake, TableKind};
use crate::error::{IngestError, Result};
use auditlake_schemas::{CLUSTER, DATE, HOUR};

/// How often a run re-plans when a concurrent compaction or retention run removed one of the
/// files it was about to remove.
const MAX_PLAN_ATTEMPTS: usize = 5;

/// A cluster whose events are never expired, and why (a case number, a litigation hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub cluster: String,
    pub reason: String,
}

/// `[retention]`: how long each cluster's events are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Days every cluster is kept; `None` keeps forever (clusters listed in `cluster_days` still
    /// expire).
    pub days: Option<u32>,
    /// Per-cluster periods, overriding `days`.
    pub cluster_days: BTreeMap<String, u32>,
    pub holds: Vec<Hold>,
    /// Removed or never-committed files are deleted only once this old.
    pub vacuum_grace: TimeDelta,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            days: None,
            cluster_days: BTreeMap::new(),
            holds: Vec::new(),
            vacuum_grace: TimeDelta::days(7),
        }
    }
}

/// What the policy says about one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Forever,
    Held(String),
    Days { days: u32, rule: String },
}

impl RetentionPolicy {
    fn rule_for(&self, cluster: &str) -> Rule {
        if let Some(h) = self.holds.iter().find(|h| h.cluster == cluster) {
            return Rule::Held(h.reason.clone());
        }
        match (self.cluster_days.get(cluster), self.days) {
            (Some(&days), _) => Rule::Days {
                days,
                rule: format!("retention.clusters.{cluster} = {days} days"),
            },
            (None, Some(days)) => Rule::Days {
                days,
                rule: format!("retention.days = {days}"),
            },
            (None, None) => Rule::Forever,
        }
    }
}

/// One partition a run removed (or would remove), or keeps under a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSummary {
    pub cluster: String,
    pub date: String,
    pub hour: String,
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    /// The rule that expired it (`retention.days = 30`) or the hold that keeps it.
    pub rule: String,
}

#[derive(Debug, Clone)]
pub struct RetentionReport {
    pub run_id: String,
    pub run_at: DateTime<Utc>,
    pub dry_run: bool,
    /// Partitions removed from the table by this run (or that would be, on a dry run).
    pub expired: Vec<PartitionSummary>,
    /// Partitions past their period that a legal hold keeps.
    pub held: Vec<PartitionSummary>,
    /// The `audit_events` version of the removing commit.
    pub events_version: Option<i64>,
    /// Files deleted from storage (or that would be), relative to the table root.
    pub vacuumed: Vec<String>,
    /// The `retention_log` version holding this run's rows.
    pub log_version: Option<i64>,
    /// Earlier runs whose removal was committed but whose rows never reached `retention_log`
    /// (the run died in between): recorded now, from their commits.
    pub recovered: Vec<String>,
}

pub const LOG_RUN_ID: &str = "run_id";

/// The `retention_log` table's columns.
pub fn retention_log_schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text(LOG_RUN_ID, false),
        Field::new(
            "run_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        // `expire`: removed from the table; `vacuum`: files deleted from storage.
        text("action", false),
        text(CLUSTER, true),
        text(DATE, true),
        text(HOUR, true),
        Field::new("files", DataType::Int64, false),
        Field::new("rows", DataType::Int64, true),
        Field::new("bytes", DataType::Int64, true),
        text("rule", false),
        // The `audit_events` version whose commit removed the files.
        Field::new("events_version", DataType::Int64, true),
    ]))
}

/// The end of a partition's hour, from its `date` and `hour` values.
fn hour_end(date: &str, hour: &str) -> Option<DateTime<Utc>> {
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let h: u32 = hour.parse().ok().filter(|h| *h < 24)?;
    Some(day.and_hms_opt(h, 0, 0)?.and_utc() + TimeDelta::hours(1))
}

type PartitionId = (String, String, String);

struct Plan {
    expired: Vec<PartitionSummary>,
    held: Vec<PartitionSummary>,
    removes: Vec<TableFile>,
}

fn plan(files: Vec<TableFile>, policy: &RetentionPolicy, now: DateTime<Utc>) -> Plan {
    let mut by_partition: BTreeMap<PartitionId, Vec<TableFile>> = BTreeMap::new();
    for f in files {
        let id = (
            f.partition_value(CLUSTER).to_owned(),
            f.partition_value(DATE).to_owned(),
            f.partition_value(HOUR).to_owned(),
        );
        by_partition.entry(id).or_default().push(f);
    }
    let mut out = Plan {
        expired: Vec::new(),
        held: Vec::new(),
        removes: Vec::new(),
    };
    for ((cluster, date, hour), files) in by_partition {
        // A partition whose values do not name an hour was not written by auditlake: keep it
        // (and `verify` reports what is odd about it), never guess.
        let Some(end) = hour_end(&date, &hour) else {
            continue;
        };
        let summary = |rule: String| PartitionSummary {
            cluster: cluster.clone(),
            date: date.clone(),
            hour: hour.clone(),
            files: files.len() as u64,
            rows: files.iter().filter_map(|f| f.rows).sum(),
            bytes: files.iter().map(|f| f.size).sum(),
            rule,
        };
        match policy.rule_for(&cluster) {
            Rule::Forever => {}
            Rule::Days { days, rule } => {
                if end <= now - TimeDelta::days(days.into()) {
                    out.expired.push(summary(rule));
                    out.removes.extend(files);
                }
            }
            Rule::Held(reason) => {
                let days = policy.cluster_days.get(&cluster).copied().or(policy.days);
                if days.is_some_and(|d| end <= now - TimeDelta::days(d.into())) {
                    out.held.push(summary(format!("legal hold: {reason}")));
                }
            }
        }
    }
    out
}

/// Runs retention once: expire, vacuum, record. `now` decides what has expired (the vacuum's
/// grace period is always measured against the real clock: it protects readers and writers in
/// flight now).
pub fn run(
    lake: &Lake,
    policy: &RetentionPolicy,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<RetentionReport> {
    let run_at = Utc::now();
    let mut report = RetentionReport {
        run_id: ulid::Ulid::generate().to_string(),
        run_at,
        dry_run,
        expired: Vec::new(),
        held: Vec::new(),
        events_version: None,
        vacuumed: Vec::new(),
        log_version: None,
        recovered: Vec::new(),
    };
    // No table yet: nothing to expire, and a retention run must not create one.
    if !lake.events().exists()? {
        return Ok(report);
    }
    if !dry_run {
        report.recovered = reconcile(lake, Utc::now() - RECONCILE_AFTER)?;
    }
    for attempt in 1..=MAX_PLAN_ATTEMPTS {
        let p = plan(lake.events().all_files()?, policy, now);
        report.expired = p.expired;
        report.held = p.held;
        if dry_run || p.removes.is_empty() {
            break;
        }
        let detail = json!({
            "run_id": report.run_id,
            "expired": report.expired.iter().map(|s| json!({
                "cluster": s.cluster, "date": s.date, "hour": s.hour,
                "files": s.files, "rows": s.rows, "bytes": s.bytes, "rule": s.rule,
            })).collect::<Vec<_>>(),
        });
        match lake
            .events()
            .commit(ACTION_RETENTION, detail, Vec::new(), p.removes)?
        {
            Some(v) => {
                report.events_version = Some(v);
                break;
            }
            // A concurrent compaction or retention run removed one of the files: plan again
            // from the snapshot that has its commit.
            None if attempt < MAX_PLAN_ATTEMPTS => continue,
            None => {
                return Err(IngestError::LakeLocation {
                    value: lake.display(),
                    reason: format!(
                        "the table kept changing under retention ({MAX_PLAN_ATTEMPTS} plans in a row were overtaken by other commits); run it again"
                    ),
                });
            }
        }
    }
    report.vacuumed = vacuum(lake, policy.vacuum_grace, dry_run)?;
    if !dry_run {
        report.log_version = append_log(lake, &report)?;
    }
    Ok(report)
}

/// Deletes (or on a dry run, lists) the files of `audit_events` the table no longer names and
/// that are older than `grace`: files removed by retention or compaction at least `grace` ago,
/// and uploads no commit ever named (a writer that died before committing) written at least
/// `grace` ago.
fn vacuum(lake: &Lake, grace: TimeDelta, dry_run: bool) -> Result<Vec<String>> {
    let candidates = lake.events().vacuum_candidates(grace)?;
    if dry_run || candidates.is_empty() {
        return Ok(candidates);
    }
    let store = lake.events().table_store()?;
    let location = lake.events().url().to_string();
    block_on(async {
        let mut deleted = Vec::with_capacity(candidates.len());
        for rel in candidates {
            let path = object_store::path::Path::from(rel.as_str());
            let failed = |source| IngestError::Storage {
                location: format!("{location}{rel}"),
                source: Box::new(source),
            };
            // Replicas all run the vacuum: a file another run deleted first is its to record
            // (S3 answers a DELETE of a missing key with success, so ask first).
            match store.head(&path).await {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(source) => return Err(failed(source)),
            }
            match store.delete(&path).await {
                Ok(()) => deleted.push(rel),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(failed(source)),
            }
        }
        Ok(deleted)
    })
}

/// (cluster, date, hour) of a data file, each absent when its path does not say it.
type Partition = (Option<String>, Option<String>, Option<String>);

/// The partition of a data file's path (`cluster=c/date=d/hour=h/part-….parquet`).
fn partition_of(rel: &str) -> Partition {
    let mut out = (None, None, None);
    for part in rel.split('/') {
        if let Some((k, v)) = part.split_once('=') {
            let v = Some(v.to_owned());
            match k {
                CLUSTER => out.0 = v,
                DATE => out.1 = v,
                HOUR => out.2 = v,
                _ => {}
            }
        }
    }
    out
}

/// The state document of the reconciliation.
const RECONCILED: &str = "retention.json";

/// A retention commit younger than this may belong to a run still vacuuming before its append
/// (another replica's): it is left for a later reconciliation.
const RECONCILE_AFTER: TimeDelta = TimeDelta::hours(1);

/// Records, from their commits, retention runs that removed partitions but died before their
/// `retention_log` append. Reads only the commits made since the last reconciled version, up to
/// the first one made after `settled` (runs in flight).
fn reconcile(lake: &Lake, settled: DateTime<Utc>) -> Result<Vec<String>> {
    let from = lake
        .read_state(RECONCILED)?
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["reconciled_version"].as_i64())
        .map_or(0, |v| v + 1);
    let Some(head) = lake.events().head_version()? else {
        return Ok(Vec::new());
    };
    let mut runs = Vec::new();
    let mut reconciled = from - 1;
    'commits: for version in from..=head {
        // A missing or unreadable commit is verify's to report; nothing to rebuild from it.
        let Some(bytes) = lake.events().commit_bytes(version)? else {
            reconciled = version;
            continue;
        };
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            let info = &action["commitInfo"];
            let made = info["timestamp"]
                .as_i64()
                .and_then(DateTime::from_timestamp_millis);
            if made.is_some_and(|t| t > settled) {
                break 'commits;
            }
            if info[INFO_ACTION].as_str() == Some(ACTION_RETENTION)
                && let Some(run) = run_from_commit(info, version)
            {
                runs.push(run);
            }
        }
        reconciled = version;
    }
    let mut recovered = Vec::new();
    if !runs.is_empty() {
        let logged = logged_runs(lake)?;
        for run in runs.into_iter().filter(|r| !logged.contains(&r.run_id)) {
            append_log(lake, &run)?;
            recovered.push(run.run_id);
        }
    }
    if reconciled >= from {
        lake.write_state(
            RECONCILED,
            json!({ "reconciled_version": reconciled })
                .to_string()
                .as_bytes(),
        )?;
    }
    Ok(recovered)
}

/// A retention run as its commit recorded it (`commitInfo`: run id, partitions, rules).
fn run_from_commit(info: &serde_json::Value, version: i64) -> Option<RetentionReport> {
    let detail = &info[INFO_DETAIL];
    let run_id = detail["run_id"].as_str()?.to_owned();
    let run_at = DateTime::from_timestamp_millis(info["timestamp"].as_i64()?)?;
    let expired = detail["expired"]
        .as_array()?
        .iter()
        .map(|p| {
            Some(PartitionSummary {
                cluster: p["cluster"].as_str()?.to_owned(),
                date: p["date"].as_str()?.to_owned(),
                hour: p["hour"].as_str()?.to_owned(),
                files: p["files"].as_u64()?,
                rows: p["rows"].as_u64()?,
                bytes: p["bytes"].as_u64()?,
                rule: p["rule"].as_str()?.to_owned(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(RetentionReport {
        run_id,
        run_at,
        dry_run: false,
        expired,
        held: Vec::new(),
        events_version: Some(version),
        vacuumed: Vec::new(),
        log_version: None,
        recovered: Vec::new(),
    })
}

/// The run ids `retention_log` holds expire rows of.
fn logged_runs(lake: &Lake) -> Result<std::collections::HashSet<String>> {
    use arrow::array::Array as _;
    let mut out = std::collections::HashSet::new();
    if !lake.retention_log().exists()? {
        return Ok(out);
    }
    let table = lake.retention_log();
    for file in table.all_files()? {
        let location = format!("{}{}", table.url(), file.path);
        let bytes = lake
            .read_file(&format!("{}/{}", table.kind().dir(), file.path))?
            .ok_or_else(|| IngestError::Vanished {
                location: location.clone(),
            })?;
        let read_err = |source| IngestError::LakeRead {
            path: location.clone().into(),
            source,
        };
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(read_err)?;
        for batch in reader {
            let batch = batch.map_err(|e| read_err(e.into()))?;
            let col = |name: &str| {
                batch
                    .column_by_name(name)
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
            };
            let (Some(ids), Some(actions)) = (col(LOG_RUN_ID), col("action")) else {
                continue;
            };
            for i in 0..batch.num_rows() {
                if !ids.is_null(i) && actions.value(i) == "expire" {
                    out.insert(ids.value(i).to_owned());
                }
            }
        }
    }
    Ok(out)
}

/// Appends the run's rows to `retention_log` as one Parquet file and one commit.
fn append_log(lake: &Lake, report: &RetentionReport) -> Result<Option<i64>> {
    struct Row {
        action: &'static str,
        cluster: Option<String>,
        date: Option<String>,
        hour: Option<String>,
        files: i64,
        rows: Option<i64>,
        bytes: Option<i64>,
        rule: String,
        events_version: Option<i64>,
    }
    let mut rows: Vec<Row> = report
        .expired
        .iter()
        .map(|s| Row {
            action: "expire",
            cluster: Some(s.cluster.clone()),
            date: Some(s.date.clone()),
            hour: Some(s.hour.clone()),
            files: s.files as i64,
            rows: Some(s.rows as i64),
            bytes: Some(s.bytes as i64),
            rule: s.rule.clone(),
            events_version: report.events_version,
        })
        .collect();
    let mut vacuumed: BTreeMap<Partition, i64> = BTreeMap::new();
    for rel in &report.vacuumed {
        *vacuumed.entry(partition_of(rel)).or_default() += 1;
    }
    rows.extend(
        vacuumed
            .into_iter()
            .map(|((cluster, date, hour), files)| Row {
                action: "vacuum",
                cluster,
                date,
                hour,
                files,
                rows: None,
                bytes: None,
                rule: "no longer in the table, past the vacuum grace period".into(),
                events_version: None,
            }),
    );
    if rows.is_empty() {
        return Ok(None);
    }
    let n = rows.len();
    let text = |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let int = |f: &dyn Fn(&Row) -> Option<i64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int64Array>())
    };
    let batch = RecordBatch::try_new(
        retention_log_schema(),
        vec![
            text(&|_| Some(report.run_id.clone())),
            Arc::new(
                TimestampMicrosecondArray::from(vec![report.run_at.timestamp_micros(); n])
                    .with_timezone("UTC"),
            ),
            text(&|r| Some(r.action.to_owned())),
            text(&|r| r.cluster.clone()),
            text(&|r| r.date.clone()),
            text(&|r| r.hour.clone()),
            int(&|r| Some(r.files)),
            int(&|r| r.rows),
            int(&|r| r.bytes),
            text(&|r| Some(r.rule.clone())),
            int(&|r| r.events_version),
        ],
    )?;
    let (version, _) = lake.append(
        TableKind::RetentionLog,
        Append {
            rel: format!("part-{}.parquet", ulid::Ulid::generate()),
            partition: Default::default(),
            batch: &batch,
            action: "retention-log",
            detail: json!({ "run_id": report.run_id }),
        },
    )?;
    Ok(version)
}

#[cfg(test)]
mod tests;
