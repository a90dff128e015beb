//! The daemon booted in-process with an injected shutdown source.

use std::time::Duration;

use roachlab::api::{Client, StatusReport};
use roachlab::config::{LabSpec, Overrides};
use roachlab::lab::Lab;
use roachlab::state::LabState;

use crate::helpers::*;

#[tokio::test]
async fn daemon_runs_in_process_clears_a_stale_socket_and_stops_on_its_shutdown_source() {
    let t = TestLab::new("etcd", 3);
    let lab = Lab::new(t.lab_dir()).unwrap();
    std::fs::create_dir_all(lab.dir()).unwrap();
    LabState::new(LabSpec::load(Some(&t.config), &Overrides::default()).unwrap()).save(&lab.state_file()).unwrap();
    // A socket file left by a daemon that died: nothing listens on it any more.
    drop(std::os::unix::net::UnixListener::bind(lab.socket()).unwrap());
    assert!(lab.socket().exists());

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(roachlab::daemon::run(lab.clone(), async move {
        let _ = stopped.await;
    }));
    let client = Client::new(&lab.socket());
    let start = std::time::Instant::now();
    while !client.is_up().await {
        assert!(start.elapsed() < Duration::from_secs(10), "daemon did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s: StatusReport = client.get("/v1/status").await.unwrap();
    assert_eq!(s.engine, "etcd");
    assert_eq!(s.nodes.iter().map(|n| n.state.as_str()).collect::<Vec<_>>(), ["stopped"; 3]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(lab.socket()).unwrap().permissions().mode() & 0o777, 0o600);

    // A second daemon for the same lab refuses to start.
    let err = roachlab::daemon::run(lab.clone(), std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("already up"), "{err}");

    // Unknown API routes and nodes are errors, not crashes.
    let err = client.stream("/v1/nodes/7/kill", &serde_json::json!({}), |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("unknown node 7"), "{err}");
    // The framework's rejections come back as the documented `{"error":{…}}` too.
    roachlab::tls::ensure_provider();
    let raw = reqwest::Client::builder().unix_socket(lab.socket()).build().unwrap();
    for (path, body) in [("/v1/nodes/1/stop", "{not json"), ("/v1/nodes/one/stop", "{}")] {
        let resp = raw.post(format!("http://roachlab{path}")).header("content-type", "application/json").body(body).send().await.unwrap();
        assert!(resp.status().is_client_error(), "{path}");
        let v: serde_json::Value = resp.json().await.expect("a JSON error body");
        assert_eq!(v["error"]["code"], "bad_request", "{path}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), daemon).await.expect("daemon stops").unwrap().unwrap();
    assert!(!lab.socket().exists(), "socket removed on exit");
    assert!(LabState::load(&lab.state_file()).unwrap().unwrap().daemon.is_none(), "state says no daemon");
}

/// Issue 10, defect 3: deleting the socket of a running daemon must not start a second one.
#[test]
fn a_deleted_socket_is_bound_again_and_never_lets_a_second_daemon_in() {
    let lab = crate::helpers::TestLab::new("etcd", 3);
    lab.up();
    let first: roachlab::process::ProcIdentity = serde_json::from_value(lab.state()["daemon"].clone()).unwrap();
    std::fs::remove_file(lab.lab_dir().join("roachlab.sock")).unwrap();
    // The next command finds the same daemon (it binds its socket again).
    let status = lab.status();
    assert_eq!(status["daemon"]["pid"], first.pid, "one daemon per lab: {status}");
    // A second daemon started by hand is refused by the lock, naming the holder.
    let out = lab.run(&["daemon"]);
    assert!(!out.status.success());
    assert!(
        crate::helpers::text(&out.stderr).contains(&format!("already up (daemon pid {})", first.pid)),
        "{}",
        crate::helpers::text(&out.stderr)
    );
    lab.ok(&["down", "--fast"]);
    crate::helpers::wait_for("the daemon to exit", std::time::Duration::from_secs(10), || (!first.is_alive()).then_some(()));
}

/// PIDs of live processes whose command line mentions `dir` (zombies left out).
fn processes_mentioning(dir: &std::path::Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmd).contains(&needle)
        })
        .collect()
}

/// Issue 10, defect 1: an `up` queued behind a `down` is refused by the exiting daemon and
/// handed to a new one; no node is left without a daemon.
#[test]
fn up_queued_behind_down_hands_over_to_a_new_daemon_and_orphans_nothing() {
    let lab = crate::helpers::TestLab::new("etcd", 3);
    lab.up();
    let first: roachlab::process::ProcIdentity = serde_json::from_value(lab.state()["daemon"].clone()).unwrap();
    let down = lab.cmd(&["down"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    crate::helpers::wait_for("the down request", Duration::from_secs(10), || {
        lab.events().iter().any(|e| e["kind"] == "command" && e["command"] == "down").then_some(())
    });
    let out = lab.up();
    assert!(out.contains("haproxy: running"), "{out}");
    let _ = { down }.wait();
    let s = lab.status();
    let daemon = s["daemon"]["pid"].as_u64().unwrap() as u32;
    assert_ne!(daemon, first.pid, "a new daemon serves the lab");
    assert!(!first.is_alive(), "the old daemon exited");
    assert!(s["nodes"].as_array().unwrap().iter().all(|n| n["state"] == "running" && n["ready"] == true), "{s}");
    // Every process of the lab is the one the state records, served by the live daemon.
    let mut recorded: Vec<u32> = lab.recorded_processes().iter().map(|p| p.pid).collect();
    recorded.sort_unstable();
    // (HAProxy's worker is its recorded master's child.)
    let ppid = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok()).unwrap_or(0)
    };
    let haproxy = lab.state()["haproxy"]["pid"].as_u64().unwrap() as u32;
    let mut seen: Vec<u32> = processes_mentioning(&lab.lab_dir()).into_iter().filter(|p| ppid(*p) != haproxy).collect();
    seen.sort_unstable();
    assert_eq!(seen, recorded, "no orphan: every process naming the lab dir is recorded");
}

/// Issue 10, defect 2: a damaged `state.json` never locks the user out.
#[test]
fn a_damaged_state_never_locks_the_user_out() {
    let lab = crate::helpers::TestLab::new("etcd", 3);
    // With the daemon alive: it is asked without reading the file.
    lab.up();
    let all = lab.recorded_processes();
    std::fs::write(lab.lab_dir().join("state.json"), "").unwrap();
    let out = lab.ok(&["status"]);
    assert!(out.contains("running"), "{out}");
    lab.ok(&["down", "--fast", "--wipe"]);
    crate::helpers::wait_for("nothing of the lab left", Duration::from_secs(10), || all.iter().all(|p| !p.is_alive()).then_some(()));
    assert!(!lab.lab_dir().exists());

    // With the daemon dead and the state damaged: the last good state brings a new daemon.
    lab.up();
    let daemon: roachlab::process::ProcIdentity = serde_json::from_value(lab.state()["daemon"].clone()).unwrap();
    roachlab::process::signal(&daemon, nix::sys::signal::Signal::SIGKILL).unwrap();
    crate::helpers::wait_for("the daemon gone", Duration::from_secs(10), || (!daemon.is_alive()).then_some(()));
    let all = lab.recorded_processes();
    std::fs::write(lab.lab_dir().join("state.json"), "{\"version\": 1, \"spe").unwrap();
    let out = lab.run(&["down", "--fast"]);
    assert!(out.status.success(), "{}", crate::helpers::text(&out.stderr));
    assert!(crate::helpers::text(&out.stderr).contains("using the last good state"), "{}", crate::helpers::text(&out.stderr));
    crate::helpers::wait_for("every node and HAProxy stopped", Duration::from_secs(10), || all.iter().all(|p| !p.is_alive()).then_some(()));

    // Neither state nor its last good copy readable, no daemon: `down --wipe` stops what its
    // command line proves is the lab's, and nothing else.
    lab.up();
    let daemon: roachlab::process::ProcIdentity = serde_json::from_value(lab.state()["daemon"].clone()).unwrap();
    roachlab::process::signal(&daemon, nix::sys::signal::Signal::SIGKILL).unwrap();
    crate::helpers::wait_for("the daemon gone", Duration::from_secs(10), || (!daemon.is_alive()).then_some(()));
    let all = lab.recorded_processes();
    // A bystander whose command line names the lab's directory (as `tail -f DIR/...` would).
    let bystander =
        std::process::Command::new("sh").args(["-c", "sleep 60; :"]).arg(lab.lab_dir().join("stores").as_os_str()).spawn().unwrap();
    for f in ["state.json", "state.json.prev"] {
        std::fs::write(lab.lab_dir().join(f), "garbage").unwrap();
    }
    let refused = lab.run(&["down", "--fast"]);
    assert!(
        !refused.status.success() && crate::helpers::text(&refused.stderr).contains("down --wipe"),
        "{}",
        crate::helpers::text(&refused.stderr)
    );
    lab.ok(&["down", "--fast", "--wipe"]);
    crate::helpers::wait_for("the lab's processes found and stopped", Duration::from_secs(10), || {
        all.iter().all(|p| !p.is_alive()).then_some(())
    });
    let bystander_id = roachlab::process::ProcIdentity::of_pid(bystander.id()).expect("a process that only names the dir is left alone");
    roachlab::process::signal_pid(&bystander_id, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(!lab.lab_dir().exists());
}

/// Issue 10, defect 5: two `up`s racing on a new directory with different configs: one
/// creates the lab, the other is refused with the mismatch — never exit 0 with another's lab.
#[test]
fn concurrent_ups_with_different_configs_create_one_lab_and_refuse_the_other() {
    let lab = crate::helpers::TestLab::new("etcd", 3);
    let other_ports = crate::helpers::Ports::free();
    let other = lab.dir.path().join("other.toml");
    let text = std::fs::read_to_string(&lab.config).unwrap();
    let text = text
        .replace("nodes = 3", "nodes = 5")
        .replace(&format!("base = {}", lab.ports.base), &format!("base = {}", other_ports.base))
        .replace(&format!("http_base = {}", lab.ports.http_base), &format!("http_base = {}", other_ports.http_base))
        .replace(&format!("peer_base = {}", lab.ports.peer_base), &format!("peer_base = {}", other_ports.peer_base))
        .replace(&format!("frontend_port = {}", lab.ports.frontend), &format!("frontend_port = {}", other_ports.frontend))
        .replace(&format!("admin_port = {}", lab.ports.admin), &format!("admin_port = {}", other_ports.admin))
        .replace(&format!("stats_port = {}", lab.ports.stats), &format!("stats_port = {}", other_ports.stats));
    std::fs::write(&other, text).unwrap();
    let a = lab
        .cmd(&["up", "--config", lab.config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = lab
        .cmd(&["up", "--config", other.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_ne!(
        a.status.success(),
        b.status.success(),
        "exactly one wins:\n{}\n{}",
        crate::helpers::text(&a.stderr),
        crate::helpers::text(&b.stderr)
    );
    let (winner_nodes, loser) = if a.status.success() { (3, &b) } else { (5, &a) };
    let err = crate::helpers::text(&loser.stderr);
    assert!(err.contains("was created with another shape (nodes "), "{err}");
    let s = lab.status();
    assert_eq!(s["nodes"].as_array().unwrap().len(), winner_nodes, "the lab is the winner's: {s}");
    assert!(s["nodes"].as_array().unwrap().iter().all(|n| n["state"] == "running"));
}

/// A lab whose directory is a small tmpfs of its own; unmounted after the lab is taken down.
struct SmallDisk {
    lab: Option<crate::helpers::TestLab>,
    at: std::path::PathBuf,
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        drop(self.lab.take());
        let _ = std::process::Command::new("umount").arg(&self.at).status();
    }
}

/// Issue 10, defect 6: a state write that fails (disk full) during `node start` must not
/// leave a phantom: the start is undone, memory and disk agree, and a later start works.
#[test]
fn a_start_whose_state_write_fails_is_undone_not_a_phantom() {
    let lab = crate::helpers::TestLab::new("etcd", 3);
    let at = lab.lab_dir();
    std::fs::create_dir_all(&at).unwrap();
    // etcd preallocates 64 MiB of WAL per member.
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=1g", "tmpfs"]).arg(&at).status();
    if !mounted.is_ok_and(|s| s.success()) {
        crate::helpers::skipped("cannot mount a tmpfs (needs root)", "a_start_whose_state_write_fails_is_undone_not_a_phantom");
        return;
    }
    let disk = SmallDisk { lab: Some(lab), at: at.clone() };
    let lab = disk.lab.as_ref().unwrap();
    lab.up();
    lab.ok(&["node", "stop", "2"]);
    // Fill the disk.
    let filler = at.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
    }
    let out = lab.run(&["node", "start", "2"]);
    assert!(!out.status.success());
    assert!(crate::helpers::text(&out.stderr).contains("could not be recorded"), "{}", crate::helpers::text(&out.stderr));
    let n2 = lab.node(2);
    assert!(n2["pid"].is_null(), "no phantom in memory: {n2}");
    crate::helpers::wait_for("node 2's process gone", Duration::from_secs(10), || {
        roachlab::process::lab_processes(&at)
            .iter()
            .all(|p| !std::fs::read_to_string(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default().contains("stores/node-2"))
            .then_some(())
    });
    // Space again: the start works.
    std::fs::remove_file(&filler).unwrap();
    lab.ok(&["node", "start", "2"]);
    assert_eq!(lab.node(2)["state"], "running");
}

/// Issue 10: a node that died while no daemon ran is in the timeline, and `status` is one
/// snapshot (its quorum line agrees with its table).
#[test]
fn a_node_that_died_unwatched_is_recorded_and_status_agrees_with_itself() {
    let lab = crate::helpers::TestLab::new("etcd", 3);
    lab.up();
    let state = lab.state();
    let daemon: roachlab::process::ProcIdentity = serde_json::from_value(state["daemon"].clone()).unwrap();
    let node3: roachlab::process::ProcIdentity = serde_json::from_value(state["nodes"][2]["process"].clone()).unwrap();
    roachlab::process::signal(&daemon, nix::sys::signal::Signal::SIGKILL).unwrap();
    crate::helpers::wait_for("the daemon gone", Duration::from_secs(10), || (!daemon.is_alive()).then_some(()));
    roachlab::process::signal(&node3, nix::sys::signal::Signal::SIGKILL).unwrap();
    crate::helpers::wait_for("node 3 gone", Duration::from_secs(10), || (!node3.is_alive()).then_some(()));
    let s = crate::helpers::wait_for("the first poll", Duration::from_secs(10), || {
        let s = lab.status();
        (!s["cluster"]["quorum"].is_null()).then_some(s)
    });
    assert_eq!(s["nodes"][2]["state"], "exited");
    assert_eq!(s["cluster"]["quorum"]["up"], 2, "the quorum line counts the same nodes as the table: {s}");
    let ev = lab.events();
    assert!(ev.iter().any(|e| e["kind"] == "node_exited" && e["node"] == 3), "the unwatched exit is in the timeline");
    assert!(ev
        .iter()
        .any(|e| e["kind"] == "warning" && e["message"].as_str().unwrap_or("").contains("exited while no daemon was running")));
}
