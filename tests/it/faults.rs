//! Faults beyond death on real etcd behind real HAProxy: pause, zones, the restart policy,
//! CPU throttling (cgroup v1 here; v2 where the host has it), and drills interrupted mid-fault.

use std::time::{Duration, Instant};

use crate::drill::{phase, results_of, validate};
use crate::helpers::*;

/// A lab config with extra top-level keys (`restart = …`) and sections appended.
fn lab_with(nodes: u32, top: &str, tail: &str) -> TestLab {
    let lab = TestLab::new("etcd", nodes);
    let text = std::fs::read_to_string(&lab.config).unwrap();
    std::fs::write(&lab.config, format!("{top}\n{text}\n{tail}\n")).unwrap();
    lab
}

/// CPU time of a process so far, in clock ticks (utime + stime, /proc/PID/stat fields 14–15).
fn cpu_ticks(pid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Share of one core a process used over `window`, percent.
pub(crate) fn cpu_pct(pid: u64, window: Duration) -> f64 {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).unwrap().unwrap_or(100) as f64;
    let (t0, s0) = (cpu_ticks(pid), Instant::now());
    // A measurement window, not a wait for a condition.
    std::thread::sleep(window);
    (cpu_ticks(pid) - t0) as f64 / hz / s0.elapsed().as_secs_f64() * 100.0
}

#[test]
fn a_paused_leader_is_routed_around_and_rejoins_as_a_follower() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    lab.ok(&["workload", "init", "bank", "--rows", "100"]);
    let leader = wait_for("a leader", Duration::from_secs(10), || lab.status()["cluster"]["leader"].as_u64());
    let mut load = lab.start_bank_run(&["--duration", "0", "--concurrency", "4"]);
    lab.ok(&["node", "pause", &leader.to_string()]);
    // status answers while a member answers nothing, and says what it is.
    let n = lab.node(leader);
    assert_eq!(n["state"], "paused", "{n}");
    assert!(n["pid"].is_u64(), "its process still exists: {n}");
    let new = wait_for("a new leader", Duration::from_secs(20), || lab.status()["cluster"]["leader"].as_u64().filter(|l| *l != leader));
    wait_for("HAProxy to mark it DOWN", Duration::from_secs(20), || (lab.node(leader)["backend"] == "DOWN").then_some(()));
    // Its process lives on but answers nothing: the cluster line does not count it as up.
    let q = wait_for("the quorum figure without it", Duration::from_secs(10), || {
        Some(lab.status()["cluster"]["quorum"].clone()).filter(|q| q["ok"] == true && q["up"] == 2)
    });
    assert!(q["detail"].as_str().unwrap().contains("(2 of 3 members answering)"), "{q}");
    // Bad input: pausing a paused node, resuming a running one.
    let out = lab.run(&["node", "pause", &leader.to_string()]);
    assert!(text(&out.stderr).contains("is already paused; `roachlab node resume"), "{}", text(&out.stderr));
    let out = lab.run(&["node", "resume", &new.to_string()]);
    assert!(text(&out.stderr).contains("is not paused (it is running)"), "{}", text(&out.stderr));

    lab.ok(&["node", "resume", &leader.to_string()]);
    wait_for("the old leader ready again", Duration::from_secs(30), || (lab.node(leader)["ready"] == true).then_some(()));
    // Its leader figure comes from its /metrics, which a loaded host may answer a poll later.
    let n = wait_for("its leader figure", Duration::from_secs(10), || Some(lab.node(leader)).filter(|n| n["is_leader"].is_boolean()));
    assert_eq!((n["state"].as_str(), n["is_leader"].as_bool()), (Some("running"), Some(false)), "it rejoined as a follower: {n}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(load.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    load.wait().unwrap();
    let check = lab.ok(&["workload", "check", "bank"]);
    assert!(check.contains("check passed"), "no acknowledged transfer lost: {check}");
    let ev = lab.events();
    assert!(ev.iter().any(|e| e["kind"] == "node_paused" && e["node"] == leader));
    assert!(ev.iter().any(|e| e["kind"] == "node_resumed" && e["node"] == leader));

    // The drill measures the same, with its theory and report.
    let out = lab.ok(&["drill", "pause-leader", "--seed", "1", "--baseline", "2s"]);
    let (_, r) = results_of(&out);
    validate(&r);
    assert!(phase(&r, "paused")["committed"].as_u64().unwrap() > 0);
    assert!(r["expectations"].as_array().unwrap().iter().all(|e| e["met"] == true), "{}", r["expectations"]);
    assert!(r["check"]["violations"].as_array().unwrap().is_empty());
    assert!(lab.status()["nodes"].as_array().unwrap().iter().all(|n| n["state"] == "running"));

    // `down` continues a paused node before stopping it: it drains on SIGTERM like the rest.
    lab.ok(&["node", "pause", "1"]);
    let out = lab.ok(&["down"]);
    assert!(out.contains("node 1: drained: SIGTERM"), "{out}");
}

