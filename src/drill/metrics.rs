//! What a drill measured, per phase, from the workload's operation log and the timeline.

use serde::{Deserialize, Serialize};

use crate::events::{Event, EventKind};
use crate::workload::{Counts, OpRecord, Outcome};

/// A phase as the runner marked it; times in ms since the workload started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseMark {
    pub name: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// When the phase's first fault step (stop, kill, decommission) ran, and what it was.
    pub fault_ms: Option<u64>,
    pub fault: Option<String>,
    /// The nodes the fault acted on (empty for a partition).
    #[serde(default)]
    pub fault_nodes: Vec<crate::node::NodeId>,
    /// When the first recovery step (start) after the fault ran.
    pub recover_ms: Option<u64>,
}

/// The figures of one phase. Durations in ms; `None` when the thing did not happen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseMetrics {
    #[serde(flatten)]
    pub mark: PhaseMark,
    pub counts: Counts,
    /// Operations that committed (`ok`) *during* the phase, whenever they started: the figure
    /// for "no write commits while quorum is lost" (`counts` go by start, so an operation
    /// started then and committed after the recovery, by a transparent retry, is in `counts.ok`
    /// but not here).
    #[serde(default)]
    pub committed: u64,
    /// Committed operations per second over the phase.
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Longest time with no operation completing `ok`, within the phase.
    pub longest_stall_ms: u64,
    /// From the fault to the first operation that did not end `ok`.
    pub first_error_after_fault_ms: Option<u64>,
    /// From the fault to HAProxy marking a server DOWN.
    pub haproxy_down_after_fault_ms: Option<u64>,
    /// From the fault to the first liveness or leader change.
    pub liveness_change_after_fault_ms: Option<u64>,
    /// From the fault to the fault's node(s) being ready again (the last of them): after a
    /// kill, how long a restart — by the restart policy, or by hand — took to bring it back.
    #[serde(default)]
    pub ready_again_after_fault_ms: Option<u64>,
    /// From the fault to a leader being elected (a `leader_changed` event naming a new
    /// leader): after a partition isolates the leader, the majority side's election (etcd).
    #[serde(default)]
    pub new_leader_after_fault_ms: Option<u64>,
    /// From the fault to under-replicated (or unavailable) ranges rising above 0, and from
    /// then back to 0 (CockroachDB).
    pub ranges_degraded_after_fault_ms: Option<u64>,
    pub ranges_restored_after_degraded_ms: Option<u64>,
    /// From the recovery step to the first whole second with ≥ 90 % of the baseline's
    /// throughput.
    pub throughput_recovered_after_ms: Option<u64>,
}

/// Per-second series for the charts (second `i` covers [i, i+1) s since the workload began).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub ok: Vec<u64>,
    /// Operations that did not succeed: failed and ambiguous ones.
    pub errors: Vec<u64>,
    /// Of `errors`, the ambiguous ones (their outcome unknown to the client).
    #[serde(default)]
    pub ambiguous: Vec<u64>,
    pub p99_ms: Vec<f64>,
    /// Members up (process running) at the end of each second, from the timeline.
    pub members_up: Vec<u64>,
    /// Under-replicated and unavailable ranges at the end of each second (CockroachDB; empty
    /// when the engine reports no ranges).
    #[serde(default)]
    pub ranges_underreplicated: Vec<u64>,
    #[serde(default)]
    pub ranges_unavailable: Vec<u64>,
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
}

/// Completion time of an op, in ms since the workload started.
fn done_ms(op: &OpRecord) -> u64 {
    op.start_ms + op.latency_us / 1000
}

