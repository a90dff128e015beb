//! Drill scenarios: TOML files (`configs/drills/*.toml`; the built-in drills are embedded files
//! of the same format). Loading resolves them into a validated [`Scenario`]: a bad step, an
//! unknown node or a bad condition fails with `file:line:col` and what to write instead.
//!
//! ```toml
//! name = "graceful-vs-kill"
//! description = "..."
//! [workload]
//! concurrency = 4
//! [[step]]
//! action = "phase"        # starts a measured phase
//! name = "graceful"
//! [[step]]
//! action = "stop"         # stop | kill | start | add | decommission
//! node = 2                # an id, "leader", "follower", "random", ...
//! [[step]]
//! action = "partition"    # partition | isolate | heal | delay | loss (netns topology)
//! sides = [["leader"], ["rest"]]
//! [[step]]
//! action = "wait_until"
//! condition = "backend 2 DOWN"
//! timeout = "30s"
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use super::condition::{cmp_str, parse_condition, Cmp, Condition, Figure, NodeRef};
use super::condition::{node_ref, parse_cmp};
pub use super::expect::{Expectation, Metric};
use super::workload::RawWorkload;
pub use super::workload::{WorkloadKind, WorkloadSpec};
use crate::config::line_col;
use crate::node::NodeId;
use crate::{Error, Result};

