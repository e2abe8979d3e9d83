//! One conversion from the configuration (file, environment) and flags to each component's
//! typed options — the ingest writer's, the object-storage sources', the Kafka consumer's,
//! `serve`'s, a query session's — so every command builds them the same way and no command
//! reaches into another's module for them (ripgrep's `HiArgs` is the model).

use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::Context;
use auditlake_detect::SchedulerOptions;
use auditlake_ingest::{IngestOptions, PipelineOptions};
use auditlake_query::SessionOptions;
use auditlake_report::ReportFormat;
use auditlake_server::alerting::AlertingOptions;
use auditlake_server::reports::{ReportOptions, ScheduledReport};
use auditlake_server::sinks::{SinkConfig, SinkKind};
use auditlake_server::{ServeOptions, TlsFiles};
use chrono::TimeDelta;

use crate::cli::ServeArgs;
use crate::config::{Config, Seconds};

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
        opts.decode_threads = n.get();
    }
    if let Some(n) = c.max_line_mb {
        opts.max_line_bytes = n.get() << 20;
    }
    let w = &mut opts.writer;
    if let Some(n) = c.max_file_rows {
        w.max_file_rows = n.get();
    }
    if let Some(n) = c.row_group_mb {
        w.row_group_bytes = n.get() << 20;
    }
    if let Some(n) = c.max_buffer_mb {
        w.max_buffer_bytes = n.get() << 20;
    }
    if let Some(n) = c.row_group_rows {
        w.row_group_rows = n.get();
    }
    if let Some(n) = c.zstd_level {
        w.zstd_level = n.get();
    }
    if let Some(n) = c.bulk_zstd_level {
        w.bulk_zstd_level = n.get();
    }
    Ok(opts)
}

/// The options of the object-storage source at `url`: its `[[sources.object_store]]` entry when
/// there is one (cluster binding, storage settings), else the lake's storage settings when the
/// lake lives in the same kind of store. `--cluster` binds the cluster as for files.
pub fn object_source_options(
    config: &Config,
    url: &str,
    cluster_flag: Option<&str>,
    no_redact: bool,
) -> anyhow::Result<auditlake_ingest::objects::ObjectSourceOptions> {
    use auditlake_ingest::objects::ObjectSourceOptions;
    let normalized = |u: &str| u.trim_end_matches('/').to_owned();
    let section = config
        .sources
        .object_store
        .iter()
        .find(|s| normalized(&s.url) == normalized(url));
    let bound = cluster_flag.or(section.and_then(|s| s.cluster.as_deref()));
    let files = ingest_options(config, bound, no_redact)?;
    let mut decode = files.decode;
    if bound.is_none() && section.is_some() {
        // An entry without a cluster leaves it to the envelope, whatever `ingest.cluster` says
        // (which still serves as the fallback name).
        decode.envelope_cluster = true;
    }
    let mut opts = ObjectSourceOptions::new(url, decode)?;
    opts.decode_threads = files.decode_threads;
    let scheme = |u: &str| u.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let lake_spec = config.lake_path(None);
    opts.storage = match section.and_then(|s| s.storage.as_ref()) {
        Some(storage) => crate::config::exposed(storage),
        None if scheme(&lake_spec.to_string_lossy()) == scheme(url) => {
            crate::config::exposed(&config.lake.storage)
        }
        None => Default::default(),
    };
    if let Some(n) = config.ingest.max_line_mb {
        opts.max_line_bytes = n.get() << 20;
    }
    if let Some(n) = section.and_then(|s| s.round_mb) {
        opts.round_bytes = n << 20;
    }
    Ok(opts)
}

/// Session options from the config file, on the local engine. The commands a person runs over
/// a large lake (`query`, `detect`, `report`, `shell`, `timeline`) then take `--engine` or
/// `[query] engine`; serve's scheduler and the PostgreSQL endpoint stay local: their queries
/// are small and frequent, where a cluster's per-job cost (~0.1 s and up) would dominate.
pub fn session_options(config: &Config) -> SessionOptions {
    let mut opts = SessionOptions::default();
    if let Some(n) = config.query.target_partitions {
        opts.target_partitions = n.get();
    }
    if let Some(p) = config.query.pushdown_filters {
        opts.pushdown_filters = p;
    }
    opts
}

