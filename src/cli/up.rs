//! `up` and `demo`: create the lab if there is none (atomically), start or hand over to its
//! daemon, and bring every node, HAProxy and monitoring up; a first `up` that started nothing
//! leaves no lab behind.

use std::path::Path;
use std::time::Duration;

use super::{drill, stream};
use crate::api::{Client, DownRequest, StatusReport};
use crate::config::{EngineKind, LabSpec, Overrides};
use crate::lab::Lab;
use crate::reporter::{self};
use crate::state::LabState;
use crate::{Error, Result};

pub(super) async fn up(lab: &Lab, config: Option<&Path>, overrides: Overrides) -> Result<i32> {
    let asked = config.is_some()
        || overrides.engine.is_some()
        || overrides.nodes.is_some()
        || overrides.topology.is_some()
        || overrides.security.secure
        || overrides.security.bind.is_some();
    let requested = LabSpec::load(config, &overrides)?;
    // Before anything is created or started: a netns lab without the privileges for it.
    if !LabState::load(&lab.state_file()).ok().flatten().is_some_and(|s| s.spec.topology.kind != requested.topology.kind) {
        crate::topology::Topology::for_lab(&requested, lab).check_prerequisites()?;
    }
    // Create the lab if there is none — atomically: of two `up`s racing on a new directory,
    // one creates it and the other finds it (and, asked for another shape, is refused).
    std::fs::create_dir_all(lab.dir()).map_err(|e| Error::io(format!("cannot create {}", lab.dir().display()), e))?;
    let created = LabState::new(requested.clone()).create(&lab.state_file())?;
    if !created {
        let (existing, _) = LabState::load_or_recover(&lab.state_file())?;
        if let Some(existing) = existing {
            let differences = shape_differences(&existing.spec, &requested);
            if asked && !differences.is_empty() {
                return Err(Error::LabMismatch { dir: lab.dir().to_path_buf(), differences: differences.join("; ") });
            }
        }
    }
    let result = up_created(lab, &overrides, &requested, created).await;
    // A first `up` that failed before any process started (a port taken, a binary missing)
    // leaves no lab behind: the next `up` may ask for another shape.
    if result.is_err() && created {
        let untouched = LabState::load(&lab.state_file()).ok().flatten().is_some_and(|st| {
            st.haproxy.is_none()
                && st.prometheus.is_none()
                && st.alertmanager.is_none()
                && st.nodes.iter().all(|n| n.process.is_none())
                && !st.initialized
        });
        if untouched {
            // Its daemon (started for this `up`) goes first, so nothing writes the state again.
            // (A daemon that gave up by itself may still be writing it as it exits: its lock
            // tells when it is gone.)
            let client = Client::new(&lab.socket());
            if client.is_up().await {
                let _ = client.stream("/v1/down", &DownRequest { fast: true }, |_| {}).await;
            }
            if crate::launch::wait_lab_unlocked(lab, Duration::from_secs(10)).await {
                let _ = std::fs::remove_file(lab.state_file());
                let _ = std::fs::remove_file(crate::lab::prev_of(&lab.state_file()));
            }
        }
    }
    result
}

