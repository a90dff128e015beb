//! Running a bank check against a cluster that may not answer yet: right after a heal or a
//! restart, the first connection can fail (`connection closed`, a node not ready, a lease
//! not yet taken over). The check is then retried until the cluster answers, bounded. What a
//! check found is a [`CheckReport`]: the engines' bank modules read the database into it, and
//! it compares the client's log of the run with the history.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::record::{OpDetail, OpRecord, Outcome};
use crate::Result;

/// How long a check is retried while the cluster does not answer: longer than a dead
/// leaseholder's lease takeover on any release (≤ 14 s) and an etcd election, with room for
/// a loaded machine.
pub const CHECK_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `check` until it returns a report, at most `patience`, once a second; `on_retry` is
/// told each failure that is retried. A check that *ran* returns its report, violations and
/// all: only an error (the cluster did not answer) is retried. Returns the last error when
/// the time is up.
pub async fn until_answered<T, F, Fut>(patience: Duration, mut check: F, mut on_retry: impl FnMut(&crate::Error)) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(r) => return Ok(r),
            Err(e) if start.elapsed() + Duration::from_secs(1) < patience => {
                on_retry(&e);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What `check bank` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub accounts: u64,
    pub total_balance: i64,
    pub transfers_in_history: u64,
    /// `ok` transfers of the last run (all must be in the history).
    pub ok_checked: u64,
    /// `fail` transfers of the last run (none may be in the history).
    pub fail_checked: u64,
    /// `ambiguous` transfers of the last run found in / missing from the history.
    pub ambiguous_found: u64,
    pub ambiguous_missing: u64,
    /// Every violation, in words naming what is wrong.
    pub violations: Vec<String>,
}

impl CheckReport {
    /// Compares the client's log of the last run with the history read from the database.
    pub fn compare_log(&mut self, ops: &[OpRecord], history: &std::collections::HashSet<Uuid>) {
        let mut missing_ok = Vec::new();
        let mut applied_fail = Vec::new();
        for op in ops {
            let OpDetail::Transfer(t) = op.detail else { continue };
            let found = history.contains(&t.id);
            match op.outcome {
                Outcome::Ok => {
                    self.ok_checked += 1;
                    if !found {
                        missing_ok.push(t.id);
                    }
                }
                Outcome::Fail => {
                    self.fail_checked += 1;
                    if found {
                        applied_fail.push(t.id);
                    }
                }
                Outcome::Ambiguous if found => self.ambiguous_found += 1,
                Outcome::Ambiguous => self.ambiguous_missing += 1,
            }
        }
        if !missing_ok.is_empty() {
            self.violations.push(format!(
                "{} acknowledged (ok) transfer(s) missing from the history, e.g. {}",
                missing_ok.len(),
                missing_ok.iter().take(3).map(Uuid::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
        if !applied_fail.is_empty() {
            self.violations.push(format!(
                "{} failed transfer(s) applied anyway, e.g. {}",
                applied_fail.len(),
                applied_fail.iter().take(3).map(Uuid::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
    }

    /// A human report.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} accounts, total balance {}, {} transfers in the history\n\
             last run: {} ok all present: {}; {} failed none applied: {}; ambiguous: {} applied, {} not applied\n",
            self.accounts,
            self.total_balance,
            self.transfers_in_history,
            self.ok_checked,
            if self.violations.iter().any(|v| v.contains("acknowledged")) { "NO" } else { "yes" },
            self.fail_checked,
            if self.violations.iter().any(|v| v.contains("applied anyway")) { "NO" } else { "yes" },
            self.ambiguous_found,
            self.ambiguous_missing,
        );
        if self.violations.is_empty() {
            out.push_str("check passed\n");
        } else {
            for v in &self.violations {
                out.push_str(&format!("VIOLATION: {v}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::Transfer;
    use super::*;

    #[tokio::test]
    async fn a_check_is_retried_until_the_cluster_answers_and_not_forever() {
        let mut calls = 0;
        let mut told = 0;
        let r = until_answered(
            Duration::from_secs(10),
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(crate::Error::Refused("connection closed".into()))
                    } else {
                        Ok(n)
                    }
                }
            },
            |_| told += 1,
        )
        .await;
        assert_eq!((r.unwrap(), told), (3, 2));
        let r: Result<u32> =
            until_answered(Duration::from_millis(10), || async { Err(crate::Error::Refused("down".into())) }, |_| {}).await;
        assert!(r.unwrap_err().to_string().contains("down"), "given up at once when out of patience");
    }

    fn op(outcome: Outcome, n: u128) -> OpRecord {
        OpRecord {
            detail: OpDetail::Transfer(Transfer { id: Uuid::from_u128(n), from: 0, to: 1, amount: 5 }),
            outcome,
            start_ms: 0,
            latency_us: 1,
            retries: 0,
            reconnects: 0,
            worker: 0,
            error: None,
        }
    }

    #[test]
    fn the_log_check_flags_lost_acks_and_applied_failures_and_sorts_ambiguity() {
        let history: std::collections::HashSet<Uuid> = [1, 3, 5].into_iter().map(Uuid::from_u128).collect();
        let ops = vec![
            op(Outcome::Ok, 1),
            op(Outcome::Ok, 2),
            op(Outcome::Fail, 3),
            op(Outcome::Fail, 4),
            op(Outcome::Ambiguous, 5),
            op(Outcome::Ambiguous, 6),
        ];
        let mut r = CheckReport::default();
        r.compare_log(&ops, &history);
        assert_eq!((r.ok_checked, r.fail_checked, r.ambiguous_found, r.ambiguous_missing), (2, 2, 1, 1));
        assert_eq!(r.violations.len(), 2);
        assert!(
            r.violations[0].contains("1 acknowledged (ok) transfer(s) missing")
                && r.violations[0].contains(&Uuid::from_u128(2).to_string())
        );
        assert!(r.violations[1].contains("1 failed transfer(s) applied anyway"));
        let mut clean = CheckReport::default();
        clean.compare_log(&ops[..1], &history);
        assert!(clean.violations.is_empty() && clean.describe().ends_with("check passed\n"));
    }
}
