//! `auditlake serve` as kube-apiserver's audit webhook backend: the real sender's POSTs, TLS /
//! mTLS / tokens, backpressure, and kill -9 in the middle of a stream.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::*;

/// A running `auditlake serve` on an ephemeral port.
pub struct Server {
    child: Child,
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(config: &Path, lake: &Path) -> Server {
        Server::start_with(bin(), config, lake)
    }

    /// As [`start`](Self::start), from a prepared command (its environment).
    pub fn start_with(mut cmd: Command, config: &Path, lake: &Path) -> Server {
        let mut child = cmd
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0", "--lake"])
            .arg(lake)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start auditlake serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(url) = line.split("listening url=").nth(1) {
                        let _ = tx.send(url.split_whitespace().next().unwrap().to_owned());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("serve did not start: {:?}", log.lock().unwrap());
            }
        };
        Server { child, url, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/metrics` over plain HTTP.
    pub fn metrics(&self, rt: &tokio::runtime::Runtime) -> String {
        rt.block_on(async {
            plain_client()
                .get(format!("{}/metrics", self.url))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM and wait: graceful shutdown flushes everything into the lake.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50)); // let the log thread drain
                return (status, self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "serve did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// reqwest is built without a bundled crypto provider: use ring, like the server.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn plain_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// An audit event as the API server's webhook sends it inside an EventList (no kind/apiVersion).
pub fn event(id: &str) -> String {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    format!(
        r#"{{"level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/team-a/secrets/db","verb":"get","user":{{"username":"alice@example.com","groups":["dev"]}},"sourceIPs":["10.1.2.3"],"userAgent":"kubectl/v1.31.0","objectRef":{{"resource":"secrets","namespace":"team-a","name":"db","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{now}","stageTimestamp":"{now}"}}"#
    )
}

pub fn event_list(ids: &[String]) -> String {
    let items: Vec<String> = ids.iter().map(|id| event(id)).collect();
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    )
}

pub(crate) fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("auditlake.toml");
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn replaying_the_real_api_servers_posts_yields_exactly_its_audit_log() {
    let Some(td) = shared_testdata() else { return };
    let real = td.join("real-apiserver-metadata");
    let posts = real_webhook_posts(&td);
    assert_eq!(posts.len(), 22);
    let expected: BTreeSet<(String, String)> = std::fs::read_to_string(real.join("audit.log"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["auditID"].as_str().unwrap().to_owned(),
                v["stage"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(expected.len(), 1132);

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), "[webhook]\nflush_interval_secs = 0.2\n");
    let rt = runtime();
    // Twice: the second replay is the sender re-delivering every batch; it must add nothing.
    for round in 0..2 {
        let server = Server::start(&config, &lake);
        let client = plain_client();
        for post in &posts {
            let headers: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(
                    post.to_string_lossy()
                        .replace(".body.json", ".headers.json"),
                )
                .unwrap(),
            )
            .unwrap();
            let path = headers["path"].as_str().unwrap();
            assert_eq!(path, "/audit?timeout=30s");
            let body = std::fs::read(post).unwrap();
            let status = rt.block_on(async {
                client
                    .post(format!("{}{path}", server.url))
                    .header("Content-Type", "application/json")
                    .header("User-Agent", "Go-http-client/1.1")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            });
            assert_eq!(status, 200, "round {round}, {}", post.display());
        }
        let (status, log) = server.terminate();
        assert!(status.success(), "{log}");
        assert!(log.contains("shutdown_finished"), "{log}");
    }
    let rows = query(&lake, "SELECT audit_id, stage, cluster FROM audit_events");
    assert_eq!(
        rows.len(),
        1132,
        "no more, no fewer rows than the audit.log has events"
    );
    let got: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["audit_id"].as_str().unwrap().to_owned(),
                r["stage"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(rows.iter().all(|r| r["cluster"] == "default"));
    // The WAL is empty after a graceful shutdown.
    let wal: Vec<_> = std::fs::read_dir(lake.join("_state/wal"))
        .unwrap()
        .collect();
    assert!(wal.is_empty(), "{wal:?}");
}

pub(crate) struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1, a client certificate with CN `prod` from the
    /// CA, and one with CN `prod` from an unrelated CA.
    pub(crate) fn generate(dir: &Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "auditlake test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let rogue_key = KeyPair::generate().unwrap();
        let mut rogue = CertificateParams::new(Vec::<String>::new()).unwrap();
        rogue.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        rogue
            .distinguished_name
            .push(DnType::CommonName, "rogue CA");
        let rogue_issuer = Issuer::new(rogue, rogue_key);

        let leaf = |sans: Vec<String>, cn: &str, by: &Issuer<'_, KeyPair>, name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.signed_by(&key, by).unwrap();
            std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
        leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "auditlake",
            &issuer,
            "server",
        );
        leaf(vec![], "prod", &issuer, "client-prod");
        leaf(vec![], "dev", &issuer, "client-dev");
        leaf(vec![], "prod", &rogue_issuer, "client-rogue");
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A client trusting the test CA, optionally presenting `identity` (`client-prod`, …).
    fn client(&self, identity: Option<&str>) -> reqwest::Client {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        install_crypto_provider();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.path("ca.crt")).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some(name) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_file(self.path(&format!("{name}.crt"))).unwrap()],
                    PrivateKeyDer::from_pem_file(self.path(&format!("{name}.key"))).unwrap(),
                )
                .unwrap(),
        };
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .tls_backend_preconfigured(config)
            .build()
            .unwrap()
    }
}

#[test]
fn tls_mtls_and_tokens_admit_the_right_sender_for_the_right_cluster_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    std::fs::write(
        dir.path().join("tokens.csv"),
        "# token,cluster\ndev-token-0123456789abcdef,dev\n",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        "[webhook]\ntls_cert = \"server.crt\"\ntls_key = \"server.key\"\nclient_ca = \"ca.crt\"\ntokens_file = \"tokens.csv\"\n",
    );
    let lake = dir.path().join("lake");
    let server = Server::start(&config, &lake);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let rt = runtime();
    let post = |client: &reqwest::Client, path: &str, token: Option<&str>, id: &str| {
        let mut req = client
            .post(format!("{}{path}", server.url))
            .header("Content-Type", "application/json")
            .body(event_list(&[id.to_owned()]));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        rt.block_on(async { req.send().await.map(|r| r.status().as_u16()) })
    };
    let anonymous = pki.client(None);
    let prod = pki.client(Some("client-prod"));
    let rogue = pki.client(Some("client-rogue"));

    assert_eq!(
        post(&anonymous, "/audit", None, "no-credential").unwrap(),
        401
    );
    assert_eq!(
        post(
            &anonymous,
            "/audit",
            Some("wrong-token-0123456789abc"),
            "wrong-token"
        )
        .unwrap(),
        401
    );
    assert_eq!(
        post(
            &anonymous,
            "/audit/prod",
            Some("dev-token-0123456789abcdef"),
            "token-other-cluster"
        )
        .unwrap(),
        403
    );
    assert_eq!(
        post(
            &anonymous,
            "/audit",
            Some("dev-token-0123456789abcdef"),
            "token-ok"
        )
        .unwrap(),
        200
    );
    assert_eq!(post(&prod, "/audit", None, "cert-ok").unwrap(), 200);
    assert_eq!(
        post(&prod, "/audit/prod", None, "cert-ok-path").unwrap(),
        200
    );
    assert_eq!(
        post(&prod, "/audit/dev", None, "cert-other-cluster").unwrap(),
        403
    );
    // A certificate from another CA fails the TLS handshake: no HTTP exchange at all.
    let err = post(&rogue, "/audit", None, "rogue-cert").unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    // Plain HTTP to the HTTPS port gets nowhere.
    let plain = server.url.replace("https://", "http://");
    let plain_result = rt.block_on(async {
        plain_client()
            .post(format!("{plain}/audit"))
            .bearer_auth("dev-token-0123456789abcdef")
            .body(event_list(&["plain-http".into()]))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert!(!matches!(plain_result, Ok(200)), "{plain_result:?}");
    // Probes need no credential.
    let health = rt.block_on(async {
        anonymous
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(health, 200);
    let metrics = rt.block_on(async {
        anonymous
            .get(format!("{}/metrics", server.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        metrics.contains(r#"auditlake_webhook_requests_refused_total{reason="unauthenticated"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"auditlake_webhook_requests_refused_total{reason="forbidden"} 2"#),
        "{metrics}"
    );

    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("tls_handshake_failed"), "{log}");
    let rows = query(
        &lake,
        "SELECT cluster, audit_id FROM audit_events ORDER BY cluster, audit_id",
    );
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["cluster"].as_str().unwrap().to_owned(),
                r["audit_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("dev".to_owned(), "token-ok".to_owned()),
            ("prod".to_owned(), "cert-ok".to_owned()),
            ("prod".to_owned(), "cert-ok-path".to_owned()),
        ],
        "only the admitted requests are stored"
    );
}

#[test]
fn over_the_wal_limit_the_server_answers_503_with_retry_after_and_keeps_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[webhook]\nwal_max_mb = 1\nmax_body_mb = 1\nflush_interval_secs = 3600\nretry_after_secs = 3\n",
    );
    let lake = dir.path().join("lake");
    let server = Server::start(&config, &lake);
    let rt = runtime();
    let client = plain_client();
    let mut acked = BTreeSet::new();
    let mut refused = None;
    for batch in 0..40 {
        let ids: Vec<String> = (0..200).map(|i| format!("b{batch:02}-{i:03}")).collect();
        let resp = rt.block_on(async {
            client
                .post(format!("{}/audit/prod", server.url))
                .body(event_list(&ids))
                .send()
                .await
                .unwrap()
        });
        match resp.status().as_u16() {
            200 => acked.extend(ids),
            503 => {
                refused = Some((
                    resp.headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    rt.block_on(resp.text()).unwrap(),
                ));
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let (retry_after, body) = refused.expect("the 1 MiB WAL limit was never hit");
    assert_eq!(retry_after.as_deref(), Some("3"));
    assert!(body.contains("write-ahead log"), "{body}");
    let ready = rt.block_on(async {
        client
            .get(format!("{}/readyz", server.url))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(ready, 503, "not ready while refusing data");
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    let ids: BTreeSet<String> = query(&lake, "SELECT audit_id FROM audit_events")
        .iter()
        .map(|r| r["audit_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, acked);
}

#[test]
fn kill_9_mid_stream_loses_no_acknowledged_batch_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Frequent small flushes, so the kill lands between WAL appends, Parquet commits and
    // checkpoints alike.
    let config = write_config(
        dir.path(),
        "[webhook]\nflush_interval_secs = 0.3\nflush_rows = 3000\n[ingest]\nmax_file_rows = 2000\n",
    );
    let lake = dir.path().join("lake");
    let server = Server::start(&config, &lake);
    let url = format!("{}/audit/prod", server.url);
    let rt = runtime();
    let acked: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
            rt.spawn(async move {
                let client = plain_client();
                let mut batch = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let ids: Vec<String> = (0..100)
                        .map(|i| format!("s{s}-b{batch:05}-{i:03}"))
                        .collect();
                    batch += 1;
                    match client.post(&url).body(event_list(&ids)).send().await {
                        Ok(r) if r.status() == 200 => {
                            let mut a = acked.lock().unwrap();
                            for id in ids {
                                *a.entry(id).or_default() += 1;
                            }
                        }
                        // Connection reset by the kill: not acknowledged, so no promise.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    // Let several flushes and checkpoints happen, then kill without warning.
    let started = Instant::now();
    while acked.lock().unwrap().len() < 20_000 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        let _ = rt.block_on(s);
    }
    let acked: BTreeSet<String> = acked.lock().unwrap().keys().cloned().collect();
    assert!(
        acked.len() >= 5_000,
        "too little was acknowledged before the kill: {}",
        acked.len()
    );

    // Restart: the WAL is replayed before anything else; a sender re-delivers one batch.
    let server = Server::start(&config, &lake);
    let redelivered: Vec<String> = (0..100).map(|i| format!("s0-b00000-{i:03}")).collect();
    let status = rt.block_on(async {
        plain_client()
            .post(format!("{}/audit/prod", server.url))
            .body(event_list(&redelivered))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");

    let rows = query(
        &lake,
        "SELECT audit_id, count(*) AS n FROM audit_events GROUP BY audit_id",
    );
    let in_lake: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| {
            (
                r["audit_id"].as_str().unwrap().to_owned(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    let duplicated: Vec<_> = in_lake.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        duplicated.is_empty(),
        "rows present more than once: {:?}",
        &duplicated[..duplicated.len().min(5)]
    );
    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !in_lake.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!(
        "kill -9: {} acknowledged, {} in the lake (the rest were in flight, never acknowledged)",
        acked.len(),
        in_lake.len()
    );
}
