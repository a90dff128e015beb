//! Views of the lab: membership, readiness, HAProxy's word for each server, and the status
//! report (`GET /v1/status`).

use super::*;

impl Supervisor {
    // ----- views ----------------------------------------------------------------------------

    pub(super) fn members(&self) -> Vec<Member> {
        self.state().members().map(|n| Member { id: n.id, ports: n.ports, engine_id: n.engine_id }).collect()
    }

    pub(super) fn is_ready(&self, node: NodeId) -> bool {
        let live = self.state().node(node).map(|n| n.process.is_some()).unwrap_or(false);
        live && self.runtime().get(&node).is_some_and(|r| r.ready && !r.ready_unobserved)
    }

    /// HAProxy shows `word` (`UP`, `DOWN`) for the node's server. `UP` counts only once a
    /// health check has passed: HAProxy lists servers as UP before their first check (`INI`).
    pub(super) fn backend_is(&self, node: NodeId, word: &str) -> bool {
        let rt = self.runtime();
        let Some(r) = rt.get(&node) else { return false };
        let status_ok = r.backend.as_deref().is_some_and(|s| s.split_whitespace().next() == Some(word));
        status_ok && (word != "UP" || r.backend_check.as_deref().is_some_and(|c| c.starts_with("L7OK")))
    }

    pub(super) fn is_live(&self, node: NodeId) -> bool {
        self.state().node(node).map(|n| n.process.is_some()).unwrap_or(false)
    }

    /// No node process and no HAProxy run.
    pub fn runs_nothing(&self) -> bool {
        let st = self.state();
        st.haproxy.is_none() && st.prometheus.is_none() && st.alertmanager.is_none() && st.nodes.iter().all(|n| n.process.is_none())
    }

    /// The lab's status, as `GET /v1/status` returns it.
    pub fn status(&self) -> StatusReport {
        let shape = self.shape();
        let (figures, observed) = {
            let w = self.inner.watch.lock().unwrap_or_else(|p| p.into_inner());
            let current = w.observed.as_ref().is_some_and(|(s, _)| *s == shape);
            let age_ms = w.observed.as_ref().map(|(_, at)| at.elapsed().as_millis() as u64);
            // Figures of another shape are not shown: "not observed yet", never a verdict.
            let figures = if current { w.last.clone() } else { Observation::default() };
            (figures, crate::api::Observed { current, age_ms })
        };
        let st = self.state();
        let rt = self.runtime();
        let nodes = st
            .nodes
            .iter()
            .map(|n| {
                let r = rt.get(&n.id).cloned().unwrap_or_default();
                let (since, exit) = match &n.state {
                    NodeState::Starting { since, .. } | NodeState::Running { since, .. } | NodeState::Paused { since, .. } => {
                        (Some(rfc3339(*since)), None)
                    }
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
                    ready: live && r.ready && !r.ready_unobserved,
                    ready_detail: if live && !r.ready && !r.ready_unobserved { r.ready_detail.clone() } else { None },
                    ready_unobserved: live && r.ready_unobserved,
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
                    host: n.ports.host.to_string(),
                    sees_quorum: figures.nodes.get(&n.id).and_then(|f| f.sees_quorum).filter(|_| live),
                    quorum_detail: figures.nodes.get(&n.id).and_then(|f| f.quorum_detail.clone()).filter(|_| live),
                    locality: st.spec.locality_of(n.id),
                    cpu_quota_pct: r.cpu_quota_pct.filter(|_| live),
                    restarts: r.restart.total,
                    next_restart_at: r.restart.next_at.map(rfc3339),
                    crash_loop: r.restart.crash_loop.clone(),
                }
            })
            .collect();
        StatusReport {
            engine: st.spec.engine.to_string(),
            dir: self.inner.lab.dir().to_path_buf(),
            daemon: DaemonStatus { pid: std::process::id(), exiting: self.inner.exiting.load(std::sync::atomic::Ordering::SeqCst) },
            nodes,
            haproxy: self.haproxy_status(&st),
            cluster: {
                // One snapshot: a counted quorum (etcd) is recounted from the same state as
                // the table, not taken from the last poll (which may predate an exit or a
                // decommission). An observed one (CockroachDB's probe) stays as observed.
                let mut c = figures.cluster;
                if let Some(q) = c.quorum.as_mut().filter(|q| q.detail.is_none()) {
                    *q = crate::watch::Quorum::of(st.members().filter(|n| n.process.is_some()).count(), st.members().count());
                }
                c
            },
            observed,
            quorum_rule: self.inner.engine.quorum_rule(st.members().count()),
            network: self.network_status(),
            monitoring: None,
            console: None,
            certificates: st.spec.security.secure.then(|| {
                let paths = crate::certs::CertPaths::of(&self.inner.lab);
                let first = [paths.node_crt(), paths.client_crt()].iter().filter_map(|p| crate::certs::expiry(p).ok()).min();
                crate::api::CertificatesStatus {
                    dir: paths.dir.clone(),
                    expires: first.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
                    days_left: first.map(|t| (t - time::OffsetDateTime::now_utc()).whole_days()),
                }
            }),
        }
    }

    /// The topology and the faults in force, from the record (no probing).
    fn network_status(&self) -> crate::api::NetworkStatus {
        let topology = self.inner.topology.kind().to_string();
        let rec = self.inner.topology.netns().ok().and_then(|n| n.record().ok()).unwrap_or_default();
        crate::api::NetworkStatus { topology, sides: rec.sides, cuts: rec.cuts.len(), shaped: rec.shaped.keys().copied().collect() }
    }

    pub(super) fn haproxy_status(&self, st: &LabState) -> HaproxyStatus {
        let h = &st.spec.haproxy;
        HaproxyStatus {
            pid: st.haproxy.map(|p| p.pid),
            state: if st.haproxy.is_some() { "running" } else { "stopped" }.into(),
            config: self.inner.lab.haproxy_cfg(),
            frontend: st.spec.security.frontend_addr(h.frontend_port),
            admin_ui: st.spec.security.frontend_addr(h.admin_port),
            stats: st.spec.security.frontend_addr(h.stats_port),
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
}
