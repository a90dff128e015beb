//! Alerts in a drill: when each alert fired and resolved relative to the fault that caused it,
//! from the `alert_firing` / `alert_resolved` events and the alerts' own `startsAt`/`endsAt`
//! (Alertmanager's times, not when the notification arrived).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::metrics::PhaseMark;
use crate::events::{Event, EventKind};

/// One alert of a drill, timed from the fault it followed (the latest fault at or before it
/// fired). Times in ms since the workload began, like the phases'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertTiming {
    pub alert: String,
    /// Its identifying labels, e.g. `{"node": "3"}`.
    pub labels: BTreeMap<String, String>,
    /// When it fired (its `startsAt`).
    pub fired_at_ms: u64,
    /// When it resolved (its `endsAt`), if it did before the drill ended.
    pub resolved_at_ms: Option<u64>,
    /// The phase whose fault it followed, and the time from that fault.
    pub phase: Option<String>,
    pub fired_after_ms: Option<u64>,
    pub resolved_after_ms: Option<u64>,
}

/// The alerts that fired during the run, oldest first. `t0_mono_ms` is the workload's start
/// on the monotonic clock; an event's alert times are placed on it through the event's own
/// pair of clocks (`mono_ms` and `ts` were stamped together).
pub fn timings(marks: &[PhaseMark], events: &[Event], t0_mono_ms: u64) -> Vec<AlertTiming> {
    let on_run_clock = |e: &Event, rfc3339: &str| -> Option<u64> {
        let at = OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
        let before_event_ms = (e.ts - at).whole_milliseconds() as i64;
        let mono = e.mono_ms as i64 - before_event_ms;
        u64::try_from(mono - t0_mono_ms as i64).ok()
    };
    let mut out: Vec<AlertTiming> = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::AlertFiring { alert, labels, starts_at, .. } => {
                let Some(fired) = on_run_clock(e, starts_at) else { continue };
                if out.iter().any(|t| t.alert == *alert && t.labels == *labels && t.fired_at_ms == fired) {
                    continue;
                }
                let fault = marks.iter().filter(|m| m.fault_ms.is_some_and(|f| f <= fired)).max_by_key(|m| m.fault_ms);
                out.push(AlertTiming {
                    alert: alert.clone(),
                    labels: labels.clone(),
                    fired_at_ms: fired,
                    resolved_at_ms: None,
                    phase: fault.map(|m| m.name.clone()),
                    fired_after_ms: fault.and_then(|m| m.fault_ms).map(|f| fired - f),
                    resolved_after_ms: None,
                });
            }
            EventKind::AlertResolved { alert, labels, starts_at, ends_at } => {
                let (Some(fired), Some(resolved)) = (on_run_clock(e, starts_at), on_run_clock(e, ends_at)) else { continue };
                // Matched by name, labels and start (within a second: the two clocks' offsets
                // are computed from two events).
                if let Some(t) = out.iter_mut().find(|t| t.alert == *alert && t.labels == *labels && t.fired_at_ms.abs_diff(fired) < 1000) {
                    t.resolved_at_ms = Some(resolved);
                    let fault = marks.iter().find(|m| Some(&m.name) == t.phase.as_ref()).and_then(|m| m.fault_ms);
                    t.resolved_after_ms = fault.map(|f| resolved.saturating_sub(f));
                }
            }
            _ => {}
        }
    }
    out
}

/// Alerts that fired in the run (events at or after `t0_mono_ms`) and have not resolved.
pub fn unresolved(events: &[Event], t0_mono_ms: u64) -> usize {
    let mut open: Vec<(&str, &BTreeMap<String, String>)> = Vec::new();
    for e in events.iter().filter(|e| e.mono_ms >= t0_mono_ms) {
        match &e.kind {
            EventKind::AlertFiring { alert, labels, .. } if !open.contains(&(alert.as_str(), labels)) => open.push((alert, labels)),
            EventKind::AlertResolved { alert, labels, .. } => open.retain(|o| *o != (alert.as_str(), labels)),
            _ => {}
        }
    }
    open.len()
}

/// How long a drill waits at its end, with the cluster restored, for the alerts it caused to
/// resolve (so the report can say when they did).
pub const SETTLE_WAIT: Duration = Duration::from_secs(60);

