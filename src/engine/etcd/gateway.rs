//! etcd's v3 JSON gateway (the HTTP form of its gRPC API, `api/etcdserverpb/rpc.proto`,
//! etcd 3.4): the replies roachlab reads (`/health`, `member list`/`add`, `maintenance
//! status`) and the calls it makes (membership changes on the first member that answers,
//! leadership transfer).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::engine::{describe_http_error, http_client, Member, Readiness};
use crate::node::{NodeId, NodePorts};
use crate::{Error, Result};

/// `GET /health` → `{"health":"true"}` (3.4 may add `"reason"`). etcd answers 503 with
/// `"health":"false"` when the member has no leader.
#[derive(Debug, Deserialize)]
struct Health {
    health: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Judges a `GET /health` reply.
pub fn judge_readiness(status: u16, body: &str) -> Readiness {
    match serde_json::from_str::<Health>(body.trim()) {
        Ok(h) if status == 200 && h.health == "true" => Readiness { ready: true, detail: None },
        Ok(h) => Readiness {
            ready: false,
            detail: Some(h.reason.filter(|r| !r.is_empty()).unwrap_or_else(|| format!("health {} (HTTP {status})", h.health))),
        },
        Err(_) => Readiness { ready: false, detail: Some(format!("HTTP {status}, unreadable /health body")) },
    }
}

/// One member in `member list` / `member add` replies. IDs are uint64, which the gateway
/// writes as JSON strings.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct EtcdMember {
    #[serde(rename = "ID", deserialize_with = "u64_from_string_or_number")]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
}

/// `{"header":{...},"members":[...]}`.
#[derive(Debug, Deserialize)]
pub struct MemberList {
    #[serde(default)]
    pub members: Vec<EtcdMember>,
}

pub(super) fn u64_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        N(u64),
    }
    match Either::deserialize(d)? {
        Either::S(s) => s.parse().map_err(serde::de::Error::custom),
        Either::N(n) => Ok(n),
    }
}

/// POSTs `body` to `path` on the first member that answers; etcd forwards membership changes
/// to the leader itself. etcd refuses membership changes with `503 etcdserver: unhealthy
/// cluster` until every member has been connected for a few seconds (its strict reconfig
/// check), so that answer is retried for up to 20 s.
pub(super) async fn post_any(members: &[&Member], path: &str, body: serde_json::Value) -> Result<String> {
    let client = http_client(Duration::from_secs(5));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut errors = Vec::new();
        let mut transient = false;
        for m in members {
            let url = crate::tls::url(&m.ports.http_addr(), path);
            match client.post(&url).json(&body).send().await {
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok(text);
                    }
                    transient |= text.contains("unhealthy cluster");
                    errors.push(format!("node {}: HTTP {status}: {}", m.id, text.trim()));
                }
                Err(e) => errors.push(format!("node {}: {}", m.id, describe_http_error(&e))),
            }
        }
        if !transient || std::time::Instant::now() > deadline {
            // etcd 3.4 (`--strict-reconfig-check`, on by default; server.go `mayAddMember`)
            // refuses a membership change unless every voting member has been connected to the
            // leader for 5 s (`HealthInterval`): a member down, or just back, is the usual why.
            let hint = if transient {
                "; etcd refuses a membership change while a member is down or reconnected less than 5 s ago \
                 (--strict-reconfig-check): start every member (`roachlab node start N`), wait a few seconds, and try again"
            } else {
                ""
            };
            return Err(Error::engine("etcd", format!("POST {path} failed on every member: {}{hint}", errors.join("; "))));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(super) async fn member_list(members: &[&Member]) -> Result<MemberList> {
    let text = post_any(members, "/v3/cluster/member/list", serde_json::json!({})).await?;
    serde_json::from_str(&text).map_err(|e| Error::engine("etcd", format!("cannot parse member list: {e}")))
}

/// Our ids of the members of `list` (etcd's membership), matched by peer URL among `all` and
/// `new`. A member roachlab does not know is an error naming it.
pub(super) fn membership_ids(list: &MemberList, all: &[Member], new: Member) -> Result<Vec<NodeId>> {
    let ours: Vec<&Member> = all.iter().chain(std::iter::once(&new)).collect();
    let mut ids = Vec::new();
    for m in &list.members {
        let found = ours.iter().find(|o| m.peer_urls.iter().any(|u| is_peer_of(u, &o.ports)));
        match found {
            Some(o) if !ids.contains(&o.id) => ids.push(o.id),
            Some(_) => {}
            None => {
                return Err(Error::engine(
                    "etcd",
                    format!("the cluster has a member this lab does not know (ID {:x}, peer URLs {:?})", m.id, m.peer_urls),
                ))
            }
        }
    }
    if !ids.contains(&new.id) {
        return Err(Error::engine("etcd", "the member add reply does not list the new member"));
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Whether etcd's peer URL `url` (`http://` or, in a secure lab, `https://`) is `ports`'.
fn is_peer_of(url: &str, ports: &NodePorts) -> bool {
    let addr = ports.peer_addr().unwrap_or_default();
    url.split_once("://").is_some_and(|(_, rest)| rest.trim_end_matches('/') == addr)
}

/// Finds our node in etcd's member list by its peer URL.
pub(super) fn find_member<'a>(list: &'a MemberList, ports: &NodePorts) -> Option<&'a EtcdMember> {
    list.members.iter().find(|m| m.peer_urls.iter().any(|u| is_peer_of(u, ports)))
}

/// `POST /v3/maintenance/status` (served by the member itself, no quorum needed):
/// `{"leader":"<member id>","raftTerm":"2",...}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceStatus {
    #[serde(default, deserialize_with = "opt_u64")]
    pub leader: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    pub raft_term: Option<u64>,
    /// `header.member_id`: the member that answered.
    #[serde(default)]
    pub header: Option<ResponseHeader>,
}

