//! Masking secret-looking values in text that need not be valid JSON: truncated events, bodies
//! the JSON parser refuses (nested too deep, duplicate keys), oversized lines streamed to
//! quarantine. Everything the structural redactor ([`crate::redact`]) cannot parse goes through
//! here before it touches the disk.
//!
//! The masker is a byte-level state machine, so it works on any bytes, on a stream (fed in pieces)
//! and on text cut off anywhere. It passes everything through unchanged except the *value* after
//! a sensitive key (`data`, `stringData`, `value`, `token`, `password`, `…Secret`, the
//! last-applied annotation, …, see [`is_sensitive_key`]):
//!
//! - a string value becomes `"<redacted>"`; a value cut off by the end of input stays cut off after
//!   `"<redacted>`, so no prefix of it survives either;
//! - an object or array value keeps its structure and its keys (forensics can still see *which*
//!   keys), every string in it becomes `"<redacted>"`;
//! - numbers, `true`, `false`, `null` pass (secret values are strings in every Kubernetes shape).
//!
//! It is escape-agnostic: JSON embedded in a JSON string (an AKS `properties.log`, a CloudWatch
//! `message`, a last-applied annotation, or all of them nested) is recognised at every depth. A
//! quote preceded by `b` backslashes belongs to nesting level `trailing_ones(b)` (`"` is level 0,
//! `\"` level 1, `\\\"` level 2, …), and `:{}[],` are never escaped, so a key at level *n* is two
//! level-*n* quotes around a name followed by `:`, and its string value ends at the next quote of
//! level *n* or lower.

use std::io::{self, Write};

use crate::redact::REDACTED;

/// Object keys whose values are masked (compared case-insensitively, after decoding `\uXXXX` and
/// `\/` escapes).
const SENSITIVE_KEYS: &[&str] = &[
    "data",
    "stringdata",
    // JSON patch ops (`{"op":"add","path":"/data/x","value":…}`) and env vars carry their secret
    // under `value`; masking every `value` in a reject is cheaper than being wrong about the path.
    "value",
    "kubectl.kubernetes.io/last-applied-configuration",
    // kapp keeps the original manifest, Secret data included, in this annotation.
    "kapp.k14s.io/original",
    "authorization",
];
/// Key suffixes whose values are masked: `token`, `accessToken`, `client_secret`, `password`, ….
const SENSITIVE_SUFFIXES: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "apikey",
    "api_key",
    "api-key",
    "privatekey",
    "private_key",
    "private-key",
    "credential",
    "credentials",
];
/// A string inside a masked object longer than this is a value, not a key.
const KEY_MAX: usize = 256;

/// Whether an object key's value is masked. `raw` is the key as it appears between its quotes.
pub fn is_sensitive_key(raw: &[u8]) -> bool {
    let Some(key) = unescape_key(raw) else {
        return false;
    };
    let key = key.to_ascii_lowercase();
    SENSITIVE_KEYS.contains(&key.as_str()) || SENSITIVE_SUFFIXES.iter().any(|s| key.ends_with(s))
}

/// Decodes the escapes a key may use at any nesting level: a run of backslashes followed by
/// `uXXXX` is that character, followed by anything else it is that thing. None when not ASCII
/// after decoding (no sensitive key is).
fn unescape_key(raw: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c == b'\\' {
            while i < raw.len() && raw[i] == b'\\' {
                i += 1;
            }
            if raw.get(i) == Some(&b'u') && i + 5 <= raw.len() {
                let hex = std::str::from_utf8(&raw[i + 1..i + 5]).ok()?;
                let cp = u32::from_str_radix(hex, 16).ok()?;
                out.push(char::from_u32(cp).filter(char::is_ascii)?);
                i += 5;
            }
            continue;
        }
        if !c.is_ascii() {
            return None;
        }
        out.push(c as char);
        i += 1;
    }
    Some(out)
}

/// The nesting level of a quote preceded by `backslashes` backslashes.
fn level_of(backslashes: usize) -> u32 {
    (backslashes as u64).trailing_ones()
}

