#!/usr/bin/env python3
"""Ballista benchmark: the whole rule pack (`auditlake detect`, a retro-hunt) over a generated
lake, on the local engine and on a Ballista cluster of one and then two executors on this
machine, side by side in one run.

For each size (default 250k and 1M events) it
  1. generates the log with `auditlake generate --scenarios` (seed 42, as lake_bench.py) and
     ingests it into a local lake (every node of a one-machine cluster sees the same path),
  2. runs the pack locally, then on `auditlake ballista scheduler` + 1 executor, then + a second
     executor (each `--vcores 2`), best and every wall time of --repeat runs, and checks that
     every run prints the same findings,
  3. reads the scheduler's /metrics around every cluster run: jobs per pack, the mean job's wall
     time and planning time (what the per-job overhead is made of),
  4. fits wall = fixed + per-event × events over the sizes, per engine, which is what the 1B
     estimate in ballista_results.md is computed from.

Usage: python3 benches/ballista_bench.py [--sizes 250000,1000000] [--bin target/release/auditlake]
Build first: cargo build --release. Prints a Markdown table (and --json for the raw numbers).
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what, timeout=60):
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            sys.exit(f"{what} did not happen within {timeout} s")
        time.sleep(0.2)


def scrape(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.eE+-]+)$", line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return values


def peak_rss(pid):
    """VmHWM of a live process, bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def detect(args, lake, engine):
    """One pack run: (wall s, the printed findings, sorted)."""
    cmd = [args.bin, "detect", "--lake", lake, "--engine", engine]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err.decode()}")
    return wall, sorted(out.decode().splitlines())


class Cluster:
    def __init__(self, args, lake, work):
        self.args, self.lake, self.work = args, lake, work
        self.port, self.metrics = free_port(), free_port()
        self.engine = f"ballista://127.0.0.1:{self.port}"
        self.procs = []
        self.logs = []
        self.spawn(["ballista", "scheduler", "--lake", lake, "--listen", f"127.0.0.1:{self.port}",
                    "--metrics-listen", f"127.0.0.1:{self.metrics}",
                    "--scheduling", args.scheduling], "scheduler")
        wait_for(lambda: scrape(self.metrics) is not None, "the scheduler's start")

    def spawn(self, argv, name):
        log = open(os.path.join(self.work, f"{name}.log"), "wb")
        self.logs.append(log)
        self.procs.append(subprocess.Popen([self.args.bin, *argv], stdout=subprocess.DEVNULL, stderr=log))

    def add_executor(self):
        i = len(self.procs)
        flight, grpc = free_port(), free_port()
        self.spawn(["ballista", "executor", "--lake", self.lake, "--scheduler", self.engine,
                    "--listen", f"127.0.0.1:{flight}", "--grpc-port", str(grpc), "--vcores", "2",
                    "--scheduling", self.args.scheduling,
                    "--work-dir", os.path.join(self.work, f"executor-{i}")], f"executor-{i}")
        wait_for(lambda: (scrape(self.metrics) or {}).get("auditlake_ballista_executors") == i,
                 f"executor {i}'s registration")

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in self.logs:
            log.close()

    def peaks(self):
        return [peak_rss(p.pid) for p in self.procs]


def jobs_delta(before, after):
    d = lambda k: after.get(k, 0) - before.get(k, 0)
    jobs = d("auditlake_ballista_job_seconds_count")
    return {
        "jobs": jobs,
        "failed": d('auditlake_ballista_jobs_finished_total{outcome="failed"}'),
        "mean_job_s": d("auditlake_ballista_job_seconds_sum") / jobs if jobs else 0.0,
        "mean_planning_s": d("auditlake_ballista_job_queued_seconds_sum") / jobs if jobs else 0.0,
    }


