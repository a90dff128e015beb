//! Drills: scripted fault-tolerance experiments on a running lab, measured per phase, checked
//! against what theory predicts, and reported with charts.
//!
//! The built-in drills are embedded scenario files of the same format users write
//! (`configs/drills/*.toml`).

pub mod metrics;
pub mod report;
pub mod runner;
pub mod scenario;

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

/// The built-in drills: (name, scenario text).
pub const BUILT_IN: [(&str, &str); 2] = [
    ("graceful-vs-kill", include_str!("../../configs/drills/graceful-vs-kill.toml")),
    ("quorum-loss", include_str!("../../configs/drills/quorum-loss.toml")),
];

#[cfg(test)]
mod tests {
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
        let (text, new) = super::scale_scenario(3, 4, 5);
        assert_eq!(new, vec![4, 5]);
        let s = super::scenario::Scenario::parse(&text, "scale", &[1, 2, 3, 4, 5]).unwrap();
        let decommissions: Vec<_> = s.steps.iter().filter(|st| matches!(st.action, super::scenario::Action::Decommission { .. })).collect();
        assert_eq!(decommissions.len(), 2);
        assert_eq!(s.expect.len(), 2);
    }
}
