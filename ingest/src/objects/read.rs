//! Reading one object: from where the last read stopped, through the chunker, the decoders and
//! the lake writer, to the mark the checkpoint records.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStoreExt as _};

use super::{
    ObjectMark, ObjectProgress, ObjectRead, ObjectSource, Outcome, Planned, TAIL_BYTES,
    incomplete_tail, reader, same_etag, sha256_hex,
};
use crate::decode::{DecodeOptions, Decoded, Decoder, SourcePosition};
use crate::error::{IngestError, Result};
use crate::files::{Chunk, IngestOptions, decode_chunk, decompressing, read_chunks};
use crate::lake::store::block_on;
use crate::pipeline::{Pipeline, SubmitError};
use crate::quarantine::QuarantineWriter;

impl ObjectSource {
    /// Reads one object from `planned.start`, submitting what it decodes to the lake. `None`
    /// when the object changed since it was listed (read at the next poll).
    pub(super) fn read_object(
        &self,
        planned: &Planned,
        pipeline: &Pipeline,
        quarantine: &mut QuarantineWriter,
        outcome: &Arc<Outcome>,
        on_progress: &mut dyn FnMut(&ObjectProgress),
    ) -> Result<Option<ObjectRead>> {
        let meta = &planned.meta;
        let key = meta.location.to_string();
        let counted = Arc::new(AtomicU64::new(0));
        let gzip = Arc::new(AtomicBool::new(false));
        let Some((size, input)) = self.open_object(planned, &key, &counted, &gzip)? else {
            return Ok(None);
        };
        let source: Arc<str> = Arc::from(if planned.start > 0 {
            format!("{}@{}", self.object_url(&key), planned.start)
        } else {
            self.object_url(&key)
        });
        let decode_opts = self.decode_options(&key);
        let chunking = IngestOptions {
            chunk_bytes: self.opts.chunk_bytes,
            max_line_bytes: self.opts.max_line_bytes,
            ..IngestOptions::new("default")?
        };
        let threads = self.opts.decode_threads.max(1);
        let events = AtomicU64::new(0);
        let rejected = AtomicU64::new(0);
        let mut end = size;
        let mut held_back = 0u64;
        // As for files: this thread reads and cuts chunks, `threads` workers decode them, and one
        // thread hands the results to the lake writer. Every queue is bounded, so memory stays
        // flat whatever the object's size.
        std::thread::scope(|scope| -> Result<()> {
            let (chunk_tx, chunk_rx) = crossbeam_channel::bounded::<Chunk>(threads);
            let (out_tx, out_rx) = crossbeam_channel::bounded::<Decoded>(threads);
            spawn_decoders(scope, threads, &chunk_rx, &out_tx, &decode_opts);
            drop((chunk_rx, out_tx));
            let (events, rejected) = (&events, &rejected);
            let submitter =
                scope.spawn(move || submit_all(out_rx, pipeline, outcome, events, rejected));
            // The last chunk waits until the end is known: a plain object being appended to
            // may end in half a record, which stays for the next poll (a gzip object is read
            // whole: its members are complete).
            let mut held: Option<Chunk> = None;
            let mut send = |chunk: Chunk| -> bool {
                if let Some(prev) = held.replace(chunk)
                    && chunk_tx.send(prev).is_err()
                {
                    return false;
                }
                on_progress(&ObjectProgress {
                    bytes: counted.load(Ordering::Relaxed),
                    events: events.load(Ordering::Relaxed),
                    quarantined: rejected.load(Ordering::Relaxed),
                });
                true
            };
            let cluster = self.opts.decode.cluster.clone();
            let mut oversized = |pos: SourcePosition, held: &[u8], rest: &mut dyn io::Read| {
                quarantine_oversized(
                    quarantine,
                    &cluster,
                    chunking.max_line_bytes,
                    pos,
                    held,
                    rest,
                )
            };
            let (mut seq, mut decompressed) = (0u64, 0u64);
            let read = read_chunks(
                input,
                &source,
                &chunking,
                &mut seq,
                &mut send,
                &mut oversized,
                &mut decompressed,
            );
            if read.is_ok()
                && let Some(mut last) = held
            {
                if !gzip.load(Ordering::Relaxed)
                    && let Some(keep) = incomplete_tail(&last.data)
                {
                    held_back = (last.data.len() - keep) as u64;
                    last.data.truncate(keep);
                    end = size - held_back;
                }
                if !last.data.is_empty() {
                    let _ = chunk_tx.send(last);
                }
            }
            drop(chunk_tx);
            let submitted = submitter.join().map_err(|_| IngestError::Panicked {
                thread: "object submitter",
            })?;
            read.map_err(|e| IngestError::Input {
                path: self.object_url(&key).into(),
                source: e,
            })?;
            submitted
        })?;
        let mut state = ObjectProgress {
            bytes: 0,
            events: events.into_inner(),
            quarantined: rejected.into_inner(),
        };
        let mark = self.mark_at(meta, size, end)?;
        state.bytes = counted.load(Ordering::Relaxed);
        on_progress(&state);
        Ok(Some(ObjectRead {
            bytes: state.bytes,
            events: state.events,
            quarantined: state.quarantined,
            held_back,
            mark,
        }))
    }

