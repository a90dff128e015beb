//! Network-fault requests of the API (`net partition`, `net isolate`, `net delay`/`loss`,
//! `net heal`, `net status`): the supervisor's primitives over the topology seam. The fault
//! lifecycle around them (wait until propagated, recover, wait until recovered) is
//! [`crate::fault`]'s.

use std::net::SocketAddr;

use super::*;
use crate::topology::Shaping;

/// How long one reachability connect may take.
const REACH_TIMEOUT: Duration = Duration::from_millis(300);

/// `GET /v1/net`: the topology, what is in force, and who reaches whom (probed now).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NetStatus {
    /// `loopback` or `netns`.
    pub topology: String,
    /// The netns subnet (`198.18.7.0/24`).
    pub subnet: Option<String>,
    /// Node → address.
    pub addresses: Vec<(NodeId, String)>,
    /// Sides of the partition in force (empty: none).
    pub sides: Vec<Vec<NodeId>>,
    /// Cuts in force: `(from, to)` in words.
    pub cuts: Vec<crate::topology::Cut>,
    /// Delay/loss in force per node.
    pub shaped: Vec<(NodeId, Shaping)>,
    /// Each probe: from the clients (host) and from every node to every running node.
    pub reach: Vec<crate::topology::netns::Reach>,
    /// The nodes whose linearizable read / SQL probe answered at the last poll: the side
    /// holding a majority.
    pub quorum_side: Vec<NodeId>,
}

impl Supervisor {
    /// Runs a topology operation (`ip`/`tc` commands) off the async threads.
    async fn on_topology<T: Send + 'static>(&self, f: impl FnOnce(&crate::topology::Topology) -> Result<T> + Send + 'static) -> Result<T> {
        let topology = self.inner.topology.clone();
        tokio::task::spawn_blocking(move || f(&topology)).await.map_err(|e| Error::Refused(format!("a network operation failed: {e}")))?
    }

    /// Heals the network if any fault is in force, saying so; errors become warnings (for
    /// `down` and restores, which must go on).
    pub(super) fn heal_for(&self, why: &str) {
        match self.inner.topology.heal() {
            Ok(done) if !done.is_empty() => {
                self.emit(EventKind::NetHealed { detail: format!("{why}: {}", done.join("; ")) });
            }
            Ok(_) => {}
            Err(e) => self.emit(EventKind::Warning { message: format!("{why}: cannot heal the network: {e}") }),
        }
    }

    /// `net partition SIDE SIDE…` (and `net isolate N`, a partition of N from the rest).
    pub async fn net_partition(&self, sides: Vec<Vec<NodeId>>, one_way: bool, from_clients: bool) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.inner.topology.netns()?;
        let members: Vec<NodeId> = self.members().iter().map(|m| m.id).collect();
        check_sides(&sides, &members, one_way)?;
        let text = describe_sides(&sides, one_way, from_clients);
        self.emit(EventKind::Command { command: format!("net partition {text}"), by: crate::events::requester() });
        let (s, count) = (sides.clone(), members.len());
        let cuts = self.on_topology(move |t| t.netns()?.partition(&s, one_way, from_clients, count)).await?;
        self.emit(EventKind::NetPartitioned { sides: sides.clone(), one_way, from_clients, cuts: cuts.len() });
        Ok(serde_json::json!({ "sides": sides, "cuts": cuts }))
    }

    /// `net delay N 100ms` / `net loss N 5%`: latency and loss on node N's outgoing traffic.
    pub async fn net_shape(&self, node: NodeId, shaping: Shaping) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.inner.topology.netns()?;
        self.state().node(node)?;
        if shaping.loss_pct < 0.0 || shaping.loss_pct > 100.0 || shaping.loss_pct.is_nan() {
            return Err(Error::Refused(format!("loss {}%: give a percentage from 0 to 100", shaping.loss_pct)));
        }
        self.emit(EventKind::Command {
            command: format!("net shape {node}: delay {} ms ± {} ms, loss {}%", shaping.delay_ms, shaping.jitter_ms, shaping.loss_pct),
            by: crate::events::requester(),
        });
        self.on_topology(move |t| t.netns()?.shape(node, shaping)).await?;
        self.emit(EventKind::NetShaped { node, delay_ms: shaping.delay_ms, jitter_ms: shaping.jitter_ms, loss_pct: shaping.loss_pct });
        Ok(serde_json::json!({ "node": node }))
    }

    /// `net heal`: every cut and every delay/loss removed.
    pub async fn net_heal(&self) -> Result<serde_json::Value> {
        let _op = self.begin_op().await?;
        self.emit(EventKind::Command { command: "net heal".into(), by: crate::events::requester() });
        let done = self.on_topology(|t| t.heal()).await?;
        let detail = if done.is_empty() { "nothing was in force".to_string() } else { done.join("; ") };
        self.emit(EventKind::NetHealed { detail: detail.clone() });
        Ok(serde_json::json!({ "healed": done }))
    }

    /// `net status`: never waits for the op lock; the probes take at most ~0.3 s per target.
    pub async fn net_status(&self) -> Result<NetStatus> {
        let topology = self.inner.topology.kind().to_string();
        let nodes: Vec<(NodeId, crate::node::NodePorts, bool)> =
            self.state().members().map(|n| (n.id, n.ports, n.process.is_some())).collect();
        let addresses = nodes.iter().map(|(id, p, _)| (*id, p.host.to_string())).collect();
        let quorum_side = {
            let w = self.inner.watch.lock().unwrap_or_else(|p| p.into_inner());
            w.last.nodes.iter().filter(|(_, f)| f.sees_quorum == Some(true)).map(|(id, _)| *id).collect()
        };
        let Ok(n) = self.inner.topology.netns() else {
            return Ok(NetStatus {
                topology,
                subnet: None,
                addresses,
                sides: vec![],
                cuts: vec![],
                shaped: vec![],
                reach: vec![],
                quorum_side,
            });
        };
        let rec = n.record()?;
        let targets: Vec<(NodeId, SocketAddr)> =
            nodes.iter().filter(|(_, _, live)| *live).map(|(id, p, _)| (*id, SocketAddr::from((p.host, p.service)))).collect();
        let subnet = n.subnet().to_string();
        let probe = {
            let topology = self.inner.topology.clone();
            tokio::task::spawn_blocking(move || topology.netns().and_then(|n| n.reachability(&targets, REACH_TIMEOUT)))
        };
        let reach = probe.await.map_err(|e| Error::Refused(format!("the reachability probe failed: {e}")))??;
        Ok(NetStatus {
            topology,
            subnet: Some(subnet),
            addresses,
            sides: rec.sides,
            cuts: rec.cuts,
            shaped: rec.shaped.into_iter().collect(),
            reach,
            quorum_side,
        })
    }
}

