//! The supervisor, `demo`, workloads and drills against a real CockroachDB (v20.1.5 in CI:
//! `.ci/run` unpacks `../shared/cockroach/`). The scenarios run one after another in a single
//! test, [`cockroach_end_to_end_on_a_real_binary`] — three to five CockroachDB nodes use most of
//! a 2-core machine — so they hold one test thread while the etcd tests run on the others
//! (as separate tests that waited for each other, they held both). Without a binary it prints
//! a SKIPPED line.

use crate::drill::{drill_ok, phase, results_of, validate};
use crate::helpers::*;

/// The scenarios, in the order they run: `(name, scenario)`.
const SCENARIOS: [(&str, fn()); 7] = [
    ("supervision", cluster_under_supervision),
    ("secure", secure_lab),
    ("demo_workloads_quorum_loss_and_scale", demo_workloads_quorum_loss_and_scale),
    ("partition_drills", partition_drills),
    ("zone_failure", crate::cockroach_faults::zone_failure_on_five_nodes_over_three_zones),
    ("paused_leaseholder_throttle_and_self_healing", crate::cockroach_faults::paused_leaseholder_throttle_and_self_healing),
    ("monitoring", crate::cockroach_faults::monitoring_fires_and_resolves_on_live_nodes),
];

/// Every CockroachDB scenario, one after another; a failed one is reported and the rest still
/// run. `ROACHLAB_COCKROACH_SCENARIOS=zone_failure,monitoring` runs only those (names above).
#[test]
fn cockroach_end_to_end_on_a_real_binary() {
    let Some(bin) = binary_available("ROACHLAB_COCKROACH", "cockroach") else {
        skipped("no cockroach binary", "the CockroachDB end-to-end scenarios (set ROACHLAB_COCKROACH or put `cockroach` on PATH)");
        return;
    };
    println!("running against {}", bin.display());
    let only: Option<Vec<String>> =
        std::env::var("ROACHLAB_COCKROACH_SCENARIOS").ok().map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    if let Some(names) = &only {
        let unknown: Vec<&String> = names.iter().filter(|n| !SCENARIOS.iter().any(|(s, _)| s == n)).collect();
        assert!(unknown.is_empty(), "unknown scenario(s) {unknown:?}; known: {:?}", SCENARIOS.map(|(n, _)| n));
    }
    let mut failed = Vec::new();
    for (name, scenario) in SCENARIOS {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        println!("── cockroach scenario {name}");
        let start = std::time::Instant::now();
        // A failed scenario's lab is torn down as its panic unwinds; the next one still runs.
        let outcome = std::panic::catch_unwind(scenario);
        println!(
            "── cockroach scenario {name}: {} after {:.0} s",
            if outcome.is_ok() { "passed" } else { "FAILED" },
            start.elapsed().as_secs_f64()
        );
        if outcome.is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "CockroachDB scenario(s) failed: {failed:?} (each one's panic is printed above)");
}

