//! Managed-cloud envelopes around the same `audit.k8s.io` Event, auto-detected per line/message:
//!
//! - **AKS** (diagnostic settings → storage / Event Hubs): `{"records":[{"category":"kube-audit",
//!   "properties":{"log":"<Event JSON as a string>"}}]}`; categories other than `kube-audit` and
//!   `kube-audit-admin` are skipped; AKS replaces an oversized event by the string
//!   `skipped-too-big-size-object`, which is quarantined with that reason.
//! - **EKS** (CloudWatch Logs): exported lines are plain Events (decoded natively); a line
//!   CloudWatch cut at its size limit ends in `[Truncated...]` and is quarantined with the auditID
//!   salvaged into the reason. Subscription payloads (`{"messageType":"DATA_MESSAGE",
//!   "logEvents":[{"message":"<Event>"}]}`) are unwrapped, also when gzip or base64-gzip
//!   compressed (as Kinesis/Firehose deliver them); `CONTROL_MESSAGE`s carry no events.
//!
//! - **GKE** (Cloud Logging): a `LogEntry` whose `protoPayload` is a `google.cloud.audit.AuditLog`
//!   is mapped onto the Event's fields — a *lossy* mapping, documented in
//!   `schemas/audit_events.md` terms: `auditID` = `operation.id` (else `insertId`), `stage` =
//!   `ResponseComplete` (GKE logs one entry per request), `level` = `RequestResponse` when a
//!   request body is present, else `Metadata`; `verb`, resource, subresource and API group/version
//!   from `methodName` (`io.k8s.core.v1.pods.exec.create`) and `resourceName`
//!   (`core/v1/namespaces/default/pods/nginx/exec`); user = `authenticationInfo.principalEmail`;
//!   source IP and user agent from `requestMetadata`; `responseStatus.code` from the google.rpc
//!   status code (0 → 200, 7 → 403, 5 → 404, 16 → 401, …); the authorization decision from
//!   `authorizationInfo[].granted`; `requestURI` is not logged by GKE and stays empty.
//!
//! Rows from an envelope carry `source_format` `aks-diagnostics` / `eks-cloudwatch` /
//! `gke-logentry`.

use std::borrow::Cow;
use std::io::Read;

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Decoder, SourcePosition};

pub const FORMAT_AKS: &str = "aks-diagnostics";
pub const FORMAT_EKS: &str = "eks-cloudwatch";
pub const FORMAT_GKE: &str = "gke-logentry";
/// What AKS writes instead of an event larger than its export limit.
pub const AKS_TOO_BIG: &str = "skipped-too-big-size-object";
const TRUNCATED: &str = "[Truncated...]";

#[derive(Deserialize)]
struct AksRecord<'a> {
    #[serde(borrow)]
    category: Option<Cow<'a, str>>,
    /// `/SUBSCRIPTIONS/…/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/<NAME>`.
    #[serde(borrow, rename = "resourceId")]
    resource_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    properties: Option<AksProperties<'a>>,
}

#[derive(Deserialize)]
struct AksProperties<'a> {
    #[serde(borrow)]
    log: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

fn item_pos(pos: &SourcePosition, i: usize) -> SourcePosition {
    SourcePosition {
        item: Some(i as u64),
        ..pos.clone()
    }
}

pub(super) fn decode_aks(d: &mut Decoder, records: &[&RawValue], pos: &SourcePosition) {
    for (i, raw) in records.iter().enumerate() {
        aks_record(d, raw.get(), &item_pos(pos, i));
    }
}

/// One AKS record on its own: what diagnostic settings write to a storage account
/// (`insights-logs-kube-audit/…/PT1H.json`, append blobs of one record per line).
pub(super) fn decode_aks_line(d: &mut Decoder, bytes: &[u8], pos: &SourcePosition) {
    match std::str::from_utf8(bytes) {
        Ok(text) => aks_record(d, text, pos),
        Err(_) => d.reject(bytes, pos, "AKS diagnostic record is not UTF-8".into()),
    }
}

fn aks_record(d: &mut Decoder, raw: &str, pos: &SourcePosition) {
    let record: AksRecord = match serde_json::from_str(raw) {
        Ok(r) => r,
        Err(e) => {
            return d.reject(
                raw.as_bytes(),
                pos,
                format!("not a valid AKS diagnostic record: {e}"),
            );
        }
    };
    // Other categories (kube-apiserver, guard, …) are not audit events.
    if !matches!(
        record.category.as_deref(),
        Some("kube-audit" | "kube-audit-admin")
    ) {
        return;
    }
    let cluster = record.resource_id.as_deref().and_then(aks_cluster);
    d.set_envelope_cluster(cluster.as_deref());
    match record.properties.and_then(|p| p.log) {
        Some(log) if log.trim() == AKS_TOO_BIG => d.reject(
            raw.as_bytes(),
            pos,
            "AKS did not export this event: it was larger than the diagnostic export limit (skipped-too-big-size-object)".into(),
        ),
        Some(log) => d.decode_wrapped(&log, FORMAT_AKS, pos),
        None => d.reject(
            raw.as_bytes(),
            pos,
            "AKS kube-audit record without properties.log".into(),
        ),
    }
    d.set_envelope_cluster(None);
}

