//! Workloads that prove what survived: bank transfers whose every outcome is classified and
//! logged, with live per-second stats in the columns of `cockroach workload`, and a check that
//! nothing acknowledged was lost.
//!
//! The driver here is protocol-neutral: each worker owns a [`Transferer`] (its connection,
//! which it re-establishes itself); one collector task owns the HDR histograms, prints the
//! per-second lines and writes every operation to the run's log.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{Error, Result};

/// How long the bank's workers keep a connection: they replace it between operations once it
/// is older, so when HAProxy drains a node (`node stop`), every worker has left it within this
/// time without an error — shorter than the drain's session wait (`timeouts.drain_sessions`,
/// 5 s). The cost is one connect per worker per second.
pub const CONN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(1);

pub mod bank_etcd;
pub mod bank_sql;
pub mod check;
pub mod commits;
pub mod sql;
pub mod tpcb;

/// What became of one operation (the Jepsen terms: ok, fail, info).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Committed and acknowledged.
    Ok,
    /// Definitely not applied (the transaction never reached COMMIT, or was rolled back).
    Fail,
    /// May or may not have been applied: SQLSTATE 40003, or the connection was lost, or the
    /// request timed out, during COMMIT.
    Ambiguous,
}

/// One bank transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: Uuid,
    pub from: i64,
    pub to: i64,
    pub amount: i64,
}

/// What a [`Transferer`] reports for one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpResult {
    pub outcome: Outcome,
    /// Transaction retries after retryable errors (SQLSTATE 40001), not counted as errors.
    pub retries: u32,
    /// New connections made after a lost one, during this operation.
    pub reconnects: u32,
    pub error: Option<String>,
}

/// One TPC-B transaction (pgbench's built-in `tpcb-like` script).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpcbOp {
    pub aid: i64,
    pub bid: i64,
    pub tid: i64,
    pub delta: i64,
}

/// What an operation attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OpDetail {
    Transfer(Transfer),
    Tpcb(TpcbOp),
}

/// One line of a run's operation log (`ops.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRecord {
    #[serde(flatten)]
    pub detail: OpDetail,
    pub outcome: Outcome,
    /// Start, in ms since the run started.
    pub start_ms: u64,
    /// Latency in µs.
    pub latency_us: u64,
    pub retries: u32,
    pub reconnects: u32,
    pub worker: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Performs transfers over one connection, reconnecting as needed.
pub trait Transferer: Send {
    fn transfer<'a>(&'a mut self, t: &'a Transfer) -> BoxFuture<'a, OpResult>;
}

/// One worker of a run: chooses its next operation with `rng` and performs it.
pub trait Worker: Send {
    fn op<'a>(&'a mut self, rng: &'a mut fastrand::Rng) -> BoxFuture<'a, (OpDetail, OpResult)>;
}

/// A bank worker: a random transfer between two distinct accounts of `rows`, amount in
/// [0, 999), as `cockroach workload bank` chooses them.
pub struct BankWorker {
    pub rows: i64,
    pub transferer: Box<dyn Transferer>,
}

impl Worker for BankWorker {
    fn op<'a>(&'a mut self, rng: &'a mut fastrand::Rng) -> BoxFuture<'a, (OpDetail, OpResult)> {
        Box::pin(async move {
            let from = rng.i64(0..self.rows);
            let to = (from + rng.i64(1..self.rows)) % self.rows;
            let t = Transfer { id: Uuid::from_u128(rng.u128(..)), from, to, amount: rng.i64(0..999) };
            let r = self.transferer.transfer(&t).await;
            (OpDetail::Transfer(t), r)
        })
    }
}

