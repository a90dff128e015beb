//! What the watcher sees: per-node and cluster figures, engine-neutral.
//!
//! Each engine fills an [`Observation`] from its own admin endpoints
//! ([`crate::engine::Engine::observe`]); the supervisor compares successive observations and
//! publishes the changes (liveness transitions, ranges under-replicated/unavailable, leader
//! changes, quorum lost/regained) on the event bus.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::node::NodeId;

/// A node's liveness as the cluster sees it, in CockroachDB's terms (`NodeLivenessStatus`,
/// `pkg/kv/kvserver/livenesspb`; `UNAVAILABLE` is what the DB Console calls SUSPECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Liveness {
    Live,
    /// Liveness record expired, not yet dead (`UNAVAILABLE`, status 2).
    Suspect,
    /// Expired for longer than `server.time_until_store_dead` (status 1).
    Dead,
    Draining,
    Decommissioning,
    Decommissioned,
    Unknown,
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        f.write_str(&s)
    }
}

/// Per-node figures. Fields an engine does not have stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeFigures {
    /// The cluster's view of the node (CockroachDB `/_admin/v1/liveness`).
    pub liveness: Option<Liveness>,
    /// Replicas on the node's stores (CockroachDB `replicas`, summed over stores).
    pub replicas: Option<u64>,
    /// Leases held (CockroachDB `replicas_leaseholders`).
    pub leaseholders: Option<u64>,
    /// This member is the Raft leader (etcd `etcd_server_is_leader`).
    pub is_leader: Option<bool>,
    /// This member knows a leader (etcd `etcd_server_has_leader`).
    pub has_leader: Option<bool>,
    /// Raft term as this member sees it (etcd `/v3/maintenance/status` `raftTerm`).
    pub term: Option<u64>,
    /// Whether a quorum read through this node answered: a linearizable read (etcd
    /// `POST /v3/kv/range`, `serializable: false`, which needs the leader to confirm it still
    /// leads a majority) or the SQL probe (CockroachDB). `None`: not probed (not running, or
    /// unreachable from the daemon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sees_quorum: Option<bool>,
    /// The probe's answer in words (`read in 3 ms`, `timed out after 1000 ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_detail: Option<String>,
}

/// Cluster-wide figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterFigures {
    /// Ranges (CockroachDB `ranges`, summed over every store that answered: each range is
    /// counted by one store only).
    pub ranges: Option<u64>,
    pub ranges_underreplicated: Option<u64>,
    /// Note: CockroachDB v20.1 shows 0 here during quorum loss (no store counts the ranges);
    /// see `quorum`.
    pub ranges_unavailable: Option<u64>,
    pub ranges_overreplicated: Option<u64>,
    /// Nodes the cluster considers live (CockroachDB: LIVE in liveness, else
    /// `liveness_livenodes`).
    pub live_nodes: Option<u64>,
    /// The Raft leader (etcd).
    pub leader: Option<NodeId>,
    /// Highest Raft term seen (etcd).
    pub term: Option<u64>,
    /// Some member knows a leader (etcd).
    pub has_leader: Option<bool>,
    /// Whether a majority of members is up.
    pub quorum: Option<Quorum>,
}

/// Whether the cluster can commit, and on what that verdict rests.
///
/// etcd: majority arithmetic over members, `needed = members / 2 + 1` of them up (process
/// running). CockroachDB has no cluster-wide majority — each range needs a majority of its own
/// replicas — so its quorum is *observed*: a timed SQL read through each live node
/// ([`crate::engine::Engine::observe`]); `up` counts the nodes that answered it and `needed`
/// is a range's majority (2 of 3 replicas at replication factor 3). A cluster with quorum can
/// still be briefly unable to serve (a leader election): see readiness and `has_leader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    /// Members that answered this round (etcd: `/v3/maintenance/status`; a paused member does
    /// not), or nodes whose SQL write probe committed (CockroachDB).
    pub up: usize,
    /// Majority of members (etcd), or of a range's replicas (CockroachDB).
    pub needed: usize,
    pub ok: bool,
    /// How the verdict was reached, when it was observed rather than counted (e.g. `SQL write probe
    /// committed through 3 of 3 node(s) (node 1 in 4 ms)`, `SQL write probe failed on every live node;
    /// node 1: node is not healthy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Quorum {
    /// The quorum state for `up` members out of `members` (majority arithmetic).
    pub fn of(up: usize, members: usize) -> Self {
        let needed = members / 2 + 1;
        Self { up, needed, ok: up >= needed, detail: None }
    }
}