/// `ResponseHeader` of etcd's v3 API (`api/etcdserverpb/rpc.proto`): ids and term of the
/// member that answered.
#[derive(Debug, Deserialize)]
pub struct ResponseHeader {
    #[serde(default, deserialize_with = "opt_u64")]
    pub member_id: Option<u64>,
}

/// `POST /v3/maintenance/status` of one member, bounded by `client`'s timeout.
pub(super) async fn status_of(client: &reqwest::Client, m: &Member) -> std::result::Result<MaintenanceStatus, String> {
    let url = crate::tls::url(&m.ports.http_addr(), "/v3/maintenance/status");
    let r = client.post(&url).json(&serde_json::json!({})).send().await.map_err(|e| describe_http_error(&e))?;
    let text = r.text().await.map_err(|e| describe_http_error(&e))?;
    serde_json::from_str(&text).map_err(|e| format!("unreadable status: {e}"))
}

/// Moves Raft leadership away from `node` if it leads, and waits (≤ `deadline`) until
/// another member leads. Leadership transfer: etcd's MoveLeader, sent to the leader itself
/// (`POST /v3/maintenance/transfer-leadership {"targetID": …}`, api/etcdserverpb/rpc.proto,
/// etcd 3.3+); raft's leadership-transfer extension makes the target campaign at once, so
/// no election timeout passes with no leader.
pub(super) async fn move_leadership(client: &reqwest::Client, node: Member, others: &[Member], deadline: Duration) -> Result<Vec<String>> {
    let start = std::time::Instant::now();
    let name = |id: Option<u64>, all: &[Member]| {
        id.and_then(|id| all.iter().find(|m| m.engine_id == Some(id)).map(|m| format!("node {}", m.id))).unwrap_or_else(|| "none".into())
    };
    let mut all: Vec<Member> = others.to_vec();
    all.push(node);
    let st = status_of(client, &node).await.map_err(|e| Error::engine("etcd", format!("node {}: {e}", node.id)))?;
    let me = st.header.as_ref().and_then(|h| h.member_id).or(node.engine_id);
    let term = st.raft_term.unwrap_or(0);
    if st.leader.is_none() || st.leader != me {
        return Ok(vec![format!("node {} is a follower (leader {}, term {term}): no leadership to move", node.id, name(st.leader, &all))]);
    }
    let target = others
        .iter()
        .find(|m| m.engine_id.is_some())
        .ok_or_else(|| Error::Refused(format!("node {} leads and no other ready member is known to take over", node.id)))?;
    let url = crate::tls::url(&node.ports.http_addr(), "/v3/maintenance/transfer-leadership");
    let body = serde_json::json!({ "targetID": target.engine_id.unwrap_or(0).to_string() });
    let resp = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| Error::engine("etcd", format!("MoveLeader: {}", describe_http_error(&e))))?;
    if !resp.status().is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(Error::engine("etcd", format!("MoveLeader to node {} refused: {}", target.id, text.trim())));
    }
    // Confirmed by the target itself.
    loop {
        if let Ok(t) = status_of(client, target).await {
            if t.leader.is_some() && t.leader != me {
                return Ok(vec![format!(
                    "leadership moved from node {} to {} (term {term} → {}) in {} ms",
                    node.id,
                    name(t.leader, &all),
                    t.raft_term.unwrap_or(0),
                    start.elapsed().as_millis()
                )]);
            }
        }
        if start.elapsed() > deadline {
            return Err(Error::Timeout {
                what: format!("another member to lead after MoveLeader from node {}", node.id),
                after_ms: deadline.as_millis() as u64,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "u64_from_string_or_number")] u64);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EngineKind, LabSpec, Overrides};
    use crate::engine::etcd::Etcd;
    use crate::engine::Engine;

    #[test]
    fn a_joiner_is_told_etcds_membership_not_the_ready_members() {
        let e = Etcd::new(&LabSpec::load(None, &Overrides { engine: Some(EngineKind::Etcd), ..Default::default() }).unwrap());
        let ms: Vec<Member> = (1..=4).map(|id| Member { id, ports: e.node_ports(id), engine_id: None }).collect();
        let url = |i: usize| e.peer_url(&ms[i].ports);
        // MemberAdd's reply (etcd 3.4): every member, node 3 among them even if it is down,
        // and the new one without a name yet.
        let reply = format!(
            r#"{{"header":{{"revision":"9"}},"member":{{"ID":"77","peerURLs":["{n4}"]}},"members":[
               {{"ID":"11","name":"node-1","peerURLs":["{n1}"]}},{{"ID":"12","name":"node-2","peerURLs":["{n2}"]}},
               {{"ID":"13","name":"node-3","peerURLs":["{n3}"]}},{{"ID":"77","peerURLs":["{n4}"]}}]}}"#,
            n1 = url(0),
            n2 = url(1),
            n3 = url(2),
            n4 = url(3)
        );
        let list: MemberList = serde_json::from_str(&reply).unwrap();
        assert_eq!(membership_ids(&list, &ms[..3], ms[3]).unwrap(), vec![1, 2, 3, 4]);
        // A member roachlab does not know is named, not silently dropped.
        let stranger = reply.replace(&url(2), "http://127.0.0.1:1");
        let list: MemberList = serde_json::from_str(&stranger).unwrap();
        assert!(membership_ids(&list, &ms[..3], ms[3]).unwrap_err().to_string().contains("does not know"));
    }

    #[test]
    fn health_replies() {
        assert!(judge_readiness(200, r#"{"health":"true"}"#).ready);
        assert!(judge_readiness(200, r#"{"health":"true","reason":""}"#).ready);
        let r = judge_readiness(503, r#"{"health":"false","reason":"RAFT NO LEADER"}"#);
        assert_eq!(r.detail.as_deref(), Some("RAFT NO LEADER"));
        assert!(!judge_readiness(200, r#"{"health":"tr"#).ready);
    }

    #[test]
    fn member_ids_parse_from_strings_or_numbers() {
        let list: MemberList = serde_json::from_str(
            r#"{"header":{"raft_term":"2"},"members":[{"ID":"10276657743932975437","name":"node-1","peerURLs":["http://127.0.0.1:23891"]},{"ID":7,"peerURLs":["http://127.0.0.1:23892"]}]}"#,
        )
        .unwrap();
        assert_eq!(list.members[0].id, 10276657743932975437);
        assert_eq!(list.members[1].id, 7);
        let p = NodePorts::loopback(1, 1, Some(23892));
        assert_eq!(find_member(&list, &p).unwrap().id, 7);
    }
}
