//! `auditlake timeline`: what one user, object or address did, as a story a responder reads top
//! to bottom — one line per request, repeats folded, a note when the client address or user
//! agent changes, and the detection findings each request is evidence of.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use auditlake_query::sqltext::quote_str;
use auditlake_query::{SessionOptions, open_lake_at};
use auditlake_report::batches_to_rows;
use chrono::Utc;
use serde_json::Value;

use crate::EXIT_OK;
use crate::cli::TimelineArgs;
use crate::config::Config;
use crate::options::session_options;

/// Who or what the timeline follows, as SQL over `requests` and as words.
fn subject(args: &TimelineArgs) -> anyhow::Result<(String, String)> {
    if let Some(u) = &args.user {
        let q = quote_str(u);
        return Ok((
            format!("(user_name = {q} OR impersonated_user_name = {q})"),
            format!("user {u}"),
        ));
    }
    if let Some(ip) = &args.ip {
        return Ok((
            format!("source_ip = {}", quote_str(ip)),
            format!("address {ip}"),
        ));
    }
    let object = args.object.as_deref().expect("clap requires one subject");
    let parts: Vec<&str> = object.split('/').collect();
    let (kind, ns, name) = match parts[..] {
        [kind, ns, name] => (kind, Some(ns), name),
        [kind, name] => (kind, None, name),
        _ => anyhow::bail!(
            "--object {object}: expected KIND/NAMESPACE/NAME or KIND/NAME (e.g. secrets/prod/db-creds)"
        ),
    };
    // `pods/exec` etc. on the object are part of its story.
    let ns_cond = ns.map_or("namespace IS NULL".to_owned(), |ns| {
        format!("namespace = {}", quote_str(ns))
    });
    Ok((
        format!(
            "resource = {} AND {ns_cond} AND name = {}",
            quote_str(kind),
            quote_str(name)
        ),
        format!(
            "{kind} {}",
            ns.map_or(name.to_owned(), |ns| format!("{ns}/{name}"))
        ),
    ))
}

const COLUMNS: &str = "stage_at, cluster, audit_id, user_name, impersonated_user_name, source_ip, user_agent, verb, \
    resource, subresource, namespace, name, request_uri, response_code, response_reason, exec_command, \
    role_ref_name, binding_subjects, pod_privileged, pod_host_paths";

/// One request, in words.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    time: String,
    actor: String,
    action: String,
    code: i64,
    ip: String,
    agent: String,
    audit_id: String,
    cluster: String,
}

impl Line {
    fn for_terminal(&self) -> Line {
        let p = |s: &str| auditlake_query::output::printable(s).into_owned();
        Line {
            time: p(&self.time),
            actor: p(&self.actor),
            action: p(&self.action),
            code: self.code,
            ip: p(&self.ip),
            agent: p(&self.agent),
            audit_id: p(&self.audit_id),
            cluster: p(&self.cluster),
        }
    }
}

