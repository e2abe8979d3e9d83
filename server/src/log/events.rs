//! The named events of the service's log: one struct per kind of line, each emitting itself
//! with `event!` at its level.

use super::{Event, TARGET};

// Levels: `error` — the service failed at something an operator must look at (the pipeline, a
// report, retention); `warn` — input refused or skipped, a peer failing, a failure retried on its
// own; `info` — the service's life (listening, replay, shutdown) and work done (polls that read,
// compactions, retention runs, reports written).

pub struct Listening<'a> {
    pub url: &'a str,
    pub tls: &'a str,
    pub auth: &'a str,
}
impl Event for Listening<'_> {
    fn emit(&self) {
        event!(INFO, "listening", url = %self.url, tls = %self.tls, auth = %self.auth);
    }
}

/// A connection closed at accept (over `webhook.max_connections`).
pub struct ConnectionRefused {
    pub peer: std::net::SocketAddr,
    pub reason: &'static str,
}
impl Event for ConnectionRefused {
    fn emit(&self) {
        event!(WARN, "connection_refused", peer = %self.peer, reason = self.reason);
    }
}

/// Events refused because their envelope named another cluster than the bound one.
pub struct ClusterMismatch<'a> {
    pub source: &'a str,
    pub bound: &'a str,
    pub named: &'a str,
    pub events: u64,
}
impl Event for ClusterMismatch<'_> {
    fn emit(&self) {
        event!(
            WARN,
            "cluster_mismatch",
            source = self.source,
            bound = self.bound,
            envelope_names = self.named,
            events_refused = self.events
        );
    }
}

pub struct WalReplayed<'a> {
    pub report: &'a auditlake_ingest::ReplayReport,
}
impl Event for WalReplayed<'_> {
    fn emit(&self) {
        let r = self.report;
        event!(
            INFO,
            "wal_replayed",
            records = r.records,
            events = r.events,
            rows_written = r.rows_written,
            duplicates_skipped = r.duplicates_skipped,
            quarantined = r.quarantined,
            damaged = r.damaged,
            damaged_bytes = r.damaged_bytes
        );
    }
}

/// WAL replay met bytes that are not a valid record: they are in `_quarantine` (source
/// `wal:<segment>`, this offset) and the records after them were replayed.
pub struct WalDamaged<'a> {
    pub segment: &'a std::path::Path,
    pub offset: u64,
    pub bytes_skipped: u64,
    pub reason: &'a str,
}
impl Event for WalDamaged<'_> {
    fn emit(&self) {
        event!(
            WARN,
            "wal_damaged",
            segment = %file_name(self.segment),
            offset = self.offset,
            bytes_skipped = self.bytes_skipped,
            reason = self.reason,
            quarantined = true
        );
    }
}

/// WAL replay cut an incomplete final record: a crash mid-append, never acknowledged.
pub struct WalTornTail<'a> {
    pub segment: &'a std::path::Path,
    pub offset: u64,
    pub bytes: u64,
}
impl Event for WalTornTail<'_> {
    fn emit(&self) {
        event!(
            WARN,
            "wal_torn_tail",
            segment = %file_name(self.segment),
            offset = self.offset,
            bytes = self.bytes,
            acknowledged = false
        );
    }
}

fn file_name(path: &std::path::Path) -> std::borrow::Cow<'_, str> {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_else(|| path.to_string_lossy())
}

pub struct PipelineFailed<'a> {
    pub stage: &'a str,
    pub error: &'a str,
}
impl Event for PipelineFailed<'_> {
    fn emit(&self) {
        event!(ERROR, "pipeline_failed", stage = %self.stage, error = self.error);
    }
}

pub struct PipelineRecovered;
impl Event for PipelineRecovered {
    fn emit(&self) {
        event!(INFO, "pipeline_recovered");
    }
}

pub struct TlsHandshakeFailed<'a> {
    pub peer: std::net::SocketAddr,
    pub error: &'a str,
}
impl Event for TlsHandshakeFailed<'_> {
    fn emit(&self) {
        event!(WARN, "tls_handshake_failed", peer = %self.peer, error = self.error);
    }
}

pub struct ShutdownStarted<'a> {
    pub signal: &'a str,
}
impl Event for ShutdownStarted<'_> {
    fn emit(&self) {
        event!(INFO, "shutdown_started", signal = %self.signal);
    }
}

