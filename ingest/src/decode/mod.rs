//! Bytes → Arrow record batches (partitioned by cluster and hour) + rejects.
//!
//! Per line or message the decoder accepts one `Event`, an `EventList` (whose items may lack
//! their own `kind`/`apiVersion`, as the real webhook sends them) or a JSON array of either, in
//! `audit.k8s.io/v1` or `v1beta1`. Anything else becomes a [`Reject`] carrying the exact bytes,
//! the reason and the position; the rest of the input still lands.

pub mod envelope;
pub mod frame;
pub mod raw;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use serde::Serialize;
use serde_json::value::RawValue;
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use crate::columns::{Computed, EventColumns};
use crate::derive::{exec_facts, pod_facts, rbac_facts};
use crate::redact::{BodyScope, Redaction, redact_body};
use crate::time::parse_rfc3339_micros;
use raw::RawEvent;

pub const API_V1: &str = "audit.k8s.io/v1";
pub const API_V1BETA1: &str = "audit.k8s.io/v1beta1";
/// `source_format` of events decoded from native audit JSON.
pub const FORMAT_K8S_AUDIT: &str = "k8s-audit";
pub const STAGES: [&str; 4] = [
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];

/// Microseconds per hour: partitions are whole UTC hours of `stage_at`.
pub const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// Where a rejected or decoded piece of input came from. Serialized into quarantine records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourcePosition {
    /// `file:<path>`, `stdin`, `webhook:<request id>`, …
    pub source: Arc<str>,
    /// 1-based line number within the source, for line-oriented input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Byte offset of the line/message within the (decompressed) source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byte_offset: Option<u64>,
    /// 0-based index of the item within an `EventList` or array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<u64>,
}

/// Input that could not be decoded: quarantined byte-exact with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: String,
    pub position: SourcePosition,
    pub raw: Vec<u8>,
    /// The cluster the input was meant for.
    pub cluster: Arc<str>,
}

/// A lake partition: one cluster, one UTC hour of event time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub cluster: Arc<str>,
    /// Hours since the Unix epoch (UTC) of `stage_at`.
    pub hour: i64,
}

/// Rows of one partition, with the dedup key hash of each row (same order).
#[derive(Debug, Clone)]
pub struct DecodedBatch {
    pub partition: PartitionKey,
    pub batch: RecordBatch,
    pub keys: Vec<u128>,
}

impl DecodedBatch {
    /// The rows as the `audit_events` table shows them: file columns plus the partition columns
    /// `cluster`, `date`, `hour` (for running SQL over a batch before it reaches the lake).
    pub fn to_table_batch(&self) -> Result<RecordBatch, arrow::error::ArrowError> {
        use arrow::array::{ArrayRef, StringArray};
        let n = self.batch.num_rows();
        let (date, hour) = crate::time::partition_date_hour(self.partition.hour * MICROS_PER_HOUR);
        let mut columns: Vec<ArrayRef> = self.batch.columns().to_vec();
        for v in [&*self.partition.cluster, date.as_str(), hour.as_str()] {
            columns.push(Arc::new(StringArray::from(vec![v; n])));
        }
        RecordBatch::try_new(auditlake_schemas::audit_events_table_schema(), columns)
    }
}

/// The 128-bit hash of an event's dedup key within its partition (`cluster` is the partition's).
pub fn dedup_key(audit_id: &str, stage: &str) -> u128 {
    // auditIDs are UUIDs: the key fits a stack buffer; longer ids take the streaming hasher.
    let mut buf = [0u8; 96];
    let len = audit_id.len() + 1 + stage.len();
    if len <= buf.len() {
        buf[..audit_id.len()].copy_from_slice(audit_id.as_bytes());
        buf[audit_id.len() + 1..len].copy_from_slice(stage.as_bytes());
        return xxh3_128(&buf[..len]);
    }
    let mut h = Xxh3::new();
    h.update(audit_id.as_bytes());
    h.update(&[0]);
    h.update(stage.as_bytes());
    h.digest128()
}

