//! Child processes: adopting them after a daemon restart, one task per child waiting for its
//! exit, spawning nodes, and signalling and stopping them by identity (PID + start time).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use time::OffsetDateTime;

use super::*;

impl Supervisor {
    // ----- adoption and watching -----------------------------------------------------------

    /// Re-adopts the recorded processes that still run; returns the monitoring servers among
    /// them (watched by [`Supervisor::resume_monitoring`]).
    pub(super) fn adopt(&self) -> Result<Vec<(crate::monitoring::Component, ProcIdentity)>> {
        let mut adopted = Vec::new();
        let haproxy_adopted;
        let monitors;
        {
            let mut st = self.state();
            for n in st.nodes.iter_mut() {
                let Some(id) = n.process else { continue };
                match id.liveness() {
                    Liveness::Alive => {
                        let since = OffsetDateTime::from_unix_timestamp(id.start_time as i64).unwrap_or_else(|_| OffsetDateTime::now_utc());
                        // A node paused (SIGSTOP) when the last daemon went stays paused.
                        n.state = if id.is_stopped() {
                            NodeState::Paused { pid: id.pid, since: OffsetDateTime::now_utc(), was_ready: true }
                        } else {
                            NodeState::Running { pid: id.pid, since }
                        };
                        adopted.push((n.id, id));
                    }
                    Liveness::Gone => {
                        // It died while no daemon watched: say so in the timeline (how it ended
                        // is not knowable any more).
                        self.emit(EventKind::NodeExited { node: n.id, pid: id.pid, status: ExitInfo::Unknown, after_ms: None });
                        self.emit(EventKind::Warning {
                            message: format!("node {}: pid {} exited while no daemon was running; found gone on adoption", n.id, id.pid),
                        });
                        n.state = NodeState::Exited { status: ExitInfo::Unknown, at: OffsetDateTime::now_utc() };
                        n.process = None;
                    }
                    Liveness::Reused { name, .. } => {
                        self.emit(EventKind::Warning {
                            message: format!(
                                "node {}: recorded pid {} now belongs to another process (`{name}`); it will not be signalled",
                                n.id, id.pid
                            ),
                        });
                        n.state = NodeState::Exited { status: ExitInfo::Unknown, at: OffsetDateTime::now_utc() };
                        n.process = None;
                    }
                }
            }
            haproxy_adopted = match st.haproxy {
                Some(id) if id.is_alive() => Some(id),
                Some(id) => {
                    if let Liveness::Reused { name, .. } = id.liveness() {
                        self.emit(EventKind::Warning {
                            message: format!("haproxy: recorded pid {} now belongs to `{name}`; it will not be signalled", id.pid),
                        });
                    }
                    st.haproxy = None;
                    None
                }
                None => None,
            };
            monitors = self.adopt_monitoring(&mut st);
            st.daemon = ProcIdentity::of_pid(std::process::id());
            st.save(&self.inner.lab.state_file())?;
        }
        let tag = self.lab_tag();
        for (node, id) in adopted {
            // A quota a previous daemon set still holds the process.
            let quota = crate::cgroup::quota_of(&tag, node);
            self.runtime().entry(node).or_default().cpu_quota_pct = quota;
            self.emit(EventKind::NodeAdopted { node, pid: id.pid });
            let sup = self.clone();
            tokio::spawn(async move { sup.watch_adopted(node, id).await });
        }
        if let Some(id) = haproxy_adopted {
            let sup = self.clone();
            tokio::spawn(async move { sup.watch_adopted_haproxy(id).await });
        }
        Ok(monitors)
    }

    /// Waits for a child we spawned to exit, then records how it ended.
    pub(super) async fn watch_child(&self, node: NodeId, id: ProcIdentity, mut child: Box<dyn process_wrap::tokio::ChildWrapper>) {
        let status = tokio::select! {
            s = child.wait() => s,
            // The daemon is going away: leave the node running for the next one.
            _ = self.inner.cancel.cancelled() => return,
        };
        let info = match status {
            Ok(s) => ExitInfo::from(s),
            Err(_) => ExitInfo::Unknown,
        };
        self.record_exit(node, id, info);
    }

