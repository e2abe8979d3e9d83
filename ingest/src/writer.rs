//! The partitioned Parquet writer: dedups rows against the lake, buffers them per partition,
//! and commits time-sorted, zstd-compressed files atomically.
//!
//! **Files of many row groups.** A partition's buffer becomes one *row group* when it fills
//! (`row_group_rows` / `row_group_bytes`); its rows go, sorted by `stage_at`, into the
//! partition's open file in `_tmp/`, which is committed (footer, fsync, rename, directory fsync)
//! at `max_file_rows`, at [`LakeWriter::flush`], or when memory pressure evicts the partition.
//! One file per partition and flush instead of one per buffer: a query opens a file once
//! instead of ~30 times per million events (Q2 of the benchmark: 20 → 12 ms).
//!
//! A file must stay sorted across its row groups, but input is only roughly in time order
//! (requests complete out of order). So each cut **holds back** the latest eighth of the
//! buffer's rows for the next row group, and the file's *watermark* is the last `stage_at`
//! written to it. A row older than the watermark (later than the hold-back absorbs) cannot join
//! the file; it waits in the partition's *late* rows, written as a file of its own.
//! Row groups are encoded on the encoder threads (two row groups of one file in parallel) and
//! appended to the file in order by this thread.
//!
//! Write, flush and acknowledge are separate steps: [`LakeWriter::write`] buffers (and may roll
//! full partitions into files in the background), [`LakeWriter::flush`] returns only when every
//! buffered row is in a durable, visible file; a source acknowledges after `flush` returns.
//!
//! **Visibility.** Finished files are moved into their partition directory (or uploaded) as they
//! complete, but a file is part of the lake only once a Delta commit names it: [`LakeWriter::flush`]
//! makes one commit of every file finished since the previous flush, and returns after it. A
//! crash before that commit leaves invisible orphans, never a half-visible flush.
//!
//! **Deduplication** is write-side against the lake itself: before a partition first takes rows,
//! the writer reads the `(audit_id, stage)` columns of the partition's files in the table's
//! latest snapshot into a set of 128-bit key hashes; a row whose key is already there (committed,
//! or buffered earlier in this run) is dropped. The table is the index, so nothing can drift out
//! of sync, and re-running an ingest or re-delivering a batch to the same writer adds no row.
//! Two writers on one table (replicas on object storage) each dedup against what was committed
//! when they loaded the partition; a re-delivery that reaches both may land twice until the
//! partition's compaction, which re-checks the key.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow::array::{Array, BooleanArray, StringArray, TimestampMicrosecondArray};
use arrow::compute::{filter_record_batch, interleave_record_batch};
use arrow::record_batch::RecordBatch;
use auditlake_schemas::{
    AUDIT_EVENTS_SCHEMA_VERSION, AUDIT_ID, EXEC_CONTAINER, IMPERSONATED_USER_NAME, NAME, NAMESPACE,
    POD_HOST_IPC, POD_HOST_NETWORK, POD_HOST_PID, POD_PRIVILEGED, REQUEST_OBJECT,
    REQUEST_RECEIVED_AT, REQUEST_URI, RESOURCE, RESPONSE_CODE, RESPONSE_OBJECT, ROLE_REF_KIND,
    ROLE_REF_NAME, SCHEMA_VERSION_KEY, SOURCE_IP, STAGE, STAGE_AT, SUBRESOURCE, USER_NAME, VERB,
    audit_events_file_schema,
};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use crate::decode::{DecodedBatch, PartitionKey, dedup_key};
use crate::error::{IngestError, Result};
use crate::lake::{DataFile, Lake, NewFile, WriterLock, clean_tmp, create_dir_durable};

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Commit a partition's file at this many rows.
    pub max_file_rows: usize,
    /// A partition's buffer becomes a row group when its Arrow data reaches this size (or
    /// `row_group_rows`). Compaction merges this much Arrow data per file.
    pub row_group_bytes: usize,
    /// Upper bound on buffered Arrow data across all partitions; above it the least recently
    /// written partitions are written out and their files committed. Together with
    /// `encoder_threads × row_group_bytes` in flight, this bounds the writer's memory whatever
    /// the input size.
    pub max_buffer_bytes: usize,
    /// A partition's buffer becomes a row group at this many rows (or `row_group_bytes`).
    pub row_group_rows: usize,
    pub zstd_level: i32,
    /// zstd level of the bulky text columns (request/response bodies, request URIs): three
    /// quarters of the lake's bytes, written once and read rarely, so they get the slower,
    /// tighter level (decompression is as fast as at level 3).
    pub bulk_zstd_level: i32,
    pub encoder_threads: usize,
    /// Bound on dedup key hashes kept in memory; idle partitions' sets are evicted and reloaded
    /// from the lake on demand.
    pub max_cached_keys: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_file_rows: 1_000_000,
            row_group_bytes: 48 << 20,
            max_buffer_bytes: 96 << 20,
            row_group_rows: 64 * 1024,
            zstd_level: 3,
            bulk_zstd_level: 9,
            encoder_threads: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(4),
            max_cached_keys: 4_000_000,
        }
    }
}

/// A file that is durable and (after the flush that returns it) committed to the lake's table.
#[derive(Debug, Clone)]
pub struct CommittedFile {
    /// Relative to the table root: `cluster=…/date=…/hour=…/part-<ulid>.parquet`.
    pub path: String,
    pub partition: PartitionKey,
    pub rows: usize,
    pub bytes: u64,
    /// What the file's `add` action records (SHA-256 among it).
    pub(crate) add: NewFile,
}

