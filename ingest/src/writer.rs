//! The partitioned Parquet writer: dedups rows against the lake, buffers them per partition,
//! and commits time-sorted, zstd-compressed files atomically.
//!
//! Write, flush and acknowledge are separate steps: [`LakeWriter::write`] buffers (and may roll
//! full partitions into files in the background), [`LakeWriter::flush`] returns only when every
//! buffered row is in a durable, visible file; a source acknowledges after `flush` returns.
//!
//! **Deduplication** is write-side against the lake itself: before a partition first takes rows,
//! the writer reads the `(audit_id, stage)` columns of the partition's committed files into a set
//! of 128-bit key hashes; a row whose key is already there (committed, or buffered earlier in
//! this run) is dropped. The files are the index, so nothing can drift out of sync, a crash
//! between two file commits leaves a consistent lake, and re-running an ingest or re-delivering a
//! batch adds no row. The lake's single-writer lock keeps two processes from racing.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow::array::{Array, BooleanArray, StringArray, TimestampMicrosecondArray};
use arrow::compute::{filter_record_batch, interleave_record_batch};
use arrow::record_batch::RecordBatch;
use auditlake_schemas::{
    AUDIT_EVENTS_SCHEMA_VERSION, AUDIT_ID, NAME, REQUEST_OBJECT, REQUEST_RECEIVED_AT, REQUEST_URI,
    RESPONSE_OBJECT, SCHEMA_VERSION_KEY, SOURCE_IP, STAGE, STAGE_AT, USER_NAME,
    audit_events_file_schema,
};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowSchemaConverter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::decode::{DecodedBatch, PartitionKey, dedup_key};
use crate::error::{IngestError, Result};
use crate::lake::{
    Lake, WriterLock, clean_tmp, commit_file, create_dir_durable, list_parquet_files,
};

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Roll a partition's file at this many rows.
    pub max_file_rows: usize,
    /// Roll a partition's file when its buffered Arrow data reaches this size.
    pub max_file_bytes: usize,
    /// Upper bound on buffered Arrow data across all partitions; above it the least recently
    /// written partitions are rolled. Together with `encoder_threads × max_file_bytes` in flight,
    /// this bounds the writer's memory whatever the input size.
    pub max_buffer_bytes: usize,
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
            max_file_bytes: 48 << 20,
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

