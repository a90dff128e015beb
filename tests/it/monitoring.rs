//! Monitoring on real Prometheus, Alertmanager, etcd and HAProxy: the rules' promtool tests,
//! a lab's scrape targets and rules, an alert fired by a SIGKILL reaching the timeline and
//! resolving after the restart, timed by a drill, a new member scraped after `node add`, and
//! `down` leaving no monitoring process behind.

use std::time::Duration;

use roachlab::config::EngineKind;
use roachlab::monitoring::{render, MonitoringSpec};
use roachlab::process::ProcIdentity;
use serde_json::Value;

use crate::helpers::*;

fn promtool(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new("promtool").args(args).current_dir(dir).output().expect("promtool is installed (scripts/install-deps)")
}

#[test]
fn every_rule_passes_its_promtool_tests_and_a_broken_rule_file_is_refused_with_promtools_words() {
    for (engine, frontend, job) in
        [(EngineKind::Etcd, "etcd", ("etcd", "/metrics")), (EngineKind::Cockroach, "psql", ("cockroachdb", "/_status/vars"))]
    {
        let dir = tempfile::tempdir().unwrap();
        let view = render::LabView {
            engine,
            dir: dir.path().into(),
            job,
            frontend,
            haproxy_stats_port: 8404,
            haproxy_host: "127.0.0.1".into(),
            members: vec![],
            certs: None,
        };
        std::fs::write(dir.path().join("roachlab.rules.yml"), render::rules_yml(&MonitoringSpec::default(), &view)).unwrap();
        std::fs::write(dir.path().join("test.yml"), roachlab::monitoring::rules::tests(engine)).unwrap();
        let check = promtool(&["check", "rules", "roachlab.rules.yml"], dir.path());
        assert!(check.status.success(), "{engine}: {}{}", text(&check.stdout), text(&check.stderr));
        let out = promtool(&["test", "rules", "test.yml"], dir.path());
        assert!(out.status.success(), "{engine}: promtool test rules failed:\n{}{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stdout).contains("SUCCESS"), "{}", text(&out.stdout));
    }

    // A lab whose extra rule file does not parse: `up` refuses before any node starts, and
    // says what promtool said.
    let lab = TestLab::new("etcd", 3);
    let broken = lab.dir.path().join("broken.rules.yml");
    std::fs::write(&broken, "groups:\n  - name: x\n    rules:\n      - alert: Bad\n        expr: up{job=\n").unwrap();
    let cfg =
        std::fs::read_to_string(&lab.config).unwrap().replace("[monitoring]\n", "[monitoring]\nrule_files = [\"broken.rules.yml\"]\n");
    std::fs::write(&lab.config, cfg).unwrap();
    let out = lab.run(&["up", "--config", lab.config.to_str().unwrap(), "--monitoring"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("promtool check rules") && err.contains("broken.rules.yml"), "{err}");
    assert!(err.contains("parse error") || err.contains("unexpected"), "promtool's own words: {err}");
    if let Ok(state) = std::fs::read_to_string(lab.lab_dir().join("state.json")) {
        let v: Value = serde_json::from_str(&state).unwrap();
        assert!(v["nodes"].as_array().unwrap().iter().all(|n| n["process"].is_null()), "no node started: {v}");
        assert!(v["prometheus"].is_null() && v["haproxy"].is_null(), "{v}");
    }
}

/// A drill file that SIGKILLs `node`, leaves it down past NodeDown's `for:` (12 s), restarts
/// it, and expects NodeDown within 30 s of the kill.
pub(crate) fn node_down_drill(lab: &TestLab, node: u32) -> std::path::PathBuf {
    let file = lab.dir.path().join("alert.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"alert\"\n[[step]]\naction = \"phase\"\nname = \"kill\"\n[[step]]\naction = \"kill\"\nnode = {node}\n\
             [[step]]\naction = \"wait\"\nduration = \"12s\"\n[[step]]\naction = \"start\"\nnode = {node}\n\
             [[expect]]\nphase = \"kill\"\nmetric = \"alert_fired_after_ms\"\nalert = \"NodeDown\"\ncmp = \"<=\"\nvalue = 30000\n\
             text = \"NodeDown fires within its for: plus a scrape and an evaluation\"\n"
        ),
    )
    .unwrap();
    file
}

fn prometheus_get(port: u16, path: &str) -> Value {
    let (code, body) = http_get(port, path).expect("prometheus answers");
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn alert_event<'a>(events: &'a [Value], kind: &str, alert: &str, node: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["kind"] == kind && e["alert"] == alert && e["labels"]["node"] == node)
}

