//! Compaction: merges a partition's small files (streaming flushes leave one per flush) into few
//! large, time-sorted ones — without a reader ever seeing a row twice or missing one.
//!
//! The new content of `hour=HH/` is built beside it in `<lake>/_state/compact/<ulid>/`: merged
//! files for the small ones, hard links for the files kept as they are. Then one
//! `renameat2(RENAME_EXCHANGE)` swaps the two directories atomically: a reader that lists the
//! partition sees either every old file or every new one. (A query that listed the old files and
//! opens one after the swap fails with "file not found" and can be retried; it never returns
//! wrong rows.) The old files, now in `_tmp`, are removed; a crash at any point leaves either the
//! old or the new partition; leftovers of a crash are removed before the next compaction starts
//! ([`clean_staging`]). Staging lives under `_state`, not `_tmp`, because a lake writer that
//! reopens (serve's recovery) cleans `_tmp` and must not pull a staging directory from under a
//! running merge.
//!
//! Two phases, so a long merge never blocks ingestion: [`prepare`] reads and writes outside the
//! writer; [`finish`] runs where no file can be committed into the partition concurrently (the
//! writer lock for `auditlake compact`, the flush thread between flushes in `serve`): it links
//! files that arrived since `prepare` into the staging directory, then exchanges.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::buffer::ScalarBuffer;
use arrow::compute::interleave_record_batch;
use arrow::record_batch::RecordBatch;
use auditlake_schemas::STAGE_AT;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::error::{IngestError, Result};
use crate::lake::{Lake, create_dir_durable, fsync_dir, list_parquet_files};
use crate::writer::{
    RowGroupFile, SORTED_BY_KEY, WriterOptions, encode_row_group, release_freed_memory,
};

#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Files smaller than this (on disk) are merged.
    pub small_file_bytes: u64,
    /// A partition is compacted when it holds at least this many small files.
    pub min_small_files: usize,
    /// Only partitions whose hour ended at least this many seconds ago (late events still come).
    pub min_age_secs: i64,
    /// Encoding of the merged files: row groups of `row_group_rows`/`row_group_bytes`, up to
    /// `max_file_rows` per file.
    pub writer: WriterOptions,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            small_file_bytes: 16 << 20,
            min_small_files: 4,
            min_age_secs: 3600,
            writer: WriterOptions::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    pub partitions: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub rows: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl CompactReport {
    pub fn add(&mut self, other: &CompactReport) {
        self.partitions += other.partitions;
        self.files_before += other.files_before;
        self.files_after += other.files_after;
        self.rows += other.rows;
        self.bytes_before += other.bytes_before;
        self.bytes_after += other.bytes_after;
    }
}

/// A partition's next content, ready to be swapped in.
#[derive(Debug)]
pub struct Prepared {
    pub partition_dir: PathBuf,
    staging: PathBuf,
    /// Names of the files present at prepare time (merged or linked).
    inputs: HashSet<std::ffi::OsString>,
    report: CompactReport,
}

