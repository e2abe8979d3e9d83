//! The scheduler of `auditlake serve`: runs each active rule on its `schedule` over
//! `[watermark − lateness, now − settle)` in event time, records findings in the store, hands new
//! ones to the alert outbox and then advances the rule's watermark, persisted in the lake's state
//! document `scheduler.json` ([`Lake::write_state`]: `<lake>/_state/scheduler.json` on disk, or
//! the same key in the lake's bucket, where a replica that takes over the scheduler finds it).
//!
//! Order of effects per run — alerts enqueued (durable, keyed by finding id + revision), findings
//! written, watermark saved — makes every crash point safe: a run interrupted before the
//! watermark is saved repeats its window after the restart; the store recognises what it already
//! recorded and the outbox ignores a key it already holds, so nothing is skipped and nothing is
//! alerted twice. `lateness` re-reads the recent past on every run, so events that arrive late
//! (managed clouds deliver minutes late) are still evaluated; findings they only extend become a
//! new revision, not a new alert.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use auditlake_ingest::Lake;
use auditlake_ingest::error::chain;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::{Detector, Window};
use crate::error::DetectError;
use crate::finding::Finding;
use crate::params::Params;
use crate::rule::Rule;
use crate::store::{Change, FindingsStore};
use crate::suppress::{Suppression, Suppressions};

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// How far back every run re-reads before the watermark, for late events.
    pub lateness: TimeDelta,
    /// How long after `now` a window stays open (events still being flushed to the lake).
    pub settle: TimeDelta,
    /// Where a rule without a saved watermark starts: `now − initial_lookback`.
    pub initial_lookback: TimeDelta,
    /// Findings that share actor/target within this window form one incident.
    pub incident_window: TimeDelta,
    /// How far back the store reads findings on start (longer than any dedup window).
    pub dedup_horizon: TimeDelta,
    /// Longest wait after a failed run before it is retried (doubling from 5 s).
    pub max_retry_backoff: TimeDelta,
    /// Findings judged benign (`[[detect.suppressions]]`): never recorded nor alerted.
    pub suppressions: Suppressions,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            lateness: TimeDelta::minutes(10),
            settle: TimeDelta::seconds(30),
            initial_lookback: TimeDelta::hours(1),
            incident_window: TimeDelta::hours(1),
            dedup_horizon: TimeDelta::days(7),
            max_retry_backoff: TimeDelta::minutes(5),
            suppressions: Suppressions::default(),
        }
    }
}

/// Where findings go to be alerted: the durable outbox of the sinks.
pub trait Alerts: Send + Sync {
    /// Makes the alerts durable before returning; enqueuing a key that is already there (or
    /// already delivered) does nothing.
    fn enqueue(&self, findings: &[Finding]) -> Result<(), auditlake_ingest::IngestError>;
}

/// What the scheduler reports as it works (metrics, logs).
pub trait SchedulerObserver: Send + Sync {
    fn rule_ran(
        &self,
        _rule: &str,
        _took: Duration,
        _new: usize,
        _updated: usize,
        _watermark_lag: TimeDelta,
    ) {
    }
    fn rule_failed(&self, _rule: &str, _error: &str, _retry_in: TimeDelta) {}
    /// `count` findings of `rule` matched `suppression` and were left out.
    fn findings_suppressed(&self, _rule: &str, _suppression: &Suppression, _count: usize) {}
    /// `suppression` has expired: it no longer applies (said once per process).
    fn suppression_expired(&self, _suppression: &Suppression) {}
}

/// RFC 3339 in the state file (chrono is built without its serde feature: enabling it would
/// rebuild the whole DataFusion stack).
mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.to_utc())
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            let s = Option::<String>::deserialize(d)?;
            s.map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.to_utc())
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
        }
    }
}

/// Per-rule progress, persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleState {
    /// Every event with `stage_at` before this was evaluated at least once.
    #[serde(with = "rfc3339")]
    pub watermark: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub next_run: DateTime<Utc>,
    #[serde(with = "rfc3339::option", default)]
    pub last_run: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub consecutive_errors: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    rules: BTreeMap<String, RuleState>,
}

/// What one pass over the due rules did.
#[derive(Debug, Clone, Default)]
pub struct TickReport {
    pub rules_run: usize,
    pub rules_failed: usize,
    pub new_findings: usize,
    pub updated_findings: usize,
    /// The tick stopped early because the [`Scheduler::set_guard`] guard said this process may
    /// no longer run rules (its lease ran out mid-tick).
    pub stopped: bool,
}

/// Whether this process may still run rules (serve: whether it still holds the scheduler lease).
pub type Guard = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

pub struct Scheduler {
    rules: Vec<(Rule, Params)>,
    opts: SchedulerOptions,
    detector: Detector,
    store: FindingsStore,
    state: State,
    lake: Lake,
    guard: Option<Guard>,
}

/// The state document of the scheduler (under `_state/`).
pub const STATE_DOC: &str = "scheduler.json";

