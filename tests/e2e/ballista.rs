//! Issue 20: a Ballista cluster of the binary's own scheduler and two executors, on loopback,
//! over a lake on the S3-protocol server (moto). Every process reads the bucket with its own
//! environment; nothing but plans and results crosses between them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::forensics::free_port;
use crate::lake::{S3Server, s3_tools};
use crate::{KillOnDrop, repo, run, run_ok, wait_for_port};

/// Loss detection in seconds instead of minutes, so the kill test is quick.
const HEARTBEAT: &str = "1";
const EXECUTOR_TIMEOUT: &str = "5";
const EXPIRE_INTERVAL: &str = "1";

struct Cluster {
    scheduler: KillOnDrop,
    executors: Vec<KillOnDrop>,
    engine: String,
    logs: std::path::PathBuf,
    /// `--metrics-listen` ports: the scheduler's, then each executor's.
    metrics: Vec<u16>,
}

impl Cluster {
    fn start(s3: &S3Server, lake: &str, logs: &Path) -> Cluster {
        let port = free_port();
        let metrics: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let log = |name: &str| {
            Stdio::from(std::fs::File::create(logs.join(format!("{name}.log"))).unwrap())
        };
        let scheduler = KillOnDrop(
            s3.bin()
                .args(["ballista", "scheduler", "--lake", lake, "--listen"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["--executor-timeout", EXECUTOR_TIMEOUT])
                .args(["--expire-interval", EXPIRE_INTERVAL])
                .arg("--metrics-listen")
                .arg(format!("127.0.0.1:{}", metrics[0]))
                .stdout(Stdio::null())
                .stderr(log("scheduler"))
                .spawn()
                .unwrap(),
        );
        wait_for_port(port, Duration::from_secs(60), "ballista scheduler");
        let engine = format!("ballista://127.0.0.1:{port}");
        let mut executors = Vec::new();
        for i in 0..2 {
            let (flight, grpc) = (free_port(), free_port());
            executors.push(KillOnDrop(
                s3.bin()
                    .args([
                        "ballista",
                        "executor",
                        "--lake",
                        lake,
                        "--scheduler",
                        &engine,
                    ])
                    .arg("--listen")
                    .arg(format!("127.0.0.1:{flight}"))
                    .args(["--grpc-port", &grpc.to_string(), "--vcores", "2"])
                    .args(["--heartbeat-interval", HEARTBEAT])
                    .arg("--work-dir")
                    .arg(logs.join(format!("work-{i}")))
                    .arg("--metrics-listen")
                    .arg(format!("127.0.0.1:{}", metrics[i + 1]))
                    .stdout(Stdio::null())
                    .stderr(log(&format!("executor-{i}")))
                    .spawn()
                    .unwrap(),
            ));
            // (The gRPC port stays closed: the default pull scheduling does not use it.)
            wait_for_port(flight, Duration::from_secs(60), "ballista executor");
        }
        for (port, what) in metrics.iter().zip(["scheduler", "executor", "executor"]) {
            wait_for_port(*port, Duration::from_secs(60), &format!("{what} metrics"));
        }
        Cluster {
            scheduler,
            executors,
            engine,
            logs: logs.to_path_buf(),
            metrics,
        }
    }

    /// `GET /metrics` of the node at `metrics[i]`.
    fn scrape(&self, i: usize) -> String {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.metrics[i])).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        response
    }

    /// The processes' logs, for a failing assertion's message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["scheduler", "executor-0", "executor-1"] {
            let text =
                std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
            out.push_str(&format!("--- {name}:\n{text}\n"));
        }
        out
    }
}

/// `auditlake query --format csv` over `lake` with `engine`: the rows, sorted (distributed
/// output order of equal sort keys is not the local one).
fn rows(s3: &S3Server, lake: &str, engine: &str, sql: &str) -> Vec<String> {
    sorted_lines(run_ok(&mut query_cmd(s3, lake, engine, sql)).as_bytes())
}

/// `auditlake query --format csv` of `sql` on `engine`.
fn query_cmd(s3: &S3Server, lake: &str, engine: &str, sql: &str) -> Command {
    let mut cmd = s3.bin();
    cmd.args([
        "query", "--format", "csv", "--lake", lake, "--engine", engine, sql,
    ]);
    cmd
}

