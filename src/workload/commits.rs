//! When a run's operations last committed, shared with whoever waits for writes to resume (a
//! drill's `writes resumed` condition) while the run goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The latest moment a committed operation *began*, in µs since `origin` (+1, so 0 means
/// none yet). Updated by the workers as each operation ends; read at any time.
#[derive(Debug)]
pub struct CommitClock {
    origin: Instant,
    last_ok_began_us: AtomicU64,
}

impl CommitClock {
    /// A clock measuring from `origin` (any instant at or before the run's start).
    pub fn new(origin: Instant) -> Self {
        Self { origin, last_ok_began_us: AtomicU64::new(0) }
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
}
