//! Compliance reports over the lake. A report is data, not code: `reports/<id>.toml` holds its
//! CIS Kubernetes Benchmark mapping, how to read it, *facts* (one-value queries shown first),
//! *sections* (queries shown as tables, optionally charted) and a Jinja `summary` template over
//! those results. This crate loads definitions, runs them on a session scoped to the report's
//! window ([`auditlake_query::Scope`]) and renders Markdown, self-contained HTML with inline SVG
//! charts, JSON or CSV.

mod rbac;
mod render;
pub mod schedule;
mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use auditlake_ingest::lake::DurableWrite;
use auditlake_query::{QueryError, classify};
use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use minijinja::value::Serde;
use serde::{Deserialize, Serialize};

pub use rbac::{AccessRow, least_privilege_yaml};
pub use render::{ReportFormat, render};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A report definition is wrong: the author's fault, with file and line.
    #[error("{file}:{line}: {message}")]
    Definition {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no report named {name:?} in {place} (have: {have})")]
    UnknownReport {
        name: String,
        /// Where the definitions came from (a directory, the built-in pack, or both).
        place: String,
        have: String,
    },
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A query of the report failed: the definition's SQL or the lake.
    #[error("report {report}, {part}")]
    Query {
        report: String,
        part: String,
        source: QueryError,
    },
    #[error("report {report}: template: {message}")]
    Template { report: String, message: String },
    #[error("report {report} has no section {section:?} (have: {have})")]
    UnknownSection {
        report: String,
        section: String,
        have: String,
    },
    /// Rendering the built-in templates or converting results failed: a bug of ours.
    #[error("rendering: {0}")]
    Render(String),
}

impl ReportError {
    /// Whose fault it is: a definition or template is its author's, a query's is the query
    /// error's, reading and rendering fail in the environment.
    pub fn fault(&self) -> auditlake_ingest::Fault {
        use auditlake_ingest::Fault;
        match self {
            ReportError::Definition { .. }
            | ReportError::UnknownReport { .. }
            | ReportError::Template { .. }
            | ReportError::UnknownSection { .. } => Fault::Caller,
            ReportError::Query { source, .. } => source.fault(),
            ReportError::Io { .. } => Fault::Environment,
            ReportError::Render(_) => Fault::Internal,
        }
    }
}

/// A CIS Kubernetes Benchmark control the report gives evidence for.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CisControl {
    pub id: String,
    pub title: String,
}