/// A scenario as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    expect: Vec<Spanned<RawExpectation>>,
    #[serde(default)]
    workload: Option<Spanned<RawWorkload>>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum RawStep {
    Phase {
        name: String,
    },
    Stop {
        node: NodeRefRaw,
        #[serde(default, with = "humantime_serde")]
        grace: Option<Duration>,
        /// `false`: SIGTERM at once, no HAProxy drain or hand-off (default `true`).
        #[serde(default = "yes")]
        drain: bool,
    },
    Kill {
        node: NodeRefRaw,
    },
    Start {
        node: NodeRefRaw,
        /// Wait until the node is ready (default). `false` to restore a majority node by node.
        #[serde(default = "yes")]
        wait: bool,
    },
    StartAll {},
    Add {},
    Decommission {
        node: NodeRefRaw,
        #[serde(default)]
        force: bool,
    },
    Wait {
        #[serde(with = "humantime_serde")]
        duration: Duration,
        #[serde(default)]
        why: Option<String>,
    },
    WaitUntil {
        condition: String,
        #[serde(with = "humantime_serde")]
        timeout: Duration,
        #[serde(default)]
        why: Option<String>,
    },
    Assert {
        condition: String,
    },
    Set {
        setting: String,
        value: String,
    },
    Isolate {
        node: NodeRefRaw,
        #[serde(default)]
        from_clients: bool,
    },
    Partition {
        sides: Vec<Vec<NodeRefRaw>>,
        #[serde(default)]
        one_way: bool,
        #[serde(default)]
        from_clients: bool,
    },
    Heal {},
    Pause {
        node: NodeRefRaw,
    },
    Resume {
        node: NodeRefRaw,
    },
    Throttle {
        node: NodeRefRaw,
        /// Percent of one core, 1–100.
        cpu: u32,
    },
    Unthrottle {
        node: NodeRefRaw,
    },
    Delay {
        node: NodeRefRaw,
        #[serde(with = "humantime_serde")]
        delay: Duration,
        #[serde(default, with = "humantime_serde")]
        jitter: Option<Duration>,
    },
    Loss {
        node: NodeRefRaw,
        percent: f64,
    },
    Sql {
        node: NodeRefRaw,
        statement: String,
        #[serde(default)]
        expect: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpectation {
    /// Only for labs of this engine.
    #[serde(default)]
    engine: Option<crate::config::EngineKind>,
    phase: String,
    metric: String,
    /// The alert an `alert_*` metric is about (e.g. `"NodeDown"`).
    #[serde(default)]
    alert: Option<String>,
    cmp: String,
    value: f64,
    text: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NodeRefRaw {
    Id(u32),
    Name(String),
}

/// One validated step, with the line it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub line: usize,
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Starts a measured phase (the previous one ends).
    Phase {
        name: String,
    },
    Stop {
        node: NodeRef,
        grace: Option<Duration>,
        /// Drain first (HAProxy, sessions, hand-off); `false` is `node stop --no-drain`.
        #[serde(default = "yes")]
        drain: bool,
    },
    Kill {
        node: NodeRef,
    },
    Start {
        node: NodeRef,
        /// Wait until the node is ready.
        wait: bool,
    },
    /// Starts every member that is not running.
    StartAll,
    Add,
    Decommission {
        node: NodeRef,
        force: bool,
    },
    /// `why`: the reasoning behind the duration, printed when the step runs.
    Wait {
        duration: Duration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
    /// `why`: the reasoning behind the condition or its timeout, printed when the step runs.
    WaitUntil {
        condition: Condition,
        timeout: Duration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
    Assert {
        condition: Condition,
    },
    /// A cluster setting (CockroachDB), e.g. `server.time_until_store_dead` = `1m15s`.
    Set {
        setting: String,
        value: String,
    },
    /// Cuts `node` off from every other member (netns topology).
    Isolate {
        node: NodeRef,
        from_clients: bool,
    },
    /// Splits the members into sides; traffic between them is dropped (netns topology).
    Partition {
        sides: Vec<Vec<NodeRef>>,
        one_way: bool,
        from_clients: bool,
    },
    /// Undoes every network fault.
    Heal,
    /// SIGSTOP (a **fault**).
    Pause {
        node: NodeRef,
    },
    /// SIGCONT (a **recovery**).
    Resume {
        node: NodeRef,
    },
    /// A CPU quota, percent of one core (a **fault**).
    Throttle {
        node: NodeRef,
        cpu: u32,
    },
    /// The quota removed (a **recovery**).
    Unthrottle {
        node: NodeRef,
    },
    /// Latency (and jitter) on a node's outgoing traffic (needs `sch_netem`).
    Delay {
        node: NodeRef,
        delay: Duration,
        jitter: Duration,
    },
    /// Packet loss, percent, on a node's outgoing traffic (needs `sch_netem`).
    Loss {
        node: NodeRef,
        percent: f64,
    },
    /// A SQL statement sent straight to one node, bypassing HAProxy (CockroachDB): write
    /// through one node, read through another, while a third is down. `expect`: the text of
    /// the first column of the first row it must return, checked as an expectation.
    Sql {
        node: NodeRef,
        statement: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<String>,
    },
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// What theory predicts, stated before the drill runs, checked after.
    pub expect: Vec<Expectation>,
    pub workload: WorkloadSpec,
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Parses and validates a scenario; `origin` names the file in errors. `nodes` are the
    /// lab's node ids, for checking node references.
    pub fn parse(text: &str, origin: &str, nodes: &[NodeId]) -> Result<Self> {
        let syntax = |pos: usize, message: String| {
            let (line, col) = line_col(text, pos);
            Error::ConfigSyntax { file: origin.to_string(), line, col, message }
        };
        let raw: RawScenario =
            toml::from_str(text).map_err(|e| syntax(e.span().map(|s| s.start).unwrap_or(0), e.message().trim().to_string()))?;
        let mut steps = Vec::new();
        for spanned in raw.step {
            let pos = spanned.span().start;
            let line = line_col(text, pos).0;
            let bad = |m: String| syntax(pos, m);
            let node = |r: &NodeRefRaw| -> Result<NodeRef> {
                let parsed = match r {
                    NodeRefRaw::Id(id) => NodeRef::Id(*id),
                    NodeRefRaw::Name(n) => node_ref(n).map_err(bad)?,
                };
                if let NodeRef::Id(id) = parsed {
                    if !nodes.contains(&id) {
                        return Err(bad(format!(
                            "unknown node {id}; this lab has nodes {}",
                            nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
                        )));
                    }
                }
                Ok(parsed)
            };
            let condition = |c: &str| parse_condition(c).map_err(bad);
            let action = match spanned.into_inner() {
                RawStep::Phase { name } => Action::Phase { name },
                RawStep::Stop { node: n, grace, drain } => {
                    let grace = grace.map(crate::config::check_duration).transpose().map_err(|e| bad(format!("grace: {e}")))?;
                    Action::Stop { node: node(&n)?, grace, drain }
                }
                RawStep::Kill { node: n } => Action::Kill { node: node(&n)? },
                RawStep::Start { node: n, wait } => Action::Start { node: node(&n)?, wait },
                RawStep::StartAll {} => Action::StartAll,
                RawStep::Add {} => Action::Add,
                RawStep::Decommission { node: n, force } => Action::Decommission { node: node(&n)?, force },
                RawStep::Wait { duration, why } => {
                    Action::Wait { duration: crate::config::check_duration(duration).map_err(|e| bad(format!("duration: {e}")))?, why }
                }
                RawStep::WaitUntil { condition: c, timeout, why } => Action::WaitUntil {
                    condition: condition(&c)?,
                    timeout: crate::config::check_duration(timeout).map_err(|e| bad(format!("timeout: {e}")))?,
                    why,
                },
                RawStep::Assert { condition: c } => Action::Assert { condition: condition(&c)? },
                RawStep::Set { setting, value } => Action::Set { setting, value },
                RawStep::Isolate { node: n, from_clients } => Action::Isolate { node: node(&n)?, from_clients },
                RawStep::Partition { sides, one_way, from_clients } => {
                    if sides.len() < 2 || sides.iter().any(|s| s.is_empty()) {
                        return Err(bad("a partition needs at least two non-empty sides, e.g. sides = [[\"leader\"], [\"rest\"]]".into()));
                    }
                    if one_way && sides.len() != 2 {
                        return Err(bad("one_way takes exactly two sides: the first cannot send to the second".into()));
                    }
                    let sides = sides.iter().map(|s| s.iter().map(&node).collect::<Result<Vec<_>>>()).collect::<Result<Vec<_>>>()?;
                    if sides.iter().flatten().filter(|r| **r == NodeRef::Rest).count() > 1 {
                        return Err(bad("`rest` may stand on one side only".into()));
                    }
                    Action::Partition { sides, one_way, from_clients }
                }
                RawStep::Heal {} => Action::Heal,
                RawStep::Pause { node: n } => Action::Pause { node: node(&n)? },
                RawStep::Resume { node: n } => Action::Resume { node: node(&n)? },
                RawStep::Throttle { node: n, cpu } => {
                    if cpu == 0 || cpu > 100 {
                        return Err(bad(format!("cpu = {cpu}: a share of one core from 1 to 100 (percent)")));
                    }
                    Action::Throttle { node: node(&n)?, cpu }
                }
                RawStep::Unthrottle { node: n } => Action::Unthrottle { node: node(&n)? },
                RawStep::Delay { node: n, delay, jitter } => {
                    if delay > Duration::from_secs(60) || jitter.is_some_and(|j| j > Duration::from_secs(60)) {
                        return Err(bad("delay and jitter: at most 60s".into()));
                    }
                    Action::Delay { node: node(&n)?, delay, jitter: jitter.unwrap_or_default() }
                }
                RawStep::Loss { node: n, percent } => {
                    if !(0.0..=100.0).contains(&percent) {
                        return Err(bad(format!("percent = {percent}: a loss from 0 to 100")));
                    }
                    Action::Loss { node: node(&n)?, percent }
                }
                RawStep::Sql { node: n, statement, expect } => {
                    if statement.trim().is_empty() {
                        return Err(bad(
                            "statement = \"\": write the SQL to send, e.g. statement = \"SELECT count(*) FROM bank.bank\"".into()
                        ));
                    }
                    Action::Sql { node: node(&n)?, statement, expect }
                }
            };
            steps.push(Step { line, action });
        }
        if steps.is_empty() {
            return Err(syntax(0, "a scenario needs at least one [[step]]".into()));
        }
        let phases: Vec<&str> = std::iter::once("baseline")
            .chain(steps.iter().filter_map(|s| if let Action::Phase { name } = &s.action { Some(name.as_str()) } else { None }))
            .collect();
        let mut expect = Vec::new();
        for spanned in raw.expect {
            let pos = spanned.span().start;
            let e = spanned.into_inner();
            let bad = |m: String| syntax(pos, m);
            if !phases.contains(&e.phase.as_str()) {
                return Err(bad(format!("expectation on unknown phase `{}`; phases: {}", e.phase, phases.join(", "))));
            }
            let metric = Metric::ALL.iter().find(|(n, _)| *n == e.metric).map(|(_, m)| *m).ok_or_else(|| {
                bad(format!("unknown metric `{}`; known: {}", e.metric, Metric::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")))
            })?;
            let is_alert_metric = matches!(metric, Metric::AlertFiredAfterMs | Metric::AlertResolvedAfterMs);
            match (&e.alert, is_alert_metric) {
                (None, true) => return Err(bad(format!("metric `{}` needs `alert = \"NodeDown\"` (the alert it times)", e.metric))),
                (Some(_), false) => {
                    return Err(bad(format!("`alert` goes only with alert_fired_after_ms or alert_resolved_after_ms, not `{}`", e.metric)))
                }
                (Some(a), true) if !crate::monitoring::rules::ALERTS.iter().any(|r| r.name == a) => {
                    let known: Vec<&str> = crate::monitoring::rules::ALERTS.iter().map(|r| r.name).collect();
                    return Err(bad(format!("unknown alert `{a}`; the lab's alerts are {}", known.join(", "))));
                }
                _ => {}
            }
            expect.push(Expectation {
                engine: e.engine,
                phase: e.phase,
                metric,
                alert: e.alert,
                cmp: parse_cmp(&e.cmp).map_err(bad)?,
                value: e.value,
                text: e.text,
            });
        }
        // Paths in `[workload]` are the scenario file's (a built-in one, `<built-in …>`, has none).
        let base = (!origin.starts_with('<')).then(|| std::path::Path::new(origin).parent()).flatten();
        let workload = match raw.workload {
            Some(w) => {
                let pos = w.span().start;
                w.into_inner().resolve(base).map_err(|m| syntax(pos, m))?
            }
            None => WorkloadSpec::default(),
        };
        Ok(Scenario { name: raw.name, description: raw.description, expect, workload, steps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
[[step]]
action = "phase"
name = "fault"
[[step]]
action = "kill"
node = "leader"
[[step]]
action = "wait_until"
condition = "backend same DOWN"
timeout = "10s"
[[step]]
action = "start"
node = "same"
[[step]]
action = "assert"
condition = "members_up >= 3"
"#;

    #[test]
    fn a_scenario_resolves_with_step_lines() {
        let s = Scenario::parse(GOOD, "t.toml", &[1, 2, 3]).unwrap();
        assert_eq!(s.steps.len(), 5);
        assert_eq!(s.steps[1], Step { line: 6, action: Action::Kill { node: NodeRef::Leader } });
        assert_eq!(
            s.steps[2].action,
            Action::WaitUntil {
                condition: Condition::Backend { node: NodeRef::Same, state: "DOWN".into() },
                timeout: Duration::from_secs(10),
                why: None
            }
        );
        assert_eq!(s.workload, WorkloadSpec::default());
    }

    #[test]
    fn an_unknown_node_names_the_line() {
        let text = "name = \"t\"\n[[step]]\naction = \"kill\"\nnode = 7\n";
        let err = Scenario::parse(text, "d.toml", &[1, 2, 3]).unwrap_err().to_string();
        assert_eq!(err, "d.toml:2:1: unknown node 7; this lab has nodes 1, 2, 3");
    }

    #[test]
    fn a_bad_step_or_condition_names_the_line() {
        let text = "name = \"t\"\n[[step]]\naction = \"explode\"\n";
        let err = Scenario::parse(text, "d.toml", &[1]).unwrap_err().to_string();
        assert!(err.starts_with("d.toml:3:10:") && err.contains("unknown variant `explode`"), "{err}");
        let text = "name = \"t\"\n\n[[step]]\naction = \"wait_until\"\ncondition = \"livenodes = 2\"\ntimeout = \"5s\"\n";
        let err = Scenario::parse(text, "d.toml", &[1]).unwrap_err().to_string();
        assert!(err.starts_with("d.toml:3:1: unknown figure `livenodes`"), "{err}");
        let text = "name = \"t\"\n[[step]]\naction = \"wait\"\nduration = \"5s\"\ncolour = 1\n";
        let err = Scenario::parse(text, "d.toml", &[1]).unwrap_err().to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }
}
