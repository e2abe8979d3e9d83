//! The exit code of a failed command, decided here from whose fault the error is: the first
//! typed error of the library crates found in the chain says (each has `fault()`).

use auditlake_ingest::Fault;

use crate::{EXIT_ENVIRONMENT, EXIT_ERROR, EXIT_INTERNAL};

/// Whose fault `e` is: that of the first error of ours in its chain; `None` when it has none
/// (a plain `anyhow` context or `bail!` of the binary).
pub fn fault(e: &anyhow::Error) -> Option<Fault> {
    e.chain().find_map(fault_of)
}

/// The fault of one error, when it is one of the library crates' typed errors.
fn fault_of(e: &(dyn std::error::Error + 'static)) -> Option<Fault> {
    if let Some(e) = e.downcast_ref::<auditlake_ingest::IngestError>() {
        return Some(e.fault());
    }
    if let Some(e) = e.downcast_ref::<auditlake_ingest::FlushFailed>() {
        return Some(e.fault());
    }
    if let Some(e) = e.downcast_ref::<auditlake_ingest::lake::seal::SealError>() {
        return Some(e.fault());
    }
    if let Some(e) = e.downcast_ref::<auditlake_query::QueryError>() {
        return Some(e.fault());
    }
    if let Some(e) = e.downcast_ref::<auditlake_detect::DetectError>() {
        return Some(e.fault());
    }
    if let Some(e) = e.downcast_ref::<auditlake_report::ReportError>() {
        return Some(e.fault());
    }
    if let Some(e) = e.downcast_ref::<auditlake_server::ServerError>() {
        return Some(e.fault());
    }
    if let Some(e) = e.downcast_ref::<auditlake_server::log::LogInitError>() {
        return Some(e.fault());
    }
    None
}

/// `2` for the caller's fault and for an error with no typed cause, `3` for the environment's
/// (retrying may work), `4` for a bug of auditlake.
pub fn code(fault: Option<Fault>) -> u8 {
    match fault {
        None | Some(Fault::Caller) => EXIT_ERROR,
        Some(Fault::Environment) => EXIT_ENVIRONMENT,
        Some(Fault::Internal) => EXIT_INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;
    use auditlake_ingest::IngestError;

    fn code_of(e: anyhow::Error) -> u8 {
        code(fault(&e))
    }

    fn not_a_directory() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotADirectory, "Not a directory")
    }

    #[test]
    fn the_first_typed_error_decides() {
        // The environment's: disk, lock, storage.
        let io = IngestError::LakeIo {
            path: "/lake/hour=08".into(),
            source: not_a_directory(),
        };
        assert_eq!(code_of(anyhow::Error::new(io).context("ingest failed")), 3);
        let locked = IngestError::LakeLocked {
            path: "/lake".into(),
            holder: "pid 1".into(),
        };
        assert_eq!(code_of(locked.into()), 3);
        // The caller's: bad input, SQL, rule, config.
        let bad = IngestError::InvalidClusterName { name: ".x".into() };
        assert_eq!(code_of(anyhow::Error::new(bad).context("--cluster")), 2);
        let sql = auditlake_query::QueryError::LakeNotFound("/nowhere".into());
        assert_eq!(code_of(sql.into()), 2);
        let rule = auditlake_detect::DetectError::Config {
            key: "detect.x".into(),
            message: "bad".into(),
        };
        assert_eq!(code_of(rule.into()), 2);
        // A bug of ours.
        assert_eq!(
            code_of(
                IngestError::Panicked {
                    thread: "reader thread"
                }
                .into()
            ),
            4
        );
        // Wrappers delegate to what they wrap.
        let server = auditlake_server::ServerError::Ingest(IngestError::LakeIo {
            path: "/lake".into(),
            source: not_a_directory(),
        });
        assert_eq!(code_of(server.into()), 3);
        let query = auditlake_query::QueryError::Execution(
            datafusion::error::DataFusionError::Execution("disk".into()),
        );
        let detect = auditlake_detect::DetectError::Query {
            rule: "r".into(),
            source: query,
        };
        assert_eq!(code_of(detect.into()), 3);
    }

    #[test]
    fn untyped_errors_are_the_callers() {
        assert_eq!(code_of(anyhow::anyhow!("--since: not a time")), 2);
        // A bare OS error under the binary's own context is not classified.
        let e = anyhow::Error::new(not_a_directory()).context("reading a.log");
        assert_eq!(code_of(e), 2);
        assert_eq!(code(None), 2);
    }

    #[test]
    fn the_message_says_each_cause_once() {
        let e = anyhow::Error::new(IngestError::LakeIo {
            path: "/lake/hour=08".into(),
            source: not_a_directory(),
        })
        .context("ingest failed");
        assert_eq!(
            auditlake_ingest::error::chain(e.as_ref()),
            "ingest failed: lake I/O on /lake/hour=08: Not a directory"
        );
        let e: Result<(), _> = Err(not_a_directory());
        let e = e
            .context("reading a.log")
            .context("ingest failed")
            .unwrap_err();
        assert_eq!(
            auditlake_ingest::error::chain(e.as_ref()),
            "ingest failed: reading a.log: Not a directory"
        );
        // The shared helper of the library crates says the same.
        let io = IngestError::LakeIo {
            path: "/lake/hour=08".into(),
            source: not_a_directory(),
        };
        assert_eq!(
            auditlake_ingest::error::chain(&io),
            "lake I/O on /lake/hour=08: Not a directory"
        );
    }
}
