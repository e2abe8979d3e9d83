//! `auditlake verify` (tamper evidence) and `auditlake migrate` (Hive lake → Delta table).

use anyhow::bail;
use auditlake_ingest::lake::migrate::migrate as migrate_lake;
use auditlake_ingest::lake::verify::{VerifyOptions, verify};

use crate::cli::{MigrateArgs, VerifyArgs};
use crate::config::Config;
use crate::{EXIT_FINDINGS, EXIT_OK};

pub fn run(config: &Config, args: VerifyArgs) -> anyhow::Result<u8> {
    let lake = config.lake(args.lake.lake.as_deref())?;
    let mut opts = VerifyOptions::default();
    if let Some(since) = &args.since {
        opts.since_ms =
            Some(super::parse_time("--since", since, chrono::Utc::now())?.timestamp_millis());
    }
    if let Some(grace) = &args.grace {
        let d = crate::config::span("--grace", grace)?;
        opts.grace_secs = d.num_seconds().max(0) as u64;
    }
    let started = std::time::Instant::now();
    let report = verify(&lake, &opts)?;
    if args.json {
        let problems: Vec<serde_json::Value> = report
            .problems
            .iter()
            .map(|p| {
                serde_json::json!({ "kind": p.kind.label(), "object": p.object, "detail": p.detail })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "lake": lake.display(),
                "intact": report.intact(),
                "commits": report.commits,
                "head_version": report.head_version,
                "head_sha256": report.head_sha256,
                "live_files": report.live_files,
                "files_hashed": report.files_hashed,
                "bytes_hashed": report.bytes_hashed,
                "problems": problems,
            })
        );
    } else {
        for p in &report.problems {
            println!("{}: {} — {}", p.kind.label(), p.object, p.detail);
        }
        eprintln!(
            "{}: {} commits (head {} sha256 {}), {} live files, {} re-hashed ({:.1} MB) in {:.1} s: {}",
            lake.display(),
            report.commits,
            report.head_version.map_or("-".into(), |v| v.to_string()),
            report.head_sha256.as_deref().unwrap_or("-"),
            report.live_files,
            report.files_hashed,
            report.bytes_hashed as f64 / 1e6,
            started.elapsed().as_secs_f64(),
            if report.intact() {
                "intact".to_string()
            } else {
                format!("{} problems", report.problems.len())
            }
        );
    }
    Ok(if report.intact() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}

pub fn migrate(config: &Config, args: MigrateArgs) -> anyhow::Result<u8> {
    let lake = config.lake(args.lake.lake.as_deref())?;
    if !lake.is_remote() && !lake.root().is_dir() {
        bail!("no lake at {}", lake.display());
    }
    let r = migrate_lake(&lake)?;
    if r.already_delta {
        eprintln!("{} is already a Delta table; nothing to do", lake.display());
    } else {
        eprintln!(
            "{}: {} files ({} rows, {:.1} MB) added to the Delta log{}",
            lake.display(),
            r.files,
            r.rows,
            r.bytes as f64 / 1e6,
            r.version
                .map_or(String::new(), |v| format!(" as version {v}"))
        );
    }
    Ok(EXIT_OK)
}
