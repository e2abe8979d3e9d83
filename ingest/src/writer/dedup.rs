//! Write-side deduplication: the (audit_id, stage) key hashes of each partition, loaded from
//! the partition's files in the table's snapshot, checked and extended as rows arrive, evicted
//! least recently used.

use std::collections::HashSet;
use std::path::PathBuf;

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::record_batch::RecordBatch;
use auditlake_schemas::{AUDIT_ID, STAGE};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::decode::{PartitionKey, dedup_key};
use crate::error::{IngestError, Result};
use crate::lake::{DataFile, Lake};

use super::*;

/// Dedup key hashes. std's SipHash on a million inserts per million events cost ~3 % of the
/// ingest's CPU; foldhash is several times faster and still seeded per process.
pub type KeyHashes = HashSet<u128, foldhash::fast::RandomState>;

pub(super) struct KeySet {
    pub(super) keys: KeyHashes,
    pub(super) last_use: u64,
}

impl LakeWriter {
    /// Returns a mask of rows whose key is new (None = all new), inserting the new keys.
    pub(super) fn dedup(
        &mut self,
        partition: &PartitionKey,
        keys: &[u128],
    ) -> Result<Option<BooleanArray>> {
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
    pub(super) fn evict_key_sets(&mut self) {
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
pub(super) fn add_file_keys<R: parquet::file::reader::ChunkReader + 'static>(
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

pub(super) fn string_column<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| IngestError::UnexpectedColumn {
            column: name.to_owned(),
            expected: "a string column",
        })
}