    /// Polls an adopted node (not our child: no exit status) until it is gone.
    pub(super) async fn watch_adopted(&self, node: NodeId, id: ProcIdentity) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = self.inner.cancel.cancelled() => return,
            }
            if !id.is_alive() {
                self.record_exit(node, id, ExitInfo::Unknown);
                return;
            }
        }
    }

    pub(super) fn record_exit(&self, node: NodeId, id: ProcIdentity, status: ExitInfo) {
        let (signalled_at, throttled) = {
            let mut rt = self.runtime();
            let r = rt.entry(node).or_default();
            r.ready = false;
            r.ready_detail = Some("process exited".into());
            (r.signalled_at.take(), r.cpu_quota_pct.take().is_some())
        };
        // A throttled node's group is empty now (a restarted process is not put in it): gone
        // with it, not left behind for `down` to find.
        if throttled {
            if let Err(e) = crate::cgroup::unthrottle(&self.lab_tag(), node) {
                tracing::warn!("node {node}: its cgroup stays after its exit: {e}");
            }
        }
        let res = self.update(|st| {
            if let Ok(n) = st.node_mut(node) {
                if n.process == Some(id) {
                    n.process = None;
                    n.state = NodeState::Exited { status: status.clone(), at: OffsetDateTime::now_utc() };
                }
            }
        });
        if let Err(e) = res {
            self.emit(EventKind::Warning { message: format!("cannot save state: {e}") });
        }
        self.emit(EventKind::NodeExited {
            node,
            pid: id.pid,
            status: status.clone(),
            after_ms: signalled_at.map(|t| t.elapsed().as_millis() as u64),
        });
        self.consider_restart(node, &status);
    }

    pub(super) async fn watch_haproxy(&self, id: ProcIdentity, mut child: Box<dyn process_wrap::tokio::ChildWrapper>) {
        let status = tokio::select! {
            s = child.wait() => s,
            _ = self.inner.cancel.cancelled() => return,
        };
        let status = status.map(ExitInfo::from).unwrap_or(ExitInfo::Unknown);
        self.record_haproxy_exit(id, status);
    }

    pub(super) async fn watch_adopted_haproxy(&self, id: ProcIdentity) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = self.inner.cancel.cancelled() => return,
            }
            if !id.is_alive() {
                self.record_haproxy_exit(id, ExitInfo::Unknown);
                return;
            }
        }
    }

    pub(super) fn record_haproxy_exit(&self, id: ProcIdentity, status: ExitInfo) {
        let _ = self.update(|st| {
            if st.haproxy == Some(id) {
                st.haproxy = None;
            }
        });
        self.emit(EventKind::HaproxyExited { pid: id.pid, status });
    }

    // ----- node processes -------------------------------------------------------------------

    pub(super) fn spawn_node(&self, node: NodeId, mode: StartMode, members: &[Member]) -> Result<ProcIdentity> {
        let _permit = self.spawn_permit()?;
        let lab = &self.inner.lab;
        let engine = &self.inner.engine;
        let bin = engine.binary()?;
        let me = *members
            .iter()
            .find(|m| m.id == node)
            .ok_or_else(|| Error::UnknownNode { id: node, known: members.iter().map(|m| m.id).collect() })?;
        for dir in [lab.logs_dir(), lab.stores_dir()] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        }
        let args = engine.start_args(&StartContext { lab, node: me, members, mode });
        let topology = &self.inner.topology;
        topology.prepare_node(node)?;
        let netns = topology.netns_path(node);
        let mut spawned = process::spawn(&bin, &args, &engine.node_env(), &lab.node_log(node), netns.as_deref())?;
        let id = spawned.identity;
        {
            let mut rt = self.runtime();
            let r = rt.entry(node).or_default();
            r.ready = false;
            r.ready_detail = None;
            r.signalled_at = None;
            // What HAProxy said of the server was said of the previous process: a wait for it
            // to come UP must see a poll of this one (a stop's DRAIN and a restart within one
            // poll interval left a stale UP that ended `node start` before the undrain showed).
            r.backend = None;
            r.backend_check = None;
        }
        let before = self.state().node(node).map(|n| (n.process, n.state.clone())).ok();
        let recorded = self.update(|st| {
            if let Ok(n) = st.node_mut(node) {
                n.process = Some(id);
                n.state = NodeState::Starting { pid: id.pid, since: OffsetDateTime::now_utc() };
            }
        });
        if let Err(e) = recorded {
            // A process the state file does not record would outlive every later daemon
            // unseen: undo the start (memory and process alike) rather than keep a phantom.
            let _ = process::signal(&id, Signal::SIGKILL);
            let _ = spawned.child.start_kill();
            if let Some((process, state)) = before {
                let mut st = self.state();
                if let Ok(n) = st.node_mut(node) {
                    n.process = process;
                    n.state = state;
                }
            }
            self.bump();
            return Err(Error::NodeState {
                id: node,
                message: format!("was started, but its process could not be recorded ({e}); it was stopped again. Free the space or fix the permission, then retry"),
            });
        }
        self.emit(EventKind::NodeSpawned { node, pid: id.pid });
        let sup = self.clone();
        tokio::spawn(async move { sup.watch_child(node, id, spawned.child).await });
        Ok(id)
    }

    pub(super) fn check_node_ports(&self, nodes: &[NodeId]) -> Result<()> {
        if !self.inner.topology.nodes_share_host_ports() {
            return Ok(()); // each node binds in a namespace of its own
        }
        let claims: Vec<_> = nodes.iter().flat_map(|&n| self.inner.engine.port_claims(n)).collect();
        ports::check_free(&claims)
    }

    pub(super) async fn wait_ready(&self, nodes: &[NodeId], deadline: Duration) -> Result<()> {
        let nodes = nodes.to_vec();
        let lab = self.inner.lab.clone();
        let pending = |s: &Self| nodes.iter().copied().filter(|&n| !s.is_ready(n)).collect::<Vec<_>>();
        // Probes the pending live nodes every FAST_PROBE, in parallel, as the poller would;
        // each abandoned after FAST_PROBE_TIMEOUT (etcd holds a `/health` it accepted before it
        // serves), and enough rounds in flight to cover that wait.
        let probe = || {
            let live: Vec<(NodeId, String)> = self
                .state()
                .nodes
                .iter()
                .filter(|n| nodes.contains(&n.id) && n.process.is_some())
                .map(|n| (n.id, n.ports.http_addr()))
                .collect();
            // (`is_ready` takes the state lock itself: not while holding it above.)
            let targets: Vec<(NodeId, String)> = live.into_iter().filter(|(id, _)| !self.is_ready(*id)).collect();
            async move {
                let sent = Instant::now();
                let results = futures_util::future::join_all(
                    targets.iter().map(|t| tokio::time::timeout(FAST_PROBE_TIMEOUT, self.probe_readiness_of(std::slice::from_ref(t)))),
                )
                .await
                .into_iter()
                .flat_map(|r| r.unwrap_or_default());
                // Probes overlap, so a "timed out" can arrive after a newer "ready": only
                // readiness is applied here; the poller reports a node that is not ready.
                for (node, r) in results.filter(|(_, r)| r.ready) {
                    self.apply_readiness(node, r.ready, r.detail, sent);
                }
            }
        };
        let wait = self.wait_probing(
            || "nodes to become ready".into(),
            deadline,
            (FAST_PROBE, (FAST_PROBE_TIMEOUT.as_millis() / FAST_PROBE.as_millis()) as usize + 1),
            probe,
            |s| {
                // A node that exited will never become ready: fail fast.
                pending(s).is_empty() || nodes.iter().any(|&n| !s.is_live(n))
            },
        );
        let res = self.unless_client_gone(&format!("node(s) {} to become ready", join_ids(&nodes)), wait).await?;
        if let Some(dead) = nodes.iter().copied().find(|&n| !self.is_live(n)) {
            return Err(Error::NodeState {
                id: dead,
                message: format!("exited before becoming ready; see {}", lab.node_log(dead).display()),
            });
        }
        res.map_err(|_| {
            let p = pending(self);
            let logs: Vec<String> = p.iter().map(|&n| lab.node_log(n).display().to_string()).collect();
            Error::Timeout {
                what: format!("node(s) {} to become ready (see {})", join_ids(&p), logs.join(", ")),
                after_ms: deadline.as_millis() as u64,
            }
        })
    }

    /// Sends `sig` to a node's process group after checking its identity.
    pub(super) fn signal_node(&self, node: NodeId, sig: Signal, deadline: Option<Duration>) -> Result<ProcIdentity> {
        let (id, paused) = {
            let st = self.state();
            let n = st.node(node)?;
            (
                n.process.ok_or_else(|| Error::NodeState { id: node, message: "is not running".into() })?,
                matches!(n.state, NodeState::Paused { .. }),
            )
        };
        process::signal(&id, sig)?;
        if paused && sig != Signal::SIGKILL {
            // A stopped process acts on no signal but SIGKILL until it is continued.
            process::signal(&id, Signal::SIGCONT)?;
            self.emit(EventKind::NodeResumed { node, pid: id.pid });
        }
        {
            let mut rt = self.runtime();
            let r = rt.entry(node).or_default();
            r.signalled_at.get_or_insert_with(Instant::now);
        }
        // Bounded: a huge grace from an API client must not overflow the date.
        let deadline_at = OffsetDateTime::now_utc() + deadline.unwrap_or(Duration::ZERO).min(crate::config::MAX_DURATION);
        self.update(|st| {
            if let Ok(n) = st.node_mut(node) {
                if n.process == Some(id) {
                    n.state = NodeState::Stopping { pid: id.pid, signal: sig.as_str().into(), deadline: deadline_at };
                }
            }
        })?;
        self.emit(EventKind::NodeSignalled { node, pid: id.pid, signal: sig.as_str().into() });
        Ok(id)
    }

    pub(super) fn exit_of(&self, node: NodeId) -> Option<ExitInfo> {
        match &self.state().node(node).ok()?.state {
            NodeState::Exited { status, .. } => Some(status.clone()),
            _ => None,
        }
    }

    /// Stops nodes: `first` to all at once, then (per node still running at each deadline)
    /// each signal of `escalation` in turn. Reports progress every 5 s.
    pub(super) async fn stop_nodes(
        &self,
        nodes: &[NodeId],
        first: Signal,
        grace: Duration,
        escalation: &[(Signal, Duration)],
    ) -> Result<Vec<StopOutcome>> {
        let start = Instant::now();
        let start_wall = OffsetDateTime::now_utc();
        let mut outcomes: HashMap<NodeId, StopOutcome> = HashMap::new();
        let mut running = Vec::new();
        for &n in nodes {
            let mut o = StopOutcome { node: n, signals: vec![], exit: None, elapsed_ms: 0, outcome: "not running".into() };
            if self.is_live(n) {
                match self.signal_node(n, first, Some(grace)) {
                    Ok(_) => {
                        o.signals.push(first.as_str().into());
                        running.push(n);
                    }
                    Err(e) => self.emit(EventKind::Warning { message: format!("node {n}: {e}") }),
                }
            }
            outcomes.insert(n, o);
        }
        let mut stages = vec![(first, grace)];
        stages.extend_from_slice(escalation);
        for (i, &(sig, wait)) in stages.iter().enumerate() {
            if i > 0 {
                for &n in running.iter().filter(|&&n| self.is_live(n)) {
                    self.emit(EventKind::Warning {
                        message: format!(
                            "node {n} still running {:.0} s after {}; sending {}",
                            start.elapsed().as_secs_f64(),
                            stages[i - 1].0.as_str(),
                            sig.as_str()
                        ),
                    });
                    if self.signal_node(n, sig, Some(wait)).is_ok() {
                        outcomes.get_mut(&n).expect("outcome").signals.push(sig.as_str().into());
                    }
                }
            }
            let stage_start = Instant::now();
            loop {
                let left: Vec<NodeId> = running.iter().copied().filter(|&n| self.is_live(n)).collect();
                if left.is_empty() {
                    break;
                }
                let remaining = wait.saturating_sub(stage_start.elapsed());
                if remaining.is_zero() {
                    break;
                }
                let step = remaining.min(PROGRESS_EVERY);
                let _ = self.wait_until(|| "exit".into(), step, |s| left.iter().all(|&n| !s.is_live(n))).await;
                if stage_start.elapsed() < wait {
                    for &n in left.iter().filter(|&&n| self.is_live(n)) {
                        self.emit(EventKind::NodePhase {
                            node: n,
                            phase: format!(
                                "{} for {:.0} s of {:.0} s ({} sent)",
                                if sig == Signal::SIGKILL { "exiting" } else { "draining" },
                                stage_start.elapsed().as_secs_f64(),
                                wait.as_secs_f64(),
                                sig.as_str()
                            ),
                        });
                    }
                }
            }
        }
        let mut out = Vec::new();
        for &n in nodes {
            let mut o = outcomes.remove(&n).expect("outcome");
            if !o.signals.is_empty() {
                o.elapsed_ms = match &self.state().node(n)?.state {
                    NodeState::Exited { at, .. } => (*at - start_wall).whole_milliseconds().max(0) as u64,
                    _ => start.elapsed().as_millis() as u64,
                };
                o.exit = self.exit_of(n);
                o.outcome = if self.is_live(n) {
                    "still running".into()
                } else {
                    match o.signals.len() {
                        1 if first == Signal::SIGKILL => "killed",
                        1 => "drained",
                        _ if o.signals.last().map(String::as_str) == Some("SIGKILL") => "killed",
                        _ => "hard",
                    }
                    .into()
                };
            }
            out.push(o);
        }
        if let Some(stuck) = out.iter().find(|o| o.outcome == "still running") {
            return Err(Error::NodeState { id: stuck.node, message: "did not exit even after SIGKILL".into() });
        }
        Ok(out)
    }
}
