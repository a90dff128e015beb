//! Observing an etcd cluster: per member, `/v3/maintenance/status` (leader, term, has/is
//! leader) and a linearizable read (its own view of quorum); the cluster's leader, term and
//! observed quorum from them.
//!
//! Two small JSON requests per member and round. `/metrics` is not read: its ~100 KB of
//! text (etcd 3.4.23) carries the same two flags (`etcd_server_has_leader`,
//! `etcd_server_is_leader`), and parsing it every second was most of an idle daemon's CPU
//! (docs/BENCHMARKS.md, "The idle daemon").

use super::{describe_http_error, MaintenanceStatus};
use crate::engine::Member;
use crate::watch::{NodeFigures, Observation};

/// `(has_leader, is_leader)` from one member's status: it knows a leader when `leader` is
/// not 0, and leads when `leader` is its own `header.member_id`. The same raft state behind
/// the `etcd_server_has_leader` / `etcd_server_is_leader` gauges (etcd 3.4
/// `etcdserver/api/v3rpc/maintenance.go` `Status`: `Leader: uint64(ms.rg.Leader())`). The
/// gateway's proto3 JSON omits zero fields, so an answer without `leader` means 0; an answer
/// without `header` is not a status (an error body) and says nothing: `(None, None)`.
pub fn leader_flags(s: &MaintenanceStatus) -> (Option<bool>, Option<bool>) {
    let Some(me) = s.header.as_ref().and_then(|h| h.member_id) else { return (None, None) };
    let leader = s.leader.unwrap_or(0);
    (Some(leader != 0), Some(leader != 0 && me == leader))
}

/// One round of observation of the `live` members (`all` maps etcd's member ids to ours).
pub async fn observe(client: &reqwest::Client, live: &[Member], all: &[Member]) -> Observation {
    let per_member = live.iter().map(|m| async move {
        let status = async {
            let url = crate::tls::url(&m.ports.http_addr(), "/v3/maintenance/status");
            let r = client.post(&url).json(&serde_json::json!({})).send().await.ok()?;
            serde_json::from_str::<MaintenanceStatus>(&r.text().await.ok()?).ok()
        };
        let (status, read) = futures_util::join!(status, linearizable_read(client, m));
        (m.id, status, read)
    });
    let results = futures_util::future::join_all(per_member).await;
    // A paused (SIGSTOPped) or hung member has a live process but answers nothing.
    let answering = results.iter().filter(|(_, status, _)| status.is_some()).count();
    let mut obs = Observation::default();
    let mut leader_ids = Vec::new();
    for (id, status, read) in results {
        let f = obs.nodes.entry(id).or_insert_with(NodeFigures::default);
        f.sees_quorum = Some(read.is_ok());
        f.quorum_detail = Some(match read {
            Ok(ms) => format!("linearizable read in {ms} ms"),
            Err(e) => format!("linearizable read: {e}"),
        });
        if let Some(s) = status {
            (f.has_leader, f.is_leader) = leader_flags(&s);
            f.term = s.raft_term;
            if let Some(l) = s.leader.filter(|l| *l != 0) {
                leader_ids.push(l);
            }
        }
    }
    obs.cluster.quorum = Some(observed_quorum(&obs, answering, all.len()));
    let c = &mut obs.cluster;
    c.term = obs.nodes.values().filter_map(|f| f.term).max();
    c.has_leader = Some(obs.nodes.values().any(|f| f.has_leader == Some(true)));
    // The leader: the member that says it is — the one with the highest term, since a
    // leader cut off from its peers believes it leads until it steps down (CheckQuorum,
    // one election timeout) — else the one the others name.
    c.leader = obs
        .nodes
        .iter()
        .filter(|(_, f)| f.is_leader == Some(true))
        .max_by_key(|(_, f)| f.term.unwrap_or(0))
        .map(|(id, _)| *id)
        .or_else(|| leader_ids.iter().find_map(|l| all.iter().find(|m| m.engine_id == Some(*l)).map(|m| m.id)));
    if c.has_leader == Some(false) {
        c.leader = None;
    }
    obs
}

/// A linearizable read through member `m`: `POST /v3/kv/range` of one key with
/// `serializable: false` (the default; api/etcdserverpb/rpc.proto `RangeRequest`), which the
/// member answers only after the leader confirms, through a round of heartbeats to a
/// majority, that it still leads (ReadIndex). So it answers exactly when `m` is connected to a
/// leader that holds a quorum — observed, not counted. Returns the time taken in ms, or why
/// not (bounded by `client`'s timeout).
async fn linearizable_read(client: &reqwest::Client, m: &Member) -> std::result::Result<u128, String> {
    use base64::Engine as _;
    let start = std::time::Instant::now();
    let url = crate::tls::url(&m.ports.http_addr(), "/v3/kv/range");
    let key = base64::engine::general_purpose::STANDARD.encode("roachlab/quorum-probe");
    let body = serde_json::json!({ "key": key, "limit": "1", "serializable": false, "count_only": true });
    let r = client.post(&url).json(&body).send().await.map_err(|e| describe_http_error(&e))?;
    let status = r.status();
    let text = r.text().await.map_err(|e| describe_http_error(&e))?;
    if !status.is_success() {
        let why = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().or(v["message"].as_str()).map(str::to_string))
            .unwrap_or_else(|| text.trim().chars().take(120).collect());
        return Err(format!("HTTP {}: {why}", status.as_u16()));
    }
    Ok(start.elapsed().as_millis())
}

/// Quorum observed from the members' linearizable reads: ok when any answered (a leader
/// with a majority exists); `up` counts the `answering` members (those whose
/// `/v3/maintenance/status` answered this round: a stopped, paused or hung member does not),
/// `needed` is a majority of all `members`; `detail` names the members whose reads answered —
/// under a partition, the side that holds the majority.
pub fn observed_quorum(obs: &Observation, answering: usize, members: usize) -> crate::watch::Quorum {
    let answered: Vec<String> = obs.nodes.iter().filter(|(_, f)| f.sees_quorum == Some(true)).map(|(id, _)| id.to_string()).collect();
    let needed = members / 2 + 1;
    let detail = if answered.is_empty() {
        let why: Vec<String> = obs.nodes.iter().filter_map(|(id, f)| f.quorum_detail.as_ref().map(|d| format!("node {id}: {d}"))).collect();
        format!(
            "{answering} of {members} member(s) answering, a majority needs {needed} connected: no linearizable read answered ({})",
            why.join("; ")
        )
    } else {
        format!("linearizable reads answered through node(s) {} ({answering} of {members} members answering)", answered.join(", "))
    };
    crate::watch::Quorum { up: answering, needed, ok: !answered.is_empty(), detail: Some(detail) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_observed_from_linearizable_reads() {
        let mut obs = Observation::default();
        for (id, sees) in [(1, true), (2, true), (3, false)] {
            let f = obs.nodes.entry(id).or_default();
            f.sees_quorum = Some(sees);
            f.quorum_detail = Some(if sees { "linearizable read in 2 ms".into() } else { "linearizable read: timed out".into() });
        }
        let q = observed_quorum(&obs, 3, 3);
        assert!(q.ok && q.up == 3 && q.needed == 2);
        assert!(q.detail.unwrap().contains("answered through node(s) 1, 2"));
        for f in obs.nodes.values_mut() {
            f.sees_quorum = Some(false);
        }
        let q = observed_quorum(&obs, 4, 4);
        assert!(!q.ok && q.needed == 3, "a 2|2 split: no read answers");
        assert!(q.detail.unwrap().contains("node 3: linearizable read: timed out"));
    }
}
