use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use std::sync::Arc;

use memchr::memmem;

use super::reader::SeqSet;
use super::record::Format;
use super::*;

fn rec(seq: u64, body: &[u8]) -> WalRecord {
    WalRecord {
        seq,
        received_at: 1_700_000_000_000_000i64.wrapping_add(seq as i64),
        cluster: Arc::from("prod"),
        source: Arc::from(format!("webhook:{seq}")),
        framing: if seq.is_multiple_of(2) {
            BodyFraming::Lines
        } else {
            BodyFraming::Document
        },
        body: body.to_vec(),
    }
}

fn frame(r: &WalRecord) -> Vec<u8> {
    let mut out = Vec::new();
    r.encode(&mut out);
    out
}

/// A whole current-format segment holding `records`, and each record's frame span in it.
fn segment_bytes(records: &[WalRecord]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut out = MAGIC.to_vec();
    let mut spans = Vec::new();
    for r in records {
        let start = out.len();
        r.encode(&mut out);
        spans.push((start, out.len()));
    }
    (out, spans)
}

/// The source an older serve stored: NDJSON framing as a `#lines` suffix.
fn legacy_source(r: &WalRecord) -> Arc<str> {
    match r.framing {
        BodyFraming::Document => r.source.clone(),
        BodyFraming::Lines => Arc::from(format!("{}#lines", r.source)),
    }
}

/// A second-format record (sync-marked, no framing byte), as an older serve wrote it.
fn encode_v2(r: &WalRecord, out: &mut Vec<u8>) {
    let mut old = r.clone();
    old.source = legacy_source(r);
    let mut fixed = r.seq.to_le_bytes().to_vec();
    fixed.extend_from_slice(&r.received_at.to_le_bytes());
    old.encode_with(&fixed, out);
}

