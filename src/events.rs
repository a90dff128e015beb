//! The event stream: everything that happens in a lab, as data.
//!
//! The supervisor publishes [`Event`]s on an [`EventBus`]; consumers subscribe. The timeline
//! file (`DIR/events.jsonl`, one JSON object per line) and every CLI reporter (progress bars or
//! plain lines) are consumers of the same stream: nothing in the daemon prints.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::node::NodeId;
use crate::process::ExitInfo;

/// One thing that happened, with two timestamps.
///
/// JSON shape (one line of `events.jsonl`):
/// `{"ts":"2026-11-21T14:00:00.123Z","mono_ms":123456,"kind":"node_exited","node":2,"pid":77,"status":{"signal":"SIGKILL"}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// `CLOCK_MONOTONIC` in milliseconds (time since boot, not counting suspend): comparable
    /// across daemon restarts on one machine, immune to wall-clock steps.
    pub mono_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A request reached the daemon, e.g. `node kill 2`, and who sent it (`alice (pid 4242)`,
    /// as the client says; `None` for requests made inside the daemon).
    Command { command: String, by: Option<String> },
    /// A node process was started.
    NodeSpawned { node: NodeId, pid: u32 },
    /// A running node from a previous daemon was taken over (matched by PID + start time).
    NodeAdopted { node: NodeId, pid: u32 },
    /// Progress of a long step on one node (`waiting for init`, `draining: 12 s of 60 s`).
    NodePhase { node: NodeId, phase: String },
    /// The node's readiness probe changed (`GET /health?ready=1` for CockroachDB, `GET /health` for etcd).
    NodeReady { node: NodeId, ready: bool, detail: Option<String> },
    /// The node was paused (SIGSTOP to its process group).
    NodePaused { node: NodeId, pid: u32 },
    /// The node was resumed (SIGCONT).
    NodeResumed { node: NodeId, pid: u32 },
    /// A CPU quota was put on the node (cgroup), percent of one core; `None`: removed.
    NodeThrottled { node: NodeId, cpu_pct: Option<u32> },
    /// The restart policy will start the node again after `in_ms` (restart number `attempt`).
    NodeRestartScheduled { node: NodeId, attempt: u32, in_ms: u64, reason: String },
    /// The node keeps exiting: `restarts` restarts within `window_s` s; its last log lines.
    NodeCrashLoop { node: NodeId, restarts: u32, window_s: u64, last_lines: Vec<String> },
    /// roachlab sent a signal to the node's process group.
    NodeSignalled { node: NodeId, pid: u32, signal: String },
    /// The node's process ended; `after_ms` is the time since roachlab first signalled it.
    NodeExited { node: NodeId, pid: u32, status: ExitInfo, after_ms: Option<u64> },
    /// The node left the cluster for good (`cockroach node decommission` / etcd member remove).
    NodeDecommissioned { node: NodeId },
    /// The cluster was initialised (`cockroach init`), or found already initialised.
    ClusterInitialized { detail: String },
    /// HAProxy's master process was started.
    HaproxyStarted { pid: u32 },
    /// HAProxy reloaded a new config with these backend servers.
    HaproxyReloaded { servers: Vec<String> },
    /// HAProxy's master process ended.
    HaproxyExited { pid: u32, status: ExitInfo },
    /// HAProxy's view of one backend server changed (`UP`, `DOWN`, `MAINT`, ...).
    BackendState { node: NodeId, state: String, check: String },
    /// The cluster's view of a node's liveness changed (CockroachDB).
    LivenessChanged { node: NodeId, from: Option<String>, to: String },
    /// Cluster range counts changed (CockroachDB: summed `ranges_*` gauges).
    RangesChanged { ranges: Option<u64>, underreplicated: Option<u64>, unavailable: Option<u64> },
    /// The Raft leader changed (etcd); `to` is `None` when no member knows a leader.
    LeaderChanged { from: Option<NodeId>, to: Option<NodeId>, term: Option<u64> },
    /// The leaseholder of a row changed (CockroachDB: `lease_holder` of `SHOW RANGE FROM TABLE
    /// … FOR ROW`, v20.1.5): observed when roachlab asks — a drill resolving `leader` or
    /// `leaseholder-of`, then the poller every 2 s for 5 min after the last such question.
    /// `from` is `None` at the first answer for the row.
    LeaseholderChanged { table: String, key: i64, from: Option<NodeId>, to: NodeId },
    /// Fewer than a majority of members are up (etcd), or the SQL probe failed on every live
    /// node (CockroachDB; `detail` says what each node answered).
    QuorumLost {
        up: usize,
        needed: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A majority of members is up again, or the SQL probe answers again.
    QuorumRegained {
        up: usize,
        needed: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// One stage of a graceful stop (`node stop` with drain), as it completed: `haproxy`
    /// (the server set to DRAIN in every backend, read back), `sessions` (client sessions
    /// left the server), `hand-off` (etcd leadership moved / CockroachDB drained: leases and
    /// Raft leadership moved, SQL clients closed), `ready` (back in service after a restart).
    /// `after_ms` counts from the stop request.
    DrainStage { node: NodeId, stage: String, detail: String, after_ms: u64 },
    /// The network was partitioned (netns topology): traffic between `sides` is dropped
    /// (only from the first side to the second when `one_way`); `cuts` directed cuts made.
    NetPartitioned { sides: Vec<Vec<NodeId>>, one_way: bool, from_clients: bool, cuts: usize },
    /// Latency and loss were put on a node's outgoing traffic (`tc netem`).
    NetShaped { node: NodeId, delay_ms: u32, jitter_ms: u32, loss_pct: f64 },
    /// Every network fault was removed.
    NetHealed { detail: String },
    /// A node's own view of quorum changed: whether a linearizable read (etcd) or SQL probe
    /// (CockroachDB) through it answered. Under a partition this is what tells the sides apart.
    NodeQuorum { node: NodeId, sees_quorum: bool, detail: Option<String> },
    /// Prometheus or Alertmanager was started (`component`: `prometheus`, `alertmanager`).
    MonitoringStarted { component: crate::monitoring::Component, pid: u32, url: String },
    /// Prometheus re-read its config after a membership change; it now scrapes `targets`.
    MonitoringReloaded { targets: Vec<String> },
    /// Prometheus' or Alertmanager's process ended.
    MonitoringExited { component: crate::monitoring::Component, pid: u32, status: ExitInfo },
    /// Alertmanager notified that an alert fires. `starts_at` (RFC 3339) is the alert's own
    /// time, when Prometheus found its condition held for its `for:`; the event's `ts` is when
    /// the notification arrived.
    AlertFiring {
        alert: String,
        labels: std::collections::BTreeMap<String, String>,
        starts_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
    },
    /// Alertmanager notified that an alert resolved at `ends_at` (RFC 3339, its own time).
    AlertResolved { alert: String, labels: std::collections::BTreeMap<String, String>, starts_at: String, ends_at: String },
    /// Something the user should read.
    Note { message: String },
    /// Something that went wrong without failing the request.
    Warning { message: String },
}

impl Event {
    /// Stamps `kind` with both clocks.
    pub fn now(kind: EventKind) -> Self {
        Self { ts: OffsetDateTime::now_utc(), mono_ms: mono_ms(), kind }
    }

    /// The node an event is about, if any.
    pub fn node(&self) -> Option<NodeId> {
        match &self.kind {
            EventKind::NodeSpawned { node, .. }
            | EventKind::NodeAdopted { node, .. }
            | EventKind::NodePhase { node, .. }
            | EventKind::NodeReady { node, .. }
            | EventKind::NodeSignalled { node, .. }
            | EventKind::NodeExited { node, .. }
            | EventKind::NodeDecommissioned { node }
            | EventKind::BackendState { node, .. }
            | EventKind::LivenessChanged { node, .. }
            | EventKind::NetShaped { node, .. }
            | EventKind::NodePaused { node, .. }
            | EventKind::NodeResumed { node, .. }
            | EventKind::NodeThrottled { node, .. }
            | EventKind::NodeRestartScheduled { node, .. }
            | EventKind::NodeCrashLoop { node, .. }
            | EventKind::NodeQuorum { node, .. } => Some(*node),
            _ => None,
        }
    }

    /// A one-line human description, without the timestamp.
    /// The event in one line of words, control characters escaped ([`printable`]): events
    /// carry text from outside (alert labels, engine errors, node log lines).
    pub fn describe(&self) -> String {
        printable(&self.describe_raw())
    }

    fn describe_raw(&self) -> String {
        match &self.kind {
            EventKind::Command { command, by: Some(by) } => format!("request: {command} (from {by})"),
            EventKind::Command { command, by: None } => format!("request: {command}"),
            EventKind::NodeSpawned { node, pid } => format!("node {node}: started (pid {pid})"),
            EventKind::NodeAdopted { node, pid } => format!("node {node}: adopted running process (pid {pid})"),
            EventKind::NodePhase { node, phase } => format!("node {node}: {phase}"),
            EventKind::NodeReady { node, ready: true, .. } => format!("node {node}: ready"),
            EventKind::NodeReady { node, ready: false, detail } => match detail {
                Some(d) => format!("node {node}: not ready ({d})"),
                None => format!("node {node}: not ready"),
            },
            EventKind::NodeSignalled { node, pid, signal } => format!("node {node}: sent {signal} to pid {pid}"),
            EventKind::NodePaused { node, pid } => {
                format!("node {node}: PAUSED (SIGSTOP to pid {pid}): it holds its sockets and answers nothing")
            }
            EventKind::NodeResumed { node, pid } => format!("node {node}: resumed (SIGCONT to pid {pid})"),
            EventKind::NodeThrottled { node, cpu_pct: Some(p) } => format!("node {node}: CPU throttled to {p}% of a core"),
            EventKind::NodeThrottled { node, cpu_pct: None } => format!("node {node}: CPU throttle removed"),
            EventKind::NodeRestartScheduled { node, attempt, in_ms, reason } => {
                format!("node {node}: {reason}; restart {attempt} in {:.1} s (restart policy)", *in_ms as f64 / 1000.0)
            }
            EventKind::NodeCrashLoop { node, restarts, window_s, last_lines } => {
                format!("node {node}: CRASH-LOOP (restart {restarts} in {window_s} s); last log lines: {}", last_lines.join(" ⏎ "))
            }
            EventKind::NodeExited { node, pid, status, after_ms } => match after_ms {
                Some(ms) => format!("node {node}: exited ({status}) {:.1} s after the signal (pid {pid})", *ms as f64 / 1000.0),
                None => format!("node {node}: exited ({status}) (pid {pid})"),
            },
            EventKind::NodeDecommissioned { node } => format!("node {node}: decommissioned"),
            EventKind::ClusterInitialized { detail } => format!("cluster initialised: {detail}"),
            EventKind::HaproxyStarted { pid } => format!("haproxy: started (pid {pid})"),
            EventKind::HaproxyReloaded { servers } => format!("haproxy: reloaded with servers {}", servers.join(", ")),
            EventKind::HaproxyExited { pid, status } => format!("haproxy: exited ({status}) (pid {pid})"),
            EventKind::BackendState { node, state, check } => {
                if check.is_empty() {
                    format!("haproxy: node {node} is {state}")
                } else {
                    format!("haproxy: node {node} is {state} ({check})")
                }
            }
            EventKind::LivenessChanged { node, from, to } => match from {
                Some(f) => format!("node {node}: liveness {f} → {to}"),
                None => format!("node {node}: liveness {to}"),
            },
            EventKind::RangesChanged { ranges, underreplicated, unavailable } => {
                format!("ranges: {} under-replicated, {} unavailable (of {})", opt(underreplicated), opt(unavailable), opt(ranges))
            }
            EventKind::LeaderChanged { from, to, term } => {
                let name = |n: &Option<NodeId>| n.map(|n| format!("node {n}")).unwrap_or_else(|| "none".into());
                let term = term.map(|t| format!(" (term {t})")).unwrap_or_default();
                format!("leader: {} → {}{term}", name(from), name(to))
            }
            EventKind::LeaseholderChanged { table, key, from: Some(f), to } => {
                format!("leaseholder of {table} row {key}: node {f} → node {to}")
            }
            EventKind::LeaseholderChanged { table, key, from: None, to } => format!("leaseholder of {table} row {key}: node {to}"),
            EventKind::QuorumLost { detail: Some(d), .. } => {
                format!("QUORUM LOST: {d}; writes that need the lost majority cannot commit")
            }
            EventKind::QuorumLost { up, needed, detail: None } => {
                format!("QUORUM LOST: {up} member(s) up, a majority needs {needed}; writes cannot commit")
            }
            EventKind::QuorumRegained { detail: Some(d), .. } => format!("quorum regained: {d}"),
            EventKind::QuorumRegained { up, needed, detail: None } => format!("quorum regained: {up} member(s) up (majority {needed})"),
            EventKind::DrainStage { node, stage, detail, .. } if stage == "ready" => format!("node {node}: {detail}"),
            EventKind::DrainStage { node, stage, detail, after_ms } => {
                format!("node {node}: drain stage {stage} at +{:.1} s: {detail}", *after_ms as f64 / 1000.0)
            }
            EventKind::NetPartitioned { sides, one_way, from_clients, cuts } => {
                format!("network: PARTITIONED {} ({cuts} cut(s))", describe_sides(sides, *one_way, *from_clients))
            }
            EventKind::NetShaped { node, delay_ms, jitter_ms, loss_pct } => {
                format!("network: node {node} delay {delay_ms} ms ± {jitter_ms} ms, loss {loss_pct}%")
            }
            EventKind::NetHealed { detail } => format!("network: healed ({detail})"),
            EventKind::NodeQuorum { node, sees_quorum: true, .. } => format!("node {node}: sees quorum again"),
            EventKind::NodeQuorum { node, sees_quorum: false, detail } => {
                format!("node {node}: sees NO quorum ({})", detail.as_deref().unwrap_or("its probe failed"))
            }
            EventKind::MonitoringStarted { component, pid, url } => format!("{component}: started (pid {pid}) on {url}"),
            EventKind::MonitoringReloaded { targets } => format!("prometheus: reloaded; scraping {}", targets.join(", ")),
            EventKind::MonitoringExited { component, pid, status } => format!("{component}: exited ({status}) (pid {pid})"),
            EventKind::AlertFiring { alert, labels, starts_at, summary } => format!(
                "alert firing: {alert}{} since {}{}",
                describe_labels(labels),
                clock_of(starts_at),
                summary.as_ref().map(|s| format!(" — {s}")).unwrap_or_default()
            ),
            EventKind::AlertResolved { alert, labels, starts_at, ends_at } => {
                format!("alert resolved: {alert}{} at {} (fired {})", describe_labels(labels), clock_of(ends_at), clock_of(starts_at))
            }
            EventKind::Note { message } => message.clone(),
            EventKind::Warning { message } => format!("warning: {message}"),
        }
    }
}

/// `1,2 | 3,4,5`, `3 → 1 (one way)`, `… (clients cut from the minority)`.
pub fn describe_sides(sides: &[Vec<NodeId>], one_way: bool, from_clients: bool) -> String {
    let list = |s: &Vec<NodeId>| s.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
    let mut t = if one_way {
        format!("{} cannot send to {} (one way)", list(&sides[0]), list(&sides[1]))
    } else {
        sides.iter().map(list).collect::<Vec<_>>().join(" | ")
    };
    if from_clients {
        t.push_str(", clients cut from every side without a majority");
    }
    t
}

pub use crate::text::printable;

/// Prometheus' way of writing labels, `{node="3"}`; nothing for no labels.
pub fn describe_labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    format!("{{{}}}", labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(","))
}

/// `HH:MM:SS.mmm` of an RFC 3339 time (UTC), or the text itself.
fn clock_of(rfc3339: &str) -> String {
    match OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!("{:02}:{:02}:{:02}.{:03}", t.hour(), t.minute(), t.second(), t.millisecond())
        }
        Err(_) => rfc3339.to_string(),
    }
}

