//! The lake: where it lives (a local directory or an object-store URL), its paths, the local
//! single-writer lock, and durable file operations. Every other crate asks this module for a
//! path or a durable write instead of building one.
//!
//! ```text
//! <lake>/audit_events/_delta_log/NNNNNNNNNNNNNNNNNNNN.json   the table's commits (the truth)
//! <lake>/audit_events/cluster=<c>/date=YYYY-MM-DD/hour=HH/part-<ulid>.parquet
//! <lake>/_quarantine/date=YYYY-MM-DD/quarantine-<ulid>.jsonl
//! <lake>/findings/_delta_log/…, date=YYYY-MM-DD/part-<ulid>.parquet   one row per finding revision
//! <lake>/retention_log/_delta_log/…, part-<ulid>.parquet      what retention and vacuum deleted
//! <lake>/_state/writer.lock                                  local lakes only
//! <lake>/_state/scheduler.json, reports.json, checkpoints     state documents
//! <lake>/_state/scheduler.lease                              object-store lakes only
//! <lake>/_state/outbox/<sink>/{pending,sent,failed}/…json    alerts to deliver
//! <lake>/_tmp/                      files being written (never read by queries)
//! ```
//!
//! On object storage the same layout lives under the URL's prefix, `_state/` included (shared by
//! every replica); `_tmp/` is a local staging directory of the process (files are encoded there,
//! uploaded whole, then committed). The side files (state, outbox) are read and
//! written only through [`side`] and [`lease`].

pub mod append;
pub mod cache;
pub mod delta;
mod durable;
pub mod lease;
pub mod migrate;
pub mod retention;
pub mod seal;
pub mod side;
pub mod store;
pub mod verify;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStoreExt as _;
use url::Url;

use crate::decode::{MICROS_PER_HOUR, PartitionKey};
use crate::error::{IngestError, Result};
use crate::time::partition_date_hour;
pub use append::Append;
pub use delta::{LakeTable, NewFile, TableFile, TableKind};
pub use durable::{
    DurableWrite, clean_tmp, commit_file, create_dir_durable, fsync_dir, hash_file,
    list_parquet_files,
};
pub use lease::Lease;
pub use side::LakeEntry;

pub const AUDIT_EVENTS_DIR: &str = "audit_events";
pub const RETENTION_LOG_DIR: &str = "retention_log";
/// The `findings` table's directory under the lake root.
pub const FINDINGS_DIR: &str = "findings";
pub const QUARANTINE_DIR: &str = "_quarantine";
pub const STATE_DIR: &str = "_state";
pub const TMP_DIR: &str = "_tmp";

#[derive(Debug, Clone)]
pub struct Lake {
    /// The lake directory, or for an object-store lake the local staging directory.
    root: PathBuf,
    location: Arc<Location>,
}

#[derive(Debug)]
struct Location {
    /// The lake's root URL (`file:///…/` or `s3://bucket/prefix/`), ending in `/`.
    url: Url,
    remote: Option<Remote>,
    events: LakeTable,
    retention_log: LakeTable,
    findings: LakeTable,
    /// An object-store lake's local staging directory, removed when the last handle goes.
    _staging: Option<Staging>,
}

/// The local directory where one process encodes files before uploading them: one per process
/// (`<base>/<pid>-<ulid>/`), so replicas and commands on one host never clean up each other's
/// files in flight. Directories of processes that no longer run are removed at the next open.
#[derive(Debug)]
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn create(base: &Path) -> Result<Staging> {
        create_dir_durable(base)?;
        for entry in fs::read_dir(base).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok());
            if let Some(pid) = pid
                && pid != std::process::id()
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                // A dead process's files: never committed, so nothing of the lake.
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let dir = base.join(format!("{}-{}", std::process::id(), ulid::Ulid::generate()));
        create_dir_durable(&dir)?;
        Ok(Staging { dir })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

struct Remote {
    store: Arc<dyn object_store::ObjectStore>,
    /// `url`'s path inside the bucket.
    prefix: object_store::path::Path,
}

/// By hand: a store's own `Debug` prints its configuration, credentials included, and a lake
/// is part of options structs that may be debug-printed.
impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("prefix", &self.prefix.as_ref())
            .finish_non_exhaustive()
    }
}

