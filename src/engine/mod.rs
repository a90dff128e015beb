//! The engine seam: what differs between CockroachDB and etcd, behind one trait.
//!
//! The supervisor, HAProxy rendering, the watcher and drills call [`Engine`] methods and never
//! branch on which engine a lab runs. [`for_spec`] is the one place an engine is chosen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use nix::sys::signal::Signal;

use crate::config::{EngineKind, LabSpec};
use crate::lab::Lab;
use crate::node::{NodeId, NodePorts};
use crate::ports::PortClaim;
use crate::{Error, Result};

pub mod cockroach;
pub mod etcd;

/// How a node process is being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// One of the lab's first nodes, bootstrapping a new cluster together.
    Initial,
    /// A node restarting on its existing store.
    Restart,
    /// A new node joining a running cluster (`node add`).
    Join,
}

/// A cluster member as the engine needs to see it: id and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    pub ports: NodePorts,
    /// The engine's own id for this node when known (CockroachDB node ID, etcd member ID).
    pub engine_id: Option<u64>,
}

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct StartContext<'a> {
    pub lab: &'a Lab,
    pub node: Member,
    /// Every member of the cluster, including `node` (for `--join`, `--initial-cluster`).
    pub members: &'a [Member],
    pub mode: StartMode,
}

/// The verdict of one readiness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// Why not, in the engine's words (e.g. `node is shutting down`), or a transport error.
    pub detail: Option<String>,
}

/// The engine's release as its binary reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineVersion {
    /// e.g. `v20.1.5` (CockroachDB `cockroach version`), `3.4.30` (etcd `etcd --version`).
    pub version: String,
    /// Set when roachlab does not know this release and runs it with the newest behaviour it
    /// knows.
    pub warning: Option<String>,
}