fn load_state(lake: &Lake) -> Result<State, DetectError> {
    match lake.read_state(STATE_DOC)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            DetectError::Store(format!(
                "{}: {e}",
                lake.location_of(&Lake::state_rel(STATE_DOC))
            ))
        }),
        None => Ok(State::default()),
    }
}

impl Scheduler {
    /// `rules` are the active rules with their parameters; `detector` wraps a session over the lake.
    pub fn open(
        lake: &Lake,
        rules: Vec<(Rule, Params)>,
        detector: Detector,
        opts: SchedulerOptions,
    ) -> Result<Scheduler, DetectError> {
        let state = load_state(lake)?;
        let store = FindingsStore::open(lake, opts.dedup_horizon, opts.incident_window)?;
        Ok(Scheduler {
            rules,
            opts,
            detector,
            store,
            state,
            lake: lake.clone(),
            guard: None,
        })
    }

    /// Asked before each rule of a tick: once it says no, the tick stops. A replica whose lease
    /// ran out while a long tick was running must not go on storing findings and alerting beside
    /// the replica that took over (which would find the same findings new in its own index).
    pub fn set_guard(&mut self, guard: Guard) {
        self.guard = Some(guard);
    }

    fn may_run(&self) -> bool {
        self.guard.as_ref().is_none_or(|still| still())
    }

    /// Re-reads the watermarks and the recent findings from the lake: after this process takes
    /// the scheduler over from another replica, which moved both on meanwhile.
    pub fn reload(&mut self) -> Result<(), DetectError> {
        self.state = load_state(&self.lake)?;
        self.store = FindingsStore::open(
            &self.lake,
            self.opts.dedup_horizon,
            self.opts.incident_window,
        )?;
        Ok(())
    }

    pub fn rule_state(&self, id: &str) -> Option<&RuleState> {
        self.state.rules.get(id)
    }

    /// The next instant a rule is due (for sleeping until then).
    pub fn next_due(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.rules
            .iter()
            .map(|(r, _)| self.state.rules.get(&r.id).map_or(now, |s| s.next_run))
            .min()
            .unwrap_or(now + TimeDelta::minutes(1))
    }

    fn save(&self) -> Result<(), DetectError> {
        let bytes = serde_json::to_vec_pretty(&self.state).expect("state serializes");
        self.lake
            .write_state(STATE_DOC, &bytes)
            .map_err(DetectError::Lake)
    }

    /// Runs every rule that is due at `now`. A failing rule is recorded and retried with
    /// backoff; the others run regardless.
    pub async fn tick(
        &mut self,
        now: DateTime<Utc>,
        alerts: &dyn Alerts,
        observer: &dyn SchedulerObserver,
    ) -> TickReport {
        let mut report = TickReport::default();
        for i in 0..self.rules.len() {
            if !self.may_run() {
                report.stopped = true;
                break;
            }
            let id = self.rules[i].0.id.clone();
            let state = self
                .state
                .rules
                .entry(id.clone())
                .or_insert_with(|| RuleState {
                    watermark: now - self.opts.initial_lookback,
                    next_run: now,
                    last_run: None,
                    last_error: None,
                    consecutive_errors: 0,
                })
                .clone();
            if state.next_run > now {
                continue;
            }
            let until = now - self.opts.settle;
            let started = Instant::now();
            let result = self
                .run_rule(i, state.watermark, until, now, alerts, observer)
                .await;
            if result.is_err() && !self.may_run() {
                // Lost the lease while the rule ran: its results were not kept, and the
                // replica that holds the lease now owns the watermark.
                report.stopped = true;
                break;
            }
            let schedule = self.rules[i].0.schedule;
            let entry = self.state.rules.get_mut(&id).expect("inserted above");
            entry.last_run = Some(now);
            match result {
                Ok((new, updated)) => {
                    report.rules_run += 1;
                    report.new_findings += new;
                    report.updated_findings += updated;
                    entry.watermark = entry.watermark.max(until);
                    entry.next_run = now + schedule;
                    entry.last_error = None;
                    entry.consecutive_errors = 0;
                    observer.rule_ran(&id, started.elapsed(), new, updated, now - entry.watermark);
                }
                Err(e) => {
                    report.rules_failed += 1;
                    entry.consecutive_errors += 1;
                    let backoff = (TimeDelta::seconds(5)
                        * 2i32.saturating_pow(entry.consecutive_errors.min(10) - 1))
                    .min(self.opts.max_retry_backoff);
                    entry.next_run = now + backoff;
                    let e = chain(&e);
                    observer.rule_failed(&id, &e, backoff);
                    entry.last_error = Some(e);
                }
            }
            if let Err(e) = self.save() {
                observer.rule_failed(
                    &id,
                    &format!("saving scheduler state: {}", chain(&e)),
                    TimeDelta::zero(),
                );
            }
        }
        report
    }

