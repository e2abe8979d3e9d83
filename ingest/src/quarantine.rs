//! Quarantine: input that could not be decoded, kept with its reason and position — and with its
//! secret values masked.
//!
//! Records are JSON lines in `<lake>/_quarantine/date=YYYY-MM-DD/quarantine-<ulid>.jsonl`:
//!
//! ```json
//! {"quarantined_at":"2026-11-22T07:00:00.000000Z","cluster":"prod","reason":"missing auditID",
//!  "position":{"source":"/var/log/audit.log","line":17,"byte_offset":20321},"raw":"{\"kind\":\"Event\"}"}
//! ```
//!
//! Every reject passes through the text masker ([`crate::mask`]) here, whichever path it came
//! from (files, webhook, Kafka, WAL replay): a rejected input is by definition one the decoder
//! could not read, so whether it holds a secret cannot be decided from its (missing or broken)
//! `objectRef` — a truncated `secrets` event is exactly that. The masker replaces the values of
//! secret-bearing keys (`data`, `stringData`, `value`, `token`, `…password`, `…secret`, the
//! last-applied annotation, …) at any JSON-in-string depth, also when cut off. When it changed
//! anything the record says `"masked": true` and `raw` holds the masked text; otherwise `raw` holds
//! the rejected bytes exactly (JSON string escaping is reversible), or `raw_base64` when they are not
//! UTF-8. A gzip or base64-gzip payload is decompressed as far as it goes; if that text needed
//! masking, the record holds it masked (`"masked": true, "decompressed": true`) instead of the
//! compressed bytes. A compressed payload is inspected up to [`INSPECT_BYTES`] of expansion,
//! never more (a gzip bomb must cost nothing); one that expands further cannot be checked for
//! secrets, so its bytes are withheld (`"withheld"` says why, `raw_len` how many arrived) rather
//! than stored compressed. A line too long to hold in memory is streamed through the masker to a
//! sidecar file named by `raw_file` (`raw_len` is the input's length).
//!
//! On an object-store lake the files are written in the process's staging directory and
//! uploaded to `<lake>/_quarantine/…` at each sync (before the input is acknowledged).

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use base64::Engine;
use serde::Serialize;

use crate::decode::envelope::{Partial, decompress_prefix, is_compressed};
use crate::decode::{Reject, SourcePosition};
use crate::error::{IngestError, Result};
use crate::lake::{Lake, create_dir_durable, fsync_dir};
use crate::mask::{MaskingWriter, mask_text};

#[derive(Serialize)]
struct Record<'a> {
    quarantined_at: String,
    cluster: &'a str,
    reason: &'a str,
    position: &'a SourcePosition,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_len: Option<u64>,
    /// Secret-looking values were masked: the raw text is not the input byte for byte.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    masked: bool,
    /// `raw` is the decompressed (then masked) content of a compressed payload.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    decompressed: bool,
    /// Why the payload's bytes are not in the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    withheld: Option<&'static str>,
}

/// How far quarantine expands a compressed reject to look for secrets in it.
pub const INSPECT_BYTES: u64 = 4 << 20;

const WITHHELD_UNINSPECTABLE: &str = "a compressed payload that expands past 4 MiB cannot be checked for secret values: its bytes are not stored (raw_len says how many arrived)";

/// A reject's bytes as they are stored.
struct Stored<'a> {
    bytes: Cow<'a, [u8]>,
    masked: bool,
    decompressed: bool,
    withheld: Option<&'static str>,
}

/// Masks a reject's bytes (see the module docs).
fn mask_reject(raw: &[u8]) -> Stored<'_> {
    mask_reject_at(raw, 0)
}

fn mask_reject_at(raw: &[u8], depth: u32) -> Stored<'_> {
    let start = raw
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(raw.len());
    // Compressed twice is the deepest the decoder looks; one more level costs nothing.
    if depth < 3 && is_compressed(&raw[start..]) {
        let (inner, partial) = decompress_prefix(&raw[start..], INSPECT_BYTES);
        let inner = mask_reject_at(&inner, depth + 1);
        if inner.withheld.is_some() || partial == Some(Partial::OverCap) {
            return Stored {
                bytes: Cow::Borrowed(&[]),
                masked: false,
                decompressed: false,
                withheld: Some(WITHHELD_UNINSPECTABLE),
            };
        }
        if inner.masked {
            return Stored {
                bytes: Cow::Owned(inner.bytes.into_owned()),
                masked: true,
                decompressed: true,
                withheld: None,
            };
        }
    }
    match mask_text(raw) {
        Some(masked) => Stored {
            bytes: Cow::Owned(masked),
            masked: true,
            decompressed: false,
            withheld: None,
        },
        None => Stored {
            bytes: Cow::Borrowed(raw),
            masked: false,
            decompressed: false,
            withheld: None,
        },
    }
}

/// An object-store lake's quarantine file is uploaded whole at each sync; past this size the
/// next record starts a new file.
const ROLL_BYTES: u64 = 8 << 20;

/// Appends quarantine records; [`sync`](Self::sync) makes them durable (call it before
/// acknowledging the input they came from).
pub struct QuarantineWriter {
    lake: Lake,
    current: Option<(PathBuf, BufWriter<File>)>,
    dirty: bool,
    records: u64,
}