/// Everything engine-specific.
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// `cockroach` or `etcd`.
    fn kind(&self) -> EngineKind;

    /// The ports of node `id` (node N uses `base + N - 1` of each block).
    fn node_ports(&self, id: NodeId) -> NodePorts;

    /// The ports node `id` will bind, with their roles, for the free-port check.
    fn port_claims(&self, id: NodeId) -> Vec<PortClaim>;

    /// The engine's binary: `$ROACHLAB_<ENGINE>`, then the config, then PATH.
    /// Errors with [`Error::BinaryNotFound`], saying how to install it.
    fn binary(&self) -> Result<PathBuf>;

    /// Arguments of the node's start command (the binary is [`Engine::binary`]).
    fn start_args(&self, ctx: &StartContext<'_>) -> Vec<String>;

    /// Extra environment for node processes.
    fn node_env(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The HTTP path that answers 200 when the node can serve clients; HAProxy checks it too.
    fn readiness_path(&self) -> &'static str;

    /// Judges a readiness response (status code and body).
    fn judge_readiness(&self, status: u16, body: &str) -> Readiness;

    /// Name of HAProxy's client frontend (`psql` for CockroachDB, as `cockroach gen haproxy`
    /// names it; `etcd` for etcd).
    fn frontend_name(&self) -> &'static str;

    /// After spawning `member` of a new cluster (`StartMode::Initial`), before the next one:
    /// waits (bounded) until starting the next cannot slow this one down. Default: at once.
    fn after_initial_spawn<'a>(&'a self, client: &'a reqwest::Client, member: &'a Member) -> BoxFuture<'a, ()> {
        let _ = (client, member);
        Box::pin(async {})
    }

    /// Once all initial nodes are spawned: bootstrap the cluster if the engine needs a step for
    /// it (`cockroach init`). Returns a description for the timeline, or `None` if there is no
    /// such step.
    fn bootstrap<'a>(&'a self, lab: &'a Lab, members: &'a [Member]) -> BoxFuture<'a, Result<Option<String>>>;

    /// Once the cluster first becomes ready: cluster-wide settings (e.g. CockroachDB's
    /// `server.shutdown.drain_wait`, sized to exceed HAProxy's `inter × fall`).
    /// Returns notes for the timeline.
    fn configure<'a>(&'a self, members: &'a [Member], haproxy_down_window: Duration) -> BoxFuture<'a, Result<Vec<String>>>;

    /// The engine's own ids of the given members (CockroachDB node IDs, etcd member IDs),
    /// asked of a live member. Members it does not know are left out.
    fn engine_ids<'a>(&'a self, members: &'a [Member]) -> BoxFuture<'a, Result<Vec<(NodeId, u64)>>>;

    /// Observes the cluster through its admin endpoints: figures per node and for the
    /// cluster. `live` are the members whose process runs (ask only them); `all` are every
    /// member, for mapping the engine's ids. Every request is bounded by `client`'s timeout;
    /// what does not answer is left `None`, never waited for.
    fn observe<'a>(
        &'a self,
        client: &'a reqwest::Client,
        live: &'a [Member],
        all: &'a [Member],
    ) -> BoxFuture<'a, crate::watch::Observation>;

    /// The URL a client uses to reach the cluster at `host:port`: `postgresql://...`
    /// (CockroachDB SQL) or `http://...` (etcd's KV API). `host` is HAProxy's (127.0.0.1) or a
    /// node's own address.
    fn client_url(&self, host: &str, port: u16) -> String;

    /// The URL a workload on this host uses to reach the cluster through HAProxy's client
    /// frontend, where `spec` has it listen (`[security] bind`; 127.0.0.1 by default).
    fn workload_url(&self, spec: &LabSpec) -> String {
        self.client_url(&spec.security.local_host(), spec.haproxy.frontend_port)
    }

    /// The Prometheus job that scrapes the nodes: `(job_name, metrics_path)`.
    fn metrics_job(&self) -> (&'static str, &'static str);

    /// The engine's own client, pointed at `addr` (`host:port`: HAProxy's client frontend or
    /// one node's client port), ready to exec: CockroachDB's `cockroach sql` (else `psql`) for
    /// [`ClientShell::Sql`], etcd's `etcdctl` for [`ClientShell::Etcdctl`]. An engine without
    /// that kind of client refuses, naming the one it has.
    ///
    /// Errors: [`Error::BinaryNotFound`] (with how to install), [`Error::Refused`].
    /// Makes a secure lab's CA, node certificate (naming `hosts`) and `root` client
    /// certificate in `paths` ([`crate::certs`]). By default with rcgen; CockroachDB uses its
    /// own `cockroach cert`.
    fn make_certs<'a>(&'a self, paths: &'a crate::certs::CertPaths, hosts: &'a [String]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { crate::certs::generate(paths, hosts) })
    }

    /// A secure lab's admin UI login, where the engine has one: `(user, file holding its
    /// password)`. CockroachDB's DB Console ([`cockroach::secure`]); etcd has no UI.
    fn admin_login(&self, _certs: &crate::certs::CertPaths) -> Option<(&'static str, std::path::PathBuf)> {
        None
    }

    /// `certs`: a secure lab's certificates, which the client presents (and trusts the CA of).
    fn client_shell(&self, addr: &str, shell: ClientShell<'_>, certs: Option<&crate::certs::CertPaths>) -> Result<std::process::Command>;

    /// Sets a cluster-wide setting (CockroachDB `SET CLUSTER SETTING name = 'value'`).
    /// Engines without cluster settings refuse.
    fn set_setting<'a>(&'a self, members: &'a [Member], name: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>>;

    /// The engine id of the node holding the lease for `key` of `table` (CockroachDB:
    /// `SHOW RANGE FROM TABLE <table> FOR ROW (<key>)`, column `lease_holder`). Engines
    /// without leases refuse.
    fn leaseholder_of<'a>(&'a self, members: &'a [Member], table: &'a str, key: i64) -> BoxFuture<'a, Result<u64>>;

    /// Before a new node starts (`node add`): tell the cluster (etcd `member add`), asking
    /// `ask` (ready members). Returns the ids, among `all` (every member of the lab) and
    /// `new`, of the members the cluster has once `new` is added — what the new node must be
    /// told it joins (etcd's `--initial-cluster`: the membership etcd's MemberAdd reply
    /// lists, matched by peer URL, not the members roachlab sees ready, which after a
    /// partition's heal or with a member down is not the cluster's membership).
    fn prepare_join<'a>(&'a self, ask: &'a [Member], all: &'a [Member], new: Member) -> BoxFuture<'a, Result<Vec<NodeId>>>;

    /// Removes `node` from the cluster for good (`cockroach node decommission --wait=all`,
    /// etcd `member remove`), asking a member other than `node` where possible. Its process is
    /// stopped by the supervisor afterwards.
    fn decommission<'a>(&'a self, lab: &'a Lab, members: &'a [Member], node: Member) -> BoxFuture<'a, Result<()>>;

    /// Fewest members the cluster may keep after a decommission without `--force`
    /// (CockroachDB: the replication factor; etcd: 1).
    fn min_members(&self) -> usize;

    /// Explains [`Engine::min_members`] for the refusal message.
    fn min_members_reason(&self) -> String;

    /// The signal `down` sends to nodes still running after its grace period, to turn a
    /// stuck graceful drain into a hard shutdown before resorting to SIGKILL.
    fn hard_stop_signal(&self) -> Signal;

    /// Hands off what `node` leads before its process is signalled, so that neither the
    /// cluster nor its clients lose anything: etcd moves Raft leadership to another member if
    /// `node` is the leader (MoveLeader, `POST /v3/maintenance/transfer-leadership`, etcd 3.3+)
    /// and waits until another member leads; CockroachDB drains the node (`cockroach node
    /// drain`: readiness 503, SQL clients closed, leases and Raft leadership moved). `others`
    /// are ready members that stay (with their engine ids). Returns each stage in words as it
    /// completed. Bounded by `deadline`.
    fn hand_off<'a>(
        &'a self,
        client: &'a reqwest::Client,
        node: Member,
        others: &'a [Member],
        deadline: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>>>;

    /// The release the binary reports (asked once, then cached). Errors when the binary is
    /// missing, does not answer within 10 s, or is a release roachlab does not support.
    fn version<'a>(&'a self) -> BoxFuture<'a, Result<EngineVersion>>;

    /// The fault-tolerance rule of a cluster of `members` nodes, in sentences a demo audience
    /// can follow: a drill's stated theory.
    fn quorum_rule(&self, members: usize) -> Vec<String>;

    /// How long the cluster takes to route around a member that stops answering without a
    /// hand-off, and why (etcd: an election timeout; CockroachDB: the dead holder's liveness
    /// record must expire before its leases move), with the running release's figures where
    /// they differ by release.
    fn takeover<'a>(&'a self) -> BoxFuture<'a, crate::watch::Takeover>;

    /// Predicts what taking the nodes `down` out of the cluster would do to quorum, from the
    /// layout observed now (asked of `ask`: ready members, ideally not in `down`). `all` maps
    /// the engine's ids to ours. Every request is bounded (10 s).
    fn predict_loss<'a>(
        &'a self,
        ask: &'a [Member],
        all: &'a [Member],
        down: &'a [NodeId],
    ) -> BoxFuture<'a, Result<crate::watch::LossPrediction>>;
}