/// `workload run` options.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub concurrency: usize,
    pub duration: Duration,
    /// Operations per second across all workers; 0 for no limit.
    pub max_rate: f64,
    /// Print NDJSON instead of the text table.
    pub json: bool,
    /// Exit zero even if operations failed.
    pub tolerate_errors: bool,
    /// Seed for the transfer choices (random when absent).
    pub seed: Option<u64>,
    /// Interval of the progress lines (1 s by default).
    pub progress: Duration,
    /// How to print.
    pub style: Style,
    /// Print nothing (a drill runs the workload in the background and reads its logs).
    pub quiet: bool,
    /// Told when each committed operation began (a drill waits on it for `writes resumed`).
    pub commits: Option<Arc<commits::CommitClock>>,
}

/// The output conventions a workload follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Style {
    /// `cockroach workload`'s per-second table and summary block.
    Cockroach,
    /// pgbench's `progress:` lines and summary, for TPC-B at `scale`.
    Pgbench { scale: i64 },
}

/// Counts of a run (or one second of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub ok: u64,
    pub fail: u64,
    pub ambiguous: u64,
    pub retries: u64,
    pub reconnects: u64,
}

impl Counts {
    /// Counts one operation.
    pub fn add(&mut self, r: &OpRecord) {
        match r.outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Ambiguous => self.ambiguous += 1,
        }
        self.retries += r.retries as u64;
        self.reconnects += r.reconnects as u64;
    }

    /// Errors as `cockroach workload` counts them: operations that did not succeed.
    pub fn errors(&self) -> u64 {
        self.fail + self.ambiguous
    }
}

/// One per-second line (`--json` prints it as is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    pub elapsed_s: f64,
    pub errors: u64,
    pub ops_per_sec_inst: f64,
    pub ops_per_sec_cum: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub pmax_ms: f64,
    /// Mean and standard deviation of this interval's latencies (pgbench's `lat`, `stddev`).
    pub mean_ms: f64,
    pub stddev_ms: f64,
    pub retries: u64,
    pub reconnects: u64,
    pub ambiguous: u64,
}

/// The result of a run (`--json` prints it as `{"summary": ...}`; `summary.json` in the run dir).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub workload: String,
    pub elapsed_s: f64,
    pub counts: Counts,
    pub ops_per_sec: f64,
    pub avg_ms: f64,
    pub stddev_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub pmax_ms: f64,
    /// The directory holding `ops.jsonl`, `ticks.ndjson` and `summary.json`.
    pub run_dir: PathBuf,
}

/// The text header of the per-second table (contract §6, plus roachlab's three counters).
pub const TICK_HEADER: &str =
    "_elapsed___errors__ops/sec(inst)___ops/sec(cum)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)__retries_reconns___ambig";

/// Formats one per-second row like `cockroach workload`.
pub fn tick_line(t: &Tick, name: &str) -> String {
    format!(
        "{:7.1}s {:8} {:14.1} {:14.1} {:8.1} {:8.1} {:8.1} {:8.1} {:8} {:8} {:7} {name}",
        t.elapsed_s,
        t.errors,
        t.ops_per_sec_inst,
        t.ops_per_sec_cum,
        t.p50_ms,
        t.p95_ms,
        t.p99_ms,
        t.pmax_ms,
        t.retries,
        t.reconnects,
        t.ambiguous
    )
}

/// A pgbench progress line: `progress: 5.0 s, 1479.4 tps, lat 5.404 ms stddev 2.032, 0 failed`,
/// plus roachlab's retried, reconnects and ambiguous counts.
pub fn pgbench_progress_line(t: &Tick) -> String {
    format!(
        "progress: {:.1} s, {:.1} tps, lat {:.3} ms stddev {:.3}, {} failed, {} retried, {} reconnects, {} ambiguous",
        t.elapsed_s,
        t.ops_per_sec_inst,
        t.mean_ms,
        t.stddev_ms,
        t.errors - t.ambiguous,
        t.retries,
        t.reconnects,
        t.ambiguous
    )
}

