//! Tests of the PostgreSQL wire server (moved out of `pg.rs`).

use super::*;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

fn parse(sql: &str) -> Statement {
    Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .unwrap()
        .remove(0)
}

#[test]
fn only_reads_and_client_settings_pass() {
    for ok in [
        "SELECT count(*) FROM audit_events",
        "WITH a AS (SELECT 1) SELECT * FROM a",
        "EXPLAIN SELECT 1",
        "SHOW search_path",
        "SET application_name = 'psql'",
        "SET extra_float_digits = 3",
        "SET TIME ZONE 'UTC'",
        "BEGIN",
        "COMMIT",
        "DECLARE c CURSOR FOR SELECT 1",
        "FETCH 10 FROM c",
        "CLOSE c",
    ] {
        assert_eq!(refusal(&parse(ok)), None, "{ok}");
    }
    for bad in [
        "INSERT INTO audit_events (audit_id) VALUES ('x')",
        "UPDATE audit_events SET verb = 'get'",
        "DELETE FROM audit_events",
        "CREATE TABLE t AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "DROP TABLE audit_events",
        "COPY audit_events TO '/tmp/x'",
        "SET datafusion.execution.target_partitions = 1",
        "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
        "ALTER TABLE audit_events ADD COLUMN x INT",
    ] {
        let why = refusal(&parse(bad)).unwrap_or_else(|| panic!("{bad} allowed"));
        assert!(
            why.starts_with("auditlake's SQL endpoint is read-only: "),
            "{why}"
        );
    }
}

#[test]
fn users_file_holds_verifiers_and_refuses_plain_text_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("users");
    let verifier = Verifier::from_password("correct-horse-battery", 4096).to_postgres();
    std::fs::write(&f, format!("# comment\nauditor:{verifier}\n")).unwrap();
    let users = load_users(&f).unwrap();
    assert!(users.verifiers.contains_key("auditor"));
    assert_eq!(format!("{users:?}"), "Users(1 entries)");
    for (text, why) in [
        (
            format!("auditor:{verifier}\nlegacy,correct-horse-battery\n"),
            "line 2: a plain-text `user,password` line",
        ),
        (
            format!("a:{verifier}\na:{verifier}\n"),
            "line 2: user \"a\" is listed twice",
        ),
        (
            format!("a:{}\n", verifier.replace("$4096:", "$10:")),
            "line 1: user \"a\": 10 iterations",
        ),
        ("# nobody\n".to_owned(), "no users"),
    ] {
        std::fs::write(&f, &text).unwrap();
        let err = load_users(&f).unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
        assert!(err.contains("users file"), "{err}");
        assert!(
            !err.contains("correct-horse"),
            "the password is never echoed: {err}"
        );
    }
    std::fs::write(&f, "legacy,correct-horse-battery\n").unwrap();
    assert!(
        load_users(&f)
            .unwrap_err()
            .to_string()
            .contains("auditlake pg-passwd")
    );
}
