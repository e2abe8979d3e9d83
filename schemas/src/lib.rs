//! The Arrow schemas of auditlake's tables, their column names, and the schema version.
//!
//! One table of [`ColumnDef`]s is the single source of truth: the Arrow schema, the column-name
//! constants the decoder and the rules use, and the generated description (`audit_events.md`)
//! all come from it. A test keeps the checked-in description in step with the code.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

mod audit_events;
mod findings;
pub use audit_events::*;
pub use findings::*;

/// Version of the `audit_events` file schema. Written into every Parquet file's key/value
/// metadata under [`SCHEMA_VERSION_KEY`]. Bump it when a column changes meaning or type;
/// adding a nullable column does not need a bump (readers fill it with nulls).
pub const AUDIT_EVENTS_SCHEMA_VERSION: &str = "1";
/// Parquet key/value metadata key that carries the schema version.
pub const SCHEMA_VERSION_KEY: &str = "auditlake.schema_version";

/// Hive partition columns of `audit_events`, in path order. They live in the directory names,
/// not inside the Parquet files (the Hive convention that DuckDB, Spark and Trino follow).
pub const PARTITION_COLUMNS: [&str; 3] = [CLUSTER, DATE, HOUR];

/// The logical type of a column, kept small so the description can name it in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Utf8,
    /// JSON document stored as text.
    JsonText,
    Int32,
    Boolean,
    /// Microseconds since the epoch, UTC.
    TimestampUtc,
    ListUtf8,
    MapUtf8Utf8,
    MapUtf8ListUtf8,
}

impl ColumnType {
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Utf8 | ColumnType::JsonText => DataType::Utf8,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::TimestampUtc => timestamp_utc(),
            ColumnType::ListUtf8 => list_utf8(),
            ColumnType::MapUtf8Utf8 => map_of(DataType::Utf8),
            ColumnType::MapUtf8ListUtf8 => map_of(list_utf8()),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ColumnType::Utf8 => "string",
            ColumnType::JsonText => "string (JSON text)",
            ColumnType::Int32 => "int32",
            ColumnType::Boolean => "boolean",
            ColumnType::TimestampUtc => "timestamp (µs, UTC)",
            ColumnType::ListUtf8 => "list<string>",
            ColumnType::MapUtf8Utf8 => "map<string, string>",
            ColumnType::MapUtf8ListUtf8 => "map<string, list<string>>",
        }
    }
}

/// The timestamp type of every time column: microseconds, UTC (Parquet `TIMESTAMP(MICROS, true)`).
pub fn timestamp_utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// `list<string>` with the element field arrow's `ListBuilder` produces (`item`, nullable).
pub fn list_utf8() -> DataType {
    DataType::new_list(DataType::Utf8, true)
}

/// `map<string, V>` with the field names arrow's `MapBuilder` produces (`entries`/`keys`/`values`).
pub fn map_of(values: DataType) -> DataType {
    let entries = Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", values, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

/// One column: its name, type, nullability, where its value comes from, and what it means.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
    /// Where the value comes from: an `audit.k8s.io/v1` Event field path, "derived: …" or "ingest: …".
    pub source: &'static str,
    pub description: &'static str,
}

impl ColumnDef {
    pub fn field(&self) -> Field {
        Field::new(self.name, self.ty.data_type(), self.nullable)
    }
}

/// Schema of the Parquet files under `<lake>/audit_events/` (no partition columns).
pub fn audit_events_file_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(
            AUDIT_EVENT_COLUMNS
                .iter()
                .map(ColumnDef::field)
                .collect::<Vec<_>>(),
        ))
    });
    SCHEMA.clone()
}

/// Schema of the `audit_events` table as queries see it: the file columns, then the
/// partition columns `cluster`, `date`, `hour`.
pub fn audit_events_table_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut fields: Vec<Field> = AUDIT_EVENT_COLUMNS.iter().map(ColumnDef::field).collect();
        fields.extend(PARTITION_COLUMN_DEFS.iter().map(ColumnDef::field));
        Arc::new(Schema::new(fields))
    });
    SCHEMA.clone()
}

