//! HAProxy as a child: render, validate, start or reload, and wait for its servers.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::*;

/// A written and checked HAProxy config, not yet applied: its binary, file and server names.
pub(super) struct PreparedHaproxy {
    bin: std::path::PathBuf,
    cfg: std::path::PathBuf,
    names: Vec<String>,
}

impl Supervisor {
    // ----- HAProxy ----------------------------------------------------------------------------

    /// Renders, validates and applies the HAProxy config for the current members: starts
    /// HAProxy if it is not running, else reloads it. Then waits until HAProxy lists exactly
    /// these servers.
    pub(super) async fn apply_haproxy(&self) -> Result<()> {
        let prepared = self.prepare_haproxy().await?;
        self.start_or_reload_haproxy(prepared).await
    }

    /// Renders the config for the current members, writes it and checks it (`haproxy -c`):
    /// the first half of [`Self::apply_haproxy`], which `up` runs while the nodes start.
    pub(super) async fn prepare_haproxy(&self) -> Result<PreparedHaproxy> {
        let spec = self.spec();
        let bin = haproxy::binary(&spec.haproxy)?;
        let backends: Vec<haproxy::Backend> = self.state().members().map(|n| haproxy::Backend::new(n.id, &n.ports)).collect();
        let version = haproxy::version(&bin).await;
        let text = haproxy::render(&self.inner.lab, &spec.haproxy, &spec.security, self.inner.engine.as_ref(), &backends, version)?;
        let cfg = self.inner.lab.haproxy_cfg();
        haproxy::write_validated(&bin, &cfg, &text).await?;
        let names: Vec<String> = backends.iter().map(|b| format!("node{}", b.id)).collect();
        Ok(PreparedHaproxy { bin, cfg, names })
    }

    /// The second half of [`Self::apply_haproxy`]: starts HAProxy on the checked config, or
    /// reloads the running one, and waits until it lists exactly these servers.
    pub(super) async fn start_or_reload_haproxy(&self, prepared: PreparedHaproxy) -> Result<()> {
        let PreparedHaproxy { bin, cfg, names } = prepared;
        let spec = self.spec();
        let current = self.state().haproxy;
        match current {
            Some(id) => {
                // The new worker loads the servers' states (a drained server stays drained).
                if let Err(e) = haproxy::save_server_state(&self.inner.lab.haproxy_socket(), &self.inner.lab.haproxy_state()).await {
                    self.emit(EventKind::Warning {
                        message: format!("HAProxy server states not saved before the reload ({e}); drained servers may take traffic again"),
                    });
                }
                process::signal_pid(&id, Signal::SIGUSR2)?;
                self.wait_haproxy_servers(&names).await?;
                self.emit(EventKind::HaproxyReloaded { servers: names });
            }
            None => {
                ports::check_free(&haproxy::port_claims(&spec.haproxy))?;
                haproxy::reset_server_state(&self.inner.lab.haproxy_state())?;
                std::fs::create_dir_all(self.inner.lab.logs_dir()).map_err(|e| Error::io("cannot create logs dir", e))?;
                let permit = self.spawn_permit()?;
                let mut spawned = process::spawn(&bin, &haproxy::start_args(&cfg), &[], &self.inner.lab.haproxy_log(), None)?;
                let id = spawned.identity;
                if let Err(e) = self.update(|st| st.haproxy = Some(id)) {
                    // Unrecorded, it would outlive every later daemon unseen: stop it again.
                    let _ = process::signal(&id, Signal::SIGKILL);
                    let _ = spawned.child.start_kill();
                    self.state().haproxy = None;
                    return Err(Error::Haproxy {
                        message: format!("started, but its process could not be recorded ({e}); stopped it again"),
                    });
                }
                drop(permit);
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

    pub(super) async fn wait_haproxy_servers(&self, names: &[String]) -> Result<()> {
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
            // A new HAProxy opens its stats socket ~17 ms after exec (2.6, this machine, with
            // `httpclient.ssl.verify none`; ~50 ms without); a connect attempt costs
            // microseconds, so look often.
            tokio::time::sleep(HAPROXY_PROBE).await;
        }
    }

    pub(super) async fn wait_backends_up(&self, nodes: &[NodeId]) -> Result<()> {
        if let Ok(rows) = haproxy::server_stats(&self.inner.lab.haproxy_socket()).await {
            let _ = self.undrain(&rows, Some(nodes)).await;
        }
        let h = self.spec().haproxy;
        let deadline = h.inter * (h.rise + 2) + Duration::from_secs(5);
        let nodes = nodes.to_vec();
        let wait = self.wait_probing(
            || format!("HAProxy to mark node(s) {} UP", join_ids(&nodes)),
            deadline,
            (HAPROXY_PROBE, 1),
            || self.poll_haproxy(),
            |s| nodes.iter().all(|&n| s.backend_is(n, "UP")),
        );
        self.unless_client_gone(&format!("HAProxy to mark node(s) {} UP", join_ids(&nodes)), wait).await?
    }

    pub(super) async fn stop_haproxy(&self) -> Result<()> {
        let Some(id) = self.state().haproxy else { return Ok(()) };
        process::signal(&id, Signal::SIGTERM)?;
        let res = self.wait_until(|| "haproxy to exit".into(), Duration::from_secs(5), |s| s.state().haproxy.is_none()).await;
        if res.is_err() {
            let _ = process::signal(&id, Signal::SIGKILL);
            self.wait_until(|| "haproxy to exit after SIGKILL".into(), KILL_WAIT, |s| s.state().haproxy.is_none()).await?;
        }
        Ok(())
    }

    pub(super) async fn learn_engine_ids(&self) {
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
}
