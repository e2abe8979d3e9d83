//! Read-only at every depth: the statements a connection may send, the queries they carry,
//! and the hook that refuses everything else before DataFusion runs it.

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire;
use pgwire::api::ClientInfo;
use pgwire::api::results::Response;
use pgwire::error::{PgWireError, PgWireResult};

use super::user_error;

/// Session settings clients send on connect that change nothing shared.
const CLIENT_SETTINGS: &[&str] = &[
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
    "client_encoding",
    "client_min_messages",
];

/// Why `stmt` is refused, or None when a read-only endpoint may run it.
pub fn refusal(stmt: &Statement) -> Option<String> {
    let allowed = match stmt {
        Statement::Query(_)
        | Statement::ExplainTable { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Deallocate { .. }
        | Statement::Discard { .. } => true,
        // EXPLAIN ANALYZE runs its statement; plain EXPLAIN need not plan writes either.
        Statement::Explain { statement, .. } => return refusal(statement),
        Statement::Set(Set::SingleAssignment { variable, .. }) => {
            let var = variable.to_string().to_lowercase();
            CLIENT_SETTINGS.contains(&var.as_str())
        }
        Statement::Set(Set::SetTimeZone { .. }) => true,
        _ => false,
    };
    if allowed {
        None
    } else {
        let sql = stmt.to_string();
        let verb: String = sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        Some(format!(
            "auditlake's SQL endpoint is read-only: {verb} … is not allowed (only queries, EXPLAIN, SHOW and client settings)"
        ))
    }
}

/// The queries a statement would run: the statement itself, what an `EXPLAIN` explains, the
/// body of each `DECLARE … CURSOR FOR`. Statements that carry none (SHOW, SET, transactions,
/// FETCH, CLOSE) yield nothing.
fn carried_queries(stmt: &Statement) -> Result<Vec<Statement>, String> {
    use datafusion::sql::sqlparser::ast::DeclareType;
    match stmt {
        Statement::Query(_) => Ok(vec![stmt.clone()]),
        Statement::Explain { statement, .. } => carried_queries(statement),
        Statement::Declare { stmts } => stmts
            .iter()
            .map(|d| match (&d.declare_type, &d.for_query) {
                (Some(DeclareType::Cursor), Some(q)) => Ok(Statement::Query(q.clone())),
                _ => Err(format!(
                    "only DECLARE … CURSOR FOR <query> is allowed, not {d}"
                )),
            })
            .collect(),
        _ => Ok(Vec::new()),
    }
}

/// The write a query's body is (`INSERT`, `UPDATE`, `DELETE`, `MERGE` where a query may stand,
/// `SELECT … INTO`), at any depth of set operations and parentheses.
fn write_inside(q: &datafusion::sql::sqlparser::ast::Query) -> Option<&'static str> {
    use datafusion::sql::sqlparser::ast::SetExpr;
    fn walk(e: &SetExpr) -> Option<&'static str> {
        match e {
            SetExpr::Insert(_) => Some("INSERT"),
            SetExpr::Update(_) => Some("UPDATE"),
            SetExpr::Delete(_) => Some("DELETE"),
            SetExpr::Merge(_) => Some("MERGE"),
            SetExpr::Select(s) if s.into.is_some() => Some("SELECT … INTO"),
            SetExpr::Query(q) => walk(&q.body),
            SetExpr::SetOperation { left, right, .. } => walk(left).or_else(|| walk(right)),
            _ => None,
        }
    }
    walk(&q.body)
}

/// Refuses writes before DataFusion runs anything.
pub(super) struct ReadOnlyHook;

impl ReadOnlyHook {
    async fn check(&self, stmt: &Statement, ctx: &SessionContext) -> Option<PgWireError> {
        if let Some(reason) = refusal(stmt) {
            return Some(user_error("25006", reason));
        }
        let queries = match carried_queries(stmt) {
            Ok(q) => q,
            Err(reason) => {
                return Some(user_error(
                    "25006",
                    format!("auditlake's SQL endpoint is read-only: {reason}"),
                ));
            }
        };
        for query in queries {
            if let Statement::Query(q) = &query
                && let Some(what) = write_inside(q)
            {
                return Some(user_error(
                    "25006",
                    format!(
                        "auditlake's SQL endpoint is read-only: {what} inside a query is not allowed"
                    ),
                ));
            }
            let df_stmt = datafusion::sql::parser::Statement::Statement(Box::new(query));
            // A query that cannot be planned is refused here with DataFusion's message rather
            // than handed to a later hook that might plan or run it differently.
            let plan = match ctx.state().statement_to_plan(df_stmt).await {
                Ok(p) => p,
                Err(e) => return Some(user_error("42000", e.to_string())),
            };
            if let Err(e) = auditlake_query::readonly::refuse_writes().verify_plan(&plan) {
                return Some(user_error(
                    "25006",
                    format!("auditlake's SQL endpoint is read-only: {e}"),
                ));
            }
        }
        None
    }
}

#[async_trait]
impl QueryHook for ReadOnlyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.check(statement, ctx).await.map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        self.check(statement, ctx).await.map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.check(statement, ctx).await.map(Err)
    }
}
