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

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, unbounded};

use crate::compact::{self, CompactOptions, CompactReport, Prepared};
use crate::decode::{DecodeOptions, Decoded, Decoder, Reject, SourcePosition};
use crate::error::{IngestError, Result};
use crate::lake::Lake;
use crate::quarantine::QuarantineWriter;
use crate::wal::{self, Segment, WalRecord};
use crate::writer::{LakeWriter, WriterOptions};

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

/// How a request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// One JSON document: an Event, an EventList or an array (what kube-apiserver sends).
    Document,
    /// Newline-delimited JSON: one Event/EventList per line (log shippers' `json_lines`).
    Lines,
}

/// Decodes a request body with the pipeline's options for `cluster`. The webhook calls this
/// before submitting, and WAL replay calls it again on the stored body: one decoding, one result.
pub fn decode_body(
    opts: &DecodeOptions,
    cluster: &Arc<str>,
    source: &Arc<str>,
    received_at: i64,
    body: &[u8],
    framing: BodyFraming,
) -> Decoded {
    let mut opts = opts.clone();
    opts.cluster = cluster.clone();
    // One budget for the whole request: the body as received (after Content-Encoding) plus
    // everything gzip/base64 layers inside it expand to stays within `max_inflate`, however
    // many lines carry a bomb. Replay computes the same budget from the same body.
    let budget = opts.max_inflate.saturating_sub(body.len() as u64);
    let mut decoder = Decoder::new(opts);
    decoder.set_ingested_at(received_at);
    decoder.set_inflate_budget(budget);
    let framing = match framing {
        BodyFraming::Lines if memchr::memchr(b'\n', body.trim_ascii_end()).is_some() => {
            BodyFraming::Lines
        }
        _ => BodyFraming::Document,
    };
    match framing {
        BodyFraming::Document => decoder.decode(
            body,
            &SourcePosition {
                source: source.clone(),
                ..SourcePosition::default()
            },
        ),
        BodyFraming::Lines => {
            let mut offset = 0usize;
            for (i, line) in body.split(|&b| b == b'\n').enumerate() {
                decoder.decode(
                    line,
                    &SourcePosition {
                        source: source.clone(),
                        line: Some(i as u64 + 1),
                        byte_offset: Some(offset as u64),
                        item: None,
                    },
                );
                offset += line.len() + 1;
            }
        }
    }
    decoder.take()
}

/// Framing is recorded in the WAL source string so replay decodes exactly as the request did.
fn framing_of(source: &str) -> BodyFraming {
    if source.ends_with("#lines") {
        BodyFraming::Lines
    } else {
        BodyFraming::Document
    }
}

/// The WAL `source` for a request: `webhook:<id>`, with `#lines` for NDJSON bodies.
pub fn wal_source(prefix: &str, request_id: &str, framing: BodyFraming) -> Arc<str> {
    match framing {
        BodyFraming::Document => Arc::from(format!("{prefix}:{request_id}")),
        BodyFraming::Lines => Arc::from(format!("{prefix}:{request_id}#lines")),
    }
}

/// One request, decoded, to be made durable.
pub struct Submission {
    pub cluster: Arc<str>,
    pub source: Arc<str>,
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

pub type Ack = Box<dyn FnOnce(std::result::Result<Durable, String>) + Send>;

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
    FlushNow(Sender<std::result::Result<(), String>>),
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
                .map_err(|e| IngestError::Internal(format!("spawn WAL thread: {e}")))?
        };
        if opts.compact.is_some() {
            compact::clean_staging(lake)?;
        }
        let (compact_tx, compact_rx) = crossbeam_channel::bounded::<CompactRequest>(1);
        let compact_thread = match opts.compact.clone() {
            None => None,
            Some((copts, every)) => {
                let shared = shared.clone();
                let lake = lake.clone();
                let observer = observer.clone();
                Some(
                    std::thread::Builder::new()
                        .name("compact".into())
                        .spawn(move || {
                            compact_loop(
                                &lake,
                                &copts,
                                every,
                                &shared,
                                compact_tx,
                                observer.as_ref(),
                            )
                        })
                        .map_err(|e| {
                            IngestError::Internal(format!("spawn compaction thread: {e}"))
                        })?,
                )
            }
        };
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
                .map_err(|e| IngestError::Internal(format!("spawn flush thread: {e}")))?
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
    pub fn flush_now(&self) -> std::result::Result<(), String> {
        let (reply, outcome) = crossbeam_channel::bounded(1);
        {
            let tx = self.direct.lock().expect("direct lock");
            let tx = tx.as_ref().ok_or("shutting down")?;
            tx.send(FlushMsg::FlushNow(reply))
                .map_err(|_| "lake writer stopped".to_owned())?;
        }
        outcome
            .recv()
            .map_err(|_| "lake writer stopped".to_owned())?
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
            return Err(IngestError::Internal("pipeline already shut down".into()));
        };
        let state = wal_thread
            .join()
            .map_err(|_| IngestError::Internal("WAL thread panicked".into()))?;
        self.direct.lock().expect("direct lock").take();
        // The WAL thread dropped its sender: the flush thread drains, flushes and returns.
        let flushed = flush_thread
            .join()
            .map_err(|_| IngestError::Internal("flush thread panicked".into()))??;
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
                framing_of(&rec.source),
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

