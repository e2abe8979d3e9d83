//! `auditlake`: parse the command line, run the command, decide the exit code — here and only here.

mod cli;
mod cmd;
mod config;
mod generate;
mod options;
mod pack;
mod secret;

use std::process::ExitCode;

use clap::FromArgMatches;

/// Exit codes, documented in `--help` and the README.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    // Through `cli::command()`, not `Cli::parse()`: the help shown is the one with the developer
    // tools set apart, the same definition completions and the man page are generated from.
    let cli = match cli::Cli::from_arg_matches(&cli::command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Before any command runs: libraries (rdkafka) read the `log` level when they are set up.
    // Set but empty counts as unset (an empty EnvFilter would keep errors only).
    let filter = std::env::var(auditlake_server::log::FILTER_ENV)
        .ok()
        .filter(|f| !f.trim().is_empty());
    if let Err(e) = auditlake_server::log::init(cli.log_format.into(), filter.as_deref()) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_ERROR);
    }
    let log_format = cli.log_format;
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        // `auditlake … | head`: the reader left; that is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            let message = error_message(&e);
            // With JSON logs every stderr line is an object, the failure included.
            if log_format == cli::LogFormat::Json {
                auditlake_server::log::emit(&auditlake_server::log::CommandFailed {
                    error: &message,
                });
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<u8> {
    // Documentation of the command line needs no config (and must not fail on a bad one).
    match &cli.command {
        cli::Command::Completions(args) => return cmd::docs::completions(args),
        cli::Command::Man(args) => return cmd::docs::man(args),
        // Needs no config either: it is run on a workstation to make a users-file line.
        cli::Command::PgPasswd(args) => return cmd::pg_passwd::run(args),
        _ => {}
    }
    let config = config::Config::load(cli.config.as_deref())?;
    auditlake_ingest::lake::cache::configure(config.read_cache());
    match cli.command {
        cli::Command::Ingest(args) => cmd::ingest::run(&config, args),
        cli::Command::Query(args) => cmd::query::run(&config, args),
        cli::Command::Generate(args) => cmd::generate::run(args),
        cli::Command::Detect(args) => cmd::detect::run(&config, args),
        cli::Command::Rules { command } => cmd::rules::run(&config, command),
        cli::Command::Compact(args) => cmd::compact::run(&config, args),
        cli::Command::Verify(args) => cmd::verify::run(&config, args),
        cli::Command::Seal(args) => cmd::verify::seal(&config, args),
        cli::Command::Migrate(args) => cmd::verify::migrate(&config, args),
        cli::Command::Retention(args) => cmd::retention::run(&config, args),
        cli::Command::Serve(args) => cmd::serve::run(&config, args),
        cli::Command::Report(args) => cmd::report::run(&config, args),
        cli::Command::Shell(args) => cmd::shell::run(&config, args),
        cli::Command::Timeline(args) => cmd::timeline::run(&config, args),
        cli::Command::Ballista { command } => cmd::ballista::run(&config, command),
        cli::Command::Pg(args) => cmd::pg::run(&config, args),
        cli::Command::BenchWebhook(args) => cmd::bench_webhook::run(args),
        cli::Command::Schema(args) => cmd::schema::run(args),
        cli::Command::Completions(_) | cli::Command::Man(_) | cli::Command::PgPasswd(_) => {
            unreachable!("handled above")
        }
    }
}

/// `a: b: c` from the error and its causes, each said once. A library error that already shows
/// its source in its own message (thiserror's `"… {source}"`) would otherwise print the OS
/// error twice: "lake I/O on …/hour=08: Not a directory (os error 20): Not a directory (os error 20)".
pub(crate) fn error_message(e: &anyhow::Error) -> String {
    let mut message = String::new();
    let mut previous = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // Only the exact thiserror shape: the cause is how the error above it ends.
        if !previous.is_empty() && previous.ends_with(&text) {
            previous = text;
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
        previous = text;
    }
    message
}

#[cfg(test)]
mod tests {
    use super::error_message;

    /// As the library crates' thiserror errors do: the source in the message and in `source()`.
    #[derive(Debug)]
    struct ShowsItsSource {
        source: std::io::Error,
    }

    impl std::fmt::Display for ShowsItsSource {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "lake I/O on /lake/hour=08: {}", self.source)
        }
    }

    impl std::error::Error for ShowsItsSource {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn every_cause_is_said_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotADirectory, "Not a directory");
        let e = anyhow::Error::new(ShowsItsSource { source: io() }).context("ingest failed");
        assert_eq!(
            error_message(&e),
            "ingest failed: lake I/O on /lake/hour=08: Not a directory"
        );
        // Causes that are not repeated in the message above them are all kept, in order.
        let e = anyhow::Error::new(io())
            .context("reading a.log")
            .context("ingest failed");
        assert_eq!(
            error_message(&e),
            "ingest failed: reading a.log: Not a directory"
        );
        // A cause that merely appears earlier in the message is still said.
        let e = anyhow::Error::new(io()).context("Not a directory: retry with --lake");
        assert_eq!(
            error_message(&e),
            "Not a directory: retry with --lake: Not a directory"
        );
    }
}