/// The engine a spec asks for, for what needs no lab: its ports, names and rules. What runs
/// the engine's own commands on a secure lab needs [`for_lab`] (its certificates).
pub fn for_spec(spec: &LabSpec) -> Arc<dyn Engine> {
    match spec.engine {
        EngineKind::Cockroach => Arc::new(cockroach::Cockroach::new(spec, None)),
        EngineKind::Etcd => Arc::new(etcd::Etcd::new(spec)),
    }
}

/// The engine of `lab`, which runs as `spec` says: a secure lab's engine knows where its
/// certificates are ([`crate::certs::CertPaths`]).
pub fn for_lab(spec: &LabSpec, lab: &Lab) -> Arc<dyn Engine> {
    let certs = spec.security.secure.then(|| crate::certs::CertPaths::of(lab));
    match spec.engine {
        EngineKind::Cockroach => Arc::new(cockroach::Cockroach::new(spec, certs)),
        EngineKind::Etcd => Arc::new(etcd::Etcd::new(spec)),
    }
}

/// Which client `roachlab sql` / `roachlab etcdctl` asked for, with what it runs.
#[derive(Debug, Clone, Copy)]
pub enum ClientShell<'a> {
    /// A SQL shell; each `execute` statement is run in order and the shell exits with their
    /// status (`cockroach sql -e`, `psql -c`); interactive when empty.
    Sql { execute: &'a [String] },
    /// `etcdctl ARGS` (v3 API).
    Etcdctl { args: &'a [String] },
}

/// Finds a binary: the environment variable, then the configured path, then `default_name`
/// on PATH. `install` says how to get it when it is missing.
pub fn find_binary(env_var: &str, configured: Option<&Path>, default_name: &str, install: &str) -> Result<PathBuf> {
    let not_found = || Error::BinaryNotFound { name: default_name.to_string(), env_var: env_var.to_string(), install: install.to_string() };
    let from_env = std::env::var_os(env_var).filter(|v| !v.is_empty()).map(PathBuf::from);
    let origin = if from_env.is_some() { format!("${env_var}") } else { "the config's `binary`".to_string() };
    let candidate = from_env.or_else(|| configured.map(Path::to_path_buf));
    match candidate {
        Some(p) => which::which(&p).map_err(|_| {
            // It exists but cannot be run: say that, not "not found".
            if p.is_file() {
                Error::Refused(format!(
                    "{origin} = {} exists but is not an executable {default_name} binary; point it at {default_name} (or `chmod +x` it)",
                    p.display()
                ))
            } else {
                not_found()
            }
        }),
        None => which::which(default_name).map_err(|_| not_found()),
    }
}

/// An HTTP client for node admin endpoints: the lab's own addresses only, short timeouts, no
/// proxy; a secure lab's TLS ([`crate::tls`]).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    crate::tls::http(reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).no_proxy())
        .build()
        .expect("an HTTP client for the lab builds")
}

