//! What drill steps refer to: node references (`leader`, `locality zone=a`, …), the figures
//! and comparisons of conditions (`quorum == 0`, `backend 2 DOWN`, `node 3 sees no quorum`),
//! and their parsers, with the error a scenario's author reads.

use serde::{Deserialize, Serialize};

use crate::node::NodeId;

pub fn cmp_str(c: Cmp) -> &'static str {
    match c {
        Cmp::Eq => "==",
        Cmp::Ne => "!=",
        Cmp::Lt => "<",
        Cmp::Le => "<=",
        Cmp::Gt => ">",
        Cmp::Ge => ">=",
    }
}

pub(super) fn parse_cmp(op: &str) -> std::result::Result<Cmp, String> {
    Ok(match op {
        "==" => Cmp::Eq,
        "!=" => Cmp::Ne,
        "<" => Cmp::Lt,
        "<=" => Cmp::Le,
        ">" => Cmp::Gt,
        ">=" => Cmp::Ge,
        other => return Err(format!("`{other}` is not a comparison: use ==, !=, <, <=, > or >=")),
    })
}

/// Which node a step acts on, resolved when the step runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRef {
    Id(NodeId),
    /// The node that leads the workload's writes when the step runs: the Raft leader where
    /// the engine has one cluster-wide leader (etcd), else the leaseholder of the bank's first
    /// row (CockroachDB: `leaseholder-of bank.bank 0`).
    Leader,
    /// A running member that is not the leader, chosen with the drill's seed.
    Follower,
    /// In a partition's sides: every member not named on another side.
    Rest,
    /// Every member whose locality matches (`locality zone=a`): for the steps that act on
    /// several nodes at once (stop, kill, start, pause, resume, throttle, unthrottle).
    Locality(String),
    /// A random running node, from the drill's seed.
    Random,
    /// The node a previous step chose (so "restart the node we killed" works with `leader`).
    Same,
    /// The drill's target: `--node N` if given, else the leader where the engine has one,
    /// else the highest-numbered running node.
    Target,
    /// A member the drill took down that is still stopped, the most recent first (else any
    /// stopped member): restores in reverse order.
    Stopped,
    /// The node holding the lease for a row (CockroachDB): `leaseholder-of bank.bank 0`.
    LeaseholderOf {
        table: String,
        key: i64,
    },
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeRef::Id(id) => write!(f, "node {id}"),
            NodeRef::Leader => f.write_str("the leader"),
            NodeRef::Follower => f.write_str("a follower"),
            NodeRef::Rest => f.write_str("the rest"),
            NodeRef::Locality(l) => write!(f, "every node in {l}"),
            NodeRef::Random => f.write_str("a random node"),
            NodeRef::Same => f.write_str("the same node"),
            NodeRef::Target => f.write_str("the target node"),
            NodeRef::Stopped => f.write_str("a stopped node"),
            NodeRef::LeaseholderOf { table, key } => write!(f, "the leaseholder of {table} row {key}"),
        }
    }
}

/// A figure a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    /// Members whose process runs.
    MembersUp,
    /// Nodes whose readiness probe passes.
    ReadyNodes,
    /// Nodes the cluster considers LIVE (CockroachDB).
    LiveNodes,
    RangesUnderreplicated,
    RangesUnavailable,
    /// 1 when some member knows a leader (etcd), else 0.
    HasLeader,
    /// 1 when a majority of members is up, else 0.
    Quorum,
}

