//! Queries executed on an Apache Ballista cluster (`--engine ballista://HOST:PORT`).
//!
//! Three processes see a query: the client plans it logically (the lake session of
//! [`crate::open_lake_at`], upgraded for Ballista), the scheduler decodes that plan and plans it
//! physically, executors run the stages. Everything here is shared by the three, so they agree:
//!
//! * [`cluster_state`]: the session of the scheduler, and the function registry of executors —
//!   DataFusion's functions, the JSON functions, auditlake's UDFs and `date_trunc` override, the
//!   read-only planner.
//! * [`LakeCodec`]: the lake's Delta tables cross the wire as `(table, lake URL)` only — no
//!   storage options, so no secrets — and the scheduler reads them as a plain Parquet scan of the
//!   committed snapshot (delta-rs' scan has no wire form; DataFusion's Parquet scan has one).
//! * [`LakeStores`]: the object store of the lake's bucket, built from each process's own
//!   configuration and environment (`[lake.storage]`, `AWS_*`).
//!
//! What cannot run on the cluster is refused before anything is submitted, naming it: a table
//! other than the lake's Delta tables (`audit_events`, `findings`, `retention_log`; the views
//! over them, `findings` and `incidents` included, are inlined into the plan), a function the
//! cluster does not have. There is no local fallback: that would pull the lake
//! through the one machine the cluster is there to spare.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use auditlake_ingest::lake::{AUDIT_EVENTS_DIR, FINDINGS_DIR, RETENTION_LOG_DIR};
use ballista_core::extension::{
    SessionConfigExt, SessionStateExt, ballista_aggregate_functions, ballista_scalar_functions,
    ballista_window_functions,
};
use ballista_core::planner::{BallistaQueryPlanner, scans_only_information_schema};
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::TableReference;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan};
use datafusion::object_store::ObjectStore;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::protobuf::LogicalPlanNode;
use url::Url;

use crate::delta_table::LiveDeltaTable;
use crate::readonly::{ReadOnlyPlanner, refuse_writes};

/// The scheduler port when `ballista://HOST` names none (Ballista's default).
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// Where a session's queries run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    /// In this process (the default).
    #[default]
    Local,
    /// On the Ballista cluster whose scheduler is at `host:port`.
    Ballista { host: String, port: u16 },
}

#[derive(Debug, thiserror::Error)]
#[error(
    "engine {value:?}: {reason}; expected `local` or `ballista://HOST:PORT` (the scheduler of `auditlake ballista scheduler`)"
)]
pub struct BadEngine {
    value: String,
    reason: String,
}

impl Engine {
    /// `local`, or `ballista://HOST[:PORT]` — the one parser of `--engine` and `[query] engine`.
    pub fn parse(value: &str) -> std::result::Result<Engine, BadEngine> {
        let bad = |reason: &str| BadEngine {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = value.trim();
        if trimmed.eq_ignore_ascii_case("local") {
            return Ok(Engine::Local);
        }
        let url = Url::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "ballista" {
            return Err(bad(&format!("unknown scheme {}://", url.scheme())));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no scheduler host"))?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(bad("only a host and a port may follow ballista://"));
        }
        Ok(Engine::Ballista {
            host: host.to_owned(),
            port: url.port().unwrap_or(DEFAULT_SCHEDULER_PORT),
        })
    }

    /// The scheduler's gRPC URL.
    fn scheduler_url(host: &str, port: u16) -> String {
        format!("http://{host}:{port}")
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Local => f.write_str("local"),
            Engine::Ballista { host, port } => write!(f, "ballista://{host}:{port}"),
        }
    }
}

/// The session a cluster process plans and runs queries with: what [`crate::open_lake_at`]
/// registers locally, minus tables (they come inside each plan) and views (inlined into plans
/// on the client). Used by the scheduler for every job's session and, as a function registry,
/// by executors to decode their tasks.
pub fn cluster_state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> Result<SessionState> {
    use datafusion::execution::FunctionRegistry;
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_optimizer_rules(optimizer_rules())
        .with_scalar_functions(ballista_scalar_functions())
        .with_aggregate_functions(ballista_aggregate_functions())
        .with_window_functions(ballista_window_functions())
        // A plan that writes (`COPY … TO`, `INSERT`) is refused here too: the scheduler's port
        // accepts plans from any client, not only from auditlake's guarded one.
        .with_query_planner(Arc::new(ReadOnlyPlanner))
        .with_table_factories(Default::default())
        .build();
    datafusion_functions_json::register_all(&mut state)?;
    for udf in crate::udf::udfs() {
        state.register_udf(Arc::new(udf))?;
    }
    Ok(state)
}

