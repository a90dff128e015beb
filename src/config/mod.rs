//! Lab configuration: raw TOML (plus command-line flags) resolved into a validated [`LabSpec`].
//!
//! Nothing outside this module sees a [`RawConfig`]: the supervisor, engines and HAProxy only
//! take a [`LabSpec`], whose every field has been defaulted and checked. An embedded default
//! (`configs/cockroach-3.toml`) is used when no `--config` is given.
//!
//! Durations are written as humantime strings (`"500ms"`, `"1s"`, `"2m"`).

pub mod alerts;
pub mod monitoring;
pub mod topology;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The config used when `roachlab up` is given no `--config`: 3 CockroachDB nodes.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/cockroach-3.toml");

/// Which database the lab runs. The only place an engine is named; everything else goes
/// through [`crate::engine::Engine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// CockroachDB (`cockroach start`, insecure, one store per node).
    Cockroach,
    /// etcd 3.4+ (`etcd`, static initial cluster).
    Etcd,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::Cockroach => "cockroach",
            EngineKind::Etcd => "etcd",
        })
    }
}

/// The config file as written: every field optional, unknown fields rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `"cockroach"` (default) or `"etcd"`.
    pub engine: Option<EngineKind>,
    /// Number of nodes `up` starts (default 3).
    pub nodes: Option<u32>,
    /// `"loopback"` (default) or `"netns"`: see [`crate::topology`].
    pub topology: Option<topology::TopologyKind>,
    #[serde(default)]
    pub netns: RawNetns,
    #[serde(default)]
    pub ports: RawPorts,
    #[serde(default)]
    pub haproxy: RawHaproxy,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub cockroach: RawCockroach,
    #[serde(default)]
    pub etcd: RawEtcd,
    /// `"never"` (default), `"on-failure"` or `"always"`: see [`RestartPolicy`].
    pub restart: Option<RestartPolicy>,
    #[serde(default)]
    pub restart_backoff: RawBackoff,
    /// `[monitoring]`: Prometheus and Alertmanager beside the lab (see [`crate::monitoring`]).
    #[serde(default)]
    pub monitoring: monitoring::RawMonitoring,
}

/// `[netns]`: the netns topology's addresses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetns {
    /// IPv4 subnet for the bridge (`.1`) and the nodes (node N: `.(10+N)`); default
    /// `198.18.7.0/24`, in RFC 2544's benchmarking range. Checked unused on the host at `up`.
    pub subnet: Option<topology::Subnet>,
}

/// `[ports]`: base ports; node N uses `base + N - 1`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPorts {
    /// CockroachDB SQL/RPC (default 26258) or etcd client port (default 23791) of node 1.
    pub base: Option<u16>,
    /// CockroachDB admin HTTP port of node 1 (default 8081). etcd serves HTTP on its client port.
    pub http_base: Option<u16>,
    /// etcd peer port of node 1 (default 23891). Unused by CockroachDB.
    pub peer_base: Option<u16>,
}

/// `[haproxy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHaproxy {
    /// Path to the `haproxy` binary (else `$ROACHLAB_HAPROXY`, else PATH).
    pub binary: Option<PathBuf>,
    /// Frontend port for clients: SQL (CockroachDB, default 26257) or etcd client (default 23790).
    pub frontend_port: Option<u16>,
    /// Admin UI frontend, balanced over the nodes' HTTP ports (default 8080).
    pub admin_port: Option<u16>,
    /// Stats page (default 8404).
    pub stats_port: Option<u16>,
    /// Health-check interval (default `"1s"`).
    #[serde(default, with = "humantime_serde")]
    pub inter: Option<Duration>,
    /// Failed checks before a server is marked DOWN (default 2).
    pub fall: Option<u32>,
    /// Passed checks before a server is marked UP again (default 2).
    pub rise: Option<u32>,
}

