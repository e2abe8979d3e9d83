//! The sections of `auditlake.toml` (`[lake]`, `[ingest]`, `[[sinks]]`…), as `Config` holds them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};

use serde::Deserialize;

use super::values::{AtLeast, ClusterName, Seconds, ZstdLevel};
use crate::secret::Secret;

/// `[sources]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesSection {
    /// `[[sources.object_store]]`: cloud exports in S3/GCS/Azure Blob, polled by `serve` (and
    /// the settings `auditlake ingest <url>` uses for the same URL).
    #[serde(default)]
    pub object_store: Vec<ObjectStoreSourceSection>,
}

/// One `[[sources.object_store]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreSourceSection {
    /// `s3://bucket/prefix/`, `gs://bucket/prefix/` or `az://container/prefix/`.
    pub url: String,
    /// Bind every event to this cluster (an envelope naming another is quarantined); when
    /// absent, the cluster comes from the envelope (AKS resource id, EKS log group, GKE
    /// `cluster_name`) or an AKS blob's path, else `ingest.cluster`, else `default`.
    pub cluster: Option<String>,
    /// Seconds between listings in `serve` (default 60).
    pub poll_secs: Option<u64>,
    /// Commit to the lake and advance the checkpoint after every this many MiB read (default
    /// 256): what a crash makes the next run read again.
    pub round_mb: Option<u64>,
    /// Store settings (the `[lake.storage]` keys) over the environment's; when absent and the
    /// lake is in the same kind of store, the lake's settings.
    /// Values take `{ env = "VAR" }` / `{ file = "/path" }` like every secret-valued key.
    pub storage: Option<BTreeMap<String, Secret>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectSection {
    /// A directory of rules added to the built-in pack (a rule with a built-in rule's id
    /// replaces it).
    pub rules_dir: Option<PathBuf>,
    /// Set false to run only the rules of `rules_dir` (default true: the built-in pack too).
    pub builtin_rules: Option<bool>,
    /// Parameters for every rule that declares them (e.g. `trusted_admin_groups`).
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// Per-rule settings, keyed by rule id.
    #[serde(default)]
    pub rules: BTreeMap<String, DetectRuleSection>,
    /// `[[detect.suppressions]]`: findings judged benign.
    #[serde(default)]
    pub suppressions: Vec<SuppressionSection>,
}

