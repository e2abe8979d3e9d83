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
        }
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

/// The schema scans of one of the lake's tables produce: that of an empty table made the same
/// way in memory (so it is known before the lake has one, and no reader ever writes).
pub async fn read_schema(kind: TableKind) -> Result<SchemaRef> {
    let url = Url::parse(&format!("memory:///{}/", kind.dir())).expect("memory URL");
    let table = auditlake_ingest::lake::delta::open_or_create(kind, &url, &Default::default())
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok(table.table_provider().build().await?.schema())
}
