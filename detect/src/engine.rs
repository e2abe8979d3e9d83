//! Runs a rule over a time window and turns its hits (evidence events) into findings.
//!
//! The window is bound here, not in the rule: before a rule runs, `audit_events` is replaced by a
//! view of the lake restricted to `[since − lookback, until)` (plus the `date` partitions that
//! cover it, so files outside are never opened) and `audit_events_baseline` by the `baseline`
//! before `since`. The rule's SELECT becomes the `rule_hits` view; one GROUP BY over it makes
//! the findings: `cluster` + `group_by` + `dedup_window` bucket, `threshold` distinct events.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use auditlake_query::sqltext::{event_window_conditions, quote_ident, where_clause};
use auditlake_query::{AUDIT_EVENTS_TABLE, QueryError, classify};
use chrono::{DateTime, TimeDelta, Utc};
use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use xxhash_rust::xxh3::xxh3_128;

use crate::error::DetectError;
use crate::finding::Finding;
use crate::params::{ParamValue, Params, render_sql};
use crate::rule::{Rule, Severity};

/// The lake table under its own name; `audit_events` becomes the windowed view.
pub const LAKE_TABLE: &str = "audit_events_lake";
pub const BASELINE_TABLE: &str = "audit_events_baseline";
/// Events of one streaming batch.
const STREAM_TABLE: &str = "audit_events_stream";
const HITS_TABLE: &str = "rule_hits";
/// Evidence ids kept per finding; `event_count` still counts them all.
pub const MAX_EVIDENCE: usize = 100;

/// Which events a run looks at. `None` bounds are open.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only these clusters (all when empty).
    pub clusters: Vec<String>,
}

/// Runs rules on one session. Rules run one at a time: each rebinds the window views.
pub struct Detector {
    ctx: SessionContext,
    /// The first and last event of each cluster in the lake (for warm-up), and when read.
    spans: tokio::sync::Mutex<Option<(std::time::Instant, Arc<ClusterSpans>)>>,
}

/// Cluster → (first, last) event time in the lake.
pub type ClusterSpans = BTreeMap<String, (DateTime<Utc>, DateTime<Utc>)>;

/// How long the cluster spans are reused: a long-lived session (serve) sees new clusters after
/// this. A cluster missing from the spans is treated as warming up, which it is: its first event
/// is younger than the spans, so younger than any warm-up longer than this.
const SPANS_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// The parameter that says how much history a first-seen rule needs before it may fire.
pub const WARMUP_PARAM: &str = "baseline_days";

/// How long after a cluster's first event a first-seen rule stays silent: `baseline_days` when
/// the rule declares it, else its `baseline`. Rules without a baseline need no warm-up.
pub fn warmup(rule: &Rule, params: &Params) -> Option<TimeDelta> {
    let baseline = rule.baseline?;
    Some(match params.get(WARMUP_PARAM) {
        Some(ParamValue::Int(d)) => TimeDelta::try_days(*d)
            .unwrap_or(baseline)
            .max(TimeDelta::zero()),
        Some(ParamValue::Float(d)) => TimeDelta::try_seconds((*d * 86_400.0) as i64)
            .unwrap_or(baseline)
            .max(TimeDelta::zero()),
        _ => baseline,
    })
}

fn q(rule: &Rule) -> impl Fn(datafusion::error::DataFusionError) -> DetectError + '_ {
    move |e| DetectError::Query {
        rule: rule.id.clone(),
        source: classify(e),
    }
}

/// `SELECT * FROM audit_events_lake WHERE …` for `[start, end)` of `clusters`.
fn window_sql(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    clusters: &[String],
) -> String {
    let conds = event_window_conditions(start, end, clusters);
    format!("SELECT * FROM {LAKE_TABLE}{}", where_clause(&conds))
}

