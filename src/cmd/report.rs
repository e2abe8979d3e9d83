//! `auditlake report NAME`: one report of the pack over a window of the lake.

use std::io::Write;

use anyhow::Context;
use auditlake_query::{SessionOptions, open_lake_at};
use auditlake_report::{ReportFormat, ReportWindow, render, run_report, write_atomically};
use chrono::Utc;

use crate::EXIT_OK;
use crate::cli::ReportArgs;
use crate::config::Config;
use crate::options::session_options;

pub fn run(config: &Config, args: ReportArgs) -> anyhow::Result<u8> {
    if args.list {
        let (defs, _) = crate::pack::reports(config, args.reports_dir.as_deref())?;
        // `--format json` says it too: the flag is right there, and ignoring it would print text.
        if args.json || args.format == Some(ReportFormat::Json) {
            let mut out = std::io::stdout().lock();
            for d in defs {
                let line = serde_json::json!({
                    "id": d.id,
                    "title": d.title,
                    "description": d.description,
                    "cis": d.cis.iter().map(|c| serde_json::json!({"id": c.id, "title": c.title})).collect::<Vec<_>>(),
                    "not_cis": d.not_cis,
                    "sections": d.sections.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
                });
                writeln!(out, "{line}")?;
            }
            return Ok(EXIT_OK);
        }
        for d in defs {
            let cis: Vec<&str> = d.cis.iter().map(|c| c.id.as_str()).collect();
            println!(
                "{:<22} {:<48} CIS {}",
                d.id,
                d.title,
                if cis.is_empty() {
                    "-".to_owned()
                } else {
                    cis.join(", ")
                }
            );
        }
        return Ok(EXIT_OK);
    }
    let name = args
        .name
        .as_deref()
        .expect("clap requires NAME without --list");
    let def = crate::pack::report(config, args.reports_dir.as_deref(), name)?;
    let format = match (args.format, &args.out) {
        (Some(f), _) => f,
        (None, Some(out)) => out
            .extension()
            .and_then(|e| e.to_str())
            .and_then(|e| e.parse().ok())
            .unwrap_or_default(),
        (None, None) => ReportFormat::Markdown,
    };
    let scope = args.scope.scope(Utc::now())?;
    let window = ReportWindow::from(&scope);
    let lake = config.lake(args.lake.lake.as_deref())?;
    let opts = SessionOptions {
        scope,
        engine: config.engine(args.engine.engine.as_deref())?,
        ..session_options(config)
    };
    let rt = super::runtime()?;
    let result = rt.block_on(async {
        let ctx = open_lake_at(&lake, &opts).await?;
        anyhow::Ok(run_report(&ctx, &def, window).await?)
    });
    // Failures go to `main`, which prints them and picks the exit code from their fault.
    let report = result?;
    let text = render(&report, format, args.section.as_deref())?;
    match &args.out {
        Some(path) => {
            write_atomically(path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {} ({} bytes)", path.display(), text.len());
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(EXIT_OK)
}
