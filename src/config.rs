//! `auditlake.toml`: every section is optional; unknown keys are errors that name the key.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use auditlake_detect::{
    PackConfig, ParamOverride, Rule, RuleOverrides, Source, Suppression, SuppressionSpec,
    Suppressions,
};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::secret::Secret;

mod sections;
mod validate;
mod values;
pub use sections::*;
pub use values::Seconds;

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
    #[serde(default)]
    pub webhook: WebhookSection,
    #[serde(default)]
    pub compaction: CompactionSection,
    /// `[retention]`: how long events are kept (forever when absent).
    pub retention: Option<RetentionSection>,
    /// `[seal]`: the key `auditlake seal` signs the chain head with, and the public key
    /// `auditlake verify --seal` checks seals against.
    #[serde(default)]
    pub seal: SealSection,
    /// `[scheduler]`: scheduled detections in `serve` (on when the section is present).
    pub scheduler: Option<SchedulerSection>,
    /// `[kafka]`: consume audit events from Kafka topics in `serve`.
    pub kafka: Option<KafkaSection>,
    /// `[[sinks]]`: where findings go.
    #[serde(default)]
    pub sinks: Vec<SinkSection>,
    #[serde(default)]
    pub report: ReportSection,
    /// `[[reports]]`: reports `serve` renders on a schedule.
    #[serde(default)]
    pub reports: Vec<ScheduledReportSection>,
    /// `[postgres]`: the read-only PostgreSQL wire-protocol endpoint (in `serve`, and `auditlake pg`).
    pub postgres: Option<PostgresSection>,
    /// `[sources]`: inputs `serve` pulls (`[[sources.object_store]]`).
    #[serde(default)]
    pub sources: SourcesSection,
    /// Directory of the config file: relative paths in it (list files) resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Secret-valued keys whose value is written inline although their name says credential
    /// (`Config::load` warns about each).
    #[serde(skip)]
    pub inline_secrets: Vec<String>,
}

