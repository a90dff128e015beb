//! Faults, each with one lifecycle — the shape of roachtest's failure-injection framework
//! (`pkg/cmd/roachtest/roachtestutil/failureinjection`: a `FailureMode` with Setup, Inject,
//! WaitForFailureToPropagate, Recover, WaitForFailureToRecover, Cleanup, driven by a state
//! machine so the calls come in order), in roachlab's own terms:
//!
//! inject → wait until propagated → recover → wait until recovered → cleanup.
//!
//! A [`Fault`] says what it does through the daemon's API and when it has taken (or lost)
//! effect as a condition on the observed [`StatusReport`]; a [`Failer`] walks one fault
//! through the lifecycle; [`Pending`] holds every fault injected and not yet recovered, so a
//! drill that fails or is interrupted recovers them all (newest first). The supervisor keeps
//! process and network ownership and exposes the primitives; this module never touches a
//! process or a namespace itself.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::api::{Client, PartitionRequest, ShapeRequest, StatusReport};
use crate::events::Event;
use crate::node::NodeId;
use crate::topology::Shaping;
use crate::{Error, Result};

/// How long [`Failer::wait_propagated`] and [`Failer::wait_recovered`] wait by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// One fault, with the nodes resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// Intentional: one node is drained first (HAProxy, sessions, hand-off) unless `drain` is
    /// false, then SIGTERM; several nodes (a locality) get SIGTERM at the same instant. A
    /// restart policy does not restart them. Recovered by starting them again.
    Stop { nodes: Vec<NodeId>, grace: Option<Duration>, drain: bool },
    /// SIGKILL, every node at the same instant: a crash (a restart policy restarts them).
    /// Recovered by starting them again.
    Kill { nodes: Vec<NodeId> },
    /// SIGSTOP to each node's process group: they hold their sockets and answer nothing (the
    /// gray failure a health check notices only after its timeout). Recovered by SIGCONT.
    Pause { nodes: Vec<NodeId> },
    /// A CPU quota (percent of one core) through cgroups. Recovered by removing it.
    Throttle { nodes: Vec<NodeId>, cpu_pct: u32 },
    /// Traffic between `sides` dropped (netns topology); see [`PartitionRequest`].
    Partition { sides: Vec<Vec<NodeId>>, one_way: bool, from_clients: bool },
    /// Latency and loss on one node's outgoing traffic (netns topology, `sch_netem`).
    Shape { node: NodeId, shaping: Shaping },
}

/// Where a fault is in its lifecycle (roachtest's Failer states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Planned,
    Injected,
    Propagated,
    Recovered,
    CleanedUp,
}

fn list(nodes: &[NodeId]) -> String {
    let ids: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    format!("node{} {}", if nodes.len() == 1 { "" } else { "s" }, ids.join(", "))
}

impl Fault {
    /// The fault in words, e.g. `SIGKILL of node 2`, `partition 1,2 | 3`.
    pub fn describe(&self) -> String {
        match self {
            Fault::Stop { nodes, drain: true, .. } if nodes.len() == 1 => format!("graceful stop of {}", list(nodes)),
            Fault::Stop { nodes, .. } => format!("SIGTERM of {} (no drain)", list(nodes)),
            Fault::Kill { nodes } => format!("SIGKILL of {}", list(nodes)),
            Fault::Pause { nodes } => format!("pause (SIGSTOP) of {}", list(nodes)),
            Fault::Throttle { nodes, cpu_pct } => format!("CPU throttle of {} to {cpu_pct}% of a core", list(nodes)),
            Fault::Partition { sides, one_way, from_clients } => {
                format!("partition {}", crate::events::describe_sides(sides, *one_way, *from_clients))
            }
            Fault::Shape { node, shaping } => {
                format!("delay {} ms ± {} ms, loss {}% on node {node}", shaping.delay_ms, shaping.jitter_ms, shaping.loss_pct)
            }
        }
    }

