//! Where the lake lives: a local directory (the default) or an object-store URL
//! (`s3://bucket/prefix`, `gs://…`, `az://…`), and the runtime its I/O runs on.
//!
//! Stores are built by `object_store`'s own builders, *from the environment first*
//! (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`,
//! `AZURE_STORAGE_ACCOUNT_NAME`, …) and then the `[lake.storage]` keys, and registered with
//! delta-rs as its object-store and log-store factories for those schemes. That keeps the AWS
//! SDK out of the build (delta-rs's `s3` feature brings it for DynamoDB locking): commits use
//! the store's own put-if-absent (S3 conditional writes, `If-None-Match: *`), which every store
//! here supports.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Once, OnceLock};

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as StorePath;
use url::Url;

use crate::error::{IngestError, Result};

/// URL schemes of object stores a lake can live on.
pub const REMOTE_SCHEMES: [&str; 7] = ["s3", "s3a", "gs", "az", "abfs", "abfss", "azure"];

/// Whether a `--lake` value names an object store rather than a local directory.
pub fn is_remote(spec: &str) -> bool {
    spec.split_once("://")
        .is_some_and(|(scheme, _)| REMOTE_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

/// Parses a lake URL (with a trailing `/`, so joins stay inside the prefix).
pub fn parse_lake_url(spec: &str) -> Result<Url> {
    let mut url = Url::parse(spec).map_err(|e| IngestError::LakeLocation {
        value: spec.to_owned(),
        reason: e.to_string(),
    })?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(IngestError::LakeLocation {
            value: spec.to_owned(),
            reason: "no bucket or container after the scheme".into(),
        });
    }
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

/// Builds the store for the bucket/container of `url` (rooted there, as delta-rs expects) with
/// the environment's settings overridden by `options`. An option no builder knows is an error
/// that names it: a typo in `[lake.storage]` must not silently fall back to the environment.
pub fn build_store(url: &Url, options: &HashMap<String, String>) -> Result<Arc<dyn ObjectStore>> {
    let bad_key = |key: &str| IngestError::LakeLocation {
        value: url.to_string(),
        reason: format!("unknown storage option `{key}` for {}://", url.scheme()),
    };
    let built = match url.scheme() {
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env().with_url(url.as_str());
            for (k, v) in options {
                let key: AmazonS3ConfigKey =
                    k.to_ascii_lowercase().parse().map_err(|_| bad_key(k))?;
                b = b.with_config(key, v);
            }
            b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            for (k, v) in options {
                let key: GoogleConfigKey =
                    k.to_ascii_lowercase().parse().map_err(|_| bad_key(k))?;
                b = b.with_config(key, v);
            }
            b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        "az" | "abfs" | "abfss" | "azure" => {
            let mut b = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            for (k, v) in options {
                let key: AzureConfigKey = k.to_ascii_lowercase().parse().map_err(|_| bad_key(k))?;
                b = b.with_config(key, v);
            }
            b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        other => {
            return Err(IngestError::LakeLocation {
                value: url.to_string(),
                reason: format!("unsupported scheme {other}://"),
            });
        }
    };
    built.map_err(|e| IngestError::LakeLocation {
        value: url.to_string(),
        reason: e.to_string(),
    })
}

/// The path of `url` inside its bucket (no leading or trailing `/`).
pub fn path_in_store(url: &Url) -> StorePath {
    StorePath::from(url.path().trim_matches('/'))
}

/// The storage option a reader sets (`"true"`) to read data files through the local cache
/// ([`super::cache`]). Never passed to the store itself.
pub const READ_CACHE_OPTION: &str = "auditlake.read_cache";

struct RemoteStores;

impl ObjectStoreFactory for RemoteStores {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, StorePath)> {
        // Readers ask for the local cache of data files; `verify`, vacuum and writers never do
        // (verify must hash what is in the bucket, not a copy).
        let mut options = config.raw.clone();
        let cached = options
            .remove(READ_CACHE_OPTION)
            .is_some_and(|v| v == "true");
        let store =
            build_store(url, &options).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        let store = if cached {
            super::cache::wrap(store)
        } else {
            store
        };
        Ok((store, path_in_store(url)))
    }
}

struct PutIfAbsentLogs;

impl LogStoreFactory for PutIfAbsentLogs {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Registers the remote schemes with delta-rs (once per process).
pub fn register_remote_schemes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in REMOTE_SCHEMES {
            let url = Url::parse(&format!("{scheme}://")).expect("scheme URL");
            object_store_factories().insert(url.clone(), Arc::new(RemoteStores));
            logstore_factories().insert(url, Arc::new(PutIfAbsentLogs));
        }
    });
}

/// The runtime lake I/O runs on (object-store requests, Delta commits). The writer and the
/// compactor are synchronous threads; they wait here for their I/O.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lake-io")
            .enable_all()
            .build()
            .expect("start the lake I/O runtime")
    })
}

/// Runs lake I/O to completion from synchronous code. Called from inside another runtime (a
/// command's `#[tokio::main]`), the wait moves to a scoped thread: a runtime cannot block on
/// a future from one of its own threads.
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| runtime().block_on(fut))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    } else {
        runtime().block_on(fut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_specs() {
        assert!(is_remote("s3://bucket/lake"));
        assert!(is_remote("GS://b"));
        assert!(is_remote("az://container/x"));
        assert!(!is_remote("/var/lib/auditlake"));
        assert!(!is_remote("lake"));
        assert!(!is_remote("file:///tmp/x"));
        assert_eq!(
            parse_lake_url("s3://b/p/q").unwrap().as_str(),
            "s3://b/p/q/"
        );
        assert!(parse_lake_url("s3:///nobucket").is_err());
    }

    #[test]
    fn an_unknown_storage_option_is_named() {
        let url = parse_lake_url("s3://bucket/lake").unwrap();
        let opts = HashMap::from([("aws_endpoint_urll".to_string(), "http://x".to_string())]);
        let err = build_store(&url, &opts)
            .map(|_| ())
            .expect_err("typo refused")
            .to_string();
        assert!(err.contains("aws_endpoint_urll"), "{err}");
    }
}
