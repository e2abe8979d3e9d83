//! `auditlake`: parse the command line, run the command, decide the exit code — here and only here.

mod cli;
mod cmd;
mod config;
mod exit;
mod generate;
mod options;
mod pack;
mod secret;

use std::process::ExitCode;

use clap::FromArgMatches;

/// Exit codes, documented in `--help` and the README; a failure's is decided by [`exit::code`].
pub const EXIT_OK: u8 = 0;
pub const EXIT_FINDINGS: u8 = 1;
/// The caller's fault (bad input, config, SQL, rule, usage), or an error with no typed cause.
pub const EXIT_ERROR: u8 = 2;
/// The environment's fault (I/O, disk, a lock held, an unreachable store or broker): retrying
/// may work.
pub const EXIT_ENVIRONMENT: u8 = 3;
/// A bug of auditlake.
pub const EXIT_INTERNAL: u8 = 4;

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
        eprintln!("error: {}", auditlake_ingest::error::chain(&e));
        return ExitCode::from(exit::code(Some(e.fault())));
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
            // `a: b: c`, each cause once (`{:#}` would repeat the causes some libraries' messages
            // already say).
            let message = auditlake_ingest::error::chain(e.as_ref());
            // With JSON logs every stderr line is an object, the failure included.
            if log_format == cli::LogFormat::Json {
                auditlake_server::log::emit(&auditlake_server::log::CommandFailed {
                    error: &message,
                });
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(exit::code(exit::fault(&e)))
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
