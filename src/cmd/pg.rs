//! `auditlake pg`: the read-only PostgreSQL endpoint on its own, for forensics on a copy of a
//! lake (`serve` runs the same endpoint beside ingestion when `[postgres]` is configured).

use anyhow::Context;
use auditlake_query::open_lake_at;
use auditlake_server::pg::{PgOptions, PgServer};

use crate::EXIT_OK;
use crate::cli::PgArgs;
use crate::config::Config;
use crate::options::session_options;

/// `[postgres]` with the flag's listen address on top.
pub fn pg_options(config: &Config, listen: Option<&str>) -> PgOptions {
    let section = config.postgres.as_ref();
    let path = |p: &Option<std::path::PathBuf>| p.as_deref().map(|p| config.resolve(p));
    PgOptions {
        listen: listen
            .map(str::to_owned)
            .or_else(|| section.and_then(|s| s.listen.clone()))
            .unwrap_or_else(|| "127.0.0.1:5433".to_owned()),
        users_file: section.and_then(|s| path(&s.users_file)),
        tls: section.and_then(|s| {
            Some(auditlake_server::TlsFiles {
                cert: path(&s.tls_cert)?,
                key: path(&s.tls_key)?,
                client_ca: path(&s.client_ca),
            })
        }),
        cert_users: section.map(|s| s.cert_users.clone()).unwrap_or_default(),
    }
}

pub fn run(config: &Config, args: PgArgs) -> anyhow::Result<u8> {
    let lake = config.lake(args.lake.lake.as_deref())?;
    let opts = pg_options(config, args.listen.as_deref());
    let rt = super::runtime()?;
    let stop = super::shutdown_signal(&rt)?;
    rt.block_on(async {
        let ctx = open_lake_at(&lake, &session_options(config)).await?;
        let server = PgServer::bind(ctx, &opts)
            .await
            .context("postgres endpoint")?;
        auditlake_server::log::emit(&auditlake_server::log::PgListening {
            addr: server.local_addr()?,
            tls: opts.tls.is_some(),
            auth: server.auth_description(),
        });
        let signal = async {
            let s = stop.await;
            eprintln!("{s}: stopping");
        };
        server.run(signal).await;
        anyhow::Ok(())
    })?;
    Ok(EXIT_OK)
}
