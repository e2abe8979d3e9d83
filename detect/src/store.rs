//! The findings store: the lake's `findings` Delta table
//! (`<lake>/findings/date=YYYY-MM-DD/part-<ulid>.parquet`, one row per finding *revision*), on
//! local disk or in the lake's bucket, hash-chained and verified like `audit_events`. It decides what is new (alert), what is a repeat with more evidence
//! (a new revision, no alert) and what was already known (nothing), and groups findings into
//! incidents.
//!
//! The table is the index: on open, recent findings are read back, so a restart (or a crash
//! between sending an alert and recording the finding) recognises every finding it stored — the
//! same hits found again get the same `finding_id` (hash of the dedup key) and are not new.

use std::collections::{HashMap, HashSet};

use auditlake_ingest::Lake;
use auditlake_ingest::lake::{Append, FINDINGS_DIR, TableKind, migrate};
use auditlake_schemas::DATE;
use chrono::{DateTime, TimeDelta, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::DetectError;
use crate::finding::{Finding, findings_from_batch, findings_to_batch};

/// What the store knows of a finding.
#[derive(Debug, Clone)]
struct Known {
    revision: i32,
    event_count: i32,
    last_event_at: DateTime<Utc>,
    incident_id: Option<String>,
}

#[derive(Debug, Clone)]
struct OpenIncident {
    id: String,
    cluster: String,
    actors: HashSet<String>,
    targets: HashSet<String>,
    last_seen: DateTime<Utc>,
}

/// A finding the store accepted, and whether it is new (to be alerted) or an update.
#[derive(Debug, Clone)]
pub struct Change {
    pub finding: Finding,
    pub is_new: bool,
}

pub struct FindingsStore {
    lake: Lake,
    index: HashMap<String, Known>,
    incidents: Vec<OpenIncident>,
    incident_window: TimeDelta,
}

impl FindingsStore {
    /// Reads back findings detected in the last `horizon` (longer than any rule's dedup window)
    /// from the lake's `findings` table: the files its snapshot names, on local disk or in the
    /// bucket alike.
    pub fn open(
        lake: &Lake,
        horizon: TimeDelta,
        incident_window: TimeDelta,
    ) -> Result<Self, DetectError> {
        let store_err = DetectError::Lake;
        // Findings an earlier version wrote as bare files: a table started beside them would
        // hide them from every reader (and from this index), so refuse until migrated.
        if migrate::findings_need_migration(lake).map_err(store_err)? {
            return Err(DetectError::Store(format!(
                "{} holds findings written before they became a Delta table: run `auditlake migrate --lake {}` first",
                lake.location_of(FINDINGS_DIR),
                lake.display()
            )));
        }
        let cutoff = Utc::now() - horizon;
        // A file's rows were all detected on its partition's date: older days are skipped unread.
        let first_day = (cutoff - TimeDelta::days(1)).format("%Y-%m-%d").to_string();
        let files = if lake.findings().exists().map_err(store_err)? {
            lake.findings().all_files().map_err(store_err)?
        } else {
            Vec::new()
        };
        let mut store = FindingsStore {
            lake: lake.clone(),
            index: HashMap::new(),
            incidents: Vec::new(),
            incident_window,
        };
        let mut stored = Vec::new();
        for file in files {
            if file.partition_value(DATE) < first_day.as_str() {
                continue;
            }
            let rel = format!("{FINDINGS_DIR}/{}", file.path);
            let where_ = lake.location_of(&rel);
            // A file the snapshot names is never deleted (findings are kept), so a missing one
            // is damage: say so rather than forget the findings it held.
            let bytes = lake.read_file(&rel).map_err(store_err)?.ok_or_else(|| {
                DetectError::Store(format!(
                    "{where_}: named by the findings table but missing (run `auditlake verify`)"
                ))
            })?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
                .map_err(|e| DetectError::Store(format!("{where_}: {e}")))?;
            for batch in reader {
                let batch = batch.map_err(|e| DetectError::Store(format!("{where_}: {e}")))?;
                let found = findings_from_batch(&batch)
                    .map_err(|e| DetectError::Store(format!("{where_}: {e}")))?;
                stored.extend(found.into_iter().filter(|f| f.detected_at >= cutoff));
            }
        }
        stored.sort_by_key(|f| (f.detected_at, f.revision));
        for f in stored {
            store.remember(&f);
        }
        Ok(store)
    }

    fn remember(&mut self, f: &Finding) {
        let known = self.index.entry(f.finding_id.clone()).or_insert(Known {
            revision: 0,
            event_count: 0,
            last_event_at: f.last_event_at,
            incident_id: None,
        });
        if f.revision >= known.revision {
            *known = Known {
                revision: f.revision,
                event_count: f.event_count,
                last_event_at: f.last_event_at,
                incident_id: f.incident_id.clone(),
            };
        }
        if let Some(id) = &f.incident_id {
            match self.incidents.iter_mut().find(|i| &i.id == id) {
                Some(i) => {
                    i.actors.extend(f.actor.clone());
                    i.targets.extend(f.target.clone());
                    i.last_seen = i.last_seen.max(f.last_event_at);
                }
                None => self.incidents.push(OpenIncident {
                    id: id.clone(),
                    cluster: f.cluster.clone(),
                    actors: f.actor.iter().cloned().collect(),
                    targets: f.target.iter().cloned().collect(),
                    last_seen: f.last_event_at,
                }),
            }
        }
    }

    /// The incident a new finding joins: same cluster, sharing its actor or its target, last
    /// active within the incident window before the finding started. Otherwise a new one.
    fn incident_for(&mut self, f: &Finding) -> String {
        let window = self.incident_window;
        let joins = |i: &OpenIncident| {
            i.cluster == f.cluster
                && i.last_seen + window >= f.first_event_at
                && (f.actor.as_ref().is_some_and(|a| i.actors.contains(a))
                    || f.target.as_ref().is_some_and(|t| i.targets.contains(t)))
        };
        match self.incidents.iter().rev().find(|i| joins(i)) {
            Some(i) => i.id.clone(),
            // Named after the finding that opened it: stable across re-runs and restarts.
            None => format!("inc-{}", f.finding_id),
        }
    }

    /// Stamps `found` with revision, origin and incident, and keeps what changed: a finding never
    /// seen is new; a known one whose evidence grew is a new revision (not new); one seen as it
    /// is already is dropped. Call [`write`](Self::write) with the result.
    pub fn reconcile(
        &mut self,
        found: Vec<Finding>,
        origin: &str,
        now: DateTime<Utc>,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        for mut f in found {
            f.origin = origin.to_owned();
            f.detected_at = now;
            let change = match self.index.get(&f.finding_id) {
                None => {
                    f.revision = 1;
                    f.incident_id = Some(self.incident_for(&f));
                    Change {
                        finding: f,
                        is_new: true,
                    }
                }
                Some(k) if f.event_count > k.event_count || f.last_event_at > k.last_event_at => {
                    f.revision = k.revision + 1;
                    f.incident_id = k.incident_id.clone();
                    Change {
                        finding: f,
                        is_new: false,
                    }
                }
                Some(_) => continue,
            };
            self.remember(&change.finding);
            out.push(change);
        }
        out
    }

    /// Appends the changes to the `findings` table as one Parquet file,
    /// `findings/date=<detected>/part-<ulid>.parquet`, and one commit: the file is made durable
    /// (local) or uploaded whole (object store) before the commit names it, and writers on many
    /// replicas commit concurrently through Delta's optimistic concurrency. Returns where the
    /// file went.
    pub fn write(&self, changes: &[Change]) -> Result<Option<String>, DetectError> {
        if changes.is_empty() {
            return Ok(None);
        }
        let findings: Vec<Finding> = changes.iter().map(|c| c.finding.clone()).collect();
        let batch = findings_to_batch(&findings);
        let date = changes[0]
            .finding
            .detected_at
            .format("%Y-%m-%d")
            .to_string();
        let origins: std::collections::BTreeSet<&str> =
            changes.iter().map(|c| c.finding.origin.as_str()).collect();
        let (_, location) = self.lake.append(
            TableKind::Findings,
            Append {
                rel: format!("{DATE}={date}/part-{}.parquet", ulid::Ulid::generate()),
                partition: HashMap::from([(DATE.to_owned(), Some(date))]),
                batch: &batch,
                action: "findings",
                detail: serde_json::json!({
                    "findings": changes.len(),
                    "new": changes.iter().filter(|c| c.is_new).count(),
                    "origin": origins,
                }),
            },
        )?;
        Ok(Some(location))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, actor: &str, target: &str, minute: u32, count: i32) -> Finding {
        let t = DateTime::parse_from_rfc3339(&format!("2026-11-22T10:{minute:02}:00Z"))
            .unwrap()
            .to_utc();
        Finding {
            finding_id: format!("{id:0>32}"),
            dedup_key: id.into(),
            rule_id: format!("rule-{id}"),
            rule_version: 1,
            severity: "high".into(),
            title: "t".into(),
            summary: "s".into(),
            cluster: "prod".into(),
            actor: Some(actor.into()),
            source_ip: None,
            target: Some(target.into()),
            namespace: None,
            first_event_at: t,
            last_event_at: t,
            event_count: count,
            evidence_audit_ids: vec!["a".into()],
            attack_ids: vec![],
            catalog_ids: vec![],
            bucket_start: t,
            detected_at: t,
            revision: 1,
            origin: "detect".into(),
            incident_id: None,
        }
    }

    #[test]
    fn new_updated_and_known_findings_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let mut store = FindingsStore::open(
            &Lake::new(dir.path()),
            TimeDelta::days(7),
            TimeDelta::hours(1),
        )
        .unwrap();
        let changes = store.reconcile(
            vec![finding("a", "mallory", "secrets x/db", 1, 1)],
            "scheduled",
            now,
        );
        assert!(changes[0].is_new && changes[0].finding.revision == 1);
        store.write(&changes).unwrap();
        // The same again: nothing; more evidence: revision 2, not new.
        assert!(
            store
                .reconcile(
                    vec![finding("a", "mallory", "secrets x/db", 1, 1)],
                    "scheduled",
                    now
                )
                .is_empty()
        );
        let more = store.reconcile(
            vec![finding("a", "mallory", "secrets x/db", 1, 3)],
            "scheduled",
            now,
        );
        assert!(!more[0].is_new && more[0].finding.revision == 2);
        store.write(&more).unwrap();
        // After a restart the store still knows both revisions.
        let mut reopened = FindingsStore::open(
            &Lake::new(dir.path()),
            TimeDelta::days(7),
            TimeDelta::hours(1),
        )
        .unwrap();
        assert!(
            reopened
                .reconcile(
                    vec![finding("a", "mallory", "secrets x/db", 1, 3)],
                    "scheduled",
                    now
                )
                .is_empty()
        );
        let grown = reopened.reconcile(
            vec![finding("a", "mallory", "secrets x/db", 1, 4)],
            "scheduled",
            now,
        );
        assert_eq!(grown[0].finding.revision, 3);
    }

    /// Another process on the same lake (a restarted or another replica) recognises what was
    /// stored, and partitions past the horizon are not read. (On a bucket: e2e
    /// `lake::scheduled_findings_of_an_s3_lake…`, which needs the S3 server process.)
    #[test]
    fn findings_are_read_back_by_another_process_and_old_days_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Lake::new(dir.path());
        let now = Utc::now();
        let writer = open();
        let mut store =
            FindingsStore::open(&writer, TimeDelta::days(7), TimeDelta::hours(1)).unwrap();
        let changes = store.reconcile(
            vec![finding("a", "mallory", "secrets x/db", 1, 1)],
            "retro-hunt",
            now,
        );
        let written = store.write(&changes).unwrap().unwrap();
        let date = now.format("%Y-%m-%d");
        assert!(
            written.contains(&format!("findings/date={date}/part-")),
            "{written}"
        );
        let lake = open();
        let files = lake.findings().all_files().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].partition_value(DATE), date.to_string());
        assert_eq!(files[0].rows, Some(1));
        let mut reopened =
            FindingsStore::open(&lake, TimeDelta::days(7), TimeDelta::hours(1)).unwrap();
        assert!(
            reopened
                .reconcile(
                    vec![finding("a", "mallory", "secrets x/db", 1, 1)],
                    "scheduled",
                    now
                )
                .is_empty(),
            "the same finding is known after a reopen"
        );
        // A file of a day past the horizon is not even read (this one would fail to decode).
        let old = "date=2020-01-01/part-0.parquet";
        lake.write_file(&format!("{FINDINGS_DIR}/{old}"), |f| {
            use std::io::Write;
            f.write_all(b"not parquet")
        })
        .unwrap();
        lake.findings()
            .commit(
                "findings",
                serde_json::Value::Null,
                vec![auditlake_ingest::lake::NewFile {
                    path: old.into(),
                    partition: HashMap::from([(DATE.to_owned(), Some("2020-01-01".into()))]),
                    size: 11,
                    rows: 1,
                    sha256: auditlake_ingest::lake::delta::sha256_hex(b"not parquet"),
                }],
                Vec::new(),
            )
            .unwrap();
        FindingsStore::open(&lake, TimeDelta::days(7), TimeDelta::hours(1)).unwrap();
    }

    /// Every write is a commit of the hash-chained table: `verify` re-hashes findings files
    /// like event files, and the store refuses to forget a file the table names.
    #[test]
    fn findings_are_verified_and_a_missing_file_is_an_error_not_forgotten() {
        use auditlake_ingest::lake::verify::{ProblemKind, VerifyOptions, verify};
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let now = Utc::now();
        let mut store =
            FindingsStore::open(&lake, TimeDelta::days(7), TimeDelta::hours(1)).unwrap();
        for (id, minute) in [("a", 1), ("b", 2)] {
            let changes = store.reconcile(
                vec![finding(id, "mallory", "secrets x/db", minute, 1)],
                "scheduled",
                now,
            );
            store.write(&changes).unwrap();
        }
        // create + two appends
        assert_eq!(lake.findings().head_version().unwrap(), Some(2));
        lake.events().all_files().unwrap();
        let intact = verify(&lake, &VerifyOptions::default()).unwrap();
        assert!(intact.problems.is_empty(), "{:?}", intact.problems);
        assert!(
            intact
                .heads
                .iter()
                .any(|h| h.table == "findings" && h.version == 2)
        );

        let files = lake.findings().all_files().unwrap();
        let victim = dir.path().join(FINDINGS_DIR).join(&files[0].path);
        let mut bytes = std::fs::read(&victim).unwrap();
        let last = bytes.len() - 1;
        bytes[last / 2] ^= 1;
        std::fs::write(&victim, &bytes).unwrap();
        let report = verify(&lake, &VerifyOptions::default()).unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert_eq!(report.problems[0].kind, ProblemKind::ModifiedFile);
        assert_eq!(
            report.problems[0].object,
            format!("{FINDINGS_DIR}/{}", files[0].path)
        );

        std::fs::remove_file(&victim).unwrap();
        let err = FindingsStore::open(&lake, TimeDelta::days(7), TimeDelta::hours(1))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&files[0].path) && err.contains("missing"),
            "{err}"
        );
    }

    /// Bare findings files an earlier version wrote: a table started beside them would hide
    /// them, so the store refuses and names the command that adopts them.
    #[test]
    fn findings_written_before_the_table_existed_must_be_migrated_first() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        lake.write_file("findings/date=2026-11-22/part-0.parquet", |f| {
            use std::io::Write;
            f.write_all(b"PAR1")
        })
        .unwrap();
        let err = FindingsStore::open(&lake, TimeDelta::days(7), TimeDelta::hours(1))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("auditlake migrate"), "{err}");
        assert!(!lake.findings().exists().unwrap(), "nothing was created");
    }

    #[test]
    fn findings_sharing_actor_or_target_within_the_window_form_one_incident() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let mut store = FindingsStore::open(
            &Lake::new(dir.path()),
            TimeDelta::days(7),
            TimeDelta::hours(1),
        )
        .unwrap();
        let c = store.reconcile(
            vec![
                finding("a", "mallory", "secrets x/db", 1, 1),
                // same actor, other target → same incident
                finding("b", "mallory", "clusterrolebindings y", 5, 1),
                // other actor, same target as b → same incident
                finding("c", "eve", "clusterrolebindings y", 9, 1),
                // unrelated
                finding("d", "bob", "pods z/p", 9, 1),
            ],
            "scheduled",
            now,
        );
        let inc: Vec<_> = c
            .iter()
            .map(|c| c.finding.incident_id.clone().unwrap())
            .collect();
        assert_eq!(inc[0], inc[1]);
        assert_eq!(inc[1], inc[2]);
        assert_ne!(inc[0], inc[3]);
        // Two hours later the same actor starts a new incident.
        let mut late = finding("e", "mallory", "secrets x/other", 1, 1);
        late.first_event_at += TimeDelta::hours(2);
        late.last_event_at += TimeDelta::hours(2);
        let c2 = store.reconcile(vec![late], "scheduled", now);
        assert_ne!(c2[0].finding.incident_id.clone().unwrap(), inc[0]);
    }
}
