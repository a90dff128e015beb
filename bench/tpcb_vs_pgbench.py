#!/usr/bin/env python3
"""roachlab's tpcb against pgbench's strongest modes on one PostgreSQL server.

Six clients of the same TPC-B-like transaction, on the same server and data
(`pgbench -i -s SCALE`, loaded once), at each of --clients (default 1, 8, 32):

- `tpcb`: `roachlab workload run tpcb` (BEGIN and the five statements pipelined, COMMIT in
  a second round trip; tokio's current-thread runtime, so one client thread);
- `tpcb one trip`: the same with `--one-round-trip` (COMMIT pipelined too);
- `pgbench simple`: the built-in script, `-M simple` (7 round trips, text queries);
- `pgbench prepared`: the built-in script, `-M prepared` (7 round trips, prepared statements);
- `pgbench pipeline`: the built-in transaction between `\\startpipeline` and `\\endpipeline`
  (PostgreSQL 14+; one round trip per transaction), `-M prepared`;
- `pgbench one query`: the built-in transaction as one multi-statement Query (`\\;`),
  `-M simple`: one round trip and one Sync, without prepared statements.

pgbench runs with `-j` = clients, up to the number of CPUs. Every (clients, round) runs the
six in a rotating order, for --rounds rounds. Reported per run and as medians with spread
(min–max): tps, latency avg and p99 (both tools log every transaction: roachlab always,
pgbench with -l), and client CPU per transaction: user + system time of the client process
(getrusage of the child) over committed transactions. Each run also records the server's WAL
and checkpoint counters (`pg_stat_wal`, `pg_stat_bgwriter`), to tell a server warm-up from a
client one.

The server runs on 127.0.0.1 on a free port in a temporary directory, and is stopped by PID
at the end, pass or fail.

Usage: bench/tpcb_vs_pgbench.py [--scale 10] [--clients 1,8,32] [--duration 20] [--rounds 3]
       (build first: cargo build --release)
"""
import argparse, glob, json, os, pwd, resource, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROACHLAB = os.path.join(ROOT, "target", "release", "roachlab")

# pgbench's built-in tpcb-like script (PostgreSQL 15 pgbench.c, `builtin_script[0]`), its
# transaction in one pipeline.
PIPELINE_SCRIPT = """\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
\\startpipeline
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
\\endpipeline
"""

# The same transaction as one simple-protocol Query message (`\\;` joins the statements:
# pgbench 15 docs, "Custom Scripts"): one round trip and one Sync like the pipeline, but
# parsed and planned at every execution. It answers whether tpcb could reach the pipeline
# through the one single-Sync path tokio-postgres offers (`simple_query`/`batch_execute`).
ONE_QUERY_SCRIPT = """\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
BEGIN \\;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid \\;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid \\;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid \\;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid \\;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP) \\;
END;
"""

TOOLS = ["tpcb", "tpcb one trip", "pgbench simple", "pgbench prepared", "pgbench pipeline", "pgbench one query"]


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


def server_counters(psql, conn):
    """(WAL bytes, WAL syncs, checkpoints) of the server so far."""
    q = "SELECT wal_bytes, wal_sync, (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) FROM pg_stat_wal"
    out = subprocess.run([psql, "-At", "-F", ","] + conn + ["-d", "postgres", "-c", q], check=True, capture_output=True, text=True).stdout
    wal, syncs, ckpt = out.strip().split(",")
    return int(wal), int(syncs), int(ckpt)


def run_tool(tool, clients, a, tmp, url, conn, pgbench, key):
    """One run; returns (tps, avg_ms, p99_ms, transactions, cpu_us_per_txn)."""
    if tool.startswith("tpcb"):
        one = ["--one-round-trip"] if tool == "tpcb one trip" else []
        out, cpu = timed([a.binary, "--dir", f"{tmp}/lab", "workload", "run", "tpcb", "--clients", str(clients),
                          "--duration", f"{a.duration}s", "--url", url, "--json"] + one)
        s = json.loads(out.strip().splitlines()[-1])["summary"]
        n = s["counts"]["ok"]
        return s["ops_per_sec"], s["avg_ms"], s["p99_ms"], n, cpu * 1e6 / max(n, 1)
    prefix = f"{tmp}/pgbench-logs/{key}"
    threads = min(clients, os.cpu_count() or 1)
    mode = {"pgbench simple": ["-M", "simple"], "pgbench prepared": ["-M", "prepared"],
            "pgbench pipeline": ["-M", "prepared", "-f", f"{tmp}/pipeline.sql", "-s", str(a.scale)],
            "pgbench one query": ["-M", "simple", "-f", f"{tmp}/one-query.sql", "-s", str(a.scale)]}[tool]
    out, cpu = timed([pgbench, "-n", "-c", str(clients), "-j", str(threads), "-T", str(a.duration), "-l", "--log-prefix", prefix]
                     + mode + conn + ["postgres"])
    tps = float(out.split("tps = ")[1].split()[0])
    avg = float(out.split("latency average = ")[1].split()[0])
    n = int(out.split("number of transactions actually processed: ")[1].split()[0])
    lat = [int(line.split()[2]) / 1000.0 for f in glob.glob(prefix + ".*") for line in open(f) if line.strip()]
    for f in glob.glob(prefix + ".*"):
        os.remove(f)
    return tps, avg, p99(lat), n, cpu * 1e6 / max(n, 1)


