//! etcd 3.4+ (Debian's `etcd-server`): a static initial cluster, membership changes through
//! the v3 JSON gateway (`POST /v3/cluster/member/{list,add,remove}`, the HTTP form of
//! `etcdctl member ...`), readiness from `GET /health` (`{"health":"true"}`).

use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use nix::sys::signal::Signal;
use serde::{Deserialize, Deserializer};

use super::{describe_http_error, fetch_text, find_binary, http_client, run_cli, Engine, Member, Readiness, StartContext, StartMode};

mod observe;
use crate::config::{EngineKind, EtcdSpec, LabSpec, PortsSpec};
use crate::lab::Lab;
use crate::node::{NodeId, NodePorts};
use crate::ports::PortClaim;
use crate::watch::{LossPrediction, Observation, Writes};
use crate::{Error, Result};
pub use observe::{leader_flags, observed_quorum};

/// How to install etcd when it is missing.
pub const INSTALL_HINT: &str =
    "Install it with `sudo apt-get install etcd-server` (Debian/Ubuntu), or point $ROACHLAB_ETCD or `[etcd] binary` at an etcd binary.";

/// The etcd engine.
#[derive(Debug, Clone)]
pub struct Etcd {
    ports: PortsSpec,
    spec: EtcdSpec,
    /// `etcd --version`, asked once per daemon (as the [`Engine::version`] contract says).
    version: tokio::sync::OnceCell<super::EngineVersion>,
}

impl Etcd {
    pub fn new(spec: &LabSpec) -> Self {
        Self { ports: spec.ports.clone(), spec: spec.etcd.clone(), version: tokio::sync::OnceCell::new() }
    }

    /// The member name of node `id`.
    pub fn member_name(id: NodeId) -> String {
        format!("node-{id}")
    }

    fn peer_url(ports: &NodePorts) -> String {
        format!("http://{}", ports.peer_addr().expect("etcd nodes have a peer port"))
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
            let url = format!("http://{}{path}", m.ports.http_addr());
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

async fn member_list(members: &[&Member]) -> Result<MemberList> {
    let text = post_any(members, "/v3/cluster/member/list", serde_json::json!({})).await?;
    serde_json::from_str(&text).map_err(|e| Error::engine("etcd", format!("cannot parse member list: {e}")))
}

/// Our ids of the members of `list` (etcd's membership), matched by peer URL among `all` and
/// `new`. A member roachlab does not know is an error naming it.
fn membership_ids(list: &MemberList, all: &[Member], new: Member) -> Result<Vec<NodeId>> {
    let ours: Vec<&Member> = all.iter().chain(std::iter::once(&new)).collect();
    let mut ids = Vec::new();
    for m in &list.members {
        let found = ours.iter().find(|o| m.peer_urls.iter().any(|u| *u == Etcd::peer_url(&o.ports)));
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

/// Finds our node in etcd's member list by its peer URL.
fn find_member<'a>(list: &'a MemberList, ports: &NodePorts) -> Option<&'a EtcdMember> {
    let url = Etcd::peer_url(ports);
    list.members.iter().find(|m| m.peer_urls.iter().any(|u| u == &url))
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
async fn status_of(client: &reqwest::Client, m: &Member) -> std::result::Result<MaintenanceStatus, String> {
    let url = format!("http://{}/v3/maintenance/status", m.ports.http_addr());
    let r = client.post(&url).json(&serde_json::json!({})).send().await.map_err(|e| describe_http_error(&e))?;
    let text = r.text().await.map_err(|e| describe_http_error(&e))?;
    serde_json::from_str(&text).map_err(|e| format!("unreadable status: {e}"))
}

/// Moves Raft leadership away from `node` if it leads, and waits (≤ `deadline`) until
/// another member leads. Leadership transfer: etcd's MoveLeader, sent to the leader itself
/// (`POST /v3/maintenance/transfer-leadership {"targetID": …}`, api/etcdserverpb/rpc.proto,
/// etcd 3.3+); raft's leadership-transfer extension makes the target campaign at once, so
/// no election timeout passes with no leader.
async fn move_leadership(client: &reqwest::Client, node: Member, others: &[Member], deadline: Duration) -> Result<Vec<String>> {
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
    let url = format!("http://{}/v3/maintenance/transfer-leadership", node.ports.http_addr());
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

fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "u64_from_string_or_number")] u64);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

impl Engine for Etcd {
    fn kind(&self) -> EngineKind {
        EngineKind::Etcd
    }