/// How long the cluster takes to route around a member that stops answering without a
/// hand-off (SIGKILL, SIGSTOP, a partition), and why: a drill's waits for writes to resume
/// are sized from it and say it ([`crate::engine::Engine::takeover`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Takeover {
    /// The expected time from the fault until writes go through again, at most.
    pub expected: std::time::Duration,
    /// The mechanism in one sentence, with the figures of the running release.
    pub why: String,
}

impl Takeover {
    /// A generous bound for a drill's wait: three times the expected time, at least 30 s (a
    /// loaded 2-core machine stretches every timer).
    pub fn wait_bound(&self) -> std::time::Duration {
        (self.expected * 3).max(std::time::Duration::from_secs(30))
    }
}

/// Whether bank transfers can still commit once some nodes are down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Writes {
    /// Every quorum group a transfer touches keeps its majority.
    Continue,
    /// Some transfers touch a group that lost its majority: those stall and fail.
    Some,
    /// Every transfer touches a group that lost its majority.
    Stop,
}

/// What taking nodes down would do to quorum, predicted from the layout observed *before*
/// the fault (CockroachDB: each range's voting replicas from `crdb_internal.ranges_no_leases`;
/// etcd: the member count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossPrediction {
    /// Our ids of the nodes that would be down (already down, and the fault's targets).
    pub down: Vec<NodeId>,
    /// Quorum groups: CockroachDB ranges, or the one etcd cluster.
    pub groups: u64,
    /// Groups that would keep fewer than a majority of their voting replicas.
    pub groups_lost: u64,
    /// The first lost groups' ids (CockroachDB range IDs), at most 20.
    pub lost_ids: Vec<u64>,
    /// The workload's own groups (the bank tables' ranges) as `(total, lost)`, when known.
    pub workload_groups: Option<(u64, u64)>,
    pub writes: Writes,
    /// The prediction in one sentence.
    pub text: String,
}

/// For each group (`(id, voting replicas as engine node ids)`), whether it keeps a majority
/// of its own voting replicas when the nodes in `down` are down. Returns `(groups, lost,
/// first ≤ 20 lost ids)`. A group with no replica listed is not counted.
pub fn groups_losing_majority(placement: &[(u64, Vec<u64>)], down: &HashSet<u64>) -> (u64, u64, Vec<u64>) {
    let mut groups = 0;
    let mut lost = Vec::new();
    for (id, replicas) in placement.iter().filter(|(_, r)| !r.is_empty()) {
        groups += 1;
        let needed = replicas.len() / 2 + 1;
        let alive = replicas.iter().filter(|r| !down.contains(r)).count();
        if alive < needed {
            lost.push(*id);
        }
    }
    let n = lost.len() as u64;
    lost.truncate(20);
    (groups, n, lost)
}

/// One round of observation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub nodes: BTreeMap<NodeId, NodeFigures>,
    pub cluster: ClusterFigures,
}

/// Parses Prometheus text exposition into samples `(name, labels, value)`, generically: any
/// labels (`store`, `tenant`, ...) are kept. Lines that do not parse are skipped, so a
/// truncated body yields the samples before the cut.
pub fn parse_prometheus(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let lines = text.lines().map(|l| Ok::<_, std::io::Error>(l.to_string()));
    let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else { return Vec::new() };
    scrape
        .samples
        .into_iter()
        .filter_map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let labels = s.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Some((s.metric, labels, v))
        })
        .collect()
}