/// A secure CockroachDB lab (#25): certificates by `cockroach cert`, TLS on every hop — the
/// shell, the workloads, the drain, the probes (the admin endpoints through roachlab's own
/// session), Prometheus' scrapes — and an insecure client refused with CockroachDB's words.
fn secure_lab() {
    let lab = TestLab::new("cockroach", 3);
    let cfg = lab.config.display().to_string();
    let out = lab.ok(&["up", "--config", &cfg, "--secure", "--monitoring"]);
    let login = format!("admin UI: https://127.0.0.1:{}/ — user roachlab, password ", lab.ports.admin);
    assert!(out.contains(&login) && out.contains("certs-ca/admin.password"), "the DB Console login, once: {out}");
    let s = lab.status();
    assert!(s["certificates"]["days_left"].as_i64().unwrap() > 1800, "{}", s["certificates"]);
    // Liveness is read through roachlab's session on the admin endpoints.
    wait_for("liveness through the admin session", std::time::Duration::from_secs(30), || {
        let s = lab.status();
        s["nodes"].as_array().unwrap().iter().all(|n| n["liveness"] == "LIVE").then_some(())
    });
    let who = lab.ok(&["sql", "-e", "select current_user"]);
    assert!(who.lines().any(|l| l.trim() == "root"), "{who}");
    let bin = binary_available("ROACHLAB_COCKROACH", "cockroach").unwrap();
    let insecure = std::process::Command::new(bin)
        .args(["sql", "--insecure", &format!("--host=127.0.0.1:{}", lab.ports.frontend), "-e", "select 1"])
        .output()
        .unwrap();
    let said = format!("{}{}", text(&insecure.stdout), text(&insecure.stderr));
    assert!(!insecure.status.success() && said.contains("SSL"), "an insecure client is refused: {said}");

    lab.ok(&["workload", "init", "bank", "--rows", "100"]);
    lab.ok(&["workload", "run", "bank", "--concurrency", "4", "--duration", "3s"]);
    assert!(lab.ok(&["workload", "check", "bank"]).ends_with("check passed\n"));
    lab.ok(&["workload", "init", "tpcb", "--scale", "1"]);
    let out = lab.ok(&["workload", "run", "tpcb", "--clients", "2", "--duration", "3s"]);
    assert!(out.contains("number of transactions actually processed: "), "{out}");
    assert!(lab.ok(&["workload", "check", "tpcb"]).ends_with("check passed\n"));

    let out = drill_ok(&lab, &["demo", "--config", &cfg]);
    assert!(out.contains("met:     graceful: fail == 0") && out.contains("met:     graceful: ambiguous == 0"), "{out}");
    // Prometheus scrapes every node over TLS with the lab's certificates.
    wait_for("every target up", std::time::Duration::from_secs(60), || {
        let m = &lab.status()["monitoring"];
        (m["targets_total"].as_u64().is_some_and(|t| t >= 6) && m["targets_up"] == m["targets_total"]).then_some(())
    });
    lab.ok(&["down", "--wipe"]);
    assert!(!lab.lab_dir().join("certs").exists());
}

fn cluster_under_supervision() {
    let lab = TestLab::new("cockroach", 3);
    crate::lab_etcd::supervisor_scenario(&lab);
}

