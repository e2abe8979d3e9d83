//! Errors of the ingest crate. Each variant says whose fault it is: the caller's input or
//! configuration (fix and retry), the environment (disk, permissions: transient or operator),
//! or a bug in auditlake (internal).

use std::path::PathBuf;

/// Who has to act on an error; the binary maps it to an exit code, the webhook to an HTTP status,
/// the Kafka source to retry vs quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bad input or configuration from the caller.
    Caller,
    /// The environment failed (I/O, disk full, lock held): retrying later may work.
    Environment,
    /// A bug in auditlake.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(
        "invalid cluster name {name:?}: use 1–63 characters from [A-Za-z0-9._-], not starting with '.' or '_'"
    )]
    InvalidClusterName { name: String },

    #[error("input {path}: {source}")]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "lake {path} is being written by another auditlake process ({holder}); stop it or wait for it to finish"
    )]
    LakeLocked { path: PathBuf, holder: String },

    #[error("lake I/O on {path}: {source}")]
    LakeIo {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Writing a whole file with [`crate::lake::DurableWrite`] (lake state, findings, outbox
    /// entries, reports) failed; the file is as it was.
    #[error("writing {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("reading existing lake file {path}: {source}")]
    LakeRead {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },

    #[error("writing Parquet {path}: {source}")]
    ParquetWrite {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },

    #[error(
        "the lake {lake} was written before auditlake used Delta tables: run `auditlake migrate --lake {lake}` once (it adds a log over the existing files, nothing is rewritten)"
    )]
    NeedsMigration { lake: String },

    #[error("lake location {value:?}: {reason}")]
    LakeLocation { value: String, reason: String },

    #[error("Delta table {location}: {source}")]
    Table {
        location: String,
        source: Box<deltalake::DeltaTableError>,
    },

    #[error("object store {location}: {source}")]
    Storage {
        location: String,
        source: Box<object_store::Error>,
    },

    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("the lake writer stopped after an earlier error and must be reopened: {0}")]
    WriterPoisoned(String),

    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    pub fn fault(&self) -> Fault {
        match self {
            IngestError::InvalidClusterName { .. }
            | IngestError::Input { .. }
            | IngestError::LakeLocation { .. }
            | IngestError::NeedsMigration { .. } => Fault::Caller,
            IngestError::LakeLocked { .. }
            | IngestError::LakeIo { .. }
            | IngestError::WriteFile { .. }
            | IngestError::LakeRead { .. }
            | IngestError::ParquetWrite { .. }
            | IngestError::WriterPoisoned(_)
            | IngestError::Table { .. }
            | IngestError::Storage { .. } => Fault::Environment,
            IngestError::Arrow(_) | IngestError::Internal(_) => Fault::Internal,
        }
    }

    pub(crate) fn lake_io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IngestError {
        let path = path.into();
        move |source| IngestError::LakeIo { path, source }
    }
}

pub type Result<T, E = IngestError> = std::result::Result<T, E>;
