//! The durable pipeline behind network sources: write-ahead log with group commit → background
//! flush into the lake → WAL checkpoint.
//!
//! ```text
//! request ─decode─▶ submit ─▶ WAL thread: append a group, one fdatasync ─▶ ack every request in it
//!                                          │ (in seq order)
//!                                          ▼
//!                             flush thread: LakeWriter + QuarantineWriter; every flush_interval /
//!                             flush_rows / flush_bytes: flush (files durable) ─▶ checkpoint(seq)
//!                                          │
//!                                          ▼
//!                             WAL thread removes segments whose records are all in the lake
//! ```
//!
//! A request is acknowledged once its body is in an fsynced WAL segment; from then on a crash at
//! any instant loses nothing: on start the WAL is replayed into the lake before anything is
//! accepted, and the writer's dedup (cluster, audit_id, stage) drops rows a flush already
//! committed before the crash — so replay, like a sender's re-delivery, adds no duplicate row.
//!
//! Backpressure is explicit: when un-checkpointed WAL, undelivered decoded data or free disk is
//! beyond its limit, [`Pipeline::submit`] refuses with [`SubmitError::Overloaded`] (the webhook
//! answers 503 + Retry-After and the API server retries) instead of accepting what it cannot keep.
//! When a flush fails (disk full, I/O error), the pipeline stops accepting, keeps the WAL, and
//! retries by reopening the writer and replaying the WAL; acknowledged data is never dropped.
//!
//! Here: options, submission, backpressure, replay and the threads' start and stop; the WAL
//! thread is in [`wal_thread`], the flush thread and the compaction loop in [`flusher`], body
//! framing and decoding in [`body`].

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, unbounded};

use crate::compact::{self, CompactOptions, CompactReport, Prepared};
use crate::decode::{DecodeOptions, Decoded, Reject, SourcePosition};
use crate::error::{IngestError, Result};
use crate::lake::Lake;
use crate::quarantine::QuarantineWriter;
use crate::wal::{self, Segment, WalRecord};
use crate::writer::{LakeWriter, WriterOptions};

mod body;
mod flusher;
mod wal_thread;

pub use body::{BodyFraming, decode_body};
use flusher::{Flusher, compact_loop};
use wal_thread::{WalState, memory_size, wal_loop};

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Where WAL segments live (default `<lake>/_state/wal`).
    pub wal_dir: PathBuf,
    /// Start a new segment when the current one reaches this size.
    pub wal_segment_bytes: u64,
    /// Refuse new requests while un-checkpointed WAL exceeds this.
    pub wal_max_bytes: u64,
    /// Refuse new requests while the WAL's file system has less free space than this.
    pub min_free_disk_bytes: u64,
    /// Refuse new requests while decoded data waiting for the flush thread exceeds this.
    pub max_queued_bytes: u64,
    /// Flush to Parquet at least this often while data is pending.
    pub flush_interval: Duration,
    /// …or when this many rows are pending…
    pub flush_rows: u64,
    /// …or when this many request bytes are pending.
    pub flush_bytes: u64,
    /// Upper bound on the bytes written by one group commit.
    pub max_group_bytes: usize,
    /// After a failed flush, retry this often.
    pub retry_interval: Duration,
    /// Decoding options (the cluster comes from each record).
    pub decode: DecodeOptions,
    pub writer: WriterOptions,
    /// Compact closed partitions in the background (merge a flush's small files), this often.
    pub compact: Option<(CompactOptions, Duration)>,
}

impl PipelineOptions {
    pub fn new(lake: &Lake) -> Self {
        PipelineOptions {
            wal_dir: lake.state_dir().join("wal"),
            wal_segment_bytes: 64 << 20,
            wal_max_bytes: 1 << 30,
            min_free_disk_bytes: 512 << 20,
            max_queued_bytes: 256 << 20,
            flush_interval: Duration::from_secs(10),
            flush_rows: 500_000,
            flush_bytes: 256 << 20,
            max_group_bytes: 32 << 20,
            retry_interval: Duration::from_secs(5),
            decode: DecodeOptions::new("default"),
            writer: WriterOptions::default(),
            compact: Some((CompactOptions::default(), Duration::from_secs(300))),
        }
    }
}