/// Said when a monitored drill raised no alert.
pub const NONE_FIRED: &str = "no alert fired during the drill: each needs its condition to hold for its `for:` \
     (NodeDown: the node down for 10 s by default; docs/MONITORING.md) — a shorter fault goes unalerted";

/// One line per alert for the CLI and the report: `NodeDown{node="3"}: fired 12.4 s after
/// the fault of phase kill, resolved 3.1 s after it was restored (16.0 s after the fault)`.
pub fn describe(t: &AlertTiming, marks: &[PhaseMark]) -> String {
    let labels = crate::events::describe_labels(&t.labels);
    let secs = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    let fired = match (&t.phase, t.fired_after_ms) {
        (Some(p), Some(ms)) => format!("fired {} after the fault of phase {p}", secs(ms)),
        _ => format!("fired at +{} (before any fault)", secs(t.fired_at_ms)),
    };
    let recover = t.phase.as_ref().and_then(|p| marks.iter().find(|m| &m.name == p)).and_then(|m| m.recover_ms);
    let resolved = match (t.resolved_at_ms, t.resolved_after_ms) {
        (Some(at), Some(after)) => match recover.filter(|r| *r <= at) {
            Some(r) => format!(", resolved {} after the recovery step ({} after the fault)", secs(at - r), secs(after)),
            None => format!(", resolved {} after the fault", secs(after)),
        },
        (Some(at), None) => format!(", resolved at +{}", secs(at)),
        _ => ", still firing when the drill ended".into(),
    };
    format!("{}{labels}: {fired}{resolved}", t.alert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(mono_ms: u64, ts: &str, kind: EventKind) -> Event {
        Event { ts: OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).unwrap(), mono_ms, kind }
    }

    #[test]
    fn alerts_are_timed_from_their_own_times_and_the_fault_before_them() {
        let marks = vec![
            PhaseMark {
                name: "baseline".into(),
                start_ms: 0,
                end_ms: 5000,
                fault_ms: None,
                fault: None,
                fault_nodes: vec![],
                recover_ms: None,
            },
            PhaseMark {
                name: "kill".into(),
                start_ms: 5000,
                end_ms: 40_000,
                fault_ms: Some(6000),
                fault: Some("SIGKILL of node 3".into()),
                fault_nodes: vec![3],
                recover_ms: Some(26_000),
            },
        ];
        let labels = BTreeMap::from([("node".to_string(), "3".to_string())]);
        // t0 on the monotonic clock: 100_000 ms. The run's second 0 is 10:00:00.000Z.
        // The notification arrives at +19.5 s (mono 119_500); the alert's own start is +18.0 s.
        let firing = ev(
            119_500,
            "2026-12-01T10:00:19.5Z",
            EventKind::AlertFiring {
                alert: "NodeDown".into(),
                labels: labels.clone(),
                starts_at: "2026-12-01T10:00:18Z".into(),
                summary: None,
            },
        );
        let resolved = ev(
            130_200,
            "2026-12-01T10:00:30.2Z",
            EventKind::AlertResolved {
                alert: "NodeDown".into(),
                labels: labels.clone(),
                starts_at: "2026-12-01T10:00:18Z".into(),
                ends_at: "2026-12-01T10:00:29Z".into(),
            },
        );
        let t = timings(&marks, &[firing.clone(), firing.clone(), resolved.clone()], 100_000);
        assert_eq!(t.len(), 1, "a repeated notification is one alert");
        assert_eq!((t[0].fired_at_ms, t[0].fired_after_ms, t[0].phase.as_deref()), (18_000, Some(12_000), Some("kill")));
        assert_eq!((t[0].resolved_at_ms, t[0].resolved_after_ms), (Some(29_000), Some(23_000)));
        let line = describe(&t[0], &marks);
        assert_eq!(line, "NodeDown{node=\"3\"}: fired 12.0 s after the fault of phase kill, resolved 3.0 s after the recovery step (23.0 s after the fault)");
        assert_eq!(unresolved(std::slice::from_ref(&firing), 0), 1);
        assert_eq!(unresolved(&[firing, resolved], 0), 0);
    }
}
