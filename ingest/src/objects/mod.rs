//! The object-storage source: audit logs where the managed clouds export them.
//!
//! - **AKS** diagnostic settings → a storage account: append blobs
//!   `insights-logs-kube-audit/resourceId=/…/MANAGEDCLUSTERS/<NAME>/y=…/m=…/d=…/h=…/m=00/PT1H.json`
//!   that grow through the hour, one record per line.
//! - **EKS** CloudWatch Logs → Firehose → S3: objects of gzip members or JSON values back to
//!   back, no delimiter ([`crate::decode::frame`]).
//! - **GKE** Cloud Logging sink → Cloud Storage: hourly files of one `LogEntry` per line.
//!
//! One poll lists the prefix, compares every object with the [`Checkpoint`] and reads what is
//! new or grown, streaming (bounded memory whatever the object's size) through the file
//! source's chunker and decoder into the lake's [`Pipeline`] (the same writer `serve`'s other
//! sources use). The checkpoint advances only after the lake commit that holds what was read,
//! like Kafka offsets: a `kill -9` at any point re-reads at most the uncommitted part, and the
//! dedup key drops the repeats.
//!
//! A poll is meant to run in one process per source: two pollers of one source both read
//! every object (dedup keeps a single writer exactly-once; two writers may store a repeat until
//! the partition's next compaction removes it).

pub mod checkpoint;
mod read;
mod reader;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt as _};
use sha2::{Digest, Sha256};
use url::Url;

use crate::decode::{DecodeOptions, Reject, SourcePosition};
use crate::error::{IngestError, Result};
use crate::files::IngestOptions;
use crate::lake::Lake;
use crate::lake::store::{block_on, build_store, parse_lake_url, path_in_store};
use crate::pipeline::Pipeline;
use crate::quarantine::QuarantineWriter;
pub use checkpoint::{Checkpoint, ObjectMark, TAIL_BYTES};

/// How one object-storage source is read.
#[derive(Clone)]
pub struct ObjectSourceOptions {
    /// `s3://bucket/prefix/`, `gs://…`, `az://…` (ends in `/`).
    pub url: Url,
    /// Store settings over the environment's (`object_store` keys, as `[lake.storage]`).
    pub storage: HashMap<String, String>,
    /// Decoding: the bound cluster (with `envelope_cluster` off) or the fallback one.
    pub decode: DecodeOptions,
    /// Chunking of each object (as for files).
    pub chunk_bytes: usize,
    pub max_line_bytes: usize,
    /// Flush the lake and advance the checkpoint after this many stored bytes.
    pub round_bytes: u64,
    /// Decode workers per object read.
    pub decode_threads: usize,
}

/// By hand: `storage` may hold credentials; only its keys are shown.
impl std::fmt::Debug for ObjectSourceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<&String> = self.storage.keys().collect();
        keys.sort();
        f.debug_struct("ObjectSourceOptions")
            .field("url", &self.url.as_str())
            .field("storage_keys", &keys)
            .field("decode", &self.decode)
            .field("round_bytes", &self.round_bytes)
            .finish_non_exhaustive()
    }
}

impl ObjectSourceOptions {
    pub fn new(url: &str, decode: DecodeOptions) -> Result<Self> {
        let url = parse_lake_url(url)?;
        let files = IngestOptions::new("default")?;
        Ok(ObjectSourceOptions {
            url,
            storage: HashMap::new(),
            decode,
            chunk_bytes: files.chunk_bytes,
            max_line_bytes: files.max_line_bytes,
            round_bytes: 256 << 20,
            decode_threads: files.decode_threads,
        })
    }
}

/// An object to read, and from where.
#[derive(Debug, Clone)]
pub struct Planned {
    pub meta: ObjectMeta,
    /// First stored byte to read.
    pub start: u64,
    /// Why it is read again from the start, when it is.
    pub rewritten: Option<String>,
}

/// What a listing found to read.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Key order, which is time order within each cloud's layout.
    pub objects: Vec<Planned>,
    pub listed: u64,
    pub lag_seconds: f64,
    /// Checkpointed objects no longer in the bucket.
    pub gone: Vec<String>,
}

/// What one poll found and did.
#[derive(Debug, Clone, Default)]
pub struct PollReport {
    /// Checkpoint entries dropped because their objects left the bucket.
    pub forgotten: u64,
    pub objects_listed: u64,
    pub objects_read: u64,
    /// Stored (compressed) bytes read.
    pub bytes_read: u64,
    pub events: u64,
    pub quarantined: u64,
    /// Objects found rewritten since they were read (reported, then read again).
    pub rewritten: Vec<String>,
    /// Objects that changed between listing and reading: left for the next poll.
    pub changed_while_read: u64,
    /// Bytes of incomplete last records left for the next poll (objects still being appended).
    pub held_back: u64,
    /// Newest listed object's modification time − newest fully read object's, seconds.
    pub lag_seconds: f64,
    pub elapsed: Duration,
}

