//! Tests of `auditlake.toml` loading and validation (moved out of `config.rs`).

use super::*;

#[test]
fn sample_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/auditlake.toml");
    let config = Config::load(Some(&path)).unwrap();
    assert_eq!(config.lake.path.as_deref(), Some(Path::new("lake")));
    assert_eq!(config.ingest.zstd_level.map(|l| l.get()), Some(3));
    assert_eq!(config.ingest.bulk_zstd_level.map(|l| l.get()), Some(9));
    assert_eq!(config.ingest.redact_secrets, Some(true));
    assert_eq!(config.webhook.listen.as_deref(), Some("127.0.0.1:8443"));
    assert_eq!(config.webhook.wal_max_mb.map(|n| n.get()), Some(1024));
    assert_eq!(
        config.webhook.flush_interval_secs.map(|s| s.duration()),
        Some(std::time::Duration::from_secs(10))
    );
    assert_eq!(
        config.scheduler.as_ref().and_then(|s| s.lateness_secs),
        Some(600)
    );
    assert_eq!(config.sinks.len(), 1);
    assert_eq!(config.sinks[0].kind, "stdout");
}

#[test]
fn the_scheduler_lease_ttl_defaults_to_30s_and_a_bad_one_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = |text: &str| Config::parse_at(text, dir.path()).map(|c| c.lease_ttl().unwrap());
    assert_eq!(ttl("").unwrap(), std::time::Duration::from_secs(30));
    assert_eq!(
        ttl("[scheduler]\n").unwrap(),
        std::time::Duration::from_secs(30)
    );
    assert_eq!(
        ttl("[scheduler]\nlease_ttl = '1m'\n").unwrap(),
        std::time::Duration::from_secs(60)
    );
    for bad in ["'1s'", "'soon'"] {
        let err = ttl(&format!("[scheduler]\nlease_ttl = {bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("scheduler.lease_ttl"), "{err}");
    }
}

/// Every secret-valued key takes the env/file forms; `Debug` of the whole config shows no
/// value; inline values under credential-looking names are listed for the warning.
#[test]
fn secret_keys_resolve_and_the_config_debug_shows_no_value() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sasl"), "KAFKAS3CRET\n").unwrap();
    // SAFETY: variables only this test reads.
    unsafe {
        std::env::set_var("AUDITLAKE_CONFIG_TEST_AWS", "STORAGES3CRET");
        std::env::set_var("AUDITLAKE_CONFIG_TEST_SSL", "SINKKEYS3CRET");
    }
    let text = "[lake.storage]\naws_secret_access_key = { env = 'AUDITLAKE_CONFIG_TEST_AWS' }\n\
            aws_region = 'eu-west-1'\n\
            [kafka]\nbrokers = 'b:9092'\ntopics = ['a']\n[kafka.properties]\n\
            'sasl.password' = { file = 'sasl' }\n'sasl.username' = 'auditlake'\n\
            [[sinks]]\nname = 'k'\ntype = 'kafka'\nbrokers = 'b:9092'\ntopic = 'f'\n\
            properties = { 'ssl.key.password' = { env = 'AUDITLAKE_CONFIG_TEST_SSL' } }\n\
            [[sinks]]\nname = 'w'\ntype = 'webhook'\nurl = 'https://h/x?token=QUERYS3CRET'\n\
            headers = { Authorization = 'Bearer INLINES3CRET', X-Scope-OrgID = 'team' }\n";
    let config = Config::parse_at(text, dir.path()).unwrap();
    let k = config.kafka.as_ref().unwrap();
    let props = crate::options::kafka_options(k, None).properties;
    assert!(props.contains(&("sasl.password".into(), "KAFKAS3CRET".into())));
    assert_eq!(
        config.lake.storage["aws_secret_access_key"].expose(),
        "STORAGES3CRET"
    );
    assert_eq!(
        config.sinks[0].properties["ssl.key.password"].expose(),
        "SINKKEYS3CRET"
    );
    assert_eq!(
        config.inline_secrets,
        ["sinks[1].url", "sinks[1].headers.Authorization"]
    );
    let debug = format!("{config:?}");
    for secret in [
        "STORAGES3CRET",
        "KAFKAS3CRET",
        "SINKKEYS3CRET",
        "QUERYS3CRET",
        "INLINES3CRET",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(
        debug.contains("environment variable AUDITLAKE_CONFIG_TEST_AWS"),
        "{debug}"
    );
}

#[test]
fn kafka_settings_are_checked() {
    let err = |text: &str| format!("{:#}", Config::parse(text).unwrap_err());
    assert!(err("[kafka]\nbrokers = 'b:9092'\ntopics = []").contains("kafka.topics"));
    assert!(
        err("[kafka]\nbrokers = 'b:9092'\ntopics = ['a']\ncluster = 'x/y'")
            .contains("kafka.cluster")
    );
    assert!(err("[kafka]\nbrokers = 'b:9092'\ntopics = ['a']\n[kafka.properties]\n'enable.auto.commit' = 'false'").contains("enable.auto.commit"));
    let ok = Config::parse(
        "[kafka]\nbrokers = 'b:9092'\ntopics = ['a']\ntopic_clusters = { a = 'prod' }",
    )
    .unwrap();
    assert_eq!(ok.kafka.unwrap().topic_clusters["a"], "prod");
}

#[test]
fn sink_errors_name_the_entry_and_key() {
    let err = |text: &str| format!("{:#}", Config::parse(text).unwrap_err());
    assert!(err("[[sinks]]\nname = 'a'\ntype = 'webhook'").contains("sinks[0].url"));
    assert!(err("[[sinks]]\nname = 'a'\ntype = 'pager'").contains("sinks[0].type"));
    assert!(
        err("[[sinks]]\nname = 'a'\ntype = 'stdout'\n[[sinks]]\nname = 'a'\ntype = 'stdout'")
            .contains("sinks[1].name")
    );
    assert!(
        err("[[sinks]]\nname = 'a'\ntype = 'stdout'\nmin_severity = 'urgent'")
            .contains("sinks[0].min_severity")
    );
    assert!(err("[scheduler]\nlatenes_secs = 1").contains("latenes_secs"));
}

/// The `auditlake.toml` of every ConfigMap (or ConfigMap patch) under deploy/, by file,
/// read as Kubernetes reads it: YAML, every document of each file.
fn deploy_configs() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "yaml" && e != "yml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in yaml_serde::Deserializer::from_str(&text) {
                let doc = yaml_serde::Value::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if doc["kind"] != "ConfigMap" {
                    continue;
                }
                if let Some(toml) = doc["data"]["auditlake.toml"].as_str() {
                    let name = path.strip_prefix(deploy_dir()).unwrap();
                    out.insert(name.display().to_string(), toml.to_owned());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&deploy_dir(), &mut out);
    out
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// `# `-commented lines from `# [[sinks]]` naming `name` up to the first uncommented line,
/// uncommented: the example an operator enables by deleting the `# `.
fn commented_sink(toml: &str, name: &str) -> String {
    let block: Vec<&str> = toml
        .lines()
        .skip_while(|l| l.trim() != "# [[sinks]]")
        .take_while(|l| l.trim_start().starts_with('#'))
        .map(|l| l.trim_start().trim_start_matches('#').trim_start())
        .collect();
    assert!(
        block
            .iter()
            .any(|l| l.contains(&format!("name = \"{name}\""))),
        "no commented sink {name}: {block:?}"
    );
    block.join("\n") + "\n"
}

/// The ConfigMaps in deploy/ carry configs the binary accepts.
#[test]
fn deploy_configmap_config_is_valid() {
    let configs = deploy_configs();
    assert_eq!(
        configs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["base/configmap.yaml", "object-storage/configmap-patch.yaml"]
    );
    for (file, toml) in &configs {
        Config::parse(toml).unwrap_or_else(|e| panic!("{file}: {e:#}"));
    }
    let base = &configs["base/configmap.yaml"];
    let config = Config::parse(base).unwrap();
    assert_eq!(config.webhook.listen.as_deref(), Some("0.0.0.0:8443"));
    assert!(config.webhook.client_ca.is_some());
    // Detects out of the box: the scheduler over the built-in pack, findings to stdout.
    let scheduler = config.scheduler.as_ref().expect("[scheduler]");
    assert_ne!(scheduler.enabled, Some(false));
    assert!(scheduler.rules.is_none(), "every active rule, not a subset");
    assert_ne!(config.detect.builtin_rules, Some(false));
    let sinks: Vec<(&str, &str)> = config
        .sinks
        .iter()
        .map(|s| (s.name.as_str(), s.kind.as_str()))
        .collect();
    assert_eq!(sinks, [("console", "stdout")]);
    // The commented Alertmanager sink is valid once uncommented, next to the stdout one.
    let with_am = format!("{base}\n{}", commented_sink(base, "alertmanager"));
    let with_am = Config::parse(&with_am).unwrap();
    let am = &with_am.sinks[1];
    assert_eq!(
        (am.name.as_str(), am.kind.as_str()),
        ("alertmanager", "alertmanager")
    );
    assert!(
        am.url
            .as_ref()
            .is_some_and(|u| u.expose().starts_with("http"))
    );
    // The object-storage overlay: what serve requires of a replica on a shared table.
    let replicas = Config::parse(&configs["object-storage/configmap-patch.yaml"]).unwrap();
    assert!(
        replicas
            .lake
            .path
            .as_deref()
            .is_some_and(|p| p.starts_with("s3:"))
    );
    assert!(replicas.webhook.wal_dir.is_some());
    assert!(replicas.scheduler.is_none() && replicas.reports.is_empty());
    assert_eq!(replicas.retention_policy().unwrap().days, Some(400));
}

#[test]
fn webhook_settings_are_checked_together() {
    let err = |text: &str| format!("{:#}", Config::parse(text).unwrap_err());
    assert!(err("[webhook]\ntls_cert = 'a.crt'").contains("tls_key"));
    assert!(err("[webhook]\nclient_ca = 'ca.crt'").contains("webhook.client_ca"));
    assert!(err("[webhook]\nflush_interval_secs = 0").contains("webhook.flush_interval_secs"));
    assert!(err("[webhook]\nmax_body_mb = 64\nwal_max_mb = 16").contains("webhook.max_body_mb"));
    assert!(err("[webhook]\ndefault_cluster = 'a b'").contains("webhook.default_cluster"));
    assert!(err("[webhook]\nlisten_addr = 'x'").contains("listen_addr"));
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
            Config::parse("[ingest]\nbulk_zstd_level = 0").unwrap_err()
        )
        .contains("ingest.bulk_zstd_level")
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
    // The key's name before row groups: old configs keep working.
    assert_eq!(
        Config::parse("[ingest]\nmax_file_mb = 32")
            .unwrap()
            .ingest
            .row_group_mb
            .map(|n| n.get()),
        Some(32)
    );
}
