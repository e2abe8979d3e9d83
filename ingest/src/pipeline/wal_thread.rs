//! The WAL thread: appends submitted requests in groups with one fdatasync per group, acks
//! them, hands them to the flush thread, and removes segments once checkpointed.

use super::*;

pub(super) struct WalState {
    pub(super) dir: PathBuf,
    pub(super) next_seq: u64,
    pub(super) active: Option<Segment>,
    /// Full segments: path, last seq, bytes.
    pub(super) closed: VecDeque<(PathBuf, u64, u64)>,
    /// Set when an append failed and the segment could not be restored: nothing more is accepted.
    /// The segment, and why it could not be cut back.
    pub(super) broken: Option<(PathBuf, String)>,
}

impl WalState {
    /// The error every append gets once the WAL is broken.
    fn broken_error(&self) -> Option<IngestError> {
        self.broken
            .as_ref()
            .map(|(segment, reason)| IngestError::WalUnrestorable {
                segment: segment.clone(),
                reason: reason.clone(),
            })
    }

    fn checkpoint(&mut self, upto: u64, shared: &Shared) -> Result<()> {
        while let Some((path, last, bytes)) = self.closed.front().cloned() {
            if last > upto {
                break;
            }
            wal::remove_segment(&path)?;
            shared.wal_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.closed.pop_front();
        }
        if let Some(seg) = &self.active
            && seg.last_seq != 0
            && seg.last_seq <= upto
        {
            wal::remove_segment(&seg.path)?;
            shared.wal_bytes.fetch_sub(seg.bytes, Ordering::Relaxed);
            self.active = None;
        }
        Ok(())
    }

