//! The daemon's API: JSON over HTTP/1.1 on the lab's Unix socket (`DIR/roachlab.sock`, mode
//! 0600). Documented for script writers in `docs/API.md`.
//!
//! Quick requests (`GET /v1/status`, `GET /v1/haproxy`) answer one JSON document. Requests
//! that take time (`up`, `node ...`, `down`) answer `application/x-ndjson`: one
//! [`StreamItem`] per line, events as they happen, then exactly one `done` or `error` line;
//! blank lines in between are keep-alives (one a second while nothing else is sent), which
//! readers skip. A client that goes away is noticed by them: a request still queued behind
//! another is dropped without acting, and a wait for readiness stops (the timeline says so).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::events::Event;
use crate::haproxy::ServerStat;
use crate::node::NodeId;
use crate::process::ExitInfo;
use crate::watch::{ClusterFigures, Liveness};
use crate::{Error, Result};

/// Request header in which a client says who it is (`alice (pid 4242)`); the daemon records
/// it in the timeline's `command` events.
pub const CLIENT_HEADER: &str = "x-roachlab-client";

/// An environment variable that names who a CLI acts for, when another program started it
/// (the console starts drills with `console (browser at ADDR), drill NAME`).
pub const CLIENT_ENV: &str = "ROACHLAB_CLIENT";

/// How the CLI describes itself in [`CLIENT_HEADER`]: the user and the CLI's pid, or whom it
/// acts for ([`CLIENT_ENV`]) and its pid.
pub fn client_identity() -> String {
    if let Some(on_behalf) = std::env::var(CLIENT_ENV).ok().filter(|v| !v.is_empty()) {
        return format!("{} (pid {})", crate::text::printable(&on_behalf), std::process::id());
    }
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()));
    format!("{user} (pid {})", std::process::id())
}

/// One line of a streamed reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamItem {
    /// Something happened in the lab while the request ran.
    Event(Event),
    /// The request finished; its result (request-specific JSON).
    Done(serde_json::Value),
    /// The request failed.
    Error(ApiError),
}

/// `{"code": "bad_request", "message": "unknown node 9; this lab has nodes 1, 2, 3"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl From<&Error> for ApiError {
    fn from(e: &Error) -> Self {
        Self { code: e.code(), message: e.to_string() }
    }
}

/// Body of `POST /v1/nodes/{id}/stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StopRequest {
    /// Time from SIGTERM to SIGKILL in ms; the lab's `timeouts.grace` when absent.
    pub grace_ms: Option<u64>,
    /// SIGTERM at once: no HAProxy drain, no hand-off (the behaviour before drains, kept for
    /// comparison drills).
    #[serde(default)]
    pub no_drain: bool,
}

/// Body of `POST /v1/up` (optional): `{"restart": "on-failure"}` sets the lab's restart
/// policy (kept in its state) before it comes up; `"monitoring": {…}` (a
/// [`crate::monitoring::MonitoringSpec`]) switches Prometheus and Alertmanager on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpRequest {
    #[serde(default)]
    pub restart: Option<crate::config::RestartPolicy>,
    /// Switches monitoring on with these settings, for a lab that runs without it.
    #[serde(default)]
    pub monitoring: Option<crate::monitoring::MonitoringSpec>,
    /// The console as this `up` asks for it (`--no-console`, `--console-port`), kept in the
    /// lab's state; `None` keeps the lab's.
    #[serde(default)]
    pub console: Option<crate::config::console::ConsoleSpec>,
}

/// Body of `POST /v1/net/partition`: `{"sides": [[1,2],[3,4,5]]}`. Traffic between sides
/// is dropped both ways (`one_way`: only from the first side to the second); `from_clients`
/// also cuts HAProxy and the daemon from every side without a majority.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionRequest {
    pub sides: Vec<Vec<NodeId>>,
    #[serde(default)]
    pub one_way: bool,
    #[serde(default)]
    pub from_clients: bool,
}