    /// The nodes the fault takes out of the cluster as far as a quorum prediction is
    /// concerned: stopped, killed and paused nodes (partitions are predicted from their
    /// sides; a throttled node still votes).
    pub fn downs(&self) -> Vec<NodeId> {
        match self {
            Fault::Stop { nodes, .. } | Fault::Kill { nodes } | Fault::Pause { nodes } => nodes.clone(),
            _ => Vec::new(),
        }
    }

    /// The nodes the fault acts on (a partition: none in particular; delay/loss: its node).
    pub fn downs_or_targets(&self) -> Vec<NodeId> {
        match self {
            Fault::Stop { nodes, .. } | Fault::Kill { nodes } | Fault::Pause { nodes } | Fault::Throttle { nodes, .. } => nodes.clone(),
            Fault::Shape { node, .. } => vec![*node],
            Fault::Partition { .. } => Vec::new(),
        }
    }

    /// True for faults on the network (undone together by `net heal`).
    pub fn is_network(&self) -> bool {
        matches!(self, Fault::Partition { .. } | Fault::Shape { .. })
    }

    /// Injects it through the daemon; `on_event` sees the request's events as they happen.
    /// Returns the request's result (e.g. the stop outcomes).
    pub async fn inject(&self, client: &Client, on_event: &mut (dyn FnMut(&Event) + Send)) -> Result<serde_json::Value> {
        let r = match self {
            Fault::Stop { nodes, grace, drain } if nodes.len() == 1 => {
                let body = crate::api::StopRequest { grace_ms: grace.map(|g| g.as_millis() as u64), no_drain: !drain };
                client.stream(&format!("/v1/nodes/{}/stop", nodes[0]), &body, |e| on_event(e)).await
            }
            Fault::Stop { nodes, grace, .. } => {
                let body = NodesRequest { nodes: nodes.clone(), grace_ms: grace.map(|g| g.as_millis() as u64), ..Default::default() };
                client.stream("/v1/nodes/stop", &body, |e| on_event(e)).await
            }
            Fault::Kill { nodes } => client.stream("/v1/nodes/kill", &NodesRequest::of(nodes), |e| on_event(e)).await,
            Fault::Pause { nodes } => client.stream("/v1/nodes/pause", &NodesRequest::of(nodes), |e| on_event(e)).await,
            Fault::Throttle { nodes, cpu_pct } => {
                let body = NodesRequest { nodes: nodes.clone(), cpu_pct: Some(*cpu_pct), ..Default::default() };
                client.stream("/v1/nodes/throttle", &body, |e| on_event(e)).await
            }
            Fault::Partition { sides, one_way, from_clients } => {
                let body = PartitionRequest { sides: sides.clone(), one_way: *one_way, from_clients: *from_clients };
                client.stream("/v1/net/partition", &body, |e| on_event(e)).await
            }
            Fault::Shape { node, shaping } => {
                let body =
                    ShapeRequest { node: *node, delay_ms: shaping.delay_ms, jitter_ms: shaping.jitter_ms, loss_pct: shaping.loss_pct };
                client.stream("/v1/net/shape", &body, |e| on_event(e)).await
            }
        };
        r
    }