/// A file that is durable and visible in the lake.
#[derive(Debug, Clone)]
pub struct CommittedFile {
    pub path: PathBuf,
    pub partition: PartitionKey,
    pub rows: usize,
    pub bytes: u64,
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

struct PartitionBuffer {
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    last_write: u64,
}

struct KeySet {
    keys: HashSet<u128>,
    last_use: u64,
}

struct EncodeJob {
    partition: PartitionKey,
    batches: Vec<RecordBatch>,
    target: PathBuf,
    tmp: PathBuf,
}

pub struct LakeWriter {
    lake: Lake,
    opts: WriterOptions,
    buffers: HashMap<PartitionKey, PartitionBuffer>,
    key_sets: HashMap<PartitionKey, KeySet>,
    cached_keys: usize,
    buffered_bytes: usize,
    clock: u64,
    jobs: Option<Sender<EncodeJob>>,
    results: Receiver<Result<CommittedFile>>,
    workers: Vec<JoinHandle<()>>,
    in_flight: usize,
    committed: Vec<CommittedFile>,
    stats: WriteStats,
    poisoned: Option<String>,
    _lock: WriterLock,
}

impl LakeWriter {
    /// Opens the lake for writing: takes the writer lock and removes temp files a crashed
    /// writer left behind.
    pub fn open(lake: &Lake, opts: WriterOptions) -> Result<Self> {
        let lock = lake.lock_writer()?;
        create_dir_durable(&lake.audit_events_dir())?;
        create_dir_durable(&lake.tmp_dir())?;
        clean_tmp(lake)?;
        let props = Arc::new(opts.clone());
        let threads = opts.encoder_threads.max(1);
        let (job_tx, job_rx) = bounded::<EncodeJob>(threads);
        let (res_tx, res_rx) = unbounded();
        let workers = (0..threads)
            .map(|i| {
                let rx = job_rx.clone();
                let tx = res_tx.clone();
                let props = props.clone();
                std::thread::Builder::new()
                    .name(format!("parquet-encode-{i}"))
                    .spawn(move || {
                        for job in rx {
                            let result = encode_and_commit(job, &props);
                            // The job's batches (a whole file's worth) were just freed.
                            release_freed_memory();
                            let _ = tx.send(result);
                        }
                    })
                    .expect("spawn encoder thread")
            })
            .collect();
        Ok(LakeWriter {
            lake: lake.clone(),
            opts,
            buffers: HashMap::new(),
            key_sets: HashMap::new(),
            cached_keys: 0,
            buffered_bytes: 0,
            clock: 0,
            jobs: Some(job_tx),
            results: res_rx,
            workers,
            in_flight: 0,
            committed: Vec::new(),
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

    /// Rows buffered and not yet durable.
    pub fn buffered_rows(&self) -> usize {
        self.buffers.values().map(|b| b.rows).sum()
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
            Some(mask) => filter_record_batch(&batch, &mask)?,
            None => batch,
        };
        let bytes = batch.get_array_memory_size();
        let buf = self
            .buffers
            .entry(partition.clone())
            .or_insert_with(|| PartitionBuffer {
                batches: Vec::new(),
                rows: 0,
                bytes: 0,
                last_write: 0,
            });
        buf.rows += batch.num_rows();
        buf.bytes += bytes;
        buf.last_write = self.clock;
        buf.batches.push(batch);
        self.buffered_bytes += bytes;
        if buf.rows >= self.opts.max_file_rows || buf.bytes >= self.opts.max_file_bytes {
            self.roll(&partition)?;
        }
        while self.buffered_bytes > self.opts.max_buffer_bytes {
            let oldest = self
                .buffers
                .iter()
                .min_by_key(|(_, b)| b.last_write)
                .map(|(k, _)| k.clone())
                .expect("buffered bytes > 0 implies a buffer");
            self.roll(&oldest)?;
        }
        Ok(new_rows)
    }

    /// Writes every buffered row into committed files and waits until all are durable.
    /// Returns the files committed since the previous flush.
    pub fn flush(&mut self) -> Result<Vec<CommittedFile>> {
        self.check_poisoned()?;
        let mut keys: Vec<PartitionKey> = self.buffers.keys().cloned().collect();
        keys.sort();
        for key in keys {
            self.roll(&key)?;
        }
        self.collect_finished(true)?;
        self.evict_key_sets();
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
                .filter(|(k, _)| !self.buffers.contains_key(*k))
                .min_by_key(|(_, s)| s.last_use)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            if let Some(set) = self.key_sets.remove(&victim) {
                self.cached_keys -= set.keys.len();
            }
        }
    }

    /// Hands a partition's buffer to an encoder thread.
    fn roll(&mut self, partition: &PartitionKey) -> Result<()> {
        let Some(buf) = self.buffers.remove(partition) else {
            return Ok(());
        };
        self.buffered_bytes -= buf.bytes;
        if buf.rows == 0 {
            return Ok(());
        }
        let name = format!("part-{}.parquet", ulid::Ulid::generate());
        let job = EncodeJob {
            partition: partition.clone(),
            batches: buf.batches,
            target: self.lake.partition_dir(partition).join(&name),
            tmp: self.lake.tmp_dir().join(format!("{name}.tmp")),
        };
        // Bound the files in flight: wait for one to finish before queueing beyond the pool.
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

    fn accept_result(&mut self, res: Result<CommittedFile>) -> Result<()> {
        match res {
            Ok(file) => {
                self.stats.rows_committed += file.rows as u64;
                self.stats.files_committed += 1;
                self.stats.bytes_committed += file.bytes;
                self.committed.push(file);
                Ok(())
            }
            Err(e) => Err(self.poison(e)),
        }
    }

    /// After a failed write the key sets hold keys of rows that never became durable; they would
    /// make a retry drop those rows as duplicates. Forget everything and refuse further writes.
    fn poison(&mut self, e: IngestError) -> IngestError {
        self.poisoned = Some(e.to_string());
        self.key_sets.clear();
        self.cached_keys = 0;
        self.buffers.clear();
        self.buffered_bytes = 0;
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
pub fn load_partition_keys(lake: &Lake, partition: &PartitionKey) -> Result<HashSet<u128>> {
    let mut keys = HashSet::new();
    for path in list_parquet_files(&lake.partition_dir(partition))? {
        let read_err = |source| IngestError::LakeRead {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(IngestError::lake_io(&path))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(read_err)?;
        let schema = builder.parquet_schema();
        let leaves: Vec<usize> = [AUDIT_ID, STAGE]
            .iter()
            .map(|name| {
                (0..schema.num_columns())
                    .find(|&i| schema.column(i).path().string() == *name)
                    .ok_or_else(|| IngestError::LakeRead {
                        path: path.clone(),
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
    }
    Ok(keys)
}

fn string_column<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| IngestError::Internal(format!("column {name} is not a string column")))
}

/// False-positive rate of the bloom filters: a 5% miss costs one needless row-group read, and the
/// filters stay ~40% smaller than at 1%.
const BLOOM_FPP: f64 = 0.05;

/// Parquet properties of an `audit_events` file holding `batches`.
fn writer_properties(
    opts: &WriterOptions,
    batches: &[RecordBatch],
    rows: usize,
) -> Result<WriterProperties> {
    let schema = audit_events_file_schema();
    let descr = ArrowSchemaConverter::new()
        .convert(&schema)
        .map_err(|e| IngestError::Internal(format!("schema conversion: {e}")))?;
    let stage_at_leaf = (0..descr.num_columns())
        .find(|&i| descr.column(i).path().string() == STAGE_AT)
        .ok_or_else(|| IngestError::Internal("stage_at leaf".into()))?
        as i32;
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
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: stage_at_leaf,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            SCHEMA_VERSION_KEY.to_owned(),
            AUDIT_EVENTS_SCHEMA_VERSION.to_owned(),
        )]))
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
    // Bloom filters on the lookup columns, sized to the distinct values actually present
    // (a filter sized for a million values on a column with forty users wastes megabytes).
    let per_group = rows.min(opts.row_group_rows).max(1);
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
    let mut seen: HashSet<&str> = HashSet::new();
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
fn release_freed_memory() {
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
fn encode_and_commit(job: EncodeJob, opts: &WriterOptions) -> Result<CommittedFile> {
    let (rows, bytes) = encode_file(&job.batches, opts, &job.tmp)?;
    commit_file(&job.tmp, &job.target)?;
    Ok(CommittedFile {
        path: job.target,
        partition: job.partition,
        rows,
        bytes,
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
    let props = writer_properties(opts, batches, rows)?;
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
    let mut times: Vec<(i64, usize, usize)> =
        Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    for (bi, b) in batches.iter().enumerate() {
        let col = b
            .column_by_name(STAGE_AT)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .ok_or_else(|| IngestError::Internal("stage_at is not a µs timestamp".into()))?;
        for (ri, t) in col.values().iter().enumerate() {
            times.push((*t, bi, ri));
        }
    }
    if times.windows(2).all(|w| w[0].0 <= w[1].0) {
        return Ok(None);
    }
    times.sort_by_key(|&(t, _, _)| t);
    Ok(Some(times.into_iter().map(|(_, b, r)| (b, r)).collect()))
}

#[cfg(test)]
mod tests;
