//! One WAL record: its fields, how a frame encodes it, and how each format's payload decodes.

use std::sync::Arc;

use memchr::memmem;

use super::{FIXED, FIXED_V2, FRAME_HEADER, LEGACY_LINES_SUFFIX, STUFF, SYNC};

/// How a request body is framed; kept in its WAL record so replay decodes exactly as the
/// request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// One JSON document: an Event, an EventList or an array (what kube-apiserver sends).
    Document,
    /// Newline-delimited JSON: one Event/EventList per line (log shippers' `json_lines`).
    Lines,
}

impl BodyFraming {
    /// The byte in a record. Neither value is a possible low byte of a second-format cluster
    /// length (cluster names are 1–63 bytes), so a payload of one format never decodes as the
    /// other: a reader that lost a segment's magic can try both.
    fn byte(self) -> u8 {
        match self {
            BodyFraming::Document => b'D',
            BodyFraming::Lines => b'L',
        }
    }

    fn from_byte(b: u8) -> Option<BodyFraming> {
        match b {
            b'D' => Some(BodyFraming::Document),
            b'L' => Some(BodyFraming::Lines),
            _ => None,
        }
    }
}

/// One acknowledged request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    pub seq: u64,
    pub received_at: i64,
    pub cluster: Arc<str>,
    /// Where the body came from (`webhook:<request id>`), for quarantine positions.
    pub source: Arc<str>,
    pub framing: BodyFraming,
    pub body: Vec<u8>,
}

/// The payload layout of a segment, from its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// Sync-marked frames, payload with a framing byte (written now).
    V3,
    /// Sync-marked frames, framing as a source suffix.
    V2,
    /// The segment's magic is damaged: a payload may be either (they cannot be confused).
    Unknown,
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
        let mut fixed = [0u8; FIXED];
        fixed[..8].copy_from_slice(&self.seq.to_le_bytes());
        fixed[8..16].copy_from_slice(&self.received_at.to_le_bytes());
        fixed[16] = self.framing.byte();
        self.encode_with(&fixed, out);
    }

    /// Frames `fixed` (the unstuffed part) and the stuffed variable part.
    pub(super) fn encode_with(&self, fixed: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(SYNC);
        out.extend_from_slice(&[0u8; FRAME_HEADER - 8]);
        out.extend_from_slice(fixed);
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

    /// A verified payload of a sync-marked format.
    pub(super) fn decode(payload: &[u8], format: Format) -> Option<WalRecord> {
        match format {
            Format::V3 => Self::decode_v3(payload),
            Format::V2 => Self::decode_v2(payload),
            Format::Unknown => Self::decode_v3(payload).or_else(|| Self::decode_v2(payload)),
        }
    }

    fn decode_v3(payload: &[u8]) -> Option<WalRecord> {
        let framing = BodyFraming::from_byte(*payload.get(FIXED - 1)?)?;
        let mut plain = payload[..FIXED - 1].to_vec();
        plain.extend_from_slice(&unstuff(&payload[FIXED..])?);
        let mut record = Self::decode_plain(&plain)?;
        record.framing = framing;
        Some(record)
    }

    /// A second-format payload: stuffed like the current one, framing on the source.
    fn decode_v2(payload: &[u8]) -> Option<WalRecord> {
        let mut plain = payload.get(..FIXED_V2)?.to_vec();
        plain.extend_from_slice(&unstuff(&payload[FIXED_V2..])?);
        Self::decode_legacy(&plain)
    }

    /// A second- or first-format record, unstuffed: an NDJSON body's source ends in `#lines`,
    /// which becomes the framing field (and leaves the source).
    pub(super) fn decode_legacy(plain: &[u8]) -> Option<WalRecord> {
        let mut record = Self::decode_plain(plain)?;
        if let Some(source) = record.source.strip_suffix(LEGACY_LINES_SUFFIX) {
            record.source = Arc::from(source);
            record.framing = BodyFraming::Lines;
        }
        Some(record)
    }

    /// `seq | received_at | cluster | source | body`, unstuffed; framing left as a document.
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
            framing: BodyFraming::Document,
            body: p.to_vec(),
        })
    }
}

/// Removes the writer's stuffing: every `SYNC[..7]` must be followed by a [`STUFF`] byte.
fn unstuff(stuffed: &[u8]) -> Option<Vec<u8>> {
    let mut plain = Vec::with_capacity(stuffed.len());
    let mut from = 0;
    for hit in memmem::find_iter(stuffed, &SYNC[..7]) {
        if stuffed.get(hit + 7) != Some(&STUFF) {
            return None;
        }
        plain.extend_from_slice(&stuffed[from..hit + 7]);
        from = hit + 8;
    }
    plain.extend_from_slice(&stuffed[from..]);
    Some(plain)
}

fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if p.len() < n {
        return None;
    }
    let (head, rest) = p.split_at(n);
    *p = rest;
    Some(head)
}
