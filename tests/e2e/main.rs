//! End-to-end tests: they drive the real `auditlake` binary, as a user would.
//! One test binary (each one links the whole DataFusion stack).

mod ballista;
mod cli;
mod compact;
mod crash;
mod credentials;
mod deploy;
mod detect;
mod duckdb;
mod forensics;
mod grafana;
mod ingest;
mod kafka;
mod lake;
mod logs;
mod objects;
mod query;
mod scheduler;
mod secrets;
mod security;
mod sigma;
mod testdata;
mod wal;
mod webhook;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auditlake"));
    cmd.env_remove("AUDITLAKE_CONFIG")
        .env_remove("AUDITLAKE_LAKE")
        .env_remove("AUDITLAKE_CLUSTER")
        .env_remove("AUDITLAKE_LOG")
        .env_remove("AUDITLAKE_LOG_FORMAT");
    cmd
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/testdata` when present (CI has it beside the clone; a user's clone does not).
pub fn shared_testdata() -> Option<PathBuf> {
    let dir = repo().join("../shared/testdata");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: {} is absent (it ships beside the repo in CI, not in a fresh clone)",
            dir.display()
        );
        None
    }
}

/// The recorded POST bodies of the real API server's webhook backend, in send order.
pub fn real_webhook_posts(testdata: &Path) -> Vec<PathBuf> {
    let mut bodies: Vec<PathBuf> =
        std::fs::read_dir(testdata.join("real-apiserver-metadata/webhook"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".body.json"))
            .collect();
    bodies.sort();
    bodies
}

/// A child process that never outlives the test, even one that fails: an orphaned server would
/// keep its port, and whatever file descriptors it inherited, forever.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run auditlake")
}

/// Runs and asserts exit code 0; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `auditlake ingest --json`: the summary.
pub fn ingest(lake: &Path, cluster: &str, inputs: &[&Path]) -> serde_json::Value {
    let mut cmd = bin();
    cmd.args(["ingest", "--json", "--lake"])
        .arg(lake)
        .args(["--cluster", cluster])
        .args(inputs);
    serde_json::from_str(&run_ok(&mut cmd)).unwrap()
}

/// `auditlake query --format json`: one value per row.
pub fn query(lake: &Path, sql: &str) -> Vec<serde_json::Value> {
    let out = run_ok(
        bin()
            .args(["query", "--format", "json", "--lake"])
            .arg(lake)
            .arg(sql),
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn count(lake: &Path, sql_from_where: &str) -> i64 {
    let rows = query(lake, &format!("SELECT count(*) AS n FROM {sql_from_where}"));
    rows[0]["n"].as_i64().unwrap()
}

/// Waits until something accepts connections on 127.0.0.1:`port` (a child process starting).
pub fn wait_for_port(port: u16, timeout: std::time::Duration, what: &str) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < timeout, "{what} did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
