//! `[monitoring]` of a lab's config, as written ([`RawMonitoring`]) and validated
//! ([`MonitoringSpec`]): ports, intervals, each alert's `for:` (checked against the alert table,
//! [`super::alerts`]), extra rule files and binaries. Running Prometheus and Alertmanager from it
//! is [`crate::monitoring`]'s, above the configuration layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ports::PortClaim;
use crate::{Error, Result};

/// The longest `for:` a lab may give an alert (a drill waits for alerts; an hour is plenty).
pub const MAX_FOR: Duration = Duration::from_secs(3600);

/// `[monitoring]` as written: every field optional, unknown fields rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitoring {
    /// Run Prometheus and Alertmanager with the lab (default false; `up --monitoring`).
    pub enabled: Option<bool>,
    /// Prometheus' web and API port on 127.0.0.1 (default 9090).
    pub prometheus_port: Option<u16>,
    /// Alertmanager's web and API port on 127.0.0.1 (default 9093).
    pub alertmanager_port: Option<u16>,
    /// The daemon's webhook for Alertmanager's notifications, on 127.0.0.1 (default 9097).
    pub webhook_port: Option<u16>,
    /// Prometheus' `scrape_interval` (default `"2s"`; production setups use 10–60 s).
    #[serde(default, with = "humantime_serde")]
    pub scrape_interval: Option<Duration>,
    /// Prometheus' `evaluation_interval` for the alert rules (default `"2s"`).
    #[serde(default, with = "humantime_serde")]
    pub evaluation_interval: Option<Duration>,
    /// Per alert, its `for:` (e.g. `NodeDown = "30s"`); defaults in [`super::alerts::ALERTS`].
    #[serde(default, rename = "for")]
    pub for_: BTreeMap<String, String>,
    /// Extra rule files loaded beside the lab's own, checked with `promtool check rules`.
    #[serde(default)]
    pub rule_files: Vec<PathBuf>,
    /// Path to `prometheus` (else `$ROACHLAB_PROMETHEUS`, else PATH).
    pub prometheus_binary: Option<PathBuf>,
    /// Path to Alertmanager (else `$ROACHLAB_ALERTMANAGER`, else PATH: `prometheus-alertmanager`
    /// as Debian names it, or `alertmanager`).
    pub alertmanager_binary: Option<PathBuf>,
}

/// The validated monitoring settings of a lab (persisted in its spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitoringSpec {
    pub enabled: bool,
    pub prometheus_port: u16,
    pub alertmanager_port: u16,
    pub webhook_port: u16,
    #[serde(with = "humantime_serde")]
    pub scrape_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: Duration,
    /// Every alert's `for:`, defaults overlaid by the config's `[monitoring.for]`.
    pub alert_for: BTreeMap<String, Duration>,
    /// Extra rule files, as absolute paths.
    pub rule_files: Vec<PathBuf>,
    pub prometheus_binary: Option<PathBuf>,
    pub alertmanager_binary: Option<PathBuf>,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        RawMonitoring::default().resolve(None, Path::new("."), "<default>").expect("the defaults are valid")
    }
}

impl RawMonitoring {
    /// Applies defaults and `enabled` (the `--monitoring` flag wins over the file); `base`
    /// resolves relative `rule_files` (the config file's directory). Errors name the field.
    pub fn resolve(self, enabled: Option<bool>, base: &Path, origin: &str) -> Result<MonitoringSpec> {
        let invalid = |message: String| Error::ConfigInvalid { origin: origin.to_string(), message };
        let mut alert_for: BTreeMap<String, Duration> = super::alerts::ALERTS.iter().map(|a| (a.name.to_string(), a.lab_for)).collect();
        for (name, text) in self.for_ {
            if !alert_for.contains_key(&name) {
                return Err(invalid(format!(
                    "monitoring.for.{name}: no such alert; the lab's alerts are {}",
                    super::alerts::ALERTS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
                )));
            }
            let d = humantime::parse_duration(&text)
                .map_err(|e| invalid(format!("monitoring.for.{name} = {text:?}: {e} (write e.g. \"30s\" or \"5m\")")))?;
            if d > MAX_FOR {
                return Err(invalid(format!("monitoring.for.{name} = {text:?}: at most 1h in a lab")));
            }
            alert_for.insert(name, d);
        }
        let spec = MonitoringSpec {
            enabled: enabled.or(self.enabled).unwrap_or(false),
            prometheus_port: self.prometheus_port.unwrap_or(9090),
            alertmanager_port: self.alertmanager_port.unwrap_or(9093),
            webhook_port: self.webhook_port.unwrap_or(9097),
            scrape_interval: self.scrape_interval.unwrap_or(Duration::from_secs(2)),
            evaluation_interval: self.evaluation_interval.unwrap_or(Duration::from_secs(2)),
            alert_for,
            rule_files: self.rule_files.iter().map(|p| if p.is_absolute() { p.clone() } else { base.join(p) }).collect(),
            prometheus_binary: self.prometheus_binary,
            alertmanager_binary: self.alertmanager_binary,
        };
        for (key, d) in [("scrape_interval", spec.scrape_interval), ("evaluation_interval", spec.evaluation_interval)] {
            if d < Duration::from_secs(1) || d > Duration::from_secs(60) {
                return Err(invalid(format!("monitoring.{key} = {}: use 1s to 60s", humantime::format_duration(d))));
            }
        }
        let ports = [spec.prometheus_port, spec.alertmanager_port, spec.webhook_port];
        if ports.contains(&0) || ports[0] == ports[1] || ports[0] == ports[2] || ports[1] == ports[2] {
            return Err(invalid(format!(
                "monitoring ports must be distinct and non-zero (prometheus_port {}, alertmanager_port {}, webhook_port {})",
                ports[0], ports[1], ports[2]
            )));
        }
        Ok(spec)
    }
}

impl MonitoringSpec {
    /// The ports the monitoring stack binds on 127.0.0.1, for the free-port check.
    pub fn port_claims(&self) -> Vec<PortClaim> {
        vec![
            PortClaim::new(self.prometheus_port, "Prometheus (monitoring.prometheus_port)"),
            PortClaim::new(self.alertmanager_port, "Alertmanager (monitoring.alertmanager_port)"),
            PortClaim::new(self.webhook_port, "roachlab's Alertmanager webhook (monitoring.webhook_port)"),
        ]
    }

    /// `http://127.0.0.1:PORT` of Prometheus.
    pub fn prometheus_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.prometheus_port)
    }

    /// `http://127.0.0.1:PORT` of Alertmanager.
    pub fn alertmanager_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.alertmanager_port)
    }
}
