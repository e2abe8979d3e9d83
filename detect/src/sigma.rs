//! `auditlake rules import-sigma`: Sigma rules for Kubernetes audit logs (logsource product
//! `kubernetes`, service `audit`) compiled into rule folders of this pack. Parsing is
//! `rsigma-parser`'s (YAML, modifiers, the condition grammar); this module maps Sigma's
//! audit-event field names onto `audit_events` columns and the detection onto SQL.
//!
//! Whatever cannot be compiled faithfully is named per rule ([`Unsupported`]) and the rule is
//! not written: a rule with a silently dropped clause would fire on the wrong events. Field
//! names that upstream rules use loosely are mapped by a documented interpretation, recorded in
//! the generated rule's description.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Level, Modifier, Quantifier, SelectorPattern,
    SigmaRule, SigmaString, SigmaValue, SpecialChar, StringPart,
};

/// Why a Sigma rule was not compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {title}: {reason}")]
pub struct Unsupported {
    pub file: String,
    pub title: String,
    pub reason: String,
}

impl Unsupported {
    /// A Sigma rule auditlake cannot translate: the rule's (its author's), never the lake's.
    pub fn fault(&self) -> auditlake_ingest::Fault {
        auditlake_ingest::Fault::Caller
    }
}

/// One compiled rule: its folder name, `rule.toml`, `query.sql`, and the interpretations made.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub id: String,
    pub rule_toml: String,
    pub query_sql: String,
    pub notes: Vec<String>,
}