fn text(row: &BTreeMap<String, Value>, key: &str) -> Option<String> {
    match row.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn list(row: &BTreeMap<String, Value>, key: &str) -> Vec<String> {
    match row.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn describe(row: &BTreeMap<String, Value>) -> Line {
    let verb = text(row, "verb").unwrap_or_default();
    let mut action = match text(row, "resource") {
        None => format!(
            "{} {}",
            verb.to_uppercase(),
            text(row, "request_uri")
                .unwrap_or_default()
                .split('?')
                .next()
                .unwrap_or("")
        ),
        Some(resource) => {
            let what = match text(row, "subresource") {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource,
            };
            let target = match (text(row, "namespace"), text(row, "name")) {
                (Some(ns), Some(name)) => format!("{ns}/{name}"),
                (None, Some(name)) => name,
                (Some(ns), None) => format!("in {ns}"),
                (None, None) => "(all namespaces)".to_owned(),
            };
            format!("{verb} {what} {target}")
        }
    };
    let command = list(row, "exec_command");
    if !command.is_empty() {
        action.push_str(&format!(": {}", command.join(" ")));
    }
    if let Some(role) = text(row, "role_ref_name") {
        let subjects = list(row, "binding_subjects");
        action.push_str(&format!(" → {role} for {}", subjects.join(", ")));
    }
    if row.get("pod_privileged") == Some(&Value::Bool(true)) {
        action.push_str(" [privileged]");
    }
    let host_paths = list(row, "pod_host_paths");
    if !host_paths.is_empty() {
        action.push_str(&format!(" [hostPath {}]", host_paths.join(", ")));
    }
    let mut actor = text(row, "user_name").unwrap_or_else(|| "(unknown)".to_owned());
    if let Some(imp) = text(row, "impersonated_user_name") {
        actor.push_str(&format!(" as {imp}"));
    }
    Line {
        time: text(row, "stage_at").unwrap_or_default(),
        actor,
        action,
        code: row
            .get("response_code")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        ip: text(row, "source_ip").unwrap_or_default(),
        agent: text(row, "user_agent").unwrap_or_default(),
        audit_id: text(row, "audit_id").unwrap_or_default(),
        cluster: text(row, "cluster").unwrap_or_default(),
    }
}

/// `2026-11-20T08:29:04.123Z` → (`2026-11-20`, `08:29:04`).
fn split_time(t: &str) -> (&str, &str) {
    let (date, rest) = t.split_once('T').unwrap_or((t, ""));
    (date, rest.get(..8).unwrap_or(rest))
}

fn outcome(code: i64) -> String {
    match code {
        0 => "  ?".to_owned(),
        c if c >= 400 => format!("{c} ✗"),
        c => c.to_string(),
    }
}

pub fn run(config: &Config, args: TimelineArgs) -> anyhow::Result<u8> {
    let (cond, title) = subject(&args)?;
    let scope = args.scope.scope(Utc::now())?;
    let lake = config.lake(args.lake.lake.as_deref())?;
    let opts = SessionOptions {
        scope,
        engine: config.engine(args.engine.engine.as_deref())?,
        ..session_options(config)
    };
    let [sql, counts_sql, findings_sql] = queries(&cond, &args);
    let rt = super::runtime()?;
    let result = rt.block_on(async {
        let ctx = open_lake_at(&lake, &opts).await?;
        let rows = auditlake_query::run_sql(&ctx, &sql).await?;
        let counts = auditlake_query::run_sql(&ctx, &counts_sql).await?;
        let findings = auditlake_query::run_sql(&ctx, &findings_sql).await?;
        anyhow::Ok((rows, counts, findings))
    });
    let (rows, counts, findings) = result?;
    let rows = to_maps(&rows)?;
    let counts = to_maps(&counts)?.into_iter().next().unwrap_or_default();
    let flagged = flagged_events(to_maps(&findings)?);

    let truncated = rows.len() > args.limit;
    let lines: Vec<Line> = rows.iter().take(args.limit).map(describe).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        for l in &lines {
            let v = serde_json::json!({
                "time": l.time, "cluster": l.cluster, "actor": l.actor, "action": l.action,
                "code": l.code, "source_ip": l.ip, "user_agent": l.agent, "audit_id": l.audit_id,
                "findings": flagged.get(&l.audit_id).cloned().unwrap_or_default(),
            });
            writeln!(out, "{v}")?;
        }
        return Ok(EXIT_OK);
    }
    // Every text field is what some client sent (a user agent, a typed exec command): the
    // terminal gets it with control characters shown, never interpreted.
    let lines: Vec<Line> = lines.iter().map(Line::for_terminal).collect();
    let page = Page {
        title: &title,
        lines: &lines,
        flagged: &flagged,
        counts: &counts,
        truncated,
        all: args.all,
    };
    page.write(&mut out)?;
    Ok(EXIT_OK)
}

/// The timeline's three queries: its requests (one more than --limit, to tell a cut), their
/// counts, and the findings whose evidence they are.
fn queries(cond: &str, args: &TimelineArgs) -> [String; 3] {
    // Watches are long-running reads a client re-opens all the time: counted, not listed.
    let routine = if args.all {
        String::new()
    } else {
        " AND verb <> 'watch'".to_owned()
    };
    [
        format!(
            "SELECT {COLUMNS} FROM requests WHERE {cond}{routine} ORDER BY stage_at, audit_id LIMIT {}",
            args.limit + 1
        ),
        format!(
            "SELECT count(*) AS requests, count(*) FILTER (WHERE response_code >= 400) AS refused, \
             count(*) FILTER (WHERE verb = 'watch') AS watches, count(DISTINCT source_ip) AS addresses, \
             min(stage_at) AS first_at, max(stage_at) AS last_at FROM requests WHERE {cond}"
        ),
        format!(
            "SELECT evidence_id AS audit_id, rule_id, severity \
             FROM (SELECT unnest(evidence_audit_ids) AS evidence_id, rule_id, severity FROM findings) \
             WHERE evidence_id IN (SELECT audit_id FROM requests WHERE {cond})"
        ),
    ]
}

fn to_maps(
    batches: &[datafusion::arrow::array::RecordBatch],
) -> anyhow::Result<Vec<BTreeMap<String, Value>>> {
    let (cols, rows) = batches_to_rows(batches).map_err(anyhow::Error::msg)?;
    Ok(rows
        .into_iter()
        .map(|r| cols.iter().cloned().zip(r).collect())
        .collect())
}

/// `rule (severity)` labels of the findings each event is evidence of, sorted (the query
/// returns them in any order, which differs between engines and runs).
fn flagged_events(findings: Vec<BTreeMap<String, Value>>) -> HashMap<String, Vec<String>> {
    let mut flagged: HashMap<String, Vec<String>> = HashMap::new();
    for f in findings {
        if let (Some(id), Some(rule), Some(sev)) = (
            text(&f, "audit_id"),
            text(&f, "rule_id"),
            text(&f, "severity"),
        ) {
            let entry = flagged.entry(id).or_default();
            let label = format!("{rule} ({sev})");
            if !entry.contains(&label) {
                entry.push(label);
            }
        }
    }
    for labels in flagged.values_mut() {
        labels.sort();
    }
    flagged
}

/// The text timeline of one subject.
struct Page<'a> {
    title: &'a str,
    /// Terminal-safe lines, at most --limit.
    lines: &'a [Line],
    flagged: &'a HashMap<String, Vec<String>>,
    counts: &'a BTreeMap<String, Value>,
    /// More requests than --limit matched.
    truncated: bool,
    /// --all: watches are listed, not only counted.
    all: bool,
}