    /// Whether the fault has taken effect as the watcher sees it, compared with `before`
    /// (the status just before injection), and what was seen.
    ///
    /// - stop, kill: every node's process is gone (a restart policy may already have started
    ///   a new one: a pid other than before also counts).
    /// - pause: every node is `paused`.
    /// - throttle: every node shows its quota.
    /// - partition: the cuts are in force, and some node on a side without a majority of the
    ///   members has lost its own quorum view (its quorum read fails, or the daemon cannot
    ///   reach it). Engine-neutral on purpose: in etcd every such node loses it; in
    ///   CockroachDB a side keeps the ranges whose replica majority it holds, so only some
    ///   do. What the sides could still write is the prediction's and the expectations' to
    ///   check, not the propagation's.
    /// - delay/loss: in force in the lab's network record.
    pub fn propagated(&self, before: &StatusReport, s: &StatusReport) -> (bool, String) {
        let node = |id: &NodeId| s.nodes.iter().find(|n| n.id == *id);
        let pid_before = |id: &NodeId| before.nodes.iter().find(|n| n.id == *id).and_then(|n| n.pid);
        match self {
            Fault::Stop { nodes, .. } | Fault::Kill { nodes } => {
                let left: Vec<NodeId> =
                    nodes.iter().copied().filter(|id| node(id).is_some_and(|n| n.pid.is_some() && n.pid == pid_before(id))).collect();
                (left.is_empty(), if left.is_empty() { "every process gone".into() } else { format!("{} still running", list(&left)) })
            }
            Fault::Pause { nodes } => {
                let left: Vec<NodeId> = nodes.iter().copied().filter(|id| node(id).is_none_or(|n| n.state != "paused")).collect();
                (left.is_empty(), if left.is_empty() { "paused".into() } else { format!("{} not paused", list(&left)) })
            }
            Fault::Throttle { nodes, cpu_pct } => {
                let left: Vec<NodeId> =
                    nodes.iter().copied().filter(|id| node(id).is_none_or(|n| n.cpu_quota_pct != Some(*cpu_pct))).collect();
                (left.is_empty(), if left.is_empty() { "throttled".into() } else { format!("{} not throttled", list(&left)) })
            }
            Fault::Partition { sides, .. } => partition_propagated(sides, s),
            Fault::Shape { node, .. } => (s.network.shaped.contains(node), format!("delay/loss on node(s) {:?}", s.network.shaped)),
        }
    }

    /// Undoes it through the daemon: starts the nodes that are not running, resumes,
    /// unthrottles, or heals the network (every network fault at once: the kernel state is
    /// one).
    pub async fn recover(&self, client: &Client, on_event: &mut (dyn FnMut(&Event) + Send)) -> Result<()> {
        let r = match self {
            Fault::Stop { nodes, .. } | Fault::Kill { nodes } => {
                let s: StatusReport = client.get("/v1/status").await?;
                // Started already (a `start` step, a restart policy) is recovered.
                let down: Vec<NodeId> = nodes
                    .iter()
                    .copied()
                    .filter(|id| s.nodes.iter().any(|n| n.id == *id && n.pid.is_none() && !n.decommissioned))
                    .collect();
                if down.is_empty() {
                    return Ok(());
                }
                client.stream("/v1/nodes/start", &NodesRequest { no_wait: true, ..NodesRequest::of(&down) }, |e| on_event(e)).await
            }
            Fault::Pause { nodes } => {
                let s: StatusReport = client.get("/v1/status").await?;
                let paused: Vec<NodeId> =
                    nodes.iter().copied().filter(|id| s.nodes.iter().any(|n| n.id == *id && n.state == "paused")).collect();
                if paused.is_empty() {
                    return Ok(());
                }
                client.stream("/v1/nodes/resume", &NodesRequest::of(&paused), |e| on_event(e)).await
            }
            Fault::Throttle { nodes, .. } => client.stream("/v1/nodes/unthrottle", &NodesRequest::of(nodes), |e| on_event(e)).await,
            Fault::Partition { .. } | Fault::Shape { .. } => client.stream("/v1/net/heal", &serde_json::json!({}), |e| on_event(e)).await,
        };
        r.map(|_| ())
    }

    /// Whether the cluster is whole again as far as this fault goes: the nodes run, are
    /// ready, UP in HAProxy (when HAProxy runs), not paused and not throttled; the network is
    /// whole and every running member's quorum read answers.
    pub fn recovered(&self, s: &StatusReport) -> (bool, String) {
        match self {
            Fault::Stop { nodes, .. } | Fault::Kill { nodes } | Fault::Pause { nodes } | Fault::Throttle { nodes, .. } => {
                let left: Vec<String> = nodes
                    .iter()
                    .filter_map(|id| {
                        let n = s.nodes.iter().find(|n| n.id == *id)?;
                        let up = n.ready
                            && n.state != "paused"
                            && n.cpu_quota_pct.is_none()
                            && n.backend.as_deref().is_none_or(|b| b.split_whitespace().next() == Some("UP"));
                        (!up).then(|| format!("node {id}: {}, ready {}, HAProxy {}", n.state, n.ready, n.backend.as_deref().unwrap_or("-")))
                    })
                    .collect();
                (left.is_empty(), if left.is_empty() { "back in service".into() } else { left.join("; ") })
            }
            Fault::Partition { .. } | Fault::Shape { .. } => {
                let whole = s.network.cuts == 0 && s.network.shaped.is_empty();
                let blind: Vec<NodeId> =
                    s.nodes.iter().filter(|n| n.pid.is_some() && !n.decommissioned && n.sees_quorum != Some(true)).map(|n| n.id).collect();
                (
                    whole && blind.is_empty(),
                    if !whole {
                        "network faults still in force".into()
                    } else if blind.is_empty() {
                        "every running member sees quorum".into()
                    } else {
                        format!("node(s) {blind:?} do not see quorum yet")
                    },
                )
            }
        }
    }
}

