//! The bank workload against a real PostgreSQL server started by the test.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;
use crate::pg::PgServer;

fn server() -> Option<PgServer> {
    let s = PgServer::start();
    if s.is_none() {
        skipped("no PostgreSQL server binaries (apt-get install postgresql)", "bank workload tests");
    }
    s
}

#[test]
fn bank_init_run_check_under_concurrency() {
    let Some(pg) = server() else { return };
    let lab = TestLab::new("cockroach", 3); // only its --dir is used: the workload logs live there
    let url = pg.url();
    let out = lab.ok(&["workload", "init", "bank", "--rows", "200", "--url", &url]);
    assert!(out.contains("200 accounts at balance 0"), "{out}");
    let out = lab.ok(&["workload", "run", "bank", "--url", &url, "--concurrency", "8", "--duration", "2s", "--seed", "7"]);
    assert!(out.starts_with("_elapsed___errors__ops/sec(inst)___ops/sec(cum)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)"), "{out}");
    assert!(out.contains("__result: ok "), "{out}");
    let ok: u64 = out.split("__result: ok ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert!(ok > 0, "{out}");
    // Contended accounts (200 of them, 8 workers) make PostgreSQL serialize; nothing fails.
    assert!(out.contains(", fail 0, ambiguous 0,"), "{out}");
    let check = lab.ok(&["workload", "check", "bank", "--url", &url]);
    assert!(check.contains(&format!("last run: {ok} ok all present: yes")), "{check}");
    assert!(check.contains("total balance 0") && check.ends_with("check passed\n"), "{check}");
}

#[test]
fn a_corrupted_balance_fails_the_check_naming_the_account() {
    let Some(pg) = server() else { return };
    let lab = TestLab::new("cockroach", 3);
    let url = pg.url();
    lab.ok(&["workload", "init", "bank", "--rows", "50", "--url", &url]);
    lab.ok(&["workload", "run", "bank", "--url", &url, "--concurrency", "2", "--duration", "1s"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = roachlab::workload::bank_sql::connect(&url, Duration::from_secs(10)).await.unwrap();
        c.batch_execute("UPDATE bank.bank SET balance = balance + 7 WHERE id = 13").await.unwrap();
    });
    let out = lab.run(&["workload", "check", "bank", "--url", &url]);
    assert_eq!(out.status.code(), Some(1));
    let text = text(&out.stdout);
    assert!(text.contains("VIOLATION: the total balance is 7, not 0"), "{text}");
    assert!(text.contains("VIOLATION: account 13: balance"), "{text}");
}

#[test]
fn the_workload_reconnects_across_a_server_restart_and_the_check_confirms_its_outcomes() {
    let Some(mut pg) = server() else { return };
    let lab = TestLab::new("cockroach", 3);
    let url = pg.url();
    lab.ok(&["workload", "init", "bank", "--rows", "500", "--url", &url]);
    // Restart once the workload is moving.
    let run = lab.start_bank_run(&["--url", &url, "--concurrency", "4", "--duration", "6s"]);
    let last = || roachlab::workload::last_run_dir(&lab.lab_dir(), "bank");
    pg.stop();
    std::thread::sleep(Duration::from_millis(500)); // the server stays down for a moment on purpose
    pg.start_again();
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "--tolerate-errors exits 0");
    let lines: Vec<Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("NDJSON")).collect();
    let summary = &lines.last().unwrap()["summary"];
    let counts = &summary["counts"];
    assert!(lines[..lines.len() - 1].iter().all(|t| t["ops_per_sec_inst"].is_number() && t["p99_ms"].is_number()));
    assert!(counts["reconnects"].as_u64().unwrap() >= 4, "every worker reconnects: {summary}");
    // Transactions the restart cut before COMMIT are retried on a new connection (ok + a
    // retry); only one cut during COMMIT would be ambiguous.
    assert!(counts["retries"].as_u64().unwrap() >= 1, "the restart is absorbed by retries on new connections: {summary}");
    let after = counts["ok"].as_u64().unwrap();
    let ticks: Vec<Value> =
        std::fs::read_to_string(last().unwrap().join("ticks.ndjson")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(ticks.last().unwrap()["ops_per_sec_inst"].as_f64().unwrap() > 0.0, "throughput recovers after the restart");

    let check = lab.run(&["workload", "check", "bank", "--url", &url, "--json"]);
    assert!(check.status.success(), "{}", text(&check.stdout));
    let report: Value = serde_json::from_str(&text(&check.stdout)).unwrap();
    assert_eq!(report["ok_checked"].as_u64(), Some(after), "every ok transfer of the run was checked");
    assert_eq!(report["fail_checked"], counts["fail"]);
    assert_eq!(
        report["ambiguous_found"].as_u64().unwrap() + report["ambiguous_missing"].as_u64().unwrap(),
        counts["ambiguous"].as_u64().unwrap()
    );
    assert_eq!(report["violations"], serde_json::json!([]));
}

