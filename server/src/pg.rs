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
use datafusion::prelude::SessionContext;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::Sink;
use futures::SinkExt;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{
    ClientInfo, METADATA_USER, PgWireConnectionState, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;

mod readonly;
use readonly::ReadOnlyHook;
pub use readonly::refusal;

use crate::error::ServerError;
use crate::scram::{self, Exchange, ScramError, Verifier};
use crate::tls::{TlsFiles, subject_cn};

/// How the endpoint runs.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub listen: String,
    /// `user:SCRAM-SHA-256$…` lines (`auditlake pg-passwd`): SCRAM-SHA-256 verifiers.
    pub users_file: Option<PathBuf>,
    /// TLS; with `client_ca`, certificate authentication.
    pub tls: Option<TlsFiles>,
    /// Certificate subjects (CN) that may log in with a client certificate; required with
    /// `client_ca`. A CN not listed is refused even when the CA signed it.
    pub cert_users: Vec<String>,
}

/// Users and their SCRAM-SHA-256 verifiers, from the users file; `mock_key` derives the salt
/// an unknown user is answered with.
#[derive(Clone)]
struct Users {
    verifiers: Arc<HashMap<String, Verifier>>,
    mock_key: [u8; 32],
}

impl Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({} entries)", self.verifiers.len())
    }
}

/// `user:SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` lines (PostgreSQL's
/// `pg_authid` form, written by `auditlake pg-passwd USER`). A plain-text `user,password` line
/// is refused, not merely warned about: a file that authenticates SQL access to an evidence
/// store should not be a list of passwords, and a warning in a log is easy to miss.
fn load_users(path: &Path) -> Result<Users, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServerError::ConfigFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut verifiers = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The reason names the problem and the fix; the line itself may hold a password.
        let bad = |reason: String| ServerError::UsersFile {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let Some((user, verifier)) = line
            .split_once(':')
            .filter(|(_, v)| v.starts_with(scram::MECHANISM))
        else {
            return Err(bad(if line.contains(',') {
                "a plain-text `user,password` line: passwords are no longer stored; replace the line with the output of `auditlake pg-passwd USER`".into()
            } else {
                "expected `user:SCRAM-SHA-256$…` (the output of `auditlake pg-passwd USER`)".into()
            }));
        };
        let user = user.trim();
        if user.is_empty() {
            return Err(bad("empty user name".into()));
        }
        let verifier =
            Verifier::parse(verifier.trim()).map_err(|why| bad(format!("user {user:?}: {why}")))?;
        if verifiers.insert(user.to_owned(), verifier).is_some() {
            return Err(bad(format!("user {user:?} is listed twice")));
        }
    }
    if verifiers.is_empty() {
        return Err(ServerError::UsersFile {
            path: path.to_path_buf(),
            line: 0,
            reason: "no users".into(),
        });
    }
    Ok(Users {
        verifiers: Arc::new(verifiers),
        mock_key: scram::random_bytes(),
    })
}

/// Connection ids and cancel keys, one sequence for the whole endpoint.
static PID_GENERATOR: std::sync::LazyLock<RandomPidSecretKeyGenerator> =
    std::sync::LazyLock::new(RandomPidSecretKeyGenerator::default);

/// Where a connection's SCRAM exchange is.
enum ScramState {
    Initial,
    ServerFirstSent(Exchange),
    Failed,
}

/// SCRAM-SHA-256 password authentication of one connection, against stored verifiers
/// (`scram.rs`; pgwire's own SCRAM handler would need password-equivalent salted passwords).
struct ScramStartup {
    users: Users,
    state: Mutex<ScramState>,
}

impl ScramStartup {
    fn new(users: Users) -> ScramStartup {
        ScramStartup {
            users,
            state: Mutex::new(ScramState::Initial),
        }
    }

    /// The answer to one SASL message: the next server message, and whether it ends the exchange.
    fn step(&self, user: &str, msg: PasswordMessageFamily) -> PgWireResult<(Authentication, bool)> {
        let mut state = self.state.lock().expect("not poisoned");
        let current = std::mem::replace(&mut *state, ScramState::Failed);
        let protocol = |e: ScramError| match e {
            ScramError::Rejected => PgWireError::InvalidPassword(user.to_owned()),
            other => PgWireError::InvalidScramMessage(other.to_string()),
        };
        match current {
            ScramState::Initial => {
                let initial = msg.into_sasl_initial_response()?;
                if initial.auth_method != scram::MECHANISM {
                    return Err(PgWireError::UnsupportedSASLAuthMethod(initial.auth_method));
                }
                let data = initial.data.unwrap_or_default();
                let client_first = std::str::from_utf8(&data)
                    .map_err(|_| protocol(ScramError::Malformed("not UTF-8")))?;
                // The user is the startup message's (libpq sends an empty SCRAM user name).
                let (verifier, known) = match self.users.verifiers.get(user) {
                    Some(v) => (v.clone(), true),
                    None => (Verifier::mock(user, &self.users.mock_key), false),
                };
                let nonce = base64_nonce();
                let (server_first, exchange) = verifier
                    .server_first(known, client_first, &nonce)
                    .map_err(protocol)?;
                *state = ScramState::ServerFirstSent(exchange);
                Ok((Authentication::SASLContinue(server_first.into()), false))
            }
            ScramState::ServerFirstSent(exchange) => {
                let response = msg.into_sasl_response()?;
                let client_final = std::str::from_utf8(&response.data)
                    .map_err(|_| protocol(ScramError::Malformed("not UTF-8")))?;
                let server_final = exchange.client_final(client_final).map_err(protocol)?;
                Ok((Authentication::SASLFinal(server_final.into()), true))
            }
            ScramState::Failed => Err(PgWireError::InvalidSASLState),
        }
    }
}

/// 18 random bytes, base64: the server's half of the SCRAM nonce.
fn base64_nonce() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(scram::random_bytes::<18>())
}

#[async_trait]
impl StartupHandler for ScramStartup {
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
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                pgwire::api::auth::protocol_negotiation(client, startup).await?;
                pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![scram::MECHANISM.to_owned()],
                    )))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let (reply, done) = self.step(&user, msg)?;
                client
                    .send(PgWireBackendMessage::Authentication(reply))
                    .await?;
                if done {
                    let (pid, secret_key) = PID_GENERATOR.generate(client);
                    client.set_pid_and_secret_key(pid, secret_key);
                    pgwire::api::auth::finish_authentication(
                        client,
                        &DefaultServerParameterProvider::default(),
                    )
                    .await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
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
    scram: Option<ScramStartup>,
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
            return Err(ServerError::PgNoCertUsers);
        }
        if users.is_none() && !cert_auth && !addr.ip().is_loopback() {
            return Err(ServerError::PgUnauthenticated { addr });
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
        .map_err(ServerError::PgCatalog)?;
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
            let scram = self.users.clone().map(ScramStartup::new);
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
mod tests;
