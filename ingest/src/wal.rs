//! The write-ahead log: what a network source acknowledges before its events reach Parquet.
//!
//! A segment is `<dir>/wal-<first seq, 20 digits>.log`: an 8-byte magic, then records
//!
//! ```text
//! u32 LE payload length | u32 LE CRC-32 of the payload | payload
//! payload = u64 LE seq | i64 LE received_at µs | u16 LE len + cluster | u16 LE len + source | body
//! ```
//!
//! The body is kept exactly as it arrived (after transfer decoding), so replay decodes the same
//! bytes the sender sent and quarantine stays byte-exact. A torn or corrupt record can only be the
//! tail of the newest segment (a crash mid-append, before its fsync — so before any acknowledgement
//! of it): replay stops there and truncates it. Corruption anywhere else is an error that names the
//! segment and offset rather than a silent loss.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{IngestError, Result};
use crate::lake::{create_dir_durable, fsync_dir};

const MAGIC: &[u8; 8] = b"ALWAL\0\0\x01";
const HEADER: usize = 8;
/// A record larger than this is corruption, not data (bodies are capped far below it).
const MAX_RECORD: usize = 1 << 30;

/// One acknowledged request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    pub seq: u64,
    pub received_at: i64,
    pub cluster: Arc<str>,
    /// Where the body came from (`webhook:<request id>`), for quarantine positions.
    pub source: Arc<str>,
    pub body: Vec<u8>,
}

impl WalRecord {
    /// Bytes this record takes in a segment.
    pub fn encoded_len(&self) -> usize {
        HEADER + 8 + 8 + 2 + self.cluster.len() + 2 + self.source.len() + self.body.len()
    }

    /// Appends the framed record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; HEADER]);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.received_at.to_le_bytes());
        for s in [&self.cluster, &self.source] {
            // Cluster names are ≤ 63 bytes and sources are ours; clamp defensively.
            let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(b.len() as u16).to_le_bytes());
            out.extend_from_slice(b);
        }
        out.extend_from_slice(&self.body);
        let payload_len = (out.len() - start - HEADER) as u32;
        let crc = crc32fast::hash(&out[start + HEADER..]);
        out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(payload: &[u8]) -> Option<WalRecord> {
        let mut p = payload;
        let seq = u64::from_le_bytes(take(&mut p, 8)?.try_into().ok()?);
        let received_at = i64::from_le_bytes(take(&mut p, 8)?.try_into().ok()?);
        let string = |p: &mut &[u8]| -> Option<Arc<str>> {
            let len = u16::from_le_bytes(take(p, 2)?.try_into().ok()?) as usize;
            std::str::from_utf8(take(p, len)?).ok().map(Arc::from)
        };
        let cluster = string(&mut p)?;
        let source = string(&mut p)?;
        Some(WalRecord {
            seq,
            received_at,
            cluster,
            source,
            body: p.to_vec(),
        })
    }
}

fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if p.len() < n {
        return None;
    }
    let (head, rest) = p.split_at(n);
    *p = rest;
    Some(head)
}

/// `wal-<first seq>.log`, zero-padded so names sort in seq order.
pub fn segment_name(first_seq: u64) -> String {
    format!("wal-{first_seq:020}.log")
}

