//! The auditor's and the incident responder's tools, driven as they would drive them: `report`,
//! `timeline`, `shell`, the PostgreSQL endpoint through the real `psql`, and scheduled reports
//! in `serve`.

use std::io::Write;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::webhook::{Pki, write_config};
use crate::*;

/// The samples ingested, and the detection pack's findings stored (retro-hunt).
fn samples_lake_with_findings(dir: &Path) -> PathBuf {
    let lake = dir.join("lake");
    ingest(&lake, "prod-eu", &[&repo().join("samples/audit.log")]);
    let out = run(bin()
        .current_dir(repo())
        .args(["detect", "--store", "--format", "json", "--lake"])
        .arg(&lake));
    assert_eq!(
        out.status.code(),
        Some(1),
        "findings exist: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lake
}

fn report(lake: &Path, args: &[&str]) -> std::process::Output {
    run(bin()
        .current_dir(repo())
        .arg("report")
        .args(args)
        .arg("--lake")
        .arg(lake))
}

#[test]
fn report_renders_the_pack_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let lake = samples_lake_with_findings(dir.path());

    let list = run_ok(bin().current_dir(repo()).args(["report", "--list"]));
    assert_eq!(list.lines().count(), 9, "{list}");
    assert!(
        list.contains("secret-access") && list.contains("CIS 5.1.2"),
        "{list}"
    );

    let md = report(&lake, &["rbac-changes"]);
    assert!(md.status.success());
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(md.starts_with("# RBAC changes\n"), "{md}");
    assert!(md.contains("cluster-admin was granted 1 time(s): backup-operator by dave@example.com to ServiceAccount:kube-system/backup."), "{md}");

    // HTML to a file: self-contained, charts inline.
    let html_path = dir.path().join("out/findings.html");
    let out = report(
        &lake,
        &["findings-summary", "--out", html_path.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<svg") && !html.contains("<script"));
    // The incident of the samples: dave, critical.
    assert!(
        html.contains("The most severe incident: critical"),
        "summary"
    );
    let stored = count(&lake, "findings");
    assert!(
        html.contains(&format!(
            "<div class=\"v\">{stored}</div><div class=\"l\">Findings</div>"
        )),
        "the fact counts the stored findings ({stored})"
    );

    // One section as clean CSV.
    let csv = report(
        &lake,
        &["anonymous-access", "--format", "csv", "--section", "grants"],
    );
    let csv = String::from_utf8(csv.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("stage_at,cluster,user_name,"), "{csv}");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains("dave@example.com") && lines[1].contains("public-view"),
        "{csv}"
    );

    // JSON carries every row.
    let json = report(&lake, &["least-privilege", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["id"], "least-privilege");
    assert!(json["sections"][0]["manifests"].as_array().unwrap().len() >= 5);

    // A window before the attack: nothing to report, and the report says so.
    let before = report(&lake, &["rbac-changes", "--until", "2026-11-20T08:30:00Z"]);
    assert!(
        String::from_utf8(before.stdout)
            .unwrap()
            .contains("cluster-admin was not granted")
    );

    // Unknown report: exit 2, and the names that exist.
    let bad = report(&lake, &["no-such-report"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("no report named \"no-such-report\"") && err.contains("secret-access"),
        "{err}"
    );
}

#[test]
fn timeline_tells_what_the_attacker_did_in_order_with_findings() {
    let dir = tempfile::tempdir().unwrap();
    let lake = samples_lake_with_findings(dir.path());
    let out = run_ok(
        bin()
            .args(["timeline", "--user", "dave@example.com", "--lake"])
            .arg(&lake),
    );
    let requests = count(
        &lake,
        "requests WHERE (user_name = 'dave@example.com' OR impersonated_user_name = 'dave@example.com')",
    );
    assert!(
        out.starts_with(&format!(
            "Timeline of user dave@example.com: {requests} requests"
        )),
        "{out}"
    );
    // The story in the order it happened (samples/README.md).
    let steps = [
        "── from 198.51.100.23 with python-requests/2.31.0",
        "list secrets (all namespaces)",
        "get secrets payments/db-password",
        "create clusterrolebindings backup-operator → cluster-admin for ServiceAccount:kube-system/backup",
        // Flagged on the binding's line (beside rbac-binding-change, whose per-day finding
        // starts on the same request).
        "privileged-role-binding (critical)",
        "create pods kube-system/node-debugger [privileged] [hostPath /]",
        "create pods/exec kube-system/node-debugger: chroot /host bash",
        "dave@example.com as system:admin",
        "delete clusterrolebindings backup-operator",
    ];
    let mut at = 0;
    for step in steps {
        let found = out[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} after byte {at} in:\n{out}"));
        at += found + step.len();
    }

    let object = run_ok(
        bin()
            .args([
                "timeline",
                "--object",
                "clusterrolebindings/backup-operator",
                "--lake",
            ])
            .arg(&lake),
    );
    assert!(
        object.starts_with("Timeline of clusterrolebindings backup-operator: 2 requests"),
        "{object}"
    );
    let ip = run_ok(
        bin()
            .args(["timeline", "--ip", "185.220.101.47", "--json", "--lake"])
            .arg(&lake),
    );
    let first: serde_json::Value = serde_json::from_str(ip.lines().next().unwrap()).unwrap();
    assert_eq!(first["actor"], "system:anonymous");
    assert_eq!(first["code"], 403);
    assert!(
        first["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().starts_with("forbidden-burst-public-ip"))
    );

    let bad = run(bin()
        .args(["timeline", "--object", "just-a-name", "--lake"])
        .arg(&lake));
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected KIND/NAMESPACE/NAME"));
}

#[test]
fn shell_runs_multi_line_statements_and_describes_tables() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod-eu", &[&repo().join("samples/audit.log")]);
    let mut child = bin()
        .args(["shell", "--lake"])
        .arg(&lake)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"\\d\n\\d exec_sessions\nSELECT pod, container\n  FROM exec_sessions\n WHERE user_name = 'dave@example.com' AND kind = 'exec'\n ORDER BY stage_at LIMIT 1;\n\\format csv\nSELECT count(*) AS denied FROM secret_access WHERE NOT allowed;\nSELEC 1;\nDELETE FROM audit_events;\n\\q\nSELECT 'not run';\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("secret_access          view   get/list/watch of secrets"),
        "{stdout}"
    );
    assert!(
        stdout.contains("view exec_sessions: exec, attach and port-forward"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| api-96hv2hndm-9djds | api       |"),
        "{stdout}"
    );
    let denied = count(&lake, "secret_access WHERE NOT allowed");
    assert!(stdout.contains(&format!("denied\n{denied}\n")), "{stdout}");
    assert!(stdout.contains("error: SQL error: ParserError"), "{stdout}");
    assert!(stdout.contains("DML not supported"), "{stdout}");
    assert!(!stdout.contains("not run"), "\\q stops: {stdout}");
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `auditlake pg` in the background, until dropped.
pub(crate) fn start_pg(config: &Path, lake: &Path, port: u16) -> KillOnDrop {
    // Owned before waiting: if it never listens, the failing test still stops it.
    let child = KillOnDrop(
        bin()
            .arg("--config")
            .arg(config)
            .args(["pg", "--listen", &format!("127.0.0.1:{port}"), "--lake"])
            .arg(lake)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, Duration::from_secs(60), "pg endpoint");
    child
}

fn psql(conninfo: &str, password: Option<&str>, sql: &str) -> std::process::Output {
    let mut cmd = std::process::Command::new("psql");
    cmd.args([
        conninfo,
        "--no-psqlrc",
        "-X",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ])
    .env_remove("PGPASSWORD")
    .env("PGCONNECT_TIMEOUT", "10");
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    cmd.output().expect("run psql")
}

pub(crate) fn have_psql() -> bool {
    let ok = std::process::Command::new("psql")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping: psql is not installed (Debian: postgresql-client)");
    }
    ok
}

#[test]
fn psql_queries_the_lake_with_a_password_and_cannot_write() {
    if !have_psql() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary = ingest(&lake, "prod-eu", &[&repo().join("samples/audit.log")]);
    // A verifier line from `auditlake pg-passwd` (the password itself is stored nowhere).
    std::fs::write(
        dir.path().join("pg-users"),
        crate::credentials::pg_passwd("auditor", "correct-horse-battery-staple"),
    )
    .unwrap();
    let config = write_config(dir.path(), "[postgres]\nusers_file = \"pg-users\"\n");
    let port = free_port();
    let _pg = start_pg(&config, &lake, port);
    let conn = format!("host=127.0.0.1 port={port} user=auditor dbname=auditlake sslmode=disable");

    let out = psql(
        &conn,
        Some("correct-horse-battery-staple"),
        "SELECT count(*) FROM audit_events",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        summary["events"].to_string()
    );
    let out = psql(
        &conn,
        Some("correct-horse-battery-staple"),
        "SELECT user_name, count(*) FROM secret_access WHERE NOT allowed GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains('|'),
        "{out:?}"
    );

    for write in [
        "INSERT INTO audit_events (audit_id) VALUES ('x')",
        "DROP TABLE audit_events",
        "CREATE TABLE stolen AS SELECT * FROM audit_events",
        "COPY audit_events TO '/tmp/out.csv'",
    ] {
        let out = psql(&conn, Some("correct-horse-battery-staple"), write);
        assert!(!out.status.success(), "{write} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("read-only"), "{write}: {err}");
    }
    assert_eq!(
        count(&lake, "audit_events"),
        summary["events"].as_i64().unwrap(),
        "the lake is unchanged"
    );

    let out = psql(&conn, Some("wrong-password-123"), "SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Password authentication failed"),
        "{out:?}"
    );
    let out = psql(
        &conn.replace("user=auditor", "user=mallory"),
        Some("correct-horse-battery-staple"),
        "SELECT 1",
    );
    assert!(!out.status.success(), "unknown user");
}

/// SCRAM from a stored verifier over TLS: libpq (channel_binding=prefer) says it could bind a
/// channel (`y,,`), which the server, offering plain SCRAM-SHA-256, accepts.
#[test]
fn psql_with_a_password_over_tls_authenticates_from_a_verifier() {
    if !have_psql() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary = ingest(&lake, "prod-eu", &[&repo().join("samples/audit.log")]);
    let pki = Pki::generate(dir.path());
    std::fs::write(
        dir.path().join("pg-users"),
        crate::credentials::pg_passwd("auditor", "correct-horse-battery-staple"),
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        "[postgres]\nusers_file = \"pg-users\"\ntls_cert = \"server.crt\"\ntls_key = \"server.key\"\n",
    );
    let port = free_port();
    let _pg = start_pg(&config, &lake, port);
    let conn = format!(
        "host=127.0.0.1 port={port} user=auditor dbname=auditlake sslmode=verify-ca sslrootcert={}",
        pki.path("ca.crt").display()
    );
    let out = psql(
        &conn,
        Some("correct-horse-battery-staple"),
        "SELECT count(*) FROM audit_events",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        summary["events"].to_string()
    );
    let out = psql(&conn, Some("correct-horse-battery-stapler"), "SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Password authentication failed"),
        "{out:?}"
    );
    // Channel binding is not offered: a client that insists is refused, not downgraded.
    let out = psql(
        &format!("{conn} channel_binding=require"),
        Some("correct-horse-battery-staple"),
        "SELECT 1",
    );
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn psql_with_a_client_certificate_over_tls_and_plain_text_refused() {
    if !have_psql() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod-eu", &[&repo().join("samples/audit.log")]);
    let pki = Pki::generate(dir.path());
    // libpq refuses a private key others can read.
    for key in ["client-prod.key", "client-dev.key", "client-rogue.key"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pki.path(key), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Certificate login needs the list: the same CA signs webhook senders' certificates.
    let unlisted = write_config(
        dir.path(),
        "[postgres]\ntls_cert = \"server.crt\"\ntls_key = \"server.key\"\nclient_ca = \"ca.crt\"\n",
    );
    let out = run(bin()
        .arg("--config")
        .arg(&unlisted)
        .args(["pg", "--listen", "127.0.0.1:0", "--lake"])
        .arg(&lake));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("postgres.cert_users"),
        "{out:?}"
    );
    let config = write_config(
        dir.path(),
        "[postgres]\ntls_cert = \"server.crt\"\ntls_key = \"server.key\"\nclient_ca = \"ca.crt\"\ncert_users = [\"prod\"]\n",
    );
    let port = free_port();
    let _pg = start_pg(&config, &lake, port);
    let tls = |user: &str, cert: &str| {
        format!(
            "host=127.0.0.1 port={port} user={user} dbname=auditlake sslmode=verify-ca sslrootcert={} sslcert={} sslkey={}",
            pki.path("ca.crt").display(),
            pki.path(&format!("{cert}.crt")).display(),
            pki.path(&format!("{cert}.key")).display()
        )
    };
    // The certificate's CN is `prod`: it authenticates user prod.
    let out = psql(
        &tls("prod", "client-prod"),
        None,
        "SELECT count(*) > 0 FROM exec_sessions",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
    // …and no one else.
    let out = psql(&tls("admin", "client-prod"), None, "SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate is for \"prod\""),
        "{out:?}"
    );
    // A certificate the same CA signed for someone else (a webhook sender's) is no SQL login.
    let out = psql(&tls("dev", "client-dev"), None, "SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a SQL user"),
        "{out:?}"
    );
    // A certificate from another CA fails the handshake; plain text is refused.
    assert!(
        !psql(&tls("prod", "client-rogue"), None, "SELECT 1")
            .status
            .success()
    );
    let out = psql(
        &format!("host=127.0.0.1 port={port} user=prod dbname=auditlake sslmode=disable"),
        None,
        "SELECT 1",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requires TLS"),
        "{out:?}"
    );
}

/// A lake of the samples and a config with one `[[reports]]` entry for secret-access (`entry`
/// adds its schedule and formats) whose last run was two hours ago, as if serve had been down.
fn reports_down_for_two_hours(dir: &Path, entry: &str) -> (PathBuf, PathBuf, DateTime<Utc>) {
    let lake = dir.join("lake");
    ingest(&lake, "prod-eu", &[&repo().join("samples/audit.log")]);
    let config = write_config(
        dir,
        &format!(
            "[report]\nreports_dir = \"{}\"\n\n[[reports]]\nname = \"secret-access\"\nwindow = \"36500d\"\noutput_dir = \"reports-out\"\n{entry}\n",
            repo().join("reports").display()
        ),
    );
    let last = Utc::now() - chrono::TimeDelta::hours(2);
    std::fs::create_dir_all(lake.join("_state")).unwrap();
    std::fs::write(
        lake.join("_state/reports.json"),
        format!("{{\"secret-access\": \"{}\"}}", last.to_rfc3339()),
    )
    .unwrap();
    (lake, config, last)
}

#[test]
fn serve_renders_scheduled_reports_and_makes_up_a_missed_run() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config, last) = reports_down_for_two_hours(
        dir.path(),
        "schedule = \"@hourly\"\nformats = [\"html\", \"json\"]",
    );
    let reports = dir.path().join("reports-out");
    // The made-up run covers the window ending at the latest whole hour; if the test runs across
    // an hour boundary, that is the next hour (and the new hour's own run may follow).
    let hour =
        |t: chrono::DateTime<chrono::Utc>| t.format("secret-access-%Y%m%dT%H00Z").to_string();
    let now = chrono::Utc::now();
    let candidates = [hour(now), hour(now + chrono::TimeDelta::hours(1))];
    let server = crate::webhook::Server::start(&config, &lake);
    let started = Instant::now();
    // Only finished reports count: a report is written as a hidden temporary file in the same
    // directory and renamed into place, so waiting for the final names never sees a partial one.
    let stem = loop {
        if let Some(stem) = candidates.iter().find(|stem| {
            ["html", "json"]
                .iter()
                .all(|ext| reports.join(format!("{stem}.{ext}")).exists())
        }) {
            break stem.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no reports named {candidates:?}: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (status, log) = server.terminate();
    assert!(status.success());
    for ext in ["html", "json"] {
        let written = format!("/{stem}.{ext} bytes=");
        assert!(
            log.lines()
                .any(|l| l.contains("report_written report=secret-access") && l.contains(&written)),
            "{written}: {log}"
        );
    }
    let json_file = reports.join(format!("{stem}.json"));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json_file).unwrap()).unwrap();
    assert!(
        r["summary"].as_str().unwrap().contains("dave@example.com"),
        "{r}"
    );
    let state = std::fs::read_to_string(lake.join("_state/reports.json")).unwrap();
    assert!(
        !state.contains(&last.to_rfc3339()),
        "state moved on: {state}"
    );
}