fn opt(v: &Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}

/// `CLOCK_MONOTONIC` in ms.
pub fn mono_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

tokio::task_local! {
    /// Who sent the API request being served (set by the daemon around each request's task).
    pub static REQUESTER: String;
}

/// The requester of the current API request, if any.
pub fn requester() -> Option<String> {
    REQUESTER.try_with(Clone::clone).ok()
}

tokio::task_local! {
    /// Cancelled once the client of the API request being served has gone away (its CLI was
    /// Ctrl-C'd or killed): set by the daemon around each streamed request's task.
    pub static CLIENT_GONE: CancellationToken;
}

/// The current API request's client-gone token, if it runs for a client (internal tasks,
/// such as the restart policy's, have none).
pub fn client_gone() -> Option<CancellationToken> {
    CLIENT_GONE.try_with(Clone::clone).ok()
}

/// The daemon's event bus (a `tokio::sync::broadcast` channel). Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus that buffers up to 4096 events for slow subscribers.
    pub fn new() -> Self {
        Self { tx: broadcast::channel(4096).0 }
    }

    /// Publishes an event (dropped if nobody listens; the timeline writer always does).
    pub fn emit(&self, kind: EventKind) {
        let event = Event::now(kind);
        tracing::debug!(event = %event.describe());
        let _ = self.tx.send(event);
    }

    /// A new subscription, seeing events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// Appends every event received on `rx` (subscribe before anything is emitted) to `path` as
