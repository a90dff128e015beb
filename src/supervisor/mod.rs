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
//!
//! Split by concern: `children` (adoption, spawning, signals, stopping), `poller` (readiness,
//! observation, HAProxy states → events), `status` (views and the status report), `proxy`
//! (HAProxy's config and process), `monitoring` (Prometheus and Alertmanager, the alert
//! webhook), `leases` (the leaseholders drills ask about, watched for changes), `requests`
//! (the API's lifecycle requests). This file holds the shared state and the wait primitive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

mod children;
mod drain;
mod faults;
mod leases;
mod monitoring;
mod net;
mod poller;
mod proxy;
mod requests;
mod restart;
mod status;

pub use crate::events::describe_sides;
pub use net::{check_sides, NetStatus};

/// How often `node stop` and `down` report drain progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long to wait for a process to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How often a request that waits for readiness probes the pending nodes itself (the poller
/// runs at `timeouts.poll`, 1 s): `up` and `node start` finish within 20 ms of the fact
/// instead of within a poll interval (docs/BENCHMARKS.md, "Cluster up").
const FAST_PROBE: Duration = Duration::from_millis(20);
/// How long one of those probes may take before it is abandoned (a node that accepts but does
/// not answer yet, as etcd during startup; the 1 Hz poller, with the client's 1 s timeout,
/// still sees a node whose answers are slower than this).
const FAST_PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// How often a request that waits for HAProxy (its stats socket to open, servers to be UP)
/// reads its stats socket: a local Unix socket, tens of µs of HAProxy's CPU per `show stat`.
const HAPROXY_PROBE: Duration = Duration::from_millis(5);

/// What the poller last saw of a node (not persisted).
#[derive(Debug, Clone, Default)]
struct NodeRuntime {
    ready: bool,
    ready_detail: Option<String>,
    /// When the readiness probe behind `ready` was sent: an answer to an older probe (a
    /// poll round's, applied after a newer fast probe's) never overwrites a newer one.
    ready_sent: Option<Instant>,
    /// The node was paused or resumed after the probe behind `ready` was sent: its
    /// readiness is not observed yet (`status` says so instead of a stale verdict).
    ready_unobserved: bool,
    /// HAProxy's status of the node's server in the client frontend.
    backend: Option<String>,
    /// HAProxy's last check result for it (`L7OK`, `L4CON`, `INI`...).
    backend_check: Option<String>,
    /// When roachlab last signalled the node (for "exited N s after the signal").
    signalled_at: Option<Instant>,
    /// The restart policy's bookkeeping.
    restart: restart::RestartBook,
    /// The CPU quota the node's process runs under (`node throttle`), percent of a core:
    /// set by throttle and unthrottle, read back from its cgroup on adoption, cleared when
    /// the process exits (a new process is not in the group).
    cpu_quota_pct: Option<u32>,
}

/// The HTTP client's timeout for a poll interval: at least 500 ms, at most 2 s.
fn http_timeout(poll: Duration) -> Duration {
    poll.max(Duration::from_millis(500)).min(Duration::from_secs(2))
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
    /// Since when the cluster's quorum probe has failed without a break.
    quorum_failing_since: Option<Instant>,
    /// Per node: since when its own quorum probe has failed without a break.
    node_failing_since: HashMap<NodeId, Instant>,
    /// Nodes with a `node_quorum` false event outstanding.
    node_lost_reported: std::collections::HashSet<NodeId>,
    /// The lab's shape when the round behind `last` began, and when that round ended: `last`
    /// describes that shape only (`None` before the first consistent round).
    observed: Option<(Shape, Instant)>,
}

/// What the lab looks like to the watcher: which members' processes run (by pid) and which
/// of those are paused, and the partition in force. A poll round's figures describe the shape
/// it began with; `status` shows them only while the lab still has that shape (a node started,
/// exited, paused or resumed, a partition made or healed since: "not observed yet").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Shape {
    nodes: Vec<(NodeId, Option<u32>, bool)>,
    sides: Vec<Vec<NodeId>>,
}

