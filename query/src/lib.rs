//! Opens an auditlake lake as one DataFusion [`SessionContext`] — the only place a session is
//! built, so the CLI, the shell, detections, reports and network clients all see the same
//! tables, views and functions — and renders results in the output formats.

mod date_trunc;
mod delta_table;
pub mod distributed;
mod filter_order;
pub mod output;
pub mod readonly;
pub mod sqltext;
pub mod udf;
pub mod views;

use std::path::{Path, PathBuf};

use auditlake_ingest::Lake;
use auditlake_ingest::lake::TableKind;
use std::sync::Arc;

use auditlake_schemas::FINDING_COLUMNS;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

pub use distributed::Engine;
pub use output::{OutputFormat, write_batches};
pub use views::VIEWS;

use chrono::{DateTime, Utc};

/// Table names.
pub const AUDIT_EVENTS_TABLE: &str = "audit_events";
/// What retention removed and vacuum deleted (`auditlake retention`).
pub const RETENTION_LOG_TABLE: &str = "retention_log";
/// The whole lake, when `audit_events` is restricted to a [`Scope`].
pub const UNSCOPED_AUDIT_EVENTS_TABLE: &str = "audit_events_unscoped";
/// Every stored revision of every finding (`<lake>/findings/date=…/*.parquet`, on disk or in
/// the lake's bucket).
pub const FINDINGS_HISTORY_TABLE: &str = "findings_history";
/// The latest revision of each finding.
pub const FINDINGS_TABLE: &str = "findings";
/// Findings grouped into incidents.
pub const INCIDENTS_TABLE: &str = "incidents";

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The caller's SQL is wrong (syntax, unknown column, type error): DataFusion's message.
    #[error("{0}")]
    Sql(DataFusionError),
    #[error("no lake at {0} (create one with `auditlake ingest --lake {0} <audit.log>`)")]
    LakeNotFound(PathBuf),
    #[error(
        "the lake {0} was written before auditlake used Delta tables: run `auditlake migrate --lake {0}` once"
    )]
    NeedsMigration(String),
    /// Reading the lake or running the plan failed for a reason that is not the SQL's fault.
    #[error("query execution: {0}")]
    Execution(DataFusionError),
    /// Writing the result failed (the reader went away: `| head`, a full disk). The cause is
    /// the source, so the binary sees an `io::Error` of kind `BrokenPipe` in the chain.
    #[error("writing output")]
    Output(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl QueryError {
    /// Whose fault it is: the caller's SQL or lake path (exit code 2 / HTTP 400), or the lake
    /// and the output the query ran against.
    pub fn fault(&self) -> auditlake_ingest::Fault {
        match self {
            QueryError::Sql(_) | QueryError::LakeNotFound(_) | QueryError::NeedsMigration(_) => {
                auditlake_ingest::Fault::Caller
            }
            QueryError::Execution(_) | QueryError::Output(_) => {
                auditlake_ingest::Fault::Environment
            }
        }
    }

    /// True when the caller's SQL is at fault (exit code 2 / HTTP 400), not the lake.
    pub fn is_caller_fault(&self) -> bool {
        self.fault() == auditlake_ingest::Fault::Caller
    }
}

/// Classifies a DataFusion error by whose fault it is.
pub fn classify(e: DataFusionError) -> QueryError {
    match e.find_root() {
        DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
            QueryError::Sql(e)
        }
        DataFusionError::NotImplemented(_) | DataFusionError::Configuration(_) => {
            QueryError::Sql(e)
        }
        // Errors the query's own expressions raise while running (`CAST('x' AS INT)`, `1/0`):
        // the same query fails the same way on any lake, so it is the query's fault (exit 2),
        // not the environment's. Arrow's I/O and external errors stay the environment's.
        DataFusionError::ArrowError(a, _)
            if matches!(
                **a,
                arrow::error::ArrowError::CastError(_)
                    | arrow::error::ArrowError::ParseError(_)
                    | arrow::error::ArrowError::DivideByZero
                    | arrow::error::ArrowError::ArithmeticOverflow(_)
                    | arrow::error::ArrowError::InvalidArgumentError(_)
            ) =>
        {
            QueryError::Sql(e)
        }
        _ => QueryError::Execution(e),
    }
}