#[test]
fn scheduled_reports_take_cron_names_and_a_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    // Hourly on the hour in Kolkata (UTC+05:30), every day by name: :30 past each UTC hour.
    let (lake, config, _) = reports_down_for_two_hours(
        dir.path(),
        "schedule = \"0 * * JAN-DEC SUN-SAT\"\ntimezone = \"Asia/Kolkata\"\nformats = [\"json\"]",
    );
    let reports = dir.path().join("reports-out");
    // The made-up run is for the latest hh:30 UTC (or the next one, across a boundary).
    let now = chrono::Utc::now();
    let half_past = |t: chrono::DateTime<chrono::Utc>| {
        let t = t - chrono::TimeDelta::minutes(30);
        t.format("secret-access-%Y%m%dT%H30Z.json").to_string()
    };
    let candidates = [half_past(now), half_past(now + chrono::TimeDelta::hours(1))];
    let server = crate::webhook::Server::start(&config, &lake);
    let started = Instant::now();
    while !candidates.iter().any(|c| reports.join(c).exists()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no report named {candidates:?}: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = server.terminate();
    assert!(status.success());
    let written: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        written.iter().all(|n| n.ends_with("30Z.json")),
        "only Kolkata's hours: {written:?}"
    );

    // Errors name the key and say what is wrong.
    for (entry, want) in [
        (
            "schedule = \"0 8 * * MON-FRI\"\ntimezone = \"Europe/Pariss\"",
            "reports[0].timezone: \"Europe/Pariss\" is not a time zone",
        ),
        (
            "schedule = \"0 25 * * *\"",
            "reports[0].schedule: \"0 25 * * *\": hour field \"25\"",
        ),
        (
            "schedule = \"0 0 30 FEB *\"",
            "reports[0].schedule: \"0 0 30 FEB *\" never fires",
        ),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(
            &cfg,
            format!("[[reports]]\nname = \"secret-access\"\noutput_dir = \"out\"\n{entry}\n"),
        )
        .unwrap();
        let out = bin()
            .args(["query", "--lake"])
            .arg(&lake)
            .arg("--config")
            .arg(&cfg)
            .arg("SELECT 1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{entry}: {err}");
        assert!(err.contains(want), "{entry}: {err}");
    }
}
