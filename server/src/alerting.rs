//! The detection half of `serve`: the scheduler task and one delivery task per sink, sharing the
//! server's shutdown signal and metrics.

use std::sync::Arc;
use std::time::Duration;

use auditlake_detect::{Detector, Params, Rule, Scheduler, SchedulerOptions};
use auditlake_ingest::Lake;
use auditlake_ingest::lake::Lease;
use auditlake_ingest::lake::lease::LeaseStatus;
use auditlake_query::{SessionOptions, open_lake_at};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::ServerError;
use crate::log;
use crate::metrics::Metrics;
use crate::sinks::{Outbox, SinkConfig, delivery_loop};
use auditlake_ingest::error::chain;

use arrow::record_batch::RecordBatch;
use auditlake_ingest::{CompactReport, Decoded, PipelineObserver};
use tokio::sync::mpsc;

/// The pipeline's observer in `serve`: metrics, plus the tap that hands durable events to the
/// streaming rules. The tap never blocks ingestion: when the scheduler is behind, a batch is
/// left to the scheduled run (which covers every event anyway) and counted.
pub struct PipelineHooks {
    pub metrics: Arc<Metrics>,
    pub stream: Option<mpsc::Sender<Vec<RecordBatch>>>,
}

impl PipelineObserver for PipelineHooks {
    fn group_committed(&self, requests: usize, bytes: usize, fsync: Duration) {
        self.metrics.group_committed(requests, bytes, fsync)
    }
    fn flushed(&self, rows: u64, files: usize, took: Duration) {
        self.metrics.flushed(rows, files, took)
    }
    fn quarantined(&self, cluster: &str, records: u64) {
        self.metrics.quarantined(cluster, records)
    }
    fn duplicates_skipped(&self, rows: u64) {
        self.metrics.duplicates_skipped(rows)
    }
    fn failed(&self, what: &str, error: &str) {
        self.metrics.failed(what, error)
    }
    fn compacted(&self, report: &CompactReport) {
        self.metrics.compacted(report)
    }
    fn recovered(&self) {
        self.metrics.recovered()
    }
    fn wal_damaged(&self, segment: &std::path::Path, offset: u64, bytes: u64, reason: &str) {
        self.metrics.wal_damaged(segment, offset, bytes, reason)
    }
    fn wal_torn_tail(&self, segment: &std::path::Path, offset: u64, bytes: u64) {
        self.metrics.wal_torn_tail(segment, offset, bytes)
    }
    fn durable(&self, decoded: &Decoded) {
        let Some(tx) = &self.stream else { return };
        let batches: Vec<RecordBatch> = decoded
            .batches
            .iter()
            .filter_map(|b| b.to_table_batch().ok())
            .collect();
        if !batches.is_empty() && tx.try_send(batches).is_err() {
            self.metrics.streaming_batches_skipped.inc();
        }
    }
}

#[derive(Debug, Clone)]
pub struct AlertingOptions {
    /// Active rules with their parameters.
    pub rules: Vec<(Rule, Params)>,
    pub scheduler: SchedulerOptions,
    pub session: SessionOptions,
    pub sinks: Vec<SinkConfig>,
    /// Longest sleep between scheduler passes (rules run on their own `schedule`).
    pub tick: Duration,
}

/// The scheduler's lease on an object-store lake (`_state/scheduler.lease`): how long one
/// renewal holds it by default (`[scheduler] lease_ttl`), and so how long the replicas wait
/// before taking over from a dead holder.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// The lease's name under `_state/`.
pub const LEASE_NAME: &str = "scheduler.lease";

/// Keeps `lease` taken or renewed every third of its TTL until `stop`, then gives it up. Nothing
/// to do on a local lake (one process holds it by the writer lock).
pub fn keep_lease(
    lake: &Lake,
    lease: Arc<Lease>,
    mut stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if !lake.is_remote() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut was: Option<LeaseStatus> = None;
        loop {
            let l = lease.clone();
            match tokio::task::spawn_blocking(move || l.refresh()).await {
                Ok(Ok(status)) => {
                    if was.as_ref() != Some(&status) {
                        match &status {
                            LeaseStatus::Held => log::emit(&log::LeaseTaken {
                                holder: lease.holder(),
                            }),
                            LeaseStatus::HeldBy { holder, expires_at } => {
                                if !matches!(&was, Some(LeaseStatus::HeldBy { holder: h, .. }) if h == holder)
                                {
                                    log::emit(&log::LeaseHeldElsewhere { holder, expires_at })
                                }
                            }
                        }
                    }
                    was = Some(status);
                }
                Ok(Err(e)) => log::emit(&log::LeaseFailed { error: &chain(&e) }),
                Err(e) => log::emit(&log::LeaseFailed { error: &chain(&e) }),
            }
            tokio::select! {
                _ = tokio::time::sleep(lease.ttl() / 3) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                let l = lease.clone();
                let _ = tokio::task::spawn_blocking(move || l.release()).await;
                return;
            }
        }
    }))
}

