//! The watcher on a real etcd cluster, and its behaviour against endpoints that stall.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use roachlab::config::{EngineKind, LabSpec, Overrides};
use roachlab::engine::{self, Member};
use roachlab::process::ProcIdentity;
use serde_json::Value;

use crate::helpers::*;

fn position(events: &[Value], pred: impl Fn(&Value) -> bool, what: &str) -> usize {
    events.iter().position(pred).unwrap_or_else(|| panic!("no {what} in the timeline: {events:#?}"))
}

#[test]
fn killing_the_leader_then_a_second_member_is_recorded_in_order() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let leader = wait_for("a leader", Duration::from_secs(10), || lab.status()["cluster"]["leader"].as_u64());
    let s = lab.status();
    assert_eq!(s["cluster"]["has_leader"], true);
    let q = &s["cluster"]["quorum"];
    assert_eq!((q["up"].as_u64(), q["needed"].as_u64(), q["ok"].as_bool()), (Some(3), Some(2), Some(true)), "{q}");
    assert!(
        q["detail"].as_str().unwrap_or("").contains("linearizable reads answered through node(s) 1, 2, 3"),
        "observed, not counted: {q}"
    );
    assert_eq!(s["nodes"][leader as usize - 1]["is_leader"], true);

    lab.ok(&["node", "kill", &leader.to_string()]);
    let new_leader =
        wait_for("a new leader", Duration::from_secs(15), || lab.status()["cluster"]["leader"].as_u64().filter(|l| *l != leader));
    wait_for("HAProxy DOWN", Duration::from_secs(10), || (lab.node(leader)["backend"] == "DOWN").then_some(()));
    // `status` can show the new leader before the timeline writer has appended the event
    // (seen under load): wait for the events, not one read of the file.
    let ev = wait_for("the leader change in the timeline", Duration::from_secs(10), || {
        let ev = lab.events();
        ev.iter().any(|e| e["kind"] == "leader_changed" && e["to"] == new_leader).then_some(ev)
    });
    let exited = position(&ev, |e| e["kind"] == "node_exited" && e["node"] == leader, "leader exit");
    let down = position(&ev, |e| e["kind"] == "backend_state" && e["node"] == leader && e["state"] == "DOWN", "HAProxy DOWN");
    // The old leader goes (directly to the new one, or to none while an election runs),
    // then the new leader is recorded.
    let lost = position(&ev, |e| e["kind"] == "leader_changed" && e["from"] == leader, "the old leader's departure");
    let elected = position(&ev, |e| e["kind"] == "leader_changed" && e["to"] == new_leader, "the new leader");
    assert!(exited < down && exited <= lost && lost <= elected, "order: exit {exited}, down {down}, leader lost {lost}, elected {elected}");
    for w in ev.windows(2) {
        assert!(
            w[0]["ts"].as_str() <= w[1]["ts"].as_str() && w[0]["mono_ms"].as_u64() <= w[1]["mono_ms"].as_u64(),
            "timeline out of order"
        );
    }
    assert!(!ev.iter().any(|e| e["kind"] == "quorum_lost"), "one member down of three keeps quorum");

    // A second member down: quorum lost.
    let other = [1u64, 2, 3].into_iter().find(|n| *n != leader && *n != new_leader).unwrap();
    lab.ok(&["node", "kill", &other.to_string()]);
    wait_for("quorum_lost", Duration::from_secs(10), || {
        lab.events().iter().any(|e| e["kind"] == "quorum_lost" && e["up"] == 1 && e["needed"] == 2).then_some(())
    });
    let s = lab.status();
    assert_eq!(s["cluster"]["quorum"]["ok"], false);
    wait_for("no leader", Duration::from_secs(15), || (lab.status()["cluster"]["has_leader"] == false).then_some(()));

    // One back: regained, and a leader again.
    lab.ok(&["node", "start", &other.to_string()]);
    wait_for("quorum_regained", Duration::from_secs(30), || {
        lab.events().iter().any(|e| e["kind"] == "quorum_regained" && e["up"] == 2).then_some(())
    });
    wait_for("a leader again", Duration::from_secs(15), || lab.status()["cluster"]["leader"].as_u64());
    let text = lab.ok(&["events", "--since", "10m"]);
    assert!(text.contains("QUORUM LOST: 1 of 3 member(s) answering, a majority needs 2 connected: no linearizable read answered"), "{text}");
    assert!(text.contains("quorum regained"), "{text}");
    let json = lab.ok(&["events", "--json"]);
    assert_eq!(json.lines().count(), lab.events().len());
    assert!(lab.ok(&["events", "--since", "0s"]).trim().is_empty(), "--since 0s shows nothing older than now");
}

#[test]
fn a_stopped_member_stalls_neither_status_nor_the_watcher() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let n3: ProcIdentity = serde_json::from_value(lab.state()["nodes"][2]["process"].clone()).unwrap();
    // SIGSTOP: the kernel still accepts connections on its ports, nothing ever answers.
    roachlab::process::signal(&n3, nix::sys::signal::Signal::SIGSTOP).unwrap();
    struct Cont(ProcIdentity);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = roachlab::process::signal(&self.0, nix::sys::signal::Signal::SIGCONT);
        }
    }
    let _cont = Cont(n3);
    wait_for("node 3 not ready", Duration::from_secs(10), || (lab.node(3)["ready"] == false).then_some(()));
    assert_eq!(lab.node(3)["ready_detail"], "timed out");
    // The watcher keeps going: a kill elsewhere is seen, exit and HAProxy DOWN alike.
    lab.ok(&["node", "kill", "1"]);
    wait_for("HAProxy DOWN for node 1", Duration::from_secs(10), || (lab.node(1)["backend"] == "DOWN").then_some(()));
    let out = lab.ok(&["status"]);
    assert!(out.contains("not ready: timed out"), "{out}");
}

