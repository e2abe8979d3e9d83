//! The write-ahead log: what a network source acknowledges before its events reach Parquet.
//!
//! A segment is `<dir>/wal-<first seq, 20 digits>.log`: the 8-byte magic `ALWAL\0\0\x03`, then
//! records, each one frame:
//!
//! ```text
//! offset  size
//!      0     8  sync marker F7 'W' 'A' 'L' 'S' 'Y' 'N' 9C        (starts every record)
//!      8     4  u32 LE payload length (bytes as stored, ≤ 1 GiB)
//!     12     4  u32 LE CRC-32 of the payload
//!     16     4  u32 LE CRC-32 of bytes 8..16 (the header checksum: a trusted length)
//!     20     …  payload = u64 LE seq | i64 LE received_at µs | u8 framing ('D' one document,
//!                         'L' NDJSON lines) | stuffed(u16 LE len + cluster | u16 LE len + source |
//!                         body)
//! ```
//!
//! Stuffing: after every occurrence of the marker's first 7 bytes in the variable part, the writer
//! inserts a 0x00 (the reader removes it). So the marker never occurs inside what a sender
//! controls (cluster, source, body): a request body cannot smuggle in a frame that a reader
//! scanning past damage would take for a record. The marker's first byte occurs nowhere else in
//! it, so occurrences cannot overlap and one pass of a substring search both stuffs and unstuffs.
//!
//! The body is kept exactly as it arrived (after transfer decoding), so replay decodes the same
//! bytes the sender sent and quarantine stays byte-exact.
//!
//! Reading a segment ([`parse_segment`]) distinguishes two things:
//! - A **torn tail**: an incomplete final record of the newest segment — its header is cut, or
//!   its (header-checksummed) length runs past the end of the file. That is a crash mid-append,
//!   before the fsync and so before any acknowledgement: replay cuts it silently
//!   ([`SegmentEnd::Torn`]).
//! - **Damage**: anything else that is not a valid frame — checksum mismatch, bad header,
//!   zeroed pages, garbage between records, an incomplete record at the end of a sealed segment.
//!   The reader reports the damaged byte range ([`Item::Damaged`]), scans forward from one byte
//!   past the start of the bad frame to the next sync marker whose frame verifies (header
//!   checksum, length in bounds, payload checksum, decodable payload) and resumes there. Nothing
//!   in an unverified frame is trusted, so a corrupted length can never make the reader jump
//!   over a valid record, and a marker found inside damaged bytes is only a candidate.
//!
//! Every record whose frame is intact replays exactly once: a valid frame is never skipped (the
//! reader only moves past verified frames), a duplicated copy of a frame (a misdirected write) is
//! reported as damage rather than replayed twice ([`replay`] tracks seqs), and, stuffing aside,
//! damage can only turn sender bytes into a frame by splicing bytes in or out at exactly the
//! right spot *and* matching both checksums — not something flipped bits, zeroed pages,
//! truncation or inserted garbage do.
//!
//! Older segments are still read, so an upgrade replays what an older serve left behind:
//! - the second format (magic `ALWAL\0\0\x02`) is this one without the framing byte: the framing
//!   rode on the source string as a `#lines` suffix, which replay turns back into the field;
//! - the first format (magic `ALWAL\0\0\x01`: u32 length | u32 CRC | payload, no marker, no
//!   stuffing, framing as in the second) cannot be resynchronised, so damage there reports the
//!   rest of the segment.

mod reader;
mod record;

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use reader::{
    Damage, Entry, Item, Replayed, SegmentEnd, TornTail, TornTailCut, parse_segment, replay,
};
pub use record::{BodyFraming, WalRecord};

use crate::error::{IngestError, Result};
use crate::lake::{create_dir_durable, fsync_dir};

/// The magic of segments written now (sync-marked frames with a framing byte).
const MAGIC: &[u8; 8] = b"ALWAL\0\0\x03";
/// The magic of second-format segments (framing as a `#lines` source suffix), still read.
const MAGIC_V2: &[u8; 8] = b"ALWAL\0\0\x02";
/// The magic of first-format segments (no sync marker), still read on upgrade.
const MAGIC_V1: &[u8; 8] = b"ALWAL\0\0\x01";
/// How second- and first-format segments marked an NDJSON body: a suffix on the source.
const LEGACY_LINES_SUFFIX: &str = "#lines";
/// Starts every record. Its first byte occurs once in it: no border, so no two occurrences
/// overlap and none can straddle the end of a payload and the next frame's marker.
pub const SYNC: &[u8; 8] = b"\xF7WALSYN\x9C";
/// Inserted after each occurrence of `SYNC[..7]` in a payload's variable part: not in
/// `SYNC[..7]` and not `SYNC[7]`, so stuffed bytes never contain the marker.
const STUFF: u8 = 0x00;
/// Marker, payload length, payload CRC, header CRC.
const FRAME_HEADER: usize = 8 + 4 + 4 + 4;
/// seq, received_at and framing: server-generated, stored unstuffed.
const FIXED: usize = 8 + 8 + 1;
/// seq and received_at: the fixed part of second- and first-format payloads.
const FIXED_V2: usize = 8 + 8;
/// First-format header: payload length, payload CRC.
const V1_HEADER: usize = 8;
/// A record larger than this is corruption, not data (bodies are capped far below it).
const MAX_RECORD: usize = 1 << 30;

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
mod tests;
