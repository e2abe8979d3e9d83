//! Durable local file operations: directories created and files committed so that a crash
//! leaves the old state or the new one, and the lake's `_tmp/` cleanup.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::Lake;
use crate::error::{IngestError, Result};

/// Creates a directory and any missing parents, fsyncing each parent whose entry changed, so a
/// crash cannot lose a directory that a committed file lives in.
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) if !p.as_os_str().is_empty() => cur = p,
            _ => break,
        }
    }
    fs::create_dir_all(dir).map_err(IngestError::lake_io(dir))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// fsyncs a directory so that entries created or renamed in it survive a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(IngestError::lake_io(dir))
}

/// Makes a fully written, fsynced temp file visible under its final name, durably:
/// rename (atomic on one filesystem), then fsync the target directory.
pub fn commit_file(tmp: &Path, target: &Path) -> Result<()> {
    let dir = target.parent().ok_or_else(|| IngestError::NotAFilePath {
        path: target.to_owned(),
    })?;
    create_dir_durable(dir)?;
    fs::rename(tmp, target).map_err(IngestError::lake_io(target))?;
    fsync_dir(dir)
}

/// Writes a whole file under a final name so that a reader, or the machine after a crash, sees
/// the old file (or none) or the complete new one, never a part: the one place every crate
/// writes a state document, a findings file, an outbox entry or a report.
///
/// `fill` writes a hidden temporary file in the target's directory (`.<name>.<ulid>.tmp`), which
/// is fsynced and renamed over the target (atomic on one filesystem); then the directory is
/// fsynced so the rename survives a crash. The directory is created (durably) if missing. A
/// failure or a panic before the rename removes the temporary file and leaves the target as it
/// was.
#[derive(Debug, Clone, Copy)]
pub struct DurableWrite<'a> {
    target: &'a Path,
    mode: u32,
    sync_dir: bool,
}

impl<'a> DurableWrite<'a> {
    pub fn new(target: &'a Path) -> DurableWrite<'a> {
        DurableWrite {
            target,
            mode: 0o666,
            sync_dir: true,
        }
    }

    /// Permission bits of the new file, before the umask (default 0o666, as `File::create`).
    pub fn mode(self, mode: u32) -> Self {
        DurableWrite { mode, ..self }
    }

    /// Leaves the directory fsync to the caller, who renames several files into one directory
    /// and then calls [`fsync_dir`] once (until then a crash may lose the renames, not the data).
    pub fn defer_dir_sync(self) -> Self {
        DurableWrite {
            sync_dir: false,
            ..self
        }
    }

    pub fn bytes(self, bytes: &[u8]) -> Result<()> {
        self.write(|f| f.write_all(bytes))
    }

    pub fn write(self, fill: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let target = self.target;
        let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(IngestError::NotAFilePath {
                path: target.to_owned(),
            });
        };
        // `report.html` in the working directory: its parent is "".
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        create_dir_durable(dir)?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            ulid::Ulid::generate()
        ));
        /// Removes the temporary file unless it was renamed (on an error or a panic in `fill`).
        struct Pending<'p>(Option<&'p Path>);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                if let Some(tmp) = self.0 {
                    let _ = fs::remove_file(tmp);
                }
            }
        }
        let mut pending = Pending(None);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(self.mode)
            .open(&tmp)
            .map_err(IngestError::lake_io(&tmp))?;
        pending.0 = Some(&tmp);
        let failed = |source| IngestError::WriteFile {
            path: target.to_path_buf(),
            source,
        };
        fill(&mut file)
            .and_then(|()| file.sync_all())
            .map_err(failed)?;
        drop(file);
        fs::rename(&tmp, target).map_err(failed)?;
        pending.0 = None;
        if self.sync_dir {
            fsync_dir(dir)?;
        }
        Ok(())
    }
}

/// Size and SHA-256 (hex) of a file, read in 1 MiB blocks.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    let mut file = File::open(path).map_err(IngestError::lake_io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(IngestError::lake_io(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Removes leftovers of writers that died mid-file. Only call while holding the writer lock (a
/// local lake) or on this process's own staging directory (an object-store lake).
pub fn clean_tmp(lake: &Lake) -> Result<usize> {
    let dir = lake.tmp_dir();
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            fs::remove_file(entry.path()).map_err(IngestError::lake_io(entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Lists the committed Parquet files of a partition directory (sorted by name).
pub fn list_parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(IngestError::LakeIo {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    Ok(files)
}
