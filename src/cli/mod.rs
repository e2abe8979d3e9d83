//! Command-line interface (clap derive). Every flag that has a config-file key can also be set
//! by an environment variable; precedence is flag > environment > config file > default.

use std::path::PathBuf;

use auditlake_query::OutputFormat;
use clap::{Args, Parser, Subcommand};

mod ballista;
pub use ballista::*;

#[derive(Debug, Parser)]
#[command(
    name = "auditlake",
    version,
    about = "Kubernetes audit-log analytics: ingest audit events into a Parquet lake and query it with SQL",
    after_help = "Exit codes: 0 success · 1 findings reported (detect) · 2 error of the caller (bad input, bad SQL, config, usage) · 3 error of the environment (I/O, disk, lake locked, store or broker unreachable: retrying may work) · 4 internal error (a bug)."
)]
pub struct Cli {
    /// Configuration file (TOML; see samples/auditlake.toml).
    #[arg(long, global = true, env = "AUDITLAKE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log lines on stderr: `text` (`<time> <LEVEL> <event> key=value ...`) or `json` (one object
    /// per line: timestamp, level, target, event, fields). Which lines: AUDITLAKE_LOG, an
    /// EnvFilter such as `info,librdkafka=debug` (default `warn,auditlake=info`).
    // ASCII only: the man page is generated from this text and groff warns on `…`.
    #[arg(
        long,
        global = true,
        env = "AUDITLAKE_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl From<LogFormat> for auditlake_server::log::Format {
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Text => Self::Text,
            LogFormat::Json => Self::Json,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest audit.log files (plain or .gz), directories of rotated logs, or stdin (`-`).
    Ingest(IngestArgs),
    /// Run one SQL statement over the lake.
    Query(QueryArgs),
    /// Run the detection rules over the lake and print findings (exit 1 when there are any).
    Detect(DetectArgs),
    /// List, check or test the detection rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Print the description of the `audit_events` and `findings` tables (Markdown, or JSON).
    Schema(SchemaArgs),
    /// Merge the small files of closed partitions (streaming flushes leave many) into large ones,
    /// atomically: readers never see a row twice or miss one.
    Compact(CompactArgs),
    /// Check the lake's tamper evidence: walk the commit hash chain and re-hash every data file
    /// (exit 0 intact, 1 with the list of what was modified, deleted or injected, 2 on error).
    Verify(VerifyArgs),
    /// Verify the lake, then sign its head with an ed25519 key ([seal] key) and print the seal:
    /// kept outside the bucket, it lets `verify --seal` show deleted or rewritten newest commits.
    Seal(SealArgs),
    /// Remove whole partitions past their cluster's retention period ([retention]; legal holds
    /// keep a cluster), delete files removed longer ago than the vacuum grace, and record both
    /// in the `retention_log` table.
    Retention(RetentionArgs),
    /// Turn a lake written before the Delta table format (Hive-style Parquet directories) into
    /// the Delta table in place: a log over the existing files, no rewrite. Idempotent.
    Migrate(MigrateArgs),
    /// Run the long-lived service: the kube-apiserver audit webhook receiver (see [webhook]).
    Serve(ServeArgs),
    /// Render a compliance report (reports/*.toml) over a time window: Markdown, HTML, JSON, CSV.
    Report(ReportArgs),
    /// Interactive SQL over the lake: history, multi-line statements, `\d` to describe tables.
    Shell(ShellArgs),
    /// What one user, object or address did, in time order, as a readable story.
    Timeline(TimelineArgs),
    /// Run a node of an Apache Ballista cluster over the lake: the scheduler, or an executor;
    /// `--engine ballista://HOST:PORT` then runs queries, detections and reports on it.
    Ballista {
        #[command(subcommand)]
        command: BallistaCommand,
    },
    /// Serve the lake read-only over the PostgreSQL wire protocol (psql, Grafana, BI tools).
    Pg(PgArgs),
    /// Print a `[postgres] users_file` line for USER: a SCRAM-SHA-256 verifier of the password
    /// read from stdin (asked twice, without echo, on a terminal). The password is not stored.
    PgPasswd(PgPasswdArgs),
    /// Print a shell completion script: `auditlake completions bash > /etc/bash_completion.d/auditlake`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff; `auditlake man | man -l -`), or write one page per command.
    Man(ManArgs),
    /// Generate a realistic, deterministic audit log (benchmark volume or samples).
    Generate(GenerateArgs),
    /// Load-test a running webhook: concurrent senders POST EventLists; prints events/s and
    /// latency percentiles (a benchmark tool, see benches/).
    BenchWebhook(BenchWebhookArgs),
}