impl Detector {
    /// Wraps a session from `auditlake_query::open_lake`.
    pub async fn new(ctx: SessionContext) -> Result<Detector, QueryError> {
        let lake: Arc<dyn TableProvider> = ctx
            .table_provider(AUDIT_EVENTS_TABLE)
            .await
            .map_err(QueryError::Execution)?;
        ctx.register_table(LAKE_TABLE, lake)
            .map_err(QueryError::Execution)?;
        Ok(Detector {
            ctx,
            spans: tokio::sync::Mutex::new(None),
        })
    }

    /// The first and last event time of each cluster in the lake (cached for `SPANS_TTL`).
    pub async fn cluster_spans(&self) -> Result<Arc<ClusterSpans>, QueryError> {
        let mut cached = self.spans.lock().await;
        if let Some((at, spans)) = cached.as_ref()
            && at.elapsed() < SPANS_TTL
        {
            return Ok(spans.clone());
        }
        let batches = self
            .ctx
            .sql(&format!(
                "SELECT CAST(cluster AS VARCHAR) AS cluster, min(stage_at) AS first, max(stage_at) AS last \
                 FROM {LAKE_TABLE} GROUP BY cluster"
            ))
            .await
            .map_err(classify)?
            .collect()
            .await
            .map_err(classify)?;
        let mut out = ClusterSpans::new();
        for b in &batches {
            let c = cast(b.column(0), &DataType::Utf8).map_err(|e| classify(e.into()))?;
            let time = |i: usize| {
                cast(
                    b.column(i),
                    &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                )
                .map_err(|e| classify(e.into()))
            };
            let (first, last) = (time(1)?, time(2)?);
            let c = c.as_string::<i32>();
            let first = first.as_primitive::<TimestampMicrosecondType>();
            let last = last.as_primitive::<TimestampMicrosecondType>();
            for i in 0..b.num_rows() {
                if c.is_null(i) || first.is_null(i) || last.is_null(i) {
                    continue;
                }
                if let (Some(f), Some(l)) = (
                    DateTime::from_timestamp_micros(first.value(i)),
                    DateTime::from_timestamp_micros(last.value(i)),
                ) {
                    out.insert(c.value(i).to_owned(), (f, l));
                }
            }
        }
        let out = Arc::new(out);
        *cached = Some((std::time::Instant::now(), out.clone()));
        Ok(out)
    }

    /// Until when `rule` is warming up in each cluster (first event + warm-up).
    pub async fn warm_until(
        &self,
        rule: &Rule,
        params: &Params,
    ) -> Result<BTreeMap<String, DateTime<Utc>>, QueryError> {
        let Some(w) = warmup(rule, params) else {
            return Ok(BTreeMap::new());
        };
        Ok(self
            .cluster_spans()
            .await?
            .iter()
            .map(|(c, (first, _))| (c.clone(), *first + w))
            .collect())
    }

    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    async fn bind_view(&self, name: &str, sql: &str, rule: &Rule) -> Result<(), DetectError> {
        let view = self.ctx.sql(sql).await.map_err(q(rule))?.into_view();
        self.ctx.deregister_table(name).map_err(q(rule))?;
        self.ctx.register_table(name, view).map_err(q(rule))?;
        Ok(())
    }

    async fn bind_window(&self, rule: &Rule, window: &Window) -> Result<(), DetectError> {
        let start = window.since.map(|s| s - rule.lookback);
        self.bind_view(
            AUDIT_EVENTS_TABLE,
            &window_sql(start, window.until, &window.clusters),
            rule,
        )
        .await?;
        let baseline = match (window.since, rule.baseline) {
            (Some(since), Some(b)) => window_sql(Some(since - b), Some(since), &window.clusters),
            // No window start means "everything": nothing lies before it.
            _ => format!("SELECT * FROM {LAKE_TABLE} WHERE false"),
        };
        self.bind_view(BASELINE_TABLE, &baseline, rule).await
    }

