//! Prometheus metrics of `auditlake serve` (text format at `/metrics`), and the pipeline observer
//! that feeds them and logs the pipeline's named events.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use auditlake_ingest::PipelineObserver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::log;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

/// An object-storage source, by URL.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectSourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<CodeLabel, Counter>,
    pub events_received: Family<ClusterLabel, Counter>,
    pub bytes_received: Family<ClusterLabel, Counter>,
    pub events_quarantined: Family<ClusterLabel, Counter>,
    pub requests_refused: Family<ReasonLabel, Counter>,
    /// Events refused because their envelope named another cluster than the bound one.
    pub cluster_mismatch: Family<SourceLabel, Counter>,
    pub ack_seconds: Histogram,
    pub wal_bytes: Gauge,
    /// `webhook.wal_max_mb` in bytes: alerts compare `wal_bytes` with it (no threshold copied
    /// from the config into the alerting rules).
    pub wal_max_bytes: Gauge,
    pub wal_fsync_seconds: Histogram,
    pub wal_group_requests: Histogram,
    pub wal_damaged_records: Counter,
    pub wal_damaged_bytes: Counter,
    pub flush_seconds: Histogram,
    pub rows_committed: Counter,
    pub files_committed: Counter,
    pub duplicates_skipped: Counter,
    pub pipeline_failures: Counter,
    pub pipeline_healthy: Gauge,
    pub compactions: Counter,
    pub files_compacted_away: Counter,
    pub rule_run_seconds: Family<RuleLabel, Histogram>,
    pub rule_findings_new: Family<RuleLabel, Counter>,
    pub rule_findings_updated: Family<RuleLabel, Counter>,
    pub rule_errors: Family<RuleLabel, Counter>,
    pub rule_findings_suppressed: Family<RuleLabel, Counter>,
    pub rule_watermark_lag_seconds: Family<RuleLabel, Gauge>,
    pub sink_delivered: Family<SinkLabel, Counter>,
    pub sink_failures: Family<SinkLabel, Counter>,
    pub sink_outbox_depth: Family<SinkLabel, Gauge>,
    pub streaming_batches_skipped: Counter,
    pub kafka_messages: Family<TopicLabel, Counter>,
    pub kafka_events: Family<TopicLabel, Counter>,
    pub kafka_quarantined: Family<TopicLabel, Counter>,
    pub kafka_consumer_lag: Family<PartitionLabel, Gauge>,
    pub kafka_flush_to_commit_seconds: Histogram,
    pub object_source_objects: Family<ObjectSourceLabel, Counter>,
    pub object_source_bytes: Family<ObjectSourceLabel, Counter>,
    pub object_source_events: Family<ObjectSourceLabel, Counter>,
    pub object_source_quarantined: Family<ObjectSourceLabel, Counter>,
    pub object_source_rewrites: Family<ObjectSourceLabel, Counter>,
    pub object_source_errors: Family<ObjectSourceLabel, Counter>,
    pub object_source_lag_seconds: Family<ObjectSourceLabel, Gauge<f64, AtomicU64>>,
    last_failure_logged: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("auditlake");
        let m = Metrics {
            requests: Family::default(),
            events_received: Family::default(),
            bytes_received: Family::default(),
            events_quarantined: Family::default(),
            requests_refused: Family::default(),
            cluster_mismatch: Family::default(),
            ack_seconds: latency_histogram(),
            wal_bytes: Gauge::default(),
            wal_max_bytes: Gauge::default(),
            wal_fsync_seconds: latency_histogram(),
            wal_group_requests: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            wal_damaged_records: Counter::default(),
            wal_damaged_bytes: Counter::default(),
            flush_seconds: latency_histogram(),
            rows_committed: Counter::default(),
            files_committed: Counter::default(),
            duplicates_skipped: Counter::default(),
            pipeline_failures: Counter::default(),
            pipeline_healthy: Gauge::default(),
            compactions: Counter::default(),
            files_compacted_away: Counter::default(),
            rule_run_seconds: Family::new_with_constructor(latency_histogram),
            rule_findings_new: Family::default(),
            rule_findings_updated: Family::default(),
            rule_errors: Family::default(),
            rule_findings_suppressed: Family::default(),
            rule_watermark_lag_seconds: Family::default(),
            sink_delivered: Family::default(),
            sink_failures: Family::default(),
            sink_outbox_depth: Family::default(),
            streaming_batches_skipped: Counter::default(),
            kafka_messages: Family::default(),
            kafka_events: Family::default(),
            kafka_quarantined: Family::default(),
            kafka_consumer_lag: Family::default(),
            kafka_flush_to_commit_seconds: latency_histogram(),
            object_source_objects: Family::default(),
            object_source_bytes: Family::default(),
            object_source_events: Family::default(),
            object_source_quarantined: Family::default(),
            object_source_rewrites: Family::default(),
            object_source_errors: Family::default(),
            object_source_lag_seconds: Family::default(),
            last_failure_logged: AtomicI64::new(0),
            registry: Registry::default(),
        };
        m.register_webhook(&mut registry);
        m.register_pipeline(&mut registry);
        m.register_alerting(&mut registry);
        m.register_sources(&mut registry);
        m.pipeline_healthy.set(1);
        Metrics { registry, ..m }
    }

    /// Registers the metrics of the webhook's requests, events and acknowledgements.
    fn register_webhook(&self, r: &mut Registry) {
        r.register(
            "webhook_requests",
            "Webhook requests by HTTP status",
            self.requests.clone(),
        );
        r.register(
            "webhook_events_received",
            "Audit events received (decoded), by cluster",
            self.events_received.clone(),
        );
        r.register(
            "webhook_bytes_received",
            "Request body bytes received (after gzip), by cluster",
            self.bytes_received.clone(),
        );
        r.register(
            "webhook_events_quarantined",
            "Malformed events and bodies sent to _quarantine, by cluster",
            self.events_quarantined.clone(),
        );
        r.register("webhook_requests_refused", "Requests refused, by reason (unauthenticated, forbidden, cluster_mismatch, too_large, bad_body, body_timeout, connection_limit, overloaded, unavailable)", self.requests_refused.clone());
        r.register("cluster_mismatch_events", "Events refused because their envelope named another cluster than the one the credential, path or Kafka configuration bound, by source", self.cluster_mismatch.clone());
        r.register(
            "webhook_ack_seconds",
            "Time from request arrival to a durable acknowledgement",
            self.ack_seconds.clone(),
        );
    }

    /// Registers the metrics of the write-ahead log, the lake writer, the pipeline's health and
    /// compaction.
    fn register_pipeline(&self, r: &mut Registry) {
        r.register(
            "wal_bytes",
            "Write-ahead log bytes not yet checkpointed into the lake",
            self.wal_bytes.clone(),
        );
        r.register(
            "wal_max_bytes",
            "Write-ahead log bytes at which requests are refused with 503 (webhook.wal_max_mb)",
            self.wal_max_bytes.clone(),
        );
        r.register(
            "wal_fsync_seconds",
            "Time of one WAL group commit (write + fdatasync)",
            self.wal_fsync_seconds.clone(),
        );
        r.register(
            "wal_group_requests",
            "Requests sharing one WAL fsync (group commit)",
            self.wal_group_requests.clone(),
        );
        r.register(
            "wal_damaged_records",
            "Damaged write-ahead log ranges (one or more records) skipped at replay and quarantined",
            self.wal_damaged_records.clone(),
        );
        r.register(
            "wal_damaged_bytes",
            "Bytes of damaged write-ahead log ranges skipped at replay and quarantined",
            self.wal_damaged_bytes.clone(),
        );
        r.register(
            "lake_flush_seconds",
            "Time of one flush of buffered rows into committed Parquet files",
            self.flush_seconds.clone(),
        );
        r.register(
            "lake_rows_committed",
            "Rows committed to the lake",
            self.rows_committed.clone(),
        );
        r.register(
            "lake_files_committed",
            "Parquet files committed to the lake",
            self.files_committed.clone(),
        );
        r.register(
            "lake_duplicates_skipped",
            "Re-delivered events dropped by the dedup key (cluster, audit_id, stage)",
            self.duplicates_skipped.clone(),
        );
        r.register(
            "pipeline_failures",
            "Failed WAL appends, flushes and recoveries",
            self.pipeline_failures.clone(),
        );
        r.register(
            "pipeline_healthy",
            "1 while the pipeline accepts data, 0 while it is failed",
            self.pipeline_healthy.clone(),
        );
        r.register(
            "lake_compactions",
            "Partitions compacted (small files merged)",
            self.compactions.clone(),
        );
        r.register(
            "lake_files_compacted_away",
            "Files removed by compaction (files before − after)",
            self.files_compacted_away.clone(),
        );
    }

    /// Registers the metrics of scheduled rules, sinks and streaming.
    fn register_alerting(&self, r: &mut Registry) {
        r.register(
            "rule_run_seconds",
            "Time of one scheduled run of a rule",
            self.rule_run_seconds.clone(),
        );
        r.register(
            "rule_findings_new",
            "New findings (alerted) by rule",
            self.rule_findings_new.clone(),
        );
        r.register(
            "rule_findings_updated",
            "Findings updated with more evidence (not re-alerted), by rule",
            self.rule_findings_updated.clone(),
        );
        r.register(
            "rule_errors",
            "Failed rule runs (retried with backoff)",
            self.rule_errors.clone(),
        );
        r.register(
            "rule_findings_suppressed",
            "Findings left out by a [[detect.suppressions]] entry, by rule",
            self.rule_findings_suppressed.clone(),
        );
        r.register(
            "rule_watermark_lag_seconds",
            "now − the rule's watermark after its last run",
            self.rule_watermark_lag_seconds.clone(),
        );
        r.register(
            "sink_delivered",
            "Findings delivered, by sink",
            self.sink_delivered.clone(),
        );
        r.register(
            "sink_failures",
            "Failed delivery attempts (retried), by sink",
            self.sink_failures.clone(),
        );
        r.register(
            "sink_outbox_depth",
            "Findings waiting in the outbox, by sink",
            self.sink_outbox_depth.clone(),
        );
        r.register("streaming_batches_skipped", "Durable batches the streaming rules skipped because the scheduler was busy (the scheduled run covers them)", self.streaming_batches_skipped.clone());
    }

    /// Registers the metrics of the Kafka consumer and the object-storage sources.
    fn register_sources(&self, r: &mut Registry) {
        r.register(
            "kafka_messages",
            "Kafka messages consumed, by topic",
            self.kafka_messages.clone(),
        );
        r.register(
            "kafka_events",
            "Audit events decoded from Kafka, by topic",
            self.kafka_events.clone(),
        );
        r.register(
            "kafka_quarantined",
            "Kafka messages/events quarantined, by topic",
            self.kafka_quarantined.clone(),
        );
        r.register(
            "kafka_consumer_lag",
            "Messages behind the partition's end (librdkafka statistics)",
            self.kafka_consumer_lag.clone(),
        );
        r.register(
            "kafka_flush_to_commit_seconds",
            "From the lake flush that made messages durable to the commit of their offsets",
            self.kafka_flush_to_commit_seconds.clone(),
        );
        r.register(
            "object_source_objects",
            "Objects (or their appended parts) read from object storage, by source",
            self.object_source_objects.clone(),
        );
        r.register(
            "object_source_bytes",
            "Stored bytes read from object storage, by source",
            self.object_source_bytes.clone(),
        );
        r.register(
            "object_source_events",
            "Audit events decoded from object storage, by source",
            self.object_source_events.clone(),
        );
        r.register(
            "object_source_quarantined",
            "Records from object storage quarantined, by source",
            self.object_source_quarantined.clone(),
        );
        r.register(
            "object_source_rewrites",
            "Objects found rewritten (not appended) since they were read, by source",
            self.object_source_rewrites.clone(),
        );
        r.register(
            "object_source_errors",
            "Failed polls of an object-storage source (retried at the next poll)",
            self.object_source_errors.clone(),
        );
        r.register(
            "object_source_lag_seconds",
            "Newest listed object's modification time minus the newest fully read one's",
            self.object_source_lag_seconds.clone(),
        );
    }

    pub fn refused(&self, reason: &'static str) {
        self.requests_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn encode(&self, wal_bytes: u64) -> String {
        self.wal_bytes.set(wal_bytes as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl PipelineObserver for Metrics {
    fn group_committed(&self, requests: usize, _bytes: usize, fsync: Duration) {
        self.wal_fsync_seconds.observe(fsync.as_secs_f64());
        self.wal_group_requests.observe(requests as f64);
    }

    fn flushed(&self, rows: u64, files: usize, took: Duration) {
        self.flush_seconds.observe(took.as_secs_f64());
        self.rows_committed.inc_by(rows);
        self.files_committed.inc_by(files as u64);
    }

    fn quarantined(&self, _cluster: &str, _records: u64) {
        // Counted per request in the handler (the WAL replay re-applies the same records).
    }

    fn duplicates_skipped(&self, rows: u64) {
        self.duplicates_skipped.inc_by(rows);
    }

    fn failed(&self, what: &str, error: &str) {
        self.pipeline_failures.inc();
        self.pipeline_healthy.set(0);
        // A failing disk fails every retry: log at most once per 10 s.
        let now = chrono::Utc::now().timestamp();
        if now - self.last_failure_logged.swap(now, Ordering::Relaxed) >= 10 {
            log::emit(&log::PipelineFailed { stage: what, error });
        }
    }

    fn compacted(&self, report: &auditlake_ingest::CompactReport) {
        self.compactions.inc();
        self.files_compacted_away
            .inc_by(report.files_before.saturating_sub(report.files_after) as u64);
        log::emit(&log::PartitionCompacted { report });
    }

    fn recovered(&self) {
        self.pipeline_healthy.set(1);
        log::emit(&log::PipelineRecovered);
    }

    fn wal_damaged(&self, segment: &std::path::Path, offset: u64, bytes: u64, reason: &str) {
        self.wal_damaged_records.inc();
        self.wal_damaged_bytes.inc_by(bytes);
        log::emit(&log::WalDamaged {
            segment,
            offset,
            bytes_skipped: bytes,
            reason,
        });
    }

    fn wal_torn_tail(&self, segment: &std::path::Path, offset: u64, bytes: u64) {
        log::emit(&log::WalTornTail {
            segment,
            offset,
            bytes,
        });
    }
}

impl Metrics {
    /// Creates the per-rule and per-sink series at zero before anything happens: Prometheus's
    /// `increase()` sees nothing in a series' first sample, so an alert on rule errors or sink
    /// failures would miss the first one of each rule or sink (and dashboards would show no
    /// series at all until then).
    /// The object-storage sources' series exist at zero from the start.
    pub fn declare_object_sources<'a>(&self, sources: impl IntoIterator<Item = &'a str>) {
        for source in sources {
            let l = ObjectSourceLabel {
                source: source.to_owned(),
            };
            for f in [
                &self.object_source_objects,
                &self.object_source_bytes,
                &self.object_source_events,
                &self.object_source_quarantined,
                &self.object_source_rewrites,
                &self.object_source_errors,
            ] {
                drop(f.get_or_create(&l));
            }
            drop(self.object_source_lag_seconds.get_or_create(&l));
        }
    }

    pub fn declare<'a>(
        &self,
        rules: impl IntoIterator<Item = &'a str>,
        sinks: impl IntoIterator<Item = &'a str>,
    ) {
        for rule in rules {
            let l = RuleLabel {
                rule: rule.to_owned(),
            };
            drop(self.rule_findings_new.get_or_create(&l));
            drop(self.rule_findings_updated.get_or_create(&l));
            drop(self.rule_errors.get_or_create(&l));
            drop(self.rule_findings_suppressed.get_or_create(&l));
        }
        for sink in sinks {
            let l = SinkLabel {
                sink: sink.to_owned(),
            };
            drop(self.sink_delivered.get_or_create(&l));
            drop(self.sink_failures.get_or_create(&l));
            drop(self.sink_outbox_depth.get_or_create(&l));
        }
    }
}

impl auditlake_detect::SchedulerObserver for Metrics {
    fn rule_ran(
        &self,
        rule: &str,
        took: Duration,
        new: usize,
        updated: usize,
        lag: chrono::TimeDelta,
    ) {
        let l = RuleLabel {
            rule: rule.to_owned(),
        };
        self.rule_run_seconds
            .get_or_create(&l)
            .observe(took.as_secs_f64());
        self.rule_findings_new.get_or_create(&l).inc_by(new as u64);
        self.rule_findings_updated
            .get_or_create(&l)
            .inc_by(updated as u64);
        self.rule_watermark_lag_seconds
            .get_or_create(&l)
            .set(lag.num_seconds());
    }

    fn findings_suppressed(
        &self,
        rule: &str,
        _suppression: &auditlake_detect::Suppression,
        count: usize,
    ) {
        self.rule_findings_suppressed
            .get_or_create(&RuleLabel {
                rule: rule.to_owned(),
            })
            .inc_by(count as u64);
    }

    fn suppression_expired(&self, s: &auditlake_detect::Suppression) {
        log::emit(&log::SuppressionExpired {
            key: &s.key,
            rule: &s.rule,
            expired_at: s.expires.unwrap_or_default(),
            reason: &s.reason,
        });
    }

    fn rule_failed(&self, rule: &str, error: &str, retry_in: chrono::TimeDelta) {
        self.rule_errors
            .get_or_create(&RuleLabel {
                rule: rule.to_owned(),
            })
            .inc();
        log::emit(&log::RuleFailed {
            rule,
            error,
            retry_in_secs: retry_in.num_seconds(),
        });
    }
}

impl crate::sinks::DeliveryObserver for Metrics {
    fn delivered(&self, sink: &str) {
        self.sink_delivered
            .get_or_create(&SinkLabel {
                sink: sink.to_owned(),
            })
            .inc();
    }

    fn failed(&self, sink: &str, error: &str) {
        self.sink_failures
            .get_or_create(&SinkLabel {
                sink: sink.to_owned(),
            })
            .inc();
        log::emit(&log::SinkFailed { sink, error });
    }

    fn outbox_depth(&self, sink: &str, depth: usize) {
        self.sink_outbox_depth
            .get_or_create(&SinkLabel {
                sink: sink.to_owned(),
            })
            .set(depth as i64);
    }
}

#[cfg(test)]
mod tests;