    /// Runs the streaming rules over events that just became durable. Their findings go through
    /// the same store as scheduled ones, so the scheduled run that later sees the same events
    /// recognises them and does not alert again. Watermarks are not moved: the schedule still
    /// covers every event.
    pub async fn stream(
        &mut self,
        events: Vec<arrow::record_batch::RecordBatch>,
        alerts: &dyn Alerts,
        observer: &dyn SchedulerObserver,
    ) -> TickReport {
        let mut report = TickReport::default();
        if events.is_empty() {
            return report;
        }
        for i in 0..self.rules.len() {
            if !self.rules[i].0.streaming {
                continue;
            }
            let started = Instant::now();
            let (rule, params) = &self.rules[i];
            let id = rule.id.clone();
            let result = async {
                let found = self
                    .detector
                    .run_on_events(rule, params, events.clone())
                    .await?;
                let found = suppress(&mut self.opts.suppressions, found, Utc::now(), observer);
                record(&mut self.store, found, "streaming", Utc::now(), alerts)
            }
            .await;
            match result {
                Ok((new, updated)) => {
                    report.rules_run += 1;
                    report.new_findings += new;
                    report.updated_findings += updated;
                    observer.rule_ran(&id, started.elapsed(), new, updated, TimeDelta::zero());
                }
                Err(e) => {
                    // The scheduled run still covers these events.
                    report.rules_failed += 1;
                    observer.rule_failed(
                        &id,
                        &format!("streaming: {}", chain(&e)),
                        TimeDelta::zero(),
                    );
                }
            }
        }
        report
    }

    /// True when any rule runs in streaming mode.
    pub fn has_streaming_rules(&self) -> bool {
        self.rules.iter().any(|(r, _)| r.streaming)
    }

    /// One rule over `[watermark − lateness, until)`: (new, updated) findings.
    async fn run_rule(
        &mut self,
        i: usize,
        watermark: DateTime<Utc>,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        alerts: &dyn Alerts,
        observer: &dyn SchedulerObserver,
    ) -> Result<(usize, usize), DetectError> {
        if until <= watermark {
            return Ok((0, 0));
        }
        let (rule, params) = &self.rules[i];
        let window = Window {
            since: Some(watermark - self.opts.lateness),
            until: Some(until),
            clusters: Vec::new(),
        };
        let found = self.detector.run(rule, params, &window).await?;
        // A query can run for minutes: checked again before anything is stored or alerted.
        if !self.may_run() {
            return Err(DetectError::LeaseLost);
        }
        let found = suppress(&mut self.opts.suppressions, found, now, observer);
        record(&mut self.store, found, "scheduled", now, alerts)
    }
}

/// `found` without the findings an unexpired suppression matches (wall-clock `now`: whether a
/// suppression still holds is an operator's decision in real time, not in event time).
fn suppress(
    suppressions: &mut Suppressions,
    found: Vec<Finding>,
    now: DateTime<Utc>,
    observer: &dyn SchedulerObserver,
) -> Vec<Finding> {
    if suppressions.is_empty() {
        return found;
    }
    let applied = suppressions.apply(found, now);
    for i in applied.newly_expired {
        observer.suppression_expired(&suppressions.list[i]);
    }
    let mut counts = BTreeMap::<usize, (String, usize)>::new();
    for (i, f) in &applied.suppressed {
        counts.entry(*i).or_insert_with(|| (f.rule_id.clone(), 0)).1 += 1;
    }
    for (i, (rule, n)) in counts {
        observer.findings_suppressed(&rule, &suppressions.list[i], n);
    }
    applied.kept
}

/// Reconciles `found` with the store, alerts the new findings and records every change: the
/// durable alert first, then the record, so a crash in between repeats the run and the outbox
/// ignores the key it already holds. Returns (new, updated).
fn record(
    store: &mut FindingsStore,
    found: Vec<Finding>,
    origin: &str,
    now: DateTime<Utc>,
    alerts: &dyn Alerts,
) -> Result<(usize, usize), DetectError> {
    let changes: Vec<Change> = store.reconcile(found, origin, now);
    let new: Vec<Finding> = changes
        .iter()
        .filter(|c| c.is_new)
        .map(|c| c.finding.clone())
        .collect();
    alerts.enqueue(&new).map_err(DetectError::Alerts)?;
    store.write(&changes)?;
    Ok((new.len(), changes.len() - new.len()))
}

/// Runs a retro-hunt's findings through the store (marked `retro-hunt`) so they are queryable
/// beside scheduled ones and never duplicate them. Returns the changes written.
pub fn store_retro_hunt(
    lake: &Lake,
    found: Vec<Finding>,
    opts: &SchedulerOptions,
) -> Result<Vec<Change>, DetectError> {
    let mut store = FindingsStore::open(lake, opts.dedup_horizon, opts.incident_window)?;
    let changes = store.reconcile(found, "retro-hunt", Utc::now());
    store.write(&changes)?;
    Ok(changes)
}

#[cfg(test)]
mod tests;
