//! The engine-level write guard of every session [`crate::open_lake`] builds.
//!
//! Each entry point checks the statements it accepts (`query`, `shell` and reports plan with
//! [`crate::read_only`]; the PostgreSQL endpoint refuses writes before planning), but a check
//! per entry point misses statements that reach DataFusion another way — a cursor body, a
//! prepared statement, a hook a library adds later. DataFusion writes files only through a
//! physical plan (`INSERT INTO` a listing table, `COPY … TO`, `DataFrame::write_*`), and every
//! physical plan of a session is made by its query planner: this one refuses any plan with DML,
//! DDL or a session statement inside it, at any depth, before anything runs. The session also
//! has no table factories, so `CREATE EXTERNAL TABLE` cannot open a file of the server's even
//! if a DDL statement got as far as the engine.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::error::Result;
use datafusion::execution::context::{QueryPlanner, SQLOptions};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};

/// What no plan of a lake session may contain: DDL, DML (`INSERT`, `UPDATE`, `DELETE`,
/// `COPY`) or statements (`SET`, transactions, `PREPARE`).
pub fn refuse_writes() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// DataFusion's own physical planner behind the read-only check.
#[derive(Debug, Default)]
pub(crate) struct ReadOnlyPlanner;

#[async_trait]
impl QueryPlanner for ReadOnlyPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        refuse_writes().verify_plan(plan)?;
        DefaultPhysicalPlanner::default()
            .create_physical_plan(plan, session)
            .await
    }
}

/// Makes `state` a read-only lake session: the guarded planner, no table factories.
pub(crate) fn guard(state: SessionState) -> SessionState {
    datafusion::execution::session_state::SessionStateBuilder::new_from_existing(state)
        .with_query_planner(Arc::new(ReadOnlyPlanner))
        .with_table_factories(Default::default())
        .build()
}
