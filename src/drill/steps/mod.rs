//! A drill's steps, run one at a time against the daemon: node references resolved when the
//! step runs, conditions checked on the watcher's status, and every fault walked through
//! [`crate::fault`]'s lifecycle, so whatever is pending when the drill ends (done, failed,
//! interrupted) is recovered by the runner.

use std::time::{Duration, Instant};

use super::metrics::PhaseMark;
use super::model::{DrillOptions, Prediction, StepKind, StepLog};
use super::scenario::{Action, NodeRef};
use crate::api::{Client, StatusReport};
use crate::events::Event;
use crate::fault::{Failer, Fault, Pending};
use crate::node::NodeId;
use crate::watch::{LossPrediction, Writes};
use crate::workload::commits::CommitClock;
use crate::{Error, Result};

mod resolve;
mod sql;

/// The running drill's state, step to step.
pub(super) struct Ctx<'a> {
    /// Replaced by a new daemon's client if the daemon dies mid-drill.
    pub client: Client,
    pub opts: &'a DrillOptions,
    pub rng: fastrand::Rng,
    pub last: Option<NodeId>,
    /// Nodes this drill stopped, killed or decommissioned, in order.
    pub downed: Vec<NodeId>,
    pub t0: Instant,
    pub marks: Vec<PhaseMark>,
    pub failures: Vec<String>,
    pub log: Vec<StepLog>,
    pub predictions: Vec<Prediction>,
    /// Made by [`Ctx::predict`], taken by the next [`Ctx::fault`].
    pub pending_prediction: Option<LossPrediction>,
    /// Faults injected and not yet recovered.
    pub pending: Pending,
    /// When the workload's committed operations began (`writes resumed`).
    pub commits: std::sync::Arc<CommitClock>,
    /// When the latest fault step ran.
    pub last_fault: Option<Instant>,
    pub line: usize,
    pub say: &'a mut (dyn FnMut(String) + Send),
    /// `marks`, mirrored for the live view ([`crate::drill::live`]) each time a step sets them.
    pub shared_marks: std::sync::Arc<std::sync::Mutex<Vec<PhaseMark>>>,
    /// A SQL client's URL for `host:port` (`None`: the engine has no SQL), for `sql` steps.
    pub client_url: std::sync::Arc<dyn Fn(&str, u16) -> Option<String> + Send + Sync>,
    /// What each `sql` step with an `expect` found.
    pub sql_results: Vec<super::model::ExpectationResult>,
}

/// How long a fault step waits for its fault to take effect.
const PROPAGATE_WAIT: Duration = Duration::from_secs(60);

