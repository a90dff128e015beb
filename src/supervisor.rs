//! The supervisor: owns a lab's node processes and HAProxy, runs the requests of the API, and
//! publishes everything it does and sees on the [`EventBus`].
//!
//! - One task per child process waits for its exit ([`Supervisor::watch_child`]); processes
//!   adopted from a previous daemon are watched by PID + start time instead.
//! - One poller task probes readiness and HAProxy's stats socket every `timeouts.poll`.
//! - Requests that change the lab (up, start, stop, add, decommission, down) hold an op lock,
//!   so they never interleave; `status` never waits for them.
//! - Every wait is a condition polled against a deadline, woken by a generation counter that
//!   is bumped on each state change.
//! - Cancelling the token stops supervision but leaves every process running: a later daemon
//!   re-adopts them from `state.json`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{DaemonStatus, HaproxyReport, HaproxyStatus, NodeStatus, StatusReport};
use crate::config::LabSpec;
use crate::engine::{self, Engine, Member, StartContext, StartMode};
use crate::events::{EventBus, EventKind};
use crate::haproxy;
use crate::lab::Lab;
use crate::node::{NodeId, NodeRecord, NodeState};
use crate::ports;
use crate::process::{self, ExitInfo, Liveness, ProcIdentity};
use crate::state::LabState;
use crate::watch::{ClusterFigures, Observation, Quorum};
use crate::{Error, Result};

/// How often `node stop` and `down` report drain progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long to wait for a process to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// What the poller last saw of a node (not persisted).
#[derive(Debug, Clone, Default)]
struct NodeRuntime {
    ready: bool,
    ready_detail: Option<String>,
    /// HAProxy's status of the node's server in the client frontend.
    backend: Option<String>,
    /// HAProxy's last check result for it (`L7OK`, `L4CON`, `INI`...).
    backend_check: Option<String>,
    /// When roachlab last signalled the node (for "exited N s after the signal").
    signalled_at: Option<Instant>,
}

/// The outcome of stopping one node, as `down` and `node stop` report it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StopOutcome {
    pub node: NodeId,
    /// Signals sent, in order (`SIGTERM`, then `SIGINT`/`SIGKILL` if it had to escalate).
    pub signals: Vec<String>,
    pub exit: Option<ExitInfo>,
    /// From the first signal to exit, in ms.
    pub elapsed_ms: u64,
    /// `drained` (exited after the first signal), `hard` (after the engine's hard-stop
    /// signal), `killed` (SIGKILL), `not running`.
    pub outcome: String,
}

/// What the watcher remembers between polls.
#[derive(Debug, Default)]
struct WatchState {
    last: Observation,
    /// Quorum as last evaluated (None before the first evaluation).
    quorum_ok: Option<bool>,
    /// A `quorum_lost` event is outstanding (so `quorum_regained` follows only a loss).
    lost_reported: bool,
    /// (underreplicated, unavailable) last reported.
    ranges: Option<(Option<u64>, Option<u64>)>,
}

struct Inner {
    lab: Lab,
    engine: Arc<dyn Engine>,
    bus: EventBus,
    state: Mutex<LabState>,
    runtime: Mutex<HashMap<NodeId, NodeRuntime>>,
    haproxy_backends: Mutex<Vec<haproxy::ServerStat>>,
    /// The watcher's last observation and quorum bookkeeping.
    watch: Mutex<WatchState>,
    op_lock: tokio::sync::Mutex<()>,
    generation: watch::Sender<u64>,
    cancel: CancellationToken,
    http: reqwest::Client,
}

