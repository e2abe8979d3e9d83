//! Read-only SQL over the PostgreSQL wire protocol, so psql, Grafana's PostgreSQL data source,
//! DBeaver and BI tools query the lake. The protocol is pgwire's and the query handling
//! datafusion-postgres's (both maintained crates); auditlake adds what a security team needs:
//!
//! - **Read-only, at every depth**: a hook refuses every statement but queries, EXPLAIN, SHOW,
//!   the harmless client `SET`s, transactions and cursors, before DataFusion sees it; then every
//!   query the statement carries — the statement itself, the body of a `DECLARE … CURSOR FOR`,
//!   what an `EXPLAIN` explains — is planned and its plan checked with DataFusion's own
//!   `SQLOptions` (no DDL, DML or statements: `SELECT … INTO`, `INSERT` inside a cursor); what
//!   cannot be planned is refused, not passed on. Underneath, the session's query planner
//!   refuses any writing plan however it arrives (`auditlake_query::readonly`), and the
//!   session has no `CREATE EXTERNAL TABLE`.
//! - **Nothing shared between connections**: each connection gets its own session over the
//!   same tables (its own catalog, settings and cursors), so nothing one client does is seen by
//!   another.
//! - **Authentication**: SCRAM-SHA-256 passwords from a users file, and/or client certificates
//!   verified against a CA: the certificate's CN must be the user name *and* be listed in
//!   `cert_users` (a CA that also signs webhook or other client certificates must not make
//!   every one of them a SQL login). With neither, only a loopback address may be served. With
//!   TLS configured, plain-text connections are refused.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::Response;
use pgwire::api::{ClientInfo, METADATA_USER, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;

use crate::error::ServerError;
use crate::tls::{TlsFiles, subject_cn};

/// How the endpoint runs.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub listen: String,
    /// `user,password` lines: SCRAM-SHA-256.
    pub users_file: Option<PathBuf>,
    /// TLS; with `client_ca`, certificate authentication.
    pub tls: Option<TlsFiles>,
    /// Certificate subjects (CN) that may log in with a client certificate; required with
    /// `client_ca`. A CN not listed is refused even when the CA signed it.
    pub cert_users: Vec<String>,
}

/// Users and their passwords, from the users file.
#[derive(Clone)]
struct Users(Arc<HashMap<String, String>>);

impl Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({} entries)", self.0.len())
    }
}

fn load_users(path: &Path) -> Result<Users, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServerError::ConfigFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| ServerError::TokenFile {
            path: path.to_path_buf(),
            line: i + 1,
            reason: reason.to_owned(),
        };
        let (user, password) = line
            .split_once(',')
            .ok_or_else(|| bad("expected `user,password`"))?;
        if user.trim().is_empty() {
            return Err(bad("empty user name"));
        }
        if password.len() < 12 {
            return Err(bad("password shorter than 12 characters"));
        }
        users.insert(user.trim().to_owned(), password.to_owned());
    }
    if users.is_empty() {
        return Err(ServerError::TokenFile {
            path: path.to_path_buf(),
            line: 0,
            reason: "no users".into(),
        });
    }
    Ok(Users(Arc::new(users)))
}

const SCRAM_ITERATIONS: usize = 4096;

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let salt: [u8; 16] = rand_salt();
        // An unknown user gets a random password, so it fails like a wrong password would and
        // the answer does not tell which user names exist.
        let password = match login.user().and_then(|u| self.0.get(u)) {
            Some(p) => p.clone(),
            None => format!("{:x}", u128::from_le_bytes(rand_salt())),
        };
        Ok(Password::new(
            Some(salt.to_vec()),
            gen_salted_password(&password, &salt, SCRAM_ITERATIONS),
        ))
    }
}

/// 16 bytes from the operating system's CSPRNG (through rustls's ring provider).
fn rand_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut salt)
        .expect("the OS random source works");
    salt
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message,
    )))
}

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

/// Refuses writes before DataFusion runs anything.
struct ReadOnlyHook;

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

/// Finishes startup without a password (certificate-authenticated, or a loopback-only
/// endpoint with no authentication configured).
struct Trusted;

impl NoopStartupHandler for Trusted {}

/// Per-connection authentication: TLS required when configured; a verified client certificate
/// whose CN is the requested user name authenticates; otherwise SCRAM when users are
/// configured; otherwise (loopback only) trusted.
struct Authenticator {
    require_tls: bool,
    cert_auth: bool,
    /// CNs that may log in by certificate.
    cert_users: Arc<HashSet<String>>,
    scram: Option<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
    /// Decided at the Startup message: true = certificate (or trusted) path.
    trusted: Mutex<Option<bool>>,
}