/// Counters since the writer was opened.
#[derive(Debug, Clone, Default)]
pub struct WriteStats {
    pub rows_accepted: u64,
    pub duplicates_skipped: u64,
    pub rows_committed: u64,
    pub files_committed: u64,
    pub bytes_committed: u64,
}

/// A partition's rows not yet handed to an encoder.
#[derive(Default)]
struct PartitionBuffer {
    batches: Vec<RecordBatch>,
    rows: usize,
    /// Rows older than the open file's watermark: they go into a file of their own.
    late: Vec<RecordBatch>,
    late_rows: usize,
    /// Arrow bytes of `batches` and `late`, and of `late` alone.
    bytes: usize,
    late_bytes: usize,
    last_write: u64,
}

/// A partition's file being written row group by row group; invisible (in `_tmp/`) until
/// committed.
struct OpenFile {
    id: u64,
    last_write: u64,
    file: RowGroupFile,
    /// Relative to the table root.
    target: String,
    /// The latest `stage_at` handed to the file; later row groups start at or after it.
    watermark: i64,
    rows: usize,
    /// Row groups handed to the encoders / appended to the file.
    submitted: usize,
    appended: usize,
    /// Encoded row groups that finished before an earlier one, waiting for their turn.
    pending: BTreeMap<usize, EncodedRowGroup>,
}

/// A row group's encoded column chunks, ready to be appended to its file.
pub(crate) struct EncodedRowGroup {
    chunks: Vec<ArrowColumnChunk>,
}

/// An `audit_events` Parquet file written row group by row group (each encoded by
/// [`encode_row_group`], possibly on another thread). The caller makes it visible.
pub(crate) struct RowGroupFile {
    writer: SerializedFileWriter<File>,
    path: PathBuf,
}

