//! Graceful stop: out of HAProxy first, client sessions gone, leadership or leases handed
//! off, and only then SIGTERM — so a drained node costs its clients nothing. Each stage is a
//! `drain_stage` event with its time since the request, for the CLI, the timeline and drills.
//!
//! 1. `haproxy`: the node's server goes to DRAIN in every backend through HAProxy's runtime
//!    API (`set server <backend>/<server> state drain`), read back from `show stat`. DRAIN
//!    takes no new connection and keeps the sessions it has. A reload keeps it (server-state
//!    file). If the runtime API does not answer, the stop goes on with SIGTERM only, with a
//!    warning.
//! 2. `sessions`: waits (at most `timeouts.drain_sessions`, 5 s) until no client session is
//!    left on the server. roachlab's workloads retire their connections after 1 s and
//!    reconnect between operations — through HAProxy, to another node.
//! 3. `hand-off`: the engine hands off what the node leads ([`Engine::hand_off`]): etcd moves
//!    Raft leadership if the node leads; CockroachDB runs `cockroach node drain`.
//! 4. SIGTERM, then SIGKILL after the grace period (the node exits quickly: it has nothing
//!    left to hand over).
//!
//! When the node is ready again (after `node start`, `up`, or a start without waiting), its
//! server goes back to `ready` — only then: the poller and [`Supervisor::undrain`] check
//! readiness first.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::*;
use crate::haproxy::AdminState;

/// Releases a node's stop claim when the stop ends, however it ends.
struct StopClaim<'a> {
    sup: &'a Supervisor,
    node: NodeId,
}

impl Drop for StopClaim<'_> {
    fn drop(&mut self) {
        self.sup.inner.stopping.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.node);
    }
}

impl Supervisor {
    /// `node stop N`: with `drain`, the stages above, then SIGTERM; without, SIGTERM at once.
    /// SIGKILL after `grace` (default `timeouts.grace`). Errors: unknown node, node not
    /// running, or a stop of it already in progress (refused at once; nothing is signalled
    /// twice).
    pub async fn stop_node(&self, node: NodeId, grace: Option<Duration>, drain: bool) -> Result<serde_json::Value> {
        self.state().node(node)?;
        if !self.inner.stopping.lock().unwrap_or_else(|p| p.into_inner()).insert(node) {
            return Err(Error::NodeState {
                id: node,
                message: "is already being stopped by another request; wait for it, or `roachlab node kill` it".into(),
            });
        }
        let _claim = StopClaim { sup: self, node };
        let _op = self.begin_op().await?;
        let grace = grace.unwrap_or(self.spec().timeouts.grace);
        self.emit(EventKind::Command {
            command: format!("node stop {node}{} (grace {})", if drain { "" } else { " --no-drain" }, humantime::format_duration(grace)),
            by: crate::events::requester(),
        });
        if !self.is_live(node) && self.cancel_restart(node) {
            self.emit(EventKind::Note { message: format!("node {node}: its pending automatic restart was cancelled") });
            return Ok(serde_json::json!({ "node": node, "signals": [], "exit": null, "elapsed_ms": 0, "outcome": "not running" }));
        }
        self.require_live(node)?;
        self.set_intent(&[node], super::restart::Intent::Stop);
        if matches!(self.state().node(node)?.state, NodeState::Paused { .. }) {
            // A paused node cannot drain: continue it first.
            self.resume_one(node)?;
        }
        let start = Instant::now();
        let stages = if drain { self.drain(node, start, grace).await } else { Vec::new() };
        let out = self.stop_nodes(&[node], Signal::SIGTERM, grace, &[(Signal::SIGKILL, KILL_WAIT)]).await?;
        let mut v = serde_json::to_value(&out[0]).expect("serializes");
        v["drain"] = serde_json::to_value(stages).expect("serializes");
        Ok(v)
    }

    fn stage(&self, node: NodeId, start: Instant, stage: &str, detail: String) -> serde_json::Value {
        let after_ms = start.elapsed().as_millis() as u64;
        self.emit(EventKind::DrainStage { node, stage: stage.into(), detail: detail.clone(), after_ms });
        serde_json::json!({ "stage": stage, "detail": detail, "after_ms": after_ms })
    }

    /// The backends a node's server is in: the client frontend and the admin UI.
    fn backends(&self) -> [&'static str; 2] {
        [self.inner.engine.frontend_name(), "admin-ui"]
    }

