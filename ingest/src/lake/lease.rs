//! A lease on a lake task (`_state/<name>`): on an object-store lake several `serve` replicas
//! share one bucket, and a task that must run once (the scheduler: its rules, watermarks, findings
//! and alert delivery) runs only in the replica that holds the lease.
//!
//! The lease is a small JSON object `{holder, expires_at}` written with the store's conditional
//! puts: taken with put-if-absent (`PutMode::Create`, S3 `If-None-Match: *`) when there is none,
//! and renewed — or taken over once expired — with compare-and-swap on the entity tag read just
//! before (`PutMode::Update`, S3 `If-Match`). Of two replicas racing, one put fails with a
//! precondition error and that replica does not hold the lease.
//!
//! Time: `expires_at` is wall-clock, compared by the other replicas with their own clocks; the
//! holder itself stops considering the lease held `ttl / 5` earlier than that by its monotonic
//! clock (measured from *before* its renewal was sent), so clocks may disagree by up to a fifth of
//! the TTL without two holders.
//!
//! A local lake needs no lease: one process holds its writer lock, and with it the lake.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::{ObjectStoreExt as _, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::{Lake, STATE_DIR, state_object, store};
use crate::error::{IngestError, Result};

#[derive(Debug, Serialize, Deserialize)]
struct LeaseDoc {
    holder: String,
    /// RFC 3339.
    expires_at: String,
}

/// What a refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStatus {
    /// This process holds the lease (taken or renewed just now).
    Held,
    /// Another process holds it until `expires_at` (RFC 3339).
    HeldBy { holder: String, expires_at: String },
}

#[derive(Debug, Default)]
struct Held {
    /// Until when this process may act as the holder (monotonic clock).
    until: Option<Instant>,
    /// The version of the lease object this process last wrote.
    version: Option<UpdateVersion>,
}

#[derive(Debug)]
pub struct Lease {
    lake: Lake,
    name: String,
    holder: String,
    ttl: Duration,
    held: Mutex<Held>,
}

/// `<host>-<pid>-<ulid>`: unique per process, and says where it runs.
fn holder_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}-{}", std::process::id(), ulid::Ulid::generate())
}

impl Lease {
    /// The lease `_state/<name>` of `lake`, for `ttl` per renewal (renew every `ttl / 3`).
    pub fn new(lake: &Lake, name: &str, ttl: Duration) -> Lease {
        Lease {
            lake: lake.clone(),
            name: name.to_owned(),
            holder: holder_id(),
            ttl,
            held: Mutex::new(Held::default()),
        }
    }

    /// This process's holder id, as written in the lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether this process holds the lease now (always on a local lake).
    pub fn held(&self) -> bool {
        if !self.lake.is_remote() {
            return true;
        }
        self.held
            .lock()
            .expect("lease")
            .until
            .is_some_and(|u| Instant::now() < u)
    }

    fn location(&self) -> String {
        format!("{}{STATE_DIR}/{}", self.lake.url(), self.name)
    }

