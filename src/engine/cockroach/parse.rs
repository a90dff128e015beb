//! Parsers of CockroachDB's replies (contract §3, recorded from v20.1.5 in
//! `tests/fixtures/cockroach-v20.1.5/`; newer shapes from the docs and protos cited per test).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::Member;
use crate::engine::Readiness;
use crate::node::NodeId;
use crate::watch::{parse_prometheus_only, sum_metric, Liveness};
use crate::{Error, Result};

/// The 503 body of `/health?ready=1`: gRPC-gateway JSON `{"error","message","code":14,...}`.
#[derive(Debug, Deserialize)]
struct GatewayError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// Reads a readiness reply of `GET /health?ready=1` (contract §3): 200 is ready; a 503 carries
/// the reason in its gRPC-gateway body (`node is shutting down`, `node is not healthy`,
/// `node is waiting for cluster initialization`).
pub fn judge_readiness(status: u16, body: &str) -> Readiness {
    if status == 200 {
        return Readiness { ready: true, detail: None };
    }
    let reason = serde_json::from_str::<GatewayError>(body.trim()).ok().and_then(|e| e.message.or(e.error)).filter(|m| !m.is_empty());
    Readiness { ready: false, detail: Some(reason.unwrap_or_else(|| format!("HTTP {status}"))) }
}

/// `/_status/nodes` (contract §3), reduced to what maps a node's RPC port to its node ID.
#[derive(Debug, Deserialize)]
pub struct NodesResponse {
    #[serde(default)]
    pub nodes: Vec<NodeStatus>,
}

/// One entry of `/_status/nodes`.
#[derive(Debug, Deserialize)]
pub struct NodeStatus {
    pub desc: NodeDescriptor,
}

/// `desc` of a node status: `{"nodeId": 1, "address": {"addressField": "localhost:26258"}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeDescriptor {
    pub node_id: u64,
    pub address: Address,
}

/// `{"networkField": "tcp", "addressField": "host:port"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub address_field: String,
}

/// Maps each member to CockroachDB's node ID by the RPC port in `desc.address.addressField`.
pub fn node_ids_from_status(body: &str, members: &[Member]) -> Result<Vec<(NodeId, u64)>> {
    let resp: NodesResponse =
        serde_json::from_str(body).map_err(|e| Error::engine("cockroach", format!("cannot parse /_status/nodes: {e}")))?;
    let mut out = Vec::new();
    for n in resp.nodes {
        let port = n.desc.address.address_field.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
        if let Some(m) = members.iter().find(|m| Some(m.ports.service) == port) {
            out.push((m.id, n.desc.node_id));
        }
    }
    Ok(out)
}

/// `cockroach init` succeeded, or found the cluster already initialised (contract §1: exit 1
/// with `cluster has already been initialized`, which counts as success when re-running `up`).
pub fn init_outcome(success: bool, stdout: &str, stderr: &str) -> Result<String> {
    if success {
        let line = stdout.lines().find(|l| !l.trim().is_empty()).unwrap_or("Cluster successfully initialized");
        return Ok(line.trim().to_string());
    }
    if stderr.contains("already been initialized") || stdout.contains("already been initialized") {
        return Ok("cluster has already been initialized".into());
    }
    Err(Error::engine("cockroach", format!("`cockroach init` failed: {}", last_lines(stderr, stdout))))
}