def bench_size(args, n, work):
    log = os.path.join(work, f"audit-{n}.jsonl")
    lake = os.path.join(work, f"lake-{n}")
    if not os.path.isdir(lake):
        subprocess.check_call([args.bin, "generate", "--events", str(n), "--seed", "42", "--scenarios", "--out", log])
        subprocess.check_call([args.bin, "ingest", "--quiet", "--lake", lake, "--cluster", "bench", log])
        os.remove(log)
    events = int(subprocess.check_output(
        [args.bin, "query", "--lake", lake, "--format", "csv", "SELECT count(*) FROM audit_events"]).decode().split()[-1])
    result = {"events": events, "runs": {}}
    reference = None

    def runs(label, engine, cluster=None):
        nonlocal reference
        walls, per_job = [], []
        for _ in range(args.repeat):
            before = scrape(cluster.metrics) if cluster else None
            wall, findings = detect(args, lake, engine)
            if cluster:
                per_job.append(jobs_delta(before, scrape(cluster.metrics)))
            if reference is None:
                reference = findings
            elif findings != reference:
                sys.exit(f"{label}: other findings than the local engine's ({len(findings)} vs {len(reference)})")
            walls.append(wall)
        result["runs"][label] = {"walls": walls, "best": min(walls), "findings": len(reference),
                                 "jobs": per_job}
        print(f"{n} {label}: {', '.join(f'{w:.2f}' for w in walls)} s {per_job[-1] if per_job else ''}",
              file=sys.stderr)

    runs("local", "local")
    cluster_dir = tempfile.mkdtemp(dir=work)
    cluster = Cluster(args, lake, cluster_dir)
    try:
        cluster.add_executor()
        runs("1 executor", cluster.engine, cluster)
        cluster.add_executor()
        runs("2 executors", cluster.engine, cluster)
        result["cluster_peak_rss"] = cluster.peaks()
    finally:
        cluster.stop()
        shutil.rmtree(cluster_dir, ignore_errors=True)
    return result


def fit(points):
    """Least squares wall = a + b × events over (events, wall) points."""
    k = len(points)
    mx = sum(e for e, _ in points) / k
    my = sum(w for _, w in points) / k
    sxx = sum((e - mx) ** 2 for e, _ in points)
    b = sum((e - mx) * (w - my) for e, w in points) / sxx if sxx else 0.0
    return my - b * mx, b


def render(results, args):
    lines = [
        f"Written by `benches/ballista_bench.py` ({args.bin}) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, `--scheduling {args.scheduling}`; best of {args.repeat} runs each; every run "
        "printed the same findings.",
        "",
        "| events | engine | pack wall time (best) | every run | vs local | jobs | mean job | mean planning |",
        "|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        local = r["runs"]["local"]["best"]
        for label, run in r["runs"].items():
            jobs = run["jobs"][-1] if run["jobs"] else None
            count = str(int(jobs["jobs"])) if jobs else "—"
            mean_job = f"{jobs['mean_job_s']:.3f} s" if jobs else "—"
            planning = f"{jobs['mean_planning_s']:.3f} s" if jobs else "—"
            every = " / ".join(f"{w:.2f}" for w in run["walls"])
            lines.append(
                f"| {r['events']:,} | {label} | {run['best']:.2f} s | {every} | "
                f"{run['best'] / local:.2f}× | {count} | {mean_job} | {planning} |")
    lines += ["", "Fit wall = fixed + per-event × events (over the sizes above):", "",
              "| engine | fixed | per 1M events |", "|---|---:|---:|"]
    for label in results[0]["runs"]:
        a, b = fit([(r["events"], r["runs"][label]["best"]) for r in results])
        lines.append(f"| {label} | {a:.2f} s | {b * 1e6:.2f} s |")
    peaks = ", ".join(f"{p / 2**20:.0f} MiB" for p in results[-1].get("cluster_peak_rss", []))
    lines += ["", f"Peak RSS of scheduler, executor 1, executor 2 at {results[-1]['events']:,} events: {peaks}."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="250000,1000000")
    ap.add_argument("--bin", default="target/release/auditlake")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--work", default="bench-out/ballista")
    ap.add_argument("--scheduling", choices=["pull", "push"], default="pull",
                    help="how the cluster hands out tasks (auditlake's default: pull)")
    ap.add_argument("--json", action="store_true", help="print the raw numbers as JSON too")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    os.makedirs(args.work, exist_ok=True)
    results = [bench_size(args, int(n), os.path.abspath(args.work)) for n in args.sizes.split(",")]
    print(render(results, args))
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