/// The least time an observed quorum probe must keep failing before the watcher calls it
/// lost (the cluster's `quorum_lost`, a node's `node_quorum` false): a leader election is
/// not quorum loss. etcd's election timeout is 1 s by default, randomized up to 2 s, so an
/// election after a leader dies completes well within 3 s. The engine's takeover time
/// raises it ([`quorum_confirm`]); `status` shows the probes as they are at once.
pub const QUORUM_CONFIRM: Duration = Duration::from_secs(3);

/// How long a quorum probe must keep failing before it counts as lost, for an engine whose
/// takeover (an election; on CockroachDB, a dead leaseholder's liveness expiry before its
/// leases move — the quorum probe's own range may be one of them) is expected to take
/// `takeover`: the longer of the two, so a takeover in progress is not reported as a loss.
pub fn quorum_confirm(takeover: Duration) -> Duration {
    takeover.max(QUORUM_CONFIRM)
}

struct Inner {
    lab: Lab,
    engine: Arc<dyn Engine>,
    /// Where nodes live on the network: the topology seam.
    topology: crate::topology::Topology,
    bus: EventBus,
    state: Mutex<LabState>,
    runtime: Mutex<HashMap<NodeId, NodeRuntime>>,
    haproxy_backends: Mutex<Vec<haproxy::ServerStat>>,
    /// The watcher's last observation and quorum bookkeeping.
    watch: Mutex<WatchState>,
    op_lock: tokio::sync::Mutex<()>,
    /// Held for a whole `up`, which lets go of the op lock while it waits for readiness: a
    /// second `up` waits for the first (it would bootstrap the same new cluster again).
    up_lock: tokio::sync::Mutex<()>,
    /// Set by `down` once it holds the op lock: the daemon exits afterwards, so every request
    /// queued behind it is refused ([`Error::DaemonExiting`]) instead of acted on and abandoned.
    exiting: std::sync::atomic::AtomicBool,
    /// Held from the `exiting` check through a spawn and its recording; `down` takes it once
    /// after setting `exiting`, so every spawn is either refused or recorded before `down`
    /// reads what runs (a pre-empted request cannot leave a process behind unseen).
    spawn_gate: Mutex<()>,
    /// Nodes with a `node stop` in progress (claimed before the op lock, so a second stop of
    /// the same node is refused at once instead of queueing).
    stopping: Mutex<std::collections::HashSet<NodeId>>,
    generation: watch::Sender<u64>,
    cancel: CancellationToken,
    /// The HTTP client for the nodes' and monitoring's endpoints (rebuilt once a secure lab's
    /// certificates exist: see [`Supervisor::use_certificates`]).
    http: Mutex<reqwest::Client>,
    /// The Alertmanager webhook is being served (once per daemon).
    webhook_started: std::sync::atomic::AtomicBool,
    /// [`quorum_confirm`] for this engine, set when the poller starts ([`QUORUM_CONFIRM`]
    /// until then).
    quorum_confirm: std::sync::OnceLock<Duration>,
    /// Per alert (Alertmanager's fingerprint): the last (status, startsAt) told as an event.
    alerts_seen: Mutex<HashMap<String, (String, String)>>,
    /// Leaseholders of the rows drills asked about (CockroachDB), watched for a while.
    leases: Mutex<leases::LeaseBook>,
    /// The poller's re-asking of those rows is under way (one at a time).
    lease_asking: std::sync::atomic::AtomicBool,
}

