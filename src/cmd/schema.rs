//! `auditlake schema [--json]`: the tables' columns, from the schema definitions themselves.

use std::io::Write;

use auditlake_schemas::{
    AUDIT_EVENT_COLUMNS, AUDIT_EVENTS_SCHEMA_VERSION, ColumnDef, FINDING_COLUMNS,
    FINDINGS_SCHEMA_VERSION, PARTITION_COLUMN_DEFS,
};
use serde_json::json;

use crate::EXIT_OK;
use crate::cli::SchemaArgs;

pub fn run(args: SchemaArgs) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    if !args.json {
        write!(out, "{}", auditlake_schemas::audit_events_markdown())?;
        write!(out, "\n{}", auditlake_schemas::findings_markdown())?;
        return Ok(EXIT_OK);
    }
    for table in tables() {
        writeln!(out, "{table}")?;
    }
    Ok(EXIT_OK)
}

/// One JSON object per table, in the order the Markdown describes them.
fn tables() -> [serde_json::Value; 2] {
    let columns = |cols: &[ColumnDef], partition: bool| -> Vec<serde_json::Value> {
        cols.iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    // Arrow's name of the type: what a script reading the Parquet files sees.
                    "type": c.ty.data_type().to_string(),
                    "nullable": c.nullable,
                    "partition": partition,
                    "source": c.source,
                    "description": c.description,
                })
            })
            .collect()
    };
    let mut events = columns(AUDIT_EVENT_COLUMNS, false);
    events.extend(columns(PARTITION_COLUMN_DEFS, true));
    [
        json!({
            "table": "audit_events",
            "schema_version": AUDIT_EVENTS_SCHEMA_VERSION,
            "columns": events,
        }),
        json!({
            "table": "findings",
            "schema_version": FINDINGS_SCHEMA_VERSION,
            "columns": columns(FINDING_COLUMNS, false),
        }),
    ]
}

#[cfg(test)]
mod tests {
    /// The JSON names every column of the Arrow schemas, with the same nullability.
    #[test]
    fn json_covers_the_arrow_schemas() {
        let [events, findings] = super::tables();
        for (table, schema) in [
            (&events, auditlake_schemas::audit_events_table_schema()),
            (&findings, auditlake_schemas::findings_schema()),
        ] {
            let cols = table["columns"].as_array().unwrap();
            assert_eq!(cols.len(), schema.fields().len(), "{}", table["table"]);
            for field in schema.fields() {
                let col = cols
                    .iter()
                    .find(|c| c["name"] == field.name().as_str())
                    .unwrap_or_else(|| panic!("{} missing", field.name()));
                assert_eq!(col["nullable"], field.is_nullable(), "{}", field.name());
            }
        }
        let partitions: Vec<&str> = events["columns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["partition"] == true)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(partitions, auditlake_schemas::PARTITION_COLUMNS);
    }
}
