//! `auditlake verify` (tamper evidence) and `auditlake migrate` (Hive lake → Delta table).

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use auditlake_ingest::lake::migrate::migrate as migrate_lake;
use auditlake_ingest::lake::seal::{MAX_SEAL_BYTES, SealKey, open_seal};
use auditlake_ingest::lake::verify::{VerifyOptions, VerifyReport, verify};

use crate::cli::{MigrateArgs, SealArgs, VerifyArgs};
use crate::config::Config;
use crate::{EXIT_FINDINGS, EXIT_OK};

pub fn run(config: &Config, args: VerifyArgs) -> anyhow::Result<u8> {
    let lake = config.lake(args.lake.lake.as_deref())?;
    let mut opts = VerifyOptions::default();
    if let Some(since) = &args.since {
        opts.since_ms =
            Some(super::parse_time("--since", since, chrono::Utc::now())?.timestamp_millis());
    }
    if let Some(grace) = &args.grace {
        let d = crate::config::span("--grace", grace)?;
        opts.grace_secs = d.num_seconds().max(0) as u64;
    }
    if !args.seal.is_empty() {
        let Some(public) = args.public_key.as_ref().or(config.seal.public_key.as_ref()) else {
            bail!(
                "--seal needs the public key its signature is checked with: --public-key HEX or [seal] public_key (the key the seal carries is not trusted)"
            );
        };
        for path in &args.seal {
            let text = read_seal(path)?;
            let seal =
                open_seal(&text, public).with_context(|| format!("seal {}", path.display()))?;
            opts.seals.push(seal.payload);
        }
        opts.from_seal = args.from_seal;
    }
    let started = std::time::Instant::now();
    let report = verify(&lake, &opts)?;
    if args.json {
        let problems: Vec<serde_json::Value> = report
            .problems
            .iter()
            .map(|p| {
                serde_json::json!({ "kind": p.kind.label(), "object": p.object, "detail": p.detail })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "lake": lake.display(),
                "intact": report.intact(),
                "commits": report.commits,
                "head_version": report.head_version,
                "head_sha256": report.head_sha256,
                // Every table's head (audit_events, findings, retention_log): what a seal signs.
                "heads": report.heads.iter().map(|h| serde_json::json!({
                    "table": h.table, "version": h.version, "sha256": h.sha256,
                })).collect::<Vec<_>>(),
                "live_files": report.live_files,
                "files_hashed": report.files_hashed,
                "bytes_hashed": report.bytes_hashed,
                "seals_checked": opts.seals.len(),
                "walked_from": report.walked_from.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                "problems": problems,
            })
        );
    } else {
        print_problems(&report);
        eprintln!(
            "{}: {} commits (head {} sha256 {}), {} live files, {} re-hashed ({:.1} MB) in {:.1} s: {}",
            lake.display(),
            report.commits,
            report.head_version.map_or("-".into(), |v| v.to_string()),
            report.head_sha256.as_deref().unwrap_or("-"),
            report.live_files,
            report.files_hashed,
            report.bytes_hashed as f64 / 1e6,
            started.elapsed().as_secs_f64(),
            if report.intact() {
                "intact".to_string()
            } else {
                format!("{} problems", report.problems.len())
            }
        );
    }
    Ok(if report.intact() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}

/// The newest seal, in the lake's `_state/`.
const LATEST_SEAL: &str = "seal.json";

