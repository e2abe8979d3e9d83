//! `auditlake verify`: proves the lake is what its writers committed, or names what is not.
//!
//! Walks each table's commit log (`audit_events`, `findings`, `retention_log`) from version 0:
//! versions must be contiguous, and each commit's `auditlake.prevCommitSha256` must equal the SHA-256 of the commit file before it, so
//! a rewritten or deleted commit breaks the chain where it happened. Replaying the log gives the
//! live files with the SHA-256 their `add` recorded; each is re-hashed (streamed, never held in
//! memory). Data files in the table's directories that no commit ever named are reported as
//! injected once they are older than a grace period (younger ones may be a writer's upload whose
//! commit is still in flight).
//!
//! What the chain cannot show alone: someone who can write the bucket may truncate the newest
//! commits, or rewrite the newest one. Comparing the head (version and hash, printed here) with
//! a copy kept elsewhere closes that gap; see README "Tamper evidence".

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use sha2::{Digest, Sha256};

use super::seal::{SealPayload, SealedCheckpoint, SealedHead};
use super::store::block_on;
use super::{Lake, TableKind};
use crate::error::{IngestError, Result};

mod checkpoint;
mod walk;
use walk::{walk_log, walk_start};

/// Commit files above this size are reported, never read (a migration of 100,000 files writes
/// about 40 MiB).
const MAX_COMMIT_BYTES: u64 = 256 << 20;

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Re-hash only files added by commits at or after this time (ms since the epoch); the chain
    /// is always walked whole.
    pub since_ms: Option<i64>,
    /// Files no commit names are reported only when older than this (seconds).
    pub grace_secs: u64,
    /// Seals whose signature has been checked: each sealed commit must still be there, with the
    /// bytes it had.
    pub seals: Vec<SealPayload>,
    /// Start each table's walk at the newest checkpoint a seal vouches for (its bytes must still
    /// hash to what the seal recorded) instead of at version 0: the cost of `verify` then grows
    /// with the commits since the seal, not with the table's age.
    pub from_seal: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            since_ms: None,
            grace_secs: 900,
            seals: Vec::new(),
            from_seal: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// A commit file is missing from the sequence.
    MissingCommit,
    /// A commit file's bytes differ from what the next commit recorded.
    RewrittenCommit,
    /// A commit carries no link to its predecessor (not written by auditlake).
    UnlinkedCommit,
    /// A commit file that is not valid JSON lines.
    UnreadableCommit,
    /// A live data file whose bytes differ from its recorded SHA-256.
    ModifiedFile,
    /// A live data file that is gone.
    MissingFile,
    /// A live data file with no recorded SHA-256.
    UnhashedFile,
    /// A data file in the table's directories that no commit names.
    InjectedFile,
    /// A checkpoint whose files differ from the log's at its version: every Delta reader starts
    /// from the newest checkpoint, so a forged one hides or adds files for all of them.
    RewrittenCheckpoint,
}

