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
    pub first_event_at: DateTime<Utc>,
    pub last_event_at: DateTime<Utc>,
    pub event_count: i32,
    pub evidence_audit_ids: Vec<String>,
    pub attack_ids: Vec<String>,
    pub catalog_ids: Vec<String>,
    pub bucket_start: DateTime<Utc>,
    pub detected_at: DateTime<Utc>,
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
    ];
    RecordBatch::try_new(schema, columns).expect("columns follow FINDING_COLUMNS")
}