/// Developer tools: hidden from the operator's command list and listed apart at the end of
/// `--help` (clap has one heading for all subcommands, so they cannot get a heading of their own).
pub const DEV_TOOLS: [&str; 2] = ["generate", "bench-webhook"];

/// The command line as parsed, shown by `--help`, completions and the man page: the derived
/// definition with the developer tools moved out of the operator's list.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut section =
        String::from("Developer tools (benchmarks and sample data; `auditlake help <tool>`):");
    for name in DEV_TOOLS {
        let about = cmd
            .find_subcommand(name)
            .and_then(|c| c.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        // Its first clause: a line clap's wrapping leaves whole (it wraps this text unindented).
        let about = about.split([':', ';']).next().unwrap_or_default().trim();
        section.push_str(&format!("\n  {name:<15} {about}"));
        cmd = cmd.mut_subcommand(name, |c| c.hide(true));
    }
    let after = cmd
        .get_after_help()
        .map(|a| a.to_string())
        .unwrap_or_default();
    cmd.after_help(format!("{section}\n\n{after}"))
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// One JSON object per table (name, schema version, columns with type, nullability,
    /// source and meaning) instead of Markdown.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `auditlake.1` and one `auditlake-<command>.1` per command into DIR instead of
    /// printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    /// Only hours that ended at least this long ago (`90m`, `2h`, `0s`) [config:
    /// compaction.min_age_minutes] [default: 1h]
    #[arg(long, value_name = "SPAN")]
    pub min_age: Option<String>,

    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    /// Re-hash only files committed since this time (RFC 3339, or a span back from now such as
    /// `24h`); the commit chain is always checked whole.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Report data files that no commit names only when older than this span (younger ones
    /// may be uploads whose commit is in flight) [default: 15m]
    #[arg(long, value_name = "SPAN")]
    pub grace: Option<String>,

    /// A seal from `auditlake seal` (repeatable): each sealed commit must still be in the log
    /// with the same bytes. Its signature is checked with --public-key.
    #[arg(long, value_name = "FILE")]
    pub seal: Vec<PathBuf>,

    /// The ed25519 public key (64 hex digits) seals must be signed with [config: seal.public_key]
    #[arg(long, value_name = "HEX")]
    pub public_key: Option<String>,

    /// Start at the newest checkpoint a --seal vouches for instead of at version 0: the walk
    /// then costs the commits since that seal, not the table's whole history.
    #[arg(long, requires = "seal")]
    pub from_seal: bool,

    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SealArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    /// The ed25519 private key: a file as --generate-key writes it [config: seal.key]
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Write a new private key to FILE (created with mode 0600, never overwritten; `-` prints
    /// it), print its public key, and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "key")]
    pub generate_key: Option<PathBuf>,

    /// Re-hash only files committed since this time before sealing (RFC 3339, or a span such as
    /// `24h`); the commit chain is always walked whole.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Verify from the previous seal (kept in the lake, `_state/seal.json`, and checked with this
    /// key) rather than from version 0; without one, or if it does not verify, from version 0.
    #[arg(long)]
    pub incremental: bool,
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    /// Say what would be removed and deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// Decide expiry as if it were this time (RFC 3339); for rehearsing a policy. The vacuum
    /// grace is always measured from the real clock.
    #[arg(long, value_name = "TIME", hide = true)]
    pub as_of: Option<String>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub lake: LakeArg,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    /// Listen address [config: webhook.listen] [default: 127.0.0.1:8443]
    #[arg(long, env = "AUDITLAKE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Server certificate chain, PEM: serve HTTPS [config: webhook.tls_cert]
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Server private key, PEM [config: webhook.tls_key]
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Verify client certificates against this CA, PEM (mTLS) [config: webhook.client_ca]
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,

    /// Bearer tokens, one `token,cluster` per line [config: webhook.tokens_file]
    #[arg(long, value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Cluster for `POST /audit` without a name [config: webhook.default_cluster] [default: default]
    #[arg(long, value_name = "NAME")]
    pub default_cluster: Option<String>,
}

/// A time window and clusters: every command that reads a slice of the lake.
#[derive(Debug, Args, Clone, Default)]
pub struct ScopeArgs {
    /// Window start: RFC 3339 time, or a span back from now (`24h`, `7d`). Default: all events.
    #[arg(long, value_name = "T")]
    pub since: Option<String>,

    /// Window end (exclusive): RFC 3339 time or a span back from now. Default: no end.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,

    /// Only these clusters (repeatable).
    #[arg(long = "cluster", value_name = "NAME")]
    pub clusters: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Report id (a file `<id>.toml` in the reports directory); omit with --list.
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,

    #[command(flatten)]
    pub lake: LakeArg,

    #[command(flatten)]
    pub engine: EngineArg,

    #[command(flatten)]
    pub scope: ScopeArgs,

    /// md, html, json or csv [default: md, or from --out's extension]
    #[arg(long, short)]
    pub format: Option<auditlake_report::ReportFormat>,

    /// Write to FILE instead of stdout (atomically: a reader never sees half a report).
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Only this section (for CSV: one clean table).
    #[arg(long, value_name = "ID")]
    pub section: Option<String>,

    /// Report definitions added to the built-in ones (same id replaces) [config: report.reports_dir]
    #[arg(long, env = "AUDITLAKE_REPORTS", value_name = "DIR")]
    pub reports_dir: Option<PathBuf>,

    /// List the reports (id, title, CIS controls) instead of rendering one.
    #[arg(long)]
    pub list: bool,

    /// With --list: one JSON object per report (also `--format json`).
    #[arg(long, requires = "list")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    #[command(flatten)]
    pub engine: EngineArg,

    #[command(flatten)]
    pub scope: ScopeArgs,

    /// Output format to start with (`\format` changes it): table, json or csv.
    #[arg(long, short, default_value = "table")]
    pub format: OutputFormat,

    /// History file [default: ~/.auditlake_history]
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["user", "object", "ip"])))]
pub struct TimelineArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    #[command(flatten)]
    pub engine: EngineArg,

    #[command(flatten)]
    pub scope: ScopeArgs,

    /// Everything this user did (also as the impersonated user).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Everything done to this object: KIND/NAMESPACE/NAME, or KIND/NAME when cluster-scoped
    /// (kind as the resource, e.g. `secrets/prod/db-creds`, `clusterrolebindings/admin-all`).
    #[arg(long, value_name = "KIND/NS/NAME")]
    pub object: Option<String>,

    /// Everything from this client address.
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,

    /// Include routine reads (get/list/watch of non-sensitive resources); by default they are
    /// summarized, not listed.
    #[arg(long)]
    pub all: bool,

    /// At most this many lines.
    #[arg(long, default_value_t = 500)]
    pub limit: usize,

    /// Print the lines as JSON objects instead.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PgArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    /// Listen address [config: postgres.listen] [default: 127.0.0.1:5433]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct PgPasswdArgs {
    /// The SQL user name (what clients give as `user=`).
    pub user: String,

    /// PBKDF2 iterations (at least 4096, PostgreSQL's default).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub iterations: u32,
}

