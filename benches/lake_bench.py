#!/usr/bin/env python3
"""Lake benchmark: auditlake vs DuckDB, side by side in one run.

For each size (default 100k and 1M generated events) it
  1. generates the log with `auditlake generate` (deterministic, scenarios woven in),
  2. ingests it with `auditlake ingest` (wall time, peak RSS, bytes on disk),
  3. converts the same file with DuckDB:
       COPY (SELECT * FROM read_json(f, columns={...explicit...})) TO x.parquet (FORMAT parquet, COMPRESSION zstd)
     (wall time, peak RSS, bytes on disk), each in its own process,
  4. runs the five forensics queries on both (warm, best of N) and checks both return the same rows,
and writes a Markdown table (default benches/results.md).

Usage: python3 benches/lake_bench.py [--sizes 100000,1000000] [--bin target/release/auditlake]
Build first: cargo build --release. DuckDB: pip install duckdb (installed on demand).
"""

import argparse
import collections
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time

DUCK_COLUMNS = """{
  kind: 'VARCHAR', apiVersion: 'VARCHAR', level: 'VARCHAR', auditID: 'VARCHAR', stage: 'VARCHAR',
  requestURI: 'VARCHAR', verb: 'VARCHAR',
  user: 'STRUCT(username VARCHAR, uid VARCHAR, groups VARCHAR[], extra MAP(VARCHAR, VARCHAR[]))',
  impersonatedUser: 'STRUCT(username VARCHAR, uid VARCHAR, groups VARCHAR[])',
  sourceIPs: 'VARCHAR[]', userAgent: 'VARCHAR',
  objectRef: 'STRUCT(resource VARCHAR, namespace VARCHAR, name VARCHAR, uid VARCHAR, apiGroup VARCHAR, apiVersion VARCHAR, resourceVersion VARCHAR, subresource VARCHAR)',
  responseStatus: 'STRUCT(code INTEGER, status VARCHAR, reason VARCHAR, message VARCHAR)',
  requestObject: 'JSON', responseObject: 'JSON',
  requestReceivedTimestamp: 'TIMESTAMPTZ', stageTimestamp: 'TIMESTAMPTZ',
  annotations: 'MAP(VARCHAR, VARCHAR)'
}"""

# (id, description, auditlake SQL over audit_events, DuckDB SQL over its own Parquet `t`)
QUERIES = [
    (
        "Q1",
        "successful get/list/watch on secrets by non-system users",
        """SELECT stage_at, user_name, verb, namespace, name FROM audit_events
           WHERE resource = 'secrets' AND verb IN ('get', 'list', 'watch') AND response_code BETWEEN 200 AND 299
             AND user_name NOT LIKE 'system:%' ORDER BY stage_at""",
        """SELECT stageTimestamp, "user".username, verb, objectRef.namespace, objectRef.name FROM t
           WHERE objectRef.resource = 'secrets' AND verb IN ('get', 'list', 'watch') AND responseStatus.code BETWEEN 200 AND 299
             AND "user".username NOT LIKE 'system:%' ORDER BY stageTimestamp""",
    ),
    (
        "Q2",
        "pods/exec and pods/attach with user and pod",
        """SELECT stage_at, user_name, namespace, name, subresource FROM audit_events
           WHERE resource = 'pods' AND subresource IN ('exec', 'attach') ORDER BY stage_at""",
        """SELECT stageTimestamp, "user".username, objectRef.namespace, objectRef.name, objectRef.subresource FROM t
           WHERE objectRef.resource = 'pods' AND objectRef.subresource IN ('exec', 'attach') ORDER BY stageTimestamp""",
    ),
    (
        "Q3",
        "clusterrolebindings created with roleRef cluster-admin",
        """SELECT stage_at, user_name, name, binding_subjects FROM audit_events
           WHERE resource = 'clusterrolebindings' AND verb = 'create' AND role_ref_name = 'cluster-admin' ORDER BY stage_at""",
        """SELECT stageTimestamp, "user".username, objectRef.name, json_extract(requestObject, '$.subjects') FROM t
           WHERE objectRef.resource = 'clusterrolebindings' AND verb = 'create'
             AND json_extract_string(requestObject, '$.roleRef.name') = 'cluster-admin' ORDER BY stageTimestamp""",
    ),
    (
        "Q4",
        "top-10 users by events in each hour",
        """SELECT h, user_name, n FROM (
             SELECT h, user_name, n, row_number() OVER (PARTITION BY h ORDER BY n DESC, user_name) AS r FROM (
               SELECT date_trunc('hour', stage_at) AS h, user_name, count(*) AS n FROM audit_events GROUP BY 1, 2))
           WHERE r <= 10 ORDER BY h, n DESC, user_name""",
        """SELECT h, u, n FROM (
             SELECT h, u, n, row_number() OVER (PARTITION BY h ORDER BY n DESC, u) AS r FROM (
               SELECT date_trunc('hour', stageTimestamp) AS h, "user".username AS u, count(*) AS n FROM t GROUP BY 1, 2))
           WHERE r <= 10 ORDER BY h, n DESC, u""",
    ),
    (
        "Q5",
        "pod creations with any privileged container",
        """SELECT stage_at, user_name, namespace, name FROM audit_events
           WHERE resource = 'pods' AND subresource IS NULL AND verb = 'create' AND pod_privileged ORDER BY stage_at""",
        """SELECT stageTimestamp, "user".username, objectRef.namespace, objectRef.name FROM t
           WHERE objectRef.resource = 'pods' AND objectRef.subresource IS NULL AND verb = 'create'
             AND (list_contains(CAST(json_extract(requestObject, '$.spec.containers[*].securityContext.privileged') AS BOOLEAN[]), true)
               OR list_contains(CAST(json_extract(requestObject, '$.spec.initContainers[*].securityContext.privileged') AS BOOLEAN[]), true)
               OR list_contains(CAST(json_extract(requestObject, '$.spec.ephemeralContainers[*].securityContext.privileged') AS BOOLEAN[]), true))
           ORDER BY stageTimestamp""",
    ),
]

