//! Inline SVG charts for HTML reports: no script, no network, readable when printed.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use crate::{ChartDef, ChartKind, SectionResult};

const PALETTE: &[&str] = &[
    "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563",
];

pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell_text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Text for people (Markdown, HTML): timestamps as `2026-11-20 08:29:31Z` instead of RFC 3339
/// with microseconds; everything else as [`cell_text`].
pub(crate) fn display_text(v: &Value) -> String {
    let text = cell_text(v);
    let b = text.as_bytes();
    // `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`
    if b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && text.ends_with('Z')
    {
        return format!("{} {}Z", &text[..10], &text[11..19]);
    }
    text
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// The chart of a section, or None when it has none or no rows.
pub(crate) fn chart(section: &SectionResult) -> Option<String> {
    let def = section.chart.as_ref()?;
    if section.rows.is_empty() {
        return None;
    }
    let col = |name: &str| section.columns.iter().position(|c| c == name);
    let (label, value) = (col(&def.label)?, col(&def.value)?);
    let series = def.series.as_deref().and_then(col);
    let points: Vec<(String, String, f64)> = section
        .rows
        .iter()
        .map(|r| {
            (
                cell_text(&r[label]),
                series.map(|s| cell_text(&r[s])).unwrap_or_default(),
                number(&r[value]),
            )
        })
        .collect();
    Some(match def.kind {
        ChartKind::Bar => bar_chart(def, &points),
        ChartKind::Timeseries => column_chart(def, &points),
    })
}

/// Horizontal bars in the result's order (its ORDER BY decides), at most 15.
fn bar_chart(def: &ChartDef, points: &[(String, String, f64)]) -> String {
    let mut bars: Vec<(&str, f64)> = Vec::new();
    for (l, _, v) in points {
        match bars.iter_mut().find(|b| b.0 == l) {
            Some(b) => b.1 += v,
            None => bars.push((l, *v)),
        }
    }
    bars.truncate(15);
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1.0);
    let (label_w, bar_w, row_h) = (300.0, 420.0, 22.0);
    let height = row_h * bars.len() as f64 + 30.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="system-ui, sans-serif" font-size="11"><title>{title}</title>"#,
        w = label_w + bar_w + 70.0,
        title = escape(&format!("{} by {}", def.value, def.label)),
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 10.0 + i as f64 * row_h;
        let w = (v / max * bar_w).max(1.0);
        let _ = write!(
            svg,
            r##"<text x="{lx}" y="{ty}" text-anchor="end" fill="#111827">{label}</text><rect x="{x}" y="{y}" width="{w:.1}" height="{h}" fill="{color}"><title>{full}: {v}</title></rect><text x="{vx:.1}" y="{ty}" fill="#374151">{v}</text>"##,
            lx = label_w - 6.0,
            ty = y + 14.0,
            label = escape(&truncate(label, 42)),
            x = label_w,
            h = row_h - 6.0,
            color = PALETTE[0],
            full = escape(label),
            vx = label_w + w + 4.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Columns per time bucket, stacked by series; buckets in order, x labels thinned to fit.
fn column_chart(def: &ChartDef, points: &[(String, String, f64)]) -> String {
    let mut buckets: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    let mut series_total: BTreeMap<&str, f64> = BTreeMap::new();
    for (l, s, v) in points {
        *buckets.entry(l).or_default().entry(s).or_default() += v;
        *series_total.entry(s).or_default() += v;
    }
    // Most important series first; the rest fold into "other".
    let mut series: Vec<(&str, f64)> = series_total.into_iter().collect();
    series.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<&str> = series.iter().take(PALETTE.len() - 1).map(|s| s.0).collect();
    let color_of = |s: &str| {
        shown
            .iter()
            .position(|x| *x == s)
            .map_or(PALETTE[PALETTE.len() - 1], |i| PALETTE[i])
    };
    let max = buckets
        .values()
        .map(|m| m.values().sum::<f64>())
        .fold(0.0, f64::max)
        .max(1.0);
    let (left, top, plot_w, plot_h) = (50.0, 10.0, 680.0, 200.0);
    let n = buckets.len().max(1) as f64;
    let slot = plot_w / n;
    let bar = (slot * 0.8).max(1.0);
    let legend_rows = if series.len() > 1 {
        shown.len() + usize::from(series.len() > shown.len())
    } else {
        0
    };
    let height = top + plot_h + 40.0 + legend_rows as f64 * 16.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="system-ui, sans-serif" font-size="11"><title>{title}</title>"##,
        w = left + plot_w + 20.0,
        title = escape(&format!("{} per {}", def.value, def.label)),
    );
    // Axes and the max gridline.
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{b}" stroke="#9ca3af"/><line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="#9ca3af"/><text x="{lx}" y="{ty}" text-anchor="end" fill="#374151">{max}</text><text x="{lx}" y="{b}" text-anchor="end" fill="#374151">0</text>"##,
        b = top + plot_h,
        r = left + plot_w,
        lx = left - 4.0,
        ty = top + 10.0,
    );
    let label_every = (buckets.len() / 8).max(1);
    for (i, (bucket, values)) in buckets.iter().enumerate() {
        let x = left + i as f64 * slot + (slot - bar) / 2.0;
        let mut y = top + plot_h;
        let mut stack: Vec<(&str, f64)> = values.iter().map(|(s, v)| (*s, *v)).collect();
        stack.sort_by_key(|(s, _)| shown.iter().position(|x| x == s).unwrap_or(usize::MAX));
        for (s, v) in stack {
            let h = v / max * plot_h;
            y -= h;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" fill="{c}"><title>{t}</title></rect>"#,
                c = color_of(s),
                t = escape(&format!("{bucket} {s} {v}")),
            );
        }
        if i % label_every == 0 {
            let _ = write!(
                svg,
                r##"<text x="{cx:.1}" y="{ly}" text-anchor="middle" fill="#374151">{l}</text>"##,
                cx = x + bar / 2.0,
                ly = top + plot_h + 14.0,
                l = escape(&truncate(bucket, 16)),
            );
        }
    }
    if series.len() > 1 {
        let mut entries: Vec<(&str, &str)> = shown.iter().map(|s| (*s, color_of(s))).collect();
        if series.len() > shown.len() {
            entries.push(("other", PALETTE[PALETTE.len() - 1]));
        }
        for (i, (name, color)) in entries.iter().enumerate() {
            let y = top + plot_h + 30.0 + i as f64 * 16.0;
            let _ = write!(
                svg,
                r##"<rect x="{left}" y="{ry}" width="10" height="10" fill="{color}"/><text x="{tx}" y="{ty}" fill="#111827">{n}</text>"##,
                ry = y - 9.0,
                tx = left + 14.0,
                ty = y,
                n = escape(if name.is_empty() { "(none)" } else { name }),
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SectionKind;

    fn section(kind: ChartKind, rows: Vec<Vec<Value>>, series: Option<&str>) -> SectionResult {
        let _ = SectionKind::Table;
        SectionResult {
            id: "s".into(),
            title: "t".into(),
            description: String::new(),
            columns: vec!["who".into(), "n".into(), "verb".into()],
            rows,
            chart: Some(ChartDef {
                kind,
                label: "who".into(),
                value: "n".into(),
                series: series.map(str::to_owned),
            }),
            manifests: Vec::new(),
            show_rows: 50,
        }
    }

    #[test]
    fn bar_chart_scales_to_the_largest_and_escapes_labels() {
        let s = section(
            ChartKind::Bar,
            vec![
                vec!["<alice>".into(), 10.into(), "get".into()],
                vec!["bob".into(), 5.into(), "get".into()],
            ],
            None,
        );
        let svg = chart(&s).unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("&lt;alice&gt;") && !svg.contains("<alice>"));
        assert!(
            svg.contains(r#"width="420.0""#),
            "largest bar fills the width: {svg}"
        );
        assert_eq!(
            display_text(&"2026-11-20T08:29:31.335412Z".into()),
            "2026-11-20 08:29:31Z"
        );
        assert_eq!(display_text(&"dave".into()), "dave");
        assert!(
            svg.contains(r#"width="210.0""#),
            "half as many, half as wide: {svg}"
        );
    }

    #[test]
    fn column_chart_stacks_series_with_a_legend() {
        let s = section(
            ChartKind::Timeseries,
            vec![
                vec!["10:00".into(), 4.into(), "get".into()],
                vec!["10:00".into(), 4.into(), "list".into()],
                vec!["11:00".into(), 2.into(), "get".into()],
            ],
            Some("verb"),
        );
        let svg = chart(&s).unwrap();
        assert_eq!(
            svg.matches("<rect").count(),
            3 + 2,
            "3 stacked parts + 2 legend swatches"
        );
        assert!(svg.contains(">list</text>") && svg.contains(">10:00</text>"));
        assert!(chart(&section(ChartKind::Bar, vec![], None)).is_none());
    }
}