    /// Opens the object at `planned.start`: its size, and its bytes decompressed (`counted`
    /// counts the stored bytes read, `gzip` says whether they were gzip). `None` when the
    /// object changed since it was listed.
    fn open_object(
        &self,
        planned: &Planned,
        key: &str,
        counted: &Arc<AtomicU64>,
        gzip: &Arc<AtomicBool>,
    ) -> Result<Option<(u64, Box<dyn io::Read + Send>)>> {
        let meta = &planned.meta;
        let options = GetOptions {
            range: (planned.start > 0).then_some(GetRange::Offset(planned.start)),
            ..GetOptions::default()
        };
        let got = block_on(self.store.get_opts(&meta.location, options))
            .map_err(|e| self.storage_error("read", e))?;
        if !same_etag(&got.meta.e_tag, &meta.e_tag) {
            return Ok(None);
        }
        let size = got.meta.size;
        let raw = reader::StreamReader::new(got.into_stream());
        let input = decompressing(
            Box::new(reader::Sniff::new(raw, gzip.clone())),
            counted.clone(),
        )
        .map_err(|e| IngestError::Input {
            path: self.object_url(key).into(),
            source: e,
        })?;
        Ok(Some((size, input)))
    }

    /// The mark of a read that stopped at `end`: the ETag and size it read, and the SHA-256 of
    /// the bytes before `end` (at most `TAIL_BYTES`), which the next poll checks.
    fn mark_at(&self, meta: &ObjectMeta, size: u64, end: u64) -> Result<ObjectMark> {
        let from = end.saturating_sub(TAIL_BYTES);
        let tail = if end == 0 {
            Vec::new()
        } else {
            block_on(self.store.get_range(&meta.location, from..end))
                .map_err(|e| self.storage_error("read", e))?
                .to_vec()
        };
        Ok(ObjectMark {
            etag: meta.e_tag.clone(),
            size,
            offset: end,
            tail_sha256: sha256_hex(&tail),
            modified: meta.last_modified.to_rfc3339(),
        })
    }
}

/// Starts `threads` decoders, each decoding the chunks it takes from `chunk_rx` into `out_tx`.
fn spawn_decoders<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    threads: usize,
    chunk_rx: &crossbeam_channel::Receiver<Chunk>,
    out_tx: &crossbeam_channel::Sender<Decoded>,
    decode_opts: &DecodeOptions,
) {
    for _ in 0..threads {
        let (rx, tx, opts) = (chunk_rx.clone(), out_tx.clone(), decode_opts.clone());
        scope.spawn(move || {
            let mut decoder = Decoder::new(opts);
            for chunk in rx {
                if tx.send(decode_chunk(&mut decoder, &chunk)).is_err() {
                    break;
                }
            }
        });
    }
}

/// Quarantines a line longer than `max_line_bytes` as it streams: the bytes held, then the rest
/// of the line. Returns the line's length.
fn quarantine_oversized(
    quarantine: &mut QuarantineWriter,
    cluster: &str,
    max_line_bytes: usize,
    pos: SourcePosition,
    held: &[u8],
    rest: &mut dyn io::Read,
) -> io::Result<usize> {
    let mut n = 0usize;
    let reason = format!("line longer than {max_line_bytes} bytes");
    quarantine
        .write_streamed(cluster, &reason, &pos, |w| {
            w.write_all(held)?;
            let copied = io::copy(rest, w)?;
            n = held.len() + copied as usize;
            Ok(n as u64)
        })
        .map_err(io::Error::other)?;
    Ok(n)
}

/// Hands every decoded chunk to the lake writer, counting its events and rejects.
fn submit_all(
    out_rx: crossbeam_channel::Receiver<Decoded>,
    pipeline: &Pipeline,
    outcome: &Arc<Outcome>,
    events: &AtomicU64,
    rejected: &AtomicU64,
) -> Result<()> {
    let mut failed = None;
    for decoded in out_rx {
        // After a refusal, keep draining so the workers and the reader finish.
        if failed.is_some() {
            continue;
        }
        events.fetch_add(decoded.events, Ordering::Relaxed);
        rejected.fetch_add(decoded.rejects.len() as u64, Ordering::Relaxed);
        if let Err(e) = submit_direct(pipeline, decoded, outcome) {
            failed = Some(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Hands decoded events to the lake writer, waiting while it is over its memory bound.
fn submit_direct(
    pipeline: &Pipeline,
    decoded: crate::decode::Decoded,
    outcome: &Arc<Outcome>,
) -> Result<()> {
    loop {
        match pipeline.refusal() {
            None => break,
            Some(SubmitError::Overloaded(_)) => std::thread::sleep(Duration::from_millis(50)),
            Some(refusal @ SubmitError::Unavailable(_)) => {
                return Err(IngestError::Refused(refusal));
            }
        }
    }
    let outcome = outcome.clone();
    let done = Box::new(move |ok: bool| {
        if !ok {
            outcome.lost.fetch_add(1, Ordering::AcqRel);
        }
    });
    pipeline
        .submit_direct(decoded, done)
        .map_err(IngestError::Refused)
}