pub struct ShutdownFinished {
    pub last_seq: u64,
    pub open_connections_dropped: usize,
}
impl Event for ShutdownFinished {
    fn emit(&self) {
        event!(
            INFO,
            "shutdown_finished",
            wal_last_seq = self.last_seq,
            connections_dropped_after_grace = self.open_connections_dropped
        );
    }
}

pub struct PartitionCompacted<'a> {
    pub report: &'a auditlake_ingest::CompactReport,
}
impl Event for PartitionCompacted<'_> {
    fn emit(&self) {
        let r = self.report;
        event!(
            INFO,
            "partition_compacted",
            files_before = r.files_before,
            files_after = r.files_after,
            rows = r.rows,
            bytes_before = r.bytes_before,
            bytes_after = r.bytes_after
        );
    }
}

pub struct SchedulerStarted {
    pub rules: usize,
    pub sinks: usize,
}
impl Event for SchedulerStarted {
    fn emit(&self) {
        event!(
            INFO,
            "scheduler_started",
            rules = self.rules,
            sinks = self.sinks
        );
    }
}

/// This replica took the scheduler's lease of an object-store lake: it runs the rules, delivers
/// alerts and renders scheduled reports until it stops or loses the lease.
pub struct LeaseTaken<'a> {
    pub holder: &'a str,
}
impl Event for LeaseTaken<'_> {
    fn emit(&self) {
        event!(INFO, "lease_taken", holder = %self.holder);
    }
}

/// Another replica holds the scheduler's lease (or took it over): this one stands by.
pub struct LeaseHeldElsewhere<'a> {
    pub holder: &'a str,
    pub expires_at: &'a str,
}
impl Event for LeaseHeldElsewhere<'_> {
    fn emit(&self) {
        event!(
            INFO,
            "lease_held_elsewhere",
            holder = %self.holder,
            expires_at = %self.expires_at
        );
    }
}

/// Renewing the scheduler's lease failed (the store unreachable); the lease runs out by itself
/// if this goes on.
pub struct LeaseFailed<'a> {
    pub error: &'a str,
}
impl Event for LeaseFailed<'_> {
    fn emit(&self) {
        event!(WARN, "lease_failed", error = self.error);
    }
}

/// A scheduled rule's run failed; it is retried after `retry_in_secs`.
pub struct RuleFailed<'a> {
    pub rule: &'a str,
    pub error: &'a str,
    pub retry_in_secs: i64,
}
impl Event for RuleFailed<'_> {
    fn emit(&self) {
        event!(
            WARN,
            "rule_failed",
            rule = %self.rule,
            retry_in_secs = self.retry_in_secs,
            error = self.error
        );
    }
}

/// A `[[detect.suppressions]]` entry has expired: it no longer applies, so the findings it
/// held back are reported again until it is renewed or removed.
pub struct SuppressionExpired<'a> {
    pub key: &'a str,
    pub rule: &'a str,
    pub expired_at: chrono::DateTime<chrono::Utc>,
    pub reason: &'a str,
}
impl Event for SuppressionExpired<'_> {
    fn emit(&self) {
        event!(
            WARN,
            "suppression_expired",
            key = %self.key,
            rule = %self.rule,
            expired_at = %self
                .expired_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            reason = self.reason
        );
    }
}

pub struct SinkFailed<'a> {
    pub sink: &'a str,
    pub error: &'a str,
}
impl Event for SinkFailed<'_> {
    fn emit(&self) {
        event!(WARN, "sink_delivery_failed", sink = %self.sink, error = self.error);
    }
}

/// Something the Kafka consumer could not do (a flush or commit, a consumer error) or had to
/// undo (a rewind); librdkafka's own lines arrive through the `log` bridge (target `librdkafka`).
pub struct KafkaEvent<'a> {
    pub what: &'a str,
    pub detail: &'a str,
    /// How often this error recurred since it was last logged (repeats are throttled).
    pub repeated: u64,
}
impl Event for KafkaEvent<'_> {
    fn emit(&self) {
        event!(
            WARN,
            "kafka",
            what = self.what,
            detail = self.detail,
            repeated = (self.repeated > 0).then_some(self.repeated)
        );
    }
}

pub struct PgListening {
    pub addr: std::net::SocketAddr,
    pub tls: bool,
    pub auth: &'static str,
}
impl Event for PgListening {
    fn emit(&self) {
        event!(
            INFO,
            "postgres_listening",
            addr = %self.addr,
            tls = self.tls,
            auth = %self.auth,
            read_only = true
        );
    }
}

