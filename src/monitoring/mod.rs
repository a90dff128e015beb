//! Monitoring beside the lab: a real Prometheus and Alertmanager (Debian's `prometheus` and
//! `prometheus-alertmanager`), supervised like the nodes and HAProxy, with a scrape config and
//! alert rules generated together from the lab, and Alertmanager's notifications turned into
//! timeline events through a webhook the daemon serves on 127.0.0.1.
//!
//! - [`rules`]: the lab's alert rules (what each mirrors in the engines' published rule sets,
//!   its lab and production `for:`), rendered from `configs/monitoring/*.rules.yml`.
//! - [`render`]: `prometheus.yml`, `alertmanager.yml` and the rule file, validated with
//!   `promtool` and `amtool` before use.
//! - [`client`]: what roachlab asks of the two servers' HTTP APIs, and the webhook's payload.
//!
//! Without `[monitoring] enabled = true` (or `up --monitoring`) none of it runs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::find_binary;
use crate::lab::Lab;
use crate::{Error, Result};

pub use crate::config::alerts as rules;
pub use crate::config::monitoring::{MonitoringSpec, RawMonitoring, MAX_FOR};

pub mod client;
pub mod render;

/// How to install Prometheus (and promtool) when missing.
pub const PROMETHEUS_INSTALL: &str = "Install it with `sudo apt-get install prometheus` (Debian/Ubuntu; it brings `promtool`), \
     or point $ROACHLAB_PROMETHEUS or `[monitoring] prometheus_binary` at it.";
/// How to install Alertmanager (and amtool) when missing.
pub const ALERTMANAGER_INSTALL: &str =
    "Install it with `sudo apt-get install prometheus-alertmanager` (Debian/Ubuntu; it brings `amtool`), \
     or point $ROACHLAB_ALERTMANAGER or `[monitoring] alertmanager_binary` at it.";

/// One of the two servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Prometheus,
    Alertmanager,
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Component::Prometheus => "prometheus",
            Component::Alertmanager => "alertmanager",
        })
    }
}

/// The `prometheus` binary.
pub fn prometheus_binary(spec: &MonitoringSpec) -> Result<PathBuf> {
    find_binary("ROACHLAB_PROMETHEUS", spec.prometheus_binary.as_deref(), "prometheus", PROMETHEUS_INSTALL)
}

/// Alertmanager: Debian installs it as `prometheus-alertmanager`; upstream tarballs as `alertmanager`.
pub fn alertmanager_binary(spec: &MonitoringSpec) -> Result<PathBuf> {
    find_binary("ROACHLAB_ALERTMANAGER", spec.alertmanager_binary.as_deref(), "prometheus-alertmanager", ALERTMANAGER_INSTALL)
        .or_else(|e| which::which("alertmanager").map_err(|_| e))
}

/// `promtool`, beside the `prometheus` binary or on PATH.
pub fn promtool(spec: &MonitoringSpec) -> Result<PathBuf> {
    sibling_tool(prometheus_binary(spec)?, "promtool", PROMETHEUS_INSTALL)
}

/// `amtool`, beside the Alertmanager binary or on PATH.
pub fn amtool(spec: &MonitoringSpec) -> Result<PathBuf> {
    sibling_tool(alertmanager_binary(spec)?, "amtool", ALERTMANAGER_INSTALL)
}

fn sibling_tool(server: PathBuf, name: &str, install: &str) -> Result<PathBuf> {
    let beside = server.parent().map(|d| d.join(name)).filter(|p| p.is_file());
    beside.or_else(|| which::which(name).ok()).ok_or_else(|| Error::BinaryNotFound {
        name: name.to_string(),
        env_var: "PATH".into(),
        install: install.to_string(),
    })
}

/// Where the monitoring stack keeps its files in a lab: `DIR/monitoring/`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn of(lab: &Lab) -> Self {
        Self { dir: lab.dir().join("monitoring") }
    }
    /// `prometheus.yml`, regenerated on every membership change.
    pub fn prometheus_yml(&self) -> PathBuf {
        self.dir.join("prometheus.yml")
    }
    /// The lab's own alert rules (`roachlab.rules.yml`, beside `prometheus.yml`).
    pub fn rules_yml(&self) -> PathBuf {
        self.dir.join("roachlab.rules.yml")
    }
    /// `alertmanager.yml`.
    pub fn alertmanager_yml(&self) -> PathBuf {
        self.dir.join("alertmanager.yml")
    }
    /// Prometheus' TSDB.
    pub fn prometheus_data(&self) -> PathBuf {
        self.dir.join("prometheus-data")
    }
    /// Alertmanager's notification log and silences.
    pub fn alertmanager_data(&self) -> PathBuf {
        self.dir.join("alertmanager-data")
    }
}

