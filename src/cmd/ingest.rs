//! `auditlake ingest`: files, directories of rotated logs, stdin → the lake.

use std::io::IsTerminal;
use std::time::Duration;

use auditlake_ingest::{IngestReport, Input, Lake, ingest};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::IngestArgs;
use crate::config::Config;
use crate::options::{ingest_options, object_source_options};
use crate::{EXIT_ERROR, EXIT_OK};

pub fn run(config: &Config, args: IngestArgs) -> anyhow::Result<u8> {
    if let Some(brokers) = &args.kafka {
        return run_kafka(config, &args, brokers);
    }
    let urls = args
        .inputs
        .iter()
        .filter(|a| auditlake_ingest::objects::is_object_url(a))
        .count();
    if urls > 0 {
        if urls < args.inputs.len() {
            anyhow::bail!(
                "give files and object-store URLs in separate runs (a URL is read from its checkpoint; files are not)"
            );
        }
        return run_objects(config, &args);
    }
    let lake = config.lake(args.lake.lake.as_deref())?;
    let opts = ingest_options(config, args.cluster.as_deref(), args.no_redact_secrets)?;
    let inputs: Vec<Input> = args.inputs.iter().map(|a| Input::parse(a)).collect();

    let bar = progress_bar(&args);
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

/// A byte progress bar on a terminal, unless the run is quiet or prints JSON.
fn progress_bar(args: &IngestArgs) -> Option<ProgressBar> {
    (!args.quiet && !args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
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
    use auditlake_server::kafka::KafkaSummary;

    use crate::options::kafka_options;
    use auditlake_server::metrics::Metrics;

    let lake = config.lake(args.lake.lake.as_deref())?;
    let ingest = ingest_options(config, args.cluster.as_deref(), args.no_redact_secrets)?;
    let default_section = crate::config::KafkaSection::default();
    let section = config.kafka.as_ref().unwrap_or(&default_section);
    let mut opts = kafka_options(section, None);
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
    )?;
    let read = consumer.join();
    pipeline.shutdown()?;
    let Ok(KafkaSummary {
        messages,
        events,
        quarantined,
    }) = read
    else {
        anyhow::bail!(
            "the Kafka consumer stopped on a panic (its offsets were not committed past what is durable)"
        );
    };
    let secs = started.elapsed().as_secs_f64();
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

/// `ingest s3://…|gs://…|az://…`: everything not read yet (per each source's checkpoint in the
/// lake), then exit. The checkpoint advances after the lake commit, so an interrupted run and
/// the next one neither lose nor duplicate.
fn run_objects(config: &Config, args: &IngestArgs) -> anyhow::Result<u8> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use anyhow::Context;
    use auditlake_ingest::objects::ObjectSource;
    use auditlake_ingest::{NoObserver, Pipeline, PipelineOptions};

    let lake = config.lake(args.lake.lake.as_deref())?;
    let ingest = ingest_options(config, args.cluster.as_deref(), args.no_redact_secrets)?;
    let mut popts = PipelineOptions::new(&lake);
    popts.writer = ingest.writer.clone();
    popts.compact = None;
    let (pipeline, _) = Pipeline::open(&lake, popts, Arc::new(NoObserver))
        .with_context(|| format!("opening the lake {}", lake.display()))?;
    let stop = AtomicBool::new(false);
    let mut reports = Vec::new();
    for url in &args.inputs {
        let opts =
            object_source_options(config, url, args.cluster.as_deref(), args.no_redact_secrets)?;
        let mut source =
            ObjectSource::open(&lake, opts).with_context(|| format!("opening the source {url}"))?;
        let bar = progress_bar(args);
        let polled = source.poll(&pipeline, &stop, &|p| {
            if let Some(bar) = &bar {
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes_read);
                bar.set_message(format!(
                    "{} events, {} quarantined",
                    p.events, p.quarantined
                ));
            }
        });
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let report = polled.with_context(|| format!("reading {url}"))?;
        for r in &report.rewritten {
            eprintln!("warning: object rewritten since it was read, read again: {r}");
        }
        reports.push((url.clone(), report));
    }
    pipeline.shutdown()?;
    if args.json {
        let list: Vec<_> = reports
            .iter()
            .map(|(url, r)| {
                serde_json::json!({
                    "source": url, "objects_listed": r.objects_listed, "objects_read": r.objects_read,
                    "bytes_read": r.bytes_read, "events": r.events, "quarantined": r.quarantined,
                    "rewritten": r.rewritten, "changed_while_read": r.changed_while_read,
                    "held_back_bytes": r.held_back, "checkpoint_entries_forgotten": r.forgotten, "lag_seconds": r.lag_seconds,
                    "elapsed_seconds": r.elapsed.as_secs_f64(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "lake": lake.display(), "sources": list })
        );
    } else if !args.quiet {
        for (url, r) in &reports {
            eprintln!(
                "{url}: read {} of {} objects ({:.1} MB) in {:.1} s: {} events, {} quarantined{}{}; checkpoint saved in the lake",
                r.objects_read,
                r.objects_listed,
                r.bytes_read as f64 / 1e6,
                r.elapsed.as_secs_f64(),
                r.events,
                r.quarantined,
                if r.held_back > 0 {
                    format!(
                        ", {} bytes of an incomplete last record left for the next run",
                        r.held_back
                    )
                } else {
                    String::new()
                },
                if r.changed_while_read > 0 {
                    format!(
                        ", {} objects changed while read (next run)",
                        r.changed_while_read
                    )
                } else {
                    String::new()
                },
            );
        }
    }
    Ok(EXIT_OK)
}