/// The value of the sample `series` (name and labels, as printed) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// CSV rows in sorted order (a cluster returns them in any order).
fn sorted_lines(out: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(out)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// benches/lake_bench.py's Q1–Q5.
const QUERIES: [(&str, &str); 5] = [
    (
        "Q1",
        "SELECT stage_at, user_name, verb, namespace, name FROM audit_events \
         WHERE resource = 'secrets' AND verb IN ('get', 'list', 'watch') AND response_code BETWEEN 200 AND 299 \
         AND user_name NOT LIKE 'system:%' ORDER BY stage_at",
    ),
    (
        "Q2",
        "SELECT stage_at, user_name, namespace, name, subresource FROM audit_events \
         WHERE resource = 'pods' AND subresource IN ('exec', 'attach') ORDER BY stage_at",
    ),
    (
        "Q3",
        "SELECT stage_at, user_name, name, binding_subjects FROM audit_events \
         WHERE resource = 'clusterrolebindings' AND verb = 'create' AND role_ref_name = 'cluster-admin' ORDER BY stage_at",
    ),
    (
        "Q4",
        "SELECT h, user_name, n FROM ( \
           SELECT h, user_name, n, row_number() OVER (PARTITION BY h ORDER BY n DESC, user_name) AS r FROM ( \
             SELECT date_trunc('hour', stage_at) AS h, user_name, count(*) AS n FROM audit_events GROUP BY 1, 2)) \
         WHERE r <= 10 ORDER BY h, n DESC, user_name",
    ),
    (
        "Q5",
        "SELECT stage_at, user_name, namespace, name FROM audit_events \
         WHERE resource = 'pods' AND subresource IS NULL AND verb = 'create' AND pod_privileged ORDER BY stage_at",
    ),
];

#[test]
fn ballista_cluster_gives_the_local_rows_refuses_writes_and_survives_a_killed_executor() {
    if s3_tools().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    s3.create_bucket("cluster");
    let lake = "s3://cluster/lake";
    // The samples (every scenario of Q1–Q5) and a generated day, so scans have many files and
    // the kill lands mid-query.
    let generated = dir.path().join("generated.log");
    run_ok(
        crate::bin()
            .args(["generate", "--events", "150000", "--seed", "7", "--out"])
            .arg(&generated),
    );
    for (cluster, log) in [
        ("prod", repo().join("samples/audit.log")),
        ("bulk", generated),
    ] {
        run_ok(
            s3.bin()
                .args(["ingest", "--quiet", "--lake", lake, "--cluster", cluster])
                .arg(&log),
        );
    }
    let mut cluster = Cluster::start(&s3, lake, dir.path());

    // Q1–Q5: exactly the local rows.
    for (name, sql) in QUERIES {
        let local = rows(&s3, lake, "local", sql);
        let started = Instant::now();
        let distributed = rows(&s3, lake, &cluster.engine, sql);
        eprintln!(
            "{name}: {} rows, ballista {:.2} s",
            local.len(),
            started.elapsed().as_secs_f64()
        );
        assert!(
            local.len() > 1,
            "{name} selects nothing: a vacuous comparison"
        );
        assert_eq!(distributed, local, "{name}\n{}", cluster.logs());
    }

    // The scheduler's metrics count those five queries; both executors are registered and
    // export their memory and CPU.
    let scheduler = cluster.scrape(0);
    let completed = r#"auditlake_ballista_jobs_finished_total{outcome="completed"}"#;
    assert!(sample(&scheduler, completed).unwrap() >= 5.0, "{scheduler}");
    assert!(sample(&scheduler, "auditlake_ballista_jobs_submitted_total").unwrap() >= 5.0);
    assert!(sample(&scheduler, "auditlake_ballista_job_seconds_count").unwrap() >= 5.0);
    assert_eq!(
        sample(&scheduler, "auditlake_ballista_executors"),
        Some(2.0)
    );
    assert!(scheduler.contains(r#"role="scheduler"} 1"#), "{scheduler}");
    // deploy/ballista's alerts use only series the scheduler exports.
    let rules =
        std::fs::read_to_string(repo().join("deploy/ballista/prometheusrule.yaml")).unwrap();
    let used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("auditlake_"))
        .collect();
    assert!(used.len() >= 4, "{used:?}");
    for series in used {
        assert!(
            scheduler.lines().any(|l| l.starts_with(series)),
            "deploy/ballista/prometheusrule.yaml uses {series}, which the scheduler does not export"
        );
    }
    for i in [1, 2] {
        let executor = cluster.scrape(i);
        let resident = sample(
            &executor,
            "auditlake_ballista_executor_resident_memory_bytes",
        )
        .unwrap();
        assert!(resident > 10e6, "{executor}");
        assert!(sample(&executor, "auditlake_ballista_executor_cpu_seconds").unwrap() > 0.0);
        assert!(sample(&executor, "auditlake_ballista_executor_work_dir_bytes").is_some());
        assert!(executor.contains(r#"role="executor"} 1"#), "{executor}");
    }

    // The shell and the timeline run on the cluster too: `--engine`, and `[query] engine` from
    // the config file (the scheduler counts the job it ran).
    let (q3_name, q3) = QUERIES[2];
    let local_q3 = rows(&s3, lake, "local", q3);
    // `global` goes before the subcommand (`--config`), `args` after it.
    let shell = |global: &[&str], args: &[&str]| {
        let mut child = s3
            .bin()
            .args(global)
            .args(["shell", "--lake", lake, "--format", "csv"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            writeln!(stdin, "{q3};").unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("error"),
            "shell {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        sorted_lines(&out.stdout)
    };
    assert_eq!(
        shell(&[], &["--engine", cluster.engine.as_str()]),
        local_q3,
        "{q3_name} in the shell"
    );
    let config = dir.path().join("auditlake.toml");
    std::fs::write(
        &config,
        format!("[query]\nengine = \"{}\"\n", cluster.engine),
    )
    .unwrap();
    let submitted = |text: &str| sample(text, "auditlake_ballista_jobs_submitted_total").unwrap();
    let before = submitted(&cluster.scrape(0));
    let config_arg = config.to_str().unwrap();
    assert_eq!(
        shell(&["--config", config_arg], &[]),
        local_q3,
        "[query] engine"
    );
    assert!(
        submitted(&cluster.scrape(0)) > before,
        "the shell did not run on the cluster of [query] engine"
    );
    // A user of Q1's rows (not the header): the same timeline, findings flags included (their
    // labels sorted, so the lines are identical).
    let user = rows(&s3, lake, "local", QUERIES[0].1)
        .iter()
        .find(|l| !l.starts_with("stage_at"))
        .and_then(|l| l.split(',').nth(1).map(str::to_owned))
        .unwrap();
    let timeline = |engine: &str| {
        run_ok(s3.bin().args([
            "timeline",
            "--lake",
            lake,
            "--engine",
            engine,
            "--user",
            &user,
            "--json",
            "--since",
            "2020-01-01T00:00:00Z",
            "--until",
            "2030-01-01T00:00:00Z",
        ]))
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    let local_timeline = timeline("local");
    assert!(local_timeline.len() > 1, "{user}: {local_timeline:?}");
    assert_eq!(
        timeline(&cluster.engine),
        local_timeline,
        "timeline of {user}"
    );

    // The whole rule pack (a retro-hunt) and two reports: the local output.
    let detect = |engine: &str| {
        let out = run(s3
            .bin()
            .args(["detect", "--lake", lake, "--engine", engine]));
        assert_eq!(
            out.status.code(),
            Some(1),
            "detect --engine {engine}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
        sorted_lines(&out.stdout)
    };
    let local = detect("local");
    assert!(local.len() > 10, "too few findings to compare: {local:?}");
    assert_eq!(detect(&cluster.engine), local, "detect");
    let report = |name: &str, engine: &str| {
        let out = run_ok(s3.bin().args([
            "report",
            name,
            "--lake",
            lake,
            "--engine",
            engine,
            "--since",
            "2020-01-01T00:00:00Z",
            "--until",
            "2030-01-01T00:00:00Z",
            "--format",
            "json",
        ]));
        let mut value: serde_json::Value = serde_json::from_str(&out).unwrap();
        without_generated_at(&mut value);
        value
    };
    for name in ["secret-access", "rbac-changes"] {
        assert_eq!(
            report(name, &cluster.engine),
            report(name, "local"),
            "report {name}"
        );
    }

    // What the cluster cannot read is refused, naming it; writes too.
    let refused = |sql: &str| {
        let out = run(s3
            .bin()
            .args(["query", "--lake", lake, "--engine", &cluster.engine, sql]));
        assert_eq!(out.status.code(), Some(2), "{sql}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The findings are a Delta table too: stored by a retro-hunt, read on the cluster as
    // locally, and the findings summary renders the same.
    let out = run(s3.bin().args(["detect", "--store", "--lake", lake]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let incidents =
        "SELECT incident_id, severity, findings, events FROM incidents ORDER BY incident_id";
    let local_incidents = rows(&s3, lake, "local", incidents);
    assert!(local_incidents.len() > 1, "{local_incidents:?}");
    assert_eq!(rows(&s3, lake, &cluster.engine, incidents), local_incidents);
    assert_eq!(
        report("findings-summary", &cluster.engine),
        report("findings-summary", "local"),
        "report findings-summary"
    );
    let err = refused(
        "COPY (SELECT user_name FROM audit_events) TO 's3://cluster/copied/' STORED AS PARQUET",
    );
    assert!(err.contains("DML not supported"), "{err}");
    // A plan submitted by a client without auditlake's guard is refused by the scheduler.
    let err = raw_client_copy(&s3, &cluster.engine, "s3://cluster/copied-raw/");
    assert!(
        err.contains("DML not supported"),
        "{err}\n{}",
        cluster.logs()
    );
    assert!(
        crate::lake::bucket_objects(&s3, "cluster", "copied").is_empty(),
        "a refused COPY wrote objects"
    );

    // kill -9 one executor during a query: it completes on the other, or fails clearly. A
    // self-join by event key shuffles both sides (2-3 s here); the kill lands once the lost
    // executor holds finished shuffle output (and, at times, running tasks) — with 4 partitions,
    // after its map stages, the case in which Ballista 55's push scheduling hangs (seen here
    // before the default became pull).
    let heavy = "SELECT a.user_name, a.verb, count(*) AS n, max(b.stage_at) AS last \
                 FROM audit_events a JOIN audit_events b \
                 ON a.audit_id = b.audit_id AND a.stage = b.stage AND a.cluster = b.cluster \
                 GROUP BY 1, 2 ORDER BY n DESC, 1, 2";
    let local = rows(&s3, lake, "local", heavy);
    let query = query_cmd(&s3, lake, &cluster.engine, heavy)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let victim = cluster.executors.remove(0);
    drop(victim); // SIGKILL (Child::kill), then reaped.
    // A job that never finishes is the failure this guards against: give up after a minute.
    let mut query = query;
    let started = Instant::now();
    while query.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = query.kill();
            panic!("the query hangs after the kill\n{}", cluster.logs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = query.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        let got = sorted_lines(&out.stdout);
        assert_eq!(got, local, "completed after the kill with other rows");
        eprintln!("the query completed after the kill");
    } else {
        // An executor that died is the environment's fault (exit 3), not the query's.
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.starts_with("error: "), "no clear error: {stderr}");
        eprintln!("the query failed after the kill: {stderr}");
    }
    // The next query works, on the executor left (once the scheduler has noticed the loss).
    let started = Instant::now();
    loop {
        let out = run(&mut query_cmd(&s3, lake, &cluster.engine, heavy));
        if out.status.success() {
            let got = sorted_lines(&out.stdout);
            assert_eq!(got, local);
            eprintln!(
                "next query ok {:.1} s after the kill",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the cluster does not recover: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The scheduler's metrics show the loss: one executor left.
    let started = Instant::now();
    while sample(&cluster.scrape(0), "auditlake_ballista_executors") != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            cluster.scrape(0)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = &cluster.scheduler;
}

/// Drops the render time, the one field two runs of a report differ in.
fn without_generated_at(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("generated_at");
            map.values_mut().for_each(without_generated_at);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_generated_at),
        _ => {}
    }
}

/// `COPY (SELECT 1) TO target` submitted with a plain Ballista client (no auditlake guard):
/// the error it gets.
fn raw_client_copy(s3: &S3Server, engine: &str, target: &str) -> String {
    use ballista_core::extension::SessionStateExt;
    use datafusion::execution::SessionState;
    use datafusion::prelude::SessionContext;
    let url = engine.replace("ballista://", "http://");
    let _ = s3;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = SessionContext::new_with_state(SessionState::new_ballista_state(url).unwrap());
        let df = ctx
            .sql(&format!(
                "COPY (SELECT 1 AS x) TO '{target}' STORED AS PARQUET"
            ))
            .await
            .unwrap();
        match df.collect().await {
            Ok(_) => panic!("the scheduler ran a COPY"),
            Err(e) => e.to_string(),
        }
    })
}
