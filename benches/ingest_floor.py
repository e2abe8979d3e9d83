#!/usr/bin/env python3
"""Ingest floor: can any ingest reach 3x DuckDB's conversion throughput on this machine?

Issue 2 asks for ingest >= 3x DuckDB's events/s. On a machine with C cores that leaves at most
C x (DuckDB's wall time / 3) seconds of CPU for the whole ingest. This script measures, in one
run and on the same log:
  1. DuckDB's conversion (benches/lake_bench.py's COPY) and our `auditlake ingest`: wall and
     CPU time (user + sys from wait4), best of N, alternating;
  2. the JSON floor: the fastest JSON parsers available to Rust (serde_json skipping every
     value, simd-json's tape, sonic-rs) only *scanning* the log, single thread
     (benches/ingest_floor/, built with -C target-cpu=native);
  3. the Parquet floor: Arrow C++ (pyarrow, one thread) encoding the columns our lake holds,
     at our compression levels, at zstd 1 everywhere, and uncompressed;
and writes the budget against the two floors as a Markdown table (default
benches/floor_results.md). Neither floor includes building Arrow columns from JSON, sorting,
dedup, bloom filters, derived columns or fsync, so the real floor is higher still.

Usage: python3 benches/ingest_floor.py [--events 1000000] [--bin target/release/auditlake]
Build first: cargo build --release. pyarrow and duckdb are pip-installed on demand.
"""

import argparse
import glob
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import lake_bench

HERE = os.path.dirname(os.path.abspath(__file__))


def ensure_pyarrow():
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "pyarrow"])
    import pyarrow

    return pyarrow.__version__


def json_floor(log):
    manifest = os.path.join(HERE, "ingest_floor", "Cargo.toml")
    target = os.path.join(HERE, "ingest_floor", "target")
    env = dict(os.environ, RUSTFLAGS="-C target-cpu=native", CARGO_TARGET_DIR=target)
    subprocess.check_call(["cargo", "build", "--quiet", "--release", "--manifest-path", manifest], env=env)
    return json.loads(lake_bench.measured([os.path.join(target, "release", "ingest-floor"), log]).out)