#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Threads a query may use; defaults to the machine's cores.
    pub target_partitions: usize,
    /// Evaluate filters while decoding Parquet pages (late materialization): much faster for
    /// selective forensics queries over wide rows.
    pub pushdown_filters: bool,
    /// Restricts every table and view to a time window and clusters (reports, `--since`).
    pub scope: Scope,
    /// Where queries run: here, or on a Ballista cluster ([`distributed`]).
    pub engine: Engine,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            pushdown_filters: true,
            scope: Scope::default(),
            engine: Engine::Local,
        }
    }
}

/// What a session sees: events with `since <= stage_at < until` of `clusters` (all when empty),
/// and the findings that overlap that window. The default sees the whole lake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub clusters: Vec<String>,
}

impl Scope {
    pub fn is_everything(&self) -> bool {
        self.since.is_none() && self.until.is_none() && self.clusters.is_empty()
    }

    /// Conditions on findings: overlapping the window, of the clusters.
    fn findings_conditions(&self) -> Vec<String> {
        let mut conds = Vec::new();
        if let Some(s) = self.since {
            conds.push(format!("last_event_at >= {}", sqltext::ts_literal(s)));
        }
        if let Some(u) = self.until {
            conds.push(format!("first_event_at < {}", sqltext::ts_literal(u)));
        }
        if !self.clusters.is_empty() {
            let list: Vec<String> = self
                .clusters
                .iter()
                .map(|c| sqltext::quote_str(c))
                .collect();
            conds.push(format!("cluster IN ({})", list.join(", ")));
        }
        conds
    }
}

/// Builds the session over the lake at `lake`: table `audit_events` (Hive-partitioned by
/// `cluster`/`date`/`hour`), the JSON functions
/// (`json_get_str(request_object, 'spec', 'type')`, `->`, `->>`, …) and `information_schema`.
pub async fn open_lake(lake: &Path, opts: &SessionOptions) -> Result<SessionContext, QueryError> {
    if !lake.is_dir() {
        return Err(QueryError::LakeNotFound(lake.to_path_buf()));
    }
    open_lake_at(&Lake::new(lake), opts).await
}

/// [`open_lake`] for a lake anywhere (a local directory or an object-store URL).
pub async fn open_lake_at(
    lake: &Lake,
    opts: &SessionOptions,
) -> Result<SessionContext, QueryError> {
    if !lake.is_remote() && !lake.root().is_dir() {
        return Err(QueryError::LakeNotFound(lake.root().to_path_buf()));
    }
    // A table read beside files an earlier version wrote would hide them: refuse, naming the fix.
    let findings_unmigrated = auditlake_ingest::lake::migrate::findings_need_migration(lake)
        .map_err(|e| QueryError::Execution(DataFusionError::External(Box::new(e))))?;
    if auditlake_ingest::lake::migrate::needs_migration(lake) || findings_unmigrated {
        return Err(QueryError::NeedsMigration(lake.display()));
    }
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(opts.target_partitions.max(1));
    // The generic dialect accepts a trailing comma in a projection, so `SELECT a, cluster FROM t`
    // reads `, cluster` as the start of `CLUSTER BY`; PostgreSQL's dialect has no such quirk and
    // `cluster` is a column of every table.
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    {
        let parquet = &mut config.options_mut().execution.parquet;
        parquet.pushdown_filters = opts.pushdown_filters;
        // Our own order (filter_order.rs) by what usually keeps few audit events; DataFusion's
        // by column size would test `verb` and `response_code` first.
        parquet.reorder_filters = false;
        parquet.enable_page_index = true;
        parquet.bloom_filter_on_read = true;
    }
    // DataFusion caches a table's file list forever by default: a long-lived session (shell,
    // PostgreSQL endpoint, serve's scheduler) would never see files committed after its first
    // query. Listing the lake's directories costs a few milliseconds, so always list. Footers and
    // statistics stay cached: they are keyed by path, size and mtime, and a committed file never
    // changes.
    let runtime = RuntimeEnvBuilder::new()
        .with_object_list_cache_limit(0)
        .build_arc()
        .map_err(QueryError::Execution)?;
    let state = match &opts.engine {
        Engine::Local => {
            readonly::guard(SessionContext::new_with_config_rt(config, runtime).state())
        }
        Engine::Ballista { host, port } => distributed::client_state(config, runtime, host, *port)
            .map_err(QueryError::Execution)?,
    };
    // Functions are registered after the state is built: the Ballista upgrade replaces the
    // whole function map.
    let mut ctx = SessionContext::new_with_state(state);
    ctx.add_optimizer_rule(Arc::new(filter_order::OrderFiltersBySelectivity));
    datafusion_functions_json::register_all(&mut ctx).map_err(QueryError::Execution)?;
    udf::register(&ctx);
    register_audit_events(&ctx, lake, &opts.scope).await?;
    register_findings(&ctx, lake, &opts.scope).await?;
    register_retention_log(&ctx, lake).await?;
    views::register_views(&ctx).await?;
    Ok(ctx)
}