/// `[timeouts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// `node stop`: time from SIGTERM to SIGKILL (default `"60s"`; CockroachDB drains take ~35 s
    /// with `drain_wait=15s`).
    #[serde(default, with = "humantime_serde")]
    pub grace: Option<Duration>,
    /// `down`: time from the first signal to the engine's hard-stop signal (default `"20s"`).
    #[serde(default, with = "humantime_serde")]
    pub down_grace: Option<Duration>,
    /// How long a started node may take to report ready (default `"60s"`).
    #[serde(default, with = "humantime_serde")]
    pub ready: Option<Duration>,
    /// How often the daemon polls readiness and HAProxy (default `"1s"`).
    #[serde(default, with = "humantime_serde")]
    pub poll: Option<Duration>,
    /// `node stop`: how long to wait, once HAProxy has the node's server in DRAIN, for client
    /// sessions to leave it before the node is handed off and signalled (default `"5s"`;
    /// roachlab's workloads retire connections after 1 s, so theirs leave within one).
    #[serde(default, with = "humantime_serde")]
    pub drain_sessions: Option<Duration>,
}

/// `[cockroach]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCockroach {
    /// Path to `cockroach` (else `$ROACHLAB_COCKROACH`, else PATH).
    pub binary: Option<PathBuf>,
    /// `--cache` per node (default `"64MiB"`, sized for laptops).
    pub cache: Option<String>,
    /// `--max-sql-memory` per node (default `"128MiB"`).
    pub max_sql_memory: Option<String>,
    /// Replication factor of the default zone (default 3); `decommission` refuses to go below it.
    pub replication_factor: Option<u32>,
    /// `--locality` per node, e.g. `"region=us-east1,zone=a"`; node N takes entry
    /// `(N-1) % len`. Empty: no locality.
    #[serde(default)]
    pub localities: Vec<String>,
    /// Extra arguments appended to every `cockroach start`.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// `[etcd]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcd {
    /// Path to `etcd` (else `$ROACHLAB_ETCD`, else PATH).
    pub binary: Option<PathBuf>,
    /// Extra arguments appended to every `etcd` command line.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// roachlab-side locality labels, written as CockroachDB's (`"zone=a"`); node N takes
    /// entry `(N-1) % len`. etcd itself knows nothing of them: they select nodes
    /// (`--locality zone=a`) and shape the zone drills.
    #[serde(default)]
    pub localities: Vec<String>,
}

/// When the supervisor restarts a node that exited without being asked to (Kubernetes'
/// `restartPolicy`): `never` (default), `on-failure` (a non-zero exit code, or a signal the
/// lab did not send to stop it — a `node kill` is a crash and counts), `always` (any exit
/// the lab did not ask for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Never,
    OnFailure,
    Always,
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        })
    }
}

/// `[restart_backoff]`: the wait before each automatic restart (CrashLoopBackOff's shape).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    /// Before the first restart (default `"1s"`); doubled for each further one.
    #[serde(default, with = "humantime_serde")]
    pub initial: Option<Duration>,
    /// At most this (default `"30s"`).
    #[serde(default, with = "humantime_serde")]
    pub max: Option<Duration>,
    /// A node that stays ready this long starts over from `initial` (default `"10s"`).
    #[serde(default, with = "humantime_serde")]
    pub reset_after: Option<Duration>,
}

/// Command-line flags that override the config (`roachlab up --engine etcd --nodes 5`).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub engine: Option<EngineKind>,
    pub nodes: Option<u32>,
    pub topology: Option<topology::TopologyKind>,
    pub restart: Option<RestartPolicy>,
    /// `up --monitoring`.
    pub monitoring: Option<bool>,
}

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
    pub monitoring: monitoring::MonitoringSpec,
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

