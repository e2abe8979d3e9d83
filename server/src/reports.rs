//! Scheduled reports in `serve` (`[[reports]]`): each fires on its cron-like schedule, renders
//! the window that ends at the fire time, and writes `<output_dir>/<id>-<end>.<ext>` atomically.
//! The last window each report covered is kept in the lake's state document `reports.json`
//! (`<lake>/_state/reports.json`, or that key in the lake's bucket), so a run missed while the
//! service was down is made up (once, for the latest missed time) when it starts. On an
//! object-store lake only the replica holding the scheduler's lease renders.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auditlake_ingest::error::chain;
use auditlake_ingest::lake::Lease;
use auditlake_ingest::{IngestError, Lake};
use auditlake_query::{Scope, SessionOptions, open_lake_at};
use auditlake_report::schedule::Schedule;
use auditlake_report::{
    ReportDef, ReportFormat, ReportWindow, render, run_report, write_atomically,
};
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use crate::error::ServerError;
use crate::log;

#[derive(Debug, Clone)]
pub struct ScheduledReport {
    pub def: ReportDef,
    pub schedule: Schedule,
    pub window: TimeDelta,
    pub output_dir: PathBuf,
    pub formats: Vec<ReportFormat>,
    pub clusters: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub reports: Vec<ScheduledReport>,
    pub session: SessionOptions,
}

/// The state document (under `_state/`).
const STATE_DOC: &str = "reports.json";

fn load_state(lake: &Lake) -> BTreeMap<String, DateTime<Utc>> {
    lake.read_state(STATE_DOC)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<BTreeMap<String, String>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Some((k, DateTime::parse_from_rfc3339(&v).ok()?.to_utc())))
        .collect()
}

fn save_state(lake: &Lake, state: &BTreeMap<String, DateTime<Utc>>) -> Result<(), IngestError> {
    let text: BTreeMap<&String, String> = state.iter().map(|(k, v)| (k, v.to_rfc3339())).collect();
    let json = serde_json::to_string_pretty(&text).expect("a map of strings serializes");
    lake.write_state(STATE_DOC, json.as_bytes())
}

/// The file a run writes: `secret-access-20261130T0000Z.html`.
pub fn output_file(r: &ScheduledReport, end: DateTime<Utc>, format: ReportFormat) -> PathBuf {
    r.output_dir.join(format!(
        "{}-{}.{}",
        r.def.id,
        end.format("%Y%m%dT%H%MZ"),
        format.extension()
    ))
}

/// Renders `r` for the window ending at `end` in each of its formats.
pub async fn render_once(
    lake: &Lake,
    r: &ScheduledReport,
    end: DateTime<Utc>,
    session: &SessionOptions,
) -> Result<Vec<PathBuf>, ServerError> {
    let scope = Scope {
        since: Some(end - r.window),
        until: Some(end),
        clusters: r.clusters.clone(),
    };
    let window = ReportWindow::from(&scope);
    let opts = SessionOptions {
        scope,
        ..session.clone()
    };
    let ctx = open_lake_at(lake, &opts)
        .await
        .map_err(|source| ServerError::Query {
            what: "a scheduled report",
            source,
        })?;
    let result = run_report(&ctx, &r.def, window).await?;
    let mut written = Vec::new();
    for &format in &r.formats {
        let text = render(&result, format, None)?;
        let path = output_file(r, end, format);
        write_atomically(&path, &text)?;
        log::emit(&log::ReportWritten {
            report: &r.def.id,
            path: &path,
            bytes: text.len(),
        });
        written.push(path);
    }
    Ok(written)
}

/// The latest fire time of `s` in `(after, now]`, if any.
fn latest_due(s: &Schedule, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut due = None;
    let mut t = after;
    while let Some(next) = s.next_after(t) {
        if next > now {
            break;
        }
        due = Some(next);
        t = next;
    }
    due
}

/// Runs until `stop` turns true; renders only while this process holds `lease` (always on a
/// local lake).
pub async fn run(
    lake: Lake,
    opts: ReportOptions,
    lease: Arc<Lease>,
    mut stop: watch::Receiver<bool>,
) {
    let started = Utc::now();
    loop {
        let now = Utc::now();
        if lease.held() {
            // Re-read each time: on an object-store lake another replica may have rendered
            // while it held the lease.
            let mut state = load_state(&lake);
            for r in &opts.reports {
                // First start: begin from now (no backlog of reports nobody asked for yet).
                let last = state.get(&r.def.id).copied().unwrap_or(started);
                if let Some(end) = latest_due(&r.schedule, last, now) {
                    if let Err(e) = render_once(&lake, r, end, &opts.session).await {
                        log::emit(&log::ReportFailed {
                            report: &r.def.id,
                            error: &chain(&e),
                        });
                    }
                    // A failing report is not retried in a loop: the next fire time tries again.
                    state.insert(r.def.id.clone(), end);
                    if let Err(e) = save_state(&lake, &state) {
                        log::emit(&log::ReportFailed {
                            report: &r.def.id,
                            error: &chain(&e),
                        });
                    }
                }
            }
        }
        let now = Utc::now();
        let next = opts
            .reports
            .iter()
            .filter_map(|r| r.schedule.next_after(now))
            .min();
        let sleep = next
            .map(|n| (n - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600))
            // Wake at least every minute: clock jumps and suspended VMs happen.
            .min(Duration::from_secs(60))
            + Duration::from_millis(50);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn missed_runs_are_made_up_once_for_the_latest_time() {
        let hourly = Schedule::parse("@hourly").unwrap();
        let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 30, h, m, 0).unwrap();
        assert_eq!(latest_due(&hourly, at(9, 0), at(9, 59)), None);
        assert_eq!(latest_due(&hourly, at(9, 0), at(10, 0)), Some(at(10, 0)));
        // Down from 9:00 to 12:30: one run, for 12:00.
        assert_eq!(latest_due(&hourly, at(9, 0), at(12, 30)), Some(at(12, 0)));
    }
}