/// Progress of a poll, after each chunk.
#[derive(Debug, Clone, Default)]
pub struct PollProgress {
    pub bytes_read: u64,
    pub bytes_total: u64,
    pub events: u64,
    pub quarantined: u64,
}

/// One object-storage source and its checkpoint.
pub struct ObjectSource {
    opts: ObjectSourceOptions,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    /// Keys under the lake's own prefix, when the lake lives inside the source's prefix: never
    /// read as input.
    lake_prefix: Option<String>,
    lake: Lake,
    state_name: String,
    checkpoint: Checkpoint,
}

impl std::fmt::Debug for ObjectSource {
    // By hand: a store's `Debug` prints its credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectSource")
            .field("url", &self.opts.url.as_str())
            .field("objects_checkpointed", &self.checkpoint.objects.len())
            .finish_non_exhaustive()
    }
}

impl ObjectSource {
    /// Connects to the source's store and loads its checkpoint from the lake.
    pub fn open(lake: &Lake, opts: ObjectSourceOptions) -> Result<Self> {
        let store = build_store(&opts.url, &opts.storage)?;
        Self::with_store(lake, opts, store)
    }

    /// As [`open`](Self::open), over a given store (tests use an in-memory one).
    pub fn with_store(
        lake: &Lake,
        opts: ObjectSourceOptions,
        store: Arc<dyn ObjectStore>,
    ) -> Result<Self> {
        let prefix = path_in_store(&opts.url);
        let lake_url = lake.url();
        let lake_prefix = (lake_url.scheme() == opts.url.scheme()
            && lake_url.host_str() == opts.url.host_str())
        .then(|| path_in_store(lake_url).to_string());
        let state_name = checkpoint::state_name(opts.url.as_str());
        let checkpoint = Checkpoint::load(lake, &state_name, opts.url.as_str())?;
        Ok(ObjectSource {
            opts,
            store,
            prefix,
            lake_prefix,
            lake: lake.clone(),
            state_name,
            checkpoint,
        })
    }

    pub fn url(&self) -> &Url {
        &self.opts.url
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    fn storage_error(&self, what: &str, source: object_store::Error) -> IngestError {
        IngestError::Storage {
            location: format!("{} ({what})", self.opts.url),
            source: Box::new(source),
        }
    }

    /// Lists the source and says what is to be read: new objects, grown ones from where the
    /// last read stopped, rewritten ones from the start. Key order, which is time order within
    /// each cloud's layout.
    pub fn plan(&self) -> Result<Plan> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let mut listed: Vec<ObjectMeta> = block_on(self.store.list(prefix).try_collect())
            .map_err(|e| self.storage_error("list", e))?;
        listed.retain(|m| {
            let key = m.location.as_ref();
            let hidden = m
                .location
                .filename()
                .is_some_and(|n| n.starts_with('.') || n.starts_with('_'));
            let in_lake = self
                .lake_prefix
                .as_deref()
                .is_some_and(|lp| lp.is_empty() || key.starts_with(&format!("{lp}/")));
            m.size > 0 && !hidden && !in_lake
        });
        listed.sort_by(|a, b| a.location.cmp(&b.location));
        let count = listed.len() as u64;
        let present: std::collections::HashSet<&str> =
            listed.iter().map(|m| m.location.as_ref()).collect();
        let gone: Vec<String> = self
            .checkpoint
            .objects
            .keys()
            .filter(|k| !present.contains(k.as_str()))
            .cloned()
            .collect();
        let newest_listed = listed.iter().map(|m| m.last_modified).max();
        let newest_read = self
            .checkpoint
            .objects
            .values()
            .filter(|m| m.offset >= m.size)
            .filter_map(|m| DateTime::parse_from_rfc3339(&m.modified).ok())
            .map(|t| t.with_timezone(&Utc))
            .max();
        let lag = match (newest_listed, newest_read) {
            (Some(l), Some(r)) => (l - r).num_milliseconds().max(0) as f64 / 1e3,
            (Some(l), None) => (Utc::now() - l).num_milliseconds().max(0) as f64 / 1e3,
            _ => 0.0,
        };
        let mut plan = Vec::new();
        for meta in listed {
            let Some(mark) = self.checkpoint.objects.get(meta.location.as_ref()) else {
                plan.push(Planned {
                    meta,
                    start: 0,
                    rewritten: None,
                });
                continue;
            };
            if same_etag(&mark.etag, &meta.e_tag) && mark.size == meta.size {
                continue; // unchanged since it was read
            }
            let rewritten = if meta.size == mark.size {
                // Same size, another etag: appends only ever grow an object.
                Some(format!(
                    "same size ({} bytes), etag {} → {}",
                    meta.size,
                    etag_text(&mark.etag),
                    etag_text(&meta.e_tag)
                ))
            } else if meta.size < mark.offset {
                Some(format!(
                    "shrank from {} to {} bytes (etag {} → {})",
                    mark.size,
                    meta.size,
                    etag_text(&mark.etag),
                    etag_text(&meta.e_tag)
                ))
            } else if !self.tail_matches(&meta, mark)? {
                Some(format!(
                    "the {} bytes before offset {} changed (etag {} → {}, size {} → {})",
                    mark.offset.min(TAIL_BYTES),
                    mark.offset,
                    etag_text(&mark.etag),
                    etag_text(&meta.e_tag),
                    mark.size,
                    meta.size
                ))
            } else {
                None
            };
            let start = if rewritten.is_some() { 0 } else { mark.offset };
            if start < meta.size {
                plan.push(Planned {
                    meta,
                    start,
                    rewritten,
                });
            }
        }
        Ok(Plan {
            objects: plan,
            listed: count,
            lag_seconds: lag,
            gone,
        })
    }

