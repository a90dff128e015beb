//! Command-line commands. `main.rs` parses [`Cli`] and calls [`run`]; everything the user sees
//! comes from here via the [`Reporter`](crate::reporter::Reporter) or a final table.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::api::{Client, DownRequest, HaproxyReport, StatusReport};
use crate::config::{EngineKind, LabSpec, Overrides};
use crate::lab::Lab;
use crate::node::NodeId;
use crate::reporter::{self, Reporter};
use crate::state::LabState;
use crate::supervisor::StopOutcome;
use crate::{Error, Result};

pub mod drill;
pub mod monitoring;
pub mod net;
pub mod node;
pub mod workload;

/// roachlab: local CockroachDB and etcd clusters behind HAProxy, for fault-tolerance drills.
#[derive(Debug, Parser)]
#[command(name = "roachlab", version, about, max_term_width = 100)]
pub struct Cli {
    /// The lab directory: state, stores, logs, haproxy.cfg and the control socket.
    #[arg(long, global = true, env = "ROACHLAB_DIR", default_value = "roachlab-data")]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the lab's daemon, nodes and HAProxy; wait until every node is ready and UP.
    Up {
        /// Lab config (TOML); the embedded 3-node CockroachDB config when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Engine, overriding the config.
        #[arg(long, value_enum)]
        engine: Option<EngineKind>,
        /// Number of nodes, overriding the config.
        #[arg(long)]
        nodes: Option<u32>,
        /// Where nodes live on the network, overriding the config: `netns` puts every node in
        /// its own network namespace (needs root) so `roachlab net` can partition them.
        #[arg(long, value_enum)]
        topology: Option<crate::topology::TopologyKind>,
        /// Restart nodes that exit unasked, overriding the config: `on-failure` (a non-zero
        /// exit or a crash signal, `node kill` included) or `always`; backoff 1 s doubling to 30 s.
        #[arg(long, value_enum)]
        restart: Option<crate::config::RestartPolicy>,
        /// Also run Prometheus and Alertmanager with the lab's scrape config and alert rules
        /// (as `[monitoring] enabled = true`); alerts land in the timeline.
        #[arg(long)]
        monitoring: bool,
    },
    /// Alerts firing now (from the lab's Alertmanager) and every alert this lab has seen.
    Alerts {
        /// Print JSON: `{"firing": [...], "history": [...]}`.
        #[arg(long)]
        json: bool,
    },
    /// Show every node's process, readiness and HAProxy state.
    Status {
        /// Print JSON (see docs/API.md for the shape).
        #[arg(long)]
        json: bool,
        /// Add liveness, replicas and leaseholders per node, and the cluster's range counts.
        #[arg(long)]
        ranges: bool,
    },
    /// Live view of the cluster, refreshed every second; q or Ctrl-C quits.
    Watch {
        /// Refresh interval.
        #[arg(long, default_value = "1s", value_parser = crate::config::parse_duration)]
        interval: Duration,
        /// Stop after this many refreshes (for scripts).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Print the lab's event timeline (DIR/events.jsonl).
    Events {
        /// Keep printing events as they happen.
        #[arg(long)]
        follow: bool,
        /// One JSON object per line, as stored.
        #[arg(long)]
        json: bool,
        /// Only events newer than this, e.g. 5m.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
    },
    /// Write a Prometheus scrape config for the nodes and HAProxy.
    Prometheus {
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Act on one node.
    Node {
        #[command(subcommand)]
        command: node::NodeCommand,
    },
    /// Network faults (netns topology): partition, isolate, delay, loss, heal, status.
    Net {
        #[command(subcommand)]
        command: net::NetCommand,
    },
    /// Stop every node and HAProxy, then the daemon.
    Down {
        /// Remove the lab's data (stores, logs, state) afterwards.
        #[arg(long)]
        wipe: bool,
        /// SIGKILL everything at once instead of draining.
        #[arg(long)]
        fast: bool,
    },
    /// Show HAProxy's config path, process and backend servers.
    Haproxy {
        #[arg(long)]
        json: bool,
    },
    /// Run a workload through the lab's HAProxy (or --url) and check what survived.
    Workload {
        #[command(subcommand)]
        command: workload::WorkloadCommand,
    },
    /// Run a fault-tolerance drill under load, measure it, and write a report with charts.
    Drill {
        #[command(subcommand)]
        command: drill::DrillCommand,
        /// The node `target` steps act on (default: the leader where known, else the highest running node).
        #[arg(long, global = true)]
        node: Option<NodeId>,
        /// Seed for random choices (printed in the report).
        #[arg(long, global = true)]
        seed: Option<u64>,
        /// Load before the first step, measured as the baseline.
        #[arg(long, global = true, default_value = "5s", value_parser = crate::config::parse_duration)]
        baseline: Duration,
    },
    /// Re-render a drill's report (default: the latest run) from its results.json.
    Report {
        /// A run directory, or its name under DIR/runs/.
        run: Option<PathBuf>,
    },
    /// Bring up a 3-node lab (CockroachDB if a binary is available, else etcd), run the
    /// graceful-vs-kill drill, write its report, and leave the cluster up.
    Demo {
        /// Lab config for the cluster (its engine is replaced as above); default ports otherwise.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the supervisor daemon in the foreground (`up` starts it for you).
    #[command(hide = true)]
    Daemon,
}

/// Runs a parsed command. Returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let lab = Lab::new(&cli.dir).map_err(|e| Error::io("cannot resolve --dir", e))?;
    lab.check_socket_paths()?;
    match cli.command {
        Command::Daemon => {
            crate::daemon::run(lab, shutdown_signal()).await?;
            Ok(0)
        }
        Command::Up { config, engine, nodes, topology, restart, monitoring } => {
            let monitoring = monitoring.then_some(true);
            up(&lab, config.as_deref(), Overrides { engine, nodes, topology, restart, monitoring }).await
        }
        Command::Status { json, ranges } => {
            let client = crate::launch::ensure_daemon(&lab).await?;
            let s: StatusReport = client.get("/v1/status").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s).expect("serializes"));
            } else {
                print!("{}", reporter::status_table(&s, ranges));
            }
            Ok(0)
        }
        Command::Watch { interval, count } => {
            let client = crate::launch::ensure_daemon(&lab).await?;
            crate::dashboard::run(&client, &lab.events_file(), interval, std::io::stdout().is_terminal(), count).await?;
            Ok(0)
        }
        Command::Alerts { json } => monitoring::alerts(&lab, json).await,
        Command::Events { follow, json, since } => {
            if LabState::load(&lab.state_file())?.is_none() && !lab.events_file().exists() {
                return Err(Error::NoLab { dir: lab.dir().to_path_buf() });
            }
            crate::reporter::print_timeline(&lab.events_file(), json, since, follow).await?;
            Ok(0)
        }
        Command::Prometheus { out } => {
            let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
            let text = crate::reporter::prometheus_config(&lab, &state);
            match out {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
                    println!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(0)
        }
        Command::Haproxy { json } => {
            let client = crate::launch::ensure_daemon(&lab).await?;
            let r: HaproxyReport = client.get("/v1/haproxy").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("serializes"));
            } else {
                print!("{}", reporter::haproxy_table(&r));
            }
            Ok(0)
        }
        Command::Node { command } => node::run(&lab, command).await,
        Command::Net { command } => net::run(&lab, command).await,
        Command::Workload { command } => workload::run(&lab, command).await,
        Command::Drill { command, node, seed, baseline } => drill::run(&lab, command, node, seed, baseline).await,
        Command::Report { run } => {
            let dir = match run {
                Some(r) if r.is_dir() => r,
                Some(r) => lab.dir().join("runs").join(r),
                None => drill::latest_run(&lab)?,
            };
            let path = dir.join("results.json");
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            let mut result: crate::drill::model::DrillResult = serde_json::from_str(&text).map_err(|e| Error::ConfigSyntax {
                file: path.display().to_string(),
                line: e.line(),
                col: e.column(),
                message: e.to_string(),
            })?;
            result.run_dir = dir.clone();
            crate::drill::report::write(&result)?;
            println!("{}", dir.join("report.html").display());
            Ok(0)
        }
        Command::Demo { config } => demo(&lab, config.as_deref()).await,
        Command::Down { wipe, fast } => down(&lab, wipe, fast).await,
    }
}

