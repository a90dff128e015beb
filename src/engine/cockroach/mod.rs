//! CockroachDB, per `shared/cockroach-contract.md` (facts from CockroachDB's `cockroach start`,
//! `cockroach init`, `cockroach node` docs and `pkg/server/drain.go`; response shapes recorded
//! from v20.1.5 in `tests/fixtures/cockroach-v20.1.5/`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use nix::sys::signal::Signal;

use super::{fetch_text, find_binary, http_client, run_cli, ClientShell, Engine, EngineVersion, Member, Readiness, StartContext};
use crate::config::{CockroachSpec, EngineKind, LabSpec, PortsSpec};
use crate::lab::Lab;
use crate::node::{NodeId, NodePorts};
use crate::ports::PortClaim;
use crate::watch::{ClusterFigures, Liveness, LossPrediction, NodeFigures, Observation};
use crate::{Error, Result};
use version::{Facts, Version};

mod drain;
pub mod lease;
pub mod parse;
pub mod quorum;
#[cfg(test)]
mod recorded;
pub mod secure;
mod shell;
pub mod version;

use parse::{add, last_lines};
pub use parse::{init_outcome, judge_readiness, node_ids_from_status, parse_liveness, parse_vars, VarsFigures};

/// How to install CockroachDB when it is missing.
pub const INSTALL_HINT: &str = "Install CockroachDB from the official release tarball \
(https://www.cockroachlabs.com/docs/releases/ : unpack it and put `cockroach` on PATH), or \
point $ROACHLAB_COCKROACH or `[cockroach] binary` at it. No Debian package ships it; \
`roachlab up --engine etcd` runs the same supervisor on etcd instead.";

/// The CockroachDB engine.
#[derive(Debug, Clone)]
pub struct Cockroach {
    ports: PortsSpec,
    spec: CockroachSpec,
    /// TLS on every hop (`up --secure`).
    secure: bool,
    /// A secure lab's certificates (`--certs-dir`), when the engine was made for its lab.
    certs: Option<crate::certs::CertPaths>,
    /// roachlab's session on a secure cluster's admin endpoints ([`secure`]).
    session: Arc<secure::Session>,
    /// The binary's release and the facts roachlab acts on for it, read once.
    release: Arc<tokio::sync::OnceCell<(Version, &'static Facts, Option<String>)>>,
}

impl Cockroach {
    /// The engine for `spec`; `certs`: a secure lab's certificates ([`super::for_lab`]).
    pub fn new(spec: &LabSpec, certs: Option<crate::certs::CertPaths>) -> Self {
        Self {
            ports: spec.ports.clone(),
            spec: spec.cockroach.clone(),
            secure: spec.security.secure,
            certs,
            session: Arc::default(),
            release: Arc::default(),
        }
    }

    /// How every `cockroach` command of this lab authenticates: `--insecure`, or
    /// `--certs-dir=DIR/certs` (the CA, the node and the `root` client certificate: "cockroach
    /// cert", "cockroach start" docs, v20.1).
    fn security_flag(&self) -> String {
        match (&self.certs, self.secure) {
            (Some(c), true) => format!("--certs-dir={}", c.dir.display()),
            _ => "--insecure".into(),
        }
    }

    /// The binary's release (`cockroach version`), its facts ([`version::FACTS`]) and a
    /// warning for a release newer than roachlab knows. Errors for one older than v20.1 or a
    /// binary whose output has no `Build Tag:`.
    pub async fn release(&self) -> Result<(Version, &'static Facts, Option<String>)> {
        let r = self
            .release
            .get_or_try_init(|| async {
                let (_, out, err) =
                    run_cli("cockroach", &self.binary()?, &["version".to_string()], &offline_env(), Duration::from_secs(10)).await?;
                let v = Version::from_version_output(&out).or_else(|| Version::from_version_output(&err)).ok_or_else(|| {
                    Error::engine("cockroach", format!("`cockroach version` printed no `Build Tag:` line: {}", last_lines(&err, &out)))
                })?;
                let known = version::facts_for(v);
                match known.facts() {
                    Some(f) => Ok((v, f, known.warning(v))),
                    None => Err(Error::Refused(known.warning(v).unwrap_or_default())),
                }
            })
            .await?;
        Ok(r.clone())
    }

