//! Which CockroachDB release a lab runs, and everything roachlab does differently because of
//! it — in one table ([`FACTS`]), each row with the source it comes from.
//!
//! The version is read from `cockroach version` (`Build Tag:    v20.1.5`, recorded in
//! `tests/fixtures/cockroach-v20.1.5/version.txt`). A release older than the oldest row is
//! refused; one newer than the newest row runs with the newest row's behaviour and a warning
//! naming the version ([`Known::Newer`]).
//!
//! What was verified on a real binary: v20.1.5 only (the fixtures). Every other row rests on
//! CockroachDB's documentation or source at that version, cited in the row.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A CockroachDB release: `v<major>.<minor>.<patch>`, pre-release suffixes ignored
/// (`v24.1.0-beta.2` is 24.1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// Parses `v23.2.4`, `23.2.4`, `v24.1.0-beta.2` or `v25.1` (patch 0). `None` for anything
    /// else.
    pub fn parse(tag: &str) -> Option<Self> {
        let t = tag.trim().trim_start_matches('v');
        let core = t.split(['-', '+', ' ']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self { major, minor, patch })
    }

    /// The release from `cockroach version` output: the `Build Tag:` line (every release
    /// since v1.0 prints it; `cockroach version --build-tag` exists only in newer ones).
    pub fn from_version_output(out: &str) -> Option<Self> {
        out.lines().find_map(|l| l.trim().strip_prefix("Build Tag:").and_then(Self::parse))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The behaviour of the releases from `since` up to the next row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Facts {
    /// First release (major.minor) this row describes.
    pub since: Version,
    /// How long drain waits with `/health?ready=1` at 503 before refusing SQL clients, so a
    /// load balancer stops routing there first (`server.shutdown.drain_wait`, renamed
    /// `server.shutdown.initial_wait` in v23.2).
    pub drain_wait_setting: &'static str,
    /// How long drain waits for SQL clients to close their connections (v22.1+;
    /// `server.shutdown.connection_wait`, renamed `server.shutdown.connections.timeout` in
    /// v23.2). `None` where the release has no such phase.
    pub connection_wait_setting: Option<&'static str>,
    /// How long drain waits for open transactions (`server.shutdown.query_wait`, renamed
    /// `server.shutdown.transactions.timeout` in v23.2).
    pub query_wait_setting: &'static str,
    /// How long each lease-transfer iteration of a drain may take
    /// (`server.shutdown.lease_transfer_wait`, renamed
    /// `server.shutdown.lease_transfer_iteration.timeout` in v23.2).
    pub lease_transfer_setting: &'static str,
    /// `/_admin/v1/liveness` entries carry the `membership` enum (0 ACTIVE, 1
    /// DECOMMISSIONING, 2 DECOMMISSIONED) instead of the `decommissioning` bool, and
    /// `statuses` may say 6 DRAINING. Both shapes are parsed on every version
    /// ([`super::parse::parse_liveness`]); this says which one the release sends.
    pub liveness_membership: bool,
    /// `cockroach node drain --self` names the node behind `--host`; without it, newer
    /// releases warn that draining without a node ID or `--self` is deprecated.
    pub drain_self_flag: bool,
    /// The column of `crdb_internal.ranges_no_leases` that lists a range's voting replicas
    /// (the ones its Raft quorum counts): `replicas` before v21.1, `voting_replicas` after
    /// (`replicas` then also lists non-voters).
    pub voting_replicas_column: &'static str,
    /// `SHOW RANGE FROM TABLE t FOR ROW (…)` wants a value for every column of the table
    /// (v20.1), not only the indexed ones (v20.2+: docs v20.2 show-range-for-row, "New in
    /// v20.2: the values of the indexed columns … In previous releases, this statement
    /// required the values of all columns of a row"; cockroachdb/docs#8634).
    pub for_row_takes_every_column: bool,
    /// A drain may wait forever on leases that are no longer valid: ranges left idle since a
    /// node restarted still name that node's *previous* liveness epoch as leaseholder, the
    /// drain counts them as leases to move but cannot move them (cockroachdb/cockroach#58613,
    /// "kvserver: properly handle invalid leases when draining", filed against v20.1, fixed
    /// in master in January 2021 and labelled for backport to 20.1.x and 20.2.x; seen on
    /// v20.1.5 here: `cockroach node drain` repeating "waiting for 6 replicas to transfer
    /// their lease away" after a SIGKILLed node's restart). Asking every range for its lease
    /// makes a live replica take a valid one, which the drain then moves
    /// ([`super::lease::renew_invalid_leases`]); roachlab does it on every 20.1/20.2 release,
    /// as it cannot tell which patch has the backport, and it costs one query.
    pub drain_stalls_on_invalid_leases: bool,
    /// Columns of `cockroach node decommission` progress rows.
    pub decommission_columns: &'static [&'static str],
    /// A liveness record expires after this many seconds without a heartbeat: how long a
    /// SIGKILLed node still counts as LIVE.
    pub liveness_expiry_s: f64,
    /// `diagnostics.reporting.enabled = false` is honoured. From v24.3, clusters on the free
    /// or trial licence ignore it (reporting is a licence term); roachlab still points the
    /// reporting URLs at a closed loopback port ([`super::offline_env`]), so nothing leaves
    /// the machine either way.
    pub diagnostics_opt_out: bool,
    /// `cockroach start` prints a licence notice (no licence: throttled after a grace period)
    /// that is expected, not an error.
    pub licence_notice: bool,
    /// Where these facts come from.
    pub source: &'static str,
}

