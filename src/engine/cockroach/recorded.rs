//! The parsers against what the OSS v20.1.5 build the suite runs on said
//! (`tests/fixtures/cockroach-v20.1.5-oss/`, recorded by `scripts/record-cockroach-fixtures`;
//! its README says what produced each file): readiness, liveness, node IDs, metrics and the
//! names the alert rules read, `node drain` and `node decommission` output, the replica
//! placement behind predictions and the row tuple behind the leaseholder question.

use std::collections::HashSet;

use super::lease::{for_row_tuple, Column};
use super::parse::tests::http_body;
use super::parse::{decommission_replicas, drain_summary, init_outcome, judge_readiness, node_ids_from_status, parse_liveness, parse_vars};
use super::quorum::verdict;
use super::version::{facts_for, Version};
use crate::engine::Member;
use crate::node::NodePorts;
use crate::watch::{Liveness, Writes};

fn recorded(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cockroach-v20.1.5-oss").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The rows of a recorded `cockroach sql --format=csv` answer, header dropped.
fn csv_rows(path: &str) -> Vec<Vec<String>> {
    let text = recorded(path);
    let mut r = csv::Reader::from_reader(text.as_bytes());
    r.records().map(|rec| rec.unwrap().iter().map(str::to_string).collect()).collect()
}

/// `{1,2,3}` → `[1, 2, 3]`.
fn int_array(s: &str) -> Vec<u64> {
    s.trim_matches(|c| c == '{' || c == '}').split(',').filter(|v| !v.is_empty()).map(|v| v.parse().unwrap()).collect()
}

/// The recording's nodes: RPC on 41000+N−1, HTTP on 41010+N−1 (the script's port block).
fn members(n: u32) -> Vec<Member> {
    (1..=n)
        .map(|id| Member { id, ports: NodePorts::loopback(41000 + id as u16 - 1, 41010 + id as u16 - 1, None), engine_id: None })
        .collect()
}

#[test]
fn the_recording_is_of_the_oss_build_the_suite_runs() {
    let v = recorded("version.txt");
    assert_eq!(Version::from_version_output(&v), Some(Version::new(20, 1, 5)));
    assert!(v.contains("Distribution: OSS"), "{v}");
}

#[test]
fn readiness_before_init_healthy_and_drained() {
    let (s, b) = http_body(&recorded("health-ready-before-init.txt"));
    assert_eq!((s, judge_readiness(s, &b).detail.as_deref()), (503, Some("node is waiting for cluster initialization")));
    let (s, b) = http_body(&recorded("01-healthy/health-ready.txt"));
    assert!(judge_readiness(s, &b).ready);
    let (s, b) = http_body(&recorded("02-drain/health-ready-node3.txt"));
    assert_eq!(judge_readiness(s, &b).detail.as_deref(), Some("node is shutting down"));
    assert_eq!(init_outcome(true, &recorded("01-healthy/init-output.txt"), "").unwrap(), "Cluster successfully initialized");
}

#[test]
fn liveness_healthy_drained_and_decommissioning() {
    let l = parse_liveness(&recorded("01-healthy/liveness.json")).unwrap();
    assert!(l.len() == 3 && l.values().all(|s| *s == Liveness::Live), "{l:?}");
    // v20.1: a drained node is UNAVAILABLE (2) with draining=true, read as DRAINING.
    let l = parse_liveness(&recorded("02-drain/liveness.json")).unwrap();
    assert_eq!((l[&1], l[&2], l[&3]), (Liveness::Live, Liveness::Live, Liveness::Draining));
    let l = parse_liveness(&recorded("03-decommission/liveness.json")).unwrap();
    assert_eq!(l[&4], Liveness::Decommissioning, "{l:?}");
}

#[test]
fn node_ids_map_by_rpc_address() {
    let mut ids = node_ids_from_status(&recorded("01-healthy/nodes.json"), &members(3)).unwrap();
    ids.sort_unstable();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|(ours, crdb)| (1..=3).contains(ours) && (1..=3).contains(crdb)), "{ids:?}");
    let distinct: HashSet<u64> = ids.iter().map(|(_, c)| *c).collect();
    assert_eq!(distinct.len(), 3);
}