/// A data file's bytes: a local file, or an object read whole.
pub enum DataFile {
    Local(File),
    Remote(Bytes),
}

fn table(kind: TableKind, lake_url: &Url, storage: &HashMap<String, String>) -> LakeTable {
    let url = lake_url
        .join(&format!("{}/", kind.dir()))
        .expect("table URL");
    LakeTable::new(kind, url, storage.clone())
}

fn state_object(remote: &Remote, name: &str) -> object_store::path::Path {
    name.split('/')
        .fold(remote.prefix.clone().join(STATE_DIR), |p, part| {
            p.join(part)
        })
}

/// Uploads a local file to `path`, streamed: one PUT up to 10 MB, a multipart upload above,
/// never the whole file in memory. `location` names it in errors.
fn upload(
    remote: &Remote,
    local: &Path,
    path: object_store::path::Path,
    location: String,
) -> Result<()> {
    store::block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut file = tokio::fs::File::open(local).await?;
        let mut upload = object_store::buffered::BufWriter::new(remote.store.clone(), path);
        tokio::io::copy(&mut file, &mut upload).await?;
        upload.shutdown().await
    })
    .map_err(|e| IngestError::LakeIo {
        path: PathBuf::from(location),
        source: e,
    })
}

fn directory_url(dir: &Path) -> Url {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    Url::from_directory_path(&abs).unwrap_or_else(|()| {
        Url::parse(&format!("file://{}/", abs.display())).expect("file URL of an absolute path")
    })
}

