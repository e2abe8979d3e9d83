//! Loading rules from `rules/<id>/{rule.toml,query.sql}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::TimeDelta;
use serde::Deserialize;

use crate::error::{DetectError, line_of};
use crate::params::{ParamValue, Params};
use crate::source::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// Order of severity names: info 0 … critical 4 (unknown names rank as info).
pub fn severity_rank(name: &str) -> u8 {
    match name {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    version: i32,
    title: String,
    severity: Severity,
    description: String,
    #[serde(default)]
    catalog: Vec<String>,
    attack: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    streaming: bool,
    #[serde(default = "default_schedule")]
    schedule: String,
    #[serde(default = "zero")]
    lookback: String,
    baseline: Option<String>,
    #[serde(default = "default_dedup")]
    dedup_window: String,
    #[serde(default)]
    group_by: Vec<String>,
    #[serde(default = "one")]
    threshold: u32,
    summary: String,
    #[serde(default)]
    false_positives: Vec<String>,
    runbook: String,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    tests: Vec<TestFile>,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn zero() -> String {
    "0s".into()
}
fn default_schedule() -> String {
    "5m".into()
}
fn default_dedup() -> String {
    "1h".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    name: String,
    fixture: String,
    findings: usize,
    evidence: Option<Vec<String>>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    since: Option<String>,
    until: Option<String>,
    expect: Option<Vec<Expected>>,
}

/// What one finding of a fixture test must say. An absent `actor`/`target` means the finding
/// has none; `severity` is checked only when given (rules whose severity depends on scope).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub summary: String,
    pub severity: Option<String>,
}

/// One fixture test of a rule.
#[derive(Debug, Clone)]
pub struct RuleTest {
    pub name: String,
    pub fixture: PathBuf,
    pub findings: usize,
    pub evidence: Option<Vec<String>>,
    pub params: Params,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Actor, target and summary of each finding (any order); required when `findings > 0`.
    pub expect: Option<Vec<Expected>>,
}

/// A loaded, validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub version: i32,
    pub title: String,
    pub severity: Severity,
    pub description: String,
    pub catalog: Vec<String>,
    pub attack: Vec<String>,
    pub tags: Vec<String>,
    pub enabled: bool,
    /// Also run on each batch of events as it arrives (serve), not only on the schedule.
    pub streaming: bool,
    pub schedule: TimeDelta,
    pub lookback: TimeDelta,
    pub baseline: Option<TimeDelta>,
    pub dedup_window: TimeDelta,
    pub group_by: Vec<String>,
    pub threshold: u32,
    pub summary: String,
    pub false_positives: Vec<String>,
    pub runbook: String,
    pub requires: Vec<String>,
    pub params: Params,
    pub tests: Vec<RuleTest>,
    pub dir: PathBuf,
    /// Where `dir` lives: on disk, or in the pack compiled into the binary.
    pub source: Source,
    pub sql: String,
    pub sql_path: PathBuf,
}

/// Why a span did not parse (humantime's words: "unknown time unit \"x\"…", "time unit
/// needed…"); the caller names the key and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

/// A span of time: `30s`, `5m`, `1h30m`, `7d`, `2w`, `0s` (humantime's syntax: units `ms`, `s`,
/// `m`/`min`, `h`, `d`, `w`, …, summed). Never negative; a bare number other than 0 is not one.
pub fn parse_duration(s: &str) -> Result<TimeDelta, DurationError> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| DurationError(e.to_string()))?;
    TimeDelta::from_std(d).map_err(|_| DurationError("too long".into()))
}

/// The line of `key = …` at the top level of a TOML text, for errors about a valid-TOML value.
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

impl Rule {
    /// Whether `pattern` selects this rule: its id contains it, or it is one of its catalog ids.
    pub fn matches(&self, pattern: &str) -> bool {
        self.id.contains(pattern) || self.catalog.iter().any(|c| c.eq_ignore_ascii_case(pattern))
    }

    /// Loads the rule in `dir` on disk (`rule.toml` + `query.sql`).
    pub fn load(dir: &Path) -> Result<Rule, DetectError> {
        Rule::load_from(Source::Disk, dir)
    }

