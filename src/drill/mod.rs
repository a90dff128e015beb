//! Drills: scripted fault-tolerance experiments on a running lab, measured per phase, checked
//! against what theory predicts, and reported with charts.
//!
//! The built-in drills are embedded scenario files of the same format users write
//! (`configs/drills/*.toml`).

pub mod alerts;
pub mod condition;
pub mod expect;
pub mod live;
mod load;
pub mod metrics;
pub mod model;
pub mod partitions;
pub mod predict;
pub mod process_faults;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod steps;
pub mod story;
pub mod workload;

use crate::watch::Takeover;

/// The head of a generated scenario: name, description, and the drills' usual workload (4
/// workers, 1000 accounts, 3 s per operation).
pub(crate) fn header(name: &str, description: &str) -> String {
    format!("name = \"{name}\"\ndescription = \"{description}\"\n\n[workload]\nconcurrency = 4\nrows = 1000\nop_timeout = \"3s\"\n\n")
}

/// One `[[expect]]` of a generated scenario (`engine`: only for labs of that engine).
pub(crate) fn expect(engine: Option<&str>, phase: &str, metric: &str, cmp: &str, value: u64, text: &str) -> String {
    let engine = engine.map(|e| format!("engine = \"{e}\"\n")).unwrap_or_default();
    format!("[[expect]]\n{engine}phase = \"{phase}\"\nmetric = \"{metric}\"\ncmp = \"{cmp}\"\nvalue = {value}\ntext = \"{text}\"\n\n")
}

/// A TOML basic string holding `text` (quotes and backslashes escaped).
pub(crate) fn toml_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A step that waits until the drill's clients commit again after the latest fault, bounded
/// by the engine's takeover time ([`Takeover::wait_bound`]) and saying why it may take that
/// long.
pub(crate) fn writes_resumed_step(t: &Takeover) -> String {
    format!(
        "[[step]]\naction = \"wait_until\"\ncondition = \"writes resumed\"\ntimeout = \"{}s\"\nwhy = {}\n",
        t.wait_bound().as_secs(),
        toml_str(&t.why)
    )
}

/// The `scale` drill for a lab whose members are `members` and whose next node id is
/// `next_id`: add nodes under load until there are `to`, then decommission the new ones,
/// newest first. Returns the scenario text (the same format as a file) and the node ids it
/// may name.
pub fn scale_scenario(members: usize, next_id: u32, to: usize) -> (String, Vec<u32>) {
    let added = to.saturating_sub(members);
    let new_ids: Vec<u32> = (next_id..next_id + added as u32).collect();
    let mut s = format!(
        "name = \"scale\"\ndescription = \"Add {added} node(s) under load ({members} → {to}), then decommission them again.\"\n\n\
         [[expect]]\nphase = \"scale-out\"\nmetric = \"ok\"\ncmp = \">\"\nvalue = 0\ntext = \"joining nodes never stop the cluster from committing\"\n\n\
         [[expect]]\nphase = \"scale-in\"\nmetric = \"ok\"\ncmp = \">\"\nvalue = 0\ntext = \"a decommissioned node hands its data (CockroachDB replicas) or its vote (etcd membership) over before it stops: writes continue\"\n\n\
         [[step]]\naction = \"phase\"\nname = \"scale-out\"\n"
    );
    for _ in &new_ids {
        s.push_str("[[step]]\naction = \"add\"\n");
    }
    s.push_str(&format!(
        "[[step]]\naction = \"wait_until\"\ncondition = \"members_up == {to}\"\ntimeout = \"120s\"\n[[step]]\naction = \"wait\"\nduration = \"5s\"\n\
         [[step]]\naction = \"phase\"\nname = \"scale-in\"\n"
    ));
    for id in new_ids.iter().rev() {
        s.push_str(&format!("[[step]]\naction = \"decommission\"\nnode = {id}\n"));
    }
    s.push_str(&format!(
        "[[step]]\naction = \"wait_until\"\ncondition = \"members_up == {members}\"\ntimeout = \"120s\"\n[[step]]\naction = \"wait\"\nduration = \"5s\"\n"
    ));
    (s, new_ids)
}