impl Page<'_> {
    fn count(&self, key: &str) -> i64 {
        self.counts.get(key).and_then(Value::as_i64).unwrap_or(0)
    }

    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let (title, lines, flagged) = (self.title, self.lines, self.flagged);
        if self.count("requests") == 0 {
            writeln!(out, "Timeline of {title}: no requests in this window.")?;
            return Ok(());
        }
        writeln!(
            out,
            "Timeline of {title}: {} requests ({} refused) from {} address(es), {} → {}",
            self.count("requests"),
            self.count("refused"),
            self.count("addresses"),
            text(self.counts, "first_at").unwrap_or_default(),
            text(self.counts, "last_at").unwrap_or_default(),
        )?;
        let actor_width = lines
            .iter()
            .map(|l| l.actor.chars().count())
            .max()
            .unwrap_or(0)
            .min(40);
        let mut date = "";
        let mut client: Option<(String, String)> = None;
        let mut i = 0;
        while i < lines.len() {
            let l = &lines[i];
            // Fold a run of the same request (same actor, action, outcome, client).
            let mut j = i + 1;
            while j < lines.len()
                && lines[j].actor == l.actor
                && lines[j].action == l.action
                && lines[j].code == l.code
                && lines[j].ip == l.ip
                && !flagged.contains_key(&lines[j].audit_id)
            {
                j += 1;
            }
            let (d, t) = split_time(&l.time);
            if d != date {
                writeln!(out, "\n{d}")?;
                date = d;
            }
            let c = (l.ip.clone(), l.agent.clone());
            if client.as_ref() != Some(&c) {
                writeln!(
                    out,
                    "          ── from {} with {}",
                    if l.ip.is_empty() { "?" } else { &l.ip },
                    if l.agent.is_empty() { "?" } else { &l.agent }
                )?;
                client = Some(c);
            }
            let repeat = if j - i > 1 {
                format!("  (×{} until {})", j - i, split_time(&lines[j - 1].time).1)
            } else {
                String::new()
            };
            writeln!(
                out,
                "{t}  {:<actor_width$}  {:<5} {}{repeat}",
                l.actor,
                outcome(l.code),
                l.action,
            )?;
            for folded in &lines[i..j] {
                if let Some(f) = flagged.get(&folded.audit_id) {
                    writeln!(out, "          ⚑ {}", f.join(", "))?;
                }
            }
            i = j;
        }
        writeln!(out)?;
        if self.truncated {
            writeln!(
                out,
                "… more requests follow: raise --limit or narrow --since/--until."
            )?;
        }
        if self.count("watches") > 0 && !self.all {
            writeln!(
                out,
                "{} watch requests not listed (--all lists them).",
                self.count("watches")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_in_words() {
        let row: BTreeMap<String, Value> = serde_json::from_str(
            r#"{"stage_at":"2026-11-20T08:49:01.5Z","user_name":"dave","impersonated_user_name":null,"verb":"create",
                "resource":"pods","subresource":"exec","namespace":"kube-system","name":"node-debugger",
                "exec_command":["chroot","/host"],"response_code":101,"source_ip":"198.51.100.23"}"#,
        )
        .unwrap();
        let l = describe(&row);
        assert_eq!(
            l.action,
            "create pods/exec kube-system/node-debugger: chroot /host"
        );
        assert_eq!(split_time(&l.time), ("2026-11-20", "08:49:01"));
        let binding: BTreeMap<String, Value> = serde_json::from_str(
            r#"{"user_name":"dave","impersonated_user_name":"system:admin","verb":"create","resource":"clusterrolebindings",
                "name":"backup-operator","role_ref_name":"cluster-admin","binding_subjects":["ServiceAccount:kube-system/backup"]}"#,
        )
        .unwrap();
        let l = describe(&binding);
        assert_eq!(l.actor, "dave as system:admin");
        assert_eq!(
            l.action,
            "create clusterrolebindings backup-operator → cluster-admin for ServiceAccount:kube-system/backup"
        );
        let health: BTreeMap<String, Value> = serde_json::from_str(
            r#"{"verb":"get","request_uri":"/healthz?verbose","user_name":"system:anonymous"}"#,
        )
        .unwrap();
        assert_eq!(describe(&health).action, "GET /healthz");
        assert_eq!(outcome(403), "403 ✗");
    }
}