/// A listener that accepts connections and never answers.
fn stalling_listener() -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        l.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            match l.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, h)
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_and_observation_give_up_on_a_stalled_endpoint() {
    let (port, _h) = stalling_listener();
    let client = engine::http_client(Duration::from_millis(500));
    for kind in [EngineKind::Cockroach, EngineKind::Etcd] {
        let spec = LabSpec::load(None, &Overrides { engine: Some(kind), ..Default::default() }).unwrap();
        let e = engine::for_spec(&spec);
        let member = Member { id: 1, ports: roachlab::node::NodePorts::loopback(port, port, Some(port)), engine_id: None };
        let start = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(10), engine::probe_readiness(e.as_ref(), &client, &format!("127.0.0.1:{port}")))
            .await
            .expect("probe returns");
        assert!(!r.ready);
        assert_eq!(r.detail.as_deref(), Some("timed out"));
        let obs = tokio::time::timeout(Duration::from_secs(10), e.observe(&client, &[member], &[member])).await.expect("observe returns");
        // The node's own quorum probe (etcd: linearizable read; CockroachDB: SQL) gave up too,
        // and says so: a stalled node does not see quorum.
        assert_eq!(obs.nodes.get(&1).and_then(|f| f.sees_quorum), Some(false), "{kind:?}: {obs:?}");
        assert_eq!(obs.cluster.quorum.as_ref().map(|q| q.ok), Some(false), "{kind:?}");
        assert!(obs.cluster.ranges.is_none() && obs.cluster.leader.is_none(), "{kind}: nothing observed from a stalled node");
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn events_follow_prints_new_events_and_prometheus_lists_the_nodes() {
    use std::io::BufRead;
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let mut follow = lab.cmd(&["events", "--follow", "--since", "0s"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    lab.ok(&["node", "kill", "3"]);
    let seen = wait_for("the kill in the followed timeline", Duration::from_secs(10), || {
        rx.try_iter().find(|l| l.contains("node 3: exited (SIGKILL)"))
    });
    assert!(seen.contains("exited (SIGKILL)"));
    let _ = follow.kill();
    let _ = follow.wait();

    let prom = lab.ok(&["prometheus"]);
    assert!(prom.contains("job_name: etcd") && prom.contains("metrics_path: /metrics"), "{prom}");
    let p = lab.ports;
    assert!(prom.contains(&format!("'127.0.0.1:{}', '127.0.0.1:{}', '127.0.0.1:{}'", p.base, p.base + 1, p.base + 2)), "{prom}");
    assert!(prom.contains(&format!("targets: ['127.0.0.1:{}']", p.stats)), "{prom}");
    // HAProxy's exporter answers there.
    let (code, body) = http_get(p.stats, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("haproxy_"));
}

/// `status` shows no figure it has not observed since the lab last changed: right after `up`
/// a verdict is either observed on the lab as it is or withheld; after pausing every member
/// no node is "ready" and quorum is not "ok" until a poll round has seen them paused, and then
/// the verdict is the observed one (lost).
#[test]
fn status_shows_no_figure_it_has_not_observed_since_the_last_change() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let s = lab.status();
    if s["observed"]["current"] == true {
        assert_eq!(s["cluster"]["quorum"]["ok"], true, "observed on three running members: {s}");
    } else {
        assert!(s["cluster"]["quorum"].is_null() && s["cluster"]["leader"].is_null(), "withheld, not stale: {s}");
        assert!(lab.ok(&["status"]).contains("not observed yet"));
    }
    for n in ["1", "2", "3"] {
        lab.ok(&["node", "pause", n]);
    }
    let s = lab.status();
    let nodes = s["nodes"].as_array().unwrap();
    assert!(nodes.iter().all(|n| n["ready"] == false), "no paused node shown ready: {s}");
    assert_eq!(nodes[2]["ready_unobserved"], true, "node 3 was paused a moment ago: {s}");
    assert_ne!(s["cluster"]["quorum"]["ok"], true, "no stale 'quorum ok': {s}");
    let text = lab.ok(&["status"]);
    assert!(!text.contains("quorum ok"), "{text}");
    // Once a round has seen the paused members, the verdict is the observed one.
    let s = wait_for("an observation of the paused lab", Duration::from_secs(20), || {
        let s = lab.status();
        (s["observed"]["current"] == true).then_some(s)
    });
    assert_eq!(s["cluster"]["quorum"]["ok"], false, "{s}");
    for n in ["1", "2", "3"] {
        lab.ok(&["node", "resume", n]);
    }
    wait_for("the lab whole again", Duration::from_secs(30), || {
        let s = lab.status();
        (s["observed"]["current"] == true && s["cluster"]["quorum"]["ok"] == true).then_some(())
    });
}
