//! The config file as written (every field optional, unknown fields rejected) and the
//! command-line flags over it, resolved into a [`LabSpec`]. An embedded default
//! (`configs/cockroach-3.toml`) is used when no `--config` is given.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::console::RawConsole;
use super::monitoring::RawMonitoring;
use super::security::{RawSecurity, SecurityFlags};
use super::spec::{default_drain_sessions, CockroachSpec, EtcdSpec, HaproxySpec, LabSpec, PortsSpec, RestartSpec, Timeouts};
use super::topology;
use super::values::{check_locality, line_col, EngineKind, RestartPolicy, MAX_NODES};
use crate::{Error, Result};

/// The config used when `roachlab up` is given no `--config`: 3 CockroachDB nodes.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/cockroach-3.toml");

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
    pub monitoring: RawMonitoring,
    /// `[console]`: the live console in the browser (see [`crate::console`]).
    #[serde(default)]
    pub console: RawConsole,
    /// `[security]`: TLS on every hop, and where HAProxy's frontends listen.
    #[serde(default)]
    pub security: RawSecurity,
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
    /// `up --no-console`.
    pub no_console: bool,
    /// `up --console-port`.
    pub console_port: Option<u16>,
    /// `up --secure`, `--bind`, `--insecure-public`.
    pub security: SecurityFlags,
}

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
        let console = self.console.resolve(overrides.no_console, overrides.console_port);
        let security = self.security.resolve(overrides.security).map_err(|m| {
            // Blame the flag when a flag asked for the address.
            let origin = if overrides.security.bind.is_some() { "--bind" } else { origin };
            Error::ConfigInvalid { origin: origin.to_string(), message: m }
        })?;
        let spec = LabSpec { engine, nodes, topology, ports, haproxy, timeouts, cockroach, etcd, restart, monitoring, console, security };
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
}

#[cfg(test)]
mod tests {
    use super::super::values::locality_matches;
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