    fn node_ports(&self, id: NodeId) -> NodePorts {
        let i = (id - 1) as u16;
        let client = self.ports.base + i;
        NodePorts::loopback(client, client, Some(self.ports.peer_base + i))
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
        let client = format!("http://{}", p.service_addr());
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

    /// Waits (≤ 2 s, polling every 5 ms) until the member serves its peer API
    /// (`GET {peer}/members` answers). A new etcd 3.4 member first asks every peer whether it
    /// was bootstrapped already (`etcdserver/server.go` `NewServer` → `isMemberBootstrapped`,
    /// `GET /members` with a 1 s timeout per peer, `bootstrapTimeout`): a peer that refuses
    /// the connection answers at once, one that already serves too, but one that listens and
    /// does not serve yet — any member started a few ms earlier — costs the full second. Three
    /// members started together lost 0, 1 or 2 s to it at random (docs/BENCHMARKS.md,
    /// "Cluster up"); one after the other, ~30 ms each, none.
    fn after_initial_spawn<'a>(&'a self, client: &'a reqwest::Client, member: &'a Member) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(peer) = member.ports.peer_addr() else { return };
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while std::time::Instant::now() < deadline {
                // Shorter than the client's timeout: a peer that listens without serving holds it.
                let answer = tokio::time::timeout(Duration::from_millis(200), fetch_text(client, peer.clone(), "/members"));
                if matches!(answer.await, Ok(Ok(_))) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
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

    fn observe<'a>(&'a self, client: &'a reqwest::Client, live: &'a [Member], all: &'a [Member]) -> BoxFuture<'a, Observation> {
        Box::pin(observe::observe(client, live, all))
    }

    fn workload_url(&self, frontend_port: u16) -> String {
        format!("http://127.0.0.1:{frontend_port}")
    }

    fn metrics_job(&self) -> (&'static str, &'static str) {
        ("etcd", "/metrics")
    }

    fn set_setting<'a>(&'a self, _members: &'a [Member], name: &'a str, _value: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            Err(Error::Refused(format!("etcd has no cluster settings (asked to set `{name}`); its flags are fixed at start")))
        })
    }

    fn leaseholder_of<'a>(&'a self, _members: &'a [Member], _table: &'a str, _key: i64) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async { Err(Error::Refused("etcd has no leaseholders: use `leader` (the Raft leader serves every write)".into())) })
    }

    fn prepare_join<'a>(&'a self, ask: &'a [Member], all: &'a [Member], new: Member) -> BoxFuture<'a, Result<Vec<NodeId>>> {
        Box::pin(async move {
            let refs: Vec<&Member> = ask.iter().filter(|m| m.id != new.id).collect();
            let body = serde_json::json!({ "peerURLs": [Self::peer_url(&new.ports)] });
            // MemberAddResponse: `members` is the cluster's membership with the new one.
            let text = post_any(&refs, "/v3/cluster/member/add", body).await?;
            let list: MemberList =
                serde_json::from_str(&text).map_err(|e| Error::engine("etcd", format!("cannot parse the member add reply: {e}")))?;
            membership_ids(&list, all, new)
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

    fn hand_off<'a>(
        &'a self,
        client: &'a reqwest::Client,
        node: Member,
        others: &'a [Member],
        deadline: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(move_leadership(client, node, others, deadline))
    }

    fn version<'a>(&'a self) -> BoxFuture<'a, Result<super::EngineVersion>> {
        Box::pin(async move {
            let v = self
                .version
                .get_or_try_init(|| async {
                    let (_, out, err) = run_cli("etcd", &self.binary()?, &["--version".to_string()], &[], Duration::from_secs(10)).await?;
                    // `etcd Version: 3.4.30` (etcd 3.4 `etcd --version`, first line).
                    let version = out
                        .lines()
                        .chain(err.lines())
                        .find_map(|l| l.trim().strip_prefix("etcd Version:").map(|v| v.trim().to_string()))
                        .ok_or_else(|| {
                            Error::engine("etcd", format!("`etcd --version` printed no `etcd Version:` line: {}", out.trim()))
                        })?;
                    Ok::<_, Error>(super::EngineVersion { version, warning: None })
                })
                .await?;
            Ok(v.clone())
        })
    }

    fn quorum_rule(&self, members: usize) -> Vec<String> {
        let needed = members / 2 + 1;
        let tolerated = members.saturating_sub(1) / 2;
        vec![
            format!(
                "etcd needs a majority of its {members} members to elect a leader and commit; so {needed} of {members} must be up: \
                 the cluster tolerates ({members}−1)/2 = {tolerated} failure(s)."
            ),
            format!("With {} or more down, writes must stop until enough come back.", tolerated + 1),
        ]
    }

    fn takeover<'a>(&'a self) -> BoxFuture<'a, crate::watch::Takeover> {
        Box::pin(async {
            crate::watch::Takeover {
                expected: std::time::Duration::from_secs(3),
                why: "etcd's followers campaign once they miss the leader's heartbeats for an election timeout (1 s by \
                      default, randomized up to 2 s; etcd docs \"Tuning\"), and a new leader serves writes at once"
                    .into(),
            }
        })
    }

    fn predict_loss<'a>(&'a self, _ask: &'a [Member], all: &'a [Member], down: &'a [NodeId]) -> BoxFuture<'a, Result<LossPrediction>> {
        Box::pin(async move { Ok(predict_members(all.len(), down)) })
    }
}

