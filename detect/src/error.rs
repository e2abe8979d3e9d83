use std::path::PathBuf;

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
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Running a rule failed for a reason that is not the rule's fault.
    #[error("rule {rule}: {source}")]
    Query {
        rule: String,
        source: auditlake_query::QueryError,
    },
    #[error("ingesting fixture {}: {message}", path.display())]
    Fixture { path: PathBuf, message: String },
    /// Reading or writing the findings store or the scheduler state failed.
    #[error("findings store: {0}")]
    Store(String),
}

impl DetectError {
    pub(crate) fn rule(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        DetectError::Rule {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// True when a rule file or the config is at fault (exit code 2), not the lake.
    pub fn is_caller_fault(&self) -> bool {
        match self {
            DetectError::Rule { .. } | DetectError::Config { .. } => true,
            DetectError::Query { source, .. } => source.is_caller_fault(),
            _ => false,
        }
    }
}

/// 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}
