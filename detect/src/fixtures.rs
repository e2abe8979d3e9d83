//! Runs each rule's fixture tests: the fixture goes through the real ingest path into a
//! throw-away lake, the rule runs through the real engine, and the findings must match exactly.

use std::collections::BTreeSet;
use std::path::Path;

use auditlake_ingest::error::chain;
use auditlake_ingest::{IngestOptions, Input, Lake, ingest};
use auditlake_query::{SessionOptions, open_lake};
use tempfile::TempDir;

use crate::engine::{Detector, Window};
use crate::error::DetectError;
use crate::finding::Finding;
use crate::params::missing_requirements;
use crate::rule::{Expected, Rule, RuleTest};
use crate::source::Source;

/// Ingests `files` (each into its own cluster) into a new temporary lake.
pub fn fixture_lake(files: &[(&str, &Path)]) -> Result<TempDir, DetectError> {
    let dir = tempfile::tempdir().map_err(|source| DetectError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let lake = Lake::new(dir.path().to_path_buf());
    for (cluster, path) in files {
        let fail = |message: String| DetectError::Fixture {
            path: path.to_path_buf(),
            message,
        };
        let mut opts = IngestOptions::new(cluster).map_err(|e| fail(chain(&e)))?;
        // Fixtures are tiny: one decode thread keeps many parallel tests from oversubscribing.
        opts.decode_threads = 1;
        ingest(&lake, &[Input::Path(path.to_path_buf())], &opts, &|_| {})
            .map_err(|e| fail(chain(&e)))?;
    }
    Ok(dir)
}

/// The outcome of one fixture test.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub rule: String,
    pub test: String,
    /// `None` when it passed, else what differed.
    pub failure: Option<String>,
    pub findings: Vec<Finding>,
}

/// Runs `test` of `rule`: rule defaults overridden by the test's own parameters (config does not
/// apply, so tests are hermetic). A rule whose `requires` lists are empty finds nothing.
pub async fn run_test(rule: &Rule, test: &RuleTest) -> Result<TestOutcome, DetectError> {
    // Ingest reads files: a fixture of the built-in pack is written out first.
    let copy;
    let fixture = match rule.source {
        Source::Disk => test.fixture.as_path(),
        Source::Embedded(_) => {
            let io = |source| DetectError::Io {
                path: test.fixture.clone(),
                source,
            };
            let bytes = rule.source.read(&test.fixture).map_err(io)?;
            copy = tempfile::Builder::new()
                .suffix(".jsonl")
                .tempfile()
                .map_err(io)?;
            std::fs::write(copy.path(), &bytes).map_err(io)?;
            copy.path()
        }
    };
    let lake = fixture_lake(&[("fixture", fixture)])?;
    let ctx = open_lake(lake.path(), &SessionOptions::default())
        .await
        .map_err(|source| DetectError::Query {
            rule: rule.id.clone(),
            source,
        })?;
    let detector = Detector::new(ctx)
        .await
        .map_err(|source| DetectError::Query {
            rule: rule.id.clone(),
            source,
        })?;
    let mut params = rule.params.clone();
    params.extend(test.params.clone());
    let findings = if missing_requirements(rule, &params).is_empty() {
        let window = Window {
            since: test.since,
            until: test.until,
            clusters: Vec::new(),
        };
        detector.run(rule, &params, &window).await?
    } else {
        Vec::new()
    };
    Ok(TestOutcome {
        rule: rule.id.clone(),
        test: test.name.clone(),
        failure: compare(test, &findings),
        findings,
    })
}

fn compare(test: &RuleTest, findings: &[Finding]) -> Option<String> {
    let got: BTreeSet<&str> = findings
        .iter()
        .flat_map(|f| f.evidence_audit_ids.iter().map(String::as_str))
        .collect();
    if findings.len() != test.findings {
        return Some(format!(
            "expected {} finding(s), got {} (evidence: {:?})",
            test.findings,
            findings.len(),
            got
        ));
    }
    if let Some(want) = &test.evidence {
        let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
        if want != got {
            return Some(format!("expected evidence {want:?}, got {got:?}"));
        }
    }
    let mut got: Vec<Expected> = findings
        .iter()
        .map(|f| Expected {
            actor: f.actor.clone(),
            target: f.target.clone(),
            summary: f.summary.clone(),
            severity: Some(f.severity.clone()),
        })
        .collect();
    // A count says a rule fired, not that what it tells the analyst is right.
    let Some(want) = &test.expect else {
        if findings.is_empty() {
            return None;
        }
        return Some(format!(
            "the test checks counts only: add what each finding must say\nexpect = [\n{}]",
            expect_toml(&got)
        ));
    };
    let mut want = want.clone();
    // Order-free; severity is compared only where the test states it.
    got.sort_by(|a, b| (&a.actor, &a.target, &a.summary).cmp(&(&b.actor, &b.target, &b.summary)));
    want.sort_by(|a, b| (&a.actor, &a.target, &a.summary).cmp(&(&b.actor, &b.target, &b.summary)));
    let matches = want.len() == got.len()
        && want.iter().zip(&got).all(|(w, g)| {
            w.actor == g.actor
                && w.target == g.target
                && w.summary == g.summary
                && (w.severity.is_none() || w.severity == g.severity)
        });
    if matches {
        None
    } else {
        Some(format!(
            "findings differ from `expect`; got\nexpect = [\n{}]",
            expect_toml(&got)
        ))
    }
}

/// Findings as `expect` entries of rule.toml, one inline table per line.
fn expect_toml(findings: &[Expected]) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    findings
        .iter()
        .map(|e| {
            let mut fields = Vec::new();
            if let Some(a) = &e.actor {
                fields.push(format!("actor = {}", q(a)));
            }
            if let Some(t) = &e.target {
                fields.push(format!("target = {}", q(t)));
            }
            fields.push(format!("summary = {}", q(&e.summary)));
            if let Some(s) = &e.severity {
                fields.push(format!("severity = {}", q(s)));
            }
            format!("  {{ {} }},\n", fields.join(", "))
        })
        .collect()
}
