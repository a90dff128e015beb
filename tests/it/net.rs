//! Network faults on real namespaces (the netns topology; CI runs as root): real etcd and
//! HAProxy, every node in its own network namespace, partitions as blackhole routes.

use std::time::Duration;

use crate::drill::{drill_ok, phase, results_of, validate};
use crate::helpers::*;

fn ip(args: &[&str]) -> String {
    text(&std::process::Command::new("ip").args(args).output().expect("ip runs").stdout)
}

#[test]
fn a_netns_lab_runs_on_its_own_addresses_and_down_leaves_nothing_behind() {
    let lab = TestLab::netns("etcd", 3);
    let subnet = lab.subnet.as_ref().unwrap().0.trim_end_matches(".0/24").to_string();
    lab.up();
    let s = lab.status();
    assert_eq!(s["network"]["topology"], "netns");
    for (i, n) in s["nodes"].as_array().unwrap().iter().enumerate() {
        assert_eq!(n["host"], format!("{subnet}.{}", 11 + i), "node N at .(10+N): {n}");
        assert_eq!(n["sees_quorum"], true, "{n}");
    }
    // Each node is alone in its namespace, listening on its own address.
    let tag = lab.net_tag();
    let namespaces: Vec<String> = ip(&["netns", "list"]).lines().filter(|l| l.contains(&tag)).map(str::to_string).collect();
    assert_eq!(namespaces.len(), 3, "{namespaces:?}");
    let pid = lab.node(2)["pid"].as_u64().unwrap();
    let own = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_ne!(own, std::fs::read_link("/proc/self/ns/net").unwrap(), "node 2 runs in a namespace of its own");
    // Everyone reaches everyone, probed.
    let net: serde_json::Value = serde_json::from_str(&lab.ok(&["net", "status", "--json"])).unwrap();
    let reach = net["reach"].as_array().unwrap();
    assert_eq!(reach.len(), 3 + 3 * 2, "clients → 3 nodes, and each node → its 2 peers: {net}");
    assert!(reach.iter().all(|r| r["ok"] == true), "{net}");
    // The bank runs through HAProxy to the namespaced nodes.
    lab.ok(&["workload", "init", "bank", "--rows", "50"]);
    let out = lab.ok(&["workload", "run", "bank", "--duration", "2s", "--concurrency", "2"]);
    assert!(out.contains("_elapsed"), "{out}");

    // Right after a heal, a member that was cut off may not be ready yet: a new member is
    // told etcd's membership all the same, not only the members seen ready.
    let leader = wait_for("a leader", Duration::from_secs(10), || lab.status()["cluster"]["leader"].as_u64());
    lab.ok(&["net", "isolate", &leader.to_string()]);
    lab.ok(&["net", "heal"]);
    lab.ok(&["node", "add"]);
    let n4 = lab.node(4);
    assert_eq!((n4["ready"].as_bool(), n4["state"].as_str()), (Some(true), Some("running")), "{n4}");

    let out = lab.ok(&["down"]);
    assert!(out.contains("node 1:"), "{out}");
    assert!(lab.net_leftovers().is_empty(), "down leaves no namespace or interface: {:?}", lab.net_leftovers());
    assert!(!lab.lab_dir().join("net.json").exists(), "nor a network record");
}