struct WalState {
    dir: PathBuf,
    next_seq: u64,
    active: Option<Segment>,
    /// Full segments: path, last seq, bytes.
    closed: VecDeque<(PathBuf, u64, u64)>,
    /// Set when an append failed and the segment could not be restored: nothing more is accepted.
    broken: Option<String>,
}

impl WalState {
    fn checkpoint(&mut self, upto: u64, shared: &Shared) -> Result<()> {
        while let Some((path, last, bytes)) = self.closed.front().cloned() {
            if last > upto {
                break;
            }
            wal::remove_segment(&path)?;
            shared.wal_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.closed.pop_front();
        }
        if let Some(seg) = &self.active
            && seg.last_seq != 0
            && seg.last_seq <= upto
        {
            wal::remove_segment(&seg.path)?;
            shared.wal_bytes.fetch_sub(seg.bytes, Ordering::Relaxed);
            self.active = None;
        }
        Ok(())
    }

    /// Appends a group durably. On failure the segment is cut back to its last good length.
    fn append_group(
        &mut self,
        buf: &[u8],
        first_seq: u64,
        last_seq: u64,
        opts: &PipelineOptions,
        shared: &Shared,
    ) -> Result<()> {
        if let Some(reason) = &self.broken {
            return Err(IngestError::Internal(reason.clone()));
        }
        if self
            .active
            .as_ref()
            .is_some_and(|s| s.bytes >= opts.wal_segment_bytes)
        {
            let seg = self.active.take().expect("checked");
            self.closed
                .push_back((seg.path.clone(), seg.last_seq, seg.bytes));
        }
        if self.active.is_none() {
            let seg = Segment::create(&self.dir, first_seq)?;
            shared.wal_bytes.fetch_add(seg.bytes, Ordering::Relaxed);
            self.active = Some(seg);
        }
        let seg = self.active.as_mut().expect("created above");
        let good = seg.bytes;
        match seg.append_durable(buf, last_seq) {
            Ok(()) => Ok(()),
            Err(e) => {
                // A partial write must not stay in front of later records: cut it off, and start a
                // new segment for the next group.
                let cut = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&seg.path)
                    .and_then(|f| {
                        f.set_len(good)?;
                        f.sync_all()
                    });
                if let Err(cut_err) = cut {
                    self.broken = Some(format!(
                        "WAL segment {} could not be restored after a failed append ({cut_err}); restart to replay it",
                        seg.path.display()
                    ));
                }
                let seg = self.active.take().expect("present");
                if seg.last_seq != 0 {
                    self.closed.push_back((seg.path, seg.last_seq, good));
                } else {
                    let _ = wal::remove_segment(&seg.path);
                    shared.wal_bytes.fetch_sub(good, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }
}

/// Memory a decoded request holds until the lake writer takes it (the queued-data limit).
fn memory_size(decoded: &Decoded) -> u64 {
    let batches: u64 = decoded
        .batches
        .iter()
        .map(|b| b.batch.get_array_memory_size() as u64)
        .sum();
    let rejects: u64 = decoded.rejects.iter().map(|r| r.raw.len() as u64).sum();
    batches + rejects
}

fn free_disk_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

fn wal_loop(
    mut state: WalState,
    rx: Receiver<WalMsg>,
    flush_tx: Sender<FlushMsg>,
    shared: &Shared,
    opts: &PipelineOptions,
    observer: &dyn PipelineObserver,
) -> WalState {
    let mut last_disk_check = Instant::now() - Duration::from_secs(60);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut group: Vec<(u64, u64, u64, Decoded, Ack)> = Vec::new();
    let mut stop = false;
    while !stop {
        if last_disk_check.elapsed() >= Duration::from_millis(500) {
            last_disk_check = Instant::now();
            let dir = if state.dir.exists() {
                state.dir.as_path()
            } else {
                state.dir.parent().unwrap_or(&state.dir)
            };
            if let Some(free) = free_disk_bytes(dir) {
                shared
                    .low_disk
                    .store(free < opts.min_free_disk_bytes, Ordering::Relaxed);
            }
        }
        let first = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut next = Some(first);
        buf.clear();
        // Group commit: everything queued while the previous fsync ran shares the next one.
        while let Some(msg) = next.take() {
            match msg {
                WalMsg::Append {
                    mut record,
                    decoded,
                    decoded_bytes,
                    ack,
                } => {
                    record.seq = state.next_seq;
                    state.next_seq += 1;
                    let before = buf.len();
                    record.encode(&mut buf);
                    let len = (buf.len() - before) as u64;
                    group.push((record.seq, len, decoded_bytes, decoded, ack));
                }
                WalMsg::Checkpoint(upto) => {
                    if let Err(e) = state.checkpoint(upto, shared) {
                        observer.failed("wal checkpoint", &e.to_string());
                    }
                }
                WalMsg::Stop => stop = true,
            }
            if buf.len() >= opts.max_group_bytes || stop {
                break;
            }
            next = match rx.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => None,
            };
        }
        if group.is_empty() {
            continue;
        }
        let (first_seq, last_seq) = (group[0].0, group.last().expect("non-empty").0);
        let started = Instant::now();
        let result = state.append_group(&buf, first_seq, last_seq, opts, shared);
        let n = group.len();
        match result {
            Ok(()) => {
                observer.group_committed(n, buf.len(), started.elapsed());
                for (seq, len, decoded_bytes, decoded, ack) in group.drain(..) {
                    observer.durable(&decoded);
                    let _ = flush_tx.send(FlushMsg::Data {
                        seq,
                        body_bytes: len,
                        decoded_bytes,
                        decoded,
                    });
                    ack(Ok(Durable { seq, group: n }));
                }
            }
            Err(e) => {
                let msg = format!("write-ahead log append failed: {e}");
                observer.failed("wal append", &msg);
                for (_, len, decoded_bytes, _, ack) in group.drain(..) {
                    shared.wal_bytes.fetch_sub(len, Ordering::Relaxed);
                    shared
                        .queued_bytes
                        .fetch_sub(decoded_bytes, Ordering::Relaxed);
                    ack(Err(msg.clone()));
                }
                if let Some(reason) = &state.broken {
                    *shared.failure.lock().expect("failure lock") = Some(reason.clone());
                }
            }
        }
    }
    // Refuse what is still queued (shutdown): those senders get an error and retry elsewhere.
    while let Ok(msg) = rx.try_recv() {
        if let WalMsg::Append {
            record,
            decoded_bytes,
            ack,
            ..
        } = msg
        {
            shared
                .wal_bytes
                .fetch_sub(record.encoded_len() as u64, Ordering::Relaxed);
            shared
                .queued_bytes
                .fetch_sub(decoded_bytes, Ordering::Relaxed);
            ack(Err("shutting down".into()));
        }
    }
    state
}

/// Every `every`: prepares the compaction of each closed partition that needs one (outside the
/// writer), hands it to the flush thread to swap in, and waits for the outcome.
fn compact_loop(
    lake: &Lake,
    opts: &CompactOptions,
    every: Duration,
    shared: &Shared,
    requests: Sender<CompactRequest>,
    observer: &dyn PipelineObserver,
) {
    let stopping = || shared.stopping.load(Ordering::Acquire);
    let mut next = Instant::now() + every;
    while !stopping() {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(100).min(every));
            continue;
        }
        next = Instant::now() + every;
        let cutoff = crate::decode::now_micros() - opts.min_age_secs * 1_000_000;
        let partitions = match compact::closed_partitions(lake, cutoff) {
            Ok(p) => p,
            Err(e) => {
                observer.failed("compact", &e.to_string());
                continue;
            }
        };
        for dir in partitions {
            if stopping() {
                return;
            }
            let prepared = match compact::prepare(lake, &dir, opts, &stopping) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) => {
                    observer.failed("compact", &e.to_string());
                    continue;
                }
            };
            let (reply, outcome) = crossbeam_channel::bounded(1);
            if requests.send(CompactRequest { prepared, reply }).is_err() {
                return;
            }
            match outcome.recv() {
                Ok(Ok(report)) => observer.compacted(&report),
                Ok(Err(e)) => observer.failed("compact", &e.to_string()),
                Err(_) => return,
            }
        }
    }
}

