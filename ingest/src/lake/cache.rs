//! A local cache of an object-store lake's data files, for readers.
//!
//! A query reads a Parquet file as many small range requests (footer, page index, bloom
//! filters, each column chunk of each row group): a few hundred round trips per query on a
//! million events, each costing the store's latency. The lake's data files never change once
//! written (every file has a new ULID name; compaction and retention add new files and remove
//! old ones), so the first read of a file fetches it whole into a local directory and every
//! range after that is a local read: no invalidation is ever needed. Commit files, checkpoints
//! and `_last_checkpoint` (`_delta_log/`) are never cached, so a reader always sees the table's
//! latest version.
//!
//! The cache is bounded (`[query] cache_mb`): past the bound, the least recently fetched files
//! are removed. Its directory is created private to the user (mode 0700): it holds audit data.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt as _, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use super::delta::sha256_hex;

/// Where readers cache data files, and how much they may keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            dir: std::env::temp_dir().join("auditlake-cache"),
            max_bytes: 1 << 30,
        }
    }
}

static CONFIG: OnceLock<Option<CacheConfig>> = OnceLock::new();

/// Sets the process's cache (`None`: off). Call before the first object-store lake is opened;
/// later calls are ignored.
pub fn configure(config: Option<CacheConfig>) {
    let _ = CONFIG.set(config);
}

fn config() -> Option<&'static CacheConfig> {
    CONFIG.get_or_init(|| Some(CacheConfig::default())).as_ref()
}

/// `inner` with cached reads of data files, or `inner` itself when the cache is off or its
/// directory cannot be made.
pub fn wrap(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    let Some(config) = config() else {
        return inner;
    };
    match CachedReads::new(inner.clone(), config) {
        Ok(store) => Arc::new(store),
        // A cache is an optimisation: without one, reads go to the store.
        Err(_) => inner,
    }
}

/// Data files only: immutable, unlike the log's `_last_checkpoint`.
fn cacheable(location: &StorePath) -> bool {
    let p = location.as_ref();
    p.ends_with(".parquet") && !p.split('/').any(|part| part == "_delta_log")
}

pub struct CachedReads {
    inner: Arc<dyn ObjectStore>,
    dir: PathBuf,
    local: LocalFileSystem,
    max_bytes: u64,
    /// Bytes added since the last size check (a check lists the directory).
    added: AtomicU64,
}

impl fmt::Debug for CachedReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedReads")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for CachedReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedReads({})", self.inner)
    }
}

impl CachedReads {
    fn new(inner: Arc<dyn ObjectStore>, config: &CacheConfig) -> std::io::Result<Self> {
        create_private_dir(&config.dir)?;
        let local = LocalFileSystem::new_with_prefix(&config.dir).map_err(std::io::Error::other)?;
        Ok(CachedReads {
            inner,
            dir: config.dir.clone(),
            local,
            max_bytes: config.max_bytes,
            added: AtomicU64::new(0),
        })
    }

    /// The cache entry of an object: named by a hash of the store and the path, so two lakes or
    /// two buckets never share an entry.
    fn key(&self, location: &StorePath) -> StorePath {
        StorePath::from(sha256_hex(format!("{}\n{location}", self.inner).as_bytes()))
    }