/// A first-format record, as an older serve wrote it.
fn encode_v1(r: &WalRecord, out: &mut Vec<u8>) {
    let mut payload = Vec::new();
    payload.extend_from_slice(&r.seq.to_le_bytes());
    payload.extend_from_slice(&r.received_at.to_le_bytes());
    for s in [&r.cluster, &legacy_source(r)] {
        payload.extend_from_slice(&(s.len() as u16).to_le_bytes());
        payload.extend_from_slice(s.as_bytes());
    }
    payload.extend_from_slice(&r.body);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// What a replay handed over.
#[derive(Debug, Default)]
struct Seen {
    records: Vec<WalRecord>,
    /// segment file name, offset, length, reason
    damaged: Vec<(String, u64, usize, &'static str)>,
    replayed: Replayed,
}

fn replay_all(dir: &Path, tail: TornTail) -> Seen {
    let mut seen = Seen::default();
    seen.replayed = replay(dir, tail, |e| {
        match e {
            Entry::Record(r) => seen.records.push(r),
            Entry::Damaged(d) => seen.damaged.push((
                d.segment
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                d.offset,
                d.bytes.len(),
                d.reason,
            )),
        }
        Ok(())
    })
    .unwrap();
    seen
}

fn seqs(records: &[WalRecord]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

#[test]
fn records_round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = Segment::create(dir.path(), 1).unwrap();
    let mut buf = Vec::new();
    // Bodies that hold the marker, its stuffed prefix at the very end, and a whole frame.
    let tricky = [SYNC.to_vec(), SYNC[..7].to_vec(), frame(&rec(9, b"inner"))].concat();
    let records = [rec(1, b"{\"a\":1}"), rec(2, b""), rec(3, &tricky)];
    let mut starts = Vec::new();
    for r in &records {
        let before = buf.len();
        starts.push(before);
        r.encode(&mut buf);
        assert_eq!(buf.len() - before, r.encoded_len(), "seq {}", r.seq);
    }
    assert_eq!(
        memmem::find_iter(&buf, SYNC).collect::<Vec<_>>(),
        starts,
        "the only markers are frame starts"
    );
    seg.append_durable(&buf, 3).unwrap();
    let mut seg2 = Segment::create(dir.path(), 4).unwrap();
    buf.clear();
    rec(4, b"x\ny").encode(&mut buf);
    seg2.append_durable(&buf, 4).unwrap();
    let seen = replay_all(dir.path(), TornTail::Truncate);
    assert_eq!(
        seen.records,
        [records.to_vec(), vec![rec(4, b"x\ny")]].concat()
    );
    assert!(seen.damaged.is_empty() && seen.replayed.torn_tail.is_none());
    assert_eq!(seen.replayed.last_seq, Some(4));
}

#[test]
fn a_torn_tail_is_cut_silently_and_appends_continue() {
    // Cut inside the payload, inside the header, inside the marker.
    for cut in [40, 11, 3] {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 1).unwrap();
        let mut buf = Vec::new();
        rec(1, b"first").encode(&mut buf);
        let whole = buf.len();
        rec(2, b"second, torn by a crash before its fsync").encode(&mut buf);
        seg.append_durable(&buf[..whole + cut], 2).unwrap();
        drop(seg);
        let seen = replay_all(dir.path(), TornTail::Truncate);
        assert_eq!(seen.records, vec![rec(1, b"first")], "cut {cut}");
        assert!(seen.damaged.is_empty(), "cut {cut}: {:?}", seen.damaged);
        let path = dir.path().join(segment_name(1));
        assert_eq!(
            seen.replayed.torn_tail,
            Some(TornTailCut {
                segment: path.clone(),
                offset: (MAGIC.len() + whole) as u64,
                bytes: cut as u64,
            })
        );
        // The tail was truncated: the file now ends after record 1.
        assert_eq!(
            fs::metadata(&path).unwrap().len() as usize,
            MAGIC.len() + whole
        );
    }
}

/// The security review's case: three acknowledged records, one byte flipped in the first.
#[test]
fn one_flipped_byte_skips_only_its_record_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let records = [rec(1, b"first body"), rec(2, b"second"), rec(3, b"third")];
    let (mut data, spans) = segment_bytes(&records);
    data[spans[0].1 - 3] ^= 0x01;
    fs::write(dir.path().join(segment_name(1)), &data).unwrap();
    let seen = replay_all(dir.path(), TornTail::Truncate);
    assert_eq!(seen.records, records[1..].to_vec());
    assert_eq!(
        seen.damaged,
        vec![(
            segment_name(1),
            8,
            spans[0].1 - spans[0].0,
            "checksum mismatch"
        )]
    );
    assert_eq!(seen.replayed.torn_tail, None);
    assert_eq!(
        fs::read(dir.path().join(segment_name(1))).unwrap(),
        data,
        "damage is not a torn tail: nothing is cut"
    );
}

/// A flipped length must not pass for an incomplete final record (the header checksum says it
/// is damage), nor make the reader jump over the records after it.
#[test]
fn a_damaged_length_is_damage_not_a_torn_tail() {
    for flip in [0x40u8, 0x01] {
        let dir = tempfile::tempdir().unwrap();
        let records = [rec(1, b"one"), rec(2, b"two"), rec(3, b"three")];
        let (mut data, spans) = segment_bytes(&records);
        data[spans[0].0 + 11] ^= flip; // the length's top byte: runs past the end
        data[spans[0].0 + 8] ^= flip >> 6; // or just one more byte: runs into record 2
        fs::write(dir.path().join(segment_name(1)), &data).unwrap();
        let seen = replay_all(dir.path(), TornTail::Truncate);
        assert_eq!(seen.records, records[1..].to_vec(), "flip {flip:#x}");
        assert_eq!(seen.damaged.len(), 1);
        assert_eq!(seen.damaged[0].3, "header checksum mismatch");
        assert!(seen.replayed.torn_tail.is_none());
    }
}

/// A header that verifies but claims more bytes than remain (a misplaced copy of a genuine
/// header, say) followed by valid records: damage, and the records after it replay.
#[test]
fn a_verified_header_running_over_later_records_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let big = frame(&rec(7, &[b'x'; 5000]));
    let (data, _) = segment_bytes(&[rec(1, b"one"), rec(2, b"two")]);
    let mut damaged = data[..8].to_vec();
    damaged.extend_from_slice(&big[..FRAME_HEADER + 10]);
    damaged.extend_from_slice(&data[8..]);
    fs::write(dir.path().join(segment_name(1)), &damaged).unwrap();
    let seen = replay_all(dir.path(), TornTail::Stop);
    assert_eq!(seqs(&seen.records), vec![1, 2]);
    assert_eq!(
        seen.damaged,
        vec![(
            segment_name(1),
            8,
            FRAME_HEADER + 10,
            "record length runs over later records"
        )]
    );
}

