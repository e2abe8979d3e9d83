//! The server's log lines: one named event struct each, written to stderr as
//! `<RFC 3339 time> <event> key=value …`, so operators can grep and tests can parse them.

use std::fmt;

pub fn emit(event: &dyn fmt::Display) {
    eprintln!(
        "{} {event}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
}

pub struct Listening<'a> {
    pub url: &'a str,
    pub tls: &'a str,
    pub auth: &'a str,
}
impl fmt::Display for Listening<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "listening url={} tls={} auth={}",
            self.url, self.tls, self.auth
        )
    }
}

/// A connection closed at accept (over `webhook.max_connections`).
pub struct ConnectionRefused {
    pub peer: std::net::SocketAddr,
    pub reason: &'static str,
}
impl fmt::Display for ConnectionRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection_refused peer={} reason={:?}",
            self.peer, self.reason
        )
    }
}

/// Events refused because their envelope named another cluster than the bound one.
pub struct ClusterMismatch<'a> {
    pub source: &'a str,
    pub bound: &'a str,
    pub named: &'a str,
    pub events: u64,
}
impl fmt::Display for ClusterMismatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cluster_mismatch source={:?} bound={:?} envelope_names={:?} events_refused={}",
            self.source, self.bound, self.named, self.events
        )
    }
}

pub struct WalReplayed<'a> {
    pub report: &'a auditlake_ingest::ReplayReport,
}
impl fmt::Display for WalReplayed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.report;
        write!(
            f,
            "wal_replayed records={} events={} rows_written={} duplicates_skipped={} quarantined={} damaged={} damaged_bytes={}",
            r.records,
            r.events,
            r.rows_written,
            r.duplicates_skipped,
            r.quarantined,
            r.damaged,
            r.damaged_bytes
        )
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
impl fmt::Display for WalDamaged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wal_damaged segment={} offset={} bytes_skipped={} reason={:?} quarantined=true",
            file_name(self.segment),
            self.offset,
            self.bytes_skipped,
            self.reason
        )
    }
}

/// WAL replay cut an incomplete final record: a crash mid-append, never acknowledged.
pub struct WalTornTail<'a> {
    pub segment: &'a std::path::Path,
    pub offset: u64,
    pub bytes: u64,
}
impl fmt::Display for WalTornTail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wal_torn_tail segment={} offset={} bytes={} acknowledged=false",
            file_name(self.segment),
            self.offset,
            self.bytes
        )
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
impl fmt::Display for PipelineFailed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pipeline_failed stage={} error={:?}",
            self.stage, self.error
        )
    }
}

pub struct PipelineRecovered;
impl fmt::Display for PipelineRecovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pipeline_recovered")
    }
}

pub struct TlsHandshakeFailed<'a> {
    pub peer: std::net::SocketAddr,
    pub error: &'a str,
}
impl fmt::Display for TlsHandshakeFailed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tls_handshake_failed peer={} error={:?}",
            self.peer, self.error
        )
    }
}

pub struct ShutdownStarted<'a> {
    pub signal: &'a str,
}
impl fmt::Display for ShutdownStarted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shutdown_started signal={}", self.signal)
    }
}

pub struct ShutdownFinished {
    pub last_seq: u64,
    pub open_connections_dropped: usize,
}
impl fmt::Display for ShutdownFinished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shutdown_finished wal_last_seq={} connections_dropped_after_grace={}",
            self.last_seq, self.open_connections_dropped
        )
    }
}

pub struct PartitionCompacted<'a> {
    pub report: &'a auditlake_ingest::CompactReport,
}
impl fmt::Display for PartitionCompacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.report;
        write!(
            f,
            "partition_compacted files_before={} files_after={} rows={} bytes_before={} bytes_after={}",
            r.files_before, r.files_after, r.rows, r.bytes_before, r.bytes_after
        )
    }
}

pub struct SchedulerStarted {
    pub rules: usize,
    pub sinks: usize,
}
impl fmt::Display for SchedulerStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scheduler_started rules={} sinks={}",
            self.rules, self.sinks
        )
    }
}