struct Flusher {
    lake: Lake,
    opts: PipelineOptions,
    shared: Arc<Shared>,
    observer: Arc<dyn PipelineObserver>,
    writer: Option<LakeWriter>,
    quarantine: QuarantineWriter,
    checkpoint: Sender<WalMsg>,
    /// Highest seq handed to the writer.
    last_received: u64,
    /// Records up to this seq were replayed from disk during recovery: skip their in-memory copy.
    skip_upto: u64,
    /// Damaged WAL ranges already quarantined by a recovery (segment, offset).
    damage_reported: HashSet<(PathBuf, u64)>,
    pending_rows: u64,
    pending_bytes: u64,
    pending_since: Option<Instant>,
    last_attempt: Instant,
    /// Direct submissions in the writer, waiting for the next flush.
    waiting: Vec<Flushed>,
}

impl Flusher {
    fn run(&mut self, rx: Receiver<FlushMsg>, compact_rx: Receiver<CompactRequest>) -> Result<u64> {
        loop {
            if let Ok(req) = compact_rx.try_recv() {
                let result = self.finish_compaction(req.prepared);
                let _ = req.reply.send(result);
            }
            let wait = match self.pending_since {
                Some(since) => self.opts.flush_interval.saturating_sub(since.elapsed()),
                None => Duration::from_millis(500),
            }
            .max(Duration::from_millis(1));
            match rx.recv_timeout(wait) {
                Ok(FlushMsg::Data {
                    seq,
                    body_bytes,
                    decoded_bytes,
                    decoded,
                }) => {
                    self.shared
                        .queued_bytes
                        .fetch_sub(decoded_bytes, Ordering::Relaxed);
                    if seq <= self.skip_upto || self.writer.is_none() {
                        // Already replayed from disk, or failed: recovery replays it from the WAL.
                        continue;
                    }
                    let writer = self.writer.as_mut().expect("checked");
                    match apply(
                        decoded,
                        writer,
                        &mut self.quarantine,
                        self.observer.as_ref(),
                    ) {
                        Ok(rows) => {
                            self.last_received = seq;
                            self.pending_rows += rows;
                            self.pending_bytes += body_bytes;
                            self.pending_since.get_or_insert_with(Instant::now);
                        }
                        Err(e) => self.fail("write", e),
                    }
                }
                Ok(FlushMsg::Direct {
                    decoded_bytes,
                    decoded,
                    done,
                }) => {
                    self.shared
                        .queued_bytes
                        .fetch_sub(decoded_bytes, Ordering::Relaxed);
                    let Some(writer) = self.writer.as_mut() else {
                        done(false);
                        continue;
                    };
                    match apply(
                        decoded,
                        writer,
                        &mut self.quarantine,
                        self.observer.as_ref(),
                    ) {
                        Ok(rows) => {
                            self.pending_rows += rows;
                            self.pending_bytes += decoded_bytes;
                            self.pending_since.get_or_insert_with(Instant::now);
                            self.waiting.push(done);
                        }
                        Err(e) => {
                            done(false);
                            self.fail("write", e);
                        }
                    }
                }
                Ok(FlushMsg::FlushNow(reply)) => {
                    let result = match self.writer.is_some() {
                        false => Err("lake writer is recovering".to_owned()),
                        true => self.flush().map_err(|e| {
                            let msg = e.to_string();
                            self.fail("flush", e);
                            msg
                        }),
                    };
                    let _ = reply.send(result);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.writer.is_none() {
                if self.last_attempt.elapsed() >= self.opts.retry_interval {
                    self.recover();
                }
                continue;
            }
            let due = self.pending_rows >= self.opts.flush_rows
                || self.pending_bytes >= self.opts.flush_bytes
                || self
                    .pending_since
                    .is_some_and(|s| s.elapsed() >= self.opts.flush_interval);
            if due && let Err(e) = self.flush() {
                self.fail("flush", e);
            }
        }
        // Shutdown: everything the WAL accepted is in the channel we just drained.
        if self.writer.is_none() {
            self.recover();
        } else if let Err(e) = self.flush() {
            self.fail("flush", e);
        }
        match (
            &self.writer,
            self.shared.failure.lock().expect("failure lock").clone(),
        ) {
            (Some(_), _) => Ok(self.last_received.max(self.skip_upto)),
            (None, reason) => Err(IngestError::Internal(format!(
                "final flush failed; the WAL keeps the data for the next start: {}",
                reason.unwrap_or_default()
            ))),
        }
    }

    fn flush(&mut self) -> Result<()> {
        let started = Instant::now();
        let writer = self.writer.as_mut().expect("flush with a writer");
        let before = writer.stats().duplicates_skipped;
        let files = writer.flush()?;
        self.quarantine.sync()?;
        let dups = writer.stats().duplicates_skipped - before;
        if dups > 0 {
            self.observer.duplicates_skipped(dups);
        }
        let rows = files.iter().map(|f| f.rows as u64).sum();
        if self.pending_since.is_some() {
            self.observer.flushed(rows, files.len(), started.elapsed());
        }
        self.pending_rows = 0;
        self.pending_bytes = 0;
        self.pending_since = None;
        for done in self.waiting.drain(..) {
            done(true);
        }
        let upto = self.last_received.max(self.skip_upto);
        if upto > 0 {
            let _ = self.checkpoint.send(WalMsg::Checkpoint(upto));
        }
        Ok(())
    }

    /// Swaps a prepared compaction in. Flushing first leaves no encode in flight, so no file can
    /// be committed into the partition during the swap.
    fn finish_compaction(&mut self, prepared: Prepared) -> Result<CompactReport> {
        if self.writer.is_none() {
            return Err(IngestError::Internal("lake writer is recovering".into()));
        }
        if let Err(e) = self.flush() {
            let msg = e.to_string();
            self.fail("flush", e);
            return Err(IngestError::Internal(msg));
        }
        compact::finish(&self.lake, prepared)
    }

    fn fail(&mut self, what: &str, e: IngestError) {
        let msg = format!(
            "lake {what} failed: {e}; retrying every {:?}",
            self.opts.retry_interval
        );
        self.observer.failed(what, &msg);
        *self.shared.failure.lock().expect("failure lock") = Some(msg);
        // Dropping the writer releases the lake lock and its buffers; the WAL still holds all
        // WAL data, and direct sources re-read theirs from their own log.
        self.writer = None;
        for done in self.waiting.drain(..) {
            done(false);
        }
        self.quarantine = QuarantineWriter::new(&self.lake);
        self.pending_rows = 0;
        self.pending_bytes = 0;
        self.pending_since = None;
        self.last_attempt = Instant::now();
    }

    /// Reopens the writer and replays the whole WAL from disk into the lake.
    fn recover(&mut self) {
        self.last_attempt = Instant::now();
        let attempt = (|| -> Result<(LakeWriter, Option<u64>)> {
            let mut writer = LakeWriter::open(&self.lake, self.opts.writer.clone())?;
            let (_, last) = replay_into(
                &self.opts,
                wal::TornTail::Stop,
                &mut writer,
                &mut self.quarantine,
                self.observer.as_ref(),
                &mut self.damage_reported,
            )?;
            Ok((writer, last))
        })();
        match attempt {
            Ok((writer, last)) => {
                self.writer = Some(writer);
                self.skip_upto = self.skip_upto.max(last.unwrap_or(0));
                self.last_received = self.last_received.max(self.skip_upto);
                *self.shared.failure.lock().expect("failure lock") = None;
                self.observer.recovered();
                let _ = self.checkpoint.send(WalMsg::Checkpoint(self.skip_upto));
            }
            Err(e) => {
                let msg = format!(
                    "lake recovery failed: {e}; retrying every {:?}",
                    self.opts.retry_interval
                );
                self.observer.failed("recover", &msg);
                *self.shared.failure.lock().expect("failure lock") = Some(msg);
                self.quarantine = QuarantineWriter::new(&self.lake);
            }
        }
    }
}

#[cfg(test)]
mod tests;
