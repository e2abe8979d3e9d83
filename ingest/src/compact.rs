//! Compaction: merges a partition's small files (streaming flushes leave one per flush) into few
//! large, time-sorted ones — without a reader ever seeing a row twice or missing one.
//!
//! Merged files are encoded in `<lake>/_state/compact/<ulid>/`, published into the partition
//! (invisible: no commit names them yet), and swapped in with **one Delta commit** that removes
//! the small files and adds the merged ones: a reader's snapshot has either every old file or
//! every new one. Concurrent appends to the same partition do not conflict with it; a
//! concurrent compaction or retention run that removed one of the inputs first does, and this
//! one is abandoned (its published files deleted). The replaced files stay in storage after the
//! commit, out of the table, until the vacuum deletes them once `retention.vacuum_grace` has
//! passed (`auditlake retention`, serve's retention job): a query planned on the snapshot before
//! the compaction, or a replica that has not yet read the new commit, can still read them, and
//! their deletion is recorded in `retention_log` like every other. Staging lives under `_state`, not `_tmp`, because a lake writer that reopens (serve's
//! recovery) cleans `_tmp` and must not pull a file from under a running merge.
//!
//! The merge also **re-checks the dedup key** `(audit_id, stage)`: two writers on one table
//! (replicas on object storage) that both received a re-delivered event each wrote it once;
//! the partition's compaction keeps one.
//!
//! Two phases, so a long merge never blocks ingestion: [`prepare`] reads and writes outside the
//! writer; [`finish`] commits.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs;
use std::path::{Path, PathBuf};

use arrow::array::{Array, BooleanArray, StringArray, TimestampMicrosecondArray};
use arrow::buffer::ScalarBuffer;
use arrow::compute::interleave_record_batch;
use arrow::record_batch::RecordBatch;
use auditlake_schemas::{AUDIT_ID, STAGE, STAGE_AT};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::decode::{MICROS_PER_HOUR, PartitionKey, dedup_key};
use crate::error::{IngestError, Result};
use crate::lake::{DataFile, Lake, NewFile, TableFile, create_dir_durable};
use crate::writer::{
    KeyHashes, RowGroupFile, SORTED_BY_KEY, WriterOptions, encode_row_group, release_freed_memory,
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
    /// Rows dropped because their `(audit_id, stage)` was already in the merge.
    pub duplicates_removed: u64,
}

impl CompactReport {
    pub fn add(&mut self, other: &CompactReport) {
        self.partitions += other.partitions;
        self.files_before += other.files_before;
        self.files_after += other.files_after;
        self.rows += other.rows;
        self.bytes_before += other.bytes_before;
        self.bytes_after += other.bytes_after;
        self.duplicates_removed += other.duplicates_removed;
    }
}

/// One partition of the table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionRef {
    pub cluster: String,
    pub date: String,
    pub hour: String,
}

impl std::fmt::Display for PartitionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cluster={}/date={}/hour={}",
            self.cluster, self.date, self.hour
        )
    }
}

impl PartitionRef {
    fn of(file: &TableFile) -> Option<Self> {
        let get = |k: &str| file.partition.get(k).cloned().flatten();
        Some(PartitionRef {
            cluster: get(auditlake_schemas::CLUSTER)?,
            date: get(auditlake_schemas::DATE)?,
            hour: get(auditlake_schemas::HOUR)?,
        })
    }

    /// Start of the partition's hour (µs since the epoch).
    fn start_micros(&self) -> Option<i64> {
        chrono::NaiveDateTime::parse_from_str(
            &format!("{} {}:00:00", self.date, self.hour),
            "%Y-%m-%d %H:%M:%S",
        )
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
    }

    fn key(&self) -> Option<PartitionKey> {
        Some(PartitionKey {
            cluster: self.cluster.as_str().into(),
            hour: self.start_micros()? / MICROS_PER_HOUR,
        })
    }
}

/// A partition's merged files, published and waiting for the commit that swaps them in.
#[derive(Debug)]
pub struct Prepared {
    pub partition: PartitionRef,
    inputs: Vec<TableFile>,
    outputs: Vec<NewFile>,
    report: CompactReport,
}

/// Partitions of the table whose hour ended before `cutoff_micros`.
pub fn closed_partitions(lake: &Lake, cutoff_micros: i64) -> Result<Vec<PartitionRef>> {
    let mut out: Vec<PartitionRef> = lake
        .events()
        .all_files()?
        .iter()
        .filter_map(PartitionRef::of)
        .filter(|p| {
            p.start_micros()
                .is_some_and(|start| start + MICROS_PER_HOUR <= cutoff_micros)
        })
        .collect();
    out.sort();
    out.dedup();
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
        .ok_or_else(|| IngestError::UnexpectedColumn {
            column: format!("{STAGE_AT} of {}", path.display()),
            expected: "a µs timestamp",
        })
}

