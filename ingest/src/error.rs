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

    #[error("input {path}")]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "lake {path} is being written by another auditlake process ({holder}); stop it or wait for it to finish"
    )]
    LakeLocked { path: PathBuf, holder: String },

    #[error("lake I/O on {path}")]
    LakeIo {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Writing a whole file with [`crate::lake::DurableWrite`] (lake state, findings, outbox
    /// entries, reports) failed; the file is as it was.
    #[error("writing {path}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("reading existing lake file {path}")]
    LakeRead {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },

    #[error("writing Parquet {path}")]
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

    #[error("Delta table {location}")]
    Table {
        location: String,
        source: Box<deltalake::DeltaTableError>,
    },

    #[error("object store {location}")]
    Storage {
        location: String,
        source: Box<object_store::Error>,
    },

    #[error("arrow")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("the lake writer stopped after an earlier error and must be reopened: {0}")]
    WriterPoisoned(String),

    /// A file was to be written at a path that names no file (`/`, `..`): the caller's path.
    #[error("{} is not a file path", path.display())]
    NotAFilePath { path: PathBuf },

    /// The object-storage source's checkpoint names another source: the configuration changed.
    #[error("source checkpoint {checkpoint} belongs to {belongs}, not {source_url}")]
    SourceCheckpointMismatch {
        checkpoint: String,
        belongs: String,
        source_url: String,
    },

    /// A findings file where `migrate` cannot place it: the operator moves or removes it.
    #[error(
        "{location}: a findings file outside a `date=` directory; move it or remove it, then migrate again"
    )]
    StrayFindingsFile { location: String },

    /// A compression level the Parquet writer refuses (the writer options are the caller's).
    #[error("zstd level {level}")]
    ZstdLevel {
        level: i32,
        source: parquet::errors::ParquetError,
    },

    /// Could not start a thread (out of memory or of the process's thread limit).
    #[error("starting the {thread} thread")]
    SpawnThread {
        thread: &'static str,
        source: std::io::Error,
    },

    /// The pipeline refused data (shutting down, or its lake writer failing).
    #[error("the lake refuses data")]
    Refused(#[source] crate::pipeline::SubmitError),

    #[error(transparent)]
    Flush(#[from] crate::pipeline::FlushFailed),

    /// Submissions accepted by the pipeline were dropped by a failing lake writer.
    #[error(
        "the lake lost {lost} submissions of {url} before committing them; the checkpoint stays where it was, so the next poll reads them again"
    )]
    SubmissionsLost { lost: u64, url: String },

    /// The source checkpoint file is not what `store` wrote (damaged on disk).
    #[error(
        "source checkpoint {checkpoint}: damaged; move it aside to re-read the source (the lake's dedup drops what it holds)"
    )]
    SourceCheckpointDamaged {
        checkpoint: String,
        source: serde_json::Error,
    },

    /// A file the lake lists (its log, a listing) is not in storage when read.
    #[error("{location}: listed by the lake, but not in storage")]
    Vanished { location: String },

    /// Another compaction or retention removed a file of the partition first.
    #[error(
        "{partition} changed while being compacted (another compaction or retention removed a file first); compaction abandoned"
    )]
    CompactionRaced { partition: String },

    /// The work was stopped (shutdown) before it finished.
    #[error("cancelled")]
    Cancelled,

    /// A thread of ours panicked.
    #[error("the {thread} panicked")]
    Panicked { thread: &'static str },

    /// A Parquet encoder thread panicked with this message.
    #[error("a Parquet encoder thread panicked: {0}")]
    EncoderPanicked(String),

    /// The writer's encoder threads are gone (closed, or exited early).
    #[error("the Parquet encoder threads are gone")]
    EncoderGone,

    #[error("the pipeline is already shut down")]
    AlreadyShutDown,

    /// Serializing a record of ours to JSON failed.
    #[error("serializing {what}")]
    Serialize {
        what: &'static str,
        source: serde_json::Error,
    },

    /// Converting the `audit_events` schema to Parquet's failed.
    #[error("converting the audit_events schema to Parquet")]
    Schema(#[source] parquet::errors::ParquetError),

    /// A batch of ours lacks a column of the expected type.
    #[error("column {column} is not {expected}")]
    UnexpectedColumn {
        column: String,
        expected: &'static str,
    },

    /// A lake file the compactor would merge is out of order.
    #[error("{} is not sorted by stage_at; it cannot be merged", path.display())]
    UnsortedFile { path: PathBuf },

    #[error("compaction of {partition} wrote {wrote} rows for {read} read")]
    RowCountMismatch {
        partition: String,
        wrote: u64,
        read: u64,
    },

    #[error("bad partition {partition}")]
    BadPartition { partition: String },

    #[error("{} is not staged", path.display())]
    NotStaged { path: PathBuf },

    #[error("a column without a Parquet writer")]
    ColumnWithoutWriter,

    #[error("a row group for a file no longer open")]
    RowGroupForClosedFile,

    /// A bug of ours, as the WAL thread reports it (it is replaced by typed variants as the
    /// WAL thread's errors become typed).
    /// A failed WAL append could not be cut back (the segment may end in a partial record):
    /// no append is accepted until a restart replays the segment.
    #[error(
        "WAL segment {} could not be restored after a failed append ({reason}); restart to replay it",
        segment.display()
    )]
    WalUnrestorable { segment: PathBuf, reason: String },

    /// Shutdown's last flush failed: the data stays in the WAL for the next start.
    #[error("final flush failed; the WAL keeps the data for the next start: {reason}")]
    FinalFlushFailed { reason: String },

    /// An earlier lake failure is being retried; nothing can be committed until it recovers.
    #[error("the lake writer is recovering from an earlier failure")]
    WriterRecovering,
}