/// A query whose first row's first column is shown as a headline number.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FactDef {
    pub name: String,
    pub label: String,
    pub sql: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ChartKind {
    /// Horizontal bars: `label` column against `value` column (top actors).
    Bar,
    /// Columns over time: `label` is the time bucket, `value` the count, `series` stacks.
    Timeseries,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChartDef {
    #[serde(rename = "type")]
    pub kind: ChartKind,
    pub label: String,
    pub value: String,
    #[serde(default)]
    pub series: Option<String>,
}

/// How a section's rows are shown besides the table.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SectionKind {
    #[default]
    Table,
    /// Rows (identity, namespace, api_group, resource, verb, non_resource_url) become a minimal
    /// Role/ClusterRole + binding per identity (what audit2rbac does from one log file).
    LeastPrivilege,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SectionDef {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub sql: String,
    #[serde(default)]
    pub chart: Option<ChartDef>,
    #[serde(default)]
    pub kind: SectionKind,
    /// Rows shown in Markdown/HTML (JSON and CSV carry all of them).
    #[serde(default = "default_show_rows")]
    pub show_rows: usize,
}

fn default_show_rows() -> usize {
    50
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportDef {
    pub id: String,
    pub title: String,
    /// What the report is evidence for, in a sentence or two.
    pub description: String,
    /// How an auditor reads it: what is normal, what deserves a question.
    pub how_to_read: String,
    #[serde(default)]
    pub cis: Vec<CisControl>,
    /// When the report maps to no CIS control, why it exists anyway.
    #[serde(default)]
    pub not_cis: Option<String>,
    /// Jinja template over `facts.<name>` and `sections.<id>.rows` / `.count`: the first
    /// paragraph a reader sees.
    pub summary: String,
    /// Values the SQL may use as `{{ params.<name> }}` (strings, numbers or lists of strings;
    /// a list renders as a SQL array with the `sql_list` filter, as an `IN (…)` list with `sql_in`).
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub facts: Vec<FactDef>,
    #[serde(default)]
    pub sections: Vec<SectionDef>,
    /// The file it was loaded from (set by the loader).
    #[serde(skip)]
    pub file: PathBuf,
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `needle` first appears (for errors found after parsing), else 1.
fn line_of_text(text: &str, needle: &str) -> usize {
    text.find(needle).map_or(1, |o| line_of(text, o))
}

/// Parses and checks one definition (ids unique, charts name real columns is checked at run).
pub fn parse_report(file: &Path, text: &str) -> Result<ReportDef, ReportError> {
    let def_err = |line: usize, message: String| ReportError::Definition {
        file: file.to_path_buf(),
        line,
        message,
    };
    let mut def: ReportDef = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        def_err(line, e.message().to_owned())
    })?;
    def.file = file.to_path_buf();
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if def.id != stem {
        return Err(def_err(
            line_of_text(text, "id ="),
            format!("id {:?} must match the file name {stem:?}", def.id),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for f in &def.facts {
        if !seen.insert(f.name.clone()) {
            return Err(def_err(
                line_of_text(text, &format!("name = \"{}\"", f.name)),
                format!("fact {:?} defined twice", f.name),
            ));
        }
    }
    seen.clear();
    for s in &def.sections {
        if !seen.insert(s.id.clone()) {
            return Err(def_err(
                line_of_text(text, &format!("id = \"{}\"", s.id)),
                format!("section {:?} defined twice", s.id),
            ));
        }
    }
    // Compile the templates now so a typo is reported with the file, not at 3 a.m. in serve.
    let env = template_env();
    if let Err(e) = env.template_from_str(&def.summary) {
        return Err(def_err(
            line_of_text(text, "summary ="),
            format!("summary template: {e}"),
        ));
    }
    for (what, sql) in def
        .facts
        .iter()
        .map(|f| (f.name.as_str(), f.sql.as_str()))
        .chain(def.sections.iter().map(|s| (s.id.as_str(), s.sql.as_str())))
    {
        if let Err(e) = env.template_from_str(sql) {
            return Err(def_err(
                line_of_text(text, sql.lines().next().unwrap_or(sql)),
                format!("{what}: SQL template: {e}"),
            ));
        }
    }
    Ok(def)
}

/// Every `*.toml` under `dir`, sorted by id.
pub fn load_reports(dir: &Path) -> Result<Vec<ReportDef>, ReportError> {
    let io = |e| ReportError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| ReportError::Io {
                path: f.clone(),
                source: e,
            })?;
            parse_report(f, &text)
        })
        .collect()
}

/// Definitions given as `(file, text)` (the pack compiled into the binary), sorted by id.
pub fn parse_reports<'a>(
    files: impl IntoIterator<Item = (PathBuf, &'a str)>,
) -> Result<Vec<ReportDef>, ReportError> {
    let mut defs = files
        .into_iter()
        .filter(|(f, _)| f.extension().is_some_and(|x| x == "toml"))
        .map(|(f, text)| parse_report(&f, text))
        .collect::<Result<Vec<_>, _>>()?;
    defs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(defs)
}

/// Layers of definitions in turn (the built-in pack, then a directory): a later definition
/// replaces an earlier one with the same id. Sorted by id.
pub fn merge_reports(layers: impl IntoIterator<Item = Vec<ReportDef>>) -> Vec<ReportDef> {
    let mut by_id = BTreeMap::new();
    for def in layers.into_iter().flatten() {
        by_id.insert(def.id.clone(), def);
    }
    by_id.into_values().collect()
}

/// The report called `name` among `all` (loaded from `place`, named in the error).
pub fn find_report(all: Vec<ReportDef>, name: &str, place: &str) -> Result<ReportDef, ReportError> {
    let have = all
        .iter()
        .map(|r| r.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    all.into_iter()
        .find(|r| r.id == name)
        .ok_or_else(|| ReportError::UnknownReport {
            name: name.to_owned(),
            place: place.to_owned(),
            have,
        })
}

/// The report called `name` in `dir`.
pub fn load_report(dir: &Path, name: &str) -> Result<ReportDef, ReportError> {
    find_report(load_reports(dir)?, name, &dir.display().to_string())
}

fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // `{{ params.cidrs | sql_list }}` → `['10.0.0.0/8', '172.16.0.0/12']`.
    // and `resource IN {{ params.kinds | sql_in }}` → `resource IN ('pods', 'jobs')`.
    fn quoted(v: &minijinja::Value) -> Result<String, minijinja::Error> {
        let items: Vec<String> = v
            .try_iter()?
            .map(|i| auditlake_query::sqltext::quote_str(&i.to_string()))
            .collect();
        Ok(items.join(", "))
    }
    env.add_filter("sql_list", |v: minijinja::Value| {
        quoted(&v).map(|s| format!("[{s}]"))
    });
    env.add_filter("sql_in", |v: minijinja::Value| {
        quoted(&v).map(|s| format!("({s})"))
    });
    env.add_filter("sql_str", |v: String| {
        auditlake_query::sqltext::quote_str(&v)
    });
    env
}

/// Timestamps serialize as RFC 3339 text (chrono's serde feature would rebuild the whole
/// DataFusion stack with another feature set).
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn option<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => serialize(t, s),
            None => s.serialize_none(),
        }
    }
}