/// Reads time-sorted files as one time-sorted stream (a k-way merge on `stage_at`), holding
/// only a small batch of each file, so a partition of any size merges in bounded memory.
struct SortedMerge {
    inputs: Vec<MergeInput>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    rows: u64,
}

impl SortedMerge {
    fn open(lake: &Lake, files: &[TableFile]) -> Result<Self> {
        // Small batches: a batch of every input is held at once (each input also holds its
        // decompressed pages).
        let batch_rows = 1024;
        let mut merge = SortedMerge {
            inputs: Vec::with_capacity(files.len()),
            heap: BinaryHeap::with_capacity(files.len()),
            rows: 0,
        };
        for file in files {
            let path = PathBuf::from(&file.path);
            let (rows, reader) = match lake.read_data(&file.path)? {
                DataFile::Local(f) => open_reader(f, &path, batch_rows)?,
                DataFile::Remote(b) => open_reader(b, &path, batch_rows)?,
            };
            merge.rows += rows;
            let mut input = MergeInput {
                path,
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
                return Err(IngestError::UnsortedFile {
                    path: input.path.clone(),
                });
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

/// A reader of a whole file in batches of `batch_rows`, and the file's row count.
fn open_reader<R: parquet::file::reader::ChunkReader + 'static>(
    data: R,
    path: &Path,
    batch_rows: usize,
) -> Result<(u64, ParquetRecordBatchReader)> {
    let read_err = |source| IngestError::LakeRead {
        path: path.to_path_buf(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(data).map_err(read_err)?;
    let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let reader = builder
        .with_batch_size(batch_rows)
        .build()
        .map_err(read_err)?;
    Ok((rows, reader))
}

/// Whether a file declares its rows sorted by `stage_at`: our `auditlake.sorted_by` key, or
/// Parquet's `sorting_columns` (files written before that key).
fn known_sorted(lake: &Lake, rel: &str) -> Result<bool> {
    let path = Path::new(rel);
    let read_err = |source| IngestError::LakeRead {
        path: path.to_path_buf(),
        source,
    };
    let meta = match lake.read_data(rel)? {
        DataFile::Local(f) => parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&f)
            .map_err(read_err)?,
        DataFile::Remote(b) => parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&b)
            .map_err(read_err)?,
    };
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
    seen: &mut KeyHashes,
    report: &mut CompactReport,
    cancelled: &dyn Fn() -> bool,
) -> Result<Vec<(PathBuf, u64)>> {
    let mut written = Vec::new();
    let mut out: Option<(RowGroupFile, usize)> = None;
    let mut group: Vec<RecordBatch> = Vec::new();
    let (mut group_rows, mut group_bytes) = (0usize, 0usize);
    loop {
        if cancelled() {
            return Err(IngestError::Cancelled);
        }
        let room = w.row_group_rows.max(1) - group_rows;
        let chunk = merge.next_chunk(room.min(8192))?;
        let done = chunk.is_none();
        let chunk = match chunk {
            Some(c) => {
                let (kept, dropped) = drop_seen_keys(c, seen)?;
                report.duplicates_removed += dropped;
                Some(kept).filter(|k| k.num_rows() > 0)
            }
            None => None,
        };
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
            let (file, rows) = out.take().expect("checked above");
            let path = file.path().to_path_buf();
            report.bytes_after += file.finish()?;
            report.files_after += 1;
            written.push((path, rows as u64));
        }
        if done {
            break;
        }
    }
    Ok(written)
}

/// Drops the rows of `batch` whose dedup key is in `seen` (adding the others). Returns the rows
/// kept and how many were dropped.
fn drop_seen_keys(batch: RecordBatch, seen: &mut KeyHashes) -> Result<(RecordBatch, u64)> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .cloned()
            .ok_or_else(|| IngestError::UnexpectedColumn {
                column: name.to_owned(),
                expected: "a string column",
            })
    };
    let (ids, stages) = (column(AUDIT_ID)?, column(STAGE)?);
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|i| Some(seen.insert(dedup_key(ids.value(i), stages.value(i)))))
        .collect();
    let dropped = (batch.num_rows() - keep.true_count()) as u64;
    if dropped == 0 {
        return Ok((batch, 0));
    }
    Ok((arrow::compute::filter_record_batch(&batch, &keep)?, dropped))
}