#[test]
fn losing_one_zone_of_three_keeps_writing_and_two_stop_it() {
    let lab = lab_with(5, "", "[etcd]\nlocalities = [\"zone=a\", \"zone=b\", \"zone=c\"]");
    lab.up();
    let s = lab.status();
    let zones: Vec<&str> = s["nodes"].as_array().unwrap().iter().map(|n| n["locality"].as_str().unwrap()).collect();
    assert_eq!(zones, ["zone=a", "zone=b", "zone=c", "zone=a", "zone=b"]);
    let out = lab.run(&["node", "kill", "--locality", "zone=q"]);
    assert!(
        text(&out.stderr).contains("no member's locality matches zone=q; this lab's localities: zone=a, zone=b, zone=c"),
        "{}",
        text(&out.stderr)
    );
    let out = lab.ok(&["drill", "zone-failure", "--seed", "1", "--baseline", "2s"]);
    let (_, r) = results_of(&out);
    validate(&r);
    assert!(out.contains("5 members in zones zone=a(1,4), zone=b(2,5), zone=c(3)"), "theory from the topology:\n{out}");
    assert!(phase(&r, "one-zone-down")["committed"].as_u64().unwrap() > 0, "3 of 5 left");
    assert_eq!(phase(&r, "two-zones-down")["committed"], 0, "1 of 5 left: nothing commits");
    assert!(phase(&r, "restored")["committed"].as_u64().unwrap() > 0);
    assert!(r["expectations"].as_array().unwrap().iter().all(|e| e["met"] == true), "{}", r["expectations"]);
    assert!(r["check"]["violations"].as_array().unwrap().is_empty());
    // A whole zone at once from the command line too; and back.
    let out = lab.ok(&["node", "kill", "--locality", "zone=c"]);
    assert!(out.contains("node 3: killed"), "{out}");
    lab.ok(&["node", "start", "--locality", "zone=c"]);
    assert_eq!(lab.node(3)["ready"], true);
}

#[test]
fn the_restart_policy_restarts_crashes_not_stops_and_reports_a_crash_loop() {
    // A wrapper that refuses to start while a flag file exists: a node that exits at once.
    let real = which::which("etcd").expect("etcd installed");
    let probe = tempfile::tempdir().unwrap();
    let flag = probe.path().join("refuse");
    let wrapper = probe.path().join("etcd-or-fail");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e {} ]; then echo \"test: refusing to start\" >&2; exit 3; fi\nexec {} \"$@\"\n",
            flag.display(),
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let lab = lab_with(
        3,
        "restart = \"on-failure\"",
        &format!("[etcd]\nbinary = \"{}\"\n[restart_backoff]\ninitial = \"200ms\"\nmax = \"2s\"\nreset_after = \"30s\"", wrapper.display()),
    );
    lab.up();
    // A SIGKILL from outside roachlab, by PID: a crash, restarted by itself.
    let old: roachlab::process::ProcIdentity = serde_json::from_value(lab.state()["nodes"][1]["process"].clone()).unwrap();
    roachlab::process::signal(&old, nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("node 2 restarted and ready", Duration::from_secs(30), || {
        let n = lab.node(2);
        (n["ready"] == true && n["pid"].as_u64() != Some(old.pid as u64)).then_some(())
    });
    assert_eq!(lab.node(2)["restarts"], 1);
    assert!(lab.ok(&["watch", "--count", "1"]).contains("(restarts 1)"), "watch shows the restart count");
    // `node stop` is intentional: no restart is scheduled when it exits.
    lab.ok(&["node", "stop", "3"]);
    let n3 = lab.node(3);
    assert_eq!(n3["state"], "exited");
    assert!(n3["next_restart_at"].is_null() && n3["restarts"] == 0, "a stop is not restarted: {n3}");
    // The timeline says the same (its writer may append a moment after the request returns).
    let ev = wait_for("node 3's exit in the timeline", Duration::from_secs(10), || {
        let ev = lab.events();
        ev.iter().any(|e| e["kind"] == "node_exited" && e["node"] == 3).then_some(ev)
    });
    let stopped_at = ev.iter().rposition(|e| e["kind"] == "node_exited" && e["node"] == 3).unwrap();
    assert!(!ev[stopped_at..].iter().any(|e| e["kind"] == "node_restart_scheduled" && e["node"] == 3), "a stop is not restarted");
    lab.ok(&["node", "start", "3"]);

    // A node that exits at once: restarted with a growing backoff, shown as a crash loop.
    std::fs::write(&flag, "").unwrap();
    lab.ok(&["node", "kill", "1"]);
    let n = wait_for("a crash loop", Duration::from_secs(30), || {
        let n = lab.node(1);
        n["crash_loop"].as_str().is_some_and(|l| l.starts_with("crash-loop (restart ")).then_some(n)
    });
    let status = lab.ok(&["status"]);
    assert!(status.contains("crash-loop (restart "), "{status}");
    let ev = lab.events();
    let delays: Vec<u64> =
        ev.iter().filter(|e| e["kind"] == "node_restart_scheduled" && e["node"] == 1).map(|e| e["in_ms"].as_u64().unwrap()).collect();
    assert!(delays.len() >= 3 && delays.windows(2).all(|w| w[1] >= w[0]) && delays[2] > delays[0], "growing backoff: {delays:?}");
    let looped = ev.iter().find(|e| e["kind"] == "node_crash_loop" && e["node"] == 1).expect("a crash-loop event");
    assert!(looped["last_lines"].to_string().contains("test: refusing to start"), "its last log lines: {looped}");
    assert!(n["next_restart_at"].is_string() || n["pid"].is_u64());
    // Fixed: the next restart succeeds.
    std::fs::remove_file(&flag).unwrap();
    wait_for("node 1 back and UP in HAProxy", Duration::from_secs(30), || {
        let n = lab.node(1);
        (n["ready"] == true && n["backend"] == "UP").then_some(())
    });

    // The drill compares the policy's restart with one by hand.
    let out = lab.ok(&["drill", "self-healing", "--seed", "1", "--baseline", "2s"]);
    let (_, r) = results_of(&out);
    validate(&r);
    assert!(phase(&r, "automatic")["ready_again_after_fault_ms"].as_u64().is_some(), "{}", phase(&r, "automatic"));
    assert!(phase(&r, "manual")["ready_again_after_fault_ms"].as_u64().is_some());
    assert!(r["expectations"].as_array().unwrap().iter().all(|e| e["met"] == true), "{}", r["expectations"]);
}

