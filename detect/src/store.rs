//! The findings store: `<lake>/findings/date=YYYY-MM-DD/part-<ulid>.parquet`, one row per
//! finding *revision*, on local disk or in the lake's bucket (the files go through
//! [`Lake`]'s side-file operations). It decides what is new (alert), what is a repeat with more evidence
//! (a new revision, no alert) and what was already known (nothing), and groups findings into
//! incidents.
//!
//! The files are the index: on open, recent findings are read back, so a restart (or a crash
//! between sending an alert and recording the finding) recognises every finding it stored — the
//! same hits found again get the same `finding_id` (hash of the dedup key) and are not new.

use std::collections::{HashMap, HashSet};

use auditlake_ingest::Lake;
use auditlake_ingest::lake::FINDINGS_DIR;
use auditlake_schemas::findings_schema;
use chrono::{DateTime, TimeDelta, Utc};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

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

/// The `date=` partition of a findings file (`date=YYYY-MM-DD/part-….parquet`), if it has one.
fn partition_date(name: &str) -> Option<&str> {
    name.split('/').find_map(|part| part.strip_prefix("date="))
}

impl FindingsStore {
    /// Reads back findings detected in the last `horizon` (longer than any rule's dedup window)
    /// from the lake's findings, local files or objects in the bucket alike.
    pub fn open(
        lake: &Lake,
        horizon: TimeDelta,
        incident_window: TimeDelta,
    ) -> Result<Self, DetectError> {
        let store_err = |e: auditlake_ingest::IngestError| DetectError::Store(e.to_string());
        let cutoff = Utc::now() - horizon;
        // A file's rows were all detected on its partition's date: older days are skipped unread.
        let first_day = (cutoff - TimeDelta::days(1)).format("%Y-%m-%d").to_string();
        let files: Vec<String> = lake
            .list_files(FINDINGS_DIR)
            .map_err(store_err)?
            .into_iter()
            .map(|e| e.name)
            .filter(|n| n.ends_with(".parquet"))
            .filter(|n| partition_date(n).is_none_or(|d| d >= first_day.as_str()))
            .collect();
        let mut store = FindingsStore {
            lake: lake.clone(),
            index: HashMap::new(),
            incidents: Vec::new(),
            incident_window,
        };
        let mut stored = Vec::new();
        for name in files {
            let rel = format!("{FINDINGS_DIR}/{name}");
            let where_ = lake.location_of(&rel);
            // Listed a moment ago, gone now: nothing removes findings, so only a race with a
            // hand-made cleanup; skip it.
            let Some(bytes) = lake.read_file(&rel).map_err(store_err)? else {
                continue;
            };
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

    /// Writes the changes as one Parquet file, `findings/date=<detected>/part-<ulid>.parquet`:
    /// durably in place on a local lake (temp name, fsync, rename, fsync dir), encoded in the
    /// staging directory and uploaded whole on an object-store lake. Returns where it went.
    pub fn write(&self, changes: &[Change]) -> Result<Option<String>, DetectError> {
        if changes.is_empty() {
            return Ok(None);
        }
        let findings: Vec<Finding> = changes.iter().map(|c| c.finding.clone()).collect();
        let batch = findings_to_batch(&findings);
        let date = changes[0].finding.detected_at.format("%Y-%m-%d");
        let rel = format!(
            "{FINDINGS_DIR}/date={date}/part-{}.parquet",
            ulid::Ulid::generate()
        );
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("valid level"),
            ))
            .build();
        self.lake
            .write_file(&rel, |file| {
                let mut w = ArrowWriter::try_new(file, findings_schema(), Some(props))
                    .map_err(std::io::Error::other)?;
                w.write(&batch).map_err(std::io::Error::other)?;
                w.into_inner().map_err(std::io::Error::other)?;
                Ok(())
            })
            .map_err(|e| DetectError::Store(e.to_string()))?;
        Ok(Some(self.lake.location_of(&rel)))
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

    /// On an object-store lake the file goes to the bucket, and another process on the same
    /// bucket (a restarted or another replica) recognises what was stored.
    #[test]
    fn findings_of_an_object_store_lake_are_in_the_bucket_and_read_back() {
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let bucket = Arc::new(object_store::memory::InMemory::new());
        let open = || {
            Lake::open_with_store("s3://evidence/lake", bucket.clone(), Some(dir.path())).unwrap()
        };
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
            written.starts_with(&format!("s3://evidence/lake/findings/date={date}/part-")),
            "{written}"
        );
        let lake = open();
        let files = lake.list_files(FINDINGS_DIR).unwrap();
        assert_eq!(files.len(), 1);
        // Encoded in the writer's staging directory, which it left empty.
        assert_eq!(std::fs::read_dir(writer.tmp_dir()).unwrap().count(), 0);
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
        // A file from a day past the horizon is not even read.
        lake.write_file("findings/date=2020-01-01/part-0.parquet", |f| {
            use std::io::Write;
            f.write_all(b"not parquet")
        })
        .unwrap();
        FindingsStore::open(&lake, TimeDelta::days(7), TimeDelta::hours(1)).unwrap();
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
