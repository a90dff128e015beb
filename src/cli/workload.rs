//! `roachlab workload …`: init, run and check the bank and tpcb workloads, through the lab's
//! HAProxy or any `--url`.

use std::time::Duration;

use clap::Subcommand;

use crate::lab::Lab;
use crate::state::LabState;
use crate::{Error, Result};

/// Workloads roachlab can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadName {
    /// Transfers between accounts, as `cockroach workload bank`, with a history to check.
    Bank,
    /// pgbench's TPC-B-like transaction and schema.
    Tpcb,
    /// Your own: `init` runs a SQL file (your schema), `run` a script in pgbench's script
    /// language (`\set` with random functions, `:name`, `\sleep`, BEGIN … COMMIT), `check` a
    /// query that must return true. Needs --file.
    Script,
}

#[derive(Debug, Subcommand)]
pub enum WorkloadCommand {
    /// Create the workload's schema and data (replacing any).
    Init {
        name: WorkloadName,
        /// tpcb: pgbench's scale factor (100000 accounts per unit).
        #[arg(long, default_value_t = 10)]
        scale: i64,
        /// bank: accounts.
        #[arg(long, default_value_t = 1000)]
        rows: i64,
        /// Bytes of payload per account.
        #[arg(long, default_value_t = 100)]
        payload_bytes: usize,
        /// Ranges to split the accounts into (CockroachDB).
        #[arg(long, default_value_t = 10)]
        ranges: i64,
        /// Target instead of the lab's HAProxy frontend, e.g. postgres://user@127.0.0.1:5432/db.
        #[arg(long)]
        url: Option<String>,
        /// script: the SQL file to run as it stands (e.g. workloads/stations-schema.sql).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Run it, printing per-second stats; every operation is logged under DIR/workloads/.
    Run {
        name: WorkloadName,
        /// Concurrent workers, each with its own connection.
        #[arg(long, visible_alias = "clients", default_value_t = 8)]
        concurrency: usize,
        /// Interval of the progress lines.
        #[arg(long, default_value = "1s", value_parser = crate::config::parse_duration)]
        progress: Duration,
        /// How long to run; 0 runs until interrupted (Ctrl-C), as `cockroach workload` does.
        #[arg(long, default_value = "60s", value_parser = parse_run_duration)]
        duration: Duration,
        /// Operations per second across all workers (0: unlimited).
        #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
        max_rate: f64,
        /// Exit 0 even when operations failed.
        #[arg(long)]
        tolerate_errors: bool,
        /// Timeout of each statement and of COMMIT.
        #[arg(long, default_value = "5s", value_parser = crate::config::parse_duration)]
        op_timeout: Duration,
        /// NDJSON: one object per second and a final summary.
        #[arg(long)]
        json: bool,
        /// Seed for the transfers chosen (random when absent).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        url: Option<String>,
        /// tpcb: send COMMIT in the same round trip as BEGIN and the statements (pgbench's
        /// pipeline mode does the same). Faster, but a connection lost once COMMIT is sent
        /// makes the transaction `ambiguous` instead of a retry.
        #[arg(long)]
        one_round_trip: bool,
        /// script: the script to run (e.g. workloads/stations.sql); parse errors are reported
        /// as file:line:col before anything runs.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// script: a query that must return true after the run (else exit 1); default: the
        /// script's `-- check: SELECT …` line, if any.
        #[arg(long)]
        check: Option<String>,
    },
    /// Check the data and the last run's log: exits non-zero on any violation, naming it.
    Check {
        name: WorkloadName,
        #[arg(long)]
        url: Option<String>,
        /// bank: check this run's operation log instead of the last `workload run`'s: a drill's
        /// run (its directory name under DIR/runs/, e.g. 20261205T012947Z-quorum-loss, or its
        /// path) or a workload run's (under DIR/workloads/bank/).
        #[arg(long)]
        run: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// script: the script whose `-- check:` line to run.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// script: the query to run instead (it must return true).
        #[arg(long)]
        check: Option<String>,
    },
}

/// Where a workload runs: a PostgreSQL-wire server, or etcd's KV API.
enum Target {
    Sql(String),
    Etcd(String),
}

/// The workload's target: `--url`, else the lab's HAProxy client frontend.
fn workload_target(lab: &Lab, url: Option<String>) -> Result<Target> {
    let url = match url {
        Some(u) => u,
        None => {
            let state = LabState::load(&lab.state_file())?.ok_or_else(|| {
                Error::Refused(format!(
                    "no lab in {} and no --url: start a lab with `roachlab up`, or pass --url postgres://... or --url http://<etcd>",
                    lab.dir().display()
                ))
            })?;
            crate::engine::for_lab(&state.spec, lab).workload_url(&state.spec)
        }
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Target::Sql(url))
    } else if url.starts_with("http://") || url.starts_with("https://") {
        Ok(Target::Etcd(url))
    } else {
        Err(Error::Refused(format!("{url}: use postgres://... (CockroachDB, PostgreSQL) or http://... (etcd's client API)")))
    }
}

