//! Lab configuration: raw TOML (plus command-line flags) resolved into a validated [`LabSpec`].
//!
//! Nothing outside this module sees a [`RawConfig`]: the supervisor, engines and HAProxy only
//! take a [`LabSpec`], whose every field has been defaulted and checked. An embedded default
//! (`configs/cockroach-3.toml`) is used when no `--config` is given.
//!
//! Durations are written as humantime strings (`"500ms"`, `"1s"`, `"2m"`).

pub mod alerts;
pub mod console;
pub mod monitoring;
pub mod security;
pub mod topology;

mod raw;
mod spec;
mod values;

pub(crate) use values::line_col;

pub use raw::{Overrides, RawBackoff, RawCockroach, RawConfig, RawEtcd, RawHaproxy, RawNetns, RawPorts, RawTimeouts, DEFAULT_CONFIG};
pub use spec::{CockroachSpec, EtcdSpec, HaproxySpec, LabSpec, PortsSpec, RestartSpec, Timeouts};
pub use values::{check_duration, check_locality, locality_matches, parse_duration, EngineKind, RestartPolicy, MAX_DURATION, MAX_NODES};