const DECOMMISSION_COLUMNS_V20_1: &[&str] = &["id", "is_live", "replicas", "is_decommissioning", "is_draining"];
const DECOMMISSION_COLUMNS_V20_2: &[&str] = &["id", "is_live", "replicas", "is_decommissioning", "membership", "is_draining"];

/// Every version difference roachlab acts on, oldest first. A release uses the last row whose
/// `since` is not after it.
pub const FACTS: &[Facts] = &[V20_1, V20_2, V21_1, V22_1, V23_1, V23_2, V24_3];

const V20_1: Facts = Facts {
    since: Version::new(20, 1, 0),
    drain_wait_setting: "server.shutdown.drain_wait",
    connection_wait_setting: None,
    query_wait_setting: "server.shutdown.query_wait",
    lease_transfer_setting: "server.shutdown.lease_transfer_wait",
    liveness_membership: false,
    drain_self_flag: false,
    voting_replicas_column: "replicas",
    for_row_takes_every_column: true,
    drain_stalls_on_invalid_leases: true,
    decommission_columns: DECOMMISSION_COLUMNS_V20_1,
    liveness_expiry_s: 9.0,
    diagnostics_opt_out: true,
    licence_notice: false,
    source: "recorded from a real v20.1.5 (tests/fixtures/cockroach-v20.1.5: liveness without `membership`, \
             no DRAINING status, decommission-output.txt columns; SHOW RANGE … FOR ROW refused a key-only tuple); \
             docs v20.1 cluster-settings",
};

const V20_2: Facts = Facts {
    since: Version::new(20, 2, 0),
    liveness_membership: true,
    decommission_columns: DECOMMISSION_COLUMNS_V20_2,
    for_row_takes_every_column: false,
    source: "docs v20.2 cockroach-node (decommission output gains `membership`); docs v20.2 show-range-for-row (FOR ROW \
             takes the indexed columns); \
             pkg/kv/kvserver/liveness/livenesspb/liveness.proto v20.2 (MembershipStatus, NodeLivenessStatus_DRAINING = 6)",
    ..V20_1
};

const V21_1: Facts = Facts {
    since: Version::new(21, 1, 0),
    voting_replicas_column: "voting_replicas",
    drain_stalls_on_invalid_leases: false,
    source: "cockroachdb/cockroach#61962 (v21.1): crdb_internal.ranges{_no_leases} gain voting_replicas and \
             non_voting_replicas; `replicas` lists both; cockroachdb/cockroach#58613 (drain and invalid leases, \
             filed 2021-01 against 20.1, closed with backports to 20.1/20.2) assumed fixed here, not verified on a binary",
    ..V20_2
};

const V22_1: Facts = Facts {
    since: Version::new(22, 1, 0),
    connection_wait_setting: Some("server.shutdown.connection_wait"),
    source: "docs v22.1 node-shutdown: server.shutdown.connection_wait",
    ..V21_1
};

const V23_1: Facts = Facts {
    since: Version::new(23, 1, 0),
    drain_self_flag: true,
    liveness_expiry_s: 6.0,
    source: "docs v23.1 cockroach-node (`node drain { --self | <node id> }`; pkg/cli/node.go warns that a drain \
             without either is deprecated); shared/cockroach-contract.md §4 (liveness 6 s from v23.1)",
    ..V22_1
};

const V23_2: Facts = Facts {
    since: Version::new(23, 2, 0),
    drain_wait_setting: "server.shutdown.initial_wait",
    connection_wait_setting: Some("server.shutdown.connections.timeout"),
    query_wait_setting: "server.shutdown.transactions.timeout",
    lease_transfer_setting: "server.shutdown.lease_transfer_iteration.timeout",
    source: "docs v23.2 node-shutdown: drain_wait → initial_wait, connection_wait → connections.timeout, \
             query_wait → transactions.timeout, lease_transfer_wait → lease_transfer_iteration.timeout \
             (old names kept as aliases)",
    ..V23_1
};

