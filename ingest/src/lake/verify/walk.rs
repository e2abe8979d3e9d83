//! The walk of a table's commit log under `auditlake verify`: from version 0, or from a sealed
//! checkpoint, each commit read, checked against the seals and linked to the one before, and
//! its actions applied to the live files.

use std::collections::{BTreeMap, HashMap, HashSet};

use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::checkpoint::{check_checkpoint, read_checkpoint};
use super::{
    Claim, Listing, Live, MAX_COMMIT_BYTES, ProblemKind, VerifyOptions, VerifyReport, decode_path,
    get_whole, problem,
};
use crate::error::Result;
use crate::lake::delta::{ACTION_RETENTION, INFO_ACTION, INFO_PREV_SHA256, TAG_SHA256};

/// Where the walk of the log starts, and what it starts with.
pub(super) struct Start {
    pub(super) live: HashMap<String, Live>,
    pub(super) ever_named: HashSet<String>,
    pub(super) first: u64,
    /// Data files modified before this (seconds) were checked by the verify that sealed the
    /// checkpoint the walk starts from.
    pub(super) injected_after: Option<i64>,
}

/// Version 0 with nothing live; with `from_seal`, the newest sealed checkpoint that is intact.
pub(super) async fn walk_start(
    store: &dyn ObjectStore,
    location: &str,
    opts: &VerifyOptions,
    claims: &[Claim<'_>],
    head: u64,
    checkpoints: &BTreeMap<u64, Vec<(StorePath, u64)>>,
    report: &mut VerifyReport,
) -> Result<Start> {
    let mut live: HashMap<String, Live> = HashMap::new();
    let mut ever_named: HashSet<String> = HashSet::new();
    // With `from_seal`: the newest sealed checkpoint whose bytes are still what the seal
    // recorded gives the live files at its version; the walk starts there. Files older than that
    // seal (less the grace) were checked for injection by the verify that made it.
    let mut first = 0;
    let mut injected_after: Option<i64> = None;
    let sealed_start = claims
        .iter()
        .filter(|_| opts.from_seal)
        .filter_map(|c| c.checkpoint.map(|cp| (cp, c.sealed_at)))
        .filter(|(cp, _)| cp.version <= head)
        .max_by_key(|(cp, _)| cp.version);
    if let Some((cp, sealed_at)) = sealed_start {
        let object = format!("_delta_log/{:020}.checkpoint.parquet", cp.version);
        match checkpoints.get(&cp.version) {
            None => problem(
                report,
                ProblemKind::RewrittenCheckpoint,
                object,
                format!(
                    "the checkpoint the seal of {sealed_at} recorded is gone; the whole log was walked instead"
                ),
            ),
            Some(parts) => match read_checkpoint(store, location, parts).await? {
                Ok(cp_files) if cp_files.sha256 == cp.sha256 => {
                    ever_named = cp_files.named;
                    live = cp_files.live;
                    first = cp.version;
                    injected_after = chrono::DateTime::parse_from_rfc3339(sealed_at)
                        .ok()
                        .map(|t| t.timestamp() - opts.grace_secs as i64);
                }
                Ok(cp_files) => problem(
                    report,
                    ProblemKind::RewrittenCheckpoint,
                    object,
                    format!(
                        "its SHA-256 is {}, but the seal of {sealed_at} recorded {}; the whole log was walked instead",
                        cp_files.sha256, cp.sha256
                    ),
                ),
                Err(p) => report.problems.push(p),
            },
        }
    }
    Ok(Start {
        live,
        ever_named,
        first,
        injected_after,
    })
}

/// Walks the log from `start.first` to `head`: each commit read, checked against the seals and
/// linked to the one before, its actions applied to the live files, checkpoints compared on the
/// way. Returns the version and SHA-256 of the last commit read.
pub(super) async fn walk_log(
    store: &dyn ObjectStore,
    location: &str,
    claims: &[Claim<'_>],
    listing: &Listing,
    head: u64,
    start: &mut Start,
    report: &mut VerifyReport,
) -> Result<Option<(u64, String)>> {
    let mut prev_sha: Option<(u64, String)> = None;
    for version in start.first..=head {
        let name = format!("_delta_log/{version:020}.json");
        let Some((path, size)) = listing.commits.get(&version) else {
            problem(
                report,
                ProblemKind::MissingCommit,
                name,
                format!("version {version} is missing from a log that goes to {head}"),
            );
            prev_sha = None;
            continue;
        };
        // A commit is read whole: one planted to exhaust memory is reported, not read.
        if *size > MAX_COMMIT_BYTES {
            problem(
                report,
                ProblemKind::UnreadableCommit,
                name,
                format!(
                    "{size} bytes: larger than any commit auditlake writes ({} MiB at most)",
                    MAX_COMMIT_BYTES >> 20
                ),
            );
            prev_sha = None;
            continue;
        }
        let bytes = get_whole(store, location, path, &name).await?;
        report.commits += 1;
        let sha = hex::encode(Sha256::digest(&bytes));
        for c in claims
            .iter()
            .filter(|c| c.version == version && c.sha256 != sha)
        {
            problem(
                report,
                ProblemKind::RewrittenCommit,
                name.clone(),
                format!(
                    "its SHA-256 is {sha}, but the seal of {} recorded {}",
                    c.sealed_at, c.sha256
                ),
            );
        }
        if start.first > 0 && version == start.first {
            // The sealed checkpoint holds this commit's state; its hash is vouched for by the
            // links of the commits after it, up to the sealed head.
            prev_sha = Some((version, sha));
            continue;
        }
        let Some(actions) = parse_actions(&bytes, &name, report) else {
            prev_sha = Some((version, sha));
            continue;
        };
        let commit_ms = check_link(version, &name, &actions, &prev_sha, report);
        apply_actions(&actions, commit_ms, &mut start.live, &mut start.ever_named);
        prev_sha = Some((version, sha));
        if let Some(parts) = listing.checkpoints.get(&version) {
            check_checkpoint(store, location, version, parts, &start.live, report).await?;
        }
    }
    Ok(prev_sha)
}

/// A commit's actions, one JSON value a line; `None` (and a problem) when a line is not JSON.
fn parse_actions(bytes: &[u8], name: &str, report: &mut VerifyReport) -> Option<Vec<Value>> {
    let mut actions = Vec::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => actions.push(v),
            Err(e) => {
                problem(
                    report,
                    ProblemKind::UnreadableCommit,
                    name.to_owned(),
                    format!("not JSON lines: {e}"),
                );
                return None;
            }
        }
    }
    Some(actions)
}

