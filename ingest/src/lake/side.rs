//! The lake's side files: everything outside its Delta tables that the other crates keep in the
//! lake — state documents (`_state/scheduler.json`, `_state/reports.json`), the alert outbox
//! (`_state/outbox/<sink>/{pending,sent,failed}/…`). The data files of the small Delta tables
//! (`findings`, `retention_log`) are written through [`Lake::write_file`] too, then committed
//! (see [`super::append`]).
//!
//! Every operation takes a path relative to the lake root and works the same on a local lake
//! (files, written durably: temp file, fsync, rename, fsync the directory) and on an
//! object-store lake (objects under the lake's prefix, shared by every replica). No other crate
//! builds these paths or touches these files directly.
//!
//! | operation            | local lake                               | object-store lake                 |
//! |----------------------|------------------------------------------|-----------------------------------|
//! | [`Lake::write_file`] | [`DurableWrite`] in place                | encode in staging, upload, remove |
//! | [`Lake::create_file`]| temp file + `link` (fails if it exists)  | `PUT` with `If-None-Match: *`     |
//! | [`Lake::read_file`]  | read                                     | `GET`                             |
//! | [`Lake::rename_file`]| `rename` + fsync                         | copy + `DELETE`                   |
//! | [`Lake::list_files`] | recursive `read_dir` (temp files hidden) | `LIST` of the prefix              |

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use super::{DurableWrite, Lake, Remote, create_dir_durable, fsync_dir, store, upload};
use crate::error::{IngestError, Result};

/// One file of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeEntry {
    /// Relative to the directory listed, `/`-separated.
    pub name: String,
    pub size: u64,
    pub modified: SystemTime,
}

fn object_path(remote: &Remote, rel: &str) -> object_store::path::Path {
    rel.split('/')
        .filter(|p| !p.is_empty())
        .fold(remote.prefix.clone(), |p, part| p.join(part))
}

/// A name the lake's own writers use for files in flight (`.<name>.<ulid>.tmp`): never listed.
fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

impl Lake {
    /// The full location of a lake-relative path, for messages: a local path or an object URL.
    pub fn location_of(&self, rel: &str) -> String {
        match &self.location.remote {
            None => self.root.join(rel).display().to_string(),
            Some(_) => format!("{}{rel}", self.location.url),
        }
    }

