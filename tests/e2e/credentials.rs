//! Credentials from where operators keep them: secret-valued config keys read from the
//! environment or a mounted file reach the component that uses them and nothing else — not the
//! log, not an error, not `--help` — and the SQL endpoint's users file holds SCRAM verifiers
//! (`auditlake pg-passwd`), never passwords.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::webhook::{Server, runtime, write_config};
use crate::*;

const AUTH_VALUE: &str = "Bearer ENVB3ARERS3CRET";
const API_KEY: &str = "F1LEAP1KEYS3CRET";
const URL_TOKEN: &str = "URLT0KENS3CRET";
const INLINE: &str = "INL1NETOKENS3CRET";

/// One HTTP request as received: request line and headers (lower-cased names), raw.
struct Request {
    head: String,
}

/// A local HTTP receiver answering 200 to everything; each request's head comes out of the
/// channel.
fn receiver() -> (u16, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut head = String::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        head.push_str(&line);
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let _ = tx.send(Request { head });
                    let mut w = &stream;
                    let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (port, rx)
}

fn exec_event_list() -> String {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    let exec = format!(
        r#"{{"level":"Metadata","auditID":"x1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/pods/db-0/exec?command=sh&container=app&stdin=true&tty=true","verb":"create","user":{{"username":"mallory","groups":["developers"]}},"sourceIPs":["10.0.12.7"],"userAgent":"kubectl/v1.31.2","objectRef":{{"resource":"pods","namespace":"shop","name":"db-0","apiVersion":"v1","subresource":"exec"}},"responseStatus":{{"metadata":{{}},"code":101}},"requestReceivedTimestamp":"{now}","stageTimestamp":"{now}","annotations":{{"authorization.k8s.io/decision":"allow"}}}}"#
    );
    format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{exec}]}}"#)
}

#[test]
fn sink_secrets_from_env_and_file_reach_the_receiver_and_never_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let (port, requests) = receiver();
    // As Kubernetes mounts a Secret key (`echo` leaves the newline too).
    std::fs::write(dir.path().join("api-key"), format!("{API_KEY}\n")).unwrap();
    std::fs::write(
        dir.path().join("hook-url"),
        format!("http://127.0.0.1:{port}/hooks/T1?token={URL_TOKEN}\n"),
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[webhook]\nflush_interval_secs = 0.2\n\n[detect]\nrules_dir = \"{rules}\"\n\n\
             [scheduler]\nrules = [\"exec-into-pod\"]\nschedule_secs = 1\ntick_secs = 0.2\nsettle_secs = 0\n\n\
             [[sinks]]\nname = \"hook\"\ntype = \"webhook\"\nurl = {{ file = \"hook-url\" }}\n\
             [sinks.headers]\nAuthorization = {{ env = \"AUDITLAKE_E2E_SINK_AUTH\" }}\n\
             X-Api-Key = {{ file = \"api-key\" }}\nX-Inline-Token = \"{INLINE}\"\n",
            rules = repo().join("rules").display()
        ),
    );
    // SAFETY: set before any thread of this test reads the environment; the child inherits it.
    unsafe { std::env::set_var("AUDITLAKE_E2E_SINK_AUTH", AUTH_VALUE) };
    let server = Server::start(&config, &lake);
    let rt = runtime();
    let status = rt.block_on(async {
        crate::webhook::plain_client()
            .post(format!("{}/audit/prod", server.url))
            .header("content-type", "application/json")
            .body(exec_event_list())
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    let request = requests
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no delivery:\n{}", server.log()));
    let (_, log) = server.terminate();

    // Each secret reached the receiver, exactly (the file's trailing newline trimmed).
    let head = request.head;
    assert!(
        head.starts_with(&format!("POST /hooks/T1?token={URL_TOKEN} HTTP/1.1\r\n")),
        "{head}"
    );
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.trim().to_owned())
    };
    assert_eq!(header("authorization").as_deref(), Some(AUTH_VALUE));
    assert_eq!(header("x-api-key").as_deref(), Some(API_KEY));
    assert_eq!(header("x-inline-token").as_deref(), Some(INLINE));

    // None reached the log; the inline one is named there, by key, with the way out.
    for secret in [AUTH_VALUE, "ENVB3ARERS3CRET", API_KEY, URL_TOKEN, INLINE] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
    assert!(
        log.contains("config_inline_secret key=sinks[0].headers.X-Inline-Token"),
        "{log}"
    );
    assert!(
        !log.contains("key=sinks[0].headers.Authorization") && !log.contains("key=sinks[0].url"),
        "env/file secrets are not warned about:\n{log}"
    );
}

