//! The file source: `audit.log` files (plain or gzip), directories of rotated logs, stdin.
//!
//! A reader thread cuts the input into chunks at line boundaries, decode workers turn chunks
//! into per-partition batches in parallel, and the calling thread feeds them, in input order,
//! to the [`LakeWriter`] (which encodes files on its own threads). Every queue is bounded, so
//! memory stays flat whatever the input size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use flate2::read::MultiGzDecoder;

use crate::decode::frame::ValueScanner;
use crate::decode::{DecodeOptions, Decoded, Decoder, SourcePosition, now_micros};
use crate::error::{IngestError, Result};
use crate::lake::Lake;
use crate::quarantine::QuarantineWriter;
use crate::writer::{CommittedFile, LakeWriter, WriterOptions};

/// One thing to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    Stdin,
}

impl Input {
    /// `-` is stdin; anything else a path.
    pub fn parse(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }

    fn name(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
            Input::Stdin => "stdin".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub decode: DecodeOptions,
    pub writer: WriterOptions,
    pub decode_threads: usize,
    /// Bytes per chunk handed to a decode worker.
    pub chunk_bytes: usize,
    /// A line longer than this is quarantined by streaming it to a sidecar file instead of
    /// being held in memory.
    pub max_line_bytes: usize,
}

impl IngestOptions {
    pub fn new(cluster: &str) -> Result<Self> {
        crate::lake::validate_cluster_name(cluster)?;
        Ok(IngestOptions {
            decode: DecodeOptions::new(cluster),
            writer: WriterOptions::default(),
            decode_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            chunk_bytes: 4 << 20,
            max_line_bytes: 256 << 20,
        })
    }
}

/// Progress of a running ingest, reported after each chunk.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Bytes read from the inputs as stored (compressed bytes for `.gz`).
    pub stored_bytes_read: u64,
    /// Total stored size of the inputs, when known (not for stdin).
    pub stored_bytes_total: Option<u64>,
    pub events: u64,
    pub rejected: u64,
}

/// What an ingest did.
#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    pub inputs: usize,
    /// Decompressed bytes read.
    pub input_bytes: u64,
    pub events: u64,
    pub rejected: u64,
    pub duplicates_skipped: u64,
    pub rows_written: u64,
    pub files: Vec<CommittedFile>,
    pub bytes_written: u64,
    pub quarantine_file: Option<PathBuf>,
    /// Inputs that failed part-way (e.g. a truncated `.gz`): what was read before the error landed.
    pub input_errors: Vec<String>,
    pub elapsed: Duration,
}

/// Expands directories into the files they hold (recursively, hidden files skipped), oldest
/// first, and checks every path exists before anything is read.
pub fn expand_inputs(inputs: &[Input]) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for input in inputs {
        match input {
            Input::Stdin => out.push(Input::Stdin),
            Input::Path(p) => {
                let meta = std::fs::metadata(p).map_err(|source| IngestError::Input {
                    path: p.clone(),
                    source,
                })?;
                if meta.is_dir() {
                    let mut files = Vec::new();
                    collect_files(p, &mut files)?;
                    // Rotated logs: oldest first, so a re-read of the live file comes last.
                    files.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
                    out.extend(files.into_iter().map(|(_, p)| Input::Path(p)));
                } else {
                    out.push(input.clone());
                }
            }
        }
    }
    Ok(out)
}