/// Sides name known members, none twice, at least two sides (one with `--one-way` needs
/// exactly two), none empty.
pub fn check_sides(sides: &[Vec<NodeId>], members: &[NodeId], one_way: bool) -> Result<()> {
    if sides.len() < 2 {
        return Err(Error::Refused("a partition needs at least two sides, e.g. `net partition 1,2 3,4,5` (or `net isolate 3`)".into()));
    }
    if one_way && sides.len() != 2 {
        return Err(Error::Refused("--one-way takes exactly two sides: the first cannot send to the second".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for id in sides.iter().flatten() {
        if !members.contains(id) {
            return Err(Error::UnknownNode { id: *id, known: members.to_vec() });
        }
        if !seen.insert(*id) {
            return Err(Error::Refused(format!("node {id} is on two sides; each node belongs to at most one")));
        }
    }
    if sides.iter().any(|s| s.is_empty()) {
        return Err(Error::Refused("a side of a partition is empty".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_are_checked() {
        let m = [1, 2, 3, 4, 5];
        assert!(check_sides(&[vec![1, 2], vec![3, 4, 5]], &m, false).is_ok());
        assert!(check_sides(&[vec![1, 2]], &m, false).unwrap_err().to_string().contains("at least two sides"));
        assert!(check_sides(&[vec![1], vec![1, 2]], &m, false).unwrap_err().to_string().contains("on two sides"));
        assert!(check_sides(&[vec![1], vec![9]], &m, false).unwrap_err().to_string().contains("unknown node 9"));
        assert!(check_sides(&[vec![1], vec![2], vec![3]], &m, true).unwrap_err().to_string().contains("exactly two"));
        assert_eq!(describe_sides(&[vec![1, 2], vec![3]], false, true), "1,2 | 3, clients cut from every side without a majority");
        assert_eq!(describe_sides(&[vec![3], vec![1]], true, false), "3 cannot send to 1 (one way)");
    }
}