impl Ctx<'_> {
    pub fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    pub async fn status(&self) -> Result<StatusReport> {
        self.client.get("/v1/status").await
    }

    /// A printer for a request's events (drain progress left out).
    fn printer(say: &mut (dyn FnMut(String) + Send)) -> impl FnMut(&Event) + Send + '_ {
        move |e: &Event| {
            if !matches!(e.kind, crate::events::EventKind::NodePhase { .. }) {
                say(format!("    {}", e.describe()));
            }
        }
    }

    async fn node_request(&mut self, what: &str, path: String, body: serde_json::Value) -> Result<()> {
        let mut print = Self::printer(&mut *self.say);
        self.client.stream(&path, &body, &mut print).await.map(|_| ()).map_err(|e| Error::Refused(format!("{what}: {e}")))
    }

    fn record(&mut self, kind: StepKind, what: String) {
        let at_ms = self.now_ms();
        (self.say)(format!("  step at line {}: {what}", self.line));
        self.log.push(StepLog { at_ms, line: self.line, what, kind });
    }

    async fn ask_prediction(&self, down: &[NodeId]) -> Result<LossPrediction> {
        let q = format!("/v1/predict?down={}", down.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","));
        self.client.get::<LossPrediction>(&q).await
    }

    /// Recovers the pending faults `pick` selects on `nodes` through the fault module (and
    /// asks `path` directly for nodes no pending fault names).
    async fn recover_process_fault(&mut self, pick: impl Fn(&Fault) -> bool, nodes: &[NodeId], path: &str) -> Result<()> {
        let mut taken = self.pending.take(|f| pick(f) && f.downs_or_targets().iter().any(|n| nodes.contains(n)));
        if taken.is_empty() {
            return self.node_request(path, path.into(), serde_json::json!({ "nodes": nodes })).await;
        }
        for f in &mut taken {
            let mut print = Self::printer(&mut *self.say);
            f.recover(&self.client, &mut print).await?;
            drop(print);
            f.wait_recovered(&self.client, PROPAGATE_WAIT).await?;
            f.cleanup();
        }
        Ok(())
    }

    /// States what taking `ids` down (with the members already down) will do to quorum,
    /// before the fault runs; [`Ctx::fault`] records it with the fault's time. A prediction
    /// the daemon cannot make is said, not fatal.
    async fn predict(&mut self, ids: &[NodeId]) {
        let mut down = match self.status().await {
            Ok(s) => stopped_members(&s),
            Err(_) => Vec::new(),
        };
        for id in ids {
            if !down.contains(id) {
                down.push(*id);
            }
        }
        down.sort_unstable();
        match self.ask_prediction(&down).await {
            Ok(p) => {
                (self.say)(format!("  prediction: {}", p.text));
                self.pending_prediction = Some(p);
            }
            Err(e) => (self.say)(format!("  no prediction for node(s) {down:?} down: {e}")),
        }
    }

    /// A partition's prediction: clients reach every side (but the sides cut from them), and
    /// a transfer commits where its gateway's side holds a majority of what it writes. So
    /// each reachable side is predicted as if the rest were down, and writes continue if they
    /// continue on some side.
    async fn predict_partition(&mut self, sides: &[Vec<NodeId>], from_clients: bool) {
        let Ok(s) = self.status().await else { return };
        let members: Vec<NodeId> = s.nodes.iter().filter(|n| !n.decommissioned).map(|n| n.id).collect();
        let majority = members.len() / 2 + 1;
        let mut best: Option<LossPrediction> = None;
        let mut texts = Vec::new();
        for side in sides.iter().filter(|side| !from_clients || side.len() >= majority) {
            let down: Vec<NodeId> = members.iter().copied().filter(|m| !side.contains(m)).collect();
            match self.ask_prediction(&down).await {
                Ok(p) => {
                    texts.push(format!("side {side:?}: {}", p.text));
                    let rank = |w: Writes| match w {
                        Writes::Continue => 2,
                        Writes::Some => 1,
                        Writes::Stop => 0,
                    };
                    if best.as_ref().is_none_or(|b| rank(p.writes) > rank(b.writes)) {
                        best = Some(p);
                    }
                }
                Err(e) => {
                    (self.say)(format!("  no prediction for side {side:?}: {e}"));
                    return;
                }
            }
        }
        let Some(mut p) = best else {
            (self.say)("  prediction: every side is cut from the clients; nothing can commit".into());
            return;
        };
        p.text = format!("partitioned, as seen from each side clients reach — {}", texts.join("; "));
        (self.say)(format!("  prediction: {}", p.text));
        self.pending_prediction = Some(p);
    }

    fn fault(&mut self, what: String, nodes: &[NodeId]) {
        self.last_fault = Some(Instant::now());
        self.downed.extend_from_slice(nodes);
        self.record(StepKind::Fault, what.clone());
        let now = self.now_ms();
        if let Some(prediction) = self.pending_prediction.take() {
            self.predictions.push(Prediction { line: self.line, at_ms: now, until_ms: now, prediction });
        }
        if let Some(m) = self.marks.last_mut() {
            if m.fault_ms.is_none() {
                m.fault_ms = Some(now);
                m.fault = Some(what);
                m.fault_nodes = nodes.to_vec();
            }
        }
        self.share_marks();
    }

    /// Mirrors the phase marks for the live view.
    fn share_marks(&self) {
        *self.shared_marks.lock().unwrap_or_else(|e| e.into_inner()) = self.marks.clone();
    }

    /// Records a recovery step; the phase's first one is where its throughput recovery is
    /// measured from (also in a phase of its own, like a `healed` phase after a partition).
    fn recovery(&mut self, what: String) {
        self.record(StepKind::Recovery, what);
        let now = self.now_ms();
        if let Some(m) = self.marks.last_mut() {
            if m.recover_ms.is_none() {
                m.recover_ms = Some(now);
            }
        }
        self.share_marks();
    }

    pub fn phase(&mut self, name: &str) {
        let now = self.now_ms();
        if let Some(m) = self.marks.last_mut() {
            m.end_ms = now;
        }
        self.marks.push(PhaseMark {
            name: name.to_string(),
            start_ms: now,
            end_ms: now,
            fault_ms: None,
            fault: None,
            fault_nodes: Vec::new(),
            recover_ms: None,
        });
        self.share_marks();
        (self.say)(format!("── phase {name}"));
    }

    /// Injects `fault` (recorded as the phase's fault), waits until it has taken effect, and
    /// keeps it pending for recovery.
    async fn inject(&mut self, fault: Fault) -> Result<()> {
        self.fault(fault.describe(), &fault.downs_or_targets());
        let mut f = Failer::new(fault);
        let res = {
            let mut print = Self::printer(&mut *self.say);
            f.inject(&self.client, &mut print).await
        };
        let describe = f.fault.describe();
        if f.is_pending() {
            self.pending.push(f.clone());
        }
        res.map_err(|e| Error::Refused(format!("{describe}: {e}")))?;
        let took = f.wait_propagated(&self.client, PROPAGATE_WAIT).await?;
        (self.say)(format!("    took effect after {:.1} s", took.as_secs_f64()));
        Ok(())
    }

    pub async fn step(&mut self, a: &Action) -> Result<()> {
        match a {
            Action::Phase { name } => self.phase(name),
            Action::Stop { node, grace, drain } => {
                let nodes = self.resolve_many(node, true).await?;
                self.predict(&nodes).await;
                self.inject(Fault::Stop { nodes, grace: *grace, drain: *drain }).await?;
            }
            Action::Kill { node } => {
                let nodes = self.resolve_many(node, true).await?;
                self.predict(&nodes).await;
                self.inject(Fault::Kill { nodes }).await?;
            }
            Action::Pause { node } => {
                let nodes = self.resolve_many(node, true).await?;
                self.predict(&nodes).await;
                self.inject(Fault::Pause { nodes }).await?;
            }
            Action::Throttle { node, cpu } => {
                let nodes = self.resolve_many(node, true).await?;
                self.inject(Fault::Throttle { nodes, cpu_pct: *cpu }).await?;
            }
            Action::Resume { node } => {
                let nodes = self.resolve_many(node, true).await?;
                self.recovery(format!("resume node(s) {nodes:?}"));
                self.recover_process_fault(|f| matches!(f, Fault::Pause { .. }), &nodes, "/v1/nodes/resume").await?;
            }
            Action::Unthrottle { node } => {
                let nodes = self.resolve_many(node, true).await?;
                self.recovery(format!("unthrottle node(s) {nodes:?}"));
                self.recover_process_fault(|f| matches!(f, Fault::Throttle { .. }), &nodes, "/v1/nodes/unthrottle").await?;
            }
            Action::Isolate { node, from_clients } => {
                let id = self.resolve(node).await?;
                let sides = self.resolve_sides(&[vec![NodeRef::Id(id)], vec![NodeRef::Rest]]).await?;
                self.predict_partition(&sides, *from_clients).await;
                self.inject(Fault::Partition { sides, one_way: false, from_clients: *from_clients }).await?;
            }
            Action::Partition { sides, one_way, from_clients } => {
                let sides = self.resolve_sides(sides).await?;
                if !one_way {
                    self.predict_partition(&sides, *from_clients).await;
                }
                self.inject(Fault::Partition { sides, one_way: *one_way, from_clients: *from_clients }).await?;
            }
            Action::Delay { node, delay, jitter } => {
                let id = self.resolve(node).await?;
                let shaping =
                    crate::topology::Shaping { delay_ms: delay.as_millis() as u32, jitter_ms: jitter.as_millis() as u32, loss_pct: 0.0 };
                self.inject(Fault::Shape { node: id, shaping }).await?;
            }
            Action::Loss { node, percent } => {
                let id = self.resolve(node).await?;
                self.inject(Fault::Shape { node: id, shaping: crate::topology::Shaping { delay_ms: 0, jitter_ms: 0, loss_pct: *percent } })
                    .await?;
            }
            Action::Heal => {
                self.recovery("heal the network".into());
                let mut healed = self.pending.take(Fault::is_network);
                if healed.is_empty() {
                    self.node_request("heal", "/v1/net/heal".into(), serde_json::json!({})).await?;
                } else {
                    let mut print = Self::printer(&mut *self.say);
                    healed[0].recover(&self.client, &mut print).await?;
                    drop(print);
                    let took = healed[0].wait_recovered(&self.client, PROPAGATE_WAIT).await?;
                    (self.say)(format!("    every member sees quorum again after {:.1} s", took.as_secs_f64()));
                }
            }
            Action::Decommission { node, force } => {
                let id = self.resolve(node).await?;
                self.predict(&[id]).await;
                self.fault(format!("decommission of node {id}"), &[id]);
                let body = serde_json::json!({ "force": force });
                self.node_request(&format!("decommission node {id}"), format!("/v1/nodes/{id}/decommission"), body).await?;
            }
            Action::Start { node, wait } => {
                let nodes = self.resolve_many(node, false).await?;
                self.recovery(format!("start node(s) {}", nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")));
                // The start recovers the stop or kill of these nodes, if one is pending.
                for &id in &nodes {
                    self.pending.node_started(id);
                }
                let body = serde_json::json!({ "nodes": nodes, "no_wait": !wait });
                self.node_request("start", "/v1/nodes/start".into(), body).await?;
            }
            Action::StartAll => {
                self.recovery("start every stopped member".into());
                for id in stopped_members(&self.status().await?) {
                    // As with `start`: the start recovers the pending stop or kill of the node.
                    self.pending.node_started(id);
                    self.node_request(&format!("start node {id}"), format!("/v1/nodes/{id}/start"), serde_json::json!({})).await?;
                }
            }
            Action::Add => {
                self.record(StepKind::Other, "add a node".into());
                self.node_request("add a node", "/v1/nodes/add".into(), serde_json::json!({})).await?;
            }
            Action::Set { setting, value } => {
                self.record(StepKind::Other, format!("set {setting} = {value}"));
                let body = serde_json::json!({ "name": setting, "value": value });
                self.node_request(&format!("set {setting}"), "/v1/settings".into(), body).await?;
            }
            Action::Wait { duration, why } => {
                if let Some(why) = why {
                    (self.say)(format!("    waiting {:.0} s: {why}", duration.as_secs_f64()));
                }
                tokio::time::sleep(*duration).await
            }
            Action::WaitUntil { condition, timeout, why } => {
                if let Some(why) = why {
                    (self.say)(format!("    waiting until {condition} (at most {:.0} s): {why}", timeout.as_secs_f64()));
                }
                let start = Instant::now();
                loop {
                    let (ok, observed) = self.holds(condition).await?;
                    if ok {
                        (self.say)(format!("    {condition}: after {:.1} s", start.elapsed().as_secs_f64()));
                        break;
                    }
                    if start.elapsed() > *timeout {
                        return Err(Error::Timeout {
                            what: format!("{condition} (last seen: {observed})"),
                            after_ms: timeout.as_millis() as u64,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Action::Sql { node, statement, expect } => self.sql(node, statement, expect.as_deref()).await?,
            Action::Assert { condition } => {
                let (ok, observed) = self.holds(condition).await?;
                if !ok {
                    self.failures.push(format!("assertion `{condition}` did not hold (observed {observed})"));
                }
                (self.say)(format!("    assert {condition}: {} (observed {observed})", if ok { "holds" } else { "FAILED" }));
            }
        }
        Ok(())
    }

    /// The restore: every pending fault recovered, newest first (the network healed, killed
    /// and stopped nodes started), each waited for; then any member still stopped is started
    /// and any network fault still in force (injected outside the drill) healed. Whatever
    /// could not be undone becomes a failure.
    pub async fn restore(&mut self) {
        let nodes: Vec<String> = self.pending.faults().flat_map(Fault::downs).map(|n| n.to_string()).collect();
        let network: Vec<String> = self.pending.faults().filter(|f| f.is_network()).map(Fault::describe).collect();
        if !network.is_empty() {
            (self.say)(format!("── healing the network ({})", network.join("; ")));
        }
        if !nodes.is_empty() {
            (self.say)(format!("── restoring node(s) {}", nodes.join(", ")));
        }
        let mut print = Self::printer(&mut *self.say);
        let failed = self.pending.recover_all(&self.client, Duration::from_secs(120), &mut print).await;
        drop(print);
        self.failures.extend(failed);
        let Ok(s) = self.status().await else { return };
        if s.network.cuts > 0 || !s.network.shaped.is_empty() {
            if let Err(e) = self.node_request("heal the network", "/v1/net/heal".into(), serde_json::json!({})).await {
                self.failures.push(format!("could not heal the network: {e}"));
            }
        }
        let stopped = stopped_members(&s);
        if !stopped.is_empty() {
            (self.say)(format!("── restoring node(s) {}", stopped.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")));
            for id in stopped {
                let start = self.node_request(&format!("restore node {id}"), format!("/v1/nodes/{id}/start"), serde_json::json!({})).await;
                if let Err(e) = start {
                    self.failures.push(format!("could not restore node {id}: {e}"));
                }
            }
        }
    }
}

pub(super) fn stopped_members(s: &StatusReport) -> Vec<NodeId> {
    s.nodes.iter().filter(|n| n.pid.is_none() && !n.decommissioned).map(|n| n.id).collect()
}