DUCK_CONVERT = """
import duckdb, sys, time
src, dst, columns = sys.argv[1], sys.argv[2], sys.argv[3]
c = duckdb.connect()
c.execute("SET enable_progress_bar=false")
t0 = time.perf_counter()
c.execute(f"COPY (SELECT * FROM read_json('{src}', format='newline_delimited', columns={columns})) TO '{dst}' (FORMAT parquet, COMPRESSION zstd)")
print(time.perf_counter() - t0)
"""

DUCK_QUERIES = """
import duckdb, json, sys, time
path, repeat = sys.argv[1], int(sys.argv[2])
queries = json.loads(sys.stdin.read())
c = duckdb.connect()
c.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{path}')")
out = {}
for qid, sql in queries:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        # Materialise every row inside DuckDB: fetching TIMESTAMPTZ into Python needs pytz and would
        # time Python object creation rather than the query.
        c.execute(f"CREATE OR REPLACE TEMP TABLE result AS {sql}")
        rows = c.execute("SELECT count(*) FROM result").fetchone()[0]
        times.append(time.perf_counter() - t0)
    out[qid] = {"times": times, "rows": rows}
print(json.dumps(out))
"""


Run = collections.namedtuple("Run", "wall rss cpu out err")


def measured(cmd):
    """Runs cmd in a child; returns its Run: wall s, peak RSS bytes, CPU s (user + sys), stdout,
    stderr. wait4 gives this child's own usage (RUSAGE_CHILDREN would mix every child's peak)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Drain both pipes before reaping, stderr on a thread, so a chatty child cannot block on either.
    err = []
    drain = threading.Thread(target=lambda: err.append(p.stderr.read()))
    drain.start()
    out = p.stdout.read()
    drain.join()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({code}):\n{err[0].decode()}")
    return Run(wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, out, err[0])


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def ensure_duckdb():
    try:
        import duckdb  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "duckdb"])
    import duckdb

    return duckdb.__version__


def bench_size(args, n, work):
    log = os.path.join(work, f"audit-{n}.jsonl")
    lake = os.path.join(work, f"lake-{n}")
    duck_pq = os.path.join(work, f"duck-{n}.parquet")
    subprocess.check_call([args.bin, "generate", "--events", str(n), "--seed", "42", "--scenarios", "--out", log])
    events = sum(1 for _ in open(log, "rb"))
    size = os.path.getsize(log)
    # Warm the page cache for both readers alike.
    with open(log, "rb") as f:
        while f.read(1 << 24):
            pass

    # Ingest/convert several times, alternating engines so that the machine's drift hits both
    # alike; report the best wall time and the highest peak RSS of each.
    ours, duck = {"walls": [], "rss": 0}, {"walls": [], "rss": 0}
    for _ in range(args.ingest_repeat):
        shutil.rmtree(lake, ignore_errors=True)
        wall, rss, _, out, _ = measured([args.bin, "ingest", "--json", "--lake", lake, "--cluster", "bench", log])
        summary = json.loads(out)
        assert summary["rows_written"] == events, summary
        ours["walls"].append(wall)
        ours["rss"] = max(ours["rss"], rss)
        ours.update(disk=du(os.path.join(lake, "audit_events")), files=summary["files_written"])

        if os.path.exists(duck_pq):
            os.remove(duck_pq)
        wall, rss, _, out, _ = measured([sys.executable, "-c", DUCK_CONVERT, log, duck_pq, DUCK_COLUMNS])
        duck["walls"].append(wall)
        duck["rss"] = max(duck["rss"], rss)
        duck["disk"] = os.path.getsize(duck_pq)
    ours["wall"], duck["wall"] = min(ours["walls"]), min(duck["walls"])

    # Queries: ours in one session (`query --repeat`), DuckDB in one connection; best of N.
    q_ours = {}
    for qid, _, sql, _ in QUERIES:
        _, _, _, out, err = measured([args.bin, "query", "--lake", lake, "--format", "json", "--timing", "--repeat", str(args.repeat), sql])
        times = [float(l.split(" rows in ")[1].split()[0]) for l in err.decode().splitlines() if " rows in " in l]
        q_ours[qid] = {"times": times, "rows": len(out.splitlines())}
    p = subprocess.run(
        [sys.executable, "-c", DUCK_QUERIES, duck_pq, str(args.repeat)],
        input=json.dumps([(q[0], q[3]) for q in QUERIES]).encode(),
        capture_output=True,
        check=True,
    )
    q_duck = json.loads(p.stdout)
    for qid, *_ in QUERIES:
        if q_ours[qid]["rows"] != q_duck[qid]["rows"]:
            sys.exit(f"{qid}: auditlake returned {q_ours[qid]['rows']} rows, DuckDB {q_duck[qid]['rows']}")
    return {"n": events, "bytes": size, "ours": ours, "duck": duck, "q_ours": q_ours, "q_duck": q_duck}


def fmt_bytes(b):
    return f"{b / 1e6:,.1f} MB"


def render(results, duck_version, args):
    lines = [
        "# Lake benchmark: auditlake vs DuckDB",
        "",
        f"Written by `benches/lake_bench.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{os.cpu_count()} cores, {platform.machine()}, DuckDB {duck_version}, auditlake release build. "
        f"Ingest/convert: best of {args.ingest_repeat} runs, alternating engines (peak RSS: the highest run). "
        f"Queries: best of {args.repeat} warm runs, both engines checked to return the same rows.",
        "",
    ]
    for r in results:
        o, d = r["ours"], r["duck"]
        eps_o, eps_d = r["n"] / o["wall"], r["n"] / d["wall"]
        lines += [
            f"## {r['n']:,} events ({fmt_bytes(r['bytes'])} of JSON lines, {r['bytes'] / r['n']:,.0f} B/event)",
            "",
            "| | auditlake | DuckDB | auditlake / DuckDB |",
            "|---|---:|---:|---:|",
            f"| ingest / convert wall time | {o['wall']:.2f} s | {d['wall']:.2f} s | {o['wall'] / d['wall']:.2f}× |",
            f"| events/s | {eps_o:,.0f} | {eps_d:,.0f} | **{eps_o / eps_d:.2f}×** |",
            f"| MB/s (input) | {r['bytes'] / 1e6 / o['wall']:,.1f} | {r['bytes'] / 1e6 / d['wall']:,.1f} | {d['wall'] / o['wall']:.2f}× |",
            f"| peak RSS | {fmt_bytes(o['rss'])} | {fmt_bytes(d['rss'])} | {o['rss'] / d['rss']:.2f}× |",
            f"| bytes on disk | {fmt_bytes(o['disk'])} ({o['files']} files) | {fmt_bytes(d['disk'])} (1 file) | {o['disk'] / d['disk']:.2f}× |",
        ]
        for qid, desc, *_ in QUERIES:
            to, td = min(r["q_ours"][qid]["times"]), min(r["q_duck"][qid]["times"])
            lines.append(
                f"| {qid} {desc} ({r['q_ours'][qid]['rows']} rows) | {to * 1000:,.0f} ms | {td * 1000:,.0f} ms | {to / td:.2f}× |"
            )
        spread = lambda walls: ", ".join(f"{w:.2f}" for w in walls)
        lines += [
            "",
            f"Every ingest/convert run (s): auditlake {spread(o['walls'])}; DuckDB {spread(d['walls'])}.",
            "",
        ]
    lines += [
        "auditlake's time and RSS are the whole `auditlake ingest` process (decode, dedup against the lake, sort,",
        "encode, fsync, commit); DuckDB's are a Python process running the COPY. Query times exclude process start",
        "and session setup on both sides. Ratios below 1 for time, RSS and bytes favour auditlake.",
        "",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "auditlake"))
    ap.add_argument("--work", default="bench-out")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ingest-repeat", type=int, default=3)
    ap.add_argument("--out", default="benches/results.md")
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin} not found: run `cargo build --release` first")
    duck_version = ensure_duckdb()
    os.makedirs(args.work, exist_ok=True)
    results = [bench_size(args, int(n), args.work) for n in args.sizes.split(",")]
    text = render(results, duck_version, args)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