fn default_drain_sessions() -> Duration {
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

/// Most nodes a lab may have (port blocks are laid out for this many).
pub const MAX_NODES: u32 = 64;

impl RawConfig {
    /// Parses TOML; `origin` names the file in errors (`file:line:col: message`).
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            Error::ConfigSyntax { file: origin.to_string(), line, col, message: e.message().trim().to_string() }
        })
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read config {}", path.display()), e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Applies defaults and flags, and checks the result. `origin` names the source in errors.
    pub fn resolve(self, overrides: &Overrides, origin: &str) -> Result<LabSpec> {
        let invalid = |message: String| Error::ConfigInvalid { origin: origin.to_string(), message };
        let engine = overrides.engine.or(self.engine).unwrap_or(EngineKind::Cockroach);
        let nodes = overrides.nodes.or(self.nodes).unwrap_or(3);
        if nodes == 0 || nodes > MAX_NODES {
            // Blame the source the value came from: the flag wins over the file.
            if overrides.nodes.is_some() {
                return Err(Error::ConfigInvalid {
                    origin: "--nodes".into(),
                    message: format!("{nodes}: a lab has 1 to {MAX_NODES} nodes"),
                });
            }
            return Err(invalid(format!("nodes = {nodes}: a lab has 1 to {MAX_NODES} nodes")));
        }
        let (base, http_base, peer_base, frontend) = match engine {
            EngineKind::Cockroach => (26258, 8081, 0, 26257),
            EngineKind::Etcd => (23791, 0, 23891, 23790),
        };
        let ports = PortsSpec {
            base: self.ports.base.unwrap_or(base),
            http_base: self.ports.http_base.unwrap_or(http_base),
            peer_base: self.ports.peer_base.unwrap_or(peer_base),
        };
        let h = self.haproxy;
        let haproxy = HaproxySpec {
            binary: h.binary,
            frontend_port: h.frontend_port.unwrap_or(frontend),
            admin_port: h.admin_port.unwrap_or(8080),
            stats_port: h.stats_port.unwrap_or(8404),
            inter: h.inter.unwrap_or(Duration::from_secs(1)),
            fall: h.fall.unwrap_or(2),
            rise: h.rise.unwrap_or(2),
        };
        if haproxy.inter < Duration::from_millis(100) {
            return Err(invalid(format!("haproxy.inter = {}: use at least 100ms", humantime::format_duration(haproxy.inter))));
        }
        if haproxy.fall == 0 || haproxy.rise == 0 {
            return Err(invalid("haproxy.fall and haproxy.rise must be at least 1".into()));
        }
        let t = self.timeouts;
        let timeouts = Timeouts {
            grace: t.grace.unwrap_or(Duration::from_secs(60)),
            down_grace: t.down_grace.unwrap_or(Duration::from_secs(20)),
            ready: t.ready.unwrap_or(Duration::from_secs(60)),
            poll: t.poll.unwrap_or(Duration::from_secs(1)),
            drain_sessions: t.drain_sessions.unwrap_or_else(default_drain_sessions),
        };
        if timeouts.poll < Duration::from_millis(100) {
            return Err(invalid("timeouts.poll: use at least 100ms".into()));
        }
        let c = self.cockroach;
        let cockroach = CockroachSpec {
            binary: c.binary,
            cache: c.cache.unwrap_or_else(|| "64MiB".into()),
            max_sql_memory: c.max_sql_memory.unwrap_or_else(|| "128MiB".into()),
            replication_factor: c.replication_factor.unwrap_or(3),
            localities: c.localities,
            extra_args: c.extra_args,
        };
        if cockroach.replication_factor == 0 {
            return Err(invalid("cockroach.replication_factor must be at least 1".into()));
        }
        let etcd = EtcdSpec { binary: self.etcd.binary, extra_args: self.etcd.extra_args, localities: self.etcd.localities };
        for (key, list) in [("cockroach.localities", &cockroach.localities), ("etcd.localities", &etcd.localities)] {
            for l in list {
                check_locality(l).map_err(|e| invalid(format!("{key}: {e}")))?;
            }
        }
        let b = self.restart_backoff;
        let restart = RestartSpec {
            policy: overrides.restart.or(self.restart).unwrap_or_default(),
            initial: b.initial.unwrap_or(Duration::from_secs(1)),
            max: b.max.unwrap_or(Duration::from_secs(30)),
            reset_after: b.reset_after.unwrap_or(Duration::from_secs(10)),
        };
        if restart.initial < Duration::from_millis(100) || restart.max < restart.initial {
            return Err(invalid("restart_backoff: initial at least 100ms, and max at least initial".into()));
        }
        let topology = topology::TopologySpec {
            kind: overrides.topology.or(self.topology).unwrap_or_default(),
            subnet: self.netns.subnet.unwrap_or(topology::DEFAULT_SUBNET),
        };
        // Relative `rule_files` are relative to the config file.
        let base = Path::new(origin).parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf);
        let base = base.or_else(|| std::env::current_dir().ok()).unwrap_or_default();
        let monitoring = self.monitoring.resolve(overrides.monitoring, &base, origin)?;
        let spec = LabSpec { engine, nodes, topology, ports, haproxy, timeouts, cockroach, etcd, restart, monitoring };
        spec.check_port_layout().map_err(invalid)?;
        Ok(spec)
    }
}

