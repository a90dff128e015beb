//! `[console]` of a lab's config, as written ([`RawConsole`]) and validated ([`ConsoleSpec`]):
//! whether the daemon serves the live console in the browser, and on which loopback port.
//! Serving it is [`crate::console`]'s, above the configuration layer.

use serde::{Deserialize, Serialize};

use crate::ports::PortClaim;

/// The console's port when the config and the flags name none. Beside HAProxy's admin UI
/// (8080) and the nodes' admin HTTP ports (8081+), as the runbook forwards them over SSH.
pub const DEFAULT_CONSOLE_PORT: u16 = 8070;

/// `[console]` as written: every field optional, unknown fields rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    /// Serve the console (default true; `up --no-console` turns it off).
    pub enabled: Option<bool>,
    /// Its TCP port on 127.0.0.1 (default 8070; `up --console-port`).
    pub port: Option<u16>,
}

/// The validated console settings of a lab (persisted in its spec; labs made before the
/// console have it on, at the default port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSpec {
    pub enabled: bool,
    pub port: u16,
}

impl Default for ConsoleSpec {
    fn default() -> Self {
        Self { enabled: true, port: DEFAULT_CONSOLE_PORT }
    }
}

impl RawConsole {
    /// Applies the flags (`--no-console`, `--console-port`) over the file.
    pub fn resolve(self, no_console: bool, port: Option<u16>) -> ConsoleSpec {
        ConsoleSpec { enabled: !no_console && self.enabled.unwrap_or(true), port: port.or(self.port).unwrap_or(DEFAULT_CONSOLE_PORT) }
    }
}

impl ConsoleSpec {
    /// The port it needs free, for the checks that name a port's holder; none when off.
    pub fn port_claims(&self) -> Vec<PortClaim> {
        if self.enabled {
            vec![PortClaim::new(self.port, "roachlab's console (console.port, --console-port)")]
        } else {
            Vec::new()
        }
    }
}
