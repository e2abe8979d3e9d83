//! `auditlake rules list|check|test`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use auditlake_detect::engine::warmup;
use auditlake_detect::fixtures::run_test;
use auditlake_detect::params::missing_requirements;
use auditlake_detect::{DetectError, Detector, PackConfig, Rule, Source, Suppressions, Window};
use auditlake_query::open_lake;

use crate::cli::{RulesCommand, RulesDirArg};
use crate::config::Config;
use crate::options::session_options;
use crate::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK};

/// The rules of a run with the config's `[detect]` settings, checked against each other.
pub struct LoadedPack {
    /// The rules `--rules PATTERN` selects (every rule without one).
    pub rules: Vec<Rule>,
    pub config: PackConfig,
    /// Checked against every rule of the pack, not only the selected ones.
    pub suppressions: Suppressions,
}

/// Loads the pack and the config's `[detect]` settings, checked against each other.
pub fn load_pack(config: &Config, arg: &RulesDirArg) -> anyhow::Result<LoadedPack> {
    let (all, place) =
        crate::pack::rules(config, arg.rules_dir.as_deref(), arg.no_builtin_rules, None)?;
    let pack = config.pack_config()?;
    pack.validate(&all)?;
    let suppressions = config.suppressions(&all)?;
    let rules: Vec<Rule> = match &arg.pattern {
        Some(p) => all.into_iter().filter(|r| r.matches(p)).collect(),
        None => all,
    };
    if rules.is_empty() {
        anyhow::bail!("no rules in {place} match");
    }
    Ok(LoadedPack {
        rules,
        config: pack,
        suppressions,
    })
}

/// Logs each suppression expired at `now` (once per process) as `suppression_expired`.
pub fn warn_expired(suppressions: &mut Suppressions, now: chrono::DateTime<chrono::Utc>) {
    for i in suppressions.take_newly_expired(now) {
        let s = &suppressions.list[i];
        auditlake_server::log::emit(&auditlake_server::log::SuppressionExpired {
            key: &s.key,
            rule: &s.rule,
            expired_at: s.expires.unwrap_or_default(),
            reason: &s.reason,
        });
    }
}

/// `active`, `disabled`, or `needs <param>`.
pub fn state(rule: &Rule, pack: &PackConfig) -> String {
    let params = pack.params_for(rule);
    let missing = missing_requirements(rule, &params);
    if !pack.is_active(rule, &params) && missing.is_empty() {
        "disabled".into()
    } else if !missing.is_empty() {
        format!("needs {}", missing.join(", "))
    } else {
        "active".into()
    }
}

pub fn run(config: &Config, command: RulesCommand) -> anyhow::Result<u8> {
    match command {
        RulesCommand::List { rules, lake, json } => {
            list(config, &rules, lake.lake.as_deref(), json)
        }
        RulesCommand::Check { rules } => check(config, &rules),
        RulesCommand::Test { rules } => test(config, &rules),
        RulesCommand::Suppressions { rules, lake, scope } => {
            suppressions(config, &rules, lake.lake.as_deref(), &scope)
        }
        RulesCommand::ImportSigma { paths, out } => import_sigma(&paths, &out),
    }
}

/// `warming up until …` for the first-seen rules whose warm-up has not ended in some cluster of
/// the lake (the lake's own last event is "now": it works the same for a live and an old lake).
fn warmup_states(
    config: &Config,
    lake: Option<&Path>,
    rules: &[Rule],
    pack: &PackConfig,
) -> anyhow::Result<BTreeMap<String, String>> {
    let lake = config.lake_path(lake);
    let mut states = BTreeMap::new();
    if !rules
        .iter()
        .any(|r| warmup(r, &pack.params_for(r)).is_some())
        || !lake.is_dir()
    {
        return Ok(states);
    }
    let rt = super::runtime()?;
    rt.block_on(async {
        let ctx = open_lake(&lake, &session_options(config)).await?;
        let detector = Detector::new(ctx).await?;
        let spans = detector.cluster_spans().await?;
        for rule in rules {
            let params = pack.params_for(rule);
            let until = detector
                .warm_until(rule, &params)
                .await?
                .into_iter()
                .filter(|(c, until)| spans.get(c).is_some_and(|(_, last)| until > last))
                .map(|(_, until)| until)
                .max();
            if let Some(until) = until {
                states.insert(
                    rule.id.clone(),
                    format!("warming up until {}", until.format("%Y-%m-%dT%H:%MZ")),
                );
            }
        }
        anyhow::Ok(())
    })?;
    Ok(states)
}