def parquet_floor(lake):
    """Best-of-3 single-thread CPU seconds and bytes for pyarrow writing our lake's columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    files = sorted(glob.glob(os.path.join(lake, "audit_events", "**", "*.parquet"), recursive=True))
    table = pa.concat_tables([pq.read_table(f) for f in files]).combine_chunks()
    # As our writer: no dictionary for unique-per-row columns, 64k-row groups, 8 MiB pages.
    unique = {"audit_id", "request_object", "response_object", "stage_at", "request_received_at"}
    dictionary = [c for c in table.column_names if c not in unique]
    # As ingest/src/writer.rs (writer_properties): zstd 3, bodies and URIs 9, audit IDs 1, the
    # small filter columns uncompressed.
    bulk = {"request_object", "response_object", "request_uri"}
    plain = {"resource", "subresource", "verb", "namespace", "user_name", "stage_at", "response_code",
             "pod_privileged", "pod_host_network", "pod_host_pid", "pod_host_ipc", "role_ref_kind",
             "role_ref_name", "exec_container", "impersonated_user_name"}
    # pyarrow takes per-column settings by leaf path (`user_groups.list.element`) and leaves a
    # leaf it is not given uncompressed: name every leaf, as a trial write spells them.
    trial = io.BytesIO()
    pq.write_table(table.slice(0, 1000), trial, compression="none")
    meta = pq.ParquetFile(io.BytesIO(trial.getvalue())).metadata.row_group(0)
    leaves = [meta.column(i).path_in_schema for i in range(meta.num_columns)]
    top = {leaf: leaf.split(".")[0] for leaf in leaves}
    our_codecs = {leaf: "none" if top[leaf] in plain else "zstd" for leaf in leaves}
    our_levels = {leaf: 9 if top[leaf] in bulk else 1 if top[leaf] == "audit_id" else 3
                  for leaf in leaves if top[leaf] not in plain}
    variants = [
        ("our levels (3; bodies and URIs 9; audit IDs 1; filter columns none)", our_codecs, our_levels),
        ("zstd 1 everywhere", "zstd", 1),
        ("uncompressed", "none", None),
    ]
    rows = []
    for label, codec, level in variants:
        best, size = None, 0
        for _ in range(3):
            buf = io.BytesIO()
            t0 = time.process_time()
            pq.write_table(table, buf, compression=codec, compression_level=level, row_group_size=65536,
                           data_page_size=8 << 20, use_dictionary=dictionary, write_statistics=False,
                           column_encoding={"stage_at": "DELTA_BINARY_PACKED"})
            cpu = time.process_time() - t0
            best = cpu if best is None else min(best, cpu)
            size = len(buf.getvalue())
        rows.append((label, best, size))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--bin", default="target/release/auditlake")
    ap.add_argument("--work", default="bench-out")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "floor_results.md"))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    duckdb_version = lake_bench.ensure_duckdb()
    pyarrow_version = ensure_pyarrow()

    log = os.path.join(args.work, f"audit-{args.events}.jsonl")
    lake = os.path.join(args.work, f"floor-lake-{args.events}")
    duck_pq = os.path.join(args.work, f"floor-duck-{args.events}.parquet")
    subprocess.check_call([args.bin, "generate", "--events", str(args.events), "--seed", "42", "--scenarios", "--out", log])
    events = sum(1 for _ in open(log, "rb"))

    ours, duck = [], []
    for _ in range(args.repeat):
        shutil.rmtree(lake, ignore_errors=True)
        run = lake_bench.measured([args.bin, "ingest", "--json", "--lake", lake, "--cluster", "bench", log])
        ours.append((run.wall, run.cpu))
        if os.path.exists(duck_pq):
            os.remove(duck_pq)
        run = lake_bench.measured([sys.executable, "-c", lake_bench.DUCK_CONVERT, log, duck_pq, lake_bench.DUCK_COLUMNS])
        duck.append((run.wall, run.cpu))
    ours_wall, ours_cpu = min(ours)
    duck_wall, duck_cpu = min(duck)
    duck_bytes = os.path.getsize(duck_pq)

    scan = json_floor(log)
    json_s = min(scan["serde_json_skip_s"], scan["simd_json_tape_s"], scan["sonic_rs_value_s"])
    pq_rows = parquet_floor(lake)

    cores = os.cpu_count()
    budget = cores * duck_wall / 3
    mb = scan["bytes"] / 1e6
    lines = [
        f"# Ingest floor: {events:,} events ({mb:.0f} MB), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Machine: {cores} cores, {platform.machine()}; DuckDB {duckdb_version}, pyarrow {pyarrow_version}. "
        f"Made by `python3 benches/ingest_floor.py --events {args.events}`.",
        "",
        "## The budget",
        "",
        "| | wall | CPU (user + sys) | events/s |",
        "|---|---:|---:|---:|",
        f"| DuckDB conversion (best of {args.repeat}) | {duck_wall:.2f} s | {duck_cpu:.2f} s | {events / duck_wall:,.0f} |",
        f"| auditlake ingest (best of {args.repeat}) | {ours_wall:.2f} s | {ours_cpu:.2f} s | {events / ours_wall:,.0f} |",
        f"| **3× DuckDB** | **{duck_wall / 3:.2f} s** | **≤ {budget:.2f} s** ({cores} cores × {duck_wall / 3:.2f} s, perfectly parallel) | {3 * events / duck_wall:,.0f} |",
        "",
        "## The floors (one thread each, best of 3)",
        "",
        "| step | time on one thread | note |",
        "|---|---:|---|",
        f"| read the file | {scan['read_s']:.2f} s | {mb:.0f} MB in 8 MiB reads into one buffer, page cache warm |",
        f"| JSON scan: serde_json, skipping every value | {scan['serde_json_skip_s']:.2f} s | {mb / scan['serde_json_skip_s']:.0f} MB/s |",
        f"| JSON scan: simd-json tape | {scan['simd_json_tape_s']:.2f} s | {mb / scan['simd_json_tape_s']:.0f} MB/s |",
        f"| JSON scan: sonic-rs value | {scan['sonic_rs_value_s']:.2f} s | {mb / scan['sonic_rs_value_s']:.0f} MB/s |",
    ]
    for label, cpu, size in pq_rows:
        lines.append(f"| Parquet write of our columns, {label} | {cpu:.2f} s | {size / 1e6:.1f} MB (DuckDB's file: {duck_bytes / 1e6:.1f} MB) |")
    at_ours, zstd1, uncompressed = (cpu for _, cpu, _ in pq_rows)
    read = scan["read_s"]
    lines += [
        "",
        "## Verdict",
        "",
        f"- Read + fastest JSON scan + Parquet write at our levels: {read:.2f} + {json_s:.2f} + {at_ours:.2f} = **{read + json_s + at_ours:.2f} s** of CPU, against a budget of {budget:.2f} s.",
        f"  Arrow C++ at these levels still writes {pq_rows[0][2] / 1e6:.1f} MB against DuckDB's {duck_bytes / 1e6:.1f} MB; meeting the bytes target costs it more.",
        f"- Even with zstd 1 everywhere (which misses the bytes target): {read + json_s + zstd1:.2f} s; uncompressed: {read + json_s + uncompressed:.2f} s.",
        "- None of these builds Arrow columns from the JSON, sorts, deduplicates, fills bloom filters, derives columns or fsyncs: a real ingest spends more.",
        f"- DuckDB itself spends {duck_cpu:.2f} s of CPU; 3× its throughput asks for {duck_cpu / budget:.1f}× less CPU than DuckDB uses while doing more work.",
    ]
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