    /// Loads the rule in `dir` of `files`.
    pub fn load_from(files: Source, dir: &Path) -> Result<Rule, DetectError> {
        let toml_path = dir.join("rule.toml");
        let sql_path = dir.join("query.sql");
        let text = files
            .read_to_string(&toml_path)
            .map_err(|source| DetectError::Io {
                path: toml_path.clone(),
                source,
            })?;
        let file: RuleFile = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(&text, s.start));
            DetectError::rule(&toml_path, line, e.message().to_owned())
        })?;
        let bad = |key: &str, message: String| {
            DetectError::rule(&toml_path, key_line(&text, key), message)
        };
        let folder = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if file.id != folder {
            return Err(bad(
                "id",
                format!("id `{}` must equal the folder name `{folder}`", file.id),
            ));
        }
        let duration = |key: &str, v: &str| {
            parse_duration(v).map_err(|e| {
                bad(
                    key,
                    format!("`{v}` is not a duration like 30s, 5m, 1h30m, 7d: {e}"),
                )
            })
        };
        let schedule = duration("schedule", &file.schedule)?;
        if file.streaming
            && (file.baseline.is_some() || file.threshold > 1 || file.lookback != "0s")
        {
            return Err(bad(
                "streaming",
                "a streaming rule sees one batch of new events at a time: it cannot have a baseline, lookback or threshold > 1".into(),
            ));
        }
        let lookback = duration("lookback", &file.lookback)?;
        let baseline = file
            .baseline
            .as_deref()
            .map(|b| duration("baseline", b))
            .transpose()?;
        let dedup_window = duration("dedup_window", &file.dedup_window)?;
        if dedup_window.is_zero() {
            return Err(bad("dedup_window", "must be longer than 0s".into()));
        }
        if file.threshold == 0 {
            return Err(bad("threshold", "must be at least 1".into()));
        }
        let mut params = Params::new();
        for (name, value) in &file.params {
            let v = ParamValue::from_toml(value, dir, files)
                .map_err(|m| bad(name, format!("parameter `{name}`: {m}")))?;
            params.insert(name.clone(), v);
        }
        for r in &file.requires {
            if !matches!(params.get(r), Some(ParamValue::List(_))) {
                return Err(bad(
                    "requires",
                    format!("`{r}` must be a list parameter of this rule"),
                ));
            }
        }
        let tests = load_tests(file.tests, &params, dir, files, &toml_path, &text)?;
        let sql = files
            .read_to_string(&sql_path)
            .map_err(|source| DetectError::Io {
                path: sql_path.clone(),
                source,
            })?;
        Ok(Rule {
            id: file.id,
            version: file.version,
            title: file.title,
            severity: file.severity,
            description: file.description,
            catalog: file.catalog,
            attack: file.attack,
            tags: file.tags,
            enabled: file.enabled,
            streaming: file.streaming,
            schedule,
            lookback,
            baseline,
            dedup_window,
            group_by: file.group_by,
            threshold: file.threshold,
            summary: file.summary,
            false_positives: file.false_positives,
            runbook: file.runbook,
            requires: file.requires,
            params,
            tests,
            dir: dir.to_path_buf(),
            source: files,
            sql,
            sql_path,
        })
    }
}

/// The rule's `[[tests]]`: parameters of the kinds the rule declares, fixtures that exist,
/// `expect` agreeing with `findings`.
fn load_tests(
    file_tests: Vec<TestFile>,
    params: &Params,
    dir: &Path,
    files: Source,
    toml_path: &Path,
    text: &str,
) -> Result<Vec<RuleTest>, DetectError> {
    let bad =
        |key: &str, message: String| DetectError::rule(toml_path, key_line(text, key), message);
    let mut tests = Vec::new();
    for t in file_tests {
        let mut tp = Params::new();
        for (name, value) in &t.params {
            let v = ParamValue::from_toml(value, dir, files)
                .map_err(|m| bad("params", m.to_string()))?;
            match params.get(name) {
                Some(d) if v.same_kind(d) => {}
                _ => {
                    return Err(DetectError::rule(
                        toml_path,
                        key_line(text, "name").max(1),
                        format!(
                            "test `{}`: parameter `{name}` is not declared with that kind",
                            t.name
                        ),
                    ));
                }
            }
            tp.insert(name.clone(), v);
        }
        let time = |v: Option<String>| {
            v.map(|s| {
                chrono::DateTime::parse_from_rfc3339(&s)
                    .map(|d| d.to_utc())
                    .map_err(|e| bad("since", format!("test `{}`: `{s}`: {e}", t.name)))
            })
            .transpose()
        };
        let fixture = dir.join("fixtures").join(&t.fixture);
        if !files.is_file(&fixture) {
            return Err(bad(
                "fixture",
                format!("test `{}`: no fixture file {}", t.name, fixture.display()),
            ));
        }
        if let Some(e) = &t.expect
            && e.len() != t.findings
        {
            return Err(bad(
                "expect",
                format!(
                    "test `{}`: `expect` lists {} finding(s) but `findings` is {}",
                    t.name,
                    e.len(),
                    t.findings
                ),
            ));
        }
        tests.push(RuleTest {
            since: time(t.since)?,
            until: time(t.until)?,
            name: t.name,
            fixture,
            findings: t.findings,
            evidence: t.evidence,
            expect: t.expect,
            params: tp,
        });
    }
    Ok(tests)
}

