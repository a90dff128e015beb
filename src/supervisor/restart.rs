//! The restart policy (Kubernetes' `restartPolicy` and CrashLoopBackOff are the model): when
//! a node exits without the lab asking for it, decide whether to start it again, after a
//! backoff that doubles per restart (1 s, 2 s, 4 s … capped at `restart_backoff.max`) and
//! starts over once the node has stayed ready for `restart_backoff.reset_after`.
//!
//! The rule for faults: a **stop** (`node stop`, `down`, a decommission, a drill's `stop`) is
//! intentional and never restarted; a **kill** (`node kill`, a drill's `kill`) is a crash, and
//! the policy applies to it as to any exit the lab did not ask for.

use std::collections::VecDeque;

use time::OffsetDateTime;

use super::*;

/// Why a node's process is being ended, as far as the restart policy is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Intent {
    /// Asked to stop: never restarted.
    Stop,
    /// Killed on purpose as a crash fault: restarted under `on-failure` and `always`.
    Crash,
}

/// How long restarts are remembered to spot a crash loop, and how many make one.
const LOOP_WINDOW: Duration = Duration::from_secs(120);
const LOOP_RESTARTS: usize = 3;

/// Restart bookkeeping of one node (not persisted: a new daemon starts it afresh).
#[derive(Debug, Clone, Default)]
pub(super) struct RestartBook {
    pub intent: Option<Intent>,
    /// Automatic restarts since the daemon started.
    pub total: u32,
    /// Restarts since the backoff last started over.
    pub streak: u32,
    pub recent: VecDeque<Instant>,
    /// When the pending restart is due.
    pub next_at: Option<OffsetDateTime>,
    /// Bumped to cancel a pending restart.
    pub token: u64,
    /// Since when the node has been ready without a break.
    pub ready_since: Option<Instant>,
    /// `crash-loop (restart 5 in 40 s)` while it loops.
    pub crash_loop: Option<String>,
}

/// Whether `policy` restarts a node that ended with `status`, given the lab's `intent`.
pub fn should_restart(policy: crate::config::RestartPolicy, status: &ExitInfo, intent: Option<Intent>) -> bool {
    use crate::config::RestartPolicy::*;
    match (policy, intent) {
        (Never, _) | (_, Some(Intent::Stop)) => false,
        (_, Some(Intent::Crash)) => true,
        (Always, None) => true,
        (OnFailure, None) => !matches!(status, ExitInfo::Code(0)),
    }
}

impl Supervisor {
    fn book<T>(&self, node: NodeId, f: impl FnOnce(&mut RestartBook) -> T) -> T {
        let mut rt = self.runtime();
        f(&mut rt.entry(node).or_default().restart)
    }

    /// Records why the nodes are about to be ended, and says whether the restart policy
    /// will bring them back (a stop: never; a kill: a crash, so yes unless the policy is
    /// `never`).
    pub(super) fn set_intent(&self, nodes: &[NodeId], intent: Intent) {
        for &n in nodes {
            self.book(n, |b| b.intent = Some(intent));
        }
        let policy = self.spec().restart.policy;
        if policy != crate::config::RestartPolicy::Never && !self.inner.exiting.load(std::sync::atomic::Ordering::SeqCst) {
            self.emit(EventKind::Note {
                message: match intent {
                    Intent::Stop => {
                        format!("restart policy `{policy}`: a stop is intentional, node(s) {} will not be restarted", join_ids(nodes))
                    }
                    Intent::Crash => format!("restart policy `{policy}`: a kill is a crash, node(s) {} will be restarted", join_ids(nodes)),
                },
            });
        }
    }

    /// Cancels a pending automatic restart of `node` (it is being started or stopped by a
    /// request). Returns whether one was pending.
    pub(super) fn cancel_restart(&self, node: NodeId) -> bool {
        self.book(node, |b| {
            b.token += 1;
            b.next_at.take().is_some()
        })
    }

    /// Readiness seen by the poller: a node ready for `reset_after` starts its backoff over
    /// and leaves a crash loop.
    pub(super) fn note_ready_for_restarts(&self, node: NodeId, ready: bool) {
        let reset_after = self.spec().restart.reset_after;
        self.book(node, |b| {
            if !ready {
                b.ready_since = None;
                return;
            }
            let since = *b.ready_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= reset_after {
                b.streak = 0;
                b.crash_loop = None;
            }
        });
    }

