//! `auditlake.toml`: every section is optional; unknown keys are errors that name the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use auditlake_detect::{PackConfig, ParamValue, RuleOverrides};

use anyhow::{Context, bail};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub lake: LakeSection,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub query: QuerySection,
    #[serde(default)]
    pub detect: DetectSection,
    /// Directory of the config file: relative paths in it (list files) resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectSection {
    /// Rule pack directory (default `rules`).
    pub rules_dir: Option<PathBuf>,
    /// Parameters for every rule that declares them (e.g. `trusted_admin_groups`).
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// Per-rule settings, keyed by rule id.
    #[serde(default)]
    pub rules: BTreeMap<String, DetectRuleSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectRuleSection {
    pub enabled: Option<bool>,
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeSection {
    /// Lake directory.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// Cluster name for `auditlake ingest` when `--cluster` is not given.
    pub cluster: Option<String>,
    /// Redact Secret values in bodies (default true).
    pub redact_secrets: Option<bool>,
    /// Decode threads (default: one per core).
    pub decode_threads: Option<usize>,
    /// Roll a file at this many rows (default 1 000 000).
    pub max_file_rows: Option<usize>,
    /// Roll a file when its buffered data reaches this many MiB (default 48).
    pub max_file_mb: Option<usize>,
    /// Bound on buffered data across partitions, MiB (default 96).
    pub max_buffer_mb: Option<usize>,
    /// Rows per Parquet row group (default 65 536).
    pub row_group_rows: Option<usize>,
    /// zstd level 1–22 (default 3).
    pub zstd_level: Option<i32>,
    /// Lines longer than this many MiB are quarantined without being held in memory (default 256).
    pub max_line_mb: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySection {
    /// Threads per query (default: one per core).
    pub target_partitions: Option<usize>,
    /// Evaluate filters during the Parquet scan (default true).
    pub pushdown_filters: Option<bool>,
}

impl Config {
    /// Loads `path`, or the defaults when no config file is given.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut config =
            Config::parse(&text).with_context(|| format!("config {}", path.display()))?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(config)
    }

    /// The `[detect]` parameters and per-rule settings, list files read.
    pub fn pack_config(&self) -> anyhow::Result<PackConfig> {
        let value = |key: String, v: &toml::Value| {
            ParamValue::from_toml(v, &self.base_dir)
                .map_err(|m| anyhow::anyhow!("config `{key}`: {m}"))
        };
        let mut pack = PackConfig::default();
        for (name, v) in &self.detect.params {
            pack.params
                .insert(name.clone(), value(format!("detect.params.{name}"), v)?);
        }
        for (id, r) in &self.detect.rules {
            let mut o = RuleOverrides {
                enabled: r.enabled,
                ..Default::default()
            };
            for (name, v) in &r.params {
                o.params.insert(
                    name.clone(),
                    value(format!("detect.rules.{id}.params.{name}"), v)?,
                );
            }
            pack.rules.insert(id.clone(), o);
        }
        Ok(pack)
    }

    /// The rule pack directory: flag/env, else `detect.rules_dir`, else `./rules`.
    pub fn rules_dir(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| {
                self.detect
                    .rules_dir
                    .as_ref()
                    .map(|d| self.base_dir.join(d))
            })
            .unwrap_or_else(|| PathBuf::from("rules"))
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(level) = self.ingest.zstd_level
            && !(1..=22).contains(&level)
        {
            bail!("ingest.zstd_level = {level}: must be between 1 and 22");
        }
        if let Some(cluster) = &self.ingest.cluster {
            auditlake_ingest::validate_cluster_name(cluster).context("ingest.cluster")?;
        }
        for (key, value) in [
            ("ingest.max_file_rows", self.ingest.max_file_rows),
            ("ingest.max_file_mb", self.ingest.max_file_mb),
            ("ingest.max_buffer_mb", self.ingest.max_buffer_mb),
            ("ingest.row_group_rows", self.ingest.row_group_rows),
            ("ingest.max_line_mb", self.ingest.max_line_mb),
            ("ingest.decode_threads", self.ingest.decode_threads),
            ("query.target_partitions", self.query.target_partitions),
        ] {
            if value == Some(0) {
                bail!("{key} = 0: must be at least 1");
            }
        }
        Ok(())
    }

    /// The lake directory: flag/env, else `lake.path`, else `./lake`.
    pub fn lake_path(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| self.lake.path.clone())
            .unwrap_or_else(|| PathBuf::from("lake"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/auditlake.toml");
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.lake.path.as_deref(), Some(Path::new("lake")));
        assert_eq!(config.ingest.zstd_level, Some(3));
        assert_eq!(config.ingest.redact_secrets, Some(true));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[ingest]\nzstd_levle = 3\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("zstd_levle") && msg.contains("line 2"),
            "{msg}"
        );
        let err = Config::parse("[lakes]\npath = 'x'\n").unwrap_err();
        assert!(format!("{err:#}").contains("lakes"), "{err:#}");
    }

    #[test]
    fn bad_values_name_the_key() {
        assert!(
            format!(
                "{:#}",
                Config::parse("[ingest]\nzstd_level = 40").unwrap_err()
            )
            .contains("ingest.zstd_level")
        );
        assert!(
            format!(
                "{:#}",
                Config::parse("[ingest]\ncluster = 'a/b'").unwrap_err()
            )
            .contains("ingest.cluster")
        );
        assert!(
            format!(
                "{:#}",
                Config::parse("[ingest]\nmax_file_rows = 0").unwrap_err()
            )
            .contains("ingest.max_file_rows")
        );
        assert!(
            format!(
                "{:#}",
                Config::parse("[ingest]\nredact_secrets = 'yes'").unwrap_err()
            )
            .contains("redact_secrets")
        );
    }
}
