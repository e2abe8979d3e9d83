//! What an object-storage source has read: per object, its etag and size when read, the byte
//! offset read up to, and a fingerprint of the bytes just before that offset.
//!
//! The fingerprint is how a grown object is told from a rewritten one. Azure append blobs (AKS)
//! get a new etag with every append, so a new etag alone says nothing; if the bytes before the
//! offset are still the bytes that were read, the object grew and reading resumes at the
//! offset. If they are not (or the object shrank), it was rewritten: that is reported and the
//! object is read again from the start (the lake's dedup key drops what it already holds).
//!
//! Stored as one JSON document in the lake's `_state/sources/` (in the bucket for an
//! object-store lake) and replaced whole, only after the lake commit that holds the events
//! read; a crash before that re-reads the uncommitted part and dedup drops repeats.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{IngestError, Result};
use crate::lake::Lake;

/// Bytes before the read offset whose hash is kept.
pub const TAIL_BYTES: u64 = 256;

/// One object's read position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMark {
    /// The etag when it was read (`None` for stores that give none).
    pub etag: Option<String>,
    /// Its size then.
    pub size: u64,
    /// Stored bytes read and committed (less than `size` while an incomplete last record waits
    /// for the rest of it).
    pub offset: u64,
    /// SHA-256 (hex) of the `min(offset, TAIL_BYTES)` stored bytes before `offset`.
    pub tail_sha256: String,
    /// The object's last-modified time when read (RFC 3339), for the lag metric.
    pub modified: String,
}

/// Every object of one source read so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The source's URL, so a document is never applied to another source.
    pub source: String,
    /// Object key (within the bucket) → its mark.
    pub objects: BTreeMap<String, ObjectMark>,
}

impl Checkpoint {
    /// The checkpoint of `source` in `lake`, empty when it has none yet.
    pub fn load(lake: &Lake, name: &str, source: &str) -> Result<Checkpoint> {
        let Some(bytes) = lake.read_state(name)? else {
            return Ok(Checkpoint {
                source: source.to_owned(),
                objects: BTreeMap::new(),
            });
        };
        let cp: Checkpoint =
            serde_json::from_slice(&bytes).map_err(|e| IngestError::SourceCheckpointDamaged {
                checkpoint: lake.describe(&lake.state_dir().join(name)),
                source: e,
            })?;
        if cp.source != source {
            return Err(IngestError::SourceCheckpointMismatch {
                checkpoint: lake.describe(&lake.state_dir().join(name)),
                belongs: cp.source,
                source_url: source.to_string(),
            });
        }
        Ok(cp)
    }

    /// Replaces the stored checkpoint with this one.
    pub fn store(&self, lake: &Lake, name: &str) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| IngestError::Serialize {
            what: "the source checkpoint",
            source: e,
        })?;
        lake.write_state(name, &bytes)
    }
}

/// The file name (under `_state/`) of a source's checkpoint: readable, and unique per URL.
pub fn state_name(url: &str) -> String {
    let readable: String = url
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let readable: String = readable.chars().take(80).collect();
    let hash = xxhash_rust::xxh3::xxh3_64(url.as_bytes());
    format!("sources/{readable}-{hash:016x}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_belongs_to_one_source() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let name = state_name("s3://exports/eks/");
        assert!(name.starts_with("sources/s3-exports-eks-"), "{name}");
        assert_ne!(name, state_name("s3://exports/eks2/"));
        let empty = Checkpoint::load(&lake, &name, "s3://exports/eks/").unwrap();
        assert!(empty.objects.is_empty());
        let mut cp = empty.clone();
        cp.objects.insert(
            "a/b.json".into(),
            ObjectMark {
                etag: Some("\"e1\"".into()),
                size: 10,
                offset: 8,
                tail_sha256: "00".into(),
                modified: "2026-12-03T00:00:00Z".into(),
            },
        );
        cp.store(&lake, &name).unwrap();
        assert_eq!(
            Checkpoint::load(&lake, &name, "s3://exports/eks/").unwrap(),
            cp
        );
        let err = Checkpoint::load(&lake, &name, "s3://other/").unwrap_err();
        assert!(
            err.to_string().contains("belongs to s3://exports/eks/"),
            "{err}"
        );
        std::fs::write(lake.state_dir().join(&name), b"{not json").unwrap();
        let err = Checkpoint::load(&lake, &name, "s3://exports/eks/").unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
