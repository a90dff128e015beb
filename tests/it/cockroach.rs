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
