//! Prometheus and Alertmanager as children of the daemon, like HAProxy: own process groups,
//! PID + start-time identity in `state.json`, re-adopted by a new daemon, stopped by `down`,
//! logs in `DIR/logs/`. Their configs are regenerated and Prometheus reloaded on every
//! membership change. Alertmanager's notifications arrive on a webhook the daemon serves on
//! 127.0.0.1 and become `alert_firing` / `alert_resolved` events.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::*;
use crate::monitoring::{self, client, render, Component, MonitoringSpec, Paths};

/// How long a starting Prometheus or Alertmanager may take to answer `/-/ready`.
const READY_WAIT: Duration = Duration::from_secs(30);

impl Supervisor {
    fn monitoring_spec(&self) -> Option<MonitoringSpec> {
        Some(self.spec().monitoring).filter(|m| m.enabled)
    }

    fn monitoring_view(&self) -> (render::LabView, Paths) {
        let spec = self.spec();
        let engine = self.inner.engine.clone();
        let members = self.state().members().map(|n| render::Target::new(n.id, &n.ports)).collect();
        let view = render::LabView {
            engine: spec.engine,
            dir: self.inner.lab.dir().to_path_buf(),
            job: engine.metrics_job(),
            frontend: engine.frontend_name(),
            haproxy_stats_port: spec.haproxy.stats_port,
            haproxy_host: spec.security.local_host(),
            members,
            certs: spec.security.secure.then(|| crate::certs::CertPaths::of(&self.inner.lab)),
        };
        (view, Paths::of(&self.inner.lab))
    }

