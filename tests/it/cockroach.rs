//! The same scenario against a real CockroachDB, when a binary is available
//! (`ROACHLAB_COCKROACH` or `cockroach` on PATH). Otherwise it prints a SKIPPED line.

use crate::helpers::*;

#[test]
fn cockroach_cluster_under_supervision() {
    let Some(bin) = binary_available("ROACHLAB_COCKROACH", "cockroach") else {
        skipped("no cockroach binary", "cockroach_cluster_under_supervision (set ROACHLAB_COCKROACH or put `cockroach` on PATH)");
        return;
    };
    println!("running against {}", bin.display());
    let lab = TestLab::new("cockroach", 3);
    crate::lab_etcd::supervisor_scenario(&lab);
}

#[test]
fn cockroach_decommission_below_replication_factor_is_refused() {
    let Some(_) = binary_available("ROACHLAB_COCKROACH", "cockroach") else {
        skipped("no cockroach binary", "cockroach_decommission_below_replication_factor_is_refused");
        return;
    };
    let lab = TestLab::new("cockroach", 3);
    lab.up();
    let out = lab.run(&["node", "decommission", "3"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("replication factor 3"), "{}", text(&out.stderr));
}

#[test]
fn cockroach_bank_and_tpcb_through_haproxy() {
    let Some(_) = binary_available("ROACHLAB_COCKROACH", "cockroach") else {
        skipped("no cockroach binary", "cockroach_bank_and_tpcb_through_haproxy");
        return;
    };
    let lab = TestLab::new("cockroach", 3);
    lab.up();
    let out = lab.ok(&["workload", "init", "bank", "--rows", "100", "--ranges", "4"]);
    assert!(out.contains("split into 4 ranges"), "{out}");
    lab.ok(&["workload", "run", "bank", "--concurrency", "4", "--duration", "3s"]);
    let check = lab.ok(&["workload", "check", "bank"]);
    assert!(check.ends_with("check passed\n"), "{check}");
    lab.ok(&["workload", "init", "tpcb", "--scale", "1"]);
    lab.ok(&["workload", "run", "tpcb", "--clients", "2", "--duration", "2s"]);
    assert!(lab.ok(&["workload", "check", "tpcb"]).contains("check passed"));
}

#[test]
fn cockroach_drills() {
    let Some(_) = binary_available("ROACHLAB_COCKROACH", "cockroach") else {
        skipped("no cockroach binary", "cockroach_drills (graceful-vs-kill, quorum-loss)");
        return;
    };
    let lab = TestLab::new("cockroach", 3);
    lab.up();
    // Graceful means no client errors on CockroachDB: the expectation is checked by the drill.
    let out = lab.ok(&["drill", "graceful-vs-kill", "--node", "2", "--baseline", "5s"]);
    assert!(out.contains("met:     graceful: fail == 0") && out.contains("met:     graceful: ambiguous == 0"), "{out}");
    // The theory speaks of ranges and replicas, and each fault's prediction is checked.
    assert!(out.contains("replication factor 3: each range is its own Raft group of 3 replicas and needs 2"), "{out}");
    assert!(out.contains("prediction: with node(s) 2 down, 0 of"), "{out}");
    let out = lab.ok(&["drill", "quorum-loss", "--baseline", "5s"]);
    assert!(out.contains("met:     quorum-lost: committed == 0"), "{out}");
    assert!(out.contains("range(s) keep fewer than a majority of their replicas"), "{out}");
    assert!(!out.contains("NOT MET"), "every prediction and expectation holds: {out}");
}

#[test]
fn cockroach_scale_out_and_decommission() {
    let Some(_) = binary_available("ROACHLAB_COCKROACH", "cockroach") else {
        skipped("no cockroach binary", "cockroach_scale_out_and_decommission (drill scale: add a 4th node under load, decommission it)");
        return;
    };
    let lab = TestLab::new("cockroach", 3);
    lab.up();
    let out = lab.ok(&["drill", "scale", "--to", "4", "--baseline", "5s"]);
    assert!(!out.contains("NOT MET"), "{out}");
    let status = lab.ok(&["status"]);
    assert!(status.contains("decommissioned"), "{status}");
    assert!(status.contains("quorum ok (SQL write probe committed"), "quorum is observed, not counted: {status}");
}

#[test]
fn cockroach_partition_drills() {
    let Some(_) = binary_available("ROACHLAB_COCKROACH", "cockroach") else {
        skipped("no cockroach binary", "cockroach_partition_drills (netns: partition-minority, partition-leader, split-brain)");
        return;
    };
    let lab = TestLab::netns("cockroach", 4);
    lab.up();
    let status = lab.ok(&["status"]);
    assert!(status.contains("netns topology, whole"), "{status}");
    // A follower, then the leaseholder of the bank's first row, cut off: the other three
    // hold a majority of every range's replicas (replication factor 3) and keep writing.
    for drill in ["partition-minority", "partition-leader"] {
        let out = lab.ok(&["drill", drill, "--baseline", "5s"]);
        assert!(!out.contains("NOT MET"), "{drill}: every prediction and expectation holds:\n{out}");
        assert!(out.contains("bank check passed"), "{drill}: {out}");
    }
    // 2|2 of 4: each range keeps a majority on at most one side; what each side could write
    // is predicted from the placement and checked; nothing acknowledged is lost.
    let out = lab.ok(&["drill", "split-brain", "--baseline", "5s"]);
    assert!(out.contains("bank check passed"), "{out}");
    assert!(out.contains("predicted at line"), "{out}");
    lab.ok(&["down"]);
    assert!(lab.net_leftovers().is_empty(), "{:?}", lab.net_leftovers());
}
