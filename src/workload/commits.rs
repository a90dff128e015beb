//! When a run's operations last committed, shared with whoever waits for writes to resume (a
//! drill's `writes resumed` condition) while the run goes on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long writes must have flowed before they count as resumed ([`CommitClock::flowing_since`]).
pub const FLOW_WINDOW: Duration = Duration::from_secs(2);

/// The latest moment a committed operation *began*, in µs since `origin` (+1, so 0 means
/// none yet), and when each worker's operation in flight began. Updated by the workers as
/// each operation begins and ends; read at any time.
#[derive(Debug)]
pub struct CommitClock {
    origin: Instant,
    last_ok_began_us: AtomicU64,
    /// The latest moment an operation *ended* failed or ambiguous, like `last_ok_began_us`.
    last_fail_ended_us: AtomicU64,
    /// Worker → when its operation in flight began.
    in_flight: Mutex<HashMap<usize, Instant>>,
}

impl CommitClock {
    /// A clock measuring from `origin` (any instant at or before the run's start).
    pub fn new(origin: Instant) -> Self {
        Self { origin, last_ok_began_us: AtomicU64::new(0), last_fail_ended_us: AtomicU64::new(0), in_flight: Mutex::new(HashMap::new()) }
    }

    /// An operation ended at `at` without committing (failed, or its outcome unknown).
    pub fn failed(&self, at: Instant) {
        let us = at.saturating_duration_since(self.origin).as_micros() as u64 + 1;
        self.last_fail_ended_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Worker `worker` began an operation at `at`.
    pub fn began(&self, worker: usize, at: Instant) {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(worker, at);
    }

    /// Worker `worker`'s operation ended (whatever its outcome).
    pub fn ended(&self, worker: usize) {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&worker);
    }

    /// Whether writes flow again since `fault`, as of `now`: for the last `window` (which
    /// must lie wholly after the fault) some operation begun in it committed, none ended
    /// failed or ambiguous, and none has been in flight for longer than it (a transfer stuck
    /// on what the fault took away either hangs, or fails at its statement timeout and is
    /// tried again: both show). One commit is not enough: on
    /// CockroachDB a transfer whose ranges all have live leaseholders commits at once after a
    /// SIGKILL, while those whose ranges' leaseholder died stall until its liveness record
    /// expires (~9 s on v20.1) and their leases move; a stuck worker shows that. `Err` says
    /// what is still missing.
    pub fn flowing_since(&self, fault: Instant, now: Instant, window: Duration) -> Result<(), String> {
        let watched = now.saturating_duration_since(fault);
        if watched < window {
            return Err(format!(
                "watching the clients for {:.1} s after the fault ({:.1} s so far)",
                window.as_secs_f64(),
                watched.as_secs_f64()
            ));
        }
        let from = now - window;
        if !self.committed_since(from) {
            return Err(format!("no transfer begun in the last {:.1} s has committed", window.as_secs_f64()));
        }
        let last_fail = self.last_fail_ended_us.load(Ordering::Relaxed);
        if last_fail > 0 && last_fail - 1 > from.saturating_duration_since(self.origin).as_micros() as u64 {
            return Err(format!("a transfer failed in the last {:.1} s", window.as_secs_f64()));
        }
        let oldest = self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).values().min().copied();
        match oldest {
            Some(b) if b < from => Err(format!(
                "a transfer has been in flight for {:.1} s (stuck on what the fault took away)",
                now.saturating_duration_since(b).as_secs_f64()
            )),
            _ => Ok(()),
        }
    }

    /// An operation that began at `began` committed.
    pub fn committed(&self, began: Instant) {
        let us = began.saturating_duration_since(self.origin).as_micros() as u64 + 1;
        self.last_ok_began_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Whether some operation that began after `t` has committed: writes go through again
    /// since `t` (an operation begun before `t` may have been in flight through it).
    pub fn committed_since(&self, t: Instant) -> bool {
        let last = self.last_ok_began_us.load(Ordering::Relaxed);
        last > 0 && last - 1 > t.saturating_duration_since(self.origin).as_micros() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_an_operation_begun_after_the_moment_counts() {
        let origin = Instant::now();
        let c = CommitClock::new(origin);
        let fault = origin + Duration::from_millis(100);
        assert!(!c.committed_since(origin), "nothing committed yet");
        c.committed(origin + Duration::from_millis(50));
        assert!(!c.committed_since(fault), "begun before the fault: it may have been in flight through it");
        c.committed(origin + Duration::from_millis(150));
        assert!(c.committed_since(fault));
        c.committed(origin + Duration::from_millis(120));
        assert!(c.committed_since(fault), "the latest stays");
        assert!(!c.committed_since(origin + Duration::from_millis(200)));
    }

    #[test]
    fn writes_flow_only_once_no_worker_is_stuck_for_a_whole_window() {
        let origin = Instant::now();
        let c = CommitClock::new(origin);
        let fault = origin + Duration::from_secs(10);
        let w = Duration::from_secs(2);
        let at = |s: f64| origin + Duration::from_secs_f64(s);
        // Worker 0 is stuck from just after the fault; worker 1 commits through other ranges.
        c.began(0, at(10.1));
        c.began(1, at(10.2));
        c.committed(at(10.2));
        c.ended(1);
        assert!(c.flowing_since(fault, at(10.5), w).unwrap_err().contains("watching"), "too early to tell");
        c.began(1, at(11.9));
        c.committed(at(11.9));
        c.ended(1);
        assert!(c.flowing_since(fault, at(12.5), w).unwrap_err().contains("in flight for 2.4 s"), "worker 0 is stuck");
        // The lease moves: worker 0's transfer ends, and both commit again.
        c.ended(0);
        c.began(0, at(19.0));
        c.committed(at(19.0));
        c.ended(0);
        assert!(c.flowing_since(fault, at(20.0), w).is_ok());
        // A transfer that fails (a statement timeout on a range without a lease) is no flow.
        c.failed(at(20.5));
        c.began(1, at(20.6));
        c.committed(at(20.6));
        c.ended(1);
        assert!(c.flowing_since(fault, at(21.0), w).unwrap_err().contains("failed"));
        assert!(c.flowing_since(fault, at(22.55), w).is_ok(), "2 s later without a failure");
        assert!(c.flowing_since(fault, at(23.0), w).unwrap_err().contains("no transfer begun"), "nothing since 20.6 s");
    }
}
