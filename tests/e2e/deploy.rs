//! The manifests in deploy/: every YAML parses, every kustomization builds from files that
//! exist, the alerting rules query only series `auditlake serve` exports (scraped from a running
//! one), and the monitoring and network objects point at ports and labels that exist.
//! (The ConfigMaps' `auditlake.toml` is loaded by `deploy_configmap_config_is_valid` in
//! src/config.rs, with the binary's own config parser.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use yaml_serde::Value;

use crate::webhook::{Server, runtime, write_config};
use crate::*;

fn deploy_dir() -> PathBuf {
    repo().join("deploy")
}

/// Every document of every YAML file under deploy/, with its file.
fn documents() -> Vec<(PathBuf, Value)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, Value)>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).unwrap();
                for doc in yaml_serde::Deserializer::from_str(&text) {
                    let value = Value::deserialize(doc)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    if !value.is_null() {
                        out.push((path.clone(), value));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&deploy_dir(), &mut out);
    out
}

fn of_kind<'a>(docs: &'a [(PathBuf, Value)], kind: &str) -> Vec<&'a (PathBuf, Value)> {
    docs.iter().filter(|(_, d)| d["kind"] == kind).collect()
}

fn str_list(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().unwrap()).collect())
        .unwrap_or_default()
}

#[test]
fn deploy_every_yaml_document_is_a_kubernetes_object() {
    let docs = documents();
    assert!(docs.len() >= 14, "{} documents", docs.len());
    for (path, doc) in &docs {
        let kind = doc["kind"].as_str();
        assert!(
            doc["apiVersion"].as_str().is_some() && kind.is_some(),
            "{}: a document without apiVersion/kind",
            path.display()
        );
        if !matches!(kind, Some("Kustomization" | "Component")) {
            assert!(
                doc["metadata"]["name"].as_str().is_some(),
                "{}: {kind:?} without metadata.name",
                path.display()
            );
        }
    }
    for kind in [
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "StatefulSet",
        "ConfigMap",
    ] {
        assert!(!of_kind(&docs, kind).is_empty(), "no {kind} in deploy/");
    }
}

