//! The lifecycle requests of the API (up, node start/stop/kill/add/decommission, settings,
//! predictions, down), each under the op lock.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::*;

impl Supervisor {
    // ----- requests ---------------------------------------------------------------------------

    /// `up`: starts every member that is not running, bootstraps a new cluster, starts or
    /// reloads HAProxy, and waits until all nodes are ready and UP in HAProxy.
    pub async fn up(
        &self,
        restart: Option<crate::config::RestartPolicy>,
        monitoring: Option<crate::monitoring::MonitoringSpec>,
    ) -> Result<serde_json::Value> {
        let _up = match self.inner.up_lock.try_lock() {
            Ok(g) => g,
            Err(_) => {
                self.emit(EventKind::Note { message: "up: waiting for the `up` in progress to finish first".into() });
                self.unless_client_gone("the `up` in progress", self.inner.up_lock.lock()).await?
            }
        };
        let op = self.begin_op().await?;
        self.emit(EventKind::Command { command: "up".into(), by: crate::events::requester() });
        if let Some(policy) = restart.filter(|p| *p != self.spec().restart.policy) {
            self.update(|st| st.spec.restart.policy = policy)?;
            self.emit(EventKind::Note { message: format!("restart policy: {policy}") });
        }
        if let Some(m) = monitoring.filter(|m| m.enabled && !self.spec().monitoring.enabled) {
            self.update(|st| st.spec.monitoring = m)?;
            self.emit(EventKind::Note { message: "monitoring: on (Prometheus and Alertmanager)".into() });
        }
        let spec = self.spec();
        self.inner.engine.binary()?;
        haproxy::binary(&spec.haproxy)?;
        self.inner.topology.check_prerequisites()?;
        let v = self.inner.engine.version().await?;
        // A secure lab's certificates, before any node needs them.
        self.use_certificates().await?;
        self.emit(EventKind::Note { message: format!("{} {}", spec.engine, v.version) });
        if let Some(w) = v.warning {
            self.emit(EventKind::Warning { message: w });
        }
        let members = self.members();
        let to_start: Vec<NodeId> = members.iter().map(|m| m.id).filter(|&n| !self.is_live(n)).collect();
        self.check_node_ports(&to_start)?;
        if self.state().haproxy.is_none() {
            ports::check_free(&haproxy::port_claims(&spec.haproxy))?;
        }
        // Before any node starts: the monitoring stack's binaries, ports and files.
        self.check_monitoring().await?;
        let initialized = self.state().initialized;
        let mode = if initialized { StartMode::Restart } else { StartMode::Initial };
        for &n in &to_start {
            self.spawn_node(n, mode, &members)?;
            if let (StartMode::Initial, Some(m)) = (mode, members.iter().find(|m| m.id == n)) {
                self.inner.engine.after_initial_spawn(&self.http(), m).await;
            }
        }
        let paths: Vec<(NodeId, std::net::SocketAddr)> =
            members.iter().map(|m| (m.id, std::net::SocketAddr::from((m.ports.host, m.ports.service)))).collect();
        let topology = self.inner.topology.clone();
        tokio::task::spawn_blocking(move || topology.check_paths(&paths))
            .await
            .map_err(|e| Error::Refused(format!("the network check failed: {e}")))??;
        if !initialized {
            if let Some(detail) = self.inner.engine.bootstrap(&self.inner.lab, &members).await? {
                self.emit(EventKind::ClusterInitialized { detail });
            }
        }
        let all: Vec<NodeId> = members.iter().map(|m| m.id).collect();
        // The waits for readiness are not under the op lock (see `start_node`): a resume or a
        // heal a node needs, a kill or a down, go ahead meanwhile. HAProxy's config is written
        // and checked while the nodes start; it starts (or reloads) once they are ready, so its
        // first checks find them ready.
        drop(op);
        let (ready, prepared) = futures_util::join!(self.wait_ready(&all, spec.timeouts.ready), self.prepare_haproxy());
        ready?;
        let prepared = prepared?;
        let op = self.begin_op().await?;
        // A new cluster is configured (CockroachDB: cluster settings through `cockroach sql`,
        // a process of its own) while HAProxy starts and checks the nodes; the members' engine
        // ids are asked meanwhile too. None of the three needs another.
        let configured = async {
            if !initialized {
                for note in self.inner.engine.configure(&members, spec.haproxy.down_window()).await? {
                    self.emit(EventKind::Note { message: note });
                }
                self.update(|st| st.initialized = true)?;
            }
            Ok::<(), Error>(())
        };
        let fronted = async {
            // The engine's ids are asked meanwhile — on a secure lab once the cluster is
            // configured (its admin session needs the user that configuration makes).
            let ids = async {
                if !spec.security.secure {
                    self.learn_engine_ids().await
                }
            };
            let ((), haproxy) = futures_util::join!(ids, self.start_or_reload_haproxy(prepared));
            haproxy?;
            // HAProxy runs: what is left is a wait, not under the op lock.
            drop(op);
            self.wait_backends_up(&all).await
        };
        let (configured, fronted) = futures_util::join!(configured, fronted);
        configured?;
        fronted?;
        // Any id not learned yet (a secure lab's, above) is asked now.
        if self.state().nodes.iter().any(|n| !n.decommissioned && n.engine_id.is_none()) {
            self.learn_engine_ids().await;
        }
        // The files were written and checked by `check_monitoring` above; the members are the same.
        let _op = self.begin_op().await?;
        self.apply_monitoring(true).await?;
        Ok(serde_json::json!({ "started": to_start, "nodes": all }))
    }