pub struct PgAcceptFailed {
    pub error: String,
}
impl Event for PgAcceptFailed {
    fn emit(&self) {
        event!(WARN, "postgres_accept_failed", error = self.error.as_str());
    }
}

pub struct PgConnectionFailed {
    pub peer: std::net::SocketAddr,
    pub error: String,
}
impl Event for PgConnectionFailed {
    fn emit(&self) {
        event!(
            WARN,
            "postgres_connection_failed",
            peer = %self.peer,
            error = self.error.as_str()
        );
    }
}

pub struct ReportWritten<'a> {
    pub report: &'a str,
    pub path: &'a std::path::Path,
    pub bytes: usize,
}
impl Event for ReportWritten<'_> {
    fn emit(&self) {
        event!(
            INFO,
            "report_written",
            report = %self.report,
            path = %self.path.display(),
            bytes = self.bytes
        );
    }
}

pub struct ReportFailed<'a> {
    pub report: &'a str,
    pub error: &'a str,
}
impl Event for ReportFailed<'_> {
    fn emit(&self) {
        event!(ERROR, "report_failed", report = %self.report, error = self.error);
    }
}

/// A retention run that removed partitions or deleted files.
pub struct RetentionRun<'a> {
    pub report: &'a auditlake_ingest::lake::retention::RetentionReport,
}
impl Event for RetentionRun<'_> {
    fn emit(&self) {
        let r = self.report;
        // A version is absent (not `-`) when that table was not committed to.
        event!(
            INFO,
            "retention_run",
            run_id = %r.run_id,
            partitions_removed = r.expired.len(),
            rows_removed = r.expired.iter().map(|s| s.rows).sum::<u64>(),
            held = r.held.len(),
            files_deleted = r.vacuumed.len(),
            runs_recovered = r.recovered.len(),
            events_version = r.events_version,
            log_version = r.log_version
        );
    }
}

pub struct RetentionFailed<'a> {
    pub error: &'a str,
}
impl Event for RetentionFailed<'_> {
    fn emit(&self) {
        event!(ERROR, "retention_failed", error = self.error);
    }
}

/// An object-storage source's poll that read something.
pub struct ObjectSourcePolled<'a> {
    pub source: &'a str,
    pub objects: u64,
    pub bytes: u64,
    pub events: u64,
    pub quarantined: u64,
    pub held_back: u64,
    pub lag_seconds: f64,
}
impl Event for ObjectSourcePolled<'_> {
    fn emit(&self) {
        event!(
            INFO,
            "object_source_polled",
            source = self.source,
            objects = self.objects,
            bytes = self.bytes,
            events = self.events,
            quarantined = self.quarantined,
            held_back_bytes = self.held_back,
            // Tenths of a second are all a lag needs.
            lag_seconds = (self.lag_seconds * 10.0).round() / 10.0
        );
    }
}

/// An object changed under a source since it was read (rewritten, not appended).
pub struct ObjectRewritten<'a> {
    pub detail: &'a str,
}
impl Event for ObjectRewritten<'_> {
    fn emit(&self) {
        event!(WARN, "object_rewritten", detail = self.detail);
    }
}

/// A poll of an object-storage source failed; the next poll retries from the checkpoint.
pub struct ObjectSourceFailed<'a> {
    pub source: &'a str,
    pub error: &'a str,
}
impl Event for ObjectSourceFailed<'_> {
    fn emit(&self) {
        event!(
            WARN,
            "object_source_failed",
            source = self.source,
            error = self.error
        );
    }
}

/// A config key that holds a credential has its value written inline in the config file
/// (which usually sits in a ConfigMap or a repository). The value is never logged, only the key.
pub struct InlineSecret<'a> {
    pub key: &'a str,
}
impl Event for InlineSecret<'_> {
    fn emit(&self) {
        event!(
            WARN,
            "config_inline_secret",
            key = %self.key,
            hint = "write it as { env = \"VAR\" } or { file = \"/path\" } (a Kubernetes Secret)"
        );
    }
}

/// The command failed (the binary's `error: …` line, as an event when logs are JSON so that
/// every stderr line parses).
pub struct CommandFailed<'a> {
    pub error: &'a str,
}
impl Event for CommandFailed<'_> {
    fn emit(&self) {
        event!(ERROR, "command_failed", error = self.error);
    }
}
