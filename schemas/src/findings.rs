//! Columns of `findings`: what a detection rule reports. One row per finding; a finding groups
//! the evidence events of one rule for one cluster, grouping key and dedup bucket.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{Schema, SchemaRef};

use crate::{ColumnDef, ColumnType as T};

/// Version of the `findings` schema.
pub const FINDINGS_SCHEMA_VERSION: &str = "2";

const fn col(
    name: &'static str,
    ty: T,
    nullable: bool,
    source: &'static str,
    description: &'static str,
) -> ColumnDef {
    ColumnDef {
        name,
        ty,
        nullable,
        source,
        description,
    }
}

pub const FINDING_COLUMNS: &[ColumnDef] = &[
    col(
        "finding_id",
        T::Utf8,
        false,
        "engine",
        "Stable id: the xxh3-128 hash (hex) of `dedup_key`. The same hits found again (re-run, restart, overlapping window) get the same id.",
    ),
    col(
        "dedup_key",
        T::Utf8,
        false,
        "engine",
        "`rule_id|cluster|group values|bucket start`: what makes two findings the same finding.",
    ),
    col(
        "rule_id",
        T::Utf8,
        false,
        "rule.toml `id`",
        "The rule that fired (its folder under `rules/`).",
    ),
    col(
        "rule_version",
        T::Int32,
        false,
        "rule.toml `version`",
        "Rule version, bumped when its logic changes.",
    ),
    col(
        "severity",
        T::Utf8,
        false,
        "rule.toml `severity`",
        "info, low, medium, high or critical.",
    ),
    col(
        "title",
        T::Utf8,
        false,
        "rule.toml `title`",
        "What was detected, in words.",
    ),
    col(
        "summary",
        T::Utf8,
        false,
        "rule.toml `summary` filled from the first evidence event",
        "One line a responder reads first.",
    ),
    col(
        "cluster",
        T::Utf8,
        false,
        "`audit_events.cluster`",
        "Cluster of the evidence.",
    ),
    col(
        "actor",
        T::Utf8,
        true,
        "`user_name`, else `source_ip` of the first evidence event",
        "Who did it.",
    ),
    col(
        "source_ip",
        T::Utf8,
        true,
        "`source_ip` of the first evidence event",
        "Where from.",
    ),
    col(
        "target",
        T::Utf8,
        true,
        "`resource[/subresource] namespace/name` of the first evidence event",
        "What was acted on.",
    ),
    col(
        "first_event_at",
        T::TimestampUtc,
        false,
        "min `stage_at` of the evidence",
        "When it started.",
    ),
    col(
        "last_event_at",
        T::TimestampUtc,
        false,
        "max `stage_at` of the evidence",
        "When it last happened.",
    ),
    col(
        "event_count",
        T::Int32,
        false,
        "distinct evidence `audit_id`s",
        "How many requests make up the finding.",
    ),
    col(
        "evidence_audit_ids",
        T::ListUtf8,
        false,
        "evidence `audit_id`s in time order (at most 100)",
        "Join to `audit_events.audit_id` for the full events.",
    ),
    col(
        "attack_ids",
        T::ListUtf8,
        false,
        "rule.toml `attack`",
        "MITRE ATT&CK technique ids.",
    ),
    col(
        "catalog_ids",
        T::ListUtf8,
        false,
        "rule.toml `catalog`",
        "Detection-catalog ids (K01–K61) the rule covers.",
    ),
    col(
        "bucket_start",
        T::TimestampUtc,
        false,
        "engine",
        "Start of the `dedup_window` bucket the finding belongs to.",
    ),
    col(
        "detected_at",
        T::TimestampUtc,
        false,
        "engine",
        "When the engine produced the finding.",
    ),
    col(
        "revision",
        T::Int32,
        false,
        "findings store",
        "1 when first reported; +1 each time later evidence in the same dedup bucket changes `event_count` or `last_event_at` (an update, not a new alert). Table `findings` shows each finding's latest revision, `findings_history` all of them.",
    ),
    col(
        "origin",
        T::Utf8,
        false,
        "engine",
        "What produced it: `scheduled` (serve's scheduler), `streaming` (a streaming rule on events as they arrived), `retro-hunt` (`auditlake detect --store` over history) or `detect` (a one-shot `auditlake detect`, not stored).",
    ),
    col(
        "incident_id",
        T::Utf8,
        true,
        "findings store",
        "The incident the finding belongs to: findings of one cluster that share the actor or the target within the incident window (see table `incidents`).",
    ),
];

/// The partition column of the `findings` Delta table: not inside the files, but in their
/// directory names (`date=YYYY-MM-DD/…`) and in each `add` action.
pub const FINDINGS_PARTITION_COLUMN_DEFS: &[ColumnDef] = &[col(
    crate::DATE,
    T::Utf8,
    false,
    "findings store: path `date=YYYY-MM-DD`",
    "UTC date of `detected_at`: the partition a finding revision is stored in. Filter on it to prune whole directories.",
)];

/// Arrow schema of a `findings` data file (the partition column is in its path).
pub fn findings_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(
            FINDING_COLUMNS
                .iter()
                .map(ColumnDef::field)
                .collect::<Vec<_>>(),
        ))
    });
    SCHEMA.clone()
}

/// Schema of the `findings` Delta table as queries see it: the file columns, then `date`.
pub fn findings_table_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(
            FINDING_COLUMNS
                .iter()
                .chain(FINDINGS_PARTITION_COLUMN_DEFS)
                .map(ColumnDef::field)
                .collect::<Vec<_>>(),
        ))
    });
    SCHEMA.clone()
}

/// Renders the Markdown description of `findings` (checked in as `schemas/findings.md`).
pub fn findings_markdown() -> String {
    let mut out = String::from("# Table `findings`\n\n");
    out.push_str(
        "<!-- Generated from schemas/src/findings.rs by the test `findings_description_is_in_sync`; \
         run `AUDITLAKE_BLESS=1 cargo test -p auditlake-schemas` to regenerate. Do not edit. -->\n\n",
    );
    out.push_str(&format!(
        "Schema version {FINDINGS_SCHEMA_VERSION}. One row per finding: the evidence events of one rule, \
         for one cluster, grouping key and dedup bucket (see `rules/README.md`).\n\n"
    ));
    crate::push_column_table(
        &mut out,
        FINDING_COLUMNS
            .iter()
            .chain(FINDINGS_PARTITION_COLUMN_DEFS.iter()),
    );
    out
}