/// One `[[detect.suppressions]]` entry (checked against the pack by `Config::suppressions`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionSection {
    /// The rule whose findings it suppresses.
    pub rule: Option<String>,
    /// `*`/`?` patterns over the finding's actor, target and namespace.
    pub actor: Option<String>,
    pub target: Option<String>,
    pub namespace: Option<String>,
    /// An address or CIDR, or a list of them: the finding's source address.
    pub source_cidr: Option<OneOrMany>,
    /// Why these findings are benign (shown by `auditlake rules suppressions`).
    pub reason: Option<String>,
    /// When it stops applying: a date (`2026-12-31`, start of day UTC) or RFC 3339 time.
    pub expires: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectRuleSection {
    pub enabled: Option<bool>,
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeSection {
    /// Lake directory, or an object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`).
    pub path: Option<PathBuf>,
    /// Object-store settings, the keys `object_store` reads (`aws_endpoint`, `aws_region`,
    /// `aws_allow_http`, `google_service_account`, `azure_storage_account_name`, …); they
    /// override the same settings from the environment (`AWS_ENDPOINT_URL`, …). Each value
    /// is a secret (`{ env = … }`, `{ file = … }`).
    #[serde(default)]
    pub storage: BTreeMap<String, Secret>,
    /// Where an object-store lake's files are encoded before upload (default: the system's
    /// temporary directory). Each process uses its own subdirectory.
    pub staging_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// Cluster name for `auditlake ingest` when `--cluster` is not given.
    pub cluster: Option<ClusterName>,
    /// Redact Secret values in bodies (default true).
    pub redact_secrets: Option<bool>,
    /// Decode threads (default: one per core).
    pub decode_threads: Option<NonZeroUsize>,
    /// Commit a partition's file at this many rows (default 1 000 000).
    pub max_file_rows: Option<NonZeroUsize>,
    /// A partition's buffered data becomes a row group at this many MiB (default 48). Also read
    /// as `max_file_mb`, its name when a buffer became a file of its own.
    #[serde(alias = "max_file_mb")]
    pub row_group_mb: Option<NonZeroUsize>,
    /// Bound on buffered data across partitions, MiB (default 96).
    pub max_buffer_mb: Option<NonZeroUsize>,
    /// Rows per Parquet row group (default 65 536).
    pub row_group_rows: Option<NonZeroUsize>,
    /// zstd level 1–22 (default 3) of the columns not named below: audit IDs always get level 1,
    /// and the small filter columns (`resource`, `verb`, …) are stored uncompressed.
    pub zstd_level: Option<ZstdLevel>,
    /// zstd level 1–22 of request/response bodies and request URIs (default 9).
    pub bulk_zstd_level: Option<ZstdLevel>,
    /// Lines longer than this many MiB are quarantined without being held in memory (default 256).
    pub max_line_mb: Option<NonZeroUsize>,
}

/// `[scheduler]` of `auditlake serve`: runs the active rules of `[detect]` on their schedules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSection {
    /// Set false to keep the section but not run detections (default true).
    pub enabled: Option<bool>,
    /// Each run re-reads this far before the watermark, for late events (default 600).
    pub lateness_secs: Option<i64>,
    /// Events younger than this are left to the next run (still being flushed; default 30).
    pub settle_secs: Option<i64>,
    /// A rule without a saved watermark starts this far back (default 60).
    pub initial_lookback_minutes: Option<i64>,
    /// Findings sharing actor or target within this window form one incident (default 60).
    pub incident_window_minutes: Option<i64>,
    /// Longest sleep between scheduler passes, seconds (default 5).
    pub tick_secs: Option<f64>,
    /// Only these rules (ids or catalog ids like `K09`); default every active rule.
    pub rules: Option<Vec<String>>,
    /// Run every rule this often instead of its own `schedule` (seconds; for low latency).
    pub schedule_secs: Option<i64>,
    /// Run rules marked `streaming = true` on each batch as it arrives (default true).
    pub streaming: Option<bool>,
    /// On an object-store lake, how long one renewal of the scheduler's lease holds it (default
    /// `30s`, at least `3s`): the failover time when the replica running the scheduler dies.
    /// Renewed every third of it, so a store slower than that loses the lease.
    pub lease_ttl: Option<String>,
}

/// `[kafka]` of `auditlake serve`: a consumer group whose offsets follow durability.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// Bootstrap servers (`host:port,…`).
    pub brokers: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group (default `auditlake`): replicas sharing it share the partitions.
    pub group_id: Option<String>,
    /// Cluster of the events (default `webhook.default_cluster`, else `default`)…
    pub cluster: Option<ClusterName>,
    /// …per topic…
    #[serde(default)]
    pub topic_clusters: BTreeMap<String, ClusterName>,
    /// …or from this message header when present.
    pub cluster_header: Option<String>,
    /// librdkafka properties (security.protocol, sasl.*, ssl.*, …), passed through; each value
    /// is a secret (`{ env = … }`, `{ file = … }`).
    #[serde(default)]
    pub properties: BTreeMap<String, Secret>,
}

