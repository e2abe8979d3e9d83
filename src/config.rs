//! `auditlake.toml`: every section is optional; unknown keys are errors that name the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use auditlake_detect::{
    PackConfig, ParamOverride, Rule, RuleOverrides, Source, Suppression, SuppressionSpec,
    Suppressions,
};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::secret::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub lake: LakeSection,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub query: QuerySection,
    #[serde(default)]
    pub detect: DetectSection,
    #[serde(default)]
    pub webhook: WebhookSection,
    #[serde(default)]
    pub compaction: CompactionSection,
    /// `[retention]`: how long events are kept (forever when absent).
    pub retention: Option<RetentionSection>,
    /// `[seal]`: the key `auditlake seal` signs the chain head with, and the public key
    /// `auditlake verify --seal` checks seals against.
    #[serde(default)]
    pub seal: SealSection,
    /// `[scheduler]`: scheduled detections in `serve` (on when the section is present).
    pub scheduler: Option<SchedulerSection>,
    /// `[kafka]`: consume audit events from Kafka topics in `serve`.
    pub kafka: Option<KafkaSection>,
    /// `[[sinks]]`: where findings go.
    #[serde(default)]
    pub sinks: Vec<SinkSection>,
    #[serde(default)]
    pub report: ReportSection,
    /// `[[reports]]`: reports `serve` renders on a schedule.
    #[serde(default)]
    pub reports: Vec<ScheduledReportSection>,
    /// `[postgres]`: the read-only PostgreSQL wire-protocol endpoint (in `serve`, and `auditlake pg`).
    pub postgres: Option<PostgresSection>,
    /// `[sources]`: inputs `serve` pulls (`[[sources.object_store]]`).
    #[serde(default)]
    pub sources: SourcesSection,
    /// Directory of the config file: relative paths in it (list files) resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Secret-valued keys whose value is written inline although their name says credential
    /// (`Config::load` warns about each).
    #[serde(skip)]
    pub inline_secrets: Vec<String>,
}

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
    pub cluster: Option<String>,
    /// Redact Secret values in bodies (default true).
    pub redact_secrets: Option<bool>,
    /// Decode threads (default: one per core).
    pub decode_threads: Option<usize>,
    /// Commit a partition's file at this many rows (default 1 000 000).
    pub max_file_rows: Option<usize>,
    /// A partition's buffered data becomes a row group at this many MiB (default 48). Also read
    /// as `max_file_mb`, its name when a buffer became a file of its own.
    #[serde(alias = "max_file_mb")]
    pub row_group_mb: Option<usize>,
    /// Bound on buffered data across partitions, MiB (default 96).
    pub max_buffer_mb: Option<usize>,
    /// Rows per Parquet row group (default 65 536).
    pub row_group_rows: Option<usize>,
    /// zstd level 1–22 (default 3) of the columns not named below: audit IDs always get level 1,
    /// and the small filter columns (`resource`, `verb`, …) are stored uncompressed.
    pub zstd_level: Option<i32>,
    /// zstd level 1–22 of request/response bodies and request URIs (default 9).
    pub bulk_zstd_level: Option<i32>,
    /// Lines longer than this many MiB are quarantined without being held in memory (default 256).
    pub max_line_mb: Option<usize>,
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
    pub cluster: Option<String>,
    /// …per topic…
    #[serde(default)]
    pub topic_clusters: BTreeMap<String, String>,
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
    pub small_file_mb: Option<u64>,
    /// Compact a partition once it holds this many small files (default 4).
    pub min_small_files: Option<usize>,
    /// Only hours that ended at least this many minutes ago (default 60: late events settle).
    pub min_age_minutes: Option<i64>,
    /// How often `serve` looks for partitions to compact, seconds; 0 turns it off (default 300).
    pub interval_secs: Option<u64>,
}

/// `[retention]`: whole partitions older than their cluster's period leave the lake
/// (`auditlake retention`, and a background job of `serve`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Days every cluster's events are kept; absent: forever (except clusters listed below).
    pub days: Option<u32>,
    /// `cluster = days` overrides.
    #[serde(default)]
    pub clusters: BTreeMap<String, u32>,
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

