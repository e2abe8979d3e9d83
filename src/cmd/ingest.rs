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
    // An operator who names the cluster means it; otherwise an EKS/AKS/GKE export that names its
    // cluster is believed (one file or topic may hold several clusters).
    opts.decode.envelope_cluster = cluster_flag.is_none() && c.cluster.is_none();
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
    if let Some(n) = c.row_group_mb {
        w.row_group_bytes = n << 20;
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
    if let Some(n) = c.bulk_zstd_level {
        w.bulk_zstd_level = n;
    }
    Ok(opts)
}

pub fn run(config: &Config, args: IngestArgs) -> anyhow::Result<u8> {
    if let Some(brokers) = &args.kafka {
        return run_kafka(config, &args, brokers);
    }
    let lake = config.lake(args.lake.lake.as_deref())?;
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
        lake.events().url()
    );
    s += &format!(
        "  duplicates:  {} skipped (already in the lake or repeated in the input)\n",
        r.duplicates_skipped
    );
    match &r.quarantine_file {
        Some(q) => s += &format!("  quarantined: {} → {}\n", r.rejected, lake.describe(q)),
        None => s += "  quarantined: 0\n",
    }
    s
}

fn summary_json(r: &IngestReport, lake: &Lake) -> serde_json::Value {
    let secs = r.elapsed.as_secs_f64();
    serde_json::json!({
        "lake": lake.display(),
        "inputs": r.inputs,
        "input_bytes": r.input_bytes,
        "events": r.events,
        "rejected": r.rejected,
        "duplicates_skipped": r.duplicates_skipped,
        "rows_written": r.rows_written,
        "files_written": r.files.len(),
        "bytes_written": r.bytes_written,
        "quarantine_file": r.quarantine_file.as_ref().map(|p| lake.describe(p)),
        "input_errors": r.input_errors,
        "elapsed_seconds": secs,
        "events_per_second": per_second(r.events as f64, secs),
        "megabytes_per_second": per_second(r.input_bytes as f64 / 1e6, secs),
    })
}

/// `ingest --kafka`: the consumer of `serve`, run once until caught up. Offsets are committed
/// only after the lake commit that holds the messages, as in `serve`, so an interrupted run and
/// the next one (same group) neither lose nor duplicate.
fn run_kafka(config: &Config, args: &IngestArgs, brokers: &str) -> anyhow::Result<u8> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use anyhow::Context;
    use auditlake_ingest::{NoObserver, Pipeline, PipelineOptions};
    use auditlake_server::metrics::Metrics;

    let lake = config.lake(args.lake.lake.as_deref())?;
    let ingest = ingest_options(config, args.cluster.as_deref(), args.no_redact_secrets)?;
    let default_section = crate::config::KafkaSection::default();
    let section = config.kafka.as_ref().unwrap_or(&default_section);
    let mut opts = crate::cmd::serve::kafka_options(section, None);
    opts.brokers = brokers.to_owned();
    if !args.topics.is_empty() {
        opts.topics = args.topics.clone();
    }
    if opts.topics.is_empty() {
        anyhow::bail!("--kafka needs --topic (or kafka.topics in the config)");
    }
    opts.group_id = args
        .group
        .clone()
        .unwrap_or_else(|| "auditlake-ingest".into());
    if let Some(c) = args.cluster.as_deref().or(config.ingest.cluster.as_deref()) {
        opts.default_cluster = c.to_owned();
        opts.default_cluster_explicit = true;
    }
    opts.until_caught_up = true;
    let topics = opts.topics.clone();

    let mut popts = PipelineOptions::new(&lake);
    popts.decode = ingest.decode.clone();
    popts.writer = ingest.writer.clone();
    popts.compact = None;
    let (pipeline, _) = Pipeline::open(&lake, popts, Arc::new(NoObserver))
        .with_context(|| format!("opening the lake {}", lake.display()))?;
    let pipeline = Arc::new(pipeline);
    let metrics = Arc::new(Metrics::new());
    let stop = Arc::new(AtomicBool::new(false));
    let started = std::time::Instant::now();
    let consumer = auditlake_server::kafka::start(
        opts,
        pipeline.clone(),
        ingest.decode,
        metrics.clone(),
        stop,
    )
    .map_err(anyhow::Error::msg)?;
    let _ = consumer.join();
    pipeline.shutdown()?;
    let secs = started.elapsed().as_secs_f64();
    let (messages, events, quarantined) = metrics.kafka_totals(&topics);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "messages": messages, "events": events, "quarantined": quarantined,
                "seconds": secs, "events_per_sec": events as f64 / secs.max(1e-9),
                "lake": lake.display(),
            })
        );
    } else if !args.quiet {
        eprintln!(
            "read {messages} messages from {} ({events} events, {quarantined} quarantined) in {secs:.1} s: {:.0} events/s; offsets committed",
            topics.join(", "),
            events as f64 / secs.max(1e-9)
        );
    }
    Ok(EXIT_OK)
}