/// The `quorum-loss` drill for a lab of `members` members ("remove all but one node"): kill
/// members one at a time while a majority remains (`one-down`), then down to one
/// (`quorum-lost`: writes must stop), restore one (`one-restored`), restore all. Before
/// taking the last majority away, it waits until writes go through again (`writes resumed`,
/// bounded by the engine's `takeover`: on CockroachDB the leases of a killed node move only
/// once its liveness record expires). For 3 members this is `configs/drills/quorum-loss.toml`.
/// Needs at least 3 members.
pub fn quorum_loss_scenario(members: usize, takeover: &Takeover) -> String {
    let needed = members / 2 + 1;
    let tolerated = members - needed;
    let mut s = format!(
        "name = \"quorum-loss\"\n\
         description = \"Kill nodes until one of {members} remains: writes must stop. Restore one: a majority again, writes resume. Restore the rest: fully replicated.\"\n\n\
         [workload]\nconcurrency = 4\nrows = 1000\nop_timeout = \"3s\"\n\n\
         [[expect]]\nphase = \"one-down\"\nmetric = \"ok\"\ncmp = \">\"\nvalue = 0\ntext = \"{up} of {members} up is still a majority of {needed}: writes continue\"\n\n\
         [[expect]]\nphase = \"quorum-lost\"\nmetric = \"committed\"\ncmp = \"==\"\nvalue = 0\ntext = \"1 of {members} up is not a majority of {needed}: no write can commit\"\n\n\
         [[expect]]\nphase = \"one-restored\"\nmetric = \"ok\"\ncmp = \">\"\nvalue = 0\ntext = \"{needed} of {members} up again: a majority, writes resume\"\n\n\
         [[step]]\naction = \"phase\"\nname = \"one-down\"\n",
        up = members - tolerated.max(1),
    );
    let kill = |s: &mut String, up_after: usize| {
        s.push_str(&format!(
            "[[step]]\naction = \"kill\"\nnode = \"random\"\n[[step]]\naction = \"wait_until\"\ncondition = \"members_up == {up_after}\"\ntimeout = \"10s\"\n"
        ));
    };
    // Down to the last majority (at least one kill), observed for a while.
    let first = tolerated.max(1);
    for k in 1..=first {
        kill(&mut s, members - k);
    }
    s.push_str(&writes_resumed_step(takeover));
    s.push_str("[[step]]\naction = \"wait\"\nduration = \"5s\"\n");
    // Then down to one.
    for k in first + 1..members {
        kill(&mut s, members - k);
    }
    // Restore enough for a majority: the last killed first.
    s.push_str(
        "[[step]]\naction = \"wait_until\"\ncondition = \"quorum == 0\"\ntimeout = \"15s\"\n\
         [[step]]\naction = \"phase\"\nname = \"quorum-lost\"\n[[step]]\naction = \"wait\"\nduration = \"6s\"\n\
         [[step]]\naction = \"phase\"\nname = \"one-restored\"\n",
    );
    // All at once: a lone restarted member cannot become ready without a majority.
    for _ in 1..needed {
        s.push_str("[[step]]\naction = \"start\"\nnode = \"stopped\"\nwait = false\n");
    }
    s.push_str(&format!(
        "[[step]]\naction = \"wait_until\"\ncondition = \"quorum == 1\"\ntimeout = \"60s\"\n\
         [[step]]\naction = \"wait_until\"\ncondition = \"ready_nodes >= {needed}\"\ntimeout = \"60s\"\n\
         [[step]]\naction = \"wait\"\nduration = \"6s\"\n\
         [[step]]\naction = \"phase\"\nname = \"all-restored\"\n[[step]]\naction = \"start_all\"\n\
         [[step]]\naction = \"wait_until\"\ncondition = \"ready_nodes == {members}\"\ntimeout = \"60s\"\n[[step]]\naction = \"wait\"\nduration = \"3s\"\n"
    ));
    s
}