/// The rest of `up`, once the lab's state exists (`created` by this `up`).
async fn up_created(lab: &Lab, overrides: &Overrides, requested: &LabSpec, created: bool) -> Result<i32> {
    // Monitoring asked for now (flag or config) is switched on for a lab made without it.
    let wanted_monitoring = requested.monitoring.enabled.then(|| requested.monitoring.clone());
    // The console as the flags ask for it, for a lab made with other settings.
    let wanted_console = (overrides.no_console || overrides.console_port.is_some()).then_some(requested.console);
    let client = Client::new(&lab.socket());
    let mut exiting = false;
    let client = if client.is_up().await {
        // A daemon whose lab is fully up: say so, and succeed (up is idempotent). One left by a
        // failed `up` (a port was taken, a node did not become ready): carry on and start what
        // is missing. One finishing a `down`: hand over to a new daemon below.
        let s: StatusReport = client.get("/v1/status").await?;
        let all_up = s.haproxy.pid.is_some() && s.nodes.iter().filter(|n| !n.decommissioned).all(|n| n.pid.is_some());
        exiting = s.daemon.exiting;
        let monitoring_missing = wanted_monitoring.is_some() && s.monitoring.as_ref().is_none_or(|m| m.prometheus.pid.is_none());
        if all_up && !exiting && overrides.restart.is_none() && !monitoring_missing && wanted_console.is_none() {
            println!("the lab in {} is already up (daemon pid {})", lab.dir().display(), s.daemon.pid);
            print!("{}", reporter::status_table(&s, false));
            return Ok(0);
        }
        client
    } else {
        crate::launch::start_daemon(lab).await?
    };
    let body = crate::api::UpRequest { restart: overrides.restart, monitoring: wanted_monitoring, console: wanted_console };
    let sent = if exiting { Err(Error::DaemonExiting) } else { stream(&client, "/v1/up", &body).await.map(|_| ()) };
    let client = match sent {
        // Queued behind a `down` (refused, or the daemon closed its socket as the request
        // came): wait for that daemon to exit, then a new one brings the lab up.
        Err(e @ (Error::DaemonExiting | Error::Api { code: crate::error::ErrorCode::Exiting, .. } | Error::DaemonUnreachable { .. })) => {
            // Unreachable with its lock free: the daemon died mid-`up`, no `down` involved.
            let died = matches!(e, Error::DaemonUnreachable { .. }) && crate::launch::wait_lab_unlocked(lab, Duration::ZERO).await;
            if died {
                println!(
                    "the lab's daemon died during `up` (its log: {}); starting a new one, which re-adopts what runs, to finish",
                    lab.dir().join("logs/daemon.log").display()
                );
            } else {
                println!("the lab's daemon is finishing a `down`; waiting for it to exit, then starting the lab again");
            }
            crate::launch::wait_lab_unlocked(lab, Duration::from_secs(60)).await;
            let client = crate::launch::start_daemon(lab).await?;
            stream(&client, "/v1/up", &body).await?;
            client
        }
        other => {
            other?;
            client
        }
    };
    let s: StatusReport = client.get("/v1/status").await?;
    print!("{}", reporter::status_table(&s, false));
    if s.console.is_some() {
        println!("{}", console_url(lab, &s)?);
    }
    // A new secure lab whose engine has an admin UI: its login, said once, here.
    let login = crate::engine::for_spec(requested).admin_login(&crate::certs::CertPaths::of(lab));
    if let (true, true, Some((user, file))) = (created, requested.security.secure, login) {
        if let Ok(p) = std::fs::read_to_string(&file) {
            println!(
                "admin UI: https://{}/ — user {user}, password {} (shown once; kept 0600 in {})",
                requested.security.frontend_addr(requested.haproxy.admin_port).replace("0.0.0.0", "127.0.0.1"),
                p.trim(),
                file.display()
            );
        }
    }
    Ok(0)
}

/// `console URL` with the lab's token, as `up` ends and `roachlab console` prints it.
fn console_url(lab: &Lab, s: &StatusReport) -> Result<String> {
    let base = s.console.as_deref().ok_or_else(|| {
        Error::Refused(format!(
            "the lab in {} serves no console: it is down (`roachlab up`), or was brought up with --no-console              (`roachlab up --console-port 8070` turns it on)",
            lab.dir().display()
        ))
    })?;
    let token = crate::console::token::read(&lab.console_token())?
        .ok_or_else(|| Error::Refused(format!("{} is missing; `roachlab up` makes it again", lab.console_token().display())))?;
    Ok(format!("console {base}?token={token}"))
}

/// `roachlab console`: the console's URL with the token; opened in a browser where one is set
/// up ($BROWSER, or `xdg-open` on a desktop session), else only printed.
pub(super) async fn console(lab: &Lab, open: bool) -> Result<i32> {
    let client = crate::launch::ensure_daemon(lab).await?;
    let s: StatusReport = client.get("/v1/status").await?;
    let line = console_url(lab, &s)?;
    println!("{line}");
    let url = line.trim_start_matches("console ");
    let browser = std::env::var("BROWSER").ok().filter(|b| !b.is_empty()).or_else(|| {
        let desktop = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
        (desktop && which::which("xdg-open").is_ok()).then(|| "xdg-open".to_string())
    });
    if let (true, Some(b)) = (open, browser) {
        // Not waited for: a browser may run for as long as the user likes.
        match std::process::Command::new(&b).arg(url).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).spawn() {
            Ok(_) => println!("opened with {b}"),
            Err(e) => println!("could not open it with {b}: {e}"),
        }
    } else if open {
        println!(
            "(no browser set up here: from a laptop, `ssh -L {port}:127.0.0.1:{port} HOST` and open the URL there)",
            port = url.split(':').nth(2).and_then(|p| p.split('/').next()).unwrap_or("8070")
        );
    }
    Ok(0)
}

