//! Runs a drill: the bank workload throughout, the scenario's steps through the daemon's API,
//! phases marked as it goes, and the cluster restored at the end whatever happened (a failed
//! step, a timeout, Ctrl-C). Then the bank check, the per-phase measurements and the
//! expectations, written to `DIR/runs/<time>-<drill>/`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::load::Load;
use super::metrics;
use super::model::{DrillOptions, DrillResult, StepKind};
use super::predict;
use super::scenario::Scenario;
use super::steps::Ctx;
use crate::api::{Client, StatusReport};
use crate::events::Event;
use crate::lab::Lab;
use crate::state::LabState;
use crate::workload;
use crate::{Error, Result};

/// The signals that interrupt a drill like Ctrl-C does — SIGTERM (CI timeouts, `kill`) and
/// SIGHUP (a closed terminal or ssh session) too. Installed for the drill's whole length, so
/// none of them kills the process before the cluster is restored and the report written.
struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn new() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |k: SignalKind| signal(k).map_err(|e| Error::io("cannot install the drill's signal handlers", e));
        Ok(Self { int: install(SignalKind::interrupt())?, term: install(SignalKind::terminate())?, hup: install(SignalKind::hangup())? })
    }

    /// The next interrupting signal's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// Waits until no range is under-replicated, so the baseline measures a healthy cluster: a