impl QuarantineWriter {
    pub fn new(lake: &Lake) -> Self {
        QuarantineWriter {
            lake: lake.clone(),
            current: None,
            dirty: false,
            records: 0,
        }
    }

    /// Records written by this writer.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The file records go to (created on first use).
    pub fn path(&self) -> Option<&PathBuf> {
        self.current.as_ref().map(|(p, _)| p)
    }

    fn file(&mut self) -> Result<&mut BufWriter<File>> {
        if self.current.is_none() {
            let dir = self.day_dir();
            create_dir_durable(&dir)?;
            let path = dir.join(format!("quarantine-{}.jsonl", ulid::Ulid::generate()));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(IngestError::lake_io(&path))?;
            fsync_dir(&dir)?;
            self.current = Some((path, BufWriter::new(file)));
        }
        Ok(&mut self.current.as_mut().expect("set above").1)
    }

    fn day_dir(&self) -> PathBuf {
        let today = chrono::Utc::now().format("%Y-%m-%d");
        self.lake.quarantine_dir().join(format!("date={today}"))
    }

    pub fn write(&mut self, reject: &Reject) -> Result<()> {
        let stored = mask_reject(&reject.raw);
        let (raw, raw_base64) = match std::str::from_utf8(&stored.bytes) {
            _ if stored.withheld.is_some() => (None, None),
            Ok(s) => (Some(s), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&stored.bytes)),
            ),
        };
        let record = Record {
            quarantined_at: now_rfc3339(),
            cluster: &reject.cluster,
            reason: &reject.reason,
            position: &reject.position,
            raw,
            raw_base64,
            raw_file: None,
            raw_len: stored.withheld.map(|_| reject.raw.len() as u64),
            masked: stored.masked,
            decompressed: stored.decompressed,
            withheld: stored.withheld,
        };
        self.append(&record)
    }

    /// Quarantines input too large to hold in memory: `copy` streams it into a sidecar file.
    pub fn write_streamed(
        &mut self,
        cluster: &str,
        reason: &str,
        position: &SourcePosition,
        copy: impl FnOnce(&mut dyn Write) -> std::io::Result<u64>,
    ) -> Result<()> {
        let dir = self.day_dir();
        create_dir_durable(&dir)?;
        let name = format!("raw-{}.bin", ulid::Ulid::generate());
        let path = dir.join(&name);
        let file = BufWriter::new(File::create(&path).map_err(IngestError::lake_io(&path))?);
        let mut masking = MaskingWriter::new(file);
        let len = copy(&mut masking).map_err(IngestError::lake_io(&path))?;
        let (file, masked) = masking.finish().map_err(IngestError::lake_io(&path))?;
        let file = file.into_inner().map_err(|e| IngestError::LakeIo {
            path: path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(IngestError::lake_io(&path))?;
        self.lake.mirror(&path)?;
        let record = Record {
            quarantined_at: now_rfc3339(),
            cluster,
            reason,
            position,
            raw: None,
            raw_base64: None,
            raw_file: Some(&name),
            raw_len: Some(len),
            masked,
            decompressed: false,
            withheld: None,
        };
        self.append(&record)
    }

    fn append(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(|e| IngestError::Serialize {
            what: "a quarantine record",
            source: e,
        })?;
        line.push(b'\n');
        let file = self.file()?;
        file.write_all(&line).map_err(|e| IngestError::LakeIo {
            path: PathBuf::from("quarantine"),
            source: e,
        })?;
        self.dirty = true;
        self.records += 1;
        Ok(())
    }

    /// Flushes and fsyncs what was written since the last sync.
    pub fn sync(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some((path, file)) = &mut self.current {
            file.flush().map_err(IngestError::lake_io(path.clone()))?;
            file.get_ref()
                .sync_all()
                .map_err(IngestError::lake_io(path.clone()))?;
            // On object storage the file is re-uploaded whole at each sync, so start a new one
            // once it is large: each upload stays bounded.
            self.lake.mirror(path)?;
            let rolled = file.get_ref().metadata().map(|m| m.len()).unwrap_or(0) >= ROLL_BYTES;
            if rolled && self.lake.is_remote() {
                self.current = None;
            }
        }
        self.dirty = false;
        Ok(())
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn reject(raw: &[u8]) -> Reject {
        Reject {
            reason: "not a valid audit event: expected value at line 1 column 1".into(),
            position: SourcePosition {
                source: Arc::from("audit.log"),
                line: Some(3),
                byte_offset: Some(120),
                item: None,
            },
            raw: raw.to_vec(),
            cluster: Arc::from("prod"),
        }
    }

    #[test]
    fn records_round_trip_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let mut q = QuarantineWriter::new(&lake);
        let utf8 = "{\"kind\": 0}\t\u{2603} \"quoted\"\r".as_bytes();
        let binary = [0xff, 0xfe, b'{', 0x00];
        q.write(&reject(utf8)).unwrap();
        q.write(&reject(&binary)).unwrap();
        q.sync().unwrap();
        let text = std::fs::read_to_string(q.path().unwrap()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["raw"].as_str().unwrap().as_bytes(), utf8);
        assert_eq!(lines[0]["position"]["line"], 3);
        assert_eq!(lines[0]["cluster"], "prod");
        assert!(
            lines[0]["reason"]
                .as_str()
                .unwrap()
                .contains("expected value")
        );
        let b64 = lines[1]["raw_base64"].as_str().unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            binary
        );
    }
}
