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
//! Rows from an envelope carry `source_format` `aks-diagnostics` / `eks-cloudwatch`.

use std::borrow::Cow;
use std::io::Read;

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Decoder, SourcePosition};

pub const FORMAT_AKS: &str = "aks-diagnostics";
pub const FORMAT_EKS: &str = "eks-cloudwatch";
/// What AKS writes instead of an event larger than its export limit.
pub const AKS_TOO_BIG: &str = "skipped-too-big-size-object";
const TRUNCATED: &str = "[Truncated...]";
/// Decompressed payloads larger than this are refused (a gzip bomb costs nothing else).
const MAX_DECOMPRESSED: u64 = 256 << 20;

#[derive(Deserialize)]
struct AksRecord<'a> {
    #[serde(borrow)]
    category: Option<Cow<'a, str>>,
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
        let pos = item_pos(pos, i);
        let record: AksRecord = match serde_json::from_str(raw.get()) {
            Ok(r) => r,
            Err(e) => {
                d.reject(raw.get().as_bytes(), &pos, format!("not a valid AKS diagnostic record: {e}"));
                continue;
            }
        };
        if !matches!(record.category.as_deref(), Some("kube-audit" | "kube-audit-admin")) {
            continue;
        }
        match record.properties.and_then(|p| p.log) {
            Some(log) if log.trim() == AKS_TOO_BIG => d.reject(
                raw.get().as_bytes(),
                &pos,
                "AKS did not export this event: it was larger than the diagnostic export limit (skipped-too-big-size-object)".into(),
            ),
            Some(log) => d.decode_wrapped(&log, FORMAT_AKS, &pos),
            None => d.reject(raw.get().as_bytes(), &pos, "AKS kube-audit record without properties.log".into()),
        }
    }
}

pub(super) fn decode_cloudwatch(d: &mut Decoder, events: &[&RawValue], pos: &SourcePosition) {
    for (i, raw) in events.iter().enumerate() {
        let pos = item_pos(pos, i);
        match serde_json::from_str::<LogEvent>(raw.get()) {
            Ok(LogEvent { message: Some(m) }) => d.decode_wrapped(&m, FORMAT_EKS, &pos),
            Ok(_) => d.reject(raw.get().as_bytes(), &pos, "CloudWatch log event without message".into()),
            Err(e) => d.reject(raw.get().as_bytes(), &pos, format!("not a valid CloudWatch log event: {e}")),
        }
    }
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
        Some(id) => format!("event truncated by CloudWatch Logs (ends in {TRUNCATED}); auditID {id}"),
        None => format!("event truncated by CloudWatch Logs (ends in {TRUNCATED}); no auditID survived"),
    })
}

/// gzip, or base64 of gzip (`H4sI` is the base64 of gzip's magic bytes).
pub(super) fn is_compressed(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b]) || bytes.starts_with(b"H4sI")
}

pub(super) fn decompress(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let gz: Cow<[u8]> = if bytes.starts_with(b"H4sI") {
        let text: Vec<u8> = bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        Cow::Owned(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("base64: {e}"))?,
        )
    } else {
        Cow::Borrowed(bytes)
    };
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip: {e}"))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(format!("more than {} MiB once decompressed", MAX_DECOMPRESSED >> 20));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::DecodeOptions;
    use arrow::array::{Array, AsArray};

    fn event(id: &str) -> String {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/db","verb":"get","user":{{"username":"masterclient","groups":["system:masters"]}},"sourceIPs":["20.1.2.3"],"objectRef":{{"resource":"secrets","namespace":"prod","name":"db","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"2026-11-22T10:00:00.100000Z","stageTimestamp":"2026-11-22T10:00:00.120000Z","annotations":{{"authorization.k8s.io/decision":"allow"}}}}"#
        )
    }

    fn decode(input: &[u8]) -> crate::decode::Decoded {
        let mut d = Decoder::new(DecodeOptions::new("aks-prod"));
        d.decode(input, &SourcePosition::default());
        d.take()
    }

    fn formats(out: &crate::decode::Decoded) -> Vec<String> {
        out.batches
            .iter()
            .flat_map(|b| {
                let a = b.batch.column_by_name("source_format").unwrap().as_string::<i32>().clone();
                (0..a.len()).map(move |i| a.value(i).to_owned()).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn aks_records_unwrap_skip_other_categories_and_quarantine_too_big_events() {
        let line = serde_json::json!({"records": [
            {"time": "2026-11-22T10:00:00.2Z", "resourceId": "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD",
             "category": "kube-audit", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
             "properties": {"log": event("aks-1"), "stream": "stdout", "pod": "kube-apiserver-6d8b9c7f4-abcde"}},
            {"category": "kube-apiserver", "properties": {"log": "I1122 10:00:00 some apiserver log line"}},
            {"category": "kube-audit-admin", "properties": {"log": event("aks-2")}},
            {"category": "kube-audit", "properties": {"log": "skipped-too-big-size-object", "pod": "kube-apiserver-6d8b9c7f4-abcde"}}
        ]}).to_string();
        let out = decode(line.as_bytes());
        assert_eq!(out.events, 2);
        assert_eq!(formats(&out), vec![FORMAT_AKS, FORMAT_AKS]);
        assert_eq!(out.rejects.len(), 1);
        assert!(out.rejects[0].reason.contains("skipped-too-big-size-object"));
        assert_eq!(out.rejects[0].position.item, Some(3));
        assert!(String::from_utf8_lossy(&out.rejects[0].raw).contains("kube-apiserver-6d8b9c7f4-abcde"));
    }

    #[test]
    fn eks_subscription_payloads_unwrap_also_gzip_and_base64_and_truncated_events_keep_their_id() {
        let truncated = format!("{}{TRUNCATED}", &event("eks-cut")[..180]);
        let payload = serde_json::json!({
            "messageType": "DATA_MESSAGE", "owner": "123456789012",
            "logGroup": "/aws/eks/prod/cluster", "logStream": "kube-apiserver-audit-1f2e3d",
            "subscriptionFilters": ["to-kafka"],
            "logEvents": [
                {"id": "1", "timestamp": 1795341600100i64, "message": event("eks-1")},
                {"id": "2", "timestamp": 1795341600200i64, "message": truncated},
                {"id": "3", "timestamp": 1795341600300i64, "message": event("eks-2")}
            ]
        })
        .to_string();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, payload.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&gz);
        for input in [payload.as_bytes(), &gz[..], b64.as_bytes()] {
            let out = decode(input);
            assert_eq!(out.events, 2);
            assert_eq!(formats(&out), vec![FORMAT_EKS, FORMAT_EKS]);
            assert_eq!(out.rejects.len(), 1);
            assert!(out.rejects[0].reason.contains("auditID eks-cut"), "{}", out.rejects[0].reason);
            assert_eq!(out.rejects[0].position.item, Some(1));
        }
        let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;
        let out = decode(control.as_bytes());
        assert_eq!((out.events, out.rejects.len()), (0, 0));
    }

    #[test]
    fn an_exported_eks_line_cut_by_cloudwatch_is_quarantined_with_its_audit_id() {
        let line = format!("{}{TRUNCATED}", &event("eks-cut-2")[..200]);
        let out = decode(line.as_bytes());
        assert_eq!(out.events, 0);
        assert_eq!(out.rejects.len(), 1);
        assert!(out.rejects[0].reason.contains("auditID eks-cut-2"), "{}", out.rejects[0].reason);
        assert_eq!(out.rejects[0].raw, line.as_bytes(), "quarantined byte-exact");
    }
}
