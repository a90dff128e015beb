//! Issue 10: random interleavings of lifecycle commands from several CLI processes at once
//! against one lab, then the invariants: one daemon, every process of the lab accounted for by
//! identity, `state.json` agreeing with the processes, and nothing left after `down`.
//! Seeded (`ROACHLAB_INTERLEAVINGS_SEED`, else the time); the seed is printed.

use std::time::{Duration, Instant};

use crate::helpers::*;

const COMMANDS: &[&[&str]] = &[
    &["up"],
    &["down"],
    &["down", "--fast"],
    &["node", "stop", "N"],
    &["node", "kill", "N"],
    &["node", "start", "N"],
    &["node", "start", "N", "--no-wait"],
    &["node", "add"],
    &["node", "decommission", "N"],
    &["status"],
];

/// Runs `args`, killing it (by PID: it is our child) after `limit`.
fn run_bounded(lab: &TestLab, args: &[String], limit: Duration) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = lab.cmd(&refs).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn random_interleavings_keep_one_daemon_and_no_orphan() {
    let seed: u64 = std::env::var("ROACHLAB_INTERLEAVINGS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    println!("interleavings seed {seed} (rerun with ROACHLAB_INTERLEAVINGS_SEED={seed})");
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let deadline = Instant::now() + Duration::from_secs(30);
    std::thread::scope(|s| {
        for worker in 0..3u64 {
            let lab = &lab;
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(worker));
                while Instant::now() < deadline {
                    let cmd = COMMANDS[rng.usize(..COMMANDS.len())];
                    let node = rng.u32(1..=4).to_string();
                    let args: Vec<String> = cmd.iter().map(|a| if *a == "N" { node.clone() } else { a.to_string() }).collect();
                    run_bounded(lab, &args, Duration::from_secs(20));
                }
            });
        }
    });
    // Quiesce: the lab comes up again (a `down` may have been last).
    wait_for("the lab up again", Duration::from_secs(90), || lab.run(&["up"]).status.success().then_some(()));
    let state = lab.state();
    let daemon: roachlab::process::ProcIdentity = serde_json::from_value(state["daemon"].clone()).expect("a daemon recorded");
    let found = roachlab::process::lab_processes(&lab.lab_dir());
    let daemons: Vec<u32> = found
        .iter()
        .filter(|p| std::fs::read_to_string(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default().ends_with("daemon\0"))
        .map(|p| p.pid)
        .collect();
    assert_eq!(daemons, vec![daemon.pid], "seed {seed}: exactly one daemon, the recorded one");
    // Every process found by its command line is recorded (HAProxy's workers are its master's).
    let recorded = lab.recorded_processes();
    let haproxy = state["haproxy"]["pid"].as_u64().map(|p| p as u32);
    let ppid = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok())
    };
    for p in &found {
        let known = recorded.contains(p) || (haproxy.is_some() && ppid(p.pid) == haproxy);
        assert!(known, "seed {seed}: pid {} belongs to the lab but is not recorded: {state}", p.pid);
    }
    // Every recorded node process runs, and state agrees with status.
    for n in state["nodes"].as_array().unwrap() {
        if let Ok(id) = serde_json::from_value::<roachlab::process::ProcIdentity>(n["process"].clone()) {
            assert!(id.is_alive(), "seed {seed}: node {} recorded as pid {} but that process is gone", n["id"], id.pid);
        }
    }
    lab.ok(&["down"]);
    wait_for("nothing of the lab left", Duration::from_secs(20), || {
        roachlab::process::lab_processes(&lab.lab_dir()).is_empty().then_some(())
    });
}
