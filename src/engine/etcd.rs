//! etcd 3.4+ (Debian's `etcd-server`): a static initial cluster, membership changes through
//! the v3 JSON gateway (`POST /v3/cluster/member/{list,add,remove}`, the HTTP form of
//! `etcdctl member ...`), readiness from `GET /health` (`{"health":"true"}`).

use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use nix::sys::signal::Signal;
use serde::{Deserialize, Deserializer};

use super::{describe_http_error, find_binary, http_client, Engine, Member, Readiness, StartContext, StartMode};
use crate::config::{EngineKind, EtcdSpec, LabSpec, PortsSpec};
use crate::lab::Lab;
use crate::node::{NodeId, NodePorts};
use crate::ports::PortClaim;
use crate::{Error, Result};

/// How to install etcd when it is missing.
pub const INSTALL_HINT: &str =
    "Install it with `sudo apt-get install etcd-server` (Debian/Ubuntu), or point $ROACHLAB_ETCD or `[etcd] binary` at an etcd binary.";

/// The etcd engine.
#[derive(Debug, Clone)]
pub struct Etcd {
    ports: PortsSpec,
    spec: EtcdSpec,
}

impl Etcd {
    pub fn new(spec: &LabSpec) -> Self {
        Self { ports: spec.ports.clone(), spec: spec.etcd.clone() }
    }

    /// The member name of node `id`.
    pub fn member_name(id: NodeId) -> String {
        format!("node-{id}")
    }

    fn peer_url(ports: &NodePorts) -> String {
        format!("http://127.0.0.1:{}", ports.peer.expect("etcd nodes have a peer port"))
    }
}

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

fn u64_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
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
async fn post_any(members: &[&Member], path: &str, body: serde_json::Value) -> Result<String> {
    let client = http_client(Duration::from_secs(5));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut errors = Vec::new();
        let mut transient = false;
        for m in members {
            let url = format!("http://127.0.0.1:{}{path}", m.ports.http);
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
            return Err(Error::engine("etcd", format!("POST {path} failed on every member: {}", errors.join("; "))));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn member_list(members: &[&Member]) -> Result<MemberList> {
    let text = post_any(members, "/v3/cluster/member/list", serde_json::json!({})).await?;
    serde_json::from_str(&text).map_err(|e| Error::engine("etcd", format!("cannot parse member list: {e}")))
}

/// Finds our node in etcd's member list by its peer URL.
fn find_member<'a>(list: &'a MemberList, ports: &NodePorts) -> Option<&'a EtcdMember> {
    let url = Etcd::peer_url(ports);
    list.members.iter().find(|m| m.peer_urls.iter().any(|u| u == &url))
}

impl Engine for Etcd {
    fn kind(&self) -> EngineKind {
        EngineKind::Etcd
    }

    fn node_ports(&self, id: NodeId) -> NodePorts {
        let i = (id - 1) as u16;
        let client = self.ports.base + i;
        NodePorts { service: client, http: client, peer: Some(self.ports.peer_base + i) }
    }

    fn port_claims(&self, id: NodeId) -> Vec<PortClaim> {
        let p = self.node_ports(id);
        vec![
            PortClaim::new(p.service, format!("node {id} etcd client")),
            PortClaim::new(p.peer.unwrap_or_default(), format!("node {id} etcd peer")),
        ]
    }

    fn binary(&self) -> Result<PathBuf> {
        find_binary("ROACHLAB_ETCD", self.spec.binary.as_deref(), "etcd", INSTALL_HINT)
    }

    fn start_args(&self, ctx: &StartContext<'_>) -> Vec<String> {
        let p = ctx.node.ports;
        let client = format!("http://127.0.0.1:{}", p.service);
        let peer = Self::peer_url(&p);
        let initial_cluster =
            ctx.members.iter().map(|m| format!("{}={}", Self::member_name(m.id), Self::peer_url(&m.ports))).collect::<Vec<_>>().join(",");
        // On a restart the data dir already holds the membership; etcd ignores the
        // --initial-* flags then, so they are the same for every mode but the state.
        let state = if ctx.mode == StartMode::Join { "existing" } else { "new" };
        let mut args = vec![
            format!("--name={}", Self::member_name(ctx.node.id)),
            format!("--data-dir={}", ctx.lab.store_dir(ctx.node.id).display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-state={state}"),
            format!("--initial-cluster-token=roachlab-{}", ctx.lab.dir().display()),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ];
        args.extend(self.spec.extra_args.iter().cloned());
        args
    }

    fn readiness_path(&self) -> &'static str {
        "/health"
    }

    fn judge_readiness(&self, status: u16, body: &str) -> Readiness {
        judge_readiness(status, body)
    }

    fn frontend_name(&self) -> &'static str {
        "etcd"
    }

    fn bootstrap<'a>(&'a self, _lab: &'a Lab, _members: &'a [Member]) -> BoxFuture<'a, Result<Option<String>>> {
        // A static --initial-cluster bootstraps itself once a majority is up.
        Box::pin(async { Ok(None) })
    }

    fn configure<'a>(&'a self, _members: &'a [Member], _down: Duration) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn engine_ids<'a>(&'a self, members: &'a [Member]) -> BoxFuture<'a, Result<Vec<(NodeId, u64)>>> {
        Box::pin(async move {
            let refs: Vec<&Member> = members.iter().collect();
            let list = member_list(&refs).await?;
            Ok(members.iter().filter_map(|m| find_member(&list, &m.ports).map(|em| (m.id, em.id))).collect())
        })
    }

    fn prepare_join<'a>(&'a self, members: &'a [Member], new: Member) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let refs: Vec<&Member> = members.iter().filter(|m| m.id != new.id).collect();
            let body = serde_json::json!({ "peerURLs": [Self::peer_url(&new.ports)] });
            post_any(&refs, "/v3/cluster/member/add", body).await?;
            Ok(())
        })
    }

    fn decommission<'a>(&'a self, _lab: &'a Lab, members: &'a [Member], node: Member) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // Ask the others first: the removed member stops serving once it learns of it.
            let mut refs: Vec<&Member> = members.iter().filter(|m| m.id != node.id).collect();
            refs.push(&node);
            let list = member_list(&refs).await?;
            let Some(member) = find_member(&list, &node.ports) else {
                return Err(Error::engine("etcd", format!("node {} is not in the member list (already removed?)", node.id)));
            };
            let body = serde_json::json!({ "ID": member.id.to_string() });
            post_any(&refs, "/v3/cluster/member/remove", body).await?;
            Ok(())
        })
    }

    fn min_members(&self) -> usize {
        1
    }

    fn min_members_reason(&self) -> String {
        "an etcd cluster needs at least one member".into()
    }

    fn hard_stop_signal(&self) -> Signal {
        Signal::SIGKILL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    #[test]
    fn start_command_line_for_a_joining_member() {
        let spec = LabSpec::load(None, &Overrides { engine: Some(EngineKind::Etcd), nodes: None }).unwrap();
        let e = Etcd::new(&spec);
        let lab = Lab::new("/lab").unwrap();
        let ms: Vec<Member> = (1..=4).map(|id| Member { id, ports: e.node_ports(id), engine_id: None }).collect();
        let ctx = StartContext { lab: &lab, node: ms[3], members: &ms, mode: StartMode::Join };
        insta::assert_snapshot!(e.start_args(&ctx).join(" \\\n  "));
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
        let p = NodePorts { service: 1, http: 1, peer: Some(23892) };
        assert_eq!(find_member(&list, &p).unwrap().id, 7);
    }
}
