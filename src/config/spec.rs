//! The validated lab: what `up` builds, every field defaulted and checked (by
//! [`super::raw::RawConfig::resolve`]), persisted in `state.json` so a lab keeps its shape.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::console::ConsoleSpec;
use super::monitoring::MonitoringSpec;
use super::security::SecuritySpec;
use super::topology;
use super::values::{EngineKind, RestartPolicy, MAX_NODES};

/// A validated lab: what `up` builds. Persisted in `state.json` so a lab keeps its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabSpec {
    pub engine: EngineKind,
    /// Nodes started by `up` (ids 1..=nodes).
    pub nodes: u32,
    /// Where nodes live on the network (labs made before topologies: loopback).
    #[serde(default)]
    pub topology: topology::TopologySpec,
    pub ports: PortsSpec,
    pub haproxy: HaproxySpec,
    pub timeouts: Timeouts,
    pub cockroach: CockroachSpec,
    pub etcd: EtcdSpec,
    /// Automatic restarts (labs made before restart policies: never).
    #[serde(default)]
    pub restart: RestartSpec,
    /// Prometheus and Alertmanager (labs made before monitoring: off).
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    /// The live console (labs made before it: on, at the default port).
    #[serde(default)]
    pub console: ConsoleSpec,
    /// TLS and the frontends' address (labs made before it: insecure, on loopback).
    #[serde(default)]
    pub security: SecuritySpec,
}

/// The restart policy and its backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestartSpec {
    pub policy: RestartPolicy,
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    #[serde(with = "humantime_serde")]
    pub reset_after: Duration,
}

impl Default for RestartSpec {
    fn default() -> Self {
        Self {
            policy: RestartPolicy::Never,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(10),
        }
    }
}

impl RestartSpec {
    /// The wait before restart number `n` (1-based): `initial × 2^(n−1)`, at most `max`.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Base ports; node N uses `base + N - 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortsSpec {
    pub base: u16,
    pub http_base: u16,
    pub peer_base: u16,
}

/// HAProxy front end and health checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaproxySpec {
    pub binary: Option<PathBuf>,
    pub frontend_port: u16,
    pub admin_port: u16,
    pub stats_port: u16,
    #[serde(with = "humantime_serde")]
    pub inter: Duration,
    pub fall: u32,
    pub rise: u32,
}

impl HaproxySpec {
    /// How long HAProxy needs to mark a dead server DOWN: `inter × fall`.
    pub fn down_window(&self) -> Duration {
        self.inter * self.fall
    }
}

/// Supervisor timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeouts {
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    #[serde(with = "humantime_serde")]
    pub down_grace: Duration,
    #[serde(with = "humantime_serde")]
    pub ready: Duration,
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    #[serde(default = "default_drain_sessions", with = "humantime_serde")]
    pub drain_sessions: Duration,
}

/// `timeouts.drain_sessions` when the file does not say (also for a `state.json` written
/// before the key existed).
pub(super) fn default_drain_sessions() -> Duration {
    Duration::from_secs(5)
}

/// CockroachDB settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CockroachSpec {
    pub binary: Option<PathBuf>,
    pub cache: String,
    pub max_sql_memory: String,
    pub replication_factor: u32,
    pub localities: Vec<String>,
    pub extra_args: Vec<String>,
}

/// etcd settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdSpec {
    pub binary: Option<PathBuf>,
    pub extra_args: Vec<String>,
    #[serde(default)]
    pub localities: Vec<String>,
}

impl LabSpec {
    /// One line describing the lab, e.g. `cockroach, 3 nodes` (`…, netns topology` when not loopback).
    pub fn summary(&self) -> String {
        match self.topology.kind {
            topology::TopologyKind::Loopback => format!("{}, {} nodes", self.engine, self.nodes),
            k => format!("{}, {} nodes, {k} topology", self.engine, self.nodes),
        }
    }

    /// Node `id`'s locality, e.g. `zone=a`: entry (id−1) mod len of the engine's
    /// `localities` (CockroachDB passes it as `--locality`; for etcd it is a roachlab-side
    /// label). `None` when none are configured.
    pub fn locality_of(&self, id: crate::node::NodeId) -> Option<String> {
        let l = match self.engine {
            EngineKind::Cockroach => &self.cockroach.localities,
            EngineKind::Etcd => &self.etcd.localities,
        };
        (!l.is_empty()).then(|| l[(id as usize - 1) % l.len()].clone())
    }

    /// Checks that no two roles share a port for up to [`MAX_NODES`] nodes.
    pub(super) fn check_port_layout(&self) -> std::result::Result<(), String> {
        let mut used: Vec<(u32, u32, &str)> = Vec::new(); // [start, end) ranges
        let n = MAX_NODES;
        used.push((self.ports.base as u32, self.ports.base as u32 + n, "ports.base (node ports)"));
        if self.ports.http_base != 0 {
            used.push((self.ports.http_base as u32, self.ports.http_base as u32 + n, "ports.http_base"));
        }
        if self.ports.peer_base != 0 {
            used.push((self.ports.peer_base as u32, self.ports.peer_base as u32 + n, "ports.peer_base"));
        }
        for (p, name) in [
            (self.haproxy.frontend_port, "haproxy.frontend_port"),
            (self.haproxy.admin_port, "haproxy.admin_port"),
            (self.haproxy.stats_port, "haproxy.stats_port"),
        ] {
            used.push((p as u32, p as u32 + 1, name));
        }
        if self.monitoring.enabled {
            for (p, name) in [
                (self.monitoring.prometheus_port, "monitoring.prometheus_port"),
                (self.monitoring.alertmanager_port, "monitoring.alertmanager_port"),
                (self.monitoring.webhook_port, "monitoring.webhook_port"),
            ] {
                used.push((p as u32, p as u32 + 1, name));
            }
        }
        if self.console.enabled {
            used.push((self.console.port as u32, self.console.port as u32 + 1, "console.port"));
        }
        for (i, a) in used.iter().enumerate() {
            if a.0 == 0 {
                return Err(format!("{} must not be 0", a.2));
            }
            if a.1 > 65536 {
                return Err(format!("{} = {}: the port block for {} nodes passes 65535", a.2, a.0, n));
            }
            for b in &used[i + 1..] {
                if a.0 < b.1 && b.0 < a.1 {
                    return Err(format!(
                        "{} ({}..{}) overlaps {} ({}..{}); each node role takes a block of {n} ports",
                        a.2,
                        a.0,
                        a.1 - 1,
                        b.2,
                        b.0,
                        b.1 - 1
                    ));
                }
            }
        }
        Ok(())
    }
}
