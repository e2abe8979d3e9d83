//! `/metrics` of the Ballista scheduler and executors, in the text format serve's `/metrics`
//! uses, on their own `--metrics-listen` port (apart from the gRPC and Flight ports, so a
//! NetworkPolicy can open it to Prometheus alone).
//!
//! The scheduler counts jobs by outcome and times them (Ballista's `SchedulerMetricsCollector`
//! hook), and at each scrape reads how many executors are registered and how stale their
//! heartbeats are — what says the cluster is losing workers. An executor exports what its pod
//! runs out of: resident memory, CPU time, and the bytes of shuffle files and spills in its
//! work directory. (Per-task counts on executors would mean replacing Ballista's execution
//! engine, whose connection pool is private to the crate: left to the scheduler's job counts.)

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use ballista_core::JobId;
use ballista_scheduler::metrics::SchedulerMetricsCollector;
use ballista_scheduler::state::executor_manager::ExecutorManager;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What a scrape renders: refreshes the gauges read at scrape time, then encodes.
pub type Render = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: String,
    role: &'static str,
}

/// `auditlake_build_info{version, role} 1`: which build a process runs (a scheduler refuses a
/// client of another build, but not executors: this shows which pod differs).
fn build_info(registry: &mut Registry, role: &'static str) {
    let info = Family::<BuildLabel, Gauge>::default();
    info.get_or_create(&BuildLabel {
        version: auditlake_query::distributed::build_fingerprint().to_owned(),
        role,
    })
    .set(1);
    registry.register(
        "build_info",
        "The auditlake build (version+function digest) of this process",
        info,
    );
}

fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

/// Job durations: 50 ms to ~14 min.
fn job_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 15))
}

/// The scheduler's metrics; Ballista's event loop reports jobs to it.
pub struct SchedulerMetrics {
    registry: Registry,
    submitted: Counter,
    finished: Family<OutcomeLabel, Counter>,
    job_seconds: Histogram,
    queued_seconds: Histogram,
    pending_tasks: Gauge,
    executors: Gauge,
    heartbeat_age: Gauge<f64, AtomicU64>,
}

impl SchedulerMetrics {
    pub fn new() -> SchedulerMetrics {
        let mut registry = Registry::with_prefix("auditlake");
        build_info(&mut registry, "scheduler");
        let mut m = SchedulerMetrics {
            registry,
            submitted: Counter::default(),
            finished: Family::default(),
            job_seconds: job_seconds(),
            queued_seconds: job_seconds(),
            pending_tasks: Gauge::default(),
            executors: Gauge::default(),
            heartbeat_age: Gauge::default(),
        };
        // Every outcome shows from the first scrape, at 0 (an alert's `increase` needs it).
        for outcome in ["completed", "failed", "cancelled"] {
            drop(m.finished.get_or_create(&OutcomeLabel { outcome }));
        }
        let r = &mut m.registry;
        r.register(
            "ballista_jobs_submitted",
            "Queries planned into stages and handed to executors",
            m.submitted.clone(),
        );
        r.register(
            "ballista_jobs_finished",
            "Queries finished, by outcome (completed, failed, cancelled)",
            m.finished.clone(),
        );
        r.register(
            "ballista_job_seconds",
            "Wall time of completed queries, from arrival to completion",
            m.job_seconds.clone(),
        );
        r.register(
            "ballista_job_queued_seconds",
            "Time from a query's arrival to its submission to executors (planning)",
            m.queued_seconds.clone(),
        );
        r.register(
            "ballista_pending_tasks",
            "Tasks ready to run for which no executor has a free slot",
            m.pending_tasks.clone(),
        );
        r.register(
            "ballista_executors",
            "Executors registered with this scheduler",
            m.executors.clone(),
        );
        r.register(
            "ballista_executor_heartbeat_age_seconds",
            "Seconds since the stalest registered executor's last heartbeat",
            m.heartbeat_age.clone(),
        );
        m
    }