/// A frame inside a body is stuffed, so scanning past damage never finds it: the carrier is
/// damage, the forged record never replays, and the record after it does.
#[test]
fn a_frame_smuggled_in_a_body_is_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut forged = rec(2, b"{\"kind\":\"Event\",\"auditID\":\"forged\"}");
    forged.cluster = Arc::from("other-tenant");
    let carrier = rec(
        1,
        &[b"prefix".to_vec(), frame(&forged), b"suffix".to_vec()].concat(),
    );
    let (mut data, spans) = segment_bytes(&[carrier, rec(2, b"genuine")]);
    data[spans[0].0 + 9] ^= 0xff; // the carrier's length: scanning starts inside it
    fs::write(dir.path().join(segment_name(1)), &data).unwrap();
    let seen = replay_all(dir.path(), TornTail::Stop);
    assert_eq!(seen.records, vec![rec(2, b"genuine")]);
    assert_eq!(seen.damaged.len(), 1);
    assert_eq!(seen.damaged[0].2, spans[0].1 - spans[0].0);
}

#[test]
fn damage_in_sealed_segments_does_not_stop_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, spans_a) = segment_bytes(&[rec(1, b"a1"), rec(2, b"a2"), rec(3, b"a3")]);
    let (b, _) = segment_bytes(&[rec(4, b"b1"), rec(5, b"b2")]);
    let (c, spans_c) = segment_bytes(&[rec(6, b"c1"), rec(7, b"c2")]);
    // Segment 1: record 2 zeroed, then cut inside record 3 (a sealed segment cannot have a
    // torn tail). Segment 2: its magic zeroed. Segment 3: garbage between its records.
    a[spans_a[1].0..spans_a[1].1].fill(0);
    a.truncate(spans_a[2].0 + 5);
    let mut b = b;
    b[..8].fill(0);
    let mut c2 = c[..spans_c[0].1].to_vec();
    c2.extend_from_slice(b"garbage\xF7WA");
    c2.extend_from_slice(&c[spans_c[0].1..]);
    fs::write(dir.path().join(segment_name(1)), &a).unwrap();
    fs::write(dir.path().join(segment_name(4)), &b).unwrap();
    fs::write(dir.path().join(segment_name(6)), &c2).unwrap();
    let seen = replay_all(dir.path(), TornTail::Truncate);
    assert_eq!(seqs(&seen.records), vec![1, 4, 5, 6, 7]);
    let got: Vec<_> = seen
        .damaged
        .iter()
        .map(|(s, o, n, r)| (s.as_str(), *o, *n, *r))
        .collect();
    let n2 = spans_a[1].1 - spans_a[1].0;
    assert_eq!(
        got,
        vec![
            (
                segment_name(1).as_str(),
                spans_a[1].0 as u64,
                n2,
                "missing sync marker"
            ),
            (
                segment_name(1).as_str(),
                spans_a[2].0 as u64,
                5,
                "sealed segment ends inside a record"
            ),
            (segment_name(4).as_str(), 0, 8, "bad segment header"),
            (
                segment_name(6).as_str(),
                spans_c[0].1 as u64,
                10,
                "missing sync marker"
            ),
        ]
    );
}

/// A duplicated frame (a misdirected write) replays once, wherever the copy lands.
#[test]
fn a_duplicated_frame_replays_once() {
    let dir = tempfile::tempdir().unwrap();
    let (data, spans) = segment_bytes(&[rec(1, b"one"), rec(2, b"two"), rec(3, b"three")]);
    let copy = data[spans[2].0..spans[2].1].to_vec();
    let mut dup = data[..spans[1].0].to_vec();
    dup.extend_from_slice(&copy); // 3 before 2
    dup.extend_from_slice(&data[spans[1].0..]);
    fs::write(dir.path().join(segment_name(1)), &dup).unwrap();
    let seen = replay_all(dir.path(), TornTail::Stop);
    assert_eq!(seqs(&seen.records), vec![1, 3, 2]);
    assert_eq!(seen.damaged.len(), 1);
    assert_eq!(seen.damaged[0].3, "duplicate of an earlier record");
    assert_eq!(seen.replayed.last_seq, Some(3));
}

