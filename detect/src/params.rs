//! Rule parameters: typed values with defaults in `rule.toml`, overridden by config, rendered
//! into a rule's SQL as literals so the SQL itself never changes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{DetectError, line_of};
use crate::source::Source;

/// One parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
}

pub type Params = BTreeMap<String, ParamValue>;

impl ParamValue {
    /// From TOML: a string, number, boolean, array of strings, or `{ file = "path" }` (one list
    /// item per line; blank lines and `#` comments skipped; relative to `base` in `source`).
    pub fn from_toml(
        value: &toml::Value,
        base: &Path,
        source: Source,
    ) -> Result<ParamValue, String> {
        Ok(match value {
            toml::Value::String(s) => ParamValue::Str(s.clone()),
            toml::Value::Integer(i) => ParamValue::Int(*i),
            toml::Value::Float(f) => ParamValue::Float(*f),
            toml::Value::Boolean(b) => ParamValue::Bool(*b),
            toml::Value::Array(items) => ParamValue::List(
                items
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s.clone()),
                        other => Err(format!("list items must be strings, found {other}")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(t) => match (t.get("file"), t.len()) {
                (Some(toml::Value::String(file)), 1) => {
                    let path = base.join(file);
                    let text = source
                        .read_to_string(&path)
                        .map_err(|e| format!("reading list file {}: {e}", path.display()))?;
                    ParamValue::List(
                        text.lines()
                            .map(|l| l.split('#').next().unwrap_or("").trim())
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    )
                }
                _ => return Err("a table value must be { file = \"path\" }".into()),
            },
            other => return Err(format!("unsupported value {other}")),
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            ParamValue::Str(_) => "a string",
            ParamValue::Int(_) => "an integer",
            ParamValue::Float(_) => "a number",
            ParamValue::Bool(_) => "a boolean",
            ParamValue::List(_) => "a list of strings",
        }
    }

    /// Same kind as `other` (an integer is accepted where a float is declared).
    pub fn same_kind(&self, other: &ParamValue) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            || matches!((self, other), (ParamValue::Int(_), ParamValue::Float(_)))
    }

    /// The value as a SQL literal.
    pub fn to_sql(&self) -> String {
        match self {
            ParamValue::Str(s) => quote(s),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Float(f) => format!("{f:?}"),
            ParamValue::Bool(b) => b.to_string(),
            // A typed list even when empty, so array_has/array_has_any plan the same either way.
            ParamValue::List(items) => format!(
                "arrow_cast(make_array({}), 'List(Utf8)')",
                items
                    .iter()
                    .map(|s| quote(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    pub fn is_empty_list(&self) -> bool {
        matches!(self, ParamValue::List(l) if l.is_empty())
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Str(s) => write!(f, "{s:?}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::List(items) => write!(f, "{items:?}"),
        }
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Replaces every `{{name}}` in `sql` with its parameter's literal. An unknown name is the rule's
/// fault: the error carries its line in `sql_path`.
pub fn render_sql(sql: &str, params: &Params, sql_path: &Path) -> Result<String, DetectError> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    let mut consumed = 0;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(DetectError::rule(
                sql_path,
                line_of(sql, consumed + open),
                "unclosed `{{`",
            ));
        };
        let name = after[..close].trim();
        let value = params.get(name).ok_or_else(|| {
            DetectError::rule(
                sql_path,
                line_of(sql, consumed + open),
                format!(
                    "unknown parameter `{name}` (declare it under [params] in rule.toml; known: {})",
                    params.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        out.push_str(&value.to_sql());
        let advance = open + 2 + close + 2;
        consumed += advance;
        rest = &rest[advance..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What config says about one rule.
#[derive(Debug, Clone, Default)]
pub struct RuleOverrides {
    pub enabled: Option<bool>,
    pub params: Params,
}

/// Config for the whole pack: parameters for every rule that declares them, and per-rule
/// overrides (keyed by rule id).
#[derive(Debug, Clone, Default)]
pub struct PackConfig {
    pub params: Params,
    pub rules: BTreeMap<String, RuleOverrides>,
}

impl PackConfig {
    /// Checks every per-rule override names a rule and a parameter it declares, with the
    /// declared kind; global parameters must be declared by at least one rule.
    pub fn validate(&self, rules: &[crate::Rule]) -> Result<(), DetectError> {
        for (id, o) in &self.rules {
            let Some(rule) = rules.iter().find(|r| &r.id == id) else {
                return Err(DetectError::Config {
                    key: format!("detect.rules.{id}"),
                    message: "no rule with this id".into(),
                });
            };
            for (name, value) in &o.params {
                check_kind(
                    rule,
                    name,
                    value,
                    &format!("detect.rules.{id}.params.{name}"),
                )?;
            }
        }
        for (name, value) in &self.params {
            let declared: Vec<_> = rules
                .iter()
                .filter(|r| r.params.contains_key(name))
                .collect();
            if declared.is_empty() {
                return Err(DetectError::Config {
                    key: format!("detect.params.{name}"),
                    message: "no rule declares this parameter".into(),
                });
            }
            for rule in declared {
                check_kind(rule, name, value, &format!("detect.params.{name}"))?;
            }
        }
        Ok(())
    }

    /// The parameters `rule` runs with: its defaults, then global values, then its own overrides.
    pub fn params_for(&self, rule: &crate::Rule) -> Params {
        let mut params = rule.params.clone();
        for (name, value) in &self.params {
            if let Some(slot) = params.get_mut(name) {
                *slot = value.clone();
            }
        }
        if let Some(o) = self.rules.get(&rule.id) {
            for (name, value) in &o.params {
                params.insert(name.clone(), value.clone());
            }
        }
        params
    }

    /// Whether `rule` runs: config's `enabled`, else the rule's, and every `requires` list set.
    pub fn is_active(&self, rule: &crate::Rule, params: &Params) -> bool {
        let enabled = self
            .rules
            .get(&rule.id)
            .and_then(|o| o.enabled)
            .unwrap_or(rule.enabled);
        enabled && missing_requirements(rule, params).is_empty()
    }
}

/// The `requires` parameters of `rule` that are empty in `params`.
pub fn missing_requirements<'a>(rule: &'a crate::Rule, params: &Params) -> Vec<&'a str> {
    rule.requires
        .iter()
        .filter(|name| {
            params
                .get(name.as_str())
                .is_none_or(ParamValue::is_empty_list)
        })
        .map(String::as_str)
        .collect()
}

fn check_kind(
    rule: &crate::Rule,
    name: &str,
    value: &ParamValue,
    key: &str,
) -> Result<(), DetectError> {
    match rule.params.get(name) {
        None => Err(DetectError::Config {
            key: key.into(),
            message: format!(
                "rule {} has no parameter `{name}` (it has: {})",
                rule.id,
                rule.params.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }),
        Some(default) if !value.same_kind(default) => Err(DetectError::Config {
            key: key.into(),
            message: format!(
                "must be {}, like the rule's default {default}",
                default.kind()
            ),
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_literals_and_escapes_quotes() {
        let mut p = Params::new();
        p.insert("u".into(), ParamValue::Str("o'brien".into()));
        p.insert("n".into(), ParamValue::Int(10));
        p.insert("l".into(), ParamValue::List(vec!["a".into(), "b'c".into()]));
        p.insert("e".into(), ParamValue::List(vec![]));
        let sql = render_sql(
            "SELECT * FROM t WHERE u = {{u}} AND n >= {{ n }} AND array_has({{l}}, x) AND NOT array_has({{e}}, y)",
            &p,
            Path::new("q.sql"),
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT * FROM t WHERE u = 'o''brien' AND n >= 10 AND array_has(arrow_cast(make_array('a', 'b''c'), 'List(Utf8)'), x) AND NOT array_has(arrow_cast(make_array(), 'List(Utf8)'), y)"
        );
    }

    #[test]
    fn unknown_parameter_names_the_line() {
        let err = render_sql(
            "SELECT 1\nWHERE x = {{nope}}",
            &Params::new(),
            Path::new("r/query.sql"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("r/query.sql:2: unknown parameter `nope`"),
            "{msg}"
        );
    }

    #[test]
    fn list_from_file_skips_comments() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tor.txt"),
            "# exits\n185.220.101.47\n\n10.0.0.0/8 # lab\n",
        )
        .unwrap();
        let v: toml::Value =
            toml::from_str::<toml::Table>("x = { file = \"tor.txt\" }").unwrap()["x"].clone();
        assert_eq!(
            ParamValue::from_toml(&v, dir.path(), Source::Disk).unwrap(),
            ParamValue::List(vec!["185.220.101.47".into(), "10.0.0.0/8".into()])
        );
    }
}