fn collect_files(dir: &Path, out: &mut Vec<(std::time::SystemTime, PathBuf)>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| IngestError::Input {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| IngestError::Input {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let meta = entry.metadata().map_err(|source| IngestError::Input {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            collect_files(&path, out)?;
        } else if meta.is_file() {
            out.push((meta.modified().unwrap_or(std::time::UNIX_EPOCH), path));
        }
    }
    Ok(())
}

pub(crate) struct Chunk {
    pub(crate) seq: u64,
    pub(crate) source: Arc<str>,
    pub(crate) first_line: u64,
    pub(crate) byte_offset: u64,
    pub(crate) data: Vec<u8>,
}

/// Counts bytes read from the underlying (possibly compressed) file.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn open_input(input: &Input, count: Arc<AtomicU64>) -> io::Result<Box<dyn Read + Send>> {
    let raw: Box<dyn Read + Send> = match input {
        Input::Stdin => Box::new(io::stdin()),
        Input::Path(p) => Box::new(File::open(p)?),
    };
    decompressing(raw, count)
}

/// `raw`, gunzipped when it starts with gzip's magic (every member, back to back); `count`
/// counts the bytes read from `raw`.
pub(crate) fn decompressing(
    raw: Box<dyn Read + Send>,
    count: Arc<AtomicU64>,
) -> io::Result<Box<dyn Read + Send>> {
    let mut buffered = BufReader::with_capacity(256 << 10, Counting { inner: raw, count });
    // gzip by magic number, not by name: rotated logs are named every which way.
    let is_gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if is_gzip {
        Box::new(BufReader::new(MultiGzDecoder::new(buffered)))
    } else {
        Box::new(buffered)
    })
}

/// Called with a line longer than `max_line_bytes`: its position, the bytes read of it so far,
/// and a reader of the rest of it (up to its newline), which it streams to quarantine without
/// holding it; returns the line's length.
pub(crate) type OversizedLine<'a> =
    dyn FnMut(SourcePosition, &[u8], &mut dyn Read) -> io::Result<usize> + 'a;

/// Reads `reader` into line-aligned chunks; returns false if the receiver went away.
/// On a read error (say a truncated `.gz`) the complete lines read so far are still sent.
pub(crate) fn read_chunks(
    mut reader: impl Read,
    source: &Arc<str>,
    opts: &IngestOptions,
    seq: &mut u64,
    send: &mut dyn FnMut(Chunk) -> bool,
    oversized: &mut OversizedLine<'_>,
    bytes_read: &mut u64,
) -> io::Result<bool> {
    let mut buf: Vec<u8> = Vec::with_capacity(opts.chunk_bytes + (64 << 10));
    let mut line = 1u64;
    let mut offset = 0u64;
    // Bytes of `buf` known to hold no newline (a line longer than a chunk is being gathered).
    let mut searched = 0usize;
    // Within such a line, where the values end (Firehose writes `{…}{…}` with no newline in the
    // whole object): the line is cut there instead of being gathered whole.
    let mut scanner = ValueScanner::new();
    let mut scanned = 0usize;
    let mut value_end = None;
    let mut eof = false;
    let mut read_error = None;
    loop {
        let target = if searched > 0 {
            buf.len() + opts.chunk_bytes
        } else {
            opts.chunk_bytes
        };
        while !eof && buf.len() < target {
            let want = (target - buf.len()) as u64;
            match (&mut reader).take(want).read_to_end(&mut buf) {
                Ok(n) => {
                    *bytes_read += n as u64;
                    eof = (n as u64) < want;
                }
                Err(e) => {
                    eof = true;
                    read_error = Some(e);
                }
            }
        }
        let cut = match (eof, &read_error) {
            // At a clean end the last line needs no newline; after an error it is suspect.
            (true, None) => (!buf.is_empty()).then_some(buf.len()),
            _ => memchr::memrchr(b'\n', &buf[searched..]).map(|p| searched + p + 1),
        };
        // No newline in a whole chunk's worth: cut after the last complete value, if any.
        let cut = cut.or_else(|| {
            if buf.len() < opts.chunk_bytes {
                return None;
            }
            scanner.feed(&buf[scanned..], |e| value_end = Some(scanned + e));
            scanned = buf.len();
            value_end
        });
        match cut {
            Some(cut) => {
                let rest = buf.split_off(cut);
                let lines = memchr::memchr_iter(b'\n', &buf).count() as u64;
                let data = std::mem::replace(&mut buf, rest);
                let len = data.len() as u64;
                *seq += 1;
                if !send(Chunk {
                    seq: *seq,
                    source: source.clone(),
                    first_line: line,
                    byte_offset: offset,
                    data,
                }) {
                    return Ok(false);
                }
                line += lines;
                offset += len;
                searched = 0;
                (scanner, scanned, value_end) = (ValueScanner::new(), 0, None);
            }
            None if eof => {
                return match read_error {
                    Some(e) => Err(e),
                    None => Ok(true),
                };
            }
            None if buf.len() >= opts.max_line_bytes => {
                // A line beyond the limit: stream it to quarantine without holding it.
                let pos = SourcePosition {
                    source: source.clone(),
                    line: Some(line),
                    byte_offset: Some(offset),
                    item: None,
                };
                let held = std::mem::take(&mut buf);
                let mut carry = Vec::new();
                let mut remainder = LineRemainder {
                    inner: &mut reader,
                    done: false,
                    found_newline: false,
                    carry: &mut carry,
                    read: bytes_read,
                };
                let streamed = oversized(pos, &held, &mut remainder)?;
                eof = !remainder.found_newline;
                offset += streamed as u64 + 1;
                line += 1;
                buf = carry;
                searched = 0;
                (scanner, scanned, value_end) = (ValueScanner::new(), 0, None);
            }
            None => searched = buf.len(),
        }
    }
}

