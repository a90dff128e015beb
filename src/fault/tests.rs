use super::*;

/// A status of `n` running members where `sees[i]` is node i+1's quorum view.
fn status(sees: &[Option<bool>], quorum_ok: bool, cuts: usize) -> StatusReport {
    let nodes: Vec<serde_json::Value> = sees
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({
                "id": i + 1, "pid": 100 + i, "state": "running", "since": null, "exit": null, "ready": true,
                "ready_detail": null, "sql_port": 1, "http_port": 1, "peer_port": null, "backend": "UP",
                "decommissioned": false, "engine_id": null, "backend_check": null, "liveness": null,
                "replicas": null, "leaseholders": null, "is_leader": null, "sees_quorum": s
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "engine": "etcd", "dir": "/x", "daemon": {"pid": 1}, "nodes": nodes,
        "haproxy": {"pid": null, "state": "stopped", "config": "/x/haproxy.cfg", "frontend": "", "admin_ui": "", "stats": ""},
        "cluster": {"quorum": {"up": sees.len(), "needed": sees.len() / 2 + 1, "ok": quorum_ok}},
        "network": {"topology": "netns", "sides": [], "cuts": cuts, "shaped": []},
        "observed": {"current": true, "age_ms": 100}
    }))
    .unwrap()
}

/// Every node running, as before a fault.
fn before() -> StatusReport {
    status(&[Some(true); 4], true, 0)
}

#[test]
fn a_partition_has_propagated_when_the_minority_lost_quorum_and_the_majority_kept_it() {
    let f = Fault::Partition { sides: vec![vec![3], vec![1, 2]], one_way: false, from_clients: false };
    let (ok, seen) = f.propagated(&before(), &status(&[Some(true), Some(true), Some(true)], true, 4));
    assert!(!ok && seen.contains("minority side(s) [3] still sees quorum"), "{seen}");
    assert!(f.propagated(&before(), &status(&[Some(true), Some(true), Some(false)], true, 4)).0);
    assert!(f.propagated(&before(), &status(&[Some(true), Some(true), None], true, 4)).0, "unreachable from the daemon counts as lost");
    assert!(!f.propagated(&before(), &status(&[Some(true), Some(true), Some(false)], true, 0)).0, "not without the cuts in force");
    // Views withheld because the lab changed since the last poll round are no answer.
    let mut stale = status(&[Some(true), Some(true), None], true, 4);
    stale.observed.current = false;
    let (ok, seen) = f.propagated(&before(), &stale);
    assert!(!ok && seen.contains("not observed yet"), "{seen}");
}

#[test]
fn a_split_brain_has_propagated_once_a_side_lost_quorum() {
    let f = Fault::Partition { sides: vec![vec![1, 2], vec![3, 4]], one_way: false, from_clients: false };
    assert!(!f.propagated(&before(), &status(&[Some(true); 4], true, 8)).0);
    // CockroachDB: one side keeps the ranges whose majority it holds; the other loses them.
    assert!(f.propagated(&before(), &status(&[Some(true), Some(true), Some(false), Some(false)], true, 8)).0);
    assert!(f.propagated(&before(), &status(&[Some(false); 4], false, 8)).0);
}

#[test]
fn recovery_needs_a_whole_network_and_every_member_seeing_quorum() {
    let f = Fault::Partition { sides: vec![vec![3], vec![1, 2]], one_way: false, from_clients: false };
    assert!(!f.recovered(&status(&[Some(true); 3], true, 4)).0, "cuts still in force");
    let (ok, seen) = f.recovered(&status(&[Some(true), Some(true), Some(false)], true, 0));
    assert!(!ok && seen.contains("[3]"), "{seen}");
    assert!(f.recovered(&status(&[Some(true); 3], true, 0)).0);
    let k = Fault::Kill { nodes: vec![2] };
    assert!(!k.propagated(&before(), &status(&[Some(true); 3], true, 0)).0, "node 2 still has a pid");
    assert!(k.recovered(&status(&[Some(true); 3], true, 0)).0);
}

#[test]
fn pending_faults_are_taken_newest_first_and_only_while_pending() {
    let mut p = Pending::default();
    for node in [1, 2] {
        p.push(Failer { fault: Fault::Kill { nodes: vec![node] }, stage: Stage::Injected, before: None });
    }
    p.push(Failer { fault: Fault::Kill { nodes: vec![9] }, stage: Stage::Planned, before: None });
    p.push(Failer {
        fault: Fault::Partition { sides: vec![vec![1], vec![2]], one_way: false, from_clients: false },
        stage: Stage::Propagated,
        before: None,
    });
    assert_eq!(p.faults().count(), 3);
    let net = p.take(Fault::is_network);
    assert_eq!(net.len(), 1);
    let kills: Vec<Fault> = p.take(|_| true).into_iter().map(|f| f.fault).collect();
    assert_eq!(kills, vec![Fault::Kill { nodes: vec![2] }, Fault::Kill { nodes: vec![1] }], "newest first; the planned one is not pending");
    assert_eq!(Fault::Kill { nodes: vec![3] }.describe(), "SIGKILL of node 3");
    assert_eq!(Fault::Partition { sides: vec![vec![1, 2], vec![3]], one_way: false, from_clients: false }.describe(), "partition 1,2 | 3");
}