/// Loads every rule under `rules_dir` (each sub-folder with a `rule.toml`), sorted by id.
/// `pattern` keeps rules whose id contains it or matches a catalog id (`K14`).
pub fn load_rules(rules_dir: &Path, pattern: Option<&str>) -> Result<Vec<Rule>, DetectError> {
    load_pack(&[(Source::Disk, rules_dir.to_path_buf())], pattern)
}

/// Loads the rules of each layer in turn (e.g. the built-in pack, then a directory): a rule of
/// a later layer replaces the earlier rule with the same id. Sorted by id; `pattern` as in
/// [`load_rules`].
pub fn load_pack(
    layers: &[(Source, PathBuf)],
    pattern: Option<&str>,
) -> Result<Vec<Rule>, DetectError> {
    let mut by_id = BTreeMap::new();
    for (files, dir) in layers {
        let dirs = files.rule_dirs(dir).map_err(|source| DetectError::Io {
            path: dir.clone(),
            source,
        })?;
        for d in dirs {
            let rule = Rule::load_from(*files, &d)?;
            by_id.insert(rule.id.clone(), rule);
        }
    }
    let mut rules: Vec<Rule> = by_id.into_values().collect();
    if let Some(p) = pattern {
        rules.retain(|r| r.matches(p));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).unwrap();
        // What the hand-written parser took, unchanged.
        assert_eq!(ok("30s"), TimeDelta::seconds(30));
        assert_eq!(ok("5m"), TimeDelta::minutes(5));
        assert_eq!(ok("90m"), TimeDelta::minutes(90));
        assert_eq!(ok("24h"), TimeDelta::hours(24));
        assert_eq!(ok("7d"), TimeDelta::days(7));
        assert_eq!(ok("36500d"), TimeDelta::days(36500));
        assert_eq!(ok("0s"), TimeDelta::zero());
        assert_eq!(ok(" 15m "), TimeDelta::minutes(15));
        assert_eq!(ok("5 m"), TimeDelta::minutes(5));
        // Now also: compound spans, weeks, milliseconds, long unit names.
        assert_eq!(ok("1h30m"), TimeDelta::minutes(90));
        assert_eq!(ok("1h 30m"), TimeDelta::minutes(90));
        assert_eq!(ok("1w"), TimeDelta::days(7));
        assert_eq!(ok("250ms"), TimeDelta::milliseconds(250));
        assert_eq!(ok("2 hours"), TimeDelta::hours(2));
        // Still refused, with the reason.
        assert!(
            parse_duration("5")
                .unwrap_err()
                .0
                .contains("time unit needed")
        );
        assert!(parse_duration("-1h").is_err());
        assert!(parse_duration("").is_err());
        assert!(
            parse_duration("3x")
                .unwrap_err()
                .0
                .contains("unknown time unit \"x\"")
        );
    }

    fn write_rule(dir: &Path, toml: &str) -> PathBuf {
        let d = dir.join("demo-rule");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("rule.toml"), toml).unwrap();
        std::fs::write(
            d.join("query.sql"),
            "SELECT audit_id, stage_at, cluster FROM audit_events",
        )
        .unwrap();
        d
    }

    const GOOD: &str = r#"id = "demo-rule"
version = 1
title = "Demo"
severity = "low"
description = "d"
attack = []
summary = "s"
runbook = "r"
"#;

    #[test]
    fn loads_a_minimal_rule_with_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let rule = Rule::load(&write_rule(tmp.path(), GOOD)).unwrap();
        assert_eq!(rule.threshold, 1);
        assert_eq!(rule.dedup_window, TimeDelta::try_hours(1).unwrap());
        assert!(rule.enabled);
    }

    #[test]
    fn errors_name_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let err =
            Rule::load(&write_rule(tmp.path(), &format!("{GOOD}severity2 = 1\n"))).unwrap_err();
        assert!(err.to_string().contains("demo-rule/rule.toml:9:"), "{err}");
        let err = Rule::load(&write_rule(
            tmp.path(),
            &GOOD.replace("\"low\"", "\"urgent\""),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("rule.toml:4:"), "{err}");
        let err = Rule::load(&write_rule(
            tmp.path(),
            &format!("{GOOD}lookback = \"5 parsecs\"\n"),
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("rule.toml:9: `5 parsecs` is not a duration"),
            "{err}"
        );
    }
}