impl IngestError {
    pub fn fault(&self) -> Fault {
        match self {
            IngestError::InvalidClusterName { .. }
            | IngestError::Input { .. }
            | IngestError::LakeLocation { .. }
            | IngestError::NeedsMigration { .. }
            | IngestError::NotAFilePath { .. }
            | IngestError::SourceCheckpointMismatch { .. }
            | IngestError::StrayFindingsFile { .. }
            | IngestError::ZstdLevel { .. } => Fault::Caller,
            IngestError::LakeLocked { .. }
            | IngestError::LakeIo { .. }
            | IngestError::WriteFile { .. }
            | IngestError::LakeRead { .. }
            | IngestError::ParquetWrite { .. }
            | IngestError::WriterPoisoned(_)
            | IngestError::Table { .. }
            | IngestError::Storage { .. }
            | IngestError::SpawnThread { .. }
            | IngestError::Refused(_)
            | IngestError::SubmissionsLost { .. }
            | IngestError::SourceCheckpointDamaged { .. }
            | IngestError::Vanished { .. }
            | IngestError::CompactionRaced { .. }
            | IngestError::Cancelled
            | IngestError::WalUnrestorable { .. }
            | IngestError::FinalFlushFailed { .. }
            | IngestError::WriterRecovering => Fault::Environment,
            IngestError::Flush(e) => e.fault(),
            IngestError::Arrow(_)
            | IngestError::Panicked { .. }
            | IngestError::EncoderPanicked(_)
            | IngestError::EncoderGone
            | IngestError::AlreadyShutDown
            | IngestError::Serialize { .. }
            | IngestError::Schema(_)
            | IngestError::UnexpectedColumn { .. }
            | IngestError::UnsortedFile { .. }
            | IngestError::RowCountMismatch { .. }
            | IngestError::BadPartition { .. }
            | IngestError::NotStaged { .. }
            | IngestError::ColumnWithoutWriter
            | IngestError::RowGroupForClosedFile => Fault::Internal,
        }
    }

    pub(crate) fn lake_io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IngestError {
        let path = path.into();
        move |source| IngestError::LakeIo { path, source }
    }
}

/// `a: b: c` — the error and each of its causes, in order, each said once: what a person sees of
/// an error (the binary's `error:` line, a log field, an HTTP body, a quarantine reason).
///
/// auditlake's own messages do not repeat their source (no `{source}` in a thiserror message).
/// Many of the libraries under them do — arrow's and DataFusion's `External error: {e}`,
/// object_store's `Generic S3 error: {source}`, parquet's `External: {e}` — and also return that
/// cause from `source()`, so walking the chain (anyhow's `{:#}` included) would print it twice.
/// A cause whose text the message so far already ends with is therefore skipped.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

pub type Result<T, E = IngestError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_says_each_cause_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotADirectory, "Not a directory");
        // Ours: the cause is not in the message, so it is added.
        let ours = IngestError::LakeIo {
            path: "/lake/hour=08".into(),
            source: io(),
        };
        assert_eq!(chain(&ours), "lake I/O on /lake/hour=08: Not a directory");
        // A library's that repeats its cause in its message and in `source()`: said once.
        let theirs = IngestError::Arrow(arrow::error::ArrowError::ExternalError(Box::new(io())));
        assert_eq!(chain(&theirs), "arrow: External error: Not a directory");
        // A cause that is only somewhere inside the message (not how it ends) is still said.
        let inside = IngestError::Input {
            path: "Not a directory/x.log".into(),
            source: io(),
        };
        assert_eq!(
            chain(&inside),
            "input Not a directory/x.log: Not a directory"
        );
    }
}