/// Yields the rest of the current line from `inner` (up to, not including, its newline); bytes
/// after the newline are left in `carry` for the next chunk.
struct LineRemainder<'a, R: Read> {
    inner: &'a mut R,
    done: bool,
    found_newline: bool,
    carry: &'a mut Vec<u8>,
    read: &'a mut u64,
}

impl<R: Read> Read for LineRemainder<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.done || out.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(out)?;
        *self.read += n as u64;
        if n == 0 {
            self.done = true;
            return Ok(0);
        }
        match memchr::memchr(b'\n', &out[..n]) {
            Some(p) => {
                self.carry.extend_from_slice(&out[p + 1..n]);
                self.done = true;
                self.found_newline = true;
                Ok(p)
            }
            None => Ok(n),
        }
    }
}

pub(crate) fn decode_chunk(decoder: &mut Decoder, chunk: &Chunk) -> Decoded {
    decoder.set_ingested_at(now_micros());
    let mut start = 0usize;
    let mut line = chunk.first_line;
    let data = &chunk.data;
    let emit = |decoder: &mut Decoder, s: usize, e: usize, line: u64| {
        let pos = SourcePosition {
            source: chunk.source.clone(),
            line: Some(line),
            byte_offset: Some(chunk.byte_offset + s as u64),
            item: None,
        };
        decoder.decode(&data[s..e], &pos);
    };
    for nl in memchr::memchr_iter(b'\n', data) {
        emit(decoder, start, nl, line);
        start = nl + 1;
        line += 1;
    }
    if start < data.len() {
        emit(decoder, start, data.len(), line);
    }
    decoder.take()
}

/// The reader thread of [`ingest`]: cuts every input into chunks for the decoders,
/// quarantining lines over `max_line_bytes`. Returns the decompressed bytes read and the
/// inputs' errors.
fn read_inputs(
    inputs: &[Input],
    opts: &IngestOptions,
    quarantine: Arc<Mutex<QuarantineWriter>>,
    stored: Arc<AtomicU64>,
    chunk_tx: crossbeam_channel::Sender<Chunk>,
    cluster: Arc<str>,
) -> (u64, Vec<String>) {
    let mut seq = 0u64;
    let mut decompressed = 0u64;
    let mut errors = Vec::new();
    let mut send = |c: Chunk| chunk_tx.send(c).is_ok();
    for input in inputs {
        let name: Arc<str> = Arc::from(input.name());
        let mut oversized =
            |pos: SourcePosition, held: &[u8], rest: &mut dyn Read| -> io::Result<usize> {
                let mut n = 0usize;
                let reason = format!("line longer than {} bytes", opts.max_line_bytes);
                let res = quarantine.lock().expect("quarantine lock").write_streamed(
                    &cluster,
                    &reason,
                    &pos,
                    |w| {
                        w.write_all(held)?;
                        let copied = io::copy(rest, w)?;
                        n = held.len() + copied as usize;
                        Ok(n as u64)
                    },
                );
                res.map_err(io::Error::other)?;
                Ok(n)
            };
        let res = open_input(input, stored.clone()).and_then(|r| {
            read_chunks(
                r,
                &name,
                opts,
                &mut seq,
                &mut send,
                &mut oversized,
                &mut decompressed,
            )
        });
        match res {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => errors.push(format!("{}: {}", input.name(), crate::error::chain(&e))),
        }
    }
    (decompressed, errors)
}

