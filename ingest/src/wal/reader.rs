//! Reading segments: verifying frames, resynchronising past damage, and replaying a WAL
//! directory in order with torn tails and duplicates told apart from records.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use memchr::memmem;

use super::record::{Format, WalRecord};
use super::{
    FIXED_V2, FRAME_HEADER, MAGIC, MAGIC_V1, MAGIC_V2, MAX_RECORD, SYNC, V1_HEADER, list_segments,
};
use crate::error::{IngestError, Result};

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
        Some(m) if m == MAGIC => parse_frames(data, MAGIC.len(), None, Format::V3, &mut each),
        Some(m) if m == MAGIC_V2 => parse_frames(data, MAGIC.len(), None, Format::V2, &mut each),
        Some(m) if m == MAGIC_V1 => parse_v1(data, &mut each),
        // Empty or cut inside the magic: a crash while creating it, before any append.
        None if [MAGIC, MAGIC_V2, MAGIC_V1]
            .iter()
            .any(|m| m.starts_with(data)) =>
        {
            Ok(SegmentEnd::Torn {
                offset: 0,
                reason: "truncated segment header",
            })
        }
        // A damaged header (say, a zeroed first page): the records after it still carry markers.
        _ => parse_frames(
            data,
            0,
            Some((0, "bad segment header")),
            Format::Unknown,
            &mut each,
        ),
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

fn frame_at(data: &[u8], at: usize, format: Format) -> Frame {
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
    if !(FIXED_V2..=MAX_RECORD).contains(&len) {
        return Frame::Bad("record length out of range");
    }
    let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Frame::Incomplete("truncated record");
    };
    if crc32fast::hash(payload) != crc {
        return Frame::Bad("checksum mismatch");
    }
    match WalRecord::decode(payload, format) {
        Some(record) => Frame::Record(record, at + FRAME_HEADER + len),
        None => Frame::Bad("malformed record"),
    }
}

/// Reads frames from `pos`; `damage` is the start and reason of a damaged range in progress.
fn parse_frames<'a>(
    data: &'a [u8],
    mut pos: usize,
    mut damage: Option<(usize, &'static str)>,
    format: Format,
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
        match frame_at(data, at, format) {
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
            Frame::Incomplete(_) if valid_frame_after(data, at + 1, format) => {
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
fn valid_frame_after(data: &[u8], mut from: usize, format: Format) -> bool {
    while let Some(i) = memmem::find(&data[from.min(data.len())..], SYNC) {
        let at = from + i;
        if let Frame::Record(..) = frame_at(data, at, format) {
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
            } else if let Some(record) = WalRecord::decode_legacy(payload) {
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
pub(super) struct SeqSet(pub(super) std::collections::BTreeMap<u64, u64>);

impl SeqSet {
    /// Adds `seq`; false if it was already there.
    pub(super) fn insert(&mut self, seq: u64) -> bool {
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

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
