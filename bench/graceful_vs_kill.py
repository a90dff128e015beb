#!/usr/bin/env python3
"""Repeats `roachlab drill graceful-vs-kill` on one etcd lab and tabulates, per phase, the
failed and ambiguous transfers and the longest stall (median and max over the runs), plus
HAProxy's time to DOWN in the kill phase.

Usage (from the repository root, after `cargo build --release`):

    bench/graceful_vs_kill.py [--runs 10] [--binary target/release/roachlab] [--dir /tmp/rl-bench-gvk]

It brings a 3-member etcd lab up in --dir (configs/etcd-3.toml: HAProxy inter 1s, fall 2),
runs the drill --runs times (each drill restores the cluster at its end), prints a Markdown
table for docs/BENCHMARKS.md, and takes the lab down (`down --wipe`), also on failure.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys


def run(binary, lab, *args, check=True):
    return subprocess.run([binary, "--dir", lab, *args], check=check, capture_output=True, text=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--binary", default="target/release/roachlab")
    p.add_argument("--dir", default="/tmp/rl-bench-gvk")
    a = p.parse_args()
    lab = a.dir
    run(a.binary, lab, "down", "--fast", "--wipe", check=False)
    run(a.binary, lab, "up", "--config", "configs/etcd-3.toml")
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

    print(f"{a.runs} runs, {passed} passed every expectation and the bank check.\n")
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