/// Ballista's logical rules, then auditlake's (as a local session orders them).
fn optimizer_rules() -> Vec<Arc<dyn datafusion::optimizer::OptimizerRule + Send + Sync>> {
    let mut rules = ballista_core::optimizer::ballista_default_optimizer_rules();
    rules.push(Arc::new(crate::filter_order::OrderFiltersBySelectivity));
    rules
}

/// What this build's cluster session registers, built once: its scalar function names (and
/// aliases), which the client checks plans against, and the build fingerprint derived from all
/// its function names.
struct ClusterFunctions {
    scalar: HashSet<String>,
    fingerprint: String,
}

fn cluster_functions_of_this_build() -> &'static ClusterFunctions {
    static FUNCTIONS: LazyLock<ClusterFunctions> = LazyLock::new(|| {
        use sha2::{Digest, Sha256};
        let state = cluster_state(SessionConfig::new_with_ballista(), Arc::default())
            .expect("the cluster session builds");
        let mut names: Vec<String> = state
            .scalar_functions()
            .keys()
            .map(|n| format!("scalar:{n}"))
            .chain(
                state
                    .aggregate_functions()
                    .keys()
                    .map(|n| format!("aggregate:{n}")),
            )
            .chain(
                state
                    .window_functions()
                    .keys()
                    .map(|n| format!("window:{n}")),
            )
            .collect();
        names.sort();
        let digest = Sha256::digest(names.join("\n").as_bytes());
        ClusterFunctions {
            scalar: state.scalar_functions().keys().cloned().collect(),
            fingerprint: format!(
                "{}+{}",
                env!("CARGO_PKG_VERSION"),
                hex::encode(&digest[..8])
            ),
        }
    });
    &FUNCTIONS
}

/// Names (and aliases) of the scalar functions a cluster of this auditlake version has.
fn cluster_functions() -> &'static HashSet<String> {
    &cluster_functions_of_this_build().scalar
}

/// What a client and a cluster must agree on to run each other's plans: auditlake's version
/// and a digest of the cluster session's function names (scalar, aggregate, window). The client
/// checks a plan's functions against its own list ([`check_distributable`]), so a cluster built
/// from other code must be refused before it fails a task obscurely — or runs a function of the
/// same name that does something else. `0.1.0+1a2b3c4d5e6f7a8b`.
pub fn build_fingerprint() -> &'static str {
    &cluster_functions_of_this_build().fingerprint
}

/// The client session: `state` upgraded for Ballista, planning through [`ClusterPlanner`].
/// Functions, tables and views are registered by the caller afterwards — the upgrade replaces
/// the whole scalar-function map, so anything registered before it would be lost.
pub(crate) fn client_state(
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    host: &str,
    port: u16,
) -> Result<SessionState> {
    let url = Engine::scheduler_url(host, port);
    let codec: Arc<dyn LogicalExtensionCodec> = Arc::new(LakeCodec::client());
    // The static planner: with Ballista 55's adaptive planner (its default) a job whose
    // executor is killed mid-stage never finishes — the lost stages are rolled back, then the
    // surviving executor's status update finds no active stage and the job waits forever.
    // The static planner re-runs the lost tasks and completes (the e2e kill test).
    let config = config
        .upgrade_for_ballista()
        .with_ballista_adaptive_query_planner(false);
    let planner = ClusterPlanner {
        inner: BallistaQueryPlanner::with_extension(
            url.clone(),
            config.ballista_config(),
            codec.clone(),
        ),
    };
    let config = config
        .with_ballista_logical_extension_codec(codec)
        .with_ballista_query_planner(Arc::new(planner));
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .build()
        .upgrade_for_ballista(url)?;
    // As the local session: no table factories, so no `CREATE EXTERNAL TABLE` over local files.
    Ok(SessionStateBuilder::new_from_existing(state)
        .with_table_factories(Default::default())
        .build())
}

/// The client's planner: refuses writes and what the cluster cannot run, then hands the plan
/// to Ballista's planner (which submits it to the scheduler).
#[derive(Debug)]
struct ClusterPlanner {
    inner: BallistaQueryPlanner<LogicalPlanNode>,
}