    /// Whether the bytes before `mark.offset` are still those that were read.
    fn tail_matches(&self, meta: &ObjectMeta, mark: &ObjectMark) -> Result<bool> {
        let from = mark.offset.saturating_sub(TAIL_BYTES);
        if mark.offset == 0 {
            return Ok(true);
        }
        let bytes = block_on(self.store.get_range(&meta.location, from..mark.offset))
            .map_err(|e| self.storage_error("read", e))?;
        Ok(sha256_hex(&bytes) == mark.tail_sha256)
    }

    /// Reads everything new once: lists, reads, commits to the lake through `pipeline`, then
    /// advances the checkpoint. Returns early (after committing what was read) when `stop` is set.
    pub fn poll(
        &mut self,
        pipeline: &Pipeline,
        stop: &AtomicBool,
        on_progress: &(dyn Fn(&PollProgress) + Sync),
    ) -> Result<PollReport> {
        let started = Instant::now();
        let Plan {
            objects: plan,
            listed,
            lag_seconds,
            gone,
        } = self.plan()?;
        let mut report = PollReport {
            objects_listed: listed,
            lag_seconds,
            forgotten: gone.len() as u64,
            ..PollReport::default()
        };
        // Objects the bucket no longer holds (an expiry rule): their entries go, so the
        // checkpoint stays the size of what the bucket keeps.
        if !gone.is_empty() {
            for key in &gone {
                self.checkpoint.objects.remove(key);
            }
            self.checkpoint.store(&self.lake, &self.state_name)?;
        }
        let mut progress = PollProgress {
            bytes_total: plan.iter().map(|p| p.meta.size - p.start).sum(),
            ..PollProgress::default()
        };
        let mut quarantine = QuarantineWriter::new(&self.lake);
        let mut round: Vec<(String, ObjectMark)> = Vec::new();
        let mut round_bytes = 0u64;
        let outcome = Arc::new(Outcome::default());
        for planned in plan {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let key = planned.meta.location.to_string();
            if let Some(why) = &planned.rewritten {
                // Evidence changed at its source: on the record, in quarantine, not only in a log.
                quarantine.write(&Reject {
                    reason: format!("object rewritten since it was read: {why}; read again from the start (the lake keeps one copy of each event)"),
                    position: SourcePosition {
                        source: Arc::from(self.object_url(&key)),
                        ..SourcePosition::default()
                    },
                    raw: Vec::new(),
                    cluster: self.opts.decode.cluster.clone(),
                })?;
                report
                    .rewritten
                    .push(format!("{}: {why}", self.object_url(&key)));
            }
            let read = self.read_object(
                &planned,
                pipeline,
                &mut quarantine,
                &outcome,
                &mut |p: &ObjectProgress| {
                    progress.bytes_read = report.bytes_read + p.bytes;
                    progress.events = report.events + p.events;
                    progress.quarantined = report.quarantined + p.quarantined;
                    on_progress(&progress);
                },
            )?;
            let Some(read) = read else {
                report.changed_while_read += 1;
                continue;
            };
            report.objects_read += 1;
            report.bytes_read += read.bytes;
            report.events += read.events;
            report.quarantined += read.quarantined;
            report.held_back += read.held_back;
            round_bytes += read.bytes;
            round.push((key, read.mark));
            if round_bytes >= self.opts.round_bytes {
                self.commit_round(pipeline, &mut quarantine, &outcome, &mut round)?;
                round_bytes = 0;
            }
        }
        self.commit_round(pipeline, &mut quarantine, &outcome, &mut round)?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Flushes the lake, then (when everything submitted is committed) the checkpoint.
    fn commit_round(
        &mut self,
        pipeline: &Pipeline,
        quarantine: &mut QuarantineWriter,
        outcome: &Outcome,
        round: &mut Vec<(String, ObjectMark)>,
    ) -> Result<()> {
        quarantine.sync()?;
        if round.is_empty() {
            return Ok(());
        }
        pipeline.flush_now()?;
        let lost = outcome.lost.swap(0, Ordering::AcqRel);
        if lost > 0 {
            round.clear();
            return Err(IngestError::SubmissionsLost {
                lost,
                url: self.opts.url.to_string(),
            });
        }
        for (key, mark) in round.drain(..) {
            self.checkpoint.objects.insert(key, mark);
        }
        self.checkpoint.store(&self.lake, &self.state_name)
    }

    fn object_url(&self, key: &str) -> String {
        format!(
            "{}://{}/{key}",
            self.opts.url.scheme(),
            self.opts.url.host_str().unwrap_or_default()
        )
    }

    /// The decoding options for one object: an AKS blob's path names its cluster, which
    /// serves when nothing bound the cluster and a record names none.
    fn decode_options(&self, key: &str) -> DecodeOptions {
        let mut opts = self.opts.decode.clone();
        if opts.envelope_cluster
            && let Some(cluster) = cluster_from_path(key)
        {
            opts.cluster = Arc::from(cluster);
        }
        opts
    }
}

/// Submissions to the lake that it lost (a failed flush) since the last round.
#[derive(Default)]
struct Outcome {
    lost: AtomicU64,
}

#[derive(Debug, Default, Clone)]
struct ObjectProgress {
    bytes: u64,
    events: u64,
    quarantined: u64,
}

struct ObjectRead {
    bytes: u64,
    events: u64,
    quarantined: u64,
    held_back: u64,
    mark: ObjectMark,
}

/// Where the complete records of `data` (the end of a plain object) stop, when its last line
/// is a record cut short: `Some(len)` to keep `data[..len]`. A last line that is complete JSON
/// (or several values back to back, all complete), or garbage that no further bytes could
/// complete, is kept whole (`None`).
fn incomplete_tail(data: &[u8]) -> Option<usize> {
    let line_start = memchr::memrchr(b'\n', data).map_or(0, |p| p + 1);
    let line = &data[line_start..];
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let mut values =
        serde_json::Deserializer::from_slice(line).into_iter::<serde::de::IgnoredAny>();
    loop {
        let at = values.byte_offset();
        match values.next() {
            None => return None,
            Some(Ok(_)) => {}
            Some(Err(e)) if e.is_eof() => {
                // Whitespace before the value cut short stays with the data before it.
                let skip = line[at..]
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(0);
                return Some(line_start + at + skip);
            }
            Some(Err(_)) => return None,
        }
    }
}

/// The cluster an AKS blob path names: `…/MANAGEDCLUSTERS/<NAME>/…`, lower-cased as the
/// decoder does for the record's `resourceId`.
pub fn cluster_from_path(key: &str) -> Option<String> {
    let mut parts = key.split('/');
    parts.find(|p| p.eq_ignore_ascii_case("managedclusters"))?;
    let name = parts.next()?.to_ascii_lowercase();
    crate::lake::validate_cluster_name(&name).ok()?;
    Some(name)
}

/// Whether two etags name the same version. Stores quote them differently in a listing and
/// in a response header (Azurite lists `0x8D…` and answers `"0x8D…"`); a weak `W/` prefix is
/// ignored too.
fn same_etag(a: &Option<String>, b: &Option<String>) -> bool {
    fn bare(e: &str) -> &str {
        e.trim_start_matches("W/").trim_matches('"')
    }
    match (a, b) {
        (Some(a), Some(b)) => bare(a) == bare(b),
        (None, None) => true,
        _ => false,
    }
}

fn etag_text(etag: &Option<String>) -> &str {
    etag.as_deref().unwrap_or("none")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether a command-line input names an object store rather than a file.
pub fn is_object_url(arg: &str) -> bool {
    crate::lake::store::is_remote(arg)
}

/// Serializes polls of one source within a process (serve's poller and a one-shot never race
/// on a checkpoint they both hold in memory).
pub type SharedSource = Arc<Mutex<ObjectSource>>;

#[cfg(test)]
mod tests;
