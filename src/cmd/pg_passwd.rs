//! `auditlake pg-passwd USER`: one `[postgres] users_file` line, `USER:SCRAM-SHA-256$…`, from a
//! password read on stdin. The line holds a verifier (PostgreSQL's `pg_authid` form), not the
//! password: whoever reads the users file still cannot log in with it.

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::{Context, bail};
use auditlake_server::scram::{MIN_ITERATIONS, Verifier};

use crate::EXIT_OK;
use crate::cli::PgPasswdArgs;

/// As before verifiers: a SQL login to an evidence store deserves more than a short password.
const MIN_PASSWORD_CHARS: usize = 12;

pub fn run(args: &PgPasswdArgs) -> anyhow::Result<u8> {
    let user = args.user.as_str();
    if user.is_empty()
        || user.starts_with('#')
        || user
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        bail!(
            "user {user:?}: a users-file name has no ':', spaces or control characters, and does not start with '#'"
        );
    }
    if args.iterations < MIN_ITERATIONS {
        bail!(
            "--iterations {}: at least {MIN_ITERATIONS} are required",
            args.iterations
        );
    }
    let password = read_password()?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the password is shorter than {MIN_PASSWORD_CHARS} characters");
    }
    let verifier = Verifier::from_password(&password, args.iterations);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{user}:{}", verifier.to_postgres())?;
    Ok(EXIT_OK)
}

/// From a terminal: asked twice, not echoed. From a pipe or file: its one line (one trailing
/// newline dropped, as `echo` leaves it).
fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut text = String::new();
        stdin
            .lock()
            .read_to_string(&mut text)
            .context("reading the password from stdin")?;
        let text = strip_newline(text);
        if text.contains('\n') {
            bail!("stdin holds more than one line: give the password alone");
        }
        return Ok(text);
    }
    let first = prompt("Password: ")?;
    let again = prompt("Again: ")?;
    if first != again {
        bail!("the two passwords differ");
    }
    Ok(first)
}

fn strip_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

/// One line from the terminal with echo off (restored however the read ends).
fn prompt(label: &str) -> anyhow::Result<String> {
    eprint!("{label}");
    std::io::stderr().flush()?;
    let line = {
        let _quiet = NoEcho::on_stdin()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line
    };
    // The newline the user typed was not echoed either.
    eprintln!();
    Ok(strip_newline(line))
}

/// The terminal's echo turned off until drop.
struct NoEcho {
    saved: libc::termios,
}

impl NoEcho {
    fn on_stdin() -> anyhow::Result<NoEcho> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios this function owns.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return Err(std::io::Error::last_os_error()).context("reading terminal settings");
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) != 0 {
                return Err(std::io::Error::last_os_error()).context("turning terminal echo off");
            }
            Ok(NoEcho { saved })
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `on_stdin`.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
        }
    }
}