#[async_trait]
impl QueryPlanner for ClusterPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        refuse_writes().verify_plan(plan)?;
        check_distributable(plan, cluster_functions())?;
        self.inner.create_physical_plan(plan, session).await
    }
}

/// Fails naming the first table or function of `plan` the cluster cannot run.
/// `information_schema`-only plans run locally (Ballista's planner does that itself).
pub(crate) fn check_distributable(plan: &LogicalPlan, functions: &HashSet<String>) -> Result<()> {
    if scans_only_information_schema(plan)? {
        return Ok(());
    }
    let mut problem: Option<String> = None;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let provider = source_as_provider(&scan.source)?;
            if provider.downcast_ref::<LiveDeltaTable>().is_none() {
                // A view over a table read with `read_table` scans `?table?`: name its files.
                let files = provider
                    .downcast_ref::<datafusion::datasource::listing::ListingTable>()
                    .and_then(|t| t.table_paths().first())
                    .map(|p| format!(" (the files under {p})"))
                    .unwrap_or_default();
                problem = Some(format!(
                    "table `{}`{files} is not one of the lake's Delta tables (audit_events, findings, retention_log) and cannot be read by the Ballista cluster; run this query with the local engine (--engine local)",
                    scan.table_name
                ));
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && !functions.contains(f.name())
                {
                    problem = Some(format!(
                        "function `{}` is not registered on the Ballista cluster; run this query with the local engine (--engine local)",
                        f.name()
                    ));
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if problem.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    match problem {
        Some(p) => Err(DataFusionError::Plan(p)),
        None => Ok(()),
    }
}

/// An encoded table starts with this and the encoding's version (then a newline):
/// `auditlake-delta-table/2\n{build fingerprint}\n{table directory}\n{lake URL}`.
/// Version 1 (no fingerprint) was written by auditlake before clusters checked builds.
const TABLE_MAGIC_PREFIX: &str = "auditlake-delta-table/";
const TABLE_ENCODING: &str = "2";

/// Encodes the lake's Delta tables as `(table, lake URL)`; everything else goes to Ballista's
/// own codec. On the scheduler ([`LakeCodec::serving`]) it decodes them into the scheduler's
/// provider of that table, reading through the scheduler's own storage settings.
pub struct LakeCodec {
    inner: BallistaLogicalExtensionCodec,
    serving: Option<Serving>,
}

struct Serving {
    lake_url: Url,
    options: HashMap<String, String>,
    /// One provider per table, so its snapshot is updated incrementally across queries.
    tables: Mutex<HashMap<String, Arc<LiveDeltaTable>>>,
}

/// By hand: `options` may hold credentials.
impl std::fmt::Debug for LakeCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeCodec")
            .field("lake", &self.serving.as_ref().map(|s| s.lake_url.as_str()))
            .finish()
    }
}

impl LakeCodec {
    /// A client's codec: encodes only.
    pub fn client() -> LakeCodec {
        LakeCodec {
            inner: BallistaLogicalExtensionCodec::default(),
            serving: None,
        }
    }