/// Partition directories (`cluster=*/date=*/hour=*`) whose hour ended before `cutoff_micros`.
pub fn closed_partitions(lake: &Lake, cutoff_micros: i64) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let read = |dir: &Path| -> Result<Vec<PathBuf>> {
        match fs::read_dir(dir) {
            Ok(entries) => Ok(entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(IngestError::lake_io(dir)(e)),
        }
    };
    for cluster in read(&lake.audit_events_dir())? {
        for date in read(&cluster)? {
            for hour in read(&date)? {
                let value = |p: &Path, key: &str| {
                    p.file_name()?
                        .to_str()?
                        .strip_prefix(key)
                        .map(str::to_owned)
                };
                let (Some(d), Some(h)) = (value(&date, "date="), value(&hour, "hour=")) else {
                    continue;
                };
                let Ok(start) = chrono::NaiveDateTime::parse_from_str(
                    &format!("{d} {h}:00:00"),
                    "%Y-%m-%d %H:%M:%S",
                ) else {
                    continue;
                };
                let end = start.and_utc().timestamp_micros() + crate::decode::MICROS_PER_HOUR;
                if end <= cutoff_micros {
                    out.push(hour);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// One input of [`SortedMerge`]: a time-sorted file read a batch at a time.
struct MergeInput {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    batch: RecordBatch,
    times: ScalarBuffer<i64>,
    pos: usize,
    /// The last time taken, to check that the file really is sorted.
    last: i64,
    /// Where `batch` sits in the chunk being assembled.
    slot: Option<usize>,
}

impl MergeInput {
    /// Moves to the next non-empty batch; false at the end of the file.
    fn advance(&mut self) -> Result<bool> {
        for batch in self.reader.by_ref() {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            self.times = stage_times(&batch, &self.path)?;
            self.batch = batch;
            self.pos = 0;
            self.slot = None;
            return Ok(true);
        }
        Ok(false)
    }
}

fn stage_times(batch: &RecordBatch, path: &Path) -> Result<ScalarBuffer<i64>> {
    batch
        .column_by_name(STAGE_AT)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .map(|a| a.values().clone())
        .ok_or_else(|| IngestError::Internal(format!("{}: no µs stage_at", path.display())))
}

/// Reads time-sorted files as one time-sorted stream (a k-way merge on `stage_at`), holding
/// only a small batch of each file, so a partition of any size merges in bounded memory.
struct SortedMerge {
    inputs: Vec<MergeInput>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    rows: u64,
}

impl SortedMerge {
    fn open(files: &[PathBuf]) -> Result<Self> {
        // Small batches: a batch of every input is held at once (each input also holds its
        // decompressed pages).
        let batch_rows = 1024;
        let mut merge = SortedMerge {
            inputs: Vec::with_capacity(files.len()),
            heap: BinaryHeap::with_capacity(files.len()),
            rows: 0,
        };
        for path in files {
            let read_err = |source| IngestError::LakeRead {
                path: path.clone(),
                source,
            };
            let file = File::open(path).map_err(IngestError::lake_io(path))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(read_err)?;
            merge.rows += u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
            let reader = builder
                .with_batch_size(batch_rows)
                .build()
                .map_err(read_err)?;
            let mut input = MergeInput {
                path: path.clone(),
                batch: RecordBatch::new_empty(arrow::record_batch::RecordBatchReader::schema(
                    &reader,
                )),
                reader,
                times: ScalarBuffer::from(Vec::<i64>::new()),
                pos: 0,
                last: i64::MIN,
                slot: None,
            };
            if input.advance()? {
                merge
                    .heap
                    .push(Reverse((input.times[0], merge.inputs.len())));
                merge.inputs.push(input);
            }
        }
        Ok(merge)
    }

    /// The next (up to) `max_rows` rows in time order; `None` when every input is consumed.
    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<RecordBatch>> {
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(max_rows);
        for input in &mut self.inputs {
            input.slot = None;
        }
        while picks.len() < max_rows {
            let Some(Reverse((t, i))) = self.heap.pop() else {
                break;
            };
            let input = &mut self.inputs[i];
            if t < input.last {
                return Err(IngestError::Internal(format!(
                    "{} is not sorted by stage_at; it cannot be merged",
                    input.path.display()
                )));
            }
            input.last = t;
            let slot = *input.slot.get_or_insert_with(|| {
                batches.push(input.batch.clone());
                batches.len() - 1
            });
            picks.push((slot, input.pos));
            input.pos += 1;
            if input.pos == input.times.len() && !input.advance()? {
                continue;
            }
            self.heap.push(Reverse((input.times[input.pos], i)));
        }
        if picks.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        Ok(Some(interleave_record_batch(&refs, &picks)?))
    }
}

/// Whether a file declares its rows sorted by `stage_at`: our `auditlake.sorted_by` key, or
/// Parquet's `sorting_columns` (files written before that key).
fn known_sorted(path: &Path) -> Result<bool> {
    let file = File::open(path).map_err(IngestError::lake_io(path))?;
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|source| IngestError::LakeRead {
            path: path.to_path_buf(),
            source,
        })?;
    let by_key = meta.file_metadata().key_value_metadata().is_some_and(|kv| {
        kv.iter()
            .any(|k| k.key == SORTED_BY_KEY && k.value.as_deref() == Some(STAGE_AT))
    });
    let schema = meta.file_metadata().schema_descr();
    let by_sorting_columns = meta.row_groups().first().is_some_and(|rg| {
        rg.sorting_columns().is_some_and(|cols| {
            cols.first().is_some_and(|c| {
                !c.descending
                    && usize::try_from(c.column_idx).is_ok_and(|i| {
                        i < schema.num_columns() && schema.column(i).path().string() == STAGE_AT
                    })
            })
        })
    });
    Ok(by_key || by_sorting_columns)
}

/// Files merged into one: each input holds its decompressed pages (a few MB per file written by
/// a flush), so the fan-in bounds compaction's memory.
pub const MERGE_FAN_IN: usize = 16;

/// Writes a merge's rows into files of sorted row groups in `dir`.
fn merge_into(
    mut merge: SortedMerge,
    dir: &Path,
    w: &WriterOptions,
    report: &mut CompactReport,
    cancelled: &dyn Fn() -> bool,
) -> Result<()> {
    let mut out: Option<(RowGroupFile, usize)> = None;
    let mut group: Vec<RecordBatch> = Vec::new();
    let (mut group_rows, mut group_bytes) = (0usize, 0usize);
    loop {
        if cancelled() {
            return Err(IngestError::Internal("cancelled".into()));
        }
        let room = w.row_group_rows.max(1) - group_rows;
        let chunk = merge.next_chunk(room.min(8192))?;
        let done = chunk.is_none();
        if let Some(chunk) = chunk {
            group_rows += chunk.num_rows();
            group_bytes += chunk.get_array_memory_size();
            group.push(chunk);
        }
        let group_full = group_rows >= w.row_group_rows || group_bytes >= w.row_group_bytes;
        if !group.is_empty() && (done || group_full) {
            let (file, file_rows) = match &mut out {
                Some(open) => open,
                None => out.insert((
                    RowGroupFile::create(
                        dir.join(format!("part-{}.parquet", ulid::Ulid::generate())),
                        w,
                    )?,
                    0,
                )),
            };
            file.append(encode_row_group(&group, None, w, file.path())?)?;
            release_freed_memory();
            *file_rows += group_rows;
            report.rows += group_rows as u64;
            group.clear();
            (group_rows, group_bytes) = (0, 0);
        }
        if out
            .as_ref()
            .is_some_and(|(_, rows)| done || *rows >= w.max_file_rows)
        {
            let (file, _) = out.take().expect("checked above");
            report.bytes_after += file.finish()?;
            report.files_after += 1;
        }
        if done {
            break;
        }
    }
    Ok(())
}

/// Phase 1: merges the partition's small files into `_tmp/compact-<ulid>/`, hard-links the rest.
/// Returns `None` when the partition has too few small files to be worth it, or when `cancelled`
/// turns true (checked between row groups). Small files are merged [`MERGE_FAN_IN`] at a time
/// (in name order, which is time order) into one file each.
pub fn prepare(
    lake: &Lake,
    partition_dir: &Path,
    opts: &CompactOptions,
    cancelled: &dyn Fn() -> bool,
) -> Result<Option<Prepared>> {
    let files = list_parquet_files(partition_dir)?;
    let mut small = Vec::new();
    let mut keep = Vec::new();
    let mut report = CompactReport {
        partitions: 1,
        files_before: files.len(),
        ..CompactReport::default()
    };
    for f in files {
        let len = fs::metadata(&f).map_err(IngestError::lake_io(&f))?.len();
        report.bytes_before += len;
        // A file not known to be sorted (copied in by hand, written by another tool) cannot
        // take part in the merge; it stays as it is rather than block the partition forever.
        if len < opts.small_file_bytes && known_sorted(&f)? {
            small.push(f);
        } else {
            keep.push((f, len));
        }
    }
    if small.len() < opts.min_small_files.max(2) {
        return Ok(None);
    }

    let staging = staging_root(lake).join(ulid::Ulid::generate().to_string());
    create_dir_durable(&staging)?;
    let result = (|| -> Result<Prepared> {
        let mut inputs = HashSet::new();
        for (f, len) in &keep {
            let name = f.file_name().expect("listed file").to_owned();
            fs::hard_link(f, staging.join(&name)).map_err(IngestError::lake_io(f))?;
            inputs.insert(name);
            report.files_after += 1;
            report.bytes_after += len;
        }
        let mut rows_in = 0;
        for f in &small {
            inputs.insert(f.file_name().expect("listed file").to_owned());
        }
        for files in small.chunks(MERGE_FAN_IN) {
            let merge = SortedMerge::open(files)?;
            rows_in += merge.rows;
            merge_into(merge, &staging, &opts.writer, &mut report, cancelled)?;
        }
        if report.rows != rows_in {
            return Err(IngestError::Internal(format!(
                "compaction of {} wrote {} rows for {rows_in} read",
                partition_dir.display(),
                report.rows
            )));
        }
        fsync_dir(&staging)?;
        Ok(Prepared {
            partition_dir: partition_dir.to_path_buf(),
            staging: staging.clone(),
            inputs,
            report,
        })
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
        if cancelled() {
            return Ok(None);
        }
    }
    result.map(Some)
}

/// Phase 2: links files committed since [`prepare`] into the staging directory, swaps it with the
/// partition atomically and removes the old files. Call only where nothing commits into the
/// partition concurrently.
pub fn finish(prepared: Prepared) -> Result<CompactReport> {
    let Prepared {
        partition_dir,
        staging,
        inputs,
        mut report,
    } = prepared;
    let result = (|| -> Result<()> {
        let now: Vec<PathBuf> = list_parquet_files(&partition_dir)?;
        let present: HashSet<_> = now
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_owned()))
            .collect();
        if let Some(gone) = inputs.iter().find(|n| !present.contains(*n)) {
            return Err(IngestError::Internal(format!(
                "{} lost {gone:?} while being compacted; compaction abandoned",
                partition_dir.display()
            )));
        }
        for f in &now {
            let name = f.file_name().expect("listed file");
            if !inputs.contains(name) {
                fs::hard_link(f, staging.join(name)).map_err(IngestError::lake_io(f))?;
                let len = fs::metadata(f).map_err(IngestError::lake_io(f))?.len();
                report.files_before += 1;
                report.files_after += 1;
                report.bytes_before += len;
                report.bytes_after += len;
            }
        }
        fsync_dir(&staging)?;
        exchange(&staging, &partition_dir)?;
        if let Some(parent) = partition_dir.parent() {
            fsync_dir(parent)?;
        }
        Ok(())
    })();
    // After the exchange `staging` holds the old files; before it, the abandoned new ones.
    let _ = fs::remove_dir_all(&staging);
    result.map(|()| report)
}

/// Atomically swaps two directories (Linux `renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| IngestError::Internal(format!("{} has a NUL byte", p.display())))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: two valid NUL-terminated paths relative to the working directory.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(IngestError::LakeIo {
            path: b.to_path_buf(),
            source: std::io::Error::new(
                err.kind(),
                format!(
                    "atomic directory exchange (renameat2 RENAME_EXCHANGE) failed: {err}; this file system cannot be compacted in place"
                ),
            ),
        });
    }
    Ok(())
}

fn staging_root(lake: &Lake) -> PathBuf {
    lake.state_dir().join("compact")
}

/// Removes staging directories a crashed compaction left. Call before compactions start.
pub fn clean_staging(lake: &Lake) -> Result<()> {
    let root = staging_root(lake);
    match fs::remove_dir_all(&root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IngestError::lake_io(&root)(e)),
    }
}

/// `auditlake compact`: takes the writer lock and compacts every closed partition that needs it.
pub fn compact_lake(lake: &Lake, opts: &CompactOptions, now_micros: i64) -> Result<CompactReport> {
    let _lock = lake.lock_writer()?;
    clean_staging(lake)?;
    let mut total = CompactReport::default();
    for dir in closed_partitions(lake, now_micros - opts.min_age_secs * 1_000_000)? {
        if let Some(p) = prepare(lake, &dir, opts, &|| false)? {
            total.add(&finish(p)?);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
