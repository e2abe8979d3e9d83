//! `auditlake retention`: expire whole partitions past their period, vacuum, record.

use auditlake_ingest::lake::retention::{PartitionSummary, RetentionReport, run as run_retention};
use serde_json::{Value, json};

use crate::EXIT_OK;
use crate::cli::RetentionArgs;
use crate::config::Config;

pub fn run(config: &Config, args: RetentionArgs) -> anyhow::Result<u8> {
    let lake = config.lake(args.lake.lake.as_deref())?;
    if !lake.is_remote() && !lake.root().is_dir() {
        anyhow::bail!("no lake at {}", lake.display());
    }
    let policy = config.retention_policy()?;
    if policy.days.is_none() && policy.cluster_days.is_empty() {
        eprintln!(
            "no retention period configured ([retention] days): nothing expires; removed files are still vacuumed"
        );
    }
    let now = match &args.as_of {
        Some(t) => super::parse_time("as-of", t, chrono::Utc::now())?,
        None => chrono::Utc::now(),
    };
    let report = run_retention(&lake, &policy, args.dry_run, now)?;
    if args.json {
        println!("{}", report_json(&lake.display(), &report));
    } else {
        print_report(&lake.display(), &report);
    }
    Ok(EXIT_OK)
}

fn partitions_json(list: &[PartitionSummary]) -> Vec<Value> {
    list.iter()
        .map(|s| {
            json!({
                "cluster": s.cluster, "date": s.date, "hour": s.hour, "files": s.files,
                "rows": s.rows, "bytes": s.bytes, "rule": s.rule,
            })
        })
        .collect()
}

fn report_json(lake: &str, r: &RetentionReport) -> Value {
    json!({
        "lake": lake,
        "run_id": r.run_id,
        "dry_run": r.dry_run,
        "expired": partitions_json(&r.expired),
        "held": partitions_json(&r.held),
        "events_version": r.events_version,
        "vacuumed": r.vacuumed,
        "log_version": r.log_version,
        "recovered": r.recovered,
    })
}

fn print_report(lake: &str, r: &RetentionReport) {
    for run in &r.recovered {
        println!(
            "recorded run {run} in retention_log from its commit (it had died before its own record)"
        );
    }
    let would = if r.dry_run { "would remove" } else { "removed" };
    for s in &r.expired {
        println!(
            "{would} cluster={} date={} hour={}: {} files, {} rows ({})",
            s.cluster, s.date, s.hour, s.files, s.rows, s.rule
        );
    }
    for s in &r.held {
        println!(
            "kept cluster={} date={} hour={}: {} files, {} rows ({})",
            s.cluster, s.date, s.hour, s.files, s.rows, s.rule
        );
    }
    let deleted = if r.dry_run { "would delete" } else { "deleted" };
    for f in &r.vacuumed {
        println!("{deleted} {f}");
    }
    let rows: u64 = r.expired.iter().map(|s| s.rows).sum();
    let (would, deleted) = if r.dry_run {
        ("would be removed", "would be deleted")
    } else {
        ("removed", "deleted")
    };
    eprintln!(
        "{lake}: {} partitions ({rows} rows) {would}{}, {} held, {} files {deleted}{}",
        r.expired.len(),
        r.events_version
            .map_or(String::new(), |v| format!(" in commit {v}")),
        r.held.len(),
        r.vacuumed.len(),
        if r.dry_run {
            "; dry run, nothing changed".to_string()
        } else {
            r.log_version.map_or(String::new(), |v| {
                format!("; recorded in retention_log version {v}")
            })
        }
    );
}