    /// The scheduler's codec for the lake at `lake_url` (`s3://bucket/prefix/`, `file:///…/`),
    /// whose tables it opens with the storage `options`.
    pub fn serving(lake_url: Url, options: HashMap<String, String>) -> LakeCodec {
        LakeCodec {
            inner: BallistaLogicalExtensionCodec::default(),
            serving: Some(Serving {
                lake_url,
                options,
                tables: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// `(table directory, lake URL)` of an encoded table (`text` after [`TABLE_MAGIC_PREFIX`]),
/// refusing one encoded by another auditlake build, naming both builds.
fn check_build<'a>(text: &'a str, table_ref: &TableReference) -> Result<(&'a str, &'a str)> {
    let ours = build_fingerprint();
    let mismatch = |theirs: &str| {
        DataFusionError::Plan(format!(
            "this Ballista cluster runs auditlake {ours}, the client {theirs}: run the same auditlake build on the client, the scheduler and every executor (their function lists differ, so the client cannot tell what the cluster can run)"
        ))
    };
    let mut lines = text.splitn(4, '\n');
    let encoding = lines.next().unwrap_or_default();
    if encoding != TABLE_ENCODING {
        return Err(mismatch(&format!(
            "an auditlake build that encodes tables in format {encoding}"
        )));
    }
    match (lines.next(), lines.next(), lines.next()) {
        (Some(build), _, _) if build != ours => Err(mismatch(build)),
        (Some(_), Some(table), Some(lake)) => Ok((table, lake)),
        _ => Err(DataFusionError::Plan(format!(
            "malformed table `{table_ref}` in the plan"
        ))),
    }
}

/// `(table directory, lake URL)` of a table URL `<lake>/<table>/`.
fn split_table_url(url: &Url) -> Option<(String, Url)> {
    let table = url
        .path_segments()?
        .rev()
        .find(|s| !s.is_empty())?
        .to_owned();
    let lake = url.join("../").ok()?;
    Some((table, lake))
}

impl LogicalExtensionCodec for LakeCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let Some(text) = std::str::from_utf8(buf)
            .ok()
            .and_then(|t| t.strip_prefix(TABLE_MAGIC_PREFIX))
        else {
            return self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let Some(serving) = &self.serving else {
            return Err(DataFusionError::Internal(
                "a client codec cannot decode the lake's tables".into(),
            ));
        };
        let (table, lake) = check_build(text, table_ref)?;
        if lake != serving.lake_url.as_str() {
            return Err(DataFusionError::Plan(format!(
                "this Ballista cluster serves the lake {}, the query reads `{table_ref}` of the lake {lake}: point --engine at that lake's cluster",
                serving.lake_url
            )));
        }
        if ![AUDIT_EVENTS_DIR, FINDINGS_DIR, RETENTION_LOG_DIR].contains(&table) {
            return Err(DataFusionError::Plan(format!(
                "unknown table `{table}` of the lake in the plan (a newer auditlake client?)"
            )));
        }
        let mut tables = serving.tables.lock().unwrap_or_else(|p| p.into_inner());
        let provider = tables.entry(table.to_owned()).or_insert_with(|| {
            let url = serving
                .lake_url
                .join(&format!("{table}/"))
                .expect("a table directory joins onto the lake URL");
            Arc::new(
                LiveDeltaTable::new(url, serving.options.clone(), schema.clone())
                    .with_plain_parquet_scan(),
            )
        });
        if provider.schema().fields() != schema.fields() {
            return Err(DataFusionError::Plan(format!(
                "the client reads `{table_ref}` with another schema than this cluster: client and cluster run different auditlake versions"
            )));
        }
        Ok(provider.clone())
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(table) = node.downcast_ref::<LiveDeltaTable>() else {
            return self.inner.try_encode_table_provider(table_ref, node, buf);
        };
        let (dir, lake) = split_table_url(table.url()).ok_or_else(|| {
            DataFusionError::Internal(format!("table URL {} has no directory", table.url()))
        })?;
        let build = build_fingerprint();
        buf.extend_from_slice(
            format!("{TABLE_MAGIC_PREFIX}{TABLE_ENCODING}\n{build}\n{dir}\n{lake}").as_bytes(),
        );
        Ok(())
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }
}

/// The object stores of a cluster process: the local file system and the lake's bucket, built
/// lazily from this process's storage settings and environment, data reads through the local
/// read cache. Any other bucket is an error naming it.
pub struct LakeStores {
    lake_url: Url,
    options: HashMap<String, String>,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

/// By hand: `options` may hold credentials.
impl std::fmt::Debug for LakeStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeStores")
            .field("lake", &self.lake_url.as_str())
            .finish()
    }
}

impl LakeStores {
    pub fn new(lake_url: Url, options: HashMap<String, String>) -> LakeStores {
        LakeStores {
            lake_url,
            options,
            stores: Mutex::new(HashMap::new()),
        }
    }
}

/// `scheme://host`: what one store serves.
fn store_key(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
}

impl ObjectStoreRegistry for LakeStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(store_key(url), store)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = store_key(url);
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = stores.get(&key) {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = if url.scheme() == "file" {
            Arc::new(LocalFileSystem::new())
        } else if key == store_key(&self.lake_url) {
            let store = auditlake_ingest::lake::store::build_store(&self.lake_url, &self.options)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            auditlake_ingest::lake::cache::wrap(store)
        } else {
            return Err(DataFusionError::Plan(format!(
                "this Ballista process serves the lake {}, not {key}",
                self.lake_url
            )));
        };
        stores.insert(key, store.clone());
        Ok(store)
    }
}

#[cfg(test)]
mod tests;