/// One request, decoded, to be made durable.
pub struct Submission {
    pub cluster: Arc<str>,
    /// Where the body came from (`webhook:<request id>`), for quarantine positions.
    pub source: Arc<str>,
    /// How the body was framed: replay decodes it the same way.
    pub framing: BodyFraming,
    pub received_at: i64,
    pub body: Vec<u8>,
    pub decoded: Decoded,
}

/// The request's body is in the WAL, fsynced.
#[derive(Debug, Clone, Copy)]
pub struct Durable {
    pub seq: u64,
    /// Requests that shared this fsync (group commit).
    pub group: usize,
}

pub type Ack = Box<dyn FnOnce(std::result::Result<Durable, NotDurable>) + Send>;

/// Why a submission was not made durable: its sender is told to retry (503). Cloneable: one
/// failed group commit answers every request in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotDurable {
    /// The pipeline stopped before the WAL thread reached it.
    #[error("the pipeline is shutting down")]
    ShuttingDown,
    /// Appending its group to the WAL failed (disk full, I/O error, a broken segment).
    #[error("write-ahead log append failed")]
    Append(#[source] Arc<IngestError>),
}

impl NotDurable {
    pub fn fault(&self) -> crate::Fault {
        match self {
            NotDurable::ShuttingDown => crate::Fault::Environment,
            NotDurable::Append(e) => e.fault(),
        }
    }
}

/// Why [`Pipeline::flush_now`] did not flush. Cloneable: one failure may answer many callers.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlushFailed {
    /// The pipeline is stopping (the environment: retry against the next process).
    #[error("the pipeline is shutting down")]
    ShuttingDown,
    /// The flush thread is gone (the environment: the pipeline has to be restarted).
    #[error("the lake writer stopped")]
    WriterStopped,
    /// An earlier lake failure is being retried; nothing can be flushed until it recovers.
    #[error("the lake writer is recovering from an earlier failure")]
    Recovering,
    /// Writing the lake failed; whose fault it is is the lake error's.
    #[error("lake flush failed")]
    Flush(#[source] Arc<IngestError>),
}

