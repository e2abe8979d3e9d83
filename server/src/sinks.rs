//! Alert sinks and their durable outbox.
//!
//! `<lake>/_state/outbox/<sink>/pending/<detected µs>-<finding_id>-r<revision>.json` holds each
//! finding a sink still has to receive; a delivery task per sink sends them oldest first, with
//! retries and exponential backoff, and moves each one to `sent/` only after the sink confirmed
//! it (2xx). A sink that is down loses nothing: its findings wait in the lake, across restarts.
//! On an object-store lake the outbox is objects in the lake's bucket (enqueue = put-if-absent,
//! sent = copy to `sent/` + delete), so when the replica running the scheduler dies, the replica
//! that takes its lease over delivers what it left pending. Every
//! payload carries the idempotency key `<finding_id>-r<revision>` (also the `Idempotency-Key`
//! header), so a receiver can recognise the rare re-delivery after a crash between its 2xx and
//! our move to `sent/`.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use auditlake_detect::{Alerts, Finding};
use auditlake_ingest::error::chain;
use auditlake_ingest::{IngestError, Lake};

use crate::error::ServerError;
use serde_json::{Value, json};

/// Kinds of sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// One JSON finding per line on stdout.
    Stdout,
    /// One JSON finding per line appended to a file (fsynced).
    File { path: PathBuf },
    /// JSON POST of `{idempotency_key, finding}`.
    Webhook { url: String },
    /// Prometheus Alertmanager: `POST <url>/api/v2/alerts`.
    Alertmanager { url: String },
    /// Falco's JSON output (output, priority, rule, time, output_fields), POSTed — to
    /// falcosidekick, so its outputs work unchanged.
    Falco { url: String },
    /// A Kafka topic (idempotent producer; key = finding_id, header `idempotency_key`, value =
    /// the finding JSON). `properties` pass through to librdkafka (TLS, SASL, …).
    Kafka {
        brokers: String,
        topic: String,
        properties: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    /// Findings below this severity are not sent to this sink.
    pub min_severity: String,
    pub timeout: Duration,
    /// Extra HTTP headers (e.g. Authorization).
    pub headers: Vec<(String, String)>,
}

pub use auditlake_detect::rule::severity_rank;
use payload::stored_finding;
pub use payload::{alertmanager_payload, falco_payload, finding_json};

mod payload;

/// The durable outbox: one directory per sink, in the lake's state (`_state/outbox/<sink>/…`).
pub struct Outbox {
    lake: Lake,
    sinks: Vec<SinkConfig>,
    /// Wakes a sink's delivery task when something was enqueued for it (no polling delay on the
    /// alert path; `notify_one` keeps the wake-up if the task is busy).
    enqueued: std::collections::HashMap<String, tokio::sync::Notify>,
    /// Idempotency keys pending or sent, per sink (loaded from the directories on start): a
    /// repeated enqueue is recognised without listing `sent/`.
    known: std::sync::Mutex<std::collections::HashMap<String, std::collections::HashSet<String>>>,
    /// Whether this process delivers: always on a local lake; on an object-store lake only while
    /// it holds the scheduler's lease (one replica delivers, no alert goes out twice at once).
    active: AtomicBool,
}

/// `<detected µs>-<finding_id>-r<rev>.json` → `<finding_id>-r<rev>`.
fn key_of(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".json")?
        .split_once('-')
        .map(|(_, key)| key)
}

/// The state name of a sink's outbox directory (`outbox/<sink>/<which>`), or of a file in it.
fn outbox_name(sink: &str, which: &str, file: Option<&str>) -> String {
    match file {
        Some(f) => format!("outbox/{sink}/{which}/{f}"),
        None => format!("outbox/{sink}/{which}"),
    }
}

impl Outbox {
    pub fn new(lake: &Lake, sinks: Vec<SinkConfig>) -> Result<Outbox, IngestError> {
        let outbox = Outbox {
            lake: lake.clone(),
            known: std::sync::Mutex::default(),
            enqueued: sinks
                .iter()
                .map(|s| (s.name.clone(), tokio::sync::Notify::new()))
                .collect(),
            sinks,
            active: AtomicBool::new(!lake.is_remote()),
        };
        outbox.reload()?;
        Ok(outbox)
    }

