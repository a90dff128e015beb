//! The records of a run: what became of each operation, the counts of a run or of one second,
//! the per-second tick and the summary (`ops.jsonl`, `ticks.ndjson` and `summary.json` in the
//! run's directory hold these as JSON).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

/// One run of a script (`workload run script`): its transactions, and how many of them
/// committed, in order (the run stops at the first that does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptOp {
    pub transactions: u32,
    pub committed: u32,
}

/// What an operation attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OpDetail {
    Transfer(Transfer),
    Tpcb(TpcbOp),
    Script(ScriptOp),
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
    /// `CLOCK_MONOTONIC` at the tick, in ms: places it beside the timeline's events (whose
    /// `mono_ms` is the same clock). 0 in runs logged before it was recorded.
    #[serde(default)]
    pub mono_ms: u64,
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
