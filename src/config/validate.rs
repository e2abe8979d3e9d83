//! `Config::validate`: the checks `Config::parse_at` runs on a parsed config that its types
//! cannot make (`values.rs` has those): keys that depend on each other, what a sink type needs,
//! names that must be unique, and the keys of array-of-tables entries (`[[sinks]]`,
//! `[[sources.object_store]]`), whose errors must name the entry (`sinks[1].type`), which
//! toml's key path does not. One helper per group of sections.

use anyhow::bail;

use super::{Config, span};
use crate::secret::Secret;

impl Config {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        self.engine(None)?;
        self.lease_ttl()?;
        self.retention_policy()?;
        self.retention_interval()?;
        self.validate_object_store_sources()?;
        self.validate_sinks()?;
        self.validate_kafka()?;
        self.validate_reports()?;
        self.validate_postgres_and_webhook()?;
        Ok(())
    }

    /// `[[sources.object_store]]`.
    fn validate_object_store_sources(&self) -> anyhow::Result<()> {
        for (i, source) in self.sources.object_store.iter().enumerate() {
            let key = format!("sources.object_store[{i}]");
            if !auditlake_ingest::objects::is_object_url(&source.url) {
                bail!(
                    "{key}.url = {:?}: not an object-store URL (s3://, gs://, az://)",
                    source.url
                );
            }
            // Entries of an array of tables are checked here, not by their types: the error
            // names the entry (`[0]`), which toml's key path does not.
            if let Some(c) = &source.cluster {
                auditlake_ingest::validate_cluster_name(c)
                    .map_err(|e| anyhow::anyhow!("{key}.cluster: {e}"))?;
            }
            if source.poll_secs == Some(0) {
                bail!("{key}.poll_secs = 0: must be at least 1");
            }
            if source.round_mb == Some(0) {
                bail!("{key}.round_mb = 0: must be at least 1");
            }
        }
        Ok(())
    }

    /// `[[sinks]]`: names, types and what each type needs.
    fn validate_sinks(&self) -> anyhow::Result<()> {
        let mut names = std::collections::HashSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            let key = format!("sinks[{i}]");
            if sink.name.is_empty()
                || !sink
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!(
                    "{key}.name = {:?}: use letters, digits, '-' and '_'",
                    sink.name
                );
            }
            if !names.insert(&sink.name) {
                bail!("{key}.name = {:?}: another sink has this name", sink.name);
            }
            match sink.kind.as_str() {
                "webhook" | "alertmanager" | "falco" => {
                    let Some(url) = sink.url.as_ref().map(Secret::expose) else {
                        bail!("{key}.url: a {} sink needs a url", sink.kind);
                    };
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        // The URL itself may be a secret (its path or query): never echo it.
                        let scheme = url.split_once("://").map_or("none", |(s, _)| s);
                        bail!(
                            "{key}.url: must be an http:// or https:// URL (its scheme is {scheme:?})"
                        );
                    }
                }
                "file" if sink.path.is_none() => bail!("{key}.path: a file sink needs a path"),
                "kafka" if sink.brokers.is_none() => {
                    bail!("{key}.brokers: a kafka sink needs brokers")
                }
                "kafka" if sink.topic.is_none() => bail!("{key}.topic: a kafka sink needs a topic"),
                "kafka" => {}
                "file" | "stdout" => {}
                other => bail!(
                    "{key}.type = {other:?}: expected stdout, file, webhook, alertmanager, falco or kafka"
                ),
            }
            if let Some(sev) = &sink.min_severity
                && !["info", "low", "medium", "high", "critical"].contains(&sev.as_str())
            {
                bail!("{key}.min_severity = {sev:?}: expected info, low, medium, high or critical");
            }
        }
        Ok(())
    }

    /// `[kafka]`.
    fn validate_kafka(&self) -> anyhow::Result<()> {
        if let Some(k) = &self.kafka {
            if k.brokers.trim().is_empty() {
                bail!("kafka.brokers: must name at least one broker");
            }
            if k.topics.is_empty() {
                bail!("kafka.topics: must name at least one topic");
            }
            for p in [
                "enable.auto.offset.store",
                "enable.auto.commit",
                "group.id",
                "bootstrap.servers",
            ] {
                if k.properties.contains_key(p) {
                    bail!(
                        "kafka.properties.\"{p}\": set by auditlake (offsets follow durability); use the [kafka] keys"
                    );
                }
            }
        }
        Ok(())
    }

    /// `[[reports]]`: schedules, windows and formats.
    fn validate_reports(&self) -> anyhow::Result<()> {
        for (i, r) in self.reports.iter().enumerate() {
            let key = format!("reports[{i}]");
            r.schedule(&key)?;
            if let Some(w) = &r.window {
                span(&format!("{key}.window"), w)?;
            }
            for f in r.formats.iter().flatten() {
                f.parse::<auditlake_report::ReportFormat>()
                    .map_err(|e| anyhow::anyhow!("{key}.formats: {e}"))?;
            }
        }
        Ok(())
    }

    /// `[postgres]` and `[webhook]` TLS, body and WAL sizes.
    fn validate_postgres_and_webhook(&self) -> anyhow::Result<()> {
        if let Some(pg) = &self.postgres {
            if pg.tls_cert.is_some() != pg.tls_key.is_some() {
                bail!("postgres.tls_cert and postgres.tls_key must be set together");
            }
            if pg.client_ca.is_some() && pg.tls_cert.is_none() {
                bail!("postgres.client_ca needs postgres.tls_cert and postgres.tls_key");
            }
        }
        let w = &self.webhook;
        if w.tls_cert.is_some() != w.tls_key.is_some() {
            bail!("webhook.tls_cert and webhook.tls_key must be set together");
        }
        if w.client_ca.is_some() && w.tls_cert.is_none() {
            bail!("webhook.client_ca needs webhook.tls_cert and webhook.tls_key (mTLS is TLS)");
        }
        if let (Some(max_body), Some(wal_max)) = (w.max_body_mb, w.wal_max_mb)
            && max_body.get() as u64 > wal_max.get()
        {
            bail!(
                "webhook.max_body_mb = {max_body} exceeds webhook.wal_max_mb = {wal_max}: no body could ever be accepted"
            );
        }
        Ok(())
    }
}