impl Figure {
    const ALL: [(&'static str, Figure); 7] = [
        ("members_up", Figure::MembersUp),
        ("ready_nodes", Figure::ReadyNodes),
        ("live_nodes", Figure::LiveNodes),
        ("ranges_underreplicated", Figure::RangesUnderreplicated),
        ("ranges_unavailable", Figure::RangesUnavailable),
        ("has_leader", Figure::HasLeader),
        ("quorum", Figure::Quorum),
    ];
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    /// `a <op> b`.
    pub fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

/// A condition on what the watcher sees (`live_nodes == 2`, `backend 2 DOWN`, `node 3 ready`,
/// `node 3 not ready`) or on what the drill's clients see (`writes resumed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Compare {
        figure: Figure,
        cmp: Cmp,
        value: i64,
    },
    Backend {
        node: NodeRef,
        state: String,
    },
    Ready {
        node: NodeRef,
        ready: bool,
    },
    /// `node <ref> sees quorum` / `node <ref> sees no quorum`: the node's own quorum read.
    SeesQuorum {
        node: NodeRef,
        sees: bool,
    },
    /// `leader == <ref>` / `leader != <ref>`: who leads now (as [`NodeRef::Leader`]).
    Leader {
        cmp: Cmp,
        node: NodeRef,
    },
    /// `writes resumed`: the drill's transfers flow again after the latest fault step — for
    /// the last 2 s (wholly after the fault) transfers begun in that time committed and none
    /// has been in flight longer ([`crate::workload::commits::CommitClock::flowing_since`]):
    /// the cluster routes around the fault for every client, whatever it took (an election,
    /// a lease taken over once the holder's liveness expired). One commit through ranges the
    /// fault did not touch is not enough.
    WritesResumed,
    /// `placement survives <ref>`: losing the nodes `<ref>` names (`locality zone=a`, an id)
    /// would leave every quorum group a majority of its voting replicas, as the daemon
    /// predicts from the placement it reads now (`GET /v1/predict`; CockroachDB: each range's
    /// voting replicas, etcd: the member count). A drill waits for it where its theory
    /// presumes a placement the cluster reaches only over time (replicas spread one per zone).
    PlacementSurvives {
        nodes: NodeRef,
    },
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Condition::Compare { figure, cmp, value } => {
                let name = Figure::ALL.iter().find(|(_, x)| x == figure).map(|(n, _)| *n).unwrap_or("?");
                write!(f, "{name} {} {value}", cmp_str(*cmp))
            }
            Condition::Backend { node, state } => write!(f, "HAProxy has {node} {state}"),
            Condition::Ready { node, ready } => write!(f, "{node} {}", if *ready { "ready" } else { "not ready" }),
            Condition::SeesQuorum { node, sees } => write!(f, "{node} sees {}quorum", if *sees { "" } else { "no " }),
            Condition::Leader { cmp, node } => write!(f, "leader {} {node}", cmp_str(*cmp)),
            Condition::WritesResumed => f.write_str("writes resumed"),
            Condition::PlacementSurvives { nodes } => write!(f, "the placement survives the loss of {nodes}"),
        }
    }
}

pub(super) fn node_ref(word: &str) -> std::result::Result<NodeRef, String> {
    match word {
        "leader" => Ok(NodeRef::Leader),
        "follower" => Ok(NodeRef::Follower),
        "rest" => Ok(NodeRef::Rest),
        "random" => Ok(NodeRef::Random),
        "same" => Ok(NodeRef::Same),
        "target" => Ok(NodeRef::Target),
        "stopped" => Ok(NodeRef::Stopped),
        w if w.starts_with("locality ") => {
            let sel = w["locality ".len()..].trim();
            crate::config::check_locality(sel)?;
            Ok(NodeRef::Locality(sel.to_string()))
        }
        w if w.starts_with("leaseholder-of") => {
            let parts: Vec<&str> = w.split_whitespace().collect();
            match parts.as_slice() {
                ["leaseholder-of", table, key] => Ok(NodeRef::LeaseholderOf {
                    table: table.to_string(),
                    key: key.parse().map_err(|_| format!("`{key}` is not an integer key: write `leaseholder-of <table> <key>`"))?,
                }),
                _ => Err(format!("`{w}`: write `leaseholder-of <table> <key>`, e.g. `leaseholder-of bank.bank 0`")),
            }
        }
        w => w.parse::<u32>().map(NodeRef::Id).map_err(|_| {
            format!("`{w}` is not a node: use an id, \"target\", \"leader\", \"follower\", \"random\", \"same\" or \"stopped\"")
        }),
    }
}