#[test]
fn bad_workload_input_is_a_clear_error() {
    let lab = TestLab::new("cockroach", 3);
    let out = lab.run(&["workload", "run", "bank", "--url", "mysql://127.0.0.1:1"]);
    assert!(
        text(&out.stderr).contains("use postgres://... (CockroachDB, PostgreSQL) or http://... (etcd's client API)"),
        "{}",
        text(&out.stderr)
    );
    let out = lab.run(&["workload", "check", "bank"]);
    assert!(text(&out.stderr).contains("no lab in") && text(&out.stderr).contains("--url"), "{}", text(&out.stderr));
    // Nothing listens on the port: the error names the target.
    let port = (0..100).map(|_| 25000 + fastrand::u16(0..5000)).find(|p| roachlab::ports::is_free(*p)).unwrap();
    let out = lab.run(&["workload", "init", "bank", "--url", &format!("postgres://postgres@127.0.0.1:{port}/postgres")]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&format!("127.0.0.1:{port}")), "{}", text(&out.stderr));
}

#[test]
fn etcd_bank_survives_a_member_killed_mid_run() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    let out = lab.ok(&["workload", "init", "bank", "--rows", "100"]);
    assert!(out.contains("100 accounts at balance 0"), "{out}");
    let run = lab.start_bank_run(&["--concurrency", "4", "--duration", "6s"]);
    // Each worker has its own connection through HAProxy's round robin, so one of the four
    // is on node 2; on-marked-down shutdown-sessions cuts it.
    lab.ok(&["node", "kill", "2"]);
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let counts = lines.last().unwrap()["summary"]["counts"].clone();
    assert!(counts["ok"].as_u64().unwrap() > 0, "{counts}");
    assert!(counts["reconnects"].as_u64().unwrap() >= 1, "the worker on node 2 reconnects: {counts}");
    let ticks = &lines[..lines.len() - 1];
    assert!(ticks.last().unwrap()["ops_per_sec_inst"].as_f64().unwrap() > 0.0, "transfers continue on two members: {ticks:?}");
    let check = lab.run(&["workload", "check", "bank", "--json"]);
    let report: Value = serde_json::from_str(&text(&check.stdout)).unwrap();
    assert!(check.status.success(), "{report}");
    assert_eq!(report["total_balance"], 0);
    assert_eq!(report["ok_checked"], counts["ok"]);
    assert_eq!(report["violations"], serde_json::json!([]));

    // `workload init` right after a kill: until HAProxy's checks mark the node DOWN it still
    // routes new connections there and closes them when the node refuses. Three inits in a
    // row take three connections of the round robin, so one starts on the killed node; each
    // retries on a new connection and succeeds.
    lab.ok(&["node", "start", "2"]);
    lab.ok(&["node", "kill", "3"]);
    for round in 1..=3 {
        let out = lab.run(&["workload", "init", "bank", "--rows", "100"]);
        assert!(out.status.success(), "round {round}: {}{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stdout).contains("100 accounts at balance 0"), "round {round}: {}", text(&out.stdout));
    }
}