/// The built-in `graceful-vs-kill` drill for a lab whose HAProxy checks every `inter` and
/// marks a server DOWN after `fall` failed checks: `configs/drills/graceful-vs-kill.toml` plus
/// the kill phase's detection window. A SIGKILLed node refuses connections at once, but HAProxy
/// only marks it DOWN after `fall` failed checks, the first of which may come right after the
/// kill: DOWN follows the kill by at least (fall − 1) × inter, and until then new connections
/// are still routed to the dead node.
pub fn graceful_vs_kill_scenario(inter: std::time::Duration, fall: u32) -> String {
    let window = inter.as_millis() as u64 * u64::from(fall.saturating_sub(1));
    format!(
        "{}\n[[expect]]\nphase = \"kill\"\nmetric = \"haproxy_down_after_fault_ms\"\ncmp = \">=\"\nvalue = {window}\n\
         text = \"HAProxy needs {fall} failed checks {inter} ms apart to mark the killed node DOWN: clients are routed to it for at least (fall − 1) × inter\"\n",
        BUILT_IN[0].1,
        inter = inter.as_millis()
    )
}

/// The built-in drills with fixed text: (name, scenario text).
pub const BUILT_IN: [(&str, &str); 2] = [
    ("graceful-vs-kill", include_str!("../../configs/drills/graceful-vs-kill.toml")),
    ("quorum-loss", include_str!("../../configs/drills/quorum-loss.toml")),
];

#[cfg(test)]
pub(crate) fn takeover() -> Takeover {
    Takeover { expected: std::time::Duration::from_secs(14), why: "leases wait for \"liveness\" to expire".into() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_why_with_quotes_survives_toml() {
        let s = super::writes_resumed_step(&super::takeover());
        let v: toml::Value = toml::from_str(&s).unwrap();
        assert_eq!(v["step"][0]["why"].as_str(), Some("leases wait for \"liveness\" to expire"));
        assert_eq!(v["step"][0]["timeout"].as_str(), Some("42s"));
        assert_eq!(super::toml_str("a\\b\nc"), "\"a\\\\b\\nc\"");
    }

    #[test]
    fn built_in_and_generated_scenarios_load() {
        for (name, text) in super::BUILT_IN {
            super::scenario::Scenario::parse(text, name, &[1, 2, 3]).unwrap_or_else(|e| panic!("{e}"));
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/drills");
        let mut files = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            super::scenario::Scenario::parse(&text, &path.display().to_string(), &[1, 2, 3, 4]).unwrap_or_else(|e| panic!("{e}"));
            files += 1;
        }
        assert!(files >= 3, "the example drills");
        for members in [3, 4, 5, 7] {
            let text = super::quorum_loss_scenario(members, &super::takeover());
            let ids: Vec<u32> = (1..=members as u32).collect();
            let s = super::scenario::Scenario::parse(&text, "quorum-loss", &ids).unwrap_or_else(|e| panic!("{members}: {e}\n{text}"));
            let kills = s.steps.iter().filter(|st| matches!(st.action, super::scenario::Action::Kill { .. })).count();
            assert_eq!(kills, members - 1, "{members} members: kill until one remains");
            let resumed = s.steps.iter().position(|st| {
                matches!(
                    &st.action,
                    super::scenario::Action::WaitUntil { condition: super::scenario::Condition::WritesResumed, why: Some(_), .. }
                )
            });
            let last_kill = s.steps.iter().rposition(|st| matches!(st.action, super::scenario::Action::Kill { .. })).unwrap();
            assert!(resumed.is_some_and(|r| r < last_kill), "{members} members: writes resume before the last majority is taken");
            let starts = s.steps.iter().filter(|st| matches!(st.action, super::scenario::Action::Start { .. })).count();
            assert_eq!(starts, members / 2, "{members} members: restore to a bare majority");
        }
        let (text, new) = super::scale_scenario(3, 4, 5);
        assert_eq!(new, vec![4, 5]);
        let s = super::scenario::Scenario::parse(&text, "scale", &[1, 2, 3, 4, 5]).unwrap();
        let decommissions: Vec<_> = s.steps.iter().filter(|st| matches!(st.action, super::scenario::Action::Decommission { .. })).collect();
        assert_eq!(decommissions.len(), 2);
        assert_eq!(s.expect.len(), 2);
    }
}