/// What an older serve left behind still replays after an upgrade (first-format segments), next
/// to current ones; damage there reports the rest of that segment and replay goes on.
#[test]
fn first_format_segments_from_an_older_serve_still_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut v1 = MAGIC_V1.to_vec();
    for r in [rec(1, b"old1"), rec(2, b"old2")] {
        encode_v1(&r, &mut v1);
    }
    let good = v1.len();
    encode_v1(&rec(3, b"old3, damaged"), &mut v1);
    encode_v1(&rec(4, b"old4, lost with it"), &mut v1);
    v1[good + 12] ^= 0x10;
    fs::write(dir.path().join(segment_name(1)), &v1).unwrap();
    let mut torn_v1 = MAGIC_V1.to_vec();
    encode_v1(&rec(5, b"old5"), &mut torn_v1);
    let whole = torn_v1.len();
    encode_v1(&rec(6, b"old6, torn"), &mut torn_v1);
    torn_v1.truncate(whole + 9);
    fs::write(dir.path().join(segment_name(5)), &torn_v1).unwrap();
    let seen = replay_all(dir.path(), TornTail::Truncate);
    assert_eq!(seqs(&seen.records), vec![1, 2, 5]);
    // The framing came back from the source suffix (record 2 is NDJSON), and left the source.
    assert_eq!(seen.records[..2], [rec(1, b"old1"), rec(2, b"old2")]);
    assert_eq!(
        seen.damaged,
        vec![(
            segment_name(1),
            good as u64,
            v1.len() - good,
            "checksum mismatch"
        )]
    );
    assert_eq!(seen.replayed.torn_tail.unwrap().offset, whole as u64);
    assert_eq!(
        fs::metadata(dir.path().join(segment_name(5)))
            .unwrap()
            .len(),
        whole as u64
    );
}

/// Second-format segments (framing as a `#lines` suffix on the source) replay with the framing
/// as a field, next to current ones; a second-format segment whose magic is damaged still
/// resynchronises on its frames, and a current frame is never read as a second-format one.
#[test]
fn second_format_segments_replay_with_their_framing() {
    let dir = tempfile::tempdir().unwrap();
    let old = [rec(1, b"doc"), rec(2, b"{}\n{}\n"), rec(3, b"doc")];
    let mut v2 = MAGIC_V2.to_vec();
    for r in &old {
        encode_v2(r, &mut v2);
    }
    fs::write(dir.path().join(segment_name(1)), &v2).unwrap();
    let mut zeroed = v2.clone();
    zeroed[..8].fill(0);
    fs::write(dir.path().join(segment_name(4)), &zeroed).unwrap();
    let (current, _) = segment_bytes(&[rec(7, b"new"), rec(8, b"{}\n{}\n")]);
    fs::write(dir.path().join(segment_name(7)), &current).unwrap();
    let seen = replay_all(dir.path(), TornTail::Stop);
    assert_eq!(seen.records[..3], old);
    assert_eq!(seen.records[1].framing, BodyFraming::Lines);
    assert_eq!(&*seen.records[1].source, "webhook:2");
    // The copy behind a damaged magic: its seqs repeat, so they are duplicates, but each frame
    // was found and decoded (a frame that failed to decode would be a different reason).
    assert_eq!(
        seen.damaged.iter().map(|d| d.3).collect::<Vec<_>>(),
        vec![
            "bad segment header",
            "duplicate of an earlier record",
            "duplicate of an earlier record",
            "duplicate of an earlier record"
        ]
    );
    assert_eq!(seen.records[3..], [rec(7, b"new"), rec(8, b"{}\n{}\n")]);
    // A current payload is not a second-format one and vice versa.
    let mut f = Vec::new();
    rec(8, b"x").encode(&mut f);
    let payload = &f[FRAME_HEADER..];
    assert!(WalRecord::decode(payload, Format::V2).is_none());
    let mut g = Vec::new();
    encode_v2(&rec(8, b"x"), &mut g);
    assert!(WalRecord::decode(&g[FRAME_HEADER..], Format::V3).is_none());
    assert_eq!(
        WalRecord::decode(&g[FRAME_HEADER..], Format::Unknown),
        Some(rec(8, b"x"))
    );
}