/// etcd is one Raft group: it keeps quorum while a majority of its `members` is up.
pub fn predict_members(members: usize, down: &[NodeId]) -> LossPrediction {
    let needed = members / 2 + 1;
    let up = members.saturating_sub(down.len());
    let lost = up < needed;
    LossPrediction {
        down: down.to_vec(),
        groups: 1,
        groups_lost: u64::from(lost),
        lost_ids: Vec::new(),
        workload_groups: Some((1, u64::from(lost))),
        writes: if lost { Writes::Stop } else { Writes::Continue },
        text: format!(
            "with node(s) {} down, {up} of {members} members are up and {needed} are needed: {}",
            down.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
            if lost { "quorum is lost, writes stop" } else { "quorum holds, writes continue" }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    #[test]
    fn a_joiner_is_told_etcds_membership_not_the_ready_members() {
        let e = Etcd::new(&LabSpec::load(None, &Overrides { engine: Some(EngineKind::Etcd), ..Default::default() }).unwrap());
        let ms: Vec<Member> = (1..=4).map(|id| Member { id, ports: e.node_ports(id), engine_id: None }).collect();
        let url = |i: usize| Etcd::peer_url(&ms[i].ports);
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
    fn start_command_line_for_a_joining_member() {
        let spec = LabSpec::load(None, &Overrides { engine: Some(EngineKind::Etcd), ..Default::default() }).unwrap();
        let e = Etcd::new(&spec);
        let lab = Lab::new("/lab").unwrap();
        let ms: Vec<Member> = (1..=4).map(|id| Member { id, ports: e.node_ports(id), engine_id: None }).collect();
        let ctx = StartContext { lab: &lab, node: ms[3], members: &ms, mode: StartMode::Join };
        insta::assert_snapshot!(e.start_args(&ctx).join(" \\\n  "));
    }

    #[test]
    fn in_the_netns_topology_urls_carry_the_members_own_addresses() {
        let o = Overrides { engine: Some(EngineKind::Etcd), topology: Some(crate::topology::TopologyKind::Netns), ..Default::default() };
        let spec = LabSpec::load(None, &o).unwrap();
        let e = Etcd::new(&spec);
        let lab = Lab::new("/lab").unwrap();
        let ms: Vec<Member> =
            (1..=3).map(|id| Member { id, ports: crate::topology::Topology::node_ports(&spec, &e, id), engine_id: None }).collect();
        let args = e.start_args(&StartContext { lab: &lab, node: ms[2], members: &ms, mode: StartMode::Initial });
        assert!(args.contains(&"--listen-client-urls=http://198.18.7.13:23793".to_string()), "{args:?}");
        assert!(args.contains(&"--listen-peer-urls=http://198.18.7.13:23893".to_string()), "{args:?}");
        assert!(args.iter().any(|a| a.starts_with("--initial-cluster=node-1=http://198.18.7.11:23891,")), "{args:?}");
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
    fn leader_figures_from_status() {
        // Recorded from etcd 3.4.23: the leader itself.
        let s: MaintenanceStatus = serde_json::from_str(r#"{"header":{"cluster_id":"12419417797570985050","member_id":"1520713267247070721","revision":"1","raft_term":"2"},"version":"3.4.23","dbSize":"20480","leader":"1520713267247070721","raftIndex":"4","raftTerm":"2","raftAppliedIndex":"4","dbSizeInUse":"16384"}"#).unwrap();
        assert_eq!((s.leader, s.raft_term), (Some(1520713267247070721), Some(2)));
        assert_eq!(leader_flags(&s), (Some(true), Some(true)));
        // A follower names another member; a member without a leader says 0 (omitted in JSON).
        let f: MaintenanceStatus =
            serde_json::from_str(r#"{"header":{"member_id":"9"},"leader":"1520713267247070721","raftTerm":"2"}"#).unwrap();
        assert_eq!(leader_flags(&f), (Some(true), Some(false)));
        let none: MaintenanceStatus = serde_json::from_str(r#"{"header":{"member_id":"9"},"leader":"0","raftTerm":"3"}"#).unwrap();
        assert_eq!(leader_flags(&none), (Some(false), Some(false)));
        let omitted: MaintenanceStatus = serde_json::from_str(r#"{"header":{"member_id":"9"},"raftTerm":"3"}"#).unwrap();
        assert_eq!(leader_flags(&omitted), (Some(false), Some(false)), "proto3 JSON omits a zero leader");
        let error: MaintenanceStatus = serde_json::from_str(r#"{"error":"etcdserver: request timed out","code":14}"#).unwrap();
        assert_eq!(leader_flags(&error), (None, None));
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