#[test]
fn metrics_sum_over_nodes_and_every_name_the_rules_read_is_served() {
    let nodes: Vec<_> = (1..=3).map(|n| parse_vars(&recorded(&format!("01-healthy/vars-node{n}.prom"))).unwrap()).collect();
    let ranges: u64 = nodes.iter().map(|v| v.ranges.unwrap_or(0)).sum();
    let placement = csv_rows("01-healthy/placement.csv");
    assert_eq!(ranges, placement.len() as u64, "each range counted by one store, summed over nodes");
    assert!(nodes.iter().all(|v| v.ranges_underreplicated == Some(0) || v.ranges_underreplicated.is_none()));
    assert!(nodes.iter().all(|v| v.replicas == Some(placement.len() as u64)), "3 nodes, replication factor 3: every node has every range");
    assert!(nodes.iter().all(|v| v.live_nodes == Some(3)));
    // configs/monitoring/cockroach.rules.yml reads these; the server must serve them.
    let text = recorded("01-healthy/vars-node1.prom");
    let names: HashSet<&str> = text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
    for name in [
        "sys_uptime",
        "range_raftleadertransfers",
        "liveness_livenodes",
        "ranges_underreplicated",
        "ranges_unavailable",
        "clock_offset_meannanos",
    ] {
        assert!(names.contains(name), "{name} is not in /_status/vars of v20.1.5");
        assert!(include_str!("../../../configs/monitoring/cockroach.rules.yml").contains(name));
    }
}

#[test]
fn drain_progress_is_on_stderr_and_decommission_ends_at_zero() {
    let out = recorded("02-drain/node-drain-output.txt");
    let err = recorded("02-drain/node-drain-stderr.txt");
    assert_eq!(out.trim(), "ok", "stdout has only the verdict");
    assert_eq!(drain_summary(&out), "leases and Raft leadership handed over");
    assert_eq!(drain_summary(&format!("{err}\n{out}")), "leases and Raft leadership handed over (remaining 17 → 0)");
    let v20_1 = facts_for(Version::new(20, 1, 5)).facts().unwrap();
    let (first, last) = decommission_replicas(&recorded("03-decommission/decommission-output.txt"), v20_1.decommission_columns, 4).unwrap();
    assert!(first > 0 && last == 0, "{first} → {last}");
    assert_eq!(recorded("03-decommission/decommission-exit.txt").trim(), "exit=0");
}

#[test]
fn predictions_from_the_recorded_placement() {
    let cluster: Vec<(u64, Vec<u64>)> =
        csv_rows("01-healthy/placement.csv").iter().map(|r| (r[0].parse().unwrap(), int_array(&r[1]))).collect();
    let bank: Vec<(u64, Vec<u64>)> =
        csv_rows("01-healthy/show-ranges-bank.csv").iter().map(|r| (r[0].parse().unwrap(), int_array(&r[1]))).collect();
    assert_eq!(bank.len(), 4, "split at 25, 50, 75");
    let tables = vec![bank, Vec::new()];
    let one: HashSet<u64> = [3].into();
    let p = verdict(&cluster, Some(&tables), &one, &[3]);
    assert_eq!((p.groups_lost, p.writes), (0, Writes::Continue), "{}", p.text);
    let two: HashSet<u64> = [2, 3].into();
    let p = verdict(&cluster, Some(&tables), &two, &[2, 3]);
    assert_eq!((p.groups_lost, p.writes), (cluster.len() as u64, Writes::Stop), "{}", p.text);
}

#[test]
fn the_row_tuple_v20_1_accepted_is_the_one_roachlab_builds() {
    let columns: Vec<Column> = csv_rows("01-healthy/show-columns-bank.csv")
        .into_iter()
        .map(|r| Column { name: r[0].clone(), data_type: r[1].clone(), nullable: r[2] == "true" })
        .collect();
    let key = &csv_rows("01-healthy/show-index-bank.csv")[0][0];
    let v20_1 = facts_for(Version::new(20, 1, 5)).facts().unwrap();
    // The script asked `FOR ROW (30, 0::INT8, NULL)` and got a leaseholder; `(30)` was refused.
    assert_eq!(for_row_tuple(v20_1, &columns, key, 30).unwrap(), "(30, 0::INT8, NULL)");
    assert_eq!(csv_rows("01-healthy/show-range-for-row.csv")[0][0].parse::<u64>().map(|n| (1..=3).contains(&n)), Ok(true));
    assert!(recorded("01-healthy/show-range-for-row-key-only.txt").contains("number of values in row must equal number of columns"));
    // The quorum probe's write, and the `options` parameter v20.1 ignores.
    assert_eq!(recorded("01-healthy/quorum-probe-upsert.txt").trim(), "INSERT 1");
    assert_eq!(recorded("01-healthy/statement-timeout-via-options.txt").trim(), "0");
}
