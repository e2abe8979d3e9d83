//! Renders a [`ReportResult`]: Markdown and HTML through the Jinja templates in `templates/`
//! (HTML auto-escaped, charts inline SVG), JSON as the whole result, CSV as one block per
//! section (or one clean table with `section`).

use std::str::FromStr;

use minijinja::Value as J;
use minijinja::value::Serde;
use serde::Serialize;

use crate::svg::{cell_text, chart, display_text, escape};
use crate::{ReportError, ReportResult, SectionResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportFormat {
    #[default]
    Markdown,
    Html,
    Json,
    Csv,
}

impl ReportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Markdown => "md",
            ReportFormat::Html => "html",
            ReportFormat::Json => "json",
            ReportFormat::Csv => "csv",
        }
    }
}

impl FromStr for ReportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "md" | "markdown" => Ok(ReportFormat::Markdown),
            "html" => Ok(ReportFormat::Html),
            "json" => Ok(ReportFormat::Json),
            "csv" => Ok(ReportFormat::Csv),
            other => Err(format!(
                "unknown report format {other:?} (expected md, html, json or csv)"
            )),
        }
    }
}

const MD_TEMPLATE: &str = include_str!("../templates/report.md.j2");
const HTML_TEMPLATE: &str = include_str!("../templates/report.html.j2");

fn render_err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Render(e.to_string())
}

#[derive(Serialize, Debug)]
struct ShownSection<'a> {
    id: &'a str,
    title: &'a str,
    description: &'a str,
    columns: &'a [String],
    rows: Vec<Vec<String>>,
    /// All rows, shown or not.
    total: usize,
    more: usize,
    manifests: &'a [crate::IdentityManifest],
    /// Inline SVG, marked safe so the HTML template does not escape it.
    chart: Option<J>,
}

fn md_cell(v: &serde_json::Value) -> String {
    display_text(v)
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// Escapes `text` for HTML and turns Markdown `code` spans into `<code>`: definitions are written
/// once, for both formats.
fn html_text(text: &str) -> J {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(&escape(part));
            out.push_str("</code>");
        } else {
            out.push_str(&escape(part));
        }
    }
    J::from_safe_string(out)
}

fn window_text(r: &ReportResult) -> String {
    let t = |x: Option<chrono::DateTime<chrono::Utc>>, open: &str| {
        x.map_or(open.to_owned(), |t| {
            t.format("%Y-%m-%d %H:%M UTC").to_string()
        })
    };
    format!(
        "{} → {}",
        t(r.window.since, "beginning of the lake"),
        t(r.window.until, "now")
    )
}

fn fact_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "—".to_owned(),
        other => cell_text(other),
    }
}

fn templated(r: &ReportResult, html: bool) -> Result<String, ReportError> {
    let sections: Vec<ShownSection> = r
        .sections
        .iter()
        .map(|s: &SectionResult| {
            let shown = s.rows.len().min(s.show_rows);
            ShownSection {
                id: &s.id,
                title: &s.title,
                description: &s.description,
                columns: &s.columns,
                rows: s.rows[..shown]
                    .iter()
                    .map(|row| {
                        row.iter()
                            .map(|v| if html { display_text(v) } else { md_cell(v) })
                            .collect()
                    })
                    .collect(),
                total: s.rows.len(),
                more: s.rows.len() - shown,
                manifests: &s.manifests,
                chart: if html {
                    chart(s).map(J::from_safe_string)
                } else {
                    None
                },
            }
        })
        .collect();
    // Facts are shown as text ("—" for no value); everything else as the result serializes.
    let mut report = serde_json::to_value(r).map_err(render_err)?;
    report["facts"] = r
        .facts
        .iter()
        .map(|f| serde_json::json!({"label": f.label, "text": fact_text(&f.value)}))
        .collect();
    let mut env = minijinja::Environment::new();
    env.add_filter("code", |s: String| html_text(&s));
    // HTML ignores the newlines block tags leave; Markdown's template places them by hand.
    if html {
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .build()
                .map_err(render_err)?,
        );
    }
    let (name, source) = if html {
        ("report.html", HTML_TEMPLATE)
    } else {
        ("report.md", MD_TEMPLATE)
    };
    env.add_template(name, source).map_err(render_err)?;
    let clusters = if r.window.clusters.is_empty() {
        "all".to_owned()
    } else {
        r.window.clusters.join(", ")
    };
    env.get_template(name)
        .map_err(render_err)?
        .render(minijinja::context! {
            r => Serde(&report),
            sections => Serde(&sections),
            window_text => window_text(r),
            clusters_text => clusters,
        })
        .map_err(render_err)
}

fn csv_line(cells: impl IntoIterator<Item = String>) -> String {
    let quoted: Vec<String> = cells
        .into_iter()
        .map(|c| {
            if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c
            }
        })
        .collect();
    quoted.join(",") + "\n"
}

fn csv_table(s: &SectionResult) -> String {
    let mut out = csv_line(s.columns.iter().cloned());
    for row in &s.rows {
        out.push_str(&csv_line(row.iter().map(cell_text)));
    }
    out
}

/// Renders `r`. `section` keeps only that section (a clean single table for CSV).
pub fn render(
    r: &ReportResult,
    format: ReportFormat,
    section: Option<&str>,
) -> Result<String, ReportError> {
    let filtered;
    let r = match section {
        None => r,
        Some(id) => {
            let Some(s) = r.sections.iter().find(|s| s.id == id) else {
                let have: Vec<&str> = r.sections.iter().map(|s| s.id.as_str()).collect();
                return Err(ReportError::UnknownSection {
                    report: r.id.clone(),
                    section: id.to_owned(),
                    have: have.join(", "),
                });
            };
            if format == ReportFormat::Csv {
                return Ok(csv_table(s));
            }
            filtered = ReportResult {
                sections: vec![s.clone()],
                ..r.clone()
            };
            &filtered
        }
    };
    match format {
        ReportFormat::Markdown => templated(r, false),
        ReportFormat::Html => templated(r, true),
        ReportFormat::Json => serde_json::to_string_pretty(r)
            .map(|s| s + "\n")
            .map_err(render_err),
        ReportFormat::Csv => {
            // Several tables in one file, each after a one-cell title row: what spreadsheet
            // users expect of a report export. `--section` gives one clean table.
            let mut out = csv_line([format!("Report: {}", r.title)]);
            out.push_str(&csv_line(["fact".to_owned(), "value".to_owned()]));
            for f in &r.facts {
                out.push_str(&csv_line([f.label.clone(), fact_text(&f.value)]));
            }
            for s in &r.sections {
                out.push('\n');
                out.push_str(&csv_line([format!("Section: {} ({})", s.title, s.id)]));
                out.push_str(&csv_table(s));
            }
            Ok(out)
        }
    }
}