/// JSON lines until `cancel` fires, then drains what is already queued. Write errors are
/// logged and retried on the next event.
pub async fn write_timeline(mut rx: broadcast::Receiver<Event>, path: PathBuf, cancel: CancellationToken) {
    let mut file = match tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("cannot open timeline {}: {e}", path.display());
            return;
        }
    };
    loop {
        let event = tokio::select! {
            biased;
            r = rx.recv() => r,
            _ = cancel.cancelled() => match rx.try_recv() {
                Ok(e) => Ok(e),
                Err(_) => break,
            },
        };
        match event {
            Ok(e) => {
                let mut line = serde_json::to_string(&e).expect("events serialize");
                line.push('\n');
                if let Err(err) = file.write_all(line.as_bytes()).await {
                    tracing::error!("cannot append to {}: {err}", path.display());
                }
                let _ = file.flush().await;
            }
            Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!("timeline lagged; {n} events lost"),
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_a_terminal() {
        assert_eq!(printable("Evil\u{0}\n\u{1b}[31m"), "Evil\\u{0}\\n\\u{1b}[31m");
        assert_eq!(printable("plain ü"), "plain ü");
    }

    #[test]
    fn events_serialize_flat_with_both_clocks() {
        let e = Event::now(EventKind::NodeExited { node: 2, pid: 77, status: ExitInfo::Signal("SIGKILL".into()), after_ms: None });
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "node_exited");
        assert_eq!(v["node"], 2);
        assert_eq!(v["status"]["signal"], "SIGKILL");
        assert!(v["mono_ms"].as_u64().unwrap() > 0);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
