//! Single values of the configuration, checked the same way wherever they come from (a
//! config file, a flag, a scenario step): the engine and restart policy names, localities,
//! durations, and a byte offset's line and column for `file:line:col` errors.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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

/// Most nodes a lab may have (port blocks are laid out for this many).
pub const MAX_NODES: u32 = 64;

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
