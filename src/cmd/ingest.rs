//! `auditlake ingest`: files, directories of rotated logs, stdin → the lake.

use std::io::IsTerminal;
use std::time::Duration;

use auditlake_ingest::{IngestOptions, IngestReport, Input, Lake, ingest};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::IngestArgs;
use crate::config::Config;
use crate::{EXIT_ERROR, EXIT_OK};

/// Ingest options from config file and flags.
pub fn ingest_options(
    config: &Config,
    cluster_flag: Option<&str>,
    no_redact: bool,
) -> anyhow::Result<IngestOptions> {
    let c = &config.ingest;
    let cluster = cluster_flag.or(c.cluster.as_deref()).unwrap_or("default");
    let mut opts = IngestOptions::new(cluster)?;
    opts.decode.redact_secrets = !no_redact && c.redact_secrets.unwrap_or(true);
    if let Some(n) = c.decode_threads {
        opts.decode_threads = n;
    }
    if let Some(n) = c.max_line_mb {
        opts.max_line_bytes = n << 20;
    }
    let w = &mut opts.writer;
    if let Some(n) = c.max_file_rows {
        w.max_file_rows = n;
    }
    if let Some(n) = c.max_file_mb {
        w.max_file_bytes = n << 20;
    }
    if let Some(n) = c.max_buffer_mb {
        w.max_buffer_bytes = n << 20;
    }
    if let Some(n) = c.row_group_rows {
        w.row_group_rows = n;
    }
    if let Some(n) = c.zstd_level {
        w.zstd_level = n;
    }
    Ok(opts)
}

pub fn run(config: &Config, args: IngestArgs) -> anyhow::Result<u8> {
    let lake = Lake::new(config.lake_path(args.lake.lake.as_deref()));
    let opts = ingest_options(config, args.cluster.as_deref(), args.no_redact_secrets)?;
    let inputs: Vec<Input> = args.inputs.iter().map(|a| Input::parse(a)).collect();

    let bar = (!args.quiet && !args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let report = ingest(&lake, &inputs, &opts, &|p| {
        if let Some(bar) = &bar {
            if let Some(total) = p.stored_bytes_total {
                bar.set_length(total);
            }
            bar.set_position(p.stored_bytes_read);
            bar.set_message(format!("{} events, {} quarantined", p.events, p.rejected));
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.json {
        println!("{}", summary_json(&report, &lake));
    } else if !args.quiet {
        eprint!("{}", summary_text(&report, &lake));
    }
    for e in &report.input_errors {
        eprintln!("error: reading {e} (what was read before the error has landed)");
    }
    Ok(if report.input_errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_ERROR
    })
}

fn per_second(n: f64, secs: f64) -> f64 {
    if secs > 0.0 { n / secs } else { 0.0 }
}

fn summary_text(r: &IngestReport, lake: &Lake) -> String {
    let secs = r.elapsed.as_secs_f64();
    let mut s = format!(
        "ingested {} events from {} input{} ({:.1} MB) in {:.2} s: {:.0} events/s, {:.1} MB/s\n",
        r.events,
        r.inputs,
        if r.inputs == 1 { "" } else { "s" },
        r.input_bytes as f64 / 1e6,
        secs,
        per_second(r.events as f64, secs),
        per_second(r.input_bytes as f64 / 1e6, secs),
    );
    s += &format!(
        "  written:     {} rows in {} file{} ({:.1} MB) under {}\n",
        r.rows_written,
        r.files.len(),
        if r.files.len() == 1 { "" } else { "s" },
        r.bytes_written as f64 / 1e6,
        lake.audit_events_dir().display()
    );
    s += &format!(
        "  duplicates:  {} skipped (already in the lake or repeated in the input)\n",
        r.duplicates_skipped
    );
    match &r.quarantine_file {
        Some(q) => s += &format!("  quarantined: {} → {}\n", r.rejected, q.display()),
        None => s += "  quarantined: 0\n",
    }
    s
}

fn summary_json(r: &IngestReport, lake: &Lake) -> serde_json::Value {
    let secs = r.elapsed.as_secs_f64();
    serde_json::json!({
        "lake": lake.root().display().to_string(),
        "inputs": r.inputs,
        "input_bytes": r.input_bytes,
        "events": r.events,
        "rejected": r.rejected,
        "duplicates_skipped": r.duplicates_skipped,
        "rows_written": r.rows_written,
        "files_written": r.files.len(),
        "bytes_written": r.bytes_written,
        "quarantine_file": r.quarantine_file.as_ref().map(|p| p.display().to_string()),
        "input_errors": r.input_errors,
        "elapsed_seconds": secs,
        "events_per_second": per_second(r.events as f64, secs),
        "megabytes_per_second": per_second(r.input_bytes as f64 / 1e6, secs),
    })
}
