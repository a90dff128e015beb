//! Running a bank check against a cluster that may not answer yet: right after a heal or a
//! restart, the first connection can fail (`connection closed`, a node not ready, a lease
//! not yet taken over). The check is then retried until the cluster answers, bounded.

use std::future::Future;
use std::time::{Duration, Instant};

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

#[cfg(test)]
mod tests {
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
}
