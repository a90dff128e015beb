//! "What happened", phase by phase, in words a demo audience follows: for a graceful stop,
//! each drain stage with its time; for a SIGKILL, the detection stall — and what the clients
//! saw in both, side by side.

use super::metrics::PhaseMetrics;
use crate::events::{Event, EventKind};

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// One paragraph per phase with a fault. `events` are the run's timeline; `t0_mono` is the
/// workload's start on the monotonic clock (phases count from it).
pub fn tell(phases: &[PhaseMetrics], events: &[Event], t0_mono: u64) -> Vec<String> {
    let mut out = Vec::new();
    for p in phases {
        let (Some(fault_ms), Some(fault)) = (p.mark.fault_ms, p.mark.fault.as_deref()) else { continue };
        let in_phase = |e: &&Event| {
            let at = e.mono_ms.saturating_sub(t0_mono);
            at + 200 >= fault_ms && at < p.mark.end_ms.max(fault_ms)
        };
        let mut steps: Vec<String> = Vec::new();
        for e in events.iter().filter(in_phase) {
            let at = e.mono_ms.saturating_sub(t0_mono).saturating_sub(fault_ms);
            match &e.kind {
                EventKind::DrainStage { stage, detail, .. } if stage != "ready" => {
                    steps.push(format!("{stage} at +{}: {detail}", secs(at)));
                }
                EventKind::NodeSignalled { node, signal, .. } => steps.push(format!("{signal} to node {node} at +{}", secs(at))),
                EventKind::NodeExited { node, status, .. } => steps.push(format!("node {node} exited ({status}) at +{}", secs(at))),
                _ => {}
            }
        }
        let c = &p.counts;
        let clients = format!(
            "Clients saw {} failed and {} ambiguous transfer(s), {} retried transparently; the longest time without a commit was {}.",
            c.fail,
            c.ambiguous,
            c.retries,
            secs(p.longest_stall_ms)
        );
        let detection = match (p.first_error_after_fault_ms, p.haproxy_down_after_fault_ms) {
            (Some(err), Some(down)) => {
                format!(" The first client error came {} after the fault; HAProxy marked the node DOWN after {}.", secs(err), secs(down))
            }
            (None, Some(down)) => format!(" HAProxy marked the node DOWN after {} (no client error).", secs(down)),
            (Some(err), None) => format!(" The first client error came {} after the fault.", secs(err)),
            (None, None) => String::new(),
        };
        out.push(format!(
            "{} — {fault}: {}.{detection} {clients}",
            p.mark.name,
            if steps.is_empty() { "no stage recorded".into() } else { steps.join("; ") }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::metrics::PhaseMark;
    use crate::process::ExitInfo;
    use crate::workload::Counts;

    fn ev(mono_ms: u64, kind: EventKind) -> Event {
        Event { ts: time::OffsetDateTime::UNIX_EPOCH, mono_ms, kind }
    }

    fn phase(name: &str, fault: &str, fault_ms: u64, end_ms: u64, counts: Counts, down: Option<u64>) -> PhaseMetrics {
        PhaseMetrics {
            mark: PhaseMark {
                name: name.into(),
                start_ms: fault_ms - 10,
                end_ms,
                fault_ms: Some(fault_ms),
                fault: Some(fault.into()),
                recover_ms: None,
            },
            counts,
            committed: 0,
            ops_per_sec: 1.0,
            p50_ms: 1.0,
            p99_ms: 1.0,
            longest_stall_ms: 41,
            first_error_after_fault_ms: None,
            haproxy_down_after_fault_ms: down,
            liveness_change_after_fault_ms: None,
            ranges_degraded_after_fault_ms: None,
            ranges_restored_after_degraded_ms: None,
            throughput_recovered_after_ms: None,
        }
    }

    #[test]
    fn drain_stages_are_told_in_order_with_their_times() {
        let t0 = 1000;
        let events = vec![
            ev(t0 + 5000, EventKind::DrainStage { node: 2, stage: "haproxy".into(), detail: "no new connections".into(), after_ms: 0 }),
            ev(t0 + 5100, EventKind::DrainStage { node: 2, stage: "hand-off".into(), detail: "leadership moved".into(), after_ms: 100 }),
            ev(t0 + 5200, EventKind::NodeSignalled { node: 2, pid: 9, signal: "SIGTERM".into() }),
            ev(t0 + 5300, EventKind::NodeExited { node: 2, pid: 9, status: ExitInfo::Signal("SIGTERM".into()), after_ms: Some(100) }),
            ev(t0 + 9000, EventKind::DrainStage { node: 2, stage: "ready".into(), detail: "back".into(), after_ms: 0 }),
            ev(t0 + 99_000, EventKind::NodeSignalled { node: 3, pid: 8, signal: "SIGKILL".into() }),
        ];
        let counts = Counts { ok: 100, fail: 0, ambiguous: 0, retries: 3, reconnects: 0 };
        let told = tell(&[phase("graceful", "graceful stop of node 2", 5000, 9500, counts, Some(2300))], &events, t0);
        assert_eq!(told.len(), 1);
        let t = &told[0];
        assert!(t.starts_with("graceful — graceful stop of node 2: haproxy at +0.0 s: no new connections; hand-off at +0.1 s: leadership moved; SIGTERM to node 2 at +0.2 s; node 2 exited"), "{t}");
        assert!(
            t.contains(
                "Clients saw 0 failed and 0 ambiguous transfer(s), 3 retried transparently; the longest time without a commit was 0.0 s."
            ),
            "{t}"
        );
        assert!(!t.contains("back") && !t.contains("SIGKILL"), "the ready stage and other phases' events are left out: {t}");
    }
}