#[derive(Debug, Args)]
pub struct BenchWebhookArgs {
    /// Webhook URL, e.g. http://127.0.0.1:8443/audit/bench
    #[arg(long)]
    pub url: String,

    /// Concurrent senders.
    #[arg(long, default_value_t = 8)]
    pub senders: usize,

    /// Events per POST (kube-apiserver's default batch is 400).
    #[arg(long, default_value_t = 400)]
    pub batch: usize,

    /// How long to send.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,

    /// Total events per second to aim for (default: as fast as the server answers).
    #[arg(long)]
    pub rate: Option<f64>,

    /// Bearer token to send.
    #[arg(long)]
    pub token: Option<String>,

    /// CA certificate (PEM) to trust for https URLs.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RulesDirArg {
    /// Rules added to the built-in pack; a rule with a built-in rule's id replaces it
    /// [config: detect.rules_dir]
    #[arg(long, env = "AUDITLAKE_RULES", value_name = "DIR")]
    pub rules_dir: Option<PathBuf>,

    /// Only the rules of --rules-dir, not the pack built into the binary
    /// [config: detect.builtin_rules = false]
    #[arg(long)]
    pub no_builtin_rules: bool,

    /// Only rules whose id contains PATTERN or that cover catalog id PATTERN (e.g. K14).
    #[arg(long = "rules", value_name = "PATTERN")]
    pub pattern: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Table of rules: id, severity, ATT&CK, catalog ids, state (active / disabled / needs a
    /// parameter / warming up until … for first-seen rules whose baseline is still short).
    List {
        #[command(flatten)]
        rules: RulesDirArg,
        #[command(flatten)]
        lake: LakeArg,
        /// One JSON object per rule (id, title, severity, attack, catalog, state, …).
        #[arg(long)]
        json: bool,
    },
    /// Load every rule and plan its SQL against the real schema; errors name the file and line.
    Check {
        #[command(flatten)]
        rules: RulesDirArg,
    },
    /// Run every rule's fixture tests (exit 1 when one fails).
    Test {
        #[command(flatten)]
        rules: RulesDirArg,
    },
    /// The `[[detect.suppressions]]` of the config: what each matches, state (active/expired),
    /// and its hits over the lake (the findings and events it holds back, computed by running
    /// the suppressed rules over the window).
    Suppressions {
        #[command(flatten)]
        rules: RulesDirArg,
        #[command(flatten)]
        lake: LakeArg,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Compile Sigma rules for Kubernetes audit logs (logsource kubernetes/audit) into rule
    /// folders `sigma-<file name>/`; what cannot be compiled is named per rule (exit 1 then).
    ImportSigma {
        /// Sigma files or directories (searched for *.yml / *.yaml).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Where the rule folders go (use it as --rules-dir) [default: ./sigma-rules]
        #[arg(long, value_name = "DIR", default_value = "sigma-rules")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    #[command(flatten)]
    pub engine: EngineArg,

    #[command(flatten)]
    pub rules: RulesDirArg,

    #[command(flatten)]
    pub scope: ScopeArgs,

    /// Output format: table (one line per finding), json (full findings, one per line) or csv.
    #[arg(long, short, default_value = "table")]
    pub format: OutputFormat,

    /// Print how long each rule took to stderr.
    #[arg(long)]
    pub timing: bool,

    /// Retro-hunt: record the findings in the lake's `findings` table, marked `retro-hunt`
    /// (a finding already recorded, e.g. by the scheduler, is not recorded twice).
    #[arg(long)]
    pub store: bool,
}

#[derive(Debug, Args)]
pub struct LakeArg {
    /// Lake directory or object-store URL (s3://bucket/prefix, gs://…, az://…) [config:
    /// lake.path] [default: ./lake]
    #[arg(long, env = "AUDITLAKE_LAKE", value_name = "DIR|URL")]
    pub lake: Option<PathBuf>,
}

/// `--engine`: where a command's SQL runs.
#[derive(Debug, Args)]
pub struct EngineArg {
    /// Where the SQL runs: `local`, or `ballista://HOST:PORT` to execute it on the Ballista
    /// cluster of `auditlake ballista scheduler` [config: query.engine] [default: local]
    #[arg(long, env = "AUDITLAKE_ENGINE", value_name = "ENGINE")]
    pub engine: Option<String>,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    /// Cluster the events belong to [config: ingest.cluster] [default: default]
    #[arg(long, env = "AUDITLAKE_CLUSTER")]
    pub cluster: Option<String>,

    /// Keep Secret `data`/`stringData` values in request/response bodies (redacted by default)
    #[arg(long)]
    pub no_redact_secrets: bool,

    /// No progress bar and no summary.
    #[arg(long, short)]
    pub quiet: bool,

    /// Print the summary as one JSON object (for scripts and benchmarks).
    #[arg(long)]
    pub json: bool,

    /// Read Kafka instead of files, once: join the consumer group, read every assigned
    /// partition up to where it ended when the read started, commit after the lake commit, exit.
    /// Bootstrap servers; TLS/SASL come from `[kafka] properties` [config: kafka.brokers]
    #[arg(long, value_name = "BROKERS", conflicts_with = "inputs")]
    pub kafka: Option<String>,

    /// Topic to read with --kafka (repeatable) [config: kafka.topics]
    #[arg(long = "topic", value_name = "TOPIC", requires = "kafka")]
    pub topics: Vec<String>,

    /// Consumer group for --kafka: the next run continues where this one committed
    /// [default: auditlake-ingest]
    #[arg(long, value_name = "GROUP", requires = "kafka")]
    pub group: Option<String>,

    /// Files, directories or `-` for stdin; or object-store URLs of cloud exports
    /// (`s3://bucket/prefix/`, `gs://…`, `az://…`), read from where the last run stopped
    /// (a checkpoint in the lake) [config: sources.object_store]
    #[arg(required_unless_present = "kafka", value_name = "PATH|URL")]
    pub inputs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    #[command(flatten)]
    pub engine: EngineArg,

    /// Output format: table, json (one object per line) or csv.
    #[arg(long, short, default_value = "table")]
    pub format: OutputFormat,

    /// Print the time the query took to stderr.
    #[arg(long)]
    pub timing: bool,

    /// Run the query this many times on one session (with --timing: one time per run; for
    /// benchmarks). The result is printed once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,

    /// The SQL statement. Tables: audit_events (see `auditlake schema`).
    pub sql: String,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Background events to generate (scenario events come on top).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,

    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Event time of the first event (RFC 3339).
    #[arg(long, default_value = "2026-11-20T08:00:00Z")]
    pub start: String,

    /// Background requests per second of event time.
    #[arg(long, default_value_t = 150.0)]
    pub rate: f64,

    /// Weave the attack scenarios into the traffic (see samples/README.md).
    #[arg(long)]
    pub scenarios: bool,

    /// Mix in benign GitOps and operator behaviour (RBAC reconciles, secret syncs, backups,
    /// denied CRD discovery, people patching Deployments): the noise benchmark's input.
    #[arg(long)]
    pub controllers: bool,

    /// Write here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
}
