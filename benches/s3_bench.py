#!/usr/bin/env python3
"""Object-storage lake benchmark: the same lake on local disk and on an S3-protocol server
(moto's server mode on loopback), side by side in one run.

For each size it generates the log once, then, alternating local and S3 so that the machine's
drift hits both alike:
  1. `auditlake ingest` into the lake (wall time, peak RSS; best wall / highest RSS of N runs),
  2. the five forensics queries of lake_bench.py (one session each, `--repeat`, best time),
     checking both lakes return the same rows,
and writes a Markdown table with S3/local ratios (default benches/s3_results.md).

Usage: python3 benches/s3_bench.py [--sizes 1000000] [--bin target/release/auditlake]
Needs: cargo build --release; pip install "moto[server]".
Caveat: moto keeps objects in its Python process; a real S3 adds network latency per request
and a remote bucket's bandwidth, which this run does not show.
"""

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lake_bench import QUERIES, measured  # noqa: E402

ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, endpoint


def make_bucket(endpoint, name):
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{name}", method="PUT"))


def run_queries(args, lake):
    out_rows, best = {}, {}
    for qid, _, sql, _ in QUERIES:
        r = measured([args.bin, "query", "--lake", lake, "--format", "json", "--timing", "--repeat", str(args.repeat), sql])
        times = [float(l.split(" rows in ")[1].split()[0]) for l in r.err.decode().splitlines() if " rows in " in l]
        best[qid] = min(times)
        out_rows[qid] = len(r.out.splitlines())
    return best, out_rows


def bench_size(args, n, work, endpoint):
    log = os.path.join(work, f"audit-{n}.jsonl")
    subprocess.check_call([args.bin, "generate", "--events", str(n), "--seed", "42", "--scenarios", "--out", log])
    events = sum(1 for _ in open(log, "rb"))
    with open(log, "rb") as f:
        while f.read(1 << 24):
            pass
    res = {"local": {"walls": [], "rss": 0}, "s3": {"walls": [], "rss": 0}}
    local = os.path.join(work, f"lake-{n}")
    for i in range(args.ingest_repeat):
        bucket = f"bench-{n}-{i}"
        make_bucket(endpoint, bucket)
        for where, lake in (("local", local), ("s3", f"s3://{bucket}/lake")):
            if where == "local":
                shutil.rmtree(lake, ignore_errors=True)
            r = measured([args.bin, "ingest", "--json", "--lake", lake, "--cluster", "bench", log])
            summary = json.loads(r.out)
            assert summary["rows_written"] == events, summary
            res[where]["walls"].append(r.wall)
            res[where]["rss"] = max(res[where]["rss"], r.rss)
            res[where]["lake"] = lake
    q_local, rows_local = run_queries(args, res["local"]["lake"])
    q_s3, rows_s3 = run_queries(args, res["s3"]["lake"])
    if rows_local != rows_s3:
        sys.exit(f"rows differ: local {rows_local}, s3 {rows_s3}")
    return {"n": events, "res": res, "q_local": q_local, "q_s3": q_s3, "rows": rows_local}


def render(results, args):
    lines = [
        "# Object-storage lake: S3 (moto on loopback) vs local disk",
        "",
        f"`python3 benches/s3_bench.py --sizes {args.sizes}` on {platform.machine()}, {os.cpu_count()} cores; "
        f"release build; ingest best of {args.ingest_repeat} (alternating), queries best of {args.repeat} in one session.",
        "moto keeps objects in its own Python process on the same 2 cores: a real bucket adds per-request",
        "latency and its own bandwidth, which this does not show.",
        "",
        "| events | measure | local | S3 | S3 / local | target |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        lw, sw = min(r["res"]["local"]["walls"]), min(r["res"]["s3"]["walls"])
        lines.append(f"| {r['n']:,} | ingest wall | {lw:.2f} s | {sw:.2f} s | {sw / lw:.2f}× | ≤ 1.3× |")
        lr, sr = r["res"]["local"]["rss"], r["res"]["s3"]["rss"]
        lines.append(f"| {r['n']:,} | ingest peak RSS | {lr / 1e6:.0f} MB | {sr / 1e6:.0f} MB | {sr / lr:.2f}× | ≤ 500 MB |")
        for qid, desc, *_ in QUERIES:
            lq, sq = r["q_local"][qid], r["q_s3"][qid]
            lines.append(f"| {r['n']:,} | {qid} {desc} ({r['rows'][qid]} rows) | {lq * 1000:.1f} ms | {sq * 1000:.1f} ms | {sq / lq:.2f}× | ≤ 2× |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000")
    ap.add_argument("--bin", default="target/release/auditlake")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ingest-repeat", type=int, default=2)
    ap.add_argument("--out", default="benches/s3_results.md")
    args = ap.parse_args()
    proc, endpoint = start_moto()
    os.environ.update(ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        with tempfile.TemporaryDirectory() as work:
            results = [bench_size(args, int(n), work, endpoint) for n in args.sizes.split(",")]
    finally:
        proc.kill()
    text = render(results, args)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