pub fn serve_options(config: &Config, args: &ServeArgs) -> anyhow::Result<ServeOptions> {
    let w = &config.webhook;
    let lake = config.lake(args.lake.lake.as_deref())?;
    if lake.is_remote() {
        // Acknowledged batches live in the WAL until committed: it must survive a restart, so
        // it cannot sit in the per-process staging directory, and replicas must not share one.
        if w.wal_dir.is_none() {
            anyhow::bail!(
                "webhook.wal_dir: serve on an object-store lake ({}) needs a local directory on persistent disk for this replica's write-ahead log (one per replica)",
                lake.display()
            );
        }
        // Findings, the scheduler's watermarks, sink outboxes and report state live in the
        // bucket beside the table; the replica holding `_state/scheduler.lease` runs them.
    }
    // Paths from flags are relative to the working directory, from the config file to the file.
    let path = |flag: &Option<std::path::PathBuf>, key: &Option<std::path::PathBuf>| {
        flag.clone()
            .or_else(|| key.as_deref().map(|p| config.resolve(p)))
    };
    let tls = match (
        path(&args.tls_cert, &w.tls_cert),
        path(&args.tls_key, &w.tls_key),
    ) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert,
            key,
            client_ca: path(&args.client_ca, &w.client_ca),
        }),
        (None, None) if path(&args.client_ca, &w.client_ca).is_some() => {
            anyhow::bail!(
                "--client-ca / webhook.client_ca needs a server certificate (tls_cert, tls_key)"
            )
        }
        _ => None,
    };
    let mut ingest = ingest_options(config, None, false)?;
    let max_body_bytes = w.max_body_mb.map_or(64, NonZeroUsize::get) << 20;
    // max_body_mb bounds what one request or Kafka message expands to across every layer
    // (Content-Encoding, gzip/base64 lines, envelopes), not only what arrives.
    ingest.decode.max_inflate = max_body_bytes as u64;
    let pipeline = pipeline_options(config, &lake, &ingest, max_body_bytes);
    Ok(ServeOptions {
        lake,
        listen: args
            .listen
            .clone()
            .or_else(|| w.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:8443".into()),
        tls,
        tokens_file: path(&args.tokens_file, &w.tokens_file),
        require_auth: w.require_auth,
        cert_binds_cluster: w.cert_binds_cluster.unwrap_or(true),
        default_cluster: args
            .default_cluster
            .clone()
            .or_else(|| w.default_cluster.as_deref().map(str::to_owned))
            .unwrap_or_else(|| "default".into()),
        allow_unauthenticated: w.allow_unauthenticated.unwrap_or(false),
        max_body_bytes,
        limits: auditlake_server::ConnectionLimits {
            max_connections: w.max_connections.map_or(1024, NonZeroUsize::get),
            header_timeout: w
                .header_timeout_secs
                .map_or(Duration::from_secs(20), Seconds::duration),
            body_timeout: w
                .body_timeout_secs
                .map_or(Duration::from_secs(60), Seconds::duration),
        },
        shutdown_grace: Duration::from_secs(w.shutdown_grace_secs.unwrap_or(30)),
        retry_after_secs: w.retry_after_secs.unwrap_or(5),
        decode: ingest.decode,
        pipeline,
        alerting: alerting_options(config)?,
        postgres: config
            .postgres
            .as_ref()
            .map(|_| crate::cmd::pg::pg_options(config, None)),
        reports: report_options(config)?,
        lease_ttl: config.lease_ttl()?,
        retention: config
            .retention_interval()?
            .map(|every| Ok::<_, anyhow::Error>((config.retention_policy()?, every)))
            .transpose()?,
        kafka: config
            .kafka
            .as_ref()
            .map(|k| kafka_options(k, w.default_cluster.as_deref())),
        object_sources: config
            .sources
            .object_store
            .iter()
            .map(|s| {
                Ok(auditlake_server::objects::ObjectSourceConfig {
                    options: object_source_options(config, &s.url, None, false)?,
                    every: Duration::from_secs(s.poll_secs.unwrap_or(60)),
                })
            })
            .collect::<anyhow::Result<_>>()?,
    })
}

