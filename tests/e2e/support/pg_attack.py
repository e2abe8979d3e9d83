"""Runs SQL statements against auditlake's PostgreSQL endpoint over the extended protocol
(psycopg 3: server-side parameters, optionally named prepared statements) and prints, as JSON,
what happened to each: ["ok"] or [SQLSTATE, message]. Used by tests/e2e/security.rs.

usage: pg_attack.py CONNINFO MODE STATEMENTS_JSON
MODE: extended | prepared | transaction | cursor
"""
import json
import sys

import psycopg


def run(conninfo, mode, sql):
    with psycopg.connect(conninfo, autocommit=(mode != "transaction"), connect_timeout=10) as conn:
        if mode == "prepared":
            conn.execute(sql, prepare=True)
        elif mode == "transaction":
            # psycopg sends BEGIN first; the statement runs inside the transaction.
            conn.execute(sql)
            conn.commit()
        elif mode == "cursor":
            conn.execute("DECLARE attack CURSOR FOR " + sql)
            conn.execute("FETCH ALL FROM attack")
        else:
            conn.execute(sql)


def main():
    conninfo, mode, statements = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    out = []
    for sql in statements:
        try:
            run(conninfo, mode, sql)
            out.append(["ok"])
        except psycopg.Error as e:
            out.append([e.sqlstate or "none", str(e).strip()])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