impl Config {
    /// Loads `path`, or the defaults when no config file is given.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let config = Config::parse_at(&text, &base_dir)
            .with_context(|| format!("config {}", path.display()))?;
        for key in &config.inline_secrets {
            auditlake_server::log::emit(&auditlake_server::log::InlineSecret { key });
        }
        Ok(config)
    }

    /// The `[detect]` parameters and per-rule settings, list files read.
    pub fn pack_config(&self) -> anyhow::Result<PackConfig> {
        let value = |key: String, v: &toml::Value| {
            ParamOverride::from_toml(v, &self.base_dir, Source::Disk)
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

    /// `[[detect.suppressions]]`, each checked against `rules` (every rule of the pack);
    /// errors name the entry's key (`detect.suppressions[1].source_cidr`).
    pub fn suppressions(&self, rules: &[Rule]) -> anyhow::Result<Suppressions> {
        let mut list = Vec::new();
        for (i, s) in self.detect.suppressions.iter().enumerate() {
            let key = format!("detect.suppressions[{i}]");
            let Some(rule) = s.rule.clone() else {
                bail!("config `{key}.rule`: missing: which rule's findings does it suppress?");
            };
            let expires = match &s.expires {
                None => None,
                Some(toml::Value::String(t)) => Some(t.clone()),
                Some(toml::Value::Datetime(t)) => Some(t.to_string()),
                Some(other) => bail!(
                    "config `{key}.expires`: {other} is not a date (2026-12-31) or an RFC 3339 time"
                ),
            };
            let spec = SuppressionSpec {
                rule,
                actor: s.actor.clone(),
                target: s.target.clone(),
                namespace: s.namespace.clone(),
                source_cidrs: match &s.source_cidr {
                    None => Vec::new(),
                    Some(OneOrMany::One(c)) => vec![c.clone()],
                    Some(OneOrMany::Many(c)) => c.clone(),
                },
                reason: s.reason.clone().unwrap_or_default(),
                expires,
            };
            list.push(Suppression::new(&key, spec, rules)?);
        }
        Ok(Suppressions::new(list))
    }

    /// The directory of rules added to the built-in pack: flag/env, else `detect.rules_dir`;
    /// `None` when neither is given (the built-in pack alone).
    pub fn rules_dir(&self, flag: Option<&Path>) -> Option<PathBuf> {
        flag.map(Path::to_path_buf).or_else(|| {
            self.detect
                .rules_dir
                .as_ref()
                .map(|d| self.base_dir.join(d))
        })
    }

    /// The directory of reports added to the built-in ones: flag/env, else `report.reports_dir`.
    pub fn reports_dir(&self, flag: Option<&Path>) -> Option<PathBuf> {
        flag.map(Path::to_path_buf).or_else(|| {
            self.report
                .reports_dir
                .as_ref()
                .map(|d| self.base_dir.join(d))
        })
    }

    /// A config whose relative paths (secret files included) resolve against the working
    /// directory.
    #[cfg(test)]
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        Config::parse_at(text, Path::new(""))
    }

    /// Parses, resolves every secret (relative secret files against `base_dir`), validates.
    pub fn parse_at(text: &str, base_dir: &Path) -> anyhow::Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|mut e| {
            // toml's message quotes the offending line, which may hold a secret: say where it
            // is and what is wrong, not what it says.
            let at = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                format!("line {line}, column {column}: ")
            });
            e.set_input(None);
            let message = e.to_string().trim().replace('\n', " ");
            anyhow::anyhow!("{}{message}", at.unwrap_or_default())
        })?;
        config.base_dir = base_dir.to_path_buf();
        let mut inline = Vec::new();
        for (key, name, secret) in config.secrets_mut() {
            secret.resolve(&key, base_dir)?;
            let looks = match &name {
                Some(name) => crate::secret::looks_secret(name),
                None => crate::secret::url_looks_secret(secret.expose()),
            };
            if secret.is_inline() && looks {
                inline.push(key);
            }
        }
        config.inline_secrets = inline;
        config.validate()?;
        Ok(config)
    }

    /// Every secret-valued key: its config key, the name that says what it holds (a header or
    /// property name; `None` for a URL), the secret.
    fn secrets_mut(&mut self) -> Vec<(String, Option<String>, &mut Secret)> {
        fn map<'a>(
            prefix: &str,
            m: &'a mut BTreeMap<String, Secret>,
        ) -> impl Iterator<Item = (String, Option<String>, &'a mut Secret)> {
            let prefix = prefix.to_owned();
            m.iter_mut().map(move |(name, secret)| {
                let key = if name.contains('.') {
                    format!("{prefix}.\"{name}\"")
                } else {
                    format!("{prefix}.{name}")
                };
                (key, Some(name.clone()), secret)
            })
        }
        let mut out: Vec<_> = map("lake.storage", &mut self.lake.storage).collect();
        if let Some(key) = &mut self.seal.key {
            out.push(("seal.key".into(), Some("key".into()), key));
        }
        if let Some(k) = &mut self.kafka {
            out.extend(map("kafka.properties", &mut k.properties));
        }
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            let key = format!("sinks[{i}]");
            if let Some(url) = &mut sink.url {
                out.push((format!("{key}.url"), None, url));
            }
            out.extend(map(&format!("{key}.headers"), &mut sink.headers));
            out.extend(map(&format!("{key}.properties"), &mut sink.properties));
        }
        for (i, source) in self.sources.object_store.iter_mut().enumerate() {
            if let Some(storage) = &mut source.storage {
                out.extend(map(&format!("sources.object_store[{i}].storage"), storage));
            }
        }
        out
    }

    /// The scheduler's lease TTL (`[scheduler] lease_ttl`).
    pub fn lease_ttl(&self) -> anyhow::Result<std::time::Duration> {
        let Some(s) = self.scheduler.as_ref().and_then(|s| s.lease_ttl.as_ref()) else {
            return Ok(auditlake_server::alerting::LEASE_TTL);
        };
        let ttl = span("scheduler.lease_ttl", s)?;
        if ttl < chrono::TimeDelta::seconds(3) {
            bail!("scheduler.lease_ttl = {s:?}: at least 3s (it is renewed every third of it)");
        }
        Ok(ttl.to_std().expect("positive"))
    }
    /// Compaction settings; the writer's encoding settings apply to merged files.
    pub fn compact_options(
        &self,
        writer: auditlake_ingest::WriterOptions,
    ) -> auditlake_ingest::CompactOptions {
        let c = &self.compaction;
        let d = auditlake_ingest::CompactOptions::default();
        auditlake_ingest::CompactOptions {
            small_file_bytes: c
                .small_file_mb
                .map_or(d.small_file_bytes, |mb| mb.get() << 20),
            min_small_files: c
                .min_small_files
                .map_or(d.min_small_files, |n| n.get() as usize),
            min_age_secs: c
                .min_age_minutes
                .map_or(d.min_age_secs, |m| i64::from(m) * 60),
            writer,
        }
    }

    /// A path from the config file, relative to the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The lake directory: flag/env, else `lake.path`, else `./lake`.
    pub fn lake_path(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| self.lake.path.clone())
            .unwrap_or_else(|| PathBuf::from("lake"))
    }

    /// The lake (`--lake`, else `lake.path`, else `./lake`): a local directory or an
    /// object-store URL with `[lake.storage]`.
    /// The retention policy of `[retention]` (keep everything when the section is absent).
    pub fn retention_policy(
        &self,
    ) -> anyhow::Result<auditlake_ingest::lake::retention::RetentionPolicy> {
        use auditlake_ingest::lake::retention::{Hold, RetentionPolicy};
        let mut policy = RetentionPolicy::default();
        let Some(r) = &self.retention else {
            return Ok(policy);
        };
        for (i, h) in r.holds.iter().enumerate() {
            auditlake_ingest::lake::validate_cluster_name(&h.cluster)
                .with_context(|| format!("retention.holds[{i}].cluster"))?;
            if h.reason.trim().is_empty() {
                bail!(
                    "retention.holds[{i}].reason: say why {} is held (a case or ticket), it is recorded",
                    h.cluster
                );
            }
            policy.holds.push(Hold {
                cluster: h.cluster.clone(),
                reason: h.reason.clone(),
            });
        }
        policy.days = r.days.map(NonZeroU32::get);
        policy.cluster_days = r
            .clusters
            .iter()
            .map(|(cluster, days)| (cluster.to_string(), days.get()))
            .collect();
        if let Some(grace) = &r.vacuum_grace {
            policy.vacuum_grace = span("retention.vacuum_grace", grace)?;
        }
        Ok(policy)
    }

    /// How often `serve` runs retention and the vacuum; `None` when it should not (`0s`). It
    /// runs without `[retention]` too: nothing expires then, but the files compaction replaced
    /// are deleted once `vacuum_grace` has passed, and only this job deletes them.
    pub fn retention_interval(&self) -> anyhow::Result<Option<std::time::Duration>> {
        let every = match self.retention.as_ref().and_then(|r| r.interval.as_ref()) {
            Some(s) => span("retention.interval", s)?,
            None => chrono::TimeDelta::hours(1),
        };
        Ok((every > chrono::TimeDelta::zero()).then(|| every.to_std().expect("non-negative")))
    }

    /// The read cache of object-store lakes (`[query] cache_dir`, `cache_mb`).
    pub fn read_cache(&self) -> Option<auditlake_ingest::lake::cache::CacheConfig> {
        let mut cache = auditlake_ingest::lake::cache::CacheConfig::default();
        if let Some(dir) = &self.query.cache_dir {
            cache.dir = self.resolve(dir);
        }
        match self.query.cache_mb {
            Some(0) => None,
            Some(mb) => Some(auditlake_ingest::lake::cache::CacheConfig {
                max_bytes: mb << 20,
                ..cache
            }),
            None => Some(cache),
        }
    }

    pub fn lake(&self, flag: Option<&Path>) -> anyhow::Result<auditlake_ingest::Lake> {
        let path = self.lake_path(flag);
        let spec = path
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("lake path {} is not valid UTF-8", path.display()))?;
        let staging = self.lake.staging_dir.as_deref().map(|d| self.resolve(d));
        Ok(auditlake_ingest::Lake::open_staged(
            spec,
            &exposed(&self.lake.storage),
            staging.as_deref(),
        )?)
    }
}

/// Store settings as `object_store` takes them: the secrets' values, in memory only.
pub fn exposed(storage: &BTreeMap<String, Secret>) -> std::collections::HashMap<String, String> {
    storage
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect()
}

impl Config {
    /// The query engine: `--engine` (`flag`) over `[query] engine`, local by default.
    pub fn engine(&self, flag: Option<&str>) -> anyhow::Result<auditlake_query::Engine> {
        let (key, value) = match (flag, &self.query.engine) {
            (Some(v), _) => ("--engine", v),
            (None, Some(v)) => ("query.engine", v.as_str()),
            (None, None) => return Ok(auditlake_query::Engine::Local),
        };
        auditlake_query::Engine::parse(value).with_context(|| key.to_owned())
    }
}

/// A span (`90m`, `1h30m`, `7d`, `0s`) of config key or flag `key`.
pub(crate) fn span(key: &str, value: &str) -> anyhow::Result<chrono::TimeDelta> {
    auditlake_detect::rule::parse_duration(value).map_err(|e| {
        anyhow::anyhow!("{key} = {value:?}: {e}; expected a span like 90m, 1h30m or 7d")
    })
}

#[cfg(test)]
mod tests;