    /// Reads the executors' registrations and heartbeats, then encodes.
    pub async fn render(&self, executors: &ExecutorManager) -> String {
        match executors.get_executors_state().await {
            Ok(state) => {
                self.executors.set(state.len() as i64);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let stalest = state
                    .iter()
                    .filter_map(|(_, heartbeat, _)| *heartbeat)
                    .map(|at| now.saturating_sub(at))
                    .max()
                    .unwrap_or(Duration::ZERO);
                self.heartbeat_age.set(stalest.as_secs_f64());
            }
            // The last values stay; the scrape still answers.
            Err(e) => eprintln!("warning: metrics: reading the executors' state: {e}"),
        }
        encode(&self.registry)
    }
}

/// Ballista's millisecond timestamps as seconds between them.
fn between(from_ms: u64, to_ms: u64) -> f64 {
    to_ms.saturating_sub(from_ms) as f64 / 1000.0
}

impl SchedulerMetricsCollector for SchedulerMetrics {
    fn record_submitted(&self, _job_id: &JobId, queued_at: u64, submitted_at: u64) {
        self.submitted.inc();
        self.queued_seconds
            .observe(between(queued_at, submitted_at));
    }

    fn record_completed(&self, _job_id: &JobId, queued_at: u64, completed_at: u64) {
        self.outcome("completed");
        self.job_seconds.observe(between(queued_at, completed_at));
    }

    fn record_failed(&self, _job_id: &JobId, _queued_at: u64, _failed_at: u64) {
        self.outcome("failed");
    }

    fn record_cancelled(&self, _job_id: &JobId) {
        self.outcome("cancelled");
    }

    fn set_pending_tasks_queue_size(&self, value: u64) {
        self.pending_tasks.set(value as i64);
    }

    /// Served by [`serve`], not by Ballista's REST API (compiled out).
    fn gather_metrics(&self) -> ballista_core::error::Result<Option<(Vec<u8>, String)>> {
        Ok(None)
    }
}

impl SchedulerMetrics {
    fn outcome(&self, outcome: &'static str) {
        self.finished.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

/// An executor's metrics, all read at scrape time.
pub struct ExecutorMetrics {
    registry: Registry,
    work_dir: PathBuf,
    resident: Gauge,
    cpu_seconds: Gauge<f64, AtomicU64>,
    work_dir_bytes: Gauge,
}

impl ExecutorMetrics {
    pub fn new(work_dir: PathBuf) -> ExecutorMetrics {
        let mut registry = Registry::with_prefix("auditlake");
        build_info(&mut registry, "executor");
        let mut m = ExecutorMetrics {
            registry,
            work_dir,
            resident: Gauge::default(),
            cpu_seconds: Gauge::default(),
            work_dir_bytes: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "ballista_executor_resident_memory_bytes",
            "Resident memory of this executor process",
            m.resident.clone(),
        );
        r.register(
            "ballista_executor_cpu_seconds",
            "CPU time (user + system) this executor process has used",
            m.cpu_seconds.clone(),
        );
        r.register(
            "ballista_executor_work_dir_bytes",
            "Bytes of shuffle files and spills in the executor's --work-dir",
            m.work_dir_bytes.clone(),
        );
        m
    }

    pub fn render(&self) -> String {
        if let Some((resident, cpu)) = process_usage() {
            self.resident.set(resident as i64);
            self.cpu_seconds.set(cpu);
        }
        self.work_dir_bytes.set(dir_bytes(&self.work_dir) as i64);
        encode(&self.registry)
    }
}

/// (resident bytes, CPU seconds) of this process, from `/proc/self` (Linux: where executors
/// run); `None` elsewhere.
fn process_usage() -> Option<(u64, f64)> {
    let resident = auditlake_ingest::writer::resident_bytes()?;
    // SAFETY: sysconf reads a constant and has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (in parentheses, may hold spaces) start at field 3;
    // utime and stime are fields 14 and 15, in clock ticks.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((resident, (utime + stime) / ticks.max(1) as f64))
}

/// Bytes of the files under `dir` (shuffle output is a few directories deep); what vanishes
/// while walking (a job's files being removed) is skipped.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Serves `GET /metrics` on `listen` until the process ends.
pub async fn serve(listen: SocketAddr, render: Render) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--metrics-listen {listen}"))?;
    eprintln!("metrics on http://{}/metrics", listener.local_addr()?);
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    render().await,
                )
                    .into_response()
            }
        }),
    );
    axum::serve(listener, app).await.context("metrics server")
}
