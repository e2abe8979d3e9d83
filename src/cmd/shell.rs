//! `auditlake shell`: an interactive SQL prompt over the one session every entry point uses.
//! Statements end with `;` and may span lines; backslash commands describe the lake and change
//! the output. On a terminal, line editing and history (rustyline); from a pipe, plain lines,
//! so the shell can be scripted and tested.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use auditlake_query::{
    AUDIT_EVENTS_TABLE, OutputFormat, QueryError, SessionOptions, VIEWS, open_lake_at, run_sql,
    write_batches,
};
use auditlake_schemas::{AUDIT_EVENT_COLUMNS, FINDING_COLUMNS, PARTITION_COLUMN_DEFS};
use chrono::Utc;
use datafusion::prelude::SessionContext;

use crate::EXIT_OK;
use crate::cli::ShellArgs;
use crate::config::Config;
use crate::options::session_options;

const HELP: &str = "\
Statements end with ';' and may span lines.
  \\d              tables and views, with what each answers
  \\d NAME         columns of a table or view (for audit_events and findings: their meaning)
  \\format F       output as table, json or csv
  \\timing         show how long each statement took (toggle)
  \\?              this help
  \\q              quit (also Ctrl-D)
Start with: SELECT * FROM secret_access LIMIT 10;";

struct Shell {
    ctx: SessionContext,
    format: OutputFormat,
    timing: bool,
}

/// What one input line means.
#[derive(Debug, PartialEq)]
enum Input {
    /// Keep reading: the statement is not finished.
    More,
    Statement(String),
    Command(String),
    Quit,
}

/// Feeds `line` into the pending `buffer`.
fn feed(buffer: &mut String, line: &str) -> Input {
    let trimmed = line.trim();
    if buffer.trim().is_empty() {
        if trimmed.starts_with('\\') {
            return if matches!(trimmed, "\\q" | "\\quit") {
                Input::Quit
            } else {
                Input::Command(trimmed.to_owned())
            };
        }
        if matches!(trimmed, "quit" | "exit") {
            return Input::Quit;
        }
    }
    if !buffer.is_empty() {
        buffer.push('\n');
    }
    buffer.push_str(line);
    if trimmed.ends_with(';') {
        let stmt = std::mem::take(buffer);
        Input::Statement(stmt.trim().trim_end_matches(';').trim().to_owned())
    } else {
        Input::More
    }
}

impl Shell {
    async fn statement(&mut self, sql: &str, out: &mut dyn Write) -> std::io::Result<()> {
        if sql.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        match run_sql(&self.ctx, sql).await {
            Ok(batches) => {
                if let Err(e) = write_batches(&batches, self.format, out) {
                    writeln!(out, "error: {e}")?;
                }
                if self.timing {
                    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                    writeln!(
                        out,
                        "{rows} rows in {:.3} s",
                        started.elapsed().as_secs_f64()
                    )?;
                }
            }
            Err(e @ QueryError::Sql(_)) => writeln!(out, "error: {e}")?,
            Err(e) => writeln!(out, "error: {e}")?,
        }
        Ok(())
    }

    async fn command(&mut self, cmd: &str, out: &mut dyn Write) -> std::io::Result<()> {
        let mut words = cmd.split_whitespace();
        match (words.next().unwrap_or(""), words.next()) {
            ("\\?" | "\\h" | "\\help", _) => writeln!(out, "{HELP}"),
            ("\\timing", _) => {
                self.timing = !self.timing;
                writeln!(out, "timing {}", if self.timing { "on" } else { "off" })
            }
            ("\\format", Some(f)) => match f.parse::<OutputFormat>() {
                Ok(f) => {
                    self.format = f;
                    writeln!(
                        out,
                        "output format {}",
                        cmd.split_whitespace().nth(1).unwrap_or("")
                    )
                }
                Err(e) => writeln!(out, "error: {e}"),
            },
            ("\\d", None) => self.list_tables(out).await,
            ("\\d", Some(name)) => self.describe(name, out).await,
            _ => writeln!(out, "unknown command {cmd:?} (\\? for help)"),
        }
    }

    async fn list_tables(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        let described: &[(&str, &str)] = &[
            (
                AUDIT_EVENTS_TABLE,
                "every audit event, one row per event per stage",
            ),
            ("findings", "detection findings (latest revision of each)"),
            ("findings_history", "every revision of every finding"),
            ("incidents", "findings grouped by shared actor or target"),
        ];
        let mut rows: Vec<(String, &str, String)> = described
            .iter()
            .map(|(n, d)| ((*n).to_owned(), "table", (*d).to_owned()))
            .collect();
        rows.extend(
            VIEWS
                .iter()
                .map(|(n, d, _)| ((*n).to_owned(), "view", (*d).to_owned())),
        );
        // Anything else registered (e.g. a scoped session's unscoped tables).
        if let Ok(b) = run_sql(
            &self.ctx,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        )
        .await
        {
            let (_, names) = auditlake_report::batches_to_rows(&b).unwrap_or_default();
            for n in names.iter().filter_map(|r| r[0].as_str()) {
                if !rows.iter().any(|r| r.0 == n) {
                    rows.push((n.to_owned(), "table", String::new()));
                }
            }
        }
        for (name, kind, what) in rows {
            writeln!(out, "{name:<22} {kind:<6} {what}")?;
        }
        Ok(())
    }