fn list(config: &Config, arg: &RulesDirArg, lake: Option<&Path>, json: bool) -> anyhow::Result<u8> {
    let LoadedPack {
        rules,
        config: pack,
        ..
    } = load_pack(config, arg)?;
    let warming = warmup_states(config, lake, &rules, &pack)?;
    let mut out = std::io::stdout().lock();
    if json {
        for r in &rules {
            writeln!(out, "{}", rule_json(r, &pack, warming.get(&r.id)))?;
        }
        return Ok(EXIT_OK);
    }
    writeln!(
        out,
        "{:<34} {:<9} {:<22} {:<10} {:<30} TITLE",
        "ID", "SEVERITY", "ATT&CK", "CATALOG", "STATE"
    )?;
    for r in &rules {
        writeln!(
            out,
            "{:<34} {:<9} {:<22} {:<10} {:<30} {}",
            r.id,
            r.severity.as_str(),
            list_cell(&r.attack),
            list_cell(&r.catalog),
            match (state(r, &pack).as_str(), warming.get(&r.id)) {
                ("active", Some(w)) => w.clone(),
                (s, _) => s.to_owned(),
            },
            r.title
        )?;
    }
    // Warming-up rules run (and are counted as active); they stay silent until warm.
    let active = rules.iter().filter(|r| state(r, &pack) == "active").count();
    writeln!(out, "{} rules, {active} active", rules.len())?;
    Ok(EXIT_OK)
}

/// One line of `rules list --json`: what the table shows, unabbreviated, plus what a script
/// selecting rules needs (schedule, streaming, where the rule comes from).
fn rule_json(r: &Rule, pack: &PackConfig, warming: Option<&String>) -> serde_json::Value {
    let state = state(r, pack);
    serde_json::json!({
        "id": r.id,
        "version": r.version,
        "title": r.title,
        "severity": r.severity.as_str(),
        "attack": r.attack,
        "catalog": r.catalog,
        "tags": r.tags,
        // `active`, `disabled`, `needs <param>`; warming up is its own field (the rule runs).
        "state": state,
        "active": state == "active",
        "warming_up": warming.map(|w| w.trim_start_matches("warming up until ")),
        "schedule_secs": r.schedule.num_seconds(),
        "streaming": r.streaming,
        "builtin": matches!(r.source, Source::Embedded(_)),
    })
}

