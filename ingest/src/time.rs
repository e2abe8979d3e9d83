//! RFC 3339 timestamps → microseconds since the epoch (UTC).
//!
//! The API server writes `2026-11-22T05:54:58.277872Z` (six fractional digits, `Z`); a fast path
//! handles exactly that shape without allocating. Managed clouds re-emit other precisions and
//! offsets, which fall back to chrono's parser.

use chrono::DateTime;

/// Parses an RFC 3339 timestamp into microseconds since the Unix epoch, UTC.
/// Sub-microsecond digits are truncated. Returns `None` when the text is not RFC 3339.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    fast_path(s.as_bytes()).or_else(|| {
        let dt = DateTime::parse_from_rfc3339(s).ok()?;
        Some(dt.timestamp() * 1_000_000 + i64::from(dt.timestamp_subsec_micros()))
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`: the shape every API server and most clouds emit.
fn fast_path(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut micros = 0i64;
    let rest = &b[19..b.len() - 1];
    if !rest.is_empty() {
        if rest[0] != b'.' || rest.len() < 2 || rest.len() > 10 {
            return None;
        }
        let digits = &rest[1..];
        let mut scale = 100_000i64;
        for (i, &c) in digits.iter().enumerate() {
            if !c.is_ascii_digit() {
                return None;
            }
            if i < 6 {
                micros += i64::from(c - b'0') * scale;
                scale /= 10;
            }
        }
    }
    let days = days_from_civil(year, month, day);
    // A leap second (:60) folds onto the next second, as chrono does.
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + micros)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats microseconds since the epoch as `(YYYY-MM-DD, HH)` in UTC: the partition of an event.
pub fn partition_date_hour(micros: i64) -> (String, String) {
    let dt = DateTime::from_timestamp_micros(micros).unwrap_or_default();
    (
        dt.format("%Y-%m-%d").to_string(),
        dt.format("%H").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_micros(s: &str) -> i64 {
        let dt = DateTime::parse_from_rfc3339(s).unwrap();
        dt.timestamp() * 1_000_000 + i64::from(dt.timestamp_subsec_micros())
    }

    #[test]
    fn fast_path_matches_chrono() {
        for s in [
            "2026-11-22T05:54:58.277872Z",
            "2018-10-25T13:58:49.730588Z",
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59.999999Z",
            "2000-03-01T00:00:00.5Z",
            "2026-11-22T05:54:58.123456789Z",
            "1969-12-31T23:59:59.000001Z",
        ] {
            assert_eq!(fast_path(s.as_bytes()), Some(chrono_micros(s)), "{s}");
            assert_eq!(parse_rfc3339_micros(s), Some(chrono_micros(s)), "{s}");
        }
    }

    #[test]
    fn offsets_and_other_precisions_fall_back_to_chrono() {
        let s = "2026-11-22T06:54:58.2+01:00";
        assert_eq!(
            parse_rfc3339_micros(s),
            Some(chrono_micros("2026-11-22T05:54:58.2Z"))
        );
        assert_eq!(
            parse_rfc3339_micros("2026-11-22 05:54:58Z"),
            Some(chrono_micros("2026-11-22T05:54:58Z"))
        );
    }

    #[test]
    fn rejects_nonsense() {
        for s in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-22T25:00:00Z",
            "2026-11-22T05:54:58.Z",
        ] {
            assert_eq!(parse_rfc3339_micros(s), None, "{s}");
        }
    }

    #[test]
    fn partition_of_a_time() {
        let t = chrono_micros("2026-11-22T05:54:58.277872Z");
        assert_eq!(partition_date_hour(t), ("2026-11-22".into(), "05".into()));
    }
}
