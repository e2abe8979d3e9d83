//! deploy/grafana/auditlake-who-did-what.json, the responder's and auditor's dashboard over the
//! PostgreSQL endpoint: each panel's SQL, expanded as Grafana expands it (template variables in
//! the browser, then the PostgreSQL data source's macros), run by the real `psql` over TLS with
//! a `pg-passwd` user against a lake of the samples, and its rows checked against what the
//! sample log itself says.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::forensics::{free_port, have_psql, start_pg};
use crate::webhook::{Pki, write_config};
use crate::*;

const DASHBOARD: &str = "deploy/grafana/auditlake-who-did-what.json";
const DATASOURCE_TYPE: &str = "grafana-postgresql-datasource";
const PASSWORD: &str = "grafana-reads-the-lake";

/// Every panel's title and the columns its query returns, in order: the contract the panels'
/// field overrides and a responder's eyes rely on. A panel added to the dashboard is added here.
const PANELS: &[(&str, &[&str])] = &[
    ("Findings by severity", &["severity", "findings"]),
    (
        "Findings over time, by severity",
        &["time", "metric", "findings"],
    ),
    (
        "Findings",
        &[
            "time",
            "severity",
            "rule_id",
            "title",
            "summary",
            "actor",
            "target",
            "event_count",
            "last_event_at",
            "incident_id",
        ],
    ),
    ("Secret reads per user", &["time", "metric", "reads"]),
    ("Secret reads per namespace", &["time", "metric", "reads"]),
    (
        "Who read which secrets",
        &[
            "user",
            "namespace",
            "secret",
            "reads",
            "first_read",
            "last_read",
        ],
    ),
    (
        "Recent secret reads",
        &[
            "time",
            "user",
            "impersonating",
            "source_ip",
            "user_agent",
            "verb",
            "namespace",
            "secret",
            "allowed",
            "response_code",
        ],
    ),
    (
        "Denied requests (403) per user",
        &["time", "metric", "denied"],
    ),
    (
        "Denied requests (403) by user and verb",
        &[
            "user",
            "verb",
            "denied",
            "what",
            "source_ips",
            "first_seen",
            "last_seen",
        ],
    ),
    (
        "RBAC changes: who changed which role or binding",
        &[
            "time",
            "user",
            "impersonating",
            "source_ip",
            "verb",
            "resource",
            "namespace",
            "name",
            "grants",
            "subjects",
            "rule_verbs",
            "rule_resources",
            "response_code",
        ],
    ),
    (
        "exec / attach / port-forward sessions",
        &[
            "time",
            "user",
            "impersonating",
            "source_ip",
            "kind",
            "namespace",
            "pod",
            "container",
            "command",
            "response_code",
        ],
    ),
];

/// What the dashboard is looking at: the time picker, `$__interval`, and the variables.
struct View<'a> {
    from: &'a str,
    to: &'a str,
    interval: &'a str,
    clusters: &'a [&'a str],
    user: &'a str,
}

impl View<'_> {
    fn from(&self) -> DateTime<Utc> {
        self.from.parse().unwrap()
    }
    fn to(&self) -> DateTime<Utc> {
        self.to.parse().unwrap()
    }
}