/// [`parse_prometheus`] of only the samples named in `names` (exact metric names, so a
/// histogram's `_bucket`/`_sum`/`_count` series must be named as such), plus their `# TYPE`
/// and `# HELP` lines. The lines of other metrics are dropped before the parser sees them: a
/// CockroachDB `/_status/vars` has thousands of lines (v20.1.5: ~2,900) of which the poller
/// wants seven, and the parser's regexes over all of them were the poller's main cost.
pub fn parse_prometheus_only(text: &str, names: &[&str]) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let wanted = |line: &str| {
        let name = match line.strip_prefix('#') {
            Some(comment) => {
                let mut w = comment.split_whitespace();
                match w.next() {
                    Some("TYPE" | "HELP") => w.next().unwrap_or(""),
                    _ => return false,
                }
            }
            None => line.split(|c: char| c == '{' || c.is_whitespace()).next().unwrap_or(""),
        };
        names.contains(&name)
    };
    let kept: String = text.lines().filter(|l| wanted(l.trim_start())).flat_map(|l| [l, "\n"]).collect();
    parse_prometheus(&kept)
}

/// Sum of every sample named `name` (over all label sets), or `None` if there is none.
pub fn sum_metric(samples: &[(String, BTreeMap<String, String>, f64)], name: &str) -> Option<f64> {
    let mut found = false;
    let sum = samples
        .iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, _, v)| {
            found = true;
            *v
        })
        .sum();
    found.then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_lose_their_majority_by_their_own_replicas() {
        // 5 nodes, replication factor 3: r1 on 1,2,3; r2 on 3,4,5; r3 on 1,4,5; r4 on 2,3,4,5,1 (5 replicas).
        let placement = vec![(1, vec![1, 2, 3]), (2, vec![3, 4, 5]), (3, vec![1, 4, 5]), (4, vec![2, 3, 4, 5, 1]), (5, vec![])];
        let down = |ids: &[u64]| ids.iter().copied().collect::<HashSet<u64>>();
        assert_eq!(groups_losing_majority(&placement, &down(&[3])), (4, 0, vec![]), "any 1 node may fail");
        assert_eq!(groups_losing_majority(&placement, &down(&[2, 3])), (4, 1, vec![1]), "only r1 has 2 replicas on nodes 2 and 3");
        assert_eq!(groups_losing_majority(&placement, &down(&[4, 5])), (4, 2, vec![2, 3]));
        assert_eq!(groups_losing_majority(&placement, &down(&[3, 4, 5])), (4, 3, vec![2, 3, 4]), "r4 needs 3 of 5");
        assert_eq!(groups_losing_majority(&[], &down(&[1])), (0, 0, vec![]));
    }

    #[test]
    fn quorum_is_a_majority() {
        assert_eq!(Quorum::of(2, 3), Quorum { up: 2, needed: 2, ok: true, detail: None });
        assert!(!Quorum::of(1, 3).ok);
        assert_eq!(Quorum::of(3, 5).needed, 3);
        assert!(!Quorum::of(2, 4).ok, "4 members need 3");
    }

    #[test]
    fn prometheus_labels_are_parsed_generically_and_summed() {
        let text = "# TYPE ranges gauge\nranges{store=\"1\"} 40\nranges{store=\"2\",tenant=\"system\"} 2\nliveness_livenodes 3\n";
        let samples = parse_prometheus(text);
        assert_eq!(sum_metric(&samples, "ranges"), Some(42.0));
        assert_eq!(sum_metric(&samples, "liveness_livenodes"), Some(3.0));
        assert_eq!(sum_metric(&samples, "replicas"), None);
        assert!(samples.iter().any(|(_, l, _)| l.get("tenant").map(String::as_str) == Some("system")));
    }

    #[test]
    fn garbage_and_truncated_text_do_not_panic() {
        assert!(parse_prometheus("{{{ not prometheus\n\0\n").iter().all(|(n, _, _)| !n.is_empty()));
        let only = parse_prometheus_only(
            "# HELP ranges Number of ranges\n# TYPE ranges gauge\nranges{store=\"1\"} 42\nranges_unavailable{store=\"1\"} 3\n# TYPE replicas gauge\nreplicas{store=\"1\"} 9\n",
            &["ranges", "replicas"],
        );
        assert_eq!(only.iter().map(|(n, _, v)| (n.as_str(), *v)).collect::<Vec<_>>(), [("ranges", 42.0), ("replicas", 9.0)]);
        assert!(parse_prometheus_only("ranges_unavailable 3\n", &["ranges"]).is_empty(), "a name is matched whole, not as a prefix");
        let samples = parse_prometheus("ranges{store=\"1\"} 42\nreplicas{sto");
        assert_eq!(sum_metric(&samples, "ranges"), Some(42.0));
    }
}
