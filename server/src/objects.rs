//! `[[sources.object_store]]` in `serve`: each source polled on its own thread into the same
//! lake pipeline as the webhook and Kafka (the checkpoint advances after the lake commit).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use auditlake_ingest::objects::{ObjectSource, ObjectSourceOptions, PollReport};
use auditlake_ingest::{Lake, Pipeline};

use crate::log;
use crate::metrics::{Metrics, ObjectSourceLabel};

/// One source and how often it is listed.
#[derive(Debug, Clone)]
pub struct ObjectSourceConfig {
    pub options: ObjectSourceOptions,
    pub every: Duration,
}

/// Starts one poller thread per source; they stop (after committing what they read) when
/// `stop` is set.
pub fn start(
    sources: Vec<ObjectSourceConfig>,
    lake: &Lake,
    pipeline: Arc<Pipeline>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    metrics.declare_object_sources(sources.iter().map(|s| s.options.url.as_str()));
    sources
        .into_iter()
        .enumerate()
        .map(|(i, source)| {
            let (lake, pipeline, metrics, stop) = (
                lake.clone(),
                pipeline.clone(),
                metrics.clone(),
                stop.clone(),
            );
            std::thread::Builder::new()
                .name(format!("object-source-{i}"))
                .spawn(move || run(source, &lake, &pipeline, &metrics, &stop))
        })
        .collect()
}

fn run(
    config: ObjectSourceConfig,
    lake: &Lake,
    pipeline: &Pipeline,
    metrics: &Metrics,
    stop: &AtomicBool,
) {
    let url = config.options.url.to_string();
    let label = ObjectSourceLabel {
        source: url.clone(),
    };
    let mut source: Option<ObjectSource> = None;
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        // Opened (store and checkpoint) inside the loop: a store that is down at start is
        // retried at every poll instead of failing serve.
        let polled = match source.as_mut() {
            Some(s) => s.poll(pipeline, stop, &|_| {}),
            None => ObjectSource::open(lake, config.options.clone())
                .and_then(|s| source.insert(s).poll(pipeline, stop, &|_| {})),
        };
        match polled {
            Ok(report) => record(&url, &label, &report, metrics),
            Err(e) => {
                metrics.object_source_errors.get_or_create(&label).inc();
                log::emit(&log::ObjectSourceFailed {
                    source: &url,
                    error: &auditlake_ingest::error::chain(&e),
                });
                // Reloaded from the lake at the next poll: what this process held in memory
                // may be ahead of what was committed.
                source = None;
            }
        }
        let next = started + config.every;
        while !stop.load(Ordering::Acquire) && Instant::now() < next {
            std::thread::sleep(Duration::from_millis(100).min(next - Instant::now()));
        }
    }
}

fn record(url: &str, label: &ObjectSourceLabel, r: &PollReport, metrics: &Metrics) {
    metrics
        .object_source_objects
        .get_or_create(label)
        .inc_by(r.objects_read);
    metrics
        .object_source_bytes
        .get_or_create(label)
        .inc_by(r.bytes_read);
    metrics
        .object_source_events
        .get_or_create(label)
        .inc_by(r.events);
    metrics
        .object_source_quarantined
        .get_or_create(label)
        .inc_by(r.quarantined);
    metrics
        .object_source_rewrites
        .get_or_create(label)
        .inc_by(r.rewritten.len() as u64);
    metrics
        .object_source_lag_seconds
        .get_or_create(label)
        .set(r.lag_seconds);
    for detail in &r.rewritten {
        log::emit(&log::ObjectRewritten { detail });
    }
    if r.objects_read > 0 {
        log::emit(&log::ObjectSourcePolled {
            source: url,
            objects: r.objects_read,
            bytes: r.bytes_read,
            events: r.events,
            quarantined: r.quarantined,
            held_back: r.held_back,
            lag_seconds: r.lag_seconds,
        });
    }
}