impl ProblemKind {
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::MissingCommit => "missing commit",
            ProblemKind::RewrittenCommit => "rewritten commit",
            ProblemKind::UnlinkedCommit => "unlinked commit",
            ProblemKind::UnreadableCommit => "unreadable commit",
            ProblemKind::ModifiedFile => "modified file",
            ProblemKind::MissingFile => "missing file",
            ProblemKind::UnhashedFile => "unhashed file",
            ProblemKind::InjectedFile => "injected file",
            ProblemKind::RewrittenCheckpoint => "rewritten checkpoint",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The object, relative to the table root (`_delta_log/…json` or `cluster=…/….parquet`).
    pub object: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub commits: u64,
    pub head_version: Option<u64>,
    /// SHA-256 of the newest commit file: keep it elsewhere to detect a truncated log.
    pub head_sha256: Option<String>,
    pub live_files: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    /// Commits of `audit_events` that removed expired partitions.
    pub retention_commits: u64,
    /// The head of each table (what `auditlake seal` signs).
    pub heads: Vec<SealedHead>,
    /// The version the walk started at (0, or a sealed checkpoint's with `from_seal`), per table.
    pub walked_from: Vec<(String, u64)>,
    pub problems: Vec<Problem>,
    /// The newest checkpoint found to agree with the log (what a seal records).
    pub(super) good_checkpoint: Option<SealedCheckpoint>,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

struct Live {
    sha256: Option<String>,
    added_ms: i64,
}

/// Verifies the lake's `audit_events` table, and its `retention_log` and `findings` tables when
/// they exist (problems there are named `retention_log/…`, `findings/…`). Errors only when a table cannot be read at
/// all. Head, version and hash are those of `audit_events`.
pub fn verify(lake: &Lake, opts: &VerifyOptions) -> Result<VerifyReport> {
    let table = |t: &super::LakeTable, required| -> Result<Option<VerifyReport>> {
        let store = t.table_store()?;
        let name = t.kind().dir();
        let claims: Vec<Claim> = opts
            .seals
            .iter()
            .flat_map(|s| {
                s.heads.iter().filter(|h| h.table == name).map(|h| Claim {
                    version: h.version,
                    sha256: &h.sha256,
                    sealed_at: &s.sealed_at,
                    checkpoint: h.checkpoint.as_ref(),
                })
            })
            .collect();
        let mut report = block_on(verify_store(
            store.as_ref(),
            t.url().as_str(),
            opts,
            &claims,
            required,
        ))?;
        if let Some(r) = &mut report {
            if let (Some(version), Some(sha256)) = (r.head_version, r.head_sha256.clone()) {
                let checkpoint = r.good_checkpoint.take();
                r.heads.push(SealedHead {
                    table: name.to_owned(),
                    version,
                    sha256,
                    checkpoint,
                });
            }
            let from = std::mem::take(&mut r.walked_from);
            r.walked_from = from
                .into_iter()
                .map(|(_, v)| (name.to_owned(), v))
                .collect();
        } else if let Some(c) = claims.first() {
            // A sealed table that is gone entirely.
            return Ok(Some(VerifyReport {
                problems: vec![Problem {
                    kind: ProblemKind::MissingCommit,
                    object: "_delta_log/".into(),
                    detail: format!(
                        "the table is gone, but the seal of {} recorded version {}",
                        c.sealed_at, c.version
                    ),
                }],
                ..VerifyReport::default()
            }));
        }
        Ok(report)
    };
    let mut report = table(lake.events(), true)?.expect("a required table reports");
    for side in [lake.retention_log(), lake.findings()] {
        let dir = side.kind().dir();
        match table(side, false)? {
            Some(more) => {
                report.heads.extend(more.heads);
                report.walked_from.extend(more.walked_from);
                report.commits += more.commits;
                report.live_files += more.live_files;
                report.files_hashed += more.files_hashed;
                report.bytes_hashed += more.bytes_hashed;
                report
                    .problems
                    .extend(more.problems.into_iter().map(|p| Problem {
                        object: format!("{dir}/{}", p.object),
                        ..p
                    }));
            }
            // Deleting the record of deletions is itself a deletion to report.
            None if side.kind() == TableKind::RetentionLog && report.retention_commits > 0 => {
                report.problems.push(Problem {
                    kind: ProblemKind::MissingCommit,
                    object: format!("{dir}/_delta_log/"),
                    detail: format!(
                        "audit_events has {} retention commits but the retention_log table is gone",
                        report.retention_commits
                    ),
                })
            }
            None => {}
        }
    }
    Ok(report)
}

fn storage(location: &str, path: &str) -> impl FnOnce(object_store::Error) -> IngestError {
    let location = format!("{location}{path}");
    move |source| IngestError::Storage {
        location,
        source: Box::new(source),
    }
}

/// What a seal says of one table.
struct Claim<'a> {
    version: u64,
    sha256: &'a str,
    sealed_at: &'a str,
    checkpoint: Option<&'a SealedCheckpoint>,
}

