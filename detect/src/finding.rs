//! A finding and its Arrow form (`schemas::findings_schema`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, ListBuilder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use auditlake_schemas::findings_schema;
use chrono::{DateTime, Utc};

/// What a rule found: the evidence events of one rule, cluster, grouping key and dedup bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub finding_id: String,
    pub dedup_key: String,
    pub rule_id: String,
    pub rule_version: i32,
    pub severity: String,
    pub title: String,
    pub summary: String,
    pub cluster: String,
    pub actor: Option<String>,
    pub source_ip: Option<String>,
    pub target: Option<String>,
    /// The namespace of the first evidence event (the rule's `namespace` column), for
    /// suppressions. Not a column of the findings table: `None` when read back.
    pub namespace: Option<String>,
    pub first_event_at: DateTime<Utc>,
    pub last_event_at: DateTime<Utc>,
    pub event_count: i32,
    pub evidence_audit_ids: Vec<String>,
    pub attack_ids: Vec<String>,
    pub catalog_ids: Vec<String>,
    pub bucket_start: DateTime<Utc>,
    pub detected_at: DateTime<Utc>,
    /// 1 when first reported, +1 per update of the same finding (see `schemas/findings.md`).
    pub revision: i32,
    /// `scheduled`, `retro-hunt` or `detect`.
    pub origin: String,
    pub incident_id: Option<String>,
}

impl Finding {
    /// The key a sink receives to recognise a re-delivery: `<finding_id>-r<revision>`.
    pub fn idempotency_key(&self) -> String {
        format!("{}-r{}", self.finding_id, self.revision)
    }
}

/// Findings as one batch of the `findings` schema.
pub fn findings_to_batch(findings: &[Finding]) -> RecordBatch {
    let schema = findings_schema();
    let text = |f: &dyn Fn(&Finding) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::new();
        for x in findings {
            b.append_option(f(x));
        }
        Arc::new(b.finish())
    };
    let time = |f: &dyn Fn(&Finding) -> DateTime<Utc>| -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        for x in findings {
            b.append_value(f(x).timestamp_micros());
        }
        Arc::new(b.finish())
    };
    let int = |f: &dyn Fn(&Finding) -> i32| -> ArrayRef {
        let mut b = Int32Builder::new();
        for x in findings {
            b.append_value(f(x));
        }
        Arc::new(b.finish())
    };
    let list = |f: &dyn Fn(&Finding) -> &[String]| -> ArrayRef {
        let mut b = ListBuilder::new(StringBuilder::new());
        for x in findings {
            for s in f(x) {
                b.values().append_value(s);
            }
            b.append(true);
        }
        Arc::new(b.finish())
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|f| Some(&f.finding_id)),
        text(&|f| Some(&f.dedup_key)),
        text(&|f| Some(&f.rule_id)),
        int(&|f| f.rule_version),
        text(&|f| Some(&f.severity)),
        text(&|f| Some(&f.title)),
        text(&|f| Some(&f.summary)),
        text(&|f| Some(&f.cluster)),
        text(&|f| f.actor.as_deref()),
        text(&|f| f.source_ip.as_deref()),
        text(&|f| f.target.as_deref()),
        time(&|f| f.first_event_at),
        time(&|f| f.last_event_at),
        int(&|f| f.event_count),
        list(&|f| &f.evidence_audit_ids),
        list(&|f| &f.attack_ids),
        list(&|f| &f.catalog_ids),
        time(&|f| f.bucket_start),
        time(&|f| f.detected_at),
        int(&|f| f.revision),
        text(&|f| Some(&f.origin)),
        text(&|f| f.incident_id.as_deref()),
    ];
    RecordBatch::try_new(schema, columns).expect("columns follow FINDING_COLUMNS")
}

/// Findings read back from a batch of the `findings` schema (the findings store's own files).
pub fn findings_from_batch(batch: &RecordBatch) -> Result<Vec<Finding>, arrow::error::ArrowError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, TimestampMicrosecondType};
    let col = |name: &str| {
        batch.column_by_name(name).ok_or_else(|| {
            arrow::error::ArrowError::SchemaError(format!("findings file without column {name}"))
        })
    };
    let text = |name: &str| -> Result<Vec<Option<String>>, arrow::error::ArrowError> {
        let a = arrow::compute::cast(col(name)?, &arrow::datatypes::DataType::Utf8)?;
        let a = a.as_string::<i32>();
        Ok((0..a.len())
            .map(|i| (!a.is_null(i)).then(|| a.value(i).to_owned()))
            .collect())
    };
    let time = |name: &str| -> Result<Vec<DateTime<Utc>>, arrow::error::ArrowError> {
        let a = col(name)?.as_primitive::<TimestampMicrosecondType>();
        Ok(a.values()
            .iter()
            .map(|v| DateTime::from_timestamp_micros(*v).unwrap_or_default())
            .collect())
    };
    let int = |name: &str| -> Result<Vec<i32>, arrow::error::ArrowError> {
        Ok(col(name)?.as_primitive::<Int32Type>().values().to_vec())
    };
    let list = |name: &str| -> Result<Vec<Vec<String>>, arrow::error::ArrowError> {
        let l = col(name)?.as_list::<i32>();
        Ok((0..l.len())
            .map(|i| {
                let v = l.value(i);
                let v = v.as_string::<i32>();
                v.iter().flatten().map(str::to_owned).collect()
            })
            .collect())
    };
    let (ids, keys, rules, sev, titles, summaries, clusters) = (
        text("finding_id")?,
        text("dedup_key")?,
        text("rule_id")?,
        text("severity")?,
        text("title")?,
        text("summary")?,
        text("cluster")?,
    );
    let (actors, ips, targets, origins, incidents) = (
        text("actor")?,
        text("source_ip")?,
        text("target")?,
        text("origin")?,
        text("incident_id")?,
    );
    let (versions, counts, revisions) =
        (int("rule_version")?, int("event_count")?, int("revision")?);
    let (first, last, bucket, detected) = (
        time("first_event_at")?,
        time("last_event_at")?,
        time("bucket_start")?,
        time("detected_at")?,
    );
    let (evidence, attack, catalog) = (
        list("evidence_audit_ids")?,
        list("attack_ids")?,
        list("catalog_ids")?,
    );
    let s = |v: &Vec<Option<String>>, i: usize| v[i].clone().unwrap_or_default();
    Ok((0..batch.num_rows())
        .map(|i| Finding {
            finding_id: s(&ids, i),
            dedup_key: s(&keys, i),
            rule_id: s(&rules, i),
            rule_version: versions[i],
            severity: s(&sev, i),
            title: s(&titles, i),
            summary: s(&summaries, i),
            cluster: s(&clusters, i),
            actor: actors[i].clone(),
            source_ip: ips[i].clone(),
            target: targets[i].clone(),
            namespace: None,
            first_event_at: first[i],
            last_event_at: last[i],
            event_count: counts[i],
            evidence_audit_ids: evidence[i].clone(),
            attack_ids: attack[i].clone(),
            catalog_ids: catalog[i].clone(),
            bucket_start: bucket[i],
            detected_at: detected[i],
            revision: revisions[i],
            origin: s(&origins, i),
            incident_id: incidents[i].clone(),
        })
        .collect())
}
