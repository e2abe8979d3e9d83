//! Tests of the rule scheduler (moved out of `scheduler.rs`).

use super::*;
use std::path::Path;
use std::sync::Mutex;

use crate::fixtures::fixture_lake;
use auditlake_query::{SessionOptions, open_lake};

#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);
impl Alerts for Recorded {
    fn enqueue(&self, findings: &[Finding]) -> Result<(), auditlake_ingest::IngestError> {
        self.0
            .lock()
            .unwrap()
            .extend(findings.iter().map(|f| f.idempotency_key()));
        Ok(())
    }
}
struct Quiet;
impl SchedulerObserver for Quiet {}

/// `rules/<src>` copied as rule `id`, with `extra_condition` ANDed to its query.
fn rule_copy(src: &str, id: &str, dir: &Path, extra_condition: Option<&str>) -> Rule {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../rules")
        .join(src);
    let to = dir.join(id);
    std::fs::create_dir_all(to.join("fixtures")).unwrap();
    for f in [
        "query.sql",
        "fixtures/positive.jsonl",
        "fixtures/negative.jsonl",
    ] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    let toml = std::fs::read_to_string(from.join("rule.toml")).unwrap();
    std::fs::write(
        to.join("rule.toml"),
        toml.replace(&format!("id = \"{src}\""), &format!("id = \"{id}\"")),
    )
    .unwrap();
    if let Some(cond) = extra_condition {
        let sql = std::fs::read_to_string(to.join("query.sql")).unwrap();
        std::fs::write(
            to.join("query.sql"),
            format!("{}\n  AND {cond}\n", sql.trim_end()),
        )
        .unwrap();
    }
    Rule::load(&to).unwrap()
}

/// A failing rule is recorded and retried with backoff; the others still run and advance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rule_is_retried_and_does_not_stop_the_others() {
    let rules_dir = tempfile::tempdir().unwrap();
    let good = rule_copy("exec-into-pod", "exec-into-pod", rules_dir.path(), None);
    let fixture = good.dir.join("fixtures/positive.jsonl");
    let lake = fixture_lake(&[("prod", &fixture)]).unwrap();
    // Plans fine, fails while running: integer division by zero on the rows it sees.
    let broken = rule_copy(
        "exec-into-pod",
        "exec-into-pod-broken",
        rules_dir.path(),
        Some("1 / (length(audit_id) - length(audit_id)) = 1"),
    );
    let params = |r: &Rule| r.params.clone();
    let rules = vec![
        (broken.clone(), params(&broken)),
        (good.clone(), params(&good)),
    ];
    let ctx = open_lake(lake.path(), &SessionOptions::default())
        .await
        .unwrap();
    let detector = Detector::new(ctx).await.unwrap();
    // The fixture's events are from 2026-11-20; start the watermarks before them.
    let opts = SchedulerOptions {
        initial_lookback: Utc::now()
            - DateTime::parse_from_rfc3339("2026-11-19T00:00:00Z")
                .unwrap()
                .to_utc(),
        ..SchedulerOptions::default()
    };
    let mut s = Scheduler::open(&Lake::new(lake.path()), rules, detector, opts.clone()).unwrap();
    let alerts = Recorded::default();
    let now = Utc::now();
    let report = s.tick(now, &alerts, &Quiet).await;
    assert_eq!((report.rules_run, report.rules_failed), (1, 1));
    assert_eq!(report.new_findings, 2);
    assert_eq!(alerts.0.lock().unwrap().len(), 2);
    let failed = s.rule_state("exec-into-pod-broken").unwrap().clone();
    assert_eq!(failed.consecutive_errors, 1);
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap()
            .contains("DivideByZero"),
        "{failed:?}"
    );
    assert_eq!(failed.next_run, now + TimeDelta::seconds(5));
    assert!(
        failed.watermark < now - TimeDelta::days(1),
        "a failed run does not move the watermark"
    );
    assert_eq!(
        s.rule_state("exec-into-pod").unwrap().watermark,
        now - opts.settle
    );

    // Restart: the state and the findings survive; nothing is alerted again.
    let ctx = open_lake(lake.path(), &SessionOptions::default())
        .await
        .unwrap();
    let detector = Detector::new(ctx).await.unwrap();
    let mut s = Scheduler::open(
        &Lake::new(lake.path()),
        vec![(good.clone(), params(&good))],
        detector,
        opts,
    )
    .unwrap();
    let later = now + TimeDelta::minutes(10);
    let report = s.tick(later, &alerts, &Quiet).await;
    assert_eq!((report.rules_run, report.new_findings), (1, 0));
    assert_eq!(alerts.0.lock().unwrap().len(), 2);

    // Once the guard says no (the lease ran out), a due rule is not run, its watermark and
    // schedule stay where they were.
    let before = s.rule_state("exec-into-pod").unwrap().clone();
    s.set_guard(std::sync::Arc::new(|| false));
    let report = s.tick(later + TimeDelta::hours(1), &alerts, &Quiet).await;
    assert!(report.stopped);
    assert_eq!((report.rules_run, report.rules_failed), (0, 0));
    let after = s.rule_state("exec-into-pod").unwrap();
    assert_eq!(
        (after.watermark, after.next_run, after.last_run),
        (before.watermark, before.next_run, before.last_run)
    );
    // Lost while the rule's query ran (the guard allows the start, not the store): nothing
    // stored or alerted, the watermark not moved.
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    s.set_guard(std::sync::Arc::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
    }));
    let report = s.tick(later + TimeDelta::hours(1), &alerts, &Quiet).await;
    assert!(report.stopped);
    assert_eq!(report.rules_run, 0);
    assert!(asked.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    assert_eq!(alerts.0.lock().unwrap().len(), 2);
    let after = s.rule_state("exec-into-pod").unwrap();
    assert_eq!(after.watermark, before.watermark);
}

