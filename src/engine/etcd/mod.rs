//! etcd 3.4+ (Debian's `etcd-server`): a static initial cluster, membership changes through
//! the v3 JSON gateway (`POST /v3/cluster/member/{list,add,remove}`, the HTTP form of
//! `etcdctl member ...`), readiness from `GET /health` (`{"health":"true"}`).

use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use nix::sys::signal::Signal;

use super::{describe_http_error, fetch_text, find_binary, run_cli, ClientShell, Engine, Member, Readiness, StartContext, StartMode};

mod gateway;
mod observe;
use crate::config::{EngineKind, EtcdSpec, LabSpec, PortsSpec};
use crate::lab::Lab;
use crate::node::{NodeId, NodePorts};
use crate::ports::PortClaim;
use crate::watch::{LossPrediction, Observation, Writes};
use crate::{Error, Result};
use gateway::{find_member, member_list, membership_ids, move_leadership, post_any};
pub use gateway::{judge_readiness, EtcdMember, MaintenanceStatus, MemberList, ResponseHeader};
pub use observe::{leader_flags, observed_quorum};

/// How to install etcd when it is missing.
pub const INSTALL_HINT: &str =
    "Install it with `sudo apt-get install etcd-server` (Debian/Ubuntu), or point $ROACHLAB_ETCD or `[etcd] binary` at an etcd binary.";

/// The etcd engine.
#[derive(Debug, Clone)]
pub struct Etcd {
    ports: PortsSpec,
    spec: EtcdSpec,
    /// TLS on every hop (`up --secure`): the lab's certificates for clients and peers.
    secure: bool,
    /// `etcd --version`, asked once per daemon (as the [`Engine::version`] contract says).
    version: tokio::sync::OnceCell<super::EngineVersion>,
}

impl Etcd {
    pub fn new(spec: &LabSpec) -> Self {
        Self { ports: spec.ports.clone(), spec: spec.etcd.clone(), secure: spec.security.secure, version: tokio::sync::OnceCell::new() }
    }

    /// The member name of node `id`.
    pub fn member_name(id: NodeId) -> String {
        format!("node-{id}")
    }

    fn scheme(&self) -> &'static str {
        if self.secure {
            "https"
        } else {
            "http"
        }
    }

    pub(super) fn peer_url(&self, ports: &NodePorts) -> String {
        format!("{}://{}", self.scheme(), ports.peer_addr().expect("etcd nodes have a peer port"))
    }
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
        let client = format!("{}://{}", self.scheme(), p.service_addr());
        let peer = self.peer_url(&p);
        let initial_cluster =
            ctx.members.iter().map(|m| format!("{}={}", Self::member_name(m.id), self.peer_url(&m.ports))).collect::<Vec<_>>().join(",");
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
        if self.secure {
            // etcd's security guide (v3.4, "Transport security model"): clients and peers both
            // over TLS, each side proving itself with a certificate from the lab's CA.
            let c = crate::certs::CertPaths::of(ctx.lab);
            let (crt, key, ca) = (c.node_crt(), c.node_key(), c.ca_crt());
            args.extend([
                format!("--cert-file={}", crt.display()),
                format!("--key-file={}", key.display()),
                format!("--trusted-ca-file={}", ca.display()),
                "--client-cert-auth".into(),
                format!("--peer-cert-file={}", crt.display()),
                format!("--peer-key-file={}", key.display()),
                format!("--peer-trusted-ca-file={}", ca.display()),
                "--peer-client-cert-auth".into(),
            ]);
        }
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

    fn client_url(&self, host: &str, port: u16) -> String {
        format!("{}://{host}:{port}", self.scheme())
    }

    fn metrics_job(&self) -> (&'static str, &'static str) {
        ("etcd", "/metrics")
    }

    fn client_shell(&self, addr: &str, shell: ClientShell<'_>, certs: Option<&crate::certs::CertPaths>) -> Result<std::process::Command> {
        match shell {
            ClientShell::Etcdctl { args } => {
                let bin = find_binary("ROACHLAB_ETCDCTL", None, "etcdctl", "Install etcd's client (`sudo apt-get install etcd-client`).")?;
                let mut c = std::process::Command::new(bin);
                // etcdctl(1) v3: bounded dial and command, so a target that does not answer is
                // an error within seconds, not a hang.
                c.env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints={}://{addr}", self.scheme()))
                    .args(["--dial-timeout=2s", "--command-timeout=5s"]);
                if let Some(certs) = certs {
                    c.arg(format!("--cacert={}", certs.ca_crt().display()))
                        .arg(format!("--cert={}", certs.client_crt().display()))
                        .arg(format!("--key={}", certs.client_key().display()));
                }
                c.args(args);
                Ok(c)
            }
            ClientShell::Sql { .. } => Err(Error::Refused(
                "etcd speaks no SQL: `roachlab etcdctl -- ARGS` runs etcdctl against the lab (e.g. `-- get --prefix /bank`)".into(),
            )),
        }
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
            let body = serde_json::json!({ "peerURLs": [self.peer_url(&new.ports)] });
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
}