impl FlushFailed {
    pub fn fault(&self) -> crate::Fault {
        match self {
            FlushFailed::ShuttingDown | FlushFailed::WriterStopped | FlushFailed::Recovering => {
                crate::Fault::Environment
            }
            FlushFailed::Flush(e) => e.fault(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// Over a limit right now; the sender should retry later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The pipeline cannot accept data until an operator or a retry fixes the cause.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// What the pipeline reports as it works (metrics, logs). Called from its threads.
pub trait PipelineObserver: Send + Sync {
    fn group_committed(&self, _requests: usize, _bytes: usize, _fsync: Duration) {}
    fn flushed(&self, _rows: u64, _files: usize, _took: Duration) {}
    fn quarantined(&self, _cluster: &str, _records: u64) {}
    fn duplicates_skipped(&self, _rows: u64) {}
    fn failed(&self, _what: &str, _error: &str) {}
    fn compacted(&self, _report: &CompactReport) {}
    /// A request's events are durable in the WAL (called on the WAL thread, before the ack):
    /// the moment streaming detections may look at them. Must not block.
    fn durable(&self, _decoded: &Decoded) {}
    fn recovered(&self) {}
    /// WAL replay skipped a damaged range (now in quarantine) and went on after it.
    fn wal_damaged(&self, _segment: &Path, _offset: u64, _bytes: u64, _reason: &str) {}
    /// WAL replay cut an incomplete final record (a crash mid-append; never acknowledged).
    fn wal_torn_tail(&self, _segment: &Path, _offset: u64, _bytes: u64) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl PipelineObserver for NoObserver {}

/// What replaying the WAL at start found.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    pub records: u64,
    pub events: u64,
    pub rows_written: u64,
    pub duplicates_skipped: u64,
    pub quarantined: u64,
    /// Damaged WAL ranges skipped and quarantined, and their bytes.
    pub damaged: u64,
    pub damaged_bytes: u64,
}

enum WalMsg {
    Append {
        record: WalRecord,
        decoded: Decoded,
        decoded_bytes: u64,
        ack: Ack,
    },
    Checkpoint(u64),
    Stop,
}

enum FlushMsg {
    Data {
        seq: u64,
        body_bytes: u64,
        decoded_bytes: u64,
        decoded: Decoded,
    },
    /// From a source that is its own log (Kafka): no WAL; `done(true)` once in Parquet,
    /// `done(false)` if it was lost from memory (the source re-reads it from its log).
    Direct {
        decoded_bytes: u64,
        decoded: Decoded,
        done: Flushed,
    },
    /// Flush now and report (before a Kafka partition is handed to another consumer).
    FlushNow(Sender<std::result::Result<(), FlushFailed>>),
}

/// Called once with true when a direct submission is durable in the lake, false if it was lost.
pub type Flushed = Box<dyn FnOnce(bool) + Send>;

struct Shared {
    /// Bytes in live WAL segments plus bytes submitted and not yet written.
    wal_bytes: AtomicU64,
    /// Decoded data submitted and not yet handed to the lake writer.
    queued_bytes: AtomicU64,
    low_disk: AtomicBool,
    failure: Mutex<Option<String>>,
    stopping: AtomicBool,
}

pub struct Pipeline {
    tx: Sender<WalMsg>,
    shared: Arc<Shared>,
    opts: PipelineOptions,
    wal_thread: Mutex<Option<JoinHandle<WalState>>>,
    flush_thread: Mutex<Option<JoinHandle<Result<u64>>>>,
    compact_thread: Mutex<Option<JoinHandle<()>>>,
    /// The flush thread's inbox for direct sources; taken at shutdown so the thread sees the end.
    direct: Mutex<Option<Sender<FlushMsg>>>,
}

/// A prepared compaction, for the flush thread to finish between flushes.
struct CompactRequest {
    prepared: Prepared,
    reply: Sender<Result<CompactReport>>,
}

impl Pipeline {
    /// Takes the lake's writer lock, replays what the WAL holds into the lake (so everything
    /// acknowledged before a crash is in Parquet before anything new is accepted), then starts
    /// the WAL and flush threads.
    pub fn open(
        lake: &Lake,
        opts: PipelineOptions,
        observer: Arc<dyn PipelineObserver>,
    ) -> Result<(Pipeline, ReplayReport)> {
        let mut writer = LakeWriter::open(lake, opts.writer.clone())?;
        let mut quarantine = QuarantineWriter::new(lake);
        // Every segment is removed below once replayed, so damage found now is never seen again.
        let (report, last_seq) = replay_into(
            &opts,
            wal::TornTail::Truncate,
            &mut writer,
            &mut quarantine,
            observer.as_ref(),
            &mut HashSet::new(),
        )?;
        for seg in wal::list_segments(&opts.wal_dir)? {
            wal::remove_segment(&seg)?;
        }
        let shared = Arc::new(Shared {
            wal_bytes: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            low_disk: AtomicBool::new(false),
            failure: Mutex::new(None),
            stopping: AtomicBool::new(false),
        });
        let (tx, rx) = unbounded::<WalMsg>();
        let (flush_tx, flush_rx) = unbounded::<FlushMsg>();
        let direct = flush_tx.clone();
        let wal_state = WalState {
            dir: opts.wal_dir.clone(),
            next_seq: last_seq.unwrap_or(0) + 1,
            active: None,
            closed: VecDeque::new(),
            broken: None,
        };
        let wal_thread = {
            let shared = shared.clone();
            let opts = opts.clone();
            let observer = observer.clone();
            std::thread::Builder::new()
                .name("wal".into())
                .spawn(move || wal_loop(wal_state, rx, flush_tx, &shared, &opts, observer.as_ref()))
                .map_err(|source| IngestError::SpawnThread {
                    thread: "WAL",
                    source,
                })?
        };
        if opts.compact.is_some() {
            compact::clean_staging(lake)?;
        }
        let (compact_tx, compact_rx) = crossbeam_channel::bounded::<CompactRequest>(1);
        let compact_thread = spawn_compaction(lake, &opts, &shared, compact_tx, &observer)?;
        let flush_thread = {
            let shared = shared.clone();
            let opts = opts.clone();
            let lake = lake.clone();
            let checkpoint = tx.clone();
            std::thread::Builder::new()
                .name("lake-flush".into())
                .spawn(move || {
                    let mut f = Flusher {
                        lake,
                        opts,
                        shared,
                        observer,
                        writer: Some(writer),
                        quarantine,
                        checkpoint,
                        last_received: last_seq.unwrap_or(0),
                        skip_upto: 0,
                        damage_reported: HashSet::new(),
                        pending_rows: 0,
                        pending_bytes: 0,
                        pending_since: None,
                        last_attempt: Instant::now(),
                        waiting: Vec::new(),
                    };
                    f.run(flush_rx, compact_rx)
                })
                .map_err(|source| IngestError::SpawnThread {
                    thread: "flush",
                    source,
                })?
        };
        Ok((
            Pipeline {
                tx,
                shared,
                opts,
                wal_thread: Mutex::new(Some(wal_thread)),
                flush_thread: Mutex::new(Some(flush_thread)),
                compact_thread: Mutex::new(compact_thread),
                direct: Mutex::new(Some(direct)),
            },
            report,
        ))
    }

    /// Why new data would be refused right now, if it would.
    pub fn refusal(&self) -> Option<SubmitError> {
        if self.shared.stopping.load(Ordering::Acquire) {
            return Some(SubmitError::Unavailable("shutting down".into()));
        }
        if let Some(f) = self.shared.failure.lock().expect("failure lock").as_ref() {
            return Some(SubmitError::Unavailable(f.clone()));
        }
        if self.shared.low_disk.load(Ordering::Relaxed) {
            return Some(SubmitError::Overloaded(format!(
                "less than {} MiB free on the WAL's file system",
                self.opts.min_free_disk_bytes >> 20
            )));
        }
        let wal = self.shared.wal_bytes.load(Ordering::Relaxed);
        if wal >= self.opts.wal_max_bytes {
            return Some(SubmitError::Overloaded(format!(
                "write-ahead log holds {} MiB (limit {} MiB) until the lake catches up",
                wal >> 20,
                self.opts.wal_max_bytes >> 20
            )));
        }
        if self.shared.queued_bytes.load(Ordering::Relaxed) >= self.opts.max_queued_bytes {
            return Some(SubmitError::Overloaded(
                "decoded data waiting for the lake writer is over its limit".into(),
            ));
        }
        None
    }

    /// Queues a decoded request for the next group commit; `ack` is called once its body is
    /// durable in the WAL (or the append failed). Refuses when over a limit.
    pub fn submit(&self, s: Submission, ack: Ack) -> std::result::Result<(), SubmitError> {
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        let record = WalRecord {
            seq: 0,
            received_at: s.received_at,
            cluster: s.cluster,
            source: s.source,
            framing: s.framing,
            body: s.body,
        };
        let decoded_bytes = memory_size(&s.decoded);
        self.shared
            .wal_bytes
            .fetch_add(record.encoded_len() as u64, Ordering::Relaxed);
        self.shared
            .queued_bytes
            .fetch_add(decoded_bytes, Ordering::Relaxed);
        self.tx
            .send(WalMsg::Append {
                record,
                decoded: s.decoded,
                decoded_bytes,
                ack,
            })
            .map_err(|_| SubmitError::Unavailable("write-ahead log stopped".into()))
    }

    /// For sources that are their own log (Kafka): hands decoded events straight to the lake
    /// writer, without the WAL; `done` reports when they are in committed Parquet files (the
    /// moment to commit the source's offsets) or that they were lost (re-read them).
    pub fn submit_direct(
        &self,
        decoded: Decoded,
        done: Flushed,
    ) -> std::result::Result<(), SubmitError> {
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        let decoded_bytes = memory_size(&decoded);
        self.shared
            .queued_bytes
            .fetch_add(decoded_bytes, Ordering::Relaxed);
        let tx = self.direct.lock().expect("direct lock");
        let Some(tx) = tx.as_ref() else {
            return Err(SubmitError::Unavailable("shutting down".into()));
        };
        tx.send(FlushMsg::Direct {
            decoded_bytes,
            decoded,
            done,
        })
        .map_err(|_| SubmitError::Unavailable("lake writer stopped".into()))
    }

    /// Flushes everything submitted so far into the lake and waits for it.
    pub fn flush_now(&self) -> std::result::Result<(), FlushFailed> {
        let (reply, outcome) = crossbeam_channel::bounded(1);
        {
            let tx = self.direct.lock().expect("direct lock");
            let tx = tx.as_ref().ok_or(FlushFailed::ShuttingDown)?;
            tx.send(FlushMsg::FlushNow(reply))
                .map_err(|_| FlushFailed::WriterStopped)?;
        }
        outcome.recv().map_err(|_| FlushFailed::WriterStopped)?
    }

    /// Bytes in the WAL not yet checkpointed into the lake.
    pub fn wal_bytes(&self) -> u64 {
        self.shared.wal_bytes.load(Ordering::Relaxed)
    }

    /// Stops accepting, writes what was submitted to the WAL, flushes everything into the lake
    /// and removes the WAL. Returns the last seq in the lake. Later submissions are refused.
    pub fn shutdown(&self) -> Result<u64> {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(t) = self.compact_thread.lock().expect("thread lock").take() {
            let _ = t.join();
        }
        let _ = self.tx.send(WalMsg::Stop);
        let (Some(wal_thread), Some(flush_thread)) = (
            self.wal_thread.lock().expect("thread lock").take(),
            self.flush_thread.lock().expect("thread lock").take(),
        ) else {
            return Err(IngestError::AlreadyShutDown);
        };
        let state = wal_thread.join().map_err(|_| IngestError::Panicked {
            thread: "WAL thread",
        })?;
        self.direct.lock().expect("direct lock").take();
        // The WAL thread dropped its sender: the flush thread drains, flushes and returns.
        let flushed = flush_thread.join().map_err(|_| IngestError::Panicked {
            thread: "flush thread",
        })??;
        for (path, last_seq, _) in &state.closed {
            if *last_seq <= flushed {
                wal::remove_segment(path)?;
            }
        }
        if let Some(seg) = &state.active
            && seg.last_seq <= flushed
        {
            wal::remove_segment(&seg.path)?;
        }
        Ok(flushed)
    }
}

/// Starts the background compaction thread when `opts.compact` asks for one: it prepares merges
/// and sends them to the flush thread over `compact_tx`.
fn spawn_compaction(
    lake: &Lake,
    opts: &PipelineOptions,
    shared: &Arc<Shared>,
    compact_tx: Sender<CompactRequest>,
    observer: &Arc<dyn PipelineObserver>,
) -> Result<Option<JoinHandle<()>>> {
    Ok(match opts.compact.clone() {
        None => None,
        Some((copts, every)) => {
            let shared = shared.clone();
            let lake = lake.clone();
            let observer = observer.clone();
            Some(
                std::thread::Builder::new()
                    .name("compact".into())
                    .spawn(move || {
                        compact_loop(&lake, &copts, every, &shared, compact_tx, observer.as_ref())
                    })
                    .map_err(|source| IngestError::SpawnThread {
                        thread: "compaction",
                        source,
                    })?,
            )
        }
    })
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Without shutdown(): stop the threads; the WAL keeps whatever was not flushed.
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(t) = self.compact_thread.lock().expect("thread lock").take() {
            let _ = t.join();
        }
        if let Some(t) = self.wal_thread.lock().expect("thread lock").take() {
            self.shared.stopping.store(true, Ordering::Release);
            let _ = self.tx.send(WalMsg::Stop);
            let _ = t.join();
        }
        self.direct.lock().expect("direct lock").take();
        if let Some(t) = self.flush_thread.lock().expect("thread lock").take() {
            let _ = t.join();
        }
    }
}

/// Replays every WAL record into the writer and flushes; damaged ranges go to quarantine and are
/// reported once (`reported`: segment and offset of those already quarantined, for recoveries
/// that replay the same segments again). Returns the report and the last seq.
fn replay_into(
    opts: &PipelineOptions,
    tail: wal::TornTail,
    writer: &mut LakeWriter,
    quarantine: &mut QuarantineWriter,
    observer: &dyn PipelineObserver,
    reported: &mut HashSet<(PathBuf, u64)>,
) -> Result<(ReplayReport, Option<u64>)> {
    let mut report = ReplayReport::default();
    let before = writer.stats().clone();
    let mut damaged: Vec<(PathBuf, u64, u64, &'static str)> = Vec::new();
    let replayed = wal::replay(&opts.wal_dir, tail, |entry| match entry {
        wal::Entry::Record(rec) => {
            let decoded = decode_body(
                &opts.decode,
                &rec.cluster,
                &rec.source,
                rec.received_at,
                &rec.body,
                rec.framing,
            );
            report.records += 1;
            report.events += decoded.events;
            apply(decoded, writer, quarantine, observer)?;
            Ok(())
        }
        wal::Entry::Damaged(d) => {
            if reported.contains(&(d.segment.to_path_buf(), d.offset)) {
                return Ok(());
            }
            quarantine.write(&damage_reject(&d))?;
            damaged.push((
                d.segment.to_path_buf(),
                d.offset,
                d.bytes.len() as u64,
                d.reason,
            ));
            Ok(())
        }
    })?;
    writer.flush()?;
    quarantine.sync()?;
    // Reported only once durable in quarantine: a failed attempt reports them on the next one.
    for (segment, offset, bytes, reason) in damaged {
        observer.wal_damaged(&segment, offset, bytes, reason);
        report.damaged += 1;
        report.damaged_bytes += bytes;
        reported.insert((segment, offset));
    }
    if let Some(t) = &replayed.torn_tail {
        observer.wal_torn_tail(&t.segment, t.offset, t.bytes);
    }
    let after = writer.stats();
    report.rows_written = after.rows_committed - before.rows_committed;
    report.duplicates_skipped = after.duplicates_skipped - before.duplicates_skipped;
    report.quarantined = quarantine.records();
    Ok((report, replayed.last_seq))
}

/// A damaged WAL range as a quarantine record: its bytes, segment file name and offset. The
/// cluster is unknown (the damaged bytes may be the very field that named it), so it is empty.
fn damage_reject(d: &wal::Damage<'_>) -> Reject {
    let name = d
        .segment
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Reject {
        reason: format!(
            "write-ahead log damaged ({}): {} bytes skipped at byte {} of {name}; the records after it were replayed",
            d.reason,
            d.bytes.len(),
            d.offset
        ),
        position: SourcePosition {
            source: Arc::from(format!("wal:{name}")),
            line: None,
            byte_offset: Some(d.offset),
            item: None,
        },
        raw: d.bytes.to_vec(),
        cluster: Arc::from(""),
    }
}

/// Hands one request's decoded rows to the writer and its rejects to quarantine.
fn apply(
    decoded: Decoded,
    writer: &mut LakeWriter,
    quarantine: &mut QuarantineWriter,
    observer: &dyn PipelineObserver,
) -> Result<u64> {
    if let Some(first) = decoded.rejects.first() {
        for r in &decoded.rejects {
            quarantine.write(r)?;
        }
        observer.quarantined(&first.cluster, decoded.rejects.len() as u64);
    }
    let mut rows = 0u64;
    for batch in decoded.batches {
        rows += batch.batch.num_rows() as u64;
        writer.write(batch)?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests;