impl Lake {
    /// A lake in a local directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let url = directory_url(&root);
        Lake {
            root,
            location: Arc::new(Location {
                events: table(TableKind::AuditEvents, &url, &HashMap::new()),
                retention_log: table(TableKind::RetentionLog, &url, &HashMap::new()),
                findings: table(TableKind::Findings, &url, &HashMap::new()),
                url,
                remote: None,
                _staging: None,
            }),
        }
    }

    /// A lake named by a `--lake` value: an object-store URL (`s3://bucket/prefix`, `gs://…`,
    /// `az://…`) with its storage options, or a local directory.
    pub fn open(spec: &str, storage: &HashMap<String, String>) -> Result<Self> {
        Lake::open_staged(spec, storage, None)
    }

    /// [`Lake::open`], staging an object-store lake's files under `staging_base` (`[lake]
    /// staging_dir`) instead of the system's temporary directory.
    pub fn open_staged(
        spec: &str,
        storage: &HashMap<String, String>,
        staging_base: Option<&Path>,
    ) -> Result<Self> {
        if !store::is_remote(spec) {
            return Ok(Lake::new(spec));
        }
        let url = store::parse_lake_url(spec)?;
        let store = store::build_store(&url, storage)?;
        Lake::remote(url, store, storage, staging_base)
    }

    /// An object-store lake on a store built by the caller (tests: an in-memory store). Its
    /// Delta tables are opened through the registered factories, not through `store`.
    pub fn open_with_store(
        spec: &str,
        store: Arc<dyn object_store::ObjectStore>,
        staging_base: Option<&Path>,
    ) -> Result<Self> {
        let url = store::parse_lake_url(spec)?;
        Lake::remote(url, store, &HashMap::new(), staging_base)
    }

    fn remote(
        url: Url,
        store: Arc<dyn object_store::ObjectStore>,
        storage: &HashMap<String, String>,
        staging_base: Option<&Path>,
    ) -> Result<Self> {
        let staging = Staging::create(
            &staging_base
                .map(Path::to_path_buf)
                .unwrap_or_else(std::env::temp_dir)
                .join(format!(
                    "auditlake-staging-{}",
                    &delta::sha256_hex(url.as_str().as_bytes())[..16]
                )),
        )?;
        Ok(Lake {
            root: staging.dir.clone(),
            location: Arc::new(Location {
                _staging: Some(staging),
                remote: Some(Remote {
                    store,
                    prefix: store::path_in_store(&url),
                }),
                events: table(TableKind::AuditEvents, &url, storage),
                retention_log: table(TableKind::RetentionLog, &url, storage),
                findings: table(TableKind::Findings, &url, storage),
                url,
            }),
        })
    }

    /// The lake directory (local lakes) or the process's staging directory (object storage).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lake's root URL, ending in `/`.
    pub fn url(&self) -> &Url {
        &self.location.url
    }

    pub fn is_remote(&self) -> bool {
        self.location.remote.is_some()
    }

    /// What to call the lake in messages: its path or URL.
    pub fn display(&self) -> String {
        if self.is_remote() {
            self.location.url.to_string()
        } else {
            self.root.display().to_string()
        }
    }

    /// The `audit_events` Delta table.
    pub fn events(&self) -> &LakeTable {
        &self.location.events
    }

    /// The `retention_log` table: what retention removed and vacuum deleted.
    pub fn retention_log(&self) -> &LakeTable {
        &self.location.retention_log
    }

    /// The `findings` table: one row per finding revision, written by detect's findings store.
    pub fn findings(&self) -> &LakeTable {
        &self.location.findings
    }

    /// `cluster=c/date=YYYY-MM-DD/hour=HH`, the partition's directory inside the table.
    pub fn partition_path(key: &PartitionKey) -> String {
        let (date, hour) = partition_date_hour(key.hour * MICROS_PER_HOUR);
        format!("cluster={}/date={date}/hour={hour}", key.cluster)
    }

    /// Makes a finished, fsynced temp file part of the table's storage at `rel` (relative to
    /// the table root) and returns what its `add` action records. Not yet visible: a Delta
    /// commit naming it does that.
    pub fn publish(
        &self,
        tmp: &Path,
        rel: &str,
        partition: &PartitionKey,
        rows: u64,
    ) -> Result<NewFile> {
        let (size, sha256) = hash_file(tmp)?;
        match &self.location.remote {
            None => commit_file(tmp, &self.audit_events_dir().join(rel))?,
            Some(remote) => {
                upload(
                    remote,
                    tmp,
                    self.object_path(remote, rel),
                    self.data_url(rel),
                )?;
                fs::remove_file(tmp).map_err(IngestError::lake_io(tmp))?;
            }
        }
        let (date, hour) = partition_date_hour(partition.hour * MICROS_PER_HOUR);
        Ok(NewFile {
            path: rel.to_owned(),
            partition: delta::event_partition(&partition.cluster, &date, &hour),
            size,
            rows,
            sha256,
        })
    }

    /// A data file's full location, for messages.
    fn data_url(&self, rel: &str) -> String {
        format!("{}{AUDIT_EVENTS_DIR}/{rel}", self.location.url)
    }

    fn object_path(&self, remote: &Remote, rel: &str) -> object_store::path::Path {
        let mut path = remote.prefix.clone().join(AUDIT_EVENTS_DIR);
        for part in rel.split('/') {
            path = path.join(part);
        }
        path
    }

    /// Opens a data file of the table (`rel` as in its `add` action).
    pub fn read_data(&self, rel: &str) -> Result<DataFile> {
        match &self.location.remote {
            None => {
                let path = self.audit_events_dir().join(rel);
                File::open(&path)
                    .map(DataFile::Local)
                    .map_err(IngestError::lake_io(path))
            }
            Some(remote) => {
                let path = self.object_path(remote, rel);
                let location = self.data_url(rel);
                store::block_on(async { remote.store.get(&path).await?.bytes().await })
                    .map(DataFile::Remote)
                    .map_err(|source| IngestError::Storage {
                        location,
                        source: Box::new(source),
                    })
            }
        }
    }

    /// Deletes a data file no commit refers to any more (after compaction or retention).
    pub fn delete_data(&self, rel: &str) -> Result<()> {
        match &self.location.remote {
            None => {
                let path = self.audit_events_dir().join(rel);
                match fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(IngestError::lake_io(path)(e)),
                }
            }
            Some(remote) => {
                let path = self.object_path(remote, rel);
                match store::block_on(remote.store.delete(&path)) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(source) => Err(IngestError::Storage {
                        location: self.data_url(rel),
                        source: Box::new(source),
                    }),
                }
            }
        }
    }

    /// Copies a file of the staging directory (`<staging>/_quarantine/…`) to the same place under
    /// an object-store lake's prefix, whole (re-copying a file that grew replaces the object).
    /// Nothing to do for a local lake, where the file already is in the lake.
    pub fn mirror(&self, local: &Path) -> Result<()> {
        let Some(remote) = &self.location.remote else {
            return Ok(());
        };
        let rel = local
            .strip_prefix(&self.root)
            .map_err(|_| IngestError::NotStaged {
                path: local.to_owned(),
            })?;
        let mut path = remote.prefix.clone();
        for part in rel.iter() {
            path = path.join(part.to_string_lossy().as_ref());
        }
        upload(remote, local, path, self.describe(local))
    }

    /// Reads a small state document of the lake (`_state/<name>`: source checkpoints), from the
    /// bucket for an object-store lake (shared by every process that writes the lake). `None`
    /// when it does not exist yet.
    pub fn read_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .read_file(&format!("{STATE_DIR}/{name}"))?
            .map(|b| b.to_vec()))
    }

    /// Replaces a state document whole and durably: temp file, fsync, rename, fsync the
    /// directory; on object storage one PUT (atomic: readers see the old or the new document).
    pub fn write_state(&self, name: &str, bytes: &[u8]) -> Result<()> {
        match &self.location.remote {
            None => DurableWrite::new(&self.state_dir().join(name)).bytes(bytes),
            Some(remote) => {
                let path = state_object(remote, name);
                let payload = bytes::Bytes::copy_from_slice(bytes);
                store::block_on(remote.store.put(&path, payload.into()))
                    .map(drop)
                    .map_err(|source| IngestError::Storage {
                        location: format!("{}{STATE_DIR}/{name}", self.location.url),
                        source: Box::new(source),
                    })
            }
        }
    }

    /// Where a file of the lake (or, for an object-store lake, of its staging directory) is, for
    /// people: its path, or its URL in the bucket.
    pub fn describe(&self, local: &Path) -> String {
        match (&self.location.remote, local.strip_prefix(&self.root)) {
            (Some(_), Ok(rel)) => format!("{}{}", self.location.url, rel.display()),
            _ => local.display().to_string(),
        }
    }

    /// The object store and prefix of an object-store lake (for verify and listings).
    pub fn remote_store(
        &self,
    ) -> Option<(Arc<dyn object_store::ObjectStore>, object_store::path::Path)> {
        self.location
            .remote
            .as_ref()
            .map(|r| (r.store.clone(), r.prefix.clone()))
    }

    pub fn audit_events_dir(&self) -> PathBuf {
        self.root.join(AUDIT_EVENTS_DIR)
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join(QUARANTINE_DIR)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    /// `<lake>/audit_events/cluster=<c>/date=YYYY-MM-DD/hour=HH`
    pub fn partition_dir(&self, key: &PartitionKey) -> PathBuf {
        let (date, hour) = partition_date_hour(key.hour * MICROS_PER_HOUR);
        self.audit_events_dir()
            .join(format!("cluster={}", key.cluster))
            .join(format!("date={date}"))
            .join(format!("hour={hour}"))
    }

    /// Takes the lake's single-writer lock. Held until the returned guard drops; the OS
    /// releases it if the process dies, so a crash never leaves the lake locked.
    pub fn lock_writer(&self) -> Result<WriterLock> {
        let state = self.state_dir();
        create_dir_durable(&state)?;
        let path = state.join("writer.lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(IngestError::lake_io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                return Err(IngestError::LakeLocked {
                    path: self.root.clone(),
                    holder: if holder.is_empty() {
                        "unknown process".into()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(IngestError::LakeIo { path, source: e }),
        }
        file.set_len(0).map_err(IngestError::lake_io(&path))?;
        writeln!(
            file,
            "pid {} ({})",
            std::process::id(),
            std::env::args().next().unwrap_or_default()
        )
        .map_err(IngestError::lake_io(&path))?;
        Ok(WriterLock { _file: file })
    }
}

/// Holds the lake's writer lock (an OS file lock) while alive.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

/// Checks a cluster name: it becomes a path segment (`cluster=<name>`) and a SQL value, so it
/// must be short, portable and free of separators.
pub fn validate_cluster_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(['.', '_'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(IngestError::InvalidClusterName {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