impl RowGroupFile {
    pub(crate) fn create(path: PathBuf, opts: &WriterOptions) -> Result<Self> {
        let file = File::create(&path).map_err(IngestError::lake_io(&path))?;
        // File-level properties (key-value metadata); each row group's columns are encoded
        // with properties of their own (bloom filters sized to their values).
        let props = writer_properties(opts, &[], opts.row_group_rows)?;
        let (writer, _) = ArrowWriter::try_new(file, audit_events_file_schema(), Some(props))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(|source| IngestError::ParquetWrite {
                path: path.clone(),
                source,
            })?;
        Ok(RowGroupFile { writer, path })
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub(crate) fn append(&mut self, rg: EncodedRowGroup) -> Result<()> {
        let parquet_err = |source| IngestError::ParquetWrite {
            path: self.path.clone(),
            source,
        };
        let mut group = self.writer.next_row_group().map_err(parquet_err)?;
        for chunk in rg.chunks {
            chunk.append_to_row_group(&mut group).map_err(parquet_err)?;
        }
        group.close().map_err(parquet_err)?;
        Ok(())
    }

    /// Writes the footer and fsyncs. Returns the file's size.
    pub(crate) fn finish(self) -> Result<u64> {
        let RowGroupFile { writer, path } = self;
        let file = writer
            .into_inner()
            .map_err(|source| IngestError::ParquetWrite {
                path: path.clone(),
                source,
            })?;
        file.sync_all().map_err(IngestError::lake_io(&path))?;
        Ok(file.metadata().map_err(IngestError::lake_io(&path))?.len())
    }
}

/// Dedup key hashes. std's SipHash on a million inserts per million events cost ~3 % of the
/// ingest's CPU; foldhash is several times faster and still seeded per process.
pub type KeyHashes = HashSet<u128, foldhash::fast::RandomState>;

struct KeySet {
    keys: KeyHashes,
    last_use: u64,
}

struct EncodeJob {
    partition: PartitionKey,
    batches: Vec<RecordBatch>,
    target: String,
    tmp: PathBuf,
}

/// One row group of an open file: `order` lists the (batch, row) pairs in `stage_at` order
/// (`None`: the batches are in order as they are).
struct RowGroupJob {
    partition: PartitionKey,
    file_id: u64,
    index: usize,
    batches: Vec<RecordBatch>,
    order: Option<Vec<(usize, usize)>>,
    tmp: PathBuf,
}

enum Job {
    /// A whole file (late rows), committed by the encoder thread.
    File(EncodeJob),
    RowGroup(RowGroupJob),
}

enum Encoded {
    File(Result<CommittedFile>),
    /// The encoder panicked (a bug); the message of the panic.
    Panicked(String),
    RowGroup {
        partition: PartitionKey,
        file_id: u64,
        index: usize,
        result: Result<EncodedRowGroup>,
    },
}

pub struct LakeWriter {
    lake: Lake,
    opts: WriterOptions,
    buffers: HashMap<PartitionKey, PartitionBuffer>,
    open_files: HashMap<PartitionKey, OpenFile>,
    next_file_id: u64,
    key_sets: HashMap<PartitionKey, KeySet>,
    cached_keys: usize,
    buffered_bytes: usize,
    clock: u64,
    jobs: Option<Sender<Job>>,
    results: Receiver<Encoded>,
    workers: Vec<JoinHandle<()>>,
    in_flight: usize,
    committed: Vec<CommittedFile>,
    /// `add`s of finished files not yet committed to the table.
    uncommitted: Vec<NewFile>,
    stats: WriteStats,
    poisoned: Option<String>,
    /// Local lakes keep one writer per directory (it cleans `_tmp/`); on object storage many
    /// writers share the table and each stages files locally.
    _lock: Option<WriterLock>,
}

impl LakeWriter {
    /// Opens the lake for writing: takes the writer lock and removes temp files a crashed
    /// writer left behind.
    pub fn open(lake: &Lake, opts: WriterOptions) -> Result<Self> {
        let lock = if lake.is_remote() {
            None
        } else {
            Some(lake.lock_writer()?)
        };
        if crate::lake::migrate::needs_migration(lake) {
            return Err(IngestError::NeedsMigration {
                lake: lake.display(),
            });
        }
        if !lake.is_remote() {
            create_dir_durable(&lake.audit_events_dir())?;
        }
        // Creates the table on first use, so a failure to reach the store shows at open.
        lake.events().all_files().map(drop)?;
        create_dir_durable(&lake.tmp_dir())?;
        clean_tmp(lake)?;
        let props = Arc::new(opts.clone());
        let threads = opts.encoder_threads.max(1);
        let (job_tx, job_rx) = bounded::<Job>(threads);
        let (res_tx, res_rx) = unbounded();
        let workers = (0..threads)
            .map(|i| {
                let rx = job_rx.clone();
                let tx = res_tx.clone();
                let props = props.clone();
                let lake = lake.clone();
                std::thread::Builder::new()
                    .name(format!("parquet-encode-{i}"))
                    .spawn(move || {
                        for job in rx {
                            // A panicking encoder must still answer, or the writer would wait
                            // for its result forever.
                            let encode = std::panic::AssertUnwindSafe(|| match job {
                                Job::File(job) => {
                                    Encoded::File(encode_and_commit(&lake, job, &props))
                                }
                                Job::RowGroup(job) => Encoded::RowGroup {
                                    result: encode_row_group(
                                        &job.batches,
                                        job.order.as_deref(),
                                        &props,
                                        &job.tmp,
                                    ),
                                    partition: job.partition,
                                    file_id: job.file_id,
                                    index: job.index,
                                },
                            });
                            let done = std::panic::catch_unwind(encode).unwrap_or_else(|panic| {
                                let what = panic
                                    .downcast_ref::<&str>()
                                    .map(|s| s.to_string())
                                    .or_else(|| panic.downcast_ref::<String>().cloned())
                                    .unwrap_or_default();
                                Encoded::Panicked(what)
                            });
                            // The job's batches (a row group's or file's worth) were just freed.
                            release_freed_memory();
                            let _ = tx.send(done);
                        }
                    })
                    .expect("spawn encoder thread")
            })
            .collect();
        Ok(LakeWriter {
            lake: lake.clone(),
            opts,
            buffers: HashMap::new(),
            open_files: HashMap::new(),
            next_file_id: 0,
            key_sets: HashMap::new(),
            cached_keys: 0,
            buffered_bytes: 0,
            clock: 0,
            jobs: Some(job_tx),
            results: res_rx,
            workers,
            in_flight: 0,
            committed: Vec::new(),
            uncommitted: Vec::new(),
            stats: WriteStats::default(),
            poisoned: None,
            _lock: lock,
        })
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    pub fn stats(&self) -> &WriteStats {
        &self.stats
    }

    /// Rows buffered and not yet handed to an encoder.
    pub fn buffered_rows(&self) -> usize {
        self.buffers.values().map(|b| b.rows + b.late_rows).sum()
    }

    /// Dedups a decoded batch against the lake and buffers it. Returns how many rows were new.
    /// May roll full partitions into files (in the background); rows are durable only after
    /// [`flush`](Self::flush).
    pub fn write(&mut self, decoded: DecodedBatch) -> Result<usize> {
        self.check_poisoned()?;
        self.collect_finished(false)?;
        self.clock += 1;
        let DecodedBatch {
            partition,
            batch,
            keys,
        } = decoded;
        debug_assert_eq!(batch.num_rows(), keys.len());
        let fresh = match self.dedup(&partition, &keys) {
            Ok(mask) => mask,
            Err(e) => return Err(self.poison(e)),
        };
        let new_rows = fresh.as_ref().map_or(keys.len(), |m| m.true_count());
        self.stats.duplicates_skipped += (keys.len() - new_rows) as u64;
        self.stats.rows_accepted += new_rows as u64;
        if new_rows == 0 {
            return Ok(0);
        }
        let batch = match fresh {
            Some(mask) => filter_record_batch(&batch, &mask).map_err(|e| self.poison(e.into()))?,
            None => batch,
        };
        let bytes = batch.get_array_memory_size();
        let buf = self.buffers.entry(partition.clone()).or_default();
        buf.rows += batch.num_rows();
        buf.bytes += bytes;
        buf.last_write = self.clock;
        buf.batches.push(batch);
        self.buffered_bytes += bytes;
        // Late rows wait for a file of their own: only the rest makes a row group.
        let (rows, bytes) = (buf.rows, buf.bytes - buf.late_bytes);
        let file_rows = self.open_files.get(&partition).map_or(0, |f| f.rows);
        let file_room = self.opts.max_file_rows.saturating_sub(file_rows).max(1);
        if rows >= self.opts.row_group_rows.min(file_room) || bytes >= self.opts.row_group_bytes {
            let result = self.cut_row_group(&partition, true);
            result.map_err(|e| self.poison(e))?;
        }
        while self.buffered_bytes > self.opts.max_buffer_bytes {
            let oldest = least_recent(self.buffers.iter().map(|(k, b)| (k, b.last_write)))
                .expect("buffered bytes > 0 implies a buffer");
            let result = self.finish_partition(&oldest);
            result.map_err(|e| self.poison(e))?;
        }
        // Each open file holds a descriptor and its row groups' metadata: a long multi-hour
        // input must not keep every hour it passed open until the end.
        while self.open_files.len() > MAX_OPEN_FILES {
            let oldest = least_recent(self.open_files.iter().map(|(k, f)| (k, f.last_write)))
                .expect("more open files than the bound");
            let result = self.finish_partition(&oldest);
            result.map_err(|e| self.poison(e))?;
        }
        Ok(new_rows)
    }

    /// Writes every buffered row into committed files and waits until all are durable.
    /// Returns the files committed since the previous flush.
    pub fn flush(&mut self) -> Result<Vec<CommittedFile>> {
        self.check_poisoned()?;
        let mut keys: Vec<PartitionKey> = self
            .buffers
            .keys()
            .chain(self.open_files.keys())
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let result = self.finish_partition(&key);
            result.map_err(|e| self.poison(e))?;
        }
        self.collect_finished(true)?;
        self.evict_key_sets();
        let result = self.commit_pending();
        result.map_err(|e| self.poison(e))?;
        Ok(std::mem::take(&mut self.committed))
    }