/// Body of `POST /v1/net/shape`: latency (ms, with jitter) and loss (percent) on node
/// `node`'s outgoing traffic. Refused where the kernel has no `sch_netem`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShapeRequest {
    pub node: NodeId,
    #[serde(default)]
    pub delay_ms: u32,
    #[serde(default)]
    pub jitter_ms: u32,
    #[serde(default)]
    pub loss_pct: f64,
}

/// Body of `POST /v1/nodes/{id}/start`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StartRequest {
    /// Return once the process runs instead of waiting until it is ready (and UP in HAProxy).
    /// Needed to restore a majority: a lone restarted member cannot be ready without quorum.
    #[serde(default)]
    pub no_wait: bool,
}

/// Body of `POST /v1/nodes/{id}/decommission`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DecommissionRequest {
    /// Go ahead even when fewer nodes than the engine's minimum would remain.
    #[serde(default)]
    pub force: bool,
}

/// Body of `POST /v1/settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingRequest {
    pub name: String,
    pub value: String,
}

/// Body of `POST /v1/down`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DownRequest {
    /// SIGKILL every node at once instead of draining.
    #[serde(default)]
    pub fast: bool,
}

/// `GET /v1/status`. Field names are stable; new fields may be added.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub engine: String,
    pub dir: PathBuf,
    pub daemon: DaemonStatus,
    pub nodes: Vec<NodeStatus>,
    pub haproxy: HaproxyStatus,
    /// Cluster-level figures from the watcher (`ranges*`, `live_nodes` for CockroachDB;
    /// `leader`, `term`, `has_leader` for etcd; `quorum` for both). `null` until observed,
    /// and again after every change of the lab's shape until a poll round observes it
    /// (see `observed`); the nodes' engine figures (`liveness`, `replicas`, `leaseholders`,
    /// `is_leader`, `sees_quorum`) likewise.
    pub cluster: ClusterFigures,
    /// Whether the figures describe the lab as it is now.
    #[serde(default)]
    pub observed: Observed,
    /// The cluster's fault-tolerance rule in sentences (the engine's `quorum_rule`: etcd,
    /// members and majority; CockroachDB, replicas per range at the replication factor).
    #[serde(default)]
    pub quorum_rule: Vec<String>,
    /// The topology (`loopback` or `netns`) and, for netns, the faults in force.
    #[serde(default)]
    pub network: NetworkStatus,
    /// Prometheus and Alertmanager, when the lab runs them (`null` otherwise).
    #[serde(default)]
    pub monitoring: Option<MonitoringStatus>,
    /// The console's address (`http://127.0.0.1:PORT/`, without its token: `roachlab
    /// console` prints it with the token), while the daemon serves it.
    #[serde(default)]
    pub console: Option<String>,
    /// A secure lab's certificates (`null` for an insecure lab).
    #[serde(default)]
    pub certificates: Option<CertificatesStatus>,
}

/// A secure lab's certificates in `status`: where they are and when the first of the node and
/// client certificates expires (`roachlab certs` says more).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificatesStatus {
    pub dir: PathBuf,
    /// RFC 3339; `null` when a certificate could not be read.
    pub expires: Option<String>,
    pub days_left: Option<i64>,
}

/// The monitoring stack in `status`: each server's process and URL, and what they report
/// (asked with a short timeout at each `status`; `None` when a server did not answer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitoringStatus {
    pub prometheus: ComponentStatus,
    pub alertmanager: ComponentStatus,
    /// The daemon's webhook for Alertmanager (`http://127.0.0.1:PORT/v1/alerts/webhook`).
    pub webhook: String,
    /// Prometheus' targets that are up, and all of them (`GET /api/v1/targets`, Prometheus
    /// 2.42). Prometheus lists none until its scrape manager has the config's targets (a few
    /// seconds after it starts): 0 of 0 means *not observed yet*, never "no target".
    pub targets_up: Option<usize>,
    pub targets_total: Option<usize>,
    /// Targets not scraped yet (health `unknown`): neither up nor down.
    #[serde(default)]
    pub targets_unscraped: usize,
    /// Targets that are down: `job instance: last error`.
    #[serde(default)]
    pub targets_down: Vec<String>,
    /// Alerting rules Prometheus has loaded.
    pub rules_loaded: Option<usize>,
    /// Alerts firing now, as `Name{node="3"}`.
    pub firing: Option<Vec<String>>,
}

