#!/usr/bin/env python3
"""roachlab's tpcb against pgbench on a 3-node CockroachDB lab, both through its HAProxy.

The seed runbook's "alternative workload" is pgbench against CockroachDB on port 26257. This
runs it side by side with `roachlab workload run tpcb` on the same cluster and data:

1. `pgbench --initialize --no-vacuum` through HAProxy, and the `-I` step sets that might work
   where it does not; every attempt's exit code and last lines are printed (CockroachDB v20.1
   is not PostgreSQL: what fails is the finding).
2. The data is (re)loaded with `roachlab workload init tpcb --scale S` (pgbench's schema and
   layout), so every client below runs on the same tables.
3. In rotating order for --rounds rounds, at each of --clients: `tpcb`, `tpcb one trip`
   (`--one-round-trip`), and pgbench's built-in TPC-B-like script in `-M simple`,
   `-M extended`, `-M prepared` and a `\\startpipeline` script, each with
   `--max-tries 30` (pgbench 15 retries serialization failures, SQLSTATE 40001, as tpcb does
   up to 30 times). A mode that fails is reported with its error, not measured.

Reported: tps (committed transactions per second), average latency, failed transactions,
retries, and the client's CPU per committed transaction, median (min–max) over the rounds.

Usage (after `scripts/install-deps`, `cargo build --release`, and with
`ROACHLAB_COCKROACH` pointing at a binary; prints `SKIPPED (no cockroach binary)` otherwise):

    bench/tpcb_vs_pgbench_cockroach.py [--scale 1] [--clients 1,4] [--duration 20] [--rounds 3]

The lab lives in a temporary directory on free 127.0.0.1 ports and is taken down
(`down --fast`) at the end, pass or fail.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import lablib

# pgbench's built-in transaction in one pipeline, as the PostgreSQL comparison runs it.
from tpcb_vs_pgbench import PIPELINE_SCRIPT  # noqa: E402

TOOLS = ["tpcb", "tpcb one trip", "pgbench simple", "pgbench extended", "pgbench prepared", "pgbench pipeline"]


def timed(cmd, timeout):
    """Runs cmd; returns (returncode, stdout, stderr, client cpu seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return p.returncode, p.stdout, p.stderr, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def last_lines(text, n=3):
    return " / ".join(l.strip() for l in text.strip().splitlines()[-n:])


def run_tool(tool, clients, a, lab, url, conn, pgbench, tmp):
    """One run: (tps, avg_ms, failed, retries, transactions, cpu_us_per_txn), or an error string."""
    if tool.startswith("tpcb"):
        one = ["--one-round-trip"] if tool == "tpcb one trip" else []
        rc, out, err, cpu = timed([a.binary, "--dir", lab, "workload", "run", "tpcb", "--clients", str(clients),
                                   "--duration", f"{a.duration}s", "--url", url, "--json", "--tolerate-errors"] + one, a.duration + 120)
        if rc != 0:
            return f"exit {rc}: {last_lines(err or out)}"
        s = json.loads(out.strip().splitlines()[-1])["summary"]
        c = s["counts"]
        n = c["ok"]
        return s["ops_per_sec"], s["avg_ms"], c["fail"] + c["ambiguous"], c["retries"], n, cpu * 1e6 / max(n, 1)
    mode = {"pgbench simple": ["-M", "simple"], "pgbench extended": ["-M", "extended"], "pgbench prepared": ["-M", "prepared"],
            "pgbench pipeline": ["-M", "prepared", "-f", f"{tmp}/pipeline.sql", "-s", str(a.scale)]}[tool]
    rc, out, err, cpu = timed([pgbench, "-n", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)), "-T", str(a.duration),
                               "--max-tries", "30"] + mode + conn + ["defaultdb"], a.duration + 120)
    if rc != 0 or "tps = " not in out:
        return f"exit {rc}: {last_lines(err or out)}"
    tps = float(out.split("tps = ")[1].split()[0])
    avg = float(out.split("latency average = ")[1].split()[0])
    n = int(out.split("number of transactions actually processed: ")[1].split()[0])
    failed = int(out.split("number of failed transactions: ")[1].split()[0]) if "number of failed transactions: " in out else 0
    retries = int(out.split("number of transactions retried: ")[1].split()[0]) if "number of transactions retried: " in out else 0
    return tps, avg, failed, retries, n, cpu * 1e6 / max(n, 1)


