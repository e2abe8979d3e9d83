//! The flush thread (lake writer + quarantine, flush by time/rows/bytes, checkpoint the WAL,
//! recover from a failed flush) and the compaction loop whose results it swaps in.

use super::*;

/// Every `every`: prepares the compaction of each closed partition that needs one (outside the
/// writer), hands it to the flush thread to swap in, and waits for the outcome.
pub(super) fn compact_loop(
    lake: &Lake,
    opts: &CompactOptions,
    every: Duration,
    shared: &Shared,
    requests: Sender<CompactRequest>,
    observer: &dyn PipelineObserver,
) {
    let stopping = || shared.stopping.load(Ordering::Acquire);
    let mut next = Instant::now() + every;
    while !stopping() {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(100).min(every));
            continue;
        }
        next = Instant::now() + every;
        let cutoff = crate::decode::now_micros() - opts.min_age_secs * 1_000_000;
        let partitions = match compact::closed_partitions(lake, cutoff) {
            Ok(p) => p,
            Err(e) => {
                observer.failed("compact", &crate::error::chain(&e));
                continue;
            }
        };
        for dir in partitions {
            if stopping() {
                return;
            }
            let prepared = match compact::prepare(lake, &dir, opts, &stopping) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) => {
                    observer.failed("compact", &crate::error::chain(&e));
                    continue;
                }
            };
            let (reply, outcome) = crossbeam_channel::bounded(1);
            if requests.send(CompactRequest { prepared, reply }).is_err() {
                return;
            }
            match outcome.recv() {
                Ok(Ok(report)) => observer.compacted(&report),
                Ok(Err(e)) => observer.failed("compact", &crate::error::chain(&e)),
                Err(_) => return,
            }
        }
    }
}

pub(super) struct Flusher {
    pub(super) lake: Lake,
    pub(super) opts: PipelineOptions,
    pub(super) shared: Arc<Shared>,
    pub(super) observer: Arc<dyn PipelineObserver>,
    pub(super) writer: Option<LakeWriter>,
    pub(super) quarantine: QuarantineWriter,
    pub(super) checkpoint: Sender<WalMsg>,
    /// Highest seq handed to the writer.
    pub(super) last_received: u64,
    /// Records up to this seq were replayed from disk during recovery: skip their in-memory copy.
    pub(super) skip_upto: u64,
    /// Damaged WAL ranges already quarantined by a recovery (segment, offset).
    pub(super) damage_reported: HashSet<(PathBuf, u64)>,
    pub(super) pending_rows: u64,
    pub(super) pending_bytes: u64,
    pub(super) pending_since: Option<Instant>,
    pub(super) last_attempt: Instant,
    /// Direct submissions in the writer, waiting for the next flush.
    pub(super) waiting: Vec<Flushed>,
}