def spread(values, fmt):
    return f"{fmt % statistics.median(values)} ({fmt % min(values)}–{fmt % max(values)})"


def main():
    signal.signal(signal.SIGTERM, lambda signum, _f: sys.exit(128 + signum))
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=ROACHLAB)
    a = ap.parse_args()
    if not os.path.exists(a.binary):
        sys.exit("build roachlab first: cargo build --release")
    client_counts = [int(c) for c in a.clients.split(",")]
    bindir = pg_bin()
    pgbench = shutil.which("pgbench") or os.path.join(bindir, "pgbench")
    psql = shutil.which("psql") or os.path.join(bindir, "psql")
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
        with open(f"{tmp}/pipeline.sql", "w") as f:
            f.write(PIPELINE_SCRIPT)
        with open(f"{tmp}/one-query.sql", "w") as f:
            f.write(ONE_QUERY_SCRIPT)
        rows = []  # (seq, round, clients, tool, tps, avg, p99, n, cpu, wal_bytes_per_txn, syncs_per_txn, checkpoints)
        seq = 0
        for r in range(a.rounds):
            for c in client_counts:
                k = (r + client_counts.index(c)) % len(TOOLS)
                for tool in TOOLS[k:] + TOOLS[:k]:
                    seq += 1
                    w0, s0, k0 = server_counters(psql, conn)
                    res = run_tool(tool, c, a, tmp, url, conn, pgbench, f"r{r}c{c}{tool.replace(' ', '-')}")
                    w1, s1, k1 = server_counters(psql, conn)
                    n = max(res[3], 1)
                    rows.append((seq, r + 1, c, tool) + res + ((w1 - w0) / n, (s1 - s0) / n, k1 - k0))
                    print(f"{seq}: round {r + 1}, {c} clients, {tool}: {res[0]:.1f} tps", file=sys.stderr, flush=True)
                    time.sleep(1)
        print(f"scale {a.scale}, {a.duration} s per run, {a.rounds} rounds; PostgreSQL {os.path.basename(os.path.dirname(bindir))}, {os.cpu_count()} CPUs\n")
        print("Per run, in the order run:\n")
        print("| # | round | clients | client | tps | latency avg (ms) | p99 (ms) | transactions | client CPU per txn (µs) | WAL per txn (bytes) | WAL syncs per txn | checkpoints |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            print("| %d | %d | %d | %s | %.1f | %.3f | %.3f | %d | %.1f | %.0f | %.3f | %d |" % row)
        print("\nMedians (min–max) over the rounds:\n")
        print("| clients | client | tps | latency avg (ms) | p99 (ms) | client CPU per txn (µs) | tpcb ÷ this, tps | tpcb ÷ this, CPU per txn "
              "| tpcb one trip ÷ this, tps | tpcb one trip ÷ this, CPU per txn |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for c in client_counts:
            med = {t: (statistics.median(x[4] for x in rows if x[2] == c and x[3] == t),
                       statistics.median(x[8] for x in rows if x[2] == c and x[3] == t)) for t in TOOLS}
            for t in TOOLS:
                mine = [x for x in rows if x[2] == c and x[3] == t]
                print(f"| {c} | {t} | {spread([x[4] for x in mine], '%.0f')} | {spread([x[5] for x in mine], '%.3f')} | "
                      f"{spread([x[6] for x in mine], '%.2f')} | {spread([x[8] for x in mine], '%.1f')} | "
                      f"{med['tpcb'][0] / med[t][0]:.2f}× | {med['tpcb'][1] / med[t][1]:.2f}× | "
                      f"{med['tpcb one trip'][0] / med[t][0]:.2f}× | {med['tpcb one trip'][1] / med[t][1]:.2f}× |")
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