pub struct RuleFailed<'a> {
    pub rule: &'a str,
    pub error: &'a str,
    pub retry_in_secs: i64,
}
impl fmt::Display for RuleFailed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule_failed rule={} retry_in_secs={} error={:?}",
            self.rule, self.retry_in_secs, self.error
        )
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
impl fmt::Display for SuppressionExpired<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "suppression_expired key={} rule={} expired_at={} reason={:?}",
            self.key,
            self.rule,
            self.expired_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.reason
        )
    }
}

pub struct SinkFailed<'a> {
    pub sink: &'a str,
    pub error: &'a str,
}
impl fmt::Display for SinkFailed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sink_delivery_failed sink={} error={:?}",
            self.sink, self.error
        )
    }
}

pub struct KafkaEvent<'a> {
    pub what: &'a str,
    pub detail: &'a str,
}
impl fmt::Display for KafkaEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kafka what={:?} detail={:?}", self.what, self.detail)
    }
}

pub struct PgListening {
    pub addr: std::net::SocketAddr,
    pub tls: bool,
    pub auth: &'static str,
}
impl fmt::Display for PgListening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgres_listening addr={} tls={} auth={} read_only=true",
            self.addr, self.tls, self.auth
        )
    }
}

pub struct PgAcceptFailed {
    pub error: String,
}
impl fmt::Display for PgAcceptFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres_accept_failed error={:?}", self.error)
    }
}

pub struct PgConnectionFailed {
    pub peer: std::net::SocketAddr,
    pub error: String,
}
impl fmt::Display for PgConnectionFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgres_connection_failed peer={} error={:?}",
            self.peer, self.error
        )
    }
}

pub struct ReportWritten<'a> {
    pub report: &'a str,
    pub path: &'a std::path::Path,
    pub bytes: usize,
}
impl fmt::Display for ReportWritten<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "report_written report={} path={} bytes={}",
            self.report,
            self.path.display(),
            self.bytes
        )
    }
}

pub struct ReportFailed<'a> {
    pub report: &'a str,
    pub error: &'a str,
}
impl fmt::Display for ReportFailed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "report_failed report={} error={:?}",
            self.report, self.error
        )
    }
}

/// A retention run that removed partitions or deleted files.
pub struct RetentionRun<'a> {
    pub report: &'a auditlake_ingest::lake::retention::RetentionReport,
}
impl fmt::Display for RetentionRun<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.report;
        write!(
            f,
            "retention_run run_id={} partitions_removed={} rows_removed={} held={} files_deleted={} events_version={} log_version={}",
            r.run_id,
            r.expired.len(),
            r.expired.iter().map(|s| s.rows).sum::<u64>(),
            r.held.len(),
            r.vacuumed.len(),
            r.events_version.map_or("-".into(), |v| v.to_string()),
            r.log_version.map_or("-".into(), |v| v.to_string()),
        )
    }
}

pub struct RetentionFailed<'a> {
    pub error: &'a str,
}
impl fmt::Display for RetentionFailed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retention_failed error={:?}", self.error)
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
impl fmt::Display for ObjectSourcePolled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "object_source_polled source={:?} objects={} bytes={} events={} quarantined={} held_back_bytes={} lag_seconds={:.1}",
            self.source,
            self.objects,
            self.bytes,
            self.events,
            self.quarantined,
            self.held_back,
            self.lag_seconds
        )
    }
}

/// An object changed under a source since it was read (rewritten, not appended).
pub struct ObjectRewritten<'a> {
    pub detail: &'a str,
}
impl fmt::Display for ObjectRewritten<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "object_rewritten detail={:?}", self.detail)
    }
}

/// A poll of an object-storage source failed; the next poll retries from the checkpoint.
pub struct ObjectSourceFailed<'a> {
    pub source: &'a str,
    pub error: &'a str,
}
impl fmt::Display for ObjectSourceFailed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "object_source_failed source={:?} error={:?}",
            self.source, self.error
        )
    }
}

/// A config key that holds a credential has its value written inline in the config file
/// (which usually sits in a ConfigMap or a repository). The value is never logged, only the key.
pub struct InlineSecret<'a> {
    pub key: &'a str,
}
impl fmt::Display for InlineSecret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config_inline_secret key={} hint=\"write it as {{ env = \\\"VAR\\\" }} or {{ file = \\\"/path\\\" }} (a Kubernetes Secret)\"",
            self.key
        )
    }
}