impl Flusher {
    pub(super) fn run(
        &mut self,
        rx: Receiver<FlushMsg>,
        compact_rx: Receiver<CompactRequest>,
    ) -> Result<u64> {
        loop {
            if let Ok(req) = compact_rx.try_recv() {
                let result = self.finish_compaction(req.prepared);
                let _ = req.reply.send(result);
            }
            let wait = match self.pending_since {
                Some(since) => self.opts.flush_interval.saturating_sub(since.elapsed()),
                None => Duration::from_millis(500),
            }
            .max(Duration::from_millis(1));
            match rx.recv_timeout(wait) {
                Ok(FlushMsg::Data {
                    seq,
                    body_bytes,
                    decoded_bytes,
                    decoded,
                }) => {
                    self.shared
                        .queued_bytes
                        .fetch_sub(decoded_bytes, Ordering::Relaxed);
                    if seq <= self.skip_upto || self.writer.is_none() {
                        // Already replayed from disk, or failed: recovery replays it from the WAL.
                        continue;
                    }
                    let writer = self.writer.as_mut().expect("checked");
                    match apply(
                        decoded,
                        writer,
                        &mut self.quarantine,
                        self.observer.as_ref(),
                    ) {
                        Ok(rows) => {
                            self.last_received = seq;
                            self.pending_rows += rows;
                            self.pending_bytes += body_bytes;
                            self.pending_since.get_or_insert_with(Instant::now);
                        }
                        Err(e) => self.fail("write", &e),
                    }
                }
                Ok(FlushMsg::Direct {
                    decoded_bytes,
                    decoded,
                    done,
                }) => {
                    self.shared
                        .queued_bytes
                        .fetch_sub(decoded_bytes, Ordering::Relaxed);
                    let Some(writer) = self.writer.as_mut() else {
                        done(false);
                        continue;
                    };
                    match apply(
                        decoded,
                        writer,
                        &mut self.quarantine,
                        self.observer.as_ref(),
                    ) {
                        Ok(rows) => {
                            self.pending_rows += rows;
                            self.pending_bytes += decoded_bytes;
                            self.pending_since.get_or_insert_with(Instant::now);
                            self.waiting.push(done);
                        }
                        Err(e) => {
                            done(false);
                            self.fail("write", &e);
                        }
                    }
                }
                Ok(FlushMsg::FlushNow(reply)) => {
                    let _ = reply.send(self.flush_now());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.writer.is_none() {
                if self.last_attempt.elapsed() >= self.opts.retry_interval {
                    self.recover();
                }
                continue;
            }
            let due = self.pending_rows >= self.opts.flush_rows
                || self.pending_bytes >= self.opts.flush_bytes
                || self
                    .pending_since
                    .is_some_and(|s| s.elapsed() >= self.opts.flush_interval);
            if due && let Err(e) = self.flush() {
                self.fail("flush", &e);
            }
        }
        self.finish()
    }

    /// A flush asked for (`Pipeline::flush`): refused while the writer is recovering.
    fn flush_now(&mut self) -> std::result::Result<(), FlushFailed> {
        match self.writer.is_some() {
            false => Err(FlushFailed::Recovering),
            true => self.flush().map_err(|e| {
                self.fail("flush", &e);
                FlushFailed::Flush(Arc::new(e))
            }),
        }
    }

    /// Shutdown: everything the WAL accepted is in the channel we just drained. Returns the
    /// highest seq in the lake.
    fn finish(&mut self) -> Result<u64> {
        if self.writer.is_none() {
            self.recover();
        } else if let Err(e) = self.flush() {
            self.fail("flush", &e);
        }
        match (
            &self.writer,
            self.shared.failure.lock().expect("failure lock").clone(),
        ) {
            (Some(_), _) => Ok(self.last_received.max(self.skip_upto)),
            (None, reason) => Err(IngestError::FinalFlushFailed {
                reason: reason.unwrap_or_default(),
            }),
        }
    }

    fn flush(&mut self) -> Result<()> {
        let started = Instant::now();
        let writer = self.writer.as_mut().expect("flush with a writer");
        let before = writer.stats().duplicates_skipped;
        let files = writer.flush()?;
        self.quarantine.sync()?;
        let dups = writer.stats().duplicates_skipped - before;
        if dups > 0 {
            self.observer.duplicates_skipped(dups);
        }
        let rows = files.iter().map(|f| f.rows as u64).sum();
        if self.pending_since.is_some() {
            self.observer.flushed(rows, files.len(), started.elapsed());
        }
        self.pending_rows = 0;
        self.pending_bytes = 0;
        self.pending_since = None;
        for done in self.waiting.drain(..) {
            done(true);
        }
        let upto = self.last_received.max(self.skip_upto);
        if upto > 0 {
            let _ = self.checkpoint.send(WalMsg::Checkpoint(upto));
        }
        Ok(())
    }

    /// Swaps a prepared compaction in. Flushing first leaves no encode in flight, so no file can
    /// be committed into the partition during the swap.
    fn finish_compaction(&mut self, prepared: Prepared) -> Result<CompactReport> {
        if self.writer.is_none() {
            return Err(IngestError::WriterRecovering);
        }
        if let Err(e) = self.flush() {
            self.fail("flush", &e);
            return Err(e);
        }
        compact::finish(&self.lake, prepared)
    }

    fn fail(&mut self, what: &str, e: &IngestError) {
        let msg = format!(
            "lake {what} failed: {}; retrying every {:?}",
            crate::error::chain(e),
            self.opts.retry_interval
        );
        self.observer.failed(what, &msg);
        *self.shared.failure.lock().expect("failure lock") = Some(msg);
        // Dropping the writer releases the lake lock and its buffers; the WAL still holds all
        // WAL data, and direct sources re-read theirs from their own log.
        self.writer = None;
        for done in self.waiting.drain(..) {
            done(false);
        }
        self.quarantine = QuarantineWriter::new(&self.lake);
        self.pending_rows = 0;
        self.pending_bytes = 0;
        self.pending_since = None;
        self.last_attempt = Instant::now();
    }

    /// Reopens the writer and replays the whole WAL from disk into the lake.
    fn recover(&mut self) {
        self.last_attempt = Instant::now();
        let attempt = (|| -> Result<(LakeWriter, Option<u64>)> {
            let mut writer = LakeWriter::open(&self.lake, self.opts.writer.clone())?;
            let (_, last) = replay_into(
                &self.opts,
                wal::TornTail::Stop,
                &mut writer,
                &mut self.quarantine,
                self.observer.as_ref(),
                &mut self.damage_reported,
            )?;
            Ok((writer, last))
        })();
        match attempt {
            Ok((writer, last)) => {
                self.writer = Some(writer);
                self.skip_upto = self.skip_upto.max(last.unwrap_or(0));
                self.last_received = self.last_received.max(self.skip_upto);
                *self.shared.failure.lock().expect("failure lock") = None;
                self.observer.recovered();
                let _ = self.checkpoint.send(WalMsg::Checkpoint(self.skip_upto));
            }
            Err(e) => {
                let msg = format!(
                    "lake recovery failed: {}; retrying every {:?}",
                    crate::error::chain(&e),
                    self.opts.retry_interval
                );
                self.observer.failed("recover", &msg);
                *self.shared.failure.lock().expect("failure lock") = Some(msg);
                self.quarantine = QuarantineWriter::new(&self.lake);
            }
        }
    }
}