#[derive(Debug, Default, Deserialize)]
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
    pub max_connections: Option<usize>,
    /// A connection with no request in progress is closed after this many seconds (default 20):
    /// silent clients, slow headers, idle keep-alive.
    pub header_timeout_secs: Option<f64>,
    /// Reading one request body may take this many seconds (default 60), then 408.
    pub body_timeout_secs: Option<f64>,
    /// A client certificate's subject CN is the cluster it may write (default true).
    pub cert_binds_cluster: Option<bool>,
    /// Cluster for `POST /audit` without a name or binding credential (default `default`).
    pub default_cluster: Option<String>,
    /// Largest request body, MiB, before and after gzip (default 64).
    pub max_body_mb: Option<usize>,
    /// Write-ahead log directory (default `<lake>/_state/wal`).
    pub wal_dir: Option<PathBuf>,
    /// Answer 503 while un-flushed WAL exceeds this many MiB (default 1024).
    pub wal_max_mb: Option<u64>,
    /// Answer 503 while the WAL's disk has less free space than this many MiB (default 512).
    pub min_free_disk_mb: Option<u64>,
    /// Flush to Parquet at least every this many seconds while data is pending (default 10).
    pub flush_interval_secs: Option<f64>,
    /// …or at this many pending rows (default 500 000).
    pub flush_rows: Option<u64>,
    /// …or at this many MiB of pending request bodies (default 256).
    pub flush_mb: Option<u64>,
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
    pub target_partitions: Option<usize>,
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

