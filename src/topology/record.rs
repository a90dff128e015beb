//! What a netns lab created on the host's network, by name, and which faults are in force:
//! `DIR/net.json`, written atomically before each change is made, so `net heal`, `down` and a
//! new daemon after a crash undo exactly what the lab made — and never touch a namespace,
//! interface or route it did not.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::node::NodeId;
use crate::{Error, Result};

/// One node's piece of the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeNet {
    /// The network namespace (`ip netns` name), e.g. `roachlab-3f9a1c-n2`.
    pub netns: String,
    /// The host end of the node's veth pair, on the bridge, e.g. `rl3f9a1cn2`.
    pub veth: String,
    /// The node's address.
    pub addr: Ipv4Addr,
}

/// The other end of a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// Another node.
    Node(NodeId),
    /// The host namespace: HAProxy, the daemon and the workloads.
    Clients,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Node(n) => write!(f, "node {n}"),
            Peer::Clients => f.write_str("clients (HAProxy, daemon)"),
        }
    }
}

/// One direction of traffic dropped: node `from` cannot send to `to` (a blackhole route for
/// `to`'s address inside `from`'s namespace; the kernel discards the packets). Over TCP a
/// one-way cut stops new connections both ways, since a handshake needs both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cut {
    pub from: NodeId,
    pub to: Peer,
}

/// Latency and loss on a node's outgoing traffic (`tc qdisc … netem`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Shaping {
    /// Added delay, ms.
    pub delay_ms: u32,
    /// Jitter around the delay, ms.
    pub jitter_ms: u32,
    /// Packets dropped, percent (0–100).
    pub loss_pct: f64,
}

/// Everything the lab created, and the faults in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetRecord {
    /// The bridge, once created (recorded before creation).
    pub bridge: Option<String>,
    /// Per node: namespace, veth and address (recorded before creation).
    pub nodes: BTreeMap<NodeId, NodeNet>,
    /// Partition cuts in force.
    pub cuts: Vec<Cut>,
    /// Delay and loss in force, per node.
    pub shaped: BTreeMap<NodeId, Shaping>,
    /// The sides of the partition in force, as asked (for `net status`), e.g. `[[1,2],[3,4,5]]`.
    #[serde(default)]
    pub sides: Vec<Vec<NodeId>>,
}

impl NetRecord {
    /// Reads `path`; an absent file is an empty record.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| Error::ConfigSyntax {
                file: path.display().to_string(),
                line: e.line(),
                col: e.column(),
                message: format!("{e} (the lab's network record is damaged; its namespaces are named roachlab-*)"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
        }
    }

    /// Writes `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut body = serde_json::to_vec_pretty(self).expect("the record serializes");
        body.push(b'\n');
        crate::state::write_atomic(path, &body)
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.bridge.is_none() && self.nodes.is_empty() && self.cuts.is_empty() && self.shaped.is_empty()
    }
}

/// The cuts of a partition into `sides`: every node of each side loses every node of the
/// other sides, both ways, or only from the first side to the others when `one_way`. With
/// `from_clients`, every side without a majority of the `members` also loses the clients.
pub fn partition_cuts(sides: &[Vec<NodeId>], one_way: bool, from_clients: bool, members: usize) -> Vec<Cut> {
    let mut cuts = Vec::new();
    for (i, a) in sides.iter().enumerate() {
        for (j, b) in sides.iter().enumerate() {
            if i == j || (one_way && i != 0) {
                continue;
            }
            for &from in a {
                for &to in b {
                    cuts.push(Cut { from, to: Peer::Node(to) });
                }
            }
        }
        if from_clients && a.len() < members / 2 + 1 {
            cuts.extend(a.iter().map(|&from| Cut { from, to: Peer::Clients }));
        }
    }
    cuts.sort();
    cuts.dedup();
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_cuts_every_pair_across_sides_both_ways() {
        let cuts = partition_cuts(&[vec![1, 2], vec![3]], false, false, 3);
        let pairs: Vec<(NodeId, Peer)> = cuts.iter().map(|c| (c.from, c.to)).collect();
        assert_eq!(pairs, vec![(1, Peer::Node(3)), (2, Peer::Node(3)), (3, Peer::Node(1)), (3, Peer::Node(2))]);
    }

    #[test]
    fn one_way_cuts_only_the_first_side_and_clients_lose_minorities() {
        let cuts = partition_cuts(&[vec![3], vec![1]], true, false, 5);
        assert_eq!(cuts, vec![Cut { from: 3, to: Peer::Node(1) }]);
        // 2|2|1 of 5: nobody has a majority (3), so every side loses the clients.
        let cuts = partition_cuts(&[vec![1, 2], vec![3, 4], vec![5]], false, true, 5);
        assert_eq!(cuts.iter().filter(|c| c.to == Peer::Clients).count(), 5);
        // 1,2 | 3,4,5: only the minority loses them.
        let cuts = partition_cuts(&[vec![1, 2], vec![3, 4, 5]], false, true, 5);
        let dark: Vec<NodeId> = cuts.iter().filter(|c| c.to == Peer::Clients).map(|c| c.from).collect();
        assert_eq!(dark, vec![1, 2]);
    }

    #[test]
    fn the_record_round_trips_and_an_absent_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.json");
        assert!(NetRecord::load(&path).unwrap().is_empty());
        let mut r = NetRecord { bridge: Some("rlabcdefbr".into()), ..Default::default() };
        r.nodes.insert(1, NodeNet { netns: "roachlab-abcdef-n1".into(), veth: "rlabcdefn1".into(), addr: Ipv4Addr::new(198, 18, 7, 11) });
        r.cuts.push(Cut { from: 1, to: Peer::Clients });
        r.shaped.insert(1, Shaping { delay_ms: 100, jitter_ms: 0, loss_pct: 0.0 });
        r.save(&path).unwrap();
        assert_eq!(NetRecord::load(&path).unwrap(), r);
        std::fs::write(&path, "{").unwrap();
        assert!(NetRecord::load(&path).unwrap_err().to_string().contains("net.json:1:"));
    }
}