    /// The facts for the binary's release, or the newest row when it cannot be read (the
    /// error is reported by `up`, which asks [`Engine::version`] first).
    async fn facts(&self) -> &'static Facts {
        match self.release().await {
            Ok((_, f, _)) => f,
            Err(_) => &version::FACTS[version::FACTS.len() - 1],
        }
    }

    fn host_flag(member: &Member) -> String {
        format!("--host={}", member.ports.service_addr())
    }

    /// `--join`: the RPC addresses of the first three members (the docs' advice: the same short
    /// list everywhere).
    pub fn join_list(members: &[Member]) -> String {
        members.iter().take(3).map(|m| m.ports.service_addr()).collect::<Vec<_>>().join(",")
    }

    /// `server.shutdown.drain_wait` for a HAProxy that needs `down_window` (`inter × fall`) to
    /// mark a node DOWN: the window rounded up to whole seconds, plus one second, so HAProxy
    /// stops routing before the node refuses connections (contract §2).
    pub fn drain_wait_for(down_window: Duration) -> Duration {
        Duration::from_secs(down_window.as_millis().div_ceil(1000) as u64 + 1)
    }
}

/// The SQL write probe's bound: the same 2 s the supervisor gives its poll client at most.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The environment every `cockroach` process gets: no phoning home from an offline laptop
/// (contract §1). The URLs point at a closed loopback port.
pub fn offline_env() -> Vec<(String, String)> {
    vec![
        ("COCKROACH_SKIP_ENABLING_DIAGNOSTIC_REPORTING".into(), "true".into()),
        ("COCKROACH_UPDATE_CHECK_URL".into(), "http://127.0.0.1:9/u".into()),
        ("COCKROACH_USAGE_REPORT_URL".into(), "http://127.0.0.1:9/r".into()),
    ]
}

impl Engine for Cockroach {
    fn kind(&self) -> EngineKind {
        EngineKind::Cockroach
    }

    fn node_ports(&self, id: NodeId) -> NodePorts {
        let i = (id - 1) as u16;
        NodePorts::loopback(self.ports.base + i, self.ports.http_base + i, None)
    }

    fn port_claims(&self, id: NodeId) -> Vec<PortClaim> {
        let p = self.node_ports(id);
        vec![PortClaim::new(p.service, format!("node {id} SQL/RPC")), PortClaim::new(p.http, format!("node {id} HTTP"))]
    }

    fn binary(&self) -> Result<PathBuf> {
        find_binary("ROACHLAB_COCKROACH", self.spec.binary.as_deref(), "cockroach", INSTALL_HINT)
    }

    fn start_args(&self, ctx: &StartContext<'_>) -> Vec<String> {
        let p = ctx.node.ports;
        let mut args = vec![
            "start".to_string(),
            match self.secure {
                true => format!("--certs-dir={}", crate::certs::CertPaths::of(ctx.lab).dir.display()),
                false => "--insecure".into(),
            },
            format!("--listen-addr={}", p.service_addr()),
            format!("--http-addr={}", p.http_addr()),
            format!("--join={}", Self::join_list(ctx.members)),
            format!("--store=path={}", ctx.lab.store_dir(ctx.node.id).display()),
            format!("--cache={}", self.spec.cache),
            format!("--max-sql-memory={}", self.spec.max_sql_memory),
        ];
        if !self.spec.localities.is_empty() {
            let loc = &self.spec.localities[(ctx.node.id as usize - 1) % self.spec.localities.len()];
            args.push(format!("--locality={loc}"));
        }
        args.extend(self.spec.extra_args.iter().cloned());
        args
    }

    fn node_env(&self) -> Vec<(String, String)> {
        offline_env()
    }

