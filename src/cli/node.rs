//! `roachlab node …`: one node by id, or every node of a locality at the same instant. Faults
//! (stop, kill, pause, throttle) are injected through [`crate::fault`], like a drill's steps.

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{describe_stop, stream};
use crate::api::{Client, DecommissionRequest, StatusReport};
use crate::fault::{Fault, NodesRequest};
use crate::lab::Lab;
use crate::node::NodeId;
use crate::reporter::Reporter;
use crate::supervisor::StopOutcome;
use crate::{Error, Result};

/// Which nodes: one id, or `--locality KEY=VALUE` (every member whose locality has that tier).
#[derive(Debug, Args)]
pub struct Select {
    /// The node's id.
    #[arg(required_unless_present = "locality", conflicts_with = "locality")]
    pub id: Option<NodeId>,
    /// Every member whose locality matches, e.g. `zone=b` (all tiers given must match).
    #[arg(long, value_parser = parse_locality)]
    pub locality: Option<String>,
}

fn parse_locality(s: &str) -> std::result::Result<String, String> {
    crate::config::check_locality(s).map(|_| s.to_string())
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Graceful stop: the node's server goes to DRAIN in HAProxy, its client sessions leave,
    /// leadership (etcd) or leases (CockroachDB: `cockroach node drain`) move away, then
    /// SIGTERM; SIGKILL if it has not exited after --grace. With --locality, SIGTERM to every
    /// matching node at the same instant (no per-node drain). Never restarted by a restart policy.
    Stop {
        #[command(flatten)]
        select: Select,
        /// Time from SIGTERM to SIGKILL, e.g. 90s (default: the lab's timeouts.grace, 60s).
        #[arg(long, value_parser = crate::config::parse_duration)]
        grace: Option<Duration>,
        /// SIGTERM at once: no HAProxy drain and no hand-off (for comparison drills).
        #[arg(long)]
        no_drain: bool,
    },
    /// SIGKILL now, no drain (every matching node at the same instant with --locality). A
    /// crash: a restart policy restarts it.
    Kill {
        #[command(flatten)]
        select: Select,
    },
    /// Restart stopped nodes on their stores and wait until they are ready.
    Start {
        #[command(flatten)]
        select: Select,
        /// Return once the process runs (a lone member cannot be ready while quorum is lost).
        #[arg(long)]
        no_wait: bool,
    },
    /// SIGSTOP the node's process group: it holds its sockets and answers nothing (until `node resume`).
    Pause {
        #[command(flatten)]
        select: Select,
    },
    /// SIGCONT a paused node.
    Resume {
        #[command(flatten)]
        select: Select,
    },
    /// A slow node: a CPU quota through cgroups (v2, or v1's cpu controller), until `node unthrottle`.
    Throttle {
        #[command(flatten)]
        select: Select,
        /// Share of one core, e.g. 10%.
        #[arg(long, value_parser = parse_cpu)]
        cpu: u32,
    },
    /// Remove a CPU quota.
    Unthrottle {
        #[command(flatten)]
        select: Select,
    },
    /// Add a new node to the cluster and to HAProxy.
    Add,
    /// Remove a node from the cluster for good (CockroachDB decommission, etcd member remove), then stop it.
    Decommission {
        id: NodeId,
        /// Proceed even if fewer nodes than the replication factor would remain.
        #[arg(long)]
        force: bool,
    },
}

/// `10%` or `10` → 10, from 1 to 100.
pub fn parse_cpu(s: &str) -> std::result::Result<u32, String> {
    let v: u32 = s.trim_end_matches('%').parse().map_err(|_| format!("`{s}` is not a share of a core like 10%"))?;
    if v == 0 || v > 100 {
        return Err(format!("`{s}`: give a share of one core from 1% to 100%"));
    }
    Ok(v)
}