/// The cluster an envelope names, when it is a valid lake cluster name.
fn valid_cluster(name: &str) -> Option<String> {
    crate::lake::validate_cluster_name(name).ok()?;
    Some(name.to_owned())
}

/// AKS `resourceId` → the managed cluster's name (Azure upper-cases the id; names are
/// case-insensitive, the lake uses lower case).
fn aks_cluster(resource_id: &str) -> Option<String> {
    let upper = resource_id.to_ascii_uppercase();
    let at = upper.find("/MANAGEDCLUSTERS/")? + "/MANAGEDCLUSTERS/".len();
    let name = resource_id[at..].split('/').next()?;
    valid_cluster(&name.to_ascii_lowercase())
}

/// EKS log group `/aws/eks/<cluster>/cluster` → `<cluster>`.
pub(super) fn eks_cluster(log_group: &str) -> Option<String> {
    let name = log_group
        .strip_prefix("/aws/eks/")?
        .strip_suffix("/cluster")?;
    valid_cluster(name)
}

pub(super) fn decode_cloudwatch(d: &mut Decoder, events: &[&RawValue], pos: &SourcePosition) {
    for (i, raw) in events.iter().enumerate() {
        let pos = item_pos(pos, i);
        match serde_json::from_str::<LogEvent>(raw.get()) {
            Ok(LogEvent { message: Some(m) }) => d.decode_wrapped(&m, FORMAT_EKS, &pos),
            Ok(_) => d.reject(
                raw.get().as_bytes(),
                &pos,
                "CloudWatch log event without message".into(),
            ),
            Err(e) => d.reject(
                raw.get().as_bytes(),
                &pos,
                format!("not a valid CloudWatch log event: {e}"),
            ),
        }
    }
}

/// google.rpc status code → the HTTP status the API server answered.
fn http_status(rpc: i64) -> i64 {
    match rpc {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// `io.k8s.core.v1.pods.exec.create` → (group, version, resource, subresource, verb);
/// `io.k8s.authorization.rbac.v1.clusterrolebindings.create` → group `rbac.authorization.k8s.io`.
fn parse_method(method: &str) -> Option<(String, String, String, Option<String>, String)> {
    let rest = method.strip_prefix("io.k8s.")?;
    let parts: Vec<&str> = rest.split('.').collect();
    let vpos = parts.iter().position(|p| {
        p.starts_with('v') && p[1..].chars().next().is_some_and(|c| c.is_ascii_digit())
    })?;
    let group = match &parts[..vpos] {
        ["core"] => String::new(),
        g => {
            // io.k8s.<last>.<…>.<first> is the group reversed without the `.k8s.io` suffix:
            // authorization.rbac → rbac.authorization.k8s.io; apps → apps.
            let mut g: Vec<&str> = g.to_vec();
            g.reverse();
            let joined = g.join(".");
            if joined.contains('.') {
                format!("{joined}.k8s.io")
            } else {
                joined
            }
        }
    };
    let version = parts[vpos].to_owned();
    let tail = &parts[vpos + 1..];
    let (resource, sub, verb) = match tail {
        [r, v] => (r.to_string(), None, v.to_string()),
        [r, s, v] => (r.to_string(), Some(s.to_string()), v.to_string()),
        _ => return None,
    };
    Some((group, version, resource, sub, verb))
}

pub(super) fn decode_gke(d: &mut Decoder, bytes: &[u8], pos: &SourcePosition) {
    use serde_json::{Value, json};
    let entry: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return d.reject(bytes, pos, format!("not a valid GKE LogEntry: {e}")),
    };
    let p = &entry["protoPayload"];
    if p["serviceName"].as_str() != Some("k8s.io") {
        // Not a Kubernetes API audit entry (e.g. container.googleapis.com admin activity).
        return;
    }
    let Some(method) = p["methodName"].as_str() else {
        return d.reject(
            bytes,
            pos,
            "GKE LogEntry without protoPayload.methodName".into(),
        );
    };
    let Some(id) = entry["operation"]["id"]
        .as_str()
        .or(entry["insertId"].as_str())
    else {
        return d.reject(
            bytes,
            pos,
            "GKE LogEntry without operation.id or insertId".into(),
        );
    };
    let Some(time) = entry["timestamp"].as_str() else {
        return d.reject(bytes, pos, "GKE LogEntry without timestamp".into());
    };
    let mut object_ref = serde_json::Map::new();
    let mut verb = Value::Null;
    if let Some((group, version, resource, sub, v)) = parse_method(method) {
        verb = json!(v);
        object_ref.insert("resource".into(), json!(resource));
        object_ref.insert("apiGroup".into(), json!(group));
        object_ref.insert("apiVersion".into(), json!(version));
        if let Some(sub) = sub {
            object_ref.insert("subresource".into(), json!(sub));
        }
    }
    // resourceName: <group>/<version>/namespaces/<ns>/<resource>/<name>[/<sub>]
    if let Some(name) = p["resourceName"].as_str() {
        let parts: Vec<&str> = name.split('/').collect();
        if let Some(i) = parts.iter().position(|x| *x == "namespaces")
            && parts.len() > i + 1
        {
            // `namespaces/<ns>` alone names the namespace object itself.
            if parts.len() > i + 2 {
                object_ref.insert("namespace".into(), json!(parts[i + 1]));
                if let Some(n) = parts.get(i + 3) {
                    object_ref.insert("name".into(), json!(n));
                }
            } else {
                object_ref.insert("name".into(), json!(parts[i + 1]));
            }
        } else if parts.len() >= 4 {
            object_ref.insert("name".into(), json!(parts[3]));
        }
    }
    let granted = p["authorizationInfo"]
        .as_array()
        .map(|a| a.iter().all(|x| x["granted"].as_bool() == Some(true)));
    let mut annotations = serde_json::Map::new();
    if let Some(g) = granted {
        annotations.insert(
            "authorization.k8s.io/decision".into(),
            json!(if g { "allow" } else { "forbid" }),
        );
    }
    annotations.insert("auditlake.io/lossy-source".into(), json!("gke-logentry"));
    let rpc = p["status"]["code"].as_i64().unwrap_or(0);
    let has_body = !p["request"].is_null();
    let event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": if has_body { "RequestResponse" } else { "Metadata" },
        "auditID": id,
        "stage": "ResponseComplete",
        "verb": verb,
        "user": { "username": p["authenticationInfo"]["principalEmail"] },
        "sourceIPs": p["requestMetadata"]["callerIp"].as_str().map(|ip| vec![ip]),
        "userAgent": p["requestMetadata"]["callerSuppliedUserAgent"],
        "objectRef": object_ref,
        "responseStatus": { "code": http_status(rpc), "message": p["status"]["message"] },
        "requestObject": p["request"],
        "responseObject": p["response"],
        "requestReceivedTimestamp": time,
        "stageTimestamp": time,
        "annotations": annotations,
    });
    let cluster = entry["resource"]["labels"]["cluster_name"]
        .as_str()
        .and_then(valid_cluster);
    d.set_envelope_cluster(cluster.as_deref());
    d.decode_wrapped(&event.to_string(), FORMAT_GKE, pos);
    d.set_envelope_cluster(None);
}

