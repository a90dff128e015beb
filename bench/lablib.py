"""Shared helpers of the bench scripts: free ports, a lab config on them, the roachlab CLI,
and a process's CPU time and RSS from /proc.

Every server a benchmark starts listens on 127.0.0.1, on ports checked free here, and is
stopped by PID (`roachlab down`, or the script's own kill of a PID it started).
"""

import json
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _exit_on_sigterm(signum, _frame):
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every `finally` stops what it started.
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _exit_on_sigterm)


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_blocks(members, start):
    """The first base from `start` (in steps of 256) where roachlab's port blocks are free:
    each node role gets a block of 64 ports (base: client/SQL ports, base + 64: peer or admin
    HTTP ports), then HAProxy's three ports at base + 128 and the console's at base + 131."""
    base = start
    while True:
        wanted = list(range(base, base + members)) + list(range(base + 64, base + 64 + members)) + [base + 128, base + 129, base + 130, base + 131]
        if all(port_free(b) for b in wanted):
            return base
        base += 256
        if base > 64000:
            raise SystemExit(f"no free ports for {members} nodes from {start}")


def etcd_config(path, members, inter="1s", fall=2, rise=2, poll=None, start=24100):
    """Writes an etcd lab config for `members` members on free 127.0.0.1 ports; returns the
    ports it chose as a dict."""
    base = free_blocks(members, start)
    peer, front = base + 64, base + 128
    text = (
        f'engine = "etcd"\nnodes = {members}\n\n[ports]\nbase = {base}\npeer_base = {peer}\n\n'
        f"[haproxy]\nfrontend_port = {front}\nadmin_port = {front + 1}\nstats_port = {front + 2}\n"
        f'inter = "{inter}"\nfall = {fall}\nrise = {rise}\n'
        f"\n[console]\nport = {front + 3}\n"
    )
    if poll:
        text += f'\n[timeouts]\npoll = "{poll}"\n'
    pathlib.Path(path).write_text(text)
    return {"base": base, "peer": peer, "frontend": front, "admin": front + 1, "stats": front + 2}


def cockroach_config(path, members, start=24100):
    """Writes a CockroachDB lab config for `members` nodes on free 127.0.0.1 ports (SQL/RPC
    block, admin HTTP block, HAProxy's three ports); returns the ports it chose as a dict."""
    base = free_blocks(members, start)
    http, front = base + 64, base + 128
    pathlib.Path(path).write_text(
        f'engine = "cockroach"\nnodes = {members}\n\n[ports]\nbase = {base}\nhttp_base = {http}\n\n'
        f"[haproxy]\nfrontend_port = {front}\nadmin_port = {front + 1}\nstats_port = {front + 2}\n"
        f"\n[console]\nport = {front + 3}\n"
    )
    return {"base": base, "http": http, "frontend": front, "admin": front + 1, "stats": front + 2}


def roachlab(binary, lab, *args, check=True, timeout=600):
    return subprocess.run([binary, "--dir", str(lab), *args], check=check, capture_output=True, text=True, timeout=timeout)


def daemon_pid(lab):
    """The daemon's PID from the lab's state file (written by the daemon, PID + start time)."""
    state = json.loads((pathlib.Path(lab) / "state.json").read_text())
    return state["daemon"]["pid"]


def cpu_seconds(pid):
    """utime + stime of `pid` (all its threads), in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid, key):
    """A `kB` figure of /proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


class Sampler:
    """Samples a process's RSS every `every` s while `until()` is false (or for `seconds`);
    CPU % is its CPU time over the wall time of the window."""

    def __init__(self, pid):
        self.pid = pid

    def run(self, seconds=None, until=None, every=1.0):
        t0, c0 = time.monotonic(), cpu_seconds(self.pid)
        rss, anon = [], []
        while True:
            rss.append(status_kb(self.pid, "VmRSS"))
            anon.append(status_kb(self.pid, "RssAnon"))
            elapsed = time.monotonic() - t0
            if seconds is not None and elapsed >= seconds:
                break
            if until is not None and until():
                break
            time.sleep(every)
        t1, c1 = time.monotonic(), cpu_seconds(self.pid)
        return {
            "wall_s": t1 - t0,
            "cpu_pct": 100.0 * (c1 - c0) / (t1 - t0),
            "rss_mb_median": statistics.median(rss) / 1024,
            "rss_mb_max": max(rss) / 1024,
            "anon_mb_median": statistics.median(anon) / 1024,
            "threads": threads(self.pid),
        }


def median_spread(values):
    """'median (min–max)' of a list of numbers."""
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"