/// A lab's supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// Loads the lab's state, re-adopts processes that are still running (matched by PID and
    /// start time; a PID now used by another process is never touched), records this daemon,
    /// and starts the poller. Supervision stops when `cancel` fires.
    pub async fn open(lab: Lab, bus: EventBus, cancel: CancellationToken) -> Result<Self> {
        let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
        let engine = engine::for_spec(&state.spec);
        let poll = state.spec.timeouts.poll;
        let sup = Supervisor {
            inner: Arc::new(Inner {
                lab,
                engine,
                bus,
                state: Mutex::new(state),
                runtime: Mutex::new(HashMap::new()),
                haproxy_backends: Mutex::new(Vec::new()),
                watch: Mutex::new(WatchState::default()),
                op_lock: tokio::sync::Mutex::new(()),
                generation: watch::channel(0).0,
                cancel,
                http: engine::http_client(poll.max(Duration::from_millis(500)).min(Duration::from_secs(2))),
            }),
        };
        sup.adopt()?;
        let poller = sup.clone();
        tokio::spawn(async move { poller.poll_loop().await });
        Ok(sup)
    }

    /// The lab this supervisor runs.
    pub fn lab(&self) -> &Lab {
        &self.inner.lab
    }

    /// The event bus.
    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    fn emit(&self, kind: EventKind) {
        self.inner.bus.emit(kind);
    }

    fn state(&self) -> MutexGuard<'_, LabState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn runtime(&self) -> MutexGuard<'_, HashMap<NodeId, NodeRuntime>> {
        self.inner.runtime.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spec(&self) -> LabSpec {
        self.state().spec.clone()
    }

    fn bump(&self) {
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// Applies `f` to the state, persists it, and wakes waiters.
    fn update<T>(&self, f: impl FnOnce(&mut LabState) -> T) -> Result<T> {
        let out = {
            let mut st = self.state();
            let out = f(&mut st);
            st.save(&self.inner.lab.state_file())?;
            out
        };
        self.bump();
        Ok(out)
    }

    /// Waits until `cond` holds, re-checking on every state change and at least every 200 ms.
    async fn wait_until(&self, what: impl Fn() -> String, deadline: Duration, mut cond: impl FnMut(&Self) -> bool) -> Result<()> {
        let start = Instant::now();
        let mut rx = self.inner.generation.subscribe();
        loop {
            if cond(self) {
                return Ok(());
            }
            let left = deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(Error::Timeout { what: what(), after_ms: deadline.as_millis() as u64 });
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep(left.min(Duration::from_millis(200))) => {}
                _ = self.inner.cancel.cancelled() => return Err(Error::Refused("the daemon is shutting down".into())),
            }
        }
    }

    // ----- adoption and watching -----------------------------------------------------------

    fn adopt(&self) -> Result<()> {
        let mut adopted = Vec::new();
        let haproxy_adopted;
        {
            let mut st = self.state();
            for n in st.nodes.iter_mut() {
                let Some(id) = n.process else { continue };
                match id.liveness() {
                    Liveness::Alive => {
                        let since = OffsetDateTime::from_unix_timestamp(id.start_time as i64).unwrap_or_else(|_| OffsetDateTime::now_utc());
                        n.state = NodeState::Running { pid: id.pid, since };
                        adopted.push((n.id, id));
                    }
                    Liveness::Gone => {
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
            st.daemon = ProcIdentity::of_pid(std::process::id());
            st.save(&self.inner.lab.state_file())?;
        }
        for (node, id) in adopted {
            self.emit(EventKind::NodeAdopted { node, pid: id.pid });
            let sup = self.clone();
            tokio::spawn(async move { sup.watch_adopted(node, id).await });
        }
        if let Some(id) = haproxy_adopted {
            let sup = self.clone();
            tokio::spawn(async move { sup.watch_adopted_haproxy(id).await });
        }
        Ok(())
    }

    /// Waits for a child we spawned to exit, then records how it ended.
    async fn watch_child(&self, node: NodeId, id: ProcIdentity, mut child: Box<dyn process_wrap::tokio::ChildWrapper>) {
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
    async fn watch_adopted(&self, node: NodeId, id: ProcIdentity) {
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

    fn record_exit(&self, node: NodeId, id: ProcIdentity, status: ExitInfo) {
        let signalled_at = {
            let mut rt = self.runtime();
            let r = rt.entry(node).or_default();
            r.ready = false;
            r.ready_detail = Some("process exited".into());
            r.signalled_at.take()
        };
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
        self.emit(EventKind::NodeExited { node, pid: id.pid, status, after_ms: signalled_at.map(|t| t.elapsed().as_millis() as u64) });
    }

    async fn watch_haproxy(&self, id: ProcIdentity, mut child: Box<dyn process_wrap::tokio::ChildWrapper>) {
        let status = tokio::select! {
            s = child.wait() => s,
            _ = self.inner.cancel.cancelled() => return,
        };
        let status = status.map(ExitInfo::from).unwrap_or(ExitInfo::Unknown);
        self.record_haproxy_exit(id, status);
    }

    async fn watch_adopted_haproxy(&self, id: ProcIdentity) {
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

    fn record_haproxy_exit(&self, id: ProcIdentity, status: ExitInfo) {
        let _ = self.update(|st| {
            if st.haproxy == Some(id) {
                st.haproxy = None;
            }
        });
        self.emit(EventKind::HaproxyExited { pid: id.pid, status });
    }

    // ----- polling --------------------------------------------------------------------------

    async fn poll_loop(&self) {
        let poll = self.spec().timeouts.poll;
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.inner.cancel.cancelled() => return,
            }
            self.poll_once().await;
        }
    }

    /// One round, every request bounded by the poll client's timeout: readiness of every live
    /// node and the engine's observation (in parallel), then HAProxy's server states.
    pub async fn poll_once(&self) {
        let live: Vec<(NodeId, u16)> = self.state().nodes.iter().filter(|n| n.process.is_some()).map(|n| (n.id, n.ports.http)).collect();
        let all = self.members();
        let live_members: Vec<Member> = all.iter().copied().filter(|m| live.iter().any(|(id, _)| *id == m.id)).collect();
        let engine = self.inner.engine.clone();
        let client = &self.inner.http;
        let probes = futures_util::future::join_all(live.iter().map(|&(id, port)| {
            let engine = engine.clone();
            async move { (id, engine::probe_readiness(engine.as_ref(), client, port).await) }
        }));
        let observe = engine.observe(client, &live_members, &all);
        let (results, observation) = futures_util::join!(probes, observe);
        for (node, r) in results {
            self.apply_readiness(node, r.ready, r.detail);
        }
        self.apply_observation(observation);
        self.poll_haproxy().await;
    }

    /// Stores an observation, adds the quorum figure, and publishes what changed.
    fn apply_observation(&self, mut obs: Observation) {
        // Quorum as the engine observed it (CockroachDB: a timed SQL probe), else Raft
        // arithmetic over members whose process runs (etcd); whether the cluster serves right
        // now (an election in progress, a node not yet ready) is readiness.
        let (members, up, initialized) = {
            let st = self.state();
            (st.members().count(), st.members().filter(|n| n.process.is_some()).count(), st.initialized)
        };
        let quorum = obs.cluster.quorum.clone().unwrap_or_else(|| Quorum::of(up, members));
        obs.cluster.quorum = Some(quorum.clone());
        let mut events = Vec::new();
        {
            let mut w = self.inner.watch.lock().unwrap_or_else(|p| p.into_inner());
            for (node, f) in &obs.nodes {
                let Some(to) = f.liveness else { continue };
                let from = w.last.nodes.get(node).and_then(|p| p.liveness);
                if from != Some(to) {
                    events.push(EventKind::LivenessChanged { node: *node, from: from.map(|l| l.to_string()), to: to.to_string() });
                }
            }
            // Keep the last known liveness of nodes that did not answer this round.
            for (node, prev) in &w.last.nodes {
                let f = obs.nodes.entry(*node).or_default();
                if f.liveness.is_none() {
                    f.liveness = prev.liveness;
                }
            }
            let c = &obs.cluster;
            if c.ranges_underreplicated.is_some() || c.ranges_unavailable.is_some() {
                let now = (c.ranges_underreplicated, c.ranges_unavailable);
                if w.ranges != Some(now) {
                    w.ranges = Some(now);
                    events.push(EventKind::RangesChanged { ranges: c.ranges, underreplicated: now.0, unavailable: now.1 });
                }
            }
            if c.has_leader.is_some() && c.leader != w.last.cluster.leader {
                events.push(EventKind::LeaderChanged { from: w.last.cluster.leader, to: c.leader, term: c.term });
            }
            if initialized {
                match (w.quorum_ok, quorum.ok) {
                    (Some(true), false) => {
                        w.lost_reported = true;
                        events.push(EventKind::QuorumLost { up: quorum.up, needed: quorum.needed, detail: quorum.detail.clone() });
                    }
                    (Some(false), true) if w.lost_reported => {
                        w.lost_reported = false;
                        events.push(EventKind::QuorumRegained { up: quorum.up, needed: quorum.needed, detail: quorum.detail.clone() });
                    }
                    _ => {}
                }
                w.quorum_ok = Some(quorum.ok);
            }
            w.last = obs;
        }
        let changed = !events.is_empty();
        for e in events {
            self.emit(e);
        }
        if changed {
            self.bump();
        }
    }

    /// The watcher's latest cluster figures.
    pub fn cluster_figures(&self) -> ClusterFigures {
        self.inner.watch.lock().unwrap_or_else(|p| p.into_inner()).last.cluster.clone()
    }

    fn apply_readiness(&self, node: NodeId, ready: bool, detail: Option<String>) {
        let (changed, detail_changed) = {
            let mut rt = self.runtime();
            let r = rt.entry(node).or_default();
            let changed = r.ready != ready;
            let detail_changed = r.ready_detail != detail;
            r.ready = ready;
            r.ready_detail = detail.clone();
            (changed, detail_changed)
        };
        // The process may have exited while the probe ran; only live nodes change.
        let mut became_running = false;
        {
            let mut st = self.state();
            if let Ok(n) = st.node_mut(node) {
                if n.process.is_none() {
                    return;
                }
                if let (true, NodeState::Starting { pid, .. }) = (ready, &n.state) {
                    n.state = NodeState::Running { pid: *pid, since: OffsetDateTime::now_utc() };
                    became_running = true;
                }
            }
            if became_running {
                let _ = st.save(&self.inner.lab.state_file());
            }
        }
        if changed {
            self.emit(EventKind::NodeReady { node, ready, detail: detail.clone() });
        } else if !ready && detail_changed {
            if let Some(d) = detail {
                self.emit(EventKind::NodePhase { node, phase: format!("not ready: {d}") });
            }
        }
        if changed || became_running {
            self.bump();
        }
    }

    async fn poll_haproxy(&self) {
        if self.state().haproxy.is_none() {
            return;
        }
        let Ok(rows) = haproxy::server_stats(&self.inner.lab.haproxy_socket()).await else { return };
        let frontend = self.inner.engine.frontend_name();
        let mut changes = Vec::new();
        {
            let mut rt = self.runtime();
            // `INI`: HAProxy has not checked the server yet; its status means nothing until then.
            for row in rows.iter().filter(|r| r.proxy == frontend && !r.check_status.starts_with("INI")) {
                let Some(node) = row.node() else { continue };
                let r = rt.entry(node).or_default();
                let main_word = |s: &str| s.split_whitespace().next().unwrap_or("").to_string();
                let old = r.backend.as_deref().map(main_word);
                if old.as_deref() != Some(main_word(&row.status).as_str()) {
                    changes.push((node, main_word(&row.status), row.check_status.clone()));
                }
                r.backend = Some(row.status.clone());
                r.backend_check = Some(row.check_status.clone());
            }
        }
        *self.inner.haproxy_backends.lock().unwrap_or_else(|p| p.into_inner()) = rows;
        for (node, state, check) in &changes {
            self.emit(EventKind::BackendState { node: *node, state: state.clone(), check: check.clone() });
        }
        if !changes.is_empty() {
            self.bump();
        }
    }

    // ----- views ----------------------------------------------------------------------------

    fn members(&self) -> Vec<Member> {
        self.state().members().map(|n| Member { id: n.id, ports: n.ports, engine_id: n.engine_id }).collect()
    }

    fn is_ready(&self, node: NodeId) -> bool {
        let live = self.state().node(node).map(|n| n.process.is_some()).unwrap_or(false);
        live && self.runtime().get(&node).is_some_and(|r| r.ready)
    }

    /// HAProxy shows `word` (`UP`, `DOWN`) for the node's server. `UP` counts only once a
    /// health check has passed: HAProxy lists servers as UP before their first check (`INI`).
    fn backend_is(&self, node: NodeId, word: &str) -> bool {
        let rt = self.runtime();
        let Some(r) = rt.get(&node) else { return false };
        let status_ok = r.backend.as_deref().is_some_and(|s| s.split_whitespace().next() == Some(word));
        status_ok && (word != "UP" || r.backend_check.as_deref().is_some_and(|c| c.starts_with("L7OK")))
    }

    fn is_live(&self, node: NodeId) -> bool {
        self.state().node(node).map(|n| n.process.is_some()).unwrap_or(false)
    }

    /// The lab's status, as `GET /v1/status` returns it.
    pub fn status(&self) -> StatusReport {
        let figures = self.inner.watch.lock().unwrap_or_else(|p| p.into_inner()).last.clone();
        let st = self.state();
        let rt = self.runtime();
        let nodes = st
            .nodes
            .iter()
            .map(|n| {
                let r = rt.get(&n.id).cloned().unwrap_or_default();
                let (since, exit) = match &n.state {
                    NodeState::Starting { since, .. } | NodeState::Running { since, .. } => (Some(rfc3339(*since)), None),
                    NodeState::Exited { status, at } => (Some(rfc3339(*at)), Some(status.clone())),
                    _ => (None, None),
                };
                let live = n.process.is_some();
                NodeStatus {
                    id: n.id,
                    pid: n.process.map(|p| p.pid),
                    state: n.state.name().to_string(),
                    since,
                    exit,
                    ready: live && r.ready,
                    ready_detail: if live && !r.ready { r.ready_detail.clone() } else { None },
                    sql_port: n.ports.service,
                    http_port: n.ports.http,
                    peer_port: n.ports.peer,
                    backend: if st.haproxy.is_some() && !n.decommissioned { r.backend.clone() } else { None },
                    decommissioned: n.decommissioned,
                    engine_id: n.engine_id,
                    backend_check: if st.haproxy.is_some() && !n.decommissioned { r.backend_check.clone() } else { None },
                    liveness: figures.nodes.get(&n.id).and_then(|f| f.liveness),
                    replicas: figures.nodes.get(&n.id).and_then(|f| f.replicas).filter(|_| live),
                    leaseholders: figures.nodes.get(&n.id).and_then(|f| f.leaseholders).filter(|_| live),
                    is_leader: figures.nodes.get(&n.id).and_then(|f| f.is_leader).filter(|_| live),
                }
            })
            .collect();
        StatusReport {
            engine: st.spec.engine.to_string(),
            dir: self.inner.lab.dir().to_path_buf(),
            daemon: DaemonStatus { pid: std::process::id() },
            nodes,
            haproxy: self.haproxy_status(&st),
            cluster: figures.cluster,
            quorum_rule: self.inner.engine.quorum_rule(st.members().count()),
        }
    }

    fn haproxy_status(&self, st: &LabState) -> HaproxyStatus {
        let h = &st.spec.haproxy;
        HaproxyStatus {
            pid: st.haproxy.map(|p| p.pid),
            state: if st.haproxy.is_some() { "running" } else { "stopped" }.into(),
            config: self.inner.lab.haproxy_cfg(),
            frontend: format!("127.0.0.1:{}", h.frontend_port),
            admin_ui: format!("127.0.0.1:{}", h.admin_port),
            stats: format!("127.0.0.1:{}", h.stats_port),
        }
    }

    /// HAProxy's config path, pid and every server's state (`GET /v1/haproxy`).
    pub async fn haproxy_report(&self) -> HaproxyReport {
        let status = self.haproxy_status(&self.state());
        let servers = if status.pid.is_some() {
            haproxy::server_stats(&self.inner.lab.haproxy_socket()).await.unwrap_or_default()
        } else {
            Vec::new()
        };
        HaproxyReport { status, servers }
    }

    // ----- node processes -------------------------------------------------------------------

    fn spawn_node(&self, node: NodeId, mode: StartMode, members: &[Member]) -> Result<ProcIdentity> {
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
        let spawned = process::spawn(&bin, &args, &engine.node_env(), &lab.node_log(node))?;
        let id = spawned.identity;
        {
            let mut rt = self.runtime();
            let r = rt.entry(node).or_default();
            r.ready = false;
            r.ready_detail = None;
            r.signalled_at = None;
        }
        self.update(|st| {
            if let Ok(n) = st.node_mut(node) {
                n.process = Some(id);
                n.state = NodeState::Starting { pid: id.pid, since: OffsetDateTime::now_utc() };
            }
        })?;
        self.emit(EventKind::NodeSpawned { node, pid: id.pid });
        let sup = self.clone();
        tokio::spawn(async move { sup.watch_child(node, id, spawned.child).await });
        Ok(id)
    }

    fn check_node_ports(&self, nodes: &[NodeId]) -> Result<()> {
        let claims: Vec<_> = nodes.iter().flat_map(|&n| self.inner.engine.port_claims(n)).collect();
        ports::check_free(&claims)
    }

    async fn wait_ready(&self, nodes: &[NodeId], deadline: Duration) -> Result<()> {
        let nodes = nodes.to_vec();
        let lab = self.inner.lab.clone();
        let pending = |s: &Self| nodes.iter().copied().filter(|&n| !s.is_ready(n)).collect::<Vec<_>>();
        let res = self
            .wait_until(
                || "nodes to become ready".into(),
                deadline,
                |s| {
                    // A node that exited will never become ready: fail fast.
                    pending(s).is_empty() || nodes.iter().any(|&n| !s.is_live(n))
                },
            )
            .await;
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
    fn signal_node(&self, node: NodeId, sig: Signal, deadline: Option<Duration>) -> Result<ProcIdentity> {
        let id = self.state().node(node)?.process.ok_or_else(|| Error::NodeState { id: node, message: "is not running".into() })?;
        process::signal(&id, sig)?;
        {
            let mut rt = self.runtime();
            let r = rt.entry(node).or_default();
            r.signalled_at.get_or_insert_with(Instant::now);
        }
        let deadline_at = OffsetDateTime::now_utc() + deadline.unwrap_or(Duration::ZERO);
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

    fn exit_of(&self, node: NodeId) -> Option<ExitInfo> {
        match &self.state().node(node).ok()?.state {
            NodeState::Exited { status, .. } => Some(status.clone()),
            _ => None,
        }
    }

    /// Stops nodes: `first` to all at once, then (per node still running at each deadline)
    /// each signal of `escalation` in turn. Reports progress every 5 s.
    async fn stop_nodes(
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

    // ----- HAProxy ----------------------------------------------------------------------------

    /// Renders, validates and applies the HAProxy config for the current members: starts
    /// HAProxy if it is not running, else reloads it. Then waits until HAProxy lists exactly
    /// these servers.
    async fn apply_haproxy(&self) -> Result<()> {
        let spec = self.spec();
        let bin = haproxy::binary(&spec.haproxy)?;
        let backends: Vec<haproxy::Backend> = self.state().members().map(|n| haproxy::Backend::new(n.id, &n.ports)).collect();
        let text = haproxy::render(&self.inner.lab, &spec.haproxy, self.inner.engine.as_ref(), &backends)?;
        let cfg = self.inner.lab.haproxy_cfg();
        haproxy::write_validated(&bin, &cfg, &text).await?;
        let names: Vec<String> = backends.iter().map(|b| format!("node{}", b.id)).collect();
        let current = self.state().haproxy;
        match current {
            Some(id) => {
                process::signal_pid(&id, Signal::SIGUSR2)?;
                self.wait_haproxy_servers(&names).await?;
                self.emit(EventKind::HaproxyReloaded { servers: names });
            }
            None => {
                ports::check_free(&haproxy::port_claims(&spec.haproxy))?;
                std::fs::create_dir_all(self.inner.lab.logs_dir()).map_err(|e| Error::io("cannot create logs dir", e))?;
                let spawned = process::spawn(&bin, &haproxy::start_args(&cfg), &[], &self.inner.lab.haproxy_log())?;
                let id = spawned.identity;
                self.update(|st| st.haproxy = Some(id))?;
                self.emit(EventKind::HaproxyStarted { pid: id.pid });
                let sup = self.clone();
                tokio::spawn(async move { sup.watch_haproxy(id, spawned.child).await });
                self.wait_haproxy_servers(&names).await.map_err(|e| Error::Haproxy {
                    message: format!("did not come up ({e}); see {}", self.inner.lab.haproxy_log().display()),
                })?;
            }
        }
        Ok(())
    }

    async fn wait_haproxy_servers(&self, names: &[String]) -> Result<()> {
        let socket = self.inner.lab.haproxy_socket();
        let frontend = self.inner.engine.frontend_name();
        let start = Instant::now();
        let deadline = Duration::from_secs(15);
        loop {
            if let Ok(rows) = haproxy::server_stats(&socket).await {
                let mut have: Vec<String> = rows.iter().filter(|r| r.proxy == frontend).map(|r| r.server.clone()).collect();
                have.sort();
                let mut want = names.to_vec();
                want.sort();
                if have == want {
                    // Forget states of servers that left; the poller fills in the rest.
                    self.poll_haproxy().await;
                    return Ok(());
                }
            }
            if start.elapsed() > deadline || self.state().haproxy.is_none() {
                return Err(Error::Timeout {
                    what: format!("haproxy to serve backends {}", names.join(", ")),
                    after_ms: deadline.as_millis() as u64,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_backends_up(&self, nodes: &[NodeId]) -> Result<()> {
        let h = self.spec().haproxy;
        let deadline = h.inter * (h.rise + 2) + Duration::from_secs(5);
        let nodes = nodes.to_vec();
        self.wait_until(
            || format!("HAProxy to mark node(s) {} UP", join_ids(&nodes)),
            deadline,
            |s| nodes.iter().all(|&n| s.backend_is(n, "UP")),
        )
        .await
    }

    async fn stop_haproxy(&self) -> Result<()> {
        let Some(id) = self.state().haproxy else { return Ok(()) };
        process::signal(&id, Signal::SIGTERM)?;
        let res = self.wait_until(|| "haproxy to exit".into(), Duration::from_secs(5), |s| s.state().haproxy.is_none()).await;
        if res.is_err() {
            let _ = process::signal(&id, Signal::SIGKILL);
            self.wait_until(|| "haproxy to exit after SIGKILL".into(), KILL_WAIT, |s| s.state().haproxy.is_none()).await?;
        }
        Ok(())
    }

    async fn learn_engine_ids(&self) {
        let members: Vec<Member> = self.members().into_iter().filter(|m| self.is_ready(m.id)).collect();
        match self.inner.engine.engine_ids(&members).await {
            Ok(ids) => {
                let _ = self.update(|st| {
                    for (node, eid) in &ids {
                        if let Ok(n) = st.node_mut(*node) {
                            n.engine_id = Some(*eid);
                        }
                    }
                });
            }
            Err(e) => self.emit(EventKind::Warning { message: format!("cannot learn the engine's node ids: {e}") }),
        }
    }

    // ----- requests ---------------------------------------------------------------------------

    /// `up`: starts every member that is not running, bootstraps a new cluster, starts or
    /// reloads HAProxy, and waits until all nodes are ready and UP in HAProxy.
    pub async fn up(&self) -> Result<serde_json::Value> {
        let _op = self.inner.op_lock.lock().await;
        self.emit(EventKind::Command { command: "up".into(), by: crate::events::requester() });
        let spec = self.spec();
        self.inner.engine.binary()?;
        haproxy::binary(&spec.haproxy)?;
        let v = self.inner.engine.version().await?;
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
        let initialized = self.state().initialized;
        let mode = if initialized { StartMode::Restart } else { StartMode::Initial };
        for &n in &to_start {
            self.spawn_node(n, mode, &members)?;
        }
        if !initialized {
            if let Some(detail) = self.inner.engine.bootstrap(&self.inner.lab, &members).await? {
                self.emit(EventKind::ClusterInitialized { detail });
            }
        }
        let all: Vec<NodeId> = members.iter().map(|m| m.id).collect();
        self.wait_ready(&all, spec.timeouts.ready).await?;
        if !initialized {
            for note in self.inner.engine.configure(&members, spec.haproxy.down_window()).await? {
                self.emit(EventKind::Note { message: note });
            }
            self.update(|st| st.initialized = true)?;
        }
        self.learn_engine_ids().await;
        self.apply_haproxy().await?;
        self.wait_backends_up(&all).await?;
        Ok(serde_json::json!({ "started": to_start, "nodes": all }))
    }

    /// `node start N`: restarts a stopped member on its store and, unless `no_wait`, waits
    /// until it is ready (and UP in HAProxy, when HAProxy runs).
    pub async fn start_node(&self, node: NodeId, no_wait: bool) -> Result<serde_json::Value> {
        let _op = self.inner.op_lock.lock().await;
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
        self.spawn_node(node, mode, &members)?;
        if no_wait {
            return Ok(serde_json::json!({ "node": node }));
        }
        let spec = self.spec();
        self.wait_ready(&[node], spec.timeouts.ready).await?;
        if self.state().haproxy.is_some() {
            self.wait_backends_up(&[node]).await?;
        }
        Ok(serde_json::json!({ "node": node }))
    }

    /// `node stop N`: SIGTERM (graceful drain), progress every 5 s, SIGKILL after `grace`.
    pub async fn stop_node(&self, node: NodeId, grace: Option<Duration>) -> Result<serde_json::Value> {
        let _op = self.inner.op_lock.lock().await;
        let grace = grace.unwrap_or(self.spec().timeouts.grace);
        self.emit(EventKind::Command {
            command: format!("node stop {node} (grace {})", humantime::format_duration(grace)),
            by: crate::events::requester(),
        });
        self.require_live(node)?;
        let out = self.stop_nodes(&[node], Signal::SIGTERM, grace, &[(Signal::SIGKILL, KILL_WAIT)]).await?;
        Ok(serde_json::to_value(&out[0]).expect("serializes"))
    }

    /// `node kill N`: SIGKILL now.
    pub async fn kill_node(&self, node: NodeId) -> Result<serde_json::Value> {
        let _op = self.inner.op_lock.lock().await;
        self.emit(EventKind::Command { command: format!("node kill {node}"), by: crate::events::requester() });
        self.require_live(node)?;
        let out = self.stop_nodes(&[node], Signal::SIGKILL, KILL_WAIT, &[]).await?;
        Ok(serde_json::to_value(&out[0]).expect("serializes"))
    }

    fn require_live(&self, node: NodeId) -> Result<()> {
        let rec = self.state().node(node)?.clone();
        if rec.process.is_none() {
            return Err(Error::NodeState { id: node, message: format!("is not running (it is {})", describe_state(&rec.state)) });
        }
        Ok(())
    }

    /// Our id of the node holding the lease for `key` of `table` (CockroachDB).
    pub async fn leaseholder_of(&self, table: &str, key: i64) -> Result<NodeId> {
        let members: Vec<Member> = self.members().into_iter().filter(|m| self.is_ready(m.id)).collect();
        if members.is_empty() {
            return Err(Error::Refused("no member is ready to ask".into()));
        }
        let engine_id = self.inner.engine.leaseholder_of(&members, table, key).await?;
        self.members()
            .into_iter()
            .find(|m| m.engine_id.unwrap_or(m.id as u64) == engine_id)
            .map(|m| m.id)
            .ok_or_else(|| Error::Refused(format!("the leaseholder is node ID {engine_id}, which this lab does not know")))
    }

    /// What taking `down` out of the cluster would do to quorum, predicted by the engine from
    /// the layout observed now (CockroachDB: replica placement; etcd: member count). Unknown
    /// node ids are an error.
    pub async fn predict_loss(&self, down: &[NodeId]) -> Result<crate::watch::LossPrediction> {
        let all = self.members();
        if let Some(bad) = down.iter().find(|id| !all.iter().any(|m| m.id == **id)) {
            return Err(Error::UnknownNode { id: *bad, known: all.iter().map(|m| m.id).collect() });
        }
        let mut ask: Vec<Member> = all.iter().copied().filter(|m| self.is_ready(m.id)).collect();
        // Ask a node that stays up first.
        ask.sort_by_key(|m| down.contains(&m.id));
        if ask.is_empty() {
            return Err(Error::Refused("no member is ready to read the cluster's layout from".into()));
        }
        self.inner.engine.predict_loss(&ask, &all, down).await
    }

    /// Sets a cluster setting through the engine (asked of a ready member).
    pub async fn set_setting(&self, name: &str, value: &str) -> Result<serde_json::Value> {
        let _op = self.inner.op_lock.lock().await;
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
        let _op = self.inner.op_lock.lock().await;
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
        let ports = self.inner.engine.node_ports(node);
        let new = Member { id: node, ports, engine_id: None };
        let mut members: Vec<Member> = self.members().into_iter().filter(|m| self.is_ready(m.id)).collect();
        if members.is_empty() {
            return Err(Error::Refused("no member is ready to let a new node join; start one first".into()));
        }
        self.inner.engine.prepare_join(&members, new).await?;
        self.update(|st| {
            st.nodes.push(NodeRecord { id: node, ports, state: NodeState::Stopped, process: None, decommissioned: false, engine_id: None })
        })?;
        members.push(new);
        self.spawn_node(node, StartMode::Join, &members)?;
        let spec = self.spec();
        self.wait_ready(&[node], spec.timeouts.ready).await?;
        self.learn_engine_ids().await;
        if self.state().haproxy.is_some() {
            self.apply_haproxy().await?;
            self.wait_backends_up(&[node]).await?;
        }
        Ok(serde_json::json!({ "node": node }))
    }

    /// `node decommission N`: removes the node from the cluster, stops it, and takes it out
    /// of HAProxy. Refuses, unless `force`, when fewer members than the engine's minimum would
    /// remain.
    pub async fn decommission_node(&self, node: NodeId, force: bool) -> Result<serde_json::Value> {
        let _op = self.inner.op_lock.lock().await;
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
        let stop = if self.is_live(node) {
            let grace = self.spec().timeouts.grace;
            // etcd stops by itself once removed: give it a moment before signalling.
            let _ = self.wait_until(|| "exit".into(), Duration::from_secs(2), |s| !s.is_live(node)).await;
            if self.is_live(node) {
                Some(self.stop_nodes(&[node], Signal::SIGTERM, grace, &[(Signal::SIGKILL, KILL_WAIT)]).await?.remove(0))
            } else {
                None
            }
        } else {
            None
        };
        Ok(serde_json::json!({ "node": node, "stop": stop }))
    }

    /// `down`: stops every node and HAProxy, with an explicit plan:
    /// `fast`: SIGKILL everything at once. Otherwise SIGTERM to all nodes together (they
    /// drain in parallel); after `timeouts.down_grace` the engine's hard-stop signal to those
    /// still running (a CockroachDB cluster that lost quorum cannot finish draining);
    /// SIGKILL 10 s later. Returns what happened to each node.
    pub async fn down(&self, fast: bool) -> Result<serde_json::Value> {
        let _op = self.inner.op_lock.lock().await;
        let spec = self.spec();
        self.emit(EventKind::Command { command: if fast { "down --fast".into() } else { "down".into() }, by: crate::events::requester() });
        let nodes: Vec<NodeId> = self.state().nodes.iter().filter(|n| n.process.is_some()).map(|n| n.id).collect();
        let outcomes = if fast {
            self.stop_nodes(&nodes, Signal::SIGKILL, KILL_WAIT, &[]).await?
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
        self.stop_haproxy().await?;
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

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-21T14:21:05.653Z`.
fn rfc3339(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_default()
}

fn join_ids(ids: &[NodeId]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

fn describe_state(s: &NodeState) -> String {
    match s {
        NodeState::Exited { status, .. } => format!("exited, {status}"),
        other => other.name().to_string(),
    }
}