/// Writes a quote of nesting level `level` (`2^level - 1` backslashes, then `"`).
fn push_quote(out: &mut Vec<u8>, level: u32) {
    let n = 1usize.checked_shl(level).map_or(usize::MAX, |p| p - 1);
    out.extend(std::iter::repeat_n(b'\\', n.min(1 << 20)));
    out.push(b'"');
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

#[derive(Debug)]
enum State {
    /// Passing bytes through, watching for a sensitive key.
    Scan,
    /// After a sensitive key's closing quote: a `:` makes it a key.
    Key { level: u32 },
    /// After `<sensitive key>:`, before its value.
    Value { level: u32 },
    /// Inside a masked string value: bytes are dropped up to its closing quote.
    MaskedString { level: u32 },
    /// Inside a masked object or array value.
    Container {
        level: u32,
        depth: u32,
        inner: Inner,
    },
}

#[derive(Debug)]
enum Inner {
    /// Between strings: structure passes.
    Between,
    /// In a string that may still be a key: its raw bytes are held (up to [`KEY_MAX`]); when
    /// `dropping`, it was too long to be a key and is masked.
    Str { held: Vec<u8>, dropping: bool },
    /// A string ended (`held` up to and including its closing quote, then whitespace): a `:`
    /// makes it a key, anything else a value.
    After { held: Vec<u8>, closed_at: usize },
}

/// The streaming masker: [`feed`](Self::feed) it pieces, then [`finish`](Self::finish).
#[derive(Debug)]
pub struct Masker {
    state: State,
    /// Backslashes immediately before the current byte.
    bs: usize,
    /// Bytes since the last quote (up to [`KEY_MAX`]), to recognise a key when its closing quote
    /// arrives.
    since: Vec<u8>,
    since_overflow: bool,
    /// Nesting level of the last quote.
    last_quote: Option<u32>,
    masked: bool,
}

impl Default for Masker {
    fn default() -> Self {
        Self::new()
    }
}

impl Masker {
    pub fn new() -> Self {
        Masker {
            state: State::Scan,
            bs: 0,
            since: Vec::new(),
            since_overflow: false,
            last_quote: None,
            masked: false,
        }
    }

    /// Whether anything was masked so far.
    pub fn masked(&self) -> bool {
        self.masked
    }

    /// Masks `input`, appending the result to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len());
        for &c in input {
            self.byte(c, out);
        }
    }

    /// Ends the input: a string cut off inside a masked object is masked as a value.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let State::Container { level, inner, .. } = &mut self.state {
            match inner {
                Inner::Str {
                    dropping: false, ..
                } => {
                    out.extend_from_slice(REDACTED.as_bytes());
                    self.masked = true;
                }
                Inner::After { held, closed_at } => {
                    out.extend_from_slice(REDACTED.as_bytes());
                    push_quote(out, *level);
                    out.extend_from_slice(&held[*closed_at..]);
                    self.masked = true;
                }
                _ => {}
            }
        }
        self.state = State::Scan;
    }

    /// Tracks a byte that passes through outside masked values; returns the level of a sensitive
    /// key when `c` is the quote that closes one.
    fn track(&mut self, c: u8) -> Option<u32> {
        if c == b'"' {
            let level = level_of(self.bs);
            let name_len = self.since.len().saturating_sub(self.bs);
            let hit = !self.since_overflow
                && self.last_quote == Some(level)
                && is_sensitive_key(&self.since[..name_len]);
            self.quote_seen(level);
            return hit.then_some(level);
        }
        self.bs = if c == b'\\' { self.bs + 1 } else { 0 };
        if self.since.len() < KEY_MAX {
            self.since.push(c);
        } else {
            self.since_overflow = true;
        }
        None
    }

    fn quote_seen(&mut self, level: u32) {
        self.since.clear();
        self.since_overflow = false;
        self.last_quote = Some(level);
        self.bs = 0;
    }

    /// Whitespace between tokens at any level: plain, or escaped (`\n` at level ≥ 1).
    fn is_gap(&self, c: u8) -> bool {
        is_ws(c) || c == b'\\' || (self.bs > 0 && matches!(c, b'n' | b'r' | b't'))
    }

    fn byte(&mut self, c: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Scan => {
                out.push(c);
                if let Some(level) = self.track(c) {
                    self.state = State::Key { level };
                }
            }
            State::Key { level } => {
                if c == b':' {
                    out.push(c);
                    self.track(c);
                    self.state = State::Value { level };
                } else if self.is_gap(c) {
                    out.push(c);
                    self.track(c);
                } else {
                    self.state = State::Scan;
                    self.byte(c, out);
                }
            }
            State::Value { level } => {
                if c == b'"' && level_of(self.bs) == level {
                    out.push(c);
                    out.extend_from_slice(REDACTED.as_bytes());
                    self.masked = true;
                    self.bs = 0;
                    self.state = State::MaskedString { level };
                } else if c == b'{' || c == b'[' {
                    out.push(c);
                    self.bs = 0;
                    self.state = State::Container {
                        level,
                        depth: 1,
                        inner: Inner::Between,
                    };
                } else if self.is_gap(c) {
                    out.push(c);
                    self.track(c);
                } else {
                    // A number, literal, or malformed input: passes.
                    self.state = State::Scan;
                    self.byte(c, out);
                }
            }
            State::MaskedString { level } => match c {
                b'\\' => self.bs += 1,
                b'"' if level_of(self.bs) <= level => {
                    let closing = level_of(self.bs);
                    push_quote(out, closing);
                    self.quote_seen(closing);
                    self.state = State::Scan;
                }
                _ => self.bs = 0,
            },
            State::Container { .. } => self.container_byte(c, out),
        }
    }

    fn container_byte(&mut self, c: u8, out: &mut Vec<u8>) {
        let State::Container {
            level,
            depth,
            inner,
        } = &mut self.state
        else {
            unreachable!("called in Container state only");
        };
        let level = *level;
        match inner {
            Inner::Between => match c {
                b'\\' => {
                    out.push(c);
                    self.bs += 1;
                }
                b'"' => {
                    let q = level_of(self.bs);
                    self.bs = 0;
                    out.push(c);
                    if q < level {
                        // The string holding this (embedded) document ended: it was cut off.
                        self.quote_seen(q);
                        self.state = State::Scan;
                    } else {
                        *inner = Inner::Str {
                            held: Vec::new(),
                            dropping: false,
                        };
                    }
                }
                b'{' | b'[' => {
                    out.push(c);
                    self.bs = 0;
                    *depth += 1;
                }
                b'}' | b']' => {
                    out.push(c);
                    self.bs = 0;
                    *depth -= 1;
                    if *depth == 0 {
                        self.since.clear();
                        self.since_overflow = false;
                        self.state = State::Scan;
                    }
                }
                _ => {
                    out.push(c);
                    self.bs = 0;
                }
            },
            Inner::Str { held, dropping } => match c {
                b'\\' => {
                    self.bs += 1;
                    if !*dropping {
                        held.push(c);
                    }
                }
                b'"' if level_of(self.bs) <= level => {
                    self.bs = 0;
                    if *dropping {
                        push_quote(out, level);
                        *inner = Inner::Between;
                    } else {
                        held.push(c);
                        let closed_at = held.len();
                        *inner = Inner::After {
                            held: std::mem::take(held),
                            closed_at,
                        };
                    }
                }
                _ => {
                    self.bs = 0;
                    if !*dropping {
                        held.push(c);
                        if held.len() > KEY_MAX {
                            out.extend_from_slice(REDACTED.as_bytes());
                            self.masked = true;
                            held.clear();
                            *dropping = true;
                        }
                    }
                }
            },
            Inner::After { held, closed_at } => {
                if c == b':' {
                    // A key: it passes as it was.
                    out.extend_from_slice(held);
                    out.push(c);
                    self.bs = 0;
                    *inner = Inner::Between;
                } else if (is_ws(c)
                    || c == b'\\'
                    || (self.bs > 0 && matches!(c, b'n' | b'r' | b't')))
                    && held.len() < KEY_MAX * 2
                {
                    self.bs = if c == b'\\' { self.bs + 1 } else { 0 };
                    held.push(c);
                } else {
                    // A value: masked, then `c` is read between strings (with the backslashes
                    // held after the quote still counted in `bs`).
                    out.extend_from_slice(REDACTED.as_bytes());
                    push_quote(out, level);
                    out.extend_from_slice(&held[*closed_at..]);
                    self.masked = true;
                    *inner = Inner::Between;
                    self.container_byte(c, out);
                }
            }
        }
    }
}

