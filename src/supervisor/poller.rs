//! The poller: readiness, the engine's observation and HAProxy's server states, every
//! `timeouts.poll`; what changed goes out as events.

use time::OffsetDateTime;

use super::*;

impl Supervisor {
    // ----- polling --------------------------------------------------------------------------

    pub(super) async fn poll_loop(&self) {
        // The engine's takeover time (CockroachDB asks its binary, once) sets how long a
        // failing quorum probe is a takeover in progress; not waited for by the first rounds.
        let sup = self.clone();
        tokio::spawn(async move {
            let takeover = sup.inner.engine.takeover().await;
            let _ = sup.inner.quorum_confirm.set(quorum_confirm(takeover.expected));
        });
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
        let shape = self.shape();
        let live: Vec<(NodeId, String)> =
            self.state().nodes.iter().filter(|n| n.process.is_some()).map(|n| (n.id, n.ports.http_addr())).collect();
        let all = self.members();
        let live_members: Vec<Member> = all.iter().copied().filter(|m| live.iter().any(|(id, _)| *id == m.id)).collect();
        // Readiness is applied as soon as its probes answer, not after the engine's slower
        // observation (CockroachDB's quorum probe may take its whole 2 s timeout).
        let probes = async {
            let sent = Instant::now();
            for (node, r) in self.probe_readiness_of(&live).await {
                self.apply_readiness(node, r.ready, r.detail, sent);
            }
        };
        let http = self.http();
        let observe = self.inner.engine.observe(&http, &live_members, &all);
        let ((), observation) = futures_util::join!(probes, observe);
        // A node that started or exited while the round ran makes its quorum figure a mix of
        // two memberships (seen: a read answered by the member that was alone when the round
        // began, after a restarted one had joined it — "regained with 1 of 3 running"): such a
        // round does not move quorum lost/regained; the next one, consistent, does.
        // The same holds for a node paused or resumed, or a partition made or healed, mid-round.
        let consistent = self.shape() == shape;
        self.apply_observation(observation, consistent.then_some(shape));
        self.reask_leaseholders();
        self.poll_haproxy().await;
    }

    /// Probes the readiness of `targets` (node, admin HTTP address) in parallel, each bounded
    /// by the poll client's timeout: the poller's round and `wait_ready`'s fast probes.
    pub(super) async fn probe_readiness_of(&self, targets: &[(NodeId, String)]) -> Vec<(NodeId, engine::Readiness)> {
        let engine = self.inner.engine.as_ref();
        let client = &self.http();
        futures_util::future::join_all(
            targets.iter().map(|(id, addr)| async move { (*id, engine::probe_readiness(engine, client, addr).await) }),
        )
        .await
    }

    /// Stores an observation, adds the quorum figure, and publishes what changed. Quorum
    /// transitions come only from a consistent round (`shape`: the lab's shape throughout the
    /// round; `None` when it changed meanwhile), which also dates the figures for `status`.
    pub(super) fn apply_observation(&self, mut obs: Observation, shape: Option<Shape>) {
        let consistent = shape.is_some();
        // Quorum as the engine observed it (CockroachDB: a timed SQL write), else Raft
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
            if initialized && consistent {
                // Lost once it has failed for the engine's confirm time without a break (an
                // election or a lease takeover is not a loss); regained at the first success
                // after a reported loss.
                let confirm = self.inner.quorum_confirm.get().copied().unwrap_or(QUORUM_CONFIRM);
                let now = Instant::now();
                if quorum.ok {
                    w.quorum_failing_since = None;
                } else {
                    w.quorum_failing_since.get_or_insert(now);
                }
                let confirmed_lost = w.quorum_failing_since.is_some_and(|t| now.duration_since(t) >= confirm);
                if confirmed_lost && !w.lost_reported && w.quorum_ok.is_some() {
                    w.lost_reported = true;
                    events.push(EventKind::QuorumLost { up: quorum.up, needed: quorum.needed, detail: quorum.detail.clone() });
                } else if quorum.ok && w.lost_reported {
                    w.lost_reported = false;
                    events.push(EventKind::QuorumRegained { up: quorum.up, needed: quorum.needed, detail: quorum.detail.clone() });
                }
                w.quorum_ok = Some(quorum.ok);
                // Each node's own view, the same way: under a partition this tells the sides apart.
                for (node, f) in &obs.nodes {
                    let Some(sees) = f.sees_quorum else { continue };
                    if sees {
                        w.node_failing_since.remove(node);
                        if w.node_lost_reported.remove(node) {
                            events.push(EventKind::NodeQuorum { node: *node, sees_quorum: true, detail: f.quorum_detail.clone() });
                        }
                    } else {
                        let since = *w.node_failing_since.entry(*node).or_insert(now);
                        if now.duration_since(since) >= confirm && w.node_lost_reported.insert(*node) {
                            events.push(EventKind::NodeQuorum { node: *node, sees_quorum: false, detail: f.quorum_detail.clone() });
                        }
                    }
                }
                // A node no longer probed (stopped) starts afresh.
                w.node_failing_since.retain(|n, _| obs.nodes.get(n).is_some_and(|f| f.sees_quorum.is_some()));
                w.node_lost_reported.retain(|n| obs.nodes.get(n).is_some_and(|f| f.sees_quorum.is_some()));
            }
            w.last = obs;
            if let Some(shape) = shape {
                w.observed = Some((shape, Instant::now()));
            }
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

    /// Applies a readiness answer to the probe sent at `sent`, unless an answer to a newer
    /// probe was applied already (probes overlap: the poller's and `wait_ready`'s).
    pub(super) fn apply_readiness(&self, node: NodeId, ready: bool, detail: Option<String>, sent: Instant) {
        let (changed, detail_changed) = {
            let mut rt = self.runtime();
            let r = rt.entry(node).or_default();
            if r.ready_sent.is_some_and(|newer| newer > sent) {
                return;
            }
            r.ready_sent = Some(sent);
            r.ready_unobserved = false;
            let changed = r.ready != ready;
            let detail_changed = r.ready_detail != detail;
            r.ready = ready;
            r.ready_detail = detail.clone();
            (changed, detail_changed)
        };
        self.note_ready_for_restarts(node, ready);
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

    pub(super) async fn poll_haproxy(&self) {
        if self.state().haproxy.is_none() {
            return;
        }
        let socket = self.inner.lab.haproxy_socket();
        let Ok(mut rows) = haproxy::server_stats(&socket).await else { return };
        // A drained server whose node is ready again (and not being stopped) goes back into
        // service, also after `node start --no-wait` or a daemon restart mid-stop; what is
        // recorded is read after that, never the DRAIN it just undid.
        if self.undrain(&rows, None).await {
            let Ok(again) = haproxy::server_stats(&socket).await else { return };
            rows = again;
        }
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
}
