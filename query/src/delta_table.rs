//! `audit_events` as a live view of the lake's Delta table: every scan first brings the snapshot
//! up to date (one listing of `_delta_log/` past the known version), so long-lived sessions (the
//! shell, the PostgreSQL endpoint, serve's scheduler) see each new commit and never a file that
//! no commit names (an upload in flight, an orphan of a crashed writer, a file compaction
//! replaced).
//!
//! Before the first commit there is no table; a reader must not create one (no read interface
//! writes), so scans return no rows until a writer has made it.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use auditlake_ingest::lake::TableKind;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use tokio::sync::Mutex;
use url::Url;

pub struct LiveDeltaTable {
    url: Url,
    options: std::collections::HashMap<String, String>,
    table: Mutex<Option<DeltaTable>>,
    schema: SchemaRef,
    /// Scans are a plain Parquet scan of the snapshot's files instead of delta-rs' own scan:
    /// how the table is read on a Ballista scheduler (see [`crate::distributed`]).
    plain_parquet: bool,
}

impl std::fmt::Debug for LiveDeltaTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveDeltaTable")
            .field("url", &self.url.as_str())
            .finish()
    }
}

fn external(e: DeltaTableError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl LiveDeltaTable {
    /// `schema` is what the table reads as: the Delta table's schema converted by delta-rs
    /// (checked against the snapshot at each scan).
    pub fn new(
        url: Url,
        options: std::collections::HashMap<String, String>,
        schema: SchemaRef,
    ) -> Self {
        LiveDeltaTable {
            url,
            options,
            table: Mutex::new(None),
            schema,
            plain_parquet: false,
        }
    }

    /// The table's URL (`…/audit_events/`).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Scans become a plain Parquet scan (DataFusion's `DataSourceExec`) of exactly the files of
    /// the latest snapshot. delta-rs' own scan plan has no wire form, DataFusion's Parquet scan
    /// has one that Ballista ships to executors as is; executors then need an object store only.
    pub fn with_plain_parquet_scan(mut self) -> Self {
        self.plain_parquet = true;
        self
    }

    /// The table at its latest version, or `None` while no writer has created it.
    async fn latest(&self) -> Result<Option<DeltaTable>> {
        let mut guard = self.table.lock().await;
        match guard.as_mut() {
            Some(t) => t.update_incremental(None).await.map_err(external)?,
            None => {
                let mut t = DeltaTableBuilder::from_url(self.url.clone())
                    .map_err(external)?
                    .with_storage_options(self.options.clone())
                    .build()
                    .map_err(external)?;
                // Checked first: loading a table that is not there yet is an error whose kind
                // differs by store (a missing directory, an empty prefix).
                if !t.verify_deltatable_existence().await.map_err(external)? {
                    return Ok(None);
                }
                match t.load().await {
                    Ok(()) => *guard = Some(t),
                    Err(DeltaTableError::NotATable(_)) => return Ok(None),
                    Err(e) => return Err(external(e)),
                }
            }
        }
        Ok(guard.clone())
    }
}

#[async_trait]
impl TableProvider for LiveDeltaTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Pushed down for partition and file pruning; DataFusion still applies every filter.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(table) = self.latest().await? else {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        };
        if self.plain_parquet {
            return parquet_scan(
                &table,
                &self.url,
                &self.schema,
                state,
                projection,
                filters,
                limit,
            )
            .await;
        }
        table.update_datafusion_session(state).map_err(external)?;
        let scan = table.table_provider().build().await?;
        if scan.schema().fields() != self.schema.fields() {
            return Err(DataFusionError::Execution(format!(
                "the Delta table at {} has schema {:?}, auditlake reads {:?}: the table was changed by another tool",
                self.url,
                scan.schema(),
                self.schema
            )));
        }
        scan.scan(state, projection, filters, limit).await
    }
}

/// Reader features whose files a plain Parquet scan reads as they are: none changes what a
/// data file's bytes mean (column mapping, deletion vectors and type widening do, and are
/// refused by [`check_plain_readable`]).
const PLAIN_READER_FEATURES: [&str; 4] = [
    "timestampNtz",
    "timestampWithoutTimezone",
    "v2Checkpoint",
    "vacuumProtocolCheck",
];

/// Refuses a table whose files a plain Parquet scan would misread. auditlake's tables use none
/// of these features; another tool could turn one on.
fn check_plain_readable(table: &DeltaTable, url: &Url) -> Result<()> {
    let snapshot = table.snapshot().map_err(external)?;
    let protocol = snapshot.protocol();
    let refuse = |what: &str| {
        Err(DataFusionError::NotImplemented(format!(
            "the Delta table at {url} uses {what}, which the distributed (Ballista) scan cannot read: query it with the local engine"
        )))
    };
    if protocol.min_reader_version() == 2 {
        return refuse("column mapping (reader version 2)");
    }
    for feature in protocol.reader_features().unwrap_or_default() {
        let name: &str = feature.as_ref();
        if !PLAIN_READER_FEATURES.contains(&name) {
            return refuse(&format!("the reader feature `{name}`"));
        }
    }
    Ok(())
}