/// One 3-node lab for what needs no special topology, so CockroachDB's ~40 s of
/// up-replication after `init` is paid once: `demo` (the runbook's entry point: up and
/// graceful-vs-kill), bank and tpcb, quorum-loss, and scale.
fn demo_workloads_quorum_loss_and_scale() {
    let lab = TestLab::new("cockroach", 3);
    // demo picks CockroachDB where a binary is found; graceful means no client errors.
    let out = drill_ok(&lab, &["demo", "--config", lab.config.to_str().unwrap()]);
    assert!(out.contains("cockroach v20.1.5") && out.contains("drill graceful-vs-kill"), "{out}");
    assert!(out.contains("met:     graceful: fail == 0") && out.contains("met:     graceful: ambiguous == 0"), "{out}");
    // The theory speaks of ranges and replicas, and each fault's prediction is checked.
    assert!(out.contains("replication factor 3: each range is its own Raft group of 3 replicas and needs 2"), "{out}");
    // The target is the leaseholder of the bank's first row (CockroachDB has no single leader).
    assert!(out.contains("prediction: with node(s) ") && out.contains(" down, 0 of "), "{out}");
    assert!(out.contains("the cluster is still up"), "{out}");

    // Decommissioning below the replication factor would never finish: refused.
    let out = lab.run(&["node", "decommission", "3"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("replication factor 3"), "{}", text(&out.stderr));

    let out = lab.ok(&["workload", "init", "bank", "--rows", "100", "--ranges", "4"]);
    assert!(out.contains("split into 4 ranges"), "{out}");
    lab.ok(&["workload", "run", "bank", "--concurrency", "4", "--duration", "3s"]);
    let check = lab.ok(&["workload", "check", "bank"]);
    assert!(check.ends_with("check passed\n"), "{check}");
    // `roachlab sql` is cockroach's own shell, through HAProxy or at one node.
    let out = lab.ok(&["sql", "-e", "select count(*) from bank.bank"]);
    assert!(out.lines().any(|l| l.trim() == "100"), "{out}");
    // Straight to node 2: the node that answers reports node 2's SQL port (CockroachDB's own
    // node IDs follow join order, not roachlab's numbers).
    let port = lab.node(2)["sql_port"].as_u64().unwrap();
    let out = lab.ok(&["sql", "--node", "2", "-e", "select value from crdb_internal.node_runtime_info"]);
    assert!(out.contains(&format!(":{port}")), "node 2 listens on {port}: {out}");
    let bad = lab.run(&["sql", "-e", "select * from no_such_table"]);
    assert!(!bad.status.success(), "a failing statement is the command's failure");
    let out = lab.run(&["etcdctl", "--", "get", "/x"]);
    assert!(!out.status.success() && text(&out.stderr).contains("roachlab sql"), "{}", text(&out.stderr));

    // Your own workload: the stations script on CockroachDB's typing, its check after the run.
    let root = env!("CARGO_MANIFEST_DIR");
    lab.ok(&["workload", "init", "script", "--file", &format!("{root}/workloads/stations-schema.sql")]);
    let out =
        lab.ok(&["workload", "run", "script", "--file", &format!("{root}/workloads/stations.sql"), "--clients", "2", "--duration", "3s"]);
    assert!(out.contains("check passed"), "{out}");

    // Your own workload in a drill (#24): the stations under a node's kill, per-phase figures
    // like the bank's, a row written through node 1 read through node 2 while node 3 is down
    // and through node 3 once back, and the script's check after the drill.
    let out = drill_ok(&lab, &["drill", "run", &format!("{root}/configs/drills/stations-replication.toml"), "--baseline", "3s"]);
    let (_, r) = results_of(&out);
    validate(&r);
    assert!(phase(&r, "one-down")["committed"].as_u64().unwrap() > 0, "the stations kept reporting with node 3 down");
    assert!(phase(&r, "baseline")["counts"]["ok"].as_u64().unwrap() > 0);
    assert!(
        out.contains(
            "met:     sql at line 45: `SELECT region FROM stations WHERE id = 1000` through node 2 returns `written through node 1`"
        ),
        "{out}"
    );
    assert!(out.contains("through node 3 returns `written through node 1`"), "{out}");
    assert_eq!(r["query_check"]["holds"], true, "{}", r["query_check"]);
    assert!(out.contains("check passed (`SELECT (SELECT COALESCE(sum(readings)"), "{out}");
    let sql: Vec<&str> =
        r["steps"].as_array().unwrap().iter().filter(|s| s["kind"] == "sql").map(|s| s["what"].as_str().unwrap()).collect();
    assert!(sql[0].starts_with("SQL through node 1: `INSERT INTO stations") && sql[0].ends_with("→ 1 row(s)"), "{sql:?}");

    // pgbench's schema and transaction under CockroachDB's typing (INT / INT is DECIMAL there).
    let out = lab.ok(&["workload", "init", "tpcb", "--scale", "1"]);
    assert!(out.contains("scale 1: 1 branches, 10 tellers, 100000 accounts"), "{out}");
    let out = lab.ok(&["workload", "run", "tpcb", "--clients", "2", "--duration", "3s"]);
    assert!(out.contains("transaction type: <builtin: TPC-B (sort of)>"), "{out}");
    let processed: i64 = out.split("number of transactions actually processed: ").nth(1).unwrap().lines().next().unwrap().parse().unwrap();
    assert!(processed > 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&lab.ok(&["workload", "check", "tpcb", "--json"])).unwrap();
    assert_eq!(v["violations"], serde_json::json!([]), "{v}");
    let t = &v["totals"];
    assert!(t["history_rows"].as_i64().unwrap() >= processed, "one history row per committed transaction: {v}");
    assert_eq!(t["sum_abalance"], t["sum_delta"]);
    assert_eq!(t["sum_tbalance"], t["sum_delta"]);
    assert_eq!(t["sum_bbalance"], t["sum_delta"]);

    let out = drill_ok(&lab, &["drill", "quorum-loss", "--baseline", "5s"]);
    assert!(out.contains("met:     quorum-lost: committed == 0"), "{out}");
    assert!(out.contains("range(s) keep fewer than a majority of their replicas"), "{out}");
    // The wait after the first SIGKILL says why it may take a lease expiry, with the
    // release's own figure.
    assert!(
        out.contains("waiting until writes resumed (at most 42 s)") && out.contains("9 s after its last heartbeat on v20.1.5"),
        "{out}"
    );
    let (_, r) = results_of(&out);
    validate(&r);
    assert!(phase(&r, "one-down")["committed"].as_u64().unwrap() > 0, "writes resumed before the last majority went");
    // Quorum loss is seen by the write probe within seconds, not after a lease expiry: the
    // quorum-lost phase began at most 15 s after the second kill (the wait's bound).
    let steps = r["steps"].as_array().unwrap();
    let kills: Vec<u64> =
        steps.iter().filter(|s| s["what"].as_str().unwrap().starts_with("SIGKILL")).map(|s| s["at_ms"].as_u64().unwrap()).collect();
    let lost = phase(&r, "quorum-lost")["start_ms"].as_u64().unwrap();
    assert!(lost > kills[1] && lost - kills[1] <= 15_000, "kills at {kills:?}, quorum lost seen at {lost}");
    assert!(r["check"]["violations"].as_array().unwrap().is_empty());

    // Graceful stops after the drills above SIGKILLed and restarted nodes: on v20.1 ranges
    // left idle still name a restarted node's previous liveness epoch as leaseholder, and
    // `cockroach node drain` waits on them forever (cockroachdb/cockroach#58613; seen here in 2
    // of 3 graceful-vs-kill runs on one lab, each then SIGKILLed after the grace period).
    // roachlab asks every range for its lease first: the drain ends and SIGTERM stops the node.
    for node in ["2", "3"] {
        let out = lab.ok(&["node", "stop", node]);
        assert!(out.contains("ranges for their leases first") && out.contains("cockroachdb/cockroach#58613"), "{out}");
        assert!(out.contains("drained in ") && !out.contains("hand-off failed"), "the drain ended: {out}");
        assert!(
            out.contains(&format!("node {node}: drained: SIGTERM, exited (code 0)")) && !out.contains("SIGKILL"),
            "SIGTERM stopped it, not SIGKILL after the grace period: {out}"
        );
        lab.ok(&["node", "start", node]);
    }

    // Scale out to 4 under load, and decommission the new node again.
    drill_ok(&lab, &["drill", "scale", "--to", "4", "--baseline", "3s"]);
    let status = lab.ok(&["status"]);
    assert!(status.contains("decommissioned"), "{status}");
    assert!(status.contains("quorum ok (SQL write probe committed"), "quorum is observed, not counted: {status}");
}

/// Netns partitions on CockroachDB: partition-minority, partition-leader, split-brain.
fn partition_drills() {
    let lab = TestLab::netns("cockroach", 4);
    lab.up();
    let status = lab.ok(&["status"]);
    assert!(status.contains("netns topology, whole"), "{status}");
    // A follower, then the leaseholder of the bank's first row, cut off: the other three
    // hold a majority of every range's replicas (replication factor 3) and keep writing.
    for drill in ["partition-minority", "partition-leader"] {
        let out = drill_ok(&lab, &["drill", drill, "--baseline", "5s"]);
        assert!(out.contains("bank check passed"), "{drill}: {out}");
        let (_, r) = results_of(&out);
        assert!(phase(&r, "partitioned")["committed"].as_u64().unwrap() > 0, "{drill}");
        if drill == "partition-leader" {
            // The leaseholder asked of the majority side: a new one there.
            assert!(out.contains("leader != the same node: after"), "{out}");
        }
    }
    // 2|2 of 4: each range keeps a majority on at most one side; what each side could write
    // is predicted from the placement and checked; nothing acknowledged is lost.
    let out = drill_ok(&lab, &["drill", "split-brain", "--baseline", "5s"]);
    assert!(out.contains("bank check passed"), "{out}");
    assert!(out.contains("predicted at line"), "{out}");
    lab.ok(&["down"]);
    assert!(lab.net_leftovers().is_empty(), "{:?}", lab.net_leftovers());
}