/// A frame whose checksums verify but whose framing byte is neither `D` nor `L` (a forged or
/// mis-encoded record) is damage, reported and skipped: replay never guesses a framing.
#[test]
fn an_unknown_framing_byte_is_damage_not_a_guess() {
    let dir = tempfile::tempdir().unwrap();
    let r = rec(2, b"{}\n{}\n");
    let mut fixed = r.seq.to_le_bytes().to_vec();
    fixed.extend_from_slice(&r.received_at.to_le_bytes());
    fixed.push(b'X');
    let (mut data, _) = segment_bytes(&[rec(1, b"before")]);
    let forged_at = data.len();
    r.encode_with(&fixed, &mut data);
    let forged_len = data.len() - forged_at;
    rec(3, b"after").encode(&mut data);
    fs::write(dir.path().join(segment_name(1)), &data).unwrap();
    let seen = replay_all(dir.path(), TornTail::Stop);
    assert_eq!(seqs(&seen.records), vec![1, 3]);
    assert_eq!(
        seen.damaged,
        vec![(
            segment_name(1),
            forged_at as u64,
            forged_len,
            "malformed record"
        )]
    );
}

#[test]
fn empty_and_cut_segment_headers_are_torn_only_when_newest() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(segment_name(1)), &MAGIC[..3]).unwrap();
    let (b, _) = segment_bytes(&[rec(2, b"two")]);
    fs::write(dir.path().join(segment_name(2)), &b).unwrap();
    fs::write(dir.path().join(segment_name(3)), b"").unwrap();
    let seen = replay_all(dir.path(), TornTail::Stop);
    assert_eq!(seqs(&seen.records), vec![2]);
    assert_eq!(
        seen.damaged,
        vec![(
            segment_name(1),
            0,
            3,
            "sealed segment truncated in its header"
        )]
    );
    assert_eq!(seen.replayed.torn_tail.unwrap().bytes, 0);
}

#[test]
fn the_seq_set_merges_ranges() {
    let mut s = SeqSet::default();
    for seq in [5, 3, 4, 1, u64::MAX, 0] {
        assert!(s.insert(seq), "{seq}");
    }
    for seq in [0, 1, 3, 4, 5, u64::MAX] {
        assert!(!s.insert(seq), "{seq}");
    }
    assert!(s.insert(2));
    assert_eq!(
        s.0.into_iter().collect::<Vec<_>>(),
        vec![(0, 5), (u64::MAX, u64::MAX)]
    );
}

// ---- Property test: random damage across segments ----

/// Bodies: arbitrary bytes, JSON-like text, and bodies built to confuse a scanner (markers,
/// stuffed prefixes, whole frames of other records).
fn body() -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..300),
        2 => Just(br#"{"kind":"EventList","items":[{"auditID":"x","verb":"get"}]}"#.to_vec()),
        1 => Just(SYNC.to_vec()),
        1 => Just(SYNC[..7].to_vec()),
        1 => (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(seq, b)| frame(&rec(seq % 64, &b))),
    ];
    proptest::collection::vec(chunk, 0..6).prop_map(|c| c.concat())
}

#[derive(Debug, Clone)]
enum Harm {
    Flip {
        seg: usize,
        at: usize,
        mask: u8,
    },
    ZeroPage {
        seg: usize,
        page: usize,
    },
    Truncate {
        seg: usize,
        at: usize,
    },
    /// Garbage inserted anywhere.
    Insert {
        seg: usize,
        at: usize,
        bytes: Vec<u8>,
    },
    /// A copy of a record's whole frame inserted anywhere (a duplicated or misdirected write).
    Duplicate {
        seg: usize,
        at: usize,
        record: usize,
    },
}

