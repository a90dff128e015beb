//! Bad input gets a clear error naming what, where and how to fix it, and loses nothing.

use std::net::TcpListener;

use crate::helpers::*;

#[test]
fn bad_config_names_file_line_and_column() {
    let lab = TestLab::new("etcd", 3);
    let bad = lab.dir.path().join("bad.toml");
    std::fs::write(&bad, "engine = \"etcd\"\nnodes = 3\n[haproxy]\ninterval = \"1s\"\n").unwrap();
    let out = lab.run(&["up", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}:4:1: unknown field `interval`", bad.display())), "{err}");
    assert!(!lab.lab_dir().exists(), "a bad config must not create a lab");
}

#[test]
fn unknown_engine_is_rejected_by_the_parser() {
    let lab = TestLab::new("etcd", 3);
    let out = lab.run(&["up", "--engine", "mongo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("possible values: cockroach, etcd"), "{}", text(&out.stderr));
}

#[test]
fn a_taken_port_is_named_with_its_holder() {
    let lab = TestLab::new("etcd", 3);
    let holder = TcpListener::bind(("127.0.0.1", lab.ports.base + 1)).expect("hold node 2's port");
    let out = lab.run(&["up", "--config", lab.config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("port {} (node 2 etcd client) is already in use by pid {}", lab.ports.base + 1, std::process::id())),
        "{err}"
    );
    // Nothing was started, so no lab is left behind.
    assert!(!lab.lab_dir().join("state.json").exists(), "a failed first `up` that started nothing leaves no lab");
    drop(holder);
    // Once the port is free, `up` on the same lab goes through.
    lab.up();
    assert_eq!(lab.node(2)["ready"], true);
}

#[test]
fn a_missing_engine_binary_says_how_to_install_it() {
    let lab = TestLab::new("etcd", 3);
    let out = lab.cmd(&["up", "--config", lab.config.to_str().unwrap()]).env("ROACHLAB_ETCD", "/nonexistent/etcd").output().unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("`etcd` not found") && err.contains("apt-get install etcd-server"), "{err}");
    // A file that exists but is not a program is named as such, not as missing.
    let lab = TestLab::new("etcd", 3);
    let out = lab.cmd(&["up", "--config", lab.config.to_str().unwrap()]).env("ROACHLAB_ETCD", "/etc/passwd").output().unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("$ROACHLAB_ETCD = /etc/passwd exists but is not an executable etcd binary"), "{err}");
    // The failed `up` left no daemon behind with that environment: fixed, `up` works.
    let out = lab.up();
    assert!(out.contains("haproxy: running"), "{out}");
}

#[test]
fn commands_on_a_missing_lab_say_how_to_create_one() {
    let lab = TestLab::new("etcd", 3);
    let out = lab.run(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no lab in") && text(&out.stderr).contains("roachlab up --dir"), "{}", text(&out.stderr));
    let out = lab.run(&["down"]);
    assert!(out.status.success(), "down on no lab is a no-op");
}

#[test]
fn up_with_another_shape_on_an_existing_lab_is_refused() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    lab.ok(&["down"]);
    let out = lab.run(&["up", "--config", lab.config.to_str().unwrap(), "--nodes", "5"]);
    assert!(text(&out.stderr).contains("was created with another shape (nodes 3, not 5)"), "{}", text(&out.stderr));
    // The same engine and size on other ports: the ports are named, not two equal summaries.
    let other = TestLab::new("etcd", 3);
    let out = lab.run(&["up", "--config", other.config.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("node service ports from {}, not {}", lab.ports.base, other.ports.base))
            && err.contains(&format!("HAProxy frontend port {}, not {}", lab.ports.frontend, other.ports.frontend)),
        "{err}"
    );
}

/// A first `up` that fails before anything starts leaves no lab: the next may ask for another
/// shape.
#[test]
fn a_failed_first_up_that_started_nothing_does_not_fix_the_shape() {
    let lab = TestLab::new("etcd", 3);
    let holder = std::net::TcpListener::bind(("127.0.0.1", lab.ports.base + 2)).unwrap();
    let out = lab.run(&["up", "--config", lab.config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&(lab.ports.base + 2).to_string()),
        "the taken port is named: {} (exit {:?}, stdout: {})",
        text(&out.stderr),
        out.status,
        text(&out.stdout)
    );
    drop(holder);
    assert!(!lab.lab_dir().join("state.json").exists(), "no lab was left behind");
    let out = lab.run(&["up", "--config", lab.config.to_str().unwrap(), "--nodes", "5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lab.status()["nodes"].as_array().unwrap().len(), 5);
}

#[test]
fn a_closed_stdout_pipe_ends_the_cli_quietly() {
    let lab = TestLab::new("etcd", 3);
    std::fs::create_dir_all(lab.lab_dir()).unwrap();
    let line = "{\"ts\":\"2026-11-21T14:00:00Z\",\"mono_ms\":1,\"kind\":\"note\",\"message\":\"hello\"}\n";
    std::fs::write(lab.lab_dir().join("events.jsonl"), line.repeat(20000)).unwrap();
    let mut child = lab.cmd(&["events"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take()); // the reader goes away, like `| head`
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(13), "ends by SIGPIPE like other Unix tools; stderr: {err}");
}

/// A CLI whose daemon closes the socket mid-request (an `up` whose daemon gave up and exited
/// while the CLI asked it to `down`: seen in CI, 1 run in 12 here) must get an error, not die
/// of SIGPIPE with nothing said. The CLI keeps SIGPIPE ignored while it runs — only a closed
/// stdout ends it by SIGPIPE (the test above).
#[test]
fn the_cli_ignores_sigpipe_so_a_daemon_that_hangs_up_cannot_kill_it() {
    let lab = TestLab::new("etcd", 3);
    std::fs::create_dir_all(lab.lab_dir()).unwrap();
    let line = "{\"ts\":\"2026-11-21T14:00:00Z\",\"mono_ms\":1,\"kind\":\"note\",\"message\":\"hello\"}\n";
    std::fs::write(lab.lab_dir().join("events.jsonl"), line).unwrap();
    let mut child = lab.cmd(&["events", "--follow"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let lines = LineReader::of(&mut child);
    // Running main's code by now: it printed the timeline and follows it.
    let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lines.wait_for_line("hello", std::time::Duration::from_secs(10))));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.is_ok(), "events --follow printed the timeline");
    let status = status.unwrap();
    let ignored = status.lines().find_map(|l| l.strip_prefix("SigIgn:")).map(|m| u64::from_str_radix(m.trim(), 16).unwrap()).unwrap();
    assert_ne!(ignored & (1 << (13 - 1)), 0, "SIGPIPE (13) is ignored by the running CLI: SigIgn {ignored:#x}");
}

#[test]
fn rendered_haproxy_configs_pass_haproxy_check() {
    use roachlab::config::{EngineKind, LabSpec, Overrides};
    let dir = tempfile::Builder::new().prefix("rlh").tempdir_in("/tmp").unwrap();
    let lab = roachlab::lab::Lab::new(dir.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for engine in [EngineKind::Cockroach, EngineKind::Etcd] {
        let spec = LabSpec::load(None, &Overrides { engine: Some(engine), nodes: Some(5), ..Default::default() }).unwrap();
        let e = roachlab::engine::for_spec(&spec);
        let backends: Vec<_> = (1..=5).map(|id| roachlab::haproxy::Backend::new(id, &e.node_ports(id))).collect();
        let bin = roachlab::haproxy::binary(&spec.haproxy).expect("haproxy installed (scripts/install-deps)");
        // The installed release (Debian 12: 2.6), so its own keywords are checked by it too.
        let version = rt.block_on(roachlab::haproxy::version(&bin));
        assert!(version.is_some(), "`haproxy -v` is read");
        let text = roachlab::haproxy::render(&lab, &spec.haproxy, &spec.security, e.as_ref(), &backends, version).unwrap();
        assert_eq!(text.contains("httpclient.ssl.verify none"), version >= Some((2, 6)), "{version:?}");
        let cfg = dir.path().join(format!("{engine}.cfg"));
        rt.block_on(roachlab::haproxy::write_validated(&bin, &cfg, &text)).unwrap_or_else(|e| panic!("{engine}: {e}"));
        // A broken config is refused with HAProxy's own words, and the good file stays.
        let err = rt
            .block_on(roachlab::haproxy::write_validated(&bin, &cfg, &text.replace("balance roundrobin", "balance sideways")))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("is invalid") && msg.contains("balance only supports") && msg.contains(".cfg.partial:"), "{msg}");
        assert!(!msg.contains("[NOTICE]"), "only HAProxy's alerts: {msg}");
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);
    }
}

/// Issue 10, defects 7 and 8: huge durations neither panic the daemon nor the CLI.
#[test]
fn huge_durations_are_refused_or_bounded_never_a_panic() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    // The CLI refuses an absurd grace before anything is sent or signalled.
    let out = lab.run(&["node", "stop", "3", "--grace=99999999999999h"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("longer than roachlab accepts (at most 7days)"), "{}", text(&out.stderr));
    assert_eq!(lab.node(3)["state"], "running", "nothing was signalled");
    // An API client that sends one anyway gets a stop, not a panicked request task.
    let socket = roachlab::lab::Lab::new(lab.lab_dir()).unwrap().socket();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body = roachlab::api::StopRequest { grace_ms: Some(u64::MAX / 4), no_drain: false };
    let res = rt.block_on(roachlab::api::Client::new(&socket).stream("/v1/nodes/3/stop", &body, |_| {}));
    assert!(res.is_ok(), "{res:?}");
    assert!(lab.node(3)["pid"].is_null(), "node 3 stopped");
    let ev = lab.events();
    assert!(ev.iter().any(|e| e["kind"] == "node_signalled" && e["node"] == 3), "the signal is in the timeline");
    // `events --since` further back than the calendar goes means every event.
    let all = lab.ok(&["events", "--since", "99999999999999h"]);
    assert!(all.contains("node 3: sent SIGTERM"), "{all}");
    // Scenario files get the same bound, with the place of the value.
    let file = lab.dir.path().join("huge.toml");
    std::fs::write(&file, "name = \"huge\"\n\n[[step]]\naction = \"stop\"\nnode = 2\ngrace = \"99999999999999h\"\n").unwrap();
    let out = lab.run(&["drill", "run", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("huge.toml:") && err.contains("grace:") && err.contains("at most 7days"), "{err}");
}

/// Issue 10: a hung daemon is described as observed; a bad flag is blamed on the flag.
#[test]
fn a_hung_daemon_is_described_and_flags_are_blamed_for_their_own_values() {
    let lab = TestLab::new("etcd", 3);
    let out = lab.run(&["up", "--config", lab.config.to_str().unwrap(), "--nodes", "500"]);
    let err = text(&out.stderr);
    assert!(err.contains("--nodes: 500: a lab has 1 to 64 nodes"), "{err}");
    lab.up();
    let daemon: roachlab::process::ProcIdentity = serde_json::from_value(lab.state()["daemon"].clone()).unwrap();
    roachlab::process::signal_pid(&daemon, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let out = lab.run(&["status"]);
    roachlab::process::signal_pid(&daemon, nix::sys::signal::Signal::SIGCONT).unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("connected, but no answer within 2 s; daemon pid {} is stopped (SIGSTOP?)", daemon.pid)), "{err}");
    assert!(lab.ok(&["status"]).contains("running"), "resumed, it answers again");
}

/// A lab directory with a space and non-ASCII letters: every path written into HAProxy's,
/// Prometheus' and Alertmanager's configs is quoted, so the whole lab comes up and goes down.
#[test]
fn a_lab_directory_with_a_space_and_non_ascii_letters_works() {
    let mut lab = TestLab::new("etcd", 3);
    lab.lab_name = "a space/ü ß".into();
    let out = lab.ok(&["up", "--config", lab.config.to_str().unwrap(), "--monitoring"]);
    assert!(out.contains("haproxy: running") && out.contains("prometheus: running"), "{out}");
    let cfg = std::fs::read_to_string(lab.lab_dir().join("haproxy.cfg")).unwrap();
    assert!(cfg.contains(&format!("stats socket '{}'", lab.lab_dir().join("haproxy.sock").display())), "{cfg}");
    let s = lab.status();
    assert!(s["nodes"].as_array().unwrap().iter().all(|n| n["backend"] == "UP"), "{s}");
    let procs = lab.recorded_processes();
    lab.ok(&["down"]);
    wait_for("every process gone", std::time::Duration::from_secs(20), || procs.iter().all(|p| !p.is_alive()).then_some(()));
}
