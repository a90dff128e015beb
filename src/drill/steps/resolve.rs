//! What a step names, resolved when it runs: node references (`leader`, `follower`,
//! `leaseholder of bank.bank row 0`, `random`, …) to node ids, a partition's sides, and a
//! condition (`quorum == 0`, `backend 2 DOWN`) checked on the watcher's status.

use std::time::Instant;

use super::{stopped_members, Ctx};
use crate::api::StatusReport;
use crate::drill::scenario::{Condition, Figure, NodeRef};
use crate::node::NodeId;
use crate::{Error, Result};

impl Ctx<'_> {
    pub(super) async fn resolve(&mut self, r: &NodeRef) -> Result<NodeId> {
        let s = self.status().await?;
        let running: Vec<NodeId> = s.nodes.iter().filter(|n| n.pid.is_some() && !n.decommissioned).map(|n| n.id).collect();
        let id = match r {
            NodeRef::Id(id) => *id,
            NodeRef::Same => {
                self.last.ok_or_else(|| Error::Refused("`same` names the node of an earlier step, and there is none".into()))?
            }
            NodeRef::Leader => self.leader(&s).await?,
            NodeRef::Follower => {
                let leader = self.leader(&s).await.ok();
                let followers: Vec<NodeId> = running.iter().copied().filter(|n| Some(*n) != leader).collect();
                if followers.is_empty() {
                    return Err(Error::Refused("no running member other than the leader".into()));
                }
                followers[self.rng.usize(0..followers.len())]
            }
            NodeRef::Rest => return Err(Error::Refused("`rest` stands only on a side of a partition".into())),
            NodeRef::Locality(l) => {
                return Err(Error::Refused(format!(
                    "`locality {l}` names several nodes: use it with stop, kill, start, pause, resume or throttle"
                )))
            }
            NodeRef::Random => {
                if running.is_empty() {
                    return Err(Error::Refused("no running node to choose from".into()));
                }
                running[self.rng.usize(0..running.len())]
            }
            NodeRef::Stopped => {
                let stopped = stopped_members(&s);
                let recent = self.downed.iter().rev().find(|id| stopped.contains(id)).copied();
                recent.or_else(|| stopped.first().copied()).ok_or_else(|| Error::Refused("no stopped node to start".into()))?
            }
            NodeRef::LeaseholderOf { table, key } => self.leaseholder(table, *key).await?,
            NodeRef::Target => match self.opts.node {
                Some(id) => id,
                None => match self.leader(&s).await {
                    Ok(l) => l,
                    Err(_) => running.iter().copied().max().ok_or_else(|| Error::Refused("no running node".into()))?,
                },
            },
        };
        self.last = Some(id);
        Ok(id)
    }

    /// The nodes a reference names: every member of a locality (those `want_running` or not,
    /// as the step needs), else the one node.
    pub(super) async fn resolve_many(&mut self, r: &NodeRef, want_running: bool) -> Result<Vec<NodeId>> {
        let NodeRef::Locality(sel) = r else { return Ok(vec![self.resolve(r).await?]) };
        let s = self.status().await?;
        let ids: Vec<NodeId> = s
            .nodes
            .iter()
            .filter(|n| !n.decommissioned && n.pid.is_some() == want_running)
            .filter(|n| n.locality.as_deref().is_some_and(|l| crate::config::locality_matches(l, sel)))
            .map(|n| n.id)
            .collect();
        if ids.is_empty() {
            return Err(Error::Refused(format!("no {} member's locality matches {sel}", if want_running { "running" } else { "stopped" })));
        }
        self.last = ids.first().copied();
        Ok(ids)
    }

    /// The Raft leader where the engine has one, else the leaseholder of the bank's first row.
    pub(super) async fn leader(&self, s: &StatusReport) -> Result<NodeId> {
        if let Some(l) = s.cluster.leader {
            return Ok(l);
        }
        if s.cluster.has_leader.is_some() {
            return Err(Error::Refused("no leader is known right now".into()));
        }
        self.leaseholder("bank.bank", 0).await
    }

    pub(super) async fn leaseholder(&self, table: &str, key: i64) -> Result<NodeId> {
        let v: serde_json::Value = self.client.get(&format!("/v1/leaseholder?table={table}&key={key}")).await?;
        Ok(v["node"].as_u64().ok_or_else(|| Error::Refused(format!("no leaseholder for {table} row {key}")))? as NodeId)
    }

    /// The sides of a partition with every reference resolved (`rest`: the members named
    /// nowhere else).
    pub(super) async fn resolve_sides(&mut self, sides: &[Vec<NodeRef>]) -> Result<Vec<Vec<NodeId>>> {
        let mut out: Vec<Vec<NodeId>> = Vec::new();
        for side in sides {
            let mut ids = Vec::new();
            for r in side.iter().filter(|r| **r != NodeRef::Rest) {
                ids.push(self.resolve(r).await?);
            }
            out.push(ids);
        }
        let s = self.status().await?;
        let named: Vec<NodeId> = out.iter().flatten().copied().collect();
        let rest: Vec<NodeId> = s.nodes.iter().filter(|n| !n.decommissioned && !named.contains(&n.id)).map(|n| n.id).collect();
        for (side, refs) in out.iter_mut().zip(sides) {
            if refs.contains(&NodeRef::Rest) {
                side.extend(&rest);
            }
            side.sort_unstable();
            side.dedup();
        }
        Ok(out)
    }

    pub(super) async fn holds(&mut self, c: &Condition) -> Result<(bool, String)> {
        let s = self.status().await?;
        Ok(match c {
            Condition::Compare { figure, cmp, value } => {
                let observed = figure_value(&s, *figure);
                (observed.is_some_and(|o| cmp.holds(o, *value)), observed.map(|o| o.to_string()).unwrap_or_else(|| "unknown".into()))
            }
            Condition::Backend { node, state } => {
                let id = self.resolve(node).await?;
                let b = s.nodes.iter().find(|n| n.id == id).and_then(|n| n.backend.clone()).unwrap_or_default();
                (b.split_whitespace().next() == Some(state.as_str()), b)
            }
            Condition::Ready { node, ready } => {
                let id = self.resolve(node).await?;
                let r = s.nodes.iter().find(|n| n.id == id).is_some_and(|n| n.ready);
                (r == *ready, if r { "ready".into() } else { "not ready".into() })
            }
            Condition::SeesQuorum { node, sees } => {
                let id = self.resolve(node).await?;
                let v = s.nodes.iter().find(|n| n.id == id).and_then(|n| n.sees_quorum);
                // Not probed (unreachable, not running) is not seeing quorum.
                (
                    v.unwrap_or(false) == *sees,
                    match v {
                        Some(true) => "sees quorum".into(),
                        Some(false) => "sees no quorum".into(),
                        None => "not probed".into(),
                    },
                )
            }
            Condition::WritesResumed => {
                let since = self.last_fault.unwrap_or(self.t0);
                let window = crate::workload::commits::FLOW_WINDOW;
                match self.commits.flowing_since(since, Instant::now(), window) {
                    Ok(()) => (true, format!("transfers commit again and none has been in flight for {:.0} s", window.as_secs_f64())),
                    Err(why) => (false, why),
                }
            }
            Condition::Leader { cmp, node } => {
                let want = self.resolve(node).await?;
                let now = self.leader(&s).await.ok();
                (now.is_some_and(|l| cmp.holds(l, want)), now.map(|l| format!("node {l}")).unwrap_or_else(|| "none".into()))
            }
            Condition::PlacementSurvives { nodes } => {
                // Asking is not acting: `same` keeps naming the node of the last step.
                let last = self.last;
                let ids = self.resolve_many(nodes, true).await;
                self.last = last;
                let p = self.ask_prediction(&ids?).await?;
                (p.groups_lost == 0, p.text)
            }
        })
    }
}

fn figure_value(s: &StatusReport, f: Figure) -> Option<i64> {
    let c = &s.cluster;
    match f {
        // Processes running, whatever the cluster thinks of them (quorum is its own figure).
        Figure::MembersUp => Some(s.nodes.iter().filter(|n| n.pid.is_some() && !n.decommissioned).count() as i64),
        Figure::ReadyNodes => Some(s.nodes.iter().filter(|n| n.ready).count() as i64),
        Figure::LiveNodes => c.live_nodes.map(|v| v as i64),
        Figure::RangesUnderreplicated => c.ranges_underreplicated.map(|v| v as i64),
        Figure::RangesUnavailable => c.ranges_unavailable.map(|v| v as i64),
        Figure::HasLeader => c.has_leader.map(i64::from),
        Figure::Quorum => c.quorum.as_ref().map(|q| i64::from(q.ok)),
    }
}
