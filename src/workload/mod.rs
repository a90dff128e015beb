//! Workloads that prove what survived: bank transfers whose every outcome is classified and
//! logged, with live per-second stats in the columns of `cockroach workload`, and a check that
//! nothing acknowledged was lost.
//!
//! Below the engines' workloads (`bank_sql`, `bank_etcd`, `tpcb`, your own `script`, over `sql`): the records
//! of a run (`record`), how it prints (`output`), where it is logged (`runs`), the
//! protocol-neutral driver (`driver`), the commit clock drills wait on (`commits`) and the
//! check of what survived (`check`). They import `record` (the driver also `output` and
//! `commits`), never the engines' workloads above them.

pub mod bank_etcd;
pub mod bank_sql;
pub mod check;
pub mod commits;
mod driver;
mod output;
mod record;
mod runs;
pub mod script;
pub mod sql;
pub mod tpcb;

pub use check::CheckReport;
pub use driver::{run_workers, BankWorker, RunOptions, Style, Transferer, Worker};
pub use output::{pgbench_progress_line, pgbench_summary, summary_block, tick_line, TICK_HEADER};
pub use record::{Counts, OpDetail, OpRecord, OpResult, Outcome, ScriptOp, Summary, Tick, TpcbOp, Transfer};
pub use runs::{last_run_dir, new_run_dir, read_ops, utc_stamp};

/// How long the bank's workers keep a connection: they replace it between operations once it
/// is older, so when HAProxy drains a node (`node stop`), every worker has left it within this
/// time without an error — shorter than the drain's session wait (`timeouts.drain_sessions`,
/// 5 s). The cost is one connect per worker per second.
pub const CONN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(1);