/// What kustomize would refuse, checked without it: a listed file or directory that does not
/// exist, an overlay inside its own base (kustomize: "cycle detected: candidate root contains
/// visited root"), a manifest no kustomization lists.
#[test]
fn deploy_kustomizations_reference_what_exists() {
    let docs = documents();
    let mut listed = BTreeSet::new();
    let mut overlays = 0;
    for (path, k) in docs
        .iter()
        .filter(|(_, d)| matches!(d["kind"].as_str(), Some("Kustomization" | "Component")))
    {
        let dir = path.parent().unwrap();
        let name = path.display();
        for entry in str_list(&k["resources"])
            .into_iter()
            .chain(str_list(&k["components"]))
        {
            let target = dir.join(entry);
            assert!(target.exists(), "{name}: {entry} does not exist");
            let target = target.canonicalize().unwrap();
            if target.is_dir() {
                assert!(
                    target.join("kustomization.yaml").is_file(),
                    "{name}: {entry} has no kustomization.yaml"
                );
                assert!(
                    !dir.canonicalize().unwrap().starts_with(&target),
                    "{name}: {entry} contains this overlay (kustomize refuses the cycle)"
                );
                overlays += 1;
            } else {
                listed.insert(target);
            }
        }
        if let Some(components) = k["components"].as_sequence() {
            for c in components {
                let k = read_kustomization(&dir.join(c.as_str().unwrap()));
                assert_eq!(k["kind"].as_str(), Some("Component"), "{name}: {c:?}");
            }
        }
        for patch in k["patches"].as_sequence().into_iter().flatten() {
            let p = patch["path"].as_str().expect("patches entries with a path");
            assert!(dir.join(p).is_file(), "{name}: patch {p} does not exist");
            listed.insert(dir.join(p).canonicalize().unwrap());
        }
    }
    assert!(overlays >= 4, "{overlays} kustomization references");
    for (path, doc) in &docs {
        if !matches!(doc["kind"].as_str(), Some("Kustomization" | "Component")) {
            assert!(
                listed.contains(&path.canonicalize().unwrap()),
                "{} is in no kustomization",
                path.display()
            );
        }
    }
    // kustomize itself, where it is installed (kubectl carries it).
    let Ok(out) = std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
    else {
        eprintln!("skipping `kubectl kustomize`: kubectl is not installed");
        return;
    };
    assert!(out.status.success());
    for overlay in ["base", "webhook", "object-storage", "ballista"] {
        let out = std::process::Command::new("kubectl")
            .arg("kustomize")
            .arg(deploy_dir().join(overlay))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize deploy/{overlay}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = String::from_utf8(out.stdout).unwrap();
        let kinds: BTreeSet<String> = yaml_serde::Deserializer::from_str(&rendered)
            .map(|d| {
                Value::deserialize(d).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert!(
            kinds.contains("StatefulSet") && kinds.contains("NetworkPolicy"),
            "{kinds:?}"
        );
        assert_eq!(
            kinds.contains("PrometheusRule"),
            overlay != "base",
            "deploy/{overlay}: {kinds:?}"
        );
        // The Ballista overlay adds a scheduler and executors next to serve, over the same lake.
        assert_eq!(
            kinds.contains("Deployment"),
            overlay == "ballista",
            "deploy/{overlay}: {kinds:?}"
        );
        if overlay == "ballista" {
            for name in ["ballista-scheduler", "ballista-executor"] {
                assert!(
                    rendered.contains(&format!("name: {name}\n")),
                    "deploy/ballista has no {name}"
                );
            }
            assert!(
                rendered.contains("ballista://ballista-scheduler.auditlake.svc:50050"),
                "executors point at the scheduler's Service"
            );
            ballista_metrics_are_scraped(&rendered);
        }
    }
}

/// Both Ballista Deployments serve `/metrics` on the port the PodMonitor names, the annotations
/// point at, and their NetworkPolicy admits.
fn ballista_metrics_are_scraped(rendered: &str) {
    let docs: Vec<Value> = yaml_serde::Deserializer::from_str(rendered)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let monitor = find("PodMonitor", "ballista");
    let selected: Vec<&str> = monitor["spec"]["selector"]["matchExpressions"][0]["values"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    for name in ["ballista-scheduler", "ballista-executor"] {
        assert!(selected.contains(&name), "the PodMonitor misses {name}");
        let pod = &find("Deployment", name)["spec"]["template"];
        let container = &pod["spec"]["containers"][0];
        let port = container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == endpoint["port"])
            .unwrap_or_else(|| panic!("{name} has no port {:?}", endpoint["port"]))["containerPort"]
            .as_u64()
            .unwrap();
        let args: Vec<&str> = container["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let listen = args
            .iter()
            .position(|a| *a == "--metrics-listen")
            .map(|i| args[i + 1])
            .unwrap_or_else(|| panic!("{name} has no --metrics-listen"));
        assert!(
            listen.ends_with(&format!(":{port}")),
            "{name}: {listen} vs {port}"
        );
        assert_eq!(
            pod["metadata"]["annotations"]["prometheus.io/port"],
            port.to_string().as_str()
        );
        let admitted = find("NetworkPolicy", name)["spec"]["ingress"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|rule| {
                rule["from"].is_null()
                    && rule["ports"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .any(|p| p["port"].as_u64() == Some(port))
            });
        assert!(
            admitted,
            "{name}'s NetworkPolicy keeps Prometheus out of {port}"
        );
    }
}

fn read_kustomization(dir: &Path) -> Value {
    yaml_serde::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap()).unwrap()
}

/// The alerts divide by the WAL bound a running `serve` exports, and every unlabelled series
/// they use is in its very first scrape. (That each expression uses only series `serve` exports,
/// labelled families included, is checked in server/src/metrics.rs, where every family can be
/// made to show.)
#[test]
fn deploy_serve_exports_what_the_alerts_need_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[webhook]\nwal_max_mb = 96\n");
    let server = Server::start(&config, &dir.path().join("lake"));
    let scraped = server.metrics(&runtime());
    server.terminate();
    let value = |series: &str| -> f64 {
        scraped
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{series} ")))
            .unwrap_or_else(|| panic!("no {series} in\n{scraped}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(value("auditlake_wal_max_bytes"), (96u64 << 20) as f64);
    assert_eq!(value("auditlake_wal_bytes"), 0.0);
    assert_eq!(value("auditlake_pipeline_healthy"), 1.0);
    assert_eq!(value("auditlake_wal_damaged_records_total"), 0.0);
    let rules =
        std::fs::read_to_string(deploy_dir().join("monitoring/prometheusrule.yaml")).unwrap();
    for series in [
        "auditlake_wal_bytes / auditlake_wal_max_bytes",
        "auditlake_pipeline_healthy == 0",
        "auditlake_wal_damaged_records_total",
    ] {
        assert!(rules.contains(series), "no alert on {series}");
    }
}

/// The ServiceMonitor scrapes a port the Service has, with the TLS Secret the pod mounts; the
/// NetworkPolicy selects the pods and admits every port they listen on.
#[test]
fn deploy_monitoring_and_network_objects_match_the_workload() {
    // The base and the monitoring component (the overlays' patches are partial objects).
    let docs: Vec<(PathBuf, Value)> = documents()
        .into_iter()
        .filter(|(p, _)| {
            p.starts_with(deploy_dir().join("base"))
                || p.starts_with(deploy_dir().join("monitoring"))
        })
        .collect();
    let one = |kind: &str| {
        let found = of_kind(&docs, kind);
        assert_eq!(found.len(), 1, "{kind}");
        let (_, doc) = found[0];
        doc
    };
    let (service, sts, monitor, policy) = (
        one("Service"),
        one("StatefulSet"),
        one("ServiceMonitor"),
        one("NetworkPolicy"),
    );
    let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
    let matches = |selector: &Value, labels: &Value| {
        let selector = selector.as_mapping().expect("matchLabels");
        !selector.is_empty()
            && selector
                .iter()
                .all(|(k, v)| &labels[k.as_str().unwrap()] == v)
    };
    assert!(matches(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    assert!(matches(
        &policy["spec"]["podSelector"]["matchLabels"],
        pod_labels
    ));
    let service_ports: Vec<&str> = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let tls_secret = sts["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap()["secret"]["secretName"]
        .clone();
    for endpoint in monitor["spec"]["endpoints"].as_sequence().unwrap() {
        let port = endpoint["port"].as_str().unwrap();
        assert!(service_ports.contains(&port), "ServiceMonitor port {port}");
        assert_eq!(endpoint["path"], "/metrics");
        assert_eq!(endpoint["tlsConfig"]["ca"]["secret"]["name"], tls_secret);
    }
    let admitted: BTreeSet<u64> = policy["spec"]["ingress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_sequence().unwrap())
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    for container in sts["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap()
    {
        for port in container["ports"].as_sequence().unwrap() {
            let n = port["containerPort"].as_u64().unwrap();
            assert!(
                admitted.contains(&n),
                "NetworkPolicy does not admit port {n}"
            );
        }
    }
    let egress: BTreeSet<u64> = policy["spec"]["egress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_sequence().unwrap())
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    // DNS, object storage and HTTPS sinks, Alertmanager.
    assert!(
        [53, 443, 9093].iter().all(|p| egress.contains(p)),
        "{egress:?}"
    );
}
