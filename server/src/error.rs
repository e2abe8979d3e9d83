//! Errors of the server crate: each names the file, key or address an operator has to fix.

use std::path::PathBuf;

use auditlake_ingest::Fault;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reading {path}")]
    ConfigFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("token file {path}, line {line}: {reason}")]
    TokenFile {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("postgres users file {path}, line {line}: {reason}")]
    UsersFile {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("TLS: {path}: {reason}")]
    Tls { path: PathBuf, reason: String },

    #[error("TLS configuration: {0}")]
    TlsConfig(String),

    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },

    #[error(transparent)]
    Ingest(#[from] auditlake_ingest::IngestError),

    /// The lake could not be opened for querying (by the alerting, the postgres endpoint).
    #[error("opening the lake for {what}")]
    Query {
        what: &'static str,
        source: auditlake_query::QueryError,
    },

    #[error(transparent)]
    Report(#[from] auditlake_report::ReportError),

    /// Starting the detections (the detector, the scheduler) failed.
    #[error("starting {what}")]
    Detect {
        what: &'static str,
        source: auditlake_detect::DetectError,
    },

    /// The alert outbox could not be opened.
    #[error("opening the alert outbox")]
    Outbox(#[source] auditlake_ingest::IngestError),

    /// The sinks' HTTP client could not be built (TLS roots of the system).
    #[error("building the sinks' HTTP client")]
    HttpClient(#[source] reqwest::Error),

    /// A Kafka client refused its configuration (`[kafka]` or a sink's properties).
    #[error("Kafka {what}")]
    Kafka {
        what: String,
        source: rdkafka::error::KafkaError,
    },

    /// SIGTERM/SIGINT handlers could not be installed.
    #[error("installing the SIGTERM/SIGINT handlers")]
    SignalHandler { source: std::io::Error },

    /// A thread could not be started.
    #[error("starting the {thread} thread")]
    SpawnThread {
        thread: &'static str,
        source: std::io::Error,
    },

    /// A blocking task of ours panicked or was cancelled.
    #[error("the {what} task failed")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },

    #[error(
        "postgres.client_ca is set but postgres.cert_users is empty: list the certificate CNs that may log in (the CA may sign other clients too)"
    )]
    PgNoCertUsers,

    #[error(
        "postgres.listen = {addr} is not a loopback address: set postgres.users_file or postgres.client_ca so clients must authenticate"
    )]
    PgUnauthenticated { addr: std::net::SocketAddr },

    /// Registering pg_catalog on the session failed: a bug of ours.
    #[error("pg_catalog")]
    PgCatalog(#[source] Box<datafusion::error::DataFusionError>),
}

impl ServerError {
    /// Whose fault it is: a file or key of the configuration is the caller's; a port in use,
    /// a lake or broker that fails is the environment's.
    pub fn fault(&self) -> Fault {
        match self {
            ServerError::TokenFile { .. }
            | ServerError::UsersFile { .. }
            | ServerError::Tls { .. }
            | ServerError::TlsConfig(_)
            | ServerError::Kafka { .. }
            | ServerError::PgNoCertUsers
            | ServerError::PgUnauthenticated { .. }
            | ServerError::ConfigFile { .. } => Fault::Caller,
            // An address that does not parse is the caller's; one in use the environment's.
            ServerError::Bind { source, .. }
                if source.kind() == std::io::ErrorKind::InvalidInput =>
            {
                Fault::Caller
            }
            ServerError::Bind { .. }
            | ServerError::HttpClient(_)
            | ServerError::SpawnThread { .. }
            | ServerError::SignalHandler { .. } => Fault::Environment,
            ServerError::Ingest(e) | ServerError::Outbox(e) => e.fault(),
            ServerError::Query { source, .. } => source.fault(),
            ServerError::Report(e) => e.fault(),
            ServerError::Detect { source, .. } => source.fault(),
            ServerError::Task { .. } | ServerError::PgCatalog(_) => Fault::Internal,
        }
    }
}
