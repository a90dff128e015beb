//! Faults beyond death and monitoring on a real CockroachDB (v20.1.5 in CI), scenarios of
//! [`crate::cockroach`]'s one end-to-end test: a zone's loss on `configs/cockroach-5-localities.toml`, a paused
//! leaseholder, a CPU quota, the restart policy, and Prometheus/Alertmanager on the nodes'
//! `/_status/vars`.

use std::time::Duration;

use serde_json::Value;

use crate::drill::{drill_ok, phase, results_of, validate};
use crate::helpers::*;

/// The `[cockroach]` section of `configs/cockroach-5-localities.toml`, as shipped.
fn five_localities_section() -> String {
    let text = include_str!("../../configs/cockroach-5-localities.toml");
    text[text.find("[cockroach]").expect("a [cockroach] section")..].to_string()
}

pub(crate) fn zone_failure_on_five_nodes_over_three_zones() {
    let lab = TestLab::new("cockroach", 5);
    lab.append_config(&five_localities_section());
    lab.up();
    // The localities reach CockroachDB as --locality: its own node list says so.
    let (code, body) = http_get(lab.ports.http_base, "/_status/nodes").expect("node 1's admin HTTP");
    assert_eq!(code, 200, "{body}");
    let nodes: Value = serde_json::from_str(&body).unwrap();
    // Our node N listens on base+N−1; CockroachDB numbers nodes in the order they joined.
    let zone_of = |id: u16| -> String {
        let addr = format!("127.0.0.1:{}", lab.ports.base + id - 1);
        let n = nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["desc"]["address"]["addressField"] == addr.as_str())
            .unwrap_or_else(|| panic!("node {id} at {addr}: {nodes}"));
        let tiers = n["desc"]["locality"]["tiers"].as_array().unwrap();
        tiers.iter().find(|t| t["key"] == "zone").map(|t| t["value"].as_str().unwrap().to_string()).unwrap()
    };
    assert_eq!((1..=5).map(zone_of).collect::<Vec<_>>(), ["a", "b", "c", "a", "b"]);

    let out = drill_ok(&lab, &["drill", "zone-failure", "--seed", "1", "--baseline", "5s"]);
    let (_, r) = results_of(&out);
    validate(&r);
    assert!(out.contains("5 members in zones zone=a(1,4), zone=b(2,5), zone=c(3)"), "theory from the topology:\n{out}");
    assert!(out.contains("losing one zone of three leaves every range 2 of 3 replicas"), "{out}");
    // The baseline lasts until the placement is what the theory presumes: one replica per zone.
    assert!(out.contains("the placement survives the loss of every node in zone=a: after"), "{out}");
    // CockroachDB spreads each range's replicas over the zones: the prediction from the
    // placement says zone a's loss leaves every range a majority, and b's as well loses them.
    assert!(out.contains("prediction: with node(s) 1, 4 down, 0 of"), "{out}");
    assert!(out.contains("prediction: with node(s) 1, 2, 4, 5 down"), "{out}");
    assert!(phase(&r, "one-zone-down")["committed"].as_u64().unwrap() > 0, "two zones of three keep a majority of every range");
    assert_eq!(phase(&r, "two-zones-down")["committed"], 0, "one zone of three: no range keeps a majority");
    assert!(phase(&r, "restored")["committed"].as_u64().unwrap() > 0);
    assert!(r["check"]["violations"].as_array().unwrap().is_empty(), "{}", r["check"]);
}

pub(crate) fn paused_leaseholder_throttle_and_self_healing() {
    let lab = TestLab::new("cockroach", 3);
    let cfg = lab.config.display().to_string();
    lab.ok(&["up", "--config", &cfg, "--restart", "on-failure"]);

    // The leaseholder of the bank's first row paused: its leases move once its liveness
    // record expires, and writes go on; resumed, it rejoins.
    let out = drill_ok(&lab, &["drill", "pause-leader", "--seed", "1", "--baseline", "5s"]);
    let (_, r) = results_of(&out);
    validate(&r);
    assert!(out.contains("pause (SIGSTOP) of node"), "{out}");
    assert!(out.contains("leader != the same node: after"), "another node took the lease: {out}");
    assert!(phase(&r, "paused")["committed"].as_u64().unwrap() > 0);
    assert!(r["check"]["violations"].as_array().unwrap().is_empty());
    assert!(lab.status()["nodes"].as_array().unwrap().iter().all(|n| n["state"] == "running"));

    // A CPU quota on the leaseholder: it uses about its share, and the bank goes on.
    let leader: u64 = serde_json::from_str::<Value>(&lab.ok(&["status", "--json"])).unwrap()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|n| n["leaseholders"].as_u64().unwrap_or(0))
        .map(|n| n["id"].as_u64().unwrap())
        .unwrap();
    let pid = lab.node(leader)["pid"].as_u64().unwrap();
    let mut load = lab.start_bank_run(&["--duration", "0", "--concurrency", "8"]);
    lab.ok(&["node", "throttle", &leader.to_string(), "--cpu", "10%"]);
    assert_eq!(lab.node(leader)["cpu_quota_pct"], 10);
    let during = crate::faults::cpu_pct(pid, Duration::from_secs(4));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(load.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    load.wait().unwrap();
    assert!(during <= 14.0, "node {leader} used {during:.1}% of a core under a 10% quota");
    lab.ok(&["node", "unthrottle", &leader.to_string()]);
    assert!(lab.node(leader)["cpu_quota_pct"].is_null());
    let check = lab.ok(&["workload", "check", "bank"]);
    assert!(check.contains("check passed"), "{check}");

    // The restart policy brings a SIGKILLed node back; compared with a restart by hand.
    let out = drill_ok(&lab, &["drill", "self-healing", "--seed", "1", "--baseline", "3s"]);
    let (_, r) = results_of(&out);
    validate(&r);
    assert!(phase(&r, "automatic")["ready_again_after_fault_ms"].as_u64().is_some(), "{}", phase(&r, "automatic"));
    assert!(phase(&r, "manual")["ready_again_after_fault_ms"].as_u64().is_some());
    let ev = lab.events();
    assert!(ev.iter().any(|e| e["kind"] == "node_restart_scheduled"), "the policy acted");
}

