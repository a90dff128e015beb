//! The process faults' primitives (the [`crate::fault`] module drives their lifecycle):
//! several nodes killed, stopped or started at the same instant (a zone), paused and resumed
//! (SIGSTOP/SIGCONT to their process groups, identity-checked like every signal), and
//! throttled (a cgroup CPU quota).

use nix::sys::signal::Signal;
use time::OffsetDateTime;

use super::restart::Intent;
use super::*;

impl Supervisor {
    fn check_members(&self, nodes: &[NodeId]) -> Result<()> {
        if nodes.is_empty() {
            return Err(Error::Refused("no node named (a --locality that matches no node?)".into()));
        }
        let st = self.state();
        for &n in nodes {
            if st.node(n)?.decommissioned {
                return Err(Error::NodeState { id: n, message: "was decommissioned".into() });
            }
        }
        Ok(())
    }

    fn list(nodes: &[NodeId]) -> String {
        join_ids(nodes)
    }

    /// `node kill --locality …`: SIGKILL to every node at the same instant (a crash: a restart
    /// policy applies).
    pub async fn kill_nodes(&self, nodes: &[NodeId]) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.emit(EventKind::Command { command: format!("node kill {}", Self::list(nodes)), by: crate::events::requester() });
        self.check_members(nodes)?;
        for &n in nodes {
            self.require_live(n)?;
        }
        self.set_intent(nodes, Intent::Crash);
        let out = self.stop_nodes(nodes, Signal::SIGKILL, KILL_WAIT, &[]).await?;
        Ok(serde_json::json!({ "nodes": out }))
    }

    /// `node stop --locality …`: SIGTERM to every node at the same instant, SIGKILL after
    /// `grace` (no per-node drain: a zone going away is not a planned hand-off). Intentional:
    /// no restart.
    pub async fn stop_many(&self, nodes: &[NodeId], grace: Option<Duration>) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        let grace = grace.unwrap_or(self.spec().timeouts.grace);
        self.emit(EventKind::Command {
            command: format!("node stop {} (together, no drain)", Self::list(nodes)),
            by: crate::events::requester(),
        });
        self.check_members(nodes)?;
        for &n in nodes {
            self.require_live(n)?;
        }
        self.set_intent(nodes, Intent::Stop);
        let out = self.stop_nodes(nodes, Signal::SIGTERM, grace, &[(Signal::SIGKILL, KILL_WAIT)]).await?;
        Ok(serde_json::json!({ "nodes": out }))
    }

    /// `node start --locality …`: starts every listed member that is not running, all at once,
    /// and (unless `no_wait`) waits until all are ready and UP.
    pub async fn start_many(&self, nodes: &[NodeId], no_wait: bool) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.emit(EventKind::Command { command: format!("node start {}", Self::list(nodes)), by: crate::events::requester() });
        self.check_members(nodes)?;
        let to_start: Vec<NodeId> = nodes.iter().copied().filter(|&n| !self.is_live(n)).collect();
        self.check_node_ports(&to_start)?;
        let members = self.members();
        let mode = if self.state().initialized { StartMode::Restart } else { StartMode::Initial };
        for &n in &to_start {
            self.cancel_restart(n);
            self.spawn_node(n, mode, &members)?;
        }
        if !no_wait {
            // Not under the op lock: see `start_node`.
            drop(_op);
            let spec = self.spec();
            self.wait_ready(&to_start, spec.timeouts.ready).await?;
            if self.state().haproxy.is_some() {
                self.wait_backends_up(&to_start).await?;
            }
        }
        Ok(serde_json::json!({ "nodes": to_start }))
    }

    /// `node pause`: SIGSTOP to each node's process group. Refused for a node that is not
    /// running or already paused.
    pub async fn pause_nodes(&self, nodes: &[NodeId]) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.emit(EventKind::Command { command: format!("node pause {}", Self::list(nodes)), by: crate::events::requester() });
        self.check_members(nodes)?;
        for &n in nodes {
            self.require_live(n)?;
            if matches!(self.state().node(n)?.state, NodeState::Paused { .. }) {
                return Err(Error::NodeState { id: n, message: format!("is already paused; `roachlab node resume {n}` continues it") });
            }
        }
        for &n in nodes {
            let id = self.state().node(n)?.process.expect("checked live");
            process::signal(&id, Signal::SIGSTOP)?;
            let was_ready = matches!(self.state().node(n)?.state, NodeState::Running { .. });
            self.update(|st| {
                if let Ok(r) = st.node_mut(n) {
                    if r.process == Some(id) {
                        r.state = NodeState::Paused { pid: id.pid, since: OffsetDateTime::now_utc(), was_ready };
                    }
                }
            })?;
            self.readiness_unobserved(n);
            self.emit(EventKind::NodePaused { node: n, pid: id.pid });
        }
        Ok(serde_json::json!({ "nodes": nodes }))
    }

    /// `node resume`: SIGCONT. Refused for a node that is not paused.
    pub async fn resume_nodes(&self, nodes: &[NodeId]) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.emit(EventKind::Command { command: format!("node resume {}", Self::list(nodes)), by: crate::events::requester() });
        self.check_members(nodes)?;
        for &n in nodes {
            let st = self.state().node(n)?.state.clone();
            if !matches!(st, NodeState::Paused { .. }) {
                return Err(Error::NodeState { id: n, message: format!("is not paused (it is {})", describe_state(&st)) });
            }
        }
        for &n in nodes {
            self.resume_one(n)?;
        }
        Ok(serde_json::json!({ "nodes": nodes }))
    }

    /// SIGCONT to a paused node; its state goes back to what it was.
    pub(super) fn resume_one(&self, n: NodeId) -> Result<()> {
        let (id, state) = {
            let st = self.state();
            let r = st.node(n)?;
            (r.process, r.state.clone())
        };
        let (Some(id), NodeState::Paused { was_ready, .. }) = (id, state) else { return Ok(()) };
        process::signal(&id, Signal::SIGCONT)?;
        let now = OffsetDateTime::now_utc();
        self.update(|st| {
            if let Ok(r) = st.node_mut(n) {
                if r.process == Some(id) {
                    r.state = if was_ready {
                        NodeState::Running { pid: id.pid, since: now }
                    } else {
                        NodeState::Starting { pid: id.pid, since: now }
                    };
                }
            }
        })?;
        self.readiness_unobserved(n);
        self.emit(EventKind::NodeResumed { node: n, pid: id.pid });
        Ok(())
    }

    /// After a pause or a resume the node's last readiness answer no longer holds: it is not
    /// observed until a probe sent from now on answers (an answer to an older one is dropped).
    fn readiness_unobserved(&self, n: NodeId) {
        let mut rt = self.runtime();
        let r = rt.entry(n).or_default();
        // `ready` keeps the last answer, so the next one that differs is an event.
        r.ready_unobserved = true;
        r.ready_sent = Some(Instant::now());
    }

    /// `node throttle --cpu P%`: a CPU quota of P% of one core through cgroups.
    pub async fn throttle_nodes(&self, nodes: &[NodeId], cpu_pct: u32) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.emit(EventKind::Command {
            command: format!("node throttle {} --cpu {cpu_pct}%", Self::list(nodes)),
            by: crate::events::requester(),
        });
        if cpu_pct == 0 || cpu_pct > 100 {
            return Err(Error::Refused(format!("--cpu {cpu_pct}%: give a share of one core from 1% to 100%")));
        }
        self.check_members(nodes)?;
        for &n in nodes {
            self.require_live(n)?;
        }
        let tag = self.lab_tag();
        for &n in nodes {
            let pid = self.state().node(n)?.process.expect("checked live").pid;
            crate::cgroup::throttle(&tag, n, pid, cpu_pct)?;
            self.runtime().entry(n).or_default().cpu_quota_pct = Some(cpu_pct);
            self.emit(EventKind::NodeThrottled { node: n, cpu_pct: Some(cpu_pct) });
        }
        self.bump();
        Ok(serde_json::json!({ "nodes": nodes, "cpu_pct": cpu_pct, "cgroup": crate::cgroup::version() }))
    }

    /// `node unthrottle`: the quota removed (its cgroup deleted). Refused for a node that is
    /// not throttled.
    pub async fn unthrottle_nodes(&self, nodes: &[NodeId]) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.emit(EventKind::Command { command: format!("node unthrottle {}", Self::list(nodes)), by: crate::events::requester() });
        self.check_members(nodes)?;
        let tag = self.lab_tag();
        for &n in nodes {
            if crate::cgroup::quota_of(&tag, n).is_none() {
                return Err(Error::NodeState { id: n, message: "is not throttled".into() });
            }
        }
        for &n in nodes {
            crate::cgroup::unthrottle(&tag, n)?;
            self.runtime().entry(n).or_default().cpu_quota_pct = None;
            self.emit(EventKind::NodeThrottled { node: n, cpu_pct: None });
        }
        self.bump();
        Ok(serde_json::json!({ "nodes": nodes }))
    }

    /// Removes every node's cgroup (for `down`); failures are warnings.
    pub(super) fn unthrottle_all(&self) {
        let tag = self.lab_tag();
        let ids: Vec<NodeId> = self.state().nodes.iter().map(|n| n.id).collect();
        for n in ids {
            match crate::cgroup::unthrottle(&tag, n) {
                Ok(true) => {
                    self.runtime().entry(n).or_default().cpu_quota_pct = None;
                    self.emit(EventKind::NodeThrottled { node: n, cpu_pct: None })
                }
                Ok(false) => {}
                Err(e) => self.emit(EventKind::Warning { message: format!("node {n}: cannot remove its CPU quota: {e}") }),
            }
        }
    }

    /// The lab's tag in the names of what it creates on the host (namespaces, cgroups).
    pub(super) fn lab_tag(&self) -> String {
        crate::topology::netns::tag_of(self.inner.lab.dir())
    }
}