    /// Checks, before anything starts, that monitoring can run: the binaries and tools are
    /// installed, the ports are free (for servers not yet running), and the configs and rule
    /// files pass promtool and amtool. A no-op without monitoring.
    pub(super) async fn check_monitoring(&self) -> Result<()> {
        let Some(m) = self.monitoring_spec() else { return Ok(()) };
        monitoring::prometheus_binary(&m)?;
        monitoring::alertmanager_binary(&m)?;
        let (running_p, running_a) = {
            let st = self.state();
            (st.prometheus.is_some(), st.alertmanager.is_some())
        };
        let claims: Vec<_> = m
            .port_claims()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| match i {
                0 => !running_p,
                1 => !running_a,
                _ => !self.inner.webhook_started.load(std::sync::atomic::Ordering::SeqCst),
            })
            .map(|(_, c)| c)
            .collect();
        ports::check_free(&claims)?;
        let (view, paths) = self.monitoring_view();
        render::write_validated(&m, &view, &paths).await
    }

    /// Writes the configs for the current members (unless `written`: `up` has just written
    /// and checked them in [`Supervisor::check_monitoring`], under the same op lock), starts
    /// whichever server is not running, and reloads a running Prometheus. Serves the webhook.
    /// A no-op without monitoring.
    pub(super) async fn apply_monitoring(&self, written: bool) -> Result<()> {
        let Some(m) = self.monitoring_spec() else { return Ok(()) };
        let (view, paths) = self.monitoring_view();
        if !written {
            render::write_validated(&m, &view, &paths).await?;
        }
        self.ensure_webhook(&m).await?;
        let targets: Vec<String> = view.members.iter().map(|t| format!("node {} ({})", t.node, t.addr)).collect();
        if self.state().alertmanager.is_none() {
            let bin = monitoring::alertmanager_binary(&m)?;
            self.start_component(Component::Alertmanager, &bin, &monitoring::alertmanager_args(&m, &paths), &m.alertmanager_url()).await?;
        }
        if self.state().prometheus.is_none() {
            let bin = monitoring::prometheus_binary(&m)?;
            self.start_component(Component::Prometheus, &bin, &monitoring::prometheus_args(&m, &paths), &m.prometheus_url()).await?;
        } else {
            client::reload(&self.http(), &m.prometheus_url()).await.map_err(|message| Error::Monitoring { message })?;
            self.emit(EventKind::MonitoringReloaded { targets });
        }
        Ok(())
    }

    async fn start_component(&self, c: Component, bin: &std::path::Path, args: &[String], url: &str) -> Result<()> {
        std::fs::create_dir_all(self.inner.lab.logs_dir()).map_err(|e| Error::io("cannot create logs dir", e))?;
        let log = self.inner.lab.logs_dir().join(format!("{c}.log"));
        let spawned = {
            let _permit = self.spawn_permit()?;
            let spawned = process::spawn(bin, args, &[], &log, None)?;
            let id = spawned.identity;
            if let Err(e) = self.update(|st| *component_slot(st, c) = Some(id)) {
                let _ = process::signal(&id, Signal::SIGKILL);
                *component_slot(&mut self.state(), c) = None;
                return Err(Error::Monitoring {
                    message: format!("{c} started, but its process could not be recorded ({e}); stopped it again"),
                });
            }
            spawned
        };
        let id = spawned.identity;
        self.emit(EventKind::MonitoringStarted { component: c, pid: id.pid, url: url.to_string() });
        let sup = self.clone();
        let child = spawned.child;
        tokio::spawn(async move { sup.watch_component(c, id, Some(child)).await });
        let start = Instant::now();
        loop {
            if client::ready(&self.http(), url).await {
                return Ok(());
            }
            if component_slot(&mut self.state(), c).is_none() || start.elapsed() > READY_WAIT {
                let tail = crate::supervisor::restart::last_lines(&log, 5).join(" ⏎ ");
                return Err(Error::Monitoring {
                    message: format!(
                        "{c} did not become ready on {url} within {} s; its log {} ends: {tail}",
                        READY_WAIT.as_secs(),
                        log.display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One task per monitoring server: waits for our child's exit, or polls an adopted
    /// process by identity, then records the exit.
    pub(super) async fn watch_component(&self, c: Component, id: ProcIdentity, child: Option<Box<dyn process_wrap::tokio::ChildWrapper>>) {
        let status = match child {
            Some(mut child) => tokio::select! {
                s = child.wait() => s.map(ExitInfo::from).unwrap_or(ExitInfo::Unknown),
                _ = self.inner.cancel.cancelled() => return,
            },
            None => loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = self.inner.cancel.cancelled() => return,
                }
                if !id.is_alive() {
                    break ExitInfo::Unknown;
                }
            },
        };
        let _ = self.update(|st| {
            let slot = component_slot(st, c);
            if *slot == Some(id) {
                *slot = None;
            }
        });
        self.emit(EventKind::MonitoringExited { component: c, pid: id.pid, status });
    }

    /// Re-adopts running monitoring servers (by identity) from the state; forgets gone ones.
    /// Returns those to watch.
    pub(super) fn adopt_monitoring(&self, st: &mut LabState) -> Vec<(Component, ProcIdentity)> {
        let mut out = Vec::new();
        for c in [Component::Prometheus, Component::Alertmanager] {
            let slot = component_slot(st, c);
            match *slot {
                Some(id) if id.is_alive() => out.push((c, id)),
                Some(id) => {
                    if let Liveness::Reused { name, .. } = id.liveness() {
                        self.emit(EventKind::Warning {
                            message: format!("{c}: recorded pid {} now belongs to `{name}`; it will not be signalled", id.pid),
                        });
                    }
                    *slot = None;
                }
                None => {}
            }
        }
        out
    }

    /// After adoption: watch the adopted servers and serve the webhook again.
    pub(super) async fn resume_monitoring(&self, adopted: Vec<(Component, ProcIdentity)>) {
        for (c, id) in adopted {
            let sup = self.clone();
            tokio::spawn(async move { sup.watch_component(c, id, None).await });
        }
        if let Some(m) = self.monitoring_spec() {
            let running = { self.state().alertmanager.is_some() };
            if running {
                if let Err(e) = self.ensure_webhook(&m).await {
                    self.emit(EventKind::Warning { message: format!("alerts will not reach the timeline: {e}") });
                }
            }
        }
    }

    /// Stops Prometheus and Alertmanager (SIGTERM, then SIGKILL after 5 s), by identity.
    pub(super) async fn stop_monitoring(&self) -> Result<()> {
        for c in [Component::Prometheus, Component::Alertmanager] {
            let Some(id) = *component_slot(&mut self.state(), c) else { continue };
            process::signal(&id, Signal::SIGTERM)?;
            let gone = |s: &Self| component_slot(&mut s.state(), c).is_none();
            if self.wait_until(|| format!("{c} to exit"), Duration::from_secs(5), gone).await.is_err() {
                let _ = process::signal(&id, Signal::SIGKILL);
                self.wait_until(|| format!("{c} to exit after SIGKILL"), KILL_WAIT, gone).await?;
            }
        }
        Ok(())
    }

    /// Serves Alertmanager's webhook on 127.0.0.1 (once per daemon).
    async fn ensure_webhook(&self, m: &MonitoringSpec) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.inner.webhook_started.load(Ordering::SeqCst) {
            return Ok(());
        }
        let listener = ports::bind_loopback(m.webhook_port, "roachlab's Alertmanager webhook").await?;
        self.inner.webhook_started.store(true, Ordering::SeqCst);
        let sup = self.clone();
        let app = axum::Router::new().route(
            render::WEBHOOK_PATH,
            axum::routing::post(move |axum::Json(p): axum::Json<client::WebhookPayload>| {
                let sup = sup.clone();
                async move {
                    // Anyone on this host can post here: what is not Alertmanager's format is
                    // refused, and nothing of it reaches the timeline.
                    if let Err(e) = p.validate() {
                        return (axum::http::StatusCode::BAD_REQUEST, crate::events::printable(&e));
                    }
                    sup.on_notification(p);
                    (axum::http::StatusCode::OK, String::new())
                }
            }),
        );
        let cancel = self.inner.cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move { cancel.cancelled().await }).await;
        });
        Ok(())
    }

    /// Turns a notification into events, once per alert and state (Alertmanager repeats
    /// notifications, and a group's notification lists alerts already told).
    pub fn on_notification(&self, p: client::WebhookPayload) {
        let members: Vec<NodeId> = self.state().nodes.iter().map(|n| n.id).collect();
        let mut events = Vec::new();
        {
            let mut seen = self.inner.alerts_seen.lock().unwrap_or_else(|e| e.into_inner());
            for a in p.alerts {
                let key = if a.fingerprint.is_empty() { format!("{:?}", a.labels) } else { a.fingerprint.clone() };
                let now = (a.status.clone(), a.starts_at.clone());
                if seen.get(&key) == Some(&now) {
                    continue;
                }
                seen.insert(key, now);
                let (alert, labels) = (a.name().to_string(), a.identifying_labels());
                // An alert about a node this lab does not have is told, and said to be odd.
                if let Some(node) = labels.get("node").filter(|n| !members.iter().any(|m| m.to_string() == **n)) {
                    events.push(EventKind::Warning {
                        message: crate::events::printable(&format!(
                            "alert {alert} names node {node}, which this lab does not have (nodes {})",
                            members.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
                        )),
                    });
                }
                events.push(if a.status == "resolved" {
                    EventKind::AlertResolved { alert, labels, starts_at: a.starts_at, ends_at: a.ends_at }
                } else {
                    EventKind::AlertFiring { alert, labels, starts_at: a.starts_at, summary: a.annotations.get("summary").cloned() }
                });
            }
        }
        for e in events {
            self.emit(e);
        }
    }

    /// Monitoring in `status`: processes from the state, figures asked of the servers with
    /// the poll client's short timeout. `None` without monitoring.
    pub async fn monitoring_status(&self) -> Option<crate::api::MonitoringStatus> {
        let m = self.spec().monitoring;
        let (p, a) = {
            let st = self.state();
            (st.prometheus, st.alertmanager)
        };
        if !m.enabled && p.is_none() && a.is_none() {
            return None;
        }
        let component = |id: Option<ProcIdentity>, url: String| crate::api::ComponentStatus {
            pid: id.map(|i| i.pid),
            state: if id.is_some() { "running" } else { "stopped" }.into(),
            url,
        };
        let http = &self.http();
        let (prom, am) = (m.prometheus_url(), m.alertmanager_url());
        let (targets, rules, alerts) =
            futures_util::join!(client::targets(http, &prom), client::loaded_alerts(http, &prom), client::active_alerts(http, &am));
        let targets = targets.ok();
        Some(crate::api::MonitoringStatus {
            prometheus: component(p, m.prometheus_url()),
            alertmanager: component(a, m.alertmanager_url()),
            webhook: format!("http://127.0.0.1:{}{}", m.webhook_port, render::WEBHOOK_PATH),
            targets_up: targets.as_ref().map(|t| t.iter().filter(|t| t.health == "up").count()),
            targets_total: targets.as_ref().map(Vec::len),
            targets_unscraped: targets.iter().flatten().filter(|t| t.health == "unknown").count(),
            targets_down: targets
                .iter()
                .flatten()
                .filter(|t| t.health != "up" && t.health != "unknown")
                .map(|t| format!("{} {}: {}", t.job, t.instance, if t.last_error.is_empty() { &t.health } else { &t.last_error }))
                .collect(),
            rules_loaded: rules.ok().map(|r| r.len()),
            firing: alerts
                .ok()
                .map(|a| a.iter().map(|a| format!("{}{}", a.name(), crate::events::describe_labels(&a.identifying_labels()))).collect()),
        })
    }

    /// `GET /v1/alerts`: Alertmanager's active alerts and the timeline's alert events.
    pub async fn alerts_report(&self) -> crate::api::AlertsReport {
        let m = self.spec().monitoring;
        let history = std::fs::read_to_string(self.inner.lab.events_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<crate::events::Event>(l).ok())
            .filter(|e| matches!(e.kind, EventKind::AlertFiring { .. } | EventKind::AlertResolved { .. }))
            .collect();
        let running = self.state().alertmanager.is_some();
        let (firing, error) = if !m.enabled && !running {
            (Vec::new(), Some("this lab runs without monitoring; start it with `roachlab up --monitoring`".to_string()))
        } else {
            match client::active_alerts(&self.http(), &m.alertmanager_url()).await {
                Ok(a) => (a, None),
                Err(e) => (Vec::new(), Some(format!("Alertmanager did not answer: {e}"))),
            }
        };
        crate::api::AlertsReport { firing, history, error }
    }
}

fn component_slot(st: &mut LabState, c: Component) -> &mut Option<ProcIdentity> {
    match c {
        Component::Prometheus => &mut st.prometheus,
        Component::Alertmanager => &mut st.alertmanager,
    }
}
