//! `auditlake query`: one SQL statement over the lake.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use auditlake_query::{QueryError, SessionOptions, open_lake_at, run_sql, write_batches};

use crate::cli::QueryArgs;
use crate::config::Config;
use crate::options::session_options;
use crate::{EXIT_ERROR, EXIT_OK};

pub fn run(config: &Config, args: QueryArgs) -> anyhow::Result<u8> {
    let lake = config.lake(args.lake.lake.as_deref())?;
    let opts = SessionOptions {
        engine: config.engine(args.engine.engine.as_deref())?,
        ..session_options(config)
    };
    let rt = super::runtime()?;
    let mut timings = Vec::new();
    let result = rt.block_on(async {
        let ctx = open_lake_at(&lake, &opts).await?;
        let mut last = Vec::new();
        for _ in 0..args.repeat {
            let started = Instant::now();
            last = run_sql(&ctx, &args.sql).await?;
            timings.push(started.elapsed());
        }
        Ok(last)
    });
    let batches = match result {
        Ok(b) => b,
        // Bad SQL or a missing lake: DataFusion's own message, exit code 2.
        Err(
            e @ (QueryError::Sql(_) | QueryError::LakeNotFound(_) | QueryError::NeedsMigration(_)),
        ) => {
            eprintln!("error: {e}");
            return Ok(EXIT_ERROR);
        }
        Err(e) => {
            return Err(e).with_context(|| match &opts.engine {
                auditlake_query::Engine::Local => "query failed".to_owned(),
                // A cluster that went away must not read like a local I/O error.
                engine => format!("query failed on the cluster at {engine}"),
            });
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    write_batches(&batches, args.format, &mut out)?;
    out.flush()?;
    if args.timing {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        for elapsed in &timings {
            eprintln!("{rows} rows in {:.3} s", elapsed.as_secs_f64());
        }
    }
    Ok(EXIT_OK)
}