#[async_trait]
impl StartupHandler for Authenticator {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(startup) = &message {
            if self.require_tls && !client.is_secure() {
                return Err(fatal(
                    "28000",
                    "auditlake requires TLS on this endpoint: connect with sslmode=require".into(),
                ));
            }
            let requested = startup
                .parameters
                .get(METADATA_USER)
                .cloned()
                .unwrap_or_default();
            let cert_user = client
                .client_certificates()
                .and_then(|certs| certs.first())
                .and_then(subject_cn);
            let listed = cert_user
                .as_ref()
                .is_some_and(|cn| self.cert_users.contains(cn));
            let by_cert = match (&cert_user, self.cert_auth) {
                (Some(cn), true) if !listed && self.scram.is_none() => {
                    return Err(fatal(
                        "28000",
                        format!("certificate {cn:?} is not a SQL user (postgres.cert_users)"),
                    ));
                }
                (Some(cn), true) if listed && *cn == requested => true,
                (Some(cn), true) if self.scram.is_none() => {
                    return Err(fatal(
                        "28000",
                        format!("certificate is for {cn:?}, not user {requested:?}"),
                    ));
                }
                _ => false,
            };
            if !by_cert && self.cert_auth && self.scram.is_none() {
                return Err(fatal(
                    "28000",
                    "a client certificate signed by the configured CA is required".into(),
                ));
            }
            *self.trusted.lock().expect("not poisoned") = Some(by_cert || self.scram.is_none());
        }
        let trusted = self.trusted.lock().expect("not poisoned").unwrap_or(false);
        match (&self.scram, trusted) {
            (Some(scram), false) => scram.on_startup(client, message).await,
            _ => Trusted.on_startup(client, message).await,
        }
    }
}

struct ConnectionHandlers {
    service: Arc<DfSessionService>,
    auth: Arc<Authenticator>,
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.auth.clone()
    }
}

/// A bound endpoint, ready to accept.
pub struct PgServer {
    listener: TcpListener,
    /// The session each connection's own session is made from.
    base: SessionContext,
    tls: Option<tokio_rustls::TlsAcceptor>,
    users: Option<Users>,
    cert_auth: bool,
    cert_users: Arc<HashSet<String>>,
}

/// The hooks every connection runs, read-only first.
fn hooks() -> Vec<Arc<dyn QueryHook>> {
    vec![
        Arc::new(ReadOnlyHook),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ]
}

/// A session of its own for one connection, over the same tables as `base`: a new catalog list
/// whose schemas hold the same table providers (and share the read-only `pg_catalog`), so
/// whatever a connection registers, sets or declares stays in that connection.
async fn connection_session(base: &SessionContext) -> datafusion::error::Result<SessionContext> {
    use datafusion::catalog::{
        CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
        MemorySchemaProvider, SchemaProvider,
    };
    let list = Arc::new(MemoryCatalogProviderList::new());
    for catalog_name in base.catalog_names() {
        let Some(base_catalog) = base.catalog(&catalog_name) else {
            continue;
        };
        let catalog = Arc::new(MemoryCatalogProvider::new());
        for schema_name in base_catalog.schema_names() {
            let Some(base_schema) = base_catalog.schema(&schema_name) else {
                continue;
            };
            if schema_name == "pg_catalog" {
                catalog.register_schema(&schema_name, base_schema)?;
                continue;
            }
            let schema = Arc::new(MemorySchemaProvider::new());
            for table in base_schema.table_names() {
                if let Some(provider) = base_schema.table(&table).await? {
                    schema.register_table(table, provider)?;
                }
            }
            catalog.register_schema(&schema_name, schema)?;
        }
        list.register_catalog(catalog_name, catalog);
    }
    let state =
        datafusion::execution::session_state::SessionStateBuilder::new_from_existing(base.state())
            .with_catalog_list(list)
            .build();
    Ok(SessionContext::new_with_state(state))
}