#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub cluster: Arc<str>,
    pub redact_secrets: bool,
    pub source_format: &'static str,
    /// Rows per emitted batch (per partition).
    pub batch_rows: usize,
    /// Input bytes per emitted batch (per partition); bounds memory for huge events.
    pub batch_bytes: usize,
    /// A managed-cloud envelope that names its cluster (EKS log group, AKS `resourceId`, GKE
    /// `resource.labels.cluster_name`) decides the cluster of its events instead of `cluster`.
    /// On when nothing bound the cluster. When off, `cluster` is authoritative: the events of an
    /// envelope that names *another* cluster are rejected ("cluster mismatch"), never relabelled,
    /// so a credential bound to one cluster cannot write another through an envelope.
    pub envelope_cluster: bool,
    /// Most bytes decompression may produce (gzip and base64-gzip layers inside the input) per
    /// [`Decoder::decode`] call, unless the caller set one budget for a whole request with
    /// [`Decoder::set_inflate_budget`]. Input over it is rejected as the bytes that arrived.
    pub max_inflate: u64,
}

impl DecodeOptions {
    pub fn new(cluster: impl Into<Arc<str>>) -> Self {
        DecodeOptions {
            cluster: cluster.into(),
            redact_secrets: true,
            source_format: FORMAT_K8S_AUDIT,
            batch_rows: 8192,
            batch_bytes: 16 << 20,
            envelope_cluster: false,
            max_inflate: 64 << 20,
        }
    }
}

/// What a [`Decoder`] produced since its last [`Decoder::take`].
#[derive(Debug, Default)]
pub struct Decoded {
    pub batches: Vec<DecodedBatch>,
    pub rejects: Vec<Reject>,
    pub events: u64,
    /// Events rejected because their envelope named another cluster than the bound one (also
    /// among `rejects`); the cluster the last of them named.
    pub cluster_conflicts: u64,
    pub conflicting_cluster: Option<Arc<str>>,
}

impl Decoded {
    /// Why the body as a whole is not audit JSON (not an Event, EventList or array of events):
    /// nothing decoded and its one reject points at no item or line. `None` when events decoded
    /// or the rejects are single items of a batch.
    pub fn body_rejected(&self) -> Option<&str> {
        match self.rejects.as_slice() {
            [only]
                if self.events == 0
                    && only.position.item.is_none()
                    && only.position.line.is_none() =>
            {
                Some(&only.reason)
            }
            _ => None,
        }
    }
}

struct PartitionRows {
    columns: EventColumns,
    keys: Vec<u128>,
}

/// Decodes lines/messages into per-partition batches. Not thread-safe: use one per worker.
pub struct Decoder {
    opts: DecodeOptions,
    /// By (cluster, hour of event time).
    partitions: HashMap<(Arc<str>, i64), PartitionRows>,
    out: Decoded,
    ingested_at: i64,
    /// `source_format` of events unwrapped from a managed-cloud envelope.
    format_override: Option<&'static str>,
    /// The cluster the current envelope names (when `envelope_cluster` is on).
    cluster_override: Option<Arc<str>>,
    /// The other cluster the current envelope names while the cluster is bound.
    envelope_conflict: Option<Arc<str>>,
    /// Bytes decompression may still produce, and whether that budget spans calls.
    inflate_left: u64,
    inflate_shared: bool,
}

/// Why an event was rejected; rendered into the quarantine record.
type RejectReason = String;

impl Decoder {
    pub fn new(opts: DecodeOptions) -> Self {
        Decoder {
            opts,
            partitions: HashMap::new(),
            out: Decoded::default(),
            ingested_at: now_micros(),
            format_override: None,
            cluster_override: None,
            envelope_conflict: None,
            inflate_left: 0,
            inflate_shared: false,
        }
    }

    /// One decompression budget for everything decoded from now on (a whole request or
    /// message, every layer of it), instead of [`DecodeOptions::max_inflate`] per call.
    pub fn set_inflate_budget(&mut self, bytes: u64) {
        self.inflate_left = bytes;
        self.inflate_shared = true;
    }