const V24_3: Facts = Facts {
    since: Version::new(24, 3, 0),
    diagnostics_opt_out: false,
    licence_notice: true,
    source: "docs stable diagnostics-reporting: reporting is required on Enterprise Free/Trial licences and \
             diagnostics.reporting.enabled is ignored there (licensing change of v24.3)",
    ..V23_2
};

/// What roachlab knows about a release.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Known {
    /// Within the table.
    Yes(&'static Facts),
    /// Newer than the newest row's minor release: run with the newest behaviour, and warn.
    Newer(&'static Facts),
    /// Older than the oldest row: not supported.
    Older,
}

/// The newest release roachlab's table describes by name (its last row's major.minor).
pub fn newest_known() -> Version {
    FACTS[FACTS.len() - 1].since
}

/// The facts for `v`. Releases up to v25.4 are "known" (the last row's behaviour was checked
/// against the documentation of every release through v25.4); later ones are [`Known::Newer`].
pub fn facts_for(v: Version) -> Known {
    if v < FACTS[0].since {
        return Known::Older;
    }
    let row = FACTS.iter().rev().find(|f| f.since <= v).expect("v >= the oldest row");
    if v > NEWEST_DOCUMENTED {
        Known::Newer(row)
    } else {
        Known::Yes(row)
    }
}

/// The newest release whose documentation the table was checked against.
pub const NEWEST_DOCUMENTED: Version = Version::new(25, 4, u32::MAX);

impl Known {
    /// The facts to act on (the newest for unknown newer releases); `None` when unsupported.
    pub fn facts(&self) -> Option<&'static Facts> {
        match self {
            Known::Yes(f) | Known::Newer(f) => Some(f),
            Known::Older => None,
        }
    }

    /// The warning to show and record, if any.
    pub fn warning(&self, v: Version) -> Option<String> {
        match self {
            Known::Yes(_) => None,
            Known::Newer(_) => Some(format!(
                "CockroachDB {v} is newer than the releases roachlab knows (up to v25.4); running it with the newest known \
                 behaviour (that of {}+). Report what differs.",
                newest_known()
            )),
            Known::Older => {
                Some(format!("CockroachDB {v} is older than the oldest release roachlab supports ({}); use v20.1 or newer", FACTS[0].since))
            }
        }
    }
}

impl Facts {
    /// The `SET CLUSTER SETTING` statements that make a graceful drain wait `drain_wait_s`
    /// seconds with readiness at 503 before refusing SQL clients (so HAProxy, which needs
    /// `inter × fall` to notice, stops routing there first), then give open connections and
    /// transactions time to finish. Names as this release knows them.
    pub fn drain_settings(&self, drain_wait_s: u64) -> Vec<String> {
        let mut s = vec![format!("SET CLUSTER SETTING {} = '{drain_wait_s}s'", self.drain_wait_setting)];
        if let Some(c) = self.connection_wait_setting {
            // Clients behind HAProxy reconnect elsewhere between transactions; give them the
            // same window to do it before the node closes their connections.
            s.push(format!("SET CLUSTER SETTING {c} = '{drain_wait_s}s'"));
        }
        s
    }

    /// `cockroach node drain` arguments for the node at `host` (`127.0.0.1:PORT`); `security`
    /// is `--insecure` or `--certs-dir=DIR` ([`super::Cockroach`]).
    pub fn drain_args(&self, host: &str, security: &str) -> Vec<String> {
        let mut a = vec!["node".to_string(), "drain".into()];
        if self.drain_self_flag {
            a.push("--self".into());
        }
        a.extend([security.to_string(), format!("--host={host}")]);
        a
    }