    /// Plans the rule with `params` against the real schema (nothing runs) and checks its output
    /// has the columns the engine and `group_by`/`summary` need.
    pub async fn check(&self, rule: &Rule, params: &Params) -> Result<(), DetectError> {
        self.bind_window(rule, &Window::default()).await?;
        self.plan_hits(rule, params).await.map(|_| ())
    }

    async fn plan_hits(
        &self,
        rule: &Rule,
        params: &Params,
    ) -> Result<Vec<(String, DataType)>, DetectError> {
        let sql = render_sql(&rule.sql, params, &rule.sql_path)?;
        let df = self
            .ctx
            // A rule is a query: DDL or DML in one is an error naming the rule, not an effect.
            .sql_with_options(
                sql.trim().trim_end_matches(';'),
                auditlake_query::read_only(),
            )
            .await
            .map_err(|e| {
                let e = classify(e);
                DetectError::rule(
                    &rule.sql_path,
                    sql_error_line(&e.to_string()),
                    e.to_string(),
                )
            })?;
        let columns: Vec<(String, DataType)> = df
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let has = |c: &str| columns.iter().any(|(n, _)| n == c);
        for required in ["audit_id", "stage_at", "cluster"] {
            if !has(required) {
                return Err(DetectError::rule(
                    &rule.sql_path,
                    1,
                    format!("the query must output column `{required}`"),
                ));
            }
        }
        for g in &rule.group_by {
            if !has(g) {
                return Err(DetectError::rule(
                    rule.dir.join("rule.toml"),
                    1,
                    format!("group_by column `{g}` is not in the query's output"),
                ));
            }
        }
        for name in summary_fields(&rule.summary) {
            if !has(name) {
                return Err(DetectError::rule(
                    rule.dir.join("rule.toml"),
                    1,
                    format!("summary uses `{{{name}}}`, which is not in the query's output"),
                ));
            }
        }
        self.ctx.deregister_table(HITS_TABLE).map_err(q(rule))?;
        self.ctx
            .register_table(HITS_TABLE, df.into_view())
            .map_err(q(rule))?;
        Ok(columns)
    }

    /// Streaming: runs `rule` over just `events` (rows of the `audit_events` table schema, e.g.
    /// a batch that has just been made durable) instead of the lake.
    pub async fn run_on_events(
        &self,
        rule: &Rule,
        params: &Params,
        events: Vec<RecordBatch>,
    ) -> Result<Vec<Finding>, DetectError> {
        let schema = auditlake_schemas::audit_events_table_schema();
        let table =
            datafusion::datasource::MemTable::try_new(schema, vec![events]).map_err(q(rule))?;
        self.ctx.deregister_table(STREAM_TABLE).map_err(q(rule))?;
        self.ctx
            .register_table(STREAM_TABLE, Arc::new(table))
            .map_err(q(rule))?;
        self.bind_view(
            AUDIT_EVENTS_TABLE,
            &format!("SELECT * FROM {STREAM_TABLE}"),
            rule,
        )
        .await?;
        self.bind_view(
            BASELINE_TABLE,
            &format!("SELECT * FROM {LAKE_TABLE} WHERE false"),
            rule,
        )
        .await?;
        self.collect_findings(rule, params, None).await
    }

    /// Runs `rule` over `window` and returns its findings, oldest first. Findings that ended
    /// before `window.since` (seen only through `lookback`) are left out: the run before
    /// reported them.
    pub async fn run(
        &self,
        rule: &Rule,
        params: &Params,
        window: &Window,
    ) -> Result<Vec<Finding>, DetectError> {
        self.bind_window(rule, window).await?;
        // A first-seen rule is silent until its baseline covers the warm-up: before that, every
        // identity is "new" (an empty baseline is not evidence).
        let warm = if warmup(rule, params).is_some() {
            Some(
                self.warm_until(rule, params)
                    .await
                    .map_err(|source| DetectError::Query {
                        rule: rule.id.clone(),
                        source,
                    })?,
            )
        } else {
            None
        };
        let mut findings = self.collect_findings(rule, params, warm.as_ref()).await?;
        if let Some(since) = window.since {
            findings.retain(|f| f.last_event_at >= since);
        }
        Ok(findings)
    }

