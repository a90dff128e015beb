//! #24: your own workload in pgbench's script language, on a real PostgreSQL (and CockroachDB
//! in `cockroach.rs`): the shipped stations example runs and its check passes, a failing
//! check fails the command, parse errors come back as file:line:col before anything runs,
//! and a server restart mid-run is absorbed as reconnects.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;
use crate::pg::PgServer;

fn server() -> Option<PgServer> {
    let s = PgServer::start();
    if s.is_none() {
        skipped("no PostgreSQL server binaries (apt-get install postgresql)", "script workload tests");
    }
    s
}

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_stations_script_runs_its_transactions_and_its_check_passes_or_fails() {
    let Some(pg) = server() else { return };
    let lab = TestLab::new("cockroach", 3); // only its --dir is used: the run logs live there
    let url = pg.url();
    let out = lab.ok(&["workload", "init", "script", "--file", &repo("workloads/stations-schema.sql"), "--url", &url]);
    assert!(out.contains("script: ran"), "{out}");
    let stations = repo("workloads/stations.sql");
    let out = lab.ok(&["workload", "run", "script", "--file", &stations, "--url", &url, "--clients", "4", "--duration", "3s"]);
    // The check line of the script ran after the run.
    assert!(out.contains("check passed: SELECT (SELECT COALESCE(sum(readings), 0) FROM stations)"), "{out}");
    assert!(out.contains("_elapsed") && out.contains("script"), "cockroach workload's columns: {out}");
    // Every line of the log is one run of the script: two transactions, both committed.
    let dir = roachlab::workload::last_run_dir(&lab.lab_dir(), "script").expect("a run dir");
    let ops = roachlab::workload::read_ops(&dir).unwrap();
    assert!(ops.len() > 20, "{} runs", ops.len());
    for op in &ops {
        assert_eq!(op.detail, roachlab::workload::OpDetail::Script(roachlab::workload::ScriptOp { transactions: 2, committed: 2 }));
    }
    let check = lab.ok(&["workload", "check", "script", "--file", &stations, "--url", &url]);
    assert!(check.starts_with("check passed"), "{check}");

    // A check that does not hold fails the command, saying what came back.
    let out = lab.run(&["workload", "run", "script", "--file", &stations, "--url", &url, "--duration", "1s", "--check", "SELECT false"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("VIOLATION: check failed: `SELECT false` returned false"), "{}", text(&out.stdout));
    let out = lab.run(&["workload", "check", "script", "--url", &url, "--check", "SELECT count(*) FROM stations"]);
    assert!(!out.status.success() && text(&out.stderr).contains("must return a boolean"), "{}", text(&out.stderr));
}

#[test]
fn a_script_that_does_not_parse_is_refused_at_its_line_and_column_before_anything_runs() {
    let lab = TestLab::new("cockroach", 3);
    let file = lab.dir.path().join("bad.sql");
    std::fs::write(&file, "\\set id random(1, 100)\nBEGIN;\nUPDATE t SET n = n + 1 WHERE id = :idd;\nCOMMIT;\n").unwrap();
    // No server at this URL: a parse error comes first.
    let out = lab.run(&["workload", "run", "script", "--file", file.to_str().unwrap(), "--url", "postgres://root@127.0.0.1:1/x"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}:3:35: variable :idd is read before any `\\set idd", file.display())), "{err}");
    let out = lab.run(&["workload", "run", "script", "--url", "postgres://root@127.0.0.1:1/x"]);
    assert!(!out.status.success() && text(&out.stderr).contains("script needs --file FILE"), "{}", text(&out.stderr));
    let out = lab.run(&["workload", "run", "bank", "--file", file.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out.stderr).contains("apply to `script`"), "{}", text(&out.stderr));
}

#[test]
fn a_script_run_reconnects_across_a_server_restart_and_its_check_still_holds() {
    let Some(mut pg) = server() else { return };
    let lab = TestLab::new("cockroach", 3);
    let url = pg.url();
    lab.ok(&["workload", "init", "script", "--file", &repo("workloads/stations-schema.sql"), "--url", &url]);
    let stations = repo("workloads/stations.sql");
    let run = lab.start_workload_run("script", &["--file", &stations, "--url", &url, "--clients", "4", "--duration", "6s"]);
    pg.stop();
    std::thread::sleep(Duration::from_millis(500)); // the server stays down for a moment on purpose
    pg.start_again();
    let out = run.wait_with_output().unwrap();
    let lines: Vec<Value> = text(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let counts = &lines.iter().rev().find(|l| l.get("summary").is_some()).expect("a summary")["summary"]["counts"];
    assert!(counts["reconnects"].as_u64().unwrap() >= 4, "every client reconnects: {counts}");
    assert!(counts["ok"].as_u64().unwrap() > 0, "{counts}");
    // Whatever was cut, a station's counter and its datapoints moved together.
    assert!(text(&out.stdout).contains("check passed"), "{}", text(&out.stdout));
    assert!(out.status.success(), "--tolerate-errors, and the check passed");
}