    /// Flushes, then stops the encoder threads.
    pub fn close(mut self) -> Result<Vec<CommittedFile>> {
        let files = self.flush()?;
        self.shutdown();
        Ok(files)
    }

    fn shutdown(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Returns a mask of rows whose key is new (None = all new), inserting the new keys.
    fn dedup(&mut self, partition: &PartitionKey, keys: &[u128]) -> Result<Option<BooleanArray>> {
        if !self.key_sets.contains_key(partition) {
            let loaded = load_partition_keys(&self.lake, partition)?;
            self.cached_keys += loaded.len();
            self.key_sets.insert(
                partition.clone(),
                KeySet {
                    keys: loaded,
                    last_use: 0,
                },
            );
        }
        let set = self.key_sets.get_mut(partition).expect("inserted above");
        set.last_use = self.clock;
        let before = set.keys.len();
        let mut mask: Option<Vec<bool>> = None;
        for (i, k) in keys.iter().enumerate() {
            let fresh = set.keys.insert(*k);
            match (&mut mask, fresh) {
                (Some(m), f) => m.push(f),
                (None, false) => {
                    let mut m = vec![true; i];
                    m.push(false);
                    mask = Some(m);
                }
                (None, true) => {}
            }
        }
        self.cached_keys += set.keys.len() - before;
        Ok(mask.map(BooleanArray::from))
    }

    /// Drops the key sets of idle partitions (no buffered rows) while over the cache bound.
    fn evict_key_sets(&mut self) {
        while self.cached_keys > self.opts.max_cached_keys {
            let victim = self
                .key_sets
                .iter()
                .filter(|(k, _)| {
                    !self.buffers.contains_key(*k) && !self.open_files.contains_key(*k)
                })
                .min_by_key(|(_, s)| s.last_use)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            if let Some(set) = self.key_sets.remove(&victim) {
                self.cached_keys -= set.keys.len();
            }
        }
    }

    /// Turns a partition's buffer into a row group of its open file (opening one if needed).
    /// With `hold_back`, the latest eighth of the rows stays buffered for the next row group, so
    /// rows that arrive a little out of order still fit after the watermark. Rows older than the
    /// watermark move to the partition's late rows. Commits the file when it is full.
    fn cut_row_group(&mut self, partition: &PartitionKey, hold_back: bool) -> Result<()> {
        let Some(mut buf) = self.buffers.remove(partition) else {
            return Ok(());
        };
        self.buffered_bytes -= buf.bytes;
        let batches = std::mem::take(&mut buf.batches);
        buf.rows = 0;
        let watermark = self
            .open_files
            .get(partition)
            .map_or(i64::MIN, |f| f.watermark);
        let file_rows = self.open_files.get(partition).map_or(0, |f| f.rows);
        let (rows, in_order) = rows_by_time(&batches)?;
        let late_end = rows.partition_point(|&(t, _, _)| t < watermark);
        let rest = rows.len() - late_end;
        let held = if hold_back { rest / 8 } else { 0 };
        let room = self.opts.max_file_rows.saturating_sub(file_rows).max(1);
        let emit_end = late_end + (rest - held).min(room);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let positions = |range: std::ops::Range<usize>| -> Vec<(usize, usize)> {
            rows[range].iter().map(|&(_, b, r)| (b, r)).collect()
        };
        if late_end > 0 {
            let late = interleave_record_batch(&refs, &positions(0..late_end))?;
            buf.late_rows += late.num_rows();
            buf.late_bytes += late.get_array_memory_size();
            buf.late.push(late);
        }
        buf.bytes = buf.late_bytes;
        if emit_end < rows.len() {
            let kept = interleave_record_batch(&refs, &positions(emit_end..rows.len()))?;
            buf.rows = kept.num_rows();
            buf.bytes += kept.get_array_memory_size();
            buf.batches.push(kept);
        }
        let late_full =
            buf.late_bytes >= self.opts.row_group_bytes || buf.late_rows >= self.opts.max_file_rows;
        let emit_rows = emit_end - late_end;
        let new_watermark = (emit_rows > 0).then(|| rows[emit_end - 1].0);
        let order = if in_order && late_end == 0 && emit_end == rows.len() {
            None
        } else {
            Some(positions(late_end..emit_end))
        };
        drop(refs);
        self.buffered_bytes += buf.bytes;
        if buf.rows > 0 || buf.late_rows > 0 {
            self.buffers.insert(partition.clone(), buf);
        }
        if emit_rows > 0 {
            let watermark = new_watermark.expect("emitted rows have a time");
            self.submit_row_group(partition, batches, order, emit_rows, watermark)?;
        }
        if late_full {
            self.submit_late_file(partition)?;
        }
        if self
            .open_files
            .get(partition)
            .is_some_and(|f| f.rows >= self.opts.max_file_rows)
        {
            self.close_file(partition)?;
        }
        Ok(())
    }

    /// Writes out everything of a partition: its buffer as the last row groups of its file, its
    /// late rows as a file of their own; commits both.
    fn finish_partition(&mut self, partition: &PartitionKey) -> Result<()> {
        while self.buffers.get(partition).is_some_and(|b| b.rows > 0) {
            self.cut_row_group(partition, false)?;
        }
        self.submit_late_file(partition)?;
        self.close_file(partition)
    }

    fn submit_row_group(
        &mut self,
        partition: &PartitionKey,
        batches: Vec<RecordBatch>,
        order: Option<Vec<(usize, usize)>>,
        rows: usize,
        watermark: i64,
    ) -> Result<()> {
        if !self.open_files.contains_key(partition) {
            let file = self.open_file(partition)?;
            self.open_files.insert(partition.clone(), file);
        }
        let file = self.open_files.get_mut(partition).expect("opened above");
        file.last_write = self.clock;
        file.watermark = watermark;
        file.rows += rows;
        let job = RowGroupJob {
            partition: partition.clone(),
            file_id: file.id,
            index: file.submitted,
            batches,
            order,
            tmp: file.file.path().to_path_buf(),
        };
        file.submitted += 1;
        self.submit(Job::RowGroup(job))
    }

    fn open_file(&mut self, partition: &PartitionKey) -> Result<OpenFile> {
        let name = format!("part-{}.parquet", ulid::Ulid::generate());
        let tmp = self.lake.tmp_dir().join(format!("{name}.tmp"));
        let file = RowGroupFile::create(tmp, &self.opts)?;
        self.next_file_id += 1;
        Ok(OpenFile {
            id: self.next_file_id,
            last_write: self.clock,
            file,
            target: format!("{}/{name}", Lake::partition_path(partition)),
            watermark: i64::MIN,
            rows: 0,
            submitted: 0,
            appended: 0,
            pending: BTreeMap::new(),
        })
    }

    /// Waits for the open file's row groups, writes its footer, fsyncs and commits it.
    fn close_file(&mut self, partition: &PartitionKey) -> Result<()> {
        while self
            .open_files
            .get(partition)
            .is_some_and(|f| f.appended < f.submitted)
        {
            self.receive_one()?;
        }
        let Some(open) = self.open_files.remove(partition) else {
            return Ok(());
        };
        let tmp = open.file.path().to_path_buf();
        let bytes = open.file.finish()?;
        let add = self
            .lake
            .publish(&tmp, &open.target, partition, open.rows as u64)?;
        let result = self.accept_committed(CommittedFile {
            path: open.target,
            partition: partition.clone(),
            rows: open.rows,
            bytes,
            add,
        });
        result.map_err(|e| self.poison(e))?;
        Ok(())
    }

    /// Hands a partition's late rows to an encoder thread as a file of their own.
    fn submit_late_file(&mut self, partition: &PartitionKey) -> Result<()> {
        let Some(buf) = self.buffers.get_mut(partition) else {
            return Ok(());
        };
        if buf.late_rows == 0 {
            return Ok(());
        }
        let batches = std::mem::take(&mut buf.late);
        buf.late_rows = 0;
        let freed = std::mem::take(&mut buf.late_bytes);
        buf.bytes -= freed;
        self.buffered_bytes -= freed;
        if buf.rows == 0 {
            self.buffers.remove(partition);
        }
        let name = format!("part-{}.parquet", ulid::Ulid::generate());
        let job = EncodeJob {
            partition: partition.clone(),
            batches,
            target: format!("{}/{name}", Lake::partition_path(partition)),
            tmp: self.lake.tmp_dir().join(format!("{name}.tmp")),
        };
        self.submit(Job::File(job))
    }

    /// Queues a job, first waiting for one to finish when the pool is busy (bounds memory).
    fn submit(&mut self, job: Job) -> Result<()> {
        while self.in_flight >= self.opts.encoder_threads.max(1) {
            self.receive_one()?;
        }
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| IngestError::Internal("writer closed".into()))?;
        jobs.send(job)
            .map_err(|_| IngestError::Internal("encoder threads exited".into()))?;
        self.in_flight += 1;
        Ok(())
    }

