//! Appends to the lake's small Delta tables (`findings`, `retention_log`): one record batch
//! becomes one Parquet file and one commit naming it.
//!
//! The file is made durable first (temp file, fsync, rename, fsync the directory on a local
//! lake; one whole upload on object storage) and only then committed, so a crash in between
//! leaves an orphan no reader sees (vacuum's to remove), never a commit naming a missing file.

use std::collections::HashMap;
use std::io::Write as _;

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use super::delta::sha256_hex;
use super::{Lake, NewFile, TableKind};
use crate::error::{IngestError, Result};

/// One batch to append.
pub struct Append<'a> {
    /// Path of the new file relative to the table root (`date=…/part-<ulid>.parquet`).
    pub rel: String,
    /// Partition column → value, matching `rel` (empty for an unpartitioned table).
    pub partition: HashMap<String, Option<String>>,
    pub batch: &'a RecordBatch,
    /// `auditlake.action` of the commit, and its detail.
    pub action: &'a str,
    pub detail: Value,
}

impl Lake {
    /// The table of `kind`.
    pub fn table(&self, kind: TableKind) -> &super::LakeTable {
        match kind {
            TableKind::AuditEvents => self.events(),
            TableKind::RetentionLog => self.retention_log(),
            TableKind::Findings => self.findings(),
        }
    }

    /// Writes `append.batch` as one zstd Parquet file of table `kind` and commits it. Returns
    /// the new version and where the file went.
    pub fn append(&self, kind: TableKind, append: Append<'_>) -> Result<(Option<i64>, String)> {
        let rel = format!("{}/{}", kind.dir(), append.rel);
        let location = self.location_of(&rel);
        let write_err = |source| IngestError::ParquetWrite {
            path: location.clone().into(),
            source,
        };
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("valid level"),
            ))
            .build();
        let mut bytes = Vec::new();
        let mut w = ArrowWriter::try_new(&mut bytes, append.batch.schema(), Some(props))
            .map_err(write_err)?;
        w.write(append.batch).map_err(write_err)?;
        w.close().map_err(write_err)?;
        // The table exists before its first data file: a reader that saw a data file but no
        // table would take it for an unmigrated lake (and refuse), and a crash between upload and
        // first commit would leave exactly that.
        let table = self.table(kind);
        if !table.exists()? {
            table.all_files()?;
        }
        self.write_file(&rel, |f| f.write_all(&bytes))?;
        let file = NewFile {
            path: append.rel,
            partition: append.partition,
            size: bytes.len() as u64,
            rows: append.batch.num_rows() as u64,
            sha256: sha256_hex(&bytes),
        };
        let version = table.commit(append.action, append.detail, vec![file], Vec::new())?;
        Ok((version, location))
    }
}