/// Ingests files/stdin into the lake and returns what happened. Rows are durable when this
/// returns `Ok`. Interrupting it at any instant (even `kill -9`) leaves only complete files
/// visible; running it again then adds exactly the rows that were missing.
pub fn ingest(
    lake: &Lake,
    inputs: &[Input],
    opts: &IngestOptions,
    on_progress: &(dyn Fn(&Progress) + Sync),
) -> Result<IngestReport> {
    let started = Instant::now();
    let inputs = expand_inputs(inputs)?;
    let total: Option<u64> = inputs
        .iter()
        .map(|i| match i {
            Input::Path(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Input::Stdin => None,
        })
        .sum();
    let mut writer = LakeWriter::open(lake, opts.writer.clone())?;
    let quarantine = Arc::new(Mutex::new(QuarantineWriter::new(lake)));
    let stored = Arc::new(AtomicU64::new(0));
    let threads = opts.decode_threads.max(1);
    // One chunk waiting per decoder on each side keeps every core busy; deeper queues only
    // held more 4 MiB chunks and their decoded batches (peak RSS).
    let (chunk_tx, chunk_rx) = bounded::<Chunk>(threads);
    let (out_tx, out_rx) = bounded::<(u64, Decoded)>(threads);
    let mut report = IngestReport {
        inputs: inputs.len(),
        ..IngestReport::default()
    };
    let cluster = opts.decode.cluster.clone();

    let result = std::thread::scope(|scope| -> Result<()> {
        let reader = {
            let quarantine = quarantine.clone();
            let stored = stored.clone();
            let inputs = &inputs;
            scope.spawn(move || read_inputs(inputs, opts, quarantine, stored, chunk_tx, cluster))
        };
        for _ in 0..threads {
            let rx = chunk_rx.clone();
            let tx = out_tx.clone();
            let decode_opts = opts.decode.clone();
            scope.spawn(move || {
                let mut decoder = Decoder::new(decode_opts);
                for chunk in rx {
                    if tx
                        .send((chunk.seq, decode_chunk(&mut decoder, &chunk)))
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        drop(chunk_rx);
        drop(out_tx);

        // Route in input order: the first copy of a duplicated event wins, and quarantine
        // records appear in input order.
        let mut pending: BTreeMap<u64, Decoded> = BTreeMap::new();
        let mut next = 1u64;
        let mut progress = Progress {
            stored_bytes_total: total,
            ..Progress::default()
        };
        let routed = (|| -> Result<()> {
            for (seq, decoded) in &out_rx {
                pending.insert(seq, decoded);
                while let Some(decoded) = pending.remove(&next) {
                    next += 1;
                    report.events += decoded.events;
                    report.rejected += decoded.rejects.len() as u64;
                    if !decoded.rejects.is_empty() {
                        let mut q = quarantine.lock().expect("quarantine lock");
                        for r in &decoded.rejects {
                            q.write(r)?;
                        }
                    }
                    for batch in decoded.batches {
                        writer.write(batch)?;
                    }
                    progress.stored_bytes_read = stored.load(Ordering::Relaxed);
                    progress.events = report.events;
                    progress.rejected = report.rejected;
                    on_progress(&progress);
                }
            }
            Ok(())
        })();
        drop(out_rx);
        let (decompressed, errors) = reader.join().map_err(|_| IngestError::Panicked {
            thread: "reader thread",
        })?;
        report.input_bytes = decompressed;
        report.input_errors = errors;
        routed
    });
    result?;
    report.files = writer.flush()?;
    let stats = writer.stats();
    report.duplicates_skipped = stats.duplicates_skipped;
    report.rows_written = stats.rows_committed;
    report.bytes_written = stats.bytes_committed;
    drop(writer);
    let mut q = quarantine.lock().expect("quarantine lock");
    q.sync()?;
    report.quarantine_file = q.path().cloned();
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests;
