//! `roachlab drill …` and `roachlab report`: built-in drills generated for the lab, scenario
//! files, and the summary printed after a run.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use crate::lab::Lab;
use crate::node::NodeId;
use crate::state::LabState;
use crate::{Error, Result};

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

/// Runs a drill command.
pub async fn run(lab: &Lab, command: DrillCommand, node: Option<NodeId>, seed: Option<u64>, baseline: Duration) -> Result<i32> {
    let mut extra_ids = Vec::new();
    let (text, origin) = match &command {
        DrillCommand::GracefulVsKill => (graceful_vs_kill(lab)?, "<built-in graceful-vs-kill>".to_string()),
        DrillCommand::QuorumLoss => {
            let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
            let members = state.members().count();
            if members < 3 {
                return Err(Error::Refused(format!(
                        "quorum-loss needs at least 3 members to show a majority surviving one failure; this lab has {members} (`roachlab node add`)"
                    )));
            }
            (crate::drill::quorum_loss_scenario(members, &takeover(&state).await), "<built-in quorum-loss>".to_string())
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
            crate::topology::Topology::for_lab(&state.spec, lab).netns()?;
            let ids: Vec<NodeId> = state.members().map(|n| n.id).collect();
            if ids.len() < 3 {
                return Err(Error::Refused(format!(
                    "partition drills need at least 3 members (a majority and a minority); this lab has {} (`roachlab node add`)",
                    ids.len()
                )));
            }
            match &command {
                DrillCommand::PartitionMinority => (
                    crate::drill::partitions::partition_minority_scenario(ids.len(), node, &takeover(&state).await),
                    "<built-in partition-minority>".into(),
                ),
                DrillCommand::PartitionLeader => (
                    crate::drill::partitions::partition_leader_scenario(ids.len(), node, &takeover(&state).await),
                    "<built-in partition-leader>".into(),
                ),
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
                DrillCommand::PauseLeader => {
                    (pf::pause_leader_scenario(ids.len(), node, &takeover(&state).await), "<built-in pause-leader>".into())
                }
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
                    (
                        pf::zone_failure_scenario(&localities, &takeover(&state).await).map_err(Error::Refused)?,
                        "<built-in zone-failure>".into(),
                    )
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
    drill(lab, &text, &origin, &extra_ids, node, seed, baseline).await
}

/// How long this lab's engine takes to route around a member that stops answering (the
/// release's figures, read from its binary), for the generated drills' waits.
async fn takeover(state: &LabState) -> crate::watch::Takeover {
    crate::engine::for_spec(&state.spec).takeover().await
}

/// The graceful-vs-kill drill for this lab's HAProxy check settings.
pub(super) fn graceful_vs_kill(lab: &Lab) -> Result<String> {
    let state = LabState::load(&lab.state_file())?.ok_or_else(|| Error::NoLab { dir: lab.dir().to_path_buf() })?;
    Ok(crate::drill::graceful_vs_kill_scenario(state.spec.haproxy.inter, state.spec.haproxy.fall))
}

pub(super) fn latest_run(lab: &Lab) -> Result<PathBuf> {
    let runs = lab.runs_dir();
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
pub(super) async fn drill(
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
    // One drill per lab at a time: a second would re-initialise the bank under this one.
    let _exclusive = crate::exclusive::Exclusive::take(lab, &format!("drill {}", scenario.name))?;
    let client = crate::launch::ensure_daemon(lab).await?;
    let opts = crate::drill::model::DrillOptions { node, seed: seed.unwrap_or_else(|| fastrand::u64(..)), baseline };
    // On a terminal a spinner says how long the drill has run and what it does now (a wait
    // for a lease expiry can last tens of seconds); elsewhere plain lines.
    let activity =
        crate::reporter::Activity::new(std::io::IsTerminal::is_terminal(&std::io::stdout()), &format!("drill {}", scenario.name));
    let mut say = |line: String| activity.say(&line);
    let result = crate::drill::runner::run(lab, &client, &scenario, &opts, &mut say).await;
    activity.finish();
    let result = result?;
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
fn drill_summary(r: &crate::drill::model::DrillResult) -> String {
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
    let marks: Vec<_> = r.phases.iter().map(|p| p.mark.clone()).collect();
    for a in &r.alerts {
        out.push_str(&format!("alert: {}\n", crate::drill::alerts::describe(a, &marks)));
    }
    if r.monitored && r.alerts.is_empty() {
        out.push_str(&format!("alerts: {}\n", crate::drill::alerts::NONE_FIRED));
    }
    if !r.alerts.is_empty() || r.monitored {
        out.push('\n');
    }
    for e in &r.expectations {
        out.push_str(&format!("{} {} (observed {})\n", if e.met { "met:    " } else { "NOT MET:" }, e.text, e.observed));
    }
    for f in &r.failures {
        out.push_str(&format!("FAILURE: {f}\n"));
    }
    match (&r.check, &r.query_check) {
        (Some(c), _) if c.violations.is_empty() => {
            out.push_str(&format!("bank check passed ({} acknowledged transfers all present)\n", c.ok_checked))
        }
        (Some(c), _) => out.push_str(&format!("bank check FAILED: {}\n", c.violations.join("; "))),
        (None, Some(_)) => out.push_str(&format!("{}\n", crate::drill::report::verdict(r))),
        (None, None) => out.push_str("check did not run\n"),
    }
    out.push_str(&format!("report: {}\n", r.run_dir.join("report.html").display()));
    out
}