/// Body of the batch node requests (`POST /v1/nodes/{kill,stop,start,pause,resume,throttle,unthrottle}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodesRequest {
    pub nodes: Vec<NodeId>,
    /// stop: time from SIGTERM to SIGKILL, ms (default: the lab's `timeouts.grace`).
    #[serde(default)]
    pub grace_ms: Option<u64>,
    /// start: return once the processes run.
    #[serde(default)]
    pub no_wait: bool,
    /// throttle: percent of one core, 1–100.
    #[serde(default)]
    pub cpu_pct: Option<u32>,
}

impl NodesRequest {
    /// A request naming `nodes`, every option at its default.
    pub fn of(nodes: &[NodeId]) -> Self {
        Self { nodes: nodes.to_vec(), ..Default::default() }
    }
}

fn partition_propagated(sides: &[Vec<NodeId>], s: &StatusReport) -> (bool, String) {
    if s.network.cuts == 0 {
        return (false, "no cut in force".into());
    }
    // A quorum view from before the cut is no answer either way.
    if !s.observed.current {
        return (false, "the nodes' quorum views not observed yet since the cut".into());
    }
    let members = s.nodes.iter().filter(|n| !n.decommissioned).count();
    let majority = members / 2 + 1;
    let view = |id: &NodeId| s.nodes.iter().find(|n| n.id == *id).and_then(|n| n.sees_quorum);
    let minority: Vec<NodeId> = sides.iter().filter(|side| side.len() < majority).flatten().copied().collect();
    match minority.iter().find(|id| view(id) != Some(true)) {
        Some(id) => (true, format!("node {id}, on a side without a majority of {members}, lost quorum")),
        None => (false, format!("every node on the minority side(s) {minority:?} still sees quorum")),
    }
}

