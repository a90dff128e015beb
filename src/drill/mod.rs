//! Drills: scripted fault-tolerance experiments on a running lab, measured per phase, checked
//! against what theory predicts, and reported with charts.
//!
//! The built-in drills are embedded scenario files of the same format users write
//! (`configs/drills/*.toml`).

pub mod metrics;
pub mod report;
pub mod runner;
pub mod scenario;

/// The built-in drills: (name, scenario text).
pub const BUILT_IN: [(&str, &str); 2] = [
    ("graceful-vs-kill", include_str!("../../configs/drills/graceful-vs-kill.toml")),
    ("quorum-loss", include_str!("../../configs/drills/quorum-loss.toml")),
];