/// Parses a condition.
pub fn parse_condition(text: &str) -> std::result::Result<Condition, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["backend", node, state] => {
            let state = state.to_ascii_uppercase();
            if !["UP", "DOWN", "MAINT", "DRAIN"].contains(&state.as_str()) {
                return Err(format!("`{state}` is not a backend state: use UP, DOWN, MAINT or DRAIN"));
            }
            Ok(Condition::Backend { node: node_ref(node)?, state })
        }
        ["node", node, "ready"] => Ok(Condition::Ready { node: node_ref(node)?, ready: true }),
        ["node", node, "not", "ready"] => Ok(Condition::Ready { node: node_ref(node)?, ready: false }),
        ["node", node, "sees", "quorum"] => Ok(Condition::SeesQuorum { node: node_ref(node)?, sees: true }),
        ["node", node, "sees", "no", "quorum"] => Ok(Condition::SeesQuorum { node: node_ref(node)?, sees: false }),
        ["leader", op @ ("==" | "!="), node] => Ok(Condition::Leader { cmp: parse_cmp(op)?, node: node_ref(node)? }),
        ["writes", "resumed"] => Ok(Condition::WritesResumed),
        ["placement", "survives", rest @ ..] if !rest.is_empty() => Ok(Condition::PlacementSurvives { nodes: node_ref(&rest.join(" "))? }),
        [figure, op, value] => {
            let figure = Figure::ALL.iter().find(|(n, _)| n == figure).map(|(_, f)| *f).ok_or_else(|| {
                format!("unknown figure `{figure}`; known: {}", Figure::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))
            })?;
            let cmp = parse_cmp(op)?;
            let value = value.parse().map_err(|_| format!("`{value}` is not a whole number"))?;
            Ok(Condition::Compare { figure, cmp, value })
        }
        _ => Err(format!(
            "cannot read condition `{text}`: write `<figure> <op> <number>` (e.g. `live_nodes == 2`), `backend <node> DOWN`, \
             `node <node> ready`, `node <node> sees quorum`, `node <node> sees no quorum`, `leader != <node>`, \
             `writes resumed`, or `placement survives <node>` (e.g. `placement survives locality zone=a`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaseholder_references() {
        assert_eq!(node_ref("leaseholder-of bank.bank 7").unwrap(), NodeRef::LeaseholderOf { table: "bank.bank".into(), key: 7 });
        assert!(node_ref("leaseholder-of bank.bank").unwrap_err().contains("leaseholder-of <table> <key>"));
        assert!(node_ref("leaseholder-of t x").unwrap_err().contains("not an integer key"));
    }

    #[test]
    fn conditions() {
        assert_eq!(parse_condition("live_nodes == 2").unwrap(), Condition::Compare { figure: Figure::LiveNodes, cmp: Cmp::Eq, value: 2 });
        assert_eq!(parse_condition("node 3 not ready").unwrap(), Condition::Ready { node: NodeRef::Id(3), ready: false });
        assert!(parse_condition("backend 2 SIDEWAYS").unwrap_err().contains("not a backend state"));
        assert!(parse_condition("ranges_unavailable ~ 0").unwrap_err().contains("not a comparison"));
        assert!(parse_condition("just words").unwrap_err().contains("cannot read condition"));
        assert_eq!(parse_condition("quorum == 0").unwrap().to_string(), "quorum == 0");
        assert_eq!(parse_condition("writes  resumed").unwrap(), Condition::WritesResumed);
        assert_eq!(Condition::WritesResumed.to_string(), "writes resumed");
        assert_eq!(
            parse_condition("placement survives locality zone=a").unwrap(),
            Condition::PlacementSurvives { nodes: NodeRef::Locality("zone=a".into()) }
        );
        assert_eq!(parse_condition("placement survives 2").unwrap().to_string(), "the placement survives the loss of node 2");
        assert!(parse_condition("placement survives").unwrap_err().contains("cannot read condition"));
        assert!(parse_condition("placement survives locality zone=a,zone=b").is_err(), "a repeated tier is refused");
    }
}