    /// Plans the rule over the bound `audit_events` and groups its hits into findings.
    async fn collect_findings(
        &self,
        rule: &Rule,
        params: &Params,
        warm_until: Option<&BTreeMap<String, DateTime<Utc>>>,
    ) -> Result<Vec<Finding>, DetectError> {
        let columns = self.plan_hits(rule, params).await?;
        let sql = grouping_sql(rule, &columns, warm_until);
        let batches = self
            .ctx
            .sql(&sql)
            .await
            .map_err(q(rule))?
            .collect()
            .await
            .map_err(q(rule))?;
        let detected_at = Utc::now();
        let mut findings = Vec::new();
        for batch in &batches {
            findings.extend(to_findings(rule, batch, detected_at).map_err(q(rule))?);
        }
        findings.sort_by(|a, b| {
            (a.first_event_at, &a.dedup_key).cmp(&(b.first_event_at, &b.dedup_key))
        });
        Ok(findings)
    }
}

/// DataFusion puts `Line: N, Column: M` in parser errors; other errors have no position.
fn sql_error_line(msg: &str) -> usize {
    msg.split("Line: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

fn summary_fields(summary: &str) -> impl Iterator<Item = &str> {
    summary
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name.trim()))
}

/// Columns carried into the finding as the first evidence event's value.
fn carried(columns: &[(String, DataType)], rule: &Rule) -> Vec<String> {
    columns
        .iter()
        .filter(|(n, t)| {
            !matches!(n.as_str(), "audit_id" | "stage_at" | "cluster")
                && !rule.group_by.contains(n)
                && matches!(
                    t,
                    DataType::Utf8
                        | DataType::Utf8View
                        | DataType::LargeUtf8
                        | DataType::Int32
                        | DataType::Int64
                        | DataType::UInt64
                        | DataType::Boolean
                        | DataType::Float64
                )
        })
        .map(|(n, _)| n.clone())
        .collect()
}