#[test]
fn secret_errors_name_the_key_and_where_never_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let try_config = |body: &str| {
        let config = write_config(dir.path(), body);
        let out = run(bin()
            .arg("--config")
            .arg(&config)
            .args(["query", "--lake"])
            .arg(dir.path().join("lake"))
            .arg("SELECT 1")
            .env_remove("AUDITLAKE_E2E_UNSET")
            .env("AUDITLAKE_E2E_SET", "ENVS3CRETVALUE"));
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // An unset variable: the key and the variable.
    let err = try_config(
        "[kafka]\nbrokers = \"b:9092\"\ntopics = [\"audit\"]\n\
         [kafka.properties]\n\"sasl.password\" = { env = \"AUDITLAKE_E2E_UNSET\" }\n",
    );
    assert!(
        err.contains("kafka.properties.\"sasl.password\"")
            && err.contains("environment variable AUDITLAKE_E2E_UNSET is not set"),
        "{err}"
    );
    // A missing file: the key and the path.
    let missing = dir.path().join("no-such-secret");
    let err = try_config(&format!(
        "[lake.storage]\naws_secret_access_key = {{ file = \"{}\" }}\n",
        missing.display()
    ));
    assert!(
        err.contains("lake.storage.aws_secret_access_key")
            && err.contains(&missing.display().to_string()),
        "{err}"
    );
    // A broken line that holds a secret: where it is, never what it says (toml would quote it).
    let err = try_config("[lake.storage]\naws_secret_access_key = \"INLINES3CRET\nx = 1\n");
    assert!(err.contains("line 2"), "{err}");
    assert!(!err.contains("INLINES3CRET"), "{err}");
    // A secret of the wrong type: named, not quoted.
    let err = try_config(
        "[[sinks]]\nname = \"a\"\ntype = \"webhook\"\nurl = \"http://x\"\nheaders = { Authorization = 98765432123 }\n",
    );
    assert!(
        err.contains("line 5") && err.contains("found a number"),
        "{err}"
    );
    assert!(!err.contains("98765432123"), "{err}");
    // A config that resolves is fine; a bad sink URL read from the environment is refused
    // without echoing it.
    let err = try_config(
        "[[sinks]]\nname = \"a\"\ntype = \"webhook\"\nurl = { env = \"AUDITLAKE_E2E_SET\" }\n",
    );
    assert!(err.contains("sinks[0].url"), "{err}");
    assert!(!err.contains("ENVS3CRETVALUE"), "{err}");

    // --help shows no value of any variable it documents, nor of the ones secrets come from.
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["pg-passwd", "--help"],
    ] {
        let out = run(bin().args(args).env("AUDITLAKE_E2E_SET", "ENVS3CRETVALUE"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        assert!(!text.contains("ENVS3CRETVALUE"), "{args:?}: {text}");
    }
}

/// `auditlake pg-passwd USER` with the password on stdin: the users-file line.
pub fn pg_passwd(user: &str, password: &str) -> String {
    let mut child = bin()
        .args(["pg-passwd", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn pg_passwd_writes_a_postgres_verifier_and_never_the_password() {
    let line = pg_passwd("auditor", "correct-horse-battery-staple");
    assert!(line.ends_with('\n') && line.lines().count() == 1, "{line}");
    let (user, verifier) = line.trim().split_once(':').unwrap();
    assert_eq!(user, "auditor");
    // SCRAM-SHA-256$4096:<16-byte salt>$<32-byte StoredKey>:<32-byte ServerKey>, base64.
    let rest = verifier
        .strip_prefix("SCRAM-SHA-256$4096:")
        .expect(verifier);
    let (salt, keys) = rest.split_once('$').unwrap();
    let (stored, server) = keys.split_once(':').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(b64.decode(salt).unwrap().len(), 16);
    assert_eq!(b64.decode(stored).unwrap().len(), 32);
    assert_eq!(b64.decode(server).unwrap().len(), 32);
    assert!(!line.contains("correct-horse"));
    // A fresh salt each time: the same password never gives the same line.
    assert_ne!(line, pg_passwd("auditor", "correct-horse-battery-staple"));

    for (args, stdin, why) in [
        (&["pg-passwd", "auditor"][..], "short\n", "shorter than 12"),
        (&["pg-passwd", "a:b"], "correct-horse-battery\n", "':'"),
        (
            &["pg-passwd", "auditor", "--iterations", "100"],
            "correct-horse-battery\n",
            "at least 4096",
        ),
        (
            &["pg-passwd", "auditor"],
            "one-password-line\ntwo\n",
            "more than one line",
        ),
    ] {
        let mut child = bin()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_plain_text_users_file_is_refused_naming_the_file_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, "prod", &[&repo().join("samples/audit.log")]);
    let users = dir.path().join("pg-users");
    let good = pg_passwd("auditor", "correct-horse-battery-staple");
    std::fs::write(&users, format!("{good}legacy,PLAINPASSWORD123\n")).unwrap();
    let config = write_config(dir.path(), "[postgres]\nusers_file = \"pg-users\"\n");
    let out = run(bin()
        .arg("--config")
        .arg(&config)
        .args(["pg", "--listen", "127.0.0.1:0", "--lake"])
        .arg(&lake));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&users.display().to_string())
            && err.contains("line 2")
            && err.contains("auditlake pg-passwd"),
        "{err}"
    );
    assert!(!err.contains("PLAINPASSWORD123"), "{err}");
}

/// On a terminal (a pseudo-terminal driven by Python's `pty`): asked twice, nothing echoed.
#[test]
fn pg_passwd_on_a_terminal_asks_twice_without_echo() {
    const DRIVER: &str = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "pg-passwd", "auditor"])
out = b""
def drain(seconds):
    global out
    end = time.time() + seconds
    while time.time() < end:
        if select.select([fd], [], [], 0.05)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                return
for answer in sys.argv[2:]:
    drain(1.0)
    os.write(fd, answer.encode() + b"\n")
drain(3.0)
os.waitpid(pid, 0)
sys.stdout.write(out.decode())
"#;
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output();
    if !python.is_ok_and(|o| o.status.success()) {
        eprintln!("skipping: python3 is not installed");
        return;
    }
    let drive = |answers: &[&str]| {
        let out = std::process::Command::new("python3")
            .args(["-c", DRIVER, env!("CARGO_BIN_EXE_auditlake")])
            .args(answers)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let screen = drive(&["correct-horse-battery", "correct-horse-battery"]);
    assert!(
        screen.contains("Password: ") && screen.contains("Again: "),
        "{screen:?}"
    );
    assert!(screen.contains("auditor:SCRAM-SHA-256$4096:"), "{screen:?}");
    assert!(
        !screen.contains("horse"),
        "the password was echoed: {screen:?}"
    );
    let screen = drive(&["correct-horse-battery", "correct-horse-batterx"]);
    assert!(screen.contains("the two passwords differ"), "{screen:?}");
    assert!(!screen.contains("SCRAM-SHA-256$"), "{screen:?}");
}
