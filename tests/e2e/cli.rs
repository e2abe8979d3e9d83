//! The command line as an operator meets it: completions, the man page, `--help`, and the JSON
//! forms of the listing commands.

use std::collections::BTreeSet;

use crate::*;

/// Subcommands every completion script and the man page must know.
const COMMANDS: &[&str] = &[
    "ingest",
    "query",
    "detect",
    "rules",
    "schema",
    "serve",
    "report",
    "timeline",
    "verify",
    "retention",
    "completions",
    "man",
];

#[test]
fn cli_completions_for_each_shell_name_the_real_commands() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let script = run_ok(bin().args(["completions", shell]));
        for c in COMMANDS.iter().chain(&["import-sigma", "suppressions"]) {
            assert!(script.contains(c), "{shell}: no {c}");
        }
        // Options of nested commands, not only the top level.
        assert!(script.contains("no-builtin-rules"), "{shell}");
        std::fs::write(dir.path().join(shell), &script).unwrap();
    }
    // bash loads it and registers the completion function.
    let out = run_ok(
        std::process::Command::new("bash")
            .arg("-c")
            .arg("source \"$1\" && complete -p auditlake")
            .arg("bash")
            .arg(dir.path().join("bash")),
    );
    assert!(out.contains("auditlake"), "{out}");
    let bad = run(bin().args(["completions", "tcsh"]));
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn cli_man_page_documents_the_commands() {
    let page = run_ok(bin().arg("man"));
    assert!(page.contains(".TH auditlake"), "{page}");
    for c in COMMANDS {
        assert!(page.contains(c), "man page: no {c}");
    }
    // groff renders it (where installed) without complaint.
    if let Ok(mut child) = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(page.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "groff warnings");
    }
    // One page per command, as packages install them.
    let dir = tempfile::tempdir().unwrap();
    run_ok(bin().args(["man", "--out-dir"]).arg(dir.path()));
    let pages: BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for p in ["auditlake.1", "auditlake-serve.1", "auditlake-rules-list.1"] {
        assert!(pages.contains(p), "{p} not in {pages:?}");
    }
}

#[test]
fn cli_help_sets_the_developer_tools_apart() {
    let help = run_ok(bin().arg("--help"));
    let (commands, rest) = help.split_once("Developer tools").expect(&help);
    for tool in ["generate", "bench-webhook"] {
        assert!(
            !commands.contains(&format!("  {tool} ")),
            "{tool} among the commands:\n{help}"
        );
        assert!(
            rest.contains(&format!("  {tool} ")),
            "{tool} not listed apart:\n{help}"
        );
    }
    assert!(commands.contains("  serve "), "{help}");
    // Hidden from the list, not removed.
    assert!(run_ok(bin().args(["generate", "--help"])).contains("--scenarios"));
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn cli_rules_list_json_has_one_object_per_rule() {
    let rules = json_lines(&run_ok(bin().args(["rules", "list", "--json"])));
    let table = run_ok(bin().args(["rules", "list"]));
    // The table's last line: "<n> rules, <m> active".
    let summary = table.lines().last().unwrap();
    let n: usize = summary.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(rules.len(), n, "{summary}");
    let active = rules.iter().filter(|r| r["active"] == true).count();
    assert!(summary.ends_with(&format!("{active} active")), "{summary}");
    let ids: BTreeSet<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), n);
    for r in &rules {
        let id = r["id"].as_str().unwrap();
        assert!(table.contains(id));
        assert!(
            ["info", "low", "medium", "high", "critical"]
                .contains(&r["severity"].as_str().unwrap()),
            "{r}"
        );
        assert!(r["title"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
        assert!(r["attack"].is_array() && r["catalog"].is_array(), "{r}");
        assert!(r["state"].is_string() && r["builtin"] == true, "{r}");
        assert!(r["schedule_secs"].as_i64().is_some_and(|s| s > 0), "{r}");
    }
    // A rule that needs a parameter says which.
    let image = rules
        .iter()
        .find(|r| r["id"] == "disallowed-image")
        .unwrap();
    assert_eq!(image["state"], "needs allowed_images");
    assert_eq!(image["active"], false);
}

#[test]
fn cli_report_list_json_has_one_object_per_report() {
    let reports = json_lines(&run_ok(bin().args(["report", "--list", "--json"])));
    assert!(reports.len() >= 3, "{reports:?}");
    let text = run_ok(bin().args(["report", "--list"]));
    assert_eq!(reports.len(), text.lines().count());
    for r in &reports {
        assert!(text.contains(r["id"].as_str().unwrap()));
        assert!(r["title"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
        assert!(
            r["sections"].as_array().is_some_and(|s| !s.is_empty()),
            "{r}"
        );
        for c in r["cis"].as_array().unwrap() {
            assert!(c["id"].is_string() && c["title"].is_string(), "{r}");
        }
    }
    assert!(reports.iter().any(|r| r["id"] == "secret-access"));
    // `--format json` with --list says the same.
    let same = run_ok(bin().args(["report", "--list", "--format", "json"]));
    assert_eq!(json_lines(&same), reports);
}

#[test]
fn cli_schema_json_describes_both_tables() {
    let tables = json_lines(&run_ok(bin().args(["schema", "--json"])));
    let names: Vec<&str> = tables
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["audit_events", "findings"]);
    let markdown = run_ok(bin().arg("schema"));
    for t in &tables {
        assert!(t["schema_version"].is_string());
        let cols = t["columns"].as_array().unwrap();
        assert!(cols.len() >= 10, "{}", t["table"]);
        for c in cols {
            let name = c["name"].as_str().unwrap();
            // The same columns the Markdown describes.
            assert!(markdown.contains(&format!("| `{name}` |")), "{name}");
            assert!(c["type"].is_string() && c["nullable"].is_boolean(), "{c}");
        }
    }
    let events = tables[0]["columns"].as_array().unwrap();
    let partitions: Vec<&str> = events
        .iter()
        .filter(|c| c["partition"] == true)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(partitions, ["cluster", "date", "hour"]);
    assert!(events.iter().any(|c| c["name"] == "audit_id"));
}
