//! Graceful stops drain: out of HAProxy, sessions gone, leadership handed off, then SIGTERM —
//! and cost clients nothing. Real etcd, real HAProxy, the bank workload through HAProxy.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

/// The Raft leader's node id, from `status --json`.
fn leader(lab: &TestLab) -> u64 {
    wait_for("a leader", Duration::from_secs(20), || lab.status()["cluster"]["leader"].as_u64())
}

/// A command to the lab's HAProxy runtime socket.
fn haproxy(lab: &TestLab, command: &str) -> String {
    let socket = roachlab::lab::Lab::new(lab.lab_dir()).unwrap().haproxy_socket();
    let mut s = UnixStream::connect(socket).expect("haproxy socket");
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `srv_admin_state` of `proxy/server` from `show servers state` (HAProxy 2.6 management
/// guide: the 7th field; bit 0x08 is a forced DRAIN).
fn admin_state(lab: &TestLab, proxy: &str, server: &str) -> u64 {
    let out = haproxy(lab, &format!("show servers state {proxy}"));
    let line = out.lines().find(|l| l.split_whitespace().nth(3) == Some(server)).unwrap_or_else(|| panic!("{server} in {out}"));
    line.split_whitespace().nth(6).unwrap().parse().unwrap()
}

/// Holds client sessions on every server (HAProxy balances new connections round robin), so
/// a `node stop 2` waits in its `sessions` stage; starts that stop (stdout and stderr piped)
/// and returns once HAProxy has node 2 in DRAIN. Drop the sessions to let it go on.
fn start_held_stop(lab: &TestLab) -> (Vec<std::net::TcpStream>, std::process::Child) {
    let held: Vec<std::net::TcpStream> = (0..6).map(|_| std::net::TcpStream::connect(("127.0.0.1", lab.ports.frontend)).unwrap()).collect();
    let stop = lab.cmd(&["node", "stop", "2"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_for("node 2 drained", Duration::from_secs(10), || (admin_state(lab, "etcd", "node2") & 0x08 != 0).then_some(()));
    (held, stop)
}

/// The run's final counts, after it ended by itself.
fn finish(child: std::process::Child) -> Value {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let last = text(&out.stdout).lines().last().map(|l| serde_json::from_str::<Value>(l).unwrap()).unwrap();
    last["summary"]["counts"].clone()
}

#[test]
fn graceful_stops_of_the_leader_and_a_follower_cost_clients_nothing_five_times_each() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    lab.ok(&["workload", "init", "bank", "--rows", "200"]);
    let run = lab.start_bank_run(&["--concurrency", "8", "--duration", "90s"]);
    let started = std::time::Instant::now();
    // Alternate between the leader and a follower as `status` sees them; what a stop was is
    // judged from its own output (leadership may have moved since the last poll), until each
    // kind has happened five times.
    let mut stopped_leaders = Vec::new();
    let mut followers = 0;
    let mut round = 0;
    while (stopped_leaders.len() < 5 || followers < 5) && round < 16 {
        round += 1;
        let l = leader(&lab);
        let want_leader = stopped_leaders.len() < 5 && (followers >= 5 || round % 2 == 1);
        let node = if want_leader { l } else { (1..=3).find(|n| *n != l).unwrap() };
        let out = lab.ok(&["node", "stop", &node.to_string()]);
        // Every stage, as it happened; HAProxy's own word for the DRAIN.
        assert!(out.contains(&format!("node {node}: drain stage haproxy at +")), "round {round}: {out}");
        assert!(out.contains("HAProxy: etcd DRAIN, admin-ui DRAIN"), "round {round}: {out}");
        assert!(out.contains("drain stage sessions"), "{out}");
        if out.contains(&format!("leadership moved from node {node} to node")) {
            stopped_leaders.push(node);
        } else {
            assert!(out.contains("is a follower"), "round {round}: either a hand-off or a follower: {out}");
            followers += 1;
        }
        assert!(out.contains("exited (SIGTERM)"), "{out}");
        // Back in service only once ready: UP in HAProxy, admin state cleared.
        lab.ok(&["node", "start", &node.to_string()]);
        wait_for("the server back in service", Duration::from_secs(10), || {
            (admin_state(&lab, "etcd", &format!("node{node}")) & 0x08 == 0).then_some(())
        });
    }
    assert!(stopped_leaders.len() >= 5 && followers >= 5, "5 of each: {} leaders, {followers} followers", stopped_leaders.len());
    assert!(started.elapsed() < Duration::from_secs(85), "every stop happened under load (took {:?})", started.elapsed());
    let counts = finish(run);
    assert!(counts["ok"].as_u64().unwrap() > 1000, "{counts}");
    assert_eq!(counts["fail"], 0, "a drained node costs no failed transfer: {counts}");
    assert_eq!(counts["ambiguous"], 0, "and no unknown outcome: {counts}");
    let check = lab.run(&["workload", "check", "bank"]);
    assert!(check.status.success(), "{}", text(&check.stdout));

    // The timeline, for each stop of a leader: DRAIN, then leadership moved, then SIGTERM.
    let ev = lab.events();
    let moves: Vec<usize> = (0..ev.len())
        .filter(|&i| ev[i]["kind"] == "drain_stage" && ev[i]["detail"].as_str().unwrap_or("").starts_with("leadership moved from node"))
        .collect();
    assert_eq!(moves.len(), stopped_leaders.len(), "one leadership move per leader stop");
    for (&i, node) in moves.iter().zip(&stopped_leaders) {
        assert_eq!(ev[i]["node"], *node);
        let this_stop = |e: &Value| e["node"] == *node;
        let drained =
            ev[..i].iter().rposition(|e| this_stop(e) && e["kind"] == "drain_stage" && e["stage"] == "haproxy").expect("DRAIN first");
        assert!(!ev[drained..i].iter().any(|e| this_stop(e) && e["kind"] == "node_signalled"), "no signal between DRAIN and the hand-off");
        let signal = ev[i..].iter().find(|e| this_stop(e) && e["kind"] == "node_signalled").expect("a signal after the hand-off");
        assert_eq!(signal["signal"], "SIGTERM");
    }
}

/// A stop (its server left in DRAIN) and a start within one poll interval: `node start`
/// returns only once HAProxy serves the new process — never on what it said of the old one.
/// (Seen in CI 2 of 3 runs, 2 of 15 here under load: `start` ended on a stale UP, the
/// undrain not yet observed, and `status` then said DRAIN.)
#[test]
fn a_start_right_after_a_graceful_stop_ends_with_its_server_up() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    for round in 0..8 {
        lab.ok(&["node", "stop", "3"]);
        lab.ok(&["node", "start", "3"]);
        let n = lab.node(3);
        assert_eq!((n["ready"].as_bool(), n["backend"].as_str()), (Some(true), Some("UP")), "round {round}: {n}");
        assert_eq!(admin_state(&lab, "etcd", "node3") & 0x08, 0, "round {round}: HAProxy still drains node 3");
    }
    lab.ok(&["down"]);
}

#[test]
fn a_reload_keeps_a_drained_server_drained_until_its_node_is_ready_again() {
    // Four members, so one can leave while node 3 is stopped (etcd refuses to *add* a member
    // while any is unreachable: strict reconfiguration check).
    let lab = TestLab::new("etcd", 4);
    lab.up();
    lab.ok(&["node", "stop", "3"]);
    assert_eq!(admin_state(&lab, "etcd", "node3") & 0x08, 0x08, "node 3 is drained after its stop");
    // A membership change reloads HAProxy: the new worker loads the saved server states.
    lab.ok(&["node", "decommission", "4"]);
    assert!(!haproxy(&lab, "show servers state etcd").contains("node4"), "the reload happened");
    assert_eq!(admin_state(&lab, "etcd", "node3") & 0x08, 0x08, "still drained after the reload");
    assert_eq!(admin_state(&lab, "admin-ui", "node3") & 0x08, 0x08);
    // Started without waiting: the poller puts it back once the node is ready, not before.
    lab.ok(&["node", "start", "3", "--no-wait"]);
    wait_for("node 3 UP again", Duration::from_secs(20), || {
        let n = lab.node(3);
        (n["ready"] == true && n["backend"].as_str().is_some_and(|b| b.starts_with("UP"))).then_some(())
    });
    assert_eq!(admin_state(&lab, "etcd", "node3") & 0x08, 0);
    let ready = lab.events().into_iter().any(|e| e["kind"] == "drain_stage" && e["node"] == 3 && e["stage"] == "ready");
    assert!(ready, "the return to service is in the timeline");
}

#[test]
fn stop_refuses_bad_input_and_a_second_stop_and_falls_back_without_the_runtime_api() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let out = lab.run(&["node", "stop", "9"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("node 9"), "{}", text(&out.stderr));

    // The stop of node 2 waits for held sessions (timeouts.drain_sessions) while a second comes.
    let (held, first) = start_held_stop(&lab);
    let second = lab.run(&["node", "stop", "2"]);
    assert!(!second.status.success());
    assert!(text(&second.stderr).contains("already being stopped"), "{}", text(&second.stderr));
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success());
    let out = text(&out.stdout);
    assert!(out.contains("client session(s) still open after 5000 ms"), "{out}");
    assert_eq!(out.matches("sent SIGTERM").count(), 1, "signalled once: {out}");
    drop(held);
    let again = lab.run(&["node", "stop", "2"]);
    assert!(text(&again.stderr).contains("is not running"), "{}", text(&again.stderr));

    // Without HAProxy's runtime API: a warning, and SIGTERM anyway.
    let socket = roachlab::lab::Lab::new(lab.lab_dir()).unwrap().haproxy_socket();
    std::fs::remove_file(&socket).unwrap();
    let out = lab.ok(&["node", "stop", "3"]);
    assert!(out.contains("HAProxy's runtime API did not take the drain"), "{out}");
    assert!(out.contains("sent SIGTERM"), "{out}");
}

/// Issue 10: `down --fast` is the emergency stop: it pre-empts a drain in progress, and says so.
#[test]
fn down_fast_pre_empts_a_drain_in_progress() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let all = lab.recorded_processes();
    // Held client sessions keep the stop of node 2 waiting in its `sessions` stage.
    let (held, stop) = start_held_stop(&lab);
    let out = lab.ok(&["down", "--fast"]);
    assert!(out.contains("pre-empting the request in progress"), "{out}");
    wait_for("every process of the lab gone", Duration::from_secs(10), || all.iter().all(|p| !p.is_alive()).then_some(()));
    let _ = stop.wait_with_output();
    drop(held);
}