pub(crate) fn last_lines(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() { stdout } else { stderr };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

/// `/_admin/v1/liveness` (contract §3): `{"livenesses":[{"nodeId":1,"draining":false,
/// "decommissioning":false | "membership":0,...}],"statuses":{"1":3}}`.
#[derive(Debug, Deserialize)]
struct LivenessResponse {
    #[serde(default)]
    livenesses: Vec<LivenessEntry>,
    #[serde(default)]
    statuses: HashMap<String, i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LivenessEntry {
    node_id: u64,
    #[serde(default)]
    draining: bool,
    /// v20.1 and older.
    #[serde(default)]
    decommissioning: bool,
    /// Newer versions: 0 ACTIVE, 1 DECOMMISSIONING, 2 DECOMMISSIONED (an int from the
    /// gateway; accept the enum name too).
    #[serde(default)]
    membership: Option<serde_json::Value>,
}

/// Parses `/_admin/v1/liveness` into each CockroachDB node ID's [`Liveness`].
///
/// `statuses` (NodeLivenessStatus): 0 UNKNOWN, 1 DEAD, 2 UNAVAILABLE (SUSPECT), 3 LIVE,
/// 4 DECOMMISSIONING, 5 DECOMMISSIONED, 6 DRAINING. v20.1 has no 6: a draining node is 2 (or 3
/// until `drain_wait` has passed) with `"draining": true`, which is read as DRAINING, as newer
/// versions report it. A live node whose membership says decommissioning is DECOMMISSIONING.
/// Accepts both the old `decommissioning` bool and the new `membership` enum.
pub fn parse_liveness(body: &str) -> Result<BTreeMap<u64, Liveness>> {
    let resp: LivenessResponse =
        serde_json::from_str(body).map_err(|e| Error::engine("cockroach", format!("cannot parse /_admin/v1/liveness: {e}")))?;
    let entries: HashMap<u64, &LivenessEntry> = resp.livenesses.iter().map(|l| (l.node_id, l)).collect();
    let mut out = BTreeMap::new();
    for (id, status) in &resp.statuses {
        let Ok(id) = id.parse::<u64>() else { continue };
        let mut l = match status {
            1 => Liveness::Dead,
            2 => Liveness::Suspect,
            3 => Liveness::Live,
            4 => Liveness::Decommissioning,
            5 => Liveness::Decommissioned,
            6 => Liveness::Draining,
            _ => Liveness::Unknown,
        };
        if let Some(e) = entries.get(&id) {
            let decommissioning = e.decommissioning
                || matches!(&e.membership, Some(serde_json::Value::Number(n)) if n.as_u64() == Some(1))
                || matches!(&e.membership, Some(serde_json::Value::String(s)) if s == "DECOMMISSIONING");
            if matches!(l, Liveness::Live | Liveness::Suspect) {
                if decommissioning {
                    l = Liveness::Decommissioning;
                } else if e.draining {
                    l = Liveness::Draining;
                }
            }
        }
        out.insert(id, l);
    }
    // A node with a liveness record but no status is UNKNOWN (contract §3).
    for id in entries.keys() {
        out.entry(*id).or_insert(Liveness::Unknown);
    }
    Ok(out)
}

/// The figures roachlab reads from one node's `/_status/vars` (Prometheus text; store
/// metrics carry `{store="N"}` and are summed over stores).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VarsFigures {
    pub ranges: Option<u64>,
    pub ranges_underreplicated: Option<u64>,
    pub ranges_unavailable: Option<u64>,
    pub ranges_overreplicated: Option<u64>,
    pub replicas: Option<u64>,
    pub leaseholders: Option<u64>,
    pub live_nodes: Option<u64>,
}

/// Parses `/_status/vars`. Errors when the text holds none of these metrics.
pub fn parse_vars(text: &str) -> Result<VarsFigures> {
    const NAMES: [&str; 7] = [
        "ranges",
        "ranges_underreplicated",
        "ranges_unavailable",
        "ranges_overreplicated",
        "replicas",
        "replicas_leaseholders",
        "liveness_livenodes",
    ];
    let samples = parse_prometheus_only(text, &NAMES);
    let get = |n: &str| sum_metric(&samples, n).map(|v| v.max(0.0) as u64);
    let f = VarsFigures {
        ranges: get("ranges"),
        ranges_underreplicated: get("ranges_underreplicated"),
        ranges_unavailable: get("ranges_unavailable"),
        ranges_overreplicated: get("ranges_overreplicated"),
        replicas: get("replicas"),
        leaseholders: get("replicas_leaseholders"),
        live_nodes: get("liveness_livenodes"),
    };
    if f == VarsFigures::default() {
        return Err(Error::engine("cockroach", "no CockroachDB metrics in the /_status/vars reply"));
    }
    Ok(f)
}

/// The replica counts of `node` in `cockroach node decommission` output: a tab-separated
/// table printed again each time the count changes (header `columns`, which differ by
/// release: [`super::version::Facts::decommission_columns`]). Returns `(first, last)` seen;
/// `None` when no row names the node.
pub fn decommission_replicas(out: &str, columns: &[&str], node: u64) -> Option<(u64, u64)> {
    let id_col = columns.iter().position(|c| *c == "id")?;
    let rep_col = columns.iter().position(|c| *c == "replicas")?;
    let counts: Vec<u64> = out
        .lines()
        .map(|l| l.split('\t').map(str::trim).collect::<Vec<_>>())
        .filter(|f| f.len() == columns.len() && f[id_col].parse::<u64>().ok() == Some(node))
        .filter_map(|f| f[rep_col].parse().ok())
        .collect();
    Some((*counts.first()?, *counts.last()?))
}

/// Summarises `cockroach node drain` output (contract §2: `node is draining... remaining: N`
/// lines, then `(complete)` and `ok`): the first and last remaining counts — leases and
/// other work the node still had to hand over. v20.1.5 prints the progress lines on stderr
/// and only `ok` on stdout (`tests/fixtures/cockroach-v20.1.5-oss/02-drain`): pass both.
pub fn drain_summary(out: &str) -> String {
    let counts: Vec<u64> = out
        .lines()
        .filter_map(|l| l.split("remaining:").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .collect();
    match (counts.first(), counts.last()) {
        (Some(a), Some(b)) => format!("leases and Raft leadership handed over (remaining {a} → {b})"),
        _ => "leases and Raft leadership handed over".into(),
    }
}

/// Adds optional counts, keeping `None` only if every term is `None`.
pub(crate) fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{LabSpec, Overrides};
    use crate::engine::Engine;

    fn members(n: u32) -> Vec<Member> {
        let spec = LabSpec::load(None, &Overrides::default()).unwrap();
        let e = super::super::Cockroach::new(&spec, None);
        (1..=n).map(|id| Member { id, ports: e.node_ports(id), engine_id: None }).collect()
    }

    pub(crate) fn fixture(path: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cockroach-v20.1.5").join(path);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// The body of a recorded `curl -si` reply (after the blank line that ends the headers),
    /// without the gRPC trailer curl prints after a chunked body.
    pub(crate) fn http_body(raw: &str) -> (u16, String) {
        let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = raw.split_once("\r\n\r\n").or_else(|| raw.split_once("\n\n")).unwrap().1;
        let body = body.split("Grpc-Trailer-Content-Type").next().unwrap();
        (status, body.to_string())
    }

    #[test]
    fn readiness_of_recorded_replies() {
        let (s, b) = http_body(&fixture("01-healthy-3/health-ready.txt"));
        assert_eq!(judge_readiness(s, &b), Readiness { ready: true, detail: None });
        let (s, b) = http_body(&fixture("02-draining/health-ready.txt"));
        assert_eq!(judge_readiness(s, &b).detail.as_deref(), Some("node is shutting down"));
        let (s, b) = http_body(&fixture("05-quorum-loss/health-ready-t05.txt"));
        assert_eq!(judge_readiness(s, &b).detail.as_deref(), Some("node is not healthy"));
    }

    #[test]
    fn readiness_of_malformed_or_truncated_bodies_does_not_panic() {
        assert_eq!(judge_readiness(503, "{\"error\": \"node is sh").detail.as_deref(), Some("HTTP 503"));
        assert_eq!(judge_readiness(500, "").detail.as_deref(), Some("HTTP 500"));
        assert_eq!(judge_readiness(503, "[1,2]").detail.as_deref(), Some("HTTP 503"));
    }

    #[test]
    fn node_ids_map_by_rpc_port_from_recorded_status() {
        let ms = members(3);
        let mut ids = node_ids_from_status(&fixture("01-healthy-3/nodes.json"), &ms).unwrap();
        ids.sort();
        assert_eq!(ids, vec![(1, 1), (2, 2), (3, 3)]);
        assert!(node_ids_from_status("{\"nodes\": [", &ms).is_err());
    }

    fn liveness_of(path: &str) -> Vec<(u64, Liveness)> {
        parse_liveness(&fixture(path)).unwrap().into_iter().collect()
    }

    #[test]
    fn liveness_in_every_recorded_state() {
        use Liveness::*;
        assert_eq!(liveness_of("01-healthy-3/liveness.json"), vec![(1, Live), (2, Live), (3, Live)]);
        // v20.1: draining shows as UNAVAILABLE with draining=true.
        assert_eq!(liveness_of("02b-draining-timeline/liveness-t16.json"), vec![(1, Live), (2, Live), (3, Draining)]);
        assert_eq!(liveness_of("03-killed-suspect/liveness-t12.json"), vec![(1, Live), (2, Live), (3, Suspect)]);
        assert_eq!(liveness_of("04-killed-dead/liveness.json"), vec![(1, Live), (2, Live), (3, Dead)]);
        assert_eq!(liveness_of("05-quorum-loss/liveness-t20.json"), vec![(1, Suspect), (2, Suspect), (3, Suspect)]);
        assert_eq!(liveness_of("07-decommission/liveness-during.json")[3], (4, Decommissioning));
        assert_eq!(liveness_of("07-decommission/liveness-node4-stopped-past-dead-threshold.json")[3], (4, Decommissioned));
    }

    #[test]
    fn liveness_in_the_newer_shape_with_membership_and_draining_status() {
        // The v23+ shape given in shared/cockroach-contract.md §3.
        let body = r#"{"livenesses":[
            {"nodeId":1,"epoch":"3","expiration":{"wallTime":"1","logical":0},"draining":false,"membership":0},
            {"nodeId":2,"epoch":"3","expiration":{"wallTime":"1","logical":0},"draining":true,"membership":0},
            {"nodeId":3,"epoch":"3","expiration":{"wallTime":"1","logical":0},"draining":false,"membership":1},
            {"nodeId":4,"epoch":"3","expiration":{"wallTime":"1","logical":0},"draining":false,"membership":2}],
            "statuses":{"1":3,"2":6,"3":3,"4":5}}"#;
        use Liveness::*;
        let got: Vec<_> = parse_liveness(body).unwrap().into_iter().collect();
        assert_eq!(got, vec![(1, Live), (2, Draining), (3, Decommissioning), (4, Decommissioned)]);
        // A record without a status is UNKNOWN.
        let got = parse_liveness(r#"{"livenesses":[{"nodeId":7}],"statuses":{}}"#).unwrap();
        assert_eq!(got.get(&7), Some(&Unknown));
    }

    #[test]
    fn liveness_malformed_or_truncated_is_an_error_not_a_panic() {
        let full = fixture("01-healthy-3/liveness.json");
        let err = parse_liveness(&full[..full.len() / 2]).unwrap_err().to_string();
        assert!(err.contains("cannot parse /_admin/v1/liveness"), "{err}");
        assert!(parse_liveness("").is_err());
        assert!(parse_liveness("<html>").is_err());
    }

    #[test]
    fn vars_are_summed_over_stores_and_nodes() {
        let n1 = parse_vars(&fixture("01-healthy-3/vars-node1.prom")).unwrap();
        let n2 = parse_vars(&fixture("01-healthy-3/vars-node2.prom")).unwrap();
        assert_eq!((n1.ranges, n1.ranges_underreplicated, n1.ranges_unavailable, n1.live_nodes), (Some(42), Some(0), Some(0), Some(3)));
        assert_eq!((n2.ranges, n2.replicas), (Some(0), Some(42)), "store 2 does not count ranges but holds replicas");
        let killed = parse_vars(&fixture("03-killed-suspect/vars-node1-t12.prom")).unwrap();
        assert_eq!((killed.ranges_underreplicated, killed.live_nodes, killed.leaseholders), (Some(42), Some(2), Some(19)));
        // Quorum loss on v20.1: nobody counts ranges, so unavailable stays 0 (contract §9).
        let lost = parse_vars(&fixture("05-quorum-loss/vars-node1-t20.prom")).unwrap();
        assert_eq!((lost.ranges, lost.ranges_unavailable, lost.live_nodes), (Some(0), Some(0), Some(0)));
        assert!(parse_vars(
            "# nothing here
"
        )
        .is_err());
        let text = fixture("01-healthy-3/vars-node1.prom");
        // Cut at a third: the samples before the cut survive, the rest are absent.
        let cut = parse_vars(&text[..text.len() / 3]).unwrap();
        assert_eq!((cut.leaseholders, cut.ranges_underreplicated), (Some(19), None));
    }

    #[test]
    fn decommission_progress_from_recorded_and_documented_output() {
        // Recorded from v20.1.5 (5 columns): 29 replicas down to 0.
        let v20_1 = crate::engine::cockroach::version::FACTS[0].decommission_columns;
        assert_eq!(decommission_replicas(&fixture("07-decommission/decommission-output.txt"), v20_1, 4), Some((29, 0)));
        assert_eq!(decommission_replicas(&fixture("07-decommission/decommission-output.txt"), v20_1, 3), None);
        // v20.2+ adds `membership` (pkg/cli/node.go decommissionResponseValueToRows); written from the source.
        let newer = crate::engine::cockroach::version::FACTS[1].decommission_columns;
        let out = "id\tis_live\treplicas\tis_decommissioning\tmembership\tis_draining\n4\ttrue\t12\ttrue\tdecommissioning\tfalse\n                   4\ttrue\t0\ttrue\tdecommissioning\tfalse\n\nNo more data reported on target nodes.\n";
        assert_eq!(decommission_replicas(out, newer, 4), Some((12, 0)));
        assert_eq!(decommission_replicas("garbage\t\t", newer, 4), None);
    }

    #[test]
    fn drain_output_is_summarised() {
        // The shape contract §2 documents (pkg/cli/node.go prints "ok" at the end).
        let out = "node is draining... remaining: 27\nnode is draining... remaining: 3\nnode is draining... remaining: 0 (complete)\nok\n";
        assert_eq!(drain_summary(out), "leases and Raft leadership handed over (remaining 27 → 0)");
        assert_eq!(drain_summary("ok\n"), "leases and Raft leadership handed over");
    }

    #[test]
    fn init_already_initialised_counts_as_success() {
        assert_eq!(init_outcome(true, &fixture("01-healthy-3/init-output.txt"), "").unwrap(), "Cluster successfully initialized");
        let stderr = "ERROR: cluster has already been initialized\nFailed running \"init\"\n";
        assert!(init_outcome(false, "", stderr).is_ok());
        let err = init_outcome(false, "", "ERROR: connection refused\n").unwrap_err().to_string();
        assert!(err.contains("connection refused"), "{err}");
    }
}