/// One `[[sinks]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    /// Unique name (its outbox directory, metrics label).
    pub name: String,
    /// `stdout`, `file`, `webhook`, `alertmanager`, `falco` or `kafka`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For kafka: bootstrap servers and topic; `properties` pass through to librdkafka.
    pub brokers: Option<String>,
    pub topic: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, Secret>,
    /// For webhook/alertmanager/falco (a secret: webhook URLs often embed a token).
    pub url: Option<Secret>,
    /// For file.
    pub path: Option<PathBuf>,
    /// Lowest severity sent (default info).
    pub min_severity: Option<String>,
    /// Per-request timeout, seconds (default 10).
    pub timeout_secs: Option<u64>,
    /// Extra HTTP headers; each value is a secret (`Authorization = { file = … }`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
}

/// `[compaction]`: merging the small files streaming flushes leave (`auditlake compact`, and
/// in the background of `auditlake serve`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactionSection {
    /// Files smaller than this many MiB are merged (default 16).
    pub small_file_mb: Option<NonZeroU64>,
    /// Compact a partition once it holds this many small files (default 4; merging one file
    /// into itself gains nothing).
    pub min_small_files: Option<AtLeast<2>>,
    /// Only hours that ended at least this many minutes ago (default 60: late events settle).
    pub min_age_minutes: Option<u32>,
    /// How often `serve` looks for partitions to compact, seconds; 0 turns it off (default 300).
    pub interval_secs: Option<u64>,
}

/// `[retention]`: whole partitions older than their cluster's period leave the lake
/// (`auditlake retention`, and a background job of `serve`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Days every cluster's events are kept; absent: forever (except clusters listed below).
    pub days: Option<NonZeroU32>,
    /// `cluster = days` overrides.
    #[serde(default)]
    pub clusters: BTreeMap<ClusterName, NonZeroU32>,
    /// `[[retention.holds]]`: clusters never expired (a legal hold), with the reason.
    #[serde(default)]
    pub holds: Vec<HoldSection>,
    /// Removed files are deleted from storage once this long gone (default `7d`).
    pub vacuum_grace: Option<String>,
    /// How often `serve` runs retention and the vacuum (default `1h`, also without
    /// `[retention]`; `0s` turns the job off).
    pub interval: Option<String>,
}

/// `[seal]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealSection {
    /// The ed25519 private key (hex PKCS#8 from `auditlake seal --generate-key`): a secret,
    /// `{ file = "/var/run/secrets/auditlake-seal/key" }` or `{ env = "VAR" }`.
    pub key: Option<Secret>,
    /// The public key seals are checked against (64 hex digits; not secret).
    pub public_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldSection {
    pub cluster: String,
    pub reason: String,
}

/// `[webhook]`: the kube-apiserver audit webhook receiver of `auditlake serve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Address to listen on (default `127.0.0.1:8443`).
    pub listen: Option<String>,
    /// Server certificate chain and key (PEM): HTTPS when set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that client certificates must chain to (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Bearer tokens: one `token,cluster` per line (`*` = any cluster).
    pub tokens_file: Option<PathBuf>,
    /// Refuse requests without a valid credential (default: true when tokens_file or client_ca is set).
    pub require_auth: Option<bool>,
    /// Listen on a non-loopback address without authentication (default false: refused).
    pub allow_unauthenticated: Option<bool>,
    /// Open connections at once (default 1024); more are closed at accept.
    pub max_connections: Option<NonZeroUsize>,
    /// A connection with no request in progress is closed after this many seconds (default 20):
    /// silent clients, slow headers, idle keep-alive.
    pub header_timeout_secs: Option<Seconds>,
    /// Reading one request body may take this many seconds (default 60), then 408.
    pub body_timeout_secs: Option<Seconds>,
    /// A client certificate's subject CN is the cluster it may write (default true).
    pub cert_binds_cluster: Option<bool>,
    /// Cluster for `POST /audit` without a name or binding credential (default `default`).
    pub default_cluster: Option<ClusterName>,
    /// Largest request body, MiB, before and after gzip (default 64).
    pub max_body_mb: Option<NonZeroUsize>,
    /// Write-ahead log directory (default `<lake>/_state/wal`).
    pub wal_dir: Option<PathBuf>,
    /// Answer 503 while un-flushed WAL exceeds this many MiB (default 1024).
    pub wal_max_mb: Option<NonZeroU64>,
    /// Answer 503 while the WAL's disk has less free space than this many MiB (default 512).
    pub min_free_disk_mb: Option<u64>,
    /// Flush to Parquet at least every this many seconds while data is pending (default 10).
    pub flush_interval_secs: Option<Seconds>,
    /// …or at this many pending rows (default 500 000).
    pub flush_rows: Option<NonZeroU64>,
    /// …or at this many MiB of pending request bodies (default 256).
    pub flush_mb: Option<NonZeroU64>,
    /// Seconds shutdown waits for in-flight requests (default 30).
    pub shutdown_grace_secs: Option<u64>,
    /// Retry-After seconds on a 503 (default 5).
    pub retry_after_secs: Option<u32>,
}