impl PgServer {
    /// Checks the configuration, binds, and prepares `ctx` (a session from `open_lake`): the
    /// `pg_catalog` tables clients use to list tables and columns.
    pub async fn bind(ctx: SessionContext, opts: &PgOptions) -> Result<PgServer, ServerError> {
        let users = opts.users_file.as_deref().map(load_users).transpose()?;
        let cert_auth = opts.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        let addr: SocketAddr = opts.listen.parse().map_err(|e| ServerError::Bind {
            addr: opts.listen.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        if cert_auth && opts.cert_users.is_empty() {
            return Err(ServerError::Internal(
                "postgres.client_ca is set but postgres.cert_users is empty: list the certificate CNs that may log in (the CA may sign other clients too)".into(),
            ));
        }
        if users.is_none() && !cert_auth && !addr.ip().is_loopback() {
            return Err(ServerError::Internal(format!(
                "postgres.listen = {addr} is not a loopback address: set postgres.users_file or postgres.client_ca so clients must authenticate"
            )));
        }
        let tls = match &opts.tls {
            None => None,
            Some(files) => {
                let config = crate::tls::server_config(files)?;
                let mut config = Arc::unwrap_or_clone(config);
                // PostgreSQL negotiates TLS after an SSLRequest, without ALPN.
                config.alpn_protocols.clear();
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
            }
        };
        datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
            &ctx,
            "datafusion",
            datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
        )
        .map_err(|e| ServerError::Internal(format!("pg_catalog: {e}")))?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: opts.listen.clone(),
                source,
            })?;
        Ok(PgServer {
            listener,
            base: ctx,
            tls,
            users,
            cert_auth,
            cert_users: Arc::new(opts.cert_users.iter().cloned().collect()),
        })
    }

    /// How clients authenticate, for the start-up log line.
    pub fn auth_description(&self) -> &'static str {
        match (self.users.is_some(), self.cert_auth) {
            (true, true) => "scram|client-cert",
            (true, false) => "scram",
            (false, true) => "client-cert",
            (false, false) => "none(loopback)",
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `shutdown` completes; each connection runs on its own task.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let (socket, peer) = tokio::select! {
                _ = &mut shutdown => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        crate::log::emit(&crate::log::PgAcceptFailed { error: e.to_string() });
                        continue;
                    }
                },
            };
            let scram = self.users.clone().map(|u| {
                let mut scram = ScramAuth::new(Arc::new(u));
                scram.set_iterations(SCRAM_ITERATIONS);
                SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                    .with_scram(scram)
            });
            let auth = Arc::new(Authenticator {
                require_tls: self.tls.is_some(),
                cert_auth: self.cert_auth,
                cert_users: self.cert_users.clone(),
                scram,
                trusted: Mutex::new(None),
            });
            let tls = self.tls.clone();
            let base = self.base.clone();
            tokio::spawn(async move {
                let ctx = match connection_session(&base).await {
                    Ok(c) => c,
                    Err(e) => {
                        crate::log::emit(&crate::log::PgConnectionFailed {
                            peer,
                            error: format!("creating the session: {e}"),
                        });
                        return;
                    }
                };
                let handlers = ConnectionHandlers {
                    service: Arc::new(DfSessionService::new_with_hooks(Arc::new(ctx), hooks())),
                    auth,
                };
                if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                    crate::log::emit(&crate::log::PgConnectionFailed {
                        peer,
                        error: e.to_string(),
                    });
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn only_reads_and_client_settings_pass() {
        for ok in [
            "SELECT count(*) FROM audit_events",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "EXPLAIN SELECT 1",
            "SHOW search_path",
            "SET application_name = 'psql'",
            "SET extra_float_digits = 3",
            "SET TIME ZONE 'UTC'",
            "BEGIN",
            "COMMIT",
            "DECLARE c CURSOR FOR SELECT 1",
            "FETCH 10 FROM c",
            "CLOSE c",
        ] {
            assert_eq!(refusal(&parse(ok)), None, "{ok}");
        }
        for bad in [
            "INSERT INTO audit_events (audit_id) VALUES ('x')",
            "UPDATE audit_events SET verb = 'get'",
            "DELETE FROM audit_events",
            "CREATE TABLE t AS SELECT 1",
            "CREATE VIEW v AS SELECT 1",
            "DROP TABLE audit_events",
            "COPY audit_events TO '/tmp/x'",
            "SET datafusion.execution.target_partitions = 1",
            "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
            "ALTER TABLE audit_events ADD COLUMN x INT",
        ] {
            let why = refusal(&parse(bad)).unwrap_or_else(|| panic!("{bad} allowed"));
            assert!(
                why.starts_with("auditlake's SQL endpoint is read-only: "),
                "{why}"
            );
        }
    }

    #[test]
    fn users_file_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("users");
        std::fs::write(&f, "# comment\nauditor,correct-horse-battery\nshort,abc\n").unwrap();
        let err = load_users(&f).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("shorter than 12"),
            "{err}"
        );
    }
}