async fn up(lab: &Lab, config: Option<&Path>, overrides: Overrides) -> Result<i32> {
    let asked = config.is_some() || overrides.engine.is_some() || overrides.nodes.is_some() || overrides.topology.is_some();
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
    let result = up_created(lab, &overrides, &requested).await;
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

/// The rest of `up`, once the lab's state exists.
async fn up_created(lab: &Lab, overrides: &Overrides, requested: &LabSpec) -> Result<i32> {
    // Monitoring asked for now (flag or config) is switched on for a lab made without it.
    let wanted_monitoring = requested.monitoring.enabled.then(|| requested.monitoring.clone());
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
        if all_up && !exiting && overrides.restart.is_none() && !monitoring_missing {
            println!("the lab in {} is already up (daemon pid {})", lab.dir().display(), s.daemon.pid);
            print!("{}", reporter::status_table(&s, false));
            return Ok(0);
        }
        client
    } else {
        crate::launch::start_daemon(lab).await?
    };
    let body = crate::api::UpRequest { restart: overrides.restart, monitoring: wanted_monitoring };
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
    d
}

async fn demo(lab: &Lab, config: Option<&Path>) -> Result<i32> {
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

async fn down(lab: &Lab, wipe: bool, fast: bool) -> Result<i32> {
    // A live daemon first, without reading state.json: it may be damaged, and the daemon has
    // the state in memory (and writes it again).
    let live = Client::new(&lab.socket());
    // Set when the state came from its last good copy: it may miss the newest process, so
    // after the daemon's down, whatever still provably belongs to the lab is stopped too.
    let mut sweep = false;
    let client = if live.is_up().await {
        Some(live)
    } else {
        match LabState::load_or_recover(&lab.state_file()) {
            Ok((None, _)) if !wipe => {
                println!("no lab in {}; nothing to stop", lab.dir().display());
                return Ok(0);
            }
            // No record (deleted, or never written): what is the lab's is found by its command
            // lines and names.
            Ok((None, _)) => {
                sweep = true;
                None
            }
            Ok((Some(_), warning)) => {
                if let Some(w) = warning {
                    eprintln!("warning: {w}");
                    sweep = true;
                }
                Some(crate::launch::start_daemon(lab).await?)
            }
            Err(damaged) if wipe => {
                // No daemon and no readable state: stop what provably is the lab's (its
                // command line names the lab's stores, config or directory), by identity.
                eprintln!("warning: {damaged}; stopping the lab's processes found by their command lines");
                sweep = true;
                None
            }
            Err(damaged) => {
                return Err(Error::Refused(format!(
                    "{damaged}. No daemon answers, so nothing can be stopped by the record; `roachlab down --wipe` stops \
                     the processes whose command lines prove they are this lab's, and starts over"
                )))
            }
        }
    };
    if let Some(client) = client {
        let result = stream(&client, "/v1/down", &DownRequest { fast }).await?;
        let outcomes: Vec<StopOutcome> = serde_json::from_value(result["nodes"].clone()).unwrap_or_default();
        for o in &outcomes {
            println!("{}", describe_stop(o));
        }
        // The daemon exits once `down` is done; wait for its socket to go.
        let deadline = Instant::now() + Duration::from_secs(15);
        while lab.socket().exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut found_any = false;
    if sweep || wipe {
        // By command line and by name, whatever the record says (a wipe leaves nothing).
        let procs = crate::process::lab_processes(lab.dir());
        found_any |= !procs.is_empty();
        for id in &procs {
            match crate::process::signal_pid(id, nix::sys::signal::Signal::SIGKILL) {
                Ok(()) => println!("pid {}: SIGKILL (found by its command line)", id.pid),
                Err(e) => eprintln!("warning: pid {}: {e}", id.pid),
            }
        }
        let gone = Instant::now() + Duration::from_secs(5);
        while procs.iter().any(|p| p.is_alive()) && Instant::now() < gone {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The processes are gone: what a netns lab made on the network goes too, and the
        // CPU groups of throttled nodes.
        let network = crate::topology::netns::teardown_recorded(lab).and_then(|mut done| {
            crate::topology::netns::teardown_by_name(lab.dir()).map(|more| {
                done.extend(more);
                done
            })
        });
        match network {
            Ok(done) => {
                found_any |= !done.is_empty();
                done.iter().for_each(|d| println!("network: {d}"));
            }
            Err(e) => eprintln!("warning: the lab's network namespaces could not all be removed: {e}"),
        }
        match crate::cgroup::remove_lab_groups(&crate::topology::netns::tag_of(lab.dir())) {
            Ok(groups) => {
                found_any |= !groups.is_empty();
                groups.iter().for_each(|g| println!("cgroup: removed {g} (found by its name)"));
            }
            Err(e) => eprintln!("warning: the lab's CPU groups could not all be removed: {e}"),
        }
    }
    if wipe {
        if !found_any && !lab.owned_paths().iter().any(|p| p.exists()) {
            println!("no lab in {}; nothing to wipe", lab.dir().display());
            return Ok(0);
        }
        // Only once nothing of the lab is left is its record deleted.
        let tag = crate::topology::netns::tag_of(lab.dir());
        let (namespaces, links) = crate::topology::netns::lab_network_names(lab.dir());
        let left: Vec<String> = crate::process::lab_processes(lab.dir())
            .iter()
            .map(|p| format!("pid {}", p.pid))
            .chain(namespaces.into_iter().map(|n| format!("namespace {n}")))
            .chain(links.into_iter().map(|l| format!("link {l}")))
            .chain(crate::cgroup::lab_groups(&tag).into_iter().map(|g| format!("cgroup {g}")))
            .collect();
        if !left.is_empty() {
            return Err(Error::Refused(format!(
                "the lab in {} still has {} after the wipe's clean-up; its directory is kept (the only record of them). \
                 Remove them (as root), then run `roachlab down --wipe` again",
                lab.dir().display(),
                left.join(", ")
            )));
        }
        for path in lab.owned_paths() {
            let res = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            if let Err(e) = res {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(Error::io(format!("cannot remove {}", path.display()), e));
                }
            }
        }
        let _ = std::fs::remove_dir(lab.dir()); // only if empty: never delete what roachlab did not make
        println!("wiped {}", lab.dir().display());
    }
    Ok(0)
}

/// `node 2: drained: SIGTERM, exited (code 0) after 3.2 s`.
pub(crate) fn describe_stop(o: &StopOutcome) -> String {
    if o.signals.is_empty() {
        return format!("node {}: {}", o.node, o.outcome);
    }
    let exit = o.exit.as_ref().map(|e| format!("exited ({e})")).unwrap_or_else(|| "exited".into());
    format!("node {}: {}: {}, {exit} after {:.1} s", o.node, o.outcome, o.signals.join(" → "), o.elapsed_ms as f64 / 1000.0)
}

/// Follows a streamed request with the reporter. Ctrl-C stops waiting (the request goes on
/// in the daemon) and says what is still going on: [`Error::StoppedWaiting`], exit 130.
pub(crate) async fn stream(client: &Client, path: &str, body: &impl serde::Serialize) -> Result<serde_json::Value> {
    let mut reporter = Reporter::new(std::io::stdout().is_terminal());
    let res = tokio::select! {
        r = client.stream(path, body, |e| reporter.event(e)) => r,
        _ = tokio::signal::ctrl_c() => {
            let what = path.trim_start_matches("/v1/").replace("nodes/", "node ").replace('/', " ");
            let node = path.strip_prefix("/v1/nodes/").and_then(|r| r.strip_suffix("/stop"));
            let hint = match node {
                Some(id) => format!("; to stop node {id} at once: `roachlab node kill {id}`"),
                None => String::new(),
            };
            Err(Error::StoppedWaiting { what: format!("`{what}`"), hint })
        }
    };
    reporter.finish();
    res
}

/// Resolves on SIGTERM or SIGINT: the daemon's shutdown source in the binary.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    /// `text` without every part between `open` and `close` (nesting counted).
    fn without_parts(text: &str, open: char, close: char) -> String {
        let mut out = String::new();
        let mut depth = 0;
        for c in text.chars() {
            match c {
                c if c == open => depth += 1,
                c if c == close => depth -= 1,
                c if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    }

    /// The command lines of the README's first command block, as a user would type them:
    /// `a | b` alternatives split, each `[…]` optional part left out and put in, `(…)` notes
    /// and `# …` comments dropped, a leading `sudo` removed.
    fn readme_command_lines() -> Vec<String> {
        let readme = include_str!("../../README.md");
        let block = readme.split("```\n").nth(1).expect("the README's first code block");
        let mut out = Vec::new();
        for line in block.lines() {
            let line = line.split(" # ").next().unwrap_or("").trim();
            let line = line.strip_prefix("sudo ").unwrap_or(line);
            let Some(rest) = line.strip_prefix("roachlab ") else { continue };
            for alt in rest.split(" | ") {
                let no_notes = without_parts(alt, '(', ')');
                let without = without_parts(&no_notes, '[', ']');
                let with: String = no_notes.chars().filter(|c| *c != '[' && *c != ']').collect();
                for variant in [without, with] {
                    let words: Vec<&str> = variant.split_whitespace().collect();
                    if !words.is_empty() {
                        out.push(words.join(" "));
                    }
                }
            }
        }
        out
    }

    /// Every documented form parses, and none panics (`net partition 3 --one-way 1` did).
    #[test]
    fn every_command_line_of_the_readme_parses() {
        let lines = readme_command_lines();
        assert!(lines.len() > 40, "{lines:?}");
        assert!(lines.iter().any(|l| l == "net partition 3 --one-way 1"), "{lines:?}");
        for line in &lines {
            let args = std::iter::once("roachlab").chain(line.split_whitespace());
            let parsed = std::panic::catch_unwind(|| Cli::try_parse_from(args));
            match parsed {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("`roachlab {line}` from the README does not parse: {e}"),
                Err(_) => panic!("`roachlab {line}` from the README panics the argument parser"),
            }
        }
        let one_way = Cli::try_parse_from(["roachlab", "net", "partition", "3", "--one-way", "1,2"]).unwrap();
        assert!(format!("{:?}", one_way.command).contains("Side([1, 2])"), "{one_way:?}");
    }
}