/// The pipeline's options: `[webhook]`'s WAL and flush settings, the ingest encoding, background
/// compaction.
fn pipeline_options(
    config: &Config,
    lake: &auditlake_ingest::Lake,
    ingest: &auditlake_ingest::IngestOptions,
    max_body_bytes: usize,
) -> PipelineOptions {
    let w = &config.webhook;
    let mut pipeline = PipelineOptions::new(lake);
    pipeline.decode = ingest.decode.clone();
    pipeline.writer = ingest.writer.clone();
    if let Some(dir) = &w.wal_dir {
        pipeline.wal_dir = config.resolve(dir);
    }
    if let Some(mb) = w.wal_max_mb {
        pipeline.wal_max_bytes = mb.get() << 20;
    }
    if let Some(mb) = w.min_free_disk_mb {
        pipeline.min_free_disk_bytes = mb << 20;
    }
    if let Some(s) = w.flush_interval_secs {
        pipeline.flush_interval = s.duration();
    }
    if let Some(n) = w.flush_rows {
        pipeline.flush_rows = n.get();
    }
    if let Some(mb) = w.flush_mb {
        pipeline.flush_bytes = mb.get() << 20;
    }
    pipeline.compact = match config.compaction.interval_secs.unwrap_or(300) {
        0 => None,
        secs => Some((
            config.compact_options(pipeline.writer.clone()),
            Duration::from_secs(secs),
        )),
    };
    pipeline.max_group_bytes = pipeline.max_group_bytes.max(max_body_bytes);
    pipeline
}

/// `[kafka]` as the consumer's options (`default_cluster`: the webhook's, when `kafka.cluster`
/// is not set).
pub fn kafka_options(
    k: &crate::config::KafkaSection,
    default_cluster: Option<&str>,
) -> auditlake_server::kafka::KafkaOptions {
    auditlake_server::kafka::KafkaOptions {
        brokers: k.brokers.clone(),
        group_id: k.group_id.clone().unwrap_or_else(|| "auditlake".into()),
        topics: k.topics.clone(),
        topic_clusters: k
            .topic_clusters
            .iter()
            .map(|(a, b)| (a.clone(), b.to_string()))
            .collect(),
        cluster_header: k.cluster_header.clone(),
        default_cluster_explicit: k.cluster.is_some(),
        until_caught_up: false,
        default_cluster: k
            .cluster
            .as_deref()
            .or(default_cluster)
            .map(str::to_owned)
            .unwrap_or_else(|| "default".into()),
        properties: k
            .properties
            .iter()
            .map(|(a, b)| (a.clone(), b.expose().to_owned()))
            .collect(),
    }
}

/// `[[reports]]`: each entry's definition loaded and schedule parsed now, so a typo stops
/// `serve` at start instead of at the first fire time.
fn report_options(config: &Config) -> anyhow::Result<Option<ReportOptions>> {
    if config.reports.is_empty() {
        return Ok(None);
    }
    let mut reports = Vec::new();
    for (i, r) in config.reports.iter().enumerate() {
        let key = format!("reports[{i}]");
        let def =
            crate::pack::report(config, None, &r.name).with_context(|| format!("{key}.name"))?;
        let schedule = r.schedule(&key)?;
        let window = match &r.window {
            None => TimeDelta::hours(24),
            Some(w) => crate::config::span(&format!("{key}.window"), w)?,
        };
        let formats = match &r.formats {
            None => vec![ReportFormat::Html],
            Some(f) => f
                .iter()
                .map(|f| {
                    f.parse()
                        .map_err(|e: String| anyhow::anyhow!("{key}.formats: {e}"))
                })
                .collect::<anyhow::Result<_>>()?,
        };
        reports.push(ScheduledReport {
            def,
            schedule,
            window,
            output_dir: config.resolve(&r.output_dir),
            formats,
            clusters: r.clusters.clone(),
        });
    }
    Ok(Some(ReportOptions {
        reports,
        session: session_options(config),
    }))
}