/// Computes every phase's figures. `events` carry `mono_ms`; `t0_mono_ms` is the workload's
/// start on the same clock. `baseline_ops_per_sec` is the reference for recovery.
pub fn compute(marks: &[PhaseMark], ops: &[OpRecord], events: &[Event], t0_mono_ms: u64, baseline_ops_per_sec: f64) -> Vec<PhaseMetrics> {
    let rel = |e: &Event| e.mono_ms.saturating_sub(t0_mono_ms);
    let mut ok_done: Vec<u64> = ops.iter().filter(|o| o.outcome == Outcome::Ok).map(done_ms).collect();
    ok_done.sort_unstable();
    let per_second_ok = |from: u64, to: u64| ok_done.iter().filter(|&&t| t >= from && t < to).count() as f64;
    // An operation belongs to the phase it started in, unless it was still in flight when the
    // next phase's fault struck: then that fault's phase owns it (the baseline must not be
    // charged with the errors of a fault that began 5 ms after the operation).
    let phase_of = |o: &OpRecord| -> Option<usize> {
        // The last phase is open-ended: whatever starts after the runner closed it (the
        // workload stops a moment later) is still counted, so the phases add up to the run.
        let last = marks.len().checked_sub(1)?;
        let i = marks
            .iter()
            .position(|m| o.start_ms >= m.start_ms && o.start_ms < m.end_ms)
            .or_else(|| (o.start_ms >= marks[last].start_ms).then_some(last))?;
        match marks.get(i + 1).and_then(|next| next.fault_ms) {
            Some(fault) if done_ms(o) >= fault => Some(i + 1),
            _ => Some(i),
        }
    };
    let owner: Vec<Option<usize>> = ops.iter().map(phase_of).collect();
    marks
        .iter()
        .enumerate()
        .map(|(idx, m)| {
            let in_phase: Vec<&OpRecord> = ops.iter().zip(&owner).filter(|(_, p)| **p == Some(idx)).map(|(o, _)| o).collect();
            let mut counts = Counts::default();
            for o in &in_phase {
                counts.add(o);
            }
            let mut lat: Vec<u64> = in_phase.iter().filter(|o| o.outcome == Outcome::Ok).map(|o| o.latency_us).collect();
            lat.sort_unstable();
            let secs = (m.end_ms.saturating_sub(m.start_ms)) as f64 / 1000.0;
            // Gaps between ok completions, bounded by the phase.
            let mut last = m.start_ms;
            let mut stall = 0;
            for &t in ok_done.iter().filter(|&&t| t >= m.start_ms && t < m.end_ms) {
                stall = stall.max(t - last);
                last = t;
            }
            stall = stall.max(m.end_ms.saturating_sub(last));
            let after_fault = |t: u64| m.fault_ms.filter(|f| t >= *f).map(|f| t - f);
            let first_error =
                m.fault_ms.and_then(|f| in_phase.iter().filter(|o| o.outcome != Outcome::Ok && done_ms(o) >= f).map(|o| done_ms(o)).min().and_then(after_fault));
            let phase_events: Vec<(&Event, u64)> = events.iter().map(|e| (e, rel(e))).filter(|(_, t)| *t >= m.start_ms && *t < m.end_ms).collect();
            let first_event = |pred: &dyn Fn(&EventKind) -> bool| {
                m.fault_ms.and_then(|f| phase_events.iter().filter(|(e, t)| *t >= f && pred(&e.kind)).map(|(_, t)| t - f).min())
            };
            let haproxy_down = first_event(&|k| matches!(k, EventKind::BackendState { state, .. } if state == "DOWN"));
            let liveness = first_event(&|k| matches!(k, EventKind::LivenessChanged { .. } | EventKind::LeaderChanged { .. }));
            let ready_again = m.fault_ms.and_then(|f| {
                if m.fault_nodes.is_empty() {
                    return None;
                }
                // Each node's first `ready` after it went down (a not-ready or an exit) after the fault.
                let mut last = 0;
                for node in &m.fault_nodes {
                    let mut down = false;
                    let mut at = None;
                    for (e, t) in phase_events.iter().filter(|(_, t)| *t >= f) {
                        match &e.kind {
                            EventKind::NodeExited { node: n, .. } | EventKind::NodeReady { node: n, ready: false, .. } if n == node => down = true,
                            EventKind::NodeReady { node: n, ready: true, .. } if n == node && down => {
                                at = Some(t - f);
                                break;
                            }
                            _ => {}
                        }
                    }
                    last = last.max(at?);
                }
                Some(last)
            });
            let new_leader = first_event(&|k| matches!(k, EventKind::LeaderChanged { to: Some(to), from, .. } if from.as_ref() != Some(to)));
            let degraded = first_event(&|k| {
                matches!(k, EventKind::RangesChanged { underreplicated, unavailable, .. } if underreplicated.unwrap_or(0) > 0 || unavailable.unwrap_or(0) > 0)
            });
            let restored = degraded.and_then(|d| {
                let from = m.fault_ms.unwrap_or(0) + d;
                phase_events
                    .iter()
                    .filter(|(e, t)| {
                        *t > from && matches!(&e.kind, EventKind::RangesChanged { underreplicated, unavailable, .. } if underreplicated.unwrap_or(0) == 0 && unavailable.unwrap_or(0) == 0)
                    })
                    .map(|(_, t)| t - from)
                    .min()
            });
            let recovered = m.recover_ms.and_then(|r| {
                if baseline_ops_per_sec <= 0.0 {
                    return None;
                }
                let mut s = r;
                while s + 1000 <= m.end_ms {
                    if per_second_ok(s, s + 1000) >= 0.9 * baseline_ops_per_sec {
                        return Some(s - r);
                    }
                    s += 100;
                }
                None
            });
            let committed = ok_done.iter().filter(|&&t| t >= m.start_ms && t < m.end_ms).count() as u64;
            PhaseMetrics {
                mark: m.clone(),
                committed,
                counts,
                // Commits during the phase over its wall time: a phase of a few milliseconds
                // with two operations attributed to it is not "1000 ops/s".
                ops_per_sec: if secs > 0.0 { committed as f64 / secs } else { 0.0 },
                p50_ms: quantile(&lat, 0.5),
                p99_ms: quantile(&lat, 0.99),
                longest_stall_ms: stall,
                first_error_after_fault_ms: first_error,
                haproxy_down_after_fault_ms: haproxy_down,
                liveness_change_after_fault_ms: liveness,
                new_leader_after_fault_ms: new_leader,
                ready_again_after_fault_ms: ready_again,
                ranges_degraded_after_fault_ms: degraded,
                ranges_restored_after_degraded_ms: restored,
                throughput_recovered_after_ms: recovered,
            }
        })
        .collect()
}