fn harm() -> impl Strategy<Value = Harm> {
    prop_oneof![
        3 => (any::<usize>(), any::<usize>(), 1..=255u8)
            .prop_map(|(seg, at, mask)| Harm::Flip { seg, at, mask }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(seg, page)| Harm::ZeroPage { seg, page }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(seg, at)| Harm::Truncate { seg, at }),
        1 => (any::<usize>(), any::<usize>(), proptest::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(seg, at, bytes)| Harm::Insert { seg, at, bytes }),
        1 => (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(seg, at, record)| Harm::Duplicate { seg, at, record }),
    ]
}

/// One segment under damage: its bytes, and where each original record's frame is now.
struct Tracked {
    data: Vec<u8>,
    /// seq → current span
    spans: BTreeMap<u64, (usize, usize)>,
}

/// Applies `d`, adding every record whose bytes it changed (or cut) to `touched`.
///
/// Not modelled: splicing an arbitrary byte range in at an exact spot. That can join a marker
/// prefix to frame-shaped bytes a sender put in a body (stuffing breaks only whole markers), which
/// random damage does not do; see the module documentation.
fn apply_damage(segs: &mut [Tracked], frames: &[Vec<u8>], d: &Harm, touched: &mut BTreeSet<u64>) {
    let n = segs.len();
    match d {
        Harm::Flip { seg, at, mask } => {
            let s = &mut segs[seg % n];
            if s.data.is_empty() {
                return;
            }
            let at = at % s.data.len();
            s.data[at] ^= mask;
            touched.extend(
                s.spans
                    .iter()
                    .filter(|(_, (a, b))| (*a..*b).contains(&at))
                    .map(|(q, _)| *q),
            );
        }
        Harm::ZeroPage { seg, page } => {
            let s = &mut segs[seg % n];
            let pages = s.data.len().div_ceil(4096).max(1);
            let start = (page % pages) * 4096;
            let end = (start + 4096).min(s.data.len());
            for (q, (a, b)) in &s.spans {
                let (lo, hi) = (start.max(*a), end.min(*b));
                if lo < hi && s.data[lo..hi].iter().any(|&x| x != 0) {
                    touched.insert(*q);
                }
            }
            if start < end {
                s.data[start..end].fill(0);
            }
        }
        Harm::Truncate { seg, at } => {
            let s = &mut segs[seg % n];
            let at = at % (s.data.len() + 1);
            s.data.truncate(at);
            touched.extend(
                s.spans
                    .iter()
                    .filter(|(_, (_, b))| *b > at)
                    .map(|(q, _)| *q),
            );
        }
        Harm::Insert { .. } | Harm::Duplicate { .. } => {
            let (seg, at, bytes) = match d {
                Harm::Insert { seg, at, bytes } => (seg, at, bytes),
                Harm::Duplicate { seg, at, record } => (seg, at, &frames[record % frames.len()]),
                _ => unreachable!("matched above"),
            };
            let s = &mut segs[seg % n];
            let at = at % (s.data.len() + 1);
            s.data.splice(at..at, bytes.iter().copied());
            for (q, (a, b)) in s.spans.iter_mut() {
                if *a < at && at < *b {
                    touched.insert(*q);
                }
                if *a >= at {
                    *a += bytes.len();
                }
                if *b > at {
                    *b += bytes.len();
                }
            }
        }
    }
}