/// Masks a whole text; None when nothing needed masking.
pub fn mask_text(input: &[u8]) -> Option<Vec<u8>> {
    let mut m = Masker::new();
    let mut out = Vec::with_capacity(input.len());
    m.feed(input, &mut out);
    m.finish(&mut out);
    m.masked().then_some(out)
}

/// A writer that masks what passes through it; [`finish`](Self::finish) flushes the end.
pub struct MaskingWriter<W: Write> {
    inner: W,
    masker: Masker,
    buf: Vec<u8>,
}

impl<W: Write> MaskingWriter<W> {
    pub fn new(inner: W) -> Self {
        MaskingWriter {
            inner,
            masker: Masker::new(),
            buf: Vec::new(),
        }
    }

    /// Writes what the end of input completes; returns the inner writer and whether anything
    /// was masked.
    pub fn finish(mut self) -> io::Result<(W, bool)> {
        self.buf.clear();
        self.masker.finish(&mut self.buf);
        self.inner.write_all(&self.buf)?;
        Ok((self.inner, self.masker.masked()))
    }
}

impl<W: Write> Write for MaskingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.clear();
        self.masker.feed(data, &mut self.buf);
        self.inner.write_all(&self.buf)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &str = "S3CR3T-MARK";

    fn mask(s: &str) -> String {
        String::from_utf8(mask_text(s.as_bytes()).unwrap_or_else(|| s.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn values_of_sensitive_keys_are_masked_the_rest_passes_byte_exact() {
        let input = r#"{"kind":"Secret","metadata":{"name":"db","annotations":{"team":"x"}},"data":{"password":"S3CR3T-MARK","user":"YWRt"},"type":"Opaque","token" : "S3CR3T-MARK","n":1}"#;
        let out = mask(input);
        assert!(!out.contains(MARK), "{out}");
        assert_eq!(
            out,
            r#"{"kind":"Secret","metadata":{"name":"db","annotations":{"team":"x"}},"data":{"password":"<redacted>","user":"<redacted>"},"type":"Opaque","token" : "<redacted>","n":1}"#
        );
        // Valid JSON in, valid JSON out.
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
        let harmless = r#"{"kind":"ConfigMap","metadata":{"name":"x"},"spec":{"a":"b"}}"#;
        assert_eq!(mask_text(harmless.as_bytes()), None);
    }

    #[test]
    fn cut_off_values_leave_no_prefix() {
        let input = r#"{"kind":"Event","requestObject":{"kind":"Secret","data":{"password":"S3CR3T-MARK"}}}"#;
        for cut in 0..input.len() {
            let out = String::from_utf8(
                mask_text(&input.as_bytes()[..cut])
                    .unwrap_or_else(|| input.as_bytes()[..cut].to_vec()),
            )
            .unwrap();
            assert!(!out.contains("S3CR"), "cut at {cut}: {out}");
        }
    }

    #[test]
    fn embedded_json_at_any_escape_level_is_masked() {
        let event = serde_json::json!({"kind":"Event","requestObject":{"kind":"Secret","metadata":{"annotations":{
            "kubectl.kubernetes.io/last-applied-configuration": serde_json::json!({"data":{"k": MARK}}).to_string()}},
            "data":{"k": MARK}}})
        .to_string();
        // AKS wraps the event in a string; a CloudWatch payload wraps that once more.
        let aks = serde_json::json!({"records":[{"properties":{"log": event}}]}).to_string();
        let twice = serde_json::json!({"logEvents":[{"message": aks}]}).to_string();
        for input in [&event, &aks, &twice] {
            let out = mask(input);
            assert!(!out.contains(MARK), "{out}");
            serde_json::from_str::<serde_json::Value>(&out).unwrap();
        }
        // An embedded document holding only a sensitive key deep inside, other keys kept.
        let inner = serde_json::json!({"x": serde_json::json!({"stringData": {"pw": MARK}, "keep": "yes"}).to_string()}).to_string();
        let out = mask(&inner);
        assert!(
            !out.contains(MARK) && out.contains("keep") && out.contains("yes"),
            "{out}"
        );
        assert!(out.contains(r#"\"pw\":"#), "keys inside data stay: {out}");
    }

    #[test]
    fn patches_tokens_and_unicode_escaped_keys() {
        let input = r#"[{"op":"add","path":"/data/pw","value":"S3CR3T-MARK"},{"op":"add","path":"/stringData","value":{"a":"S3CR3T-MARK","b":["S3CR3T-MARK"]}},{"status":{"token":"S3CR3T-MARK"},"spec":{"clientSecret":"S3CR3T-MARK","\u0064ata":{"k":"S3CR3T-MARK"}}}]"#;
        let out = mask(input);
        assert!(!out.contains(MARK), "{out}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
    }

    #[test]
    fn streaming_in_any_pieces_gives_the_same_output() {
        let input = serde_json::json!({"log": serde_json::json!({"data": {"k": MARK, "long": "x".repeat(600)}, "z": 1}).to_string()}).to_string();
        let whole = mask_text(input.as_bytes()).unwrap();
        for piece in [1, 2, 3, 7, 64] {
            let mut w = MaskingWriter::new(Vec::new());
            for chunk in input.as_bytes().chunks(piece) {
                w.write_all(chunk).unwrap();
            }
            let (out, masked) = w.finish().unwrap();
            assert!(masked);
            assert_eq!(out, whole, "pieces of {piece}");
        }
        assert!(!String::from_utf8(whole).unwrap().contains(MARK));
    }

    #[test]
    fn deep_nesting_is_no_problem() {
        let deep = format!(
            "{}{{\"data\":{{\"k\":\"{MARK}\"}}}}{}",
            "{\"a\":".repeat(10_000),
            "}".repeat(10_000)
        );
        let out = mask(&deep);
        assert!(!out.contains(MARK));
    }
}
