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

pub mod net;
pub mod node;

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
        command: WorkloadCommand,
    },
    /// Run a fault-tolerance drill under load, measure it, and write a report with charts.
    Drill {
        #[command(subcommand)]
        command: DrillCommand,
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

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Stop a node gracefully and restart it, then SIGKILL it and restart it.
    GracefulVsKill,
    /// Kill nodes until one remains; restore one; restore all.
    QuorumLoss,
    /// Add nodes under load, then decommission them again.
    Scale {
        /// Nodes to scale out to (default: two more than now).
        #[arg(long)]
        to: Option<usize>,
    },
    /// Cut one member (a follower, or --node) off from its peers: the majority keeps writing
    /// (netns topology).
    PartitionMinority,
    /// Cut the leader (etcd: Raft leader; CockroachDB: the bank's leaseholder; or --node) off
    /// from its peers: a new leader on the majority side (netns topology).
    PartitionLeader,
    /// Split the members evenly (2|2 of 4, 2|2|1 of 5): no side may write (netns topology).
    SplitBrain,
    /// Pause (SIGSTOP) the leader (etcd) / the bank's leaseholder (CockroachDB), or --node:
    /// the cluster routes around it by timeouts; then resume it.
    PauseLeader,
    /// Lose every node of the largest zone at once, then the next zone; restore both (needs
    /// `localities` in the config).
    ZoneFailure,
    /// SIGKILL a member and let the restart policy bring it back, against a restart by hand
    /// (needs `up --restart on-failure` or `always`).
    SelfHealing,
    /// Run a scenario file (see configs/drills/ and docs/DRILLS.md).
    Run { file: PathBuf },
}

/// Workloads roachlab can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadName {
    /// Transfers between accounts, as `cockroach workload bank`, with a history to check.
    Bank,
    /// pgbench's TPC-B-like transaction and schema.
    Tpcb,
}