/// A flag set by Ctrl-C: a run finishes its operations in flight and prints its summary.
/// `--duration`: like every duration, but 0 means "until interrupted".
fn parse_run_duration(s: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 60s or 5m: {e}"))?;
    if d.is_zero() {
        return Ok(crate::config::MAX_DURATION);
    }
    crate::config::check_duration(d).map_err(|e| format!("`{s}`: {e}"))
}

/// `--max-rate`: a finite number of operations per second, 0 or more.
fn parse_rate(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("`{s}` is not a rate: give operations per second, 0 or more (0: unlimited)")),
    }
}

fn stop_on_ctrl_c() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    stop
}

/// The directory of run `r`: a path holding `ops.jsonl`, or a name under `DIR/runs/` (a
/// drill's) or `DIR/workloads/bank/` (a `workload run`'s).
fn run_dir(lab: &Lab, r: &str) -> Result<std::path::PathBuf> {
    let candidates = [std::path::PathBuf::from(r), lab.runs_dir().join(r), lab.dir().join("workloads").join("bank").join(r)];
    candidates.into_iter().find(|d| d.join("ops.jsonl").is_file()).ok_or_else(|| {
        Error::Refused(format!(
            "no run `{r}` with an operation log (ops.jsonl): give a drill run's directory name under {} (see `ls {}`) or a path",
            lab.runs_dir().display(),
            lab.runs_dir().display()
        ))
    })
}

/// The URL of a PostgreSQL-wire target, for workloads that only speak SQL (tpcb).
fn require_sql(target: Target) -> Result<String> {
    match target {
        Target::Sql(url) => Ok(url),
        Target::Etcd(url) => {
            Err(Error::Refused(format!("{url}: tpcb runs on PostgreSQL-wire servers (CockroachDB, PostgreSQL), not etcd")))
        }
    }
}

/// A `workload init` of this lab's own cluster (no `--url`) takes the lab's guard against a
/// drill or another init running ([`crate::exclusive::Exclusive`]).
fn init_guard(lab: &Lab, command: &WorkloadCommand) -> Result<Option<crate::exclusive::Exclusive>> {
    match command {
        WorkloadCommand::Init { name, url: None, .. } if lab.state_file().exists() => {
            let what = match name {
                WorkloadName::Bank => "workload init bank",
                WorkloadName::Tpcb => "workload init tpcb",
                WorkloadName::Script => "workload init script",
            };
            crate::exclusive::Exclusive::take(lab, what).map(Some)
        }
        _ => Ok(None),
    }
}

/// `--file` and `--check` belong to `script`, which needs `--file` (or, for `check`, either).
fn script_flags(command: &WorkloadCommand) -> Result<()> {
    let (name, file, check) = match command {
        WorkloadCommand::Init { name, file, .. } => (name, file, &None),
        WorkloadCommand::Run { name, file, check, .. } | WorkloadCommand::Check { name, file, check, .. } => (name, file, check),
    };
    match name {
        WorkloadName::Script if file.is_none() && !(check.is_some() && matches!(command, WorkloadCommand::Check { .. })) => {
            Err(Error::Refused("script needs --file FILE (e.g. --file workloads/stations.sql)".into()))
        }
        WorkloadName::Bank | WorkloadName::Tpcb if file.is_some() || check.is_some() => {
            Err(Error::Refused("--file and --check apply to `script`, your own workload".into()))
        }
        _ => Ok(()),
    }
}

/// The check after a script's run, or of `workload check script`: exit 0 when it returns true.
async fn script_check(url: &str, query: &str) -> Result<i32> {
    match crate::workload::script::check(url, query).await? {
        None => {
            println!("check passed: {query}");
            Ok(0)
        }
        Some(why) => {
            println!("VIOLATION: check failed: {why}");
            Ok(1)
        }
    }
}

/// `work` with a spinner and its elapsed time on a terminal (a tpcb init at scale 10 takes
/// minutes); nothing extra elsewhere.
async fn busy<T>(what: &str, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let activity = crate::reporter::Activity::new(std::io::IsTerminal::is_terminal(&std::io::stdout()), what);
    let r = work.await;
    activity.finish();
    r
}

