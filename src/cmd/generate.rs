//! `auditlake generate`: deterministic, realistic audit logs.

use std::io::{BufWriter, Write};

use anyhow::Context;

use crate::EXIT_OK;
use crate::cli::GenerateArgs;
use crate::generate::{GenOptions, generate};

pub fn run(args: GenerateArgs) -> anyhow::Result<u8> {
    let start = chrono::DateTime::parse_from_rfc3339(&args.start)
        .with_context(|| format!("--start {:?} is not an RFC 3339 time", args.start))?;
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let opts = GenOptions {
        events: args.events,
        seed: args.seed,
        start_micros: start.timestamp_micros(),
        requests_per_second: args.rate,
        scenarios: args.scenarios,
        controllers: args.controllers,
    };
    let summary = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let s = generate(&opts, &mut w)?;
            w.flush()?;
            s
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::with_capacity(1 << 20, stdout.lock());
            let s = generate(&opts, &mut w)?;
            w.flush()?;
            s
        }
    };
    if args.out.is_some() {
        eprintln!(
            "generated {} events ({} from scenarios), {:.1} MB, {} … {}",
            summary.events,
            summary.scenario_events,
            summary.bytes as f64 / 1e6,
            crate::generate::k8s_time(summary.first_micros),
            crate::generate::k8s_time(summary.last_micros)
        );
    }
    Ok(EXIT_OK)
}
