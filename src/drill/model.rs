//! The drill's data model: what a run takes (options) and what it produces (`results.json`:
//! phases, steps, predictions, expectations, the check). Below everything that acts on it —
//! the runner, its steps, the predictions' checks, the scenario's expectations and the
//! report all import it; it imports none of them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::alerts::AlertTiming;
use super::metrics::{PhaseMetrics, Series};
use crate::node::NodeId;
use crate::watch::LossPrediction;
use crate::workload::CheckReport;

/// Drill options from the command line.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The node `target` steps act on; by default the leader where the engine has one, else
    /// the highest-numbered running node.
    pub node: Option<NodeId>,
    /// Seed for `random` node choices.
    pub seed: u64,
    /// Load before the first step, measured as the `baseline` phase.
    pub baseline: Duration,
}

/// One expectation, checked against the measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectationResult {
    pub text: String,
    pub met: bool,
    pub observed: String,
}

/// Everything a drill produced (`results.json`; the schema is in docs/DRILLS.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillResult {
    pub schema: String,
    pub drill: String,
    pub description: String,
    pub engine: String,
    pub started_at: String,
    pub seed: u64,
    /// The signal that interrupted the drill (`SIGINT`, `SIGTERM`, `SIGHUP`), if one did: the
    /// cluster was still restored and the report written with what was measured.
    #[serde(default)]
    pub interrupted: Option<String>,
    /// Said before the drill and recorded: e.g. the lab was degraded when the drill began.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The quorum rule for this cluster, stated before the drill ran (the engine's
    /// [`crate::engine::Engine::quorum_rule`]).
    pub theory: Vec<String>,
    /// What each fault was predicted to do to quorum, from the layout observed just before
    /// it; each is also checked among `expectations`.
    #[serde(default)]
    pub predictions: Vec<Prediction>,
    /// What happened at each fault, in sentences: a graceful stop's drain stages with their
    /// times, a SIGKILL's detection stall, and what clients saw ([`super::story::tell`]).
    #[serde(default)]
    pub story: Vec<String>,
    pub phases: Vec<PhaseMetrics>,
    pub expectations: Vec<ExpectationResult>,
    /// Steps that failed (a wait that timed out, an assertion that did not hold).
    pub failures: Vec<String>,
    /// Every step as it ran: ms since the workload began, the scenario line, what it did.
    pub steps: Vec<StepLog>,
    /// The bank's check (`null` for a script workload, or when it could not run).
    pub check: Option<CheckReport>,
    /// A script workload's check: its query after the drill.
    #[serde(default)]
    pub query_check: Option<QueryCheck>,
    pub series: Series,
    /// What the charts mark, in seconds since the workload began: every fault and recovery
    /// request, HAProxy DOWN/UP, leader and liveness changes, quorum lost/regained, alerts
    /// ([`crate::chart::marker`]), from the run's timeline.
    #[serde(default)]
    pub markers: Vec<crate::chart::Marker>,
    /// Alerts that fired during the run (labs with monitoring), timed from their faults.
    #[serde(default)]
    pub alerts: Vec<AlertTiming>,
    /// The lab ran Prometheus and Alertmanager (so no alert in `alerts` means none fired).
    #[serde(default)]
    pub monitored: bool,
    pub run_dir: PathBuf,
}

impl DrillResult {
    /// True when every expectation and assertion held and the workload's check passed (the
    /// bank's, or a script's query).
    pub fn passed(&self) -> bool {
        let checked = match (&self.check, &self.query_check) {
            (Some(c), _) => c.violations.is_empty(),
            (None, Some(q)) => q.holds,
            (None, None) => false,
        };
        self.failures.is_empty() && self.expectations.iter().all(|e| e.met) && checked
    }
}

/// A script workload's check: `query` (it must return true) and what it returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryCheck {
    pub query: String,
    pub holds: bool,
    /// What came back instead of true, or why it could not run.
    #[serde(default)]
    pub detail: Option<String>,
}

/// One step as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub at_ms: u64,
    pub line: usize,
    pub what: String,
    /// A fault (stop, kill, decommission) or a recovery (start).
    pub kind: StepKind,
}

/// What kind of step it was, for the charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Fault,
    Recovery,
    /// A statement sent to one node (`action = "sql"`), its answer in `what`.
    Sql,
    Other,
}

/// A prediction made before one fault step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    /// The scenario line of the fault step.
    pub line: usize,
    /// When the fault ran, in ms since the workload began.
    pub at_ms: u64,
    /// Until the next fault or recovery step (or the end of the steps), in ms.
    pub until_ms: u64,
    pub prediction: LossPrediction,
}
