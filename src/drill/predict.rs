//! Predictions stated before a fault and checked after it: before each stop, kill or
//! decommission, the runner asks the daemon (`GET /v1/predict?down=…`) what losing those nodes
//! does to quorum — computed by the engine from the layout observed right then (CockroachDB:
//! each range's voting replicas; etcd: the member count) — and afterwards compares the
//! predicted verdict for the bank's writes with the transfers the workload actually committed
//! between that fault and the next fault or recovery.

use super::model::{ExpectationResult, Prediction};
use crate::watch::Writes;
use crate::workload::{OpDetail, OpRecord, Outcome};

/// Operations started this soon after a fault still count for the old layout (they were in
/// flight or queued when it struck), in ms.
pub const SETTLE_MS: u64 = 500;

/// Checks one prediction against the operations that *ended* in `[at + SETTLE_MS, until)`:
/// `Stop` → none of them committed; `Continue` → some did; `Some` → stated, not checked (which
/// transfers touch a lost range is not known per transfer). A layout the next fault or
/// recovery replaced within [`SETTLE_MS`] could not be observed: said so, and not held
/// against the drill.
pub fn check(p: &Prediction, ops: &[OpRecord]) -> ExpectationResult {
    let from = p.at_ms + SETTLE_MS;
    if p.until_ms <= from {
        return ExpectationResult {
            text: format!(
                "predicted at line {}: {} (not observable: the next step followed within {SETTLE_MS} ms)",
                p.line, p.prediction.text
            ),
            met: true,
            observed: format!("superseded after {} ms", p.until_ms.saturating_sub(p.at_ms)),
        };
    }
    let done = |o: &OpRecord| o.start_ms + o.latency_us / 1000;
    let window: Vec<&OpRecord> = ops.iter().filter(|o| done(o) >= from && done(o) < p.until_ms).collect();
    let ok = window.iter().filter(|o| o.outcome == Outcome::Ok).count();
    // The bank's operations are transfers; tpcb's and a script's are transactions.
    let noun = if ops.iter().all(|o| matches!(o.detail, OpDetail::Transfer(_))) { "transfer(s)" } else { "operation(s)" };
    let observed = format!(
        "{ok} of {} {noun} that ended {:.1}–{:.1} s committed",
        window.len(),
        from as f64 / 1000.0,
        p.until_ms as f64 / 1000.0
    );
    let met = match p.prediction.writes {
        Writes::Stop => ok == 0,
        Writes::Continue => ok > 0,
        Writes::Some => true,
    };
    let checked = if p.prediction.writes == Writes::Some { " (stated; not checked per transfer)" } else { "" };
    ExpectationResult { text: format!("predicted at line {}: {}{checked}", p.line, p.prediction.text), met, observed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::LossPrediction;
    use crate::workload::{ScriptOp, Transfer};

    fn op(start_ms: u64, outcome: Outcome) -> OpRecord {
        OpRecord {
            detail: OpDetail::Transfer(Transfer { id: uuid::Uuid::nil(), from: 1, to: 2, amount: 1 }),
            outcome,
            start_ms,
            latency_us: 1000,
            retries: 0,
            reconnects: 0,
            worker: 0,
            error: None,
        }
    }

    fn prediction(writes: Writes) -> Prediction {
        let p = LossPrediction {
            down: vec![2, 3],
            groups: 1,
            groups_lost: 1,
            lost_ids: vec![],
            workload_groups: None,
            writes,
            text: "t".into(),
        };
        Prediction { line: 7, at_ms: 1000, until_ms: 5000, prediction: p }
    }

    #[test]
    fn stop_holds_only_when_nothing_committed_after_the_fault() {
        let ops = vec![op(900, Outcome::Ok), op(1200, Outcome::Ok), op(2000, Outcome::Fail), op(6000, Outcome::Ok)];
        // The op at 1.2 s is within the settle window; the one at 6 s is after the window.
        let r = check(&prediction(Writes::Stop), &ops);
        assert!(r.met, "{r:?}");
        assert_eq!(r.observed, "0 of 1 transfer(s) that ended 1.5–5.0 s committed");
        let r = check(&prediction(Writes::Stop), &[op(3000, Outcome::Ok)]);
        assert!(!r.met);
        // A script's operations are not transfers.
        let mut script = op(3000, Outcome::Ok);
        script.detail = OpDetail::Script(ScriptOp { transactions: 1, committed: 1 });
        assert_eq!(check(&prediction(Writes::Continue), &[script]).observed, "1 of 1 operation(s) that ended 1.5–5.0 s committed");
    }

    #[test]
    fn a_layout_replaced_within_the_settle_time_is_not_held_against_the_drill() {
        let mut p = prediction(Writes::Continue);
        p.until_ms = p.at_ms + 100;
        let r = check(&p, &[op(1050, Outcome::Fail)]);
        assert!(r.met && r.text.contains("not observable"), "{r:?}");
    }

    #[test]
    fn continue_needs_a_commit_and_some_is_only_stated() {
        assert!(check(&prediction(Writes::Continue), &[op(3000, Outcome::Ok)]).met);
        assert!(!check(&prediction(Writes::Continue), &[op(3000, Outcome::Ambiguous)]).met);
        let r = check(&prediction(Writes::Some), &[]);
        assert!(r.met && r.text.contains("not checked"), "{r:?}");
    }
}