/// Opens the alert outbox and starts one delivery task per sink.
async fn start_delivery(
    lake: &Lake,
    sinks: &[SinkConfig],
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
) -> Result<(Arc<Outbox>, Vec<JoinHandle<()>>), ServerError> {
    let outbox = {
        let (lake, sinks) = (lake.clone(), sinks.to_vec());
        tokio::task::spawn_blocking(move || Outbox::new(&lake, sinks))
            .await
            .map_err(|source| ServerError::Task {
                what: "alert outbox",
                source,
            })?
            .map_err(ServerError::Outbox)?
    };
    let outbox = Arc::new(outbox);
    let client = crate::sinks::http_client().map_err(ServerError::HttpClient)?;
    let mut tasks = Vec::new();
    for sink in sinks.iter().cloned() {
        tasks.push(tokio::spawn(delivery_loop(
            outbox.clone(),
            sink,
            client.clone(),
            metrics.clone(),
            stop.clone(),
        )));
    }
    Ok((outbox, tasks))
}

/// The detector scheduled rules run with, over a session of its own on the lake.
async fn open_detector(lake: &Lake, session: &SessionOptions) -> Result<Detector, ServerError> {
    let ctx = open_lake_at(lake, session)
        .await
        .map_err(|source| ServerError::Query {
            what: "detections",
            source,
        })?;
    Detector::new(ctx)
        .await
        .map_err(|source| ServerError::Query {
            what: "the detector",
            source,
        })
}

/// Starts the scheduler and the sinks' delivery tasks; they stop when `stop` turns true. On an
/// object-store lake they work only while this replica holds `lease` (see [`keep_lease`]); when
/// it takes the lease over, the scheduler re-reads the watermarks and findings and the outbox
/// the keys, which the previous holder moved on.
pub async fn start(
    lake: &Lake,
    opts: AlertingOptions,
    metrics: Arc<Metrics>,
    mut stream: Option<mpsc::Receiver<Vec<RecordBatch>>>,
    stop: watch::Receiver<bool>,
    lease: Arc<Lease>,
) -> Result<Vec<JoinHandle<()>>, ServerError> {
    let (outbox, mut tasks) = start_delivery(lake, &opts.sinks, &metrics, &stop).await?;
    let detector = open_detector(lake, &opts.session).await?;
    metrics.declare(
        opts.rules.iter().map(|(rule, _)| rule.id.as_str()),
        opts.sinks.iter().map(|sink| sink.name.as_str()),
    );
    let rules = opts.rules.len();
    let mut scheduler = {
        let lake = lake.clone();
        tokio::task::spawn_blocking(move || {
            Scheduler::open(&lake, opts.rules, detector, opts.scheduler)
        })
        .await
        .map_err(|source| ServerError::Task {
            what: "scheduler start",
            source,
        })?
        .map_err(|source| ServerError::Detect {
            what: "the scheduler",
            source,
        })?
    };
    log::emit(&log::SchedulerStarted {
        rules,
        sinks: opts.sinks.len(),
    });
    let tick = opts.tick;
    let mut stop_sched = stop.clone();
    // What the scheduler and the outbox were loaded with is current at start.
    let mut was_held = lease.held();
    outbox.set_active(was_held);
    let guarded = lease.clone();
    scheduler.set_guard(Arc::new(move || guarded.held()));
    tasks.push(tokio::spawn(async move {
        let mut last_prune = std::time::Instant::now();
        loop {
            if *stop_sched.borrow() {
                return;
            }
            let held = lease.held();
            if held && !was_held {
                // Taken over: the previous holder moved watermarks, findings and the outbox on.
                let reloaded = scheduler
                    .reload()
                    .map_err(|e| chain(&e))
                    .and_then(|()| outbox.reload().map_err(|e| chain(&e)));
                if let Err(e) = reloaded {
                    log::emit(&log::LeaseFailed {
                        error: &format!("taking over the scheduler: {e}"),
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = stop_sched.changed() => {}
                    }
                    continue;
                }
            }
            outbox.set_active(held);
            was_held = held;
            if held {
                let now = chrono::Utc::now();
                scheduler.tick(now, outbox.as_ref(), metrics.as_ref()).await;
                if last_prune.elapsed() > Duration::from_secs(3600) {
                    outbox.prune_sent(Duration::from_secs(7 * 86400));
                    last_prune = std::time::Instant::now();
                }
            }
            // A standby replica's watermarks are stale (the holder moves them): it only checks
            // the lease again after a tick.
            let until_due = match held {
                true => (scheduler.next_due(chrono::Utc::now()) - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO),
                false => tick,
            };
            let sleep = tokio::time::sleep(until_due.min(tick).max(Duration::from_millis(50)));
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = stop_sched.changed() => break,
                    Some(first) = async { match stream.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                        // Everything that arrived meanwhile runs as one batch.
                        let mut events = first;
                        if let Some(rx) = stream.as_mut() {
                            while let Ok(more) = rx.try_recv() {
                                events.extend(more);
                            }
                        }
                        if lease.held() && was_held {
                            scheduler.stream(events, outbox.as_ref(), metrics.as_ref()).await;
                        } else {
                            // Not the scheduler's replica: the holder's scheduled run covers
                            // these events.
                            metrics.streaming_batches_skipped.inc();
                        }
                    }
                }
            }
        }
    }));
    Ok(tasks)
}