/// A lab's supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// Asks the engine binary its release in the background ([`Engine::version`] caches it);
    /// an error is not kept: the request that needs the version asks again and reports it.
    pub fn prefetch_engine_version(&self) {
        let engine = self.inner.engine.clone();
        tokio::spawn(async move {
            let _ = engine.version().await;
        });
    }

    /// Loads the lab's state, re-adopts processes that are still running (matched by PID and
    /// start time; a PID now used by another process is never touched), records this daemon,
    /// and starts the poller. Supervision stops when `cancel` fires.
    pub async fn open(lab: Lab, bus: EventBus, cancel: CancellationToken) -> Result<Self> {
        let (state, recovered) = LabState::load_or_recover(&lab.state_file())?;
        let state = state.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
        if let Some(w) = recovered {
            bus.emit(EventKind::Warning { message: w });
        }
        let engine = engine::for_lab(&state.spec, &lab);
        // A secure lab whose certificates exist: every client of this daemon speaks its TLS.
        if state.spec.security.secure && crate::certs::CertPaths::of(&lab).complete() {
            if let Err(e) = crate::tls::use_lab(&state.spec, &lab) {
                bus.emit(EventKind::Warning { message: format!("the lab's certificates cannot be used: {e}") });
            }
        }
        let topology = crate::topology::Topology::for_lab(&state.spec, &lab);
        let poll = state.spec.timeouts.poll;
        let sup = Supervisor {
            inner: Arc::new(Inner {
                lab,
                engine,
                topology,
                bus,
                state: Mutex::new(state),
                runtime: Mutex::new(HashMap::new()),
                haproxy_backends: Mutex::new(Vec::new()),
                watch: Mutex::new(WatchState::default()),
                op_lock: tokio::sync::Mutex::new(()),
                up_lock: tokio::sync::Mutex::new(()),
                exiting: std::sync::atomic::AtomicBool::new(false),
                spawn_gate: Mutex::new(()),
                stopping: Mutex::new(Default::default()),
                generation: watch::channel(0).0,
                cancel,
                http: Mutex::new(engine::http_client(http_timeout(poll))),
                webhook_started: std::sync::atomic::AtomicBool::new(false),
                quorum_confirm: std::sync::OnceLock::new(),
                alerts_seen: Mutex::new(HashMap::new()),
                leases: Mutex::new(Default::default()),
                lease_asking: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        let monitors = sup.adopt()?;
        sup.resume_monitoring(monitors).await;
        let poller = sup.clone();
        tokio::spawn(async move { poller.poll_loop().await });
        Ok(sup)
    }

    /// The HTTP client for the nodes' and monitoring's endpoints.
    fn http(&self) -> reqwest::Client {
        self.inner.http.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A secure lab: makes its certificates if they are not all there (the engine's way:
    /// `cockroach cert`, else [`crate::certs::generate`]), and from then on every client of
    /// this daemon speaks the lab's TLS. A no-op for an insecure lab.
    pub(super) async fn use_certificates(&self) -> Result<()> {
        let spec = self.spec();
        if !spec.security.secure {
            return Ok(());
        }
        let paths = crate::certs::CertPaths::of(&self.inner.lab);
        // Missing, or there but unusable (a key that does not parse): made again.
        if !paths.complete() || crate::tls::client_config(&paths).is_err() {
            let hosts = crate::certs::hosts(&spec);
            self.inner.engine.make_certs(&paths, &hosts).await?;
            self.emit(EventKind::Note {
                message: format!(
                    "certificates made in {} (CA, node for {}, client root); the CA's key in {}",
                    paths.dir.display(),
                    hosts.iter().take(4).cloned().collect::<Vec<_>>().join(", ") + if hosts.len() > 4 { ", …" } else { "" },
                    paths.ca_key_dir.display()
                ),
            });
        }
        crate::tls::use_lab(&spec, &self.inner.lab)?;
        *self.inner.http.lock().unwrap_or_else(|p| p.into_inner()) = engine::http_client(http_timeout(spec.timeouts.poll));
        Ok(())
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

    /// The lab's validated spec, as its state keeps it.
    pub fn spec(&self) -> LabSpec {
        self.state().spec.clone()
    }

    fn bump(&self) {
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// The lab's [`Shape`] now: from the state and the network record (no probing).
    pub(super) fn shape(&self) -> Shape {
        let nodes = self.state().members().map(|n| (n.id, n.process.map(|p| p.pid), matches!(n.state, NodeState::Paused { .. }))).collect();
        let sides = self.inner.topology.netns().ok().and_then(|n| n.record().ok()).map(|r| r.sides).unwrap_or_default();
        Shape { nodes, sides }
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

    /// Holds the spawn gate and refuses once `down` has begun: see `Inner::spawn_gate`.
    fn spawn_permit(&self) -> Result<MutexGuard<'_, ()>> {
        let gate = self.inner.spawn_gate.lock().unwrap_or_else(|p| p.into_inner());
        if self.inner.exiting.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::DaemonExiting);
        }
        Ok(gate)
    }

    /// Takes the op lock for a lifecycle request; refused once `down` has begun. A request
    /// whose client goes away while it waits here is dropped before it acted, and says so.
    async fn begin_op(&self) -> Result<tokio::sync::MutexGuard<'_, ()>> {
        let guard = match crate::events::client_gone() {
            None => self.inner.op_lock.lock().await,
            Some(gone) => tokio::select! {
                g = self.inner.op_lock.lock() => g,
                _ = gone.cancelled() => {
                    let by = crate::events::requester().unwrap_or_else(|| "an API client".into());
                    let message = format!(
                        "a request from {by} was dropped before it acted: its client went away while it waited for the request in progress; nothing was done"
                    );
                    self.emit(EventKind::Note { message: message.clone() });
                    return Err(Error::Refused(message));
                }
            },
        };
        if self.inner.exiting.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::DaemonExiting);
        }
        Ok(guard)
    }

    /// Runs `wait` (a wait for readiness or for HAProxy's UP, which acts on nothing) unless
    /// the request's client goes away first: then the wait stops, and the timeline says that
    /// what the request started keeps going, not waited for (`what`: e.g. `node(s) 2 to
    /// become ready`). Nothing is undone: a node being started is not stopped for it.
    /// Returns `Err` (saying so) when the client went away, else the wait's own result.
    async fn unless_client_gone<T>(&self, what: &str, wait: impl std::future::Future<Output = T>) -> Result<T> {
        let Some(gone) = crate::events::client_gone() else { return Ok(wait.await) };
        tokio::select! {
            r = wait => Ok(r),
            _ = gone.cancelled() => {
                let by = crate::events::requester().unwrap_or_else(|| "an API client".into());
                let message = format!(
                    "the client of a request from {by} went away: stopped waiting for {what}; nothing is undone (what it started keeps going)"
                );
                self.emit(EventKind::Note { message: message.clone() });
                Err(Error::Refused(message))
            }
        }
    }

    /// Waits until `cond` holds, re-checking on every state change and at least every 200 ms.
    async fn wait_until(&self, what: impl Fn() -> String, deadline: Duration, cond: impl FnMut(&Self) -> bool) -> Result<()> {
        // A probe that does nothing: the 200 ms re-check.
        self.wait_probing(what, deadline, (Duration::from_millis(200), 1), || std::future::ready(()), cond).await
    }

    /// [`Self::wait_until`] that also probes: a `probe` starts at once and then every `every`
    /// while `cond` is false, up to `overlap` of them in flight, so a waiter notices a change
    /// within about `every` (e.g. [`FAST_PROBE`]) instead of within the poller's interval —
    /// also when probes hang until their timeout (etcd accepts connections before it serves
    /// them, so a `/health` sent during startup waits; the next one, 20 ms later, may not).
    /// A probe whose results can arrive out of order must apply only what cannot go stale.
    /// Errors as `wait_until`.
    async fn wait_probing<F>(
        &self,
        what: impl Fn() -> String,
        deadline: Duration,
        (every, overlap): (Duration, usize),
        probe: impl Fn() -> F,
        mut cond: impl FnMut(&Self) -> bool,
    ) -> Result<()>
    where
        F: std::future::Future<Output = ()>,
    {
        use futures_util::StreamExt as _;
        let start = Instant::now();
        let mut rx = self.inner.generation.subscribe();
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut next_probe = Instant::now();
        loop {
            if cond(self) {
                return Ok(());
            }
            let left = deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(Error::Timeout { what: what(), after_ms: deadline.as_millis() as u64 });
            }
            if Instant::now() >= next_probe && in_flight.len() < overlap.max(1) {
                in_flight.push(probe());
                next_probe = Instant::now() + every;
            }
            let until_probe = next_probe.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            tokio::select! {
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                _ = rx.changed() => {}
                _ = tokio::time::sleep(left.min(until_probe)) => {}
                _ = self.inner.cancel.cancelled() => return Err(Error::Refused("the daemon is shutting down".into())),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_takeover_in_progress_is_not_a_quorum_loss() {
        assert_eq!(quorum_confirm(Duration::from_secs(14)), Duration::from_secs(14), "CockroachDB v20.1: past the lease expiry");
        assert_eq!(quorum_confirm(Duration::from_secs(2)), QUORUM_CONFIRM, "never shorter than an election");
    }
}