    fn collect_finished(&mut self, wait_all: bool) -> Result<()> {
        if wait_all {
            while self.in_flight > 0 {
                self.receive_one()?;
            }
        } else {
            while let Ok(res) = self.results.try_recv() {
                self.in_flight -= 1;
                self.accept_result(res)?;
            }
        }
        Ok(())
    }

    fn receive_one(&mut self) -> Result<()> {
        let res = self
            .results
            .recv()
            .map_err(|_| IngestError::Internal("encoder threads exited".into()))?;
        self.in_flight -= 1;
        self.accept_result(res)
    }

    fn accept_result(&mut self, done: Encoded) -> Result<()> {
        let appended = match done {
            Encoded::File(Ok(file)) => self.accept_committed(file),
            Encoded::File(Err(e)) => Err(e),
            Encoded::Panicked(what) => Err(IngestError::Internal(format!(
                "a Parquet encoder thread panicked: {what}"
            ))),
            Encoded::RowGroup {
                partition,
                file_id,
                index,
                result,
            } => result.and_then(|rg| self.append_row_group(&partition, file_id, index, rg)),
        };
        appended.map_err(|e| self.poison(e))
    }

    fn accept_committed(&mut self, file: CommittedFile) -> Result<()> {
        self.stats.rows_committed += file.rows as u64;
        self.stats.files_committed += 1;
        self.stats.bytes_committed += file.bytes;
        self.uncommitted.push(file.add.clone());
        self.committed.push(file);
        // A long one-shot ingest keeps its progress: a crash loses at most this many files'
        // work, which the re-run redoes (dedup drops what was committed).
        if self.uncommitted.len() >= COMMIT_EVERY_FILES {
            self.commit_pending()?;
        }
        Ok(())
    }

