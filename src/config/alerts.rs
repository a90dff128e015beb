//! The lab's alert rules: one table of what each alert is for, which published alert it
//! mirrors, and its `for:` in a lab and in production; the rule text per engine lives in
//! `configs/monitoring/{etcd,cockroach}.rules.yml`, where `__FOR_<Name>__` stands for the
//! lab's `for:` and `__FRONTEND__` for HAProxy's client proxy.
//!
//! Every rule has `promtool test rules` cases in `configs/monitoring/tests/` (run by the test
//! suite), and a unit test keeps this table, the rule files and the test files in step.

use std::time::Duration;

use crate::config::EngineKind;

/// One alert of the lab.
#[derive(Debug, Clone, Copy)]
pub struct AlertRule {
    /// The alert's name (Prometheus `alert:`).
    pub name: &'static str,
    /// The engines whose rule file has it.
    pub engines: &'static [EngineKind],
    /// Its `for:` in a lab by default: short, so a drill sees it within seconds.
    pub lab_for: Duration,
    /// Its `for:` in the published rule it mirrors (what production uses).
    pub production_for: &'static str,
    /// The published alert it mirrors, with its source.
    pub mirrors: &'static str,
    /// What it means, in a sentence.
    pub meaning: &'static str,
}

const BOTH: &[EngineKind] = &[EngineKind::Etcd, EngineKind::Cockroach];
const ETCD: &[EngineKind] = &[EngineKind::Etcd];
const CRDB: &[EngineKind] = &[EngineKind::Cockroach];

const fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// Every alert roachlab writes, in the order of the docs.
pub const ALERTS: &[AlertRule] = &[
    AlertRule {
        name: "NodeDown",
        engines: BOTH,
        lab_for: s(10),
        production_for: "5m (CockroachDB InstanceDown); 10m (etcd etcdMembersDown)",
        mirrors: "CockroachDB monitoring/rules/alerts.rules.yml InstanceDown; etcd-mixin etcdMembersDown",
        meaning: "Prometheus cannot scrape the node (`up == 0`): its process is gone, paused, or cut off",
    },
    AlertRule {
        name: "NodeRestarted",
        engines: BOTH,
        lab_for: s(0),
        production_for: "none (CockroachDB InstanceRestart fires at once)",
        mirrors: "CockroachDB alerts.rules.yml InstanceRestart / InstanceFlapping (resets of sys_uptime)",
        meaning: "the node's process started again within the last 5 minutes",
    },
    AlertRule {
        name: "NoLeader",
        engines: ETCD,
        lab_for: s(5),
        production_for: "1m (etcd etcdNoLeader)",
        mirrors: "etcd-mixin etcdNoLeader (etcd_server_has_leader == 0)",
        meaning: "the member knows no Raft leader: it cannot serve linearizable requests",
    },
    AlertRule {
        name: "HighLeaderChanges",
        engines: BOTH,
        lab_for: s(0),
        production_for: "5m over a 15m window, ≥ 4 changes (etcd etcdHighNumberOfLeaderChanges)",
        mirrors: "etcd-mixin etcdHighNumberOfLeaderChanges; for CockroachDB, Raft leadership transfers per node (range.raftleadertransfers)",
        meaning: "leadership moved often in the last 5 minutes (etcd: ≥ 3 leader changes seen by a member; CockroachDB: > 50 range leadership transfers on a node)",
    },
    AlertRule {
        name: "InsufficientMembers",
        engines: BOTH,
        lab_for: s(5),
        production_for: "3m (etcd etcdInsufficientMembers)",
        mirrors: "etcd-mixin etcdInsufficientMembers; CockroachDB alerts.rules.yml LivenessMismatch (liveness_livenodes)",
        meaning: "fewer members than a majority are up and connected (etcd: with a leader; CockroachDB: live in node liveness)",
    },
    AlertRule {
        name: "UnderreplicatedRanges",
        engines: CRDB,
        lab_for: s(10),
        production_for: "10m (by analogy with UnavailableRanges; CockroachDB's docs list ranges.underreplicated as an essential alert)",
        mirrors: "CockroachDB docs, Monitoring and Alerting: ranges.underreplicated",
        meaning: "some ranges have fewer replicas than the replication factor",
    },
    AlertRule {
        name: "UnavailableRanges",
        engines: CRDB,
        lab_for: s(10),
        production_for: "10m (CockroachDB UnavailableRanges)",
        mirrors: "CockroachDB alerts.rules.yml UnavailableRanges (ranges_unavailable)",
        meaning: "some ranges have lost a majority of their replicas: reads and writes to them stop",
    },
    AlertRule {
        name: "ClockOffsetNearMax",
        engines: CRDB,
        lab_for: s(10),
        production_for: "5m (CockroachDB ClockOffsetNearMax)",
        mirrors: "CockroachDB alerts.rules.yml ClockOffsetNearMax (clock_offset_meannanos > 300 ms)",
        meaning: "a node's clock is more than 300 ms off the cluster mean (nodes stop themselves at 400 ms)",
    },
    AlertRule {
        name: "BackendDown",
        engines: BOTH,
        lab_for: s(5),
        production_for: "1m (a common choice; HAProxy publishes no rule set)",
        mirrors: "HAProxy's Prometheus exporter, haproxy_server_status{state=\"DOWN\"} (HAProxy 2.4+ addons/promex)",
        meaning: "HAProxy has marked the node's server DOWN in the client frontend: its health checks fail",
    },
];

/// The rule file template of `engine`.
pub fn template(engine: EngineKind) -> &'static str {
    match engine {
        EngineKind::Etcd => include_str!("../../configs/monitoring/etcd.rules.yml"),
        EngineKind::Cockroach => include_str!("../../configs/monitoring/cockroach.rules.yml"),
    }
}

/// The `promtool test rules` cases of `engine`'s rule file (at the lab's default `for:`).
pub fn tests(engine: EngineKind) -> &'static str {
    match engine {
        EngineKind::Etcd => include_str!("../../configs/monitoring/tests/etcd.test.yml"),
        EngineKind::Cockroach => include_str!("../../configs/monitoring/tests/cockroach.test.yml"),
    }
}

/// The alerts of `engine`.
pub fn for_engine(engine: EngineKind) -> impl Iterator<Item = &'static AlertRule> {
    ALERTS.iter().filter(move |a| a.engines.contains(&engine))
}

/// A duration as Prometheus writes one (`10s`, `1500ms`, `0s`).
pub fn prom_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Names after `- alert:` in a rule file.
pub fn alert_names(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.trim().strip_prefix("- alert:")).map(|n| n.trim().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_the_rule_files_and_their_tests_agree() {
        for engine in [EngineKind::Etcd, EngineKind::Cockroach] {
            let mut want: Vec<String> = for_engine(engine).map(|a| a.name.to_string()).collect();
            let mut have = alert_names(template(engine));
            want.sort();
            have.sort();
            assert_eq!(have, want, "{engine}: rule file vs table");
            for name in &want {
                assert!(template(engine).contains(&format!("__FOR_{name}__")), "{engine}: {name} takes the lab's for:");
                assert!(tests(engine).contains(&format!("alertname: {name}")), "{engine}: {name} has promtool test cases");
            }
        }
    }

    #[test]
    fn durations_are_written_as_prometheus_reads_them() {
        assert_eq!(prom_duration(Duration::from_secs(10)), "10s");
        assert_eq!(prom_duration(Duration::ZERO), "0s");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1500ms");
    }
}