/// Reads a commit's `commitInfo` (counting retention commits) and checks its link to the
/// commit before. Returns the commit's time (ms), which its `add`s record.
fn check_link(
    version: u64,
    name: &str,
    actions: &[Value],
    prev_sha: &Option<(u64, String)>,
    report: &mut VerifyReport,
) -> i64 {
    let mut link: Option<String> = None;
    let mut commit_ms = 0i64;
    for action in actions {
        if let Some(info) = action.get("commitInfo") {
            link = info
                .get(INFO_PREV_SHA256)
                .and_then(Value::as_str)
                .map(str::to_owned);
            commit_ms = info.get("timestamp").and_then(Value::as_i64).unwrap_or(0);
            if info.get(INFO_ACTION).and_then(Value::as_str) == Some(ACTION_RETENTION) {
                report.retention_commits += 1;
            }
        }
    }
    if version > 0 {
        match (&link, prev_sha) {
            (None, _) => problem(
                report,
                ProblemKind::UnlinkedCommit,
                name.to_owned(),
                "no auditlake.prevCommitSha256: this commit was not made by auditlake".into(),
            ),
            (Some(recorded), Some((pv, actual))) if recorded != actual => problem(
                report,
                ProblemKind::RewrittenCommit,
                format!("_delta_log/{pv:020}.json"),
                format!("its SHA-256 is {actual}, but commit {version} recorded {recorded}"),
            ),
            _ => {}
        }
    }
    commit_ms
}

/// Applies a commit's `add`s and `remove`s to the live files, recording every path named.
fn apply_actions(
    actions: &[Value],
    commit_ms: i64,
    live: &mut HashMap<String, Live>,
    ever_named: &mut HashSet<String>,
) {
    for action in actions {
        if let Some(add) = action.get("add") {
            let Some(p) = add.get("path").and_then(Value::as_str) else {
                continue;
            };
            let p = decode_path(p);
            ever_named.insert(p.clone());
            let sha256 = add
                .get("tags")
                .and_then(|t| t.get(TAG_SHA256))
                .and_then(Value::as_str)
                .map(str::to_owned);
            live.insert(
                p,
                Live {
                    sha256,
                    added_ms: commit_ms,
                },
            );
        } else if let Some(p) = action
            .get("remove")
            .and_then(|r| r.get("path"))
            .and_then(Value::as_str)
        {
            let p = decode_path(p);
            ever_named.insert(p.clone());
            live.remove(&p);
        }
    }
}
