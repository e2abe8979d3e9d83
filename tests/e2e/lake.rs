//! The lake as a Delta table: tamper evidence (`verify`), migration of a Parquet-only lake, and
//! an object-store lake on a real S3-protocol server process (moto) read back by delta-rs's
//! Python package and Polars.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::*;

/// Copies a lake directory (to tamper with a copy and keep the original).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn data_files(lake: &Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out)
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p)
            }
        }
    }
    let mut out = Vec::new();
    walk(&lake.join("audit_events"), &mut out);
    out.sort();
    out
}

/// `auditlake verify --json` on a lake: (exit code, report).
fn verify(lake: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = run(bin().args(["verify", "--json", "--lake", lake]).args(extra));
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), report)
}

fn problems(report: &serde_json::Value) -> Vec<(String, String)> {
    report["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["kind"].as_str().unwrap().to_owned(),
                        p["object"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn verify_passes_an_intact_lake_and_names_each_kind_of_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // Three commits of data after the table's creation: two clusters, then a second batch.
    ingest(&lake, "prod", &[&repo().join("samples/audit.log")]);
    ingest(&lake, "staging", &[&repo().join("samples/audit.log")]);
    let (code, report) = verify(lake.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["intact"], true);
    assert_eq!(report["commits"], 3, "{report}");
    let files = data_files(&lake);
    assert_eq!(report["files_hashed"], files.len() as u64, "{report}");
    let rel = |p: &Path| {
        p.strip_prefix(lake.join("audit_events"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let victim = rel(&files[0]);

    // Each attack on a fresh copy, each named by what it touched.
    let case = |name: &str, attack: &dyn Fn(&Path)| -> Vec<(String, String)> {
        let copy = dir.path().join(name);
        copy_dir(&lake, &copy);
        attack(&copy);
        let (code, report) = verify(copy.to_str().unwrap(), &["--grace", "0s"]);
        assert_eq!(code, 1, "{name}: {report}");
        assert_eq!(report["intact"], false, "{name}");
        problems(&report)
    };
    let modified = case("modified", &|l| {
        let path = l.join("audit_events").join(&victim);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    });
    assert_eq!(modified, [("modified file".to_owned(), victim.clone())]);

    let deleted = case("deleted", &|l| {
        std::fs::remove_file(l.join("audit_events").join(&victim)).unwrap();
    });
    assert_eq!(deleted, [("missing file".to_owned(), victim.clone())]);

    let injected_rel = victim.replace("part-", "part-injected-");
    let injected = case("injected", &|l| {
        std::fs::copy(
            l.join("audit_events").join(&victim),
            l.join("audit_events").join(&injected_rel),
        )
        .unwrap();
    });
    assert_eq!(
        injected,
        [("injected file".to_owned(), injected_rel.clone())]
    );

    let commit1 = "_delta_log/00000000000000000001.json".to_owned();
    let rewritten = case("rewritten", &|l| {
        let path = l.join("audit_events").join(&commit1);
        let text = std::fs::read_to_string(&path).unwrap();
        // Hide a file from the table: drop its add action (what someone erasing evidence does).
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| !line.contains("\"add\""))
            .collect();
        assert!(kept.len() < text.lines().count());
        std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    });
    assert!(
        rewritten.contains(&("rewritten commit".to_owned(), commit1.clone())),
        "{rewritten:?}"
    );

    let dropped = case("dropped-commit", &|l| {
        std::fs::remove_file(l.join("audit_events").join(&commit1)).unwrap();
    });
    assert!(
        dropped.contains(&("missing commit".to_owned(), commit1.clone())),
        "{dropped:?}"
    );

    // A young unknown file may be an upload whose commit is in flight: not reported by default.
    let copy = dir.path().join("young");
    copy_dir(&lake, &copy);
    std::fs::copy(
        copy.join("audit_events").join(&victim),
        copy.join("audit_events").join(&injected_rel),
    )
    .unwrap();
    assert_eq!(verify(copy.to_str().unwrap(), &[]).0, 0);
}

#[test]
fn migrate_turns_a_parquet_lake_into_a_delta_table_with_the_same_rows_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod", &[&repo().join("samples/audit.log")]);
    let rows = count(&lake, "audit_events");
    assert!(rows > 0);
    let out = run(bin()
        .current_dir(repo())
        .args(["detect", "--store", "--lake"])
        .arg(&lake));
    assert_eq!(out.status.code(), Some(1), "findings exist");
    let findings_sql = "SELECT finding_id, revision, rule_id, actor, target, date FROM findings_history ORDER BY finding_id, revision";
    let findings = query(&lake, findings_sql);
    assert!(!findings.is_empty());
    // What an earlier version left: the same Hive directories of Parquet, no logs.
    std::fs::remove_dir_all(lake.join("audit_events/_delta_log")).unwrap();
    std::fs::remove_dir_all(lake.join("findings/_delta_log")).unwrap();
    let out = run(bin().args([
        "query",
        "--lake",
        lake.to_str().unwrap(),
        "SELECT count(*) FROM audit_events",
    ]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auditlake migrate"), "{err}");
    // Writers refuse too: a new table beside the old files would hide them.
    let out = run(bin()
        .args([
            "ingest",
            "--lake",
            lake.to_str().unwrap(),
            "--cluster",
            "prod",
        ])
        .arg(repo().join("samples/audit.log")));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("auditlake migrate"));

    let first = run(bin().args(["migrate", "--lake", lake.to_str().unwrap()]));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(count(&lake, "audit_events"), rows);
    assert_eq!(
        query(&lake, findings_sql),
        findings,
        "the same findings, every revision"
    );
    assert_eq!(verify(lake.to_str().unwrap(), &[]).0, 0);
    let log = std::fs::read_dir(lake.join("audit_events/_delta_log"))
        .unwrap()
        .count();
    let findings_log = std::fs::read_dir(lake.join("findings/_delta_log"))
        .unwrap()
        .count();
    let second = run(bin().args(["migrate", "--lake", lake.to_str().unwrap()]));
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already a Delta table"));
    assert_eq!(
        std::fs::read_dir(lake.join("audit_events/_delta_log"))
            .unwrap()
            .count(),
        log,
        "a second run commits nothing"
    );
    assert_eq!(
        std::fs::read_dir(lake.join("findings/_delta_log"))
            .unwrap()
            .count(),
        findings_log,
        "nor to the findings"
    );
    // And ingestion carries on, deduplicating against the migrated files.
    let again = ingest(&lake, "prod", &[&repo().join("samples/audit.log")]);
    assert_eq!(again["rows_written"], 0);
}

/// The S3-protocol server process and the Python readers, or `None` (with a message) where they
/// are not installed. `.ci/run` installs them and sets AUDITLAKE_REQUIRE_S3.
pub(crate) fn s3_tools() -> Option<()> {
    let ok = Command::new("python3")
        .args(["-c", "import moto.server, deltalake, polars, pyarrow"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("AUDITLAKE_REQUIRE_S3").is_none(),
            "AUDITLAKE_REQUIRE_S3 is set but `python3 -c 'import moto.server, deltalake, polars, pyarrow'` fails"
        );
        eprintln!(
            "skipping: the S3 server (pip install 'moto[server]') or the Delta readers (pip install deltalake polars) are not installed; .ci/run installs them"
        );
    }
    ok.then_some(())
}

pub(crate) struct S3Server {
    _process: KillOnDrop,
    pub(crate) endpoint: String,
}

impl S3Server {
    pub(crate) fn start() -> Self {
        let port = free_port();
        let process = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let process = KillOnDrop(process);
        wait_for_port(port, std::time::Duration::from_secs(30), "moto S3 server");
        S3Server {
            _process: process,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    pub(crate) fn create_bucket(&self, bucket: &str) {
        let status = Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import urllib.request as u; u.urlopen(u.Request('{}/{bucket}', method='PUT'))",
                    self.endpoint
                ),
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The binary, pointed at this server.
    pub(crate) fn bin(&self) -> Command {
        let mut cmd = bin();
        self.env(&mut cmd);
        cmd
    }

    /// `auditlake query --format json` over the lake at `url`: the rows.
    pub(crate) fn query(&self, url: &str, sql: &str) -> Vec<serde_json::Value> {
        let mut q = self.bin();
        run_ok(q.args(["query", "--format", "json", "--lake", url, sql]))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_s3_lake_holds_the_real_log_exactly_and_other_engines_read_the_same_table() {
    let Some(data) = shared_testdata() else {
        return;
    };
    if s3_tools().is_none() {
        return;
    }
    let s3 = S3Server::start();
    s3.create_bucket("evidence");
    let url = "s3://evidence/lakes/prod";
    let log = data.join("real-apiserver-metadata/audit.log");
    let ingest_s3 = || {
        let mut cmd = s3.bin();
        let out = run_ok(
            cmd.args(["ingest", "--json", "--lake", url, "--cluster", "real"])
                .arg(&log),
        );
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let first = ingest_s3();
    assert_eq!(first["events"], 1132, "{first}");
    assert_eq!(first["rows_written"], 1132, "{first}");
    // The same log again: the table is the dedup index, on S3 too.
    let second = ingest_s3();
    assert_eq!(second["rows_written"], 0, "{second}");

    let rows = s3.query(
        url,
        "SELECT count(*) AS n, count(DISTINCT audit_id) AS ids FROM audit_events",
    );
    assert_eq!(rows[0]["n"], 1132);

    // delta-rs's Python package and Polars read the same table from the same server.
    let script = format!(
        r#"
import json, deltalake, polars as pl
opts = {{"AWS_ENDPOINT_URL": "{ep}", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}}
t = deltalake.DeltaTable("{url}/audit_events", storage_options=opts)
a = t.to_pyarrow_table()
df = pl.read_delta("{url}/audit_events", storage_options=opts)
print(json.dumps({{"rows": a.num_rows, "columns": a.column_names, "polars_rows": df.height,
  "polars_panics": df.filter(pl.col("stage") == "Panic").height, "version": t.version()}}))
"#,
        ep = s3.endpoint
    );
    let out = run_ok(Command::new("python3").args(["-c", &script]));
    let other: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(other["rows"], 1132, "{other}");
    assert_eq!(other["polars_rows"], 1132, "{other}");
    let columns: Vec<&str> = other["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in [
        "audit_id",
        "stage",
        "user_name",
        "stage_at",
        "cluster",
        "date",
        "hour",
    ] {
        assert!(columns.contains(&c), "{c} in {columns:?}");
    }
    let ours = s3.query(
        url,
        "SELECT count(*) AS n FROM audit_events WHERE stage = 'Panic'",
    );
    assert_eq!(other["polars_panics"], ours[0]["n"]);

    // The detection pack reads the S3 lake as it reads a local one: the same findings.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("no-warmup.toml");
    std::fs::write(&cfg, "[detect.params]\nbaseline_days = 0\n").unwrap();
    let local = dir.path().join("lake");
    ingest(&local, "real", &[&log]);
    let findings = |lake: &str| -> std::collections::BTreeSet<String> {
        let mut cmd = s3.bin();
        let out = run(cmd.args([
            "detect",
            "--format",
            "json",
            "--config",
            cfg.to_str().unwrap(),
            "--lake",
            lake,
        ]));
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let f: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{} | {} | {}", f["rule_id"], f["actor"], f["target"])
            })
            .collect()
    };
    let on_s3 = findings(url);
    assert!(!on_s3.is_empty());
    assert_eq!(on_s3, findings(local.to_str().unwrap()));
    // Stored findings of an object-storage lake go to the bucket (not a staging directory) and
    // the findings table reads them from there.
    let mut store = s3.bin();
    let out = run(store.args([
        "detect",
        "--store",
        "--config",
        cfg.to_str().unwrap(),
        "--lake",
        url,
    ]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("as retro-hunt in s3://evidence/lakes/prod/findings"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: std::collections::BTreeSet<String> = s3
        .query(url, "SELECT rule_id, actor, target, origin FROM findings")
        .into_iter()
        .map(|f| {
            assert_eq!(f["origin"], "retro-hunt");
            format!("{} | {} | {}", f["rule_id"], f["actor"], f["target"])
        })
        .collect();
    assert_eq!(stored, on_s3);

    // Tamper evidence on the bucket: intact, then a rewritten object is named.
    let mut v = s3.bin();
    let out = run(v.args(["verify", "--json", "--lake", url]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let script = format!(
        r#"
import boto3
s3 = boto3.client("s3", endpoint_url="{ep}", aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="evidence", Prefix="lakes/prod/audit_events/cluster=")["Contents"])
body = bytearray(s3.get_object(Bucket="evidence", Key=keys[0])["Body"].read())
body[len(body) // 2] ^= 1
s3.put_object(Bucket="evidence", Key=keys[0], Body=bytes(body))
print(keys[0][len("lakes/prod/audit_events/"):])
"#,
        ep = s3.endpoint
    );
    let victim = run_ok(Command::new("python3").args(["-c", &script]));
    let mut v = s3.bin();
    let out = run(v.args(["verify", "--json", "--lake", url]));
    assert_eq!(out.status.code(), Some(1), "{report}");
    let after: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        problems(&after),
        [("modified file".to_owned(), victim.trim().to_owned())]
    );

    // Retention on the bucket: every partition past one day (as of 2030) leaves the table in
    // one commit, the files are deleted (grace 0s), and delta-rs's reader agrees on both tables.
    let cfg = dir.path().join("retention.toml");
    std::fs::write(&cfg, "[retention]\ndays = 1\nvacuum_grace = \"0s\"\n").unwrap();
    let mut r = s3.bin();
    let out = run_ok(
        r.args(["retention", "--json", "--lake", url, "--config"])
            .arg(&cfg)
            .args(["--as-of", "2030-01-01T00:00:00Z"]),
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let removed: u64 = report["expired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(removed, 1132, "{report}");
    assert!(
        !report["vacuumed"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let script = format!(
        r#"
import json, deltalake, polars as pl
opts = {{"AWS_ENDPOINT_URL": "{ep}", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}}
events = deltalake.DeltaTable("{url}/audit_events", storage_options=opts).to_pyarrow_table().num_rows
log = pl.read_delta("{url}/retention_log", storage_options=opts)
print(json.dumps({{"events": events, "expired_rows": int(log.filter(pl.col("action") == "expire")["rows"].sum())}}))
"#,
        ep = s3.endpoint
    );
    let out = run_ok(Command::new("python3").args(["-c", &script]));
    let other: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(other["events"], 0, "{other}");
    assert_eq!(other["expired_rows"], 1132, "{other}");
    let mut v = s3.bin();
    let out = run(v.args(["verify", "--json", "--lake", url]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A seal of the bucket covers both tables: deleting retention_log's newest commit (the
    // record of what retention removed) is invisible to the chain, and named with the seal.
    let key = dir.path().join("seal.key");
    let out = run(bin().arg("seal").arg("--generate-key").arg(&key));
    let public = String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let mut sealer = s3.bin();
    let seal = run_ok(
        sealer
            .arg("seal")
            .arg("--key")
            .arg(&key)
            .args(["--lake", url]),
    );
    let seal_file = dir.path().join("seal.json");
    std::fs::write(&seal_file, &seal).unwrap();
    let payload: serde_json::Value = serde_json::from_str(
        serde_json::from_str::<serde_json::Value>(&seal).unwrap()["payload"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let log_head = payload["heads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["table"] == "retention_log")
        .expect("retention_log is sealed")["version"]
        .as_u64()
        .unwrap();
    let with_seal = |s3: &S3Server| {
        let mut v = s3.bin();
        run(v
            .args(["verify", "--json", "--lake", url, "--seal"])
            .arg(&seal_file)
            .args(["--public-key", &public]))
    };
    assert_eq!(with_seal(&s3).status.code(), Some(0));
    let script = format!(
        r#"
import boto3
s3 = boto3.client("s3", endpoint_url="{ep}", aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
s3.delete_object(Bucket="evidence", Key="lakes/prod/retention_log/_delta_log/{log_head:020}.json")
"#,
        ep = s3.endpoint
    );
    run_ok(Command::new("python3").args(["-c", &script]));
    let out = with_seal(&s3);
    assert_eq!(out.status.code(), Some(1));
    let after: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        problems(&after).contains(&(
            "missing commit".to_owned(),
            format!("retention_log/_delta_log/{log_head:020}.json")
        )),
        "{after}"
    );
}

/// `auditlake retention --json` with a config: the report.
fn retention(lake: &Path, config: &Path, extra: &[&str]) -> serde_json::Value {
    let out = run_ok(
        bin()
            .args(["retention", "--json", "--lake"])
            .arg(lake)
            .arg("--config")
            .arg(config)
            .args(extra),
    );
    serde_json::from_str(&out).unwrap()
}

fn partitions(report: &serde_json::Value, key: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["cluster"].as_str().unwrap().to_owned(),
                format!(
                    "{} {}",
                    p["date"].as_str().unwrap(),
                    p["hour"].as_str().unwrap()
                ),
                p["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn retention_removes_exactly_the_expired_unheld_partitions_records_them_and_vacuums_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let sample = repo().join("samples/audit.log");
    for cluster in ["prod", "staging", "held"] {
        ingest(&lake, cluster, &[&sample]);
    }
    let rows = |cluster: &str| count(&lake, &format!("audit_events WHERE cluster = '{cluster}'"));
    let per_cluster = rows("prod");
    assert!(per_cluster > 3000);
    let hours = query(
        &lake,
        "SELECT DISTINCT date, hour FROM audit_events WHERE cluster = 'prod' ORDER BY 1, 2",
    );
    let prod_files = data_files(&lake)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("cluster=prod/"))
        .count();
    let files_before = data_files(&lake);
    let config = |grace: &str| {
        let path = dir.path().join(format!("retention-{grace}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"
[retention]
days = 30
vacuum_grace = "{grace}"
[retention.clusters]
staging = 400
[[retention.holds]]
cluster = "held"
reason = "INC-42 litigation hold"
"#
            ),
        )
        .unwrap();
        path
    };
    // The samples are from 2026-11-20: 42 days before this "now", past 30 days, not 400.
    let as_of = ["--as-of", "2027-01-01T00:00:00Z"];
    let expect_expired: Vec<(String, String, String)> = hours
        .iter()
        .map(|h| {
            (
                "prod".to_owned(),
                format!(
                    "{} {}",
                    h["date"].as_str().unwrap(),
                    h["hour"].as_str().unwrap()
                ),
                "retention.days = 30".to_owned(),
            )
        })
        .collect();
    let expect_held: Vec<(String, String, String)> = expect_expired
        .iter()
        .map(|(_, at, _)| {
            (
                "held".to_owned(),
                at.clone(),
                "legal hold: INC-42 litigation hold".to_owned(),
            )
        })
        .collect();

    // A dry run says what would go and changes nothing.
    let (_, verified_before) = verify(lake.to_str().unwrap(), &[]);
    let dry = retention(&lake, &config("1h"), &[as_of[0], as_of[1], "--dry-run"]);
    assert_eq!(partitions(&dry, "expired"), expect_expired, "{dry}");
    assert_eq!(partitions(&dry, "held"), expect_held, "{dry}");
    assert_eq!(dry["events_version"], serde_json::Value::Null);
    assert_eq!(data_files(&lake), files_before);
    let (_, verified) = verify(lake.to_str().unwrap(), &[]);
    assert_eq!(verified["head_sha256"], verified_before["head_sha256"]);
    assert_eq!(count(&lake, "retention_log"), 0);

    // The real run removes exactly prod's partitions from the table, keeps their files for the
    // grace period, and records what it did.
    let done = retention(&lake, &config("1h"), &as_of);
    assert_eq!(partitions(&done, "expired"), expect_expired, "{done}");
    assert_eq!(partitions(&done, "held"), expect_held);
    let removed_in = done["events_version"].as_i64().expect("a commit");
    assert_eq!(done["vacuumed"].as_array().unwrap().len(), 0, "{done}");
    assert_eq!(rows("prod"), 0);
    assert_eq!(rows("staging"), per_cluster);
    assert_eq!(rows("held"), per_cluster);
    assert_eq!(
        data_files(&lake),
        files_before,
        "files stay until the grace period"
    );
    let log = query(
        &lake,
        "SELECT action, cluster, sum(files) AS files, sum(rows) AS rows, min(rule) AS rule, \
         min(events_version) AS v FROM retention_log GROUP BY 1, 2",
    );
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["action"], "expire");
    assert_eq!(log[0]["cluster"], "prod");
    assert_eq!(log[0]["rows"], per_cluster);
    assert_eq!(log[0]["files"], prod_files as i64);
    assert_eq!(log[0]["rule"], "retention.days = 30");
    assert_eq!(log[0]["v"], removed_in);
    let (code, report) = verify(lake.to_str().unwrap(), &[]);
    assert_eq!(
        code, 0,
        "the retention commit and its log keep the chain: {report}"
    );

    // Past the grace period (0s here) the removed files are deleted, and that is recorded too.
    let vacuum = retention(&lake, &config("0s"), &as_of);
    assert_eq!(partitions(&vacuum, "expired"), vec![], "{vacuum}");
    let deleted = vacuum["vacuumed"].as_array().unwrap();
    assert_eq!(deleted.len(), prod_files, "{vacuum}");
    assert!(
        deleted
            .iter()
            .all(|f| f.as_str().unwrap().starts_with("cluster=prod/"))
    );
    let after = data_files(&lake);
    assert_eq!(after.len(), files_before.len() - prod_files);
    assert!(
        !after
            .iter()
            .any(|p| p.to_string_lossy().contains("cluster=prod/"))
    );
    assert_eq!(
        count(
            &lake,
            "retention_log WHERE action = 'vacuum' AND cluster = 'prod'"
        ),
        hours.len() as i64
    );
    assert_eq!(
        query(
            &lake,
            "SELECT sum(files) AS n FROM retention_log WHERE action = 'vacuum'"
        )[0]["n"],
        prod_files as i64
    );
    assert_eq!(verify(lake.to_str().unwrap(), &[]).0, 0);
    assert_eq!(rows("staging"), per_cluster);

    // Deleting the record of deletions is reported.
    std::fs::remove_dir_all(lake.join("retention_log")).unwrap();
    let (code, report) = verify(lake.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        problems(&report),
        [(
            "missing commit".to_owned(),
            "retention_log/_delta_log/".to_owned()
        )]
    );
}

#[test]
fn a_bad_retention_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod", &[&repo().join("samples/audit.log")]);
    for (text, key) in [
        ("[retention]\ndays = 0\n", "retention.days"),
        (
            "[retention]\nvacuum_grace = \"soon\"\n",
            "retention.vacuum_grace",
        ),
        (
            "[[retention.holds]]\ncluster = \"prod\"\nreason = \"\"\n",
            "retention.holds[0].reason",
        ),
        ("[retention.clusters]\n\"../x\" = 3\n", "retention.clusters"),
        ("[retention]\nkeep = 3\n", "keep"),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = run(bin()
            .args(["retention", "--lake"])
            .arg(&lake)
            .arg("--config")
            .arg(&cfg));
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{text}: {err}");
    }
    assert!(count(&lake, "audit_events") > 3000, "nothing was removed");
}

#[test]
fn serve_runs_retention_in_the_background_and_logs_what_it_removed() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let sample = repo().join("samples/audit.log");
    ingest(&lake, "old", &[&sample]);
    ingest(&lake, "held", &[&sample]);
    // The samples are from 2026-11-20: more than one day old for any run after it.
    let config = crate::webhook::write_config(
        dir.path(),
        "[retention]\ndays = 1\nvacuum_grace = \"0s\"\n[[retention.holds]]\ncluster = \"held\"\nreason = \"INC-9\"\n",
    );
    let server = crate::webhook::Server::start(&config, &lake);
    let started = std::time::Instant::now();
    while !server.log().contains("retention_run") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no retention run logged:\n{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    let line = log.lines().find(|l| l.contains("retention_run")).unwrap();
    assert!(line.contains("partitions_removed=2"), "{line}");
    assert!(line.contains("rows_removed=3171"), "{line}");
    assert!(line.contains("held=2"), "{line}");
    assert_eq!(count(&lake, "audit_events WHERE cluster = 'old'"), 0);
    assert_eq!(count(&lake, "audit_events WHERE cluster = 'held'"), 3171);
    assert_eq!(
        count(
            &lake,
            "retention_log WHERE action = 'expire' AND cluster = 'old'"
        ),
        2
    );
    assert_eq!(verify(lake.to_str().unwrap(), &[]).0, 0);
}

/// An EventList of `ids` stamped in one past hour (so compaction, which only merges hours that
/// have ended, takes it).
fn past_event_list(ids: &[String]) -> String {
    let items: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                r#"{{"level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/team-a/configmaps/app","verb":"get","user":{{"username":"alice@example.com"}},"sourceIPs":["10.1.2.3"],"objectRef":{{"resource":"configmaps","namespace":"team-a","name":"app","apiVersion":"v1"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"2026-11-20T10:15:00.000000Z","stageTimestamp":"2026-11-20T10:15:00.000100Z"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
        items.join(",")
    )
}

#[test]
fn two_serve_replicas_on_one_s3_table_keep_every_acknowledged_event_when_one_is_killed() {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use crate::webhook::{Server, plain_client, runtime, write_config};

    if s3_tools().is_none() {
        return;
    }
    let s3 = S3Server::start();
    s3.create_bucket("evidence");
    let url = "s3://evidence/replicas";
    let dir = tempfile::tempdir().unwrap();
    // Two replicas: the same table, each its own write-ahead log. Frequent small flushes so the
    // kill lands between WAL appends, uploads and commits alike.
    let configs: Vec<std::path::PathBuf> = ["a", "b"]
        .iter()
        .map(|name| {
            let replica = dir.path().join(name);
            std::fs::create_dir_all(&replica).unwrap();
            write_config(
                &replica,
                &format!(
                    "[lake.storage]\naws_endpoint = \"{}\"\naws_access_key_id = \"test\"\naws_secret_access_key = \"test\"\naws_region = \"us-east-1\"\naws_allow_http = \"true\"\n\
                     [webhook]\nwal_dir = \"wal\"\nflush_interval_secs = 0.3\nflush_rows = 3000\n[ingest]\nmax_file_rows = 2000\n[compaction]\ninterval_secs = 0\n",
                    s3.endpoint
                ),
            )
        })
        .collect();
    // The WAL is required: the per-process staging directory would not survive a restart.
    let no_wal = write_config(dir.path(), "[compaction]\ninterval_secs = 0\n");
    let mut refused = s3.bin();
    let out = run(refused.arg("--config").arg(&no_wal).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--lake",
        url,
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("webhook.wal_dir"));

    let lake = Path::new(url);
    let a = Server::start(&configs[0], lake);
    let b = Server::start(&configs[1], lake);
    let urls = [
        format!("{}/audit/prod", a.url),
        format!("{}/audit/prod", b.url),
    ];
    let rt = runtime();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let (url, acked, stop) = (urls[s % 2].clone(), acked.clone(), stop.clone());
            rt.spawn(async move {
                let client = plain_client();
                let mut batch = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let ids: Vec<String> = (0..100)
                        .map(|i| format!("s{s}-b{batch:05}-{i:03}"))
                        .collect();
                    batch += 1;
                    match client.post(&url).body(past_event_list(&ids)).send().await {
                        Ok(r) if r.status() == 200 => acked.lock().unwrap().extend(ids),
                        // Refused or reset by the kill: not acknowledged, no promise.
                        Ok(_) | Err(_) => {
                            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acked.lock().unwrap().len() < 8_000 && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill9();
    // B keeps taking its share while A is down.
    let at_kill = acked.lock().unwrap().len();
    while acked.lock().unwrap().len() < at_kill + 2_000
        && started.elapsed() < Duration::from_secs(180)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        let _ = rt.block_on(s);
    }
    let acked: BTreeSet<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 8_000, "acknowledged only {}", acked.len());

    // A restarts on its WAL and commits what it had acknowledged; then one batch is re-delivered
    // to both replicas (the case the dedup guarantee across writers is about).
    let a = Server::start(&configs[0], lake);
    let redelivered: Vec<String> = (0..100).map(|i| format!("s0-b00000-{i:03}")).collect();
    for server in [&a, &b] {
        let status = rt.block_on(async {
            plain_client()
                .post(format!("{}/audit/prod", server.url))
                .body(past_event_list(&redelivered))
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(status, 200);
    }
    for server in [a, b] {
        let (status, log) = server.terminate();
        assert!(status.success(), "{log}");
    }

    let counts = |sql: &str| s3.query(url, sql);
    let in_lake = |sql: &str| -> BTreeMap<String, i64> {
        counts(sql)
            .iter()
            .map(|r| {
                (
                    r["audit_id"].as_str().unwrap().to_owned(),
                    r["n"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let before = in_lake("SELECT audit_id, count(*) AS n FROM audit_events GROUP BY audit_id");
    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !before.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Only the re-delivered batch may show twice before compaction.
    let twice: Vec<&String> = before
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        twice.iter().all(|id| redelivered.contains(id)),
        "{:?}",
        &twice[..twice.len().min(5)]
    );

    // Compaction re-checks the key: afterwards nothing appears twice, nothing is lost.
    let mut compact = s3.bin();
    run_ok(compact.args(["compact", "--json", "--min-age", "0s", "--lake", url]));
    let after = in_lake("SELECT audit_id, count(*) AS n FROM audit_events GROUP BY audit_id");
    assert!(after.values().all(|n| *n == 1));
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    let mut v = s3.bin();
    let out = run(v.args(["verify", "--json", "--lake", url]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!(
        "two replicas, one killed: {} acknowledged, {} in the table, {} shown twice before compaction",
        acked.len(),
        after.len(),
        twice.len()
    );
}

#[test]
fn quarantine_of_an_s3_lake_lands_in_the_bucket_masked() {
    if s3_tools().is_none() {
        return;
    }
    let s3 = S3Server::start();
    s3.create_bucket("evidence");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("audit.log");
    let good = past_event_list(&["ok-1".to_owned()]);
    // Not JSON, and carrying a secret value that must not land anywhere.
    let bad = r#"{"kind":"Event","auditID":"x","requestObject":{"kind":"Secret","data":{"password":"aHVudGVyMg=="}"#;
    std::fs::write(&input, format!("{good}\n{bad}\n")).unwrap();
    let mut cmd = s3.bin();
    let out = run_ok(
        cmd.args([
            "ingest",
            "--json",
            "--lake",
            "s3://evidence/q",
            "--cluster",
            "prod",
        ])
        .arg(&input),
    );
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["rows_written"], 1, "{summary}");
    assert_eq!(summary["rejected"], 1, "{summary}");
    let object = summary["quarantine_file"].as_str().unwrap();
    assert!(
        object.starts_with("s3://evidence/q/_quarantine/date="),
        "{summary}"
    );
    let script = format!(
        r#"
import boto3, json
s3 = boto3.client("s3", endpoint_url="{ep}", aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="evidence", Prefix="q/_quarantine/")["Contents"]]
body = b"".join(s3.get_object(Bucket="evidence", Key=k)["Body"].read() for k in keys)
print(json.dumps({{"keys": keys, "body": body.decode()}}))
"#,
        ep = s3.endpoint
    );
    let out = run_ok(Command::new("python3").args(["-c", &script]));
    let found: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let keys = found["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{found}");
    assert!(keys[0].as_str().unwrap().ends_with(".jsonl"), "{found}");
    let record: serde_json::Value =
        serde_json::from_str(found["body"].as_str().unwrap().trim()).unwrap();
    assert_eq!(record["cluster"], "prod");
    assert_eq!(record["masked"], true, "{record}");
    assert!(!found["body"].as_str().unwrap().contains("aHVudGVyMg=="));
}

#[test]
fn storage_credentials_never_reach_an_error_message() {
    let dir = tempfile::tempdir().unwrap();
    // A store that is not there: every command fails, and says where, not with what key.
    let cfg = dir.path().join("s3.toml");
    std::fs::write(
        &cfg,
        format!(
            "[lake.storage]\naws_endpoint = \"http://127.0.0.1:{}\"\naws_access_key_id = \"AKIAEXAMPLEKEYID\"\naws_secret_access_key = \"secret-value-never-printed\"\naws_region = \"us-east-1\"\naws_allow_http = \"true\"\n",
            free_port()
        ),
    )
    .unwrap();
    let sample = repo().join("samples/audit.log");
    for args in [
        vec!["ingest", "--cluster", "prod", sample.to_str().unwrap()],
        vec!["query", "SELECT count(*) FROM audit_events"],
        vec!["verify"],
        vec!["retention", "--dry-run"],
    ] {
        let out = run(bin()
            .arg("--config")
            .arg(&cfg)
            .args(&args[..1])
            .args(["--lake", "s3://evidence/lake"])
            .args(&args[1..])
            .env("RUST_BACKTRACE", "1"));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(out.status.code(), Some(0), "{args:?}: {all}");
        assert!(all.contains("evidence"), "{args:?} names the lake: {all}");
        assert!(
            !all.contains("secret-value-never-printed") && !all.contains("AKIAEXAMPLEKEYID"),
            "{args:?}: {all}"
        );
    }
}

#[test]
fn verify_reports_a_forged_commit_and_survives_a_hostile_one() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod", &[&repo().join("samples/audit.log")]);
    let log = lake.join("audit_events/_delta_log");
    // Appended by someone with write access: a commit that adds nothing of ours, nested deep
    // enough to overflow a naive recursive parser, and an oversized line.
    let forged = log.join("00000000000000000002.json");
    std::fs::write(
        &forged,
        format!("{}{}\n", "[".repeat(200_000), "]".repeat(200_000)),
    )
    .unwrap();
    let (code, report) = verify(lake.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{report}");
    assert!(
        problems(&report).contains(&(
            "unreadable commit".to_owned(),
            "_delta_log/00000000000000000002.json".to_owned()
        )),
        "{report}"
    );
    // A well-formed commit not made by auditlake (no link to its predecessor) is named too.
    std::fs::write(
        &forged,
        r#"{"commitInfo":{"timestamp":1,"operation":"WRITE"}}
{"add":{"path":"cluster=prod/date=2026-11-20/hour=08/part-forged.parquet","partitionValues":{},"size":1,"modificationTime":1,"dataChange":true}}
"#,
    )
    .unwrap();
    let (code, report) = verify(lake.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{report}");
    let found = problems(&report);
    assert!(
        found.contains(&(
            "unlinked commit".to_owned(),
            "_delta_log/00000000000000000002.json".to_owned()
        )),
        "{report}"
    );
}

/// `auditlake seal` on `lake` with the key file: (exit code, stdout, stderr).
fn seal(lake: &Path, key: &Path) -> (i32, String, String) {
    let out = run(bin()
        .arg("seal")
        .arg("--key")
        .arg(key)
        .arg("--lake")
        .arg(lake));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_seal_shows_deleted_and_rewritten_newest_commits_the_chain_alone_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let log = std::fs::read_to_string(repo().join("samples/audit.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    // Three ingests: three commits, so the newest can be deleted and the chain still walks.
    for (i, chunk) in lines.chunks(lines.len().div_ceil(3)).enumerate() {
        let path = dir.path().join(format!("slice-{i}.log"));
        std::fs::write(&path, chunk.join("\n")).unwrap();
        ingest(&lake, "prod", &[&path]);
    }

    // A key: the private half in a 0600 file, the public half printed.
    let key = dir.path().join("seal.key");
    let out = run(bin().arg("seal").arg("--generate-key").arg(&key));
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let public = stderr.lines().last().unwrap().trim().to_owned();
    assert_eq!(public.len(), 64, "{stderr}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let private = std::fs::read_to_string(&key).unwrap().trim().to_owned();
    // Never overwritten.
    let again = run(bin().arg("seal").arg("--generate-key").arg(&key));
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim(), private);

    let (code, seal_json, stderr) = seal(&lake, &key);
    assert_eq!(code, 0, "{stderr}");
    assert!(!seal_json.contains(&private) && !stderr.contains(&private));
    let sealed: serde_json::Value = serde_json::from_str(seal_json.trim()).unwrap();
    let payload: serde_json::Value =
        serde_json::from_str(sealed["payload"].as_str().unwrap()).unwrap();
    let head = &payload["heads"][0];
    assert_eq!(head["table"], "audit_events");
    let (_, plain) = verify(lake.to_str().unwrap(), &[]);
    assert_eq!(head["version"], plain["head_version"]);
    assert_eq!(head["sha256"], plain["head_sha256"]);
    let seal_file = dir.path().join("seal.json");
    std::fs::write(&seal_file, &seal_json).unwrap();
    let with_seal = |lake: &Path| {
        verify(
            lake.to_str().unwrap(),
            &[
                "--seal",
                seal_file.to_str().unwrap(),
                "--public-key",
                &public,
            ],
        )
    };
    let (code, report) = with_seal(&lake);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["seals_checked"], 1);

    // More commits after the seal are fine.
    ingest(&lake, "staging", &[&repo().join("samples/audit.log")]);
    assert_eq!(with_seal(&lake).0, 0);
    let newest = plain["head_version"].as_u64().unwrap();
    let commit = |lake: &Path, v: u64| lake.join(format!("audit_events/_delta_log/{v:020}.json"));

    // The sealed commit and the one after it deleted: the chain alone sees nothing wrong.
    let truncated = dir.path().join("truncated");
    copy_dir(&lake, &truncated);
    std::fs::remove_file(commit(&truncated, newest + 1)).unwrap();
    std::fs::remove_file(commit(&truncated, newest)).unwrap();
    let (code, report) = verify(truncated.to_str().unwrap(), &["--grace", "0s"]);
    assert_eq!(
        problems(&report)
            .iter()
            .filter(|(k, _)| k.contains("commit"))
            .count(),
        0,
        "the chain alone: {report} (code {code})"
    );
    let (code, report) = with_seal(&truncated);
    assert_eq!(code, 1, "{report}");
    let name = format!("_delta_log/{newest:020}.json");
    assert!(
        problems(&report).contains(&("missing commit".into(), name.clone())),
        "{report}"
    );

    // The sealed (then newest) commit rewritten, in a lake sealed at its head.
    let rewritten = dir.path().join("rewritten");
    copy_dir(&lake, &rewritten);
    std::fs::remove_file(commit(&rewritten, newest + 1)).unwrap();
    let bytes = std::fs::read_to_string(commit(&rewritten, newest)).unwrap();
    let forged = bytes.replacen("\"timestamp\":1", "\"timestamp\":2", 1);
    assert_ne!(forged, bytes);
    std::fs::write(commit(&rewritten, newest), forged).unwrap();
    let (code, report) = verify(rewritten.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "the chain alone cannot see it: {report}");
    let (code, report) = with_seal(&rewritten);
    assert_eq!(code, 1, "{report}");
    assert!(
        problems(&report).contains(&("rewritten commit".into(), name)),
        "{report}"
    );

    // Seals that are not to be trusted are errors (exit 2), never a pass.
    let (other_key, other_public) = {
        let k = dir.path().join("other.key");
        let out = run(bin().arg("seal").arg("--generate-key").arg(&k));
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        (k, e.lines().last().unwrap().trim().to_owned())
    };
    let (_, forged_seal, _) = seal(&lake, &other_key);
    let forged_file = dir.path().join("forged.json");
    std::fs::write(&forged_file, forged_seal).unwrap();
    for (file, key, says) in [
        (&forged_file, public.as_str(), "does not verify"),
        (&seal_file, other_public.as_str(), "does not verify"),
        (&seal_file, "not-hex", "64 hex digits"),
    ] {
        let out = run(bin()
            .args(["verify", "--lake"])
            .arg(&lake)
            .arg("--seal")
            .arg(file)
            .args(["--public-key", key]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
    }
    // A "seal" far larger than one can be is refused without being read whole.
    let huge = dir.path().join("huge.json");
    std::fs::write(&huge, "[".repeat(1 << 20)).unwrap();
    let out = run(bin()
        .args(["verify", "--lake"])
        .arg(&lake)
        .arg("--seal")
        .arg(&huge)
        .args(["--public-key", &public]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a seal"));
    let altered = dir.path().join("altered.json");
    std::fs::write(
        &altered,
        seal_json.replace(&format!("\\\"version\\\":{newest}"), "\\\"version\\\":0"),
    )
    .unwrap();
    assert_ne!(std::fs::read_to_string(&altered).unwrap(), seal_json);
    let out = run(bin()
        .args(["verify", "--lake"])
        .arg(&lake)
        .arg("--seal")
        .arg(&altered)
        .args(["--public-key", &public]));
    assert_eq!(out.status.code(), Some(2));
    let out = run(bin()
        .args(["verify", "--lake"])
        .arg(&lake)
        .arg("--seal")
        .arg(&seal_file));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--public-key"));

    // A damaged lake is never sealed.
    let damaged = dir.path().join("damaged");
    copy_dir(&lake, &damaged);
    let file = &data_files(&damaged)[0];
    let mut bytes = std::fs::read(file).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(file, bytes).unwrap();
    let (code, stdout, stderr) = seal(&damaged, &key);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stdout.contains("modified file") && !stdout.contains("payload"),
        "{stdout}"
    );
    assert!(stderr.contains("not sealed"), "{stderr}");

    // The key from the environment through [seal] key; it appears in no output.
    let config = dir.path().join("seal.toml");
    std::fs::write(&config, "[seal]\nkey = { env = \"TEST_SEAL_KEY\" }\n").unwrap();
    let out = run(bin()
        .arg("seal")
        .arg("--config")
        .arg(&config)
        .arg("--lake")
        .arg(&lake)
        .env("TEST_SEAL_KEY", &private));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for stream in [&out.stdout, &out.stderr] {
        assert!(!String::from_utf8_lossy(stream).contains(&private));
    }
}

/// Every Delta reader starts from the newest checkpoint, not from the commits: a checkpoint
/// rewritten to leave a file out hides its rows from all of them. The commits alone do not
/// show it; verify compares each checkpoint with the log at its version.
#[test]
fn verify_names_a_checkpoint_rewritten_to_hide_a_file() {
    if s3_tools().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let log = std::fs::read_to_string(repo().join("samples/audit.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    for (i, chunk) in lines.chunks(lines.len().div_ceil(3)).enumerate() {
        let path = dir.path().join(format!("slice-{i}.log"));
        std::fs::write(&path, chunk.join("\n")).unwrap();
        ingest(&lake, "prod", &[&path]);
    }
    let count = || query(&lake, "SELECT count(*) AS n FROM audit_events")[0]["n"].as_i64();
    let rows = count();
    // A checkpoint as delta-rs writes one (auditlake's writers make one every 100 commits).
    let table = lake.join("audit_events");
    let script = format!(
        "import deltalake; t = deltalake.DeltaTable('{}'); t.create_checkpoint(); print(t.version())",
        table.display()
    );
    let version: u64 = run_ok(Command::new("python3").args(["-c", &script]))
        .trim()
        .parse()
        .unwrap();
    let checkpoint = format!("_delta_log/{version:020}.checkpoint.parquet");
    assert!(table.join(&checkpoint).is_file());
    let (code, report) = verify(lake.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "an honest checkpoint passes: {report}");

    // The checkpoint rewritten without its first file's add.
    let script = format!(
        r#"
import pyarrow.parquet as pq, pyarrow.compute as pc
p = '{}'
t = pq.read_table(p)
adds = [i for i, a in enumerate(t.column('add').to_pylist()) if a is not None]
victim = t.column('add').to_pylist()[adds[0]]['path']
keep = [i for i in range(t.num_rows) if i != adds[0]]
pq.write_table(t.take(keep), p)
print(victim)
"#,
        table.join(&checkpoint).display()
    );
    let victim = run_ok(Command::new("python3").args(["-c", &script]));
    let victim = victim.trim();
    assert!(
        count() < rows,
        "readers no longer see the hidden file's rows"
    );
    let (code, report) = verify(lake.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        problems(&report),
        [("rewritten checkpoint".to_owned(), checkpoint.clone())],
        "{report}"
    );
    let detail = report["problems"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("leaves out 1 of them") && detail.contains(victim),
        "{detail}"
    );

    // Not a checkpoint at all.
    std::fs::write(table.join(&checkpoint), b"PAR1 garbage").unwrap();
    let (code, report) = verify(lake.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        problems(&report),
        [("rewritten checkpoint".to_owned(), checkpoint)]
    );
}

/// A seal records the newest checkpoint that agrees with the log; `verify --from-seal` starts
/// there, so its cost is the commits since, not the table's history. What it trusts (history
/// before the checkpoint) is what the seal vouched for; a changed checkpoint is named and the
/// whole log walked.
#[test]
fn verify_from_a_seal_walks_only_the_commits_after_its_checkpoint() {
    if s3_tools().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let log = std::fs::read_to_string(repo().join("samples/audit.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let slices: Vec<PathBuf> = lines
        .chunks(lines.len().div_ceil(5))
        .enumerate()
        .map(|(i, chunk)| {
            let path = dir.path().join(format!("slice-{i}.log"));
            std::fs::write(&path, chunk.join("\n")).unwrap();
            path
        })
        .collect();
    for s in &slices[..3] {
        ingest(&lake, "prod", &[s]);
    }
    let table = lake.join("audit_events");
    let script = format!(
        "import deltalake; t = deltalake.DeltaTable('{}'); t.create_checkpoint(); print(t.version())",
        table.display()
    );
    let checkpoint: u64 = run_ok(Command::new("python3").args(["-c", &script]))
        .trim()
        .parse()
        .unwrap();

    let key = dir.path().join("seal.key");
    let out = run(bin().arg("seal").arg("--generate-key").arg(&key));
    let public = String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let seal = |extra: &[&str]| {
        let out = run(bin()
            .arg("seal")
            .arg("--key")
            .arg(&key)
            .arg("--lake")
            .arg(&lake)
            .args(extra));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (first, stderr) = seal(&["--incremental"]);
    assert!(stderr.contains("no earlier seal"), "{stderr}");
    assert!(stderr.contains("walked from version 0"), "{stderr}");
    let payload: serde_json::Value = serde_json::from_str(
        serde_json::from_str::<serde_json::Value>(&first).unwrap()["payload"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["heads"][0]["checkpoint"]["version"], checkpoint);
    let seal_file = dir.path().join("seal.json");
    std::fs::write(&seal_file, &first).unwrap();

    for s in &slices[3..] {
        ingest(&lake, "prod", &[s]);
    }
    let from_seal = |lake: &Path| {
        verify(
            lake.to_str().unwrap(),
            &[
                "--seal",
                seal_file.to_str().unwrap(),
                "--public-key",
                &public,
                "--from-seal",
            ],
        )
    };
    let (code, report) = from_seal(&lake);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["walked_from"]["audit_events"], checkpoint,
        "{report}"
    );
    let head = report["head_version"].as_u64().unwrap();
    assert_eq!(report["commits"], head - checkpoint + 1, "{report}");
    let (_, full) = verify(lake.to_str().unwrap(), &[]);
    assert_eq!(full["live_files"], report["live_files"]);
    assert_eq!(full["head_sha256"], report["head_sha256"]);

    // The next incremental seal starts from the one the lake keeps.
    let (_, stderr) = seal(&["--incremental"]);
    assert!(
        stderr.contains(&format!("walked from version {checkpoint}")),
        "{stderr}"
    );

    // History before the checkpoint rewritten: the seal vouched for it, so a walk from the
    // seal does not read it; the full walk (run it periodically) names it.
    let old = dir.path().join("old-history");
    copy_dir(&lake, &old);
    let first_commit = old.join("audit_events/_delta_log/00000000000000000001.json");
    let bytes = std::fs::read_to_string(&first_commit).unwrap();
    std::fs::write(
        &first_commit,
        bytes.replacen("\"timestamp\":1", "\"timestamp\":2", 1),
    )
    .unwrap();
    assert_eq!(from_seal(&old).0, 0);
    let (code, report) = verify(old.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{report}");
    assert!(
        problems(&report)
            .iter()
            .any(|(k, o)| k == "rewritten commit" && o.ends_with("00000000000000000001.json")),
        "{report}"
    );

    // The sealed checkpoint changed: named, and the whole log is walked.
    let forged = dir.path().join("forged-checkpoint");
    copy_dir(&lake, &forged);
    let cp = forged.join(format!(
        "audit_events/_delta_log/{checkpoint:020}.checkpoint.parquet"
    ));
    let script = format!(
        r#"
import pyarrow.parquet as pq
t = pq.read_table('{}')
adds = [i for i, a in enumerate(t.column('add').to_pylist()) if a is not None]
pq.write_table(t.take([i for i in range(t.num_rows) if i != adds[0]]), '{}')
"#,
        cp.display(),
        cp.display()
    );
    run_ok(Command::new("python3").args(["-c", &script]));
    let (code, report) = from_seal(&forged);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["walked_from"]["audit_events"], 0, "{report}");
    assert!(
        problems(&report)
            .iter()
            .any(|(k, _)| k == "rewritten checkpoint"),
        "{report}"
    );

    // A seal planted in the lake, signed by another key: not used.
    let other = dir.path().join("other.key");
    run(bin().arg("seal").arg("--generate-key").arg(&other));
    let planted = run(bin()
        .arg("seal")
        .arg("--key")
        .arg(&other)
        .arg("--lake")
        .arg(&lake));
    assert!(planted.status.success());
    let (_, stderr) = seal(&["--incremental"]);
    assert!(stderr.contains("not usable"), "{stderr}");
    assert!(stderr.contains("walked from version 0"), "{stderr}");
}

/// The objects under `prefix` in `bucket` of `s3`: key → body (as text).
pub(crate) fn bucket_objects(
    s3: &S3Server,
    bucket: &str,
    prefix: &str,
) -> std::collections::BTreeMap<String, String> {
    let script = format!(
        r#"
import boto3, json
s3 = boto3.client("s3", endpoint_url="{ep}", aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
out = {{}}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="{bucket}", Prefix="{prefix}"):
    for o in page.get("Contents", []):
        out[o["Key"]] = s3.get_object(Bucket="{bucket}", Key=o["Key"])["Body"].read().decode("utf-8", "replace")
print(json.dumps(out))
"#,
        ep = s3.endpoint
    );
    let out = run_ok(Command::new("python3").args(["-c", &script]));
    serde_json::from_str(out.trim()).unwrap()
}

/// A serve config for an object-store lake: its own write-ahead log, the repo's rules, a
/// `[scheduler]` over two rules and a file sink `alerts.jsonl` in `dir`.
fn s3_scheduler_config(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    crate::webhook::write_config(
        dir,
        &format!(
            "[webhook]\nwal_dir = \"wal\"\nflush_interval_secs = 0.2\n[compaction]\ninterval_secs = 0\n\
             [detect]\nrules_dir = \"{rules}\"\n\
             [scheduler]\nrules = [\"privileged-role-binding\", \"exec-into-pod\"]\nschedule_secs = 1\ntick_secs = 0.2\nsettle_secs = 0\n\
             lease_ttl = \"6s\"\n\
             streaming = false\n# The sample events are from 2026-11-20.\ninitial_lookback_minutes = {lookback}\n\
             [[sinks]]\nname = \"file\"\ntype = \"file\"\npath = \"{sink}\"\n",
            rules = repo().join("rules").display(),
            lookback = (chrono::Utc::now()
                - chrono::DateTime::parse_from_rfc3339("2026-11-19T00:00:00Z")
                    .unwrap()
                    .to_utc())
            .num_minutes(),
            sink = dir.join("alerts.jsonl").display()
        ),
    )
}

/// Ingests `events` (JSON lines) into the lake at `url`.
fn ingest_lines(s3: &S3Server, url: &str, dir: &Path, name: &str, events: &[String]) {
    let file = dir.join(name);
    std::fs::write(&file, events.join("\n") + "\n").unwrap();
    let mut cmd = s3.bin();
    run_ok(
        cmd.args(["ingest", "--lake", url, "--cluster", "prod"])
            .arg(&file),
    );
}

fn wait_until(what: &str, log: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "timed out waiting for {what}\n{}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `serve` with `[scheduler]` on an `s3://` lake: the findings, the watermarks, the outbox and
/// the lease are objects in the bucket; the findings table reads them back; a restart neither
/// stores nor alerts anything twice and resumes from the stored watermarks; `detect --store`
/// writes to the same findings.
#[test]
fn scheduled_findings_of_an_s3_lake_live_in_the_bucket_once_and_are_delivered() {
    use crate::scheduler::{delivered, exec_event};
    use crate::webhook::Server;

    if s3_tools().is_none() {
        return;
    }
    let s3 = S3Server::start();
    s3.create_bucket("evidence");
    let url = "s3://evidence/alerts";
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = s3.bin();
    run_ok(
        cmd.args(["ingest", "--lake", url, "--cluster", "prod"])
            .arg(repo().join("samples/audit.log")),
    );
    let config = s3_scheduler_config(&dir.path().join("replica"));
    let sink = dir.path().join("replica/alerts.jsonl");
    let findings_sql = "SELECT rule_id, actor, target, origin, revision, finding_id FROM findings ORDER BY rule_id, target";
    let findings = || s3.query(url, findings_sql);
    let pending = || {
        bucket_objects(&s3, "evidence", "alerts/_state/outbox/file/pending/")
            .keys()
            .filter(|k| k.ends_with(".json"))
            .count()
    };

    // Run 1: the sample's cluster-admin binding by dave is found, stored in the bucket, alerted.
    let server = Server::start_with(s3.bin(), &config, Path::new(url));
    wait_until(
        "the first findings to be delivered",
        || server.log(),
        || !delivered(&sink).is_empty() && pending() == 0,
    );
    let first = findings();
    let binding: Vec<&serde_json::Value> = first
        .iter()
        .filter(|f| f["rule_id"] == "privileged-role-binding")
        .collect();
    assert_eq!(binding.len(), 1, "{first:?}");
    assert_eq!(binding[0]["actor"], "dave@example.com");
    assert_eq!(binding[0]["target"], "clusterrolebindings backup-operator");
    assert_eq!(binding[0]["origin"], "scheduled");
    assert!(
        first
            .iter()
            .all(|f| ["privileged-role-binding", "exec-into-pod"]
                .contains(&f["rule_id"].as_str().unwrap())),
        "{first:?}"
    );
    wait_until(
        "every finding to be delivered",
        || server.log(),
        || delivered(&sink).len() == first.len() && pending() == 0,
    );
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("lease_taken"), "{log}");

    // In the bucket: the findings' Parquet files, the watermarks, the delivered outbox and the
    // released lease; nothing of it under a local lake directory.
    let objects = bucket_objects(&s3, "evidence", "alerts/");
    let parquet: Vec<&String> = objects
        .keys()
        .filter(|k| k.starts_with("alerts/findings/date=") && k.ends_with(".parquet"))
        .collect();
    assert!(!parquet.is_empty(), "{:?}", objects.keys());
    let state: serde_json::Value =
        serde_json::from_str(&objects["alerts/_state/scheduler.json"]).unwrap();
    let watermark = |state: &serde_json::Value, rule: &str| {
        chrono::DateTime::parse_from_rfc3339(state["rules"][rule]["watermark"].as_str().unwrap())
            .unwrap()
    };
    let w1 = watermark(&state, "privileged-role-binding");
    assert!(
        w1 > chrono::Utc::now() - chrono::TimeDelta::minutes(5),
        "{state}"
    );
    let sent = objects
        .keys()
        .filter(|k| k.starts_with("alerts/_state/outbox/file/sent/"))
        .count();
    assert_eq!(sent, first.len());
    let lease: serde_json::Value =
        serde_json::from_str(&objects["alerts/_state/scheduler.lease"]).unwrap();
    assert!(
        lease["expires_at"].as_str().unwrap().starts_with("1970-"),
        "released on shutdown: {lease}"
    );

    // Between the runs: an exec into a pod from the sample's day (older than the stored
    // watermark minus the lateness: the schedule has covered that time) and one a minute ago.
    ingest_lines(
        &s3,
        url,
        dir.path(),
        "more.jsonl",
        &[
            exec_event(
                "old-1",
                "mallory@example.com",
                "pod-old",
                chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
                    .unwrap()
                    .to_utc(),
            ),
            exec_event(
                "new-1",
                "erin@example.com",
                "pod-new",
                chrono::Utc::now() - chrono::TimeDelta::minutes(1),
            ),
        ],
    );

    // Run 2 (a restart): resumes from the watermarks in the bucket, so only erin's exec is new.
    let server = Server::start_with(s3.bin(), &config, Path::new(url));
    wait_until(
        "erin's finding to be delivered",
        || server.log(),
        || delivered(&sink).len() == first.len() + 1 && pending() == 0,
    );
    // A few more passes over the same windows.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    let second = findings();
    assert_eq!(second.len(), first.len() + 1, "{second:?}");
    let erin: Vec<&serde_json::Value> = second
        .iter()
        .filter(|f| f["actor"] == "erin@example.com")
        .collect();
    assert_eq!(erin.len(), 1, "{second:?}");
    assert_eq!(erin[0]["rule_id"], "exec-into-pod");
    assert_eq!(erin[0]["target"], "pods/exec shop/pod-new");
    assert!(
        second.iter().all(|f| f["actor"] != "mallory@example.com"),
        "the restart re-read time before its stored watermark: {second:?}"
    );
    // Every finding stored once (one revision), every alert delivered once.
    let counts = s3.query(
        url,
        "SELECT finding_id, count(*) AS n FROM findings_history GROUP BY finding_id",
    );
    assert_eq!(counts.len(), second.len());
    assert!(counts.iter().all(|c| c["n"] == 1), "{counts:?}");
    let got = delivered(&sink);
    assert!(got.values().all(|(n, _)| *n == 1), "{got:?}");
    let state: serde_json::Value = serde_json::from_str(
        &bucket_objects(&s3, "evidence", "alerts/_state/scheduler.json")
            ["alerts/_state/scheduler.json"],
    )
    .unwrap();
    assert!(watermark(&state, "exec-into-pod") > w1, "{state}");

    // detect --store on the same lake: the binding is already known, nothing stored twice.
    let store = || {
        let mut cmd = s3.bin();
        let out = run(cmd.args([
            "detect", "--store", "--format", "json", "--since", "30d", "--lake", url,
        ]));
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first_store = store();
    assert!(
        first_store.contains("as retro-hunt in s3://evidence/alerts/findings"),
        "{first_store}"
    );
    let again = store();
    assert!(
        again.contains("recorded 0 new and 0 updated finding(s)"),
        "{again}"
    );
    let after = findings();
    let binding: Vec<&serde_json::Value> = after
        .iter()
        .filter(|f| f["rule_id"] == "privileged-role-binding")
        .collect();
    assert_eq!(binding.len(), 1, "{after:?}");
    assert_eq!(binding[0]["origin"], "scheduled", "known, so not re-stored");

    // The findings are a Delta table: delta-rs's Python reader sees the same revisions, and
    // `verify` walks its hash chain with the others.
    let history = s3.query(
        url,
        "SELECT finding_id, revision, date FROM findings_history ORDER BY finding_id, revision",
    );
    let script = format!(
        r#"
import json, polars as pl
opts = {{"AWS_ENDPOINT_URL": "{ep}", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}}
t = pl.read_delta("{url}/findings", storage_options=opts).sort(["finding_id", "revision"])
print(json.dumps(t.select(["finding_id", "revision", "date"]).to_dicts()))
"#,
        ep = s3.endpoint
    );
    let out = run_ok(Command::new("python3").args(["-c", &script]));
    let other: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(other, history);
    let mut v = s3.bin();
    let out = run(v.args(["verify", "--json", "--lake", url]));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report["heads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["table"] == "findings"),
        "{report}"
    );

    // The bucket as the previous version left it (bare findings files, no log): readers refuse
    // and name the fix, `migrate` adopts every revision, a second run changes nothing.
    let script = format!(
        r#"
import boto3
s3 = boto3.client("s3", endpoint_url="{ep}", aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="evidence", Prefix="alerts/findings/_delta_log/"):
    for o in page.get("Contents", []):
        s3.delete_object(Bucket="evidence", Key=o["Key"])
"#,
        ep = s3.endpoint
    );
    run_ok(Command::new("python3").args(["-c", &script]));
    let mut q = s3.bin();
    let out = run(q.args(["query", "--lake", url, "SELECT count(*) FROM findings"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("auditlake migrate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let migrate = || {
        let mut m = s3.bin();
        let out = run(m.args(["migrate", "--lake", url]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first_run = migrate();
    assert!(
        first_run.contains(&format!("findings of {url}/: ")),
        "{first_run}"
    );
    assert_eq!(
        s3.query(
            url,
            "SELECT finding_id, revision, date FROM findings_history ORDER BY finding_id, revision",
        ),
        history
    );
    let second_run = migrate();
    assert!(
        second_run.contains("findings of") && second_run.contains("already a Delta table"),
        "{second_run}"
    );
    let mut v = s3.bin();
    assert_eq!(
        run(v.args(["verify", "--lake", url])).status.code(),
        Some(0)
    );
}

/// Two `serve` replicas with `[scheduler]` on one bucket: one holds the lease and runs the rules
/// and delivers; when it is killed, the other takes over after the lease expires and picks up
/// where it left off, without alerting anything twice.
#[test]
fn two_scheduler_replicas_on_one_bucket_take_turns_through_the_lease() {
    use crate::scheduler::{delivered, exec_event};
    use crate::webhook::Server;

    if s3_tools().is_none() {
        return;
    }
    let s3 = S3Server::start();
    s3.create_bucket("evidence");
    let url = "s3://evidence/replicas";
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    ingest_lines(
        &s3,
        url,
        dir.path(),
        "first.jsonl",
        &[exec_event(
            "r-1",
            "alice@example.com",
            "pod-1",
            now - chrono::TimeDelta::minutes(2),
        )],
    );
    let configs = [
        s3_scheduler_config(&dir.path().join("a")),
        s3_scheduler_config(&dir.path().join("b")),
    ];
    let sinks = [
        dir.path().join("a/alerts.jsonl"),
        dir.path().join("b/alerts.jsonl"),
    ];
    let a = Server::start_with(s3.bin(), &configs[0], Path::new(url));
    let b = Server::start_with(s3.bin(), &configs[1], Path::new(url));
    let both = || delivered(&sinks[0]).len() + delivered(&sinks[1]).len();
    wait_until(
        "alice's finding",
        || format!("{}\n{}", a.log(), b.log()),
        || both() == 1,
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(both(), 1, "delivered by one replica only");
    let (holder, standby, standby_sink) = match (
        a.log().contains("lease_taken"),
        b.log().contains("lease_taken"),
    ) {
        (true, false) => (a, b, &sinks[1]),
        (false, true) => (b, a, &sinks[0]),
        other => panic!(
            "exactly one replica holds the lease: {other:?}\n{}\n{}",
            a.log(),
            b.log()
        ),
    };
    assert!(
        standby.log().contains("lease_held_elsewhere"),
        "{}",
        standby.log()
    );
    holder.kill9();
    // bob's exec arrives while nobody runs the rules; the standby takes the lease once it
    // expires (`lease_ttl`, 6 s here), re-reads the watermarks and finds it.
    ingest_lines(
        &s3,
        url,
        dir.path(),
        "second.jsonl",
        &[exec_event(
            "r-2",
            "bob@example.com",
            "pod-2",
            chrono::Utc::now() - chrono::TimeDelta::minutes(1),
        )],
    );
    wait_until(
        "bob's finding from the standby",
        || standby.log(),
        || delivered(standby_sink).len() == 1,
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (status, log) = standby.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("lease_taken"), "{log}");
    let got: Vec<(String, usize)> = delivered(standby_sink)
        .into_iter()
        .map(|(_, (n, target))| (target, n))
        .collect();
    assert_eq!(
        got,
        [("pods/exec shop/pod-2".to_owned(), 1)],
        "alice's not again"
    );
}