/// Issue 10: Ctrl-C in `node stop` stops waiting, says what goes on and offers `node kill`;
/// the stop itself carries on in the daemon.
#[test]
fn ctrl_c_stops_waiting_for_a_stop_and_offers_a_kill() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let (held, stop) = start_held_stop(&lab);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(stop.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = stop.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let err = text(&out.stderr);
    assert!(err.contains("stopped waiting (Ctrl-C); the daemon carries on") && err.contains("`roachlab node kill 2`"), "{err}");
    wait_for("the stop finished in the daemon", Duration::from_secs(20), || lab.node(2)["pid"].is_null().then_some(()));
    drop(held);
}

/// Issue 10: `workload run --duration 0` runs until interrupted, prints its summary and exits
/// 130; a negative rate is refused.
#[test]
fn workload_runs_until_interrupted_and_refuses_a_negative_rate() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    lab.ok(&["workload", "init", "bank", "--rows", "50"]);
    let bad = lab.run(&["workload", "run", "bank", "--max-rate=-1"]);
    assert!(!bad.status.success() && text(&bad.stderr).contains("is not a rate"), "{}", text(&bad.stderr));
    let run = lab.start_bank_run(&["--concurrency", "2", "--duration", "0"]);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "interrupted");
    let last: serde_json::Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert!(last["summary"]["counts"]["ok"].as_u64().unwrap() > 0, "the summary is printed: {last}");
}