/// One monitoring server in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentStatus {
    pub pid: Option<u32>,
    /// `running` or `stopped`.
    pub state: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

/// `GET /v1/alerts`: what `roachlab alerts` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AlertsReport {
    /// Active in Alertmanager now.
    pub firing: Vec<crate::monitoring::client::Alert>,
    /// Every `alert_firing` / `alert_resolved` event of the lab's timeline, oldest first.
    pub history: Vec<crate::events::Event>,
    /// Why `firing` is empty when Alertmanager could not be asked.
    #[serde(default)]
    pub error: Option<String>,
}

/// The network in `status`: the topology and the faults in force (from `DIR/net.json`;
/// `net status` also probes who reaches whom).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// `loopback` or `netns`.
    pub topology: String,
    /// The sides of the partition in force; empty when the network is whole.
    #[serde(default)]
    pub sides: Vec<Vec<NodeId>>,
    /// Directed cuts in force.
    #[serde(default)]
    pub cuts: usize,
    /// Nodes with delay or loss on their traffic.
    #[serde(default)]
    pub shaped: Vec<NodeId>,
}

/// The daemon serving the lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    /// A `down` has begun: the daemon exits when it is done and takes no new request.
    #[serde(default)]
    pub exiting: bool,
}

/// One node in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    /// Process id while a process exists.
    pub pid: Option<u32>,
    /// `stopped`, `starting`, `running`, `stopping` or `exited`.
    pub state: String,
    /// When the current state began (RFC 3339), where known.
    pub since: Option<String>,
    /// How the process ended, when `state` is `exited`: `{"code":0}`, `{"signal":"SIGKILL"}` or `"unknown"`.
    pub exit: Option<ExitInfo>,
    /// The engine's readiness probe passed at the last poll (`false` while
    /// `ready_unobserved`).
    pub ready: bool,
    /// Why not ready, in the engine's words.
    pub ready_detail: Option<String>,
    /// No readiness probe has answered since the node was paused or resumed: its readiness is
    /// not observed yet, and `ready` is no verdict.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ready_unobserved: bool,
    /// The port HAProxy's client frontend routes to: CockroachDB SQL/RPC, etcd client.
    pub sql_port: u16,
    /// Admin HTTP port (etcd: its client port).
    pub http_port: u16,
    /// etcd peer port.
    pub peer_port: Option<u16>,
    /// HAProxy's state for this node's server in the client frontend (`UP`, `DOWN`, ...).
    pub backend: Option<String>,
    /// Removed from the cluster.
    pub decommissioned: bool,
    /// The engine's own id: CockroachDB node ID, etcd member ID.
    pub engine_id: Option<u64>,
    /// HAProxy's last check result (`L7OK`, `L4CON`, `L7STS`...).
    pub backend_check: Option<String>,
    /// The cluster's view of the node (CockroachDB liveness: `LIVE`, `SUSPECT`, `DEAD`,
    /// `DRAINING`, `DECOMMISSIONING`, `DECOMMISSIONED`, `UNKNOWN`). Shown even when the
    /// process is gone: `state` says what the process is, this says what the cluster believes.
    pub liveness: Option<Liveness>,
    /// Replicas on the node (CockroachDB).
    pub replicas: Option<u64>,
    /// Leases held (CockroachDB).
    pub leaseholders: Option<u64>,
    /// This member is the Raft leader (etcd).
    pub is_leader: Option<bool>,
    /// The node's address (127.0.0.1, or its own in the netns topology).
    #[serde(default)]
    pub host: String,
    /// A quorum read through this node answered at the last poll (etcd: linearizable read;
    /// CockroachDB: SQL probe). Under a partition, the majority side answers and the minority
    /// does not.
    #[serde(default)]
    pub sees_quorum: Option<bool>,
    /// The probe's answer in words.
    #[serde(default)]
    pub quorum_detail: Option<String>,
    /// The node's locality (`zone=a`; the config's `localities`, node N taking entry
    /// (N−1) mod len), for both engines.
    #[serde(default)]
    pub locality: Option<String>,
    /// A CPU quota in force (`node throttle`), percent of one core.
    #[serde(default)]
    pub cpu_quota_pct: Option<u32>,
    /// Automatic restarts by the restart policy since this daemon started.
    #[serde(default)]
    pub restarts: u32,
    /// When the pending automatic restart is due (RFC 3339), if one is.
    #[serde(default)]
    pub next_restart_at: Option<String>,
    /// `crash-loop (restart 5 in 40 s)` while the node keeps exiting.
    #[serde(default)]
    pub crash_loop: Option<String>,
}