    /// The query that lists every range and its voting replicas' node IDs, in this release's
    /// column name (`crdb_internal.ranges_no_leases`: present from v20.1 through v25.x).
    pub fn placement_query(&self) -> String {
        format!("SELECT range_id, {} FROM crdb_internal.ranges_no_leases", self.voting_replicas_column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(v: &str) -> &'static Facts {
        facts_for(Version::parse(v).unwrap()).facts().unwrap()
    }

    #[test]
    fn versions_parse_from_tags_and_cockroach_version() {
        assert_eq!(Version::parse("v20.1.5"), Some(Version::new(20, 1, 5)));
        assert_eq!(Version::parse("v24.1.0-beta.2"), Some(Version::new(24, 1, 0)));
        assert_eq!(Version::parse("25.2"), Some(Version::new(25, 2, 0)));
        assert_eq!(Version::parse("latest"), None);
        assert_eq!(Version::parse("v1.2.3.4"), None);
        let recorded = include_str!("../../../tests/fixtures/cockroach-v20.1.5/version.txt");
        assert_eq!(Version::from_version_output(recorded), Some(Version::new(20, 1, 5)));
        assert_eq!(Version::from_version_output("no tag here"), None);
    }

    #[test]
    fn the_table_is_ordered_and_every_row_cites_a_source() {
        for w in FACTS.windows(2) {
            assert!(w[0].since < w[1].since, "{:?} before {:?}", w[0].since, w[1].since);
        }
        assert!(FACTS.iter().all(|f| !f.source.is_empty()));
    }

    #[test]
    fn shutdown_setting_names_by_version() {
        // v20.1 (recorded), v22.2, v23.2, v24.x: the docs' "Node shutdown" page of each.
        assert_eq!(facts("v20.1.5").drain_settings(3), vec!["SET CLUSTER SETTING server.shutdown.drain_wait = '3s'"]);
        assert_eq!(
            facts("v22.2.19").drain_settings(3),
            vec!["SET CLUSTER SETTING server.shutdown.drain_wait = '3s'", "SET CLUSTER SETTING server.shutdown.connection_wait = '3s'"]
        );
        let v23_2 = facts("v23.2.0");
        assert_eq!(
            v23_2.drain_settings(4),
            vec![
                "SET CLUSTER SETTING server.shutdown.initial_wait = '4s'",
                "SET CLUSTER SETTING server.shutdown.connections.timeout = '4s'"
            ]
        );
        assert_eq!(v23_2.query_wait_setting, "server.shutdown.transactions.timeout");
        assert_eq!(v23_2.lease_transfer_setting, "server.shutdown.lease_transfer_iteration.timeout");
        assert_eq!(facts("v24.1.3").drain_wait_setting, "server.shutdown.initial_wait");
        assert_eq!(facts("v23.1.9").drain_wait_setting, "server.shutdown.drain_wait");
    }

    #[test]
    fn drain_command_lines_by_version() {
        assert_eq!(facts("v20.1.5").drain_args("127.0.0.1:26259", "--insecure"), ["node", "drain", "--insecure", "--host=127.0.0.1:26259"]);
        assert_eq!(facts("v22.2.0").drain_args("127.0.0.1:26259", "--insecure"), ["node", "drain", "--insecure", "--host=127.0.0.1:26259"]);
        assert_eq!(
            facts("v24.2.1").drain_args("127.0.0.1:26259", "--insecure"),
            ["node", "drain", "--self", "--insecure", "--host=127.0.0.1:26259"]
        );
        // cockroachdb/cockroach#58613: asked around on 20.1 and 20.2 only.
        assert!(facts("v20.1.5").drain_stalls_on_invalid_leases && facts("v20.2.9").drain_stalls_on_invalid_leases);
        assert!(!facts("v21.1.0").drain_stalls_on_invalid_leases && !facts("v25.2.0").drain_stalls_on_invalid_leases);
    }

    #[test]
    fn placement_query_and_liveness_shape_by_version() {
        assert_eq!(facts("v20.1.5").placement_query(), "SELECT range_id, replicas FROM crdb_internal.ranges_no_leases");
        assert_eq!(facts("v21.1.0").placement_query(), "SELECT range_id, voting_replicas FROM crdb_internal.ranges_no_leases");
        assert!(!facts("v20.1.5").liveness_membership && facts("v20.2.0").liveness_membership);
        assert_eq!(facts("v20.1.5").decommission_columns.len(), 5);
        assert!(facts("v23.1.0").decommission_columns.contains(&"membership"));
        assert!(facts("v24.3.0").licence_notice && !facts("v24.3.0").diagnostics_opt_out);
        assert!(facts("v24.2.0").diagnostics_opt_out);
    }

    #[test]
    fn unknown_versions_run_newest_behaviour_with_a_warning_and_old_ones_are_refused() {
        let v = Version::new(26, 1, 0);
        let k = facts_for(v);
        assert!(matches!(k, Known::Newer(_)));
        assert_eq!(k.facts().unwrap().drain_wait_setting, "server.shutdown.initial_wait");
        assert!(k.warning(v).unwrap().contains("v26.1.0 is newer"));
        assert!(facts_for(Version::new(25, 4, 2)).warning(Version::new(25, 4, 2)).is_none());
        let old = Version::new(19, 2, 0);
        assert_eq!(facts_for(old), Known::Older);
        assert!(facts_for(old).facts().is_none());
        assert!(facts_for(old).warning(old).unwrap().contains("older than"));
    }
}