/// Renders the Markdown description of `audit_events` (checked in as `schemas/audit_events.md`).
pub fn audit_events_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Table `audit_events`\n\n");
    out.push_str(
        "<!-- Generated from schemas/src/audit_events.rs by the test `description_is_in_sync`; \
         run `AUDITLAKE_BLESS=1 cargo test -p auditlake-schemas` to regenerate. Do not edit. -->\n\n",
    );
    out.push_str(&format!(
        "Schema version {AUDIT_EVENTS_SCHEMA_VERSION} (Parquet key/value metadata `{SCHEMA_VERSION_KEY}`). \
         One row per audit event per stage; the upstream record is `audit.k8s.io/v1` `Event` \
         (Kubernetes `staging/src/k8s.io/apiserver/pkg/apis/audit/v1/types.go`); `v1beta1` events map \
         onto the same columns. Dedup key: (`cluster`, `audit_id`, `stage`).\n\n"
    ));
    push_column_table(
        &mut out,
        AUDIT_EVENT_COLUMNS
            .iter()
            .chain(PARTITION_COLUMN_DEFS.iter()),
    );
    out.push_str(DERIVED_NOTES);
    out
}

fn push_column_table<'a>(out: &mut String, cols: impl Iterator<Item = &'a ColumnDef>) {
    out.push_str("| column | type | null | source | meaning |\n|---|---|---|---|---|\n");
    for col in cols {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            col.name,
            col.ty.describe(),
            if col.nullable { "yes" } else { "no" },
            col.source,
            col.description
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn assert_in_sync(file: &str, rendered: &str) {
        // The directory cargo runs the test in, not the one it was compiled in: CI shares one
        // target directory between checkouts, and an unchanged crate's test binary is reused.
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
        let path = format!("{dir}/{file}");
        if std::env::var_os("AUDITLAKE_BLESS").is_some() {
            std::fs::write(&path, rendered).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "schemas/{file} is out of date with the code; \
             run `AUDITLAKE_BLESS=1 cargo test -p auditlake-schemas` and commit the result"
        );
    }

    #[test]
    fn description_is_in_sync() {
        assert_in_sync("audit_events.md", &audit_events_markdown());
    }

    #[test]
    fn findings_description_is_in_sync() {
        assert_in_sync("findings.md", &findings_markdown());
    }

    #[test]
    fn column_names_are_unique_snake_case() {
        let audit_events: Vec<&ColumnDef> = AUDIT_EVENT_COLUMNS
            .iter()
            .chain(PARTITION_COLUMN_DEFS.iter())
            .collect();
        let findings: Vec<&ColumnDef> = FINDING_COLUMNS.iter().collect();
        for table in [audit_events, findings] {
            check_columns(&table);
        }
    }

    fn check_columns(table: &[&ColumnDef]) {
        let mut seen = HashSet::new();
        for col in table {
            assert!(seen.insert(col.name), "duplicate column {}", col.name);
            assert!(
                col.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "column {} is not snake_case",
                col.name
            );
            assert!(
                !col.source.is_empty() && !col.description.is_empty(),
                "{} undocumented",
                col.name
            );
        }
    }

    #[test]
    fn table_schema_is_file_schema_plus_partitions() {
        let file = audit_events_file_schema();
        let table = audit_events_table_schema();
        assert_eq!(
            table.fields().len(),
            file.fields().len() + PARTITION_COLUMNS.len()
        );
        for (i, name) in PARTITION_COLUMNS.iter().enumerate() {
            assert_eq!(table.field(file.fields().len() + i).name(), name);
        }
        assert!(
            file.index_of(CLUSTER).is_err(),
            "partition columns must not be stored in files"
        );
    }
}
