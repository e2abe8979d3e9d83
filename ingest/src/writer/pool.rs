//! The encoder pool: jobs (a row group, or a whole file of late rows) go to the encoder
//! threads and their results come back in order; the memory trimming the threads do.

use std::path::PathBuf;

use arrow::record_batch::RecordBatch;

use crate::decode::PartitionKey;
use crate::error::{IngestError, Result};

use super::*;

pub(super) struct EncodeJob {
    pub(super) partition: PartitionKey,
    pub(super) batches: Vec<RecordBatch>,
    pub(super) target: String,
    pub(super) tmp: PathBuf,
}

/// One row group of an open file: `order` lists the (batch, row) pairs in `stage_at` order
/// (`None`: the batches are in order as they are).
pub(super) struct RowGroupJob {
    pub(super) partition: PartitionKey,
    pub(super) file_id: u64,
    pub(super) index: usize,
    pub(super) batches: Vec<RecordBatch>,
    pub(super) order: Option<Vec<(usize, usize)>>,
    pub(super) tmp: PathBuf,
}

pub(super) enum Job {
    /// A whole file (late rows), committed by the encoder thread.
    File(EncodeJob),
    RowGroup(RowGroupJob),
}

pub(super) enum Encoded {
    File(Result<CommittedFile>),
    /// The encoder panicked (a bug); the message of the panic.
    Panicked(String),
    RowGroup {
        partition: PartitionKey,
        file_id: u64,
        index: usize,
        result: Result<EncodedRowGroup>,
    },
}

impl LakeWriter {
    /// Queues a job, first waiting for one to finish when the pool is busy (bounds memory).
    pub(super) fn submit(&mut self, job: Job) -> Result<()> {
        while self.in_flight >= self.opts.encoder_threads.max(1) {
            self.receive_one()?;
        }
        let jobs = self.jobs.as_ref().ok_or(IngestError::EncoderGone)?;
        jobs.send(job).map_err(|_| IngestError::EncoderGone)?;
        self.in_flight += 1;
        Ok(())
    }

    pub(super) fn collect_finished(&mut self, wait_all: bool) -> Result<()> {
        if wait_all {
            while self.in_flight > 0 {
                self.receive_one()?;
            }
        } else {
            while let Ok(res) = self.results.try_recv() {
                self.in_flight -= 1;
                self.accept_result(res)?;
            }
        }
        Ok(())
    }

    pub(super) fn receive_one(&mut self) -> Result<()> {
        let res = self.results.recv().map_err(|_| IngestError::EncoderGone)?;
        self.in_flight -= 1;
        self.accept_result(res)
    }

    pub(super) fn accept_result(&mut self, done: Encoded) -> Result<()> {
        let appended = match done {
            Encoded::File(Ok(file)) => self.accept_committed(file),
            Encoded::File(Err(e)) => Err(e),
            Encoded::Panicked(what) => Err(IngestError::EncoderPanicked(what)),
            Encoded::RowGroup {
                partition,
                file_id,
                index,
                result,
            } => result.and_then(|rg| self.append_row_group(&partition, file_id, index, rg)),
        };
        appended.map_err(|e| self.poison(e))
    }
}

/// Hands memory freed by the allocator back to the OS when the process holds more than
/// [`TRIM_ABOVE_RSS`]. glibc keeps freed memory in per-thread arenas: decoder and encoder threads
/// each free a file's worth of Arrow buffers per file, and the process held ~2× its live heap
/// (heaptrack: 234 MB live at the peak of a 300k-event ingest). Trimming after every file cost
/// 40 % more time (the pages are faulted in and zeroed again), so only above the mark.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if resident_bytes().is_some_and(|rss| rss > TRIM_ABOVE_RSS) {
        // SAFETY: malloc_trim only releases free pages of glibc's own heaps; it touches no
        // live allocation and is thread-safe.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Above this resident size the encoder threads return freed memory to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(super) const TRIM_ABOVE_RSS: u64 = 384 << 20;

/// This process's resident memory, from `/proc/self/statm` (Linux); `None` where there is none.
/// Also what the Ballista executors export as a metric.
pub fn resident_bytes() -> Option<u64> {
    // `/proc/self/statm`: size resident shared text lib data dt, in pages.
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
