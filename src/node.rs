//! Nodes: identity, ports and lifecycle.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::process::{ExitInfo, ProcIdentity};

/// A node's id: 1-based, stable for the life of the lab (ids are never reused after a
/// decommission). For CockroachDB it matches the node ID the cluster assigns when nodes join
/// in order; for etcd it names the member `node-N`.
pub type NodeId = u32;

/// Where one node listens: its host address and ports.
///
/// The address is 127.0.0.1 in the default (`loopback`) topology and the node's own address
/// in the `netns` topology ([`crate::topology`]); port numbers are the same in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePorts {
    /// The node's IPv4 address (state files written before topologies had none: loopback).
    #[serde(default = "loopback")]
    pub host: Ipv4Addr,
    /// Where HAProxy's client frontend routes: CockroachDB SQL/RPC, or etcd client.
    pub service: u16,
    /// HTTP for health checks and the admin UI: CockroachDB `--http-addr`; for etcd the
    /// client port (etcd serves `/health` and `/metrics` there).
    pub http: u16,
    /// etcd peer (Raft) port; `None` for CockroachDB (Raft rides on the RPC port).
    pub peer: Option<u16>,
}

fn loopback() -> Ipv4Addr {
    Ipv4Addr::LOCALHOST
}

impl NodePorts {
    /// Loopback ports (`host` 127.0.0.1), as engines lay them out.
    pub fn loopback(service: u16, http: u16, peer: Option<u16>) -> Self {
        Self { host: Ipv4Addr::LOCALHOST, service, http, peer }
    }

    /// `host:service`, e.g. `127.0.0.1:26258`.
    pub fn service_addr(&self) -> String {
        format!("{}:{}", self.host, self.service)
    }

    /// `host:http`, e.g. `127.0.0.1:8081`.
    pub fn http_addr(&self) -> String {
        format!("{}:{}", self.host, self.http)
    }

    /// `host:peer` (etcd), e.g. `198.18.7.11:23891`.
    pub fn peer_addr(&self) -> Option<String> {
        self.peer.map(|p| format!("{}:{p}", self.host))
    }
}

/// A node's process lifecycle. `ready` (the engine's readiness probe) is tracked beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum NodeState {
    /// Never started, or stopped on purpose and not running.
    Stopped,
    /// Spawned; not yet reported ready since this start.
    Starting {
        pid: u32,
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
    },
    /// Running, and reported ready at least once since this start.
    Running {
        pid: u32,
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
    },
    /// Stopped with SIGSTOP (`node pause`): the process and its sockets exist, it answers
    /// nothing until SIGCONT (`node resume`). `was_ready`: it had been ready since its start.
    Paused {
        pid: u32,
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
        #[serde(default)]
        was_ready: bool,
    },
    /// Signalled to stop; escalates to SIGKILL at `deadline`.
    Stopping {
        pid: u32,
        signal: String,
        #[serde(with = "time::serde::rfc3339")]
        deadline: OffsetDateTime,
    },
    /// The process ended.
    Exited {
        status: ExitInfo,
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
}

impl NodeState {
    /// The short name `status` shows: `stopped`, `starting`, `running`, `paused`, `stopping`,
    /// `exited`.
    pub fn name(&self) -> &'static str {
        match self {
            NodeState::Stopped => "stopped",
            NodeState::Starting { .. } => "starting",
            NodeState::Running { .. } => "running",
            NodeState::Paused { .. } => "paused",
            NodeState::Stopping { .. } => "stopping",
            NodeState::Exited { .. } => "exited",
        }
    }

    /// The PID while a process exists.
    pub fn pid(&self) -> Option<u32> {
        match self {
            NodeState::Starting { pid, .. }
            | NodeState::Running { pid, .. }
            | NodeState::Paused { pid, .. }
            | NodeState::Stopping { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// True while a process exists (starting, running, stopping).
    pub fn is_live(&self) -> bool {
        self.pid().is_some()
    }
}

/// One node of the lab as persisted in `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    pub ports: NodePorts,
    pub state: NodeState,
    /// The running process, if any.
    pub process: Option<ProcIdentity>,
    /// Removed from the cluster (`node decommission`); never started again, left out of HAProxy.
    #[serde(default)]
    pub decommissioned: bool,
    /// The engine's own id for the node once learned: CockroachDB node ID (from
    /// `/_status/nodes`; it can differ from `id` when nodes join out of order), etcd member ID.
    #[serde(default)]
    pub engine_id: Option<u64>,
}