/// The command line that starts Prometheus on 127.0.0.1 with the lab's config, its data in
/// the lab, and `/-/reload` enabled (Prometheus 2.x flags).
pub fn prometheus_args(spec: &MonitoringSpec, paths: &Paths) -> Vec<String> {
    vec![
        format!("--config.file={}", paths.prometheus_yml().display()),
        format!("--storage.tsdb.path={}", paths.prometheus_data().display()),
        format!("--web.listen-address=127.0.0.1:{}", spec.prometheus_port),
        "--web.enable-lifecycle".into(),
        "--storage.tsdb.retention.time=7d".into(),
        // Firing alerts are re-sent to Alertmanager this often (default 1m); a lab's alerts
        // come and go within seconds.
        "--rules.alert.resend-delay=2s".into(),
    ]
}

/// The command line that starts Alertmanager on 127.0.0.1, without its HA cluster listener
/// (which would bind 0.0.0.0:9094 by default).
pub fn alertmanager_args(spec: &MonitoringSpec, paths: &Paths) -> Vec<String> {
    vec![
        format!("--config.file={}", paths.alertmanager_yml().display()),
        format!("--storage.path={}", paths.alertmanager_data().display()),
        format!("--web.listen-address=127.0.0.1:{}", spec.alertmanager_port),
        "--cluster.listen-address=".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    fn raw(toml_text: &str) -> RawMonitoring {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_suit_a_lab_and_every_alert_fires_within_30_s_of_its_condition() {
        let s = MonitoringSpec::default();
        assert!(!s.enabled);
        assert_eq!((s.prometheus_port, s.alertmanager_port, s.webhook_port), (9090, 9093, 9097));
        for a in rules::ALERTS {
            let worst = s.alert_for[a.name] + s.scrape_interval + s.evaluation_interval;
            assert!(worst <= Duration::from_secs(30), "{}: {worst:?}", a.name);
        }
    }

    #[test]
    fn for_overrides_are_checked_by_name_and_duration() {
        let s = raw("enabled = true\n[for]\nNodeDown = \"45s\"\n").resolve(None, Path::new("/x"), "lab.toml").unwrap();
        assert!(s.enabled);
        assert_eq!(s.alert_for["NodeDown"], Duration::from_secs(45));
        let e = raw("[for]\nNodeDwn = \"45s\"\n").resolve(None, Path::new("/x"), "lab.toml").unwrap_err().to_string();
        assert!(e.contains("lab.toml: monitoring.for.NodeDwn: no such alert") && e.contains("NodeDown"), "{e}");
        let e = raw("[for]\nNodeDown = \"soon\"\n").resolve(None, Path::new("/x"), "lab.toml").unwrap_err().to_string();
        assert!(e.contains("monitoring.for.NodeDown = \"soon\""), "{e}");
        let e = raw("[for]\nNodeDown = \"2h\"\n").resolve(None, Path::new("/x"), "lab.toml").unwrap_err().to_string();
        assert!(e.contains("at most 1h"), "{e}");
    }

    #[test]
    fn the_flag_wins_and_ports_and_intervals_are_checked() {
        let s = raw("enabled = false").resolve(Some(true), Path::new("/x"), "f").unwrap();
        assert!(s.enabled);
        let e = raw("prometheus_port = 9093").resolve(None, Path::new("/x"), "f").unwrap_err().to_string();
        assert!(e.contains("distinct"), "{e}");
        let e = raw("scrape_interval = \"100ms\"").resolve(None, Path::new("/x"), "f").unwrap_err().to_string();
        assert!(e.contains("monitoring.scrape_interval = 100ms: use 1s to 60s"), "{e}");
        let s = raw("rule_files = [\"extra.yml\", \"/abs.yml\"]").resolve(None, Path::new("/cfg"), "f").unwrap();
        assert_eq!(s.rule_files, vec![PathBuf::from("/cfg/extra.yml"), PathBuf::from("/abs.yml")]);
    }

    #[test]
    fn servers_listen_on_loopback_only() {
        let s = MonitoringSpec::default();
        let p = Paths { dir: "/lab/monitoring".into() };
        let pa = prometheus_args(&s, &p);
        assert!(pa.contains(&"--web.listen-address=127.0.0.1:9090".to_string()));
        assert!(pa.contains(&"--web.enable-lifecycle".to_string()));
        let aa = alertmanager_args(&s, &p);
        assert!(aa.contains(&"--web.listen-address=127.0.0.1:9093".to_string()));
        assert!(aa.contains(&"--cluster.listen-address=".to_string()), "no HA listener on 0.0.0.0:9094");
    }
}