    /// The cluster of the events that follow, as the envelope around them names it (ignored
    /// unless `envelope_cluster`); None returns to `cluster`.
    pub(crate) fn set_envelope_cluster(&mut self, name: Option<&str>) {
        self.cluster_override = None;
        self.envelope_conflict = None;
        match name {
            Some(n) if self.opts.envelope_cluster => self.cluster_override = Some(Arc::from(n)),
            Some(n) if n != &*self.opts.cluster => self.envelope_conflict = Some(Arc::from(n)),
            _ => {}
        }
    }

    fn cluster(&self) -> Arc<str> {
        self.cluster_override
            .clone()
            .unwrap_or_else(|| self.opts.cluster.clone())
    }

    pub fn options(&self) -> &DecodeOptions {
        &self.opts
    }

    /// Sets the `ingested_at` stamped on the following events (defaults to the decoder's creation).
    pub fn set_ingested_at(&mut self, micros: i64) {
        self.ingested_at = micros;
    }

    /// Decodes one line or message. Blank input is ignored.
    pub fn decode(&mut self, bytes: &[u8], pos: &SourcePosition) {
        if !self.inflate_shared {
            self.inflate_left = self.opts.max_inflate;
        }
        self.decode_unit(bytes, pos)
    }

    fn decode_unit(&mut self, bytes: &[u8], pos: &SourcePosition) {
        let Some(first) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else {
            return;
        };
        if envelope::is_compressed(&bytes[first..]) {
            // A gzip (or base64 gzip, as Kinesis/Firehose deliver CloudWatch subscriptions)
            // payload: decode what it holds, once, within what is left of the budget; over it,
            // the compressed bytes are what gets quarantined.
            return match envelope::decompress(&bytes[first..], &mut self.inflate_left) {
                Ok(inner) if !envelope::is_compressed(&inner) => self.decode_unit(&inner, pos),
                Ok(_) => self.reject(bytes, pos, "compressed twice".into()),
                Err(e) => self.reject(bytes, pos, format!("not a valid compressed payload: {e}")),
            };
        }
        // Validate UTF-8 once per line with SIMD; serde_json then skips per-string checks.
        let text = match simdutf8::basic::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                let at = std::str::from_utf8(bytes)
                    .err()
                    .map_or(0, |e| e.valid_up_to());
                return self.reject(bytes, pos, format!("not valid UTF-8 (at byte {at})"));
            }
        };
        match bytes[first] {
            b'{' => match serde_json::from_str::<RawEvent>(text) {
                Ok(ev) => self.decode_object(ev, bytes, None, pos),
                // Several values back to back (Firehose writes records with no delimiter):
                // each is decoded, and quarantined, on its own. Only tried once a parse failed,
                // so ordinary lines pay nothing for it.
                Err(e) => match frame::split_concatenated(bytes) {
                    Some(parts) => self.decode_parts(bytes, parts, pos),
                    None => {
                        let reason = envelope::truncated_reason(text)
                            .unwrap_or_else(|| format!("not a valid audit event: {e}"));
                        self.reject(bytes, pos, reason)
                    }
                },
            },
            b'[' => match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let item_pos = SourcePosition {
                            item: Some(i as u64),
                            ..pos.clone()
                        };
                        self.decode_item(item.get(), None, &item_pos);
                    }
                }
                Err(e) => self.reject(bytes, pos, format!("not valid JSON: {e}")),
            },
            _ => self.reject(bytes, pos, "not a JSON object or array".to_owned()),
        }
    }

    /// The values of a line that held several back to back, each decoded on its own.
    fn decode_parts(
        &mut self,
        bytes: &[u8],
        parts: Vec<std::ops::Range<usize>>,
        pos: &SourcePosition,
    ) {
        for (i, part) in parts.into_iter().enumerate() {
            let part_pos = SourcePosition {
                byte_offset: pos.byte_offset.map(|o| o + part.start as u64),
                item: Some(i as u64),
                ..pos.clone()
            };
            self.decode_unit(&bytes[part], &part_pos);
        }
    }

    /// One element of an `EventList` or array: an Event (or, in an array, an EventList).
    fn decode_item(&mut self, text: &str, list_api_version: Option<&str>, pos: &SourcePosition) {
        match serde_json::from_str::<RawEvent>(text) {
            Ok(ev) => self.decode_object(ev, text.as_bytes(), list_api_version, pos),
            Err(e) => self.reject(
                text.as_bytes(),
                pos,
                format!("not a valid audit event: {e}"),
            ),
        }
    }

    fn decode_object(
        &mut self,
        ev: RawEvent,
        bytes: &[u8],
        list_api_version: Option<&str>,
        pos: &SourcePosition,
    ) {
        if ev.kind.is_none() && ev.audit_id.is_none() && list_api_version.is_none() {
            if let Some(records) = &ev.records {
                return envelope::decode_aks(self, records, pos);
            }
            if ev.category.is_some() && ev.properties.is_some() {
                return envelope::decode_aks_line(self, bytes, pos);
            }
            if ev.proto_payload.is_some() {
                return envelope::decode_gke(self, bytes, pos);
            }
            if let Some(events) = &ev.log_events {
                let control = ev
                    .message_type
                    .as_ref()
                    .is_some_and(|t| t.as_str() == "CONTROL_MESSAGE");
                if !control {
                    let cluster = ev
                        .log_group
                        .as_ref()
                        .and_then(|g| envelope::eks_cluster(g.as_str()));
                    self.set_envelope_cluster(cluster.as_deref());
                    envelope::decode_cloudwatch(self, events, pos);
                    self.set_envelope_cluster(None);
                }
                return;
            }
        }
        match ev.kind.as_ref().map(|k| k.as_str()) {
            Some("EventList") => {
                if list_api_version.is_some() {
                    return self.reject(bytes, pos, "EventList nested inside an EventList".into());
                }
                let api = match check_api_version(ev.api_version.as_ref().map(|s| s.as_str()), None)
                {
                    Ok(api) => api,
                    Err(reason) => return self.reject(bytes, pos, reason),
                };
                for (i, item) in ev.items.iter().flatten().enumerate() {
                    let item_pos = SourcePosition {
                        item: Some(i as u64),
                        ..pos.clone()
                    };
                    self.decode_item(item.get(), Some(api), &item_pos);
                }
            }
            Some("Event") | None => {
                if let Err(reason) = self.append_event(&ev, bytes.len(), list_api_version) {
                    self.reject(bytes, pos, reason);
                }
            }
            Some(other) => self.reject(
                bytes,
                pos,
                format!("kind must be \"Event\" or \"EventList\", got \"{other}\""),
            ),
        }
    }

    fn append_event(
        &mut self,
        ev: &RawEvent,
        input_len: usize,
        list_api_version: Option<&str>,
    ) -> Result<(), RejectReason> {
        if let Some(other) = &self.envelope_conflict {
            self.out.cluster_conflicts += 1;
            self.out.conflicting_cluster = Some(other.clone());
            return Err(format!(
                "cluster mismatch: the envelope names cluster \"{other}\" but this source is bound to \"{}\"",
                self.opts.cluster
            ));
        }
        if ev.items.is_some() {
            return Err("has \"items\" but kind is not \"EventList\"".into());
        }
        let api = check_api_version(
            ev.api_version.as_ref().map(|s| s.as_str()),
            list_api_version,
        )?;
        let audit_id = match ev.audit_id.as_ref().map(|s| s.as_str()) {
            Some(id) if !id.is_empty() => id,
            _ => return Err("missing auditID".into()),
        };
        // Some exports drop `stage` (they ship only finished requests, or re-shape records).
        // Such a record is kept under the stage its content shows — a response status means the
        // request completed, none means it was only received — so rules that read completed
        // requests still see it, and two stage-less records of one request do not collide on
        // the dedup key. The annotation says the stage was chosen here.
        let (stage, stage_note) = match ev.stage.as_ref().map(|s| s.as_str()) {
            Some(s) if STAGES.contains(&s) => (s, None),
            Some(s) => return Err(format!("unknown stage \"{s}\"")),
            None if ev.response_status.is_some() => (
                "ResponseComplete",
                Some(
                    "no stage in the record; it has a response status, stored as ResponseComplete",
                ),
            ),
            None => (
                "RequestReceived",
                Some("no stage in the record and no response status; stored as RequestReceived"),
            ),
        };
        let (request_received_at, stage_at) = event_times(ev)?;

        let resource = ev
            .object_ref
            .as_ref()
            .and_then(|o| o.resource.as_ref())
            .map(|s| s.as_str());
        let subresource = ev
            .object_ref
            .as_ref()
            .and_then(|o| o.subresource.as_ref())
            .map(|s| s.as_str());
        let scope = self
            .opts
            .redact_secrets
            .then(|| BodyScope::of(resource, subresource));
        let (request_object, request_masked) = body_text(ev.request_object, scope);
        let (response_object, response_masked) = body_text(ev.response_object, scope);
        let masked_note = masked_note(request_masked, response_masked);

        let (pod, rbac) = match (resource, ev.request_object) {
            (Some(r), Some(b)) => (pod_facts(r, subresource, b), rbac_facts(r, b)),
            _ => (None, None),
        };
        let exec = match (resource, subresource, ev.request_uri.as_ref()) {
            (Some("pods"), Some(sub), Some(uri)) => exec_facts(sub, uri.as_str()),
            _ => None,
        };
        let computed = Computed {
            stage,
            stage_note,
            event_api_version: api,
            source_format: self.format_override.unwrap_or(self.opts.source_format),
            request_received_at,
            stage_at,
            ingested_at: self.ingested_at,
            request_object: request_object.as_deref(),
            response_object: response_object.as_deref(),
            pod,
            rbac,
            exec,
            masked_note: masked_note.as_deref(),
        };

        let hour = stage_at.div_euclid(MICROS_PER_HOUR);
        let key = (self.cluster(), hour);
        let rows = self
            .partitions
            .entry(key.clone())
            .or_insert_with(|| PartitionRows {
                columns: EventColumns::default(),
                keys: Vec::new(),
            });
        rows.columns.append(ev, &computed, input_len);
        rows.keys.push(dedup_key(audit_id, stage));
        self.out.events += 1;
        if rows.columns.rows() >= self.opts.batch_rows
            || rows.columns.approx_bytes() >= self.opts.batch_bytes
        {
            self.emit(&key);
        }
        Ok(())
    }

    fn emit(&mut self, key: &(Arc<str>, i64)) {
        if let Some(rows) = self.partitions.get_mut(key) {
            if rows.columns.rows() == 0 {
                return;
            }
            let batch = rows.columns.finish();
            let keys = std::mem::take(&mut rows.keys);
            let partition = PartitionKey {
                cluster: key.0.clone(),
                hour: key.1,
            };
            self.out.batches.push(DecodedBatch {
                partition,
                batch,
                keys,
            });
        }
    }

    /// Decodes one event unwrapped from an envelope, stamped with the envelope's format.
    pub(crate) fn decode_wrapped(
        &mut self,
        text: &str,
        format: &'static str,
        pos: &SourcePosition,
    ) {
        let saved = self.format_override.replace(format);
        match serde_json::from_str::<RawEvent>(text) {
            Ok(ev) => self.decode_object(ev, text.as_bytes(), None, pos),
            Err(e) => {
                let reason = envelope::truncated_reason(text)
                    .unwrap_or_else(|| format!("not a valid audit event: {e}"));
                self.reject(text.as_bytes(), pos, reason)
            }
        }
        self.format_override = saved;
    }

    pub(crate) fn reject(&mut self, bytes: &[u8], pos: &SourcePosition, reason: String) {
        self.out.rejects.push(Reject {
            reason,
            position: pos.clone(),
            raw: bytes.to_vec(),
            cluster: self.cluster(),
        });
    }

    /// Events and rejects decoded since the last [`Decoder::take`] (for per-source metrics
    /// when several messages share one take).
    pub fn pending_counts(&self) -> (u64, usize) {
        (self.out.events, self.out.rejects.len())
    }

    /// Events refused for a cluster mismatch since the last [`Decoder::take`].
    pub fn pending_conflicts(&self) -> u64 {
        self.out.cluster_conflicts
    }

    /// The cluster the last refused envelope named.
    pub fn last_conflict(&self) -> Option<&str> {
        self.out.conflicting_cluster.as_deref()
    }

    /// Returns everything decoded so far (flushing partial batches) and resets the output.
    pub fn take(&mut self) -> Decoded {
        let mut keys: Vec<(Arc<str>, i64)> = self.partitions.keys().cloned().collect();
        keys.sort_unstable();
        for key in keys {
            self.emit(&key);
        }
        // Partitions of a long stream change hour by hour; don't keep idle builders forever.
        self.partitions.clear();
        std::mem::take(&mut self.out)
    }
}