/// Waits until `addr` (`host:port`) accepts a TCP connection, looking every 20 ms (each
/// attempt bounded by 200 ms), for at most `deadline`. Returns whether it did. The connection
/// is closed at once, nothing sent.
pub async fn wait_accepting(addr: &str, deadline: Duration) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET `{scheme}://{http_addr}{path}` and judge it with the engine; transport errors are
/// "not ready" with the error as detail.
pub async fn probe_readiness(engine: &dyn Engine, client: &reqwest::Client, http_addr: &str) -> Readiness {
    let url = crate::tls::url(http_addr, engine.readiness_path());
    match client.get(&url).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            engine.judge_readiness(status, &body)
        }
        Err(e) => Readiness { ready: false, detail: Some(describe_http_error(&e)) },
    }
}

/// A short description of a reqwest error (`connection refused`, `timed out`).
pub fn describe_http_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused".into()
    } else {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg = s.to_string();
            src = s.source();
        }
        msg
    }
}

/// GET `{scheme}://{addr}{path}` (`addr` is `host:port`); the body on 2xx, else a short reason.
pub async fn fetch_text(client: &reqwest::Client, addr: String, path: &str) -> std::result::Result<String, String> {
    let url = crate::tls::url(&addr, path);
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => r.text().await.map_err(|e| describe_http_error(&e)),
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) => Err(describe_http_error(&e)),
    }
}

/// Runs an engine CLI command with a deadline; returns stdout and stderr, or an error saying
/// which command failed and what it printed.
pub async fn run_cli(
    engine: &str,
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    deadline: Duration,
) -> Result<(bool, String, String)> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).envs(env.iter().cloned()).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let shown = format!("{} {}", program.display(), args.join(" "));
    let out = tokio::time::timeout(deadline, cmd.output())
        .await
        .map_err(|_| Error::Timeout { what: format!("`{shown}`"), after_ms: deadline.as_millis() as u64 })?
        .map_err(|e| Error::engine(engine, format!("cannot run `{shown}`: {e}")))?;
    Ok((out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_accepting_waits_for_a_listener_and_gives_up_at_its_deadline() {
        // A port nobody listens on (bound, then released): never accepts.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        assert!(!wait_accepting(&addr, Duration::from_millis(100)).await);
        // A listener that appears while it waits is found.
        let late = {
            let addr = addr.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(60)).await;
                tokio::net::TcpListener::bind(&addr).await.unwrap()
            })
        };
        assert!(wait_accepting(&addr, Duration::from_secs(10)).await);
        drop(late.await.unwrap());
    }
}