    fn storage_err(&self, rel: &str) -> impl FnOnce(object_store::Error) -> IngestError + '_ {
        let location = self.location_of(rel);
        move |source| IngestError::Storage {
            location,
            source: Box::new(source),
        }
    }

    /// Reads a whole file of the lake; `None` when it does not exist.
    pub fn read_file(&self, rel: &str) -> Result<Option<Bytes>> {
        match &self.location.remote {
            None => {
                let path = self.root.join(rel);
                match fs::read(&path) {
                    Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(IngestError::LakeIo { path, source: e }),
                }
            }
            Some(remote) => {
                let path = object_path(remote, rel);
                match store::block_on(async { remote.store.get(&path).await?.bytes().await }) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(self.storage_err(rel)(e)),
                }
            }
        }
    }

    /// Writes a whole file of the lake, replacing it: readers see the old file (or none) or the
    /// complete new one. `fill` writes the bytes into a local file: in place with
    /// [`DurableWrite`] on a local lake; on an object-store lake in the staging directory, which
    /// is then uploaded (one PUT, multipart above 10 MB: visible only once complete) and removed.
    pub fn write_file(
        &self,
        rel: &str,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<()> {
        match &self.location.remote {
            None => DurableWrite::new(&self.root.join(rel)).write(fill),
            Some(remote) => {
                let dir = self.tmp_dir();
                create_dir_durable(&dir)?;
                let name = rel.rsplit('/').next().unwrap_or("file");
                let tmp = dir.join(format!("side-{}-{name}", ulid::Ulid::generate()));
                /// The staged copy goes whatever happens.
                struct Staged<'p>(&'p Path);
                impl Drop for Staged<'_> {
                    fn drop(&mut self) {
                        let _ = fs::remove_file(self.0);
                    }
                }
                let _staged = Staged(&tmp);
                let mut file = File::create(&tmp).map_err(IngestError::lake_io(&tmp))?;
                fill(&mut file)
                    .and_then(|()| file.flush())
                    .map_err(|source| IngestError::WriteFile {
                        path: tmp.clone(),
                        source,
                    })?;
                drop(file);
                upload(
                    remote,
                    &tmp,
                    object_path(remote, rel),
                    self.location_of(rel),
                )
            }
        }
    }

    /// Creates a file only if none exists under that name (atomically: of two writers racing,
    /// one wins). Returns whether this call created it.
    pub fn create_file(&self, rel: &str, bytes: &[u8]) -> Result<bool> {
        match &self.location.remote {
            None => {
                use std::os::unix::fs::OpenOptionsExt;
                let target = self.root.join(rel);
                let dir = target.parent().ok_or_else(|| IngestError::NotAFilePath {
                    path: target.clone(),
                })?;
                if target.exists() {
                    return Ok(false);
                }
                create_dir_durable(dir)?;
                let tmp = dir.join(format!(
                    ".{}.{}.tmp",
                    target
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    ulid::Ulid::generate()
                ));
                let written = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o666)
                    .open(&tmp)
                    .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
                if let Err(source) = written {
                    let _ = fs::remove_file(&tmp);
                    return Err(IngestError::WriteFile {
                        path: target,
                        source,
                    });
                }
                // `link` refuses an existing target, unlike `rename`.
                let linked = fs::hard_link(&tmp, &target);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        fsync_dir(dir)?;
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(source) => Err(IngestError::WriteFile {
                        path: target,
                        source,
                    }),
                }
            }
            Some(remote) => {
                let path = object_path(remote, rel);
                let payload = PutPayload::from(Bytes::copy_from_slice(bytes));
                let opts = PutOptions::from(PutMode::Create);
                match store::block_on(remote.store.put_opts(&path, payload, opts)) {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                    Err(e) => Err(self.storage_err(rel)(e)),
                }
            }
        }
    }

    /// Deletes a file; one already gone is not an error.
    pub fn delete_file(&self, rel: &str) -> Result<()> {
        match &self.location.remote {
            None => {
                let path = self.root.join(rel);
                match fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(IngestError::LakeIo { path, source: e }),
                }
            }
            Some(remote) => match store::block_on(remote.store.delete(&object_path(remote, rel))) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.storage_err(rel)(e)),
            },
        }
    }

    /// Moves a file (replacing the target): a rename on a local lake (durable: the directory is
    /// fsynced), a copy then a delete on object storage (a crash in between leaves both; the
    /// target is complete either way).
    pub fn rename_file(&self, from: &str, to: &str) -> Result<()> {
        match &self.location.remote {
            None => {
                let target = self.root.join(to);
                let dir = target.parent().unwrap_or(&self.root).to_path_buf();
                create_dir_durable(&dir)?;
                fs::rename(self.root.join(from), &target).map_err(IngestError::lake_io(&target))?;
                fsync_dir(&dir)
            }
            Some(remote) => {
                let (src, dst) = (object_path(remote, from), object_path(remote, to));
                store::block_on(async {
                    remote.store.copy(&src, &dst).await?;
                    match remote.store.delete(&src).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(e) => Err(e),
                    }
                })
                .map_err(self.storage_err(from))
            }
        }
    }

    /// Every file under `dir` (recursively), sorted by name; none when it does not exist.
    /// Temporary files of writers in flight are left out.
    pub fn list_files(&self, dir: &str) -> Result<Vec<LakeEntry>> {
        let dir = dir.trim_end_matches('/');
        let mut out = match &self.location.remote {
            None => {
                let mut out = Vec::new();
                walk(&self.root.join(dir), "", &mut out)?;
                out
            }
            Some(remote) => {
                let prefix = object_path(remote, dir);
                let listed: Vec<object_store::ObjectMeta> =
                    store::block_on(async { remote.store.list(Some(&prefix)).try_collect().await })
                        .map_err(self.storage_err(dir))?;
                listed
                    .into_iter()
                    .filter_map(|meta| {
                        let name = meta
                            .location
                            .prefix_match(&prefix)?
                            .map(|p| p.as_ref().to_owned())
                            .collect::<Vec<_>>()
                            .join("/");
                        let last = name.rsplit('/').next().unwrap_or(&name);
                        (!name.is_empty() && !is_temporary(last)).then(|| LakeEntry {
                            name,
                            size: meta.size,
                            modified: meta.last_modified.into(),
                        })
                    })
                    .collect()
            }
        };
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `_state/<name>`: a lake-relative path of the state directory.
    pub fn state_rel(name: &str) -> String {
        format!("{}/{name}", super::STATE_DIR)
    }

    /// Creates a state document only if absent (see [`Lake::create_file`]).
    pub fn create_state(&self, name: &str, bytes: &[u8]) -> Result<bool> {
        self.create_file(&Lake::state_rel(name), bytes)
    }

    /// Deletes a state document; one already gone is not an error.
    pub fn delete_state(&self, name: &str) -> Result<()> {
        self.delete_file(&Lake::state_rel(name))
    }

    /// Moves a state document (see [`Lake::rename_file`]).
    pub fn rename_state(&self, from: &str, to: &str) -> Result<()> {
        self.rename_file(&Lake::state_rel(from), &Lake::state_rel(to))
    }

    /// The state documents under `_state/<dir>/`, names relative to it.
    pub fn list_state(&self, dir: &str) -> Result<Vec<LakeEntry>> {
        self.list_files(&Lake::state_rel(dir))
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<LakeEntry>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(IngestError::LakeIo {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(IngestError::lake_io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let Ok(meta) = entry.metadata() else {
            // Gone since the listing (moved by another task).
            continue;
        };
        if meta.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else if !is_temporary(&name) {
            out.push(LakeEntry {
                name: rel,
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::FINDINGS_DIR;
    use object_store::ObjectStore as _;
    use std::sync::Arc;

    /// The same operations on a local lake and on an object-store lake (in memory).
    fn lakes() -> (tempfile::TempDir, Vec<Lake>) {
        let dir = tempfile::tempdir().unwrap();
        let local = Lake::new(dir.path().join("lake"));
        let remote = Lake::open_with_store(
            "s3://bucket/lake",
            Arc::new(object_store::memory::InMemory::new()),
            Some(&dir.path().join("staging")),
        )
        .unwrap();
        (dir, vec![local, remote])
    }

    #[test]
    fn side_files_behave_the_same_locally_and_on_object_storage() {
        let (_dir, lakes) = lakes();
        for lake in &lakes {
            let what = lake.display();
            assert_eq!(lake.read_file("_state/a.json").unwrap(), None, "{what}");
            assert!(
                lake.create_state("outbox/s/pending/1.json", b"one")
                    .unwrap()
            );
            assert!(
                !lake
                    .create_state("outbox/s/pending/1.json", b"other")
                    .unwrap(),
                "{what}: a second create loses"
            );
            assert_eq!(
                lake.read_file("_state/outbox/s/pending/1.json")
                    .unwrap()
                    .unwrap(),
                &b"one"[..]
            );
            lake.create_state("outbox/s/pending/2.json", b"two")
                .unwrap();
            let names = |dir: &str| -> Vec<String> {
                lake.list_state(dir)
                    .unwrap()
                    .into_iter()
                    .map(|e| e.name)
                    .collect()
            };
            assert_eq!(names("outbox/s"), ["pending/1.json", "pending/2.json"]);
            assert_eq!(names("outbox/s/pending"), ["1.json", "2.json"]);
            assert!(names("outbox/none").is_empty());
            lake.rename_state("outbox/s/pending/1.json", "outbox/s/sent/1.json")
                .unwrap();
            assert_eq!(names("outbox/s/pending"), ["2.json"], "{what}");
            assert_eq!(names("outbox/s/sent"), ["1.json"], "{what}");
            lake.delete_state("outbox/s/sent/1.json").unwrap();
            lake.delete_state("outbox/s/sent/1.json").unwrap();
            assert!(names("outbox/s/sent").is_empty());

            lake.write_state("scheduler.json", b"{}").unwrap();
            lake.write_state("scheduler.json", b"{\"rules\":{}}")
                .unwrap();
            assert_eq!(
                lake.read_state("scheduler.json").unwrap().unwrap(),
                b"{\"rules\":{}}"
            );

            let rel = format!("{FINDINGS_DIR}/date=2026-11-22/part-1.parquet");
            lake.write_file(&rel, |f| f.write_all(b"PAR1")).unwrap();
            let listed = lake.list_files(FINDINGS_DIR).unwrap();
            assert_eq!(listed.len(), 1, "{what}");
            assert_eq!(listed[0].name, "date=2026-11-22/part-1.parquet");
            assert_eq!(listed[0].size, 4);
            assert_eq!(lake.read_file(&rel).unwrap().unwrap(), &b"PAR1"[..]);
            // A failed write leaves nothing behind, in the lake or in staging.
            let failed = lake.write_file(&format!("{FINDINGS_DIR}/x/part-2.parquet"), |_| {
                Err(std::io::Error::other("encoder failed"))
            });
            assert!(failed.is_err());
            assert_eq!(lake.list_files(FINDINGS_DIR).unwrap().len(), 1, "{what}");
            if lake.is_remote() {
                assert_eq!(fs::read_dir(lake.tmp_dir()).unwrap().count(), 0);
            }
        }
        assert_eq!(
            lakes[1].findings().url().as_str(),
            "s3://bucket/lake/findings/"
        );
    }

    #[test]
    fn remote_side_files_live_in_the_bucket_under_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(object_store::memory::InMemory::new());
        let lake =
            Lake::open_with_store("s3://bucket/lake", store.clone(), Some(dir.path())).unwrap();
        lake.write_state("scheduler.json", b"{}").unwrap();
        lake.create_state("outbox/s/pending/1.json", b"x").unwrap();
        lake.write_file("findings/date=2026-11-22/part-1.parquet", |f| {
            f.write_all(b"PAR1")
        })
        .unwrap();
        let mut keys: Vec<String> = store::block_on(async {
            store
                .list(None)
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
        })
        .unwrap();
        keys.sort();
        assert_eq!(
            keys,
            [
                "lake/_state/outbox/s/pending/1.json",
                "lake/_state/scheduler.json",
                "lake/findings/date=2026-11-22/part-1.parquet"
            ]
        );
        // A second process (another replica) on the same bucket sees all of it.
        let other = Lake::open_with_store("s3://bucket/lake", store, Some(dir.path())).unwrap();
        assert_eq!(other.read_state("scheduler.json").unwrap().unwrap(), b"{}");
        assert_eq!(other.list_state("outbox").unwrap().len(), 1);
    }
}
