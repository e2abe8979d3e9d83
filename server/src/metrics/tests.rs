//! Tests of the Prometheus metrics (moved out of `metrics.rs`).

use super::*;

/// The series names `serve` can export: every family touched once, so that each shows up
/// in the exposition (the encoder leaves out a family with no label set yet).
fn every_series() -> std::collections::HashSet<String> {
    let m = Metrics::new();
    m.requests.get_or_create(&CodeLabel { code: 200 }).inc();
    for f in [&m.events_received, &m.bytes_received, &m.events_quarantined] {
        f.get_or_create(&ClusterLabel {
            cluster: "c".into(),
        })
        .inc();
    }
    m.refused("overloaded");
    m.cluster_mismatch
        .get_or_create(&SourceLabel { source: "webhook" })
        .inc();
    let rule = RuleLabel { rule: "r".into() };
    m.rule_run_seconds.get_or_create(&rule).observe(0.1);
    m.rule_findings_new.get_or_create(&rule).inc();
    m.rule_findings_updated.get_or_create(&rule).inc();
    m.rule_errors.get_or_create(&rule).inc();
    m.rule_findings_suppressed.get_or_create(&rule).inc();
    m.rule_watermark_lag_seconds.get_or_create(&rule).set(1);
    let sink = SinkLabel { sink: "s".into() };
    m.sink_delivered.get_or_create(&sink).inc();
    m.sink_failures.get_or_create(&sink).inc();
    m.sink_outbox_depth.get_or_create(&sink).set(1);
    let topic = TopicLabel { topic: "t".into() };
    for f in [&m.kafka_messages, &m.kafka_events, &m.kafka_quarantined] {
        f.get_or_create(&topic).inc();
    }
    m.declare_object_sources(["s3://b/p/"]);
    m.kafka_consumer_lag
        .get_or_create(&PartitionLabel {
            topic: "t".into(),
            partition: 0,
        })
        .set(1);
    m.encode(0)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn declared_rules_and_sinks_are_exported_at_zero_before_anything_happens() {
    let m = Metrics::new();
    m.declare(["privileged-pod"], ["pager"]);
    let text = m.encode(0);
    for series in [
        r#"auditlake_rule_errors_total{rule="privileged-pod"} 0"#,
        r#"auditlake_rule_findings_new_total{rule="privileged-pod"} 0"#,
        r#"auditlake_sink_failures_total{sink="pager"} 0"#,
        r#"auditlake_sink_delivered_total{sink="pager"} 0"#,
    ] {
        assert!(text.contains(series), "{series} in:\n{text}");
    }
}

/// Every series the Grafana dashboard in deploy/ queries is one `serve` exports.
#[test]
fn the_grafana_dashboard_queries_only_exported_series() {
    let exported = every_series();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/grafana/auditlake-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("auditlake_") {
                    assert!(
                        exported.contains(word),
                        "dashboard queries {word}, which serve does not export"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 20, "{checked}");
}

/// Metric names a PromQL expression selects: identifiers that are not functions, aggregation
/// operators, keywords, label names (`{…}`, `by (…)`), strings, numbers or durations.
fn promql_series(expr: &str) -> std::collections::BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        "inf",
        "nan",
        "atan2",
    ];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let c: Vec<char> = expr.chars().collect();
    let mut names = std::collections::BTreeSet::new();
    let mut i = 0;
    // Index after the bracket closing the one at `i` (quotes inside are skipped).
    let close = |mut i: usize, open: char, shut: char| -> usize {
        let mut depth = 0;
        let mut quote = None;
        while i < c.len() {
            match (quote, c[i]) {
                (Some(_), '\\') => i += 1,
                (Some(q), ch) if ch == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'' | '`') => quote = Some(c[i]),
                (None, ch) if ch == open => depth += 1,
                (None, ch) if ch == shut => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        panic!("unbalanced {open} in {expr}")
    };
    while i < c.len() {
        match c[i] {
            '"' | '\'' | '`' => {
                let q = c[i];
                i += 1;
                while i < c.len() && c[i] != q {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' => i = close(i, '{', '}'),
            '[' => i = close(i, '[', ']'),
            '#' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            d if d.is_ascii_digit() || d == '.' => {
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                    i += 1;
                }
            }
            a if a.is_ascii_alphabetic() || a == '_' || a == ':' => {
                let start = i;
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let mut next = i;
                while next < c.len() && c[next].is_whitespace() {
                    next += 1;
                }
                let call = c.get(next) == Some(&'(');
                if call && LABEL_LISTS.contains(&word.to_lowercase().as_str()) {
                    i = close(next, '(', ')');
                } else if !call && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn promql_series_are_told_from_functions_labels_and_keywords() {
    let names = |e: &str| promql_series(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, pod) (rate(a_bucket{code=~"5..", x="}"}[5m] offset 1h)))
                   / on (pod) group_left(node) b > 0.8 and count without (x) (c) unless d_total > bool 1e3"#
        ),
        ["a_bucket", "b", "c", "d_total"]
    );
    assert_eq!(names("up{service=\"auditlake\"} == 0"), ["up"]);
    assert_eq!(names("max(x) by (rule) > 7200"), ["x"]);
}

/// Every alert of deploy/monitoring queries only series `serve` exports (`up` aside: Prometheus
/// records it for every target), and the alerts that matter are there.
#[test]
fn the_alerting_rules_query_only_exported_series() {
    use serde::Deserialize;
    let exported = every_series();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/monitoring/prometheusrule.yaml");
    let doc = yaml_serde::Value::deserialize(yaml_serde::Deserializer::from_str(
        &std::fs::read_to_string(path).unwrap(),
    ))
    .unwrap();
    assert_eq!(doc["kind"], "PrometheusRule");
    let mut used = std::collections::BTreeMap::<String, Vec<String>>::new();
    for group in doc["spec"]["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let alert = rule["alert"].as_str().expect("alerting rules only");
            let expr = rule["expr"].as_str().unwrap();
            let series = promql_series(expr);
            assert!(!series.is_empty(), "{alert}: no series in {expr}");
            for s in series {
                assert!(
                    exported.contains(&s) || s == "up",
                    "{alert} queries {s}, which serve does not export"
                );
                used.entry(s).or_default().push(alert.to_owned());
            }
            assert!(
                rule["labels"]["severity"].as_str().is_some()
                    && rule["annotations"]["summary"].as_str().is_some(),
                "{alert}: a severity label and a summary"
            );
        }
    }
    // Issue 19's list: WAL near its bound, 503 refusals, sink failing, rule errors, consumer
    // lag, lake writer unhealthy.
    for series in [
        "auditlake_wal_bytes",
        "auditlake_wal_max_bytes",
        "auditlake_webhook_requests_total",
        "auditlake_sink_failures_total",
        "auditlake_sink_outbox_depth",
        "auditlake_rule_errors_total",
        "auditlake_kafka_consumer_lag",
        "auditlake_pipeline_healthy",
    ] {
        assert!(used.contains_key(series), "no alert on {series}: {used:?}");
    }
}
