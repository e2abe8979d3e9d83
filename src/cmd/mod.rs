//! One module per subcommand.

pub mod ballista;
pub mod bench_webhook;
pub mod compact;
pub mod detect;
pub mod docs;
pub mod generate;
pub mod ingest;
pub mod pg;
pub mod pg_passwd;
pub mod query;
pub mod report;
pub mod retention;
pub mod rules;
pub mod schema;
pub mod serve;
pub mod shell;
pub mod timeline;
pub mod verify;

use anyhow::bail;
use auditlake_query::Scope;
use chrono::{DateTime, Utc};

use crate::cli::ScopeArgs;

/// RFC 3339, or a span back from now (`90m`, `1h30m`, `24h`, `7d`).
pub(crate) fn parse_time(flag: &str, s: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    match auditlake_detect::rule::parse_duration(s) {
        Ok(span) => Ok(now - span),
        Err(e) => bail!(
            "--{flag} {s}: expected an RFC 3339 time (2026-11-20T10:00:00Z) or a span like 24h or 1h30m ({e})"
        ),
    }
}

impl ScopeArgs {
    /// The session scope these flags name, relative to `now`.
    pub fn scope(&self, now: DateTime<Utc>) -> anyhow::Result<Scope> {
        let time =
            |flag, v: &Option<String>| v.as_deref().map(|s| parse_time(flag, s, now)).transpose();
        Ok(Scope {
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            clusters: self.clusters.clone(),
        })
    }
}

/// The tokio runtime for commands that query (DataFusion is async).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// SIGTERM/SIGINT for a service run on `rt`, with the handlers installed now (in `rt`'s
/// context, which tokio's signal handling needs), before the service starts.
pub fn shutdown_signal(
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<impl std::future::Future<Output = &'static str> + Send + 'static> {
    let _in_runtime = rt.enter();
    Ok(auditlake_server::shutdown_signal()?)
}