proptest! {
    /// Every record whose bytes no damage touched replays exactly once; nothing replays that is
    /// not an original record; every touched record that still has bytes is inside a reported
    /// damaged range or the torn tail; no damaged range swallows an untouched record.
    #[test]
    fn random_damage_across_segments_loses_only_the_damaged_records(
        bodies in proptest::collection::vec(body(), 1..24),
        per_segment in proptest::collection::vec(1..6usize, 1..6),
        harm in proptest::collection::vec(harm(), 0..6),
    ) {
        let records: Vec<WalRecord> =
            bodies.iter().enumerate().map(|(i, b)| rec(i as u64 + 1, b)).collect();
        let mut segs = Vec::new();
        let mut names = Vec::new();
        let mut rest = &records[..];
        for k in per_segment.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*k).min(rest.len()));
            let (data, spans) = segment_bytes(now);
            names.push(segment_name(now[0].seq));
            segs.push(Tracked {
                data,
                spans: now.iter().map(|r| r.seq).zip(spans).collect(),
            });
            rest = later;
        }
        let mut touched = BTreeSet::new();
        let frames: Vec<Vec<u8>> = records.iter().map(frame).collect();
        for d in &harm {
            apply_damage(&mut segs, &frames, d, &mut touched);
        }
        let dir = tempfile::tempdir().unwrap();
        for (name, s) in names.iter().zip(&segs) {
            fs::write(dir.path().join(name), &s.data).unwrap();
        }
        let seen = replay_all(dir.path(), TornTail::Stop);

        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for r in &seen.records {
            *count.entry(r.seq).or_default() += 1;
            let original = records.iter().find(|o| o.seq == r.seq);
            prop_assert_eq!(Some(r), original, "only original records replay, intact");
        }
        prop_assert!(count.values().all(|&c| c == 1), "a record replayed twice: {:?}", count);
        for r in &records {
            if !touched.contains(&r.seq) {
                prop_assert_eq!(count.get(&r.seq), Some(&1), "untouched record {} lost", r.seq);
            }
        }
        let mut reported: Vec<(String, usize, usize)> = seen
            .damaged
            .iter()
            .map(|(s, o, n, _)| (s.clone(), *o as usize, *o as usize + n))
            .collect();
        if let Some(t) = &seen.replayed.torn_tail {
            let name = t.segment.file_name().unwrap().to_string_lossy().into_owned();
            prop_assert_eq!(Some(&name), names.last(), "only the newest segment has a torn tail");
            reported.push((name, t.offset as usize, (t.offset + t.bytes) as usize));
        }
        for (name, s) in names.iter().zip(&segs) {
            for (q, (a, b)) in &s.spans {
                let b = (*b).min(s.data.len());
                let covered = reported
                    .iter()
                    .any(|(n, lo, hi)| n == name && *lo < b && *a < *hi);
                if touched.contains(q) {
                    prop_assert!(
                        *a >= b || covered || count.get(q) == Some(&1),
                        "damaged record {} in {} not reported: {:?}", q, name, seen.damaged
                    );
                } else if covered {
                    // Only a later duplicate of a record already replayed may be skipped.
                    let dup = seen.damaged.iter().any(|(n, o, len, why)| {
                        n == name && *o as usize == *a && *o as usize + len == b
                            && *why == "duplicate of an earlier record"
                    });
                    prop_assert!(dup, "untouched record {} inside a reported range", q);
                }
            }
        }
    }

    /// Encoding is exact and round-trips whatever the fields hold.
    #[test]
    fn encoded_len_is_exact_and_frames_round_trip(
        seq in any::<u64>(),
        received_at in any::<i64>(),
        cluster in proptest::collection::vec(prop_oneof![Just(0xF7u8), Just(b'W'), any::<u8>()], 0..12),
        body in body(),
    ) {
        let mut r = rec(seq, &body);
        r.received_at = received_at;
        r.cluster = Arc::from(String::from_utf8_lossy(&cluster).as_ref());
        r.source = Arc::from(format!("{}\u{F7}WALSYN", String::from_utf8_lossy(&body)));
        let f = frame(&r);
        prop_assert_eq!(f.len(), r.encoded_len());
        prop_assert_eq!(memmem::find_iter(&f, SYNC).collect::<Vec<_>>(), vec![0]);
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&f);
        let mut got = Vec::new();
        let end = parse_segment(&data, |i| {
            if let Item::Record { record, .. } = i {
                got.push(record);
            }
            Ok(())
        })
        .unwrap();
        prop_assert_eq!(end, SegmentEnd::Clean);
        prop_assert_eq!(got, vec![r]);
    }
}

// ---- Fuzz targets (stable-Rust proptests; PROPTEST_CASES=… runs them longer) ----