    /// Called with every recorded exit: schedules a restart if the policy says so.
    pub(super) fn consider_restart(&self, node: NodeId, status: &ExitInfo) {
        let restart = self.spec().restart;
        let intent = self.book(node, |b| b.intent.take());
        let decommissioned = self.state().node(node).map(|n| n.decommissioned).unwrap_or(true);
        if decommissioned || self.inner.exiting.load(std::sync::atomic::Ordering::SeqCst) || !should_restart(restart.policy, status, intent)
        {
            return;
        }
        let now = Instant::now();
        let (attempt, delay, token, looping) = self.book(node, |b| {
            if b.ready_since.is_some_and(|t| t.elapsed() >= restart.reset_after) {
                b.streak = 0;
            }
            b.ready_since = None;
            b.streak += 1;
            b.total += 1;
            b.recent.push_back(now);
            while b.recent.front().is_some_and(|t| now.duration_since(*t) > LOOP_WINDOW) {
                b.recent.pop_front();
            }
            let delay = restart.backoff(b.streak);
            b.next_at = Some(OffsetDateTime::now_utc() + delay);
            b.token += 1;
            let looping = (b.recent.len() >= LOOP_RESTARTS).then(|| {
                let span = now.duration_since(*b.recent.front().expect("non-empty")).as_secs().max(1);
                b.crash_loop = Some(format!("crash-loop (restart {} in {span} s)", b.recent.len()));
                (b.recent.len() as u32, span)
            });
            (b.total, delay, b.token, looping)
        });
        let why = match intent {
            Some(Intent::Crash) => format!("killed ({status}), a crash"),
            _ => format!("exited unasked ({status})"),
        };
        self.emit(EventKind::NodeRestartScheduled { node, attempt, in_ms: delay.as_millis() as u64, reason: why });
        if let Some((restarts, window_s)) = looping {
            self.emit(EventKind::NodeCrashLoop { node, restarts, window_s, last_lines: last_lines(&self.inner.lab.node_log(node), 5) });
        }
        self.bump();
        let sup = self.clone();
        tokio::spawn(async move { sup.restart_after(node, delay, token).await });
    }

    async fn restart_after(&self, node: NodeId, delay: Duration, token: u64) {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.inner.cancel.cancelled() => return,
        }
        let Ok(_op) = self.begin_op().await else { return };
        let still_due = self.book(node, |b| {
            let due = b.token == token && b.next_at.is_some();
            if due {
                b.next_at = None;
            }
            due
        });
        if !still_due || self.is_live(node) {
            return;
        }
        let members = self.members();
        match self.spawn_node(node, StartMode::Restart, &members) {
            Ok(_) => self.emit(EventKind::Note {
                message: format!("node {node}: restarted by the restart policy ({})", self.spec().restart.policy),
            }),
            Err(e) => {
                self.emit(EventKind::Warning { message: format!("node {node}: the restart policy could not start it: {e}") });
                // Treated like an exit: the next attempt comes after a longer backoff.
                self.consider_restart(node, &ExitInfo::Unknown);
            }
        }
    }
}

/// The last `n` lines of a log file (for a crash loop's report).
pub(super) fn last_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let text =
        std::fs::read(path).map(|b| String::from_utf8_lossy(&b[b.len().saturating_sub(64 * 1024)..]).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| l.chars().take(300).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RestartPolicy::*;

    #[test]
    fn a_stop_is_never_restarted_and_a_kill_is_a_crash() {
        let sigkill = ExitInfo::Signal("SIGKILL".into());
        assert!(!should_restart(Never, &sigkill, Some(Intent::Crash)));
        assert!(should_restart(OnFailure, &sigkill, Some(Intent::Crash)), "node kill is a crash");
        assert!(!should_restart(OnFailure, &ExitInfo::Signal("SIGTERM".into()), Some(Intent::Stop)), "node stop is intentional");
        assert!(!should_restart(Always, &ExitInfo::Code(0), Some(Intent::Stop)));
        assert!(should_restart(OnFailure, &sigkill, None), "a SIGKILL from outside the lab");
        assert!(should_restart(OnFailure, &ExitInfo::Code(1), None));
        assert!(!should_restart(OnFailure, &ExitInfo::Code(0), None), "a clean exit is not a failure");
        assert!(should_restart(Always, &ExitInfo::Code(0), None));
        assert!(should_restart(OnFailure, &ExitInfo::Unknown, None), "an adopted node that died: unknown, assumed failed");
    }

    #[test]
    fn last_lines_of_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node-1.log");
        std::fs::write(&p, "a\nb\n\nc\nd\n").unwrap();
        assert_eq!(last_lines(&p, 2), vec!["c", "d"]);
        assert!(last_lines(&dir.path().join("none"), 3).is_empty());
    }
}
