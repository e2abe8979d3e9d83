//! Encoding: Parquet properties (compression, encodings, bloom filters, statistics), the
//! time order of rows, a row group, a whole file; the open file row groups are appended to.
//! Compaction encodes with the same functions.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, StringArray, TimestampMicrosecondArray};
use arrow::compute::interleave_record_batch;
use arrow::record_batch::RecordBatch;
use auditlake_schemas::{
    AUDIT_EVENTS_SCHEMA_VERSION, AUDIT_ID, EXEC_CONTAINER, IMPERSONATED_USER_NAME, NAME, NAMESPACE,
    POD_HOST_IPC, POD_HOST_NETWORK, POD_HOST_PID, POD_PRIVILEGED, REQUEST_OBJECT,
    REQUEST_RECEIVED_AT, REQUEST_URI, RESOURCE, RESPONSE_CODE, RESPONSE_OBJECT, ROLE_REF_KIND,
    ROLE_REF_NAME, SCHEMA_VERSION_KEY, SOURCE_IP, STAGE_AT, SUBRESOURCE, USER_NAME, VERB,
    audit_events_file_schema,
};
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, compute_leaves};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use crate::error::{IngestError, Result};
use crate::lake::Lake;

use super::*;

/// A row group's encoded column chunks, ready to be appended to its file.
pub(crate) struct EncodedRowGroup {
    pub(super) chunks: Vec<ArrowColumnChunk>,
}

/// An `audit_events` Parquet file written row group by row group (each encoded by
/// [`encode_row_group`], possibly on another thread). The caller makes it visible.
pub(crate) struct RowGroupFile {
    pub(super) writer: SerializedFileWriter<File>,
    pub(super) path: PathBuf,
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

/// File key-value metadata naming the column the rows are sorted by.
pub const SORTED_BY_KEY: &str = "auditlake.sorted_by";

/// False-positive rate of the bloom filters: a 5% miss costs one needless row-group read, and the
/// filters stay ~40% smaller than at 1%.
pub(super) const BLOOM_FPP: f64 = 0.05;

/// Columns stored without zstd: the small columns that queries filter on, whose pages are
/// already compact (bit-packed dictionary indices of low-cardinality strings, run lengths of
/// mostly-null or boolean columns, `stage_at`'s delta-packed sorted times), so zstd shrank them
/// little: 0.7 MB of 48 MB per million events, all together. Reading them compressed cost a
/// decompression per page and, in parquet 59, a zstd context pair created per column chunk
/// read; on 1M events, stored plain made Q1 of the benchmark 21 → 16 ms and Q2 13 → 10 ms.
pub(super) const FILTER_COLUMNS_STORED_PLAIN: &[&str] = &[
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
pub(super) fn writer_properties(
    opts: &WriterOptions,
    batches: &[RecordBatch],
    rows_per_group: usize,
) -> Result<WriterProperties> {
    let zstd = |level: i32| {
        ZstdLevel::try_new(level)
            .map(Compression::ZSTD)
            .map_err(|source| IngestError::ZstdLevel { level, source })
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

pub(super) fn distinct_strings(batches: &[RecordBatch], col: &str) -> usize {
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

/// Sorts the rows by `stage_at`, writes them to a temp file, fsyncs it and renames it into its
/// partition. Runs on an encoder thread.
pub(super) fn encode_and_commit(
    lake: &Lake,
    job: EncodeJob,
    opts: &WriterOptions,
) -> Result<CommittedFile> {
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
pub(super) fn sort_order(batches: &[RecordBatch]) -> Result<Option<Vec<(usize, usize)>>> {
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
            .ok_or_else(|| IngestError::UnexpectedColumn {
                column: STAGE_AT.to_owned(),
                expected: "a µs timestamp",
            })?;
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
        .map_err(IngestError::Schema)?;
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
                    .ok_or(IngestError::ColumnWithoutWriter)?
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