    /// Re-reads which keys are pending, sent or failed (after taking over from another replica,
    /// which enqueued and delivered meanwhile).
    pub fn reload(&self) -> Result<(), IngestError> {
        let mut known = std::collections::HashMap::new();
        for s in &self.sinks {
            let mut keys = std::collections::HashSet::new();
            for entry in self.lake.list_state(&format!("outbox/{}", s.name))? {
                let file = entry.name.rsplit('/').next().unwrap_or(&entry.name);
                if let Some(k) = key_of(file) {
                    keys.insert(k.to_owned());
                }
            }
            known.insert(s.name.clone(), keys);
        }
        *self.known.lock().expect("outbox index") = known;
        Ok(())
    }

    pub fn sinks(&self) -> &[SinkConfig] {
        &self.sinks
    }

    /// Whether this process delivers now.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Starts or stops delivery (the scheduler's lease was taken or lost). Taking over wakes the
    /// delivery tasks: the previous holder may have left findings pending.
    pub fn set_active(&self, active: bool) {
        if self.active.swap(active, Ordering::Relaxed) != active && active {
            for n in self.enqueued.values() {
                n.notify_one();
            }
        }
    }

    /// Findings waiting for `sink`, oldest first: their file names in `pending/`.
    pub fn pending(&self, sink: &str) -> Result<Vec<String>, IngestError> {
        Ok(self
            .lake
            .list_state(&outbox_name(sink, "pending", None))?
            .into_iter()
            .map(|e| e.name)
            .filter(|n| !n.contains('/') && n.ends_with(".json"))
            .collect())
    }

    /// The stored JSON of a pending finding; `None` when it is gone (delivered by another task).
    pub fn read_pending(&self, sink: &str, name: &str) -> Result<Option<Vec<u8>>, IngestError> {
        self.lake
            .read_state(&outbox_name(sink, "pending", Some(name)))
    }

    /// Moves a delivered finding to `sent/` (kept so a repeated enqueue of its key is ignored).
    pub fn mark_sent(&self, sink: &str, pending: &str) -> Result<(), IngestError> {
        self.lake.rename_state(
            &outbox_name(sink, "pending", Some(pending)),
            &outbox_name(sink, "sent", Some(pending)),
        )
    }

    /// Moves a finding the sink refused for good (HTTP 4xx) to `failed/`, with the reason beside it.
    pub fn mark_failed(&self, sink: &str, pending: &str, reason: &str) -> Result<(), IngestError> {
        let reason_name = format!(
            "{}.reason",
            pending.strip_suffix(".json").unwrap_or(pending)
        );
        self.lake.write_state(
            &outbox_name(sink, "failed", Some(&reason_name)),
            reason.as_bytes(),
        )?;
        self.lake.rename_state(
            &outbox_name(sink, "pending", Some(pending)),
            &outbox_name(sink, "failed", Some(pending)),
        )
    }

    /// Sets aside a pending file that is not JSON (`.bad`: no longer pending, kept to look at).
    pub fn mark_bad(&self, sink: &str, pending: &str) -> Result<(), IngestError> {
        let bad = format!("{}.bad", pending.strip_suffix(".json").unwrap_or(pending));
        self.lake.rename_state(
            &outbox_name(sink, "pending", Some(pending)),
            &outbox_name(sink, "pending", Some(&bad)),
        )
    }

    /// Where a pending file is, for messages.
    pub fn describe(&self, sink: &str, pending: &str) -> String {
        self.lake.location_of(&Lake::state_rel(&outbox_name(
            sink,
            "pending",
            Some(pending),
        )))
    }

    /// Removes `sent/` records older than `keep`.
    pub fn prune_sent(&self, keep: Duration) {
        for s in &self.sinks {
            for e in self
                .lake
                .list_state(&outbox_name(&s.name, "sent", None))
                .unwrap_or_default()
            {
                if e.modified.elapsed().is_ok_and(|age| age > keep) {
                    let _ = self
                        .lake
                        .delete_state(&outbox_name(&s.name, "sent", Some(&e.name)));
                }
            }
        }
    }
}

fn key_suffix(f: &Finding) -> String {
    format!("{}.json", f.idempotency_key())
}