#[test]
fn a_daemon_killed_mid_partition_is_replaced_and_heal_and_down_still_clean_up() {
    let lab = TestLab::netns("etcd", 3);
    lab.up();
    lab.ok(&["net", "isolate", "3"]);
    let net: serde_json::Value = serde_json::from_str(&lab.ok(&["net", "status", "--json"])).unwrap();
    assert_eq!(net["sides"], serde_json::json!([[3], [1, 2]]));
    let cut = |from: u64, to: u64| {
        net["reach"].as_array().unwrap().iter().find(|r| r["from"]["node"] == from && r["to"]["node"] == to).cloned().unwrap()
    };
    assert_eq!(cut(3, 1)["ok"], false, "3 cannot reach 1: {net}");
    assert_eq!(cut(1, 3)["ok"], false, "nor 1 reach 3: {net}");
    assert_eq!(cut(1, 2)["ok"], true, "the majority side is whole: {net}");
    assert!(net["reach"].as_array().unwrap().iter().filter(|r| r["from"] == "clients").all(|r| r["ok"] == true), "HAProxy still reaches 3");
    wait_for("node 3 to see no quorum", Duration::from_secs(20), || (lab.node(3)["sees_quorum"] == false).then_some(()));

    let daemon: roachlab::process::ProcIdentity = serde_json::from_value(lab.state()["daemon"].clone()).unwrap();
    roachlab::process::signal(&daemon, nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the daemon gone", Duration::from_secs(10), || (!daemon.is_alive()).then_some(()));
    // A new daemon takes over: the partition is still in force and on record.
    let s = lab.status();
    assert_eq!(s["network"]["sides"], serde_json::json!([[3], [1, 2]]), "{s}");
    assert!(s["nodes"].as_array().unwrap().iter().all(|n| n["pid"].is_u64()), "every node re-adopted: {s}");
    let out = lab.ok(&["net", "heal"]);
    assert!(out.contains("healed (removed 4 cut(s))"), "{out}");
    wait_for("node 3 to see quorum again", Duration::from_secs(30), || (lab.node(3)["sees_quorum"] == true).then_some(()));
    let routes = ip(&["-n", &format!("roachlab-{}-n3", lab.net_tag()), "route", "show"]);
    assert!(!routes.contains("blackhole"), "no cut left: {routes}");

    // Partitioned again, then down: it heals, stops, and removes everything.
    lab.ok(&["net", "partition", "1", "2,3", "--from-clients"]);
    let s = lab.status();
    assert_eq!(s["network"]["cuts"], 5, "4 between the sides, 1 from the clients to the minority: {s}");
    lab.ok(&["down"]);
    assert!(lab.net_leftovers().is_empty(), "{:?}", lab.net_leftovers());
}

#[test]
fn isolating_the_leader_or_a_follower_under_load_loses_nothing() {
    let lab = TestLab::netns("etcd", 3);
    lab.up();
    let leader = wait_for("a leader", Duration::from_secs(10), || lab.status()["cluster"]["leader"].as_u64());
    let out = lab.ok(&["drill", "partition-leader", "--seed", "3", "--baseline", "2s"]);
    let (_, r) = results_of(&out);
    validate(&r);
    assert!(out.contains("the other 2 of 3 members are a majority"), "the theory first:\n{out}");
    let p = phase(&r, "partitioned");
    assert_eq!(
        p["fault"],
        format!("partition {leader} | {}", [1, 2, 3].iter().filter(|n| **n != leader).map(|n| n.to_string()).collect::<Vec<_>>().join(","))
    );
    assert!(p["committed"].as_u64().unwrap() > 0, "the majority side kept writing: {p}");
    assert!(p["new_leader_after_fault_ms"].as_u64().is_some(), "a new leader was elected: {p}");
    let ev = lab.events();
    assert!(
        ev.iter().any(|e| e["kind"] == "leader_changed" && e["to"].as_u64().is_some_and(|t| t != leader)),
        "a leader other than {leader} on the majority side"
    );
    assert!(
        ev.iter().any(|e| e["kind"] == "node_quorum" && e["node"] == leader && e["sees_quorum"] == false),
        "the isolated member lost quorum"
    );
    assert!(r["check"]["violations"].as_array().unwrap().is_empty(), "{}", r["check"]);
    assert!(r["expectations"].as_array().unwrap().iter().all(|e| e["met"] == true), "{}", r["expectations"]);
    // Healed: every member converged.
    let s = lab.status();
    assert!(s["nodes"].as_array().unwrap().iter().all(|n| n["sees_quorum"] == true && n["ready"] == true), "{s}");
    assert_eq!(s["network"]["cuts"], 0);

    // Every expectation but the timing goals must hold (see `drill_ok`).
    let out = drill_ok(&lab, &["drill", "partition-minority", "--seed", "3", "--baseline", "2s"]);
    let (_, r) = results_of(&out);
    validate(&r);
    assert!(phase(&r, "partitioned")["committed"].as_u64().unwrap() > 0);
    assert!(r["check"]["violations"].as_array().unwrap().is_empty(), "{}", r["check"]);
    assert!(r["story"].as_array().unwrap().iter().any(|s| s.as_str().unwrap().starts_with("partitioned — partition ")), "{}", r["story"]);

    // Interrupted mid-partition (Ctrl-C): the restore heals the network before the report.
    let mut child =
        lab.cmd(&["drill", "partition-minority", "--seed", "4", "--baseline", "1s"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    wait_for("the partition in force", Duration::from_secs(30), || (lab.status()["network"]["cuts"].as_u64() > Some(0)).then_some(()));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let code = wait_for("the drill to exit", Duration::from_secs(90), || child.try_wait().unwrap()).code();
    assert_eq!(code, Some(130), "interrupted by SIGINT");
    let s = lab.status();
    assert_eq!(s["network"]["cuts"], 0, "healed by the restore: {s}");
    assert!(lab.net_leftovers().len() >= 3, "the lab's namespaces stay: only the fault is undone");
}

#[test]
fn up_names_a_bridge_that_drops_packets_and_how_to_allow_them() {
    let lab = TestLab::netns("etcd", 3);
    lab.up();
    lab.ok(&["node", "kill", "1"]);
    // As a firewall dropping bridged traffic would: node 1's packets to node 2 vanish. (Added
    // by hand, outside the lab's record; removed by hand below.)
    let ns1 = format!("roachlab-{}-n1", lab.net_tag());
    let node2 = lab.node(2)["host"].as_str().unwrap().to_string();
    ip(&["-n", &ns1, "route", "add", "blackhole", &format!("{node2}/32")]);
    let cfg = lab.config.display().to_string();
    let out = lab.run(&["up", "--config", &cfg]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("packets do not cross the lab's bridge") && err.contains("iptables -I FORWARD"), "{err}");
    ip(&["-n", &ns1, "route", "del", "blackhole", &format!("{node2}/32")]);
    // Node 1 was started by the refused `up` and kept: with the path open it becomes ready.
    lab.up();
    wait_for("node 1 ready", Duration::from_secs(30), || (lab.node(1)["ready"] == true).then_some(()));
}

#[test]
fn a_split_brain_of_four_commits_nothing_until_it_heals() {
    let lab = TestLab::netns("etcd", 4);
    lab.up();
    let out = lab.ok(&["drill", "split-brain", "--seed", "1", "--baseline", "2s"]);
    let (_, r) = results_of(&out);
    validate(&r);
    assert!(out.contains("Split the 4 members 1,2 | 3,4"), "{out}");
    let split = phase(&r, "split");
    assert_eq!(split["committed"], 0, "no side has 3 of 4: nothing commits: {split}");
    assert!(phase(&r, "healed")["committed"].as_u64().unwrap() > 0);
    assert!(r["check"]["violations"].as_array().unwrap().is_empty(), "{}", r["check"]);
    assert!(r["expectations"].as_array().unwrap().iter().all(|e| e["met"] == true), "{}", r["expectations"]);
}

#[test]
fn without_the_privileges_a_netns_lab_is_refused_before_anything_starts() {
    if which::which("setpriv").is_err() {
        skipped("no setpriv", "without_the_privileges_a_netns_lab_is_refused_before_anything_starts");
        return;
    }
    let lab = TestLab::netns("etcd", 3);
    let exe = assert_cmd::cargo::cargo_bin("roachlab");
    let cfg = lab.config.display().to_string();
    let dir = lab.lab_dir().display().to_string();
    // Root without CAP_NET_ADMIN and CAP_SYS_ADMIN (dropped from the bounding set).
    let out = std::process::Command::new("setpriv")
        .args(["--bounding-set", "-net_admin,-sys_admin", "--inh-caps", "-net_admin,-sys_admin"])
        .arg(exe)
        .args(["--dir", &dir, "up", "--config", &cfg])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("needs CAP_NET_ADMIN and CAP_SYS_ADMIN") && err.contains("sudo roachlab up --topology netns"), "{err}");
    assert!(!lab.lab_dir().join("state.json").exists(), "nothing was created");
    assert!(lab.net_leftovers().is_empty());
}

#[test]
fn network_faults_are_refused_clearly_where_they_cannot_work() {
    // Loopback: no namespaces to cut.
    let plain = TestLab::new("etcd", 3);
    plain.up();
    let out = plain.run(&["net", "isolate", "2"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("network faults need the netns topology"), "{}", text(&out.stderr));
    drop(plain);

    let lab = TestLab::netns("etcd", 3);
    lab.up();
    let out = lab.run(&["net", "partition", "1", "1,2"]);
    assert!(text(&out.stderr).contains("node 1 is on two sides"), "{}", text(&out.stderr));
    let out = lab.run(&["net", "isolate", "9"]);
    assert!(text(&out.stderr).contains("unknown node 9"), "{}", text(&out.stderr));
    // Delay needs the kernel's netem qdisc: refused naming it where it is missing (as on this
    // project's CI), applied and healed where it exists. Never silently nothing.
    let out = lab.run(&["net", "delay", "1", "50ms"]);
    if out.status.success() {
        assert_eq!(lab.status()["network"]["shaped"], serde_json::json!([1]));
        lab.ok(&["net", "heal"]);
        assert_eq!(lab.status()["network"]["shaped"], serde_json::json!([]));
    } else {
        assert!(text(&out.stderr).contains("sch_netem"), "{}", text(&out.stderr));
        assert_eq!(lab.status()["network"]["shaped"], serde_json::json!([]), "nothing recorded");
    }
}

/// `down --wipe` of a lab whose daemon was SIGKILLed and whose state files are gone finds every
/// process, namespace, link and cgroup of the lab by its command line and names, removes them
/// before the directory, and says `wiped` only then; a second wipe, and a directory that never
/// held a lab, say there is none.
#[test]
fn a_wipe_without_state_files_leaves_nothing_of_the_lab() {
    let lab = TestLab::netns("etcd", 3);
    lab.up();
    lab.ok(&["node", "throttle", "2", "--cpu", "50%"]);
    let procs = lab.recorded_processes();
    assert!(procs.len() >= 5, "{procs:?}");
    let daemon: roachlab::process::ProcIdentity = serde_json::from_value(lab.state()["daemon"].clone()).unwrap();
    roachlab::process::signal(&daemon, nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the daemon gone", Duration::from_secs(10), || (!daemon.is_alive()).then_some(()));
    std::fs::remove_file(lab.lab_dir().join("state.json")).unwrap();
    let _ = std::fs::remove_file(lab.lab_dir().join("state.json.prev"));
    let out = lab.ok(&["down", "--wipe"]);
    assert!(out.contains("found by its command line") && out.contains("wiped"), "{out}");
    assert!(procs.iter().all(|p| !p.is_alive()), "every process of the lab is gone: {procs:?}");
    assert!(lab.net_leftovers().is_empty(), "{:?}", lab.net_leftovers());
    assert!(roachlab::cgroup::lab_groups(&lab.net_tag()).is_empty(), "the throttled node's cgroup is gone");
    assert!(!lab.lab_dir().exists());
    let again = lab.ok(&["down", "--wipe"]);
    assert!(again.contains("no lab in") && again.contains("nothing to wipe"), "{again}");
}