/// `[report]`: where report definitions live.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    /// A directory of report definitions added to the built-in ones (same id replaces).
    pub reports_dir: Option<PathBuf>,
}

/// One `[[reports]]` entry: a report `serve` renders on a schedule into `output_dir`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledReportSection {
    /// Report id (`reports/<name>.toml`).
    pub name: String,
    /// Cron: `m h dom mon dow` (names, `L`, `#`, `W`) or `@hourly`/`@daily`/`@weekly`/`@monthly`.
    pub schedule: String,
    /// The IANA time zone `schedule` is read in (`Europe/Paris`; default UTC).
    pub timezone: Option<String>,
    /// How far back each run looks (`24h`, `7d`; default 24h); the window ends at the run time.
    pub window: Option<String>,
    /// Where rendered files go: `<name>-<window end>.<ext>` (created if missing).
    pub output_dir: PathBuf,
    /// md, html, json and/or csv (default ["html"]).
    pub formats: Option<Vec<String>>,
    /// Only these clusters (default all).
    #[serde(default)]
    pub clusters: Vec<String>,
}

impl ScheduledReportSection {
    /// `schedule` in `timezone`; errors name the key at fault (`reports[0].timezone`).
    pub fn schedule(&self, key: &str) -> anyhow::Result<auditlake_report::schedule::Schedule> {
        use auditlake_report::schedule::{Schedule, ScheduleError};
        Schedule::parse_in(&self.schedule, self.timezone.as_deref()).map_err(|e| match e {
            ScheduleError::TimeZone { .. } => anyhow::anyhow!("{key}.timezone: {e}"),
            _ => anyhow::anyhow!("{key}.schedule: {e}"),
        })
    }
}

/// `[postgres]`: read-only SQL over the PostgreSQL wire protocol.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// Address to listen on (default `127.0.0.1:5433`).
    pub listen: Option<String>,
    /// `user,password` per line: SCRAM-SHA-256 password authentication.
    pub users_file: Option<PathBuf>,
    /// Server certificate chain and key (PEM): TLS (`sslmode=require`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM): a client certificate that chains to it authenticates (its CN is the user)…
    pub client_ca: Option<PathBuf>,
    /// …when its CN is listed here (required with client_ca: the CA may sign other clients too).
    #[serde(default)]
    pub cert_users: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySection {
    /// Threads per query (default: one per core).
    pub target_partitions: Option<NonZeroUsize>,
    /// Evaluate filters during the Parquet scan (default true).
    pub pushdown_filters: Option<bool>,
    /// An object-store lake's data files are cached here after their first read (default: the
    /// system's temporary directory, `auditlake-cache`; private to the user).
    pub cache_dir: Option<PathBuf>,
    /// Bound of that cache in MiB; 0 turns it off (default 1024).
    pub cache_mb: Option<u64>,
    /// Where queries, detections and reports run: `local` (default) or
    /// `ballista://HOST:PORT`, the scheduler of an `auditlake ballista` cluster.
    pub engine: Option<String>,
}