pub async fn run(lab: &Lab, command: WorkloadCommand) -> Result<i32> {
    use crate::workload::{self, bank_etcd, bank_sql, script, tpcb};
    script_flags(&command)?;
    // A script is parsed before anything runs, so its errors cost nothing.
    let script = match &command {
        WorkloadCommand::Run { name: WorkloadName::Script, file: Some(f), .. }
        | WorkloadCommand::Check { name: WorkloadName::Script, file: Some(f), .. } => Some(std::sync::Arc::new(script::load(f)?)),
        _ => None,
    };
    let _guard = init_guard(lab, &command)?;
    match command {
        WorkloadCommand::Init { name: WorkloadName::Script, url, file, .. } => {
            let url = require_sql(workload_target(lab, url)?)?;
            let file = file.expect("checked by script_flags");
            busy("workload init script", script::run_file(&url, &file)).await?;
            println!("script: ran {}", file.display());
            Ok(0)
        }
        WorkloadCommand::Check { name: WorkloadName::Script, run: Some(_), .. } => {
            Err(Error::Refused("--run applies to bank: a script's check is a query on the tables, not an operation log".into()))
        }
        WorkloadCommand::Check { name: WorkloadName::Script, url, check, .. } => {
            let url = require_sql(workload_target(lab, url)?)?;
            let query = check
                .or_else(|| script.as_ref().and_then(|s| s.check.clone()))
                .ok_or_else(|| Error::Refused("the script has no `-- check: SELECT …` line: give the query with --check".into()))?;
            script_check(&url, &query).await
        }
        WorkloadCommand::Init { name: WorkloadName::Tpcb, scale, url, .. } => {
            let url = require_sql(workload_target(lab, url)?)?;
            if scale < 1 {
                return Err(Error::Refused("--scale must be at least 1".into()));
            }
            busy("workload init tpcb", tpcb::init(&url, scale)).await?;
            println!("tpcb: scale {scale}: {scale} branches, {} tellers, {} accounts", 10 * scale, 100_000 * scale);
            Ok(0)
        }
        WorkloadCommand::Check { name: WorkloadName::Tpcb, run: Some(_), .. } => {
            Err(Error::Refused("--run applies to bank: tpcb's check compares the tables' sums, not an operation log".into()))
        }
        WorkloadCommand::Check { name: WorkloadName::Tpcb, url, json, run: None, .. } => {
            let url = require_sql(workload_target(lab, url)?)?;
            let totals = tpcb::totals(&url).await?;
            let violations = totals.violations();
            if json {
                println!("{}", serde_json::json!({ "totals": totals, "violations": violations }));
            } else {
                println!(
                    "{} history rows; deltas sum to {}; accounts {}, tellers {}, branches {}",
                    totals.history_rows, totals.sum_delta, totals.sum_abalance, totals.sum_tbalance, totals.sum_bbalance
                );
                for v in &violations {
                    println!("VIOLATION: {v}");
                }
                if violations.is_empty() {
                    println!("check passed");
                }
            }
            Ok(if violations.is_empty() { 0 } else { 1 })
        }
        WorkloadCommand::Init { name: WorkloadName::Bank, rows, payload_bytes, ranges, url, .. } => {
            if rows < 2 || ranges < 1 {
                return Err(Error::Refused("--rows must be at least 2 and --ranges at least 1".into()));
            }
            match workload_target(lab, url)? {
                Target::Sql(url) => {
                    let d =
                        busy("workload init bank", bank_sql::init(&url, &bank_sql::InitOptions { rows, payload_bytes, ranges })).await?;
                    let split = if d == bank_sql::Dialect::CockroachDb { format!(", split into {ranges} ranges") } else { String::new() };
                    println!("bank: {rows} accounts at balance 0{split}");
                }
                Target::Etcd(url) => {
                    busy("workload init bank", bank_etcd::init(&url, rows)).await?;
                    println!("bank: {rows} accounts at balance 0 (etcd keys under /roachlab/bank/)");
                }
            }
            Ok(0)
        }
        WorkloadCommand::Run {
            name,
            concurrency,
            progress,
            duration,
            max_rate,
            tolerate_errors,
            op_timeout,
            json,
            seed,
            url,
            one_round_trip,
            check,
            ..
        } => {
            if one_round_trip && !matches!(name, WorkloadName::Tpcb) {
                return Err(Error::Refused("--one-round-trip applies to tpcb only (bank sends its COMMIT on its own)".into()));
            }
            if concurrency == 0 {
                return Err(Error::Refused("--concurrency (--clients) must be at least 1".into()));
            }
            let target = workload_target(lab, url)?;
            let check_url = match &target {
                Target::Sql(u) => Some(u.clone()),
                Target::Etcd(_) => None,
            };
            // What runs: the rows' label, the output style, and one worker per client.
            type Make = Box<dyn Fn(usize) -> Box<dyn workload::Worker>>;
            let (label, dir, style, make): (&str, &str, workload::Style, Make) = match name {
                WorkloadName::Bank => {
                    let rows = match &target {
                        Target::Sql(url) => bank_sql::rows(url).await,
                        Target::Etcd(url) => bank_etcd::rows(url).await,
                    }
                    .map_err(|e| Error::Refused(format!("{e}; run `roachlab workload init bank` first")))?;
                    if rows < 2 {
                        return Err(Error::Refused(format!(
                            "a bank needs at least 2 accounts, not {rows}; run `roachlab workload init bank`"
                        )));
                    }
                    let make = move |_| {
                        let transferer = match &target {
                            Target::Sql(url) => Box::new(bank_sql::SqlTransferer::new(url, op_timeout)) as Box<dyn workload::Transferer>,
                            Target::Etcd(url) => Box::new(bank_etcd::EtcdTransferer::new(url, op_timeout)),
                        };
                        Box::new(workload::BankWorker { rows, transferer }) as Box<dyn workload::Worker>
                    };
                    ("transfer", "bank", workload::Style::Cockroach, Box::new(make))
                }
                WorkloadName::Tpcb => {
                    let url = require_sql(target)?;
                    let scale =
                        tpcb::scale(&url).await.map_err(|e| Error::Refused(format!("{e}; run `roachlab workload init tpcb` first")))?;
                    if scale < 1 {
                        return Err(Error::Refused("pgbench_branches is empty; run `roachlab workload init tpcb` first".into()));
                    }
                    let make =
                        move |_| Box::new(tpcb::TpcbWorker::new(&url, scale, op_timeout, one_round_trip)) as Box<dyn workload::Worker>;
                    ("tpcb", "tpcb", workload::Style::Pgbench { scale }, Box::new(make))
                }
                WorkloadName::Script => {
                    let url = require_sql(target)?;
                    let script = script.clone().expect("parsed above");
                    let make =
                        move |i| Box::new(script::ScriptWorker::new(&url, script.clone(), i, op_timeout)) as Box<dyn workload::Worker>;
                    ("script", "script", workload::Style::Cockroach, Box::new(make))
                }
            };
            let run_dir = workload::new_run_dir(lab.dir(), dir)?;
            let opts = workload::RunOptions {
                concurrency,
                duration,
                max_rate,
                json,
                tolerate_errors,
                seed,
                progress,
                style,
                quiet: false,
                commits: None,
            };
            let stop = stop_on_ctrl_c();
            let summary = workload::run_workers(label, &opts, &run_dir, stop.clone(), make).await?;
            // Interrupted: the summary is printed, and the exit code says so (128 + SIGINT).
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(130);
            }
            let errors = if summary.counts.errors() > 0 && !tolerate_errors { 1 } else { 0 };
            // A script's check, against what the run left.
            let query = check.or_else(|| script.as_ref().and_then(|s| s.check.clone()));
            if let (Some(q), Some(url)) = (query, check_url) {
                return Ok(script_check(&url, &q).await?.max(errors));
            }
            Ok(errors)
        }
        WorkloadCommand::Check { name: WorkloadName::Bank, url, json, run, .. } => {
            let target = workload_target(lab, url)?;
            let dir = match &run {
                Some(r) => Some(run_dir(lab, r)?),
                None => workload::last_run_dir(lab.dir(), "bank"),
            };
            let ops = match dir {
                Some(dir) => workload::read_ops(&dir)?,
                None => Vec::new(),
            };
            let report = workload::check::until_answered(
                workload::check::CHECK_PATIENCE,
                || async {
                    match &target {
                        Target::Sql(url) => bank_sql::check(url, &ops).await,
                        Target::Etcd(url) => bank_etcd::check(url, &ops).await,
                    }
                },
                |e| eprintln!("bank check: the cluster did not answer ({}); retrying", crate::events::printable(&e.to_string())),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report).expect("serializes"));
            } else {
                print!("{}", report.describe());
            }
            Ok(if report.violations.is_empty() { 0 } else { 1 })
        }
    }
}