impl Alerts for Outbox {
    fn enqueue(&self, findings: &[Finding]) -> Result<(), IngestError> {
        for s in &self.sinks {
            let mut wrote = false;
            for f in findings {
                if severity_rank(&f.severity) < severity_rank(&s.min_severity) {
                    continue;
                }
                let suffix = key_suffix(f);
                let key = f.idempotency_key();
                if self
                    .known
                    .lock()
                    .expect("outbox index")
                    .get(&s.name)
                    .is_some_and(|k| k.contains(&key))
                {
                    continue;
                }
                let name = format!("{:020}-{suffix}", f.detected_at.timestamp_micros());
                let body = serde_json::to_vec(&finding_json(f)).expect("finding serializes");
                // If absent: a key another process already queued stays as it was.
                self.lake
                    .create_state(&outbox_name(&s.name, "pending", Some(&name)), &body)?;
                self.known
                    .lock()
                    .expect("outbox index")
                    .entry(s.name.clone())
                    .or_default()
                    .insert(key);
                wrote = true;
            }
            if wrote {
                self.enqueued[&s.name].notify_one();
            }
        }
        Ok(())
    }
}

/// The HTTP client of the sinks. reqwest is built without a bundled crypto provider: use ring,
/// like the server.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build()
}

/// What a sink sends with: built once per sink.
pub enum Transport {
    Http(reqwest::Client),
    Kafka(rdkafka::producer::FutureProducer),
}

impl Transport {
    pub fn new(sink: &SinkConfig, http: &reqwest::Client) -> Result<Transport, ServerError> {
        match &sink.kind {
            SinkKind::Kafka {
                brokers,
                properties,
                ..
            } => {
                let mut config = rdkafka::ClientConfig::new();
                config
                    .set("bootstrap.servers", brokers)
                    .set("enable.idempotence", "true")
                    .set("message.timeout.ms", sink.timeout.as_millis().to_string());
                for (k, v) in properties {
                    config.set(k, v);
                }
                config
                    .create()
                    .map(Transport::Kafka)
                    .map_err(|source| ServerError::Kafka {
                        what: format!("producer of sink {}", sink.name),
                        source,
                    })
            }
            _ => Ok(Transport::Http(http.clone())),
        }
    }
}

/// Why a delivery did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// Down, timed out, 5xx, 408, 429: retry with backoff.
    Retry(String),
    /// The sink refused this payload for good (other 4xx): retrying cannot help.
    Rejected(String),
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Retry(m) => write!(f, "{m} (will retry)"),
            DeliveryError::Rejected(m) => write!(f, "{m} (rejected for good)"),
        }
    }
}

/// Sends one stored finding to a sink.
pub async fn deliver(
    transport: &Transport,
    sink: &SinkConfig,
    stored: &Value,
) -> Result<(), DeliveryError> {
    use DeliveryError::Retry;
    let client = match transport {
        Transport::Http(c) => c,
        Transport::Kafka(producer) => {
            let SinkKind::Kafka { topic, .. } = &sink.kind else {
                return Err(Retry("Kafka transport for a non-Kafka sink".into()));
            };
            use rdkafka::message::{Header, OwnedHeaders};
            let key = stored["idempotency_key"].as_str().unwrap_or_default();
            let id = stored["finding_id"].as_str().unwrap_or_default();
            let payload = serde_json::to_vec(stored).expect("json");
            let record = rdkafka::producer::FutureRecord::to(topic)
                .key(id)
                .payload(&payload)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "idempotency_key",
                    value: Some(key),
                }));
            return producer
                .send(record, rdkafka::util::Timeout::After(sink.timeout))
                .await
                .map(|_| ())
                .map_err(|(e, _)| Retry(format!("Kafka: {e}")));
        }
    };
    let finding = stored_finding(stored).map_err(|e| DeliveryError::Rejected(e.to_string()));
    let key = stored["idempotency_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let post = |url: &str, body: Value| {
        let mut req = client
            .post(url)
            .timeout(sink.timeout)
            .header("Idempotency-Key", &key)
            .json(&body);
        for (k, v) in &sink.headers {
            req = req.header(k, v);
        }
        req
    };
    let send = |req: reqwest::RequestBuilder| async move {
        match req.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r)
                if r.status().is_client_error()
                    && !matches!(r.status().as_u16(), 401 | 403 | 404 | 408 | 429) =>
            {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                Err(DeliveryError::Rejected(format!(
                    "HTTP {status}: {}",
                    body.chars().take(500).collect::<String>()
                )))
            }
            Ok(r) => Err(Retry(format!("HTTP {}", r.status()))),
            // reqwest's message names the whole URL; a sink URL's path and query are often its
            // secret (a Slack or PagerDuty hook, `?token=`): say only where it was going.
            Err(e) => {
                let to = endpoint(e.url());
                Err(Retry(format!("{} ({to})", e.without_url())))
            }
        }
    };
    match &sink.kind {
        SinkKind::Stdout => {
            println!("{stored}");
            Ok(())
        }
        SinkKind::File { path } => {
            use std::io::Write;
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Retry(format!("{}: {e}", path.display())))?;
            let mut line = serde_json::to_vec(stored).expect("json");
            line.push(b'\n');
            f.write_all(&line)
                .and_then(|()| f.sync_data())
                .map_err(|e| Retry(format!("{}: {e}", path.display())))
        }
        SinkKind::Webhook { url } => {
            send(post(
                url,
                json!({ "idempotency_key": key, "finding": stored }),
            ))
            .await
        }
        SinkKind::Alertmanager { url } => {
            let url = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
            send(post(&url, alertmanager_payload(&finding?))).await
        }
        SinkKind::Falco { url } => send(post(url, falco_payload(&finding?))).await,
        SinkKind::Kafka { .. } => Err(Retry("a Kafka sink needs a Kafka transport".into())),
    }
}