    fn readiness_path(&self) -> &'static str {
        "/health?ready=1"
    }

    fn judge_readiness(&self, status: u16, body: &str) -> Readiness {
        judge_readiness(status, body)
    }

    fn frontend_name(&self) -> &'static str {
        "psql"
    }

    fn bootstrap<'a>(&'a self, _lab: &'a Lab, members: &'a [Member]) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let first = members.first().ok_or_else(|| Error::engine("cockroach", "no members to initialise"))?;
            let bin = self.binary()?;
            let args = vec!["init".into(), self.security_flag(), Self::host_flag(first)];
            // `cockroach init` retries every second until the node answers (contract §1), so
            // sent as the nodes spawn it loses up to a second to its retry interval. It talks to
            // the node's RPC/SQL port, and cannot succeed before that port accepts: wait for
            // that first (every 20 ms). A node that never accepts gets init anyway, which
            // reports it, as before.
            let _ = super::wait_accepting(&first.ports.service_addr(), Duration::from_secs(30)).await;
            let (ok, out, err) = run_cli("cockroach", &bin, &args, &offline_env(), Duration::from_secs(60)).await?;
            init_outcome(ok, &out, &err).map(Some)
        })
    }

    fn configure<'a>(&'a self, members: &'a [Member], down_window: Duration) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let first = members.first().ok_or_else(|| Error::engine("cockroach", "no members"))?;
            let facts = self.facts().await;
            let drain_wait = Self::drain_wait_for(down_window);
            // Settings by this release's names (version::FACTS). Sent through `cockroach sql`
            // as literals: SET CLUSTER SETTING takes no placeholders on v20.1, and every value
            // here is a number roachlab computed.
            let mut statements = vec!["SET CLUSTER SETTING diagnostics.reporting.enabled = false".to_string()];
            statements.extend(facts.drain_settings(drain_wait.as_secs()));
            let rf = self.spec.replication_factor;
            if rf != 3 {
                statements.push(format!("ALTER RANGE default CONFIGURE ZONE USING num_replicas = {rf}"));
            }
            // The quorum probe's table (after the zone change, so it takes the lab's factor).
            statements.push(quorum::PROBE_SCHEMA.to_string());
            let args = vec!["sql".into(), self.security_flag(), Self::host_flag(first), "-e".into(), statements.join("; ")];
            let (ok, out, err) = run_cli("cockroach", &self.binary()?, &args, &offline_env(), Duration::from_secs(30)).await?;
            if !ok {
                return Err(Error::engine("cockroach", format!("setting cluster settings failed: {}", last_lines(&err, &out))));
            }
            let mut notes = vec![format!(
                "cockroach: {} = {}s (> HAProxy inter × fall = {} ms){}",
                facts.drain_wait_setting,
                drain_wait.as_secs(),
                down_window.as_millis(),
                facts.connection_wait_setting.map(|c| format!(", {c} = {}s", drain_wait.as_secs())).unwrap_or_default()
            )];
            notes.push(if facts.diagnostics_opt_out {
                "cockroach: diagnostics reporting off".into()
            } else {
                "cockroach: this release ignores diagnostics.reporting.enabled without a paid licence; its reporting URLs point at a closed loopback port, so nothing leaves the machine".into()
            });
            if rf != 3 {
                notes.push(format!("cockroach: replication factor {rf} (num_replicas of the default zone)"));
            }
            if let (true, Some(certs)) = (self.secure, &self.certs) {
                let file = secure::create_admin(&quorum::node_url(first), certs).await?;
                notes.push(format!(
                    "cockroach: DB Console user {} (member of admin), its password in {} (0600)",
                    secure::ADMIN_USER,
                    file.display()
                ));
            }
            Ok(notes)
        })
    }

    fn engine_ids<'a>(&'a self, members: &'a [Member]) -> BoxFuture<'a, Result<Vec<(NodeId, u64)>>> {
        Box::pin(async move {
            let client = http_client(Duration::from_secs(5));
            let mut last_err = None;
            for m in members {
                match self.fetch_admin(&client, m.ports.http_addr(), "/_status/nodes").await {
                    Ok(body) => return node_ids_from_status(&body, members),
                    Err(e) => last_err = Some(format!("node {}: {e}", m.id)),
                }
            }
            Err(Error::engine("cockroach", format!("no node answered /_status/nodes ({})", last_err.unwrap_or_default())))
        })
    }

    fn set_setting<'a>(&'a self, members: &'a [Member], name: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.') {
                return Err(Error::Refused(format!("`{name}` is not a cluster setting name (lowercase, digits, `_` and `.`)")));
            }
            let first = members.first().ok_or_else(|| Error::engine("cockroach", "no member to ask"))?;
            let sql = format!("SET CLUSTER SETTING {name} = '{}'", value.replace('\'', "''"));
            let args = vec!["sql".into(), self.security_flag(), Self::host_flag(first), "-e".into(), sql];
            let (ok, out, err) = run_cli("cockroach", &self.binary()?, &args, &offline_env(), Duration::from_secs(30)).await?;
            if !ok {
                return Err(Error::engine("cockroach", format!("SET CLUSTER SETTING {name} failed: {}", last_lines(&err, &out))));
            }
            Ok(())
        })
    }

    fn leaseholder_of<'a>(&'a self, members: &'a [Member], table: &'a str, key: i64) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { lease::leaseholder(self.facts().await, members, table, key).await })
    }

    fn prepare_join<'a>(&'a self, _ask: &'a [Member], all: &'a [Member], new: Member) -> BoxFuture<'a, Result<Vec<NodeId>>> {
        // Nothing to tell: a node joins through `--join`; every member stays one.
        Box::pin(async move { Ok(all.iter().map(|m| m.id).chain([new.id]).collect()) })
    }

    fn observe<'a>(&'a self, client: &'a reqwest::Client, live: &'a [Member], all: &'a [Member]) -> BoxFuture<'a, Observation> {
        Box::pin(async move {
            let vars = futures_util::future::join_all(live.iter().map(|m| fetch_text(client, m.ports.http_addr(), "/_status/vars")));
            // Liveness as each node sees it (served from gossip, answered during quorum loss on
            // v20.1; bounded by the client timeout where it hangs): under a partition the sides
            // disagree. The cluster's view is the first node's that answered.
            let views = futures_util::future::join_all(live.iter().map(|m| async move {
                let body = self.fetch_admin(client, m.ports.http_addr(), "/_admin/v1/liveness").await.ok();
                (m.id, body.and_then(|b| parse_liveness(&b).ok()))
            }));
            let probe = quorum::probe(live, self.spec.replication_factor, PROBE_TIMEOUT);
            let (vars, views, probe) = futures_util::join!(vars, views, probe);
            let seen: Vec<(NodeId, u64)> = views
                .iter()
                .filter_map(|(id, v)| v.as_ref().map(|l| (*id, l.values().filter(|s| **s == Liveness::Live).count() as u64)))
                .collect();
            let liveness = views.into_iter().find_map(|(_, v)| v);
            let mut obs = Observation::default();
            let mut cluster = ClusterFigures::default();
            let mut max_live = None;
            for (m, body) in live.iter().zip(vars) {
                let Ok(v) = body.map_err(|_| ()).and_then(|b| parse_vars(&b).map_err(|_| ())) else { continue };
                let f = obs.nodes.entry(m.id).or_default();
                f.replicas = v.replicas;
                f.leaseholders = v.leaseholders;
                // The range gauges are counted once per range, by one store: sum them.
                cluster.ranges = add(cluster.ranges, v.ranges);
                cluster.ranges_underreplicated = add(cluster.ranges_underreplicated, v.ranges_underreplicated);
                cluster.ranges_unavailable = add(cluster.ranges_unavailable, v.ranges_unavailable);
                cluster.ranges_overreplicated = add(cluster.ranges_overreplicated, v.ranges_overreplicated);
                max_live = max_live.max(v.live_nodes);
            }
            if let Some(l) = liveness {
                for m in all {
                    let crdb_id = m.engine_id.unwrap_or(m.id as u64);
                    if let Some(status) = l.get(&crdb_id) {
                        obs.nodes.entry(m.id).or_insert_with(NodeFigures::default).liveness = Some(*status);
                    }
                }
                cluster.live_nodes = Some(l.values().filter(|s| **s == Liveness::Live).count() as u64);
            } else {
                cluster.live_nodes = max_live;
            }
            if let Some((quorum, answers)) = probe {
                for (id, r) in answers {
                    let live_seen =
                        seen.iter().find(|(n, _)| *n == id).map(|(_, c)| format!("; its liveness view: {c} LIVE")).unwrap_or_default();
                    let f = obs.nodes.entry(id).or_default();
                    f.sees_quorum = Some(r.is_ok());
                    f.quorum_detail = Some(match r {
                        Ok(d) => format!("SQL write probe in {} ms{live_seen}", d.as_millis()),
                        Err(e) => format!("SQL write probe: {e}{live_seen}"),
                    });
                }
                cluster.quorum = Some(quorum);
            }
            obs.cluster = cluster;
            obs
        })
    }

    /// `sslmode=require` for a secure lab: tokio-postgres then speaks the lab's TLS
    /// ([`crate::tls::postgres`]), which verifies the node against the lab's CA.
    fn client_url(&self, host: &str, port: u16) -> String {
        let mode = if self.secure { "require" } else { "disable" };
        format!("postgresql://root@{host}:{port}/defaultdb?sslmode={mode}")
    }

    fn metrics_job(&self) -> (&'static str, &'static str) {
        // The job name CockroachDB's published alert rules select on.
        ("cockroachdb", "/_status/vars")
    }

    fn admin_login(&self, certs: &crate::certs::CertPaths) -> Option<(&'static str, PathBuf)> {
        Some((secure::ADMIN_USER, secure::password_file(certs)))
    }

    /// `cockroach cert` ([`secure::make_certs`]).
    fn make_certs<'a>(&'a self, paths: &'a crate::certs::CertPaths, hosts: &'a [String]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { secure::make_certs(&self.binary()?, paths, hosts).await })
    }

    fn client_shell(&self, addr: &str, shell: ClientShell<'_>, certs: Option<&crate::certs::CertPaths>) -> Result<std::process::Command> {
        match shell {
            ClientShell::Sql { execute } => shell::sql(self.binary(), addr, execute, certs),
            ClientShell::Etcdctl { .. } => {
                Err(Error::Refused("a CockroachDB lab has no etcdctl: `roachlab sql` opens its SQL shell".into()))
            }
        }
    }

    fn decommission<'a>(&'a self, _lab: &'a Lab, members: &'a [Member], node: Member) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let via = members.iter().find(|m| m.id != node.id).unwrap_or(&node);
            let crdb_id = node.engine_id.unwrap_or(node.id as u64);
            let args = vec![
                "node".into(),
                "decommission".into(),
                crdb_id.to_string(),
                "--wait=all".into(),
                self.security_flag(),
                Self::host_flag(via),
            ];
            // Observed: 74 s for a node holding 29 replicas (contract §9). Allow 10 minutes.
            let (ok, out, err) = run_cli("cockroach", &self.binary()?, &args, &offline_env(), Duration::from_secs(600)).await?;
            if !ok {
                return Err(Error::engine(
                    "cockroach",
                    format!("`cockroach node decommission {crdb_id}` failed: {}", last_lines(&err, &out)),
                ));
            }
            let facts = self.facts().await;
            match parse::decommission_replicas(&out, facts.decommission_columns, crdb_id) {
                Some((_, 0)) => Ok(()),
                Some((first, last)) => Err(Error::engine(
                    "cockroach",
                    format!("`cockroach node decommission {crdb_id}` ended with {last} of {first} replicas still on the node"),
                )),
                // The output's shape was not recognised: the exit status is the verdict.
                None => Ok(()),
            }
        })
    }

    fn min_members(&self) -> usize {
        self.spec.replication_factor as usize
    }

    fn min_members_reason(&self) -> String {
        format!(
            "with replication factor {rf}, CockroachDB needs {rf} nodes to place every replica; decommissioning below that never finishes",
            rf = self.spec.replication_factor
        )
    }

    fn hand_off<'a>(
        &'a self,
        _client: &'a reqwest::Client,
        node: Member,
        others: &'a [Member],
        deadline: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(drain::drain(self, node, others, deadline))
    }

    fn version<'a>(&'a self) -> BoxFuture<'a, Result<EngineVersion>> {
        Box::pin(async move {
            let (v, _, warning) = self.release().await?;
            Ok(EngineVersion { version: v.to_string(), warning })
        })
    }

    fn quorum_rule(&self, members: usize) -> Vec<String> {
        quorum::rule(self.spec.replication_factor, members)
    }

    fn takeover<'a>(&'a self) -> BoxFuture<'a, crate::watch::Takeover> {
        Box::pin(async move {
            let facts = self.facts().await;
            let release = match self.release().await {
                Ok((v, _, _)) => v.to_string(),
                Err(_) => format!("{}+", facts.since),
            };
            quorum::takeover(facts, &release)
        })
    }

    fn predict_loss<'a>(&'a self, ask: &'a [Member], all: &'a [Member], down: &'a [NodeId]) -> BoxFuture<'a, Result<LossPrediction>> {
        Box::pin(async move { quorum::predict(self.facts().await, ask, all, down).await })
    }

    fn hard_stop_signal(&self) -> Signal {
        // A second SIGINT forces a hard shutdown on every version (v20.1 also takes a second
        // SIGTERM; newer versions ignore it). Contract §2, §9.
        Signal::SIGINT
    }
}

#[cfg(test)]
mod tests;
