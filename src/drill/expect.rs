//! What theory predicts for a phase (an `[[expect]]` of a scenario), and how it is checked
//! against what was measured: the figure compared (`Metric`) and its evaluation over the
//! phases and the run's alerts.

use serde::{Deserialize, Serialize};

use super::alerts::AlertTiming;
use super::condition::{cmp_str, Cmp};
use super::metrics::PhaseMetrics;
use super::model::ExpectationResult;

/// A measured figure of a phase that an expectation compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Ok,
    Fail,
    Ambiguous,
    /// fail + ambiguous.
    Errors,
    Retries,
    OpsPerSec,
    LongestStallMs,
    ThroughputRecoveredAfterMs,
    HaproxyDownAfterFaultMs,
    Committed,
    FirstErrorAfterFaultMs,
    NewLeaderAfterFaultMs,
    ReadyAgainAfterFaultMs,
    /// From the phase's fault to the expectation's `alert` firing (its `startsAt`), the
    /// first instance of it after the fault (labs with monitoring).
    AlertFiredAfterMs,
    /// From the phase's fault to that alert resolving (its `endsAt`).
    AlertResolvedAfterMs,
}

impl Metric {
    /// Every metric by the name a scenario file gives it.
    pub(super) const ALL: [(&'static str, Metric); 15] = [
        ("ok", Metric::Ok),
        ("fail", Metric::Fail),
        ("ambiguous", Metric::Ambiguous),
        ("errors", Metric::Errors),
        ("retries", Metric::Retries),
        ("ops_per_sec", Metric::OpsPerSec),
        ("longest_stall_ms", Metric::LongestStallMs),
        ("throughput_recovered_after_ms", Metric::ThroughputRecoveredAfterMs),
        ("haproxy_down_after_fault_ms", Metric::HaproxyDownAfterFaultMs),
        ("committed", Metric::Committed),
        ("first_error_after_fault_ms", Metric::FirstErrorAfterFaultMs),
        ("new_leader_after_fault_ms", Metric::NewLeaderAfterFaultMs),
        ("ready_again_after_fault_ms", Metric::ReadyAgainAfterFaultMs),
        ("alert_fired_after_ms", Metric::AlertFiredAfterMs),
        ("alert_resolved_after_ms", Metric::AlertResolvedAfterMs),
    ];

    /// The name a scenario file gives this metric (`longest_stall_ms`).
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, m)| *m == self).map(|(n, _)| *n).unwrap_or("?")
    }

    /// The value in a phase's measurements (`None` if it did not happen).
    pub fn of(self, p: &PhaseMetrics) -> Option<f64> {
        let c = &p.counts;
        match self {
            Metric::Ok => Some(c.ok as f64),
            Metric::Fail => Some(c.fail as f64),
            Metric::Ambiguous => Some(c.ambiguous as f64),
            Metric::Errors => Some(c.errors() as f64),
            Metric::Retries => Some(c.retries as f64),
            Metric::OpsPerSec => Some(p.ops_per_sec),
            Metric::LongestStallMs => Some(p.longest_stall_ms as f64),
            Metric::ThroughputRecoveredAfterMs => p.throughput_recovered_after_ms.map(|v| v as f64),
            Metric::HaproxyDownAfterFaultMs => p.haproxy_down_after_fault_ms.map(|v| v as f64),
            Metric::Committed => Some(p.committed as f64),
            Metric::FirstErrorAfterFaultMs => p.first_error_after_fault_ms.map(|v| v as f64),
            Metric::NewLeaderAfterFaultMs => p.new_leader_after_fault_ms.map(|v| v as f64),
            Metric::ReadyAgainAfterFaultMs => p.ready_again_after_fault_ms.map(|v| v as f64),
            // Measured from the run's alerts: see `Expectation::evaluate`.
            Metric::AlertFiredAfterMs | Metric::AlertResolvedAfterMs => None,
        }
    }
}

/// What theory predicts for a phase, checked against what was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    /// Only for labs of this engine (`None`: every engine).
    pub engine: Option<crate::config::EngineKind>,
    pub phase: String,
    pub metric: Metric,
    /// The alert of an `alert_*` metric.
    #[serde(default)]
    pub alert: Option<String>,
    pub cmp: Cmp,
    pub value: f64,
    /// The prediction in words, e.g. "with 1 of 3 members up, no write can commit".
    pub text: String,
}

impl Expectation {
    /// Whether this expectation is about a lab running `engine` (`cockroach`, `etcd`).
    pub fn applies_to(&self, engine: &str) -> bool {
        self.engine.is_none_or(|e| e.to_string() == engine)
    }

    /// The expectation in one line, as reports and live views print it:
    /// `quorum-lost: committed == 0 — with 1 of 3 members up, no write can commit`.
    pub fn headline(&self) -> String {
        let metric = match &self.alert {
            Some(a) => format!("{}({a})", self.metric.name()),
            None => self.metric.name().to_string(),
        };
        format!("{}: {metric} {} {} — {}", self.phase, cmp_str(self.cmp), self.value, self.text)
    }

    /// Checks the prediction against the measured phases.
    pub fn evaluate(&self, phases: &[PhaseMetrics], alerts: &[AlertTiming]) -> ExpectationResult {
        let observed = match (self.metric, &self.alert) {
            (Metric::AlertFiredAfterMs | Metric::AlertResolvedAfterMs, Some(name)) => {
                let first = alerts
                    .iter()
                    .filter(|a| a.alert == *name && a.phase.as_deref() == Some(self.phase.as_str()))
                    .min_by_key(|a| a.fired_at_ms);
                let v = if self.metric == Metric::AlertFiredAfterMs {
                    first.and_then(|a| a.fired_after_ms)
                } else {
                    first.and_then(|a| a.resolved_after_ms)
                };
                v.map(|v| v as f64)
            }
            _ => phases.iter().find(|p| p.mark.name == self.phase).and_then(|p| self.metric.of(p)),
        };
        ExpectationResult {
            text: self.headline(),
            met: observed.is_some_and(|o| self.cmp.holds(o, self.value)),
            observed: observed
                .map(|o| if o.fract() == 0.0 { format!("{o:.0}") } else { format!("{o:.1}") })
                .unwrap_or_else(|| "did not happen".into()),
        }
    }
}