    /// Appends a group durably. On failure the segment is cut back to its last good length.
    fn append_group(
        &mut self,
        buf: &[u8],
        first_seq: u64,
        last_seq: u64,
        opts: &PipelineOptions,
        shared: &Shared,
    ) -> Result<()> {
        if let Some(e) = self.broken_error() {
            return Err(e);
        }
        if self
            .active
            .as_ref()
            .is_some_and(|s| s.bytes >= opts.wal_segment_bytes)
        {
            let seg = self.active.take().expect("checked");
            self.closed
                .push_back((seg.path.clone(), seg.last_seq, seg.bytes));
        }
        if self.active.is_none() {
            let seg = Segment::create(&self.dir, first_seq)?;
            shared.wal_bytes.fetch_add(seg.bytes, Ordering::Relaxed);
            self.active = Some(seg);
        }
        let seg = self.active.as_mut().expect("created above");
        let good = seg.bytes;
        match seg.append_durable(buf, last_seq) {
            Ok(()) => Ok(()),
            Err(e) => {
                // A partial write must not stay in front of later records: cut it off, and start a
                // new segment for the next group.
                let cut = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&seg.path)
                    .and_then(|f| {
                        f.set_len(good)?;
                        f.sync_all()
                    });
                if let Err(cut_err) = cut {
                    self.broken = Some((seg.path.clone(), cut_err.to_string()));
                }
                let seg = self.active.take().expect("present");
                if seg.last_seq != 0 {
                    self.closed.push_back((seg.path, seg.last_seq, good));
                } else {
                    let _ = wal::remove_segment(&seg.path);
                    shared.wal_bytes.fetch_sub(good, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }
}

/// Memory a decoded request holds until the lake writer takes it (the queued-data limit).
pub(super) fn memory_size(decoded: &Decoded) -> u64 {
    let batches: u64 = decoded
        .batches
        .iter()
        .map(|b| b.batch.get_array_memory_size() as u64)
        .sum();
    let rejects: u64 = decoded.rejects.iter().map(|r| r.raw.len() as u64).sum();
    batches + rejects
}

pub(super) fn free_disk_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

pub(super) fn wal_loop(
    mut state: WalState,
    rx: Receiver<WalMsg>,
    flush_tx: Sender<FlushMsg>,
    shared: &Shared,
    opts: &PipelineOptions,
    observer: &dyn PipelineObserver,
) -> WalState {
    let mut last_disk_check = Instant::now() - Duration::from_secs(60);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut group: Vec<(u64, u64, u64, Decoded, Ack)> = Vec::new();
    let mut stop = false;
    while !stop {
        if last_disk_check.elapsed() >= Duration::from_millis(500) {
            last_disk_check = Instant::now();
            check_disk(&state, shared, opts);
        }
        let first = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut next = Some(first);
        buf.clear();
        // Group commit: everything queued while the previous fsync ran shares the next one.
        while let Some(msg) = next.take() {
            match msg {
                WalMsg::Append {
                    mut record,
                    decoded,
                    decoded_bytes,
                    ack,
                } => {
                    record.seq = state.next_seq;
                    state.next_seq += 1;
                    let before = buf.len();
                    record.encode(&mut buf);
                    let len = (buf.len() - before) as u64;
                    group.push((record.seq, len, decoded_bytes, decoded, ack));
                }
                WalMsg::Checkpoint(upto) => {
                    if let Err(e) = state.checkpoint(upto, shared) {
                        observer.failed("wal checkpoint", &crate::error::chain(&e));
                    }
                }
                WalMsg::Stop => stop = true,
            }
            if buf.len() >= opts.max_group_bytes || stop {
                break;
            }
            next = match rx.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => None,
            };
        }
        if group.is_empty() {
            continue;
        }
        let (first_seq, last_seq) = (group[0].0, group.last().expect("non-empty").0);
        let started = Instant::now();
        let result = state.append_group(&buf, first_seq, last_seq, opts, shared);
        let n = group.len();
        match result {
            Ok(()) => {
                observer.group_committed(n, buf.len(), started.elapsed());
                for (seq, len, decoded_bytes, decoded, ack) in group.drain(..) {
                    observer.durable(&decoded);
                    let _ = flush_tx.send(FlushMsg::Data {
                        seq,
                        body_bytes: len,
                        decoded_bytes,
                        decoded,
                    });
                    ack(Ok(Durable { seq, group: n }));
                }
            }
            Err(e) => {
                let failed = NotDurable::Append(Arc::new(e));
                observer.failed("wal append", &crate::error::chain(&failed));
                for (_, len, decoded_bytes, _, ack) in group.drain(..) {
                    shared.wal_bytes.fetch_sub(len, Ordering::Relaxed);
                    shared
                        .queued_bytes
                        .fetch_sub(decoded_bytes, Ordering::Relaxed);
                    ack(Err(failed.clone()));
                }
                if let Some(broken) = state.broken_error() {
                    *shared.failure.lock().expect("failure lock") = Some(broken.to_string());
                }
            }
        }
    }
    refuse_queued(&rx, shared);
    state
}

/// Flags the pipeline low on disk when the WAL's filesystem has less than `min_free_disk_bytes`.
fn check_disk(state: &WalState, shared: &Shared, opts: &PipelineOptions) {
    let dir = if state.dir.exists() {
        state.dir.as_path()
    } else {
        state.dir.parent().unwrap_or(&state.dir)
    };
    if let Some(free) = free_disk_bytes(dir) {
        shared
            .low_disk
            .store(free < opts.min_free_disk_bytes, Ordering::Relaxed);
    }
}

/// Refuses what is still queued (shutdown): those senders get an error and retry elsewhere.
fn refuse_queued(rx: &Receiver<WalMsg>, shared: &Shared) {
    while let Ok(msg) = rx.try_recv() {
        if let WalMsg::Append {
            record,
            decoded_bytes,
            ack,
            ..
        } = msg
        {
            shared
                .wal_bytes
                .fetch_sub(record.encoded_len() as u64, Ordering::Relaxed);
            shared
                .queued_bytes
                .fetch_sub(decoded_bytes, Ordering::Relaxed);
            ack(Err(NotDurable::ShuttingDown));
        }
    }
}
