//! The rule pack and report definitions this binary carries (compiled in by build.rs), and the
//! directories that add to or override them (`--rules-dir`, `--reports-dir`, config).

use std::path::{Path, PathBuf};

use anyhow::bail;
use auditlake_detect::{Rule, Source};
use auditlake_report::ReportDef;

use crate::config::Config;

mod built_in {
    include!(concat!(env!("OUT_DIR"), "/pack.rs"));
}

/// Where the rules and reports of a run come from, for messages ("in the built-in pack and
/// /etc/auditlake/rules").
fn place(builtin: bool, dir: Option<&Path>, what: &str) -> String {
    match (builtin, dir) {
        (true, Some(d)) => format!("the built-in {what} and {}", d.display()),
        (true, None) => format!("the built-in {what}"),
        (false, Some(d)) => d.display().to_string(),
        (false, None) => "nothing".into(),
    }
}

/// A directory given explicitly must exist: silently running only the built-in pack when a
/// path is mistyped would hide the user's own rules.
fn existing_dir(dir: Option<PathBuf>, what: &str) -> anyhow::Result<Option<PathBuf>> {
    match dir {
        Some(d) if !d.is_dir() => bail!("{what} directory {} does not exist", d.display()),
        d => Ok(d),
    }
}

/// The rules of a run: the built-in pack (unless `no_builtin` or `detect.builtin_rules =
/// false`), then the rules of `dir` (flag/env, else `detect.rules_dir`), a rule there replacing
/// the built-in rule of the same id. Also says where they came from.
pub fn rules(
    config: &Config,
    flag: Option<&Path>,
    no_builtin: bool,
    pattern: Option<&str>,
) -> anyhow::Result<(Vec<Rule>, String)> {
    let dir = existing_dir(config.rules_dir(flag), "rules")?;
    let builtin = !no_builtin && config.detect.builtin_rules != Some(false);
    let mut layers = Vec::new();
    if builtin {
        layers.push((
            Source::Embedded(&built_in::RULES),
            PathBuf::from(built_in::RULES.root),
        ));
    }
    if let Some(d) = &dir {
        layers.push((Source::Disk, d.clone()));
    }
    let where_ = place(builtin, dir.as_deref(), "rules");
    if layers.is_empty() {
        bail!(
            "no rules: the built-in pack is off (--no-builtin-rules / detect.builtin_rules = false) and no rules directory is given"
        );
    }
    Ok((auditlake_detect::load_pack(&layers, pattern)?, where_))
}

/// The report definitions: the built-in ones, then those of `dir` (flag/env, else
/// `report.reports_dir`; same id replaces). Also says where they came from.
pub fn reports(config: &Config, flag: Option<&Path>) -> anyhow::Result<(Vec<ReportDef>, String)> {
    let dir = existing_dir(config.reports_dir(flag), "reports")?;
    let builtin = auditlake_report::parse_reports(
        built_in::REPORTS
            .iter()
            .map(|(name, text)| (Path::new("<built-in reports>").join(name), *text)),
    )?;
    let mut layers = vec![builtin];
    if let Some(d) = &dir {
        layers.push(auditlake_report::load_reports(d)?);
    }
    Ok((
        auditlake_report::merge_reports(layers),
        place(true, dir.as_deref(), "reports"),
    ))
}

/// One report by id, from the same places as [`reports`].
pub fn report(config: &Config, flag: Option<&Path>, name: &str) -> anyhow::Result<ReportDef> {
    let (all, where_) = reports(config, flag)?;
    Ok(auditlake_report::find_report(all, name, &where_)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_pack_holds_every_rule_and_report_of_the_checkout() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (rules, where_) = rules(&Config::default(), None, false, None).unwrap();
        assert_eq!(where_, "the built-in rules");
        let on_disk = auditlake_detect::load_rules(&repo.join("rules"), None).unwrap();
        let ids = |r: &[Rule]| r.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&rules), ids(&on_disk));
        for (a, b) in rules.iter().zip(&on_disk) {
            assert_eq!(a.sql, b.sql, "{}", a.id);
            assert_eq!(a.params, b.params, "{}", a.id);
            assert_eq!(a.tests.len(), b.tests.len(), "{}", a.id);
        }
        assert!(
            rules[0].sql_path.starts_with("<built-in rules>/"),
            "{}",
            rules[0].sql_path.display()
        );
        let (reports, _) = reports(&Config::default(), None).unwrap();
        let on_disk = auditlake_report::load_reports(&repo.join("reports")).unwrap();
        assert_eq!(
            reports.iter().map(|r| &r.id).collect::<Vec<_>>(),
            on_disk.iter().map(|r| &r.id).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let err = rules(
            &Config::default(),
            Some(Path::new("/nonexistent/my-rules")),
            false,
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "rules directory /nonexistent/my-rules does not exist"
        );
        let err = reports(&Config::default(), Some(Path::new("/nonexistent/r"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "reports directory /nonexistent/r does not exist"
        );
    }
}
