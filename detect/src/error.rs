use std::path::PathBuf;

use auditlake_ingest::Fault;

/// Errors say whose fault they are: a rule author's (file and line), the config's (key), or the
/// lake/engine's.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A rule file is wrong: `path:line: message`.
    #[error("{}:{line}: {message}", path.display())]
    Rule {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A configuration value is wrong; `key` is its dotted name.
    #[error("config `{key}`: {message}")]
    Config { key: String, message: String },
    #[error("reading {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Running a rule failed for a reason that is not the rule's fault.
    #[error("rule {rule}")]
    Query {
        rule: String,
        source: auditlake_query::QueryError,
    },
    #[error("ingesting fixture {}: {message}", path.display())]
    Fixture { path: PathBuf, message: String },
    /// The findings store or the scheduler state is damaged or needs an operator (migrate,
    /// verify).
    #[error("findings store: {0}")]
    Store(String),
    /// Reading or writing the findings store or the scheduler state in the lake failed.
    #[error("findings store")]
    Lake(#[from] auditlake_ingest::IngestError),
    /// The alert outbox could not make new findings durable.
    #[error("queuing alerts")]
    Alerts(#[source] auditlake_ingest::IngestError),
    /// Another replica took the scheduler's lease while a rule ran; its results were dropped.
    #[error("no longer the scheduler's replica (lease lost during the run)")]
    LeaseLost,
}

impl DetectError {
    pub(crate) fn rule(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        DetectError::Rule {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// Whose fault it is: a rule file, a fixture or the config is the caller's.
    pub fn fault(&self) -> Fault {
        match self {
            DetectError::Rule { .. } | DetectError::Config { .. } | DetectError::Fixture { .. } => {
                Fault::Caller
            }
            DetectError::Query { source, .. } => source.fault(),
            DetectError::Lake(e) | DetectError::Alerts(e) => e.fault(),
            DetectError::Io { .. } | DetectError::Store(_) | DetectError::LeaseLost => {
                Fault::Environment
            }
        }
    }

    /// True when a rule file or the config is at fault (exit code 2), not the lake.
    pub fn is_caller_fault(&self) -> bool {
        self.fault() == Fault::Caller
    }
}

/// 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}