/// A comma-joined cell; `-` when empty so the columns stay whitespace-separable.
fn list_cell(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

fn check(config: &Config, arg: &RulesDirArg) -> anyhow::Result<u8> {
    let (rules, pack) = load_pack(config, arg).map(|p| (p.rules, p.config))?;
    let rt = super::runtime()?;
    let empty = tempfile::tempdir().context("creating an empty lake to plan against")?;
    let errors = rt.block_on(async {
        let ctx = open_lake(empty.path(), &session_options(config)).await?;
        let detector = Detector::new(ctx).await?;
        let mut errors = Vec::new();
        for rule in &rules {
            // Plan with the configured parameters and with the defaults: both must be valid.
            for params in [pack.params_for(rule), rule.params.clone()] {
                if let Err(e) = detector.check(rule, &params).await {
                    errors.push(e);
                    break;
                }
            }
        }
        anyhow::Ok(errors)
    })?;
    for e in &errors {
        eprintln!("error: {}", auditlake_ingest::error::chain(e));
    }
    if errors.is_empty() {
        println!(
            "{} rules planned against the audit_events schema: ok",
            rules.len()
        );
        Ok(EXIT_OK)
    } else {
        eprintln!("{} of {} rules failed", errors.len(), rules.len());
        Ok(EXIT_ERROR)
    }
}

fn test(config: &Config, arg: &RulesDirArg) -> anyhow::Result<u8> {
    let rules = load_pack(config, arg)?.rules;
    let rt = super::runtime()?;
    let (mut passed, mut failed, mut untested) = (0, 0, Vec::new());
    rt.block_on(async {
        for rule in &rules {
            if rule.tests.is_empty() {
                untested.push(rule.id.clone());
            }
            for t in &rule.tests {
                match run_test(rule, t).await {
                    Ok(o) if o.failure.is_none() => passed += 1,
                    Ok(o) => {
                        failed += 1;
                        println!(
                            "FAIL {} / {}: {}",
                            o.rule,
                            o.test,
                            o.failure.unwrap_or_default()
                        );
                    }
                    Err(e @ DetectError::Rule { .. }) | Err(e) => {
                        failed += 1;
                        println!(
                            "FAIL {} / {}: {}",
                            rule.id,
                            t.name,
                            auditlake_ingest::error::chain(&e)
                        );
                    }
                }
            }
        }
    });
    for id in &untested {
        println!("FAIL {id}: the rule has no fixture tests");
    }
    println!(
        "{passed} passed, {failed} failed, {} rules without tests",
        untested.len()
    );
    Ok(if failed == 0 && untested.is_empty() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}

/// `rules suppressions`: each entry, its state and its hits over the lake's window. Hits are
/// computed, not recorded: suppressed findings never reach the findings store, so the rules an
/// entry names run again (suppressions off) and every finding an entry matches counts for it.
fn suppressions(
    config: &Config,
    arg: &RulesDirArg,
    lake: Option<&Path>,
    scope: &crate::cli::ScopeArgs,
) -> anyhow::Result<u8> {
    let LoadedPack {
        rules,
        config: pack,
        mut suppressions,
        ..
    } = load_pack(config, arg)?;
    let now = chrono::Utc::now();
    warn_expired(&mut suppressions, now);
    let scope = scope.scope(now)?;
    let window = Window {
        since: scope.since,
        until: scope.until,
        clusters: scope.clusters,
    };
    let lake = config.lake_path(lake);
    // Hits per entry: (findings, events); `None` when there is no lake or the rule is off.
    let mut hits: Vec<Option<(usize, i64)>> = vec![None; suppressions.list.len()];
    if lake.is_dir() {
        let rt = super::runtime()?;
        rt.block_on(async {
            let ctx = open_lake(&lake, &session_options(config)).await?;
            let detector = Detector::new(ctx).await?;
            for rule in &rules {
                let entries: Vec<usize> = (0..suppressions.list.len())
                    .filter(|i| suppressions.list[*i].rule == rule.id)
                    .collect();
                let params = pack.params_for(rule);
                if entries.is_empty() || !pack.is_active(rule, &params) {
                    continue;
                }
                let found = detector.run(rule, &params, &window).await?;
                for i in entries {
                    let matched = found.iter().filter(|f| suppressions.list[i].matches(f));
                    let (n, events) =
                        matched.fold((0, 0), |(n, e), f| (n + 1, e + i64::from(f.event_count)));
                    hits[i] = Some((n, events));
                }
            }
            anyhow::Ok(())
        })?;
    } else {
        eprintln!(
            "no lake at {}: hit counts need one (--lake DIR)",
            lake.display()
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<24} {:<30} {:<8} {:<17} {:>8} {:>8}  MATCHES / REASON",
        "KEY", "RULE", "STATE", "EXPIRES", "FINDINGS", "EVENTS"
    )?;
    for (s, h) in suppressions.list.iter().zip(&hits) {
        let (findings, events) = match h {
            Some((n, e)) => (n.to_string(), e.to_string()),
            None => ("-".into(), "-".into()),
        };
        writeln!(
            out,
            "{:<24} {:<30} {:<8} {:<17} {:>8} {:>8}  {} / {}",
            s.key,
            s.rule,
            if s.is_expired(now) {
                "expired"
            } else {
                "active"
            },
            s.expires.map_or("never".to_owned(), |e| e
                .format("%Y-%m-%dT%H:%MZ")
                .to_string()),
            findings,
            events,
            s.describe(),
            s.reason
        )?;
    }
    writeln!(out, "{} suppression(s)", suppressions.list.len())?;
    Ok(EXIT_OK)
}

/// `rules import-sigma`: one line per rule written (with its interpretations) and per rule
/// refused (with the feature it needs); exit 1 when any was refused.
fn import_sigma(paths: &[std::path::PathBuf], out: &Path) -> anyhow::Result<u8> {
    let report = auditlake_detect::sigma::import(paths, out)?;
    let mut stdout = std::io::stdout().lock();
    for (id, dir, notes) in &report.written {
        writeln!(stdout, "imported {id} -> {}", dir.display())?;
        for n in notes {
            writeln!(stdout, "  interpreted: {n}")?;
        }
    }
    for r in &report.refused {
        writeln!(stdout, "not imported {r}")?;
    }
    writeln!(
        stdout,
        "{} rule(s) imported into {}, {} not imported",
        report.written.len(),
        out.display(),
        report.refused.len()
    )?;
    Ok(if report.refused.is_empty() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}