/// The SQL Grafana sends for `sql`. First the browser replaces template variables
/// (`SqlDatasource.interpolateVariable`): a multi-value or include-All variable becomes its
/// values, each single-quoted with `'` doubled, joined by `,`; a single-value one (the textbox)
/// its value with `'` doubled and no quotes; `$__interval` the interval as text. Then the
/// backend's macro engine (pkg/tsdb/grafana-postgresql-datasource/macros.go) expands
/// `$__timeFilter(c)` to `c BETWEEN '<from>' AND '<to>'` (RFC 3339, UTC), `$__timeFrom()` /
/// `$__timeTo()` to the quoted instants, `$__timeGroup(c, i)` to
/// `floor(extract(epoch from c)/<secs>)*<secs>`, `$__timeGroupAlias` to that `AS "time"`.
fn grafana_expand(sql: &str, view: &View<'_>) -> String {
    // Variables: `$name` or `${name}`; names Grafana does not know (the macros) stay.
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').expect("unterminated ${");
            (&braced[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let value = match name {
            "cluster" => Some(
                view.clusters
                    .iter()
                    .map(|c| format!("'{}'", c.replace('\'', "''")))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            "user" => Some(view.user.replace('\'', "''")),
            "__interval" => Some(view.interval.to_owned()),
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[at..at + 1 + len]),
        }
        rest = &after[len..];
    }
    out.push_str(rest);

    // Macros: `$name(args)`, arguments split at commas and trimmed.
    let sql = out;
    let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let mut out = String::new();
    let mut rest = sql.as_str();
    while let Some(at) = rest.find("$__") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let name_end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_end];
        let args_and_rest = after[name_end..]
            .strip_prefix('(')
            .unwrap_or_else(|| panic!("macro ${name} without arguments in {sql}"));
        let close = args_and_rest.find(')').unwrap();
        let args: Vec<&str> = args_and_rest[..close].split(',').map(str::trim).collect();
        let group = |args: &[&str]| {
            let secs = interval_seconds(args[1].trim_matches('\''));
            format!("floor(extract(epoch from {})/{secs})*{secs}", args[0])
        };
        out.push_str(&match name {
            "__timeFilter" => format!(
                "{} BETWEEN '{}' AND '{}'",
                args[0],
                rfc3339(view.from()),
                rfc3339(view.to())
            ),
            "__timeFrom" => format!("'{}'", rfc3339(view.from())),
            "__timeTo" => format!("'{}'", rfc3339(view.to())),
            "__timeGroup" => group(&args),
            "__timeGroupAlias" => format!("{} AS \"time\"", group(&args)),
            other => panic!("macro ${other} is not one this test expands: {sql}"),
        });
        rest = &args_and_rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Grafana's interval syntax (gtime.ParseInterval) for the units a dashboard's `$__interval` takes.
fn interval_seconds(interval: &str) -> f64 {
    let split = interval
        .find(|c: char| !c.is_ascii_digit())
        .expect("an interval with a unit");
    let n: f64 = interval[..split].parse().unwrap();
    n * match &interval[split..] {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        unit => panic!("interval unit {unit}"),
    }
}

#[test]
fn grafana_expansion_matches_the_data_sources() {
    let view = View {
        from: "2026-11-20T08:00:00Z",
        to: "2026-11-20T10:00:00Z",
        interval: "5m",
        clusters: &["prod-eu", "o'neil"],
        user: "o'neil",
    };
    assert_eq!(
        grafana_expand(
            "SELECT $__timeGroupAlias(stage_at, $__interval), x FROM t WHERE $__timeFilter(stage_at) \
             AND cluster IN ($cluster) AND ('$user' = '' OR u = '${user}') AND a < $__timeTo()",
            &view
        ),
        "SELECT floor(extract(epoch from stage_at)/300)*300 AS \"time\", x FROM t \
         WHERE stage_at BETWEEN '2026-11-20T08:00:00Z' AND '2026-11-20T10:00:00Z' \
         AND cluster IN ('prod-eu','o''neil') AND ('o''neil' = '' OR u = 'o''neil') \
         AND a < '2026-11-20T10:00:00Z'"
    );
}

struct Endpoint {
    conninfo: String,
    _pg: KillOnDrop,
}

/// Header and rows of a panel's query, as `psql` prints them.
type Table = (Vec<String>, Vec<Vec<String>>);

impl Endpoint {
    fn query(&self, sql: &str) -> Table {
        let out = std::process::Command::new("psql")
            .args([
                self.conninfo.as_str(),
                "--no-psqlrc",
                "-X",
                "-A",
                "-F",
                "\x1f",
                "-R",
                "\x1e",
                "-P",
                "footer=off",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "{sql}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut records = text.trim_end_matches('\n').split('\x1e');
        let header = records
            .next()
            .unwrap()
            .split('\x1f')
            .map(str::to_owned)
            .collect();
        let rows = records
            .map(|r| r.split('\x1f').map(str::to_owned).collect())
            .collect();
        (header, rows)
    }
}

struct Dashboard {
    /// Title → the panel's SQL and format.
    panels: BTreeMap<String, (String, String)>,
    variables: Vec<Value>,
}

impl Dashboard {
    fn load() -> Dashboard {
        let json: Value =
            serde_json::from_slice(&std::fs::read(repo().join(DASHBOARD)).unwrap()).unwrap();
        let mut panels = BTreeMap::new();
        for panel in json["panels"].as_array().unwrap() {
            if panel["type"] == "row" {
                continue;
            }
            let title = panel["title"].as_str().unwrap().to_owned();
            assert_eq!(panel["datasource"]["type"], DATASOURCE_TYPE, "{title}");
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
            let targets = panel["targets"].as_array().unwrap();
            assert_eq!(targets.len(), 1, "{title}: one query a panel");
            let t = &targets[0];
            assert_eq!(t["rawQuery"], true, "{title}: code mode");
            let format = t["format"].as_str().unwrap().to_owned();
            assert!(
                matches!(format.as_str(), "table" | "time_series"),
                "{title}: {format}"
            );
            let sql = t["rawSql"].as_str().unwrap().to_owned();
            // Every panel follows the time picker and the cluster variable.
            assert!(
                sql.contains("$__timeFilter(") || sql.contains("$__timeFrom()"),
                "{title}: no time filter"
            );
            assert!(
                sql.contains("cluster IN ($cluster)"),
                "{title}: not filtered by $cluster"
            );
            if format == "time_series" {
                assert!(sql.contains("$__timeGroupAlias("), "{title}");
                assert!(sql.trim_end().ends_with("ORDER BY 1"), "{title}: by time");
            }
            assert!(
                panels.insert(title.clone(), (sql, format)).is_none(),
                "two panels titled {title}"
            );
        }
        let listed: BTreeSet<&str> = PANELS.iter().map(|(t, _)| *t).collect();
        let found: BTreeSet<&str> = panels.keys().map(String::as_str).collect();
        assert_eq!(found, listed, "the panels this test knows");
        Dashboard {
            panels,
            variables: json["templating"]["list"].as_array().unwrap().clone(),
        }
    }

    fn variable(&self, name: &str) -> &Value {
        self.variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    }

    /// Runs a panel's query as Grafana would, checking its columns; the rows.
    fn run(&self, pg: &Endpoint, title: &str, view: &View<'_>) -> Vec<Vec<String>> {
        let (sql, _) = &self.panels[title];
        let (header, rows) = pg.query(&grafana_expand(sql, view));
        let expected = PANELS.iter().find(|(t, _)| *t == title).unwrap().1;
        assert_eq!(header, expected, "{title}: columns");
        rows
    }
}

/// One completed request of samples/audit.log, read as JSON.
struct Raw(Value);

impl Raw {
    fn s(&self, path: &[&str]) -> Option<&str> {
        let mut v = &self.0;
        for p in path {
            v = v.get(p)?;
        }
        v.as_str()
    }
    fn user(&self) -> &str {
        self.s(&["user", "username"]).unwrap()
    }
    fn code(&self) -> i64 {
        self.0["responseStatus"]["code"].as_i64().unwrap()
    }
    fn at(&self) -> DateTime<Utc> {
        self.s(&["stageTimestamp"]).unwrap().parse().unwrap()
    }
}

/// The completed requests (what the views hold) of the samples within the view's time range.
fn completed_requests(view: &View<'_>) -> Vec<Raw> {
    std::fs::read_to_string(repo().join("samples/audit.log"))
        .unwrap()
        .lines()
        .map(|l| Raw(serde_json::from_str(l).unwrap()))
        .filter(|e| matches!(e.s(&["stage"]), Some("ResponseComplete" | "Panic")))
        .filter(|e| (view.from()..=view.to()).contains(&e.at()))
        .collect()
}

fn secret_reads(events: &[Raw]) -> impl Iterator<Item = &Raw> {
    events.iter().filter(|e| {
        e.s(&["objectRef", "resource"]) == Some("secrets")
            && e.s(&["objectRef", "subresource"]).is_none()
            && matches!(e.s(&["verb"]), Some("get" | "list" | "watch"))
    })
}

fn tally<K: Ord>(keys: impl Iterator<Item = K>) -> BTreeMap<K, i64> {
    let mut m = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// A time series panel's rows (`time`, `metric`, value) summed per metric, every bucket checked
/// to be a multiple of the interval inside the time range.
fn sum_per_metric(rows: &[Vec<String>], view: &View<'_>) -> BTreeMap<String, i64> {
    let step = interval_seconds(view.interval);
    let (from, to) = (view.from().timestamp() as f64, view.to().timestamp() as f64);
    let mut sums = BTreeMap::new();
    for r in rows {
        let t: f64 = r[0].parse().unwrap();
        assert!(t % step == 0.0 && t > from - step && t <= to, "bucket {t}");
        *sums.entry(r[1].clone()).or_insert(0) += r[2].parse::<i64>().unwrap();
    }
    sums
}

#[test]
fn grafana_who_did_what_panels_answer_over_psql() {
    if !have_psql() {
        return;
    }
    let dash = Dashboard::load();
    assert_eq!(dash.variable("datasource")["query"], DATASOURCE_TYPE);
    let cluster = dash.variable("cluster");
    assert_eq!(cluster["multi"], true);
    assert_eq!(cluster["includeAll"], true);
    assert_eq!(dash.variable("user")["type"], "textbox");

    // The samples as two clusters (the same hour twice), and the detection pack's findings.
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let sample = repo().join("samples/audit.log");
    ingest(&lake, "prod-eu", &[&sample]);
    ingest(&lake, "staging", &[&sample]);
    let out = run(bin()
        .current_dir(repo())
        .args(["detect", "--store", "--format", "json", "--lake"])
        .arg(&lake));
    assert_eq!(out.status.code(), Some(1), "findings exist: {out:?}");

    // As the data source connects: a pg-passwd user, TLS, the server verified against the CA.
    let pki = Pki::generate(dir.path());
    std::fs::write(
        dir.path().join("pg-users"),
        crate::credentials::pg_passwd("grafana", PASSWORD),
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        "[postgres]\nusers_file = \"pg-users\"\ntls_cert = \"server.crt\"\ntls_key = \"server.key\"\n",
    );
    let port = free_port();
    let pg = Endpoint {
        _pg: start_pg(&config, &lake, port),
        conninfo: format!(
            "host=127.0.0.1 port={port} user=grafana dbname=auditlake sslmode=verify-ca sslrootcert={}",
            pki.path("ca.crt").display()
        ),
    };

    let view = View {
        from: "2026-11-20T08:00:00Z",
        to: "2026-11-20T10:00:00Z",
        interval: "1m",
        clusters: &["prod-eu"],
        user: "",
    };
    let raw = completed_requests(&view);

    // The cluster variable's own query lists both clusters.
    let (_, rows) = pg.query(&grafana_expand(cluster["query"].as_str().unwrap(), &view));
    assert_eq!(rows, [["prod-eu"], ["staging"]]);

    // Secrets: who read which, per user and per namespace, recent reads.
    let allowed: Vec<&Raw> = secret_reads(&raw).filter(|e| e.code() < 400).collect();
    let expected = tally(allowed.iter().map(|e| {
        (
            e.user().to_owned(),
            e.s(&["objectRef", "namespace"])
                .unwrap_or("(all namespaces)")
                .to_owned(),
            e.s(&["objectRef", "name"])
                .unwrap_or("(list: every secret)")
                .to_owned(),
        )
    }));
    assert!(
        expected.contains_key(&(
            "dave@example.com".into(),
            "payments".into(),
            "db-password".into()
        )),
        "the incident's secret reads are in the samples"
    );
    let rows = dash.run(&pg, "Who read which secrets", &view);
    let got: BTreeMap<(String, String, String), i64> = rows
        .iter()
        .map(|r| {
            (
                (r[0].clone(), r[1].clone(), r[2].clone()),
                r[3].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected, "one cluster's reads, each counted once");
    let rows = dash.run(&pg, "Secret reads per user", &view);
    assert_eq!(
        sum_per_metric(&rows, &view),
        tally(allowed.iter().map(|e| e.user().to_owned()))
    );
    let rows = dash.run(&pg, "Secret reads per namespace", &view);
    assert_eq!(
        sum_per_metric(&rows, &view),
        tally(allowed.iter().map(|e| {
            e.s(&["objectRef", "namespace"])
                .unwrap_or("(all namespaces)")
                .to_owned()
        }))
    );
    let rows = dash.run(&pg, "Recent secret reads", &view);
    let all_reads = secret_reads(&raw).count();
    assert_eq!(rows.len(), all_reads.min(500));
    let denied_reads = secret_reads(&raw).filter(|e| e.code() >= 400).count();
    assert!(denied_reads > 0);
    assert_eq!(rows.iter().filter(|r| r[8] == "f").count(), denied_reads);
    assert!(rows.windows(2).all(|w| w[0][0] >= w[1][0]), "newest first");

    // Denied requests.
    let denied: Vec<&Raw> = raw.iter().filter(|e| e.code() == 403).collect();
    let by_user_verb = tally(
        denied
            .iter()
            .map(|e| (e.user().to_owned(), e.s(&["verb"]).unwrap().to_owned())),
    );
    assert!(
        by_user_verb[&(
            "system:serviceaccount:default:default".to_owned(),
            "get".to_owned()
        )] > 1,
        "the stolen token's probes are in the samples"
    );
    let rows = dash.run(&pg, "Denied requests (403) by user and verb", &view);
    let got: BTreeMap<(String, String), i64> = rows
        .iter()
        .map(|r| ((r[0].clone(), r[1].clone()), r[2].parse().unwrap()))
        .collect();
    assert_eq!(got, by_user_verb);
    let rows = dash.run(&pg, "Denied requests (403) per user", &view);
    assert_eq!(
        sum_per_metric(&rows, &view),
        tally(denied.iter().map(|e| e.user().to_owned()))
    );
    // "All" clusters: Grafana sends every value of the variable; both copies count.
    let both = View {
        clusters: &["prod-eu", "staging"],
        ..view
    };
    let rows = dash.run(&pg, "Denied requests (403) by user and verb", &both);
    let got: BTreeMap<(String, String), i64> = rows
        .iter()
        .map(|r| ((r[0].clone(), r[1].clone()), r[2].parse().unwrap()))
        .collect();
    assert_eq!(
        got,
        by_user_verb
            .iter()
            .map(|(k, n)| (k.clone(), 2 * n))
            .collect::<BTreeMap<_, _>>()
    );

    // RBAC changes: who, what, when, and the role a binding grants.
    let rbac = |events: &[Raw]| -> BTreeSet<(String, String, String, String, String)> {
        events
            .iter()
            .filter(|e| {
                e.s(&["objectRef", "apiGroup"]) == Some("rbac.authorization.k8s.io")
                    && matches!(
                        e.s(&["objectRef", "resource"]),
                        Some("roles" | "clusterroles" | "rolebindings" | "clusterrolebindings")
                    )
                    && matches!(
                        e.s(&["verb"]),
                        Some("create" | "update" | "patch" | "delete" | "deletecollection")
                    )
            })
            .map(|e| {
                let grants = match (
                    e.s(&["requestObject", "roleRef", "kind"]),
                    e.s(&["requestObject", "roleRef", "name"]),
                ) {
                    (Some(k), Some(n)) => format!("{k}/{n}"),
                    _ => String::new(),
                };
                (
                    e.user().to_owned(),
                    e.s(&["verb"]).unwrap().to_owned(),
                    e.s(&["objectRef", "resource"]).unwrap().to_owned(),
                    e.s(&["objectRef", "name"]).unwrap_or("").to_owned(),
                    grants,
                )
            })
            .collect()
    };
    let expected = rbac(&raw);
    assert!(expected.contains(&(
        "dave@example.com".into(),
        "create".into(),
        "clusterrolebindings".into(),
        "backup-operator".into(),
        "ClusterRole/cluster-admin".into()
    )));
    let rows = dash.run(
        &pg,
        "RBAC changes: who changed which role or binding",
        &view,
    );
    let got: BTreeSet<_> = rows
        .iter()
        .map(|r| {
            (
                r[1].clone(),
                r[4].clone(),
                r[5].clone(),
                r[7].clone(),
                r[8].clone(),
            )
        })
        .collect();
    assert_eq!(rows.len(), expected.len());
    assert_eq!(got, expected);

    // Sessions into pods.
    let sessions: BTreeSet<(String, String, String, String, String)> = raw
        .iter()
        .filter(|e| {
            e.s(&["objectRef", "resource"]) == Some("pods")
                && matches!(
                    e.s(&["objectRef", "subresource"]),
                    Some("exec" | "attach" | "portforward")
                )
        })
        .map(|e| {
            (
                e.user().to_owned(),
                e.s(&["objectRef", "subresource"]).unwrap().to_owned(),
                e.s(&["objectRef", "namespace"]).unwrap().to_owned(),
                e.s(&["objectRef", "name"]).unwrap().to_owned(),
                e.code().to_string(),
            )
        })
        .collect();
    assert!(
        sessions
            .iter()
            .any(|s| s.0 == "dave@example.com" && s.1 == "exec")
    );
    let rows = dash.run(&pg, "exec / attach / port-forward sessions", &view);
    let got: BTreeSet<_> = rows
        .iter()
        .map(|r| {
            (
                r[1].clone(),
                r[4].clone(),
                r[5].clone(),
                r[6].clone(),
                r[9].clone(),
            )
        })
        .collect();
    assert_eq!(got, sessions);
    // The exec command, from the request URI's `command=` parameters.
    let chroot = rows
        .iter()
        .find(|r| r[6] == "node-debugger" && r[4] == "exec")
        .expect("the exec into node-debugger");
    assert!(raw.iter().any(|e| {
        e.s(&["requestURI"])
            .is_some_and(|u| u.contains("/node-debugger/exec?") && u.contains("command=chroot"))
    }));
    assert!(chroot[8].starts_with("chroot "), "{chroot:?}");

    // Findings, as the CLI counts them in the lake.
    let expected: BTreeMap<String, i64> = query(
        &lake,
        "SELECT severity, count(*) AS n FROM findings WHERE cluster = 'prod-eu' GROUP BY severity",
    )
    .iter()
    .map(|r| {
        (
            r["severity"].as_str().unwrap().to_owned(),
            r["n"].as_i64().unwrap(),
        )
    })
    .collect();
    assert!(
        expected.get("critical").is_some_and(|n| *n > 0),
        "{expected:?}"
    );
    let rows = dash.run(&pg, "Findings by severity", &view);
    let got: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(rows[0][0], "critical", "most severe first");
    let rows = dash.run(&pg, "Findings over time, by severity", &view);
    assert_eq!(sum_per_metric(&rows, &view), expected);
    let rows = dash.run(&pg, "Findings", &view);
    assert_eq!(rows.len() as i64, expected.values().sum::<i64>().min(500));
    assert_eq!(rows[0][1], "critical");

    // A narrower time range narrows every panel: 08:00–08:30 is before the RBAC changes.
    let early = View {
        to: "2026-11-20T08:30:00Z",
        ..view
    };
    let early_raw = completed_requests(&early);
    assert!(rbac(&early_raw).is_empty() && !rbac(&raw).is_empty());
    let rows = dash.run(
        &pg,
        "RBAC changes: who changed which role or binding",
        &early,
    );
    assert!(rows.is_empty(), "{rows:?}");
    let rows = dash.run(&pg, "Recent secret reads", &early);
    assert_eq!(rows.len(), secret_reads(&early_raw).count());
    assert!(rows.len() < all_reads);

    // The user box: one user's rows only, and a quote in it is a literal, not SQL.
    let dave = View {
        user: "dave@example.com",
        ..view
    };
    let rows = dash.run(&pg, "Who read which secrets", &dave);
    assert_eq!(
        rows.len(),
        allowed
            .iter()
            .filter(|e| e.user() == "dave@example.com")
            .map(|e| (
                e.s(&["objectRef", "namespace"]),
                e.s(&["objectRef", "name"])
            ))
            .collect::<BTreeSet<_>>()
            .len()
    );
    assert!(rows.iter().all(|r| r[0] == "dave@example.com"));
    let quoted = View {
        user: "o'neil' OR '1'='1",
        ..view
    };
    for title in dash.panels.keys() {
        assert!(
            dash.run(&pg, title, &quoted).is_empty(),
            "{title}: a user nobody is"
        );
    }
}
