//! The write-ahead log: what a network source acknowledges before its events reach Parquet.
//!
//! A segment is `<dir>/wal-<first seq, 20 digits>.log`: the 8-byte magic `ALWAL\0\0\x02`, then
//! records, each one frame:
//!
//! ```text
//! offset  size
//!      0     8  sync marker F7 'W' 'A' 'L' 'S' 'Y' 'N' 9C        (starts every record)
//!      8     4  u32 LE payload length (bytes as stored, ≤ 1 GiB)
//!     12     4  u32 LE CRC-32 of the payload
//!     16     4  u32 LE CRC-32 of bytes 8..16 (the header checksum: a trusted length)
//!     20     …  payload = u64 LE seq | i64 LE received_at µs | stuffed(u16 LE len + cluster |
//!                         u16 LE len + source | body)
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
//! Segments of the first format (magic `ALWAL\0\0\x01`: u32 length | u32 CRC | payload, no
//! marker, no stuffing) are still read, so an upgrade replays what an older serve left behind;
//! they cannot be resynchronised, so damage there reports the rest of the segment.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memchr::memmem;

use crate::error::{IngestError, Result};
use crate::lake::{create_dir_durable, fsync_dir};

/// The magic of segments written now (sync-marked frames).
const MAGIC: &[u8; 8] = b"ALWAL\0\0\x02";
/// The magic of first-format segments (no sync marker), still read on upgrade.
const MAGIC_V1: &[u8; 8] = b"ALWAL\0\0\x01";
/// Starts every record. Its first byte occurs once in it: no border, so no two occurrences
/// overlap and none can straddle the end of a payload and the next frame's marker.
pub const SYNC: &[u8; 8] = b"\xF7WALSYN\x9C";
/// Inserted after each occurrence of `SYNC[..7]` in a payload's variable part: not in
/// `SYNC[..7]` and not `SYNC[7]`, so stuffed bytes never contain the marker.
const STUFF: u8 = 0x00;
/// Marker, payload length, payload CRC, header CRC.
const FRAME_HEADER: usize = 8 + 4 + 4 + 4;
/// seq and received_at: server-generated, stored unstuffed.
const FIXED: usize = 8 + 8;
/// First-format header: payload length, payload CRC.
const V1_HEADER: usize = 8;
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
    /// Bytes this record takes in a segment (exact, stuffing included: the WAL's byte accounting
    /// adds this at submit and subtracts what was written).
    pub fn encoded_len(&self) -> usize {
        let head = self.variable_head();
        // Occurrences inside the body, plus those that start in the head (possibly running into
        // the body's first bytes); none overlap, so none is counted twice.
        let mut joint = head.clone();
        joint.extend_from_slice(&self.body[..self.body.len().min(SYNC.len() - 2)]);
        let stuffed = memmem::find_iter(&joint, &SYNC[..7])
            .filter(|&i| i < head.len())
            .count()
            + memmem::find_iter(&self.body, &SYNC[..7]).count();
        FRAME_HEADER + FIXED + head.len() + self.body.len() + stuffed
    }

    /// `u16 len + cluster | u16 len + source`: what precedes the body in the variable part.
    fn variable_head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.cluster.len() + self.source.len());
        for s in [&self.cluster, &self.source] {
            // Cluster names are ≤ 63 bytes and sources are ours; clamp defensively.
            let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(b.len() as u16).to_le_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    /// Appends the framed record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(SYNC);
        out.extend_from_slice(&[0u8; FRAME_HEADER - 8]);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.received_at.to_le_bytes());
        let variable = out.len();
        out.extend_from_slice(&self.variable_head());
        out.extend_from_slice(&self.body);
        let hits: Vec<usize> = memmem::find_iter(&out[variable..], &SYNC[..7]).collect();
        if !hits.is_empty() {
            let raw = out.split_off(variable);
            let mut from = 0;
            for hit in hits {
                out.extend_from_slice(&raw[from..hit + 7]);
                out.push(STUFF);
                from = hit + 7;
            }
            out.extend_from_slice(&raw[from..]);
        }
        let payload = start + FRAME_HEADER;
        let len = (out.len() - payload) as u32;
        let crc = crc32fast::hash(&out[payload..]);
        out[start + 8..start + 12].copy_from_slice(&len.to_le_bytes());
        out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
        let hcrc = crc32fast::hash(&out[start + 8..start + 16]);
        out[start + 16..start + 20].copy_from_slice(&hcrc.to_le_bytes());
    }

    /// A verified payload of the current format.
    fn decode(payload: &[u8]) -> Option<WalRecord> {
        let (fixed, stuffed) = (payload.get(..FIXED)?, &payload[FIXED..]);
        let mut variable = Vec::with_capacity(stuffed.len());
        let mut from = 0;
        for hit in memmem::find_iter(stuffed, &SYNC[..7]) {
            if stuffed.get(hit + 7) != Some(&STUFF) {
                return None;
            }
            variable.extend_from_slice(&stuffed[from..hit + 7]);
            from = hit + 8;
        }
        variable.extend_from_slice(&stuffed[from..]);
        let mut unstuffed = fixed.to_vec();
        unstuffed.extend_from_slice(&variable);
        Self::decode_plain(&unstuffed)
    }

    /// `seq | received_at | cluster | source | body`, unstuffed (the first format's payload).
    fn decode_plain(payload: &[u8]) -> Option<WalRecord> {
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

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
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

/// What a segment holds, in file order.
#[derive(Debug)]
pub enum Item<'a> {
    /// A verified record and the bytes of its frame.
    Record {
        offset: u64,
        frame: &'a [u8],
        record: WalRecord,
    },
    /// Bytes that are not a valid record, skipped.
    Damaged {
        offset: u64,
        bytes: &'a [u8],
        reason: &'static str,
    },
}