/// Hits of each cluster from its warm-up end on (clusters not listed have no events).
fn warm_condition(warm_until: &BTreeMap<String, DateTime<Utc>>) -> String {
    if warm_until.is_empty() {
        return "false".into();
    }
    warm_until
        .iter()
        .map(|(c, t)| {
            format!(
                "(cluster = '{}' AND stage_at >= TIMESTAMP '{}')",
                c.replace('\'', "''"),
                t.format("%Y-%m-%dT%H:%M:%S%.6fZ")
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn grouping_sql(
    rule: &Rule,
    columns: &[(String, DataType)],
    warm_until: Option<&BTreeMap<String, DateTime<Utc>>>,
) -> String {
    let secs = rule.dedup_window.num_seconds();
    let bucket =
        format!("date_bin(INTERVAL '{secs} seconds', stage_at, TIMESTAMP '1970-01-01T00:00:00Z')");
    let mut select = vec!["cluster".to_owned()];
    let mut group = vec!["cluster".to_owned()];
    for g in &rule.group_by {
        select.push(quote_ident(g));
        group.push(quote_ident(g));
    }
    select.push(format!("{bucket} AS bucket_start"));
    group.push(bucket);
    select.push("min(stage_at) AS first_event_at".into());
    select.push("max(stage_at) AS last_event_at".into());
    select.push("count(DISTINCT audit_id) AS event_count".into());
    select.push("array_agg(audit_id ORDER BY stage_at, audit_id) AS evidence".into());
    // A finding is as severe as its most severe hit.
    if columns.iter().any(|(n, _)| n == "severity")
        && !rule.group_by.iter().any(|g| g == "severity")
    {
        select.push(
            "CASE max(CASE severity WHEN 'info' THEN 0 WHEN 'low' THEN 1 WHEN 'medium' THEN 2 \
             WHEN 'high' THEN 3 WHEN 'critical' THEN 4 END) WHEN 0 THEN 'info' WHEN 1 THEN 'low' \
             WHEN 2 THEN 'medium' WHEN 3 THEN 'high' WHEN 4 THEN 'critical' END AS severity"
                .into(),
        );
    }
    for c in carried(columns, rule) {
        if c == "severity" {
            continue;
        }
        let c = quote_ident(&c);
        select.push(format!(
            "first_value({c} ORDER BY stage_at, audit_id) AS {c}"
        ));
    }
    let filter = match warm_until {
        Some(w) => format!(" WHERE {}", warm_condition(w)),
        None => String::new(),
    };
    format!(
        "SELECT {} FROM {HITS_TABLE}{filter} GROUP BY {} HAVING count(DISTINCT audit_id) >= {}",
        select.join(", "),
        group.join(", "),
        rule.threshold
    )
}

fn to_findings(
    rule: &Rule,
    batch: &RecordBatch,
    detected_at: DateTime<Utc>,
) -> datafusion::error::Result<Vec<Finding>> {
    let schema = batch.schema();
    // Every carried/grouped value as text (NULL → None), by column name.
    let mut text_cols = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if matches!(
            f.name().as_str(),
            "first_event_at" | "last_event_at" | "bucket_start" | "evidence" | "event_count"
        ) {
            continue;
        }
        let a = cast(batch.column(i), &DataType::Utf8)?;
        text_cols.push((f.name().clone(), a));
    }
    let ts = |name: &str| -> datafusion::error::Result<Arc<dyn Array>> {
        let a = batch.column(schema.index_of(name)?);
        Ok(cast(
            a,
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        )?)
    };
    let first = ts("first_event_at")?;
    let last = ts("last_event_at")?;
    let bucket = ts("bucket_start")?;
    let count = cast(
        batch.column(schema.index_of("event_count")?),
        &DataType::Int64,
    )?;
    let evidence = batch
        .column(schema.index_of("evidence")?)
        .as_list::<i32>()
        .clone();
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let value = |name: &str| -> Option<String> {
            text_cols
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, a)| {
                    (!a.is_null(row)).then(|| a.as_string::<i32>().value(row).to_owned())
                })
        };
        let micros = |a: &Arc<dyn Array>| {
            DateTime::from_timestamp_micros(a.as_primitive::<TimestampMicrosecondType>().value(row))
                .unwrap_or_default()
        };
        let mut ids = Vec::new();
        let mut seen = HashSet::new();
        let list = evidence.value(row);
        let list = cast(&list, &DataType::Utf8)?;
        for id in list.as_string::<i32>().iter().flatten() {
            if ids.len() < MAX_EVIDENCE && seen.insert(id.to_owned()) {
                ids.push(id.to_owned());
            }
        }
        let cluster = value("cluster").unwrap_or_default();
        let bucket_start = micros(&bucket);
        let mut key = format!("{}|{cluster}", rule.id);
        for g in &rule.group_by {
            key.push_str(&format!("|{g}={}", value(g).unwrap_or_default()));
        }
        key.push_str(&format!("|{}", bucket_start.format("%Y-%m-%dT%H:%M:%SZ")));
        // A rule may name its target itself (a `target` column) when the event's object is not
        // what it is about: an impersonation's target is the identity, not the request's object.
        let target = value("target").or_else(|| {
            let resource = match (value("resource"), value("subresource")) {
                (Some(r), Some(s)) => Some(format!("{r}/{s}")),
                (r, _) => r,
            };
            let object = match (value("namespace"), value("name")) {
                (Some(ns), Some(n)) => Some(format!("{ns}/{n}")),
                (Some(ns), None) => Some(format!("{ns}/*")),
                (None, n) => n,
            };
            match (resource, object) {
                (Some(r), Some(o)) => Some(format!("{r} {o}")),
                (r, o) => r.or(o),
            }
        });
        // Severity reflects scope: a `severity` column (info … critical) overrides the rule's,
        // e.g. a namespaced RoleBinding to cluster-admin is namespace admin, not cluster takeover.
        let severity = value("severity")
            .and_then(|s| parse_severity(&s))
            .unwrap_or(rule.severity);
        out.push(Finding {
            finding_id: format!("{:032x}", xxh3_128(key.as_bytes())),
            summary: fill_summary(&rule.summary, &value),
            rule_id: rule.id.clone(),
            rule_version: rule.version,
            severity: severity.as_str().to_owned(),
            title: rule.title.clone(),
            actor: value("user_name").or_else(|| value("source_ip")),
            source_ip: value("source_ip"),
            target,
            namespace: value("namespace"),
            cluster,
            first_event_at: micros(&first),
            last_event_at: micros(&last),
            event_count: i32::try_from(count.as_primitive::<Int64Type>().value(row))
                .unwrap_or(i32::MAX),
            evidence_audit_ids: ids,
            attack_ids: rule.attack.clone(),
            catalog_ids: rule.catalog.clone(),
            bucket_start,
            detected_at,
            dedup_key: key,
            revision: 1,
            origin: "detect".to_owned(),
            incident_id: None,
        });
    }
    Ok(out)
}

