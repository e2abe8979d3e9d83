#!/usr/bin/env python3
"""Object-storage source benchmark: the same bytes ingested from local files and from an
S3-protocol server (moto's server mode on loopback), side by side in one run.

For each shape it generates the log once (`auditlake generate`), cuts it into hourly objects the
way the clouds export it, and then, alternating so that the machine's drift hits both alike:
  - `auditlake ingest FILE...` of the local copies into a fresh local lake,
  - `auditlake ingest s3://bucket/prefix/` of the same bytes into a fresh local lake,
best wall time and highest peak RSS of N runs each. Shapes:
  - `ndjson`: one event per line (Firehose with a newline delimiter, GKE-style hourly files),
  - `concatenated`: the same events back to back with no delimiter (Firehose's message
    extraction without a delimiter) — the file source reads it as one line per object,
  - `gzip`: the ndjson objects gzip-compressed (Firehose's GZIP output).
Writes a Markdown table with S3/local ratios (default benches/objects_results.md).

Usage: python3 benches/objects_bench.py [--events 1000000] [--bin target/release/auditlake]
Needs: cargo build --release; pip install "moto[server]" (boto3 comes with it).
Caveat: moto keeps objects in its Python process on the same cores; a real bucket adds network
latency and its own bandwidth, which this run does not show.
"""

import argparse
import gzip
import os
import platform
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lake_bench import measured  # noqa: E402
from s3_bench import ENV, start_moto  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--objects", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--bin", default="target/release/auditlake")
    ap.add_argument("--out", default="benches/objects_results.md")
    args = ap.parse_args()
    import boto3

    binary = os.path.abspath(args.bin)
    work = tempfile.mkdtemp(prefix="objects-bench-")
    proc, endpoint = start_moto()
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, **ENV)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=ENV["AWS_REGION"],
    )
    s3.create_bucket(Bucket="exports")
    rows = []
    try:
        log = os.path.join(work, "events.jsonl")
        subprocess.run(
            [binary, "generate", "--events", str(args.events), "--out", log],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        # Streamed, never held whole: a forked child's peak RSS counts the parent's pages
        # until it execs, so a large parent would inflate every RSS measured here.
        with open(log, "rb") as f:
            events = sum(1 for _ in f)
        per = (events + args.objects - 1) // args.objects
        shapes = {
            "ndjson": lambda line: line,
            "concatenated": lambda line: line.rstrip(b"\n"),
            "gzip": lambda line: line,
        }
        for shape, encode in shapes.items():
            local_dir = os.path.join(work, shape)
            os.makedirs(local_dir)
            stored = 0
            outs = []
            with open(log, "rb") as f:
                for h in range(args.objects):
                    name = f"2026/11/20/{h:02d}/audit-{h:02d}"
                    path = os.path.join(local_dir, name.replace("/", "-"))
                    opener = gzip.open if shape == "gzip" else open
                    with opener(path, "wb") as out:
                        for _ in range(per):
                            line = f.readline()
                            if not line:
                                break
                            out.write(encode(line))
                    outs.append((name, path))
            for name, path in outs:
                stored += os.path.getsize(path)
                s3.upload_file(path, "exports", f"{shape}/{name}")
            files = sorted(os.path.join(local_dir, n) for n in os.listdir(local_dir))
            best = {"local": None, "s3": None}
            for _ in range(args.repeat):
                for side in ("local", "s3"):
                    lake = os.path.join(work, f"lake-{shape}-{side}")
                    shutil.rmtree(lake, ignore_errors=True)
                    inputs = files if side == "local" else [f"s3://exports/{shape}/"]
                    cmd = [binary, "ingest", "--quiet", "--cluster", "bench", "--lake", lake, *inputs]
                    run = measured_env(cmd, env)
                    b = best[side]
                    best[side] = (
                        run
                        if b is None
                        else type(run)(min(b.wall, run.wall), max(b.rss, run.rss), run.cpu, run.out, run.err)
                    )
            rows.append((shape, events, stored, best["local"], best["s3"]))
            print(shape, best["local"].wall, best["s3"].wall, file=sys.stderr)
    finally:
        proc.kill()
        shutil.rmtree(work, ignore_errors=True)

    out = [
        "# Object-storage sources: S3 (moto on loopback) vs the same bytes from local files",
        "",
        f"`python3 benches/objects_bench.py --events {args.events} --objects {args.objects}` on "
        f"{platform.machine()}, {os.cpu_count()} cores; release build; best wall / highest RSS of "
        f"{args.repeat} alternating runs. Each side ingests into a fresh local lake.",
        "moto keeps objects in its own Python process on the same cores: a real bucket adds",
        "per-request latency and its own bandwidth, which this does not show.",
        "",
        "| shape | events | stored MB | measure | local files | S3 source | S3 / local | target |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for shape, events, stored, local, remote in rows:
        mb = stored / 1e6
        out.append(
            f"| {shape} | {events:,} | {mb:.0f} | ingest wall | {local.wall:.2f} s | {remote.wall:.2f} s | "
            f"{remote.wall / local.wall:.2f}× | ≤ 1.3× |"
        )
        out.append(
            f"| {shape} | {events:,} | {mb:.0f} | peak RSS | {local.rss / 1e6:.0f} MB | {remote.rss / 1e6:.0f} MB | "
            f"{remote.rss / local.rss:.2f}× | |"
        )
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out))


def measured_env(cmd, env):
    """`measured` with the S3 settings in the environment."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return measured(cmd)
    finally:
        os.environ.clear()
        os.environ.update(saved)


if __name__ == "__main__":
    main()
