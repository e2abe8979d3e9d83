//! Rule parameters: typed values with defaults in `rule.toml`, overridden by config, rendered
//! into a rule's SQL as literals so the SQL itself never changes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{DetectError, line_of};
use crate::source::Source;

/// Why a parameter value in `rule.toml` or the config is not one: the author's to fix. The
/// caller names the key.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error("list items must be strings, found {0}")]
    ListItem(String),
    /// The OS error is part of the message, not a source: the config shows this error as
    /// `config `KEY`: {error}`.
    #[error("reading list file {}: {error}", path.display())]
    ListFile {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("`{{ append = … }}` extends a rule's default: it belongs in config, not here")]
    AppendInRule,
    #[error("a table value must be {{ file = \"path\" }}")]
    Table,
    #[error("unsupported value {0}")]
    Unsupported(String),
    #[error("`append` takes a list of strings or {{ file = \"path\" }}")]
    AppendNotList,
}

impl ParamError {
    /// A parameter is always its author's (a rule's or the config's).
    pub fn fault(&self) -> auditlake_ingest::Fault {
        auditlake_ingest::Fault::Caller
    }
}

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
    ) -> Result<ParamValue, ParamError> {
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
                        other => Err(ParamError::ListItem(other.to_string())),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(t) => match (t.get("file"), t.len()) {
                (Some(toml::Value::String(file)), 1) => {
                    let path = base.join(file);
                    let text =
                        source
                            .read_to_string(&path)
                            .map_err(|error| ParamError::ListFile {
                                path: path.clone(),
                                error,
                            })?;
                    ParamValue::List(
                        text.lines()
                            .map(|l| l.split('#').next().unwrap_or("").trim())
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    )
                }
                _ if t.contains_key("append") => {
                    return Err(ParamError::AppendInRule);
                }
                _ => return Err(ParamError::Table),
            },
            other => return Err(ParamError::Unsupported(other.to_string())),
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

/// What config says about one parameter: a value that replaces the rule's, or items added to
/// the rule's list (`excluded_users = { append = ["ci-bot"] }`), so a user extends the
/// defaults without copying them (and without losing the defaults a new release adds).
#[derive(Debug, Clone, PartialEq)]
pub enum ParamOverride {
    Set(ParamValue),
    Append(Vec<String>),
}

impl ParamOverride {
    /// A config value: anything [`ParamValue::from_toml`] takes, or `{ append = LIST }` where
    /// LIST is an array of strings or `{ file = "path" }`.
    pub fn from_toml(
        value: &toml::Value,
        base: &Path,
        source: Source,
    ) -> Result<ParamOverride, ParamError> {
        match value {
            toml::Value::Table(t) if t.len() == 1 && t.contains_key("append") => {
                match ParamValue::from_toml(&t["append"], base, source)? {
                    ParamValue::List(items) => Ok(ParamOverride::Append(items)),
                    _ => Err(ParamError::AppendNotList),
                }
            }
            v => ParamValue::from_toml(v, base, source).map(ParamOverride::Set),
        }
    }

    /// The value `current` becomes.
    fn apply_to(&self, current: &mut ParamValue) {
        match (self, current) {
            (ParamOverride::Set(v), slot) => *slot = v.clone(),
            (ParamOverride::Append(items), ParamValue::List(list)) => {
                for i in items {
                    if !list.contains(i) {
                        list.push(i.clone());
                    }
                }
            }
            // `validate` refuses appending to a parameter that is not a list.
            (ParamOverride::Append(_), _) => {}
        }
    }
}

/// What config says about one rule.
#[derive(Debug, Clone, Default)]
pub struct RuleOverrides {
    pub enabled: Option<bool>,
    pub params: BTreeMap<String, ParamOverride>,
}

/// Config for the whole pack: parameters for every rule that declares them, and per-rule
/// overrides (keyed by rule id).
#[derive(Debug, Clone, Default)]
pub struct PackConfig {
    pub params: BTreeMap<String, ParamOverride>,
    pub rules: BTreeMap<String, RuleOverrides>,
}

impl PackConfig {
    /// Checks every per-rule override names a rule and a parameter it declares, with the
    /// declared kind (`append` only to lists); global parameters must be declared by at least
    /// one rule.
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

    /// The parameters `rule` runs with: its defaults, then global values, then its own
    /// overrides; an `append` extends the list as it stands at that point.
    pub fn params_for(&self, rule: &crate::Rule) -> Params {
        let mut params = rule.params.clone();
        for (name, value) in &self.params {
            if let Some(slot) = params.get_mut(name) {
                value.apply_to(slot);
            }
        }
        if let Some(o) = self.rules.get(&rule.id) {
            for (name, value) in &o.params {
                if let Some(slot) = params.get_mut(name) {
                    value.apply_to(slot);
                }
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
    value: &ParamOverride,
    key: &str,
) -> Result<(), DetectError> {
    let bad = |message: String| DetectError::Config {
        key: key.into(),
        message,
    };
    match (rule.params.get(name), value) {
        (None, _) => Err(bad(format!(
            "rule {} has no parameter `{name}` (it has: {})",
            rule.id,
            rule.params.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
        (Some(default), ParamOverride::Set(value)) if !value.same_kind(default) => {
            Err(bad(format!(
                "must be {}, like the rule's default {default}",
                default.kind()
            )))
        }
        (Some(ParamValue::List(_)), ParamOverride::Append(_)) => Ok(()),
        (Some(default), ParamOverride::Append(_)) => Err(bad(format!(
            "`append` extends a list, but rule {}'s `{name}` is {}",
            rule.id,
            default.kind()
        ))),
        (Some(_), ParamOverride::Set(_)) => Ok(()),
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
    fn append_extends_the_default_and_set_replaces_it() {
        let rule = crate::Rule::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/deployment-patched"),
        )
        .unwrap();
        let ParamValue::List(defaults) = rule.params["control_plane_users"].clone() else {
            panic!("control_plane_users is a list");
        };
        let v = |t: &str| {
            let table: toml::Table = toml::from_str(&format!("x = {t}")).unwrap();
            ParamOverride::from_toml(&table["x"], Path::new("."), Source::Disk).unwrap()
        };
        let mut pack = PackConfig::default();
        pack.params.insert(
            "control_plane_users".into(),
            v(r#"{ append = ["global-bot"] }"#),
        );
        pack.rules.insert(
            rule.id.clone(),
            RuleOverrides {
                enabled: None,
                params: [(
                    "control_plane_users".to_owned(),
                    v(r#"{ append = ["ci-bot", "global-bot"] }"#),
                )]
                .into(),
            },
        );
        pack.validate(std::slice::from_ref(&rule)).unwrap();
        let mut want = defaults.clone();
        want.extend(["global-bot".to_owned(), "ci-bot".to_owned()]);
        assert_eq!(
            pack.params_for(&rule)["control_plane_users"],
            ParamValue::List(want)
        );

        pack.params
            .insert("control_plane_users".into(), v(r#"["only-this"]"#));
        pack.rules.clear();
        assert_eq!(
            pack.params_for(&rule)["control_plane_users"],
            ParamValue::List(vec!["only-this".into()])
        );

        // Appending to a non-list, or in a rule file, is refused with the key.
        let first_seen = crate::Rule::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/forbidden-unusual-user-agent"),
        )
        .unwrap();
        let mut pack = PackConfig::default();
        pack.params
            .insert("baseline_days".into(), v(r#"{ append = ["x"] }"#));
        let err = pack.validate(&[first_seen]).unwrap_err().to_string();
        assert!(
            err.starts_with("config `detect.params.baseline_days`: `append` extends a list"),
            "{err}"
        );
        let table: toml::Table = toml::from_str(r#"x = { append = ["a"] }"#).unwrap();
        assert!(
            ParamValue::from_toml(&table["x"], Path::new("."), Source::Disk)
                .unwrap_err()
                .to_string()
                .contains("belongs in config")
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