/// The WAL's segments, oldest first.
pub fn list_segments(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(IngestError::lake_io(dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(IngestError::lake_io(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("wal-") && name.ends_with(".log") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// How a segment read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Every byte was a whole, valid record.
    Clean,
    /// Bytes from `offset` on are a torn or corrupt record.
    Torn { offset: u64, reason: String },
}

/// Reads a segment's records, calling `each` for every valid one, up to the first torn record.
pub fn read_segment(
    path: &Path,
    mut each: impl FnMut(WalRecord) -> Result<()>,
) -> Result<SegmentEnd> {
    let file = File::open(path).map_err(IngestError::lake_io(path))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    match read_full(&mut r, &mut magic).map_err(IngestError::lake_io(path))? {
        0 => {
            return Ok(SegmentEnd::Torn {
                offset: 0,
                reason: "empty segment".into(),
            });
        }
        8 if &magic == MAGIC => {}
        _ => {
            return Ok(SegmentEnd::Torn {
                offset: 0,
                reason: "bad segment header".into(),
            });
        }
    }
    let mut offset = 8u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; HEADER];
        let n = read_full(&mut r, &mut header).map_err(IngestError::lake_io(path))?;
        if n == 0 {
            return Ok(SegmentEnd::Clean);
        }
        let torn = |reason: &str| SegmentEnd::Torn {
            offset,
            reason: reason.into(),
        };
        if n < HEADER {
            return Ok(torn("truncated record header"));
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            return Ok(torn("record length out of range"));
        }
        payload.resize(len, 0);
        if read_full(&mut r, &mut payload).map_err(IngestError::lake_io(path))? < len {
            return Ok(torn("truncated record"));
        }
        if crc32fast::hash(&payload) != crc {
            return Ok(torn("checksum mismatch"));
        }
        let Some(record) = WalRecord::decode(&payload) else {
            return Ok(torn("malformed record"));
        };
        each(record)?;
        offset += (HEADER + len) as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What to do with a torn tail of the newest segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornTail {
    /// At start, nothing is appending: cut it so appends continue from a clean end.
    Truncate,
    /// While the WAL thread may be appending (recovery): stop there, touch nothing.
    Stop,
}

/// Replays every segment in `dir`, oldest first. A torn tail of the newest segment was never
/// acknowledged (acks follow the fsync); a torn record anywhere else is an error. Returns the
/// highest seq.
pub fn replay(
    dir: &Path,
    tail: TornTail,
    mut each: impl FnMut(WalRecord) -> Result<()>,
) -> Result<Option<u64>> {
    let segments = list_segments(dir)?;
    let mut last = None;
    for (i, path) in segments.iter().enumerate() {
        let end = read_segment(path, |rec| {
            last = Some(rec.seq);
            each(rec)
        })?;
        if let SegmentEnd::Torn { offset, reason } = end {
            if i + 1 != segments.len() {
                return Err(IngestError::WalCorrupt {
                    path: path.clone(),
                    offset,
                    reason,
                });
            }
            if tail == TornTail::Stop {
                break;
            }
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(IngestError::lake_io(path))?;
            f.set_len(offset).map_err(IngestError::lake_io(path))?;
            f.sync_all().map_err(IngestError::lake_io(path))?;
        }
    }
    Ok(last)
}

/// The segment being appended to.
pub struct Segment {
    pub path: PathBuf,
    file: File,
    pub first_seq: u64,
    /// Highest seq written to it (0 = none yet).
    pub last_seq: u64,
    pub bytes: u64,
}

impl Segment {
    /// Creates `wal-<first_seq>.log` durably (file and directory entry). The WAL holds request
    /// bodies as received — secret values and tokens not yet redacted — so the segment is
    /// readable by its owner only (0600) and so is the directory (0700).
    pub fn create(dir: &Path, first_seq: u64) -> Result<Segment> {
        create_private_dir(dir)?;
        let path = dir.join(segment_name(first_seq));
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(IngestError::lake_io(&path))?;
        file.write_all(MAGIC).map_err(IngestError::lake_io(&path))?;
        file.sync_all().map_err(IngestError::lake_io(&path))?;
        fsync_dir(dir)?;
        Ok(Segment {
            path,
            file,
            first_seq,
            last_seq: 0,
            bytes: MAGIC.len() as u64,
        })
    }

    /// Appends encoded records and makes them durable: one write, one fdatasync for the group.
    pub fn append_durable(&mut self, encoded: &[u8], last_seq: u64) -> Result<()> {
        self.file
            .write_all(encoded)
            .map_err(IngestError::lake_io(&self.path))?;
        self.file
            .sync_data()
            .map_err(IngestError::lake_io(&self.path))?;
        self.bytes += encoded.len() as u64;
        self.last_seq = last_seq;
        Ok(())
    }
}

/// Creates the WAL directory (durably) and makes it owner-only: 0700, also when it already
/// existed with wider permissions (a WAL written by an older version).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    create_dir_durable(dir)?;
    let mode = fs::metadata(dir)
        .map_err(IngestError::lake_io(dir))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(IngestError::lake_io(dir))?;
    }
    Ok(())
}

/// Removes a segment whose records are all in committed Parquet files.
pub fn remove_segment(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(IngestError::lake_io(path)(e)),
    }
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, body: &str) -> WalRecord {
        WalRecord {
            seq,
            received_at: 1_700_000_000_000_000 + seq as i64,
            cluster: Arc::from("prod"),
            source: Arc::from(format!("webhook:{seq}")),
            body: body.as_bytes().to_vec(),
        }
    }

    fn collect(dir: &Path) -> Result<Vec<WalRecord>> {
        let mut out = Vec::new();
        replay(dir, TornTail::Truncate, |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn records_round_trip_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 1).unwrap();
        let mut buf = Vec::new();
        rec(1, "{\"a\":1}").encode(&mut buf);
        rec(2, "").encode(&mut buf);
        assert_eq!(
            buf.len(),
            rec(1, "{\"a\":1}").encoded_len() + rec(2, "").encoded_len()
        );
        seg.append_durable(&buf, 2).unwrap();
        let mut seg2 = Segment::create(dir.path(), 3).unwrap();
        buf.clear();
        rec(3, "x\ny").encode(&mut buf);
        seg2.append_durable(&buf, 3).unwrap();
        let got = collect(dir.path()).unwrap();
        assert_eq!(got, vec![rec(1, "{\"a\":1}"), rec(2, ""), rec(3, "x\ny")]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 1).unwrap();
        let mut buf = Vec::new();
        rec(1, "first").encode(&mut buf);
        let whole = buf.len();
        rec(2, "second, torn by a crash").encode(&mut buf);
        seg.append_durable(&buf[..whole + 11], 2).unwrap();
        drop(seg);
        assert_eq!(collect(dir.path()).unwrap(), vec![rec(1, "first")]);
        // The tail was truncated: the file now ends after record 1.
        let len = fs::metadata(dir.path().join(segment_name(1)))
            .unwrap()
            .len();
        assert_eq!(len as usize, MAGIC.len() + whole);
    }

    #[test]
    fn segments_and_their_directory_are_owner_only() {
        let root = tempfile::tempdir().unwrap();
        // An existing directory with the default 0755 is tightened; a new one is created 0700.
        let old = root.path().join("old-wal");
        fs::create_dir(&old).unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).unwrap();
        for dir in [old, root.path().join("state").join("wal")] {
            let seg = Segment::create(&dir, 1).unwrap();
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&seg.path), 0o600, "{}", seg.path.display());
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
    }

    #[test]
    fn corruption_before_the_newest_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 1).unwrap();
        let mut buf = Vec::new();
        rec(1, "first").encode(&mut buf);
        let last = buf.len() - 1;
        buf[last] ^= 0xff; // flip a body byte: checksum mismatch
        seg.append_durable(&buf, 1).unwrap();
        Segment::create(dir.path(), 2).unwrap();
        let err = collect(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains("wal-"),
            "{err}"
        );
    }
}
