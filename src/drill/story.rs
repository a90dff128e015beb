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
        // A phase is told from its fault, or — a phase that only recovers, like `healed` after a
        // partition — from its recovery.
        let (fault_ms, fault) = match (p.mark.fault_ms, p.mark.fault.as_deref(), p.mark.recover_ms) {
            (Some(at), Some(f), _) => (at, f),
            (None, _, Some(at)) => (at, "recovery"),
            _ => continue,
        };
        // The term the last elected leader had before this phase's reference point.
        let mut last_term: Option<u64> =
            events.iter().rev().filter(|e| e.mono_ms.saturating_sub(t0_mono) < fault_ms).find_map(|e| match &e.kind {
                EventKind::LeaderChanged { to: Some(_), term, .. } => *term,
                _ => None,
            });
        // A fault is told until it is recovered, also across the phases that follow it (a
        // partition measured in a phase of its own, `split`, after the one that made it).
        let until = if fault == "recovery" {
            p.mark.end_ms
        } else {
            // …but not into the next fault's paragraph.
            let next_fault = phases.iter().filter_map(|q| q.mark.fault_ms).filter(|f| *f > fault_ms).min();
            let recovered = phases.iter().filter_map(|q| q.mark.recover_ms).filter(|r| *r > fault_ms).min();
            match (recovered, next_fault) {
                (Some(r), Some(f)) => r.min(f),
                (Some(r), None) => r,
                (None, Some(f)) => f,
                (None, None) => p.mark.end_ms,
            }
        };
        let in_phase = |e: &&Event| {
            let at = e.mono_ms.saturating_sub(t0_mono);
            at + 200 >= fault_ms && at < until.max(fault_ms)
        };
        let marked_down =
            events.iter().filter(in_phase).any(|e| matches!(&e.kind, EventKind::BackendState { state, .. } if state == "DOWN"));
        let mut steps: Vec<String> = Vec::new();
        for e in events.iter().filter(in_phase) {
            let at = e.mono_ms.saturating_sub(t0_mono).saturating_sub(fault_ms);
            match &e.kind {
                EventKind::DrainStage { stage, detail, .. } if stage != "ready" => {
                    steps.push(format!("{stage} at +{}: {detail}", secs(at)));
                }
                EventKind::NodeSignalled { node, signal, .. } => steps.push(format!("{signal} to node {node} at +{}", secs(at))),
                EventKind::NodeExited { node, status, .. } => steps.push(format!("node {node} exited ({status}) at +{}", secs(at))),
                EventKind::NetPartitioned { .. } => steps.push(format!("network cut at +{}", secs(at))),
                EventKind::NodePaused { node, .. } => steps.push(format!("node {node} paused at +{}", secs(at))),
                EventKind::NodeResumed { node, .. } => steps.push(format!("node {node} resumed at +{}", secs(at))),
                EventKind::NodeRestartScheduled { node, in_ms, .. } => {
                    steps.push(format!("the restart policy restarts node {node} in {} (at +{})", secs(*in_ms), secs(at)))
                }
                EventKind::NodeReady { node, ready: true, .. } if p.mark.fault_nodes.contains(node) => {
                    steps.push(format!("node {node} ready again at +{}", secs(at)))
                }
                EventKind::NetHealed { .. } => steps.push(format!("network healed at +{}", secs(at))),
                EventKind::LeaderChanged { to: Some(to), term, .. } => {
                    // A jump of several terms at once: members cut off from the leader kept
                    // campaigning, each time with a higher term (Raft without PreVote, etcd
                    // 3.4's default); when they rejoin, that term deposes the leader.
                    let jump = match (last_term, term) {
                        (Some(a), Some(b)) if *b > a + 1 && fault == "recovery" => {
                            format!(" (term {a} → {b}: a member cut off from the leader kept campaigning, and its higher term deposed the leader when it rejoined — Raft without PreVote)")
                        }
                        _ => String::new(),
                    };
                    last_term = *term;
                    let term = term.map(|t| format!(", term {t}")).unwrap_or_default();
                    steps.push(format!("node {to} leads at +{}{term}{jump}", secs(at)))
                }
                EventKind::LeaderChanged { to: None, .. } => steps.push(format!("no leader at +{}", secs(at))),
                EventKind::LeaseholderChanged { table, key, from: Some(from), to } => {
                    steps.push(format!("the lease on {table} row {key} moved from node {from} to node {to} (seen at +{})", secs(at)))
                }
                EventKind::NodeQuorum { node, sees_quorum: false, .. } => steps.push(format!("node {node} lost quorum at +{}", secs(at))),
                EventKind::NodeQuorum { node, sees_quorum: true, .. } => {
                    steps.push(format!("node {node} sees quorum again at +{}", secs(at)))
                }
                EventKind::BackendState { node, state, .. } if fault.starts_with("partition") || fault == "recovery" => {
                    steps.push(format!("HAProxy marked node {node} {state} at +{}", secs(at)))
                }
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
        let detection = if fault.starts_with("partition") && !marked_down {
            format!(
                "{detection} HAProxy never marked a node DOWN during the partition: every node's health check kept passing, \
                 so clients were still routed to the cut-off side."
            )
        } else {
            detection
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
                fault_nodes: Vec::new(),
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
            new_leader_after_fault_ms: None,
            ready_again_after_fault_ms: None,
            ranges_degraded_after_fault_ms: None,
            ranges_restored_after_degraded_ms: None,
            throughput_recovered_after_ms: None,
        }
    }

    #[test]
    fn a_partition_is_told_until_its_heal_and_a_deposing_rejoin_is_explained() {
        let t0 = 0;
        let leader = |at, to, term| ev(at, EventKind::LeaderChanged { from: None, to, term: Some(term) });
        let events = vec![
            leader(500, Some(1), 2),
            ev(5000, EventKind::NetPartitioned { sides: vec![vec![1], vec![2, 3]], one_way: false, from_clients: false, cuts: 4 }),
            leader(7000, Some(2), 3),
            // In the next phase (`split`), before the heal: still part of the partition's story.
            ev(8000, EventKind::NodeQuorum { node: 1, sees_quorum: false, detail: None }),
            ev(12_000, EventKind::NetHealed { detail: "removed 4 cut(s)".into() }),
            leader(12_500, None, 9),
            leader(13_000, Some(3), 10),
        ];
        let mut cut = phase("partitioned", "partition 1 | 2,3", 5000, 6000, Counts::default(), None);
        cut.mark.start_ms = 4990;
        let mut split = phase("split", "x", 6000, 12_000, Counts::default(), None);
        split.mark.fault_ms = None;
        split.mark.fault = None;
        let mut healed = phase("healed", "x", 12_000, 20_000, Counts::default(), None);
        healed.mark.fault_ms = None;
        healed.mark.fault = None;
        healed.mark.recover_ms = Some(12_000);
        let told = tell(&[cut, split, healed], &events, t0);
        assert_eq!(told.len(), 2, "{told:#?}");
        assert!(told[0].contains("node 2 leads at +2.0 s, term 3; node 1 lost quorum at +3.0 s"), "{}", told[0]);
        assert!(told[0].contains("HAProxy never marked a node DOWN"), "{}", told[0]);
        assert!(!told[0].contains("network healed"), "the heal belongs to the next paragraph: {}", told[0]);
        assert!(told[1].starts_with("healed — recovery: network healed at +0.0 s"), "{}", told[1]);
        assert!(told[1].contains("term 3 → 10") && told[1].contains("without PreVote"), "{}", told[1]);
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