/// How a segment read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// The last item ends at the end of the file.
    Clean,
    /// Bytes from `offset` on are an incomplete final record (its header is cut or its length
    /// runs past the end of the file).
    Torn { offset: u64, reason: &'static str },
}

/// Parses a whole segment's bytes, calling `each` for every record and every damaged range, in
/// order. Never trusts a length before its checksum, never allocates more than the input's size,
/// and always advances: it ends after at most one step per input byte.
pub fn parse_segment<'a>(
    data: &'a [u8],
    mut each: impl FnMut(Item<'a>) -> Result<()>,
) -> Result<SegmentEnd> {
    match data.get(..MAGIC.len()) {
        Some(m) if m == MAGIC => parse_frames(data, MAGIC.len(), None, &mut each),
        Some(m) if m == MAGIC_V1 => parse_v1(data, &mut each),
        // Empty or cut inside the magic: a crash while creating it, before any append.
        None if MAGIC.starts_with(data) || MAGIC_V1.starts_with(data) => Ok(SegmentEnd::Torn {
            offset: 0,
            reason: "truncated segment header",
        }),
        // A damaged header (say, a zeroed first page): the records after it still carry markers.
        _ => parse_frames(data, 0, Some((0, "bad segment header")), &mut each),
    }
}

/// One frame at a position.
enum Frame {
    /// A verified record and where the next frame starts.
    Record(WalRecord, usize),
    /// The header is cut, or the verified length runs past the end of the data.
    Incomplete(&'static str),
    Bad(&'static str),
}

fn frame_at(data: &[u8], at: usize) -> Frame {
    let rest = &data[at..];
    let m = rest.len().min(SYNC.len());
    if rest[..m] != SYNC[..m] {
        return Frame::Bad("missing sync marker");
    }
    if rest.len() < FRAME_HEADER {
        return Frame::Incomplete("truncated record header");
    }
    let (len, crc, hcrc) = (u32_at(rest, 8) as usize, u32_at(rest, 12), u32_at(rest, 16));
    if crc32fast::hash(&rest[8..16]) != hcrc {
        return Frame::Bad("header checksum mismatch");
    }
    if !(FIXED..=MAX_RECORD).contains(&len) {
        return Frame::Bad("record length out of range");
    }
    let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Frame::Incomplete("truncated record");
    };
    if crc32fast::hash(payload) != crc {
        return Frame::Bad("checksum mismatch");
    }
    match WalRecord::decode(payload) {
        Some(record) => Frame::Record(record, at + FRAME_HEADER + len),
        None => Frame::Bad("malformed record"),
    }
}

/// Reads frames from `pos`; `damage` is the start and reason of a damaged range in progress.
fn parse_frames<'a>(
    data: &'a [u8],
    mut pos: usize,
    mut damage: Option<(usize, &'static str)>,
    each: &mut impl FnMut(Item<'a>) -> Result<()>,
) -> Result<SegmentEnd> {
    // Reports the damaged range in progress, if any, as ending at `end`.
    fn close<'a>(
        data: &'a [u8],
        damage: &mut Option<(usize, &'static str)>,
        end: usize,
        each: &mut impl FnMut(Item<'a>) -> Result<()>,
    ) -> Result<()> {
        match damage.take() {
            // A damaged header right before a valid frame skips nothing.
            Some((start, _)) if start == end => Ok(()),
            Some((start, reason)) => each(Item::Damaged {
                offset: start as u64,
                bytes: &data[start..end],
                reason,
            }),
            None => Ok(()),
        }
    }
    loop {
        let at = match damage {
            None if pos == data.len() => return Ok(SegmentEnd::Clean),
            None => pos,
            // Scanning: the next marker is only a candidate until its frame verifies.
            Some(_) => match memmem::find(&data[pos..], SYNC) {
                Some(i) => pos + i,
                None => {
                    // A record cut inside its marker can still be the torn tail.
                    let tail = (pos.max(data.len().saturating_sub(SYNC.len() - 1))..data.len())
                        .find(|&i| SYNC.starts_with(&data[i..]));
                    let end = tail.unwrap_or(data.len());
                    close(data, &mut damage, end, each)?;
                    return Ok(match tail {
                        Some(offset) => SegmentEnd::Torn {
                            offset: offset as u64,
                            reason: "truncated record header",
                        },
                        None => SegmentEnd::Clean,
                    });
                }
            },
        };
        match frame_at(data, at) {
            Frame::Record(record, next) => {
                close(data, &mut damage, at, each)?;
                each(Item::Record {
                    offset: at as u64,
                    frame: &data[at..next],
                    record,
                })?;
                pos = next;
            }
            // Only a final record is a torn tail: a header that verifies but whose length runs
            // over valid records after it (a misplaced copy of a header, say) is damage.
            Frame::Incomplete(_) if valid_frame_after(data, at + 1) => {
                damage.get_or_insert((at, "record length runs over later records"));
                pos = at + 1;
            }
            Frame::Incomplete(reason) => {
                close(data, &mut damage, at, each)?;
                return Ok(SegmentEnd::Torn {
                    offset: at as u64,
                    reason,
                });
            }
            Frame::Bad(reason) => {
                damage.get_or_insert((at, reason));
                // Resume one byte on, not at the end its unverified length claims.
                pos = at + 1;
            }
        }
    }
}

/// Whether a verified frame starts anywhere from `from` on.
fn valid_frame_after(data: &[u8], mut from: usize) -> bool {
    while let Some(i) = memmem::find(&data[from.min(data.len())..], SYNC) {
        let at = from + i;
        if let Frame::Record(..) = frame_at(data, at) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// A first-format segment: no marker to resynchronise on, so damage covers the rest of it.
fn parse_v1<'a>(
    data: &'a [u8],
    each: &mut impl FnMut(Item<'a>) -> Result<()>,
) -> Result<SegmentEnd> {
    let mut pos = MAGIC_V1.len();
    loop {
        let rest = &data[pos..];
        if rest.is_empty() {
            return Ok(SegmentEnd::Clean);
        }
        let torn = |reason| {
            Ok(SegmentEnd::Torn {
                offset: pos as u64,
                reason,
            })
        };
        if rest.len() < V1_HEADER {
            return torn("truncated record header");
        }
        let (len, crc) = (u32_at(rest, 0) as usize, u32_at(rest, 4));
        let bad = if len > MAX_RECORD {
            "record length out of range"
        } else {
            let Some(payload) = rest.get(V1_HEADER..V1_HEADER + len) else {
                return torn("truncated record");
            };
            if crc32fast::hash(payload) != crc {
                "checksum mismatch"
            } else if let Some(record) = WalRecord::decode_plain(payload) {
                let next = pos + V1_HEADER + len;
                each(Item::Record {
                    offset: pos as u64,
                    frame: &data[pos..next],
                    record,
                })?;
                pos = next;
                continue;
            } else {
                "malformed record"
            }
        };
        each(Item::Damaged {
            offset: pos as u64,
            bytes: rest,
            reason: bad,
        })?;
        return Ok(SegmentEnd::Clean);
    }
}

/// A damaged range found by [`replay`].
#[derive(Debug)]
pub struct Damage<'a> {
    pub segment: &'a Path,
    pub offset: u64,
    pub bytes: &'a [u8],
    pub reason: &'static str,
}

/// What [`replay`] hands over, in WAL order.
#[derive(Debug)]
pub enum Entry<'a> {
    Record(WalRecord),
    Damaged(Damage<'a>),
}

/// The incomplete final record of the newest segment, cut (or left alone) by [`replay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTailCut {
    pub segment: PathBuf,
    pub offset: u64,
    pub bytes: u64,
}

/// What [`replay`] found besides records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// The highest seq replayed.
    pub last_seq: Option<u64>,
    pub torn_tail: Option<TornTailCut>,
}

/// What to do with a torn tail of the newest segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornTail {
    /// At start, nothing is appending: cut it so appends continue from a clean end.
    Truncate,
    /// While the WAL thread may be appending (recovery): stop there, touch nothing.
    Stop,
}

/// Replays every segment in `dir`, oldest first: `each` gets every valid record and every
/// damaged range (replay goes on with the records after it). Only an incomplete final
/// record of the newest segment is a torn tail (acks follow the fsync, so it was never
/// acknowledged); the same at the end of a sealed segment is damage.
pub fn replay(
    dir: &Path,
    tail: TornTail,
    mut each: impl FnMut(Entry<'_>) -> Result<()>,
) -> Result<Replayed> {
    let segments = list_segments(dir)?;
    let mut out = Replayed::default();
    let mut seen = SeqSet::default();
    for (i, path) in segments.iter().enumerate() {
        // A segment is bounded by the segment size plus one group; reading it whole lets the
        // reader scan and slice without trusting any length.
        let data = fs::read(path).map_err(IngestError::lake_io(path))?;
        let end = parse_segment(&data, |item| match item {
            // Seqs are unique in a WAL; a second frame with one is a duplicated copy (a
            // misdirected write), not a second record.
            Item::Record {
                offset,
                frame,
                record,
            } if !seen.insert(record.seq) => each(Entry::Damaged(Damage {
                segment: path,
                offset,
                bytes: frame,
                reason: "duplicate of an earlier record",
            })),
            Item::Record { record, .. } => {
                out.last_seq = out.last_seq.max(Some(record.seq));
                each(Entry::Record(record))
            }
            Item::Damaged {
                offset,
                bytes,
                reason,
            } => each(Entry::Damaged(Damage {
                segment: path,
                offset,
                bytes,
                reason,
            })),
        })?;
        let SegmentEnd::Torn { offset, reason } = end else {
            continue;
        };
        if i + 1 != segments.len() {
            each(Entry::Damaged(Damage {
                segment: path,
                offset,
                bytes: &data[offset as usize..],
                reason: match reason {
                    "truncated segment header" => "sealed segment truncated in its header",
                    _ => "sealed segment ends inside a record",
                },
            }))?;
            continue;
        }
        out.torn_tail = Some(TornTailCut {
            segment: path.clone(),
            offset,
            bytes: data.len() as u64 - offset,
        });
        if tail == TornTail::Truncate {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(IngestError::lake_io(path))?;
            f.set_len(offset).map_err(IngestError::lake_io(path))?;
            f.sync_all().map_err(IngestError::lake_io(path))?;
        }
    }
    Ok(out)
}

/// Seqs seen by a replay, as ranges: they are consecutive within a segment, so this stays a
/// handful of entries however many records the WAL holds.
#[derive(Default)]
struct SeqSet(std::collections::BTreeMap<u64, u64>);

impl SeqSet {
    /// Adds `seq`; false if it was already there.
    fn insert(&mut self, seq: u64) -> bool {
        let below = self.0.range(..=seq).next_back().map(|(&s, &e)| (s, e));
        if let Some((_, end)) = below
            && seq <= end
        {
            return false;
        }
        let mut start = seq;
        if let Some((s, end)) = below
            && end.checked_add(1) == Some(seq)
        {
            start = s;
        }
        let mut end = seq;
        if let Some(next) = seq.checked_add(1)
            && let Some(e) = self.0.remove(&next)
        {
            end = e;
        }
        self.0.insert(start, end);
        true
    }
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
