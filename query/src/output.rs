//! Result output formats: an aligned table for people, JSON lines for `jq` and programs, CSV
//! for spreadsheets.

use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::QueryError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    /// One JSON object per row (JSON lines).
    Json,
    Csv,
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(OutputFormat::Table),
            "json" => Ok(OutputFormat::Json),
            "csv" => Ok(OutputFormat::Csv),
            other => Err(format!(
                "unknown format {other:?} (expected table, json or csv)"
            )),
        }
    }
}

fn out_err(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> QueryError {
    QueryError::Output(e.into())
}

/// Writes `batches` to `out` in `format`. An empty result still prints a header (table, csv).
pub fn write_batches(
    batches: &[RecordBatch],
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), QueryError> {
    match format {
        OutputFormat::Table => {
            // Event data is attacker-controlled (any client sets its user agent, an exec command
            // is whatever was typed): a table is for a terminal, so no cell may carry a control
            // sequence. JSON and CSV stay exact.
            let printable: Vec<RecordBatch> = batches
                .iter()
                .map(|b| render_cells(b, true))
                .collect::<Result<_, _>>()?;
            let text = pretty_format_batches(&printable).map_err(out_err)?;
            writeln!(out, "{text}").map_err(out_err)?;
        }
        OutputFormat::Json => {
            let mut w = LineDelimitedWriter::new(out);
            for b in batches {
                w.write(b).map_err(out_err)?;
            }
            w.finish().map_err(out_err)?;
        }
        OutputFormat::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for b in batches {
                w.write(&render_cells(b, false)?).map_err(out_err)?;
            }
        }
    }
    Ok(())
}

/// Renders columns as text where the output needs it: nested columns always (CSV has no lists
/// or maps: `[a, b]`, `{k: v}`), and with `for_terminal` every text-bearing column, with
/// control characters escaped by [`printable`]. Other columns pass through unchanged.
fn render_cells(batch: &RecordBatch, for_terminal: bool) -> Result<RecordBatch, QueryError> {
    let schema = batch.schema();
    let needs = |t: &DataType| {
        t.is_nested()
            || (for_terminal
                && matches!(
                    t,
                    DataType::Utf8
                        | DataType::LargeUtf8
                        | DataType::Utf8View
                        | DataType::Dictionary(..)
                ))
    };
    if !schema.fields().iter().any(|f| needs(f.data_type())) {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default().with_null("");
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if needs(field.data_type()) {
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options).map_err(out_err)?;
            let mut b = StringBuilder::new();
            for i in 0..column.len() {
                if column.is_null(i) {
                    b.append_null()
                } else {
                    let text = formatter.value(i).to_string();
                    if for_terminal {
                        b.append_value(printable(&text))
                    } else {
                        b.append_value(text)
                    }
                }
            }
            fields.push(Field::new(field.name(), DataType::Utf8, true));
            columns.push(Arc::new(b.finish()));
        } else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(out_err)
}

/// True for characters a terminal or a reader must not receive raw from event data: C0 and C1
/// controls (escape sequences change titles, clear screens, move the cursor), DEL, and the
/// Unicode bidirectional overrides and isolates that reorder what a reader sees
/// (`\u{202e}` makes `exe.txt` read as `txt.exe`), plus line/paragraph separators.
fn must_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        | '\u{061c}' | '\u{2028}' | '\u{2029}')
}

/// `text` with every character of [`must_escape`] rendered visibly: `\e`, `\n`, `\t`, `\r`,
/// `\xNN` for the other C0/C1 controls and DEL, `\u{NNNN}` for the Unicode ones; a backslash
/// that precedes one is left as it is (the escapes are for reading, not for parsing back).
/// Every human-readable output (tables, timelines, reports) passes event data through this;
/// JSON and CSV keep it exact.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(must_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !must_escape(c) {
            out.push(c);
            continue;
        }
        match c {
            '\u{1b}' => out.push_str("\\e"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    #[test]
    fn control_sequences_are_shown_not_sent() {
        assert_eq!(printable("kubectl/v1.29"), "kubectl/v1.29");
        assert_eq!(
            printable("curl\u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "curl\\e]0;pwned\\x07\\e[2J"
        );
        assert_eq!(printable("a\nb\tc\u{9b}d"), "a\\nb\\tc\\x9bd");
        assert_eq!(
            printable("invoice\u{202e}fdp.exe"),
            "invoice\\u{202e}fdp.exe"
        );
        assert_eq!(printable("ünïcode ✓"), "ünïcode ✓");
    }

    #[test]
    fn tables_escape_and_json_and_csv_stay_exact() {
        let agent = "evil\u{1b}[2J\u{1b}]0;owned\u{7}";
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "user_agent",
                DataType::Utf8,
                true,
            )])),
            vec![Arc::new(StringArray::from(vec![Some(agent)]))],
        )
        .unwrap();
        let render = |f| {
            let mut out = Vec::new();
            write_batches(std::slice::from_ref(&batch), f, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let table = render(OutputFormat::Table);
        assert!(
            !table.contains('\u{1b}') && !table.contains('\u{7}'),
            "{table:?}"
        );
        assert!(table.contains("evil\\e[2J\\e]0;owned\\x07"), "{table}");
        let json = render(OutputFormat::Json);
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["user_agent"], agent);
        assert!(render(OutputFormat::Csv).contains(agent));
    }
}