    /// Keeps the console's settings an `up` asked for (`--no-console`, `--console-port`) in
    /// the lab's state; the daemon serves it.
    pub fn set_console(&self, console: crate::config::console::ConsoleSpec) -> Result<()> {
        self.update(|st| st.spec.console = console)?;
        self.emit(EventKind::Note {
            message: if console.enabled { format!("console: on, port {}", console.port) } else { "console: off".into() },
        });
        Ok(())
    }

    /// `node start N`: restarts a stopped member on its store and, unless `no_wait`, waits
    /// until it is ready (and UP in HAProxy, when HAProxy runs).
    pub async fn start_node(&self, node: NodeId, no_wait: bool) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.emit(EventKind::Command { command: format!("node start {node}"), by: crate::events::requester() });
        let rec = self.state().node(node)?.clone();
        if rec.decommissioned {
            return Err(Error::NodeState { id: node, message: "was decommissioned and cannot rejoin; use `roachlab node add`".into() });
        }
        if let Some(p) = rec.process {
            return Err(Error::NodeState { id: node, message: format!("is already running (pid {})", p.pid) });
        }
        self.check_node_ports(&[node])?;
        let members = self.members();
        let mode = if self.state().initialized { StartMode::Restart } else { StartMode::Initial };
        self.cancel_restart(node);
        self.spawn_node(node, mode, &members)?;
        if no_wait {
            return Ok(serde_json::json!({ "node": node }));
        }
        // The wait for readiness acts on nothing: other requests (a resume or a heal that the
        // node needs to become ready, a kill, a down) are not queued behind it.
        drop(_op);
        let spec = self.spec();
        self.wait_ready(&[node], spec.timeouts.ready).await?;
        if self.state().haproxy.is_some() {
            self.wait_backends_up(&[node]).await?;
        }
        Ok(serde_json::json!({ "node": node }))
    }

    /// `node kill N`: SIGKILL now.
    pub async fn kill_node(&self, node: NodeId) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.emit(EventKind::Command { command: format!("node kill {node}"), by: crate::events::requester() });
        self.require_live(node)?;
        self.set_intent(&[node], super::restart::Intent::Crash);
        let out = self.stop_nodes(&[node], Signal::SIGKILL, KILL_WAIT, &[]).await?;
        Ok(serde_json::to_value(&out[0]).expect("serializes"))
    }

    pub(super) fn require_live(&self, node: NodeId) -> Result<()> {
        let rec = self.state().node(node)?.clone();
        if rec.process.is_none() {
            return Err(Error::NodeState { id: node, message: format!("is not running (it is {})", describe_state(&rec.state)) });
        }
        Ok(())
    }

    /// What taking `down` out of the cluster would do to quorum, predicted by the engine from
    /// the layout observed now (CockroachDB: replica placement; etcd: member count). Unknown
    /// node ids are an error.
    pub async fn predict_loss(&self, down: &[NodeId]) -> Result<crate::watch::LossPrediction> {
        let all = self.members();
        if let Some(bad) = down.iter().find(|id| !all.iter().any(|m| m.id == **id)) {
            return Err(Error::UnknownNode { id: *bad, known: all.iter().map(|m| m.id).collect() });
        }
        // Ask a ready node that stays up first, then the other running ones: on CockroachDB a
        // node is not ready while a dead node's leases await its liveness expiry (its
        // `/health?ready=1` waits on them), yet it answers the layout's query.
        let mut ask: Vec<Member> = all.iter().copied().filter(|m| self.is_live(m.id)).collect();
        ask.sort_by_key(|m| (down.contains(&m.id), !self.is_ready(m.id)));
        if ask.is_empty() {
            return Err(Error::Refused("no member is running to read the cluster's layout from".into()));
        }
        self.inner.engine.predict_loss(&ask, &all, down).await
    }

    /// Sets a cluster setting through the engine (asked of a ready member).
    pub async fn set_setting(&self, name: &str, value: &str) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.emit(EventKind::Command { command: format!("set {name} = {value}"), by: crate::events::requester() });
        let members: Vec<Member> = self.members().into_iter().filter(|m| self.is_ready(m.id)).collect();
        if members.is_empty() {
            return Err(Error::Refused("no member is ready to take the setting".into()));
        }
        self.inner.engine.set_setting(&members, name, value).await?;
        self.emit(EventKind::Note { message: format!("cluster setting {name} = {value}") });
        Ok(serde_json::json!({ "setting": name, "value": value }))
    }

    /// `node add`: a new node joins the cluster; HAProxy gains a backend.
    pub async fn add_node(&self) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.emit(EventKind::Command { command: "node add".into(), by: crate::events::requester() });
        if !self.state().initialized {
            return Err(Error::Refused("the cluster was never brought up; run `roachlab up` first".into()));
        }
        let node = self.state().next_id();
        if node > crate::config::MAX_NODES {
            return Err(Error::Refused(format!("a lab has at most {} nodes", crate::config::MAX_NODES)));
        }
        self.inner.engine.binary()?;
        self.check_node_ports(&[node])?;
        let ports = crate::topology::Topology::node_ports(&self.spec(), self.inner.engine.as_ref(), node);
        let new = Member { id: node, ports, engine_id: None };
        let all = self.members();
        let ready: Vec<Member> = all.iter().copied().filter(|m| self.is_ready(m.id)).collect();
        if ready.is_empty() {
            return Err(Error::Refused("no member is ready to let a new node join; start one first".into()));
        }
        // The new node is told the cluster's membership as the engine has it, ready or not.
        let joined = self.inner.engine.prepare_join(&ready, &all, new).await?;
        self.update(|st| {
            st.nodes.push(NodeRecord { id: node, ports, state: NodeState::Stopped, process: None, decommissioned: false, engine_id: None })
        })?;
        let members: Vec<Member> = all.iter().copied().chain([new]).filter(|m| joined.contains(&m.id)).collect();
        self.spawn_node(node, StartMode::Join, &members)?;
        // Waits for readiness are not under the op lock (see `start_node`); the lock is taken
        // again to change HAProxy's and Prometheus's configs.
        drop(_op);
        let spec = self.spec();
        self.wait_ready(&[node], spec.timeouts.ready).await?;
        let op = self.begin_op().await?;
        self.learn_engine_ids().await;
        let fronted = self.state().haproxy.is_some();
        if fronted {
            self.apply_haproxy().await?;
        }
        // A new scrape target (the rules' majority counts follow the targets).
        if self.state().prometheus.is_some() {
            self.apply_monitoring(false).await?;
        }
        drop(op);
        if fronted {
            self.wait_backends_up(&[node]).await?;
        }
        Ok(serde_json::json!({ "node": node }))
    }

    /// `node decommission N`: removes the node from the cluster, stops it, and takes it out
    /// of HAProxy. Refuses, unless `force`, when fewer members than the engine's minimum would
    /// remain.
    pub async fn decommission_node(&self, node: NodeId, force: bool) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.emit(EventKind::Command {
            command: format!("node decommission {node}{}", if force { " --force" } else { "" }),
            by: crate::events::requester(),
        });
        let rec = self.state().node(node)?.clone();
        if rec.decommissioned {
            return Err(Error::NodeState { id: node, message: "is already decommissioned".into() });
        }
        let members = self.members();
        let left = members.len() - 1;
        let min = self.inner.engine.min_members();
        if left < min && !force {
            return Err(Error::Refused(format!(
                "decommissioning node {node} would leave {left} node(s): {}. Add a node first (`roachlab node add`), or pass --force",
                self.inner.engine.min_members_reason()
            )));
        }
        let target = *members.iter().find(|m| m.id == node).expect("member");
        let via: Vec<Member> = members.iter().copied().filter(|m| self.is_ready(m.id)).collect();
        self.emit(EventKind::NodePhase { node, phase: "decommissioning".into() });
        self.inner.engine.decommission(&self.inner.lab, &via, target).await?;
        self.update(|st| {
            if let Ok(n) = st.node_mut(node) {
                n.decommissioned = true;
            }
        })?;
        self.emit(EventKind::NodeDecommissioned { node });
        if self.state().haproxy.is_some() {
            self.apply_haproxy().await?;
        }
        if self.state().prometheus.is_some() {
            self.apply_monitoring(false).await?;
        }
        let stop = if self.is_live(node) {
            let grace = self.spec().timeouts.grace;
            // etcd stops by itself once removed: give it a moment before signalling.
            let _ = self.wait_until(|| "exit".into(), Duration::from_secs(2), |s| !s.is_live(node)).await;
            self.set_intent(&[node], super::restart::Intent::Stop);
            if self.is_live(node) {
                Some(self.stop_nodes(&[node], Signal::SIGTERM, grace, &[(Signal::SIGKILL, KILL_WAIT)]).await?.remove(0))
            } else {
                None
            }
        } else {
            None
        };
        // A decommissioned node never runs again: its namespace goes with it.
        if let Err(e) = self.inner.topology.remove_node(node) {
            self.emit(EventKind::Warning { message: format!("node {node}: its network namespace could not be removed: {e}") });
        }
        Ok(serde_json::json!({ "node": node, "stop": stop }))
    }

    /// `down`: stops every node and HAProxy, with an explicit plan:
    /// `fast`: SIGKILL everything at once. Otherwise SIGTERM to all nodes together (they
    /// drain in parallel); after `timeouts.down_grace` the engine's hard-stop signal to those
    /// still running (a CockroachDB cluster that lost quorum cannot finish draining);
    /// SIGKILL 10 s later. Returns what happened to each node.
    pub async fn down(&self, fast: bool) -> Result<serde_json::Value> {
        // `--fast` is the emergency stop: it does not queue behind a request in progress (a
        // drain can take a minute). It pre-empts it, and says so; nothing new is spawned once
        // `exiting` is set.
        let op = match self.inner.op_lock.try_lock() {
            Ok(_) if self.inner.exiting.load(std::sync::atomic::Ordering::SeqCst) => return Err(Error::DaemonExiting),
            Ok(guard) => Some(guard),
            Err(_) if fast => {
                self.emit(EventKind::Note {
                    message: "down --fast: pre-empting the request in progress; SIGKILL to every node now".into(),
                });
                None
            }
            Err(_) => {
                self.emit(EventKind::Note {
                    message: "down: waiting for the request in progress to finish first; `roachlab down --fast` pre-empts it".into(),
                });
                Some(self.begin_op().await?)
            }
        };
        // From here on the daemon exits (on success): requests queued behind are refused, and
        // no process is spawned any more; a spawn under way is recorded before we go on.
        self.inner.exiting.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(self.inner.spawn_gate.lock().unwrap_or_else(|p| p.into_inner()));
        let res = self.down_locked(fast).await;
        if res.is_err() {
            // It stays: serve again.
            self.inner.exiting.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        drop(op);
        res
    }

    async fn down_locked(&self, fast: bool) -> Result<serde_json::Value> {
        let spec = self.spec();
        self.emit(EventKind::Command { command: if fast { "down --fast".into() } else { "down".into() }, by: crate::events::requester() });
        // Partitioned nodes drain and exit as they would anyway, but a healed network lets a
        // graceful stop hand off cleanly: heal first.
        self.heal_for("down");
        let nodes: Vec<NodeId> = self.state().nodes.iter().filter(|n| n.process.is_some()).map(|n| n.id).collect();
        self.set_intent(&nodes, super::restart::Intent::Stop);
        let outcomes = if fast {
            let mut out = self.stop_nodes(&nodes, Signal::SIGKILL, KILL_WAIT, &[]).await?;
            // A request pre-empted mid-spawn may have recorded a node after the list was read.
            let late: Vec<NodeId> = self.state().nodes.iter().filter(|n| n.process.is_some()).map(|n| n.id).collect();
            if !late.is_empty() {
                out.extend(self.stop_nodes(&late, Signal::SIGKILL, KILL_WAIT, &[]).await?);
            }
            out
        } else if nodes.is_empty() {
            self.emit(EventKind::Note { message: "no node is running; stopping HAProxy".into() });
            Vec::new()
        } else {
            let hard = self.inner.engine.hard_stop_signal();
            let mut esc = vec![(hard, Duration::from_secs(10))];
            if hard != Signal::SIGKILL {
                esc.push((Signal::SIGKILL, KILL_WAIT));
            }
            let then = if hard == Signal::SIGKILL { String::new() } else { "; SIGKILL 10 s after that".into() };
            self.emit(EventKind::Note {
                message: format!(
                    "plan: SIGTERM to node(s) {} together (graceful drain); {} to any still running after {}{then}",
                    join_ids(&nodes),
                    hard.as_str(),
                    humantime::format_duration(spec.timeouts.down_grace)
                ),
            });
            self.stop_nodes(&nodes, Signal::SIGTERM, spec.timeouts.down_grace, &esc).await?
        };
        self.stop_monitoring().await?;
        self.stop_haproxy().await?;
        self.unthrottle_all();
        // With every process gone, nothing holds a namespace: remove what the lab created.
        for what in self.inner.topology.teardown()? {
            self.emit(EventKind::Note { message: format!("network: {what}") });
        }
        self.update(|st| st.daemon = None)?;
        Ok(serde_json::json!({ "nodes": outcomes }))
    }

    /// Stops supervision (the daemon is exiting) and records that no daemon serves the lab.
    /// Processes keep running.
    pub fn detach(&self) {
        self.inner.cancel.cancel();
        let _ = self.update(|st| {
            if st.daemon.map(|d| d.pid) == Some(std::process::id()) {
                st.daemon = None;
            }
        });
    }
}