/// `findings_history` (every revision), `findings` (latest revision per finding) and `incidents`.
async fn register_findings(
    ctx: &SessionContext,
    lake: &Lake,
    scope: &Scope,
) -> Result<(), QueryError> {
    // The table's snapshot, never a listing: a findings file no commit names (an upload in
    // flight, a crashed writer's orphan) is not a finding.
    let table = live_table(lake.findings(), TableKind::Findings).await?;
    if scope.is_everything() {
        ctx.register_table(FINDINGS_HISTORY_TABLE, table)
            .map_err(QueryError::Execution)?;
    } else {
        let all = ctx.read_table(table).map_err(QueryError::Execution)?;
        ctx.register_table("findings_history_unscoped", all.into_view())
            .map_err(QueryError::Execution)?;
        let sql = format!(
            "SELECT * FROM findings_history_unscoped{}",
            sqltext::where_clause(&scope.findings_conditions())
        );
        register_view(ctx, FINDINGS_HISTORY_TABLE, &sql).await?;
    }
    let columns: Vec<&str> = FINDING_COLUMNS.iter().map(|c| c.name).collect();
    let latest = format!(
        "SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY finding_id ORDER BY revision DESC) AS latest_rank \
         FROM {FINDINGS_HISTORY_TABLE}) WHERE latest_rank = 1",
        cols = columns.join(", ")
    );
    register_view(ctx, FINDINGS_TABLE, &latest).await?;
    let rank = "CASE severity WHEN 'critical' THEN 5 WHEN 'high' THEN 4 WHEN 'medium' THEN 3 WHEN 'low' THEN 2 ELSE 1 END";
    let incidents = format!(
        "SELECT incident_id, cluster, \
           CASE max({rank}) WHEN 5 THEN 'critical' WHEN 4 THEN 'high' WHEN 3 THEN 'medium' WHEN 2 THEN 'low' ELSE 'info' END AS severity, \
           min(first_event_at) AS first_event_at, max(last_event_at) AS last_event_at, \
           count(*) AS findings, sum(event_count) AS events, \
           array_agg(DISTINCT actor ORDER BY actor) FILTER (WHERE actor IS NOT NULL) AS actors, \
           array_agg(DISTINCT target ORDER BY target) FILTER (WHERE target IS NOT NULL) AS targets, \
           array_agg(rule_id ORDER BY first_event_at, finding_id) AS rules, \
           array_agg(concat(to_char(first_event_at, '%Y-%m-%dT%H:%M:%SZ'), ' ', severity, ' ', rule_id, ': ', summary) ORDER BY first_event_at, finding_id) AS timeline \
         FROM {FINDINGS_TABLE} WHERE incident_id IS NOT NULL GROUP BY incident_id, cluster"
    );
    register_view(ctx, INCIDENTS_TABLE, &incidents).await
}