    /// One Delta commit of every finished file not yet in the table.
    fn commit_pending(&mut self) -> Result<()> {
        if self.uncommitted.is_empty() {
            return Ok(());
        }
        let adds = std::mem::take(&mut self.uncommitted);
        let rows: u64 = adds.iter().map(|a| a.rows).sum();
        let detail = serde_json::json!({ "files": adds.len(), "rows": rows });
        self.lake
            .events()
            .commit("ingest", detail, adds, Vec::new())?;
        Ok(())
    }

    /// Appends an encoded row group to its file, and any that were waiting behind it.
    fn append_row_group(
        &mut self,
        partition: &PartitionKey,
        file_id: u64,
        index: usize,
        rg: EncodedRowGroup,
    ) -> Result<()> {
        let file = self
            .open_files
            .get_mut(partition)
            .filter(|f| f.id == file_id)
            .ok_or_else(|| IngestError::Internal("a row group for a file no longer open".into()))?;
        file.pending.insert(index, rg);
        while let Some(rg) = file.pending.remove(&file.appended) {
            file.file.append(rg)?;
            file.appended += 1;
        }
        Ok(())
    }

    /// After a failed write the key sets hold keys of rows that never became durable; they would
    /// make a retry drop those rows as duplicates. Forget everything and refuse further writes.
    fn poison(&mut self, e: IngestError) -> IngestError {
        self.poisoned = Some(e.to_string());
        self.key_sets.clear();
        self.cached_keys = 0;
        self.buffers.clear();
        self.buffered_bytes = 0;
        // Their temp files stay in `_tmp/`, removed when a writer next opens the lake; files
        // finished but not committed stay invisible orphans.
        self.open_files.clear();
        self.uncommitted.clear();
        e
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(msg) => Err(IngestError::WriterPoisoned(msg.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for LakeWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads the dedup keys of a partition's committed files (only the two key columns).
pub fn load_partition_keys(lake: &Lake, partition: &PartitionKey) -> Result<KeyHashes> {
    let mut keys = KeyHashes::default();
    let (date, hour) =
        crate::time::partition_date_hour(partition.hour * crate::decode::MICROS_PER_HOUR);
    for file in lake
        .events()
        .partition_files(&partition.cluster, &date, &hour)?
    {
        let path = PathBuf::from(&file.path);
        match lake.read_data(&file.path)? {
            DataFile::Local(f) => add_file_keys(f, &path, &mut keys)?,
            DataFile::Remote(b) => add_file_keys(b, &path, &mut keys)?,
        }
    }
    Ok(keys)
}

/// Adds the dedup keys of one file (only its two key columns are read).
fn add_file_keys<R: parquet::file::reader::ChunkReader + 'static>(
    data: R,
    path: &std::path::Path,
    keys: &mut KeyHashes,
) -> Result<()> {
    let read_err = |source| IngestError::LakeRead {
        path: path.to_path_buf(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(data).map_err(read_err)?;
    let schema = builder.parquet_schema();
    let leaves: Vec<usize> = [AUDIT_ID, STAGE]
        .iter()
        .map(|name| {
            (0..schema.num_columns())
                .find(|&i| schema.column(i).path().string() == *name)
                .ok_or_else(|| IngestError::LakeRead {
                    path: path.to_path_buf(),
                    source: parquet::errors::ParquetError::General(format!("no column {name}")),
                })
        })
        .collect::<Result<_>>()?;
    let mask = ProjectionMask::leaves(schema, leaves);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(read_err)?;
    for batch in reader {
        let batch = batch?;
        let ids = string_column(&batch, AUDIT_ID)?;
        let stages = string_column(&batch, STAGE)?;
        keys.reserve(batch.num_rows());
        for i in 0..batch.num_rows() {
            keys.insert(dedup_key(ids.value(i), stages.value(i)));
        }
    }
    Ok(())
}

fn string_column<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| IngestError::Internal(format!("column {name} is not a string column")))
}

/// The partition written longest ago, of (partition, last write) pairs.
fn least_recent<'a>(items: impl Iterator<Item = (&'a PartitionKey, u64)>) -> Option<PartitionKey> {
    items.min_by_key(|&(_, at)| at).map(|(k, _)| k.clone())
}

/// Finished files per Delta commit between flushes (a flush commits whatever is finished).
const COMMIT_EVERY_FILES: usize = 8;

/// Partitions with a file open at once; beyond it the least recently written is committed.
const MAX_OPEN_FILES: usize = 64;

/// File key-value metadata naming the column the rows are sorted by.
pub const SORTED_BY_KEY: &str = "auditlake.sorted_by";

/// False-positive rate of the bloom filters: a 5% miss costs one needless row-group read, and the
/// filters stay ~40% smaller than at 1%.
const BLOOM_FPP: f64 = 0.05;

/// Columns stored without zstd: the small columns that queries filter on, whose pages are
/// already compact (bit-packed dictionary indices of low-cardinality strings, run lengths of
/// mostly-null or boolean columns, `stage_at`'s delta-packed sorted times), so zstd shrank them
/// little: 0.7 MB of 48 MB per million events, all together. Reading them compressed cost a
/// decompression per page and, in parquet 59, a zstd context pair created per column chunk
/// read; on 1M events, stored plain made Q1 of the benchmark 21 → 16 ms and Q2 13 → 10 ms.
const FILTER_COLUMNS_STORED_PLAIN: &[&str] = &[
    RESOURCE,
    SUBRESOURCE,
    VERB,
    NAMESPACE,
    USER_NAME,
    STAGE_AT,
    RESPONSE_CODE,
    POD_PRIVILEGED,
    POD_HOST_NETWORK,
    POD_HOST_PID,
    POD_HOST_IPC,
    ROLE_REF_KIND,
    ROLE_REF_NAME,
    EXEC_CONTAINER,
    IMPERSONATED_USER_NAME,
];

/// Parquet properties of an `audit_events` file holding `batches` in row groups of
/// `rows_per_group` rows.
fn writer_properties(
    opts: &WriterOptions,
    batches: &[RecordBatch],
    rows_per_group: usize,
) -> Result<WriterProperties> {
    let zstd = |level: i32| {
        ZstdLevel::try_new(level)
            .map(Compression::ZSTD)
            .map_err(|e| IngestError::Internal(format!("zstd level {level}: {e}")))
    };
    let (compression, bulk_compression) = (zstd(opts.zstd_level)?, zstd(opts.bulk_zstd_level)?);
    let mut builder = WriterProperties::builder()
        .set_compression(compression)
        // Pages of up to 8 MiB (still at most 20k rows) give zstd more of the repetitive JSON
        // bodies to match against; measured 0.3 MB less per million events.
        .set_data_page_size_limit(8 << 20)
        .set_max_row_group_row_count(Some(opts.row_group_rows))
        .set_statistics_enabled(EnabledStatistics::Page)
        // Rows are sorted by `stage_at`, but Parquet's `sorting_columns` would make DataFusion
        // claim that order for the scan, and then it splits scans only by file count, never a
        // large file by bytes: with an hour in one large file and the next in a small one, one
        // core read everything (Q1 of the benchmark 54 → 75 ms). The order is recorded in our
        // own key instead.
        .set_key_value_metadata(Some(vec![
            KeyValue::new(
                SCHEMA_VERSION_KEY.to_owned(),
                AUDIT_EVENTS_SCHEMA_VERSION.to_owned(),
            ),
            KeyValue::new(SORTED_BY_KEY.to_owned(), STAGE_AT.to_owned()),
        ]))
        .set_created_by(format!("auditlake {}", env!("CARGO_PKG_VERSION")));
    // Unique per row: a dictionary would only be built to be thrown away.
    for col in [
        AUDIT_ID,
        REQUEST_OBJECT,
        RESPONSE_OBJECT,
        STAGE_AT,
        REQUEST_RECEIVED_AT,
    ] {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(col), false);
    }
    // Rows are sorted by `stage_at`: its deltas of a few milliseconds pack into a few bits.
    // `request_received_at` is not sorted in that order (long requests were received earlier),
    // and its deltas jump back and forth; plain + zstd measured 1.5 MB per million events
    // against 2.1 MB delta-encoded.
    builder = builder
        .set_column_encoding(ColumnPath::from(STAGE_AT), Encoding::DELTA_BINARY_PACKED)
        .set_column_encoding(ColumnPath::from(REQUEST_RECEIVED_AT), Encoding::PLAIN);
    for col in [REQUEST_OBJECT, RESPONSE_OBJECT, REQUEST_URI] {
        builder = builder.set_column_compression(ColumnPath::from(col), bulk_compression);
    }
    // Audit IDs are random hex: nothing for a deeper match search to find, only the entropy
    // coding gains. zstd 1 makes them both smaller and cheaper than 3 does (measured on 1M
    // events: 10.2 against 11.5 MB for the generator's IDs, 19.8 against 20.7 MB for uuid4s).
    builder = builder.set_column_compression(ColumnPath::from(AUDIT_ID), zstd(1)?);
    for &col in FILTER_COLUMNS_STORED_PLAIN {
        builder = builder.set_column_compression(ColumnPath::from(col), Compression::UNCOMPRESSED);
    }
    // Min/max of JSON bodies prune nothing, and computing them compares every body with the
    // running min and max.
    for col in [REQUEST_OBJECT, RESPONSE_OBJECT] {
        builder =
            builder.set_column_statistics_enabled(ColumnPath::from(col), EnabledStatistics::None);
    }
    // Bloom filters on the lookup columns, sized to the distinct values actually present
    // (a filter sized for a million values on a column with forty users wastes megabytes).
    let per_group = rows_per_group.max(1);
    for col in [AUDIT_ID, USER_NAME, NAME, SOURCE_IP] {
        let ndv = if col == AUDIT_ID {
            per_group
        } else {
            distinct_strings(batches, col).min(per_group)
        };
        builder = builder
            .set_column_bloom_filter_enabled(ColumnPath::from(col), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(col), BLOOM_FPP)
            .set_column_bloom_filter_max_ndv(ColumnPath::from(col), ndv.max(16) as u64);
    }
    Ok(builder.build())
}

fn distinct_strings(batches: &[RecordBatch], col: &str) -> usize {
    let mut seen: HashSet<&str, foldhash::fast::RandomState> = HashSet::default();
    for b in batches {
        if let Some(a) = b
            .column_by_name(col)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        {
            seen.extend(a.iter().flatten());
        }
    }
    seen.len()
}

/// Hands memory freed by the allocator back to the OS when the process holds more than
/// [`TRIM_ABOVE_RSS`]. glibc keeps freed memory in per-thread arenas: decoder and encoder threads
/// each free a file's worth of Arrow buffers per file, and the process held ~2× its live heap
/// (heaptrack: 234 MB live at the peak of a 300k-event ingest). Trimming after every file cost
/// 40 % more time (the pages are faulted in and zeroed again), so only above the mark.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if resident_bytes().is_some_and(|rss| rss > TRIM_ABOVE_RSS) {
        // SAFETY: malloc_trim only releases free pages of glibc's own heaps; it touches no
        // live allocation and is thread-safe.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Above this resident size the encoder threads return freed memory to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_ABOVE_RSS: u64 = 384 << 20;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident_bytes() -> Option<u64> {
    // `/proc/self/statm`: size resident shared text lib data dt, in pages.
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Sorts the rows by `stage_at`, writes them to a temp file, fsyncs it and renames it into its
/// partition. Runs on an encoder thread.
fn encode_and_commit(lake: &Lake, job: EncodeJob, opts: &WriterOptions) -> Result<CommittedFile> {
    let (rows, bytes) = encode_file(&job.batches, opts, &job.tmp)?;
    let add = lake.publish(&job.tmp, &job.target, &job.partition, rows as u64)?;
    Ok(CommittedFile {
        path: job.target,
        partition: job.partition,
        rows,
        bytes,
        add,
    })
}

/// Writes `batches`, sorted by `stage_at`, as one `audit_events` Parquet file at `path` and
/// fsyncs it. Returns (rows, bytes). The caller makes it visible (rename, directory exchange).
pub(crate) fn encode_file(
    batches: &[RecordBatch],
    opts: &WriterOptions,
    path: &std::path::Path,
) -> Result<(usize, u64)> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let props = writer_properties(opts, batches, rows.min(opts.row_group_rows))?;
    let parquet_err = |source| IngestError::ParquetWrite {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(IngestError::lake_io(path))?;
    let mut writer =
        ArrowWriter::try_new(file, audit_events_file_schema(), Some(props)).map_err(parquet_err)?;
    match sort_order(batches)? {
        None => {
            for b in batches {
                writer.write(b).map_err(parquet_err)?;
            }
        }
        Some(order) => {
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            for chunk in order.chunks(8192) {
                let sorted = interleave_record_batch(&refs, chunk)?;
                writer.write(&sorted).map_err(parquet_err)?;
            }
        }
    }
    let file = writer.into_inner().map_err(parquet_err)?;
    file.sync_all().map_err(IngestError::lake_io(path))?;
    let bytes = file.metadata().map_err(IngestError::lake_io(path))?.len();
    Ok((rows, bytes))
}

/// The (batch, row) order that sorts the rows by `stage_at`, or `None` if already sorted.
fn sort_order(batches: &[RecordBatch]) -> Result<Option<Vec<(usize, usize)>>> {
    let (rows, in_order) = rows_by_time(batches)?;
    Ok((!in_order).then(|| rows.into_iter().map(|(_, b, r)| (b, r)).collect()))
}

/// Every row as (`stage_at`, batch, row), sorted by time (stable), and whether the rows were
/// already in that order.
/// A row by its time: (`stage_at`, batch, row).
pub(crate) type TimedRow = (i64, usize, usize);

pub(crate) fn rows_by_time(batches: &[RecordBatch]) -> Result<(Vec<TimedRow>, bool)> {
    let mut times: Vec<TimedRow> = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    for (bi, b) in batches.iter().enumerate() {
        let col = b
            .column_by_name(STAGE_AT)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .ok_or_else(|| IngestError::Internal("stage_at is not a µs timestamp".into()))?;
        for (ri, t) in col.values().iter().enumerate() {
            times.push((*t, bi, ri));
        }
    }
    let in_order = times.windows(2).all(|w| w[0].0 <= w[1].0);
    if !in_order {
        times.sort_by_key(|&(t, _, _)| t);
    }
    Ok((times, in_order))
}

/// Encodes one row group (the rows of `batches` in `order`) into column chunks, to be appended
/// to its file by the writer thread. Runs on an encoder thread.
pub(crate) fn encode_row_group(
    batches: &[RecordBatch],
    order: Option<&[(usize, usize)]>,
    opts: &WriterOptions,
    path: &std::path::Path,
) -> Result<EncodedRowGroup> {
    let parquet_err = |source| IngestError::ParquetWrite {
        path: path.to_path_buf(),
        source,
    };
    let rows = order.map_or_else(
        || batches.iter().map(RecordBatch::num_rows).sum(),
        <[_]>::len,
    );
    let props = Arc::new(writer_properties(opts, batches, rows)?);
    let schema = audit_events_file_schema();
    let descr = ArrowSchemaConverter::new()
        .convert(&schema)
        .map_err(|e| IngestError::Internal(format!("schema conversion: {e}")))?;
    // The row group's own properties: the file writer's factory would size every row group's
    // bloom filters alike.
    #[allow(deprecated)]
    let mut writers = parquet::arrow::arrow_writer::get_column_writers(&descr, &props, &schema)
        .map_err(parquet_err)?;
    let mut write = |batch: &RecordBatch| -> Result<()> {
        let mut leaves_writers = writers.iter_mut();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            for leaf in compute_leaves(field, column).map_err(parquet_err)? {
                leaves_writers
                    .next()
                    .ok_or_else(|| IngestError::Internal("a column without a writer".into()))?
                    .write(&leaf)
                    .map_err(parquet_err)?;
            }
        }
        Ok(())
    };
    match order {
        None => batches.iter().try_for_each(&mut write)?,
        Some(order) => {
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            for chunk in order.chunks(8192) {
                write(&interleave_record_batch(&refs, chunk)?)?;
            }
        }
    }
    let chunks = writers
        .into_iter()
        .map(|w| w.close().map_err(parquet_err))
        .collect::<Result<Vec<_>>>()?;
    Ok(EncodedRowGroup { chunks })
}

#[cfg(test)]
mod tests;