/// fresh CockroachDB cluster reports every range under-replicated for tens of seconds after
/// `init` while it up-replicates (v20.1.5, 2 cores: ~40 s; contract §5), and the bank's splits
/// add ranges. Engines without the figure (etcd) pass at once. Errors after 180 s, saying how
/// many are left.
async fn wait_fully_replicated(client: &Client, say: &mut (dyn FnMut(String) + Send)) -> Result<()> {
    const LIMIT: Duration = Duration::from_secs(180);
    let start = Instant::now();
    let mut said = false;
    loop {
        let s: StatusReport = client.get("/v1/status").await?;
        let left = s.cluster.ranges_underreplicated.unwrap_or(0);
        if left == 0 {
            if said {
                say(format!("  every range fully replicated after {:.0} s", start.elapsed().as_secs_f64()));
            }
            return Ok(());
        }
        if !said {
            say(format!(
                "  waiting for {left} under-replicated range(s) to up-replicate before the baseline (at most {} s)",
                LIMIT.as_secs()
            ));
            said = true;
        }
        if start.elapsed() > LIMIT {
            return Err(Error::Refused(format!(
                "{left} range(s) are still under-replicated after {} s: the drill would measure a cluster that is already \
                 degraded. Check `roachlab status --ranges` (a stopped node? too few nodes for the replication factor?)",
                LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `scenario` against the lab's daemon. `say` receives progress lines.
pub async fn run(
    lab: &Lab,
    client: &Client,
    scenario: &Scenario,
    opts: &DrillOptions,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<DrillResult> {
    let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
    let engine = crate::engine::for_lab(&state.spec, lab);
    // The load, read (a script parsed) before anything runs.
    let load = Load::new(engine.workload_url(&state.spec), &scenario.workload)?;
    let stamp = workload::utc_stamp();
    let run_dir = lab.runs_dir().join(format!("{stamp}-{}", scenario.name));
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(format!("cannot create {}", run_dir.display()), e))?;

    let status: StatusReport = client.get("/v1/status").await?;
    let members = status.nodes.iter().filter(|n| !n.decommissioned).count();
    let theory = engine.quorum_rule(members);
    say(format!("drill {}: {}", scenario.name, scenario.description));
    let expect: Vec<_> = scenario.expect.iter().filter(|e| e.applies_to(&status.engine)).collect();
    for line in theory.iter().chain(expect.iter().map(|e| &e.text)) {
        say(format!("  expect: {line}"));
    }

    // The workload, through HAProxy, for the whole drill.
    let w = &scenario.workload;
    load.init().await?;
    wait_fully_replicated(client, say).await?;
    // A drill on a degraded lab measures something else: say so loudly and record it.
    let mut warnings = Vec::new();
    let before: StatusReport = client.get("/v1/status").await?;
    let lab_members: Vec<_> = before.nodes.iter().filter(|n| !n.decommissioned).collect();
    let down: Vec<String> = lab_members
        .iter()
        .filter(|n| n.pid.is_none() || !n.ready)
        .map(|n| format!("node {} is {}", n.id, if n.pid.is_none() { n.state.as_str() } else { "not ready" }))
        .collect();
    if !down.is_empty() {
        let w = format!(
            "the lab is degraded before the drill ({}): the baseline measures {} of {} node(s); `roachlab node start` them first for a fair baseline",
            down.join(", "),
            lab_members.len() - down.len(),
            lab_members.len()
        );
        say(format!("WARNING: {w}"));
        warnings.push(w);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let commits = Arc::new(workload::commits::CommitClock::new(t0));
    let wopts = workload::RunOptions {
        concurrency: w.concurrency,
        duration: Duration::from_secs(24 * 3600),
        max_rate: 0.0,
        json: false,
        tolerate_errors: true,
        seed: Some(opts.seed),
        progress: Duration::from_secs(1),
        style: workload::Style::Cockroach,
        quiet: true,
        commits: Some(commits.clone()),
    };
    let t0_mono = crate::events::mono_ms();
    let (wdir, wstop, workers) = (run_dir.clone(), stop.clone(), load.clone());
    let running =
        tokio::spawn(async move { workload::run_workers(workers.op_name(), &wopts, &wdir, wstop, move |i| workers.worker(i)).await });

    // The live view's file (the console follows it), rewritten every second until the end.
    let shared_marks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let live = tokio::spawn(super::live::run(super::live::Feed {
        drill: scenario.name.clone(),
        run_dir: run_dir.clone(),
        t0,
        t0_mono_ms: t0_mono,
        events_file: lab.events_file(),
        expect: expect.iter().map(|e| (*e).clone()).collect(),
        marks: shared_marks.clone(),
        stop: stop.clone(),
    }));

    let mut signals = Interrupts::new()?;
    let mut ctx = Ctx {
        client: client.clone(),
        opts,
        rng: fastrand::Rng::with_seed(opts.seed),
        last: None,
        downed: Vec::new(),
        t0,
        marks: Vec::new(),
        failures: Vec::new(),
        log: Vec::new(),
        predictions: Vec::new(),
        pending_prediction: None,
        pending: crate::fault::Pending::default(),
        commits,
        last_fault: None,
        line: 0,
        say,
        shared_marks,
        client_url: {
            let engine = engine.clone();
            Arc::new(move |host: &str, port: u16| Some(engine.client_url(host, port)).filter(|u| u.starts_with("postgresql://")))
        },
        sql_results: Vec::new(),
    };
    ctx.phase("baseline");
    let interrupted = {
        let steps = async {
            tokio::time::sleep(opts.baseline).await;
            for step in &scenario.steps {
                ctx.line = step.line;
                if let Err(e) = ctx.step(&step.action).await {
                    ctx.failures.push(format!("step at line {}: {e}", step.line));
                    (ctx.say)(format!("    step at line {} failed: {e}", step.line));
                    return;
                }
            }
        };
        tokio::select! {
            _ = steps => None,
            sig = signals.recv() => Some(sig),
        }
    };
    if let Some(sig) = interrupted {
        ctx.failures.push(format!("interrupted ({sig})"));
        (ctx.say)(format!("── interrupted ({sig}): restoring the cluster and writing the report"));
    }
    // Restore the cluster, whatever happened: through a new daemon if this one is gone (it
    // re-adopts the running nodes). Further signals are held off until the report is written.
    // Operations from here on belong to the `restore` phase, so the phases add up to the run.
    let end = ctx.now_ms();
    ctx.phase("restore");
    let restorable = match ctx.status().await {
        Ok(s) => Ok(s),
        Err(e) => {
            (ctx.say)(format!("── the daemon did not answer ({e}); starting a new one to restore the cluster"));
            match crate::launch::ensure_daemon(lab).await {
                Ok(c) => {
                    ctx.client = c;
                    ctx.status().await
                }
                Err(e) => Err(e),
            }
        }
    };
    match restorable {
        // Every pending fault recovered through its lifecycle, then anything left over.
        Ok(_) => ctx.restore().await,
        Err(e) => ctx.failures.push(format!("could not restore the cluster: {e}")),
    }
    stop.store(true, Ordering::Relaxed);
    let summary = running.await.map_err(|e| Error::Refused(format!("the workload task failed: {e}")))??;
    // The restore phase ends when the workload has stopped, not when the restore did: an
    // operation started between the two still belongs to a phase (seen in CI: 776 of 777).
    let stopped_at = ctx.now_ms();
    if let Some(m) = ctx.marks.last_mut() {
        m.end_ms = stopped_at;
    }
    let (marks, failures, steps, sql_results, end_ms) =
        (ctx.marks, ctx.failures, ctx.log, ctx.sql_results, ctx.t0.elapsed().as_millis() as u64);
    // Each prediction holds until the next fault or recovery step.
    let mut predictions = ctx.predictions;
    for p in &mut predictions {
        p.until_ms = steps
            .iter()
            .filter(|l| matches!(l.kind, StepKind::Fault | StepKind::Recovery) && l.at_ms > p.at_ms)
            .map(|l| l.at_ms)
            .min()
            .unwrap_or(end);
    }

    // What survived.
    let ops = workload::read_ops(&run_dir)?;
    // Right after the restore the cluster may not answer yet (a heal's first connection can
    // be closed): retried until it does, bounded.
    let checked = load.check(&ops, say).await;
    let read_events = || -> Vec<Event> {
        std::fs::read_to_string(lab.events_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|e: &Event| e.mono_ms >= t0_mono)
            .collect()
    };
    let mut events = read_events();
    // With monitoring, the alerts the faults raised resolve some seconds after the restore
    // (Prometheus scrapes and evaluates, Alertmanager notifies): wait for them, bounded.
    let open = super::alerts::unresolved(&events, t0_mono);
    if open > 0 && status.monitoring.is_some() {
        say(format!("── waiting up to {} s for {open} alert(s) to resolve", super::alerts::SETTLE_WAIT.as_secs()));
        let start = std::time::Instant::now();
        while super::alerts::unresolved(&events, t0_mono) > 0 && start.elapsed() < super::alerts::SETTLE_WAIT {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            events = read_events();
        }
    }
    let baseline = marks.first().map(|m| {
        let secs = m.end_ms.saturating_sub(m.start_ms) as f64 / 1000.0;
        ops.iter().filter(|o| o.outcome == workload::Outcome::Ok && o.start_ms < m.end_ms).count() as f64 / secs.max(0.001)
    });
    let phases = metrics::compute(&marks, &ops, &events, t0_mono, baseline.unwrap_or(0.0));
    let alerts = super::alerts::timings(&marks, &events, t0_mono);
    let series = metrics::series(&ops, &events, t0_mono, end_ms, members as u64);
    let markers = crate::chart::markers(&events, |e| {
        let at = e.mono_ms.checked_sub(t0_mono)?;
        (at <= end_ms).then_some(at as f64 / 1000.0)
    });
    let story = super::story::tell(&phases, &events, t0_mono);
    let expectations = expect
        .iter()
        .map(|e| e.evaluate(&phases, &alerts))
        .chain(predictions.iter().map(|p| predict::check(p, &ops)))
        .chain(sql_results)
        .collect();
    let _ = summary;
    let result = DrillResult {
        schema: "roachlab-drill-result/1".into(),
        drill: scenario.name.clone(),
        description: scenario.description.clone(),
        engine: status.engine.clone(),
        started_at: stamp,
        seed: opts.seed,
        interrupted: interrupted.map(str::to_string),
        warnings,
        theory,
        predictions,
        story,
        phases,
        expectations,
        failures,
        steps,
        check: checked.bank,
        query_check: checked.query,
        series,
        markers,
        alerts,
        monitored: status.monitoring.is_some(),
        run_dir: run_dir.clone(),
    };
    std::fs::copy(lab.events_file(), run_dir.join("events.jsonl")).ok();
    super::report::write(&result)?;
    let _ = live.await;
    let finished = super::live::LiveDrill {
        drill: result.drill.clone(),
        pid: std::process::id(),
        t0_mono_ms: t0_mono,
        phases: super::live::phases(&result.phases.iter().map(|p| p.mark.clone()).collect::<Vec<_>>()),
        expectations: result.expectations.iter().map(Into::into).collect(),
        finished: Some(super::live::Finished {
            passed: result.passed(),
            verdict: super::report::verdict(&result),
            report: run_dir.join("report.html"),
        }),
    };
    let _ = super::live::write(&run_dir, &finished);
    Ok(result)
}