/// For an event CloudWatch truncated: the reason, with the auditID salvaged when it survived.
pub(super) fn truncated_reason(text: &str) -> Option<String> {
    if !text.trim_end().ends_with(TRUNCATED) {
        return None;
    }
    let id = text
        .split_once(r#""auditID":""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(id, _)| id);
    Some(match id {
        Some(id) => {
            format!("event truncated by CloudWatch Logs (ends in {TRUNCATED}); auditID {id}")
        }
        None => {
            format!("event truncated by CloudWatch Logs (ends in {TRUNCATED}); no auditID survived")
        }
    })
}

/// gzip, or base64 of gzip (`H4sI` is the base64 of gzip's magic bytes).
pub(crate) fn is_compressed(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b]) || bytes.starts_with(b"H4sI")
}

/// Decompresses `bytes` (gzip, or base64 of gzip), producing at most `*budget` bytes and
/// taking what it produced from the budget: a gzip bomb stops at the cap while it streams,
/// never expanded past it.
pub(crate) fn decompress(bytes: &[u8], budget: &mut u64) -> Result<Vec<u8>, String> {
    let cap = *budget;
    match decompress_prefix(bytes, cap) {
        (out, None) => {
            *budget -= out.len() as u64;
            Ok(out)
        }
        (_, Some(Partial::OverCap)) => {
            *budget = 0;
            Err(format!(
                "expands past the decompression budget ({cap} bytes left of the request's limit)"
            ))
        }
        (_, Some(Partial::Damaged(e))) => Err(e),
    }
}

/// Why [`decompress_prefix`] stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Partial {
    /// The payload expands past the cap: the output is its first `cap` bytes.
    OverCap,
    /// The payload is damaged (bad base64 or gzip): the output is what came before the damage.
    Damaged(String),
}

/// Decompresses what can be decompressed, streaming, at most `cap` bytes: the output and why it
/// stopped early, if it did. Quarantine uses the prefix of a damaged payload to mask what it holds.
pub(crate) fn decompress_prefix(bytes: &[u8], cap: u64) -> (Vec<u8>, Option<Partial>) {
    let gz: Cow<[u8]> = if bytes.starts_with(b"H4sI") {
        let text: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(gz) => Cow::Owned(gz),
            Err(e) => return (Vec::new(), Some(Partial::Damaged(format!("base64: {e}")))),
        }
    } else {
        Cow::Borrowed(bytes)
    };
    let mut out = Vec::with_capacity(gz.len().saturating_mul(4).min(cap as usize));
    let mut reader = flate2::read::MultiGzDecoder::new(&gz[..]).take(cap.saturating_add(1));
    let mut buf = [0u8; 64 << 10];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (out, Some(Partial::Damaged(format!("gzip: {e}")))),
        }
    }
    if out.len() as u64 > cap {
        out.truncate(cap as usize);
        return (out, Some(Partial::OverCap));
    }
    (out, None)
}

#[cfg(test)]
mod tests;