/// Parses `data` and checks the reader's contract: it ends (no panic, no endless loop), and its
/// items and torn tail tile the input in order, each a non-empty in-bounds range.
fn check_reader(data: &[u8]) -> std::result::Result<Vec<(u64, WalRecord)>, TestCaseError> {
    let mut next = match data.get(..8) {
        Some(m) if m == MAGIC || m == MAGIC_V2 || m == MAGIC_V1 => 8u64,
        _ => 0,
    };
    let mut records = Vec::new();
    let mut tiles = true;
    let end = parse_segment(data, |item| {
        let (offset, len) = match &item {
            Item::Record { offset, frame, .. } => (*offset, frame.len()),
            Item::Damaged { offset, bytes, .. } => (*offset, bytes.len()),
        };
        tiles &= offset == next && len > 0;
        next = offset + len as u64;
        if let Item::Record { offset, record, .. } = item {
            records.push((offset, record));
        }
        Ok(())
    })
    .unwrap();
    prop_assert!(tiles, "items do not tile the input");
    match end {
        SegmentEnd::Clean => prop_assert_eq!(next, data.len() as u64),
        SegmentEnd::Torn { offset, .. } => {
            prop_assert!(offset == next || (offset == 0 && data.len() < 8));
            prop_assert!(offset < data.len() as u64 || data.len() < 8);
        }
    }
    Ok(records)
}

/// Pieces a reader must cope with after a valid magic: valid frames, damaged frames, headers
/// that verify but lie about the length (up to 4 GiB), markers and their prefixes, garbage.
#[derive(Debug, Clone)]
enum Piece {
    Frame(u64, Vec<u8>),
    Flipped(u64, Vec<u8>, usize, u8),
    LyingHeader(u32),
    Marker,
    MarkerPrefix(usize),
    Bytes(Vec<u8>),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        3 => (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(s, b)| Piece::Frame(s, b)),
        2 => (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64), any::<usize>(), 1..=255u8)
            .prop_map(|(s, b, at, m)| Piece::Flipped(s, b, at, m)),
        1 => any::<u32>().prop_map(Piece::LyingHeader),
        1 => Just(Piece::Marker),
        1 => (1..8usize).prop_map(Piece::MarkerPrefix),
        2 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Piece::Bytes),
    ]
}

proptest! {
    #[test]
    fn fuzz_wal_reader_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check_reader(&data)?;
    }

    #[test]
    fn fuzz_wal_reader_after_valid_magic(
        format in 0..3usize,
        tail in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut data = [MAGIC, MAGIC_V2, MAGIC_V1][format].to_vec();
        data.extend_from_slice(&tail);
        check_reader(&data)?;
    }

    /// Every intact frame among the pieces is found, wherever garbage puts the reader.
    #[test]
    fn fuzz_wal_reader_structured(pieces in proptest::collection::vec(piece(), 0..24)) {
        let mut data = MAGIC.to_vec();
        let mut intact = Vec::new();
        for p in pieces {
            match p {
                Piece::Frame(seq, body) => {
                    let r = rec(seq, &body);
                    intact.push((data.len() as u64, r.clone()));
                    r.encode(&mut data);
                }
                Piece::Flipped(seq, body, at, mask) => {
                    let mut f = frame(&rec(seq, &body));
                    let at = at % f.len();
                    f[at] ^= mask;
                    data.extend_from_slice(&f);
                }
                Piece::LyingHeader(len) => {
                    let mut h = SYNC.to_vec();
                    h.extend_from_slice(&len.to_le_bytes());
                    h.extend_from_slice(&0u32.to_le_bytes());
                    let hcrc = crc32fast::hash(&h[8..16]);
                    h.extend_from_slice(&hcrc.to_le_bytes());
                    data.extend_from_slice(&h);
                }
                Piece::Marker => data.extend_from_slice(SYNC),
                Piece::MarkerPrefix(n) => data.extend_from_slice(&SYNC[..n]),
                Piece::Bytes(b) => data.extend_from_slice(&b),
            }
        }
        let got = check_reader(&data)?;
        for (offset, r) in &intact {
            prop_assert!(
                got.iter().any(|(o, g)| o == offset && g == r),
                "intact frame at {} not found", offset
            );
        }
    }
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