#[test]
fn tpcb_runs_and_its_counts_agree_with_the_tables() {
    let Some(pg) = server() else { return };
    let lab = TestLab::new("cockroach", 3);
    let url = pg.url();
    let out = lab.ok(&["workload", "init", "tpcb", "--scale", "1", "--url", &url]);
    assert!(out.contains("scale 1: 1 branches, 10 tellers, 100000 accounts"), "{out}");
    let out = lab.ok(&["workload", "run", "tpcb", "--clients", "4", "--duration", "2s", "--progress", "500ms", "--url", &url]);
    let progress = out.lines().filter(|l| l.starts_with("progress: ")).count();
    assert!(progress >= 3, "a progress line every 500 ms: {out}");
    assert!(out.contains("transaction type: <builtin: TPC-B (sort of)>") && out.contains("scaling factor: 1"), "{out}");
    let processed: i64 = out.split("number of transactions actually processed: ").nth(1).unwrap().lines().next().unwrap().parse().unwrap();
    assert!(processed > 0);
    assert!(out.contains("number of failed transactions: 0 (0.000%)"), "{out}");
    let check = lab.ok(&["workload", "check", "tpcb", "--url", &url, "--json"]);
    let v: Value = serde_json::from_str(&check).unwrap();
    let t = &v["totals"];
    assert_eq!(t["history_rows"].as_i64(), Some(processed), "one history row per committed transaction");
    assert_eq!(t["sum_abalance"], t["sum_delta"]);
    assert_eq!(t["sum_tbalance"], t["sum_delta"]);
    assert_eq!(t["sum_bbalance"], t["sum_delta"]);
    assert_eq!(v["violations"], serde_json::json!([]));

    // With COMMIT pipelined behind the statements (one round trip): the same accounting.
    let out = lab.ok(&["workload", "run", "tpcb", "--one-round-trip", "--clients", "4", "--duration", "2s", "--url", &url]);
    let more: i64 = out.split("number of transactions actually processed: ").nth(1).unwrap().lines().next().unwrap().parse().unwrap();
    assert!(more > 0 && out.contains("number of failed transactions: 0 (0.000%)"), "{out}");
    let v: Value = serde_json::from_str(&lab.ok(&["workload", "check", "tpcb", "--url", &url, "--json"])).unwrap();
    let t = &v["totals"];
    assert_eq!(t["history_rows"].as_i64(), Some(processed + more), "one history row per committed transaction, both modes");
    assert_eq!(t["sum_abalance"], t["sum_delta"]);
    assert_eq!(t["sum_bbalance"], t["sum_delta"]);
    assert_eq!(v["violations"], serde_json::json!([]));
    let refused = lab.run(&["workload", "run", "bank", "--one-round-trip", "--duration", "1s", "--url", &url]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("--one-round-trip applies to tpcb only"), "{}", text(&refused.stderr));
}

/// `workload check bank` while the workload still writes reads accounts and history at one
/// revision: never a false violation (two reads at their own revisions showed transfers in
/// the history whose balances were not yet read, or the other way round).
#[test]
fn an_etcd_check_during_a_run_sees_one_revision() {
    let lab = TestLab::new("etcd", 3);
    lab.up();
    lab.ok(&["workload", "init", "bank", "--rows", "20"]);
    let mut load = lab.start_bank_run(&["--duration", "0", "--concurrency", "8"]);
    for _ in 0..5 {
        let out = lab.run(&["workload", "check", "bank", "--json"]);
        let report: Value = serde_json::from_str(&text(&out.stdout)).unwrap_or_else(|_| panic!("{}", text(&out.stderr)));
        assert_eq!(report["violations"], serde_json::json!([]), "a check during the run: {report}");
        assert_eq!(report["total_balance"], 0);
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(load.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    load.wait().unwrap();
}