/// pgbench's summary for a TPC-B run.
pub fn pgbench_summary(s: &Summary, scale: i64, clients: usize) -> String {
    let total = s.counts.ok + s.counts.errors();
    let pct = |n: u64| if total == 0 { 0.0 } else { 100.0 * n as f64 / total as f64 };
    format!(
        "transaction type: <builtin: TPC-B (sort of)>\n\
         scaling factor: {scale}\n\
         query mode: extended (prepared, pipelined)\n\
         number of clients: {clients}\n\
         duration: {:.0} s\n\
         number of transactions actually processed: {}\n\
         number of failed transactions: {} ({:.3}%)\n\
         number of ambiguous transactions: {} ({:.3}%)\n\
         total number of retries: {}\n\
         number of reconnects: {}\n\
         latency average = {:.3} ms\n\
         latency stddev = {:.3} ms\n\
         tps = {:.6}\n\
         operations logged in {}\n",
        s.elapsed_s,
        s.counts.ok,
        s.counts.fail,
        pct(s.counts.fail),
        s.counts.ambiguous,
        pct(s.counts.ambiguous),
        s.counts.retries,
        s.counts.reconnects,
        s.avg_ms,
        s.stddev_ms,
        s.ops_per_sec,
        s.run_dir.join("ops.jsonl").display()
    )
}

/// The final block, like `cockroach workload`'s, plus the outcome counts.
pub fn summary_block(s: &Summary, name: &str) -> String {
    format!(
        "\n_elapsed___errors_____ops(total)___ops/sec(cum)__avg(ms)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)__total\n\
         {:7.1}s {:8} {:14} {:14.1} {:8.1} {:8.1} {:8.1} {:8.1} {:8.1}  {name}\n\n\
         __result: ok {}, fail {}, ambiguous {}, retries {}, reconnects {}\n\
         operations logged in {}\n",
        s.elapsed_s,
        s.counts.errors(),
        s.counts.ok + s.counts.errors(),
        s.ops_per_sec,
        s.avg_ms,
        s.p50_ms,
        s.p95_ms,
        s.p99_ms,
        s.pmax_ms,
        s.counts.ok,
        s.counts.fail,
        s.counts.ambiguous,
        s.counts.retries,
        s.counts.reconnects,
        s.run_dir.join("ops.jsonl").display()
    )
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// The current UTC time as `YYYYMMDDTHHMMSSZ`, for naming run directories.
pub fn utc_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", now.year(), now.month() as u8, now.day(), now.hour(), now.minute(), now.second())
}

/// A fresh run directory `DIR/workloads/<name>/<timestamp>/`, recorded as the workload's last
/// run (`DIR/workloads/<name>/last`) for `workload check`.
pub fn new_run_dir(lab_dir: &Path, name: &str) -> Result<PathBuf> {
    let stamp = utc_stamp();
    let base = lab_dir.join("workloads").join(name);
    let mut dir = base.join(&stamp);
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = base.join(format!("{stamp}-{n}"));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    std::fs::write(base.join("last"), dir.display().to_string()).map_err(|e| Error::io("cannot record the last run", e))?;
    Ok(dir)
}

/// The last run directory of a workload, from `DIR/workloads/<name>/last`.
pub fn last_run_dir(lab_dir: &Path, name: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(lab_dir.join("workloads").join(name).join("last")).ok()?;
    Some(PathBuf::from(text.trim()))
}