/// Waits until `cond` holds on the daemon's status, polling every 200 ms, at most `timeout`.
/// The error says what was awaited and what was seen last.
pub async fn wait_for(client: &Client, what: &str, timeout: Duration, cond: impl Fn(&StatusReport) -> (bool, String)) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let s: StatusReport = client.get("/v1/status").await?;
        let (ok, seen) = cond(&s);
        if ok {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return Err(Error::Timeout { what: format!("{what} (last seen: {seen})"), after_ms: timeout.as_millis() as u64 });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One fault walked through its lifecycle in order.
#[derive(Debug, Clone)]
pub struct Failer {
    pub fault: Fault,
    pub stage: Stage,
    /// The status just before injection (to tell a restarted process from the old one).
    pub before: Option<StatusReport>,
}

impl Failer {
    pub fn new(fault: Fault) -> Self {
        Self { fault, stage: Stage::Planned, before: None }
    }

    /// Inject (once); returns the request's result.
    pub async fn inject(&mut self, client: &Client, on_event: &mut (dyn FnMut(&Event) + Send)) -> Result<serde_json::Value> {
        if self.stage != Stage::Planned {
            return Err(Error::Refused(format!("{} was already injected", self.fault.describe())));
        }
        self.before = Some(client.get("/v1/status").await?);
        // Marked before the request: a request that fails half-way (a partition with some
        // routes made) is still recovered.
        self.stage = Stage::Injected;
        self.fault.inject(client, on_event).await
    }

    /// Waits until the fault has taken effect; returns how long that took.
    pub async fn wait_propagated(&mut self, client: &Client, timeout: Duration) -> Result<Duration> {
        let f = self.fault.clone();
        let before = self.before.clone().ok_or_else(|| Error::Refused(format!("{} was not injected", f.describe())))?;
        let took = wait_for(client, &format!("{} to take effect", f.describe()), timeout, |s| f.propagated(&before, s)).await?;
        self.stage = Stage::Propagated;
        Ok(took)
    }

    /// Recover (a fault never injected needs none).
    pub async fn recover(&mut self, client: &Client, on_event: &mut (dyn FnMut(&Event) + Send)) -> Result<()> {
        if matches!(self.stage, Stage::Planned | Stage::Recovered | Stage::CleanedUp) {
            return Ok(());
        }
        self.fault.recover(client, on_event).await?;
        self.stage = Stage::Recovered;
        Ok(())
    }

    /// Waits until the cluster is whole again as far as this fault goes.
    pub async fn wait_recovered(&self, client: &Client, timeout: Duration) -> Result<Duration> {
        let f = self.fault.clone();
        wait_for(client, &format!("recovery from {}", f.describe()), timeout, |s| f.recovered(s)).await
    }

    /// Cleanup: nothing is left of the fault (its record included). Faults whose recovery
    /// leaves nothing behind are done here.
    pub fn cleanup(&mut self) {
        if self.stage == Stage::Recovered {
            self.stage = Stage::CleanedUp;
        }
    }

    /// Injected and not yet recovered.
    pub fn is_pending(&self) -> bool {
        matches!(self.stage, Stage::Injected | Stage::Propagated)
    }
}

/// Faults injected and not yet recovered, oldest first.
#[derive(Debug, Default)]
pub struct Pending {
    faults: Vec<Failer>,
}

impl Pending {
    /// Tracks an injected fault.
    pub fn push(&mut self, f: Failer) {
        self.faults.push(f);
    }

    /// The pending faults.
    pub fn faults(&self) -> impl Iterator<Item = &Fault> {
        self.faults.iter().filter(|f| f.is_pending()).map(|f| &f.fault)
    }

    /// Takes the pending faults `pick` selects (newest first), for a recovery step.
    pub fn take(&mut self, pick: impl Fn(&Fault) -> bool) -> Vec<Failer> {
        let mut taken = Vec::new();
        let mut i = self.faults.len();
        while i > 0 {
            i -= 1;
            if self.faults[i].is_pending() && pick(&self.faults[i].fault) {
                taken.push(self.faults.remove(i));
            }
        }
        taken
    }

    /// A `start` step brought `id` back: it leaves the stop or kill faults naming it, and a
    /// fault with no node left is recovered.
    pub fn node_started(&mut self, id: NodeId) {
        for f in self.faults.iter_mut().filter(|f| f.is_pending()) {
            if let Fault::Stop { nodes, .. } | Fault::Kill { nodes } = &mut f.fault {
                nodes.retain(|n| *n != id);
                if nodes.is_empty() {
                    f.stage = Stage::Recovered;
                }
            }
        }
    }

    /// Recovers every pending fault, newest first (a partition injected after a kill is
    /// healed before the node restarts), waits until each has recovered, and cleans up.
    /// Returns what could not be undone; carries on past failures.
    pub async fn recover_all(&mut self, client: &Client, timeout: Duration, on_event: &mut (dyn FnMut(&Event) + Send)) -> Vec<String> {
        let mut failed = Vec::new();
        let mut healed_network = false;
        let mut all = self.take(|_| true);
        for f in &mut all {
            // One heal undoes every network fault.
            if f.fault.is_network() && healed_network {
                f.stage = Stage::Recovered;
            } else if let Err(e) = f.recover(client, on_event).await {
                failed.push(format!("could not recover from {}: {e}", f.fault.describe()));
                continue;
            }
            healed_network |= f.fault.is_network();
        }
        for f in &mut all {
            if f.stage != Stage::Recovered {
                continue;
            }
            if let Err(e) = f.wait_recovered(client, timeout).await {
                failed.push(e.to_string());
            }
            f.cleanup();
        }
        failed
    }
}

#[cfg(test)]
mod tests;