def spread(values, fmt):
    return f"{fmt % statistics.median(values)} ({fmt % min(values)}–{fmt % max(values)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--clients", default="1,4")
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=str(lablib.ROOT / "target" / "release" / "roachlab"))
    a = ap.parse_args()
    if not (os.environ.get("ROACHLAB_COCKROACH") or shutil.which("cockroach")):
        print("SKIPPED (no cockroach binary)")
        return
    if not os.path.exists(a.binary):
        sys.exit("build roachlab first: cargo build --release")
    pgbench = shutil.which("pgbench") or sys.exit("pgbench not found: apt-get install postgresql-client")
    client_counts = [int(c) for c in a.clients.split(",")]
    tmp = tempfile.mkdtemp(prefix="rlbench-crdb", dir="/tmp")
    lab = os.path.join(tmp, "lab")
    try:
        ports = lablib.cockroach_config(f"{tmp}/lab.toml", 3)
        lablib.roachlab(a.binary, lab, "up", "--config", f"{tmp}/lab.toml")
        front = ports["frontend"]
        url = f"postgresql://root@127.0.0.1:{front}/defaultdb?sslmode=disable"
        conn = ["-h", "127.0.0.1", "-p", str(front), "-U", "root"]
        version = subprocess.run([os.environ.get("ROACHLAB_COCKROACH") or "cockroach", "version"], capture_output=True, text=True).stdout
        tag = next((l.split(":", 1)[1].strip() for l in version.splitlines() if l.startswith("Build Tag")), "?")
        print(f"CockroachDB {tag}, 3 nodes on one {os.cpu_count()}-CPU machine, through HAProxy; {subprocess.run([pgbench, '--version'], capture_output=True, text=True).stdout.strip()}\n")

        print("pgbench's own initialisation through HAProxy:\n")
        print("| command | exit | last lines |")
        print("|---|---|---|")
        for steps in [[], ["-I", "dtg"], ["-I", "dtG"], ["-I", "dtgp"]]:
            cmd = [pgbench, "--initialize", "--no-vacuum", "-s", str(a.scale)] + steps + conn + ["defaultdb"]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            shown = " ".join(["pgbench", "--initialize", "--no-vacuum", "-s", str(a.scale)] + steps)
            print(f"| `{shown}` | {p.returncode} | {last_lines(p.stderr or p.stdout).replace('|', '¦')} |")
        print()
        lablib.roachlab(a.binary, lab, "workload", "init", "tpcb", "--scale", str(a.scale), "--url", url, timeout=1800)
        with open(f"{tmp}/pipeline.sql", "w") as f:
            f.write(PIPELINE_SCRIPT)

        rows, errors = [], {}
        for r in range(a.rounds):
            for c in client_counts:
                k = (r + client_counts.index(c)) % len(TOOLS)
                for tool in TOOLS[k:] + TOOLS[:k]:
                    if (c, tool) in errors:
                        continue
                    res = run_tool(tool, c, a, lab, url, conn, pgbench, tmp)
                    if isinstance(res, str):
                        errors[(c, tool)] = res
                        print(f"round {r + 1}, {c} clients, {tool}: {res}", file=sys.stderr, flush=True)
                    else:
                        rows.append((r + 1, c, tool) + res)
                        print(f"round {r + 1}, {c} clients, {tool}: {res[0]:.1f} tps", file=sys.stderr, flush=True)
                    time.sleep(1)
        print(f"scale {a.scale}, {a.duration} s per run, {a.rounds} rounds. Medians (min–max) over the rounds:\n")
        print("| clients | client | tps | latency avg (ms) | failed | retried | client CPU per txn (µs) | tpcb ÷ this, tps |")
        print("|---|---|---|---|---|---|---|---|")
        for c in client_counts:
            base = [x[3] for x in rows if x[1] == c and x[2] == "tpcb"]
            for t in TOOLS:
                mine = [x for x in rows if x[1] == c and x[2] == t]
                if not mine:
                    print(f"| {c} | {t} | failed: {errors.get((c, t), 'not run').replace('|', '¦')} | | | | | |")
                    continue
                ratio = f"{statistics.median(base) / statistics.median(x[3] for x in mine):.2f}×" if base else "–"
                print(f"| {c} | {t} | {spread([x[3] for x in mine], '%.0f')} | {spread([x[4] for x in mine], '%.2f')} | "
                      f"{spread([x[5] for x in mine], '%d')} | {spread([x[6] for x in mine], '%d')} | {spread([x[8] for x in mine], '%.0f')} | {ratio} |")
    finally:
        if os.path.exists(os.path.join(lab, "state.json")):
            lablib.roachlab(a.binary, lab, "down", "--fast", check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