fn parse_severity(s: &str) -> Option<Severity> {
    Some(match s {
        "info" => Severity::Info,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => return None,
    })
}

fn fill_summary(template: &str, value: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open + 1..].find('}') {
            Some(close) => {
                let name = rest[open + 1..open + 1 + close].trim();
                out.push_str(&value(name).unwrap_or_else(|| "-".into()));
                rest = &rest[open + 1 + close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whole-window helper: `[until − span, until)`.
pub fn last(span: TimeDelta, until: DateTime<Utc>) -> Window {
    Window {
        since: Some(until - span),
        until: Some(until),
        clusters: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sql_prunes_dates_and_quotes_clusters() {
        let s = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
            .unwrap()
            .to_utc();
        let e = DateTime::parse_from_rfc3339("2026-11-21T02:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            window_sql(Some(s), Some(e), &["o'k".into()]),
            "SELECT * FROM audit_events_lake WHERE stage_at >= TIMESTAMP '2026-11-20T10:00:00.000000Z' \
             AND date >= '2026-11-20' AND stage_at < TIMESTAMP '2026-11-21T02:00:00.000000Z' \
             AND date <= '2026-11-21' AND cluster IN ('o''k')"
        );
    }

    #[test]
    fn warm_up_keeps_each_clusters_hits_from_its_own_warm_up_end() {
        let mut w = BTreeMap::new();
        w.insert(
            "o'k".to_owned(),
            DateTime::parse_from_rfc3339("2026-11-27T08:00:00Z")
                .unwrap()
                .to_utc(),
        );
        w.insert(
            "prod".to_owned(),
            DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
                .unwrap()
                .to_utc(),
        );
        assert_eq!(
            warm_condition(&w),
            "(cluster = 'o''k' AND stage_at >= TIMESTAMP '2026-11-27T08:00:00.000000Z') OR \
             (cluster = 'prod' AND stage_at >= TIMESTAMP '2026-12-01T00:00:00.000000Z')"
        );
        // No cluster known yet: everything is warming up.
        assert_eq!(warm_condition(&BTreeMap::new()), "false");
    }

    #[test]
    fn summary_fills_fields_and_marks_nulls() {
        let v = |n: &str| (n == "user_name").then(|| "mallory".to_owned());
        assert_eq!(
            fill_summary("{user_name} read {name}", &v),
            "mallory read -"
        );
        assert_eq!(
            summary_fields("{a} and { b }").collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert_eq!(
            sql_error_line(
                "sql parser error: Expected: end of statement, found: x at Line: 3, Column: 5"
            ),
            3
        );
    }
}