    /// Fetches the whole object into the cache unless it is there. Returns its key.
    async fn ensure(&self, location: &StorePath) -> object_store::Result<StorePath> {
        let key = self.key(location);
        let file = self.dir.join(key.as_ref());
        if file.exists() {
            return Ok(key);
        }
        let bytes = self.inner.get(location).await?.bytes().await?;
        let len = bytes.len() as u64;
        let tmp = self
            .dir
            .join(format!(".{}-{}", key.as_ref(), ulid::Ulid::generate()));
        let written = tokio::fs::write(&tmp, &bytes).await.and_then(|()| {
            // Atomic: a concurrent reader sees the whole file or none.
            std::fs::rename(&tmp, &file)
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
            // Disk full or similar: serve this read from the store.
            return Err(object_store::Error::NotFound {
                path: file.display().to_string(),
                source: "not cached".into(),
            });
        }
        if self.added.fetch_add(len, Ordering::Relaxed) + len > self.max_bytes / 8 {
            self.added.store(0, Ordering::Relaxed);
            let (dir, max) = (self.dir.clone(), self.max_bytes);
            let _ = tokio::task::spawn_blocking(move || evict(&dir, max)).await;
        }
        Ok(key)
    }
}

/// Removes the oldest entries until the cache holds at most 80% of `max` bytes.
fn evict(dir: &Path, max: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let modified = meta.modified().ok()?;
            meta.is_file().then(|| (modified, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    if total <= max {
        return;
    }
    files.sort();
    for (_, len, path) in files {
        if total <= max / 10 * 8 {
            break;
        }
        // An open reader keeps its file until it closes it.
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // An existing directory someone else can read is made private (or refused if not ours).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[async_trait]
impl ObjectStore for CachedReads {
    async fn put_opts(
        &self,
        location: &StorePath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &StorePath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &StorePath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let plain = !options.head
            && options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none();
        // A read of the local copy can fail when it was evicted between fetch and read: then
        // it goes to the store.
        if plain
            && cacheable(location)
            && let Ok(key) = self.ensure(location).await
            && let Ok(r) = self.local.get_opts(&key, options.clone()).await
        {
            return Ok(r);
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &StorePath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        if cacheable(location)
            && let Ok(key) = self.ensure(location).await
            && let Ok(r) = self.local.get_ranges(&key, ranges).await
        {
            return Ok(r);
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<StorePath>>,
    ) -> BoxStream<'static, object_store::Result<StorePath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&StorePath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&StorePath>,
        offset: &StorePath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&StorePath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn only_data_files_are_cacheable() {
        assert!(cacheable(&StorePath::from(
            "lake/audit_events/cluster=a/date=2026-01-01/hour=00/part-1.parquet"
        )));
        assert!(!cacheable(&StorePath::from(
            "lake/audit_events/_delta_log/00000000000000000010.checkpoint.parquet"
        )));
        assert!(!cacheable(&StorePath::from(
            "lake/audit_events/_delta_log/_last_checkpoint"
        )));
        assert!(!cacheable(&StorePath::from(
            "lake/audit_events/_delta_log/00000000000000000001.json"
        )));
    }

    #[tokio::test]
    async fn a_data_file_is_fetched_once_and_ranges_read_locally() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Arc::new(InMemory::new());
        let path = StorePath::from("t/cluster=a/part-1.parquet");
        inner
            .put(&path, Bytes::from_static(b"0123456789").into())
            .await
            .unwrap();
        let cache = CachedReads::new(
            inner.clone(),
            &CacheConfig {
                dir: dir.path().join("c"),
                max_bytes: 1 << 20,
            },
        )
        .unwrap();
        let r = cache.get_range(&path, 2..5).await.unwrap();
        assert_eq!(&r[..], b"234");
        // Gone from the store: still served, so it came from the cache.
        inner.delete(&path).await.unwrap();
        assert_eq!(
            &cache.get_ranges(&path, &[0..1, 8..10]).await.unwrap()[1][..],
            b"89"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("c"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        // The log is always read from the store.
        let log = StorePath::from("t/_delta_log/_last_checkpoint");
        inner
            .put(&log, Bytes::from_static(b"v1").into())
            .await
            .unwrap();
        assert_eq!(
            &cache.get(&log).await.unwrap().bytes().await.unwrap()[..],
            b"v1"
        );
        inner
            .put(&log, Bytes::from_static(b"v2").into())
            .await
            .unwrap();
        assert_eq!(
            &cache.get(&log).await.unwrap().bytes().await.unwrap()[..],
            b"v2"
        );
    }

    #[test]
    fn eviction_keeps_the_newest_under_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..10 {
            std::fs::write(dir.path().join(format!("f{i}")), vec![0u8; 100]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        evict(dir.path(), 500);
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 4, "{left:?}");
        assert!(left.contains(&"f9".to_owned()));
    }
}