    async fn describe(&mut self, name: &str, out: &mut dyn Write) -> std::io::Result<()> {
        let meanings: Vec<(&str, &str)> = match name {
            AUDIT_EVENTS_TABLE => AUDIT_EVENT_COLUMNS
                .iter()
                .chain(PARTITION_COLUMN_DEFS)
                .map(|c| (c.name, c.description))
                .collect(),
            "findings" | "findings_history" => FINDING_COLUMNS
                .iter()
                .map(|c| (c.name, c.description))
                .collect(),
            _ => Vec::new(),
        };
        let sql = format!(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
             WHERE table_name = {} ORDER BY ordinal_position",
            auditlake_query::sqltext::quote_str(name)
        );
        let rows = match run_sql(&self.ctx, &sql).await {
            Ok(b) => auditlake_report::batches_to_rows(&b)
                .map(|r| r.1)
                .unwrap_or_default(),
            Err(e) => return writeln!(out, "error: {e}"),
        };
        if rows.is_empty() {
            return writeln!(out, "no table or view named {name:?} (\\d lists them)");
        }
        if let Some((_, what, _)) = VIEWS.iter().find(|v| v.0 == name) {
            writeln!(out, "view {name}: {what}")?;
        }
        for r in rows {
            let col = r[0].as_str().unwrap_or("");
            let meaning = meanings.iter().find(|m| m.0 == col).map_or("", |m| m.1);
            writeln!(
                out,
                "  {col:<26} {:<28} {:<4} {meaning}",
                r[1].as_str().unwrap_or(""),
                if r[2].as_str() == Some("YES") {
                    "null"
                } else {
                    ""
                }
            )?;
        }
        Ok(())
    }
}

fn history_path(args: &ShellArgs) -> Option<PathBuf> {
    args.history
        .clone()
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".auditlake_history")))
}

pub fn run(config: &Config, args: ShellArgs) -> anyhow::Result<u8> {
    let lake = config.lake(args.lake.lake.as_deref())?;
    let opts = SessionOptions {
        scope: args.scope.scope(Utc::now())?,
        engine: config.engine(args.engine.engine.as_deref())?,
        ..session_options(config)
    };
    let rt = super::runtime()?;
    let ctx = rt.block_on(open_lake_at(&lake, &opts))?;
    let mut shell = Shell {
        ctx,
        format: args.format,
        timing: false,
    };
    let interactive = std::io::stdin().is_terminal();
    let mut buffer = String::new();
    let stdout = std::io::stdout();

    if !interactive {
        // Scripted: every line from stdin, output only (no prompt, no banner).
        let mut out = stdout.lock();
        for line in std::io::stdin().lock().lines() {
            match feed(&mut buffer, &line?) {
                Input::More => {}
                Input::Quit => break,
                Input::Statement(sql) => rt.block_on(shell.statement(&sql, &mut out))?,
                Input::Command(c) => rt.block_on(shell.command(&c, &mut out))?,
            }
        }
        // A last statement without ';' still runs.
        let rest = buffer.trim().trim_end_matches(';').trim().to_owned();
        rt.block_on(shell.statement(&rest, &mut out))?;
        out.flush()?;
        return Ok(EXIT_OK);
    }

    let mut editor = rustyline::DefaultEditor::new()?;
    let history = history_path(&args);
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "auditlake shell on {}{} — statements end with ';', \\? for help, \\q to quit",
        lake.display(),
        match &opts.engine {
            auditlake_query::Engine::Local => String::new(),
            engine => format!(", executed on {engine}"),
        }
    );
    loop {
        let prompt = if buffer.is_empty() {
            "auditlake> "
        } else {
            "       ...> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let input = feed(&mut buffer, &line);
                if !matches!(input, Input::More) {
                    let entry = match &input {
                        Input::Statement(s) => format!("{s};"),
                        Input::Command(c) => c.clone(),
                        _ => line.clone(),
                    };
                    let _ = editor.add_history_entry(entry);
                }
                let mut out = stdout.lock();
                match input {
                    Input::More => {}
                    Input::Quit => break,
                    Input::Statement(sql) => rt.block_on(shell.statement(&sql, &mut out))?,
                    Input::Command(c) => rt.block_on(shell.command(&c, &mut out))?,
                }
                out.flush()?;
            }
            // Ctrl-C drops the statement being typed; Ctrl-D leaves.
            Err(rustyline::error::ReadlineError::Interrupted) => buffer.clear(),
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_span_lines_and_commands_need_an_empty_buffer() {
        let mut b = String::new();
        assert_eq!(feed(&mut b, "SELECT 1,"), Input::More);
        assert_eq!(
            feed(&mut b, "  2;"),
            Input::Statement("SELECT 1,\n  2".to_owned())
        );
        assert!(b.is_empty());
        assert_eq!(
            feed(&mut b, "\\d audit_events"),
            Input::Command("\\d audit_events".to_owned())
        );
        assert_eq!(feed(&mut b, "SELECT"), Input::More);
        // Inside a statement a backslash line is SQL text, not a command.
        assert_eq!(feed(&mut b, "\\q"), Input::More);
        assert_eq!(
            feed(&mut b, ";"),
            Input::Statement("SELECT\n\\q".to_owned())
        );
        assert_eq!(feed(&mut b, "\\q"), Input::Quit);
        assert_eq!(feed(&mut b, "exit"), Input::Quit);
    }
}