/// Phase 1: merges the partition's small files into new files, published into the partition
/// but not yet committed. Returns `None` when the partition has too few small files to be worth
/// it, or when `cancelled` turns true (checked between row groups). Small files are merged
/// [`MERGE_FAN_IN`] at a time (in name order, which is time order) into one file each.
pub fn prepare(
    lake: &Lake,
    partition: &PartitionRef,
    opts: &CompactOptions,
    cancelled: &dyn Fn() -> bool,
) -> Result<Option<Prepared>> {
    let files =
        lake.events()
            .partition_files(&partition.cluster, &partition.date, &partition.hour)?;
    let key = partition.key().ok_or_else(|| IngestError::BadPartition {
        partition: partition.to_string(),
    })?;
    let mut small = Vec::new();
    let mut report = CompactReport {
        partitions: 1,
        files_before: files.len(),
        ..CompactReport::default()
    };
    for f in files {
        report.bytes_before += f.size;
        // A file not known to be sorted (copied in by hand, written by another tool) cannot
        // take part in the merge; it stays as it is rather than block the partition forever.
        if f.size < opts.small_file_bytes && known_sorted(lake, &f.path)? {
            small.push(f);
        } else {
            report.files_after += 1;
            report.bytes_after += f.size;
        }
    }
    if small.len() < opts.min_small_files.max(2) {
        return Ok(None);
    }

    let staging = staging_root(lake).join(ulid::Ulid::generate().to_string());
    create_dir_durable(&staging)?;
    let mut outputs: Vec<NewFile> = Vec::new();
    let result = (|| -> Result<()> {
        let mut rows_in = 0;
        let mut seen = KeyHashes::default();
        for files in small.chunks(MERGE_FAN_IN) {
            let merge = SortedMerge::open(lake, files)?;
            rows_in += merge.rows;
            let before = report.duplicates_removed;
            for (tmp, rows) in merge_into(
                merge,
                &staging,
                &opts.writer,
                &mut seen,
                &mut report,
                cancelled,
            )? {
                let name = tmp
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                let rel = format!("{partition}/{name}");
                outputs.push(lake.publish(&tmp, &rel, &key, rows)?);
            }
            rows_in -= report.duplicates_removed - before;
        }
        if report.rows != rows_in {
            return Err(IngestError::RowCountMismatch {
                partition: partition.to_string(),
                wrote: report.rows,
                read: rows_in,
            });
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&staging);
    match result {
        Ok(()) => Ok(Some(Prepared {
            partition: partition.clone(),
            inputs: small,
            outputs,
            report,
        })),
        Err(e) => {
            for f in &outputs {
                let _ = lake.delete_data(&f.path);
            }
            if cancelled() { Ok(None) } else { Err(e) }
        }
    }
}

/// Phase 2: one Delta commit removes the merged inputs and adds their replacement. The inputs
/// are left to the vacuum (see the module comment). Abandoned (its outputs deleted) when an input
/// left the table meanwhile.
pub fn finish(lake: &Lake, prepared: Prepared) -> Result<CompactReport> {
    let Prepared {
        partition,
        inputs,
        outputs,
        report,
    } = prepared;
    let detail = serde_json::json!({
        "partition": partition.to_string(),
        "files_removed": inputs.len(),
        "files_added": outputs.len(),
        "rows": report.rows,
        "duplicates_removed": report.duplicates_removed,
    });
    let added: Vec<String> = outputs.iter().map(|f| f.path.clone()).collect();
    match lake.events().commit("compact", detail, outputs, inputs) {
        Ok(Some(_)) => Ok(report),
        Ok(None) => {
            for p in &added {
                let _ = lake.delete_data(p);
            }
            Err(IngestError::CompactionRaced {
                partition: partition.to_string(),
            })
        }
        Err(e) => {
            for p in &added {
                let _ = lake.delete_data(p);
            }
            Err(e)
        }
    }
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
    // Object-storage lakes have many writers and no lock: the commit settles races.
    let _lock = if lake.is_remote() {
        None
    } else {
        Some(lake.lock_writer()?)
    };
    clean_staging(lake)?;
    let mut total = CompactReport::default();
    for partition in closed_partitions(lake, now_micros - opts.min_age_secs * 1_000_000)? {
        if let Some(p) = prepare(lake, &partition, opts, &|| false)? {
            total.add(&finish(lake, p)?);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
