//! Errors of the server crate: each names the file, key or address an operator has to fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reading {path}: {source}")]
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

    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },

    #[error(transparent)]
    Ingest(#[from] auditlake_ingest::IngestError),

    #[error("internal error: {0}")]
    Internal(String),
}