/// One object whole (a commit or a checkpoint: bounded by the caller).
async fn get_whole(
    store: &dyn ObjectStore,
    location: &str,
    path: &StorePath,
    name: &str,
) -> Result<bytes::Bytes> {
    store
        .get(path)
        .await
        .map_err(storage(location, name))?
        .bytes()
        .await
        .map_err(storage(location, name))
}

/// `Ok(None)` when the store holds nothing at all and the table is not `required`.
async fn verify_store(
    store: &dyn ObjectStore,
    location: &str,
    opts: &VerifyOptions,
    claims: &[Claim<'_>],
    required: bool,
) -> Result<Option<VerifyReport>> {
    let mut report = VerifyReport::default();
    let listing = list_table(store, location).await?;
    let Some((&head, _)) = listing.commits.last_key_value() else {
        if !required && listing.data_objects.is_empty() {
            return Ok(None);
        }
        return Err(IngestError::LakeLocation {
            value: location.to_owned(),
            reason: "no Delta table here (no commits in _delta_log/); `auditlake migrate` turns a Parquet lake into one".into(),
        });
    };
    report.head_version = Some(head);
    let mut start = walk_start(
        store,
        location,
        opts,
        claims,
        head,
        &listing.checkpoints,
        &mut report,
    )
    .await?;
    report.walked_from = vec![(String::new(), start.first)];
    let prev_sha = walk_log(
        store,
        location,
        claims,
        &listing,
        head,
        &mut start,
        &mut report,
    )
    .await?;
    report.head_sha256 = prev_sha.map(|(_, s)| s);
    check_past_head(&listing.checkpoints, claims, head, &mut report);
    report.live_files = start.live.len() as u64;
    hash_live_files(store, location, opts, &start.live, &mut report).await?;
    find_injected(
        listing.data_objects,
        &start.ever_named,
        opts,
        start.injected_after,
        &mut report,
    );
    report
        .problems
        .sort_by(|a, b| (a.kind, &a.object).cmp(&(b.kind, &b.object)));
    Ok(Some(report))
}

/// Pushes a problem onto `report`.
fn problem(report: &mut VerifyReport, kind: ProblemKind, object: String, detail: String) {
    report.problems.push(Problem {
        kind,
        object,
        detail,
    })
}

/// A table's objects: commits and checkpoint parts by version, data files with their
/// modification time (seconds).
struct Listing {
    commits: BTreeMap<u64, (StorePath, u64)>,
    /// Checkpoint parts per version (one file, or `.checkpoint.<i>.<n>.parquet` parts).
    checkpoints: BTreeMap<u64, Vec<(StorePath, u64)>>,
    data_objects: Vec<(String, i64)>,
}

/// Lists the table's store once.
async fn list_table(store: &dyn ObjectStore, location: &str) -> Result<Listing> {
    let mut commits: BTreeMap<u64, (StorePath, u64)> = BTreeMap::new();
    // Checkpoint parts per version (one file, or `.checkpoint.<i>.<n>.parquet` parts).
    let mut checkpoints: BTreeMap<u64, Vec<(StorePath, u64)>> = BTreeMap::new();
    let mut data_objects: Vec<(String, i64)> = Vec::new();
    let mut listing = store.list(None);
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(storage(location, ""))?;
        let path = meta.location.to_string();
        if let Some(name) = path.strip_prefix("_delta_log/") {
            if let Some(v) = name
                .strip_suffix(".json")
                .filter(|v| v.len() == 20 && v.bytes().all(|b| b.is_ascii_digit()))
            {
                commits.insert(v.parse().expect("20 digits"), (meta.location, meta.size));
            } else if let Some((v, _)) = name.split_once(".checkpoint.").filter(|(v, rest)| {
                v.len() == 20 && v.bytes().all(|b| b.is_ascii_digit()) && rest.ends_with("parquet")
            }) {
                checkpoints
                    .entry(v.parse().expect("20 digits"))
                    .or_default()
                    .push((meta.location, meta.size));
            }
        } else if path.ends_with(".parquet") && !path.starts_with('_') {
            data_objects.push((path, meta.last_modified.timestamp()));
        }
    }
    Ok(Listing {
        commits,
        checkpoints,
        data_objects,
    })
}