/// The files of `table`'s snapshot as one Parquet scan producing `schema` (projected): file
/// columns from the files, partition columns from the log's partition values. Files whose
/// partition values fail a filter on partition columns only are left out.
async fn parquet_scan(
    table: &DeltaTable,
    url: &Url,
    schema: &SchemaRef,
    state: &dyn Session,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::{DFSchema, ScalarValue};
    use datafusion::config::TableParquetOptions;
    use datafusion::datasource::listing::PartitionedFile;
    use datafusion::datasource::listing::helpers::{
        expr_applicable_for_cols, filter_partitioned_file,
    };
    use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
    use datafusion::datasource::source::DataSourceExec;
    use datafusion::datasource::table_schema::TableSchema;
    use datafusion::object_store::path::Path as StorePath;
    use futures::TryStreamExt;

    check_plain_readable(table, url)?;
    let snapshot = table.snapshot().map_err(external)?;
    let partition_cols: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    // Partition columns come after the file columns in a file scan; `order[i]` is where
    // column `i` of `schema` is in that order.
    let (part_idx, file_idx): (Vec<usize>, Vec<usize>) =
        (0..schema.fields().len()).partition(|&i| partition_cols.contains(schema.field(i).name()));
    if part_idx.len() != partition_cols.len() {
        return Err(DataFusionError::Execution(format!(
            "the Delta table at {url} is partitioned by {partition_cols:?}, not all of which auditlake reads: the table was changed by another tool"
        )));
    }
    let mut order = vec![0; schema.fields().len()];
    for (pos, &i) in file_idx.iter().chain(&part_idx).enumerate() {
        order[i] = pos;
    }
    let file_schema = Arc::new(schema.project(&file_idx)?);
    let part_fields: Vec<_> = part_idx
        .iter()
        .map(|&i| schema.fields()[i].clone())
        .collect();
    let part_schema = DFSchema::try_from(arrow::datatypes::Schema::new(part_fields.clone()))?;
    let part_names: Vec<&str> = part_fields.iter().map(|f| f.name().as_str()).collect();
    let part_filters: Vec<Expr> = filters
        .iter()
        .filter(|f| !part_names.is_empty() && expr_applicable_for_cols(&part_names, f))
        .cloned()
        .collect();

    let table_path =
        StorePath::from_url_path(url.path()).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let mut files = Vec::new();
    let views: Vec<_> = snapshot
        .snapshot()
        .file_views(&table.log_store(), None)
        .try_collect()
        .await
        .map_err(external)?;
    for view in views {
        if view.deletion_vector_descriptor().is_some() {
            return Err(DataFusionError::NotImplemented(format!(
                "the Delta table at {url} has deletion vectors, which the distributed (Ballista) scan cannot apply: query it with the local engine"
            )));
        }
        let values = view.partition_values_map();
        let partition_values = part_fields
            .iter()
            .map(|f| match values.get(f.name()).cloned().flatten() {
                Some(v) => ScalarValue::try_from_string(v, f.data_type()),
                None => ScalarValue::try_from(f.data_type()),
            })
            .collect::<Result<Vec<_>>>()?;
        let rel = view.path();
        let mut file = PartitionedFile::new(String::new(), view.size().max(0) as u64)
            .with_partition_values(partition_values);
        file.object_meta.location = StorePath::from_iter(
            table_path
                .parts()
                .chain(StorePath::from(rel.as_ref()).parts()),
        );
        if let Some(file) = filter_partitioned_file(file, &part_filters, &part_schema)? {
            files.push(file);
        }
    }
    if files.is_empty() {
        let schema = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema.clone(),
        };
        return Ok(Arc::new(EmptyExec::new(schema)));
    }
    let groups = balanced_groups(files, state.config().target_partitions());
    let store_url = store_url(url)?;
    let table_schema = TableSchema::builder(file_schema)
        .with_table_partition_cols(part_fields)
        .build();
    let source = ParquetSource::new(table_schema).with_table_parquet_options(TableParquetOptions {
        global: state.config_options().execution.parquet.clone(),
        ..Default::default()
    });
    let projection: Vec<usize> = match projection {
        Some(p) => p.iter().map(|&i| order[i]).collect(),
        None => order.clone(),
    };
    let config = FileScanConfigBuilder::new(store_url, Arc::new(source))
        .with_file_groups(groups.into_iter().map(|(_, f)| FileGroup::new(f)).collect())
        .with_projection_indices(Some(projection))?
        .with_limit(limit)
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

/// The files in at most `target_partitions` groups of similar bytes: largest first onto the
/// least loaded group.
fn balanced_groups(
    mut files: Vec<datafusion::datasource::listing::PartitionedFile>,
    target_partitions: usize,
) -> Vec<(u64, Vec<datafusion::datasource::listing::PartitionedFile>)> {
    use datafusion::datasource::listing::PartitionedFile;
    files.sort_by(|a, b| {
        b.object_meta
            .size
            .cmp(&a.object_meta.size)
            .then_with(|| a.object_meta.location.cmp(&b.object_meta.location))
    });
    let groups_n = target_partitions.max(1).min(files.len());
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); groups_n];
    for file in files {
        let least = groups
            .iter_mut()
            .min_by_key(|(bytes, _)| *bytes)
            .expect("at least one group");
        least.0 += file.object_meta.size;
        least.1.push(file);
    }
    groups
}

/// The object store of the table at `url`, as DataFusion names it.
fn store_url(url: &Url) -> Result<datafusion::execution::object_store::ObjectStoreUrl> {
    use datafusion::execution::object_store::ObjectStoreUrl;
    Ok(if url.scheme() == "file" {
        ObjectStoreUrl::local_filesystem()
    } else {
        ObjectStoreUrl::parse(format!(
            "{}://{}",
            url.scheme(),
            url.host_str().unwrap_or_default()
        ))?
    })
}

/// The schema scans of one of the lake's tables produce: that of an empty table made the same
/// way in memory (so it is known before the lake has one, and no reader ever writes).
pub async fn read_schema(kind: TableKind) -> Result<SchemaRef> {
    let url = Url::parse(&format!("memory:///{}/", kind.dir())).expect("memory URL");
    let table = auditlake_ingest::lake::delta::open_or_create(kind, &url, &Default::default())
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok(table.table_provider().build().await?.schema())
}