/// What delivery reports (metrics).
pub trait DeliveryObserver: Send + Sync {
    fn delivered(&self, sink: &str);
    fn failed(&self, sink: &str, error: &str);
    fn outbox_depth(&self, sink: &str, depth: usize);
}

/// Delivers one sink's outbox until `stop` turns true: oldest first; on failure waits (1 s
/// doubling to 60 s) and retries the same finding, so order is kept and nothing is skipped.
pub async fn delivery_loop(
    outbox: Arc<Outbox>,
    sink: SinkConfig,
    client: reqwest::Client,
    observer: Arc<dyn DeliveryObserver>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    let transport = loop {
        match Transport::new(&sink, &client) {
            Ok(t) => break t,
            Err(e) => {
                observer.failed(&sink.name, &chain(&e));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    return;
                }
            }
        }
    };
    loop {
        if *stop.borrow() {
            return;
        }
        if !outbox.is_active() {
            // Another replica holds the scheduler's lease and delivers.
            tokio::select! {
                _ = outbox.enqueued[&sink.name].notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let pending = {
            let outbox = outbox.clone();
            let name = sink.name.clone();
            tokio::task::spawn_blocking(move || outbox.pending(&name))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
        };
        observer.outbox_depth(&sink.name, pending.len());
        let mut failed = false;
        for name in pending {
            if *stop.borrow() || !outbox.is_active() {
                break;
            }
            let Ok(Some(bytes)) = outbox.read_pending(&sink.name, &name) else {
                continue;
            };
            let Ok(stored) = serde_json::from_slice::<Value>(&bytes) else {
                observer.failed(
                    &sink.name,
                    &format!(
                        "{}: not JSON; moved aside",
                        outbox.describe(&sink.name, &name)
                    ),
                );
                let _ = outbox.mark_bad(&sink.name, &name);
                continue;
            };
            match deliver(&transport, &sink, &stored).await {
                Ok(()) => {
                    let _ = outbox.mark_sent(&sink.name, &name);
                    observer.delivered(&sink.name);
                    backoff = Duration::from_secs(1);
                }
                // One payload the sink will never take must not hold up the others.
                Err(DeliveryError::Rejected(e)) => {
                    observer.failed(&sink.name, &format!("{e}; moved to failed/"));
                    let _ = outbox.mark_failed(&sink.name, &name, &e);
                }
                Err(e) => {
                    observer.failed(&sink.name, &e.to_string());
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            let wait = backoff;
            backoff = (backoff * 2).min(Duration::from_secs(60));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        } else {
            // Until something is enqueued; the timeout also picks up files another process left.
            tokio::select! {
                _ = outbox.enqueued[&sink.name].notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// `scheme://host:port` of a URL: what logs and errors may say of a sink's address.
pub fn endpoint(url: Option<&reqwest::Url>) -> String {
    match url {
        Some(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port_or_known_default().unwrap_or(0)
        ),
        None => "unknown endpoint".to_owned(),
    }
}