/// What the report covered.
#[derive(Debug, Clone, Serialize)]
pub struct ReportWindow {
    #[serde(serialize_with = "rfc3339::option")]
    pub since: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339::option")]
    pub until: Option<DateTime<Utc>>,
    pub clusters: Vec<String>,
}

impl From<&auditlake_query::Scope> for ReportWindow {
    fn from(scope: &auditlake_query::Scope) -> Self {
        ReportWindow {
            since: scope.since,
            until: scope.until,
            clusters: scope.clusters.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FactResult {
    pub name: String,
    pub label: String,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct SectionResult {
    pub id: String,
    pub title: String,
    pub description: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartDef>,
    /// For least-privilege sections: one YAML document set per identity.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<IdentityManifest>,
    #[serde(skip)]
    pub show_rows: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdentityManifest {
    pub identity: String,
    pub yaml: String,
}

/// A report that ran: what the renderers need.
#[derive(Debug, Clone, Serialize)]
pub struct ReportResult {
    pub id: String,
    pub title: String,
    pub description: String,
    pub how_to_read: String,
    pub cis: Vec<CisControl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_cis: Option<String>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub generated_at: DateTime<Utc>,
    pub window: ReportWindow,
    pub summary: String,
    pub facts: Vec<FactResult>,
    pub sections: Vec<SectionResult>,
}

/// Batches → rows of JSON values in column order (timestamps as RFC 3339 text).
pub fn batches_to_rows(
    batches: &[RecordBatch],
) -> Result<(Vec<String>, Vec<Vec<serde_json::Value>>), String> {
    let Some(first) = batches.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let columns: Vec<String> = first
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, datafusion::arrow::json::writer::JsonArray>(&mut buf);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        w.write_batches(&refs).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
    }
    if buf.is_empty() {
        return Ok((columns, Vec::new()));
    }
    let objects: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&buf).map_err(|e| e.to_string())?;
    let rows = objects
        .into_iter()
        .map(|mut o| {
            columns
                .iter()
                .map(|c| o.remove(c).unwrap_or(serde_json::Value::Null))
                .collect()
        })
        .collect();
    Ok((columns, rows))
}

/// A section's chart names columns of its result.
fn check_chart(def: &ReportDef, s: &SectionDef, columns: &[String]) -> Result<(), ReportError> {
    if let Some(chart) = &s.chart {
        for c in [
            Some(&chart.label),
            Some(&chart.value),
            chart.series.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if !columns.contains(c) {
                return Err(ReportError::Definition {
                    file: def.file.clone(),
                    line: 1,
                    message: format!("section {}: chart column {c:?} is not in its result", s.id),
                });
            }
        }
    }
    Ok(())
}

/// The least-privilege manifests of a `least_privilege` section (none for a table).
fn section_manifests(
    def: &ReportDef,
    s: &SectionDef,
    columns: &[String],
    rows: &[Vec<serde_json::Value>],
) -> Result<Vec<IdentityManifest>, ReportError> {
    Ok(match s.kind {
        SectionKind::Table => Vec::new(),
        SectionKind::LeastPrivilege => {
            let access =
                rbac::access_rows(columns, rows).map_err(|message| ReportError::Definition {
                    file: def.file.clone(),
                    line: 1,
                    message: format!("section {}: {message}", s.id),
                })?;
            least_privilege_yaml(&access)
                .into_iter()
                .map(|(identity, yaml)| IdentityManifest { identity, yaml })
                .collect()
        }
    })
}

/// The sections as the summary template sees them, by id: `count` and `rows` (objects).
fn section_values(sections: &[SectionResult]) -> BTreeMap<&str, serde_json::Value> {
    sections
        .iter()
        .map(|s| {
            let rows: Vec<serde_json::Map<String, serde_json::Value>> = s
                .rows
                .iter()
                .map(|r| s.columns.iter().cloned().zip(r.iter().cloned()).collect())
                .collect();
            (
                s.id.as_str(),
                serde_json::json!({ "count": s.rows.len(), "rows": rows }),
            )
        })
        .collect()
}

/// Runs `def` on `ctx` (a session already scoped to `window`).
pub async fn run_report(
    ctx: &SessionContext,
    def: &ReportDef,
    window: ReportWindow,
) -> Result<ReportResult, ReportError> {
    let env = template_env();
    let params: BTreeMap<String, minijinja::Value> = def
        .params
        .iter()
        .map(|(k, v)| (k.clone(), minijinja::Value::from(Serde(v))))
        .collect();
    let sql_context = minijinja::context! { params => params.clone(), window => Serde(&window) };
    let tmpl_err = |message: String| ReportError::Template {
        report: def.id.clone(),
        message,
    };
    let render_sql = |part: &str, sql: &str| -> Result<String, ReportError> {
        env.render_str(sql, &sql_context)
            .map_err(|e| tmpl_err(format!("{part}: {e}")))
    };
    // Columns come from the plan: an empty result still has them (for CSV headers, charts).
    let query = async |part: &str,
                       sql: &str|
           -> Result<(Vec<String>, Vec<Vec<serde_json::Value>>), ReportError> {
        let sql = render_sql(part, sql)?;
        let q_err = |source| ReportError::Query {
            report: def.id.clone(),
            part: part.to_owned(),
            source,
        };
        let df = ctx
            .sql_with_options(&sql, auditlake_query::read_only())
            .await
            .map_err(|e| q_err(classify(e)))?;
        let columns: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let batches = df.collect().await.map_err(|e| q_err(classify(e)))?;
        let (_, rows) = batches_to_rows(&batches).map_err(ReportError::Render)?;
        Ok((columns, rows))
    };

    let mut facts = Vec::with_capacity(def.facts.len());
    for f in &def.facts {
        let (_, rows) = query(&format!("fact {}", f.name), &f.sql).await?;
        let value = rows
            .first()
            .and_then(|r| r.first())
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        facts.push(FactResult {
            name: f.name.clone(),
            label: f.label.clone(),
            value,
        });
    }
    let mut sections = Vec::with_capacity(def.sections.len());
    for s in &def.sections {
        let (columns, rows) = query(&format!("section {}", s.id), &s.sql).await?;
        check_chart(def, s, &columns)?;
        let manifests = section_manifests(def, s, &columns, &rows)?;
        sections.push(SectionResult {
            id: s.id.clone(),
            title: s.title.clone(),
            description: s.description.clone(),
            columns,
            rows,
            chart: s.chart.clone(),
            manifests,
            show_rows: s.show_rows,
        });
    }

    // The summary sees facts by name and sections by id.
    let fact_values: BTreeMap<&str, &serde_json::Value> =
        facts.iter().map(|f| (f.name.as_str(), &f.value)).collect();
    let section_values = section_values(&sections);
    let summary = env
        .render_str(
            &def.summary,
            minijinja::context! { facts => Serde(fact_values), sections => Serde(section_values), window => Serde(&window), params => params },
        )
        .map_err(|e| tmpl_err(format!("summary: {e}")))?;

    Ok(ReportResult {
        id: def.id.clone(),
        title: def.title.clone(),
        description: def.description.clone(),
        how_to_read: def.how_to_read.clone(),
        cis: def.cis.clone(),
        not_cis: def.not_cis.clone(),
        generated_at: Utc::now(),
        window,
        // Templates break lines for readability; the summary is one paragraph.
        summary: summary.split_whitespace().collect::<Vec<_>>().join(" "),
        facts,
        sections,
    })
}

/// Writes a rendered report (or serve's report state) to `path` so that a reader sees the old
/// file or the whole new one ([`DurableWrite`]). Owner-only (0600), as these files have always
/// been: a report names who read which secret.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), auditlake_ingest::IngestError> {
    DurableWrite::new(path).mode(0o600).bytes(text.as_bytes())
}

/// Plans every query of `def` (after templating) without running it: `auditlake report --check`
/// and the pack's own test.
pub async fn check_report(ctx: &SessionContext, def: &ReportDef) -> Result<(), ReportError> {
    let window = ReportWindow::from(&auditlake_query::Scope::default());
    run_report(ctx, def, window).await.map(|_| ())
}

#[cfg(test)]
mod tests;
