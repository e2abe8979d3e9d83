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

//! Here: options, buffers and row-group cutting, open files and commits; the dedup index is in
//! [`dedup`], Parquet encoding (shared with compaction) in [`encode`], the encoder threads in
//! [`pool`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow::compute::{filter_record_batch, interleave_record_batch};
use arrow::record_batch::RecordBatch;
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::decode::{DecodedBatch, PartitionKey};
use crate::error::{IngestError, Result};
use crate::lake::{Lake, NewFile, WriterLock, clean_tmp, create_dir_durable};

mod dedup;
mod encode;
mod pool;

use dedup::KeySet;
pub use dedup::{KeyHashes, load_partition_keys};
pub use encode::SORTED_BY_KEY;
use encode::*;
pub(crate) use encode::{EncodedRowGroup, RowGroupFile, encode_row_group, rows_by_time};
pub(crate) use pool::release_freed_memory;
pub use pool::resident_bytes;
use pool::*;

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
            .ok_or(IngestError::RowGroupForClosedFile)?;
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
        self.poisoned = Some(crate::error::chain(&e));
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

/// The partition written longest ago, of (partition, last write) pairs.
fn least_recent<'a>(items: impl Iterator<Item = (&'a PartitionKey, u64)>) -> Option<PartitionKey> {
    items.min_by_key(|&(_, at)| at).map(|(k, _)| k.clone())
}

/// Finished files per Delta commit between flushes (a flush commits whatever is finished).
const COMMIT_EVERY_FILES: usize = 8;

/// Partitions with a file open at once; beyond it the least recently written is committed.
const MAX_OPEN_FILES: usize = 64;

#[cfg(test)]
mod tests;
