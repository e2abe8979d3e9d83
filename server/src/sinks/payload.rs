//! What each sink format sends for a finding (auditlake's JSON, Alertmanager's alert, Falco's
//! output), and the finding read back from its outbox record.

use auditlake_detect::Finding;
use serde_json::{Value, json};

/// The JSON form of a finding (also the `finding` of webhook payloads).
pub fn finding_json(f: &Finding) -> Value {
    let t =
        |d: chrono::DateTime<chrono::Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "finding_id": f.finding_id,
        "revision": f.revision,
        "idempotency_key": f.idempotency_key(),
        "rule_id": f.rule_id,
        "rule_version": f.rule_version,
        "severity": f.severity,
        "title": f.title,
        "summary": f.summary,
        "cluster": f.cluster,
        "actor": f.actor,
        "source_ip": f.source_ip,
        "target": f.target,
        "first_event_at": t(f.first_event_at),
        "last_event_at": t(f.last_event_at),
        "event_count": f.event_count,
        "evidence_audit_ids": f.evidence_audit_ids,
        "attack_ids": f.attack_ids,
        "catalog_ids": f.catalog_ids,
        "incident_id": f.incident_id,
        "origin": f.origin,
        "detected_at": t(f.detected_at),
        "dedup_key": f.dedup_key,
    })
}

/// Alertmanager v2 `postableAlerts`: labels identify the alert (Alertmanager groups, routes and
/// dedups by them), annotations describe it.
pub fn alertmanager_payload(f: &Finding) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), json!(f.rule_id));
    labels.insert("severity".into(), json!(f.severity));
    labels.insert("cluster".into(), json!(f.cluster));
    labels.insert("finding_id".into(), json!(f.finding_id));
    labels.insert("source".into(), json!("auditlake"));
    if let Some(a) = f.actor.as_deref().filter(|a| !a.is_empty()) {
        labels.insert("actor".into(), json!(a));
    }
    if let Some(i) = &f.incident_id {
        labels.insert("incident_id".into(), json!(i));
    }
    let mut annotations = serde_json::Map::new();
    annotations.insert("summary".into(), json!(f.summary));
    annotations.insert("title".into(), json!(f.title));
    annotations.insert("idempotency_key".into(), json!(f.idempotency_key()));
    annotations.insert("event_count".into(), json!(f.event_count.to_string()));
    annotations.insert(
        "evidence_audit_ids".into(),
        json!(f.evidence_audit_ids.join(",")),
    );
    if let Some(t) = &f.target {
        annotations.insert("target".into(), json!(t));
    }
    if !f.attack_ids.is_empty() {
        annotations.insert("attack_ids".into(), json!(f.attack_ids.join(",")));
    }
    json!([{
        "labels": labels,
        "annotations": annotations,
        "startsAt": f.first_event_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }])
}

/// Falco's JSON output format.
pub fn falco_payload(f: &Finding) -> Value {
    let priority = match f.severity.as_str() {
        "critical" => "Critical",
        "high" => "Error",
        "medium" => "Warning",
        "low" => "Notice",
        _ => "Informational",
    };
    let time = f
        .first_event_at
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    json!({
        "output": format!("{time}: {priority} {} ({})", f.title, f.summary),
        "priority": priority,
        "rule": f.title,
        "time": time,
        "source": "k8s_audit",
        "hostname": f.cluster,
        "tags": f.attack_ids.iter().cloned().chain(["auditlake".to_owned(), f.rule_id.clone()]).collect::<Vec<_>>(),
        "output_fields": {
            "ka.user.name": f.actor,
            "ka.source_ip": f.source_ip,
            "ka.target": f.target,
            "k8s.cluster": f.cluster,
            "auditlake.rule_id": f.rule_id,
            "auditlake.finding_id": f.finding_id,
            "auditlake.idempotency_key": f.idempotency_key(),
            "auditlake.event_count": f.event_count,
            "auditlake.evidence_audit_ids": f.evidence_audit_ids,
            "auditlake.incident_id": f.incident_id,
        },
    })
}

/// An outbox record lacks a field the sink's format needs (it was damaged or hand-edited): the
/// sink can never take it, so it is rejected, not retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outbox record without {0}")]
pub(crate) struct MissingField(&'static str);

/// The finding back from its outbox JSON (for the formats that reshape it).
pub(super) fn stored_finding(v: &Value) -> Result<Finding, MissingField> {
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    let t = |k: &'static str| {
        s(k).and_then(|x| chrono::DateTime::parse_from_rfc3339(&x).ok())
            .map(|d| d.to_utc())
            .ok_or(MissingField(k))
    };
    let list = |k: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(Finding {
        finding_id: s("finding_id").ok_or(MissingField("finding_id"))?,
        dedup_key: s("dedup_key").unwrap_or_default(),
        rule_id: s("rule_id").unwrap_or_default(),
        rule_version: v["rule_version"].as_i64().unwrap_or(1) as i32,
        severity: s("severity").unwrap_or_default(),
        title: s("title").unwrap_or_default(),
        summary: s("summary").unwrap_or_default(),
        cluster: s("cluster").unwrap_or_default(),
        actor: s("actor"),
        source_ip: s("source_ip"),
        target: s("target"),
        namespace: None,
        first_event_at: t("first_event_at")?,
        last_event_at: t("last_event_at")?,
        event_count: v["event_count"].as_i64().unwrap_or(0) as i32,
        evidence_audit_ids: list("evidence_audit_ids"),
        attack_ids: list("attack_ids"),
        catalog_ids: list("catalog_ids"),
        bucket_start: t("first_event_at")?,
        detected_at: t("detected_at")?,
        revision: v["revision"].as_i64().unwrap_or(1) as i32,
        origin: s("origin").unwrap_or_default(),
        incident_id: s("incident_id"),
    })
}
