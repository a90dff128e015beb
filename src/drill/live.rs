//! A running drill as live views see it (the console): `runs/<run>/live.json`, rewritten
//! whole every second while the drill runs — its phases so far, and each expectation
//! ticking from `pending` to `met` or `not_met` once its phase has closed and its figures
//! are in — and a last time with the verdict. Its workload's per-second figures are in
//! `ticks.ndjson` beside it.
//!
//! Shape: `{"drill": "quorum-loss", "pid": 4242, "t0_mono_ms": 77086374, "phases": [{"name":
//! "baseline", "start_ms": 0, "end_ms": 5003, "fault": null}, …], "expectations": [{"phase":
//! "quorum-lost", "text": "…", "state": "pending"|"met"|"not_met", "observed": "0"}],
//! "finished": null | {"passed": true, "verdict": "…", "report": "…/report.html"}}` — ms since
//! the workload began; `t0_mono_ms` is `CLOCK_MONOTONIC` then, to place the timeline's events.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::expect::Expectation;
use super::metrics::{self, PhaseMark};
use super::model::ExpectationResult;
use crate::events::Event;
use crate::{Error, Result};

/// The file's name in a run directory.
pub const FILE: &str = "live.json";

/// How long after a phase closed its expectations are evaluated: the workload's operation
/// log is flushed once a second, so the phase's last operations are in by then.
const SETTLE: Duration = Duration::from_millis(1500);

/// A running (or finished) drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveDrill {
    pub drill: String,
    /// The drill's own process (the CLI that runs it).
    pub pid: u32,
    /// `CLOCK_MONOTONIC` (ms) when the workload began: the zero of every `*_ms` here.
    pub t0_mono_ms: u64,
    pub phases: Vec<LivePhase>,
    pub expectations: Vec<LiveExpectation>,
    pub finished: Option<Finished>,
}

/// A phase so far: `end_ms` is `None` while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LivePhase {
    pub name: String,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    /// The phase's first fault step, in words.
    pub fault: Option<String>,
}

/// Where an expectation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveState {
    Pending,
    Met,
    NotMet,
}

/// One expectation: pending until its phase closed and its figures are in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveExpectation {
    /// The phase it is about (`None`: checked at the end, e.g. a prediction).
    pub phase: Option<String>,
    pub text: String,
    pub state: LiveState,
    pub observed: Option<String>,
}

impl From<&ExpectationResult> for LiveExpectation {
    fn from(r: &ExpectationResult) -> Self {
        Self {
            phase: None,
            text: r.text.clone(),
            state: if r.met { LiveState::Met } else { LiveState::NotMet },
            observed: Some(r.observed.clone()),
        }
    }
}

/// The drill's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    pub passed: bool,
    /// The bank check's verdict and the failures, in words.
    pub verdict: String,
    pub report: PathBuf,
}

/// Writes `live` into `run_dir` whole (a reader never sees half of it).
pub fn write(run_dir: &Path, live: &LiveDrill) -> Result<()> {
    let path = run_dir.join(FILE);
    let tmp = run_dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(live).expect("live state serializes"))
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// The live state in `run_dir`, if it has one that parses.
pub fn read(run_dir: &Path) -> Option<LiveDrill> {
    serde_json::from_slice(&std::fs::read(run_dir.join(FILE)).ok()?).ok()
}

/// The phases as marked so far: closed ones end where the next began.
pub fn phases(marks: &[PhaseMark]) -> Vec<LivePhase> {
    marks
        .iter()
        .enumerate()
        .map(|(i, m)| LivePhase {
            name: m.name.clone(),
            start_ms: m.start_ms,
            end_ms: marks.get(i + 1).map(|_| m.end_ms),
            fault: m.fault.clone(),
        })
        .collect()
}

/// What the live loop needs of the runner.
pub struct Feed {
    pub drill: String,
    pub run_dir: PathBuf,
    pub t0: std::time::Instant,
    pub t0_mono_ms: u64,
    pub events_file: PathBuf,
    pub expect: Vec<Expectation>,
    /// The runner's phase marks, mirrored as the steps set them.
    pub marks: Arc<Mutex<Vec<PhaseMark>>>,
    pub stop: Arc<AtomicBool>,
}

/// Rewrites `live.json` every second until `feed.stop` is set: the phases so far, and each
/// expectation evaluated once its phase has been closed for [`SETTLE`] — against the
/// operations and events logged so far, as the final report will be.
pub async fn run(feed: Feed) {
    let mut evaluated: Vec<Option<ExpectationResult>> = vec![None; feed.expect.len()];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !feed.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let marks = feed.marks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let now_ms = feed.t0.elapsed().as_millis() as u64;
        let settled: Vec<&str> = marks
            .iter()
            .enumerate()
            .filter(|(i, m)| marks.get(i + 1).is_some() && now_ms >= m.end_ms + SETTLE.as_millis() as u64)
            .map(|(_, m)| m.name.as_str())
            .collect();
        let due = feed.expect.iter().zip(&evaluated).any(|(e, r)| r.is_none() && settled.contains(&e.phase.as_str()));
        if due {
            if let Ok(ops) = crate::workload::read_ops(&feed.run_dir) {
                let events = events_since(&feed.events_file, feed.t0_mono_ms);
                let closed: Vec<PhaseMark> = marks.iter().filter(|m| settled.contains(&m.name.as_str())).cloned().collect();
                let measured = metrics::compute(&closed, &ops, &events, feed.t0_mono_ms, 0.0);
                let alerts = super::alerts::timings(&closed, &events, feed.t0_mono_ms);
                for (e, slot) in feed.expect.iter().zip(evaluated.iter_mut()) {
                    if slot.is_none() && settled.contains(&e.phase.as_str()) {
                        *slot = Some(e.evaluate(&measured, &alerts));
                    }
                }
            }
        }
        let live = LiveDrill {
            drill: feed.drill.clone(),
            pid: std::process::id(),
            t0_mono_ms: feed.t0_mono_ms,
            phases: phases(&marks),
            expectations: feed
                .expect
                .iter()
                .zip(&evaluated)
                .map(|(e, r)| match r {
                    Some(r) => LiveExpectation { phase: Some(e.phase.clone()), ..r.into() },
                    None => LiveExpectation { phase: Some(e.phase.clone()), text: e.headline(), state: LiveState::Pending, observed: None },
                })
                .collect(),
            finished: None,
        };
        let _ = write(&feed.run_dir, &live);
    }
}

/// The timeline's events since `t0_mono_ms`.
pub fn events_since(events_file: &Path, t0_mono_ms: u64) -> Vec<Event> {
    std::fs::read_to_string(events_file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &Event| e.mono_ms >= t0_mono_ms)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(name: &str, start_ms: u64, end_ms: u64) -> PhaseMark {
        PhaseMark { name: name.into(), start_ms, end_ms, fault_ms: None, fault: None, fault_nodes: Vec::new(), recover_ms: None }
    }

    #[test]
    fn only_the_last_phase_is_open_and_the_file_round_trips() {
        let p = phases(&[mark("baseline", 0, 5000), mark("killed", 5000, 5000)]);
        assert_eq!(p[0].end_ms, Some(5000));
        assert_eq!(p[1].end_ms, None, "the current phase has no end yet");
        let dir = tempfile::tempdir().unwrap();
        let live = LiveDrill { drill: "d".into(), pid: 1, t0_mono_ms: 7, phases: p, expectations: Vec::new(), finished: None };
        write(dir.path(), &live).unwrap();
        assert_eq!(read(dir.path()), Some(live));
        assert!(!dir.path().join("live.json.tmp").exists());
    }
}
