//! The findings store: `<lake>/findings/date=YYYY-MM-DD/part-<ulid>.parquet`, one row per
//! finding *revision*. It decides what is new (alert), what is a repeat with more evidence
//! (a new revision, no alert) and what was already known (nothing), and groups findings into
//! incidents.
//!
//! The files are the index: on open, recent findings are read back, so a restart (or a crash
//! between sending an alert and recording the finding) recognises every finding it stored — the
//! same hits found again get the same `finding_id` (hash of the dedup key) and are not new.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use auditlake_ingest::lake::DurableWrite;
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
    root: PathBuf,
    index: HashMap<String, Known>,
    incidents: Vec<OpenIncident>,
    incident_window: TimeDelta,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DetectError + '_ {
    move |e| DetectError::Store(format!("{}: {e}", path.display()))
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DetectError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let p = entry.map_err(io(dir))?.path();
        if p.is_dir() {
            parquet_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    Ok(())
}

impl FindingsStore {
    /// Reads back findings detected in the last `horizon` (longer than any rule's dedup window).
    pub fn open(
        lake: &Path,
        horizon: TimeDelta,
        incident_window: TimeDelta,
    ) -> Result<Self, DetectError> {
        let root = lake.join("findings");
        let mut files = Vec::new();
        parquet_files(&root, &mut files)?;
        files.sort();
        let cutoff = Utc::now() - horizon;
        let mut store = FindingsStore {
            root,
            index: HashMap::new(),
            incidents: Vec::new(),
            incident_window,
        };
        let mut stored = Vec::new();
        for path in files {
            let file = File::open(&path).map_err(io(&path))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.build())
                .map_err(|e| DetectError::Store(format!("{}: {e}", path.display())))?;
            for batch in reader {
                let batch =
                    batch.map_err(|e| DetectError::Store(format!("{}: {e}", path.display())))?;
                let found = findings_from_batch(&batch)
                    .map_err(|e| DetectError::Store(format!("{}: {e}", path.display())))?;
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

    /// Writes the changes as one Parquet file, durably (temp name, fsync, rename, fsync dir).
    pub fn write(&self, changes: &[Change]) -> Result<Option<PathBuf>, DetectError> {
        if changes.is_empty() {
            return Ok(None);
        }
        let findings: Vec<Finding> = changes.iter().map(|c| c.finding.clone()).collect();
        let batch = findings_to_batch(&findings);
        let date = changes[0].finding.detected_at.format("%Y-%m-%d");
        let target = self
            .root
            .join(format!("date={date}"))
            .join(format!("part-{}.parquet", ulid::Ulid::generate()));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("valid level"),
            ))
            .build();
        DurableWrite::new(&target)
            .write(|file| {
                let mut w = ArrowWriter::try_new(file, findings_schema(), Some(props))
                    .map_err(std::io::Error::other)?;
                w.write(&batch).map_err(std::io::Error::other)?;
                w.into_inner().map_err(std::io::Error::other)?;
                Ok(())
            })
            .map_err(|e| DetectError::Store(e.to_string()))?;
        Ok(Some(target))
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
        let mut store =
            FindingsStore::open(dir.path(), TimeDelta::days(7), TimeDelta::hours(1)).unwrap();
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
        let mut reopened =
            FindingsStore::open(dir.path(), TimeDelta::days(7), TimeDelta::hours(1)).unwrap();
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

    #[test]
    fn findings_sharing_actor_or_target_within_the_window_form_one_incident() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let mut store =
            FindingsStore::open(dir.path(), TimeDelta::days(7), TimeDelta::hours(1)).unwrap();
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