fn prometheus_get(port: u16, path: &str) -> Value {
    let (code, body) = http_get(port, path).expect("prometheus answers");
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn alert_event(events: &[Value], kind: &str, alert: &str, node: Option<&str>) -> Option<Value> {
    events.iter().find(|e| e["kind"] == kind && e["alert"] == alert && node.is_none_or(|n| e["labels"]["node"] == n)).cloned()
}

pub(crate) fn monitoring_fires_and_resolves_on_live_nodes() {
    let lab = TestLab::new("cockroach", 3);
    // Short `for:` so the test waits seconds.
    lab.append_config("[monitoring.for]\nNodeDown = \"4s\"\nUnderreplicatedRanges = \"4s\"\n");
    let cfg = lab.config.display().to_string();
    let out = lab.ok(&["up", "--config", &cfg, "--monitoring"]);
    assert!(out.contains("prometheus: running") && out.contains("alertmanager: running"), "{out}");

    // Every rule loads and is healthy; every target is up: 3 nodes, HAProxy, Prometheus,
    // Alertmanager.
    let m = wait_for("every target up", Duration::from_secs(60), || {
        let m = lab.status()["monitoring"].clone();
        (m["targets_up"].as_u64() == Some(6) && m["targets_total"].as_u64() == Some(6)).then_some(m)
    });
    let rules = prometheus_get(lab.ports.prometheus, "/api/v1/rules");
    let rules: Vec<&Value> = rules["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert_eq!(rules.len() as u64, m["rules_loaded"].as_u64().unwrap(), "{m}");
    assert!(rules.len() >= 8, "{rules:?}");
    assert!(rules.iter().all(|r| r["health"] == "ok"), "every rule evaluates: {rules:?}");
    let targets = prometheus_get(lab.ports.prometheus, "/api/v1/targets?state=active");
    let crdb: Vec<&Value> =
        targets["data"]["activeTargets"].as_array().unwrap().iter().filter(|t| t["labels"]["job"] == "cockroachdb").collect();
    assert_eq!(crdb.len(), 3, "{targets}");
    assert!(crdb.iter().all(|t| t["health"] == "up" && t["scrapeUrl"].as_str().unwrap().ends_with("/_status/vars")), "{crdb:?}");
    // A fresh cluster is under-replicated for tens of seconds: wait until it is not, so the
    // alert below is the kill's.
    wait_for("no range under-replicated", Duration::from_secs(180), || {
        (lab.status()["cluster"]["ranges_underreplicated"] == 0).then_some(())
    });
    wait_for("UnderreplicatedRanges not firing", Duration::from_secs(60), || {
        let firing = lab.status()["monitoring"]["firing"].clone();
        (!firing.to_string().contains("UnderreplicatedRanges")).then_some(())
    });

    // SIGKILL of node 3: NodeDown{node="3"} fires, and once its liveness record expires
    // every range counts it missing: UnderreplicatedRanges fires. The restart resolves both.
    lab.ok(&["node", "kill", "3"]);
    wait_for("NodeDown firing for node 3", Duration::from_secs(60), || alert_event(&lab.events(), "alert_firing", "NodeDown", Some("3")));
    wait_for("UnderreplicatedRanges firing", Duration::from_secs(90), || {
        alert_event(&lab.events(), "alert_firing", "UnderreplicatedRanges", None)
    });
    lab.ok(&["node", "start", "3"]);
    let resolved =
        wait_for("NodeDown resolved", Duration::from_secs(60), || alert_event(&lab.events(), "alert_resolved", "NodeDown", Some("3")));
    assert!(resolved["ends_at"].as_str().unwrap() > resolved["starts_at"].as_str().unwrap(), "{resolved}");
    wait_for("UnderreplicatedRanges resolved once replication recovers", Duration::from_secs(120), || {
        alert_event(&lab.events(), "alert_resolved", "UnderreplicatedRanges", None)
    });

    // A monitored drill times the alerts its faults raised: a SIGKILL left down past
    // NodeDown's `for:`.
    let file = crate::monitoring::node_down_drill(&lab, 2);
    let out = drill_ok(&lab, &["drill", "run", file.to_str().unwrap(), "--baseline", "3s"]);
    assert!(out.contains("met:     kill: alert_fired_after_ms(NodeDown) <= 30000"), "{out}");
    let (_, r) = results_of(&out);
    validate(&r);
    assert_eq!(r["monitored"], true);
    let node_down = r["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"] == "NodeDown" && a["labels"]["node"] == "2" && a["phase"] == "kill")
        .unwrap_or_else(|| panic!("NodeDown timed in the kill phase: {}", r["alerts"]))
        .clone();
    assert!(node_down["fired_after_ms"].as_u64().unwrap() >= 4000, "not before its for: {node_down}");
    assert!(node_down["resolved_after_ms"].as_u64().unwrap() > node_down["fired_after_ms"].as_u64().unwrap(), "{node_down}");
    assert!(out.contains("alert: NodeDown{node=\"2\"}: fired"), "{out}");
}