#[test]
fn a_monitored_lab_scrapes_every_member_alerts_on_a_kill_into_the_timeline_and_down_stops_it_all() {
    let lab = TestLab::new("etcd", 3);
    let cfg = std::fs::read_to_string(&lab.config).unwrap();
    // Short `for:` so the test waits seconds, not the lab's 10 s.
    std::fs::write(&lab.config, format!("{cfg}\n[monitoring.for]\nNodeDown = \"4s\"\n")).unwrap();
    let out = lab.ok(&["up", "--config", lab.config.to_str().unwrap(), "--monitoring"]);
    assert!(out.contains("prometheus: running") && out.contains("alertmanager: running"), "{out}");
    let st = lab.state();
    let procs: Vec<ProcIdentity> =
        ["prometheus", "alertmanager"].iter().map(|k| serde_json::from_value(st[*k].clone()).expect("recorded")).collect();
    assert!(procs.iter().all(|p| p.is_alive()));

    // Every target up: 3 members, HAProxy, Prometheus, Alertmanager; the lab's rules loaded.
    let m = wait_for("every target up", Duration::from_secs(30), || {
        let m = lab.status()["monitoring"].clone();
        (m["targets_up"].as_u64() == Some(6) && m["targets_total"].as_u64() == Some(6)).then_some(m)
    });
    assert_eq!(m["rules_loaded"], 6, "{m}");
    assert_eq!(m["firing"], serde_json::json!([]), "{m}");
    let targets = prometheus_get(lab.ports.prometheus, "/api/v1/targets?state=active");
    let nodes: Vec<&str> = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["labels"]["job"] == "etcd")
        .filter_map(|t| t["labels"]["node"].as_str())
        .collect();
    assert_eq!(nodes.len(), 3, "{targets}");
    // HAProxy's exporter serves the series the BackendDown rule reads.
    let q = prometheus_get(lab.ports.prometheus, "/api/v1/query?query=haproxy_server_status%7Bproxy%3D%22etcd%22%2Cstate%3D%22UP%22%7D");
    wait_for("haproxy_server_status scraped", Duration::from_secs(20), || {
        let q =
            prometheus_get(lab.ports.prometheus, "/api/v1/query?query=haproxy_server_status%7Bproxy%3D%22etcd%22%2Cstate%3D%22UP%22%7D");
        (q["data"]["result"].as_array().map(Vec::len) == Some(3)).then_some(())
    });
    drop(q);

    // The webhook takes only Alertmanager's format; text from it never reaches a terminal raw.
    let webhook = roachlab::monitoring::render::WEBHOOK_PATH;
    let evil = r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Evil\u0000\n","node":"99"},"startsAt":"garbage"}]}"#;
    let (code, body) = http_post(lab.ports.webhook, webhook, evil).unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("startsAt"), "{body}");
    let odd = evil.replace("garbage", "2026-12-05T10:00:00Z");
    let (code, body) = http_post(lab.ports.webhook, webhook, &odd).unwrap();
    assert_eq!(code, 200, "well-formed, if odd: {body}");
    let shown = lab.ok(&["alerts"]);
    assert!(!shown.contains('\0') && shown.contains("Evil\\u{0}\\n"), "control characters escaped: {shown:?}");
    assert!(
        lab.events().iter().any(|e| e["kind"] == "warning" && e["message"].as_str().unwrap_or("").contains("names node 99")),
        "an alert about an unknown node is flagged"
    );

    // The daemon dies: a new one re-adopts both servers by identity (same pids) and serves
    // the webhook again, so the alert below reaches the timeline through it.
    let daemon: ProcIdentity = serde_json::from_value(lab.state()["daemon"].clone()).unwrap();
    roachlab::process::signal(&daemon, nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the daemon gone", Duration::from_secs(10), || (!daemon.is_alive()).then_some(()));
    let m = lab.status()["monitoring"].clone();
    assert_eq!(
        (m["prometheus"]["pid"].as_u64(), m["alertmanager"]["pid"].as_u64()),
        (Some(procs[0].pid as u64), Some(procs[1].pid as u64)),
        "{m}"
    );

    // SIGKILL of member 2 → NodeDown{node="2"} fires and reaches the timeline; the restart
    // resolves it. The alert's own times bracket the fault.
    lab.ok(&["node", "kill", "2"]);
    let fired = wait_for("NodeDown firing for node 2", Duration::from_secs(60), || {
        alert_event(&lab.events(), "alert_firing", "NodeDown", "2").cloned()
    });
    let json = lab.ok(&["alerts", "--json"]);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert!(
        report["firing"].as_array().unwrap().iter().any(|a| a["labels"]["alertname"] == "NodeDown" && a["labels"]["node"] == "2"),
        "{report}"
    );
    let ev = lab.events();
    let killed = ev.iter().find(|e| e["kind"] == "node_exited" && e["node"] == 2).expect("the exit").clone();
    assert!(fired["starts_at"].as_str().unwrap() > killed["ts"].as_str().unwrap(), "fired after the kill: {fired} {killed}");
    lab.ok(&["node", "start", "2"]);
    let resolved = wait_for("NodeDown resolved for node 2", Duration::from_secs(60), || {
        alert_event(&lab.events(), "alert_resolved", "NodeDown", "2").cloned()
    });
    assert!(resolved["ends_at"].as_str().unwrap() > resolved["starts_at"].as_str().unwrap(), "{resolved}");
    let text_out = lab.ok(&["alerts"]);
    assert!(
        text_out.contains("alert firing: NodeDown{node=\"2\"}") && text_out.contains("alert resolved: NodeDown{node=\"2\"}"),
        "{text_out}"
    );
    let timeline = lab.ok(&["events", "--since", "10m"]);
    assert!(timeline.contains("alert firing: NodeDown"), "{timeline}");

    // A drill measures it: kill, wait past `for:`, restart; the report times NodeDown.
    let file = node_down_drill(&lab, 3);
    let out = lab.ok(&["drill", "run", file.to_str().unwrap(), "--baseline", "1s"]);
    assert!(out.contains("met:     kill: alert_fired_after_ms(NodeDown) <= 30000"), "{out}");
    assert!(out.contains("alert: NodeDown{node=\"3\"}: fired") && out.contains("resolved"), "{out}");
    let (_, r) = crate::drill::results_of(&out);
    crate::drill::validate(&r);
    let a = r["alerts"].as_array().unwrap().iter().find(|a| a["alert"] == "NodeDown" && a["labels"]["node"] == "3").expect("timed").clone();
    assert_eq!(a["phase"], "kill");
    assert!(a["fired_after_ms"].as_u64().unwrap() >= 4000, "not before its for: {a}");
    assert!(a["resolved_after_ms"].as_u64().unwrap() > a["fired_after_ms"].as_u64().unwrap(), "{a}");
    let html = std::fs::read_to_string(std::path::Path::new(r["run_dir"].as_str().unwrap()).join("report.html")).unwrap();
    assert!(html.contains("<h2>Alerts</h2>") && html.contains("NodeDown{node=\"3\"}: fired"), "the report lists it");

    // A new member becomes a scrape target after the reload.
    lab.ok(&["node", "add"]);
    wait_for("node 4 scraped", Duration::from_secs(30), || {
        let m = lab.status()["monitoring"].clone();
        (m["targets_total"].as_u64() == Some(7) && m["targets_up"].as_u64() == Some(7)).then_some(())
    });
    assert!(lab.events().iter().any(|e| e["kind"] == "monitoring_reloaded"));

    // down stops both servers, by identity; their ports are free again.
    lab.ok(&["down"]);
    for p in &procs {
        wait_for("monitoring process gone", Duration::from_secs(10), || (!p.is_alive()).then_some(()));
    }
    for port in [lab.ports.prometheus, lab.ports.alertmanager, lab.ports.webhook] {
        wait_for("port free", Duration::from_secs(10), || roachlab::ports::is_free(port).then_some(()));
    }
}

#[test]
fn without_monitoring_nothing_of_it_runs() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let s = lab.status();
    assert!(s["monitoring"].is_null(), "{s}");
    assert!(lab.state()["prometheus"].is_null() && lab.state()["alertmanager"].is_null());
    assert!(!lab.lab_dir().join("monitoring").exists());
    let out = lab.run(&["alerts"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("roachlab up --monitoring"), "{}", text(&out.stdout));
    assert!(roachlab::ports::is_free(lab.ports.prometheus));
}