/// `[scheduler]` + `[[sinks]]` + the active rules of `[detect]`, when the scheduler is on.
fn alerting_options(config: &Config) -> anyhow::Result<Option<AlertingOptions>> {
    let Some(s) = &config.scheduler else {
        return Ok(None);
    };
    if s.enabled == Some(false) {
        return Ok(None);
    }
    let (all, place) = crate::pack::rules(config, None, false, None)?;
    let pack = config.pack_config()?;
    pack.validate(&all)?;
    let suppressions = config.suppressions(&all)?;
    let selected = |r: &auditlake_detect::Rule| {
        s.rules.as_ref().is_none_or(|want| {
            want.iter()
                .any(|w| *w == r.id || r.catalog.iter().any(|c| c == w))
        })
    };
    let rules: Vec<_> = all
        .into_iter()
        .filter(|r| selected(r))
        .filter_map(|mut r| {
            if let Some(secs) = s.schedule_secs {
                r.schedule = TimeDelta::seconds(secs.max(1));
            }
            if s.streaming == Some(false) {
                r.streaming = false;
            }
            let params = pack.params_for(&r);
            pack.is_active(&r, &params).then_some((r, params))
        })
        .collect();
    if let Some(want) = &s.rules
        && let Some(missing) = want.iter().find(|w| {
            !rules
                .iter()
                .any(|(r, _)| r.id == **w || r.catalog.contains(w))
        })
    {
        anyhow::bail!(
            "scheduler.rules: {missing:?} is not an active rule id or catalog id in {place}"
        );
    }
    let d = SchedulerOptions::default();
    let scheduler = SchedulerOptions {
        lateness: s.lateness_secs.map_or(d.lateness, TimeDelta::seconds),
        settle: s.settle_secs.map_or(d.settle, TimeDelta::seconds),
        initial_lookback: s
            .initial_lookback_minutes
            .map_or(d.initial_lookback, TimeDelta::minutes),
        incident_window: s
            .incident_window_minutes
            .map_or(d.incident_window, TimeDelta::minutes),
        suppressions,
        ..d
    };
    let sinks = config
        .sinks
        .iter()
        .map(|k| SinkConfig {
            name: k.name.clone(),
            kind: match k.kind.as_str() {
                "stdout" => SinkKind::Stdout,
                "file" => SinkKind::File {
                    path: config.resolve(k.path.as_deref().expect("validated")),
                },
                "webhook" => SinkKind::Webhook {
                    url: k.url.as_ref().expect("validated").expose().to_owned(),
                },
                "alertmanager" => SinkKind::Alertmanager {
                    url: k.url.as_ref().expect("validated").expose().to_owned(),
                },
                "kafka" => SinkKind::Kafka {
                    brokers: k.brokers.clone().expect("validated"),
                    topic: k.topic.clone().expect("validated"),
                    properties: k
                        .properties
                        .iter()
                        .map(|(a, b)| (a.clone(), b.expose().to_owned()))
                        .collect(),
                },
                _ => SinkKind::Falco {
                    url: k.url.as_ref().expect("validated").expose().to_owned(),
                },
            },
            min_severity: k.min_severity.clone().unwrap_or_else(|| "info".into()),
            timeout: Duration::from_secs(k.timeout_secs.unwrap_or(10)),
            headers: k
                .headers
                .iter()
                .map(|(a, b)| (a.clone(), b.expose().to_owned()))
                .collect(),
        })
        .collect();
    Ok(Some(AlertingOptions {
        rules,
        scheduler,
        session: session_options(config),
        sinks,
        tick: Duration::from_secs_f64(s.tick_secs.unwrap_or(5.0).clamp(0.05, 60.0)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlake_query::Engine;

    /// `[query] engine` sends the commands a person runs to the cluster; the sessions of serve's
    /// scheduler and of the PostgreSQL endpoint (built from `session_options` alone) stay local.
    #[test]
    fn query_engine_reaches_the_commands_but_not_serve_or_pg() {
        let config = Config::parse("[query]\nengine = \"ballista://sched:50051\"\n").unwrap();
        assert_eq!(session_options(&config).engine, Engine::Local);
        let cluster = Engine::Ballista {
            host: "sched".into(),
            port: 50051,
        };
        assert_eq!(config.engine(None).unwrap(), cluster);
        assert_eq!(config.engine(Some("local")).unwrap(), Engine::Local);
        let err = Config::parse("[query]\nengine = \"spark://x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("query.engine"), "{err:#}");
    }
}