impl Config {
    /// Loads `path`, or the defaults when no config file is given.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let config = Config::parse_at(&text, &base_dir)
            .with_context(|| format!("config {}", path.display()))?;
        for key in &config.inline_secrets {
            auditlake_server::log::emit(&auditlake_server::log::InlineSecret { key });
        }
        Ok(config)
    }

    /// The `[detect]` parameters and per-rule settings, list files read.
    pub fn pack_config(&self) -> anyhow::Result<PackConfig> {
        let value = |key: String, v: &toml::Value| {
            ParamOverride::from_toml(v, &self.base_dir, Source::Disk)
                .map_err(|m| anyhow::anyhow!("config `{key}`: {m}"))
        };
        let mut pack = PackConfig::default();
        for (name, v) in &self.detect.params {
            pack.params
                .insert(name.clone(), value(format!("detect.params.{name}"), v)?);
        }
        for (id, r) in &self.detect.rules {
            let mut o = RuleOverrides {
                enabled: r.enabled,
                ..Default::default()
            };
            for (name, v) in &r.params {
                o.params.insert(
                    name.clone(),
                    value(format!("detect.rules.{id}.params.{name}"), v)?,
                );
            }
            pack.rules.insert(id.clone(), o);
        }
        Ok(pack)
    }

    /// `[[detect.suppressions]]`, each checked against `rules` (every rule of the pack);
    /// errors name the entry's key (`detect.suppressions[1].source_cidr`).
    pub fn suppressions(&self, rules: &[Rule]) -> anyhow::Result<Suppressions> {
        let mut list = Vec::new();
        for (i, s) in self.detect.suppressions.iter().enumerate() {
            let key = format!("detect.suppressions[{i}]");
            let Some(rule) = s.rule.clone() else {
                bail!("config `{key}.rule`: missing: which rule's findings does it suppress?");
            };
            let expires = match &s.expires {
                None => None,
                Some(toml::Value::String(t)) => Some(t.clone()),
                Some(toml::Value::Datetime(t)) => Some(t.to_string()),
                Some(other) => bail!(
                    "config `{key}.expires`: {other} is not a date (2026-12-31) or an RFC 3339 time"
                ),
            };
            let spec = SuppressionSpec {
                rule,
                actor: s.actor.clone(),
                target: s.target.clone(),
                namespace: s.namespace.clone(),
                source_cidrs: match &s.source_cidr {
                    None => Vec::new(),
                    Some(OneOrMany::One(c)) => vec![c.clone()],
                    Some(OneOrMany::Many(c)) => c.clone(),
                },
                reason: s.reason.clone().unwrap_or_default(),
                expires,
            };
            list.push(Suppression::new(&key, spec, rules)?);
        }
        Ok(Suppressions::new(list))
    }

    /// The directory of rules added to the built-in pack: flag/env, else `detect.rules_dir`;
    /// `None` when neither is given (the built-in pack alone).
    pub fn rules_dir(&self, flag: Option<&Path>) -> Option<PathBuf> {
        flag.map(Path::to_path_buf).or_else(|| {
            self.detect
                .rules_dir
                .as_ref()
                .map(|d| self.base_dir.join(d))
        })
    }

    /// The directory of reports added to the built-in ones: flag/env, else `report.reports_dir`.
    pub fn reports_dir(&self, flag: Option<&Path>) -> Option<PathBuf> {
        flag.map(Path::to_path_buf).or_else(|| {
            self.report
                .reports_dir
                .as_ref()
                .map(|d| self.base_dir.join(d))
        })
    }

    /// A config whose relative paths (secret files included) resolve against the working
    /// directory.
    #[cfg(test)]
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        Config::parse_at(text, Path::new(""))
    }

    /// Parses, resolves every secret (relative secret files against `base_dir`), validates.
    pub fn parse_at(text: &str, base_dir: &Path) -> anyhow::Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|mut e| {
            // toml's message quotes the offending line, which may hold a secret: say where it
            // is and what is wrong, not what it says.
            let at = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                format!("line {line}, column {column}: ")
            });
            e.set_input(None);
            let message = e.to_string().trim().replace('\n', " ");
            anyhow::anyhow!("{}{message}", at.unwrap_or_default())
        })?;
        config.base_dir = base_dir.to_path_buf();
        let mut inline = Vec::new();
        for (key, name, secret) in config.secrets_mut() {
            secret.resolve(&key, base_dir)?;
            let looks = match &name {
                Some(name) => crate::secret::looks_secret(name),
                None => crate::secret::url_looks_secret(secret.expose()),
            };
            if secret.is_inline() && looks {
                inline.push(key);
            }
        }
        config.inline_secrets = inline;
        config.validate()?;
        Ok(config)
    }

    /// Every secret-valued key: its config key, the name that says what it holds (a header or
    /// property name; `None` for a URL), the secret.
    fn secrets_mut(&mut self) -> Vec<(String, Option<String>, &mut Secret)> {
        fn map<'a>(
            prefix: &str,
            m: &'a mut BTreeMap<String, Secret>,
        ) -> impl Iterator<Item = (String, Option<String>, &'a mut Secret)> {
            let prefix = prefix.to_owned();
            m.iter_mut().map(move |(name, secret)| {
                let key = if name.contains('.') {
                    format!("{prefix}.\"{name}\"")
                } else {
                    format!("{prefix}.{name}")
                };
                (key, Some(name.clone()), secret)
            })
        }
        let mut out: Vec<_> = map("lake.storage", &mut self.lake.storage).collect();
        if let Some(key) = &mut self.seal.key {
            out.push(("seal.key".into(), Some("key".into()), key));
        }
        if let Some(k) = &mut self.kafka {
            out.extend(map("kafka.properties", &mut k.properties));
        }
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            let key = format!("sinks[{i}]");
            if let Some(url) = &mut sink.url {
                out.push((format!("{key}.url"), None, url));
            }
            out.extend(map(&format!("{key}.headers"), &mut sink.headers));
            out.extend(map(&format!("{key}.properties"), &mut sink.properties));
        }
        for (i, source) in self.sources.object_store.iter_mut().enumerate() {
            if let Some(storage) = &mut source.storage {
                out.extend(map(&format!("sources.object_store[{i}].storage"), storage));
            }
        }
        out
    }

    /// The scheduler's lease TTL (`[scheduler] lease_ttl`).
    pub fn lease_ttl(&self) -> anyhow::Result<std::time::Duration> {
        let Some(s) = self.scheduler.as_ref().and_then(|s| s.lease_ttl.as_ref()) else {
            return Ok(auditlake_server::alerting::LEASE_TTL);
        };
        let ttl = span("scheduler.lease_ttl", s)?;
        if ttl < chrono::TimeDelta::seconds(3) {
            bail!("scheduler.lease_ttl = {s:?}: at least 3s (it is renewed every third of it)");
        }
        Ok(ttl.to_std().expect("positive"))
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.engine(None)?;
        self.lease_ttl()?;
        self.retention_policy()?;
        self.retention_interval()?;
        for (key, level) in [
            ("ingest.zstd_level", self.ingest.zstd_level),
            ("ingest.bulk_zstd_level", self.ingest.bulk_zstd_level),
        ] {
            if let Some(level) = level
                && !(1..=22).contains(&level)
            {
                bail!("{key} = {level}: must be between 1 and 22");
            }
        }
        if let Some(cluster) = &self.ingest.cluster {
            auditlake_ingest::validate_cluster_name(cluster).context("ingest.cluster")?;
        }
        for (key, value) in [
            ("ingest.max_file_rows", self.ingest.max_file_rows),
            ("ingest.row_group_mb", self.ingest.row_group_mb),
            ("ingest.max_buffer_mb", self.ingest.max_buffer_mb),
            ("ingest.row_group_rows", self.ingest.row_group_rows),
            ("ingest.max_line_mb", self.ingest.max_line_mb),
            ("ingest.decode_threads", self.ingest.decode_threads),
            ("query.target_partitions", self.query.target_partitions),
            ("webhook.max_body_mb", self.webhook.max_body_mb),
            ("webhook.max_connections", self.webhook.max_connections),
        ] {
            if value == Some(0) {
                bail!("{key} = 0: must be at least 1");
            }
        }
        for (key, value) in [
            ("webhook.wal_max_mb", self.webhook.wal_max_mb),
            ("webhook.flush_rows", self.webhook.flush_rows),
            ("webhook.flush_mb", self.webhook.flush_mb),
            ("compaction.small_file_mb", self.compaction.small_file_mb),
        ] {
            if value == Some(0) {
                bail!("{key} = 0: must be at least 1");
            }
        }
        for (i, source) in self.sources.object_store.iter().enumerate() {
            let key = format!("sources.object_store[{i}]");
            if !auditlake_ingest::objects::is_object_url(&source.url) {
                bail!(
                    "{key}.url = {:?}: not an object-store URL (s3://, gs://, az://)",
                    source.url
                );
            }
            if let Some(c) = &source.cluster {
                auditlake_ingest::validate_cluster_name(c)
                    .map_err(|e| anyhow::anyhow!("{key}.cluster: {e}"))?;
            }
            if source.poll_secs == Some(0) {
                bail!("{key}.poll_secs = 0: must be at least 1");
            }
            if source.round_mb == Some(0) {
                bail!("{key}.round_mb = 0: must be at least 1");
            }
        }
        if let Some(s) = self.webhook.flush_interval_secs
            && !(s > 0.0 && s <= 3600.0)
        {
            bail!("webhook.flush_interval_secs = {s}: must be in (0, 3600]");
        }
        for (key, value) in [
            (
                "webhook.header_timeout_secs",
                self.webhook.header_timeout_secs,
            ),
            ("webhook.body_timeout_secs", self.webhook.body_timeout_secs),
        ] {
            if let Some(s) = value
                && !(s > 0.0 && s <= 3600.0)
            {
                bail!("{key} = {s}: must be in (0, 3600]");
            }
        }
        if let Some(n) = self.compaction.min_small_files
            && n < 2
        {
            bail!("compaction.min_small_files = {n}: must be at least 2");
        }
        if let Some(m) = self.compaction.min_age_minutes
            && m < 0
        {
            bail!("compaction.min_age_minutes = {m}: must not be negative");
        }
        let mut names = std::collections::HashSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            let key = format!("sinks[{i}]");
            if sink.name.is_empty()
                || !sink
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!(
                    "{key}.name = {:?}: use letters, digits, '-' and '_'",
                    sink.name
                );
            }
            if !names.insert(&sink.name) {
                bail!("{key}.name = {:?}: another sink has this name", sink.name);
            }
            match sink.kind.as_str() {
                "webhook" | "alertmanager" | "falco" => {
                    let Some(url) = sink.url.as_ref().map(Secret::expose) else {
                        bail!("{key}.url: a {} sink needs a url", sink.kind);
                    };
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        // The URL itself may be a secret (its path or query): never echo it.
                        let scheme = url.split_once("://").map_or("none", |(s, _)| s);
                        bail!(
                            "{key}.url: must be an http:// or https:// URL (its scheme is {scheme:?})"
                        );
                    }
                }
                "file" if sink.path.is_none() => bail!("{key}.path: a file sink needs a path"),
                "kafka" if sink.brokers.is_none() => {
                    bail!("{key}.brokers: a kafka sink needs brokers")
                }
                "kafka" if sink.topic.is_none() => bail!("{key}.topic: a kafka sink needs a topic"),
                "kafka" => {}
                "file" | "stdout" => {}
                other => bail!(
                    "{key}.type = {other:?}: expected stdout, file, webhook, alertmanager, falco or kafka"
                ),
            }
            if let Some(sev) = &sink.min_severity
                && !["info", "low", "medium", "high", "critical"].contains(&sev.as_str())
            {
                bail!("{key}.min_severity = {sev:?}: expected info, low, medium, high or critical");
            }
        }
        if let Some(k) = &self.kafka {
            if k.brokers.trim().is_empty() {
                bail!("kafka.brokers: must name at least one broker");
            }
            if k.topics.is_empty() {
                bail!("kafka.topics: must name at least one topic");
            }
            for (key, c) in k
                .cluster
                .iter()
                .map(|c| ("kafka.cluster".to_owned(), c))
                .chain(
                    k.topic_clusters
                        .iter()
                        .map(|(t, c)| (format!("kafka.topic_clusters.{t}"), c)),
                )
            {
                auditlake_ingest::validate_cluster_name(c).with_context(|| key.clone())?;
            }
            for p in [
                "enable.auto.offset.store",
                "enable.auto.commit",
                "group.id",
                "bootstrap.servers",
            ] {
                if k.properties.contains_key(p) {
                    bail!(
                        "kafka.properties.\"{p}\": set by auditlake (offsets follow durability); use the [kafka] keys"
                    );
                }
            }
        }
        for (i, r) in self.reports.iter().enumerate() {
            let key = format!("reports[{i}]");
            r.schedule(&key)?;
            if let Some(w) = &r.window {
                span(&format!("{key}.window"), w)?;
            }
            for f in r.formats.iter().flatten() {
                f.parse::<auditlake_report::ReportFormat>()
                    .map_err(|e| anyhow::anyhow!("{key}.formats: {e}"))?;
            }
        }
        if let Some(pg) = &self.postgres {
            if pg.tls_cert.is_some() != pg.tls_key.is_some() {
                bail!("postgres.tls_cert and postgres.tls_key must be set together");
            }
            if pg.client_ca.is_some() && pg.tls_cert.is_none() {
                bail!("postgres.client_ca needs postgres.tls_cert and postgres.tls_key");
            }
        }
        if let Some(cluster) = &self.webhook.default_cluster {
            auditlake_ingest::validate_cluster_name(cluster).context("webhook.default_cluster")?;
        }
        let w = &self.webhook;
        if w.tls_cert.is_some() != w.tls_key.is_some() {
            bail!("webhook.tls_cert and webhook.tls_key must be set together");
        }
        if w.client_ca.is_some() && w.tls_cert.is_none() {
            bail!("webhook.client_ca needs webhook.tls_cert and webhook.tls_key (mTLS is TLS)");
        }
        if let (Some(max_body), Some(wal_max)) = (w.max_body_mb, w.wal_max_mb)
            && max_body as u64 > wal_max
        {
            bail!(
                "webhook.max_body_mb = {max_body} exceeds webhook.wal_max_mb = {wal_max}: no body could ever be accepted"
            );
        }
        Ok(())
    }

    /// Compaction settings; the writer's encoding settings apply to merged files.
    pub fn compact_options(
        &self,
        writer: auditlake_ingest::WriterOptions,
    ) -> auditlake_ingest::CompactOptions {
        let c = &self.compaction;
        let d = auditlake_ingest::CompactOptions::default();
        auditlake_ingest::CompactOptions {
            small_file_bytes: c.small_file_mb.map_or(d.small_file_bytes, |mb| mb << 20),
            min_small_files: c.min_small_files.unwrap_or(d.min_small_files),
            min_age_secs: c.min_age_minutes.map_or(d.min_age_secs, |m| m * 60),
            writer,
        }
    }

    /// A path from the config file, relative to the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The lake directory: flag/env, else `lake.path`, else `./lake`.
    pub fn lake_path(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| self.lake.path.clone())
            .unwrap_or_else(|| PathBuf::from("lake"))
    }

    /// The lake (`--lake`, else `lake.path`, else `./lake`): a local directory or an
    /// object-store URL with `[lake.storage]`.
    /// The retention policy of `[retention]` (keep everything when the section is absent).
    pub fn retention_policy(
        &self,
    ) -> anyhow::Result<auditlake_ingest::lake::retention::RetentionPolicy> {
        use auditlake_ingest::lake::retention::{Hold, RetentionPolicy};
        let mut policy = RetentionPolicy::default();
        let Some(r) = &self.retention else {
            return Ok(policy);
        };
        if r.days == Some(0) {
            bail!("retention.days = 0: must be at least 1 (leave it out to keep events forever)");
        }
        for (cluster, days) in &r.clusters {
            auditlake_ingest::lake::validate_cluster_name(cluster)
                .with_context(|| format!("retention.clusters.{cluster}"))?;
            if *days == 0 {
                bail!("retention.clusters.{cluster} = 0: must be at least 1");
            }
        }
        for (i, h) in r.holds.iter().enumerate() {
            auditlake_ingest::lake::validate_cluster_name(&h.cluster)
                .with_context(|| format!("retention.holds[{i}].cluster"))?;
            if h.reason.trim().is_empty() {
                bail!(
                    "retention.holds[{i}].reason: say why {} is held (a case or ticket), it is recorded",
                    h.cluster
                );
            }
            policy.holds.push(Hold {
                cluster: h.cluster.clone(),
                reason: h.reason.clone(),
            });
        }
        policy.days = r.days;
        policy.cluster_days = r.clusters.clone();
        if let Some(grace) = &r.vacuum_grace {
            policy.vacuum_grace = span("retention.vacuum_grace", grace)?;
        }
        Ok(policy)
    }

    /// How often `serve` runs retention and the vacuum; `None` when it should not (`0s`). It
    /// runs without `[retention]` too: nothing expires then, but the files compaction replaced
    /// are deleted once `vacuum_grace` has passed, and only this job deletes them.
    pub fn retention_interval(&self) -> anyhow::Result<Option<std::time::Duration>> {
        let every = match self.retention.as_ref().and_then(|r| r.interval.as_ref()) {
            Some(s) => span("retention.interval", s)?,
            None => chrono::TimeDelta::hours(1),
        };
        Ok((every > chrono::TimeDelta::zero()).then(|| every.to_std().expect("non-negative")))
    }

    /// The read cache of object-store lakes (`[query] cache_dir`, `cache_mb`).
    pub fn read_cache(&self) -> Option<auditlake_ingest::lake::cache::CacheConfig> {
        let mut cache = auditlake_ingest::lake::cache::CacheConfig::default();
        if let Some(dir) = &self.query.cache_dir {
            cache.dir = self.resolve(dir);
        }
        match self.query.cache_mb {
            Some(0) => None,
            Some(mb) => Some(auditlake_ingest::lake::cache::CacheConfig {
                max_bytes: mb << 20,
                ..cache
            }),
            None => Some(cache),
        }
    }

    pub fn lake(&self, flag: Option<&Path>) -> anyhow::Result<auditlake_ingest::Lake> {
        let path = self.lake_path(flag);
        let spec = path
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("lake path {} is not valid UTF-8", path.display()))?;
        let staging = self.lake.staging_dir.as_deref().map(|d| self.resolve(d));
        Ok(auditlake_ingest::Lake::open_staged(
            spec,
            &exposed(&self.lake.storage),
            staging.as_deref(),
        )?)
    }
}

/// Store settings as `object_store` takes them: the secrets' values, in memory only.
pub fn exposed(storage: &BTreeMap<String, Secret>) -> std::collections::HashMap<String, String> {
    storage
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect()
}

impl Config {
    /// The query engine: `--engine` (`flag`) over `[query] engine`, local by default.
    pub fn engine(&self, flag: Option<&str>) -> anyhow::Result<auditlake_query::Engine> {
        let (key, value) = match (flag, &self.query.engine) {
            (Some(v), _) => ("--engine", v),
            (None, Some(v)) => ("query.engine", v.as_str()),
            (None, None) => return Ok(auditlake_query::Engine::Local),
        };
        auditlake_query::Engine::parse(value).with_context(|| key.to_owned())
    }
}

/// A span (`90m`, `1h30m`, `7d`, `0s`) of config key or flag `key`.
pub(crate) fn span(key: &str, value: &str) -> anyhow::Result<chrono::TimeDelta> {
    auditlake_detect::rule::parse_duration(value).map_err(|e| {
        anyhow::anyhow!("{key} = {value:?}: {e}; expected a span like 90m, 1h30m or 7d")
    })
}

#[cfg(test)]
mod tests;