/// A Sigma field as a column (or expression) of `audit_events`.
enum Column {
    Text(&'static str),
    Int(&'static str),
    /// A list column: a value matches when an element equals it.
    List(&'static str),
}

fn column(field: &str) -> Option<Column> {
    Some(match field {
        "verb" => Column::Text("verb"),
        "stage" => Column::Text("stage"),
        "level" => Column::Text("level"),
        "auditID" => Column::Text("audit_id"),
        "requestURI" => Column::Text("request_uri"),
        "userAgent" => Column::Text("user_agent"),
        "user.username" => Column::Text("user_name"),
        "user.uid" => Column::Text("user_uid"),
        "user.groups" => Column::List("user_groups"),
        "impersonatedUser.username" => Column::Text("impersonated_user_name"),
        "sourceIPs" => Column::List("source_ips"),
        "objectRef.resource" => Column::Text("resource"),
        "objectRef.subresource" => Column::Text("subresource"),
        "objectRef.namespace" => Column::Text("namespace"),
        "objectRef.name" => Column::Text("name"),
        "objectRef.apiGroup" => Column::Text("api_group"),
        "objectRef.apiVersion" => Column::Text("api_version"),
        "responseStatus.code" => Column::Int("response_code"),
        "responseStatus.reason" => Column::Text("response_reason"),
        "responseStatus.message" => Column::Text("response_message"),
        _ => return None,
    })
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A Sigma string as a SQL LIKE pattern (escape `\`), wildcards translated.
fn like_pattern(s: &SigmaString) -> String {
    let mut out = String::new();
    for part in &s.parts {
        match part {
            StringPart::Plain(p) => {
                for c in p.chars() {
                    if matches!(c, '%' | '_' | '\\') {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
            StringPart::Special(SpecialChar::WildcardMulti) => out.push('%'),
            StringPart::Special(SpecialChar::WildcardSingle) => out.push('_'),
        }
    }
    out
}

struct Ctx<'a> {
    notes: &'a mut Vec<String>,
}

impl Ctx<'_> {
    /// One field = value test.
    fn value(
        &mut self,
        field: &str,
        col: &Column,
        mods: &[Modifier],
        v: &SigmaValue,
    ) -> Result<String, String> {
        let cased = mods.contains(&Modifier::Cased);
        let string_mods: Vec<&Modifier> = mods
            .iter()
            .filter(|m| {
                matches!(
                    m,
                    Modifier::Contains | Modifier::StartsWith | Modifier::EndsWith
                )
            })
            .collect();
        match (col, v) {
            (_, SigmaValue::Null) => Ok(format!("{} IS NULL", col_name(col))),
            (Column::Int(c), SigmaValue::Integer(i)) if string_mods.is_empty() => {
                Ok(format!("{c} = {i}"))
            }
            (Column::Int(c), SigmaValue::String(s)) => match s.as_plain() {
                Some(p) if p.parse::<i64>().is_ok() && string_mods.is_empty() => {
                    Ok(format!("{c} = {p}"))
                }
                _ => Err(format!(
                    "{field}: {:?} is not a number (the column holds HTTP status codes)",
                    s.original
                )),
            },
            (Column::List(c), SigmaValue::String(s)) if string_mods.is_empty() => {
                match s.as_plain() {
                    Some(p) => Ok(format!("array_has({c}, {})", quote(&p))),
                    None => Err(format!("{field}: wildcards over a list field")),
                }
            }
            (Column::List(_), _) => Err(format!(
                "{field}: only exact values are supported on a list field"
            )),
            (Column::Text(c), SigmaValue::Integer(i)) => {
                Ok(format!("{c} = {}", quote(&i.to_string())))
            }
            (Column::Text(c), SigmaValue::String(s)) => {
                if mods.contains(&Modifier::Re) {
                    let flags = if cased { "" } else { "(?i)" };
                    return Ok(format!(
                        "regexp_like({c}, {})",
                        quote(&format!("{flags}{}", s.original))
                    ));
                }
                if mods.contains(&Modifier::Cidr) {
                    return Ok(format!(
                        "ip_in_cidrs({c}, arrow_cast(make_array({}), 'List(Utf8)'))",
                        quote(&s.original)
                    ));
                }
                let mut pat = like_pattern(s);
                for m in &string_mods {
                    match m {
                        Modifier::Contains => pat = format!("%{pat}%"),
                        Modifier::StartsWith => pat = format!("{pat}%"),
                        Modifier::EndsWith => pat = format!("%{pat}"),
                        _ => {}
                    }
                }
                // Sigma matches strings case-insensitively unless `|cased`.
                let (lhs, pat) = if cased {
                    (c.to_string(), pat)
                } else {
                    (format!("lower({c})"), pat.to_lowercase())
                };
                if string_mods.is_empty() && s.is_plain() {
                    let plain = s.as_plain().unwrap_or_default();
                    let plain = if cased { plain } else { plain.to_lowercase() };
                    Ok(format!("{lhs} = {}", quote(&plain)))
                } else {
                    Ok(format!("{lhs} LIKE {} ESCAPE '\\'", quote(&pat)))
                }
            }
            (_, other) => Err(format!("{field}: value {other:?} is not supported")),
        }
    }

    fn item(&mut self, item: &DetectionItem) -> Result<String, String> {
        let Some(field) = item.field.name.as_deref() else {
            return Err("keyword (field-less) detection".into());
        };
        let mods = &item.field.modifiers;
        let supported = [
            Modifier::Contains,
            Modifier::StartsWith,
            Modifier::EndsWith,
            Modifier::All,
            Modifier::Re,
            Modifier::Cidr,
            Modifier::Cased,
            Modifier::Exists,
        ];
        if let Some(m) = mods.iter().find(|m| !supported.contains(m)) {
            return Err(format!("modifier {m:?} on {field}"));
        }
        // Fields upstream rules use for things the audit event only has in the request body or
        // under another name: each mapping is an interpretation, recorded in the rule.
        let all_values_wildcard = !item.values.is_empty()
            && item
                .values
                .iter()
                .all(|v| matches!(v, SigmaValue::String(s) if s.original == "*"));
        match field {
            "hostPath" | "capabilities" if all_values_wildcard => {
                let (col, what) = if field == "hostPath" {
                    ("pod_host_paths", "a hostPath volume")
                } else {
                    ("pod_added_capabilities", "added Linux capabilities")
                };
                self.notes.push(format!(
                    "`{field}: '*'` (a field the audit event has only inside the pod spec) is read as: the pod has {what} (`{col}` not empty)"
                ));
                return Ok(format!("coalesce(cardinality({col}), 0) > 0"));
            }
            "responseStatus.code"
                if item.values.iter().all(|v| {
                    matches!(v, SigmaValue::String(s) if s.original.eq_ignore_ascii_case("allow"))
                }) =>
            {
                self.notes.push(
                    "`responseStatus.code: 'ALLOW'` (not a status code) is read as the authorizer's decision: `authz_decision = 'allow'`".into(),
                );
                return Ok("authz_decision = 'allow'".into());
            }
            _ => {}
        }
        let (name, col) = match column(field) {
            Some(c) => (field, c),
            None if field == "apiGroup" => {
                self.notes.push(
                    "`apiGroup` (not a top-level audit field) is read as `objectRef.apiGroup`"
                        .into(),
                );
                ("objectRef.apiGroup", Column::Text("api_group"))
            }
            None => return Err(format!("field {field} has no audit_events column")),
        };
        if mods.contains(&Modifier::Exists) {
            let want = match item.values.as_slice() {
                [SigmaValue::Bool(b)] => *b,
                _ => return Err(format!("{field}|exists needs true or false")),
            };
            let c = col_name(&col);
            return Ok(if want {
                format!("{c} IS NOT NULL")
            } else {
                format!("{c} IS NULL")
            });
        }
        let parts = item
            .values
            .iter()
            .map(|v| self.value(name, &col, mods, v))
            .collect::<Result<Vec<_>, _>>()?;
        let joiner = if mods.contains(&Modifier::All) {
            " AND "
        } else {
            " OR "
        };
        Ok(match parts.len() {
            0 => return Err(format!("{field}: no values")),
            1 => parts.into_iter().next().unwrap_or_default(),
            _ => format!("({})", parts.join(joiner)),
        })
    }

    fn detection(&mut self, d: &Detection) -> Result<String, String> {
        match d {
            Detection::AllOf(items) => {
                let parts = items
                    .iter()
                    .map(|i| self.item(i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(format!("({})", parts.join(" AND ")))
            }
            Detection::AnyOf(ds) => {
                let parts = ds
                    .iter()
                    .map(|d| self.detection(d))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(format!("({})", parts.join(" OR ")))
            }
            Detection::Keywords(_) => Err("keyword (field-less) detection".into()),
            _ => Err("array object-scope match (field[any]/field[all])".into()),
        }
    }
}

fn col_name(c: &Column) -> &'static str {
    match c {
        Column::Text(c) | Column::Int(c) | Column::List(c) => c,
    }
}

/// `selection_*` against detection names (Sigma's selector wildcard).
fn selector_names<'a>(pattern: &SelectorPattern, names: &'a [String]) -> Vec<&'a String> {
    names
        .iter()
        .filter(|n| match pattern {
            SelectorPattern::Them => !n.starts_with('_'),
            SelectorPattern::Pattern(p) => crate::suppress::Pattern::new(p.clone()).matches(n),
        })
        .collect()
}

fn condition(expr: &ConditionExpr, compiled: &BTreeMap<String, String>) -> Result<String, String> {
    let names: Vec<String> = compiled.keys().cloned().collect();
    Ok(match expr {
        ConditionExpr::And(xs) => format!(
            "({})",
            xs.iter()
                .map(|x| condition(x, compiled))
                .collect::<Result<Vec<_>, _>>()?
                .join(" AND ")
        ),
        ConditionExpr::Or(xs) => format!(
            "({})",
            xs.iter()
                .map(|x| condition(x, compiled))
                .collect::<Result<Vec<_>, _>>()?
                .join(" OR ")
        ),
        ConditionExpr::Not(x) => format!("NOT coalesce({}, false)", condition(x, compiled)?),
        ConditionExpr::Identifier(id) => compiled
            .get(id)
            .cloned()
            .ok_or_else(|| format!("condition names unknown detection {id}"))?,
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let matched = selector_names(pattern, &names);
            if matched.is_empty() {
                return Err(format!("`{pattern}` matches no detection"));
            }
            let parts: Vec<String> = matched.iter().map(|n| compiled[*n].clone()).collect();
            match quantifier {
                Quantifier::Any => format!("({})", parts.join(" OR ")),
                Quantifier::All => format!("({})", parts.join(" AND ")),
                Quantifier::Count(n) => {
                    return Err(format!("`{n} of` (counting selections)"));
                }
            }
        }
    })
}

/// The rule id of a Sigma file: `sigma-` + its file name (lowercase, dashes).
pub fn rule_id(file: &Path) -> String {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("rule")
        .to_lowercase();
    let slug: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("sigma-{}", slug.trim_matches('-'))
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn toml_list(items: &[String]) -> String {
    toml::Value::Array(
        items
            .iter()
            .map(|s| toml::Value::String(s.clone()))
            .collect(),
    )
    .to_string()
}

/// Compiles one parsed Sigma rule from `file`.
pub fn compile(file: &Path, rule: &SigmaRule) -> Result<Compiled, Unsupported> {
    let fail = |reason: String| Unsupported {
        file: file.display().to_string(),
        title: rule.title.clone(),
        reason,
    };
    let ls = &rule.logsource;
    if ls.product.as_deref() != Some("kubernetes") || ls.service.as_deref() != Some("audit") {
        return Err(fail(format!(
            "logsource product {:?} service {:?}: not a Kubernetes audit log",
            ls.product.as_deref().unwrap_or("-"),
            ls.service.as_deref().unwrap_or("-")
        )));
    }
    if rule.detection.timeframe.is_some() {
        return Err(fail("timeframe (aggregation) is not supported".into()));
    }
    let mut notes = Vec::new();
    let mut ctx = Ctx { notes: &mut notes };
    let mut compiled = BTreeMap::new();
    for (name, d) in &rule.detection.named {
        compiled.insert(
            name.clone(),
            ctx.detection(d)
                .map_err(|r| fail(format!("detection `{name}`: {r}")))?,
        );
    }
    let where_ = match rule.detection.conditions.as_slice() {
        [c] => condition(c, &compiled).map_err(&fail)?,
        [] => return Err(fail("no condition".into())),
        many => format!(
            "({})",
            many.iter()
                .map(|c| condition(c, &compiled))
                .collect::<Result<Vec<_>, _>>()
                .map_err(&fail)?
                .join(" OR ")
        ),
    };
    notes.sort();
    notes.dedup();
    let id = rule_id(file);
    let severity = match rule.level {
        Some(Level::Informational) | None => "info",
        Some(Level::Low) => "low",
        Some(Level::Medium) => "medium",
        Some(Level::High) => "high",
        Some(Level::Critical) => "critical",
    };
    let attack: Vec<String> = rule
        .tags
        .iter()
        .filter_map(|t| t.strip_prefix("attack."))
        .filter(|t| t.starts_with('t') && t[1..].chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|t| t.to_uppercase())
        .collect();
    let description = description(file, rule, &notes);
    let toml = rule_toml(rule, &id, severity, &description, &attack);
    // One finding per request: the final stage when the API server records it, else any
    // (exports without `stage`, and streaming requests that end at ResponseStarted).
    let sql = format!(
        "-- Sigma {}: {}\n\
         SELECT audit_id, stage_at, cluster, user_name, source_ip, verb, resource, subresource, namespace, name\n\
         FROM audit_events\n\
         WHERE coalesce(stage, 'ResponseComplete') IN ('ResponseComplete', 'ResponseStarted', 'Panic')\n  AND coalesce({where_}, false)\n",
        rule.id.as_deref().unwrap_or("-"),
        rule.title.replace('\n', " ")
    );
    Ok(Compiled {
        id,
        rule_toml: toml,
        query_sql: sql,
        notes,
    })
}

/// The rule's description: the Sigma rule's, where it came from (and its licence), and how
/// the import interpreted it.
fn description(file: &Path, rule: &SigmaRule, notes: &[String]) -> String {
    let mut description = rule
        .description
        .clone()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let _ = write!(
        description,
        "\n\nImported from Sigma rule {} ({}) by {}. Source: SigmaHQ, Detection Rule License (DRL) 1.1 \
         (https://github.com/SigmaHQ/Detection-Rule-License).",
        rule.id.as_deref().unwrap_or("without id"),
        file.file_name().and_then(|n| n.to_str()).unwrap_or(""),
        rule.author.as_deref().unwrap_or("unknown author"),
    );
    for n in notes {
        let _ = write!(description, "\nInterpretation: {n}.");
    }
    description
}

/// The `rule.toml` of an imported rule.
fn rule_toml(
    rule: &SigmaRule,
    id: &str,
    severity: &str,
    description: &str,
    attack: &[String],
) -> String {
    let mut toml = String::new();
    let _ = writeln!(
        toml,
        "# Generated by `auditlake rules import-sigma`; edit the Sigma rule and re-import."
    );
    let _ = writeln!(toml, "id = {}", toml_str(id));
    let _ = writeln!(toml, "version = 1");
    let _ = writeln!(toml, "title = {}", toml_str(&rule.title));
    let _ = writeln!(toml, "severity = {}", toml_str(severity));
    let _ = writeln!(toml, "description = {}", toml_str(description));
    let _ = writeln!(toml, "attack = {}", toml_list(attack));
    let mut tags = vec!["sigma".to_owned()];
    tags.extend(
        rule.tags
            .iter()
            .filter(|t| !t.starts_with("attack.t"))
            .cloned(),
    );
    let _ = writeln!(toml, "tags = {}", toml_list(&tags));
    let _ = writeln!(
        toml,
        "group_by = [\"user_name\", \"verb\", \"resource\", \"namespace\", \"name\"]"
    );
    let _ = writeln!(
        toml,
        "summary = {}",
        toml_str(&format!(
            "{{user_name}} {{verb}} {{resource}} {{namespace}}/{{name}} (Sigma: {})",
            rule.title
        ))
    );
    let _ = writeln!(
        toml,
        "false_positives = {}",
        toml_list(&rule.falsepositives)
    );
    let mut runbook =
        String::from("Review the evidence events: who, from where, and whether it was expected.");
    for r in &rule.references {
        let _ = write!(runbook, "\nReference: {r}");
    }
    let _ = writeln!(toml, "runbook = {}", toml_str(&runbook));
    toml
}

/// What an import did: rules written (id, folder) and rules refused with the reason.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub written: Vec<(String, PathBuf, Vec<String>)>,
    pub refused: Vec<Unsupported>,
}

/// The `*.yml`/`*.yaml` files of `paths` (files as given, directories recursively), sorted.
pub fn sigma_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        } else if paths.contains(&p) || p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Parses and compiles every Sigma file of `paths` into `out/<id>/{rule.toml,query.sql}`.
pub fn import(paths: &[PathBuf], out: &Path) -> Result<ImportReport, crate::DetectError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| crate::DetectError::Io { path, source }
    };
    let mut report = ImportReport::default();
    for file in sigma_files(paths).map_err(io(Path::new(".")))? {
        let text = std::fs::read_to_string(&file).map_err(io(&file))?;
        let collection = match rsigma_parser::parse_sigma_yaml(&text) {
            Ok(c) => c,
            Err(e) => {
                report.refused.push(Unsupported {
                    file: file.display().to_string(),
                    title: "-".into(),
                    reason: format!("not a Sigma rule: {e}"),
                });
                continue;
            }
        };
        if collection.rules.is_empty() {
            report.refused.push(Unsupported {
                file: file.display().to_string(),
                title: "-".into(),
                reason: "no detection rule (correlation and filter rules are not supported)".into(),
            });
        }
        for rule in &collection.rules {
            match compile(&file, rule) {
                Ok(c) => {
                    let dir = out.join(&c.id);
                    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                    std::fs::write(dir.join("rule.toml"), &c.rule_toml).map_err(io(&dir))?;
                    std::fs::write(dir.join("query.sql"), &c.query_sql).map_err(io(&dir))?;
                    report.written.push((c.id, dir, c.notes));
                }
                Err(u) => report.refused.push(u),
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_yaml(yaml: &str) -> Result<Compiled, Unsupported> {
        let c = rsigma_parser::parse_sigma_yaml(yaml).unwrap();
        compile(Path::new("x_rule.yml"), &c.rules[0])
    }

    #[test]
    fn modifiers_selectors_and_not_compile_to_sql() {
        let c = compile_yaml(
            r#"
title: T
id: 5b1f0e2a-test
logsource: {product: kubernetes, service: audit}
detection:
  selection_a:
    requestURI|contains|all: ['/bin/', 'sh']
    user.username|startswith: 'system:serviceaccount:'
  selection_b:
    userAgent|re: '^curl/'
  filter:
    sourceIPs: '10.0.0.1'
    responseStatus.code: [401, 403]
  condition: 1 of selection_* and not filter
level: high
tags: [attack.t1609, attack.execution]
"#,
        )
        .unwrap();
        assert_eq!(c.id, "sigma-x-rule");
        assert!(
            c.rule_toml.contains("severity = \"high\""),
            "{}",
            c.rule_toml
        );
        assert!(
            c.rule_toml.contains("attack = [\"T1609\"]"),
            "{}",
            c.rule_toml
        );
        for want in [
            "(lower(request_uri) LIKE '%/bin/%' ESCAPE '\\' AND lower(request_uri) LIKE '%sh%' ESCAPE '\\')",
            "lower(user_name) LIKE 'system:serviceaccount:%' ESCAPE '\\'",
            "regexp_like(user_agent, '(?i)^curl/')",
            "NOT coalesce((array_has(source_ips, '10.0.0.1') AND (response_code = 401 OR response_code = 403)), false)",
        ] {
            assert!(c.query_sql.contains(want), "{want}\n{}", c.query_sql);
        }
    }

    #[test]
    fn what_cannot_be_compiled_is_named() {
        let err = compile_yaml(
            "title: T\nlogsource: {product: kubernetes, service: audit}\ndetection:\n  sel:\n    verb|base64: x\n  condition: sel\n",
        )
        .unwrap_err();
        assert!(err.reason.contains("modifier Base64 on verb"), "{err}");
        let err = compile_yaml(
            "title: T\nlogsource: {product: gcp, service: gcp.audit}\ndetection:\n  sel:\n    verb: x\n  condition: sel\n",
        )
        .unwrap_err();
        assert!(err.reason.contains("not a Kubernetes audit log"), "{err}");
        let err = compile_yaml(
            "title: T\nlogsource: {product: kubernetes, service: audit}\ndetection:\n  sel:\n    spec.nodeName: x\n  condition: sel\n",
        )
        .unwrap_err();
        assert_eq!(
            err.reason,
            "detection `sel`: field spec.nodeName has no audit_events column"
        );
    }
}