/// Checkpoints beyond the log's head, and sealed versions the log no longer reaches.
fn check_past_head(
    checkpoints: &BTreeMap<u64, Vec<(StorePath, u64)>>,
    claims: &[Claim<'_>],
    head: u64,
    report: &mut VerifyReport,
) {
    for (&version, parts) in checkpoints.range(head + 1..) {
        for (path, _) in parts {
            problem(
                report,
                ProblemKind::RewrittenCheckpoint,
                path.to_string(),
                format!("a checkpoint of version {version}, beyond the log's head {head}"),
            );
        }
    }
    // Commits deleted from the end of the log leave no gap for the walk to see; a seal does.
    for c in claims.iter().filter(|c| c.version > head) {
        problem(
            report,
            ProblemKind::MissingCommit,
            format!("_delta_log/{:020}.json", c.version),
            format!(
                "the seal of {} recorded version {}, but the log ends at version {head}: its newest commits were deleted",
                c.sealed_at, c.version
            ),
        );
    }
}

/// Re-hashes every live file (added since `since_ms`) against the hash its `add` recorded.
async fn hash_live_files(
    store: &dyn ObjectStore,
    location: &str,
    opts: &VerifyOptions,
    live: &HashMap<String, Live>,
    report: &mut VerifyReport,
) -> Result<()> {
    let mut live_sorted: Vec<(&String, &Live)> = live.iter().collect();
    live_sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (path, file) in live_sorted {
        if opts.since_ms.is_some_and(|since| file.added_ms < since) {
            continue;
        }
        let Some(expected) = &file.sha256 else {
            problem(
                report,
                ProblemKind::UnhashedFile,
                path.clone(),
                "its add action records no auditlake.sha256".into(),
            );
            continue;
        };
        let object = StorePath::from(path.as_str());
        let mut stream = match store.get(&object).await {
            Ok(r) => r.into_stream(),
            Err(object_store::Error::NotFound { .. }) => {
                problem(
                    report,
                    ProblemKind::MissingFile,
                    path.clone(),
                    "named by the log but not in storage".into(),
                );
                continue;
            }
            Err(e) => return Err(storage(location, path)(e)),
        };
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(storage(location, path))?;
            report.bytes_hashed += chunk.len() as u64;
            hasher.update(&chunk);
        }
        report.files_hashed += 1;
        let actual = hex::encode(hasher.finalize());
        if &actual != expected {
            problem(
                report,
                ProblemKind::ModifiedFile,
                path.clone(),
                format!("SHA-256 is {actual}, the log recorded {expected}"),
            );
        }
    }
    Ok(())
}

/// Data files no commit ever named, older than the grace (and than the seal the walk started
/// from).
fn find_injected(
    mut data_objects: Vec<(String, i64)>,
    ever_named: &HashSet<String>,
    opts: &VerifyOptions,
    injected_after: Option<i64>,
    report: &mut VerifyReport,
) {
    let cutoff = chrono::Utc::now().timestamp() - opts.grace_secs as i64;
    data_objects.sort();
    for (path, modified) in data_objects {
        if !ever_named.contains(&path)
            && modified <= cutoff
            && injected_after.is_none_or(|after| modified >= after)
        {
            problem(
                report,
                ProblemKind::InjectedFile,
                path,
                "a data file no commit has ever named".into(),
            );
        }
    }
}

/// Delta paths are URL-encoded (`hour=05` stays, `cluster=a b` would be `a%20b`).
fn decode_path(p: &str) -> String {
    percent_encoding::percent_decode_str(p)
        .decode_utf8_lossy()
        .into_owned()
}