#[derive(Debug, Subcommand)]
pub enum WorkloadCommand {
    /// Create the workload's schema and data (replacing any).
    Init {
        name: WorkloadName,
        /// tpcb: pgbench's scale factor (100000 accounts per unit).
        #[arg(long, default_value_t = 10)]
        scale: i64,
        /// bank: accounts.
        #[arg(long, default_value_t = 1000)]
        rows: i64,
        /// Bytes of payload per account.
        #[arg(long, default_value_t = 100)]
        payload_bytes: usize,
        /// Ranges to split the accounts into (CockroachDB).
        #[arg(long, default_value_t = 10)]
        ranges: i64,
        /// Target instead of the lab's HAProxy frontend, e.g. postgres://user@127.0.0.1:5432/db.
        #[arg(long)]
        url: Option<String>,
    },
    /// Run it, printing per-second stats; every operation is logged under DIR/workloads/.
    Run {
        name: WorkloadName,
        /// Concurrent workers, each with its own connection.
        #[arg(long, visible_alias = "clients", default_value_t = 8)]
        concurrency: usize,
        /// Interval of the progress lines.
        #[arg(long, default_value = "1s", value_parser = crate::config::parse_duration)]
        progress: Duration,
        /// How long to run; 0 runs until interrupted (Ctrl-C), as `cockroach workload` does.
        #[arg(long, default_value = "60s", value_parser = parse_run_duration)]
        duration: Duration,
        /// Operations per second across all workers (0: unlimited).
        #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
        max_rate: f64,
        /// Exit 0 even when operations failed.
        #[arg(long)]
        tolerate_errors: bool,
        /// Timeout of each statement and of COMMIT.
        #[arg(long, default_value = "5s", value_parser = crate::config::parse_duration)]
        op_timeout: Duration,
        /// NDJSON: one object per second and a final summary.
        #[arg(long)]
        json: bool,
        /// Seed for the transfers chosen (random when absent).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        url: Option<String>,
    },
    /// Check the data and the last run's log: exits non-zero on any violation, naming it.
    Check {
        name: WorkloadName,
        #[arg(long)]
        url: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
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
        Command::Up { config, engine, nodes, topology, restart } => {
            up(&lab, config.as_deref(), Overrides { engine, nodes, topology, restart }).await
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
        Command::Workload { command } => workload(&lab, command).await,
        Command::Drill { command, node, seed, baseline } => {
            let mut extra_ids = Vec::new();
            let (text, origin) = match &command {
                DrillCommand::GracefulVsKill => (graceful_vs_kill(&lab)?, "<built-in graceful-vs-kill>".to_string()),
                DrillCommand::QuorumLoss => {
                    let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
                    let members = state.members().count();
                    if members < 3 {
                        return Err(Error::Refused(format!(
                            "quorum-loss needs at least 3 members to show a majority surviving one failure; this lab has {members} (`roachlab node add`)"
                        )));
                    }
                    (crate::drill::quorum_loss_scenario(members), "<built-in quorum-loss>".to_string())
                }
                DrillCommand::Scale { to } => {
                    let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
                    let members = state.members().count();
                    let to = to.unwrap_or(members + 2);
                    if to <= members || to > crate::config::MAX_NODES as usize {
                        return Err(Error::Refused(format!(
                            "--to {to}: the lab has {members} nodes; scale to more than that (at most {})",
                            crate::config::MAX_NODES
                        )));
                    }
                    let (text, ids) = crate::drill::scale_scenario(members, state.next_id(), to);
                    extra_ids = ids;
                    (text, "<built-in scale>".to_string())
                }
                DrillCommand::PartitionMinority | DrillCommand::PartitionLeader | DrillCommand::SplitBrain => {
                    let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
                    crate::topology::Topology::for_lab(&state.spec, &lab).netns()?;
                    let ids: Vec<NodeId> = state.members().map(|n| n.id).collect();
                    if ids.len() < 3 {
                        return Err(Error::Refused(format!(
                            "partition drills need at least 3 members (a majority and a minority); this lab has {} (`roachlab node add`)",
                            ids.len()
                        )));
                    }
                    match &command {
                        DrillCommand::PartitionMinority => {
                            (crate::drill::partitions::partition_minority_scenario(ids.len(), node), "<built-in partition-minority>".into())
                        }
                        DrillCommand::PartitionLeader => {
                            (crate::drill::partitions::partition_leader_scenario(ids.len(), node), "<built-in partition-leader>".into())
                        }
                        _ => (crate::drill::partitions::split_brain_scenario(&ids), "<built-in split-brain>".into()),
                    }
                }
                DrillCommand::PauseLeader | DrillCommand::ZoneFailure | DrillCommand::SelfHealing => {
                    let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
                    let ids: Vec<NodeId> = state.members().map(|n| n.id).collect();
                    if ids.len() < 3 {
                        return Err(Error::Refused(format!(
                            "this drill needs at least 3 members (a majority survives one down); this lab has {} (`roachlab node add`)",
                            ids.len()
                        )));
                    }
                    use crate::drill::process_faults as pf;
                    match &command {
                        DrillCommand::PauseLeader => (pf::pause_leader_scenario(ids.len(), node), "<built-in pause-leader>".into()),
                        DrillCommand::ZoneFailure => {
                            if state.spec.restart.policy != crate::config::RestartPolicy::Never {
                                return Err(Error::Refused(format!(
                                    "zone-failure measures zones that stay down, but this lab restarts killed nodes (restart \
                                     policy `{}`). Run `roachlab up --restart never` first (the lab keeps it), or see `drill self-healing`",
                                    state.spec.restart.policy
                                )));
                            }
                            let localities: Vec<(NodeId, String)> =
                                ids.iter().filter_map(|&id| state.spec.locality_of(id).map(|l| (id, l))).collect();
                            (pf::zone_failure_scenario(&localities).map_err(Error::Refused)?, "<built-in zone-failure>".into())
                        }
                        _ => {
                            if state.spec.restart.policy == crate::config::RestartPolicy::Never {
                                return Err(Error::Refused(
                                    "self-healing needs a restart policy; this lab's is `never`. Run `roachlab up --restart on-failure` \
                                     (the lab keeps it), then the drill again"
                                        .into(),
                                ));
                            }
                            (pf::self_healing_scenario(node), "<built-in self-healing>".into())
                        }
                    }
                }
                DrillCommand::Run { file } => (
                    std::fs::read_to_string(file).map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?,
                    file.display().to_string(),
                ),
            };
            drill(&lab, &text, &origin, &extra_ids, node, seed, baseline).await
        }
        Command::Report { run } => {
            let dir = match run {
                Some(r) if r.is_dir() => r,
                Some(r) => lab.dir().join("runs").join(r),
                None => latest_run(&lab)?,
            };
            let path = dir.join("results.json");
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            let mut result: crate::drill::runner::DrillResult = serde_json::from_str(&text).map_err(|e| Error::ConfigSyntax {
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
            if asked && !same_shape(&existing.spec, &requested) {
                return Err(Error::LabMismatch {
                    dir: lab.dir().to_path_buf(),
                    existing: existing.spec.summary(),
                    requested: requested.summary(),
                });
            }
        }
    }
    let client = Client::new(&lab.socket());
    let mut exiting = false;
    let client = if client.is_up().await {
        // A daemon whose lab is fully up: say so, and succeed (up is idempotent). One left by a
        // failed `up` (a port was taken, a node did not become ready): carry on and start what
        // is missing. One finishing a `down`: hand over to a new daemon below.
        let s: StatusReport = client.get("/v1/status").await?;
        let all_up = s.haproxy.pid.is_some() && s.nodes.iter().filter(|n| !n.decommissioned).all(|n| n.pid.is_some());
        exiting = s.daemon.exiting;
        if all_up && !exiting && overrides.restart.is_none() {
            println!("the lab in {} is already up (daemon pid {})", lab.dir().display(), s.daemon.pid);
            print!("{}", reporter::status_table(&s, false));
            return Ok(0);
        }
        client
    } else {
        crate::launch::start_daemon(lab).await?
    };
    let body = crate::api::UpRequest { restart: overrides.restart };
    let sent = if exiting { Err(Error::DaemonExiting) } else { stream(&client, "/v1/up", &body).await.map(|_| ()) };
    let client = match sent {
        // Queued behind a `down` (refused, or the daemon closed its socket as the request
        // came): wait for that daemon to exit, then a new one brings the lab up.
        Err(Error::DaemonExiting)
        | Err(Error::Api { code: crate::error::ErrorCode::Exiting, .. })
        | Err(Error::DaemonUnreachable { .. }) => {
            println!("the lab's daemon is finishing a `down`; waiting for it to exit, then starting the lab again");
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

/// A lab created with a config matches a later `up --config` of the same shape: engine, node
/// count and ports. (Timeouts may differ; the stored ones win.)
fn same_shape(a: &LabSpec, b: &LabSpec) -> bool {
    a.engine == b.engine
        && a.nodes == b.nodes
        && a.topology.kind == b.topology.kind
        && a.ports == b.ports
        && a.haproxy.frontend_port == b.haproxy.frontend_port
}

/// Where a workload runs: a PostgreSQL-wire server, or etcd's KV API.
enum Target {
    Sql(String),
    Etcd(String),
}

/// The workload's target: `--url`, else the lab's HAProxy client frontend.
fn workload_target(lab: &Lab, url: Option<String>) -> Result<Target> {
    let url = match url {
        Some(u) => u,
        None => {
            let state = LabState::load(&lab.state_file())?.ok_or_else(|| {
                Error::Refused(format!(
                    "no lab in {} and no --url: start a lab with `roachlab up`, or pass --url postgres://... or --url http://<etcd>",
                    lab.dir().display()
                ))
            })?;
            crate::engine::for_spec(&state.spec).workload_url(state.spec.haproxy.frontend_port)
        }
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Target::Sql(url))
    } else if url.starts_with("http://") {
        Ok(Target::Etcd(url))
    } else {
        Err(Error::Refused(format!("{url}: use postgres://... (CockroachDB, PostgreSQL) or http://... (etcd's client API)")))
    }
}

/// The graceful-vs-kill drill for this lab's HAProxy check settings.
fn graceful_vs_kill(lab: &Lab) -> Result<String> {
    let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
    Ok(crate::drill::graceful_vs_kill_scenario(state.spec.haproxy.inter, state.spec.haproxy.fall))
}

fn latest_run(lab: &Lab) -> Result<PathBuf> {
    let runs = lab.dir().join("runs");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&runs)
        .map_err(|e| Error::io(format!("no drill runs in {}", runs.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("results.json").exists())
        .collect();
    dirs.sort();
    dirs.pop().ok_or_else(|| Error::Refused(format!("no drill runs in {}; run `roachlab drill ...` first", runs.display())))
}

/// Runs a scenario; `extra_ids` are node ids the scenario may name that do not exist yet
/// (nodes it adds).
async fn drill(
    lab: &Lab,
    text: &str,
    origin: &str,
    extra_ids: &[NodeId],
    node: Option<NodeId>,
    seed: Option<u64>,
    baseline: Duration,
) -> Result<i32> {
    let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
    let mut ids: Vec<NodeId> = state.members().map(|n| n.id).collect();
    let scenario_ids: Vec<NodeId> = ids.iter().chain(extra_ids).copied().collect();
    let scenario = crate::drill::scenario::Scenario::parse(text, origin, &scenario_ids)?;
    ids.sort_unstable();
    if let Some(n) = node {
        if !ids.contains(&n) {
            return Err(Error::UnknownNode { id: n, known: ids });
        }
    }
    let client = crate::launch::ensure_daemon(lab).await?;
    let opts = crate::drill::runner::DrillOptions { node, seed: seed.unwrap_or_else(|| fastrand::u64(..)), baseline };
    let mut say = |line: String| println!("{line}");
    let result = crate::drill::runner::run(lab, &client, &scenario, &opts, &mut say).await?;
    print!("{}", drill_summary(&result));
    // Interrupted: the shell's convention, 128 + the signal's number.
    Ok(match result.interrupted.as_deref() {
        Some("SIGHUP") => 129,
        Some("SIGINT") => 130,
        Some(_) => 143,
        None if result.passed() => 0,
        None => 1,
    })
}

/// The table printed at the end of a drill.
fn drill_summary(r: &crate::drill::runner::DrillResult) -> String {
    let mut out =
        format!("\n{:<14} {:>7} {:>6} {:>6} {:>8} {:>9} {:>9}  fault\n", "PHASE", "OK", "FAIL", "AMBIG", "OPS/S", "P99(ms)", "STALL(s)");
    for p in &r.phases {
        out.push_str(&format!(
            "{:<14} {:>7} {:>6} {:>6} {:>8.1} {:>9.1} {:>9.1}  {}\n",
            p.mark.name,
            p.counts.ok,
            p.counts.fail,
            p.counts.ambiguous,
            p.ops_per_sec,
            p.p99_ms,
            p.longest_stall_ms as f64 / 1000.0,
            p.mark.fault.as_deref().unwrap_or("")
        ));
    }
    out.push('\n');
    for t in &r.story {
        out.push_str(&format!("what happened: {t}\n"));
    }
    if !r.story.is_empty() {
        out.push('\n');
    }
    for e in &r.expectations {
        out.push_str(&format!("{} {} (observed {})\n", if e.met { "met:    " } else { "NOT MET:" }, e.text, e.observed));
    }
    for f in &r.failures {
        out.push_str(&format!("FAILURE: {f}\n"));
    }
    match &r.check {
        Some(c) if c.violations.is_empty() => {
            out.push_str(&format!("bank check passed ({} acknowledged transfers all present)\n", c.ok_checked))
        }
        Some(c) => out.push_str(&format!("bank check FAILED: {}\n", c.violations.join("; "))),
        None => out.push_str("bank check did not run\n"),
    }
    out.push_str(&format!("report: {}\n", r.run_dir.join("report.html").display()));
    out
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
    let code = drill(lab, &graceful_vs_kill(lab)?, "<built-in graceful-vs-kill>", &[], None, None, Duration::from_secs(5)).await?;
    println!("the cluster is still up: `roachlab status`, `roachlab watch`, `roachlab down`");
    Ok(code)
}

/// A flag set by Ctrl-C: a run finishes its operations in flight and prints its summary.
/// `--duration`: like every duration, but 0 means "until interrupted".
fn parse_run_duration(s: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 60s or 5m: {e}"))?;
    if d.is_zero() {
        return Ok(crate::config::MAX_DURATION);
    }
    crate::config::check_duration(d).map_err(|e| format!("`{s}`: {e}"))
}

/// `--max-rate`: a finite number of operations per second, 0 or more.
fn parse_rate(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("`{s}` is not a rate: give operations per second, 0 or more (0: unlimited)")),
    }
}

fn stop_on_ctrl_c() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    stop
}

/// The URL of a PostgreSQL-wire target, for workloads that only speak SQL (tpcb).
fn require_sql(target: Target) -> Result<String> {
    match target {
        Target::Sql(url) => Ok(url),
        Target::Etcd(url) => {
            Err(Error::Refused(format!("{url}: tpcb runs on PostgreSQL-wire servers (CockroachDB, PostgreSQL), not etcd")))
        }
    }
}

async fn workload(lab: &Lab, command: WorkloadCommand) -> Result<i32> {
    use crate::workload::{self, bank_etcd, bank_sql, tpcb};
    match command {
        WorkloadCommand::Init { name: WorkloadName::Tpcb, scale, url, .. } => {
            let url = require_sql(workload_target(lab, url)?)?;
            if scale < 1 {
                return Err(Error::Refused("--scale must be at least 1".into()));
            }
            tpcb::init(&url, scale).await?;
            println!("tpcb: scale {scale}: {scale} branches, {} tellers, {} accounts", 10 * scale, 100_000 * scale);
            Ok(0)
        }
        WorkloadCommand::Check { name: WorkloadName::Tpcb, url, json } => {
            let url = require_sql(workload_target(lab, url)?)?;
            let totals = tpcb::totals(&url).await?;
            let violations = totals.violations();
            if json {
                println!("{}", serde_json::json!({ "totals": totals, "violations": violations }));
            } else {
                println!(
                    "{} history rows; deltas sum to {}; accounts {}, tellers {}, branches {}",
                    totals.history_rows, totals.sum_delta, totals.sum_abalance, totals.sum_tbalance, totals.sum_bbalance
                );
                for v in &violations {
                    println!("VIOLATION: {v}");
                }
                if violations.is_empty() {
                    println!("check passed");
                }
            }
            Ok(if violations.is_empty() { 0 } else { 1 })
        }
        WorkloadCommand::Init { name: WorkloadName::Bank, rows, payload_bytes, ranges, url, .. } => {
            if rows < 2 || ranges < 1 {
                return Err(Error::Refused("--rows must be at least 2 and --ranges at least 1".into()));
            }
            match workload_target(lab, url)? {
                Target::Sql(url) => {
                    let d = bank_sql::init(&url, &bank_sql::InitOptions { rows, payload_bytes, ranges }).await?;
                    let split = if d == bank_sql::Dialect::CockroachDb { format!(", split into {ranges} ranges") } else { String::new() };
                    println!("bank: {rows} accounts at balance 0{split}");
                }
                Target::Etcd(url) => {
                    bank_etcd::init(&url, rows).await?;
                    println!("bank: {rows} accounts at balance 0 (etcd keys under /roachlab/bank/)");
                }
            }
            Ok(0)
        }
        WorkloadCommand::Run { name, concurrency, progress, duration, max_rate, tolerate_errors, op_timeout, json, seed, url } => {
            if concurrency == 0 {
                return Err(Error::Refused("--concurrency (--clients) must be at least 1".into()));
            }
            let target = workload_target(lab, url)?;
            // What runs: the rows' label, the output style, and one worker per client.
            type Make = Box<dyn Fn(usize) -> Box<dyn workload::Worker>>;
            let (label, dir, style, make): (&str, &str, workload::Style, Make) = match name {
                WorkloadName::Bank => {
                    let rows = match &target {
                        Target::Sql(url) => bank_sql::rows(url).await,
                        Target::Etcd(url) => bank_etcd::rows(url).await,
                    }
                    .map_err(|e| Error::Refused(format!("{e}; run `roachlab workload init bank` first")))?;
                    if rows < 2 {
                        return Err(Error::Refused(format!(
                            "a bank needs at least 2 accounts, not {rows}; run `roachlab workload init bank`"
                        )));
                    }
                    let make = move |_| {
                        let transferer = match &target {
                            Target::Sql(url) => Box::new(bank_sql::SqlTransferer::new(url, op_timeout)) as Box<dyn workload::Transferer>,
                            Target::Etcd(url) => Box::new(bank_etcd::EtcdTransferer::new(url, op_timeout)),
                        };
                        Box::new(workload::BankWorker { rows, transferer }) as Box<dyn workload::Worker>
                    };
                    ("transfer", "bank", workload::Style::Cockroach, Box::new(make))
                }
                WorkloadName::Tpcb => {
                    let url = require_sql(target)?;
                    let scale =
                        tpcb::scale(&url).await.map_err(|e| Error::Refused(format!("{e}; run `roachlab workload init tpcb` first")))?;
                    if scale < 1 {
                        return Err(Error::Refused("pgbench_branches is empty; run `roachlab workload init tpcb` first".into()));
                    }
                    let make = move |_| Box::new(tpcb::TpcbWorker::new(&url, scale, op_timeout)) as Box<dyn workload::Worker>;
                    ("tpcb", "tpcb", workload::Style::Pgbench { scale }, Box::new(make))
                }
            };
            let run_dir = workload::new_run_dir(lab.dir(), dir)?;
            let opts = workload::RunOptions { concurrency, duration, max_rate, json, tolerate_errors, seed, progress, style, quiet: false };
            let stop = stop_on_ctrl_c();
            let summary = workload::run_workers(label, &opts, &run_dir, stop.clone(), make).await?;
            // Interrupted: the summary is printed, and the exit code says so (128 + SIGINT).
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(130);
            }
            Ok(if summary.counts.errors() > 0 && !tolerate_errors { 1 } else { 0 })
        }
        WorkloadCommand::Check { name: WorkloadName::Bank, url, json } => {
            let target = workload_target(lab, url)?;
            let ops = match workload::last_run_dir(lab.dir(), "bank") {
                Some(dir) => workload::read_ops(&dir)?,
                None => Vec::new(),
            };
            let report = match &target {
                Target::Sql(url) => bank_sql::check(url, &ops).await?,
                Target::Etcd(url) => bank_etcd::check(url, &ops).await?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report).expect("serializes"));
            } else {
                print!("{}", report.describe());
            }
            Ok(if report.violations.is_empty() { 0 } else { 1 })
        }
    }
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
            Ok((None, _)) => None,
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
    if sweep {
        for id in crate::process::lab_processes(lab.dir()) {
            match crate::process::signal_pid(&id, nix::sys::signal::Signal::SIGKILL) {
                Ok(()) => println!("pid {}: SIGKILL (found by its command line)", id.pid),
                Err(e) => eprintln!("warning: pid {}: {e}", id.pid),
            }
        }
        // The processes are gone: what a netns lab made on the network goes too.
        match crate::topology::netns::teardown_recorded(lab) {
            Ok(done) => done.iter().for_each(|d| println!("network: {d}")),
            Err(e) => eprintln!("warning: the lab's network namespaces could not all be removed: {e}"),
        }
    }
    if wipe {
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
