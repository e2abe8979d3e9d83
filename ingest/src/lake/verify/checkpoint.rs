//! Delta checkpoints under `auditlake verify`: what a checkpoint says (its live files, every
//! path it names, the SHA-256 of its bytes), and whether it agrees with the log at its version.

use std::collections::{HashMap, HashSet};

use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use sha2::{Digest, Sha256};

use super::{Live, MAX_COMMIT_BYTES, Problem, ProblemKind, VerifyReport, decode_path, get_whole};
use crate::error::Result;
use crate::lake::delta::TAG_SHA256;
use crate::lake::seal::SealedCheckpoint;

/// What a checkpoint says: the live files (with the hash and time their `add` recorded), every
/// path it names (adds and tombstones), and the SHA-256 of its bytes.
pub(super) struct CheckpointFiles {
    pub(super) live: HashMap<String, Live>,
    pub(super) named: HashSet<String>,
    pub(super) sha256: String,
}

/// Reads a checkpoint's parts. `Ok(Err(problem))` when it is not a readable checkpoint.
pub(super) async fn read_checkpoint(
    store: &dyn ObjectStore,
    location: &str,
    parts: &[(StorePath, u64)],
) -> Result<std::result::Result<CheckpointFiles, Problem>> {
    use arrow::array::{Array as _, AsArray as _};
    use arrow::datatypes::Int64Type;
    let mut parts: Vec<&(StorePath, u64)> = parts.iter().collect();
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = CheckpointFiles {
        live: HashMap::new(),
        named: HashSet::new(),
        sha256: String::new(),
    };
    let mut hasher = Sha256::new();
    for (path, size) in parts {
        let name = path.to_string();
        let bad = |detail: String| {
            Ok(Err(Problem {
                kind: ProblemKind::RewrittenCheckpoint,
                object: name.clone(),
                detail,
            }))
        };
        if *size > MAX_COMMIT_BYTES {
            return bad(format!(
                "{size} bytes: larger than any checkpoint auditlake reads"
            ));
        }
        let bytes = get_whole(store, location, path, &name).await?;
        hasher.update(&bytes);
        let reader =
            match parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
            {
                Ok(r) => r,
                Err(e) => return bad(format!("not a readable checkpoint: {e}")),
            };
        for batch in reader {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => return bad(format!("not a readable checkpoint: {e}")),
            };
            if let Some(remove) = batch
                .column_by_name("remove")
                .and_then(|c| c.as_struct_opt())
                && let Some(paths) = remove
                    .column_by_name("path")
                    .and_then(|c| c.as_string_opt::<i32>())
            {
                for i in (0..remove.len()).filter(|&i| remove.is_valid(i) && paths.is_valid(i)) {
                    out.named.insert(decode_path(paths.value(i)));
                }
            }
            let Some(add) = batch.column_by_name("add").and_then(|c| c.as_struct_opt()) else {
                continue;
            };
            let Some(paths) = add
                .column_by_name("path")
                .and_then(|c| c.as_string_opt::<i32>())
            else {
                return bad("not a readable checkpoint: add.path is not a string column".into());
            };
            let tags = add.column_by_name("tags").and_then(|c| c.as_map_opt());
            let times = add
                .column_by_name("modificationTime")
                .and_then(|c| c.as_primitive_opt::<Int64Type>());
            for i in (0..add.len()).filter(|&i| add.is_valid(i) && paths.is_valid(i)) {
                let p = decode_path(paths.value(i));
                let sha256 = tags.filter(|m| m.is_valid(i)).and_then(|m| {
                    let entries = m.value(i);
                    let keys = entries.column(0).as_string_opt::<i32>()?;
                    let values = entries.column(1).as_string_opt::<i32>()?;
                    (0..entries.len())
                        .find(|&j| keys.value(j) == TAG_SHA256 && values.is_valid(j))
                        .map(|j| values.value(j).to_owned())
                });
                let added_ms = times.filter(|t| t.is_valid(i)).map_or(0, |t| t.value(i));
                out.named.insert(p.clone());
                out.live.insert(p, Live { sha256, added_ms });
            }
        }
    }
    out.sha256 = hex::encode(hasher.finalize());
    Ok(Ok(out))
}

/// Compares a checkpoint's files (its `add` rows) with the live files the log gives at its
/// version, naming the checkpoint and what it hides, adds or re-hashes. A checkpoint that agrees
/// is the report's `good_checkpoint` (the newest such).
pub(super) async fn check_checkpoint(
    store: &dyn ObjectStore,
    location: &str,
    version: u64,
    parts: &[(StorePath, u64)],
    live: &HashMap<String, Live>,
    report: &mut VerifyReport,
) -> Result<()> {
    let object = parts
        .iter()
        .map(|(p, _)| p.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let checkpoint = match read_checkpoint(store, location, parts).await? {
        Ok(c) => c,
        Err(problem) => {
            report.problems.push(problem);
            return Ok(());
        }
    };
    let named = &checkpoint.live;
    let mut hidden: Vec<&String> = live.keys().filter(|p| !named.contains_key(*p)).collect();
    let mut added: Vec<&String> = named.keys().filter(|p| !live.contains_key(*p)).collect();
    // A file the checkpoint names with another hash than the log's add recorded.
    let mut rehashed: Vec<&String> = named
        .iter()
        .filter(|(p, f)| live.get(*p).is_some_and(|l| l.sha256 != f.sha256))
        .map(|(p, _)| p)
        .collect();
    if hidden.is_empty() && added.is_empty() && rehashed.is_empty() {
        report.good_checkpoint = Some(SealedCheckpoint {
            version,
            sha256: checkpoint.sha256,
        });
        return Ok(());
    }
    hidden.sort();
    added.sort();
    rehashed.sort();
    let sample = |v: &[&String]| {
        v.iter()
            .take(3)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut detail = format!("at version {version} the log has {} files", live.len());
    if !hidden.is_empty() {
        detail += &format!(
            "; the checkpoint leaves out {} of them ({}), so Delta readers do not see them",
            hidden.len(),
            sample(&hidden)
        );
    }
    if !added.is_empty() {
        detail += &format!(
            "; it names {} files the log does not ({})",
            added.len(),
            sample(&added)
        );
    }
    if !rehashed.is_empty() {
        detail += &format!(
            "; it records another SHA-256 for {} ({})",
            rehashed.len(),
            sample(&rehashed)
        );
    }
    report.problems.push(Problem {
        kind: ProblemKind::RewrittenCheckpoint,
        object,
        detail,
    });
    Ok(())
}
