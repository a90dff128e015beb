#!/usr/bin/env python3
"""roachlab's tpcb against pgbench on one PostgreSQL server.

Same server, same data (`pgbench -i -s SCALE`), same clients and duration; the two tools take
turns, alternating which goes first, for ROUNDS rounds. Both log every transaction (roachlab
always does; pgbench with -l), and p99 comes from those logs for both. Client CPU is the
user+system time of the client process (getrusage of the child), per committed transaction.

The server runs on 127.0.0.1 on a free port in a temporary directory, and is stopped by PID
at the end, pass or fail.

Usage: bench/tpcb_vs_pgbench.py [--scale 10] [--clients 8] [--duration 30] [--rounds 3]
       (build first: cargo build --release)
"""
import argparse, glob, json, os, pwd, resource, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROACHLAB = os.path.join(ROOT, "target", "release", "roachlab")


def pg_bin():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not dirs:
        sys.exit("PostgreSQL server binaries not found: apt-get install postgresql")
    return dirs[-1]


def as_postgres(cmd):
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


def free_port():
    for _ in range(100):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
        finally:
            s.close()
    sys.exit("no free port")


def timed(cmd):
    """Runs cmd; returns (stdout, client cpu seconds) from the child's rusage."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def alive(pid):
    """Running and not a zombie (an orphan may never be reaped where PID 1 does not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def p99(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(0.99 * len(values)))] if values else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if not os.path.exists(ROACHLAB):
        sys.exit("build roachlab first: cargo build --release")
    bindir = pg_bin()
    pgbench = shutil.which("pgbench") or os.path.join(bindir, "pgbench")
    tmp = tempfile.mkdtemp(prefix="rlbench", dir="/tmp")
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    port = free_port()
    data = os.path.join(tmp, "data")
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    pid = None
    try:
        subprocess.run(as_postgres([f"{bindir}/initdb", "-A", "trust", "-U", "postgres", "-D", data]), check=True, capture_output=True)
        opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c max_connections=100"
        subprocess.run(as_postgres([f"{bindir}/pg_ctl", "-w", "-D", data, "-o", opts, "-l", f"{tmp}/log", "start"]), check=True, capture_output=True)
        pid = int(open(f"{data}/postmaster.pid").readline())
        conn = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        subprocess.run([pgbench, "-i", "-q", "-s", str(a.scale)] + conn + ["postgres"], check=True, capture_output=True)
        os.makedirs(f"{tmp}/pgbench-logs", exist_ok=True)
        os.chmod(f"{tmp}/pgbench-logs", 0o777)
        rows = []
        for r in range(a.rounds):
            order = ["roachlab", "pgbench"] if r % 2 == 0 else ["pgbench", "roachlab"]
            for tool in order:
                if tool == "roachlab":
                    out, cpu = timed([ROACHLAB, "--dir", f"{tmp}/lab", "workload", "run", "tpcb", "--clients", str(a.clients),
                                      "--duration", f"{a.duration}s", "--url", url, "--json"])
                    s = json.loads(out.strip().splitlines()[-1])["summary"]
                    n = s["counts"]["ok"]
                    rows.append((r + 1, tool, s["ops_per_sec"], s["avg_ms"], s["p99_ms"], n, cpu * 1e6 / max(n, 1)))
                else:
                    prefix = f"{tmp}/pgbench-logs/r{r}"
                    out, cpu = timed([pgbench, "-n", "-c", str(a.clients), "-T", str(a.duration), "-l", "--log-prefix", prefix] + conn + ["postgres"])
                    tps = float(out.split("tps = ")[1].split()[0])
                    avg = float(out.split("latency average = ")[1].split()[0])
                    n = int(out.split("number of transactions actually processed: ")[1].split()[0])
                    lat = [int(line.split()[2]) / 1000.0 for f in glob.glob(prefix + ".*") for line in open(f) if line.strip()]
                    rows.append((r + 1, tool, tps, avg, p99(lat), n, cpu * 1e6 / max(n, 1)))
                time.sleep(1)
        print(f"scale {a.scale}, {a.clients} clients, {a.duration} s per run, {a.rounds} rounds; PostgreSQL {os.path.basename(os.path.dirname(bindir))}, {os.cpu_count()} CPUs\n")
        print("| round | client | tps | latency avg (ms) | p99 (ms) | transactions | client CPU per txn (µs) |")
        print("|---|---|---|---|---|---|---|")
        for row in rows:
            print("| %d | %s | %.1f | %.3f | %.3f | %d | %.1f |" % row)
        for tool in ("roachlab", "pgbench"):
            mine = [x for x in rows if x[1] == tool]
            k = len(mine)
            print(f"| mean | {tool} | {sum(x[2] for x in mine) / k:.1f} | {sum(x[3] for x in mine) / k:.3f} | {sum(x[4] for x in mine) / k:.3f} | "
                  f"{sum(x[5] for x in mine) // k} | {sum(x[6] for x in mine) / k:.1f} |")
    finally:
        if pid:
            try:
                os.kill(pid, signal.SIGINT)  # fast shutdown, by PID
                for _ in range(300):
                    if not alive(pid):
                        break
                    time.sleep(0.1)
            except ProcessLookupError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