/// The nodes a selection names, checked against the lab.
async fn resolve(client: &Client, select: &Select) -> Result<Vec<NodeId>> {
    let s: StatusReport = client.get("/v1/status").await?;
    match (&select.id, &select.locality) {
        (Some(id), _) => {
            if !s.nodes.iter().any(|n| n.id == *id) {
                return Err(Error::UnknownNode { id: *id, known: s.nodes.iter().map(|n| n.id).collect() });
            }
            Ok(vec![*id])
        }
        (None, Some(sel)) => {
            let hits: Vec<NodeId> = s
                .nodes
                .iter()
                .filter(|n| !n.decommissioned && n.locality.as_deref().is_some_and(|l| crate::config::locality_matches(l, sel)))
                .map(|n| n.id)
                .collect();
            if hits.is_empty() {
                let mut known: Vec<String> = s.nodes.iter().filter_map(|n| n.locality.clone()).collect();
                known.sort();
                known.dedup();
                return Err(Error::Refused(if known.is_empty() {
                    format!("no node has a locality (asked for {sel}); set `localities` in the lab's config (`[cockroach]` or `[etcd]`)")
                } else {
                    format!("no member's locality matches {sel}; this lab's localities: {}", known.join(", "))
                }));
            }
            Ok(hits)
        }
        (None, None) => Err(Error::Refused("name a node id or --locality KEY=VALUE".into())),
    }
}

/// Injects a fault as a drill step would, printing its events.
async fn inject(client: &Client, fault: Fault) -> Result<serde_json::Value> {
    let mut reporter = Reporter::new(std::io::stdout().is_terminal());
    let res = {
        let mut print = |e: &crate::events::Event| reporter.event(e);
        tokio::select! {
            r = fault.inject(client, &mut print) => r,
            _ = tokio::signal::ctrl_c() => {
                // The request goes on in the daemon; a stop can be cut short with a kill.
                let hint = match &fault {
                    Fault::Stop { nodes, .. } => format!("; to stop it at once: `roachlab node kill {}`", nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" / ")),
                    _ => String::new(),
                };
                Err(Error::StoppedWaiting { what: format!("`{}`", fault.describe()), hint })
            }
        }
    };
    reporter.finish();
    res
}

pub async fn run(lab: &Lab, command: NodeCommand) -> Result<i32> {
    let client = crate::launch::ensure_daemon(lab).await?;
    let result = match command {
        NodeCommand::Stop { select, grace, no_drain } => {
            let nodes = resolve(&client, &select).await?;
            inject(&client, Fault::Stop { nodes, grace, drain: !no_drain }).await?
        }
        NodeCommand::Kill { select } => inject(&client, Fault::Kill { nodes: resolve(&client, &select).await? }).await?,
        NodeCommand::Pause { select } => inject(&client, Fault::Pause { nodes: resolve(&client, &select).await? }).await?,
        NodeCommand::Throttle { select, cpu } => {
            inject(&client, Fault::Throttle { nodes: resolve(&client, &select).await?, cpu_pct: cpu }).await?
        }
        NodeCommand::Start { select, no_wait } => {
            let nodes = resolve(&client, &select).await?;
            match &nodes[..] {
                [one] => stream(&client, &format!("/v1/nodes/{one}/start"), &crate::api::StartRequest { no_wait }).await?,
                _ => stream(&client, "/v1/nodes/start", &NodesRequest { no_wait, ..NodesRequest::of(&nodes) }).await?,
            }
        }
        NodeCommand::Resume { select } => stream(&client, "/v1/nodes/resume", &NodesRequest::of(&resolve(&client, &select).await?)).await?,
        NodeCommand::Unthrottle { select } => {
            stream(&client, "/v1/nodes/unthrottle", &NodesRequest::of(&resolve(&client, &select).await?)).await?
        }
        NodeCommand::Add => stream(&client, "/v1/nodes/add", &serde_json::json!({})).await?,
        NodeCommand::Decommission { id, force } => {
            stream(&client, &format!("/v1/nodes/{id}/decommission"), &DecommissionRequest { force }).await?
        }
    };
    let outcomes: Vec<StopOutcome> = match serde_json::from_value::<StopOutcome>(result.clone()) {
        Ok(o) => vec![o],
        Err(_) => serde_json::from_value(result["nodes"].clone()).unwrap_or_default(),
    };
    if !outcomes.is_empty() {
        for o in &outcomes {
            println!("{}", describe_stop(o));
        }
    } else if let Some(n) = result.get("node") {
        println!("node {n}: done");
    } else if let Some(ns) = result.get("nodes") {
        println!("node(s) {ns}: done");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_are_checked() {
        assert_eq!(parse_cpu("10%").unwrap(), 10);
        assert!(parse_cpu("0%").unwrap_err().contains("1% to 100%"));
        assert!(parse_cpu("150").unwrap_err().contains("1% to 100%"));
        assert!(parse_cpu("fast").unwrap_err().contains("not a share"));
    }
}
