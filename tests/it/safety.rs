//! roachlab never signals a process it did not start.

use std::time::Duration;

use roachlab::config::{EngineKind, LabSpec, Overrides};
use roachlab::node::NodeState;
use roachlab::process::ProcIdentity;
use roachlab::state::LabState;

use crate::helpers::*;

/// Kills the unrelated process at the end of the test, pass or fail.
struct Bystander(std::process::Child);
impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_reused_pid_in_stale_state_is_never_signalled() {
    let lab = TestLab::new("etcd", 3);
    // An unrelated process that holds the PID the stale state names.
    let bystander = Bystander(std::process::Command::new("sleep").arg("300").spawn().expect("sleep"));
    let pid = bystander.0.id();
    let real = wait_for("the bystander to show up", Duration::from_secs(5), || ProcIdentity::of_pid(pid));

    // State left by an earlier daemon: node 1 ran as `pid`, but started at another time
    // (PID reuse). Node 2 claims the same PID with the right start time would be a different
    // story; here every record is stale.
    let spec = LabSpec::load(Some(&lab.config), &Overrides { engine: Some(EngineKind::Etcd), ..Default::default() }).unwrap();
    let mut state = LabState::new(spec);
    let stale = ProcIdentity { pid, start_time: real.start_time - 1000 };
    state.nodes[0].process = Some(stale);
    state.nodes[0].state = NodeState::Running { pid, since: time::OffsetDateTime::now_utc() };
    state.haproxy = Some(stale);
    state.initialized = true;
    std::fs::create_dir_all(lab.lab_dir()).unwrap();
    state.save(&lab.lab_dir().join("state.json")).unwrap();

    // The daemon re-adopts nothing, warns, and refuses to act on the node.
    let n1 = lab.node(1);
    assert_eq!(n1["state"], "exited", "{n1}");
    assert!(n1["pid"].is_null());
    let out = lab.run(&["node", "kill", "1"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("node 1: is not running"), "{}", text(&out.stderr));
    let out = lab.run(&["node", "kill", "9"]);
    assert!(text(&out.stderr).contains("unknown node 9; this lab has nodes 1, 2, 3"), "{}", text(&out.stderr));
    lab.ok(&["down"]);
    assert!(real.is_alive(), "roachlab signalled a process it did not start");
    let warned = lab
        .events()
        .iter()
        .any(|e| e["kind"] == "warning" && e["message"].as_str().unwrap().contains(&format!("pid {pid} now belongs to another process")));
    assert!(warned, "the timeline should say why node 1 was not adopted");
}

#[test]
fn signal_refuses_a_pid_whose_start_time_differs() {
    let bystander = Bystander(std::process::Command::new("sleep").arg("300").spawn().expect("sleep"));
    let pid = bystander.0.id();
    let real = wait_for("the bystander", Duration::from_secs(5), || ProcIdentity::of_pid(pid));
    let wrong = ProcIdentity { pid, start_time: real.start_time + 7 };
    let err = roachlab::process::signal(&wrong, nix::sys::signal::Signal::SIGKILL).unwrap_err();
    assert!(err.to_string().contains("refusing to signal"), "{err}");
    assert!(real.is_alive());
}