/// Per-second series over `[0, end_ms)`; `members_at_start` is the number of members up when
/// the workload began.
pub fn series(ops: &[OpRecord], events: &[Event], t0_mono_ms: u64, end_ms: u64, members_at_start: u64) -> Series {
    // Whole seconds only: a partial last second would plot as a dip.
    let n = (end_ms / 1000) as usize;
    let mut s = Series {
        ok: vec![0; n],
        errors: vec![0; n],
        ambiguous: vec![0; n],
        p99_ms: vec![0.0; n],
        members_up: vec![members_at_start; n],
        ..Default::default()
    };
    let mut lat: Vec<Vec<u64>> = vec![Vec::new(); n];
    for o in ops {
        let i = (done_ms(o) / 1000) as usize;
        if i >= n {
            continue;
        }
        if o.outcome == Outcome::Ok {
            s.ok[i] += 1;
            lat[i].push(o.latency_us);
        } else {
            s.errors[i] += 1;
            if o.outcome == Outcome::Ambiguous {
                s.ambiguous[i] += 1;
            }
        }
    }
    for (i, l) in lat.iter_mut().enumerate() {
        l.sort_unstable();
        s.p99_ms[i] = quantile(l, 0.99);
    }
    let mut up = members_at_start as i64;
    // Changes after the workload began (`members_at_start` covers what came before).
    let mut changes: Vec<(u64, i64)> = events
        .iter()
        .filter(|e| e.mono_ms >= t0_mono_ms)
        .filter_map(|e| match e.kind {
            EventKind::NodeSpawned { .. } => Some((e.mono_ms - t0_mono_ms, 1)),
            EventKind::NodeExited { .. } => Some((e.mono_ms - t0_mono_ms, -1)),
            _ => None,
        })
        .filter(|(t, _)| *t < end_ms)
        .collect();
    changes.sort_by_key(|c| c.0);
    let mut j = 0;
    for (i, slot) in s.members_up.iter_mut().enumerate() {
        let second_end = (i as u64 + 1) * 1000;
        while j < changes.len() && changes[j].0 < second_end {
            up += changes[j].1;
            j += 1;
        }
        *slot = up.max(0) as u64;
    }
    // Range counts: the last reported value, carried forward.
    let ranges: Vec<(u64, u64, u64)> = events
        .iter()
        .filter(|e| e.mono_ms >= t0_mono_ms)
        .filter_map(|e| match e.kind {
            EventKind::RangesChanged { underreplicated, unavailable, .. } => {
                Some((e.mono_ms - t0_mono_ms, underreplicated.unwrap_or(0), unavailable.unwrap_or(0)))
            }
            _ => None,
        })
        .collect();
    if !ranges.is_empty() {
        let (mut under, mut unavail, mut j) = (0, 0, 0);
        for i in 0..n {
            while j < ranges.len() && ranges[j].0 < (i as u64 + 1) * 1000 {
                (under, unavail) = (ranges[j].1, ranges[j].2);
                j += 1;
            }
            s.ranges_underreplicated.push(under);
            s.ranges_unavailable.push(unavail);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{OpDetail, Transfer};

    fn op(start_ms: u64, latency_ms: u64, outcome: Outcome) -> OpRecord {
        OpRecord {
            detail: OpDetail::Transfer(Transfer { id: uuid::Uuid::nil(), from: 0, to: 1, amount: 1 }),
            outcome,
            start_ms,
            latency_us: latency_ms * 1000,
            retries: 0,
            reconnects: 0,
            worker: 0,
            error: None,
        }
    }

    #[test]
    fn stall_first_error_and_recovery_are_measured_from_the_ops() {
        // 10 ok/s until 2 s, nothing 2..4 s (an error at 2.1 s), 10 ok/s again from 4 s.
        let mut ops: Vec<OpRecord> = (0..20).map(|i| op(i * 100, 5, Outcome::Ok)).collect();
        ops.push(op(2100, 50, Outcome::Fail));
        ops.extend((40..60).map(|i| op(i * 100, 5, Outcome::Ok)));
        let mark = PhaseMark {
            name: "kill".into(),
            start_ms: 0,
            end_ms: 6000,
            fault_ms: Some(2000),
            fault: Some("kill node 2".into()),
            fault_nodes: vec![2],
            recover_ms: Some(3500),
        };
        let m = &compute(&[mark], &ops, &[], 0, 10.0)[0];
        assert_eq!((m.counts.ok, m.counts.fail), (40, 1));
        assert_eq!(m.longest_stall_ms, 2100, "from the last ok before the fault (1.905 s) to the first after (4.005 s)");
        assert_eq!(m.first_error_after_fault_ms, Some(150));
        assert_eq!(m.throughput_recovered_after_ms, Some(400), "[3.9 s, 4.9 s) holds 9 ok completions (4.005 … 4.805 s): 90 % of 10/s");
        assert!((m.ops_per_sec - 40.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn a_phase_of_a_few_milliseconds_has_no_absurd_rate() {
        let mark = |name: &str, start_ms, end_ms| PhaseMark {
            name: name.into(),
            start_ms,
            end_ms,
            fault_ms: None,
            fault: None,
            fault_nodes: Vec::new(),
            recover_ms: None,
        };
        // Two operations start in a 2 ms phase and complete 50 ms later, in the next one.
        let ops = vec![op(1000, 50, Outcome::Ok), op(1001, 50, Outcome::Ok)];
        let m = compute(&[mark("a", 0, 1000), mark("b", 1000, 1002), mark("c", 1002, 2000)], &ops, &[], 0, 0.0);
        assert_eq!(m[1].counts.ok, 2, "counted by start");
        assert_eq!((m[1].committed, m[1].ops_per_sec), (0, 0.0), "but none committed during its 2 ms: no 1000 ops/s");
        assert_eq!(m[2].committed, 2);
    }

    #[test]
    fn operations_in_flight_at_a_fault_count_toward_the_fault() {
        let mark = |name: &str, start_ms, end_ms, fault_ms| PhaseMark {
            name: name.into(),
            start_ms,
            end_ms,
            fault_ms,
            fault: fault_ms.map(|_| "stop".to_string()),
            fault_nodes: Vec::new(),
            recover_ms: None,
        };
        let marks = [mark("baseline", 0, 5000, None), mark("graceful", 5000, 9000, Some(5002))];
        // Started 7 ms before the fault, failed 40 ms after it.
        let ops = vec![op(1000, 5, Outcome::Ok), op(4995, 47, Outcome::Ambiguous), op(4990, 5, Outcome::Ok), op(6000, 5, Outcome::Ok)];
        let m = compute(&marks, &ops, &[], 0, 10.0);
        assert_eq!((m[0].counts.ok, m[0].counts.ambiguous), (2, 0), "the baseline keeps what finished before the fault");
        assert_eq!((m[1].counts.ok, m[1].counts.ambiguous), (1, 1));
        assert_eq!(m[1].first_error_after_fault_ms, Some(40));
    }

    #[test]
    fn an_operation_started_after_the_last_phase_closed_is_still_counted() {
        let mark = |name: &str, start_ms, end_ms| PhaseMark {
            name: name.into(),
            start_ms,
            end_ms,
            fault_ms: None,
            fault: None,
            fault_nodes: Vec::new(),
            recover_ms: None,
        };
        let ops = vec![op(10, 5, Outcome::Ok), op(2500, 5, Outcome::Ok), op(3001, 5, Outcome::Ok)];
        let m = compute(&[mark("baseline", 0, 2000), mark("restore", 2000, 3000)], &ops, &[], 0, 0.0);
        assert_eq!((m[0].counts.ok, m[1].counts.ok), (1, 2), "the restore phase owns what started as the workload stopped");
    }

    #[test]
    fn series_buckets_by_completion_second() {
        let ops = vec![op(100, 5, Outcome::Ok), op(900, 200, Outcome::Ok), op(1500, 5, Outcome::Ambiguous)];
        let s = series(&ops, &[], 0, 3500, 3);
        assert_eq!(s.ok, vec![1, 1, 0]);
        assert_eq!(s.errors, vec![0, 1, 0]);
        assert_eq!(s.ambiguous, vec![0, 1, 0], "the ambiguous error is told apart");
        assert_eq!(s.members_up, vec![3, 3, 3]);
        assert!(s.ranges_underreplicated.is_empty(), "no range figures without ranges events");
        let ev = |ms: u64, under: u64| crate::events::Event {
            ts: time::OffsetDateTime::UNIX_EPOCH,
            mono_ms: 10_000 + ms,
            kind: EventKind::RangesChanged { ranges: Some(42), underreplicated: Some(under), unavailable: Some(0) },
        };
        let s = series(&ops, &[ev(1200, 42), ev(2500, 0)], 10_000, 3500, 3);
        assert_eq!(s.ranges_underreplicated, vec![0, 42, 0]);
        assert_eq!(s.ranges_unavailable, vec![0, 0, 0]);
    }
}