#[test]
fn a_throttled_node_uses_about_its_quota() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    for bad in ["0%", "150%"] {
        let out = lab.run(&["node", "throttle", "1", "--cpu", bad]);
        assert!(text(&out.stderr).contains("1% to 100%"), "{}", text(&out.stderr));
    }
    lab.ok(&["workload", "init", "bank", "--rows", "100"]);
    let leader = wait_for("a leader", Duration::from_secs(10), || lab.status()["cluster"]["leader"].as_u64());
    let pid = lab.node(leader)["pid"].as_u64().unwrap();
    let mut load = lab.start_bank_run(&["--duration", "0", "--concurrency", "16"]);
    let before = cpu_pct(pid, Duration::from_secs(3));
    lab.ok(&["node", "throttle", &leader.to_string(), "--cpu", "10%"]);
    assert_eq!(lab.node(leader)["cpu_quota_pct"], 10);
    let during = cpu_pct(pid, Duration::from_secs(4));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(load.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    load.wait().unwrap();
    eprintln!("cpu before {before:.1}% during {during:.1}%");
    assert!(during <= 14.0, "the leader used {during:.1}% of a core under a 10% quota (before: {before:.1}%)");
    if before > 20.0 {
        assert!(during < before / 1.5, "it dropped: {before:.1}% → {during:.1}%");
    }
    lab.ok(&["node", "unthrottle", &leader.to_string()]);
    assert!(lab.node(leader)["cpu_quota_pct"].is_null());
    let out = lab.run(&["node", "unthrottle", &leader.to_string()]);
    assert!(text(&out.stderr).contains("is not throttled"), "{}", text(&out.stderr));

    // A throttled node that stops takes its (now empty) group with it.
    lab.ok(&["node", "throttle", &leader.to_string(), "--cpu", "50%"]);
    let group = format!("roachlab-{}-n{leader}", lab.net_tag());
    let exists = || {
        ["/sys/fs/cgroup", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"].iter().any(|r| std::path::Path::new(r).join(&group).exists())
    };
    assert!(exists(), "the group {group} exists while throttled");
    lab.ok(&["node", "stop", &leader.to_string()]);
    assert!(!exists(), "the group {group} was left behind by the stop");
}

#[test]
fn a_drill_interrupted_mid_pause_and_mid_throttle_leaves_every_node_whole() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let file = lab.dir.path().join("gray.toml");
    std::fs::write(
        &file,
        "name = \"gray\"\n[[step]]\naction = \"phase\"\nname = \"gray\"\n[[step]]\naction = \"throttle\"\nnode = 3\ncpu = 20\n\
         [[step]]\naction = \"pause\"\nnode = 2\n[[step]]\naction = \"wait\"\nduration = \"5m\"\n",
    )
    .unwrap();
    let child =
        lab.cmd(&["drill", "run", file.to_str().unwrap(), "--baseline", "1s"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    wait_for("node 2 paused and 3 throttled", Duration::from_secs(60), || {
        (lab.node(2)["state"] == "paused" && lab.node(3)["cpu_quota_pct"] == 20).then_some(())
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stdout));
    let s = lab.status();
    for n in s["nodes"].as_array().unwrap() {
        assert_eq!((n["state"].as_str(), n["ready"].as_bool()), (Some("running"), Some(true)), "{n}");
        assert!(n["cpu_quota_pct"].is_null(), "unthrottled: {n}");
    }
    // Down leaves no cgroup of the lab behind either.
    lab.ok(&["node", "throttle", "1", "--cpu", "50%"]);
    lab.ok(&["down"]);
    let tag = lab.net_tag();
    let left: Vec<String> = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains(&tag))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The state letter of `/proc/PID/stat` (`T`: stopped), or `None` once the process is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// A paused node outlives the SIGKILL of the daemon that started it, still stopped, and the
/// next daemon re-adopts it as paused (its process group used to be orphaned by the daemon's
/// exit, and the kernel's SIGHUP + SIGCONT killed it).
#[test]
fn a_paused_node_stays_paused_when_its_daemon_is_killed() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    lab.ok(&["node", "pause", "3"]);
    let node: roachlab::process::ProcIdentity = serde_json::from_value(lab.state()["nodes"][2]["process"].clone()).unwrap();
    let daemon: roachlab::process::ProcIdentity = serde_json::from_value(lab.state()["daemon"].clone()).unwrap();
    roachlab::process::signal(&daemon, nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the daemon gone", Duration::from_secs(10), || (!daemon.is_alive()).then_some(()));
    assert!(node.is_alive(), "the paused node died with its daemon");
    assert_eq!(proc_state(node.pid), Some('T'), "still stopped, not continued by a hang-up");
    let n = lab.node(3);
    assert_eq!((n["state"].as_str(), n["pid"].as_u64()), (Some("paused"), Some(node.pid as u64)), "re-adopted as paused: {n}");
    lab.ok(&["node", "resume", "3"]);
    wait_for("node 3 ready again", Duration::from_secs(30), || (lab.node(3)["ready"] == true).then_some(()));
    assert!(node.is_alive());
}

/// A `node start` that waits for readiness queues nothing behind it: with quorum lost (2 and
/// 3 paused) a restarted node 1 cannot become ready until `node resume 2`, which must run
/// while the start still waits (its command reaches the timeline before node 1 is ready),
/// after which the start finishes. A start whose CLI is killed stops waiting and says so.
#[test]
fn a_start_waiting_for_readiness_does_not_block_the_resume_it_needs() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let pos = |lab: &TestLab, pred: &dyn Fn(&serde_json::Value) -> bool| lab.events().iter().rposition(|e| pred(e));
    for round in 0..2 {
        lab.ok(&["node", "pause", "2"]);
        lab.ok(&["node", "pause", "3"]);
        lab.ok(&["node", "kill", "1"]);
        let mut start =
            lab.cmd(&["node", "start", "1"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        wait_for("node 1 starting", Duration::from_secs(20), || (lab.node(1)["state"] == "starting").then_some(()));
        if round == 0 {
            lab.ok(&["node", "resume", "2"]);
            let status = start.wait().unwrap();
            assert!(status.success(), "the start finished once quorum was back");
            let resumed = pos(&lab, &|e| e["kind"] == "command" && e["command"] == "node resume 2").expect("resume in the timeline");
            let ready = pos(&lab, &|e| e["kind"] == "node_ready" && e["node"] == 1 && e["ready"] == true).expect("node 1 ready");
            assert!(resumed < ready, "the resume ran while the start waited, not after it");
        } else {
            // The client goes away: the wait stops, the timeline says nothing is undone, and the
            // node keeps starting (it becomes ready once quorum is back).
            start.kill().unwrap();
            start.wait().unwrap();
            wait_for("the daemon noticing the client went away", Duration::from_secs(20), || {
                lab.events()
                    .iter()
                    .any(|e| {
                        e["kind"] == "note"
                            && e["message"].as_str().is_some_and(|m| m.contains("went away: stopped waiting for node(s) 1 to become ready"))
                    })
                    .then_some(())
            });
            assert_eq!(lab.node(1)["state"], "starting", "the node was not stopped for it");
            lab.ok(&["node", "resume", "2"]);
            wait_for("node 1 ready", Duration::from_secs(30), || (lab.node(1)["ready"] == true).then_some(()));
        }
        lab.ok(&["node", "resume", "3"]);
    }
}