/// When the request was received (if the record says) and the time of its stage: the stage
/// timestamp, else the request's, else `timestamp` (exports that keep only that).
fn event_times(ev: &RawEvent) -> Result<(Option<i64>, i64), RejectReason> {
    let parse_time = |field: &str, v: &Option<raw::Str>| -> Result<Option<i64>, RejectReason> {
        match v {
            None => Ok(None),
            Some(s) => parse_rfc3339_micros(s.as_str())
                .map(Some)
                .ok_or_else(|| format!("{field} is not an RFC 3339 time: \"{}\"", s.as_str())),
        }
    };
    let request_received_at =
        parse_time("requestReceivedTimestamp", &ev.request_received_timestamp)?;
    let stage_at = parse_time("stageTimestamp", &ev.stage_timestamp)?
        .or(request_received_at)
        .or(parse_time("timestamp", &ev.timestamp)?)
        .ok_or("missing stageTimestamp and requestReceivedTimestamp")?;
    Ok((request_received_at, stage_at))
}

/// The annotation of a record whose request or response body had secret-looking values
/// masked, saying which and why.
fn masked_note(
    request_masked: Option<crate::redact::MaskReason>,
    response_masked: Option<crate::redact::MaskReason>,
) -> Option<String> {
    match (request_masked, response_masked) {
        (None, None) => None,
        (req, resp) => Some(
            [("requestObject", req), ("responseObject", resp)]
                .iter()
                .filter_map(|(which, why)| why.map(|w| format!("{which}: {}", w.as_str())))
                .collect::<Vec<_>>()
                .join("; ")
                + "; secret-looking values masked as text",
        ),
    }
}

