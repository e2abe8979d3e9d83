//! Where JSON values end when nothing separates them.
//!
//! Kinesis Data Firehose writes records back to back: EKS audit logs delivered through a
//! CloudWatch Logs subscription land in S3 as `{…}{…}{…}` (concatenated subscription payloads,
//! or with "message extraction" concatenated audit events), often with no newline in the whole
//! object. The file source cuts its input at newlines, so such an object is one "line" of any
//! size. [`ValueScanner`] finds the ends of top-level objects and arrays in a byte stream
//! (tracking strings and escapes, not parsing), so the chunker can cut a long line between two
//! values and the decoder can decode each value on its own.
//!
//! A newline always resets the scanner: JSON text cannot hold a raw newline inside a string, so
//! a damaged value never makes the scanner misread the lines after it.

/// Incremental scanner of top-level JSON value ends. Feed it consecutive slices of one stream.
#[derive(Debug, Clone)]
pub struct ValueScanner {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Line-oriented input (the chunker): a newline starts afresh. Off for one document that
    /// may span lines (a webhook body).
    resets_at_newline: bool,
}

impl Default for ValueScanner {
    fn default() -> Self {
        ValueScanner {
            depth: 0,
            in_string: false,
            escaped: false,
            resets_at_newline: true,
        }
    }
}

impl ValueScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans `bytes` (the continuation of what was fed before) and calls `end` with the index
    /// just past every top-level object or array that closes in it.
    pub fn feed(&mut self, bytes: &[u8], end: impl FnMut(usize)) {
        self.scan(bytes, |_| {}, end)
    }

    /// As [`feed`](Self::feed), also calling `start` with the index of every top-level value's
    /// opening bracket.
    pub fn scan(&mut self, bytes: &[u8], mut start: impl FnMut(usize), mut end: impl FnMut(usize)) {
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' && self.resets_at_newline {
                *self = ValueScanner::default();
                continue;
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' if self.depth > 0 => self.in_string = true,
                b'{' | b'[' => {
                    if self.depth == 0 {
                        start(i);
                    }
                    self.depth += 1;
                }
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        end(i + 1);
                    }
                }
                _ => {}
            }
        }
    }

    /// The index just past the last top-level value that closes in `bytes` (scanned from a
    /// fresh state).
    pub fn last_end(bytes: &[u8]) -> Option<usize> {
        let mut last = None;
        ValueScanner::new().feed(bytes, |e| last = Some(e));
        last
    }
}

/// Splits one line holding several JSON values back to back (`{…}{…}`, `{…} {…}`) into the
/// byte ranges of its parts: each value, anything else between values (garbage, quarantined on
/// its own without taking its neighbours along), and a last value cut short. `None` unless the
/// line holds at least two values (counting one cut short): a single value with trailing
/// garbage stays one malformed line, as before.
pub fn split_concatenated(bytes: &[u8]) -> Option<Vec<std::ops::Range<usize>>> {
    // (start, end) of each top-level value; a value whose line ended first has no end.
    let values = std::cell::RefCell::new(Vec::<(usize, Option<usize>)>::new());
    let mut scanner = ValueScanner::new();
    scanner.resets_at_newline = false;
    scanner.scan(
        bytes,
        |s| values.borrow_mut().push((s, None)),
        |e| {
            if let Some(last) = values.borrow_mut().last_mut() {
                last.1 = Some(e);
            }
        },
    );
    let values = values.into_inner();
    if values.len() < 2 {
        return None;
    }
    let gap = |from: usize, to: usize, parts: &mut Vec<std::ops::Range<usize>>| {
        let piece = &bytes[from..to];
        if let Some(first) = piece.iter().position(|b| !b.is_ascii_whitespace()) {
            let last = piece
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .unwrap_or(first);
            parts.push(from + first..from + last + 1);
        }
    };
    let mut parts = Vec::with_capacity(values.len() * 2);
    let mut at = 0;
    for (start, end) in values {
        gap(at, start, &mut parts);
        // A value without an end is the one cut short: it runs to the end of the input.
        let end = end.unwrap_or(bytes.len());
        parts.push(start..end);
        at = end;
    }
    gap(at, bytes.len(), &mut parts);
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> Option<Vec<&str>> {
        split_concatenated(s.as_bytes()).map(|r| r.into_iter().map(|r| &s[r]).collect())
    }

    #[test]
    fn values_back_to_back_are_split_and_strings_do_not_confuse_it() {
        assert_eq!(
            parts(r#"{"a":"}{"}{"b":["]",{"c":"\"}"}]} [1]"#).unwrap(),
            vec![r#"{"a":"}{"}"#, r#"{"b":["]",{"c":"\"}"}]}"#, "[1]"]
        );
        // One value, with or without trailing space: nothing to split.
        assert_eq!(parts(r#"{"a":{"b":1}}"#), None);
        assert_eq!(parts("{\"a\":1}  \r"), None);
        assert_eq!(parts("not json"), None);
    }

    #[test]
    fn a_cut_off_last_value_is_its_own_part() {
        assert_eq!(
            parts(r#"{"a":1}{"b":"unterminated"#).unwrap(),
            vec![r#"{"a":1}"#, r#"{"b":"unterminated"#]
        );
        // Garbage between values is its own part; one value with garbage after it is not split.
        assert_eq!(
            parts(r#"{"a":1} garbage {"b":2}"#).unwrap(),
            vec![r#"{"a":1}"#, "garbage", r#"{"b":2}"#]
        );
        assert_eq!(parts(r#"{"a":1} trailing"#), None);
    }

    #[test]
    fn the_scanner_continues_across_slices_and_resets_at_newlines() {
        let mut s = ValueScanner::new();
        let mut ends = Vec::new();
        s.feed(br#"{"a":"x}"#, |e| ends.push(e));
        assert!(ends.is_empty(), "the brace is inside a string");
        s.feed(br#"y"}{"#, |e| ends.push(e));
        assert_eq!(ends, vec![3]);
        // An unterminated string on one line does not swallow the next line.
        let mut ends = Vec::new();
        ValueScanner::new().feed(b"{\"a\":\"open\n{\"b\":1}", |e| ends.push(e));
        assert_eq!(ends, vec![18]);
        assert_eq!(ValueScanner::last_end(br#"{"a":1}{"b":2}{"c""#), Some(14));
    }
}
