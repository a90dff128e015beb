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

/// Exactly one daemon runs for the lab, the recorded one, and every process found by its
/// command line is recorded (HAProxy's workers are its master's). `ctx` names the seed.
fn assert_one_daemon_and_every_process_recorded(lab: &TestLab, ctx: &str) {
    let state = lab.state();
    let daemon: roachlab::process::ProcIdentity = serde_json::from_value(state["daemon"].clone()).expect("a daemon recorded");
    let found = roachlab::process::lab_processes(&lab.lab_dir());
    let daemons: Vec<u32> = found
        .iter()
        .filter(|p| std::fs::read_to_string(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default().ends_with("daemon\0"))
        .map(|p| p.pid)
        .collect();
    assert_eq!(daemons, vec![daemon.pid], "{ctx}: exactly one daemon, the recorded one");
    let recorded = lab.recorded_processes();
    let haproxy = state["haproxy"]["pid"].as_u64().map(|p| p as u32);
    for p in &found {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)).unwrap_or_default();
        let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|x| x.parse::<u32>().ok());
        let known = recorded.contains(p) || (haproxy.is_some() && ppid == haproxy);
        assert!(known, "{ctx}: pid {} belongs to the lab but is not recorded: {state}", p.pid);
    }
}

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
    assert_one_daemon_and_every_process_recorded(&lab, &format!("seed {seed}"));
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

/// The fault commands' interleavings (#21): pause/resume, throttle/unthrottle, partitions and
/// heals on a netns lab, drills (cut off at random by their CLI's SIGKILL), and SIGKILL of the
/// daemon at random moments, from three CLIs at once. After each round: one daemon, every
/// process of the lab recorded, no stopped process the state does not call paused; after the
/// last `down`: no process, namespace, link, cgroup or stopped process of the lab.
/// Two seeds a run, two rounds of 20 s each (about 2 minutes of the suite).
const FAULT_COMMANDS: &[&[&str]] = &[
    &["node", "pause", "N"],
    &["node", "resume", "N"],
    &["node", "throttle", "N", "--cpu", "50%"],
    &["node", "unthrottle", "N"],
    &["net", "isolate", "N"],
    &["net", "partition", "1", "2,3"],
    &["net", "heal"],
    &["node", "kill", "N"],
    &["node", "start", "N"],
    &["node", "stop", "N"],
    &["drill", "partition-minority", "--baseline", "1s"],
    &["status"],
    &["up"],
    &["down"],
    &["kill-daemon"],
];

/// Processes of the lab in state `T` (stopped) whose pid the state does not record as a
/// paused node.
fn unrecorded_stopped(lab: &TestLab) -> Vec<u32> {
    let state = lab.state();
    let paused: Vec<u64> = state["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"]["state"] == "paused")
        .filter_map(|n| n["process"]["pid"].as_u64())
        .collect();
    roachlab::process::lab_processes(&lab.lab_dir())
        .into_iter()
        .filter(|p| p.is_stopped() && !paused.contains(&(p.pid as u64)))
        .map(|p| p.pid)
        .collect()
}

#[test]
fn random_fault_interleavings_with_daemon_crashes_leave_nothing_behind() {
    let base: u64 = std::env::var("ROACHLAB_INTERLEAVINGS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    for seed in [base, base.wrapping_add(1_000_003)] {
        println!("fault interleavings seed {seed} (rerun with ROACHLAB_INTERLEAVINGS_SEED={seed})");
        let lab = TestLab::netns("etcd", 3);
        lab.up();
        for round in 0..2u64 {
            let deadline = Instant::now() + Duration::from_secs(20);
            std::thread::scope(|s| {
                for worker in 0..3u64 {
                    let lab = &lab;
                    s.spawn(move || {
                        let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(round * 10 + worker));
                        while Instant::now() < deadline {
                            let cmd = FAULT_COMMANDS[rng.usize(..FAULT_COMMANDS.len())];
                            if cmd == ["kill-daemon"] {
                                if let Ok(d) = serde_json::from_value::<roachlab::process::ProcIdentity>(lab.state()["daemon"].clone()) {
                                    let _ = roachlab::process::signal(&d, nix::sys::signal::Signal::SIGKILL);
                                }
                                continue;
                            }
                            let node = rng.u32(1..=3).to_string();
                            let args: Vec<String> = cmd.iter().map(|a| if *a == "N" { node.clone() } else { a.to_string() }).collect();
                            run_bounded(lab, &args, Duration::from_secs(rng.u64(2..=15)));
                        }
                    });
                }
            });
            // A daemon adopts what runs (`status` starts one): a stopped process is a paused node.
            let _ = lab.run(&["status"]);
            let stray = unrecorded_stopped(&lab);
            assert!(stray.is_empty(), "seed {seed} round {round}: stopped processes not recorded as paused: {stray:?}\n{}", lab.state());
            // Quiesce: heal, resume what is paused, and the lab comes up whole.
            let last = std::cell::RefCell::new(String::new());
            let whole = Instant::now() + Duration::from_secs(120);
            while Instant::now() < whole {
                let _ = lab.run(&["net", "heal"]);
                for n in ["1", "2", "3"] {
                    let _ = lab.run(&["node", "resume", n]);
                }
                let up = lab.run(&["up"]);
                if up.status.success() {
                    break;
                }
                *last.borrow_mut() = format!("{}{}", text(&up.stdout), text(&up.stderr));
            }
            assert!(
                Instant::now() < whole,
                "seed {seed} round {round}: the lab never came up whole again; the last `up` said:\n{}",
                last.borrow()
            );
            assert_one_daemon_and_every_process_recorded(&lab, &format!("seed {seed} round {round}"));
        }
        let tag = lab.net_tag();
        lab.ok(&["down"]);
        wait_for("nothing of the lab left", Duration::from_secs(20), || {
            roachlab::process::lab_processes(&lab.lab_dir()).is_empty().then_some(())
        });
        assert!(lab.net_leftovers().is_empty(), "seed {seed}: {:?}", lab.net_leftovers());
        assert!(roachlab::cgroup::lab_groups(&tag).is_empty(), "seed {seed}: a CPU group left: {:?}", roachlab::cgroup::lab_groups(&tag));
    }
}
