//! `auditlake compact`: merge the small files of closed partitions, atomically.

use anyhow::bail;
use auditlake_ingest::compact_lake;

use crate::EXIT_OK;
use crate::cli::CompactArgs;
use crate::config::Config;
use crate::options::ingest_options;

pub fn run(config: &Config, args: CompactArgs) -> anyhow::Result<u8> {
    let lake = config.lake(args.lake.lake.as_deref())?;
    if !lake.is_remote() && !lake.audit_events_dir().is_dir() {
        bail!("no lake at {} (nothing ingested yet?)", lake.display());
    }
    let ingest = ingest_options(config, None, false)?;
    let mut opts = config.compact_options(ingest.writer);
    if let Some(span) = &args.min_age {
        opts.min_age_secs = crate::config::span("--min-age", span)?.num_seconds();
    }
    let started = std::time::Instant::now();
    let r = compact_lake(&lake, &opts, chrono::Utc::now().timestamp_micros())?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "partitions": r.partitions,
                "files_before": r.files_before,
                "files_after": r.files_after,
                "rows": r.rows,
                "bytes_before": r.bytes_before,
                "bytes_after": r.bytes_after,
                "duplicates_removed": r.duplicates_removed,
                "seconds": started.elapsed().as_secs_f64(),
            })
        );
    } else {
        eprintln!(
            "compacted {} partitions: {} files → {}, {} rows rewritten, {:.1} MB → {:.1} MB in {:.1} s",
            r.partitions,
            r.files_before,
            r.files_after,
            r.rows,
            r.bytes_before as f64 / 1e6,
            r.bytes_after as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(EXIT_OK)
}