/// How fresh the watcher's figures in `status` are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Observed {
    /// The last consistent poll round saw the lab's current shape (the same member processes
    /// running and paused, the same partition). `false`: something changed since, and the
    /// figures are withheld (`null`) until a round observes the new shape.
    pub current: bool,
    /// How long ago that round ended, in ms (`null`: no round yet since the daemon started).
    pub age_ms: Option<u64>,
}

/// HAProxy in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HaproxyStatus {
    pub pid: Option<u32>,
    /// `running` or `stopped`.
    pub state: String,
    pub config: PathBuf,
    /// `127.0.0.1:PORT` of the client frontend, admin UI and stats page.
    pub frontend: String,
    pub admin_ui: String,
    pub stats: String,
}

/// `GET /v1/haproxy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HaproxyReport {
    pub status: HaproxyStatus,
    pub servers: Vec<ServerStat>,
}

/// A client of one lab's daemon.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    http: reqwest::Client,
}

impl Client {
    /// A client for the daemon listening on `socket`.
    pub fn new(socket: &Path) -> Self {
        crate::tls::ensure_provider();
        let http = reqwest::Client::builder().unix_socket(socket).no_proxy().build().expect("a unix-socket HTTP client builds");
        Self { socket: socket.to_path_buf(), http }
    }

    fn url(path: &str) -> String {
        format!("http://roachlab{path}")
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> Error {
        Error::DaemonUnreachable { socket: self.socket.clone(), message: e.to_string() }
    }

    /// True when a daemon answers on the socket.
    pub async fn is_up(&self) -> bool {
        self.http.get(Self::url("/v1/ping")).timeout(std::time::Duration::from_secs(2)).send().await.is_ok()
    }

    /// GET a JSON document.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.http.get(Self::url(path)).send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            return Err(api_error(&text));
        }
        serde_json::from_str(&text).map_err(|e| self.unreachable(format!("bad reply to {path}: {e}")))
    }

    /// POST `body` and follow the streamed reply, calling `on_event` for each event; returns
    /// the `done` value, or the daemon's error.
    pub async fn stream(&self, path: &str, body: &impl Serialize, mut on_event: impl FnMut(&Event)) -> Result<serde_json::Value> {
        use futures_util::StreamExt;
        let resp = self
            .http
            .post(Self::url(path))
            .header(CLIENT_HEADER, client_identity())
            .json(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(api_error(&text));
        }
        let mut buf = Vec::new();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| self.unreachable(e))?);
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let item: StreamItem = serde_json::from_slice(&line).map_err(|e| self.unreachable(format!("bad stream line: {e}")))?;
                match item {
                    StreamItem::Event(e) => on_event(&e),
                    StreamItem::Done(v) => return Ok(v),
                    StreamItem::Error(e) => return Err(Error::Api { code: e.code, message: e.message }),
                }
            }
        }
        Err(self.unreachable("the daemon closed the stream before the request finished (see logs/daemon.log)"))
    }
}

fn api_error(text: &str) -> Error {
    match serde_json::from_str::<StreamItem>(text) {
        Ok(StreamItem::Error(e)) => Error::Api { code: e.code, message: e.message },
        _ => Error::Api { code: ErrorCode::Internal, message: text.trim().to_string() },
    }
}