impl LabSpec {
    /// Loads `--config FILE` (or the embedded default) and applies flags.
    pub fn load(config: Option<&Path>, overrides: &Overrides) -> Result<Self> {
        match config {
            Some(path) => RawConfig::load(path)?.resolve(overrides, &path.display().to_string()),
            None => RawConfig::parse(DEFAULT_CONFIG, "<default config>")?.resolve(overrides, "<default config>"),
        }
    }

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
    fn check_port_layout(&self) -> std::result::Result<(), String> {
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

/// A locality as CockroachDB's `--locality` takes it: `key=value` tiers joined by commas
/// (`region=us-east1,zone=a`); keys and values non-empty, without spaces.
pub fn check_locality(l: &str) -> std::result::Result<(), String> {
    let shown = crate::text::printable(l);
    let mut keys = std::collections::HashSet::new();
    for tier in l.split(',') {
        match tier.split_once('=') {
            Some((k, v))
                if !k.is_empty() && !v.is_empty() && !tier.contains(|c: char| c.is_whitespace() || c.is_control()) && !v.contains('=') =>
            {
                // CockroachDB's --locality: "each tier key must be unique" (cockroach start docs).
                if !keys.insert(k) {
                    return Err(format!("`{shown}` names the tier `{k}` twice; each key once, e.g. \"region=us-east1,zone=a\""));
                }
            }
            _ => return Err(format!("`{shown}` is not a locality like \"zone=a\" or \"region=us-east1,zone=a\"")),
        }
    }
    Ok(())
}

/// Whether a node's locality (`region=r1,zone=a`) matches a selector (`zone=a`, or several
/// tiers, all of which must match).
pub fn locality_matches(locality: &str, selector: &str) -> bool {
    let tiers: Vec<&str> = locality.split(',').collect();
    selector.split(',').all(|want| tiers.contains(&want))
}

/// 1-based line and column (in characters) of byte offset `pos` in `text`.
pub(crate) fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = &text[..pos.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// The longest duration any option, config key or scenario step takes: 7 days. Longer ones
/// are a typo, and would overflow date arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses a duration like `90s` or `5m` (humantime), at most [`MAX_DURATION`]. The error says
/// what was wrong and the bound; for clap's `value_parser`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 90s or 5m: {e}"))?;
    check_duration(d).map_err(|e| format!("`{s}`: {e}"))
}

/// `d` is at most [`MAX_DURATION`].
pub fn check_duration(d: Duration) -> std::result::Result<Duration, String> {
    if d > MAX_DURATION {
        return Err(format!(
            "{} is longer than roachlab accepts (at most {})",
            humantime::format_duration(d),
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_three_cockroach_nodes() {
        let spec = LabSpec::load(None, &Overrides::default()).unwrap();
        assert_eq!(spec.engine, EngineKind::Cockroach);
        assert_eq!(spec.nodes, 3);
        assert_eq!((spec.ports.base, spec.ports.http_base), (26258, 8081));
        assert_eq!(spec.haproxy.frontend_port, 26257);
        assert_eq!(spec.haproxy.down_window(), Duration::from_secs(2));
    }

    #[test]
    fn flags_override_the_file_and_etcd_gets_its_own_ports() {
        let o = Overrides { engine: Some(EngineKind::Etcd), nodes: Some(5), ..Default::default() };
        let spec = LabSpec::load(None, &o).unwrap();
        assert_eq!(spec.nodes, 5);
        assert_eq!(spec.haproxy.frontend_port, 23790);
        assert_eq!((spec.ports.base, spec.ports.peer_base), (23791, 23891));
    }

    #[test]
    fn unknown_field_is_reported_with_line_and_column() {
        let text = "engine = \"etcd\"\n[haproxy]\ninterval = \"1s\"\n";
        let err = RawConfig::parse(text, "lab.toml").unwrap_err().to_string();
        assert!(err.starts_with("lab.toml:3:1: unknown field `interval`"), "{err}");
    }

    #[test]
    fn bad_value_is_reported_with_its_position() {
        let text = "nodes = 3\n[haproxy]\ninter = \"soon\"\n";
        let err = RawConfig::parse(text, "lab.toml").unwrap_err().to_string();
        assert!(err.starts_with("lab.toml:3:9:"), "{err}");
    }

    #[test]
    fn topology_comes_from_the_file_or_the_flag_and_a_bad_subnet_names_its_line() {
        use topology::TopologyKind;
        let text = "engine = \"etcd\"\ntopology = \"netns\"\n[netns]\nsubnet = \"198.18.9.0/24\"\n";
        let spec = RawConfig::parse(text, "t.toml").unwrap().resolve(&Overrides::default(), "t.toml").unwrap();
        assert_eq!((spec.topology.kind, spec.topology.subnet.to_string()), (TopologyKind::Netns, "198.18.9.0/24".into()));
        assert!(spec.summary().ends_with("netns topology"));
        let o = Overrides { topology: Some(TopologyKind::Netns), ..Default::default() };
        assert_eq!(LabSpec::load(None, &o).unwrap().topology.kind, TopologyKind::Netns);
        assert_eq!(LabSpec::load(None, &Overrides::default()).unwrap().topology.kind, TopologyKind::Loopback);
        let err = RawConfig::parse("[netns]\nsubnet = \"198.18.9.1/24\"\n", "t.toml").unwrap_err().to_string();
        assert!(err.starts_with("t.toml:2:10:") && err.contains("write 198.18.9.0/24"), "{err}");
        // A reserved range is refused before anything starts, at its line.
        let err = RawConfig::parse("[netns]\nsubnet = \"224.0.0.0/24\"\n", "t.toml").unwrap_err().to_string();
        assert!(err.starts_with("t.toml:2:10:") && err.contains("multicast"), "{err}");
        let err = RawConfig::parse("topology = \"docker\"\n", "t.toml").unwrap_err().to_string();
        assert!(err.starts_with("t.toml:1:12:") && err.contains("loopback") && err.contains("netns"), "{err}");
    }

    #[test]
    fn localities_and_restart_policies_resolve_with_positions_for_mistakes() {
        let text = "engine = \"etcd\"\nnodes = 5\nrestart = \"on-failure\"\n[etcd]\nlocalities = [\"zone=a\", \"zone=b\", \"zone=c\"]\n";
        let spec = RawConfig::parse(text, "t.toml").unwrap().resolve(&Overrides::default(), "t.toml").unwrap();
        assert_eq!(spec.restart.policy, RestartPolicy::OnFailure);
        assert_eq!((1..=5).map(|n| spec.locality_of(n).unwrap()).collect::<Vec<_>>(), ["zone=a", "zone=b", "zone=c", "zone=a", "zone=b"]);
        assert_eq!(
            (1..=6).map(|n| spec.restart.backoff(n).as_secs()).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 30],
            "doubling from 1 s, capped at 30 s"
        );
        assert_eq!(spec.restart.backoff(u32::MAX), Duration::from_secs(30), "no overflow");
        let err = RawConfig::parse("restart = \"sometimes\"\n", "t.toml").unwrap_err().to_string();
        assert!(err.starts_with("t.toml:1:11:") && err.contains("on-failure"), "{err}");
        let err = RawConfig::parse("[etcd]\nlocalities = [\"zone a\"]\n", "t.toml")
            .unwrap()
            .resolve(&Overrides::default(), "t.toml")
            .unwrap_err();
        assert!(err.to_string().contains("etcd.localities: `zone a` is not a locality"), "{err}");
        assert!(check_locality("zone=a,zone=b").unwrap_err().contains("names the tier `zone` twice"));
        assert!(check_locality("zone=a\u{0}").unwrap_err().contains("`zone=a\\u{0}` is not a locality"));
        assert!(check_locality("region=r1,zone=a").is_ok());
        assert!(locality_matches("region=r1,zone=a", "zone=a") && !locality_matches("region=r1,zone=a", "zone=b"));
        assert!(locality_matches("region=r1,zone=a", "region=r1,zone=a"));
        assert_eq!(LabSpec::load(None, &Overrides::default()).unwrap().locality_of(1), None);
    }

    #[test]
    fn overlapping_ports_are_rejected_naming_both() {
        let text = "[ports]\nbase = 8000\nhttp_base = 8010\n";
        let err = RawConfig::parse(text, "x.toml").unwrap().resolve(&Overrides::default(), "x.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("ports.base") && msg.contains("ports.http_base"), "{msg}");
    }

    #[test]
    fn node_count_is_bounded() {
        let o = Overrides { nodes: Some(0), ..Default::default() };
        assert!(LabSpec::load(None, &o).unwrap_err().to_string().contains("1 to 64"));
    }

    #[test]
    fn every_example_config_resolves() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                LabSpec::load(Some(&path), &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 3, "expected the three example configs, found {seen}");
    }
}