/// A seal file, read only up to the size a seal can have.
fn read_seal(path: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("seal {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_SEAL_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("seal {}", path.display()))?;
    if text.len() as u64 > MAX_SEAL_BYTES {
        bail!(
            "seal {}: larger than {} KiB, not a seal",
            path.display(),
            MAX_SEAL_BYTES >> 10
        );
    }
    Ok(text)
}

fn print_problems(report: &VerifyReport) {
    for p in &report.problems {
        println!("{}: {} — {}", p.kind.label(), p.object, p.detail);
    }
}

/// `auditlake seal`: verify, then sign the heads and print the seal (one JSON line on stdout).
pub fn seal(config: &Config, args: SealArgs) -> anyhow::Result<u8> {
    if let Some(out) = &args.generate_key {
        let (private, public) = SealKey::generate()?;
        if out.as_os_str() == "-" {
            println!("{private}");
        } else {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(out)
                .with_context(|| format!("--generate-key {}", out.display()))?;
            writeln!(file, "{private}")
                .and_then(|()| file.sync_all())
                .with_context(|| format!("--generate-key {}", out.display()))?;
            eprintln!(
                "wrote a new ed25519 seal key to {} (keep it secret, e.g. in a Kubernetes Secret)",
                out.display()
            );
        }
        eprintln!("public key (give it to whoever checks seals: verify --public-key):");
        eprintln!("{public}");
        return Ok(EXIT_OK);
    }
    let key = match (&args.key, &config.seal.key) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--key {}: {e}", path.display()))?;
            SealKey::from_text(&text).with_context(|| format!("--key {}", path.display()))?
        }
        (None, Some(secret)) => SealKey::from_text(secret.expose()).context("seal.key")?,
        (None, None) => bail!(
            "no seal key: --key FILE or [seal] key (make one with `auditlake seal --generate-key FILE`)"
        ),
    };
    let lake = config.lake(args.lake.lake.as_deref())?;
    let mut opts = VerifyOptions::default();
    if let Some(since) = &args.since {
        opts.since_ms =
            Some(super::parse_time("--since", since, chrono::Utc::now())?.timestamp_millis());
    }
    if args.incremental {
        // The previous seal, checked with this key's own public half: a planted one is refused
        // and the whole log is walked.
        match lake.read_state(LATEST_SEAL)? {
            Some(bytes) => match open_seal(&String::from_utf8_lossy(&bytes), &key.public_hex()) {
                Ok(previous) => {
                    opts.seals.push(previous.payload);
                    opts.from_seal = true;
                }
                Err(e) => eprintln!(
                    "warning: the lake's last seal ({LATEST_SEAL}) is not usable ({e}); verifying from version 0"
                ),
            },
            None => eprintln!("no earlier seal in the lake; verifying from version 0"),
        }
    }
    let report = verify(&lake, &opts)?;
    if !report.intact() {
        // A seal vouches for the lake: never sign one that fails verification.
        print_problems(&report);
        eprintln!(
            "{}: {} problems; not sealed",
            lake.display(),
            report.problems.len()
        );
        return Ok(EXIT_FINDINGS);
    }
    let seal = key.seal(&lake.display(), report.heads.clone(), chrono::Utc::now());
    let text = serde_json::to_string(&seal)?;
    println!("{text}");
    // Kept in the lake too, for the next --incremental run (its worth is its signature: whoever
    // can write the bucket can delete it, never forge it).
    lake.write_state(LATEST_SEAL, text.as_bytes())?;
    for h in &report.heads {
        eprintln!(
            "sealed {} version {} sha256 {} with key {} (walked from version {})",
            h.table,
            h.version,
            h.sha256,
            key.key_id(),
            report
                .walked_from
                .iter()
                .find(|(t, _)| *t == h.table)
                .map_or(0, |(_, v)| *v)
        );
    }
    Ok(EXIT_OK)
}

pub fn migrate(config: &Config, args: MigrateArgs) -> anyhow::Result<u8> {
    let lake = config.lake(args.lake.lake.as_deref())?;
    if !lake.is_remote() && !lake.root().is_dir() {
        bail!("no lake at {}", lake.display());
    }
    let r = migrate_lake(&lake)?;
    let said =
        |table: &str, already: bool, files: usize, rows: u64, bytes: u64, version: Option<i64>| {
            if already {
                eprintln!(
                    "{table} of {} is already a Delta table; nothing to do",
                    lake.display()
                );
            } else {
                eprintln!(
                    "{table} of {}: {files} files ({rows} rows, {:.1} MB) added to the Delta log{}",
                    lake.display(),
                    bytes as f64 / 1e6,
                    version.map_or(String::new(), |v| format!(" as version {v}"))
                );
            }
        };
    said(
        "audit_events",
        r.already_delta,
        r.files,
        r.rows,
        r.bytes,
        r.version,
    );
    let f = &r.findings;
    said(
        "findings",
        f.already_delta,
        f.files,
        f.rows,
        f.bytes,
        f.version,
    );
    Ok(EXIT_OK)
}