#[derive(Default)]
struct Counted(Mutex<Vec<String>>);
impl SchedulerObserver for Counted {
    fn findings_suppressed(&self, rule: &str, s: &Suppression, count: usize) {
        self.0
            .lock()
            .unwrap()
            .push(format!("suppressed {rule} {} {count}", s.key));
    }
    fn suppression_expired(&self, s: &Suppression) {
        self.0.lock().unwrap().push(format!("expired {}", s.key));
    }
}

/// Suppressed findings are neither alerted nor recorded; an expired suppression is reported
/// once and holds nothing back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppressed_findings_are_not_alerted() {
    let rules_dir = tempfile::tempdir().unwrap();
    let rule = rule_copy("exec-into-pod", "exec-into-pod", rules_dir.path(), None);
    let lake = fixture_lake(&[("prod", &rule.dir.join("fixtures/positive.jsonl"))]).unwrap();
    let spec = |target: &str, expires: Option<&str>| crate::SuppressionSpec {
        rule: "exec-into-pod".into(),
        target: Some(target.into()),
        reason: "r".into(),
        expires: expires.map(str::to_owned),
        ..Default::default()
    };
    let all = std::slice::from_ref(&rule);
    let suppressions = Suppressions::new(vec![
        Suppression::new("detect.suppressions[0]", spec("pods/exec *", None), all).unwrap(),
        Suppression::new(
            "detect.suppressions[1]",
            spec("pods/*", Some("2020-01-01")),
            all,
        )
        .unwrap(),
    ]);
    let ctx = open_lake(lake.path(), &SessionOptions::default())
        .await
        .unwrap();
    let opts = SchedulerOptions {
        initial_lookback: Utc::now()
            - DateTime::parse_from_rfc3339("2026-11-19T00:00:00Z")
                .unwrap()
                .to_utc(),
        suppressions,
        ..SchedulerOptions::default()
    };
    let params = rule.params.clone();
    let mut s = Scheduler::open(
        &Lake::new(lake.path()),
        vec![(rule, params)],
        Detector::new(ctx).await.unwrap(),
        opts,
    )
    .unwrap();
    let alerts = Recorded::default();
    let seen = Counted::default();
    let report = s.tick(Utc::now(), &alerts, &seen).await;
    // The fixture has two findings: one pods/exec (held back), one pods/attach.
    assert_eq!(report.new_findings, 1);
    assert_eq!(alerts.0.lock().unwrap().len(), 1);
    assert_eq!(
        *seen.0.lock().unwrap(),
        vec![
            "expired detect.suppressions[1]".to_owned(),
            "suppressed exec-into-pod detect.suppressions[0] 1".to_owned()
        ]
    );
}