/// A request/response body as stored: `null` is absent; with a redaction scope (redaction on),
/// secret values and tokens are redacted ([`redact_body`]). The second value says why the body
/// was masked as text instead (it could not be parsed faithfully).
fn body_text(
    raw: Option<&RawValue>,
    scope: Option<BodyScope>,
) -> (
    Option<std::borrow::Cow<'_, str>>,
    Option<crate::redact::MaskReason>,
) {
    let Some(raw) = raw else {
        return (None, None);
    };
    if raw.get() == "null" {
        return (None, None);
    }
    match scope.map(|scope| redact_body(raw.get(), scope)) {
        None | Some(Redaction::Unchanged) => (Some(raw.get().into()), None),
        Some(Redaction::Redacted(text)) => (Some(text.into()), None),
        Some(Redaction::Masked(text, why)) => (Some(text.into()), Some(why)),
    }
}

/// Accepts `audit.k8s.io/v1` and `v1beta1`. An item without its own apiVersion takes the
/// list's; a bare event without one is taken as v1 (what every current API server writes).
fn check_api_version<'a>(
    own: Option<&'a str>,
    list: Option<&'a str>,
) -> Result<&'static str, RejectReason> {
    match own.or(list) {
        None | Some(API_V1) => Ok(API_V1),
        Some(API_V1BETA1) => Ok(API_V1BETA1),
        Some(other) => Err(format!(
            "unsupported apiVersion \"{other}\" (expected {API_V1} or {API_V1BETA1})"
        )),
    }
}

pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod secret_tests;
#[cfg(test)]
mod tests;