/// `roachlab certs`: a secure lab's CA and client certificate, when each expires, and the URL
/// a client outside roachlab connects with (`cockroach sql --url`, psql, etcdctl's flags).
pub(super) async fn certs(lab: &Lab) -> Result<i32> {
    let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
    if !state.spec.security.secure {
        return Err(Error::Refused(format!(
            "the lab in {} is insecure: it has no certificates (`roachlab down --wipe` and `roachlab up --secure` makes a secure one)",
            lab.dir().display()
        )));
    }
    let paths = crate::certs::CertPaths::of(lab);
    if !paths.complete() {
        return Err(Error::Refused(format!("{} is incomplete; `roachlab up` makes the lab's certificates", paths.dir.display())));
    }
    let until = |p: &Path| match crate::certs::expiry(p) {
        Ok(t) => {
            let days = (t - time::OffsetDateTime::now_utc()).whole_days();
            format!("expires {} ({days} days)", t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default())
        }
        Err(e) => format!("expiry unknown: {e}"),
    };
    println!("certificates: {}", paths.dir.display());
    println!("  CA          {}  {}", paths.ca_crt().display(), until(&paths.ca_crt()));
    println!("  node        {}  {}", paths.node_crt().display(), until(&paths.node_crt()));
    println!("  client root {}  {}", paths.client_crt().display(), until(&paths.client_crt()));
    println!("  CA key      {} (keep it private: it signs certificates for this lab)", paths.ca_key().display());
    let engine = crate::engine::for_lab(&state.spec, lab);
    let host = state.spec.security.local_host();
    let url = engine.workload_url(&state.spec);
    println!("connect: {url}");
    if url.starts_with("postgresql://") {
        println!(
            "  e.g. cockroach sql --certs-dir={} --url 'postgresql://root@{host}:{}/defaultdb?sslmode=verify-full'",
            paths.dir.display(),
            state.spec.haproxy.frontend_port
        );
    } else {
        println!(
            "  e.g. etcdctl --endpoints={url} --cacert={} --cert={} --key={} get --prefix /",
            paths.ca_crt().display(),
            paths.client_crt().display(),
            paths.client_key().display()
        );
    }
    println!("renewal: not built in — certificates last 5 years (the CA 10); `roachlab down --wipe` and `up --secure` makes new ones");
    Ok(0)
}

/// What differs between the shape a lab was created with (`existing`) and the one asked for
/// now, each as "`existing`, not `requested`": engine, node count, topology, the nodes' port
/// blocks, HAProxy's frontend. Empty when a later `up --config` matches (timeouts may differ;
/// the stored ones win).
fn shape_differences(existing: &LabSpec, requested: &LabSpec) -> Vec<String> {
    let mut d = Vec::new();
    let mut differ = |what: &str, a: String, b: String| {
        if a != b {
            d.push(format!("{what} {a}, not {b}"));
        }
    };
    differ("engine", existing.engine.to_string(), requested.engine.to_string());
    differ("nodes", existing.nodes.to_string(), requested.nodes.to_string());
    differ("topology", existing.topology.kind.to_string(), requested.topology.kind.to_string());
    differ("node service ports from", existing.ports.base.to_string(), requested.ports.base.to_string());
    differ("node HTTP ports from", existing.ports.http_base.to_string(), requested.ports.http_base.to_string());
    differ("node peer ports from", existing.ports.peer_base.to_string(), requested.ports.peer_base.to_string());
    differ("HAProxy frontend port", existing.haproxy.frontend_port.to_string(), requested.haproxy.frontend_port.to_string());
    let tls = |s: &LabSpec| if s.security.secure { "secure (TLS)".to_string() } else { "insecure".to_string() };
    differ("security", tls(existing), tls(requested));
    differ("frontends on", existing.security.bind.to_string(), requested.security.bind.to_string());
    d
}

pub(super) async fn demo(lab: &Lab, config: Option<&Path>) -> Result<i32> {
    let engine = if crate::engine::find_binary("ROACHLAB_COCKROACH", None, "cockroach", "").is_ok() {
        EngineKind::Cockroach
    } else {
        println!("no cockroach binary found (PATH or $ROACHLAB_COCKROACH): running the demo on etcd instead");
        EngineKind::Etcd
    };
    let client = Client::new(&lab.socket());
    let running = LabState::load(&lab.state_file())?.is_some() && client.is_up().await;
    if !running {
        match up(lab, config, Overrides { engine: Some(engine), nodes: Some(3), ..Default::default() }).await {
            Ok(_) => {}
            Err(Error::LabMismatch { .. }) | Err(Error::LabRunning { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let code =
        drill::drill(lab, &drill::graceful_vs_kill(lab)?, "<built-in graceful-vs-kill>", &[], None, None, Duration::from_secs(5)).await?;
    println!("the cluster is still up: `roachlab status`, `roachlab watch`, `roachlab down`");
    Ok(code)
}
