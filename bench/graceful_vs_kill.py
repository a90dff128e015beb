#!/usr/bin/env python3
"""Repeats `roachlab drill graceful-vs-kill` on one lab and tabulates, per phase, the
failed and ambiguous transfers and the longest stall (median and max over the runs), plus
HAProxy's time to DOWN in the kill phase.

Usage (from the repository root, after `cargo build --release`):

    bench/graceful_vs_kill.py [--runs 10] [--engine etcd|cockroach] [--binary target/release/roachlab] [--dir /tmp/rl-bench-gvk]

It brings a 3-member lab up in --dir (etcd, or CockroachDB where a binary is on PATH or in
$ROACHLAB_COCKROACH; HAProxy inter 1s, fall 2, as configs/*-3.toml) on free 127.0.0.1 ports,
runs the drill --runs times (each drill restores the cluster at its end), prints a Markdown
table for docs/BENCHMARKS.md, and takes the lab down (`down --wipe`), also on failure.
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys

import lablib


def run(binary, lab, *args, check=True):
    return subprocess.run([binary, "--dir", lab, *args], check=check, capture_output=True, text=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--binary", default="target/release/roachlab")
    p.add_argument("--dir", default="/tmp/rl-bench-gvk")
    p.add_argument("--engine", choices=["etcd", "cockroach"], default="etcd")
    a = p.parse_args()
    if a.engine == "cockroach" and not (os.environ.get("ROACHLAB_COCKROACH") or shutil.which("cockroach")):
        print("SKIPPED (no cockroach binary)")
        return
    lab = a.dir
    run(a.binary, lab, "down", "--fast", "--wipe", check=False)
    pathlib.Path(lab).mkdir(parents=True, exist_ok=True)
    config = pathlib.Path(lab) / "bench.toml"
    if a.engine == "etcd":
        lablib.etcd_config(config, 3)
    else:
        lablib.cockroach_config(config, 3)
    run(a.binary, lab, "up", "--config", str(config))
    phases = {"graceful": [], "kill": []}
    passed = 0
    try:
        for i in range(a.runs):
            out = run(a.binary, lab, "drill", "graceful-vs-kill", "--seed", str(i + 1), check=False)
            run_dir = next((l.split("report: ", 1)[1].strip() for l in out.stdout.splitlines() if l.startswith("report: ")), None)
            if run_dir is None:
                sys.exit(f"run {i + 1}: no report\n{out.stdout}\n{out.stderr}")
            result = json.loads((pathlib.Path(run_dir).parent / "results.json").read_text())
            passed += out.returncode == 0
            for ph in result["phases"]:
                if ph["name"] in phases:
                    phases[ph["name"]].append(ph)
            print(f"run {i + 1}: exit {out.returncode}", file=sys.stderr)
    finally:
        run(a.binary, lab, "down", "--fast", "--wipe", check=False)

    def fig(values):
        f = (lambda v: f"{v:.2f}") if any(isinstance(v, float) for v in values) else str
        return f"{f(statistics.median(values))} / {f(max(values))}"

    print(f"{a.engine}: {a.runs} runs, {passed} passed every expectation and the bank check.\n")
    print("| phase | failed (median / max) | ambiguous (median / max) | longest stall, s (median / max) | HAProxy DOWN after fault, s (median / max) |")
    print("|---|---|---|---|---|")
    for name, rows in phases.items():
        fail = [r["counts"]["fail"] for r in rows]
        amb = [r["counts"]["ambiguous"] for r in rows]
        stall = [r["longest_stall_ms"] / 1000 for r in rows]
        down = [r["haproxy_down_after_fault_ms"] / 1000 for r in rows if r["haproxy_down_after_fault_ms"] is not None]
        print(f"| {name} | {fig(fail)} | {fig(amb)} | {fig(stall)} | {fig(down) if down else '–'} |")


if __name__ == "__main__":
    main()
