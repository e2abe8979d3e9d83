//! `auditlake serve`: the service of `auditlake_server::serve` (webhook, Kafka and object-storage
//! sources, alerting, reports, retention, PostgreSQL) with the options of
//! [`crate::options::serve_options`], until SIGTERM/SIGINT.

use auditlake_server::serve;

use crate::EXIT_OK;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::options::serve_options;

pub fn run(config: &Config, args: ServeArgs) -> anyhow::Result<u8> {
    let opts = serve_options(config, &args)?;
    let runtime = crate::cmd::runtime()?;
    let signal = crate::cmd::shutdown_signal(&runtime)?;
    runtime.block_on(serve(opts, signal))?;
    Ok(EXIT_OK)
}