    /// Takes the lease when it is free or expired, renews it when this process holds it. An
    /// error (the store unreachable) leaves [`held`](Self::held) as it was: it runs out by itself.
    pub fn refresh(&self) -> Result<LeaseStatus> {
        let Some(remote) = &self.lake.location.remote else {
            return Ok(LeaseStatus::Held);
        };
        let path = state_object(remote, &self.name);
        let started = Instant::now();
        let now = Utc::now();
        let ttl = chrono::TimeDelta::from_std(self.ttl).unwrap_or(chrono::TimeDelta::minutes(1));
        let doc = LeaseDoc {
            holder: self.holder.clone(),
            expires_at: (now + ttl).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let body = PutPayload::from(Bytes::from(
            serde_json::to_vec(&doc).expect("lease serializes"),
        ));
        let storage = |source: object_store::Error| IngestError::Storage {
            location: self.location(),
            source: Box::new(source),
        };
        let current = store::block_on(async {
            match remote.store.get(&path).await {
                Ok(got) => {
                    let meta = got.meta.clone();
                    let bytes = got.bytes().await?;
                    Ok(Some((meta, bytes)))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(storage)?;
        let mode = match current {
            None => PutMode::Create,
            Some((meta, bytes)) => {
                // An unreadable lease is treated as expired: it is ours to overwrite.
                if let Ok(other) = serde_json::from_slice::<LeaseDoc>(&bytes)
                    && other.holder != self.holder
                    && DateTime::parse_from_rfc3339(&other.expires_at)
                        .is_ok_and(|t| t.to_utc() > now)
                {
                    self.lose();
                    return Ok(LeaseStatus::HeldBy {
                        holder: other.holder,
                        expires_at: other.expires_at,
                    });
                }
                PutMode::Update(UpdateVersion {
                    e_tag: meta.e_tag,
                    version: meta.version,
                })
            }
        };
        match store::block_on(remote.store.put_opts(&path, body, PutOptions::from(mode))) {
            Ok(put) => {
                let mut held = self.held.lock().expect("lease");
                held.until = Some(started + self.ttl - self.ttl / 5);
                held.version = Some(UpdateVersion {
                    e_tag: put.e_tag,
                    version: put.version,
                });
                Ok(LeaseStatus::Held)
            }
            // Another replica wrote it between our read and our write: it holds the lease.
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                self.lose();
                Ok(LeaseStatus::HeldBy {
                    holder: "another replica".into(),
                    expires_at: doc.expires_at,
                })
            }
            Err(e) => Err(storage(e)),
        }
    }

    fn lose(&self) {
        *self.held.lock().expect("lease") = Held::default();
    }

    /// Gives the lease up (on shutdown), so another replica takes over at once instead of after
    /// the TTL: marks it expired, only if it is still the version this process wrote.
    pub fn release(&self) {
        let Some(remote) = &self.lake.location.remote else {
            return;
        };
        let version = {
            let mut held = self.held.lock().expect("lease");
            held.until = None;
            held.version.take()
        };
        let Some(version) = version else { return };
        let doc = LeaseDoc {
            holder: self.holder.clone(),
            expires_at: DateTime::<Utc>::UNIX_EPOCH
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let body = PutPayload::from(Bytes::from(
            serde_json::to_vec(&doc).expect("lease serializes"),
        ));
        let path = state_object(remote, &self.name);
        let _ = store::block_on(remote.store.put_opts(
            &path,
            body,
            PutOptions::from(PutMode::Update(version)),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn replicas(
        n: usize,
    ) -> (
        tempfile::TempDir,
        Arc<object_store::memory::InMemory>,
        Vec<Lake>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(object_store::memory::InMemory::new());
        let lakes = (0..n)
            .map(|_| {
                Lake::open_with_store("s3://bucket/lake", store.clone(), Some(dir.path())).unwrap()
            })
            .collect();
        (dir, store, lakes)
    }

    #[test]
    fn one_replica_holds_the_lease_until_it_expires_or_is_released() {
        let (_dir, _store, lakes) = replicas(2);
        let ttl = Duration::from_millis(600);
        let a = Lease::new(&lakes[0], "scheduler.lease", ttl);
        let b = Lease::new(&lakes[1], "scheduler.lease", ttl);
        assert!(!a.held() && !b.held());
        assert_eq!(a.refresh().unwrap(), LeaseStatus::Held);
        assert!(a.held());
        match b.refresh().unwrap() {
            LeaseStatus::HeldBy { holder, .. } => assert_eq!(holder, a.holder()),
            other => panic!("{other:?}"),
        }
        assert!(!b.held());
        // Renewing keeps it.
        assert_eq!(a.refresh().unwrap(), LeaseStatus::Held);
        assert!(matches!(b.refresh().unwrap(), LeaseStatus::HeldBy { .. }));
        // A stops renewing (it died): after the TTL B takes over, and A knows it lost.
        std::thread::sleep(ttl + Duration::from_millis(100));
        assert!(!a.held(), "the holder's own view runs out first");
        assert_eq!(b.refresh().unwrap(), LeaseStatus::Held);
        assert!(matches!(a.refresh().unwrap(), LeaseStatus::HeldBy { .. }));
        assert!(!a.held());
        // B shuts down and releases: A takes it at once.
        b.release();
        assert!(!b.held());
        assert_eq!(a.refresh().unwrap(), LeaseStatus::Held);
    }

    #[test]
    fn of_replicas_racing_for_a_free_lease_exactly_one_wins() {
        let (_dir, _store, lakes) = replicas(8);
        let leases: Vec<Lease> = lakes
            .iter()
            .map(|l| Lease::new(l, "scheduler.lease", Duration::from_secs(30)))
            .collect();
        let won = std::thread::scope(|s| {
            let handles: Vec<_> = leases
                .iter()
                .map(|l| s.spawn(move || l.refresh().unwrap() == LeaseStatus::Held))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|w| *w)
                .count()
        });
        assert_eq!(won, 1);
        assert_eq!(leases.iter().filter(|l| l.held()).count(), 1);
    }

    #[test]
    fn a_local_lake_is_always_held() {
        let dir = tempfile::tempdir().unwrap();
        let lease = Lease::new(
            &Lake::new(dir.path()),
            "scheduler.lease",
            Duration::from_secs(1),
        );
        assert!(lease.held());
        assert_eq!(lease.refresh().unwrap(), LeaseStatus::Held);
        assert!(!dir.path().join("_state").exists(), "nothing written");
    }
}
