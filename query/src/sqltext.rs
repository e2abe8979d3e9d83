//! Building SQL text safely: literals and identifiers quoted, time windows as conditions that
//! also prune `date` partitions. Shared by the windowed views here, the detection engine and
//! the reports, so all of them bound time the same way.

use chrono::{DateTime, Utc};

/// A `TIMESTAMP '…Z'` literal that compares with the lake's µs UTC timestamps.
pub fn ts_literal(t: DateTime<Utc>) -> String {
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Conditions on `audit_events` for `[start, end)` of `clusters` (all when empty). Besides the
/// `stage_at` bounds they bound `date`, because DataFusion cannot derive partition bounds from
/// `stage_at` and would otherwise list every partition of the lake.
pub fn event_window_conditions(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    clusters: &[String],
) -> Vec<String> {
    let mut conds = Vec::new();
    if let Some(s) = start {
        conds.push(format!("stage_at >= {}", ts_literal(s)));
        conds.push(format!("date >= '{}'", s.format("%Y-%m-%d")));
    }
    if let Some(e) = end {
        conds.push(format!("stage_at < {}", ts_literal(e)));
        conds.push(format!("date <= '{}'", e.format("%Y-%m-%d")));
    }
    if !clusters.is_empty() {
        let list: Vec<String> = clusters.iter().map(|c| quote_str(c)).collect();
        conds.push(format!("cluster IN ({})", list.join(", ")));
    }
    conds
}

/// `WHERE a AND b` or nothing.
pub fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn window_bounds_time_and_partitions_and_quotes_clusters() {
        let s = Utc.with_ymd_and_hms(2026, 11, 22, 5, 0, 0).unwrap();
        let e = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        let conds = event_window_conditions(Some(s), Some(e), &["o'neil".to_owned()]);
        assert_eq!(
            where_clause(&conds),
            " WHERE stage_at >= TIMESTAMP '2026-11-22T05:00:00.000000Z' AND date >= '2026-11-22' \
             AND stage_at < TIMESTAMP '2026-11-23T00:00:00.000000Z' AND date <= '2026-11-23' \
             AND cluster IN ('o''neil')"
        );
        assert_eq!(where_clause(&event_window_conditions(None, None, &[])), "");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