pub(crate) async fn register_view(
    ctx: &SessionContext,
    name: &str,
    sql: &str,
) -> Result<(), QueryError> {
    let view = ctx
        .sql(sql)
        .await
        .map_err(QueryError::Execution)?
        .into_view();
    ctx.register_table(name, view)
        .map_err(QueryError::Execution)?;
    Ok(())
}

/// A live view of one of the lake's small tables (`findings`, `retention_log`): read as its
/// latest snapshot at each scan, no rows before its first commit.
async fn live_table(
    table: &auditlake_ingest::lake::LakeTable,
    kind: TableKind,
) -> Result<Arc<dyn TableProvider>, QueryError> {
    Ok(Arc::new(delta_table::LiveDeltaTable::new(
        table.url().clone(),
        table.options().clone(),
        delta_table::read_schema(kind)
            .await
            .map_err(QueryError::Execution)?,
    )))
}

/// `retention_log`: what retention removed and vacuum deleted (empty until the first run).
async fn register_retention_log(ctx: &SessionContext, lake: &Lake) -> Result<(), QueryError> {
    let table = live_table(lake.retention_log(), TableKind::RetentionLog).await?;
    ctx.register_table(RETENTION_LOG_TABLE, table)
        .map_err(QueryError::Execution)?;
    Ok(())
}

async fn register_audit_events(
    ctx: &SessionContext,
    lake: &Lake,
    scope: &Scope,
) -> Result<(), QueryError> {
    let mut options = lake.events().options().clone();
    if lake.is_remote() {
        // Data files fetched once into the local cache: a query is hundreds of range reads.
        options.insert(
            auditlake_ingest::lake::store::READ_CACHE_OPTION.to_owned(),
            "true".to_owned(),
        );
    }
    let table = delta_table::LiveDeltaTable::new(
        lake.events().url().clone(),
        options,
        delta_table::read_schema(TableKind::AuditEvents)
            .await
            .map_err(QueryError::Execution)?,
    );
    if scope.is_everything() {
        ctx.register_table(AUDIT_EVENTS_TABLE, Arc::new(table))
            .map_err(QueryError::Execution)?;
        return Ok(());
    }
    ctx.register_table(UNSCOPED_AUDIT_EVENTS_TABLE, Arc::new(table))
        .map_err(QueryError::Execution)?;
    let conds = sqltext::event_window_conditions(scope.since, scope.until, &scope.clusters);
    let sql = format!(
        "SELECT * FROM {UNSCOPED_AUDIT_EVENTS_TABLE}{}",
        sqltext::where_clause(&conds)
    );
    register_view(ctx, AUDIT_EVENTS_TABLE, &sql).await
}

/// What the query entry points (CLI, shell, reports) may run: reads and `SET`, never DDL or
/// DML. DataFusion can `INSERT INTO` a listing table (it would write files into the lake) and
/// `CREATE EXTERNAL TABLE` over any file the process can read; only ingestion writes the lake.
pub fn read_only() -> datafusion::execution::context::SQLOptions {
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
}

/// Plans and runs one read-only SQL statement, collecting the result.
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let df = ctx
        .sql_with_options(sql, read_only())
        .await
        .map_err(classify)?;
    df.collect().await.map_err(classify)
}

/// Plans (without running) a statement: used to check SQL against the real schema.
pub async fn plan_sql(ctx: &SessionContext, sql: &str) -> Result<(), QueryError> {
    ctx.sql_with_options(sql, read_only())
        .await
        .map(|_| ())
        .map_err(classify)
}

#[cfg(test)]
mod tests;

/// Low-cardinality columns the filters of forensics and detections test first. Like every
/// string column of the Delta scan they read as string views (`Utf8View`): a dictionary page
/// decodes into 16-byte views of its dictionary instead of a copy of every value (benchmark Q1,
/// secret reads by people, 31 → 19 ms on 1M events when this was measured on these columns).
#[cfg(test)]
const READ_AS_VIEWS: [&str; 5] = [
    auditlake_schemas::RESOURCE,
    auditlake_schemas::VERB,
    auditlake_schemas::USER_NAME,
    auditlake_schemas::NAMESPACE,
    auditlake_schemas::SUBRESOURCE,
];
