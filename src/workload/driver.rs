//! The protocol-neutral driver: each worker owns a [`Worker`] (its connection, which it
//! re-establishes itself); one collector task owns the HDR histograms, prints the per-second
//! lines and writes every operation to the run's log.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::commits;
use super::output::{pgbench_progress_line, pgbench_summary, summary_block, tick_line, TICK_HEADER};
use super::record::{Counts, OpDetail, OpRecord, OpResult, Outcome, Summary, Tick, Transfer};
use crate::{Error, Result};

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

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
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
            mono_ms: crate::events::mono_ms(),
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