    /// Stages 1–3. Failures are warnings: the stop goes on.
    async fn drain(&self, node: NodeId, start: Instant, budget: Duration) -> Vec<serde_json::Value> {
        let mut stages = Vec::new();
        let socket = self.inner.lab.haproxy_socket();
        let server = format!("node{node}");
        let in_haproxy = self.state().haproxy.is_some();
        let mut drained = false;
        if in_haproxy {
            let mut failed = None;
            for proxy in self.backends() {
                if let Err(e) = haproxy::set_server_state(&socket, proxy, &server, AdminState::Drain).await {
                    failed = Some(e);
                    break;
                }
            }
            match failed {
                None => {
                    // HAProxy's own word, not ours.
                    let rows = haproxy::server_stats(&socket).await.unwrap_or_default();
                    let said: Vec<String> =
                        rows.iter().filter(|r| r.server == server).map(|r| format!("{} {}", r.proxy, r.status)).collect();
                    drained = true;
                    stages.push(self.stage(node, start, "haproxy", format!("no new connections (HAProxy: {})", said.join(", "))));
                }
                Some(e) => self.emit(EventKind::Warning {
                    message: format!("node {node}: HAProxy's runtime API did not take the drain ({e}); stopping with SIGTERM only"),
                }),
            }
        }
        if drained {
            stages.push(self.wait_sessions(node, &server, start).await);
        }
        let me = self.members().into_iter().find(|m| m.id == node);
        let others: Vec<Member> = self.members().into_iter().filter(|m| m.id != node && self.is_ready(m.id)).collect();
        if let Some(me) = me {
            match self.inner.engine.hand_off(&self.http(), me, &others, budget).await {
                Ok(lines) => {
                    for l in lines {
                        stages.push(self.stage(node, start, "hand-off", l));
                    }
                }
                Err(e) => self.emit(EventKind::Warning { message: format!("node {node}: hand-off failed ({e}); sending SIGTERM anyway") }),
            }
        }
        stages
    }

    /// Stage 2: until no session is left on the client frontend's server, at most
    /// `timeouts.drain_sessions`; says how many are left when it changes.
    async fn wait_sessions(&self, node: NodeId, server: &str, start: Instant) -> serde_json::Value {
        let limit = self.spec().timeouts.drain_sessions;
        let socket = self.inner.lab.haproxy_socket();
        let frontend = self.inner.engine.frontend_name();
        let waited = Instant::now();
        let mut last = None;
        loop {
            let rows = haproxy::server_stats(&socket).await.unwrap_or_default();
            let left = rows.iter().find(|r| r.proxy == frontend && r.server == server).map(|r| r.sessions).unwrap_or(0);
            if left == 0 {
                let ms = waited.elapsed().as_millis();
                return self.stage(node, start, "sessions", format!("no client session left on the server (after {ms} ms)"));
            }
            if waited.elapsed() >= limit {
                return self.stage(
                    node,
                    start,
                    "sessions",
                    format!("{left} client session(s) still open after {} ms (timeouts.drain_sessions); going on", limit.as_millis()),
                );
            }
            if last != Some(left) {
                self.emit(EventKind::NodePhase { node, phase: format!("{left} client session(s) left on the server") });
                last = Some(left);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Puts back in service (`ready`) every server of `nodes` that HAProxy shows in DRAIN,
    /// once its node is ready and no stop of it is in progress. Called by the poller and
    /// before waiting for backends to come UP. Returns whether it put any back.
    pub(super) async fn undrain(&self, rows: &[haproxy::ServerStat], nodes: Option<&[NodeId]>) -> bool {
        let frontend = self.inner.engine.frontend_name();
        let drained: Vec<NodeId> = rows
            .iter()
            .filter(|r| r.proxy == frontend && r.status.starts_with("DRAIN"))
            .filter_map(|r| r.node())
            .filter(|n| nodes.is_none_or(|ns| ns.contains(n)))
            .collect();
        let mut acted = false;
        for node in drained {
            let stopping = self.inner.stopping.lock().unwrap_or_else(|p| p.into_inner()).contains(&node);
            if stopping || !self.is_ready(node) {
                continue;
            }
            let socket = self.inner.lab.haproxy_socket();
            let mut res = Ok(());
            for proxy in self.backends() {
                res = res.and(haproxy::set_server_state(&socket, proxy, &format!("node{node}"), AdminState::Ready).await);
            }
            acted = true;
            match res {
                Ok(()) => {
                    self.emit(EventKind::DrainStage {
                        node,
                        stage: "ready".into(),
                        detail: "node ready: its HAProxy server is back in service".into(),
                        after_ms: 0,
                    });
                }
                Err(e) => {
                    self.emit(EventKind::Warning { message: format!("node {node}: cannot put its HAProxy server back in service: {e}") })
                }
            }
        }
        acted
    }
}