/// Reads a run's operation log.
pub fn read_ops(run_dir: &Path) -> Result<Vec<OpRecord>> {
    let path = run_dir.join("ops.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::ConfigSyntax {
                file: path.display().to_string(),
                line: i + 1,
                col: e.column(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// Runs `opts.concurrency` workers made by `make`, for `opts.duration` (or until `stop` is
/// set), printing per-second stats to stdout and logging every operation in `run_dir`.
/// `name` labels the rows (`transfer`, `tpcb`). Returns the summary.
pub async fn run_workers<F>(name: &str, opts: &RunOptions, run_dir: &Path, stop: Arc<AtomicBool>, make: F) -> Result<Summary>
where
    F: Fn(usize) -> Box<dyn Worker>,
{
    let (tx, mut rx) = mpsc::channel::<OpRecord>(65536);
    let start = Instant::now();
    let deadline = start + opts.duration;
    let per_worker_interval =
        if opts.max_rate > 0.0 { Some(Duration::from_secs_f64(opts.concurrency as f64 / opts.max_rate)) } else { None };
    let seed = opts.seed.unwrap_or_else(|| fastrand::u64(..));
    let mut workers = Vec::new();
    for w in 0..opts.concurrency {
        let mut worker = make(w);
        let tx = tx.clone();
        let stop = stop.clone();
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(w as u64));
        let commits = opts.commits.clone();
        workers.push(tokio::spawn(async move {
            let mut next = Instant::now();
            let mut backoff = Duration::ZERO;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                // After a failure, back off (20 ms doubling to 500 ms) so a dead cluster is
                // not hammered; the first success resets it.
                if !backoff.is_zero() {
                    tokio::time::sleep(backoff).await;
                }
                if let Some(iv) = per_worker_interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += iv;
                }
                let began = Instant::now();
                if let Some(c) = &commits {
                    c.began(w, began);
                }
                let (detail, r) = worker.op(&mut rng).await;
                if let Some(c) = &commits {
                    if r.outcome == Outcome::Ok {
                        c.committed(began);
                    } else {
                        c.failed(Instant::now());
                    }
                    c.ended(w);
                }
                backoff = if r.outcome == Outcome::Ok {
                    Duration::ZERO
                } else {
                    (backoff * 2).clamp(Duration::from_millis(20), Duration::from_millis(500))
                };
                let rec = OpRecord {
                    detail,
                    outcome: r.outcome,
                    start_ms: began.duration_since(start).as_millis() as u64,
                    latency_us: began.elapsed().as_micros() as u64,
                    retries: r.retries,
                    reconnects: r.reconnects,
                    worker: w,
                    error: r.error,
                };
                if tx.send(rec).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);

    let ops_path = run_dir.join("ops.jsonl");
    let mut ops = tokio::io::BufWriter::new(
        tokio::fs::File::create(&ops_path).await.map_err(|e| Error::io(format!("cannot create {}", ops_path.display()), e))?,
    );
    let ticks_path = run_dir.join("ticks.ndjson");
    let mut ticks = tokio::io::BufWriter::new(
        tokio::fs::File::create(&ticks_path).await.map_err(|e| Error::io(format!("cannot create {}", ticks_path.display()), e))?,
    );
    let mut second = new_histogram();
    let mut total = new_histogram();
    let mut counts = Counts::default();
    let mut second_counts = Counts::default();
    let mut lines = 0u64;
    let every = opts.progress.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at((start + every).into(), every);
    let emit_tick = |second: &mut Histogram<u64>, sc: &mut Counts, counts: &Counts| -> Tick {
        let elapsed = start.elapsed().as_secs_f64();
        let t = Tick {
            elapsed_s: elapsed,
            errors: sc.errors(),
            ops_per_sec_inst: sc.ok as f64 / every.as_secs_f64(),
            ops_per_sec_cum: counts.ok as f64 / elapsed.max(1e-9),
            p50_ms: ms(second.value_at_quantile(0.5)),
            p95_ms: ms(second.value_at_quantile(0.95)),
            p99_ms: ms(second.value_at_quantile(0.99)),
            pmax_ms: ms(second.max()),
            mean_ms: second.mean() / 1000.0,
            stddev_ms: second.stdev() / 1000.0,
            retries: sc.retries,
            reconnects: sc.reconnects,
            ambiguous: sc.ambiguous,
        };
        second.reset();
        *sc = Counts::default();
        t
    };
    loop {
        tokio::select! {
            rec = rx.recv() => match rec {
                Some(rec) => {
                    if rec.outcome == Outcome::Ok {
                        let _ = second.record(rec.latency_us.max(1));
                        let _ = total.record(rec.latency_us.max(1));
                    }
                    counts.add(&rec);
                    second_counts.add(&rec);
                    let mut line = serde_json::to_vec(&rec).expect("records serialize");
                    line.push(b'\n');
                    ops.write_all(&line).await.map_err(|e| Error::io(format!("cannot write {}", ops_path.display()), e))?;
                }
                None => break,
            },
            _ = tick.tick() => {
                let t = emit_tick(&mut second, &mut second_counts, &counts);
                let mut json = serde_json::to_string(&t).expect("ticks serialize");
                if opts.quiet {
                } else if opts.json {
                    println!("{json}");
                } else if let Style::Pgbench { .. } = opts.style {
                    println!("{}", pgbench_progress_line(&t));
                } else {
                    if lines % 20 == 0 {
                        println!("{TICK_HEADER}");
                    }
                    println!("{}", tick_line(&t, name));
                }
                json.push('\n');
                // Flushed every second, so drills and watchers can follow a run as it goes.
                let _ = ticks.write_all(json.as_bytes()).await;
                let _ = ticks.flush().await;
                let _ = ops.flush().await;
                lines += 1;
            }
        }
    }
    for w in workers {
        let _ = w.await;
    }
    ops.flush().await.map_err(|e| Error::io(format!("cannot write {}", ops_path.display()), e))?;
    ticks.flush().await.map_err(|e| Error::io(format!("cannot write {}", ticks_path.display()), e))?;
    let elapsed = start.elapsed().as_secs_f64();
    let summary = Summary {
        workload: name.to_string(),
        elapsed_s: elapsed,
        counts,
        ops_per_sec: counts.ok as f64 / elapsed.max(1e-9),
        avg_ms: total.mean() / 1000.0,
        stddev_ms: total.stdev() / 1000.0,
        p50_ms: ms(total.value_at_quantile(0.5)),
        p95_ms: ms(total.value_at_quantile(0.95)),
        p99_ms: ms(total.value_at_quantile(0.99)),
        pmax_ms: ms(total.max()),
        run_dir: run_dir.to_path_buf(),
    };
    let body = serde_json::to_vec_pretty(&summary).expect("summary serializes");
    std::fs::write(run_dir.join("summary.json"), body).map_err(|e| Error::io("cannot write summary.json", e))?;
    if opts.quiet {
    } else if opts.json {
        println!("{}", serde_json::json!({ "summary": summary }));
    } else if let Style::Pgbench { scale } = opts.style {
        print!("{}", pgbench_summary(&summary, scale, opts.concurrency));
    } else {
        print!("{}", summary_block(&summary, name));
    }
    Ok(summary)
}

/// What `check bank` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub accounts: u64,
    pub total_balance: i64,
    pub transfers_in_history: u64,
    /// `ok` transfers of the last run (all must be in the history).
    pub ok_checked: u64,
    /// `fail` transfers of the last run (none may be in the history).
    pub fail_checked: u64,
    /// `ambiguous` transfers of the last run found in / missing from the history.
    pub ambiguous_found: u64,
    pub ambiguous_missing: u64,
    /// Every violation, in words naming what is wrong.
    pub violations: Vec<String>,
}

impl CheckReport {
    /// Compares the client's log of the last run with the history read from the database.
    pub fn compare_log(&mut self, ops: &[OpRecord], history: &std::collections::HashSet<Uuid>) {
        let mut missing_ok = Vec::new();
        let mut applied_fail = Vec::new();
        for op in ops {
            let OpDetail::Transfer(t) = op.detail else { continue };
            let found = history.contains(&t.id);
            match op.outcome {
                Outcome::Ok => {
                    self.ok_checked += 1;
                    if !found {
                        missing_ok.push(t.id);
                    }
                }
                Outcome::Fail => {
                    self.fail_checked += 1;
                    if found {
                        applied_fail.push(t.id);
                    }
                }
                Outcome::Ambiguous if found => self.ambiguous_found += 1,
                Outcome::Ambiguous => self.ambiguous_missing += 1,
            }
        }
        if !missing_ok.is_empty() {
            self.violations.push(format!(
                "{} acknowledged (ok) transfer(s) missing from the history, e.g. {}",
                missing_ok.len(),
                missing_ok.iter().take(3).map(Uuid::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
        if !applied_fail.is_empty() {
            self.violations.push(format!(
                "{} failed transfer(s) applied anyway, e.g. {}",
                applied_fail.len(),
                applied_fail.iter().take(3).map(Uuid::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
    }

    /// A human report.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} accounts, total balance {}, {} transfers in the history\n\
             last run: {} ok all present: {}; {} failed none applied: {}; ambiguous: {} applied, {} not applied\n",
            self.accounts,
            self.total_balance,
            self.transfers_in_history,
            self.ok_checked,
            if self.violations.iter().any(|v| v.contains("acknowledged")) { "NO" } else { "yes" },
            self.fail_checked,
            if self.violations.iter().any(|v| v.contains("applied anyway")) { "NO" } else { "yes" },
            self.ambiguous_found,
            self.ambiguous_missing,
        );
        if self.violations.is_empty() {
            out.push_str("check passed\n");
        } else {
            for v in &self.violations {
                out.push_str(&format!("VIOLATION: {v}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_lines_use_cockroach_workload_columns() {
        let t = Tick {
            elapsed_s: 1.0,
            errors: 0,
            ops_per_sec_inst: 312.0,
            ops_per_sec_cum: 312.0,
            p50_ms: 21.0,
            p95_ms: 44.0,
            p99_ms: 60.8,
            pmax_ms: 88.1,
            mean_ms: 22.0,
            stddev_ms: 3.5,
            retries: 2,
            reconnects: 0,
            ambiguous: 0,
        };
        let line = tick_line(&t, "transfer");
        assert_eq!(
            line,
            "    1.0s        0          312.0          312.0     21.0     44.0     60.8     88.1        2        0       0 transfer"
        );
        assert_eq!(
            pgbench_progress_line(&t),
            "progress: 1.0 s, 312.0 tps, lat 22.000 ms stddev 3.500, 0 failed, 2 retried, 0 reconnects, 0 ambiguous"
        );
        assert!(TICK_HEADER.starts_with("_elapsed___errors__ops/sec(inst)___ops/sec(cum)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)"));
    }

    fn op(outcome: Outcome, n: u128) -> OpRecord {
        OpRecord {
            detail: OpDetail::Transfer(Transfer { id: Uuid::from_u128(n), from: 0, to: 1, amount: 5 }),
            outcome,
            start_ms: 0,
            latency_us: 1,
            retries: 0,
            reconnects: 0,
            worker: 0,
            error: None,
        }
    }

    #[test]
    fn the_log_check_flags_lost_acks_and_applied_failures_and_sorts_ambiguity() {
        let history: std::collections::HashSet<Uuid> = [1, 3, 5].into_iter().map(Uuid::from_u128).collect();
        let ops = vec![
            op(Outcome::Ok, 1),
            op(Outcome::Ok, 2),
            op(Outcome::Fail, 3),
            op(Outcome::Fail, 4),
            op(Outcome::Ambiguous, 5),
            op(Outcome::Ambiguous, 6),
        ];
        let mut r = CheckReport::default();
        r.compare_log(&ops, &history);
        assert_eq!((r.ok_checked, r.fail_checked, r.ambiguous_found, r.ambiguous_missing), (2, 2, 1, 1));
        assert_eq!(r.violations.len(), 2);
        assert!(
            r.violations[0].contains("1 acknowledged (ok) transfer(s) missing")
                && r.violations[0].contains(&Uuid::from_u128(2).to_string())
        );
        assert!(r.violations[1].contains("1 failed transfer(s) applied anyway"));
        let mut clean = CheckReport::default();
        clean.compare_log(&ops[..1], &history);
        assert!(clean.violations.is_empty() && clean.describe().ends_with("check passed\n"));
    }
}
