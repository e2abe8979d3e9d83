//! `auditlake detect`: the pack over the lake, findings to stdout.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use auditlake_detect::rule::severity_rank;
use auditlake_detect::{Detector, Finding, Window, findings_to_batch};
use auditlake_query::{OutputFormat, open_lake_at, write_batches};
use chrono::Utc;

use crate::cli::DetectArgs;
use crate::cmd::rules::{LoadedPack, load_pack, warn_expired};
use crate::config::Config;
use crate::options::session_options;
use crate::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK};

pub fn run(config: &Config, args: DetectArgs) -> anyhow::Result<u8> {
    let now = Utc::now();
    let scope = args.scope.scope(now)?;
    let window = Window {
        since: scope.since,
        until: scope.until,
        clusters: scope.clusters,
    };
    let LoadedPack {
        rules,
        config: pack,
        mut suppressions,
        ..
    } = load_pack(config, &args.rules)?;
    warn_expired(&mut suppressions, now);
    let lake = config.lake(args.lake.lake.as_deref())?;
    let opts = auditlake_query::SessionOptions {
        engine: config.engine(args.engine.engine.as_deref())?,
        ..session_options(config)
    };
    let started = Instant::now();
    let rt = super::runtime()?;
    let result = rt.block_on(async {
        let ctx = open_lake_at(&lake, &opts).await?;
        let detector = Detector::new(ctx).await?;
        let mut findings: Vec<Finding> = Vec::new();
        let mut ran = 0;
        for rule in &rules {
            let params = pack.params_for(rule);
            if !pack.is_active(rule, &params) {
                continue;
            }
            ran += 1;
            let t = Instant::now();
            let found = detector.run(rule, &params, &window).await?;
            if args.timing {
                eprintln!(
                    "{:<34} {:>4} findings in {:.3} s",
                    rule.id,
                    found.len(),
                    t.elapsed().as_secs_f64()
                );
            }
            findings.extend(found);
        }
        anyhow::Ok((findings, ran))
    });
    let (findings, ran) = match result {
        Ok(x) => x,
        Err(e) => return detect_failed(e),
    };
    // Suppressed findings are neither printed nor stored; `rules suppressions` counts them.
    let applied = suppressions.apply(findings, now);
    let mut findings = applied.kept;
    if !applied.suppressed.is_empty() {
        eprintln!(
            "{} finding(s) left out by [[detect.suppressions]] (auditlake rules suppressions)",
            applied.suppressed.len()
        );
    }
    if args.store {
        store_retro_hunt(&lake, &mut findings)?;
    }
    // Most severe first, then in time order: what a responder reads top-down.
    findings.sort_by(|a, b| {
        severity_rank(&b.severity)
            .cmp(&severity_rank(&a.severity))
            .then(a.first_event_at.cmp(&b.first_event_at))
            .then(a.rule_id.cmp(&b.rule_id))
    });
    print_findings(&findings, args.format)?;
    eprintln!(
        "{} finding(s) from {ran} active rule(s) of {} in {:.2} s",
        findings.len(),
        rules.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(if findings.is_empty() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}

/// A detect error the caller can fix (a bad rule, a bad query) is printed and exits with
/// `EXIT_ERROR`; any other is returned.
fn detect_failed(e: anyhow::Error) -> anyhow::Result<u8> {
    if let Some(d) = e.downcast_ref::<auditlake_detect::DetectError>()
        && d.is_caller_fault()
    {
        eprintln!("error: {}", auditlake_ingest::error::chain(d));
        return Ok(EXIT_ERROR);
    }
    if let Some(q) = e.downcast_ref::<auditlake_query::QueryError>()
        && q.is_caller_fault()
    {
        eprintln!("error: {q}");
        return Ok(EXIT_ERROR);
    }
    Err(e).context("detect failed")
}

/// `--store`: records the findings as a retro-hunt (local lake: files under <lake>/findings;
/// object-store lake: objects under the same prefix in the bucket).
fn store_retro_hunt(lake: &auditlake_ingest::Lake, findings: &mut [Finding]) -> anyhow::Result<()> {
    let changes = auditlake_detect::scheduler::store_retro_hunt(
        lake,
        findings.to_vec(),
        &auditlake_detect::SchedulerOptions::default(),
    )?;
    let new = changes.iter().filter(|c| c.is_new).count();
    eprintln!(
        "recorded {new} new and {} updated finding(s) as retro-hunt in {}",
        changes.len() - new,
        lake.location_of(auditlake_ingest::lake::FINDINGS_DIR)
    );
    for f in findings {
        f.origin = "retro-hunt".into();
    }
    Ok(())
}

/// Writes the findings to stdout in `format` (a table shows the columns a responder scans).
fn print_findings(findings: &[Finding], format: OutputFormat) -> anyhow::Result<()> {
    let batch = findings_to_batch(findings);
    let batch = match format {
        OutputFormat::Table => {
            let schema = batch.schema();
            let cols = [
                "severity",
                "rule_id",
                "first_event_at",
                "actor",
                "target",
                "event_count",
                "summary",
            ]
            .map(|c| schema.index_of(c).expect("findings column"));
            batch.project(&cols)?
        }
        _ => batch,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if !findings.is_empty() || format != OutputFormat::Table {
        write_batches(&[batch], format, &mut out)?;
    }
    out.flush()?;
    Ok(())
}
